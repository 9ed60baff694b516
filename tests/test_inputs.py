"""Every accepted input form, and a clear Python exception for every bad one."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

import isofast
import reference as ref


@pytest.fixture
def X():
    rng = np.random.default_rng(0)
    return rng.normal(size=(300, 12)) * np.linspace(3, 0.5, 12) + 1.5


def same(a, b, rel=1e-9):
    np.testing.assert_allclose(a.eigenvalues, b.eigenvalues, rtol=rel, atol=rel * b.eigenvalues[0])
    for k in ("isoscore", "avg_cosine", "avg_cosine_centered", "log_partition_isotropy_centered"):
        assert getattr(a, k) == pytest.approx(getattr(b, k), rel=rel, abs=1e-9), k


def test_layouts_fortran_strided_negative_readonly(X):
    base = isofast.analyze(X)
    same(isofast.analyze(np.asfortranarray(X)), base)
    wide = np.zeros((300, 36))
    wide[:, ::3] = X
    same(isofast.analyze(wide[:, ::3]), base)
    same(isofast.analyze(X[::-1]), base)  # negative row stride, reversed rows
    ro = X.copy()
    ro.setflags(write=False)
    same(isofast.analyze(ro), base)
    big = np.repeat(X, 2, axis=0)
    same(isofast.analyze(big[::2]), base)


def test_memmap(tmp_path, X):
    p = tmp_path / "x.npy"
    np.save(p, X.astype(np.float32))
    mm = np.load(p, mmap_mode="r")
    same(isofast.analyze(mm), isofast.analyze(X.astype(np.float32)), rel=1e-10)


def test_float16_bfloat16_and_integers(X):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    h = X.astype(np.float16)
    same(isofast.analyze(h), isofast.analyze(h.astype(np.float64)), rel=1e-6)
    bf = X.astype(ml_dtypes.bfloat16)
    r_bf = isofast.analyze(bf)
    same(r_bf, isofast.analyze(bf.astype(np.float64)), rel=1e-6)
    bits = bf.view(np.uint16)
    same(isofast.analyze(bits, dtype="bfloat16"), r_bf, rel=1e-12)
    ints = (X * 100).astype(np.int32)
    same(isofast.analyze(ints), isofast.analyze(ints.astype(np.float64)), rel=1e-12)
    same(isofast.analyze((X * 10).astype(np.int8)), isofast.analyze((X * 10).astype(np.int8).astype(float)), rel=1e-12)


def test_torch_tensors(X):
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(X.astype(np.float32))
    same(isofast.analyze(t), isofast.analyze(X.astype(np.float32)), rel=1e-12)
    tb = t.to(torch.bfloat16)
    same(isofast.analyze(tb), isofast.analyze(tb.float().numpy()), rel=1e-6)
    same(isofast.analyze([t[:100], t[100:]]), isofast.analyze(t), rel=1e-12)


def test_iterables_and_factories(X):
    base = isofast.analyze(X)
    same(isofast.analyze([X[:50], X[50:]]), base)
    same(isofast.analyze((X[:50], X[50:])), base)
    same(isofast.analyze(lambda: iter([X[:7], X[7:]])), base)
    with pytest.warns(UserWarning, match="one-shot iterator"):
        r = isofast.analyze(c for c in [X[:10], X[10:]])
    assert r.avg_cosine_centered is None and r.partition_isotropy is None
    assert r.isoscore == pytest.approx(base.isoscore, rel=1e-10)
    assert isofast.analyze(X.tolist()).n == 300


def test_moments_streaming_and_report(X):
    m = isofast.Moments(12)
    for part in np.array_split(X, 5):
        m.update(part)
    rep = m.report()
    assert rep.n == 300 and rep.partition_isotropy is None
    assert rep.isoscore == pytest.approx(ref.spectral(X)["isoscore"], rel=1e-10)
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.n == 300 and repr(m2) == "Moments(dim=12, n=300)"
    assert (m + m2).n == 600


# ---- bad input -------------------------------------------------------------


def test_empty_and_one_row():
    with pytest.raises(ValueError, match="empty"):
        isofast.analyze(np.zeros((0, 5)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        isofast.analyze(np.ones((1, 5)))
    with pytest.raises(ValueError, match="empty"):
        isofast.analyze([])
    with pytest.raises(ValueError, match="empty"):
        isofast.avg_cosine(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="0 columns"):
        isofast.analyze(np.zeros((4, 0)))
    with pytest.raises(ValueError, match="2 dimensions"):
        isofast.analyze(np.random.default_rng(0).normal(size=(10, 1)))


@pytest.mark.parametrize("shape", [(10,), (2, 3, 4), ()])
def test_wrong_ndim(shape):
    with pytest.raises(ValueError, match="2-D"):
        isofast.analyze(np.ones(shape))


@pytest.mark.parametrize(
    "arr",
    [
        np.array([["a", "b"], ["c", "d"]]),
        np.ones((3, 2), dtype=bool),
        np.ones((3, 2), dtype=complex),
        np.array([[object(), 1], [2, 3]], dtype=object),
        np.ones((3, 2), dtype="datetime64[s]"),
    ],
)
def test_non_numeric_dtypes(arr):
    with pytest.raises(TypeError):
        isofast.analyze(arr)


def test_unsupported_objects():
    with pytest.raises(TypeError):
        isofast.analyze(object())
    with pytest.raises(TypeError):
        isofast.analyze(np.ones((3, 2)), dtype="float8")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_names_first_bad_row(bad, X):
    Y = X.copy()
    Y[137, 4] = bad
    Y[200, 1] = bad
    with pytest.raises(ValueError, match="row 137, column 4"):
        isofast.analyze(Y)
    # In a chunked stream the row number counts from the start of the stream.
    with pytest.raises(ValueError, match="row 137"):
        isofast.analyze([Y[:100], Y[100:]])
    with pytest.raises(ValueError, match="row 137"):
        isofast.avg_cosine(Y.astype(np.float32))
    with pytest.raises(ValueError, match="row 137"):
        isofast.all_but_the_top(Y, 1)


def test_zero_norm_rows_are_skipped_and_counted(X):
    Y = X.copy()
    Y[[3, 50, 51]] = 0.0
    rep = isofast.analyze(Y)
    assert rep.n_zero_norm == 3
    assert rep.avg_cosine == pytest.approx(ref.avg_cosine_dense(Y), rel=1e-10)
    assert any("zero-norm" in n for n in rep.notes)
    # A row equal to the mean has zero norm after centring.
    Z = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    rz = isofast.analyze(Z)
    assert rz.n_zero_norm == 1 and rz.n_zero_norm_centered == 1
    assert np.isnan(isofast.avg_cosine(np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])))


def test_identical_rows():
    with pytest.raises(ValueError, match="zero total variance"):
        isofast.analyze(np.ones((10, 4)))


def test_dimension_mismatches(X):
    m = isofast.Moments(12)
    with pytest.raises(ValueError, match="expected 12 columns, got 5"):
        m.update(np.ones((3, 5)))
    with pytest.raises(ValueError, match="dimension mismatch"):
        m.merge(isofast.Moments(13))
    with pytest.raises(TypeError):
        m.merge("not a state")
    with pytest.raises(ValueError, match="chunk 1 has 5 columns"):
        isofast.analyze([X, np.ones((3, 5))])
    with pytest.raises(ValueError, match="groups has 3 labels"):
        isofast.self_similarity(X, [1, 2, 3])
    with pytest.raises(ValueError, match="dimension"):
        isofast.log_partition(X, np.ones(5))
    with pytest.raises(ValueError, match="n_components"):
        isofast.all_but_the_top(X, 13)
    with pytest.raises(ValueError, match="eps"):
        isofast.effective_dim(X, eps=0.0)


def test_corrupt_pickle_state():
    m = isofast.Moments(3).update(np.random.default_rng(0).normal(size=(5, 3)))
    state = m.__getstate__()
    broken = isofast.Moments(1)
    with pytest.raises(ValueError, match="corrupt"):
        broken.__setstate__(state[:-5])
    with pytest.raises(ValueError, match="corrupt"):
        broken.__setstate__(b"garbage" * 10)


def test_byte_swapped_input_is_read_correctly(X):
    sw = X.astype(X.dtype.newbyteorder(">"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same(isofast.analyze(sw), isofast.analyze(X), rel=1e-12)
