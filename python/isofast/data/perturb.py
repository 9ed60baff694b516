"""Input perturbations used to stress forecasting models.

Every function returns new arrays (inputs are never mutated), is seeded, and
accepts either an array (perturbed as a whole) or a
:class:`~isofast.data.windows.Windows` batch, in which case only the
**context** (the model input) is perturbed and the target is left as is.

* :func:`add_noise` is the reference study's ``noised_input a``:
  ``x + e``, ``e ~ N(0, (a * std(x))**2)`` i.i.d., where ``std`` is taken over
  the *whole* input batch with Bessel's correction (the study calls
  ``torch.std(inp)`` on the full ``(n, context)`` tensor). ``per_series=True``
  uses each row's own std instead.
* :func:`shorten_context` is the study's "harder" setting: keep the last
  ``floor(fraction * C)`` context points (default 2/3), so the context still
  ends right before the unchanged target. (The study re-cuts its segments with
  ``int(C * 2 / 3)`` input points; the kept length is the same.)
* :func:`add_missing` sets exactly ``round(rate * m)`` of the ``m`` observed
  values to NaN, chosen uniformly without replacement.
* :func:`level_shift` adds ``size`` to every point from index ``at`` on.
* :func:`add_outliers` adds ``+-scale * std(x)`` (random sign) to exactly
  ``round(rate * m)`` observed points chosen uniformly.

NaN in the input stays NaN and is ignored by the statistics (``nanstd``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np

from .windows import Windows

__all__ = ["add_noise", "shorten_context", "add_missing", "level_shift", "add_outliers"]

T = TypeVar("T", np.ndarray, Windows)
ArrayOrWindows = np.ndarray | Windows


def _split(x: Any) -> tuple[np.ndarray, Windows | None]:
    if isinstance(x, Windows):
        return x.context, x
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"expected numeric values, got dtype {a.dtype}")
    return a.astype(np.float64, copy=True), None


def _join(values: np.ndarray, w: Windows | None) -> Any:
    if w is None:
        return values
    return replace(w, context=values, target=w.target.copy(), series_id=w.series_id.copy(), start=w.start.copy())


def _rate(rate: float) -> float:
    r = float(rate)
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    return r


def _pick(rng: np.random.Generator, observed: np.ndarray, rate: float) -> np.ndarray:
    """Flat indices of exactly round(rate * m) of the m observed entries."""
    idx = np.flatnonzero(observed)
    k = int(round(rate * idx.size))
    return rng.choice(idx, size=k, replace=False) if k else idx[:0]


def add_noise(x: T, a: float, seed: int | None = 0, *, per_series: bool = False) -> T:
    """``x + N(0, (a * std(x))**2)``: the study's ``noised_input a`` (inputs only).

    ``std`` is the Bessel-corrected NaN-aware std of all of ``x`` (of each row
    with ``per_series=True``). ``a = 0`` returns an unchanged copy.
    """
    a = float(a)
    if not a >= 0:
        raise ValueError(f"noise level a must be >= 0, got {a}")
    vals, w = _split(x)
    out = np.array(vals, dtype=np.float64, copy=True)
    if a == 0 or out.size == 0:
        return _join(out, w)
    if per_series and out.ndim == 2:
        sd = np.nanstd(out, axis=1, ddof=1, keepdims=True)
    else:
        sd = np.nanstd(out, ddof=1)
    rng = np.random.default_rng(seed)
    out += rng.standard_normal(out.shape) * (a * sd)
    return _join(out, w)


def shorten_context(windows: T, fraction: float = 2 / 3) -> T:
    """Keep the last ``floor(fraction * C)`` context points (the study's "harder" setting).

    Accepts a :class:`Windows` (``start`` moves forward accordingly) or a
    ``(n, C)`` / ``(C,)`` array of contexts.
    """
    f = float(fraction)
    if not 0.0 < f <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    vals, w = _split(windows)
    C = vals.shape[-1]
    # floor with a tolerance: 90 * (2/3) is 59.999999999999993 in floating point
    keep = int(math.floor(C * f + 1e-9))
    if keep < 1:
        raise ValueError(f"fraction {f} of a {C}-point context keeps no point")
    out = np.array(vals[..., C - keep :], dtype=np.float64, copy=True)
    if w is None:
        return out
    return Windows(out, w.target.copy(), w.series_id.copy(), w.start + (C - keep))


def add_missing(x: T, rate: float, seed: int | None = 0) -> T:
    """Set exactly ``round(rate * m)`` of the ``m`` observed values to NaN."""
    r = _rate(rate)
    vals, w = _split(x)
    out = np.array(vals, dtype=np.float64, copy=True)
    rng = np.random.default_rng(seed)
    out.reshape(-1)[_pick(rng, ~np.isnan(out).reshape(-1), r)] = np.nan
    return _join(out, w)


def level_shift(x: T, at: int, size: float) -> T:
    """Add ``size`` to every point at time index ``>= at`` (last axis; negative
    ``at`` counts from the end, as in Python slicing)."""
    if isinstance(at, bool) or not isinstance(at, (int, np.integer)):
        raise TypeError(f"at must be an int, got {type(at).__name__}")
    vals, w = _split(x)
    L = vals.shape[-1]
    if not -L <= at <= L:
        raise ValueError(f"at={at} is outside a series of {L} points")
    out = np.array(vals, dtype=np.float64, copy=True)
    out[..., at:] += float(size)
    return _join(out, w)


def add_outliers(x: T, rate: float, scale: float = 5.0, seed: int | None = 0) -> T:
    """Add ``+-scale * std(x)`` (random sign; Bessel-corrected NaN-aware std of all
    of ``x``) to exactly ``round(rate * m)`` of the ``m`` observed points."""
    r = _rate(rate)
    scale = float(scale)
    if not scale >= 0:
        raise ValueError(f"scale must be >= 0, got {scale}")
    vals, w = _split(x)
    out = np.array(vals, dtype=np.float64, copy=True)
    flat = out.reshape(-1)
    rng = np.random.default_rng(seed)
    idx = _pick(rng, ~np.isnan(flat), r)
    if idx.size:
        sd = float(np.nanstd(flat, ddof=1)) if flat.size > 1 else 0.0
        flat[idx] += rng.choice([-1.0, 1.0], size=idx.size) * scale * sd
    return _join(out, w)
