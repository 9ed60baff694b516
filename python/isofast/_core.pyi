"""Type stubs of the compiled extension ``isofast._core`` (PyO3 bindings of the
pure-Rust crate isofast-core). Arrays are 2-D numpy views (any strides, any
float/integer dtype); ``elem="bfloat16"`` marks uint16 bfloat16 bit patterns.
Every function releases the GIL and runs on ``n_threads`` threads (default:
all cores). Bad values raise ValueError; unsupported dtypes TypeError."""

from typing import final

import numpy as np
import numpy.typing as npt

__version__: str
__all__ = [
    "ClusterFirstPass",
    "ClusterPlan",
    "ClusterSecondPass",
    "Moments",
    "SecondPass",
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
    unit-vector sum, streamed; mergeable."""

    def __new__(cls, mean: _F64, dirs_raw: _F64, dirs_centered: _F64, f64_gemm: bool) -> SecondPass: ...
    def update(self, x: np.ndarray, elem: str | None = None, n_threads: int | None = None) -> None: ...
    def merge(self, other: SecondPass) -> None: ...
    @property
    def n(self) -> int: ...
    def results(self) -> dict:
        """log_z_{raw,centered}_{pos,neg} (arrays), log_partition_isotropy[_centered],
        avg_cosine_centered, n_zero_norm_centered, and the mergeable parts of the
        centred cosine: unit_sum_centered (array) and n_nonzero_centered."""

def sym_eigen(a: _F64, n_threads: int | None = None) -> tuple[_F64, _F64]: ...
def spectral_scores(values: _F64, eps: float = 0.8) -> dict: ...
def self_similarity(
    x: np.ndarray,
    groups: npt.NDArray[np.int64],
    elem: str | None = None,
    center: _F64 | None = None,
    n_threads: int | None = None,
) -> dict: ...
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
) -> dict:
    """k-means++ (greedy) seeding and Hamerly-pruned Lloyd iterations; returns
    ``centers``, ``labels``, ``inertia``, ``n_iter``, ``converged``, ``n_relocated``."""

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
) -> list: ...
def cluster_isotropy(
    x: np.ndarray,
    k_range: list,
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
) -> dict:
    """The clustered-isotropy recipe. ``min_cluster_size``: clusters with fewer
    rows get NaN statistics and leave the means (0–2: no floor); ``rows``:
    cluster only these sorted, distinct input rows (read in place). The dict
    adds ``min_cluster_size`` (applied, ≥ 2) and ``n_small_clusters``."""

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
) -> dict:
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
    def finish(self, plan: ClusterPlan, n_threads: int | None = None) -> list[dict]:
        """Per-cluster statistics, as :func:`cluster_statistics` gives them."""
    def __getstate__(self) -> bytes: ...
    def __setstate__(self, state: bytes) -> None: ...
    def __getnewargs__(self) -> tuple[()]: ...
