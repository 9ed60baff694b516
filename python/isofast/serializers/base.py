"""What every serializer shares: token roles, input checks and the NaN policy.

A *serializer* turns one numeric context window (a 1-D float array) into what a
model reads: a text string (LLMTime), a sequence of token ids (Chronos) or a
matrix of patches (patch-based models), and back again exactly.

Token roles
-----------
Every character of a serialized text, and every id or patch, carries a role so
that a capture can keep only the tokens that carry the numbers:

===========  ==================================================================
``digit``    a token that carries (part of) a value: a digit character, a
             Chronos bin id, a patch
``sign``     the minus (or plus) sign of a value
``separator`` the value separator (``time_sep``) or the digit separator
             (``bit_sep``)
``other``    anything else (special tokens such as BOS/EOS, padding never
             appears because padded positions are never captured)
===========  ==================================================================

NaN policy (documented choice)
------------------------------
Language models cannot read a missing value, and silently dropping it would
shift every later position. The default policy is therefore
``nan="interpolate"``: interior gaps are filled by linear interpolation in the
time index, leading/trailing gaps by the nearest observed value, and a
``UserWarning`` states how many values were filled. ``nan="error"`` raises
``ValueError`` naming the first missing index instead. A series with no finite
value, an empty series, and any ``±inf`` always raise ``ValueError``.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np

ROLES: tuple[str, ...] = ("digit", "sign", "separator", "other")
"""Role names; the integer code of a role is its index in this tuple."""
DIGIT, SIGN, SEPARATOR, OTHER = range(4)

NanPolicy = Literal["interpolate", "error"]


def as_series(x, *, nan: NanPolicy = "interpolate", name: str = "series") -> np.ndarray:
    """Validate one series and return it as a 1-D float64 array with no NaN.

    Raises ``ValueError`` for an empty series, a non-1-D input, ``±inf``, a
    series with no finite value, or (with ``nan="error"``) any NaN.
    """
    if nan not in ("interpolate", "error"):
        raise ValueError(f"nan must be 'interpolate' or 'error', got {nan!r}")
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: cannot convert to a float array ({exc})") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D series, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: empty series (length 0)")
    inf = np.isinf(arr)
    if inf.any():
        raise ValueError(f"{name}: infinite value at index {int(np.flatnonzero(inf)[0])}")
    missing = np.isnan(arr)
    if not missing.any():
        return arr
    if missing.all():
        raise ValueError(f"{name}: every value is NaN")
    if nan == "error":
        raise ValueError(
            f"{name}: NaN at index {int(np.flatnonzero(missing)[0])} "
            f"({int(missing.sum())} missing); pass nan='interpolate' to fill them"
        )
    idx = np.arange(arr.size)
    # np.interp holds the end values constant outside the observed range,
    # which is exactly "nearest observed value" for leading/trailing gaps.
    filled = arr.copy()
    filled[missing] = np.interp(idx[missing], idx[~missing], arr[~missing])
    warnings.warn(
        f"{name}: filled {int(missing.sum())} NaN value(s) by linear interpolation "
        f"(first at index {int(np.flatnonzero(missing)[0])}); pass nan='error' to refuse",
        UserWarning,
        stacklevel=3,
    )
    return filled
