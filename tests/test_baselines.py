"""Forecast baselines (isofast.baselines) and seasonal periods (isofast.data.seasons)."""

from __future__ import annotations

import math
import warnings

import isofast.baselines as bl
import numpy as np
import pytest
from isofast.baselines import (
    BaselineForecast,
    ets,
    geometric_mean_skill,
    seasonal_naive,
    skill,
)
from isofast.data import dataset_season, preset_season, season_length
from isofast.metrics import evaluate


def _snaive_ref(x, H, m):
    """Hand-written: repeat the last m values, step by step."""
    last = list(x[-m:])
    return np.array([last[h % m] for h in range(H)], float)


# ----------------------------------------------------------- seasonal naive
@pytest.mark.parametrize("m", [1, 4, 12])
def test_seasonal_naive_matches_reference(m):
    rng = np.random.default_rng(m)
    ctx = [rng.normal(size=T) for T in (30, 40, 50)]
    H = 2 * m + 3  # horizon longer than the season
    f = seasonal_naive(ctx, H, season=m)
    assert isinstance(f, BaselineForecast)
    assert f.samples.shape == (3, 1, H) and f.point.shape == (3, H)
    assert f.n_fallback == 0 and f.season == m
    for i, x in enumerate(ctx):
        np.testing.assert_array_equal(f.point[i], _snaive_ref(x, H, m))
        np.testing.assert_array_equal(f.samples[i, 0], f.point[i])
    # 2-D input gives the same
    arr = np.stack([c[:30] for c in ctx])
    f2 = seasonal_naive(arr, H, season=m)
    for i in range(3):
        np.testing.assert_array_equal(f2.point[i], _snaive_ref(arr[i], H, m))


def test_seasonal_naive_short_context_falls_back_to_naive():
    ctx = [np.arange(5.0), np.arange(20.0)]
    f = seasonal_naive(ctx, 6, season=12)
    np.testing.assert_array_equal(f.point[0], np.full(6, 4.0))
    np.testing.assert_array_equal(f.point[1], _snaive_ref(ctx[1], 6, 12))
    assert f.n_fallback == 1 and any("naive" in n for n in f.notes)
    d = f.to_dict()
    assert d["n_fallback"] == 1 and np.shape(d["samples"]) == (2, 1, 6)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"contexts": [np.ones(5)], "horizon": 0}, "horizon"),
        ({"contexts": [np.ones(5)], "horizon": 2.5}, "horizon"),
        ({"contexts": [np.ones(5)], "horizon": 3, "season": 0}, "season"),
        ({"contexts": [], "horizon": 3}, "contexts"),
        ({"contexts": [np.array([1.0, np.nan, 2.0])], "horizon": 3}, "contexts"),
        ({"contexts": np.ones((2, 3, 4)), "horizon": 3}, "contexts"),
    ],
)
@pytest.mark.parametrize("fn", [seasonal_naive, ets])
def test_bad_arguments(fn, kwargs, word):
    with pytest.raises(ValueError, match=word):
        fn(**kwargs)


def test_ets_bad_samples_and_seed():
    with pytest.raises(ValueError, match="n_samples"):
        ets([np.arange(20.0)], 3, n_samples=0)
    with pytest.raises(ValueError, match="seed"):
        ets([np.arange(20.0)], 3, seed=-1)


# --------------------------------------------------------------------- ETS
@pytest.fixture(scope="module")
def air():
    from isofast.data import load

    return np.asarray(load("airpassengers").values, float)


def test_ets_matches_direct_statsmodels_fit(air):
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    x = air[:96]
    H = 12
    f = ets([x], H, season=12, n_samples=50, seed=3)
    cfg = f.configs[0]
    assert cfg.startswith("ETS(A,") and f.n_fallback == 0
    trend = {"N": None, "A": "add", "Ad": "add"}[cfg[6:-3]]
    seasonal = None if cfg.endswith("N)") else "add"
    mu, sd = x.mean(), x.std()
    best = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t, dmp, s in bl.ETS_CANDIDATES:
            r = ETSModel(
                (x - mu) / sd,
                error="add",
                trend=t,
                damped_trend=dmp,
                seasonal=s,
                seasonal_periods=12 if s else None,
                initialization_method="heuristic",
            ).fit(disp=False, maxiter=200)
            if best is None or r.aicc < best[0].aicc:
                best = (r, t, s)
    assert (best[1], best[2]) == (trend, seasonal)  # the AICc choice
    direct = mu + sd * np.asarray(best[0].forecast(H))
    np.testing.assert_allclose(f.point[0], direct, rtol=1e-8, atol=1e-8 * sd)
    assert f.samples.shape == (1, 50, H)
    # samples scatter around the point forecast, spread growing with h
    assert abs(np.median(f.samples[0, :, 0]) - f.point[0, 0]) < 3 * f.samples[0, :, 0].std()
    assert f.samples[0, :, -1].std() > f.samples[0, :, 0].std()
    # airline passengers are seasonal: the seasonal model must win
    assert seasonal == "add"


def test_ets_reproducible_by_seed(air):
    ctx = [air[:48], air[24:72]]
    a = ets(ctx, 6, season=12, n_samples=20, seed=7)
    b = ets(ctx, 6, season=12, n_samples=20, seed=7)
    c = ets(ctx, 6, season=12, n_samples=20, seed=8)
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.point, b.point)
    assert not np.array_equal(a.samples, c.samples)
    np.testing.assert_array_equal(a.point, c.point)  # the fit does not depend on the seed
    # different windows draw different errors: same context twice → different samples
    d = ets([air[:48], air[:48]], 6, season=12, n_samples=20, seed=7)
    np.testing.assert_array_equal(d.point[0], d.point[1])
    assert not np.array_equal(d.samples[0], d.samples[1])


def test_ets_constant_context():
    f = ets([np.full(30, 5.0), np.full(10, -2.0)], 4, season=4, n_samples=10)
    np.testing.assert_array_equal(f.point, [[5.0] * 4, [-2.0] * 4])
    np.testing.assert_array_equal(f.samples[0], np.full((10, 4), 5.0))
    assert f.configs == ["constant", "constant"] and f.n_fallback == 0


def test_ets_large_offset_and_negative_values():
    rng = np.random.default_rng(0)
    base = rng.normal(size=64).cumsum() * 0.2
    f_off = ets([1e4 + base], 5, n_samples=30, seed=1)
    f_neg = ets([base - 50.0], 5, n_samples=30, seed=1)
    assert np.isfinite(f_off.samples).all() and f_off.n_fallback == 0
    # affine equivariance: shifting the context shifts the forecast
    np.testing.assert_allclose(f_off.point - 1e4, f_neg.point + 50.0, atol=1e-6)
    assert abs(f_off.point[0, 0] - (1e4 + base[-1])) < 2.0


def test_ets_fallback_when_every_fit_fails(monkeypatch, air, recwarn):
    def boom(*a, **k):
        raise np.linalg.LinAlgError("forced failure")

    monkeypatch.setattr(bl, "_fit_ets", boom)
    ctx = [air[:48], air[48:60]]
    f = ets(ctx, 15, season=12, n_samples=7)
    assert f.n_fallback == 2
    ref = seasonal_naive(ctx, 15, season=12)
    np.testing.assert_array_equal(f.point, ref.point)
    np.testing.assert_array_equal(f.samples, np.repeat(ref.point[:, None, :], 7, axis=1))
    assert any("forced failure" in n for n in f.notes)
    assert len(recwarn) == 0


def test_ets_non_convergence_is_silent(monkeypatch, air, capsys):
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    real = bl._fit_ets

    def noisy(z, trend, damped, seasonal, season):
        if trend is not None:
            warnings.warn("Optimization failed to converge", ConvergenceWarning)
        return real(z, trend, damped, seasonal, season)

    monkeypatch.setattr(bl, "_fit_ets", noisy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning escaping would raise here
        f = ets([air[:40]], 4, season=1, n_samples=5)
    assert f.configs == ["ETS(A,N,N)"]  # the warning candidate was skipped
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_outputs_flow_into_evaluate(air):
    ctx = np.stack([air[s : s + 48] for s in (0, 12, 24)])
    y = np.stack([air[s + 48 : s + 54] for s in (0, 12, 24)])
    sn = seasonal_naive(ctx, 6, season=12)
    e = ets(ctx, 6, season=12, n_samples=40)
    m_sn = evaluate(y, sn.point, samples=sn.samples, context=ctx, season=12)
    m_e = evaluate(y, e.point, samples=e.samples, context=ctx, season=12)
    # CRPS of a one-sample forecast is its absolute error
    assert m_sn.crps == pytest.approx(m_sn.mae)
    assert np.isfinite(m_e.crps) and m_e.crps > 0
    r = skill(m_e.mase, m_sn.mase)
    assert np.isfinite(r) and r > 0


# ------------------------------------------------------------------- skill
def test_skill_and_geometric_mean():
    assert skill(1.0, 2.0) == 0.5
    assert math.isnan(skill(1.0, 0.0))
    assert math.isnan(skill(1.0, float("nan")))
    assert math.isnan(skill(float("inf"), 1.0))
    assert geometric_mean_skill([0.5, 2.0]) == pytest.approx(1.0)
    assert geometric_mean_skill([1e-4, 1.0]) == pytest.approx(math.sqrt(0.01))  # clipped
    assert geometric_mean_skill([1e-4, 1.0], clip=None) == pytest.approx(0.01)
    assert geometric_mean_skill([0.25, float("nan"), 1.0]) == pytest.approx(0.5)
    assert math.isnan(geometric_mean_skill([]))


# ---------------------------------------------------------- season tables
def test_season_tables():
    assert season_length("MS") == 12 and season_length("monthly") == 12 and season_length("M") == 12
    assert season_length("h") == 24 and season_length("H") == 24 and season_length("hourly") == 24
    assert season_length("30min") == 48 and season_length("half-hourly") == 48
    assert season_length("D") == 7 and season_length("W-SAT") == 52 and season_length("QS") == 4
    assert season_length("YS") == 1 and season_length("A") == 1 and season_length("B") == 5
    assert season_length("2H") == 12 and season_length("5H") == 1
    for unknown in ("500ms", "fortnightly-ish", None, ""):
        assert season_length(unknown) is None
    assert dataset_season("airpassengers") == 12 and dataset_season("taylor") == 48
    assert dataset_season("heartrate") is None
    p = preset_season("Seasonality_0.25H", 1024)
    assert p == 96 and preset_season("Seasonality_0.25H", 128) == 95
    assert preset_season("RBF_1", 1024) is None
    with pytest.raises(KeyError):
        preset_season("NoSuchKernel", 100)


def test_head_cli_uses_shared_table():
    from isofast.cli import _common, forecast, head

    assert not hasattr(forecast, "_SEASON") and not hasattr(head, "_SEASON")
    _, season = _common.resolve_data("airpassengers", None, None)
    assert season == 12
