"""Type stubs of the compiled extension ``isofast._core`` (PyO3 bindings of the
pure-Rust crate isofast-core). Arrays are 2-D numpy views (any strides, any
float/integer dtype); ``elem="bfloat16"`` marks uint16 bfloat16 bit patterns.
Every function releases the GIL and runs on ``n_threads`` threads (default:
all cores). Errors are the classes of ``isofast.errors`` (bad values an
``InputError``, a ``ValueError``; unsupported dtypes an ``ArgumentTypeError``,
a ``TypeError``; NaN/Inf a ``NonFiniteError`` with ``.row``/``.col``). Results
are frozen classes with one read-only attribute per field."""

from typing import final

import numpy as np
import numpy.typing as npt

__version__: str
__all__ = [
    "ClusterFirstPass",
    "ClusterPlan",
    "ClusterSecondPass",
    "ClusterIsotropyResult",
    "ClusterStatistics",
    "HeadResult",
    "KMeansFit",
    "Moments",
    "SecondPass",
    "SecondPassResults",
    "SelfSimilarityResult",
    "SpectralScores",
    "__version__",
    "all_but_the_top",
    "available_threads",
    "cluster_isotropy",
    "cluster_statistics",
    "column_mean",
    "fast_tile_rows",
    "kmeans",
    "log_partition",
    "log_partition_head",
    "row_norms",
    "self_similarity",
    "silhouette_score",
    "spectral_scores",
    "sym_eigen",
    "unit_sum",
]

_F64 = npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]

# --- result types (rust/py/src/results.rs) ------------------------------------

@final
class SpectralScores:
    """Scores of descending covariance eigenvalues λ (``spectral_scores``)."""

    @property
    def explained_variance_ratio(self) -> _F64:
        """λ_k / Σλ."""
    @property
    def effective_dim(self) -> int:
        """Smallest k with Σ_{i≤k} λ_i/Σλ ≥ eps."""
    @property
    def participation_ratio(self) -> float:
        """(Σλ)² / Σλ²."""
    @property
    def isoscore(self) -> float:
        """(PR − 1)/(d − 1) (Rudman et al. 2022)."""
    @property
    def stable_rank(self) -> float:
        """Σλ / λ₁."""
    @property
    def pc1_share(self) -> float:
        """λ₁ / Σλ."""
    @property
    def effective_rank(self) -> float:
        """exp(−Σ p_k ln p_k), p_k = √λ_k/Σ√λ (Roy & Vetterli 2007)."""
    @property
    def total_variance(self) -> float:
        """Σλ."""

@final
class SelfSimilarityResult:
    """Per-group average cosine (``self_similarity``)."""

    @property
    def mean(self) -> float:
        """Mean of the per-group averages over groups with ≥ 2 non-zero rows."""
    @property
    def labels(self) -> _I64:
        """Group labels in first-seen order."""
    @property
    def per_group(self) -> _F64:
        """Per-group average cosine (NaN for groups with < 2 non-zero rows)."""
    @property
    def counts(self) -> npt.NDArray[np.uint64]:
        """Per-group row counts (zero-norm rows included)."""
    @property
    def n_zero_norm(self) -> int:
        """Rows skipped for zero norm."""

@final
class SecondPassResults:
    """What a second pass accumulated (``SecondPass.results()``)."""

    @property
    def log_z_raw_pos(self) -> _F64: ...
    @property
    def log_z_raw_neg(self) -> _F64: ...
    @property
    def log_z_centered_pos(self) -> _F64: ...
    @property
    def log_z_centered_neg(self) -> _F64: ...
    @property
    def log_partition_isotropy(self) -> float:
        """min log Z − max log Z over ±w_k (raw rows)."""
    @property
    def log_partition_isotropy_centered(self) -> float:
        """min log Z − max log Z over ±u_k (centred rows)."""
    @property
    def avg_cosine_centered(self) -> float: ...
    @property
    def n_zero_norm_centered(self) -> int: ...
    @property
    def unit_sum_centered(self) -> _F64:
        """Σ of the centred unit vectors (mergeable part of the centred cosine)."""
    @property
    def n_nonzero_centered(self) -> int: ...

@final
class KMeansFit:
    """A k-means fit (``kmeans``)."""

    @property
    def centers(self) -> _F64:
        """k × d centres."""
    @property
    def labels(self) -> _I64: ...
    @property
    def inertia(self) -> float:
        """Σ_i ‖x_i − c_{a(i)}‖² (exact)."""
    @property
    def n_iter(self) -> int: ...
    @property
    def converged(self) -> bool: ...
    @property
    def n_relocated(self) -> int:
        """Empty clusters re-seeded during the kept run."""

@final
class ClusterStatistics:
    """Statistics of one cluster (``cluster_statistics``, ``ClusterIsotropyResult.clusters``)."""

    @property
    def size(self) -> int: ...
    @property
    def avg_cosine_centered(self) -> float: ...
    @property
    def n_zero_norm(self) -> int: ...
    @property
    def partition_isotropy(self) -> float: ...
    @property
    def log_partition_isotropy(self) -> float: ...
    @property
    def isoscore(self) -> float: ...
    @property
    def note(self) -> str | None:
        """Why some values are NaN, if they are."""

@final
class ClusterIsotropyResult:
    """The clustered-isotropy recipe's result (``cluster_isotropy``); the per-k
    lists follow ``k``."""

    @property
    def n(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def mean(self) -> _F64: ...
    @property
    def clustered_rows(self) -> _I64 | None:
        """The input rows that were clustered (None: all)."""
    @property
    def n_fit(self) -> int: ...
    @property
    def n_silhouette(self) -> int: ...
    @property
    def silhouette_exact(self) -> bool: ...
    @property
    def k(self) -> list[int]: ...
    @property
    def silhouettes(self) -> list[float]: ...
    @property
    def inertias(self) -> list[float]: ...
    @property
    def n_iter(self) -> list[int]: ...
    @property
    def converged(self) -> list[bool]: ...
    @property
    def best_k(self) -> int: ...
    @property
    def silhouette(self) -> float: ...
    @property
    def labels(self) -> _I64: ...
    @property
    def centers(self) -> _F64:
        """best_k × d centres."""
    @property
    def clusters(self) -> list[ClusterStatistics]: ...
    @property
    def inter_cluster_cosine(self) -> float: ...
    @property
    def inter_cluster_cosine_weighted(self) -> float: ...
    @property
    def min_cluster_size(self) -> int:
        """The floor applied (≥ 2)."""
    @property
    def n_small_clusters(self) -> int: ...
    @property
    def timings(self) -> dict[str, float]:
        """Seconds per phase, in the order run."""

@final
class HeadResult:
    """The fused LM-head kernel's result (``log_partition_head``); the optional
    fields are None unless asked for."""

    @property
    def log_z(self) -> _F64:
        """log Z(c_n) = logsumexp_w(⟨v_w, c_n⟩ + b_w), (N,)."""
    @property
    def topk_indices(self) -> _I64 | None: ...
    @property
    def topk_logits(self) -> _F64 | None: ...
    @property
    def topk_probs(self) -> _F64 | None: ...
    @property
    def subset_log_mass(self) -> _F64 | None:
        """log p(S|c_n) of the subset, (N,)."""

# --- global statistics (isofast_core::{moments, partition, spectrum, cosine}) ---

@final
class Moments:
    """Mergeable count, mean, co-moment (Chan et al. 1979) and raw unit-vector sum."""

    def __new__(cls, dim: int, precision: str = "exact") -> Moments:
        """precision: "exact" (float64 Gram products) or "fast" (float32
        Gram products of tile-centred rows, merged in float64)."""
    @property
    def precision(self) -> str: ...
    @property
    def released(self) -> bool:
        """True once second_pass(release=True) freed the co-moment."""
    def update(self, x: np.ndarray, elem: str | None = None, n_threads: int | None = None) -> None: ...
    def merge(self, other: Moments) -> None: ...
    def copy(self) -> Moments: ...
    @property
    def n(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def mean(self) -> _F64: ...
    def comoment(self) -> _F64: ...
    def covariance(self) -> _F64: ...
    @property
    def unit_sum(self) -> _F64: ...
    @property
    def n_zero_norm(self) -> int: ...
    @property
    def avg_cosine(self) -> float: ...
    def eigenvalues(self, n_threads: int | None = None) -> _F64:
        """Covariance eigenvalues, descending (no eigenvectors: cheaper)."""
    def second_pass(
        self,
        f64_gemm: bool,
        raw: bool = True,
        centered: bool = True,
        n_threads: int | None = None,
        release: bool = False,
        memory_budget: int | None = None,
    ) -> tuple[_F64, SecondPass]:
        """(covariance eigenvalues desc, a SecondPass over ±eigenvectors of XᵀX
        (raw, by the rank-one update of the covariance's eigenpairs) and of
        the covariance (centred)), built without copying the d×d eigenvector
        matrices through numpy. release=True frees the co-moment first
        (covariance/comoment/update/merge/pickle then raise ValueError).
        memory_budget (bytes, default 3·d²·8 + 256 MiB) picks the
        eigensolver's route: divide and conquer if it fits, else QR."""
    def cov_directions(self, n_threads: int | None = None) -> tuple[_F64, _F64]:
        """(covariance eigenvalues desc, their eigenvectors as columns)."""
    def directions(self, n_threads: int | None = None) -> tuple[_F64, _F64, _F64, _F64]:
        """(covariance eigenvalues desc, their eigenvectors as columns,
        XᵀX eigenvalues desc, their eigenvectors as columns); XᵀX's by the
        rank-one update of the covariance's (one decomposition)."""
    def __getstate__(self) -> bytes: ...
    def __setstate__(self, state: bytes) -> None: ...
    def __getnewargs__(self) -> tuple[int, str]: ...

@final
class SecondPass:
    """Partition functions over ±directions (raw and centred) and the centred
    unit-vector sum, streamed; mergeable and picklable (checksummed bytes,
    like Moments)."""

    def __new__(cls, mean: _F64, dirs_raw: _F64, dirs_centered: _F64, f64_gemm: bool) -> SecondPass: ...
    def update(self, x: np.ndarray, elem: str | None = None, n_threads: int | None = None) -> None: ...
    def merge(self, other: SecondPass) -> None: ...
    def copy(self) -> SecondPass: ...
    def release(self) -> None:
        """Drop the d×m directions: the state still merges, reports and
        pickles (in O(d + m) bytes) but can no longer update."""
    @property
    def released(self) -> bool: ...
    @property
    def n(self) -> int: ...
    @property
    def dim(self) -> int: ...
    def __getstate__(self) -> bytes: ...
    def __setstate__(self, state: bytes) -> None: ...
    def __getnewargs__(self) -> tuple[_F64, _F64, _F64, bool]: ...
    def results(self) -> SecondPassResults:
        """log_z_{raw,centered}_{pos,neg} (arrays), log_partition_isotropy[_centered],
        avg_cosine_centered, n_zero_norm_centered, and the mergeable parts of the
        centred cosine: unit_sum_centered (array) and n_nonzero_centered."""

def sym_eigen(a: _F64, n_threads: int | None = None) -> tuple[_F64, _F64]: ...
def spectral_scores(values: _F64, eps: float = 0.8) -> SpectralScores: ...
def self_similarity(
    x: np.ndarray,
    groups: npt.NDArray[np.int64],
    elem: str | None = None,
    center: _F64 | None = None,
    n_threads: int | None = None,
) -> SelfSimilarityResult: ...
def all_but_the_top(
    x: np.ndarray, mean: _F64, top: _F64, out: np.ndarray, elem: str | None = None, n_threads: int | None = None
) -> None: ...
def log_partition(x: np.ndarray, contexts: _F64, elem: str | None = None, n_threads: int | None = None) -> _F64: ...
def unit_sum(
    x: np.ndarray, elem: str | None = None, center: _F64 | None = None, n_threads: int | None = None
) -> tuple[_F64, int, int]: ...
def column_mean(x: np.ndarray, elem: str | None = None, n_threads: int | None = None) -> _F64: ...
def row_norms(
    x: np.ndarray,
    elem: str | None = None,
    center: _F64 | None = None,
    row_offset: int = 0,
    n_threads: int | None = None,
) -> _F64:
    """‖x_i‖ (or ‖x_i − center‖) per row, overflow/underflow-safe (max-abs
    scaling when Σx² leaves [2⁻⁹⁰⁰, max]); ``row_offset`` numbers rows in
    NaN/Inf errors."""

def available_threads() -> int: ...
def fast_tile_rows(d: int) -> int:
    """Rows per tile of precision="fast" at width d (the b of its error bound)."""

# --- clustered isotropy (isofast_core::kmeans / silhouette / cluster) ---------

def kmeans(
    x: np.ndarray,
    k: int,
    elem: str | None = None,
    n_init: int = 1,
    max_iter: int = 300,
    tol: float = 1e-4,
    seed: int = 0,
    n_threads: int | None = None,
) -> KMeansFit:
    """k-means++ (greedy) seeding and Hamerly-pruned Lloyd iterations."""

def silhouette_score(
    x: np.ndarray,
    labels: npt.NDArray[np.int64],
    k: int,
    elem: str | None = None,
    sample_size: int | None = None,
    seed: int = 0,
    n_threads: int | None = None,
) -> float: ...
def cluster_statistics(
    x: np.ndarray,
    labels: npt.NDArray[np.int64],
    k: int,
    elem: str | None = None,
    spectra: bool = True,
    n_threads: int | None = None,
) -> list[ClusterStatistics]: ...
def cluster_isotropy(
    x: np.ndarray,
    k_range: list[int],
    elem: str | None = None,
    threshold: float = 0.1,
    sample_size: int | None = None,
    silhouette_sample_size: int = 20000,
    fit_sample_size: int | None = ...,  # 20000
    n_init: int = 1,
    max_iter: int = 300,
    tol: float = 1e-4,
    seed: int = 0,
    spectra: bool = True,
    min_cluster_size: int = 0,
    rows: npt.NDArray[np.int64] | None = None,
    n_threads: int | None = None,
) -> ClusterIsotropyResult:
    """The clustered-isotropy recipe. ``min_cluster_size``: clusters with fewer
    rows get NaN statistics and leave the means (0–2: no floor); ``rows``:
    cluster only these sorted, distinct input rows (read in place). The result
    has ``min_cluster_size`` (applied, ≥ 2) and ``n_small_clusters``."""

# --- softmax head (isofast_core::head) ---------------------------------------

def log_partition_head(
    w: np.ndarray,
    c: np.ndarray,
    bias: _F64 | None = None,
    topk: int = 0,
    subset: npt.NDArray[np.int64] | None = None,
    w_elem: str | None = None,
    c_elem: str | None = None,
    n_threads: int | None = None,
) -> HeadResult:
    """``log_z`` (N,) = logsumexp_w(⟨v_w, c_n⟩ + b_w), fused GEMM tiles and
    streaming log-sum-exp; optional ``topk_*`` (N×k) and ``subset_log_mass``."""

# --- per-cluster passes (isofast_core::cluster_pass) -------------------------

@final
class ClusterFirstPass:
    """Pass 1 of the per-cluster statistics: every row shifted by ``shift``
    and assigned to its nearest centre (exact argmin, ties → lowest label),
    then per cluster size, sum, exact zero-variance test and (``spectra``)
    co-moment. Mergeable; pickles as versioned, checksummed bytes."""

    def __new__(cls, centers: _F64, shift: _F64, spectra: bool = True) -> ClusterFirstPass: ...
    def update(self, x: np.ndarray, elem: str | None = None, n_threads: int | None = None) -> None: ...
    def merge(self, other: ClusterFirstPass) -> None: ...
    def copy(self) -> ClusterFirstPass: ...
    @property
    def k(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def n(self) -> int: ...
    @property
    def sizes(self) -> list[int]: ...
    def finish(self, min_cluster_size: int = 0, n_threads: int | None = None) -> ClusterPlan:
        """Cluster means and one route per cluster (covariance eigenvectors of
        clusters with more rows than columns); below ``min_cluster_size`` rows
        (≤ 2: no floor) a cluster's statistics are NaN."""
    def __getstate__(self) -> bytes: ...
    def __setstate__(self, state: bytes) -> None: ...
    def __getnewargs__(self) -> tuple[_F64, _F64, bool]: ...

@final
class ClusterPlan:
    """Between the passes: per cluster its size, mean and route. Made by
    :meth:`ClusterFirstPass.finish`; ``ClusterPlan()`` is an empty placeholder
    (for unpickling)."""

    def __new__(cls) -> ClusterPlan: ...
    @property
    def k(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def sizes(self) -> list[int]: ...
    @property
    def shift(self) -> _F64: ...
    @property
    def means(self) -> _F64:
        """Cluster means (k × d), input coordinates."""
    @property
    def routes(self) -> list[str]:
        """``"undefined"``, ``"cosine"``, ``"primal"`` or ``"gram"`` per cluster."""
    def __getstate__(self) -> bytes: ...
    def __setstate__(self, state: bytes) -> None: ...
    def __getnewargs__(self) -> tuple[()]: ...

@final
class ClusterSecondPass:
    """Pass 2 under a :class:`ClusterPlan`: per cluster centred log Z(±u_k) and
    unit sum, or the rows (Gram route, ≤ d rows). ``ClusterSecondPass()`` (no
    plan) is the identity of :meth:`merge`. Pickles as bytes."""

    def __new__(cls, plan: ClusterPlan | None = None) -> ClusterSecondPass: ...
    def update(
        self, plan: ClusterPlan, x: np.ndarray, elem: str | None = None, n_threads: int | None = None
    ) -> npt.NDArray[np.int64]:
        """Fold every row of ``x``; returns its labels."""
    def merge(self, other: ClusterSecondPass) -> None: ...
    def copy(self) -> ClusterSecondPass: ...
    @property
    def n(self) -> int: ...
    def finish(self, plan: ClusterPlan, n_threads: int | None = None) -> list[ClusterStatistics]:
        """Per-cluster statistics, as :func:`cluster_statistics` gives them."""
    def __getstate__(self) -> bytes: ...
    def __setstate__(self, state: bytes) -> None: ...
    def __getnewargs__(self) -> tuple[()]: ...
