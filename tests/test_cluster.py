"""Clustered (local) isotropy: k-means, silhouette, per-cluster statistics,
model selection and the two modes (isofast.cluster), against scikit-learn and
dense float64 numpy references."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isofast.cluster import (
    ClusterReport,
    cluster_isotropy,
    cluster_statistics,
    format_cluster_table,
    kmeans,
    reference_recipe,
    silhouette,
)

sklearn = pytest.importorskip("sklearn")
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402
from sklearn.metrics import adjusted_rand_score, silhouette_score  # noqa: E402


def dense_centered_cosine(Y: np.ndarray) -> float:
    """Mean cosine over ordered pairs i≠j after re-centring, via the n×n matrix."""
    Y = np.asarray(Y, dtype=np.float64)
    Z = Y - Y.mean(axis=0)
    nz = np.linalg.norm(Z, axis=1) > 0
    Z = Z[nz]
    U = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    S = U @ U.T
    n = len(U)
    return float((S.sum() - np.trace(S)) / (n * (n - 1)))


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=600, n_features=8, centers=4, cluster_std=0.6, random_state=0)
    return X, y


# --- k-means -----------------------------------------------------------------


def test_separated_blobs_same_partition_as_sklearn(blobs):
    X, y = blobs
    ours = kmeans(X, 4, seed=0)
    theirs = KMeans(4, random_state=0).fit(X)
    assert adjusted_rand_score(ours.labels, theirs.labels_) == 1.0
    assert adjusted_rand_score(ours.labels, y) == 1.0
    assert ours.inertia == pytest.approx(theirs.inertia_, rel=1e-9)
    r = cluster_isotropy(X, k_range=range(2, 9))
    assert r.best_k == 4
    assert adjusted_rand_score(r.labels, y) == 1.0


@pytest.mark.parametrize("k", [3, 8, 15])
@pytest.mark.parametrize("n_init", [1, 5])
def test_random_data_inertia_within_one_percent_of_sklearn(k, n_init):
    Z = np.random.default_rng(1).normal(size=(3000, 20))
    ours = kmeans(Z, k, n_init=n_init, seed=0).inertia
    theirs = KMeans(k, n_init=n_init, random_state=0).fit(Z).inertia_
    assert abs(ours / theirs - 1) < 0.01


def test_kmeans_labels_are_exact_nearest_centres_and_inertia_exact():
    Z = np.random.default_rng(2).normal(size=(1200, 12)).astype(np.float32) + 50
    r = kmeans(Z, 7, seed=3)
    Zd = Z.astype(np.float64)
    D = ((Zd[:, None, :] - r.centers[None]) ** 2).sum(-1)
    assert np.all(D[np.arange(len(Zd)), r.labels] <= D.min(axis=1) * (1 + 1e-12))
    assert r.inertia == pytest.approx(D[np.arange(len(Zd)), r.labels].sum(), rel=1e-9)


def test_kmeans_n_init_auto_is_one_run_and_seeded():
    X = np.random.default_rng(4).normal(size=(500, 5))
    a, b = kmeans(X, 5, seed=11), kmeans(X, 5, seed=11, n_init=1)
    assert np.array_equal(a.labels, b.labels) and a.inertia == b.inertia
    with pytest.raises(ValueError, match="n_init"):
        kmeans(X, 5, n_init=0)


# --- silhouette ----------------------------------------------------------------


def test_silhouette_matches_sklearn_for_blob_and_random_labels(blobs):
    X, y = blobs
    assert silhouette(X, y) == pytest.approx(silhouette_score(X, y), abs=1e-6)
    rand = np.random.default_rng(0).integers(0, 5, len(X))
    assert silhouette(X, rand) == pytest.approx(silhouette_score(X, rand), abs=1e-6)
    names = np.array(["a", "b", "c", "d"])[y]  # any label values
    assert silhouette(X, names) == pytest.approx(silhouette_score(X, y), abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(3, 120),
    d=st.integers(1, 9),
    k=st.integers(2, 7),
    seed=st.integers(0, 2**31 - 1),
)
def test_silhouette_property_vs_sklearn(n, d, k, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 10)
    labels = rng.integers(0, min(k, n - 1), n)
    if len(np.unique(labels)) < 2:
        labels[0] = 1 - labels[1]
    if len(np.unique(labels)) > n - 1:
        return
    assert silhouette(X, labels) == pytest.approx(silhouette_score(X, labels), abs=1e-6)


def test_silhouette_singletons_follow_sklearn_and_float32_is_close():
    X = np.random.default_rng(5).normal(size=(50, 4))
    labels = np.r_[np.zeros(25, int), np.ones(24, int), 2]  # one singleton cluster
    assert silhouette(X, labels) == pytest.approx(silhouette_score(X, labels), abs=1e-6)
    X32 = X.astype(np.float32)
    assert silhouette(X32, labels) == pytest.approx(silhouette_score(X32.astype(np.float64), labels), abs=1e-5)


def test_silhouette_sampled_is_seeded():
    X, y = make_blobs(n_samples=3000, n_features=6, centers=3, random_state=1)
    a = silhouette(X, y, sample_size=500, seed=7)
    assert a == silhouette(X, y, sample_size=500, seed=7)
    assert a == pytest.approx(silhouette_score(X, y), abs=0.05)


def test_silhouette_undefined_label_counts_raise():
    X = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="number of clusters"):
        silhouette(X, np.zeros(10, int))
    with pytest.raises(ValueError, match="number of clusters"):
        silhouette(X, np.arange(10))


# --- per-cluster statistics ----------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(n=st.integers(6, 60), d=st.integers(2, 8), k=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_recentred_cluster_cosine_equals_dense_numpy(n, d, k, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) + rng.normal(size=d) * 3
    labels = rng.integers(0, k, n)
    stats = cluster_statistics(X, labels)
    for s in stats:
        rows = X[labels == s["label"]]
        assert s["size"] == len(rows)
        if len(rows) < 2:
            assert np.isnan(s["avg_cosine_centered"]) and s["note"]
        else:
            assert s["avg_cosine_centered"] == pytest.approx(dense_centered_cosine(rows), abs=1e-10)


def test_cluster_cosine_invariant_to_row_order():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(400, 10)) * np.linspace(0.5, 3, 10)
    labels = rng.integers(0, 3, 400)
    perm = rng.permutation(400)
    a = cluster_statistics(X, labels)
    b = cluster_statistics(X[perm], labels[perm])
    for s, t in zip(a, b):
        assert s["size"] == t["size"]
        for key in ("avg_cosine_centered", "isoscore", "log_partition_isotropy"):
            assert s[key] == pytest.approx(t[key], rel=1e-10, abs=1e-12)


def test_per_cluster_spectra_match_analysis_of_each_cluster():
    analyze = pytest.importorskip("isofast").analyze
    rng = np.random.default_rng(9)
    X = np.vstack([rng.normal(size=(300, 6)) * [3, 2, 1, 1, 1, 0.5], rng.normal(size=(20, 6)) + 9])
    labels = np.r_[np.zeros(300, int), np.ones(20, int)]
    stats = cluster_statistics(X, labels)
    for s in stats:
        rep = analyze(X[labels == s["label"]])
        assert s["isoscore"] == pytest.approx(rep.isoscore, rel=1e-9)
        assert s["avg_cosine_centered"] == pytest.approx(rep.avg_cosine_centered, abs=1e-12)
        assert s["log_partition_isotropy"] == pytest.approx(rep.log_partition_isotropy_centered, rel=1e-7, abs=1e-9)


# --- model selection, modes, determinism -----------------------------------------


def test_isotropic_gaussian_falls_back_to_one_cluster():
    X = np.random.default_rng(3).normal(size=(1500, 16))
    r = cluster_isotropy(X, k_range=range(2, 9))
    assert r.best_k == 1 and len(r.clusters) == 1
    assert r.silhouette < 0.1
    assert set(r.silhouettes) == set(range(2, 9)) and set(r.inertias) == set(range(2, 9))
    assert np.all(r.labels == 0)
    assert r.inter_cluster_cosine == pytest.approx(dense_centered_cosine(X), abs=1e-12)
    assert any("threshold" in n for n in r.notes)


def test_threshold_rule_and_weighted_mean(blobs):
    X, y = blobs
    r = cluster_isotropy(X, k_range=[2, 3, 4, 5])
    best = max(r.silhouettes, key=r.silhouettes.get)
    assert r.best_k == best and r.silhouette == r.silhouettes[best]
    r_hi = cluster_isotropy(X, k_range=[2, 3, 4, 5], threshold=0.99)
    assert r_hi.best_k == 1
    cos = np.array([c["avg_cosine_centered"] for c in r.clusters])
    size = np.array([c["size"] for c in r.clusters])
    assert r.inter_cluster_cosine == pytest.approx(cos.mean())
    assert r.inter_cluster_cosine_weighted == pytest.approx((cos * size).sum() / size.sum())
    for c, lab in zip(r.clusters, range(r.best_k)):
        assert c["avg_cosine_centered"] == pytest.approx(dense_centered_cosine(X[r.labels == lab]), abs=1e-10)


def test_deterministic_for_a_seed_and_across_thread_counts(blobs):
    X, _ = blobs
    X = np.vstack([X, X[:100] * 1.1])
    a = cluster_isotropy(X, k_range=range(2, 8), seed=5, n_threads=1)
    b = cluster_isotropy(X, k_range=range(2, 8), seed=5, n_threads=2)
    c = cluster_isotropy(X, k_range=range(2, 8), seed=5, n_threads=2)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(b.labels, c.labels)
    assert a.silhouettes == b.silhouettes and a.inertias == b.inertias
    db, dc = b.to_dict(), c.to_dict()
    db.pop("timings"), dc.pop("timings")
    assert db == dc
    for s, t in zip(a.clusters, b.clusters):
        for key in ("avg_cosine_centered", "isoscore", "log_partition_isotropy"):
            assert s[key] == pytest.approx(t[key], rel=1e-12, abs=1e-15)


def test_reference_mode_samples_2000_rows():
    X, _ = make_blobs(n_samples=5000, n_features=10, centers=3, random_state=2)
    r = reference_recipe(X, seed=1)
    assert isinstance(r, ClusterReport) and r.mode == "reference"
    assert r.n == 5000 and r.n_clustered == 2000 and len(r.labels) == 2000
    assert np.all(np.diff(r.clustered_rows) > 0) and r.clustered_rows.max() < 5000
    assert r.best_k == 3 and r.silhouette_exact
    assert sorted(r.silhouettes) == list(range(2, 17))
    r2 = reference_recipe(X, seed=2)
    assert not np.array_equal(r.clustered_rows, r2.clustered_rows)
    d = json.loads(r.to_json())
    assert d["best_k"] == 3 and len(d["labels"]) == 2000
    assert "labels" not in r.to_dict(arrays=False)
    table = format_cluster_table(r)
    assert "best_k = 3" in table and "inter_cluster_cosine" in table


def test_full_mode_fits_on_a_sample_and_labels_every_row():
    X, y = make_blobs(n_samples=30000, n_features=6, centers=5, cluster_std=0.8, random_state=3)
    r = cluster_isotropy(X.astype(np.float32), k_range=range(2, 8), fit_sample_size=4000, silhouette_sample_size=3000)
    assert r.mode == "full" and r.clustered_rows is None
    assert (r.n_fit, r.n_silhouette, r.silhouette_exact) == (4000, 3000, False)
    assert len(r.labels) == 30000 and r.best_k == 5
    assert adjusted_rand_score(r.labels, y) > 0.99
    assert sum(c["size"] for c in r.clusters) == 30000
    assert any("sample" in n for n in r.notes)
    assert json.loads(r.to_json(arrays=False))["n"] == 30000


# --- adversarial inputs --------------------------------------------------------------


def test_huge_common_offset(blobs):
    X, y = blobs
    a = cluster_isotropy(X, k_range=range(2, 7))
    b = cluster_isotropy(X + 1e4, k_range=range(2, 7))
    assert a.best_k == b.best_k == 4
    assert adjusted_rand_score(a.labels, b.labels) == 1.0
    assert a.silhouette == pytest.approx(b.silhouette, abs=1e-6)
    assert a.inter_cluster_cosine == pytest.approx(b.inter_cluster_cosine, abs=1e-8)
    assert silhouette(X + 1e4, y) == pytest.approx(silhouette_score(X, y), abs=1e-6)


def test_rank_deficient_data_and_fewer_rows_than_dimensions():
    rng = np.random.default_rng(6)
    basis = rng.normal(size=(3, 50))
    centres = rng.normal(size=(3, 3)) * 6
    lab = rng.integers(0, 3, 300)
    X = (centres[lab] + rng.normal(size=(300, 3))) @ basis  # rank 3 in 50 dims
    r = cluster_isotropy(X, k_range=range(2, 6))
    assert r.best_k == 3
    for c in r.clusters:
        assert np.isfinite(c["isoscore"]) and 0 <= c["isoscore"] <= 1
        assert np.isfinite(c["log_partition_isotropy"]) and c["log_partition_isotropy"] <= 0
    small = rng.normal(size=(40, 100)) + np.repeat(rng.normal(size=(2, 100)) * 4, 20, axis=0)
    r2 = cluster_isotropy(small, k_range=range(2, 6))
    assert r2.best_k == 2 and r2.dim == 100
    for c, lab2 in zip(r2.clusters, range(2)):
        assert c["avg_cosine_centered"] == pytest.approx(dense_centered_cosine(small[r2.labels == lab2]), abs=1e-10)


def test_input_types():
    X, _ = make_blobs(n_samples=400, n_features=6, centers=3, random_state=4)
    ref = cluster_isotropy(X, k_range=[2, 3, 4])
    for arr in (np.asfortranarray(X), X[::1, ::1].copy(order="F"), X.astype(np.float32), X.astype(np.float16)):
        r = cluster_isotropy(arr, k_range=[2, 3, 4])
        assert r.best_k == ref.best_k and adjusted_rand_score(r.labels, ref.labels) == 1.0
    Xi = np.round(X * 100).astype(np.int32)
    assert cluster_isotropy(Xi, k_range=[2, 3, 4]).best_k == 3
    strided = np.repeat(X, 2, axis=1)[:, ::2]
    assert cluster_isotropy(strided, k_range=[2, 3, 4]).best_k == 3


def test_memmap_and_torch(tmp_path):
    X, _ = make_blobs(n_samples=500, n_features=5, centers=3, random_state=5)
    path = tmp_path / "x.npy"
    np.save(path, X.astype(np.float32))
    mm = np.load(path, mmap_mode="r")
    assert cluster_isotropy(mm, k_range=[2, 3, 4]).best_k == 3
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(X.astype(np.float32))
    assert cluster_isotropy(t, k_range=[2, 3, 4]).best_k == 3
    assert cluster_isotropy(t.to(torch.bfloat16), k_range=[2, 3, 4]).best_k == 3


# --- bad input -------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(50, 4))
    with pytest.raises(ValueError, match="k_range is empty"):
        cluster_isotropy(X, k_range=[])
    with pytest.raises(ValueError, match="k = 1"):
        cluster_isotropy(X, k_range=[1, 2])
    with pytest.raises(ValueError, match="k = 0"):
        cluster_isotropy(X, k_range=[0])
    with pytest.raises(ValueError, match="at least 3 rows"):
        cluster_isotropy(X[:2], k_range=[2])
    with pytest.raises(ValueError, match="too large"):
        cluster_isotropy(X[:5], k_range=[2, 5])
    same = np.ones((20, 4))
    with pytest.raises(ValueError, match="identical"):
        cluster_isotropy(same, k_range=[2])
    few = np.repeat(rng.normal(size=(3, 4)), 10, axis=0)
    with pytest.raises(ValueError, match="distinct rows"):
        cluster_isotropy(few, k_range=range(2, 6))
    assert cluster_isotropy(few, k_range=[2, 3]).best_k in (1, 2, 3)
    with pytest.raises(ValueError, match="distinct rows"):
        kmeans(few, 4)
    for bad in (np.nan, np.inf, -np.inf):
        Y = X.copy()
        Y[17, 2] = bad
        with pytest.raises(ValueError, match="row 17"):
            cluster_isotropy(Y, k_range=[2])
        with pytest.raises(ValueError, match="row 17"):
            silhouette(Y, np.arange(50) % 2)
    with pytest.raises(ValueError, match="threshold"):
        cluster_isotropy(X, threshold=float("nan"))
    with pytest.raises(ValueError, match="2-D"):
        cluster_isotropy(X[0])
    with pytest.raises(TypeError):
        cluster_isotropy(X.astype(complex))
    with pytest.raises(ValueError, match="labels"):
        cluster_statistics(X, np.zeros(10))


def test_degenerate_clusters_get_nan_with_a_note():
    rng = np.random.default_rng(10)
    X = np.vstack([rng.normal(size=(30, 3)), np.ones((5, 3)) * 7, [[50.0, 50, 50]]])
    labels = np.r_[np.zeros(30, int), np.ones(5, int), 2]
    stats = cluster_statistics(X, labels)
    assert np.isfinite(stats[0]["avg_cosine_centered"]) and stats[0]["note"] is None
    assert np.isnan(stats[1]["avg_cosine_centered"]) and "identical" in stats[1]["note"]
    assert np.isnan(stats[2]["isoscore"]) and "1 row" in stats[2]["note"]
