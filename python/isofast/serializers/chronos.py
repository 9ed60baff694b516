"""Chronos mean-scaling quantisation (Ansari et al. 2024, "Chronos: Learning the
Language of Time Series"), as in ``MeanScaleUniformBins`` of the chronos code.

Encoding of a context x_1..x_T
------------------------------
* scale s = nanmean(|x|), or 1 when that is not positive (all zeros);
* n_tokens = 4096 ids, of which 2 are special: pad = 0, eos = 1;
* centres c_0..c_{B−1} = linspace(−15, 15, B) with B = 4096 − 2 − 1 = 4093;
* boundaries b = [−1e20, (c_0+c_1)/2, …, (c_{B−2}+c_{B−1})/2, +1e20]
  (B + 1 = 4094 values);
* bucket(z) = torch.bucketize(z, b, right=True) = #{j : b_j ≤ z}
  (numpy: ``searchsorted(b, z, side="right")``);
* id = bucket(x/s) + 2, clamped to [0, 4095]; an EOS id is appended when
  ``use_eos_token`` (T5 models).

The off-by-one, checked
-----------------------
For a finite z with |z| < 1e20, b_0 = −1e20 ≤ z, so bucket(z) ≥ 1, and
z ∈ [b_j, b_{j+1}) ⇔ bucket(z) = j + 1 ⇔ c_j is the nearest centre (ties at a
midpoint go up). Hence id = j + 3: value ids run over **3..4095**, id 2 is
never produced by the encoder (it would need z < −1e20), and the decoder's
``centres[id − 3]`` (clamped to [0, B−1]) returns exactly the nearest centre:
``decode(encode(x)) = s · c_{argmin_j |x/s − c_j|}``. Values beyond ±15·s are
clipped to the end centres. The chronos issue tracker reported this pair of
"+2" / "−3" offsets as an off-by-one; it is in fact consistent because the
bucket index is one-based. isofast clamps value ids to [3, 4095] (the original
clamps to [0, 4095], which differs only for −inf, rejected here).

Decoding skips pad/eos ids (0, 1) and counts them; id 2 decodes to c_0 as in
the original clamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from isofast.errors import InputError, NumericalError
from isofast.serializers.base import DIGIT, OTHER, NanPolicy, as_series


def _check_scale(scale) -> None:
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating, np.integer)):
        raise InputError(f"scale must be a finite positive number, got {scale!r}")
    if not (np.isfinite(scale) and scale > 0):
        raise InputError(f"scale must be a finite positive number, got {scale!r}")


@dataclass
class IdEncoding:
    """Token ids of one window (the EOS id included when used)."""

    ids: np.ndarray
    roles: np.ndarray
    scale: float
    n_values: int

    def to_dict(self) -> dict:
        return {"ids": self.ids.tolist(), "scale": self.scale, "n_values": self.n_values}


@dataclass
class ChronosDecoding:
    values: np.ndarray
    n_special: int

    def to_dict(self) -> dict:
        return {"values": self.values.tolist(), "n_special": self.n_special}


@dataclass(frozen=True)
class ChronosSerializer:
    """Chronos tokenizer settings; see the module docstring for the formulas."""

    n_tokens: int = 4096
    n_special_tokens: int = 2
    pad_token_id: int = 0
    eos_token_id: int = 1
    low_limit: float = -15.0
    high_limit: float = 15.0
    use_eos_token: bool = True
    context_length: int | None = 512

    name = "chronos"

    def __post_init__(self) -> None:
        if self.n_tokens - self.n_special_tokens - 1 < 2:
            raise ValueError("n_tokens too small for the special tokens")
        if not self.low_limit < self.high_limit:
            raise ValueError("low_limit must be below high_limit")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "n_tokens": self.n_tokens,
            "n_special_tokens": self.n_special_tokens,
            "pad_token_id": self.pad_token_id,
            "eos_token_id": self.eos_token_id,
            "low_limit": self.low_limit,
            "high_limit": self.high_limit,
            "use_eos_token": self.use_eos_token,
            "context_length": self.context_length,
        }

    @cached_property
    def centers(self) -> np.ndarray:
        # float32 like torch.linspace in the original; decode returns float64.
        n = self.n_tokens - self.n_special_tokens - 1
        return np.linspace(self.low_limit, self.high_limit, n).astype(np.float32)

    @cached_property
    def boundaries(self) -> np.ndarray:
        c = self.centers
        mids = (c[1:] + c[:-1]) / np.float32(2)
        return np.concatenate(([np.float32(-1e20)], mids, [np.float32(1e20)])).astype(np.float32)

    @property
    def first_value_id(self) -> int:
        return self.n_special_tokens + 1

    def scale_of(self, x: np.ndarray) -> float:
        """nanmean(|x|), computed as c·nanmean(|x|/c) with c = max |x| so that
        values near the float64 maximum do not overflow the sum (which made
        the scale +Inf and every id NaN's)."""
        a = np.abs(np.asarray(x, dtype=np.float64))
        c = float(np.nanmax(a)) if a.size and not np.isnan(a).all() else 0.0
        if not c > 0:
            return 1.0
        s = c * float(np.nanmean(a / c))
        return s if s > 0 else 1.0

    def ids_of(self, x: np.ndarray, scale: float) -> np.ndarray:
        _check_scale(scale)
        z = np.asarray(x, dtype=np.float64) / scale
        bad = np.isnan(z)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"value at index {i} is NaN after scaling: cannot be quantised")
        # |z| beyond float32 would become ±inf (and −inf id 2): clip first,
        # it lands in the end bins either way.
        z = np.clip(z, -1e30, 1e30).astype(np.float32)
        bucket = np.searchsorted(self.boundaries, z, side="right")
        ids = bucket.astype(np.int64) + self.n_special_tokens
        return np.clip(ids, self.first_value_id, self.n_tokens - 1)

    def encode(self, x, *, scale: float | None = None, nan: NanPolicy = "interpolate") -> IdEncoding:
        arr = as_series(x, nan=nan)
        if scale is None:
            scale = self.scale_of(arr)
        ids = self.ids_of(arr, scale)
        roles = np.full(ids.size, DIGIT, dtype=np.uint8)
        if self.use_eos_token:
            ids = np.append(ids, self.eos_token_id)
            roles = np.append(roles, np.uint8(OTHER))
        return IdEncoding(ids, roles, float(scale), int(arr.size))

    def decode(self, ids, scale: float | IdEncoding) -> ChronosDecoding:
        if isinstance(scale, IdEncoding):
            scale = scale.scale
        _check_scale(scale)
        raw = np.asarray(ids)
        if raw.size and raw.dtype.kind not in "iu":
            if raw.dtype.kind == "f" and np.all(np.isfinite(raw)) and np.all(raw == np.round(raw)):
                raw = raw.astype(np.int64)
            else:
                raise InputError(f"token ids must be integers, got dtype {raw.dtype}")
        ids = raw.astype(np.int64).ravel()
        out = (ids < 0) | (ids >= self.n_tokens)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            # an id outside the vocabulary is not a value: refuse, don't clamp
            raise InputError(
                f"token id {int(ids[i])} at position {i} is outside the vocabulary [0, {self.n_tokens - 1}]"
            )
        special = (ids == self.pad_token_id) | (ids == self.eos_token_id)
        vals = ids[~special]
        idx = np.clip(vals - self.first_value_id, 0, self.centers.size - 1)
        with np.errstate(over="ignore"):
            values = self.centers[idx].astype(np.float64) * scale
        over = ~np.isfinite(values)
        if over.any():
            i = int(np.flatnonzero(over)[0])
            raise NumericalError(
                f"decoded value {i} (centre {float(self.centers[idx[i]]):g} × scale {scale:.6g}) overflows float64"
            )
        return ChronosDecoding(values, int(special.sum()))
