"""The isotropy suite of one layer of one cell, under the study's validity rules.

Validity rules (docs/validity.md), applied in this order to the rows of one
(model, dataset, perturbation, layer):

1. **Massive rows** (Sun et al. 2024): rows whose norm exceeds
   ``massive_ratio`` × the layer's median row norm
   (:func:`isofast.massive_rows`). Their number (``n_massive``) and share of
   the total variance (``massive_variance_share``) are always reported; with
   ``massive = "exclude"`` (the default) the statistics are computed without
   them, with ``"keep"`` on every row.
2. **Equal N**: the remaining rows are subsampled (seeded, uniform, without
   replacement) to exactly ``n_rows`` — the same number in every cell of the
   (model, layer), fixed before the grid runs (:func:`plan_rows`). A cell
   with fewer rows gets NaN statistics and the reason in ``skip_reason``;
   nothing is ever computed on fewer rows than its (model, layer) promises.
3. **Floors**: spectral statistics need N ≥ d (:func:`isofast.analyze` with
   ``floors=True``; the plan refuses a grid where N < d); clusters below
   ``min_cluster_size`` leave ``inter_cluster_cosine`` and are counted in
   ``n_small_clusters`` (:func:`isofast.cluster_isotropy`). ``floors = false``
   runs the reference study's recipe without floors; every results row then
   carries ``floors = False`` and a note saying so.
4. **Nulls**: every global statistic s gets ``s_null``, its value for an
   isotropic Gaussian with the same N, d and per-coordinate spread
   (:func:`isofast.null_statistics`), and ``s_vs_null``
   (:func:`isofast.relative_to_null`: a ratio for scale statistics, a
   difference for cosines and log partition isotropies).

Per-window statistics (:func:`isofast.trust.window_statistics`) are computed
on each window's rows among the N measured rows, for the per-context trust
indicator.
"""

from __future__ import annotations

import math

import numpy as np

from isofast.nulls import NULL_STATISTICS
from isofast.study.config import IsotropyConfig

#: the global statistics of every results row: those with an isotropic-Gaussian
#: null (one list, isofast.nulls), and the total variance (scale, no null).
GLOBAL_FIELDS = (*NULL_STATISTICS, "total_variance")
CLUSTER_FIELDS = ("inter_cluster_cosine", "inter_cluster_cosine_weighted", "best_k", "silhouette", "n_small_clusters")
#: validity columns of every results row.
VALIDITY_FIELDS = ("n_rows", "n_available", "n_massive", "massive_variance_share", "dim")


def null_fields() -> tuple[str, ...]:
    return tuple(f"{s}_null" for s in NULL_STATISTICS) + tuple(f"{s}_vs_null" for s in NULL_STATISTICS)


def subsample(X: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """The seeded row indices of exactly ``rows`` rows (sorted), or all."""
    if X.shape[0] <= rows:
        return np.arange(X.shape[0])
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(X.shape[0], rows, replace=False))


def _finite(v) -> float:
    if v is None:
        return float("nan")
    v = float(v)
    return v if math.isfinite(v) else float("nan")


def empty_stats() -> dict:
    nan = float("nan")
    return {f: nan for f in GLOBAL_FIELDS + CLUSTER_FIELDS + VALIDITY_FIELDS + null_fields()}


def layer_suite(X: np.ndarray, cfg: IsotropyConfig, seed: int, *, n_rows: int, windows: np.ndarray, head=None) -> dict:
    """All statistics of one layer (module docstring) as a JSON-ready dict.

    ``X`` (all rows of the cell), ``windows`` the window index of each row,
    ``n_rows`` the (model, layer)'s N, ``head`` an optional callable mapping
    the measured rows to ``(head report dict, shift_cosine, log_z)``.
    Returns ``{"stats", "skip_reason", "spectrum", "pca", "pca_labels",
    "silhouettes", "notes", "windows": [per-window dicts], "head"}``.
    """
    from isofast import analyze, massive_rows
    from isofast.cluster import cluster_isotropy
    from isofast.nulls import null_statistics, relative_to_null
    from isofast.trust import window_statistics

    X = np.asarray(X, dtype=np.float32)
    windows = np.asarray(windows, np.int64)
    if X.ndim != 2 or windows.shape != (X.shape[0],):
        raise ValueError(f"a layer needs an N×d matrix and one window id per row, got {X.shape} and {windows.shape}")
    d = int(X.shape[1])
    stats = empty_stats()
    stats["dim"] = float(d)
    out = {
        "stats": stats,
        "skip_reason": "",
        "spectrum": [],
        "pca": [],
        "pca_labels": [],
        "silhouettes": {},
        "notes": [],
        "windows": [],
        "head": None,
    }
    mr = massive_rows(X, ratio=cfg.massive_ratio)
    stats["n_massive"] = float(mr.n_massive)
    stats["massive_variance_share"] = _finite(mr.variance_share) if mr.n_massive else 0.0
    mask = mr.mask
    keep = np.flatnonzero(~mask) if cfg.massive == "exclude" else np.arange(X.shape[0])
    stats["n_available"] = float(keep.size)
    if keep.size < n_rows:
        out["skip_reason"] = (
            f"{keep.size} rows after removing {mr.n_massive} massive rows, fewer than the N = {n_rows} "
            "every cell of this layer is measured on"
            if cfg.massive == "exclude"
            else f"{keep.size} rows, fewer than the N = {n_rows} of this layer"
        )
        return out
    pick = keep[subsample(X[keep], n_rows, seed)]
    Xs = X[pick]
    n = int(Xs.shape[0])
    stats["n_rows"] = float(n)
    rep = analyze(Xs, center=True, partition=True, floors=cfg.floors)
    for f in GLOBAL_FIELDS:
        stats[f] = _finite(getattr(rep, f))
    notes = list(rep.notes) + [f"{k}: {v}" for k, v in rep.invalid.items()]
    if not cfg.floors:
        notes.append("reference recipe without floors: clusters of any size and N < d statistics are reported")
    if mr.n_massive:
        notes.append(
            f"{mr.n_massive} massive row(s) (norm > {cfg.massive_ratio:g} × median {mr.median_norm:.4g}) "
            f"hold {mr.variance_share:.1%} of the variance; " + ("excluded" if cfg.massive == "exclude" else "kept")
        )
    # nulls: an isotropic Gaussian with this N, d and spread
    tv = stats["total_variance"]
    if math.isfinite(tv) and tv > 0:
        nul = null_statistics(n, d, scale=math.sqrt(tv / d), reps=cfg.null_reps or None)
        for s in NULL_STATISTICS:
            stats[f"{s}_null"] = _finite(nul.mean[s])
            stats[f"{s}_vs_null"] = _finite(relative_to_null(s, stats[s], nul))
    # clustered isotropy (k below the number of distinct rows)
    n_distinct = int(np.unique(Xs, axis=0).shape[0])
    k_max = min(cfg.k_max, n - 1, n_distinct - 1)
    if k_max < cfg.k_max:
        notes.append(f"k range capped at {k_max}: {n_distinct} distinct rows of {n}")
    sample = cfg.sample_size if (cfg.sample_size is not None and cfg.sample_size < n) else None
    cl = None
    if k_max >= cfg.k_min:
        try:
            cl = cluster_isotropy(
                Xs,
                k_range=range(cfg.k_min, k_max + 1),
                threshold=cfg.threshold,
                sample_size=sample,
                silhouette_sample_size=max(cfg.silhouette_sample_size, 2),
                n_init=cfg.n_init,
                seed=cfg.seed,
                spectra=False,
                min_cluster_size=cfg.min_cluster_size if cfg.floors else None,
            )
            notes.extend(cl.notes)
        except ValueError as exc:  # a degenerate layer keeps its global statistics
            notes.append(f"clustered isotropy undefined: {exc}")
    else:
        notes.append(f"clustered isotropy undefined: {n_distinct} distinct rows")
    for f in CLUSTER_FIELDS:
        stats[f] = _finite(getattr(cl, f, None))
    # head diagnostics on the measured rows; per-row arrays for the windows
    sc = lz = None
    if head is not None:
        out["head"], sc, lz = head(Xs)
    # per-window (trust) statistics on each window's measured rows
    wins = windows[pick]
    massive_per_window = np.bincount(windows[mask], minlength=int(windows.max()) + 1 if windows.size else 0)
    for w in np.unique(windows):
        sel = wins == w
        vals, why = window_statistics(
            Xs[sel],
            np.zeros(int(sel.sum()), bool),
            min_rows=cfg.min_window_rows,
            shift_cosine=None if sc is None else np.asarray(sc)[sel],
            log_z=None if lz is None else np.asarray(lz)[sel],
        )
        # massive rows of the window, decided at the layer level (they were removed from Xs)
        Xw = X[windows == w]
        mw = mask[windows == w]
        from isofast.analysis import row_norms

        sq = row_norms(Xw) ** 2
        vals["n_massive"] = float(massive_per_window[w]) if w < massive_per_window.size else 0.0
        vals["massive_share"] = float(sq[mw].sum() / sq.sum()) if sq.sum() > 0 else 0.0
        vals["n_rows"] = float(sel.sum())
        vals["window"] = int(w)
        out["windows"].append({"values": vals, "reasons": why})
    # 2-D PCA of the measured rows for the scatter plots (only with enough rows)
    rng = np.random.default_rng(seed + 1)
    m = min(cfg.pca_points, n)
    pickp = np.sort(rng.choice(n, m, replace=False)) if m < n else np.arange(n)
    # the two leading covariance eigenvectors, from the Rust moments (no n×d SVD)
    from isofast import Moments

    mom = Moments(d)
    mom.update(Xs)
    _, vecs = mom.principal_axes()
    P = Xs[pickp].astype(np.float64) - np.asarray(mom.mean)
    coords = P @ np.asarray(vecs)[:, :2]
    labels = np.asarray(cl.labels) if cl is not None and getattr(cl, "labels", None) is not None else np.zeros(n)
    if labels.shape[0] == n:
        out["pca_labels"] = labels[pickp].astype(int).tolist()
    else:  # clustered on a sample: no label per plotted row
        out["pca_labels"] = [0] * m
        notes.append("cluster labels cover a sample of the rows; PCA points are not coloured by cluster")
    out["pca"] = np.round(coords, 6).tolist()
    out["spectrum"] = np.asarray(rep.explained_variance_ratio, dtype=np.float64)[: cfg.spectrum].tolist()
    out["silhouettes"] = _jsonable_silhouettes(getattr(cl, "silhouettes", None))
    out["notes"] = notes
    return out


def _jsonable_silhouettes(s) -> dict:
    if s is None:
        return {}
    if isinstance(s, dict):
        return {str(k): _finite(v) for k, v in s.items()}
    try:
        return {str(i): _finite(v) for i, v in enumerate(s)}
    except TypeError:
        return {}
