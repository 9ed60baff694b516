"""The per-cluster passes as Python states (isofast._core.ClusterFirstPass,
ClusterPlan, ClusterSecondPass): pickling, merging, and agreement with the
in-memory per-cluster statistics."""

import pickle

import numpy as np
import pytest

from isofast import _core
from isofast.errors import InputError


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    d = 8
    X = np.concatenate(
        [
            rng.standard_normal((400, d)) + 6 * np.eye(d)[0],
            0.5 * rng.standard_normal((300, d)) - 6 * np.eye(d)[1],
            0.1 * rng.standard_normal((5, d)) + 25.0,  # ≤ d rows: the Gram route
        ]
    )
    X = X[rng.permutation(len(X))] + 40.0
    centers = np.stack([40 + 6 * np.eye(d)[0], 40 - 6 * np.eye(d)[1], np.full(d, 65.0)])
    return X, centers


def _passes(X, centers, chunk, spectra=True):
    shift = X[:50].mean(axis=0)
    first = _core.ClusterFirstPass(centers, shift, spectra)
    for a in range(0, len(X), chunk):
        part = _core.ClusterFirstPass(centers, shift, spectra)
        part.update(X[a : a + chunk])
        first.merge(pickle.loads(pickle.dumps(part)))
    plan = pickle.loads(pickle.dumps(first.finish()))
    second = _core.ClusterSecondPass()
    labels = []
    for a in range(0, len(X), chunk):
        part = _core.ClusterSecondPass()
        labels.append(part.update(plan, X[a : a + chunk]))
        second.merge(pickle.loads(pickle.dumps(part)))
    return np.concatenate(labels), plan, second.finish(plan)


@pytest.mark.parametrize("spectra", [True, False])
def test_chunked_pickled_passes_equal_in_memory_statistics(data, spectra):
    X, centers = data
    labels, plan, stats = _passes(X, centers, 97, spectra)
    assert plan.sizes == [400, 300, 5]
    assert plan.routes == (["primal", "primal", "gram"] if spectra else ["cosine"] * 3)
    one_labels, _, one = _passes(X, centers, len(X), spectra)
    np.testing.assert_array_equal(labels, one_labels)
    ref = _core.cluster_statistics(X, labels, 3, None, spectra, 2)
    for got in (stats, one):
        for a, b in zip(got, ref):
            assert a.size == b.size and a.n_zero_norm == b.n_zero_norm
            for k in ("avg_cosine_centered", "isoscore", "log_partition_isotropy"):
                if np.isnan(getattr(b, k)):
                    assert np.isnan(getattr(a, k))
                else:
                    assert getattr(a, k) == pytest.approx(getattr(b, k), rel=1e-9, abs=1e-12), k
    np.testing.assert_allclose(plan.means[0], X[labels == 0].mean(axis=0), rtol=1e-12)


def test_damaged_state_bytes_raise_input_error(data):
    X, centers = data
    first = _core.ClusterFirstPass(centers, X.mean(axis=0))
    first.update(X)
    plan = first.finish()
    second = _core.ClusterSecondPass(plan)
    second.update(plan, X)
    for state in (first, plan, second):
        b = bytearray(state.__getstate__())
        b[len(b) // 2] ^= 1
        fresh = type(state).__new__(type(state), *state.__getnewargs__())
        with pytest.raises(InputError, match="corrupt"):
            fresh.__setstate__(bytes(b))
    with pytest.raises(InputError, match="another ClusterPlan"):
        other = _core.ClusterFirstPass(centers, X.mean(axis=0) + 1.0)
        other.update(X)
        second.finish(other.finish())
    with pytest.raises(InputError, match="empty ClusterPlan"):
        _core.ClusterSecondPass().update(_core.ClusterPlan(), X)


def test_self_merge_doubles_like_a_copy(data):
    """``s.merge(s)`` counts the rows twice, exactly as merging an equal copy
    (no borrow error from the bindings)."""
    X, centers = data
    shift = X.mean(axis=0)
    a = _core.ClusterFirstPass(centers, shift)
    a.update(X)
    b = a.copy()
    b.merge(a.copy())
    a.merge(a)
    assert a.sizes == b.sizes == [800, 600, 10]
    assert a.__getstate__() == b.__getstate__()
    plan = a.finish()
    s = _core.ClusterSecondPass(plan)
    s.update(plan, X)
    t = s.copy()
    t.merge(s.copy())
    s.merge(s)
    assert s.n == t.n == 2 * len(X)
    assert s.__getstate__() == t.__getstate__()


def test_bad_arguments_raise_project_errors(data):
    from isofast.errors import DimensionError, EmptyInputError, NonFiniteError

    X, centers = data
    shift = X.mean(axis=0)
    with pytest.raises(EmptyInputError, match="no centres"):
        _core.ClusterFirstPass(np.zeros((0, X.shape[1])), shift)
    with pytest.raises(InputError, match="NaN or Inf"):
        _core.ClusterFirstPass(np.full_like(centers, np.nan), shift)
    first = _core.ClusterFirstPass(centers, shift)
    with pytest.raises(DimensionError):
        first.update(X[:, :3])
    before = first.__getstate__()
    bad = X.copy()
    bad[40, 2] = np.inf
    with pytest.raises(NonFiniteError) as info:
        first.update(bad)
    assert (info.value.row, info.value.col) == (40, 2)
    assert first.__getstate__() == before  # refused within its one tile: nothing was folded in
    with pytest.raises(InputError, match="min_cluster_size"):
        first.finish(-1)
