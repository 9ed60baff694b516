"""hypothesis properties: invariance to rotation, scale, row order, chunking,
merge order and thread count; merge associativity."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import isofast

SPECTRAL = ("isoscore", "participation_ratio", "stable_rank", "pc1_share", "effective_rank")


@st.composite
def matrices(draw, min_n=4, max_n=120, min_d=2, max_d=10):
    n = draw(st.integers(min_n, max_n))
    d = draw(st.integers(min_d, max_d))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.1, 5.0, size=d)
    offset = draw(st.sampled_from([0.0, 1.0, 100.0]))
    X = rng.normal(size=(n, d)) * scales + offset * rng.normal(size=d)
    return X, rng


def close(a, b, rel=1e-9, abs_=1e-11):
    return a == pytest.approx(b, rel=rel, abs=abs_)


@settings(max_examples=40, deadline=None)
@given(matrices())
def test_rotation_invariance(data):
    X, rng = data
    d = X.shape[1]
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a, b = isofast.analyze(X), isofast.analyze(X @ Q)
    for k in SPECTRAL:
        assert close(getattr(a, k), getattr(b, k), rel=1e-7), k
    assert (
        a.effective_dim == b.effective_dim
        or abs(np.cumsum(a.explained_variance_ratio)[a.effective_dim - 1] - 0.8) < 1e-9
    )
    assert close(a.avg_cosine_centered, b.avg_cosine_centered, rel=1e-7, abs_=1e-9)
    assert close(a.avg_cosine, b.avg_cosine, rel=1e-7, abs_=1e-9)
    # Partition isotropy is defined through eigenvectors, which rotate with X.
    assert close(a.log_partition_isotropy_centered, b.log_partition_isotropy_centered, rel=1e-6, abs_=1e-7)


@settings(max_examples=30, deadline=None)
@given(matrices(), st.floats(0.01, 100.0))
def test_scale_invariance(data, s):
    X, _ = data
    a, b = isofast.analyze(X), isofast.analyze(X * s)
    for k in SPECTRAL:
        assert close(getattr(a, k), getattr(b, k), rel=1e-8), k
    assert close(a.avg_cosine, b.avg_cosine)
    assert close(a.avg_cosine_centered, b.avg_cosine_centered, abs_=1e-10)
    assert close(b.total_variance, a.total_variance * s * s, rel=1e-8)


@settings(max_examples=30, deadline=None)
@given(matrices(), st.data())
def test_row_order_chunking_and_threads(data, draw):
    X, rng = data
    n = X.shape[0]
    base = isofast.analyze(X, n_threads=1)
    perm = rng.permutation(n)
    cuts = sorted(draw.draw(st.lists(st.integers(1, n - 1), max_size=4, unique=True)))
    chunks = np.split(X[perm], cuts)
    other = isofast.analyze(chunks, n_threads=draw.draw(st.integers(1, 4)))
    np.testing.assert_allclose(other.eigenvalues, base.eigenvalues, rtol=1e-12, atol=1e-12 * base.eigenvalues[0])
    np.testing.assert_allclose(other.mean, base.mean, rtol=1e-12, atol=1e-12 * np.abs(base.mean).max())
    for k in SPECTRAL + (
        "avg_cosine",
        "avg_cosine_centered",
        "log_partition_isotropy",
        "log_partition_isotropy_centered",
    ):
        assert close(getattr(other, k), getattr(base, k), rel=1e-10, abs_=1e-12), k


@settings(max_examples=25, deadline=None)
@given(matrices(min_n=9), st.data())
def test_merge_order_and_associativity(data, draw):
    X, rng = data
    n, d = X.shape
    parts = np.array_split(X, 3)
    ms = [isofast.Moments(d).update(p) for p in parts]
    a = ms[0].copy().merge(ms[1]).merge(ms[2])  # (a+b)+c
    bc = ms[1].copy().merge(ms[2])
    b = ms[0].copy().merge(bc)  # a+(b+c)
    c = ms[2].copy().merge(ms[0]).merge(ms[1])  # other order
    whole = isofast.Moments(d).update(X)
    for m in (a, b, c):
        assert m.n == n
        np.testing.assert_allclose(
            m.covariance(), whole.covariance(), rtol=1e-12, atol=1e-12 * np.abs(whole.covariance()).max()
        )
        np.testing.assert_allclose(m.mean, whole.mean, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(whole.mean).max()))
        assert close(m.report().isoscore, whole.report().isoscore, rel=1e-10)
    # Pickle round trip keeps the state exactly.
    back = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(back.covariance(), a.covariance())
    assert back.n == a.n


def test_thread_count_exactness_on_larger_input():
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(30000, 48)) * np.geomspace(5, 0.2, 48) + 3).astype(np.float32)
    reps = [isofast.analyze(X, n_threads=t) for t in (1, 2, 3)]
    for r in reps[1:]:
        np.testing.assert_allclose(r.eigenvalues, reps[0].eigenvalues, rtol=1e-12, atol=1e-12 * reps[0].eigenvalues[0])
        for k in SPECTRAL + (
            "avg_cosine",
            "avg_cosine_centered",
            "log_partition_isotropy",
            "log_partition_isotropy_centered",
        ):
            assert close(getattr(r, k), getattr(reps[0], k), rel=1e-12, abs_=1e-13), k


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_row_chunks_change_nothing(dtype):
    # A 1-row tile once took faer's matrix-vector route (another summation
    # order): 1e-10 relative in log Z for float32. Now padded to 2 rows.
    rng = np.random.default_rng(4)
    X = (rng.normal(size=(300, 40)) * np.geomspace(5, 0.2, 40) + 3).astype(dtype)
    a = isofast.analyze(X)
    b = isofast.analyze([X[:1], X[1:2], X[2:150], X[150:151], X[151:]])
    for k in SPECTRAL + (
        "avg_cosine",
        "avg_cosine_centered",
        "log_partition_isotropy",
        "log_partition_isotropy_centered",
    ):
        assert close(getattr(b, k), getattr(a, k), rel=1e-12, abs_=1e-13), k
