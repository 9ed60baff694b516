"""isofast.study.stats and the causal effect statistics against scipy/statsmodels
and brute force on known inputs."""

import itertools

import numpy as np
import pytest

scipy_stats = pytest.importorskip("scipy.stats")

from isofast.study import stats as S  # noqa: E402
from isofast.study.causal import _sign_flip_p, paired_effect  # noqa: E402


def _data(n, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 4, n).astype(float) if ties else rng.normal(size=n)
    y = 0.6 * x + rng.normal(size=n)
    if ties:
        y = np.round(y)
    return x, y


@pytest.mark.parametrize("n,ties", [(5, False), (12, True), (40, False), (40, True)])
def test_correlations_equal_scipy(n, ties):
    x, y = _data(n, seed=n, ties=ties)
    assert S.spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-12)
    assert S.kendall(x, y) == pytest.approx(scipy_stats.kendalltau(x, y).statistic, abs=1e-12)
    np.testing.assert_allclose(S.rankdata(x), scipy_stats.rankdata(x))


def test_rankdata_rows_equal_scipy():
    X = np.random.default_rng(1).integers(0, 6, size=(50, 17)).astype(float)
    np.testing.assert_allclose(S.rankdata(X), scipy_stats.rankdata(X, axis=1))


def test_constant_input_is_nan():
    assert np.isnan(S.spearman([1, 1, 1, 1], [1, 2, 3, 4]))
    assert np.isnan(S.kendall([1, 2, 3, 4], [5, 5, 5, 5]))


def test_exact_permutation_p_equals_scipy():
    # n = 6: 720 permutations ≤ 1000, so both enumerate them all
    x, y = _data(6, seed=3)
    mine = S.permutation_test(x, y, method="spearman", n_permutations=1000, seed=0)
    # one sample: scipy permutes x against the fixed y (the n! pairings)
    ref = scipy_stats.permutation_test(
        (x,),
        lambda a: scipy_stats.spearmanr(a, y).statistic,
        permutation_type="pairings",
        n_resamples=np.inf,
        alternative="two-sided",
    )
    assert mine.exact
    # Spearman's permutation distribution is symmetric, so |T| ≥ |t| equals scipy's 2·min(one-sided)
    assert mine.p_value == pytest.approx(ref.pvalue, abs=1e-12)


def test_random_permutation_p_close_to_scipy():
    x, y = _data(30, seed=4)
    mine = S.permutation_test(x, y, method="kendall", n_permutations=4000, seed=1)
    ref = scipy_stats.permutation_test(
        (x,),
        lambda a: scipy_stats.kendalltau(a, y).statistic,
        permutation_type="pairings",
        n_resamples=4000,
        alternative="two-sided",
        random_state=2,
    )
    assert not mine.exact
    assert mine.p_value >= 1 / 4001  # the +1 correction: never 0
    assert abs(mine.p_value - ref.pvalue) < 0.03


def test_plus_one_correction():
    x = np.arange(40.0)
    r = S.permutation_test(x, x, n_permutations=1000, seed=0)
    assert r.p_value == pytest.approx(1 / 1001)


@pytest.mark.parametrize("ci_method,scipy_method", [("percentile", "percentile"), ("bca", "BCa")])
def test_bootstrap_ci_close_to_scipy(ci_method, scipy_method):
    x, y = _data(40, seed=5)
    mine = S.bootstrap_ci(x, y, method="spearman", n_resamples=5000, ci_method=ci_method, seed=0)
    ref = scipy_stats.bootstrap(
        (x, y),
        lambda a, b: scipy_stats.spearmanr(a, b).statistic,
        paired=True,
        vectorized=False,
        n_resamples=5000,
        method=scipy_method,
        random_state=0,
    ).confidence_interval
    assert mine.low == pytest.approx(ref.low, abs=0.04)
    assert mine.high == pytest.approx(ref.high, abs=0.04)
    assert mine.low < S.spearman(x, y) < mine.high


def test_singleton_groups_are_the_plain_bootstrap():
    x, y = _data(20, seed=6)
    a = S.bootstrap_distribution(x, y, n_resamples=200, seed=3)
    b = S.bootstrap_distribution(x, y, groups=np.arange(20), n_resamples=200, seed=3)
    np.testing.assert_array_equal(a, b)


def test_group_permutation_matches_brute_force():
    # 5 datasets × 2 perturbations; permutations move whole datasets
    rng = np.random.default_rng(7)
    G, P = 5, 2
    groups = np.repeat(np.arange(G), P)
    slots = np.tile(["clean", "noise"], G)
    x = rng.normal(size=G * P)
    y = x + rng.normal(size=G * P)
    r = S.permutation_test(x, y, groups=groups, slots=slots, n_permutations=1000, seed=0)
    assert r.exact and r.n_permutations == 120
    t = abs(scipy_stats.spearmanr(x, y).statistic)
    hits = 0
    for perm in itertools.permutations(range(G)):
        yp = np.array([y[perm[g] * P + s] for g in range(G) for s in range(P)])
        hits += abs(scipy_stats.spearmanr(x, yp).statistic) >= t - 1e-12
    assert r.p_value == pytest.approx(hits / 120)


def test_strata_statistic_is_the_mean_within_strata():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=24), rng.normal(size=24)
    strata = np.repeat(["a", "b", "c"], 8)
    r = S.permutation_test(x, y, strata=strata, n_permutations=1000, seed=0)
    want = np.mean([scipy_stats.spearmanr(x[strata == s], y[strata == s]).statistic for s in "abc"])
    assert r.statistic == pytest.approx(want, abs=1e-12)


def test_bh_equals_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    p = np.array([0.001, 0.04, 0.03, 0.2, 0.5, 0.012, 0.9, 0.049])
    np.testing.assert_allclose(S.benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1])
    q = S.benjamini_hochberg([0.01, np.nan, 0.04])
    assert np.isnan(q[1]) and q[0] == pytest.approx(0.02) and q[2] == pytest.approx(0.04)


def test_correlate_reports_n_and_refuses_tiny_samples():
    r = S.correlate([1.0, 2, 3], [2.0, 1, 3])
    assert r.n == 3 and np.isnan(r.p_value) and np.isnan(r.ci_low) and r.notes
    x, y = _data(12, seed=9)
    r = S.correlate(x, y, n_boot=1000, n_perm=1000)
    assert r.n == 12 and r.n_groups == 12 and 0 < r.p_value <= 1 and r.ci_low <= r.estimate <= r.ci_high
    with pytest.raises(ValueError, match="same length"):
        S.correlate([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        S.correlate([1.0, np.nan, 3, 4], [1.0, 2, 3, 4])


def test_sign_flip_exact_matches_brute_force():
    d = np.array([0.3, -0.1, 0.25, 0.05, 0.4])
    p, exact = _sign_flip_p(d, 1000, 0)
    t = abs(d.sum())
    brute = np.mean([abs(np.dot(s, d)) >= t - 1e-12 for s in itertools.product((1, -1), repeat=5)])
    assert exact and p == pytest.approx(brute)


def test_paired_effect_delta_nmse():
    rng = np.random.default_rng(10)
    y2 = rng.uniform(1, 2, 8)
    before = rng.uniform(0, 1, 8)
    after = before * 0.5
    e = paired_effect(before, after, y2, ["a"] * 8, n_boot=1000, n_perm=1000, seed=0)
    assert e.delta_nmse == pytest.approx((after.sum() - before.sum()) / y2.sum())
    assert e.nmse_before == pytest.approx(before.sum() / y2.sum())
    assert e.n_improved == 8 and e.ci_high < 0 and e.p_value == pytest.approx(2 / 256)
