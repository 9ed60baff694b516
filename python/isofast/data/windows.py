"""Context/horizon windows, time-ordered splits and per-instance scalers.

A window of series ``s`` starting at ``t`` is ``context = s[t : t + C]`` and
``target = s[t + C : t + C + H]``; ``Windows.start`` records ``t``.

Modes of :func:`make_windows`:

* ``"first"``: one window per series at ``t = 0``; the reference study's
  convention (synthetic sets: ``input = x[:, :500]``, ``target = x[:, 500:564]``).
* ``"last"``: one window per series ending at the series' end, the standard
  forecasting evaluation (``t = len - C - H``).
* ``"sliding"``: ``t = 0, stride, 2 stride, ...`` while the window fits;
  ``stride`` defaults to ``H`` so that targets tile the series without overlap.
* ``"random"``: ``n`` windows drawn with replacement, each by picking a series
  uniformly and then a start uniformly among those that fit; the study's
  ``sample_segments`` for long real series.

With ``n`` set, the deterministic modes keep a seeded uniform subset of ``n``
windows (without replacement, in their original order), as the study does when
a dataset has more series than ``n_samples``.

Scalers are fitted on the context only (never on the target) and per instance
(one location/scale per row), so nothing of the horizon leaks into the inputs:

* :class:`MeanScaler` (Chronos): ``x / s`` with ``s = nanmean(|context|)``, or
  ``s = 1`` when that is not positive (all zeros or all NaN).
* :class:`StandardScaler`: ``(x - m) / (sd + 1e-5)`` with the NaN-aware
  mean and population standard deviation of the context.
* :class:`MinMaxScaler`: ``(x - min) / (max - min)``, range 1 when constant.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any
from collections.abc import Sequence

import numpy as np

from .series import Series, as_series_list

__all__ = [
    "Windows",
    "make_windows",
    "train_test_split",
    "MeanScaler",
    "StandardScaler",
    "MinMaxScaler",
    "MODES",
]

MODES = ("first", "last", "sliding", "random")

SeriesInput = np.ndarray | Series | Sequence[np.ndarray | Series | Sequence[float]]


@dataclass
class Windows:
    """A batch of (context, target) pairs.

    ``context`` is ``(n, context_len)`` and ``target`` ``(n, horizon)``, both
    float64; ``series_id[i]`` indexes the input series and ``start[i]`` is the
    position of the first context point in that series.
    """

    context: np.ndarray
    target: np.ndarray
    series_id: np.ndarray
    start: np.ndarray

    def __post_init__(self) -> None:
        self.context = np.asarray(self.context, dtype=np.float64)
        self.target = np.asarray(self.target, dtype=np.float64)
        self.series_id = np.asarray(self.series_id, dtype=np.int64)
        self.start = np.asarray(self.start, dtype=np.int64)
        n = self.context.shape[0]
        if self.context.ndim != 2 or self.target.ndim != 2:
            raise ValueError("context and target must be 2-D (n, length)")
        if not (self.target.shape[0] == self.series_id.shape[0] == self.start.shape[0] == n):
            raise ValueError("context, target, series_id and start must have the same length")

    def __len__(self) -> int:
        return int(self.context.shape[0])

    def __repr__(self) -> str:
        return (
            f"Windows(n={len(self)}, context_len={self.context_len}, horizon={self.horizon}, "
            f"series={np.unique(self.series_id).size})"
        )

    @property
    def context_len(self) -> int:
        return int(self.context.shape[1])

    @property
    def horizon(self) -> int:
        return int(self.target.shape[1])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN as None)."""

        def rows(a: np.ndarray) -> list:
            return [[None if np.isnan(v) else float(v) for v in r] for r in a]

        return {
            "n": len(self),
            "context_len": self.context_len,
            "horizon": self.horizon,
            "context": rows(self.context),
            "target": rows(self.target),
            "series_id": self.series_id.tolist(),
            "start": self.start.tolist(),
        }


def _positive_int(name: str, v: Any, *, allow_zero: bool = False) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {v}")
    return int(v)


def make_windows(
    series: SeriesInput,
    context: int,
    horizon: int,
    *,
    mode: str = "first",
    stride: int | None = None,
    n: int | None = None,
    seed: int | None = 0,
    skip_short: bool = False,
) -> Windows:
    """Cut (context, target) windows from one or many series; see the module docstring.

    A series shorter than ``context + horizon`` raises ``ValueError`` giving
    both lengths, unless ``skip_short=True`` (the study drops such series).
    ``horizon=0`` gives empty targets (context-only windows).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    C = _positive_int("context", context)
    H = _positive_int("horizon", horizon, allow_zero=True)
    W = C + H
    arrays = as_series_list(series)
    if not arrays:
        raise ValueError("no series given")
    usable: list[int] = []
    for i, a in enumerate(arrays):
        if a.shape[0] >= W:
            usable.append(i)
        elif not skip_short:
            which = "the series" if len(arrays) == 1 else f"series {i}"
            raise ValueError(
                f"window of {W} points (context {C} + horizon {H}) is longer than {which} ({a.shape[0]} points)"
            )
    if not usable:
        raise ValueError(f"no series has the {W} points a window needs (context {C} + horizon {H})")
    if stride is not None:
        stride = _positive_int("stride", stride)
    if n is not None:
        n = _positive_int("n", n, allow_zero=True)
    rng = np.random.default_rng(seed)

    sid: np.ndarray
    st: np.ndarray
    if mode == "first":
        sid = np.array(usable, dtype=np.int64)
        st = np.zeros(len(usable), dtype=np.int64)
    elif mode == "last":
        sid = np.array(usable, dtype=np.int64)
        st = np.array([arrays[i].shape[0] - W for i in usable], dtype=np.int64)
    elif mode == "sliding":
        step = stride if stride is not None else max(H, 1)
        per = [np.arange(0, arrays[i].shape[0] - W + 1, step, dtype=np.int64) for i in usable]
        sid = np.concatenate([np.full(p.shape[0], i, dtype=np.int64) for i, p in zip(usable, per)])
        st = np.concatenate(per)
    else:  # random
        if n is None:
            raise ValueError("mode='random' needs n, the number of windows to draw")
        # Like the study: a series uniformly, then a start uniformly in it.
        sid = np.asarray(usable, dtype=np.int64)[rng.integers(0, len(usable), size=n)]
        hi = np.array([arrays[i].shape[0] - W + 1 for i in sid], dtype=np.int64)
        st = (rng.random(n) * hi).astype(np.int64) if n else np.zeros(0, dtype=np.int64)
        st = np.minimum(st, hi - 1)
    if mode != "random" and n is not None and n < sid.shape[0]:
        keep = np.sort(rng.choice(sid.shape[0], size=n, replace=False))
        sid, st = sid[keep], st[keep]

    m = sid.shape[0]
    ctx = np.empty((m, C), dtype=np.float64)
    tgt = np.empty((m, H), dtype=np.float64)
    for r in range(m):
        a, t = arrays[sid[r]], st[r]
        ctx[r] = a[t : t + C]
        tgt[r] = a[t + C : t + W]
    return Windows(ctx, tgt, sid, st)


def train_test_split(values: Any, test_size: int | float | None = None, *, horizon: int | None = None):
    """Split along time: the last ``test_size`` points are the test part.

    ``test_size`` is a count (int) or a fraction in (0, 1) (rounded up, at
    least 1 point); ``horizon=h`` is the same as ``test_size=h``. Works on a
    1-D array, a ``(n_series, L)`` array (split along the last axis) or a
    :class:`Series` (timestamps split alike). Returns ``(train, test)`` with
    every train point strictly before every test point.
    """
    if (test_size is None) == (horizon is None):
        raise ValueError("give exactly one of test_size or horizon")
    size: int | float = horizon if horizon is not None else test_size  # type: ignore[assignment]
    is_series = isinstance(values, Series)
    arr = values.values if is_series else np.asarray(values, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise ValueError(f"values must be 1-D or 2-D, got shape {arr.shape}")
    L = arr.shape[-1]
    if isinstance(size, (float, np.floating)):
        if 0 < size < 1:
            k = max(1, int(np.ceil(size * L)))
        elif size >= 1 and float(size).is_integer():
            k = int(size)
        else:
            raise ValueError(f"test_size must be a count >= 1 or a fraction in (0, 1), got {size}")
    else:
        k = _positive_int("horizon" if horizon is not None else "test_size", size)
    if k >= L:
        raise ValueError(f"test part of {k} points leaves no training data in a series of {L} points")
    train, test = arr[..., : L - k], arr[..., L - k :]
    if not is_series:
        return train.copy(), test.copy()
    ts = values.timestamps
    mk = lambda v, t, part: Series(  # noqa: E731
        values.name,
        v.copy(),
        None if t is None else t.copy(),
        values.frequency,
        values.domain,
        {**values.meta, "split": part},
    )
    return (
        mk(train, None if ts is None else ts[: L - k], "train"),
        mk(test, None if ts is None else ts[L - k :], "test"),
    )


# ------------------------------------------------------------------ scalers


class _Scaler:
    """Per-instance affine scaler ``y = (x - loc) / scale``, fitted on contexts."""

    loc: np.ndarray | None
    scale: np.ndarray | None

    def __init__(self) -> None:
        self.loc = None
        self.scale = None
        self._one_d = False

    @staticmethod
    def _rows(x: Any) -> tuple[np.ndarray, bool]:
        a = np.asarray(x, dtype=np.float64)
        if a.ndim == 1:
            return a[None, :], True
        if a.ndim == 2:
            return a, False
        raise ValueError(f"expected a 1-D series or a 2-D (n, length) batch, got shape {a.shape}")

    def _stats(self, ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def fit(self, context: Any) -> _Scaler:
        """Fit one (loc, scale) per row of ``context`` (a 1-D array is one row)."""
        ctx, self._one_d = self._rows(context)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows handled below
            loc, scale = self._stats(ctx)
        self.loc = loc.reshape(-1, 1)
        self.scale = scale.reshape(-1, 1)
        return self

    def _check(self, a: np.ndarray) -> None:
        if self.scale is None:
            raise ValueError(f"{type(self).__name__} is not fitted; call fit(context) first")
        if a.shape[0] != self.scale.shape[0]:
            raise ValueError(f"{a.shape[0]} rows given, but the scaler was fitted on {self.scale.shape[0]}")

    def transform(self, x: Any) -> np.ndarray:
        a, one_d = self._rows(x)
        self._check(a)
        out = (a - self.loc) / self.scale
        return out[0] if one_d else out

    def inverse_transform(self, y: Any) -> np.ndarray:
        a, one_d = self._rows(y)
        self._check(a)
        out = a * self.scale + self.loc
        return out[0] if one_d else out

    def fit_transform(self, context: Any) -> np.ndarray:
        return self.fit(context).transform(context)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": type(self).__name__,
            "loc": None if self.loc is None else self.loc.ravel().tolist(),
            "scale": None if self.scale is None else self.scale.ravel().tolist(),
        }


class MeanScaler(_Scaler):
    """Chronos' mean scaling: ``x / s``, ``s = nanmean(|context|)``, ``s = 1`` if not > 0."""

    def _stats(self, ctx):
        s = np.nanmean(np.abs(ctx), axis=1)
        s = np.where(s > 0, s, 1.0)  # NaN (all missing) and 0 both fail "> 0"
        return np.zeros_like(s), s


class StandardScaler(_Scaler):
    """``(x - mean) / (std + eps)`` per instance (NaN-aware, population std, eps = 1e-5)."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = float(eps)

    def _stats(self, ctx):
        m = np.nanmean(ctx, axis=1)
        sd = np.nanstd(ctx, axis=1)
        m = np.where(np.isnan(m), 0.0, m)
        sd = np.where(np.isnan(sd), 0.0, sd)
        return m, sd + self.eps


class MinMaxScaler(_Scaler):
    """``(x - min) / (max - min)`` per instance (NaN-aware; range 1 when constant)."""

    def _stats(self, ctx):
        lo = np.nanmin(ctx, axis=1)
        hi = np.nanmax(ctx, axis=1)
        lo = np.where(np.isnan(lo), 0.0, lo)
        rng = hi - lo
        rng = np.where(np.isfinite(rng) & (rng > 0), rng, 1.0)
        return lo, rng
