"""Every global statistic against the plain float64 references in reference.py,
on random and adversarial data."""

from __future__ import annotations

import math

import numpy as np
import pytest

import isofast
import reference as ref


def aniso(rng, n, d, offset=0.0, dtype=np.float64):
    scales = np.geomspace(10.0, 0.1, d)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    X = (rng.normal(size=(n, d)) * scales) @ Q.T + offset
    return X.astype(dtype)


def assert_report_matches(rep, X, eps=0.8, rtol=1e-9):
    s = ref.spectral(X, eps)
    np.testing.assert_allclose(rep.eigenvalues, s["eigenvalues"], rtol=rtol, atol=rtol * s["eigenvalues"][0])
    np.testing.assert_allclose(rep.explained_variance_ratio, s["explained_variance_ratio"], rtol=rtol, atol=1e-12)
    assert rep.effective_dim == s["effective_dim"]
    for k in ("participation_ratio", "isoscore", "stable_rank", "pc1_share", "effective_rank"):
        assert getattr(rep, k) == pytest.approx(s[k], rel=rtol, abs=1e-12), k
    np.testing.assert_allclose(rep.mean, np.asarray(X, np.float64).mean(0), rtol=1e-12, atol=1e-12)
    assert rep.avg_cosine == pytest.approx(ref.avg_cosine_dense(X), rel=1e-9, abs=1e-12)
    assert rep.avg_cosine_centered == pytest.approx(ref.avg_cosine_dense(X, center=True), rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("n,d", [(400, 12), (50, 80), (1000, 3)])
def test_all_statistics_match_numpy_reference(n, d):
    rng = np.random.default_rng(n + d)
    X = aniso(rng, n, d, offset=2.0)
    rep = isofast.analyze(X)
    assert rep.n == n and rep.dim == d
    assert_report_matches(rep, X)
    assert rep.log_partition_isotropy == pytest.approx(ref.log_partition_isotropy(X), rel=1e-9, abs=1e-9)
    assert rep.log_partition_isotropy_centered == pytest.approx(
        ref.log_partition_isotropy(X, center=True), rel=1e-9, abs=1e-9
    )
    assert rep.partition_isotropy == pytest.approx(math.exp(rep.log_partition_isotropy))


def test_isoscore_equals_rudman_algorithm():
    rng = np.random.default_rng(1)
    for d in (2, 7, 40):
        X = aniso(rng, 300, d)
        assert isofast.isoscore(X) == pytest.approx(ref.isoscore_rudman(X), rel=1e-9, abs=1e-12)


def test_float32_input_uses_float32_projections_but_f64_moments():
    rng = np.random.default_rng(2)
    X = aniso(rng, 3000, 24, offset=5.0, dtype=np.float32)
    rep = isofast.analyze(X)
    assert_report_matches(rep, X.astype(np.float64), rtol=1e-8)
    # Projections in float32: log Z agrees to float32 rounding of the logits.
    assert rep.log_partition_isotropy == pytest.approx(ref.log_partition_isotropy(X), rel=1e-5, abs=1e-4)


def test_common_offset_keeps_covariance_exact():
    rng = np.random.default_rng(3)
    X = 1e4 + 1e-2 * rng.normal(size=(20000, 16))
    m = isofast.Moments(16).update(X)
    C = m.covariance()
    Cref = np.cov(X, rowvar=False)  # two-pass (centred) float64
    rel = np.abs(C - Cref).max() / np.abs(Cref).max()
    assert rel <= 1e-6
    # The naive Σxxᵀ − nμμᵀ would lose everything here; make sure we are far from that.
    assert rel < 1e-9


def test_massive_activations_partition_is_finite_and_exact():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(2000, 64))
    X[:, 3] += 1e4  # a massive-activation coordinate, as in LLM hidden states
    X[::97, 17] = -8e3
    rep = isofast.analyze(X)
    for v in (rep.log_partition_isotropy, rep.log_partition_isotropy_centered):
        assert np.isfinite(v)
    assert rep.log_partition_isotropy == pytest.approx(ref.log_partition_isotropy(X), rel=1e-9)
    assert rep.log_partition_isotropy_centered == pytest.approx(ref.log_partition_isotropy(X, center=True), rel=1e-9)
    assert rep.partition_isotropy == 0.0  # underflows: that is why the log is reported


def test_rank_one_data():
    rng = np.random.default_rng(5)
    v = rng.normal(size=32)
    X = rng.normal(size=(500, 1)) * v + 0.0
    rep = isofast.analyze(X)
    assert rep.effective_dim == 1
    assert rep.participation_ratio == pytest.approx(1.0, abs=1e-9)
    assert rep.isoscore == pytest.approx(0.0, abs=1e-9)
    assert rep.effective_rank == pytest.approx(1.0, abs=1e-6)
    assert rep.pc1_share == pytest.approx(1.0, abs=1e-9)
    # Every row is ±v: cosines are ±1.
    assert rep.avg_cosine == pytest.approx(ref.avg_cosine_dense(X), abs=1e-9)


@pytest.mark.parametrize("n,d", [(400, 24), (10, 50), (300, 1)])
def test_one_pass_eigenvalues_equal_full_decomposition(n, d):
    # The one-pass report uses an eigenvalues-only solver; analyze() uses the
    # full decomposition. Both must agree with numpy and with each other,
    # rank deficiency (N < d, rank 1) included.
    rng = np.random.default_rng(11)
    X = rng.normal(size=(n, min(n, d))) @ rng.normal(size=(min(n, d), 24 if d == 1 else d)) + 1e3
    m = isofast.Moments(X.shape[1])
    m.update(X)
    one_pass = m.report().eigenvalues
    full = isofast.analyze(X).eigenvalues
    expect = np.sort(np.linalg.eigvalsh(np.cov(X.T)))[::-1]
    tol = 1e-9 * expect[0]
    np.testing.assert_allclose(one_pass, full, rtol=0, atol=tol)
    np.testing.assert_allclose(one_pass, expect, rtol=0, atol=tol)
    assert np.count_nonzero(one_pass) == np.count_nonzero(full)


def test_isotropic_gaussian_isoscore_near_one():
    rng = np.random.default_rng(6)
    d = 64
    X = rng.normal(size=(50 * d, d))
    rep = isofast.analyze(X)
    assert rep.isoscore >= 0.95
    assert abs(rep.avg_cosine_centered) < 1e-3
    assert rep.effective_dim >= int(0.7 * d)


def test_n_less_than_d_is_defined_and_noted():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(10, 50))
    rep = isofast.analyze(X)
    assert_report_matches(rep, X)
    assert np.count_nonzero(rep.eigenvalues) == 9  # rank N−1
    assert rep.isoscore <= (10 - 2) / (50 - 1) + 1e-12
    assert any("N=10 ≤ d=50" in n for n in rep.notes)


def test_effective_dim_eps_and_functions():
    rng = np.random.default_rng(8)
    X = aniso(rng, 500, 20)
    for eps in (0.5, 0.8, 0.95, 1.0):
        assert isofast.effective_dim(X, eps) == ref.spectral(X, eps)["effective_dim"]
    assert isofast.avg_cosine(X) == pytest.approx(ref.avg_cosine_dense(X), rel=1e-10)
    assert isofast.avg_cosine(X, center=True) == pytest.approx(ref.avg_cosine_dense(X, True), rel=1e-8, abs=1e-12)
    assert isofast.partition_isotropy(X, log=True) == pytest.approx(ref.log_partition_isotropy(X), rel=1e-9)
    assert isofast.partition_isotropy(X, center=True, log=True) == pytest.approx(
        ref.log_partition_isotropy(X, True), rel=1e-9
    )


def test_log_partition_against_logsumexp():
    from scipy.special import logsumexp

    rng = np.random.default_rng(9)
    X = rng.normal(size=(700, 10)) * 300
    c = rng.normal(size=(5, 10))
    got = isofast.log_partition(X, c)
    np.testing.assert_allclose(got, logsumexp(X @ c.T, axis=0), rtol=1e-12)
    assert isofast.log_partition(X, c[0]) == pytest.approx(logsumexp(X @ c[0]), rel=1e-12)
    # Chunked input gives the same answer.
    got2 = isofast.log_partition([X[:123], X[123:]], c)
    np.testing.assert_allclose(got2, got, rtol=1e-12)


@pytest.mark.parametrize("D", [0, 1, 3])
def test_all_but_the_top(D):
    rng = np.random.default_rng(10)
    X = aniso(rng, 300, 9, offset=3.0)
    Y = isofast.all_but_the_top(X, D)
    Yr = ref.all_but_the_top(X, D)
    assert Y.dtype == np.float64
    np.testing.assert_allclose(Y, Yr, atol=1e-9 * np.abs(Yr).max())
    Y32 = isofast.all_but_the_top(X.astype(np.float32), D)
    assert Y32.dtype == np.float32
    # The post-processed rows are centred and have no variance on the removed directions.
    assert np.abs(Y.mean(0)).max() < 1e-9
    if D:
        _, U = np.linalg.eigh(np.cov(X, rowvar=False))
        assert np.abs(Y @ U[:, ::-1][:, :D]).max() < 1e-8


def test_self_similarity_against_dense():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(200, 6)) + 1.0
    g = rng.integers(0, 7, size=200)
    g[g == 6] = 99  # a label of its own
    g[0] = 1234  # a singleton group is left out of the mean
    res = isofast.self_similarity(X, g)
    expected = {}
    for lab in np.unique(g):
        rows = X[g == lab]
        if rows.shape[0] >= 2:
            expected[lab] = ref.avg_cosine_dense(rows)
    got = dict(zip(res.groups.tolist(), res.per_group.tolist()))
    for lab, v in expected.items():
        assert got[lab] == pytest.approx(v, rel=1e-10)
    assert np.isnan(got[1234])
    assert float(res) == pytest.approx(np.mean(list(expected.values())), rel=1e-12)
    # String labels work too; center=True uses the global mean.
    res2 = isofast.self_similarity(X, np.array([f"s{v}" for v in g]), center=True)
    Xc = X - X.mean(0)
    assert dict(zip(res2.groups.tolist(), res2.per_group.tolist()))["s3"] == pytest.approx(
        ref.avg_cosine_dense(Xc[g == 3]), rel=1e-10
    )


def test_report_serialises():
    rng = np.random.default_rng(12)
    rep = isofast.analyze(rng.normal(size=(100, 5)))
    d = rep.to_dict()
    import json

    back = json.loads(rep.to_json())
    assert back["n"] == 100 and len(back["eigenvalues"]) == 5
    assert set(d) >= {
        "n",
        "dim",
        "mean",
        "eigenvalues",
        "explained_variance_ratio",
        "effective_dim",
        "participation_ratio",
        "isoscore",
        "stable_rank",
        "pc1_share",
        "effective_rank",
        "avg_cosine",
        "avg_cosine_centered",
        "partition_isotropy",
        "log_partition_isotropy",
        "partition_isotropy_centered",
        "log_partition_isotropy_centered",
    }
    assert "isoscore" in rep.table()


def test_real_example_runs_and_layer15_has_massive_activation():
    from isofast.sources import load_example

    X = load_example(15)
    rep = isofast.analyze(X)
    assert X.dtype == np.float16 and rep.n == X.shape[0]
    assert np.isfinite(rep.log_partition_isotropy)
    # Compare with float64 references on the real data.
    X64 = np.asarray(X, np.float64)
    assert_report_matches(rep, X64, rtol=1e-7)
    assert rep.log_partition_isotropy == pytest.approx(ref.log_partition_isotropy(X64), rel=1e-5)


def test_core_moments_decomposition_methods_agree_and_reject_bad_states():
    from isofast import _core

    rng = np.random.default_rng(12)
    X = rng.normal(size=(200, 6)) * np.arange(1, 7) + 50.0
    m = _core.Moments(6)
    m.update(X)
    ev, U, evr, W = m.directions()
    np.testing.assert_allclose(m.eigenvalues(), ev, rtol=1e-12, atol=1e-12 * ev[0])
    ev2, U2 = m.cov_directions()
    np.testing.assert_array_equal(ev2, ev)
    np.testing.assert_array_equal(np.abs(U2), np.abs(U))
    ev3, sp = m.second_pass(False)
    np.testing.assert_array_equal(ev3, ev)
    sp.update(X.astype(np.float32))
    full = isofast.analyze(X.astype(np.float32))
    assert sp.results().log_partition_isotropy == pytest.approx(full.log_partition_isotropy, rel=1e-12)
    u = sp.results().unit_sum_centered
    Y = X.astype(np.float32).astype(np.float64) - m.mean
    np.testing.assert_allclose(u, (Y / np.linalg.norm(Y, axis=1, keepdims=True)).sum(0), rtol=1e-10, atol=1e-10)
    one = _core.Moments(6)
    one.update(X[:1])
    for state in (_core.Moments(6), one):
        for call in (state.eigenvalues, state.cov_directions, lambda: state.second_pass(True)):
            with pytest.raises(ValueError, match="at least 2 rows"):
                call()
    same = _core.Moments(6)
    same.update(np.ones((4, 6)))
    for call in (same.eigenvalues, same.cov_directions, lambda: same.second_pass(False)):
        with pytest.raises(ValueError, match="all rows identical"):
            call()
