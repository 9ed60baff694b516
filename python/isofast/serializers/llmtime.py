"""LLMTime digit strings (Gruver, Finzi, Qiu, Wilson 2023, "Large Language Models
Are Zero-Shot Time Series Forecasters").

Encoding of one series x_1..x_T
-------------------------------
1. **Scale** (fitted on the series itself unless a :class:`Scaler` is given):

   * basic:  z = x / q,            q = max(quantile(|x|, α), 0.01)
   * else:   z = (x − m) / q,      m = min(x) − β·(max(x) − min(x)),
                                    q = quantile(x − m, α)   (q := 1 if q == 0)

   GPT-3 setting: α = 0.95, β = 0.3; LLaMA setting: α = 0.99, β = 0.3.
2. **Fixed precision**: n = round(z · 10^prec) as an integer, printed in base 10
   without leading zeros and without a decimal point (0.645 → "645",
   0.005 → "5", 12.3 → "12300").
3. **Layout**: each digit is preceded by ``bit_sep``; a negative value is
   preceded by ``minus_sign`` (a positive one by ``plus_sign``); values are
   joined by ``time_sep`` and one trailing ``time_sep`` ends the string (as in
   the original code, so the last value's digit count is unambiguous).

   ``gpt``:   time_sep " ,", bit_sep " ", minus " -"  → " 6 4 5 , - 1 2 0 0 ,"
   ``llama``: time_sep ",",  bit_sep "",  minus "-"   → "645,-1200,"

Departure from the original code (deliberate)
---------------------------------------------
The original ``vec_num2repr`` *truncates* (``astype(int)``), so 0.645 becomes
"644" (0.645·1000 = 644.999… in binary floating point) and 1.2 becomes "1199";
its decoder then adds half a bin. isofast **rounds to the nearest** integer
(``np.rint``: ties to even), so the printed digits are the closest
representable value, and decoding needs no half-bin correction. Pass
``rounding="truncate"`` to reproduce the original digits exactly (decoding then
adds the half bin, as the original does). Also unlike the original, zero is
never printed with a minus sign ("-0").

Decoding
--------
``decode`` inverts the layout and the scaler exactly: for a string produced by
``encode`` it returns n/10^prec mapped back through the same scaler, so
``|decode(encode(x)) − x| ≤ ½·10^−prec·q`` (rounding) and
``encode(decode(s)) == s``. Model output is noisy, so decoding is robust: a
value that does not parse (stray characters, a lone sign, no digits) is
skipped and counted in ``LLMTimeDecoding.n_malformed``; ``strict=True``
raises instead.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from isofast._input import check_int
from isofast.errors import InputError, NumericalError
from isofast.serializers.base import DIGIT, SEPARATOR, SIGN, NanPolicy, as_series

#: |n| of a printed integer must stay below 2⁶³ (int64, the ``ints`` arrays).
_INT64_LIMIT = float(2**63)

Rounding = Literal["nearest", "truncate"]

_DIGITS = re.compile(r"[0-9]+")


def _original_digits(z: np.ndarray, prec: int, max_val: float) -> np.ndarray:
    """The original ``vec_num2repr`` digit loop (truncation), reproduced
    operation by operation so that ``rounding="truncate"`` gives its digits
    bit for bit (0.645 → 644, 1.2 → 1199), returned as signed integers."""
    base = 10.0
    sign = np.where(z >= 0, 1, -1)
    val = np.abs(np.asarray(z, dtype=np.float64)).copy()
    max_bit_pos = int(np.ceil(np.log(max_val) / np.log(base)).item())
    n = np.zeros(val.shape, dtype=np.int64)
    for i in range(max_bit_pos):
        digit = (val / base ** (max_bit_pos - i - 1)).astype(int)
        n = n * 10 + digit
        val -= digit * base ** (max_bit_pos - i - 1)
    for i in range(prec):
        digit = (val / base ** (-i - 1)).astype(int)
        n = n * 10 + digit
        val -= digit * base ** (-i - 1)
    return sign * n


@dataclass(frozen=True)
class Scaler:
    """Affine map z = (x − offset)/scale and its inverse x = z·scale + offset."""

    offset: float
    scale: float

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.offset) / self.scale

    def inverse(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            x = z * self.scale + self.offset
            bad = ~np.isfinite(x) & np.isfinite(z)
            if bad.any():  # z·scale alone may overflow where z·scale + offset does not
                x[bad] = 2.0 * (z[bad] * (0.5 * self.scale) + 0.5 * self.offset)
        bad = ~np.isfinite(x) & np.isfinite(z)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise NumericalError(
                f"decoded value {i} ({z[i]:.6g} × {self.scale:.6g} + {self.offset:.6g}) overflows float64"
            )
        return x

    def to_dict(self) -> dict:
        return {"offset": float(self.offset), "scale": float(self.scale)}


def fit_scaler(x: np.ndarray, *, alpha: float, beta: float, basic: bool) -> Scaler:
    """LLMTime's ``get_scaler`` (NaN ignored); see the module docstring."""
    h = np.asarray(x, dtype=np.float64)
    h = h[~np.isnan(h)]
    if h.size == 0:
        raise ValueError("cannot fit a scaler on a series with no finite value")
    if basic:
        q = max(float(np.quantile(np.abs(h), alpha)), 0.01)
        return Scaler(0.0, q)
    lo, hi = float(h.min()), float(h.max())
    with np.errstate(over="ignore", invalid="ignore"):
        m = lo - beta * (hi - lo)
        q = float(np.quantile(h - m, alpha))
    if q == 0.0:
        q = 1.0
    if not (np.isfinite(m) and np.isfinite(q)):
        # e.g. values near ±1.8e308: max − min overflows float64
        raise NumericalError(
            f"the series' range [{lo:.6g}, {hi:.6g}] overflows float64 in the LLMTime scaler "
            f"(offset {m:.6g}, scale {q:.6g}): rescale the series first"
        )
    return Scaler(m, q)


@dataclass
class TextEncoding:
    """A serialized window: the text plus what a capture needs to label tokens.

    ``char_roles[i]`` is the role code (see :mod:`isofast.serializers.base`) of
    ``text[i]``; ``value_starts[k]`` is the offset of value k's first character
    (its sign or first digit separator), so a tokenizer's offset mapping can be
    cut on whole values.
    """

    text: str
    char_roles: np.ndarray
    value_starts: np.ndarray
    ints: np.ndarray
    scaler: Scaler
    n_values: int

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "ints": self.ints.tolist(),
            "scaler": self.scaler.to_dict(),
            "n_values": self.n_values,
        }


@dataclass
class LLMTimeDecoding:
    """Decoded values (malformed ones skipped) and what was skipped."""

    values: np.ndarray
    ints: np.ndarray
    n_malformed: int
    malformed: list[tuple[int, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "values": self.values.tolist(),
            "ints": self.ints.tolist(),
            "n_malformed": self.n_malformed,
            "malformed": [list(m) for m in self.malformed],
        }


@dataclass(frozen=True)
class LLMTimeSerializer:
    """LLMTime settings; ``encode``/``decode`` are exact inverses (module docstring)."""

    prec: int = 3
    time_sep: str = " ,"
    bit_sep: str = " "
    minus_sign: str = " -"
    plus_sign: str = ""
    alpha: float = 0.95
    beta: float = 0.3
    basic: bool = False
    rounding: Rounding = "nearest"
    max_val: float = 1e7
    preset_name: str | None = None

    name = "llmtime"

    def __post_init__(self) -> None:
        if not isinstance(self.prec, int) or self.prec < 0:
            raise ValueError(f"prec must be a non-negative int, got {self.prec!r}")
        if self.rounding not in ("nearest", "truncate"):
            raise ValueError(f"rounding must be 'nearest' or 'truncate', got {self.rounding!r}")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")
        if not (np.isfinite(self.max_val) and self.max_val > 0):
            raise InputError(f"max_val must be a finite positive number, got {self.max_val!r}")
        if self.max_val * 10.0**self.prec >= _INT64_LIMIT:
            # n = round(z·10^prec) would wrap int64 for |z| near max_val
            raise InputError(
                f"prec={self.prec} with max_val={self.max_val:g} needs integers up to "
                f"{self.max_val * 10.0**self.prec:.3g}, beyond int64 (9.2e18): lower prec or max_val"
            )
        if not self.time_sep:
            raise ValueError("time_sep must not be empty")
        if not self.minus_sign:
            raise ValueError("minus_sign must not be empty")
        for nm in ("time_sep", "bit_sep", "minus_sign", "plus_sign"):
            if any(c.isdigit() for c in getattr(self, nm)):
                raise ValueError(f"{nm} must not contain digits")
        # time_sep must hold a character that nothing inside a value uses,
        # otherwise splitting on it is ambiguous.
        inner = set(self.bit_sep + self.minus_sign + self.plus_sign)
        if not set(self.time_sep) - inner:
            raise ValueError(
                f"time_sep {self.time_sep!r} must contain a character not used by bit_sep, minus_sign or plus_sign"
            )
        if self.minus_sign.strip() == self.plus_sign.strip():
            raise ValueError("minus_sign and plus_sign must differ")

    # ------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str, **overrides) -> LLMTimeSerializer:
        """``"gpt"`` (GPT-3 layout, α=0.95) or ``"llama"`` (LLaMA layout, α=0.99)."""
        presets = {
            "gpt": dict(time_sep=" ,", bit_sep=" ", minus_sign=" -", alpha=0.95, beta=0.3),
            "llama": dict(time_sep=",", bit_sep="", minus_sign="-", alpha=0.99, beta=0.3),
        }
        if name not in presets:
            raise ValueError(f"unknown LLMTime preset {name!r}; choose one of {sorted(presets)}")
        kw = {**presets[name], "preset_name": name, **overrides}
        return cls(**kw)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["name"] = self.name
        return d

    # ----------------------------------------------------------------- encoding
    def fit(self, x: np.ndarray) -> Scaler:
        return fit_scaler(x, alpha=self.alpha, beta=self.beta, basic=self.basic)

    def to_ints(self, x: np.ndarray, scaler: Scaler) -> np.ndarray:
        if not (np.isfinite(scaler.offset) and np.isfinite(scaler.scale) and scaler.scale != 0):
            raise InputError(f"scaler must have a finite offset and a finite non-zero scale, got {scaler}")
        with np.errstate(over="ignore", invalid="ignore"):
            z = scaler.transform(x)
        bad = ~np.isfinite(z)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise NumericalError(
                f"value {np.asarray(x, dtype=np.float64)[i]:.6g} at index {i} overflows float64 when scaled "
                f"(offset {scaler.offset:.6g}, scale {scaler.scale:.6g})"
            )
        big = np.abs(z) > self.max_val
        if big.any():
            i = int(np.flatnonzero(big)[0])
            raise ValueError(f"scaled value {z[i]:.6g} at index {i} exceeds max_val={self.max_val:g}")
        if self.rounding == "nearest":
            return np.rint(z * (10.0**self.prec)).astype(np.int64)
        return _original_digits(z, self.prec, self.max_val)

    def encode(self, x, *, scaler: Scaler | None = None, nan: NanPolicy = "interpolate") -> TextEncoding:
        """Serialize one series (see the module docstring for the format)."""
        arr = as_series(x, nan=nan)
        if scaler is None:
            scaler = self.fit(arr)
        ints = self.to_ints(arr, scaler)
        parts: list[str] = []
        roles: list[np.ndarray] = []
        starts = np.empty(ints.size, dtype=np.int64)
        pos = 0
        bsep, tsep = self.bit_sep, self.time_sep
        n_bsep, n_tsep = len(bsep), len(tsep)
        for k, v in enumerate(ints.tolist()):
            starts[k] = pos
            sign = self.minus_sign if v < 0 else self.plus_sign
            digits = str(abs(v))
            s = sign + "".join(bsep + d for d in digits) + tsep
            r = np.empty(len(s), dtype=np.uint8)
            r[: len(sign)] = SIGN
            j = len(sign)
            for _ in digits:
                r[j : j + n_bsep] = SEPARATOR
                r[j + n_bsep] = DIGIT
                j += n_bsep + 1
            r[j : j + n_tsep] = SEPARATOR
            parts.append(s)
            roles.append(r)
            pos += len(s)
        text = "".join(parts)
        char_roles = np.concatenate(roles) if roles else np.empty(0, np.uint8)
        return TextEncoding(text, char_roles, starts, ints, scaler, int(ints.size))

    # ----------------------------------------------------------------- decoding
    def from_ints(self, ints: np.ndarray, scaler: Scaler) -> np.ndarray:
        z = np.asarray(ints, dtype=np.float64)
        if self.rounding == "truncate":
            # The original's half-bin correction: the bin centre of a truncated value.
            z = np.sign(z) * (np.abs(z) + 0.5) + (z == 0) * 0.5
        return scaler.inverse(z / (10.0**self.prec))

    def parse_value(self, piece: str) -> int | None:
        """One value's text → its integer, or None when malformed."""
        s = piece
        sign = 1
        minus, plus = self.minus_sign, self.plus_sign
        if s.startswith(minus):
            sign, s = -1, s[len(minus) :]
        elif minus.strip() and s.lstrip().startswith(minus.strip()):
            sign, s = -1, s.lstrip()[len(minus.strip()) :]
        elif plus and s.startswith(plus):
            s = s[len(plus) :]
        elif plus.strip() and s.lstrip().startswith(plus.strip()):
            s = s.lstrip()[len(plus.strip()) :]
        if self.bit_sep:
            s = s.replace(self.bit_sep, "")
        s = s.strip()
        if not _DIGITS.fullmatch(s):
            return None
        return sign * int(s)

    def decode(
        self,
        text: str,
        scaler: Scaler | TextEncoding,
        *,
        strict: bool = False,
        steps: int | None = None,
    ) -> LLMTimeDecoding:
        """Parse a digit string back to values through ``scaler``.

        Empty pieces (such as the one after the trailing separator) are not
        values; any other piece that does not parse is skipped and counted
        (``strict=True`` raises ``ValueError`` on the first one). ``steps``
        keeps at most that many parsed values.
        """
        if isinstance(scaler, TextEncoding):
            scaler = scaler.scaler
        steps = check_int(steps, "steps", minimum=0, allow_none=True)
        if steps == 0:
            return LLMTimeDecoding(np.zeros(0), np.zeros(0, dtype=np.int64), 0, [])
        ints: list[int] = []
        bad: list[tuple[int, str]] = []
        for i, piece in enumerate(text.split(self.time_sep)):
            if not piece.strip():
                continue
            v = self.parse_value(piece)
            if v is not None and abs(v) >= 2**63:
                v = None  # more digits than int64 holds: model noise, not a value
            if v is None:
                if strict:
                    raise ValueError(f"malformed value #{i}: {piece!r}")
                bad.append((i, piece))
                continue
            ints.append(v)
            if steps is not None and len(ints) >= steps:
                break
        arr = np.asarray(ints, dtype=np.int64)
        return LLMTimeDecoding(self.from_ints(arr, scaler), arr, len(bad), bad)
