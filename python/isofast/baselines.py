"""Forecast baselines and skill relative to seasonal naive.

Two classical baselines for context/horizon windows, in the layout of
:func:`isofast.metrics.evaluate` (``samples`` (n, S, H), ``point`` (n, H)):

* :func:`seasonal_naive`: ŷ_{T+h} = x_{T+h−m·ceil(h/m)}, the last observed
  season repeated (Hyndman & Athanasopoulos, "Forecasting: Principles and
  Practice", 3rd ed., Sec. 5.2). One sample: a point forecast, whose CRPS is
  its absolute error.
* :func:`ets`: exponential smoothing in state-space form (FPP ch. 8;
  statsmodels' ``ETSModel``) chosen per window by AICc, with simulated sample
  paths.

Skill as GIFT-Eval (Aksu et al. 2024, "GIFT-Eval: A Benchmark for General Time
Series Forecasting Model Evaluation") and fev (Shchur et al. 2025, "fev-bench")
report it: a model's MASE or CRPS on a task divided by seasonal naive's on the
same task (:func:`skill`), then the geometric mean of these ratios over tasks
(:func:`geometric_mean_skill`). Below 1 beats seasonal naive.

Seasonal periods for datasets and KernelSynth presets:
:func:`isofast.data.season_length`, :func:`isofast.data.preset_season`,
:func:`isofast.data.dataset_season`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isofast.data.series import as_series_list
from isofast.errors import EmptyInputError, InputError

__all__ = [
    "ETS_CANDIDATES",
    "BaselineForecast",
    "ets",
    "geometric_mean_skill",
    "seasonal_naive",
    "skill",
]


@dataclass
class BaselineForecast:
    """Forecasts of a baseline for n windows.

    ``samples`` (n, S, H) float64 (S = 1 for seasonal naive), ``point`` (n, H),
    ``season`` the period asked for, ``notes`` human-readable remarks (fallbacks,
    configurations chosen), ``n_fallback`` windows that did not get the method
    asked for (seasonal naive: contexts shorter than the season, forecast
    naively; ETS: every candidate failed, forecast by seasonal naive).
    ``configs`` (ETS) the configuration chosen per window.
    """

    name: str
    samples: np.ndarray
    point: np.ndarray
    season: int
    notes: list = field(default_factory=list)
    n_fallback: int = 0
    configs: list = field(default_factory=list)

    @property
    def n_windows(self) -> int:
        return int(self.point.shape[0])

    @property
    def horizon(self) -> int:
        return int(self.point.shape[1])

    def to_dict(self, arrays: bool = True) -> dict:
        """Plain-Python dict (JSON-ready); ``arrays=False`` leaves out samples and point."""
        d: dict[str, Any] = {
            "name": self.name,
            "season": int(self.season),
            "n_windows": self.n_windows,
            "horizon": self.horizon,
            "n_samples": int(self.samples.shape[1]),
            "notes": list(self.notes),
            "n_fallback": int(self.n_fallback),
            "configs": list(self.configs),
        }
        if arrays:
            d["samples"] = self.samples.tolist()
            d["point"] = self.point.tolist()
        return d


# ----------------------------------------------------------------- checks
def _int_arg(v: Any, name: str, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")  # noqa: TRY004 - the API promises ValueError
    if int(v) < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    return int(v)


def _contexts(contexts: Any) -> list[np.ndarray]:
    """Contexts (anything :func:`isofast.data.series.as_series_list` reads)
    → list of non-empty, finite float64 1-D arrays. A baseline has no NaN
    policy: a gap in a context is refused, not filled."""
    rows = as_series_list(contexts, name="contexts")
    for i, a in enumerate(rows):
        if a.size == 0:
            raise EmptyInputError(f"contexts[{i}] is empty")
        bad = ~np.isfinite(a)
        if bad.any():
            raise InputError(f"contexts[{i}] is not finite at position {int(np.flatnonzero(bad)[0])}")
    return rows


def _snaive_path(x: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """ŷ_{T+h} = x_{T+h−m·ceil(h/m)}, h = 1..H (x holds at least m points)."""
    T = x.size
    h = np.arange(1, horizon + 1)
    return x[T + h - m * np.ceil(h / m).astype(np.int64) - 1].astype(np.float64)


# ----------------------------------------------------------- seasonal naive
def seasonal_naive(contexts: Any, horizon: int, *, season: int = 1) -> BaselineForecast:
    """Seasonal naive: ŷ_{T+h} = x_{T+h−m·ceil(h/m)} (FPP Sec. 5.2).

    The last m observations repeated over the horizon (m = ``season``; m = 1
    is naive, the last value). A context shorter than m is forecast naively
    (m = 1) and noted (``n_fallback``). ``contexts``: a 2-D array (n, T) or a
    list of 1-D arrays of any lengths. Returns one sample per window
    (``samples`` (n, 1, H)): the CRPS of a point forecast is its absolute error.
    Cost: O(n·H), microseconds per window.
    """
    horizon = _int_arg(horizon, "horizon")
    season = _int_arg(season, "season")
    rows = _contexts(contexts)
    point = np.empty((len(rows), horizon))
    short = []
    for i, x in enumerate(rows):
        m = season
        if x.size < season:
            m = 1
            short.append(i)
        point[i] = _snaive_path(x, horizon, m)
    notes = []
    if short:
        notes.append(
            f"{len(short)} context(s) shorter than the season {season} forecast naively (m = 1): "
            f"windows {short[:10]}{' …' if len(short) > 10 else ''}"
        )
    return BaselineForecast(
        "seasonal_naive",
        point[:, None, :].copy(),
        point,
        season,
        notes,
        len(short),
        ["naive" if i in set(short) else f"snaive(m={season})" for i in range(len(rows))],
    )


# --------------------------------------------------------------------- ETS
#: Candidate configurations (trend, damped, seasonal), all with additive error:
#: ANN, AAdN, ANA, AAdA in FPP's notation (error, trend, season).
ETS_CANDIDATES: tuple[tuple[str | None, bool, str | None], ...] = (
    (None, False, None),
    ("add", True, None),
    (None, False, "add"),
    ("add", True, "add"),
)

#: Optimizer settings of every ETS fit (statsmodels' defaults except maxiter).
ETS_FIT_KWARGS: dict[str, Any] = {"disp": False, "maxiter": 200}


def _config_name(trend, damped, seasonal) -> str:
    t = "N" if trend is None else ("Ad" if damped else "A")
    s = "N" if seasonal is None else "A"
    return f"ETS(A,{t},{s})"


def _fit_ets(z: np.ndarray, trend, damped, seasonal, season: int):
    """One statsmodels ETSModel fit (error additive) of the standardised context z."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    model = ETSModel(
        z,
        error="add",
        trend=trend,
        damped_trend=bool(damped) if trend is not None else False,
        seasonal=seasonal,
        seasonal_periods=season if seasonal is not None else None,
        initialization_method="heuristic" if z.size >= 10 else "estimated",
    )
    return model.fit(**ETS_FIT_KWARGS)


def _quiet_fit(z, trend, damped, seasonal, season):
    """A fit with every warning caught: (result, None) or (None, reason)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with np.errstate(all="ignore"):
            try:
                res = _fit_ets(z, trend, damped, seasonal, season)
            except Exception as e:  # noqa: BLE001 - any failure of one candidate is a skip
                return None, f"{type(e).__name__}: {e}"
    conv = [w for w in caught if "Convergence" in type(w.message).__name__ or "converge" in str(w.message).lower()]
    if conv:
        return None, f"not converged: {str(conv[0].message)[:80]}"
    aicc = float(getattr(res, "aicc", np.nan))
    if not np.isfinite(aicc) or not np.isfinite(np.asarray(res.params, np.float64)).all():
        return None, "non-finite AICc or parameters"
    return res, None


def ets(
    contexts: Any,
    horizon: int,
    *,
    season: int = 1,
    n_samples: int = 100,
    seed: int = 0,
) -> BaselineForecast:
    """Exponential smoothing (ETS, FPP ch. 8), the configuration chosen per window by AICc.

    Model (additive error, FPP Sec. 8.5; damped trend φ, season m):

        y_t = ℓ_{t−1} + φ b_{t−1} + s_{t−m} + ε_t,   ε_t ~ N(0, σ²)
        ℓ_t = ℓ_{t−1} + φ b_{t−1} + α ε_t
        b_t = φ b_{t−1} + β ε_t
        s_t = s_{t−m} + γ ε_t

    Candidates (:data:`ETS_CANDIDATES`): ETS(A,N,N), ETS(A,Ad,N) and, when
    ``season`` > 1 and the context holds at least 2 full seasons, ETS(A,N,A)
    and ETS(A,Ad,A). Each is fitted by maximum likelihood,
    ``statsmodels.tsa.exponential_smoothing.ets.ETSModel(z, error="add", trend=…,
    damped_trend=…, seasonal=…, seasonal_periods=m,
    initialization_method="heuristic").fit(disp=False, maxiter=200)``
    (:data:`ETS_FIT_KWARGS`; ``"estimated"`` for contexts under 10 points),
    and the lowest AICc = −2 log L + 2k + 2k(k+1)/(T−k−1) wins. For speed the
    initial states come from statsmodels' heuristic (Hyndman et al. 2008,
    Sec. 2.6.1: a 2×m moving average over the first seasons) instead of being
    estimated with the smoothing parameters as in FPP / R's ``ets``: 4–6×
    faster, and k counts only the estimated α, β, γ, φ (and σ²). A candidate that raises, warns that it
    did not converge, or gives a non-finite AICc is skipped (warnings are
    caught, never printed); a window whose every candidate fails is forecast by
    seasonal naive (``n_fallback``, noted), its S samples all equal.

    Scale: each context is fitted standardised, z = (x − mean)/sd, and
    forecasts are mapped back (x̂ = mean + sd·ẑ). Additive ETS is
    affine-equivariant up to the optimizer, and AICc differences do not change,
    so this only conditions the fit (values like 1e4 ± 1, negatives).
    A constant context (sd = 0) gets a flat forecast at its value without a fit.

    Samples: S = ``n_samples`` paths from ``ETSResults.simulate(H, anchor="end",
    repetitions=S, random_errors=ε)`` with ε = σ̂·N(0, 1) drawn from
    ``numpy.random.default_rng(SeedSequence([seed, i]))`` for window i (σ̂² =
    the fit's ``scale``, as statsmodels' own default draws), so the same seed
    gives the same samples on every statsmodels version and each window its
    own stream. ``point`` is the fitted model's point forecast (its mean,
    ``ETSResults.forecast(H)``), not the sample median.

    Measured (2 CPU cores shared with other jobs, statsmodels 0.15,
    airpassengers windows): 40–55 ms per window without a season (two
    candidates), 140–210 ms with season 4–12 (four candidates; contexts
    32–96, horizons 4–12, 100 samples); estimating the initial states instead
    took 0.8–1.2 s. So ~200 windows take ~10 s (season 1) to ~40 s (season 12)
    — seasonal naive takes ~20 µs per window.
    """
    horizon = _int_arg(horizon, "horizon")
    season = _int_arg(season, "season")
    n_samples = _int_arg(n_samples, "n_samples")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    rows = _contexts(contexts)
    n = len(rows)
    samples = np.empty((n, n_samples, horizon))
    point = np.empty((n, horizon))
    configs: list[str] = []
    notes: list[str] = []
    fallback: list[int] = []
    constant: list[int] = []
    for i, x in enumerate(rows):
        mu = float(x.mean())
        sd = float(x.std())
        if sd == 0.0 or sd <= 1e-12 * max(1.0, abs(mu)):
            point[i] = x[-1]
            samples[i] = x[-1]
            configs.append("constant")
            constant.append(i)
            continue
        z = (x - mu) / sd
        seasonal_ok = season > 1 and x.size >= 2 * season
        best, best_cfg, reasons = None, None, []
        for trend, damped, seasonal in ETS_CANDIDATES:
            if seasonal is not None and not seasonal_ok:
                continue
            res, why = _quiet_fit(z, trend, damped, seasonal, season)
            if res is None:
                reasons.append(f"{_config_name(trend, damped, seasonal)}: {why}")
                continue
            if best is None or res.aicc < best.aicc:
                best, best_cfg = res, (trend, damped, seasonal)
        path = None
        if best is not None:
            path = _ets_paths(best, horizon, n_samples, seed, i)
            if path is None:
                reasons.append(f"{_config_name(*best_cfg)}: non-finite forecast")
        if path is None:
            m = season if x.size >= season else 1
            p = _snaive_path(x, horizon, m)
            point[i] = p
            samples[i] = p
            configs.append(f"snaive(m={m})")
            fallback.append(i)
            notes.append(f"window {i}: every ETS candidate failed ({'; '.join(reasons)[:300]}); seasonal naive")
            continue
        pt, sm = path
        point[i] = mu + sd * pt
        samples[i] = mu + sd * sm
        configs.append(_config_name(*best_cfg))
    if constant:
        notes.append(f"{len(constant)} constant context(s) forecast flat without a fit: windows {constant[:10]}")
    if season > 1:
        no_season = [i for i, x in enumerate(rows) if x.size < 2 * season]
        if no_season:
            notes.append(f"{len(no_season)} context(s) shorter than 2 seasons ({2 * season}): no seasonal candidate")
    notes.append("point = the fitted model's point forecast (mean), not the sample median")
    return BaselineForecast("ets", samples, point, season, notes, len(fallback), configs)


def _ets_paths(res, horizon: int, n_samples: int, seed: int, window: int):
    """(point (H,), samples (S, H)) of a fitted ETS model, or None when not finite."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(window)]))
    eps = rng.standard_normal((horizon, n_samples)) * math.sqrt(max(float(res.scale), 0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            try:
                pt = np.asarray(res.forecast(horizon), np.float64).reshape(horizon)
                sm = (
                    np.asarray(
                        res.simulate(horizon, anchor="end", repetitions=n_samples, random_errors=eps),
                        np.float64,
                    )
                    .reshape(horizon, n_samples)
                    .T
                )
            except Exception:  # noqa: BLE001
                return None
    if not (np.isfinite(pt).all() and np.isfinite(sm).all()):
        return None
    return pt, sm


# ------------------------------------------------------------------- skill
def skill(model_error: float, baseline_error: float) -> float:
    """Relative error model / baseline (below 1: the model beats the baseline).

    GIFT-Eval (Aksu et al. 2024) and fev (Shchur et al. 2025) divide each
    model's per-task MASE and CRPS (GIFT-Eval: MASE and CRPS; fev: the task's
    metric, e.g. MASE, WQL/SQL) by seasonal naive's on the same task, then
    aggregate tasks by the geometric mean of the ratios
    (:func:`geometric_mean_skill`; fev clips each ratio to [0.01, 100] first).
    NaN when ``baseline_error`` is 0 or either error is not finite.
    """
    m = float(model_error)
    b = float(baseline_error)
    if not (math.isfinite(m) and math.isfinite(b)) or b == 0.0:
        return float("nan")
    return m / b


def geometric_mean_skill(
    ratios: Sequence[float] | np.ndarray, clip: tuple[float, float] | None = (0.01, 100.0)
) -> float:
    """exp(mean(log clip(r, lo, hi))) over the finite ratios (NaN when none).

    ``clip=(0.01, 100.0)`` as fev (Shchur et al. 2025); ``clip=None`` leaves
    ratios as they are (GIFT-Eval). Non-finite ratios (from :func:`skill`'s NaN)
    are left out; a ratio ≤ 0 without clipping gives NaN.
    """
    r = np.asarray(ratios, np.float64).ravel()
    r = r[np.isfinite(r)]
    if r.size == 0:
        return float("nan")
    if clip is not None:
        lo, hi = float(clip[0]), float(clip[1])
        if not (0.0 < lo <= hi):
            raise ValueError(f"clip must be (lo, hi) with 0 < lo <= hi, got {clip!r}")
        r = np.clip(r, lo, hi)
    elif (r <= 0).any():
        return float("nan")
    return float(np.exp(np.mean(np.log(r))))
