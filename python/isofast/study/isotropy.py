"""The isotropy suite of one layer of one cell: every statistic in one flat row.

Rows are first subsampled to exactly ``rows`` (seeded, uniform without
replacement) when a layer has more: IsoScore, the effective dimension and
the partition isotropy all drift with N (design.md §5: IsoScore of an
isotropic Gaussian in d = 256 is 0.33 at N = 128 and 0.98 at N = 16384), so
comparing cells at equal N is the only fair comparison. ``n_rows`` records
the N actually used.

* global statistics: :func:`isofast.analyze` (design.md §3);
* clustered isotropy: :func:`isofast.cluster.cluster_isotropy` in the
  reference recipe (centre, k-means for k in ``k_min..k_max``, silhouette
  threshold 0.1, re-centred within-cluster average cosine, unweighted mean =
  ``inter_cluster_cosine``), with an explicit seed;
* for the report: the leading explained-variance ratios (spectrum) and a 2-D
  PCA projection of ``pca_points`` rows with their cluster labels.
"""

from __future__ import annotations

import math

import numpy as np

from isofast.study.config import IsotropyConfig

GLOBAL_FIELDS = (
    "avg_cosine", "avg_cosine_centered", "isoscore", "participation_ratio", "effective_dim",
    "effective_rank", "stable_rank", "pc1_share", "log_partition_isotropy",
    "log_partition_isotropy_centered", "total_variance",
)
CLUSTER_FIELDS = ("inter_cluster_cosine", "inter_cluster_cosine_weighted", "best_k", "silhouette")


def subsample(X: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """Exactly ``rows`` rows (seeded, without replacement, original order), or all."""
    if X.shape[0] <= rows:
        return X
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(X.shape[0], rows, replace=False))
    return X[keep]


def _finite(v) -> float:
    if v is None:
        return float("nan")
    v = float(v)
    return v if math.isfinite(v) else float("nan")


def layer_suite(X: np.ndarray, cfg: IsotropyConfig, seed: int) -> dict:
    """All statistics of one layer (module docstring) as a JSON-ready dict.

    Returns ``{"stats": {name: float}, "spectrum": [...], "pca": [[x, y], ...],
    "pca_labels": [...], "notes": [...]}``.
    """
    from isofast import analyze
    from isofast.cluster import cluster_isotropy

    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] < 4:
        raise ValueError(f"a layer needs an N×d matrix with N ≥ 4 rows, got shape {X.shape}")
    Xs = subsample(X, cfg.rows, seed)
    n, d = Xs.shape
    rep = analyze(Xs, center=True, partition=True)
    stats = {f: _finite(getattr(rep, f)) for f in GLOBAL_FIELDS}
    stats["n_rows"] = float(n)
    stats["dim"] = float(d)
    n_distinct = int(np.unique(Xs, axis=0).shape[0])
    stats["n_distinct_rows"] = float(n_distinct)
    notes = list(rep.notes)
    # k-means needs k below the number of distinct rows: an embedding layer fed
    # LLMTime text has only ~12 distinct token vectors (digits, separator)
    k_max = min(cfg.k_max, n - 1, n_distinct - 1)
    if k_max < cfg.k_max:
        notes.append(f"k range capped at {k_max}: {n_distinct} distinct rows of {n}")
    sample = cfg.sample_size if (cfg.sample_size is not None and cfg.sample_size < n) else None
    sil_n = max(cfg.silhouette_sample_size, 2)
    cl = None
    if k_max >= cfg.k_min:
        try:
            cl = cluster_isotropy(
                Xs, k_range=range(cfg.k_min, k_max + 1), threshold=cfg.threshold, sample_size=sample,
                silhouette_sample_size=sil_n, n_init=cfg.n_init, seed=cfg.seed, spectra=False,
            )
        except ValueError as exc:  # a degenerate layer keeps its global statistics
            notes.append(f"clustered isotropy undefined: {exc}")
    else:
        notes.append(f"clustered isotropy undefined: {n_distinct} distinct rows")
    for f in CLUSTER_FIELDS:
        stats[f] = _finite(getattr(cl, f, None))
    # 2-D PCA of the centred rows, for the scatter plots (top-2 eigenvectors)
    rng = np.random.default_rng(seed + 1)
    m = min(cfg.pca_points, n)
    pick = np.sort(rng.choice(n, m, replace=False)) if m < n else np.arange(n)
    Xc = Xs.astype(np.float64) - Xs.mean(axis=0, dtype=np.float64)
    # top right singular vectors of the centred rows = leading PCA axes
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    coords = Xc[pick] @ vt[:2].T
    labels = np.asarray(cl.labels) if cl is not None and getattr(cl, "labels", None) is not None else np.zeros(n)
    if labels.shape[0] == n:
        pca_labels = labels[pick].astype(int).tolist()
    else:  # clustered on a sample: no label per plotted row
        pca_labels = [0] * m
        notes.append("cluster labels cover a sample of the rows; PCA points are not coloured by cluster")
    evr = np.asarray(rep.explained_variance_ratio, dtype=np.float64)[: cfg.spectrum]
    return {
        "stats": stats,
        "spectrum": evr.tolist(),
        "pca": np.round(coords, 6).tolist(),
        "pca_labels": pca_labels,
        "silhouettes": _jsonable_silhouettes(getattr(cl, "silhouettes", None)),
        "notes": notes,
    }


def _jsonable_silhouettes(s) -> dict:
    if s is None:
        return {}
    if isinstance(s, dict):
        return {str(k): _finite(v) for k, v in s.items()}
    try:
        return {str(i): _finite(v) for i, v in enumerate(s)}
    except TypeError:
        return {}
