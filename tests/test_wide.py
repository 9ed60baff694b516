"""Wide inputs (issue 19): the rank-one route to XᵀX's eigenpairs, and
``precision="fast"`` with its documented error bound.

References are plain float64 numpy (tests/reference.py and np.linalg.eigh of
XᵀX formed in full), on random and adversarial data.
"""

from __future__ import annotations

import pickle

import isofast
import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st
from isofast import _core

EPS = np.finfo(np.float64).eps


def _state(X, precision="exact", n_threads=None):
    m = _core.Moments(X.shape[1], precision)
    m.update(X, None, n_threads)
    return m


def _check_gram(X, what):
    """XᵀX eigenpairs by the rank-one update vs np.linalg.eigh of XᵀX.

    Tolerances (backward stability of both routes): eigenvalues within
    64·d·ε·‖XᵀX‖; W orthonormal within 64·d·ε; residual ‖XᵀX·w − λw‖ within
    64·d·ε·‖XᵀX‖ per entry; |⟨w_k, w'_k⟩| = 1 ± 1e-7 where λ_k is separated
    from its neighbours by more than 1e-6·‖XᵀX‖ (elsewhere the eigenvectors
    are not determined by the matrix and only the residual is meaningful).
    """
    X64 = np.asarray(X, dtype=np.float64)
    d = X64.shape[1]
    m = _state(X)
    _, _, lam_r, W = m.directions()
    # Reference matrix built the same way the route defines it: M + n·μμᵀ
    # with M and μ in float64 from numpy (two-pass centring).
    mu = X64.mean(0)
    Y = X64 - mu
    G = Y.T @ Y + X64.shape[0] * np.outer(mu, mu)
    lam_f, W_f = np.linalg.eigh(G)
    lam_f, W_f = lam_f[::-1], W_f[:, ::-1]
    norm = max(abs(lam_f[0]), 1e-300)
    tol = 64 * d * EPS
    assert np.max(np.abs(lam_r - lam_f)) <= tol * norm, what
    assert np.max(np.abs(W.T @ W - np.eye(d))) <= tol, what
    assert np.max(np.abs(G @ W - W * lam_r)) <= tol * norm, what
    gaps = np.where(np.eye(d, dtype=bool), np.inf, np.abs(lam_f[:, None] - lam_f[None, :]))
    sep = gaps.min(1) > 1e-6 * norm
    dots = np.abs(np.sum(W * W_f, axis=0))
    assert np.all(np.abs(dots[sep] - 1) <= 1e-7), (what, dots[sep].min())
    return sep.sum()


def _adversarial(rng, n, d):
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    cases = {
        "random": (rng.normal(size=(n, d)) * np.geomspace(3, 0.05, d)) @ Q.T + 0.7,
        "offset 1e4, spread 1e-2": 1e4 + 1e-2 * rng.normal(size=(n, d)),
        "N < d": rng.normal(size=(d // 3, d)) + 2.0,
    }
    mass = rng.normal(size=(n, d))
    mass[:: max(1, n // 20), 3] = 2e3  # massive activations: a few huge rows
    cases["massive activations"] = mass
    return cases


@pytest.mark.parametrize("case", ["random", "offset 1e4, spread 1e-2", "N < d", "massive activations"])
def test_rank_one_route_matches_full_eigh(case):
    rng = np.random.default_rng(3)
    X = _adversarial(rng, 2000, 60)[case]
    _check_gram(X, case)


def test_rank_one_degenerate_cases():
    rng = np.random.default_rng(4)
    d, h = 40, 300
    # Rows ±y_i of integers: every sum is exact, so μ = 0 exactly (XᵀX = M,
    # nothing to update: the route must return the covariance's vectors).
    Y = rng.integers(-50, 50, size=(h, d)).astype(np.float64)
    X0 = np.vstack([Y, -Y])
    assert np.all(_state(X0).mean == 0)
    _check_gram(X0, "mu = 0")
    # Orthogonal columns with repeated scales: the covariance is diagonal
    # with a 10-fold and a 5-fold eigenvalue (deflation by rotation), and
    # a mean along e_0, an eigenvector (deflation of every other z_i).
    Qn, _ = np.linalg.qr(rng.normal(size=(h, d)))
    s = np.r_[np.full(10, 2.0), np.full(5, 0.5), np.geomspace(5, 0.1, d - 15)]
    B = Qn * s
    Xp = np.vstack([B, -B])
    Xp[:, 0] += 3.0
    n_sep = _check_gram(Xp, "mu ∥ e_0, repeated eigenvalues")
    assert n_sep < d  # the repeated ones really are repeated
    lam_c = np.linalg.eigvalsh(np.cov(Xp, rowvar=False))
    assert np.sum(np.isclose(lam_c, 2 * 2.0**2 / (2 * h - 1), rtol=1e-9)) == 10
    # The same data with the mean in a repeated eigenspace.
    Xr = np.vstack([B, -B]) + 1.5 * (np.eye(d)[0] + np.eye(d)[1])
    _check_gram(Xr, "mu in a repeated eigenspace")


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(3, 80),
    d=st.integers(2, 24),
    offset=st.sampled_from([0.0, 1.0, 1e3, 1e5]),
    seed=st.integers(0, 2**31 - 1),
)
def test_rank_one_route_property(n, d, offset, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.01, 3, size=d) + offset * rng.normal(size=d)
    if np.ptp(X, axis=0).max() == 0:
        return
    _check_gram(X, f"n={n} d={d} offset={offset}")


def test_raw_partition_isotropy_against_reference():
    rng = np.random.default_rng(5)
    for name, X in _adversarial(rng, 3000, 50).items():
        rep = isofast.analyze(X)
        want = ref.log_partition_isotropy(X)
        assert abs(rep.log_partition_isotropy - want) <= 1e-9 * max(1.0, abs(want)), name


# precision="fast" -----------------------------------------------------------


def _gamma(d):
    b = _core.fast_tile_rows(d) + 2
    u = 2.0**-24
    return b * u / (1 - b * u)


def _fast_cases(rng):
    n, d = 6000, 96
    out = {}
    for name, X in _adversarial(rng, n, d).items():
        out[name] = np.asarray(X, dtype=np.float32)
    return out


@pytest.mark.parametrize("case", ["random", "offset 1e4, spread 1e-2", "N < d", "massive activations"])
def test_fast_within_documented_bound(case):
    rng = np.random.default_rng(6)
    X = _fast_cases(rng)[case]
    X64 = X.astype(np.float64)
    d = X.shape[1]
    g = _gamma(d)
    want = ref.spectral(X64)
    lam_ref = want["eigenvalues"]
    T = lam_ref.sum()
    rep = isofast.analyze(X, precision="fast")
    slack = 1e-12  # float64 rounding of the reference itself
    assert np.max(np.abs(rep.eigenvalues - lam_ref)) <= g * T + slack * T, case
    assert abs(rep.total_variance - T) <= (g + slack) * T
    assert np.max(np.abs(rep.explained_variance_ratio - want["explained_variance_ratio"])) <= 2 * g / (1 - g) + slack
    pr = want["participation_ratio"]
    bound_pr = 2 * g * (1 + np.sqrt(pr)) / (1 - g * np.sqrt(pr)) ** 2 + slack
    assert abs(rep.participation_ratio - pr) <= bound_pr * pr
    assert abs(rep.isoscore - want["isoscore"]) <= bound_pr * pr / (d - 1)
    assert abs(rep.pc1_share - want["pc1_share"]) <= 2 * g / (1 - g) + slack
    sr = want["stable_rank"]
    assert abs(rep.stable_rank - sr) <= (g * (1 + sr) / (1 - g * sr) + slack) * sr
    # float64 in both modes: the mean and the cosines.
    np.testing.assert_allclose(rep.mean, X64.mean(0), rtol=1e-12, atol=1e-12 * np.abs(X64).max())
    assert abs(rep.avg_cosine - ref.avg_cosine_dense(X64)) <= 1e-10
    assert rep.n_zero_norm == 0
    assert any("precision='fast'" in s for s in rep.notes)


def test_fast_error_is_far_below_exact_input_rounding_on_offset_data():
    """On offset 1e4 / spread 1e-2 float32 data the fast mode's error is set
    by the tile-centred spread, not by the offset: the covariance eigenvalues
    agree with float64 to well under 1e-4 relative to their sum."""
    rng = np.random.default_rng(7)
    X = (1e4 + 1e-2 * rng.normal(size=(20000, 64))).astype(np.float32)
    lam = ref.cov_eigs(X)
    f = isofast.analyze(X, precision="fast", partition=False)
    assert np.max(np.abs(f.eigenvalues - lam)) / lam.sum() < 1e-4
    assert f.isoscore > 0.9  # an isotropic cloud stays isotropic


def test_fast_bitwise_across_thread_counts_and_exact_within_1e12():
    rng = np.random.default_rng(8)
    X = (rng.normal(size=(20000, 160)) * np.geomspace(4, 0.1, 160) + 5.0).astype(np.float32)
    fast = [isofast.analyze(X, precision="fast", n_threads=t).to_dict() for t in (1, 2, 3)]
    for r in fast[1:]:
        for k, v in fast[0].items():
            if k == "avg_cosine_centered":
                # Pass 2's centred unit sum is shared with exact mode (a
                # faer GEMV whose split follows the thread count): float64
                # rounding only.
                assert abs(r[k] - v) <= 1e-12, k
            else:
                assert r[k] == v, k  # bitwise
    ex = [isofast.analyze(X, n_threads=t) for t in (1, 3)]
    chunked = isofast.analyze([X[:7001], X[7001:13000], X[13000:]], n_threads=2)
    for r in (ex[1], chunked):
        assert np.max(np.abs(r.eigenvalues - ex[0].eigenvalues)) <= 1e-12 * ex[0].eigenvalues[0]
        for k in (
            "isoscore",
            "avg_cosine",
            "avg_cosine_centered",
            "log_partition_isotropy",
            "log_partition_isotropy_centered",
        ):
            a, b = getattr(r, k), getattr(ex[0], k)
            assert abs(a - b) <= 1e-12 * max(1.0, abs(b)), k
    # fast, chunked: other tiles, same bound.
    fc = isofast.analyze([X[:7001], X[7001:]], precision="fast")
    T = ex[0].total_variance
    assert np.max(np.abs(fc.eigenvalues - ex[0].eigenvalues)) <= _gamma(160) * T


def test_fast_moments_state_pickles_with_its_precision_and_merges():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(500, 12)).astype(np.float32)
    m = isofast.Moments(12, precision="fast").update(X[:300])
    assert m.precision == "fast"
    back = pickle.loads(pickle.dumps(m))
    assert back.precision == "fast"
    np.testing.assert_array_equal(back.comoment(), m.comoment())
    back.update(X[300:])
    whole = isofast.Moments(12).update(X)
    np.testing.assert_allclose(
        back.covariance(), whole.covariance(), rtol=0, atol=_gamma(12) * np.trace(whole.covariance())
    )
    raw = _core.Moments(12, "fast")
    assert pickle.loads(pickle.dumps(raw)).precision == "fast"


def test_precision_argument_is_checked():
    X = np.ones((4, 3)) + np.arange(12).reshape(4, 3) ** 2
    with pytest.raises(ValueError, match="precision must be 'exact' or 'fast'"):
        isofast.analyze(X, precision="half")
    with pytest.raises(TypeError, match="precision must be"):
        isofast.analyze(X, precision=32)
    with pytest.raises(ValueError, match="precision must be"):
        _core.Moments(3, "Fast")
    with pytest.raises(ValueError, match="precision must be"):
        isofast.Moments(3, precision="")


def test_released_state_refuses_clearly():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(200, 8))
    m = _state(X)
    ev, _sp = m.second_pass(True, release=True)
    assert m.released and m.n == 200 and m.mean.shape == (8,)
    np.testing.assert_allclose(ev, ref.cov_eigs(X), rtol=1e-12, atol=1e-12 * ev[0])
    for call in (
        m.covariance,
        m.comoment,
        m.eigenvalues,
        m.directions,
        lambda: m.update(X),
        lambda: m.second_pass(True),
        lambda: pickle.dumps(m),
    ):
        with pytest.raises(ValueError, match="released"):
            call()
    other = _state(X)
    with pytest.raises(ValueError, match="released"):
        other.merge(m)


def test_memory_budget_picks_a_route_with_equal_results():
    rng = np.random.default_rng(11)
    X = (rng.normal(size=(3000, 200)) * np.geomspace(3, 0.1, 200) + 1.0).astype(np.float32)
    a = isofast.analyze(X)
    b = isofast.analyze(X, memory_budget=1)  # too small for divide and conquer: QR iteration
    np.testing.assert_allclose(b.eigenvalues, a.eigenvalues, rtol=0, atol=1e-12 * a.eigenvalues[0])
    for k in ("isoscore", "log_partition_isotropy", "log_partition_isotropy_centered", "avg_cosine_centered"):
        assert abs(getattr(b, k) - getattr(a, k)) <= 1e-9 * max(1.0, abs(getattr(a, k))), k
    for bad in (0, -5, 1.5, True, "1GB"):
        with pytest.raises(ValueError, match="memory_budget"):
            isofast.analyze(X, memory_budget=bad)
