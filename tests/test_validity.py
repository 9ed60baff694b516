"""Statistical validity primitives: row norms, massive rows, N ≥ d floors,
cluster-size floors and Gaussian nulls (docs/validity.md). Every statistic
is checked against a plain float64 numpy reference written here."""

from __future__ import annotations

import math
import warnings

import isofast
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from isofast.massive import MassiveRowsWarning, excluding_rows
from isofast.nulls import (
    NULL_RELATION,
    NULL_STATISTICS,
    null_statistics,
    relative_to_null,
)
from isofast.sources import EXAMPLE_LAYERS, load_example

SCALARS = (
    "effective_dim",
    "participation_ratio",
    "isoscore",
    "stable_rank",
    "pc1_share",
    "effective_rank",
    "total_variance",
    "avg_cosine",
    "avg_cosine_centered",
    "partition_isotropy",
    "log_partition_isotropy",
    "partition_isotropy_centered",
    "log_partition_isotropy_centered",
)


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def gauss(n, d, seed=0, scale=1.0):
    return np.random.default_rng(seed).standard_normal((n, d)) * scale


def ref_norms(X, center=None):
    X = np.asarray(X, dtype=np.float64)
    if center is not None:
        X = X - np.asarray(center, dtype=np.float64)
    return np.sqrt(np.sum(X * X, axis=1))


# ---------------------------------------------------------------- row_norms
def test_row_norms_match_numpy_for_dtypes_layouts_and_centre(tmp_path):
    X = gauss(300, 37, 1) * 3 + 2
    c = np.linspace(-1, 1, 37)
    np.testing.assert_allclose(isofast.row_norms(X), ref_norms(X), rtol=1e-14)
    np.testing.assert_allclose(isofast.row_norms(X, center=c), ref_norms(X, c), rtol=1e-14)
    np.testing.assert_allclose(isofast.row_norms(np.asfortranarray(X)[::-1]), ref_norms(X[::-1]), rtol=1e-14)
    for dt in (np.float32, np.float16, np.int32):
        Y = X.astype(dt)
        np.testing.assert_allclose(isofast.row_norms(Y), ref_norms(Y), rtol=1e-12)
    p = tmp_path / "x.npy"
    np.save(p, X)
    mm = np.load(p, mmap_mode="r")
    np.testing.assert_array_equal(isofast.row_norms(mm), isofast.row_norms(X))
    np.testing.assert_array_equal(isofast.row_norms([X[:100], X[100:]]), isofast.row_norms(X))
    assert isofast.row_norms(np.zeros((0, 4))).shape == (0,)
    assert isofast.row_norms(np.zeros((3, 4))).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("scale", [1e-300, 1e-200, 1e-150, 1e150, 1e200, 1e300])
def test_row_norms_extreme_magnitudes_match_rescaled_reference(scale):
    X = gauss(50, 64, 2)
    got = isofast.row_norms(X * scale)
    assert np.all(np.isfinite(got)) and np.all(got > 0)
    # Reference on the rescaled data: ‖s·x‖ = s·‖x‖ (computed in range).
    np.testing.assert_allclose(got / scale, ref_norms(X), rtol=1e-13)
    # A centre at the same magnitude.
    c = np.full(64, 0.5) * scale
    np.testing.assert_allclose(
        isofast.row_norms(X * scale, center=c) / scale, ref_norms(X, np.full(64, 0.5)), rtol=1e-13
    )


def test_row_norms_huge_offset_centred_is_exact():
    X = gauss(100, 16, 3) + 1e9
    mu = X.mean(0)
    np.testing.assert_allclose(isofast.row_norms(X, center=mu), ref_norms(X, mu), rtol=1e-12)


def test_row_norms_bad_input():
    X = gauss(20, 5, 4)
    X[13, 3] = np.nan
    with pytest.raises(ValueError, match="row 13, column 3"):
        isofast.row_norms(X)
    Y = gauss(20, 5, 4)
    Y[3, 1] = np.inf
    with pytest.raises(ValueError, match="row 13, column 1"):
        isofast.row_norms([gauss(10, 5), Y])
    with pytest.raises(ValueError, match="center"):
        isofast.row_norms(gauss(4, 5), center=np.zeros(4))
    with pytest.raises(ValueError, match="center"):
        isofast.row_norms(gauss(4, 5), center=np.zeros((1, 5)))
    with pytest.raises(ValueError, match="center contains NaN"):
        isofast.row_norms(gauss(4, 5), center=np.array([0, 0, np.nan, 0, 0.0]))
    with pytest.raises(TypeError, match="center"):
        isofast.row_norms(gauss(4, 5), center=True)
    with pytest.raises(ValueError, match="0 columns"):
        isofast.row_norms(np.zeros((4, 0)))
    with pytest.raises(TypeError):
        isofast.row_norms(np.array([["a", "b"]]))


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 60),
    st.integers(1, 12),
    st.integers(0, 2**31),
    st.integers(-60, 60),
    st.integers(1, 4),
    st.integers(1, 3),
)
def test_row_norms_properties(n, d, seed, log2s, threads, parts):
    X = np.random.default_rng(seed).standard_normal((n, d))
    base = isofast.row_norms(X, n_threads=1)
    perm = np.random.default_rng(seed + 1).permutation(n)
    np.testing.assert_array_equal(isofast.row_norms(X[perm], n_threads=threads), base[perm])
    s = 2.0**log2s  # exact scaling by a power of two
    np.testing.assert_array_equal(isofast.row_norms(X * s), base * s)
    cuts = np.array_split(np.arange(n), parts)
    np.testing.assert_array_equal(isofast.row_norms([X[c] for c in cuts if c.size]), base)
    np.testing.assert_allclose(base, ref_norms(X), rtol=1e-14)


# ------------------------------------------------------------- massive rows
def ref_massive(X, ratio):
    X = np.asarray(X, dtype=np.float64)
    r = np.linalg.norm(X, axis=1)
    med = np.median(r)
    idx = np.flatnonzero(r > ratio * med)
    c = np.sum((X - X.mean(0)) ** 2, axis=1)
    return idx, med, c[idx].sum() / c.sum(), r.max()


@pytest.mark.parametrize("pos", [0, 7, 399])
def test_planted_massive_row_anywhere_matches_reference(pos):
    X = gauss(400, 48, 5)
    X[pos] *= 5000.0
    m = isofast.massive_rows(X)
    idx, med, share, mx = ref_massive(X, 100.0)
    assert m.indices.tolist() == idx.tolist() == [pos]
    assert m.indices.dtype == np.intp and m.n == 400 and m.n_massive == 1
    assert rel(m.median_norm, med) < 1e-13 and rel(m.threshold, 100 * med) < 1e-13
    assert rel(m.variance_share, share) < 1e-12 and rel(m.max_norm, mx) < 1e-13
    assert m.mask.sum() == 1 and m.mask[pos]
    d = m.to_dict()
    assert d["indices"] == [pos] and d["n_massive"] == 1 and m.notes


def test_controls_do_not_trigger_and_real_example_does():
    rng = np.random.default_rng(6)
    for X in (rng.standard_normal((578, 576)), rng.standard_t(3, (578, 576))):
        m = isofast.massive_rows(X)
        assert m.n_massive == 0 and m.variance_share == 0.0
        assert m.max_norm / m.median_norm < 20
    found = {}
    for L in EXAMPLE_LAYERS:
        m = isofast.massive_rows(load_example(L))
        found[L] = m.indices.tolist()
        idx, _med, share, _ = ref_massive(load_example(L), 100.0)
        assert found[L] == idx.tolist()
        if idx.size:
            assert rel(m.variance_share, share) < 1e-10
    assert found[15] == [0]  # the first token: norm ≈ 29,000 vs median ≈ 145
    m = isofast.massive_rows(load_example(15))
    assert 150 < m.max_norm / m.median_norm < 300 and m.variance_share > 0.99


def test_massive_rows_edges():
    z = isofast.massive_rows(np.zeros((5, 3)))
    assert z.n_massive == 0 and z.median_norm == 0 and math.isnan(z.variance_share)
    assert any("every row is zero" in n for n in z.notes)
    half = np.zeros((5, 3))
    half[1] = [1e-10, 0, 0]
    half[4] = [0, 2, 0]
    h = isofast.massive_rows(half)
    assert h.indices.tolist() == [1, 4] and any("median row norm is 0" in n for n in h.notes)
    one = isofast.massive_rows(np.array([[3.0, 4.0]]))
    assert one.n == 1 and one.n_massive == 0 and one.median_norm == 5.0
    big = gauss(100, 8, 7) * 1e200
    big[3] *= 1e4
    b = isofast.massive_rows(big)
    _idx, _, share, _ = ref_massive(big / 1e200, 100.0)
    assert b.indices.tolist() == [3] and rel(b.variance_share, share) < 1e-12
    assert isofast.massive_rows(gauss(100, 8), ratio=1.0).n_massive > 0
    for bad in (0, -1, np.nan, np.inf):
        with pytest.raises(ValueError, match="ratio"):
            isofast.massive_rows(gauss(10, 3), ratio=bad)
    with pytest.raises(TypeError, match="ratio"):
        isofast.massive_rows(gauss(10, 3), ratio="100")
    with pytest.raises(ValueError, match="at least 1 row"):
        isofast.massive_rows(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="0 columns"):
        isofast.massive_rows(np.zeros((3, 0)))
    with pytest.raises(TypeError, match="more than once"):
        isofast.massive_rows(iter([gauss(10, 3)]))
    X = gauss(10, 3)
    X[4, 2] = np.nan
    with pytest.raises(ValueError, match="row 4, column 2"):
        isofast.massive_rows(X)


def test_excluding_rows_yields_tiles_without_masked_rows():
    X = gauss(1000, 4, 8)
    mask = np.zeros(1000, bool)
    mask[[0, 500, 999]] = True
    src = excluding_rows([X[:300], X[300:]], mask)
    got = np.concatenate([a for a, _ in src.chunks()])
    np.testing.assert_array_equal(got, X[~mask])
    np.testing.assert_array_equal(np.concatenate([a for a, _ in src.chunks()]), got)  # re-iterable


# --------------------------------------------------------------- analyze()
def planted(n=900, d=32, seed=9, pos=(0, 450)):
    X = gauss(n, d, seed) + 3.0
    for p in pos:
        X[p] *= 2000.0
    return X


def test_analyze_massive_none_is_unchanged_and_flag_only_reports():
    X = planted()
    base = isofast.analyze(X)
    assert base.n_massive is None and base.massive_variance_share is None and not base.massive_excluded
    assert any("massive='flag'" in n for n in base.notes)  # pc1_share > 0.9 heuristic
    with pytest.warns(MassiveRowsWarning, match="2 of 900 rows"):
        f = isofast.analyze(X, massive="flag")
    assert f.n_massive == 2 and not f.massive_excluded and f.n == 900
    _idx, _, share, _ = ref_massive(X, 100.0)
    assert rel(f.massive_variance_share, share) < 1e-12
    for k in SCALARS:
        assert getattr(f, k) == getattr(base, k), k
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean = isofast.analyze(gauss(900, 32), massive="flag")
    assert clean.n_massive == 0 and clean.massive_variance_share == 0.0


def test_analyze_exclude_equals_analysis_without_the_rows(tmp_path):
    X = planted()
    mask = isofast.massive_rows(X).mask
    want = isofast.analyze(X[~mask])
    p = tmp_path / "x.npy"
    np.save(p, X.astype(np.float32))
    want32 = isofast.analyze(np.load(p)[~mask])
    for inp, ref in (
        (X, want),
        ([X[:400], X[400:]], want),
        (lambda: iter([X[:100], X[100:]]), want),
        (np.load(p, mmap_mode="r"), want32),
    ):
        got = isofast.analyze(inp, massive="exclude")
        assert got.massive_excluded and got.n_massive == 2 and got.n == 898
        for k in SCALARS:
            a, b = getattr(got, k), getattr(ref, k)
            assert rel(a, b) <= 1e-12 or abs(a - b) < 1e-14, (k, a, b)
        np.testing.assert_allclose(got.mean, ref.mean, rtol=1e-12)
        np.testing.assert_allclose(got.eigenvalues, ref.eigenvalues, rtol=1e-9, atol=1e-12 * ref.eigenvalues[0])
    d = got.to_dict(arrays=False)
    assert d["n_massive"] == 2 and d["massive_excluded"] is True and "invalid" in d
    assert "massive rows" in got.table()


def test_analyze_bad_massive_arguments():
    X = gauss(50, 4)
    with pytest.raises(ValueError, match="massive must be"):
        isofast.analyze(X, massive="drop")
    with pytest.raises(ValueError, match="massive_ratio"):
        isofast.analyze(X, massive="flag", massive_ratio=0)
    with pytest.raises(TypeError, match="more than once"):
        isofast.analyze(iter([X]), massive="flag")
    with pytest.raises(TypeError, match="floors"):
        isofast.analyze(X, floors="yes")


def test_invalid_and_floors_when_n_below_d():
    X = gauss(258, 576, 10)
    rep = isofast.analyze(X)
    spectral = {
        "isoscore",
        "participation_ratio",
        "effective_dim",
        "effective_rank",
        "stable_rank",
        "pc1_share",
        "explained_variance_ratio",
        "partition_isotropy",
        "log_partition_isotropy",
        "partition_isotropy_centered",
        "log_partition_isotropy_centered",
    }
    assert set(rep.invalid) == spectral
    assert all("N = 258 rows < d = 576 dimensions" in r and "rank-deficient" in r for r in rep.invalid.values())
    assert np.isfinite(rep.isoscore)  # reported, but flagged
    assert "invalid: N = 258" in rep.table()
    fl = isofast.analyze(X, floors=True)
    assert fl.invalid == rep.invalid
    for k in spectral:
        v = getattr(fl, k)
        assert np.all(np.isnan(v)), k
    for k in ("avg_cosine", "avg_cosine_centered", "total_variance"):
        assert getattr(fl, k) == getattr(rep, k)
    d = fl.to_dict(arrays=False)
    assert d["isoscore"] is None and d["invalid"]["isoscore"].startswith("N = 258")
    assert "nan" not in fl.table().split("isoscore")[1].split("\n")[0]  # reason shown, not a number
    ok = isofast.analyze(gauss(600, 576, 11), floors=True)
    assert ok.invalid == {} and np.isfinite(ok.isoscore)
    assert isofast.analyze(gauss(576, 576, 12)).invalid == {}


# ------------------------------------------------------------------ clusters
def blobs_with_pair(seed=13, d=6, n_per=60):
    rng = np.random.default_rng(seed)
    cents = rng.standard_normal((3, d)) * 20
    X = np.concatenate([c + rng.standard_normal((n_per, d)) for c in cents])
    pair = 400 + rng.standard_normal((2, d))
    return np.concatenate([X, pair]), 3 * n_per


def dense_cos(Y):
    Y = Y - Y.mean(0)
    U = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    S = U @ U.T
    n = len(Y)
    return (S.sum() - n) / (n * (n - 1))


def test_planted_two_row_cluster_never_contributes():
    X, _m = blobs_with_pair()
    kw = dict(k_range=[4], threshold=-1.0, seed=1)
    free = isofast.cluster_isotropy(X, min_cluster_size=None, **kw)
    sizes = [c["size"] for c in free.clusters]
    pair = sizes.index(2)
    assert abs(free.clusters[pair]["avg_cosine_centered"] + 1) < 1e-12
    assert not free.floors and free.min_cluster_size == 2 and free.n_small_clusters == 0
    assert any("reference recipe without floors" in n for n in free.notes)
    rep = isofast.cluster_isotropy(X, **kw)  # default floor 10
    assert rep.floors and rep.min_cluster_size == 10 and rep.n_small_clusters == 1
    c = rep.clusters[pair]
    assert math.isnan(c["avg_cosine_centered"]) and "below min_cluster_size" in c["note"]
    labels = rep.labels
    big = [dense_cos(X[labels == i]) for i in range(4) if i != pair]
    sz = [np.sum(labels == i) for i in range(4) if i != pair]
    assert abs(rep.inter_cluster_cosine - np.mean(big)) < 1e-12
    assert abs(rep.inter_cluster_cosine_weighted - np.dot(big, sz) / np.sum(sz)) < 1e-12
    assert abs(free.inter_cluster_cosine - np.mean(big + [-1.0])) < 1e-12
    none = isofast.cluster_isotropy(X, min_cluster_size=10**6, **kw)
    assert math.isnan(none.inter_cluster_cosine) and none.n_small_clusters == 4
    assert any("no cluster qualifies" in n for n in none.notes)
    assert isofast.cluster_isotropy(X, min_cluster_size=1, **kw).floors is False
    for bad in (-1, 2.5, "10", True):
        with pytest.raises(ValueError, match="min_cluster_size"):
            isofast.cluster_isotropy(X, min_cluster_size=bad, **kw)


def test_reference_recipe_defaults_to_no_floor():
    X, _ = blobs_with_pair(d=4, n_per=800)
    r = isofast.reference_recipe(X, seed=0, spectra=False)
    assert r.mode == "reference" and not r.floors and r.n_clustered == 2000
    assert any("reference recipe without floors" in n for n in r.notes)
    r10 = isofast.reference_recipe(X, seed=0, spectra=False, min_cluster_size=10)
    assert r10.floors and r10.min_cluster_size == 10


def test_cluster_massive_exclude_equals_data_without_the_row():
    rng = np.random.default_rng(14)
    cents = rng.standard_normal((2, 8)) * 15
    X = np.concatenate([c + rng.standard_normal((150, 8)) for c in cents])
    X = np.insert(X, 77, X[3] * 1e4, axis=0)  # a massive row in the middle
    kw = dict(k_range=[2, 3], seed=3, n_threads=2)
    with pytest.warns(MassiveRowsWarning):
        fl = isofast.cluster_isotropy(X, massive="flag", **kw)
    assert fl.n_massive == 1 and fl.n_clustered == 301
    ex = isofast.cluster_isotropy(X, massive="exclude", **kw)
    ref = isofast.cluster_isotropy(np.delete(X, 77, axis=0), **kw)
    assert ex.n_massive == 1 and ex.n == 301 and ex.n_clustered == 300
    assert 77 not in ex.clustered_rows and len(ex.labels) == 300
    assert ex.best_k == ref.best_k == 2
    np.testing.assert_array_equal(ex.labels, ref.labels)
    assert abs(ex.inter_cluster_cosine - ref.inter_cluster_cosine) < 1e-12
    for a, b in zip(ex.clusters, ref.clusters):
        assert a["size"] == b["size"] and abs(a["isoscore"] - b["isoscore"]) < 1e-10
    np.testing.assert_allclose(ex.centers, ref.centers, rtol=1e-10, atol=1e-9)
    # Reference mode samples only from the kept rows.
    big = np.concatenate([X] * 8)
    r = isofast.cluster_isotropy(big, massive="exclude", sample_size=500, **kw)
    assert r.n_massive == 8 and not np.isin(r.clustered_rows, np.arange(8) * 301 + 77).any()
    assert isofast.cluster_isotropy(X, massive=None, **kw).n_massive is None
    with pytest.raises(ValueError, match="massive must be"):
        isofast.cluster_isotropy(X, massive="yes", **kw)


# --------------------------------------------------------------------- nulls
def test_null_tables_and_relation():
    assert set(NULL_RELATION) == set(NULL_STATISTICS) and len(NULL_STATISTICS) == 10
    assert {s for s, r in NULL_RELATION.items() if r == "ratio"} == {
        "isoscore",
        "participation_ratio",
        "effective_dim",
        "effective_rank",
        "stable_rank",
        "pc1_share",
    }
    assert relative_to_null("isoscore", 0.5, 0.25) == 2.0
    assert relative_to_null("avg_cosine", 0.5, 0.25) == 0.25
    assert math.isnan(relative_to_null("isoscore", 0.5, 0.0))
    assert math.isnan(relative_to_null("isoscore", None, 0.3))
    assert math.isnan(relative_to_null("avg_cosine", float("nan"), 0.3))
    ns = null_statistics(64, 8)
    assert relative_to_null("isoscore", ns.mean["isoscore"], ns) == 1.0
    with pytest.raises(ValueError, match="stat"):
        relative_to_null("isotropy", 1.0, 1.0)


def test_null_statistics_bad_input():
    for kw, name in (
        (dict(n=1, d=8), "n"),
        (dict(n=10, d=0), "d"),
        (dict(n=10.5, d=8), "n"),
        (dict(n=10, d="8"), "d"),
        (dict(n=10, d=8, scale=0), "scale"),
        (dict(n=10, d=8, scale=-1), "scale"),
        (dict(n=10, d=8, scale=np.inf), "scale"),
        (dict(n=10, d=8, scale=np.nan), "scale"),
        (dict(n=10, d=8, reps=0), "reps"),
        (dict(n=10, d=8, seed=-1), "seed"),
        (dict(n=True, d=8), "n"),
    ):
        with pytest.raises(ValueError, match=name):
            null_statistics(**kw)


def test_null_is_the_analyze_estimator_on_the_seeded_draws():
    n, d, s = 96, 40, 2.5
    ns = null_statistics(n, d, scale=s, reps=5, seed=3)
    assert ns.reps == 5 and ns.method["avg_cosine"] == "closed form" and ns.mean["avg_cosine"] == 0.0
    assert all(ns.method[k] == "simulation" for k in NULL_STATISTICS if k != "avg_cosine")
    rng = np.random.default_rng(3)
    reps = [isofast.analyze(rng.standard_normal((n, d)) * s) for _ in range(5)]
    for k in NULL_STATISTICS[1:]:
        v = [getattr(r, k) for r in reps]
        assert abs(ns.mean[k] - np.mean(v)) <= 1e-9 * max(1.0, abs(np.mean(v))), k
        assert abs(ns.std[k] - np.std(v, ddof=1)) <= 1e-8 * max(1.0, np.std(v)), k
    # Scale changes only the log partition statistics.
    ns2 = null_statistics(n, d, scale=2 * s, reps=5, seed=3)
    for k in NULL_STATISTICS:
        same = ns2.mean[k] == ns.mean[k]
        assert same == (not k.startswith("log_partition")), k
    assert ns2.to_dict()["scale"] == 2 * s
    # Defaults: reps = clip(ceil(2e6/(n·d)), 4, 32).
    assert null_statistics(600, 576).reps == 6 and null_statistics(10, 10).reps == 32


@pytest.mark.parametrize("n,d", [(128, 256), (512, 256), (2048, 64), (600, 576)])
def test_isotropic_gaussian_scores_near_its_null(n, d):
    s = 0.37
    X = gauss(n, d, seed=1000 + n, scale=s) + 5.0  # offset: scale/translation-free stats unaffected
    rep = isofast.analyze(X)
    scale = math.sqrt(rep.total_variance / d)
    Xc = X - 5.0
    rep_c = isofast.analyze(Xc)  # the raw log partition is not translation-invariant
    ns = null_statistics(n, d, scale=scale)
    for k in NULL_STATISTICS:
        v = getattr(rep_c if k == "log_partition_isotropy" else rep, k)
        tol = 6 * ns.std[k] + 1e-6 * abs(ns.mean[k]) + (1.0 if k == "effective_dim" else 0.0) + 1e-12
        if k == "avg_cosine":
            tol = 6 / math.sqrt(n * d)  # std of the mean cosine ~ 1/(n·sqrt(d))… generous
            v = rep_c.avg_cosine
        assert abs(v - ns.mean[k]) <= tol, (k, v, ns.mean[k], ns.std[k])


def test_isoscore_nulls_and_marchenko_pastur():
    got = [null_statistics(n, 256).mean["isoscore"] for n in (128, 512, 2048)]
    np.testing.assert_allclose(got, [0.326, 0.664, 0.887], atol=0.006)
    n, d = 8000, 400
    pr = null_statistics(n, d).mean["participation_ratio"]
    mp = d / (1 + d / n)
    assert abs(pr / mp - 1) < 0.02, (pr, mp)


@settings(max_examples=20, deadline=None)
@given(st.integers(3, 80), st.integers(1, 10), st.integers(0, 2**31), st.integers(-40, 40), st.integers(1, 3))
def test_massive_rows_properties(n, d, seed, log2s, threads):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    planted = rng.choice(n, size=max(1, n // 10), replace=False)
    X[planted] *= 10.0 ** rng.uniform(2.5, 4, size=(planted.size, 1))
    base = isofast.massive_rows(X, n_threads=1)
    idx, med, share, _ = ref_massive(X, 100.0)
    assert base.indices.tolist() == idx.tolist()
    assert rel(base.median_norm, med) < 1e-13 and (rel(base.variance_share, share) < 1e-10 or share == 0)
    perm = rng.permutation(n)
    p = isofast.massive_rows(X[perm], n_threads=threads)
    assert sorted(perm[p.indices].tolist()) == base.indices.tolist()
    assert p.median_norm == base.median_norm
    s = 2.0**log2s
    sc = isofast.massive_rows(X * s)
    assert sc.indices.tolist() == base.indices.tolist() and sc.median_norm == base.median_norm * s
    cuts = np.array_split(np.arange(n), 3)
    ch = isofast.massive_rows([X[c] for c in cuts if c.size])
    assert ch.indices.tolist() == base.indices.tolist() and ch.median_norm == base.median_norm
