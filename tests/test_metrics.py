"""Forecast metrics against hand-computed values, brute-force formulas and the
Gaussian closed-form CRPS (scipy)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from isofast.metrics import ForecastMetrics, crps, evaluate, mae, mase, mse, nmse


def test_hand_computed_pooled_and_per_series():
    y = np.array([[1.0, 2.0, 3.0], [4.0, 0.0, -2.0]])
    p = np.array([[1.0, 1.0, 5.0], [3.0, 1.0, -2.0]])
    # squared errors: [0, 1, 4], [1, 1, 0] → Σ = 7; Σy² = 14 + 20 = 34
    assert nmse(y, p) == pytest.approx(7 / 34)
    assert mse(y, p) == pytest.approx(7 / 6)
    assert mae(y, p) == pytest.approx((0 + 1 + 2 + 1 + 1 + 0) / 6)
    ctx = np.array([[0.0, 1.0, 3.0, 6.0], [2.0, 2.0, 4.0, 4.0]])
    # naive scales: mean|Δ| = (1+2+3)/3 = 2 and (0+2+0)/3 = 2/3
    np.testing.assert_allclose(mase(y, p, ctx), [1.0 / 2, (2 / 3) / (2 / 3)])
    # seasonal naive with m = 2: |3−0|,|6−1| → 4; |4−2|,|4−2| → 2
    np.testing.assert_allclose(mase(y, p, ctx, season=2), [1.0 / 4, (2 / 3) / 2])
    m = evaluate(y, p, context=ctx)
    assert isinstance(m, ForecastMetrics)
    np.testing.assert_allclose(m.per_series["nmse"], [5 / 14, 2 / 20])
    assert m.nmse == pytest.approx(7 / 34)  # pooled, not the mean of per-series values
    assert m.mase == pytest.approx((0.5 + 1.0) / 2)
    assert m.crps is None
    d = json.loads(json.dumps(m.to_dict()))
    assert d["n_points"] == 6 and d["per_series"]["mae"] == pytest.approx([1.0, 2 / 3])


def test_ragged_series_and_missing_targets():
    y = [np.array([1.0, np.nan, 3.0]), np.array([2.0])]
    p = [np.array([2.0, 5.0, 3.0]), np.array([0.0])]
    m = evaluate(y, p)
    assert m.n_points == 3 and m.n_missing == 1
    assert m.nmse == pytest.approx((1 + 0 + 4) / (1 + 9 + 4))
    assert m.mse == pytest.approx(5 / 3)


def test_crps_matches_brute_force_both_estimators():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 4, 6))
    y = rng.normal(size=(4, 6))
    diff = np.abs(x[:, None] - x[None]).sum(axis=(0, 1))  # Σ_{i,j}|x_i − x_j|
    t1 = np.abs(x - y).mean(0)
    np.testing.assert_allclose(crps(x, y), t1 - diff / (2 * 81), atol=1e-14)
    np.testing.assert_allclose(crps(x, y, estimator="fair"), t1 - diff / (2 * 9 * 8), atol=1e-14)
    np.testing.assert_allclose(crps(np.moveaxis(x, 0, 1), y, axis=1), crps(x, y))
    # one sample: the CRPS is the absolute error
    np.testing.assert_allclose(crps(x[:1], y), np.abs(x[0] - y))
    # the standard estimator is the CRPS of the empirical CDF: ∫(F_n − 1{y ≤ t})² dt
    xs, yy = x[:, 0, 0], y[0, 0]
    grid = np.linspace(min(xs.min(), yy) - 1, max(xs.max(), yy) + 1, 400001)
    Fn = (xs[:, None] <= grid).mean(0)
    integral = np.trapezoid((Fn - (yy <= grid)) ** 2, grid)
    assert crps(xs, yy) == pytest.approx(integral, abs=1e-4)


def test_crps_gaussian_closed_form():
    rng = np.random.default_rng(1)
    mu, sigma, y = 0.3, 1.7, np.array([-1.0, 0.0, 2.5])
    x = rng.normal(mu, sigma, size=(40000, 3))
    z = (y - mu) / sigma
    exact = sigma * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))
    np.testing.assert_allclose(crps(x, y, estimator="fair"), exact, rtol=0.02)


def test_evaluate_with_samples_uses_median_and_pools_crps():
    rng = np.random.default_rng(2)
    S, n, H = 3, 6, 5
    smp = rng.normal(size=(S, n, H)) + 10
    y = rng.normal(size=(S, H)) + 10
    m = evaluate(y, samples=smp, context=rng.normal(size=(S, 20)))
    med = np.median(smp, axis=1)
    assert m.nmse == pytest.approx(((med - y) ** 2).sum() / (y**2).sum())
    c = crps(smp, y, axis=1)
    assert m.crps == pytest.approx(c.mean())
    assert m.crps_normalized == pytest.approx(c.sum() / np.abs(y).sum())
    np.testing.assert_allclose(m.per_series["crps"], c.mean(1))


def test_bad_input():
    with pytest.raises(ValueError, match="not finite"):
        nmse([1.0, 2.0], [1.0, np.nan])
    with pytest.raises(ValueError, match="steps"):
        nmse([[1.0, 2.0]], [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="season"):
        mase([1.0], [1.0], [1.0])
    with pytest.raises(ValueError, match="at least 2"):
        crps(np.ones((1, 3)), np.ones(3), estimator="fair")
    with pytest.raises(ValueError):
        evaluate([1.0, 2.0])
    # a constant context has no naive scale: MASE is NaN and counted
    m = evaluate([[1.0, 2.0]], [[1.0, 1.0]], context=[[5.0, 5.0, 5.0]])
    assert m.n_mase_undefined == 1 and np.isnan(m.mase)
