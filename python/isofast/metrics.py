"""Forecast accuracy: NMSE (the reference study's metric), MSE, MAE, MASE and
the sample CRPS, per series and pooled.

Definitions (ŷ forecast, y truth, s = 1..S series, t = 1..H horizon steps):

* **NMSE** = Σ_{s,t}(ŷ − y)² / Σ_{s,t} y², pooled over all series and steps
  — the definition of Shelim et al. (2025). Per series: the same sums over t.
* **MSE** = mean (ŷ − y)², **MAE** = mean |ŷ − y| over all points.
* **MASE** (Hyndman & Koehler 2006) = MAE_s / scale_s with the in-sample
  seasonal-naive scale from the context x: scale_s = mean_{t>m}|x_t − x_{t−m}|
  (season m, default 1). Pooled: the mean over series (the M4 convention).
  A constant context has scale 0: its MASE is NaN (counted in
  ``n_mase_undefined``) and left out of the pooled mean.
* **CRPS** from samples x_1..x_n (Gneiting & Raftery 2007, energy form):
  CRPS(F, y) = E|X − y| − ½ E|X − X′|, estimated by

  - ``"standard"`` (default): (1/n)Σ|x_i − y| − 1/(2n²) Σ_{i,j}|x_i − x_j|,
    the CRPS of the empirical distribution of the samples (as
    ``properscoring.crps_ensemble``); biased upwards for the model's
    distribution at small n;
  - ``"fair"``: the same with 1/(2n(n−1)) — unbiased for the CRPS of the
    distribution the samples come from (Ferro 2014; Zamo & Naveau 2018);
    needs n ≥ 2.

  Σ_{i,j}|x_i − x_j| = 2 Σ_k (2k − n + 1) x_(k) over the sorted samples
  (k = 0..n−1), so each point costs O(n log n). Reported: the mean CRPS over
  points, and ``crps_normalized`` = Σ CRPS / Σ|y| (scale free).

Missing targets (NaN in y) are left out of every sum (and counted); NaN or
Inf in a forecast is an error.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from isofast.data.series import as_series_list
from isofast.report import jsonable

__all__ = ["ForecastMetrics", "crps", "evaluate", "mae", "mase", "mse", "nmse"]


def _rows(x: Any, name: str) -> list:
    """A 1-D series, an S×H array or a list of 1-D arrays → list of float64 rows."""
    return as_series_list(x, name=name, allow_empty=True)


def _pair(y_true: Any, y_pred: Any):
    ys, ps = _rows(y_true, "y_true"), _rows(y_pred, "y_pred")
    if len(ys) != len(ps):
        raise ValueError(f"{len(ys)} true series but {len(ps)} forecasts")
    for i, (y, p) in enumerate(zip(ys, ps)):
        if y.shape != p.shape:
            raise ValueError(f"series {i}: truth has {y.size} steps, forecast {p.size}")
        bad = ~np.isfinite(p)
        if bad.any():
            raise ValueError(f"forecast of series {i} is not finite at step {int(np.flatnonzero(bad)[0])}")
        if np.isinf(y).any():
            raise ValueError(f"truth of series {i} holds ±Inf")
    return ys, ps


def nmse(y_true: Any, y_pred: Any) -> float:
    """Σ(ŷ − y)²/Σy² pooled over every series and step (the study's NMSE)."""
    ys, ps = _pair(y_true, y_pred)
    num = sum(float(np.nansum((p - y) ** 2)) for y, p in zip(ys, ps))
    den = sum(float(np.nansum(y**2)) for y in ys)
    return num / den if den > 0 else float("nan")


def mse(y_true: Any, y_pred: Any) -> float:
    """Mean squared error over all observed points."""
    ys, ps = _pair(y_true, y_pred)
    e = np.concatenate([(p - y) for y, p in zip(ys, ps)])
    return float(np.nanmean(e**2))


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error over all observed points."""
    ys, ps = _pair(y_true, y_pred)
    e = np.concatenate([(p - y) for y, p in zip(ys, ps)])
    return float(np.nanmean(np.abs(e)))


def _mase_scale(ctx: np.ndarray, season: int) -> float:
    if ctx.size <= season:
        raise ValueError(f"MASE needs a context longer than the season ({season}), got {ctx.size} points")
    d = np.abs(ctx[season:] - ctx[:-season])
    return float(np.nanmean(d)) if np.isfinite(d).any() else float("nan")


def mase(y_true: Any, y_pred: Any, context: Any, *, season: int = 1) -> np.ndarray:
    """Per-series MASE = MAE / mean|x_t − x_{t−m}| over the context."""
    ys, ps = _pair(y_true, y_pred)
    cs = _rows(context, "context")
    if len(cs) != len(ys):
        raise ValueError(f"{len(cs)} contexts but {len(ys)} series")
    if not isinstance(season, (int, np.integer)) or season < 1:
        raise ValueError(f"season must be a positive int, got {season!r}")
    out = np.empty(len(ys))
    for i, (y, p, c) in enumerate(zip(ys, ps, cs)):
        sc = _mase_scale(c, int(season))
        err = float(np.nanmean(np.abs(p - y)))
        out[i] = err / sc if sc > 0 else float("nan")
    return out


def crps(samples: Any, y: Any, *, axis: int = 0, estimator: str = "standard") -> np.ndarray:
    """CRPS of sample forecasts at every point of ``y`` (energy form, module
    docstring). ``samples`` holds the samples along ``axis`` and otherwise has
    ``y``'s shape: (n,) + y.shape by default; ``axis=1`` reads the (S, n, H)
    layout of :class:`isofast.forecast.ForecastResult` against y of shape (S, H).
    """
    if estimator not in ("standard", "fair"):
        raise ValueError(f"estimator must be 'standard' or 'fair', got {estimator!r}")
    y = np.asarray(y, np.float64)
    x = np.moveaxis(np.asarray(samples, np.float64), axis, 0)
    if x.shape[1:] != y.shape:
        raise ValueError(
            f"samples of shape {np.shape(samples)} (sample axis {axis}) do not match targets of shape {y.shape}"
        )
    if not np.isfinite(x).all():
        raise ValueError("samples hold NaN or Inf")
    n = x.shape[0]
    if n < 1 or (estimator == "fair" and n < 2):
        raise ValueError(f"the {estimator} CRPS needs at least {1 if estimator == 'standard' else 2} samples, got {n}")
    term1 = np.abs(x - y).mean(axis=0)
    xs = np.sort(x, axis=0)
    k = np.arange(n, dtype=np.float64).reshape((n,) + (1,) * y.ndim)
    pair_sum = 2.0 * ((2.0 * k - n + 1.0) * xs).sum(axis=0)  # Σ_{i,j}|x_i − x_j|
    denom = 2.0 * n * n if estimator == "standard" else 2.0 * n * (n - 1)
    return term1 - pair_sum / denom


@dataclass
class ForecastMetrics:
    """Pooled and per-series accuracy of point (and sample) forecasts.

    Pooled: ``nmse`` (Σ over everything, study definition), ``mse``, ``mae``,
    ``mase`` (mean of per-series values), ``crps`` (mean over points) and
    ``crps_normalized`` (Σ CRPS / Σ|y|). ``per_series`` holds arrays of the
    same metrics per series. Sample metrics are None without samples, MASE
    without contexts.
    """

    n_series: int
    n_points: int
    n_missing: int
    nmse: float
    mse: float
    mae: float
    mase: float | None = None
    crps: float | None = None
    crps_normalized: float | None = None
    season: int = 1
    crps_estimator: str = "standard"
    n_mase_undefined: int = 0
    per_series: dict = field(default_factory=dict)

    def to_dict(self, per_series: bool = True) -> dict:
        d = asdict(self)
        if not per_series:
            d.pop("per_series")
        return jsonable(d)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def evaluate(
    y_true: Any,
    y_pred: Any = None,
    *,
    samples: Any = None,
    context: Any = None,
    season: int = 1,
    crps_estimator: str = "standard",
) -> ForecastMetrics:
    """All metrics of the module for truths ``y_true`` (S×H, or a list of 1-D)
    and point forecasts ``y_pred`` (default: the median of ``samples``).

    ``samples``: (S, n, H) or a list of (n, H_s) arrays; ``context``: the
    contexts the forecasts were made from (for MASE).
    """
    ys = _rows(y_true, "y_true")
    smp = None
    if samples is not None:
        if isinstance(samples, np.ndarray) and samples.ndim == 3:
            smp = [samples[i] for i in range(samples.shape[0])]
        else:
            smp = [np.asarray(s, np.float64) for s in samples]
        if len(smp) != len(ys):
            raise ValueError(f"{len(smp)} sample sets but {len(ys)} series")
        for i, (s, y) in enumerate(zip(smp, ys)):
            if s.ndim != 2 or s.shape[1] != y.size:
                raise ValueError(f"samples of series {i} must be (n, {y.size}), got {s.shape}")
    if y_pred is None:
        if smp is None:
            raise ValueError("give point forecasts y_pred, samples, or both")
        y_pred = [np.median(s, axis=0) for s in smp]
    ys, ps = _pair(ys, y_pred)
    S = len(ys)
    obs = [np.isfinite(y) for y in ys]
    n_points = int(sum(o.sum() for o in obs))
    n_missing = int(sum((~o).sum() for o in obs))
    if n_points == 0:
        raise ValueError("no observed target value to score")
    per: dict = {
        "nmse": np.array(
            [np.nansum((p - y) ** 2) / np.nansum(y**2) if np.nansum(y**2) > 0 else np.nan for y, p in zip(ys, ps)]
        ),
        "mse": np.array([np.nanmean((p - y) ** 2) if o.any() else np.nan for y, p, o in zip(ys, ps, obs)]),
        "mae": np.array([np.nanmean(np.abs(p - y)) if o.any() else np.nan for y, p, o in zip(ys, ps, obs)]),
    }
    out = ForecastMetrics(
        n_series=S,
        n_points=n_points,
        n_missing=n_missing,
        nmse=nmse(ys, ps),
        mse=mse(ys, ps),
        mae=mae(ys, ps),
        season=int(season),
        crps_estimator=crps_estimator,
    )
    if context is not None:
        m = mase(ys, ps, context, season=season)
        per["mase"] = m
        out.n_mase_undefined = int(np.isnan(m).sum())
        out.mase = float(np.nanmean(m)) if np.isfinite(m).any() else float("nan")
    if smp is not None:
        pts = [crps(s, np.where(o, y, 0.0), estimator=crps_estimator) for s, y, o in zip(smp, ys, obs)]
        per["crps"] = np.array([float(c[o].mean()) if o.any() else np.nan for c, o in zip(pts, obs)])
        total = sum(float(c[o].sum()) for c, o in zip(pts, obs))
        out.crps = total / n_points
        scale = sum(float(np.abs(y[o]).sum()) for y, o in zip(ys, obs))
        out.crps_normalized = total / scale if scale > 0 else float("nan")
    out.per_series = per
    return out
