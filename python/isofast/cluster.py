"""Clustered (local) isotropy — the reference study's measure (design.md §3).

Recipe (Cai et al. 2021, as used by Shelim et al. 2025): centre all rows at
the global mean; optionally sample rows; for each k in ``k_range`` fit k-means
(k-means++, seeded) and score it with the silhouette; keep the best k if its
silhouette reaches ``threshold``, else k = 1; re-centre each cluster at its own
mean and take its average cosine over ordered pairs i≠j; the
*inter-cluster cosine* is the unweighted mean of those over clusters.

Everything runs in Rust (``isofast._core``) on row tiles with the GIL
released; results are identical for any ``n_threads``.

Two modes
---------
``reference`` (``sample_size=2000``, what :func:`reference_recipe` runs): the
study's recipe with the seed made explicit. The study (``stg_trust_indicator``,
``utils.cluster_embeddings``) drew an *unseeded* ``np.random.choice`` sample of
2000 rows and ran ``KMeans(n_clusters=k, random_state=42)`` with scikit-learn
defaults for k = 2..16; with scikit-learn ≥ 1.4 that is ``init="k-means++"``,
``n_init="auto"`` (= 1 run for k-means++), ``max_iter=300``, ``tol=1e-4``,
``algorithm="lloyd"``, then ``silhouette_score`` (Euclidean, exact) and the
threshold 0.1. isofast matches those settings (one k-means++ run per k by
default; greedy seeding with 2 + ⌊ln k⌋ local trials; scikit-learn's relative
tolerance and stopping rules). The random streams differ from numpy's, so
seeds do not reproduce scikit-learn's exact partitions — only partitions of
the same quality. Two deliberate differences: (1) the per-cluster cosine is
exact over all rows of each cluster (the study subsampled clusters above
1000 rows, unseeded) and skips rows equal to their cluster mean (design §3);
(2) when no k reaches the threshold, ``silhouette`` reports the best value
found (the study stored 0.0).

``full`` (``sample_size=None``): every row is clustered. k-means is fitted on
a seeded sample of ``fit_sample_size`` rows (all rows when there are fewer),
the silhouette is exact up to ``silhouette_sample_size`` rows and otherwise
computed on a seeded sample of that size (scikit-learn's ``sample_size``
semantics), then every row is streamed from the input (no N×d copy; memmaps
welcome), assigned to its nearest centre, and the per-cluster statistics are
computed on all rows.

Per-cluster statistics: ``size``, ``avg_cosine_centered`` (through the
unit-sum identity, no n×n matrix), ``partition_isotropy`` /
``log_partition_isotropy`` (Mu & Viswanath's I over ±u_k of the cluster
covariance, on the cluster-centred rows; both signs, in log space) and
``isoscore`` ((PR − 1)/(d − 1) of the cluster covariance — strongly biased
low when the cluster has few rows compared with d; report ``size`` with it).
Clusters with fewer than 2 rows, or whose rows are all identical, get NaN
with a ``note`` and are left out of the means over clusters.

Validity floors (docs/validity.md)
----------------------------------
``min_cluster_size`` (default 10 in :func:`cluster_isotropy`): clusters with
fewer rows get NaN statistics with the note "below min_cluster_size", are
left out of ``inter_cluster_cosine`` and ``inter_cluster_cosine_weighted``,
and are counted in ``n_small_clusters``. The re-centred cosine of a 2-row
cluster is exactly −1 (x₁ − μ = −(x₂ − μ)), and of an n_c-row cluster it is
bounded below by −1/(n_c − 1), so tiny clusters pull the mean towards −1
whatever the geometry. ``min_cluster_size=None`` (or 0, 1, 2) is the
reference study's exact recipe — every cluster of ≥ 2 rows counts — and the
report says so (``floors=False``); :func:`reference_recipe` keeps that
default. The floor is applied in Rust where the means are taken.

``massive="flag"`` / ``"exclude"``: massive rows (:func:`isofast.massive_rows`,
norm > ``massive_ratio`` × the median row norm; Sun et al. 2024) are found
first; ``"exclude"`` clusters only the other rows, read in place by index
(no copy of X) — ``labels`` and ``clustered_rows`` then refer to kept rows.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any
from collections.abc import Iterable

import numpy as np

from isofast import _core
from isofast._input import as_matrix, check_int
from isofast.report import jsonable

__all__ = [
    "ClusterReport",
    "KMeansResult",
    "cluster_isotropy",
    "cluster_statistics",
    "format_cluster_table",
    "kmeans",
    "reference_recipe",
    "silhouette",
]

#: The reference study's settings (see the module docstring).
REFERENCE = dict(sample_size=2000, k_range=range(2, 17), threshold=0.1)


def _n_init(n_init: int | str) -> int:
    if isinstance(n_init, str):
        if n_init != "auto":
            raise ValueError(f"n_init must be a positive integer or 'auto', got {n_init!r}")
        return 1  # scikit-learn >= 1.4: n_init="auto" runs k-means++ once
    return check_int(n_init, "n_init", minimum=1)


def _count(name: str, v: int | None, allow_none: bool = True) -> int | None:
    if v is None:
        if allow_none:
            return None
        raise ValueError(f"{name} must be a positive integer, got None")
    return check_int(v, name, minimum=1)


def _k_list(k_range: Iterable[int]) -> list:
    try:
        ks = [int(k) for k in k_range]
    except (TypeError, ValueError):
        raise ValueError(f"k_range must be an iterable of integers, got {k_range!r}") from None
    if not ks:
        raise ValueError(
            "k_range is empty: give at least one number of clusters k ≥ 2 (the reference recipe uses range(2, 17))"
        )
    bad = [k for k in ks if k < 2]
    if bad:
        raise ValueError(
            f"k_range contains k = {bad[0]}: model selection needs k ≥ 2 (k = 1 is the "
            "automatic fallback when no k reaches the silhouette threshold)"
        )
    return sorted(set(ks))


def _seed(seed: int | None) -> int:
    if seed is None:
        raise ValueError("seed must be an integer: isofast's clustering is always seeded")
    s = check_int(seed, "seed")
    if s < 0:
        raise ValueError(f"seed must be ≥ 0, got {seed}")
    return s % (1 << 64)


@dataclass
class ClusterReport:
    """Result of :func:`cluster_isotropy`.

    ``labels[i]`` is the cluster of clustered row ``i``: of input row
    ``clustered_rows[i]`` in reference mode (a sorted seeded sample), of input
    row ``i`` in full mode (``clustered_rows is None``). ``silhouettes`` and
    ``inertias`` map every candidate k to its silhouette (on
    ``n_silhouette`` rows; NaN when undefined) and its k-means inertia (on the
    ``n_fit`` fit rows). ``silhouette`` is the best silhouette over
    ``k_range`` — the value compared with ``threshold``; ``best_k`` is 1 when
    it falls short. ``centers`` are the cluster means over all clustered rows
    (input coordinates). ``timings`` gives each stage's wall-clock seconds
    (it varies from run to run; ``to_dict`` keeps it, tests should not compare it).

    ``min_cluster_size`` is the floor applied (≥ 2; 2 = the reference recipe),
    ``floors`` whether it is above 2, ``n_small_clusters`` how many clusters
    fell below it (NaN statistics, left out of the means). ``n_massive`` is
    the number of massive rows found (``None`` unless ``massive`` was given);
    with ``massive="exclude"`` they were not clustered, and
    ``clustered_rows`` lists the input rows that were.
    """

    best_k: int
    silhouette: float
    silhouettes: dict
    inertias: dict
    inter_cluster_cosine: float
    inter_cluster_cosine_weighted: float
    labels: np.ndarray
    clusters: list
    seed: int
    n: int
    dim: int
    mode: str
    threshold: float
    n_clustered: int
    n_fit: int
    n_silhouette: int
    silhouette_exact: bool
    clustered_rows: np.ndarray | None = None
    centers: np.ndarray | None = None
    n_iter: dict = field(default_factory=dict)
    converged: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    min_cluster_size: int = 2
    n_small_clusters: int = 0
    floors: bool = False
    n_massive: int | None = None

    def to_dict(self, arrays: bool = True) -> dict:
        """JSON-safe dict (NaN → None). ``arrays=False`` drops ``labels``,
        ``clustered_rows`` and ``centers``."""
        d = asdict(self)
        if not arrays:
            for k in ("labels", "clustered_rows", "centers"):
                d.pop(k)
        return jsonable(d)

    def to_json(self, indent: int | None = 2, arrays: bool = True) -> str:
        return json.dumps(self.to_dict(arrays=arrays), indent=indent)

    def table(self) -> str:
        return format_cluster_table(self)

    def __str__(self) -> str:  # pragma: no cover - presentation
        return self.table()


def cluster_isotropy(
    X: Any,
    *,
    k_range: Iterable[int] = range(2, 17),
    threshold: float = 0.1,
    sample_size: int | None = None,
    silhouette_sample_size: int = 20000,
    fit_sample_size: int | None = 20000,
    n_init: int | str = "auto",
    max_iter: int = 300,
    tol: float = 1e-4,
    seed: int = 0,
    spectra: bool = True,
    n_threads: int | None = None,
    dtype: str | None = None,
    min_cluster_size: int | None = 10,
    massive: str | None = None,
    massive_ratio: float = 100.0,
) -> ClusterReport:
    """Clustered (local) isotropy of the rows of ``X`` (N×d).

    Parameters
    ----------
    X : numpy array of any float/int dtype and layout, ``np.memmap``, CPU
        torch tensor, or bfloat16 (ml_dtypes, or uint16 bits with
        ``dtype="bfloat16"``). Read in place, never copied whole.
    k_range : candidate numbers of clusters, each ≥ 2.
    threshold : minimum best silhouette for k > 1 (else k = 1).
    sample_size : cluster a seeded uniform sample of this many rows
        (reference: 2000); ``None`` clusters every row (full mode).
    silhouette_sample_size : exact silhouette up to this many clustered rows,
        else on a seeded sample of this size.
    fit_sample_size : fit k-means on at most this many rows (a seeded
        sample); ``None`` fits on every clustered row.
    n_init : k-means++ restarts per k (lowest inertia kept); ``"auto"`` = 1,
        scikit-learn ≥ 1.4's default for k-means++.
    max_iter, tol : Lloyd iteration cap and relative tolerance (scikit-learn).
    seed : the seed of every random draw (samples, k-means++).
    spectra : also compute per-cluster partition isotropy and IsoScore
        (``False`` computes only what the study's recipe needs).
    n_threads : threads (default: all cores); results do not depend on it.
    min_cluster_size : clusters with fewer rows get NaN statistics ("below
        min_cluster_size") and leave the means over clusters; counted in
        ``n_small_clusters``. ``None`` (or 0, 1, 2): no floor, the reference
        recipe (clusters of ≥ 2 rows count; a 2-row cluster scores exactly −1).
    massive : ``None``; ``"flag"`` (find massive rows, note and warn, cluster
        every row) or ``"exclude"`` (cluster only the rows that are not
        massive, read by index without copying X; ``labels`` and
        ``clustered_rows`` then refer to kept rows). One extra O(N·d) pass.
    massive_ratio : ratio of :func:`isofast.massive_rows` (default 100).

    Raises ``ValueError`` for: NaN/Inf (naming the row), fewer than 3 rows,
    an empty ``k_range`` or one with k < 2, k ≥ number of rows clustered,
    k above the number of distinct rows, all rows identical.

    Real LLM hidden states: the first token of a sequence often carries a
    massive activation (SmolLM2-135M layer 15: norm ~29,000 against a median
    ~140). The recipe then picks k = 2 with that row alone in a cluster
    (silhouette ≈ 1); the singleton gets NaN statistics and a note and is left
    out of the means, so the result is the re-centred cosine of the other
    rows. Drop or report such rows first if that is not what you want.
    """
    ks = _k_list(k_range)
    if not np.isfinite(threshold) or not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a number in [-1, 1] (a silhouette value), got {threshold!r}")
    params = dict(
        k_range=ks,
        threshold=float(threshold),
        sample_size=_count("sample_size", sample_size),
        silhouette_sample_size=_count("silhouette_sample_size", silhouette_sample_size, allow_none=False),
        fit_sample_size=_count("fit_sample_size", fit_sample_size),
        n_init=_n_init(n_init),
        max_iter=_count("max_iter", max_iter, allow_none=False),
        tol=float(tol),
        seed=_seed(seed),
        spectra=bool(spectra),
    )
    floor = _min_cluster_size(min_cluster_size)
    if massive not in (None, "flag", "exclude"):
        raise ValueError(f"massive must be None, 'flag' or 'exclude', got {massive!r}")
    arr, elem = as_matrix(X, dtype)
    mr = None
    rows = None
    if massive is not None:
        from isofast.massive import check_ratio, massive_rows

        check_ratio(massive_ratio, "massive_ratio")
        mr = massive_rows(arr, ratio=massive_ratio, n_threads=n_threads, dtype=elem)
        if massive == "exclude" and mr.n_massive:
            rows = np.flatnonzero(~mr.mask).astype(np.int64)
    r = _core.cluster_isotropy(arr, elem=elem, n_threads=n_threads, min_cluster_size=floor, rows=rows, **params)
    rep = _report(r, params)
    if mr is not None:
        rep.n_massive = mr.n_massive
        rep.notes.extend(mr.notes)
        if mr.n_massive and massive == "flag":
            from isofast.massive import MassiveRowsWarning

            rep.notes.append("massive rows were kept and clustered (massive='exclude' drops them)")
            warnings.warn(f"{mr.notes[-1]}; they were clustered", MassiveRowsWarning, stacklevel=2)
        elif mr.n_massive:
            rep.notes.append(
                f"the {mr.n_massive} massive rows were excluded: {rep.n_clustered:,} rows clustered; "
                "labels and clustered_rows refer to kept rows"
            )
    return rep


def _min_cluster_size(v: Any) -> int:
    if v is None:
        return 0
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 0:
        raise ValueError(f"min_cluster_size must be None or an integer ≥ 0, got {v!r}")
    return int(v)


def reference_recipe(
    X: Any,
    seed: int = 0,
    *,
    spectra: bool = True,
    n_threads: int | None = None,
    dtype: str | None = None,
    min_cluster_size: int | None = None,
    massive: str | None = None,
    massive_ratio: float = 100.0,
) -> ClusterReport:
    """The reference study's recipe with an explicit seed: a seeded sample of
    2000 rows, k = 2..16, one k-means++ run per k, silhouette threshold 0.1
    (see the module docstring for what is matched and what is not).

    By default exactly the study's recipe, without floors
    (``min_cluster_size=None``: every cluster of ≥ 2 rows enters the mean);
    pass ``min_cluster_size`` (e.g. 10) and/or ``massive`` for the validity
    floors of :func:`cluster_isotropy`."""
    return cluster_isotropy(
        X,
        seed=seed,
        spectra=spectra,
        n_threads=n_threads,
        dtype=dtype,
        n_init="auto",
        min_cluster_size=min_cluster_size,
        massive=massive,
        massive_ratio=massive_ratio,
        **REFERENCE,
    )


def _report(r: _core.ClusterIsotropyResult, params: dict) -> ClusterReport:
    ks = list(r.k)
    sil = {k: float(s) for k, s in zip(ks, r.silhouettes)}
    clustered = r.clustered_rows
    n_clustered = int(r.n) if clustered is None else len(clustered)
    notes = []
    best_k = int(r.best_k)
    if best_k == 1:
        finite = {k: s for k, s in sil.items() if np.isfinite(s)}
        if finite:
            kb = max(finite, key=lambda k: (finite[k], -k))
            notes.append(
                f"no k reached the silhouette threshold {params['threshold']:g} "
                f"(best {finite[kb]:.4f} at k={kb}): one cluster (k = 1)"
            )
        else:
            notes.append("the silhouette was undefined for every k: one cluster (k = 1)")
    if r.n_fit < n_clustered:
        notes.append(
            f"k-means fitted on a seeded sample of {r.n_fit:,} of {n_clustered:,} clustered rows; "
            "every clustered row assigned to its nearest centre"
        )
    if not r.silhouette_exact:
        notes.append(f"silhouette on a seeded sample of {r.n_silhouette:,} of {n_clustered:,} clustered rows")
    unconv = [k for k, c in zip(ks, r.converged) if not c]
    if unconv:
        notes.append(f"k-means reached max_iter={params['max_iter']} without converging for k = {unconv}")
    m = int(r.min_cluster_size)
    if m <= 2:
        notes.append("reference recipe without floors: clusters of any size enter the mean")
    elif r.n_small_clusters:
        notes.append(
            f"{r.n_small_clusters} of {best_k} clusters have fewer than min_cluster_size = {m} rows: "
            "NaN statistics, left out of inter_cluster_cosine(_weighted)"
        )
    if not np.isfinite(r.inter_cluster_cosine):
        notes.append("no cluster qualifies (size ≥ min_cluster_size, not constant): inter_cluster_cosine is NaN")
    clusters = []
    for i, s in enumerate(r.clusters):
        c = _cluster_dict(s)
        c["label"] = i
        if c.get("note"):
            notes.append(f"cluster {i}: {c['note']}")
        clusters.append(c)
    return ClusterReport(
        best_k=best_k,
        silhouette=float(r.silhouette),
        silhouettes=sil,
        inertias={k: float(v) for k, v in zip(ks, r.inertias)},
        inter_cluster_cosine=float(r.inter_cluster_cosine),
        inter_cluster_cosine_weighted=float(r.inter_cluster_cosine_weighted),
        labels=np.asarray(r.labels, dtype=np.intp),
        clusters=clusters,
        seed=params["seed"],
        n=int(r.n),
        dim=int(r.dim),
        mode="full" if params["sample_size"] is None else "reference",
        threshold=params["threshold"],
        n_clustered=n_clustered,
        n_fit=int(r.n_fit),
        n_silhouette=int(r.n_silhouette),
        silhouette_exact=bool(r.silhouette_exact),
        clustered_rows=None if clustered is None else np.asarray(clustered, dtype=np.intp),
        centers=np.asarray(r.centers),
        n_iter={k: int(v) for k, v in zip(ks, r.n_iter)},
        converged={k: bool(v) for k, v in zip(ks, r.converged)},
        params={k: v for k, v in params.items() if k != "seed"},
        notes=notes,
        timings={str(k): float(v) for k, v in r.timings.items()},
        min_cluster_size=int(r.min_cluster_size),
        n_small_clusters=int(r.n_small_clusters),
        floors=int(r.min_cluster_size) > 2,
    )


def _cluster_dict(s: _core.ClusterStatistics) -> dict:
    """One cluster's statistics as the dict of ``ClusterReport.clusters`` and
    :func:`cluster_statistics` (the public shape; ``label`` is added by the caller)."""
    return dict(
        size=s.size,
        avg_cosine_centered=s.avg_cosine_centered,
        n_zero_norm=s.n_zero_norm,
        partition_isotropy=s.partition_isotropy,
        log_partition_isotropy=s.log_partition_isotropy,
        isoscore=s.isoscore,
        note=s.note,
    )


def _dense(labels: Any, n: int):
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != n:
        raise ValueError(f"labels must be a 1-D array with one label per row ({n}), got shape {lab.shape}")
    uniq, inv = np.unique(lab, return_inverse=True)
    return uniq, np.ascontiguousarray(inv.reshape(-1), dtype=np.int64)


def silhouette(
    X: Any,
    labels: Any,
    *,
    sample_size: int | None = None,
    seed: int = 0,
    n_threads: int | None = None,
    dtype: str | None = None,
) -> float:
    """Mean silhouette coefficient, Euclidean — ``sklearn.metrics.silhouette_score``.

    s(i) = (b − a)/max(a, b) with a the mean distance to the other rows of i's
    cluster and b the smallest mean distance to another cluster; s = 0 for
    singleton clusters (scikit-learn's convention). Exact (distances computed
    in tiles, never an n×n matrix); ``sample_size`` scores a seeded uniform
    sample of rows instead. Labels may be any values (ints, strings).
    The rows are held as float64 in memory (n·d·8 bytes).
    """
    arr, elem = as_matrix(X, dtype)
    uniq, dense = _dense(labels, arr.shape[0])
    return float(
        _core.silhouette_score(
            arr,
            dense,
            len(uniq),
            elem=elem,
            sample_size=_count("sample_size", sample_size),
            seed=_seed(seed),
            n_threads=n_threads,
        )
    )


@dataclass
class KMeansResult:
    """A k-means fit: centres (input coordinates), labels, exact inertia."""

    centers: np.ndarray
    labels: np.ndarray
    inertia: float
    n_iter: int
    converged: bool
    n_relocated: int = 0


def kmeans(
    X: Any,
    k: int,
    *,
    n_init: int | str = "auto",
    max_iter: int = 300,
    tol: float = 1e-4,
    seed: int = 0,
    n_threads: int | None = None,
    dtype: str | None = None,
) -> KMeansResult:
    """k-means with scikit-learn's semantics (k-means++ greedy seeding, Lloyd,
    relative ``tol``, ``max_iter``, best of ``n_init``), seeded and exact
    (labels are the argmin of exact distances; inertia computed exactly).
    The rows are held as float64 in memory (n·d·8 bytes)."""
    arr, elem = as_matrix(X, dtype)
    r = _core.kmeans(
        arr,
        check_int(k, "k", minimum=1),
        elem=elem,
        n_init=_n_init(n_init),
        max_iter=_count("max_iter", max_iter, False),
        tol=float(tol),
        seed=_seed(seed),
        n_threads=n_threads,
    )
    return KMeansResult(
        centers=np.asarray(r.centers),
        labels=np.asarray(r.labels, dtype=np.intp),
        inertia=float(r.inertia),
        n_iter=int(r.n_iter),
        converged=bool(r.converged),
        n_relocated=int(r.n_relocated),
    )


def cluster_statistics(
    X: Any,
    labels: Any,
    *,
    spectra: bool = True,
    n_threads: int | None = None,
    dtype: str | None = None,
) -> list:
    """Per-cluster statistics of ``X`` for given labels (one per row): a list
    of dicts (``label``, ``size``, ``avg_cosine_centered``,
    ``partition_isotropy``, ``log_partition_isotropy``, ``isoscore``,
    ``n_zero_norm``, ``note``) in sorted label order. Streams ``X`` in tiles."""
    arr, elem = as_matrix(X, dtype)
    uniq, dense = _dense(labels, arr.shape[0])
    out = _core.cluster_statistics(arr, dense, len(uniq), elem=elem, spectra=bool(spectra), n_threads=n_threads)
    res = []
    for lab, s in zip(uniq.tolist(), out):
        c = _cluster_dict(s)
        c["label"] = lab
        res.append(c)
    return res


def _fmt(v: Any, spec: str = ".4f") -> str:
    if v is None:
        return "—"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not np.isfinite(f):
        return "nan"
    return format(f, spec)


def format_cluster_table(report: ClusterReport) -> str:
    """A readable text table of a :class:`ClusterReport` (for ``isofast
    analyze FILE --clusters``)."""
    r = report
    sil_src = "exact" if r.silhouette_exact else "sampled"
    lines = [
        f"clustered isotropy  mode={r.mode}  seed={r.seed}",
        f"  rows N={r.n:,}  d={r.dim:,}  clustered={r.n_clustered:,}  fit={r.n_fit:,}  "
        f"silhouette={r.n_silhouette:,} ({sil_src})",
        "",
        f"  {'k':>3}  {'silhouette':>10}  {'inertia':>12}  {'iters':>5}",
    ]
    best_sil_k = None
    finite = {k: s for k, s in r.silhouettes.items() if np.isfinite(s)}
    if finite:
        best_sil_k = max(finite, key=lambda k: (finite[k], -k))
    for k in sorted(r.silhouettes):
        mark = " *" if k == best_sil_k else ""
        lines.append(
            f"  {k:>3}  {_fmt(r.silhouettes[k]):>10}  {_fmt(r.inertias.get(k), '.4g'):>12}  "
            f"{r.n_iter.get(k, 0):>5}{mark}"
        )
    rule = "≥" if r.best_k > 1 else "<"
    lines += [
        "",
        f"  best_k = {r.best_k}  (best silhouette {_fmt(r.silhouette)} {rule} threshold {r.threshold:g})",
        f"  inter_cluster_cosine = {_fmt(r.inter_cluster_cosine)}  "
        f"(size-weighted {_fmt(r.inter_cluster_cosine_weighted)})",
        "",
        f"  {'cluster':>7}  {'size':>9}  {'avg_cos_centered':>16}  {'partition_iso':>13}  "
        f"{'log_partition_iso':>17}  {'isoscore':>8}",
    ]
    for c in r.clusters:
        lines.append(
            f"  {c['label']:>7}  {c['size']:>9,}  {_fmt(c['avg_cosine_centered']):>16}  "
            f"{_fmt(c['partition_isotropy'], '.4g'):>13}  {_fmt(c['log_partition_isotropy'], '.4g'):>17}  "
            f"{_fmt(c['isoscore']):>8}"
        )
    if r.notes:
        lines.append("")
        lines += [f"  note: {n}" for n in r.notes]
    return "\n".join(lines)
