//! Result types of the bindings: frozen classes with one read-only attribute
//! per field (typed in `python/isofast/_core.pyi`), built from the kernels'
//! result structs. Arrays are numpy arrays made once, at construction.
//!
//! The public Python API keeps its own shapes: `isofast.cluster` turns
//! [`ClusterStatistics`] into the per-cluster dicts of `ClusterReport.clusters`
//! and of `cluster_statistics()`, the other classes are read field by field
//! into the Python layer's dataclasses.

use isofast_core::cluster::{ClusterReport, ClusterStats};
use isofast_core::cosine::SelfSimilarity;
use isofast_core::head::HeadResult as CoreHeadResult;
use isofast_core::kmeans::KMeansFit as CoreKMeansFit;
use isofast_core::partition::SecondPass as CoreSecondPass;
use isofast_core::spectrum::SpectralScores as CoreSpectralScores;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;

type Vector<T> = Py<PyArray1<T>>;
type Matrix<T> = Py<PyArray2<T>>;

fn vector<T: numpy::Element>(py: Python<'_>, v: Vec<T>) -> Vector<T> {
    PyArray1::from_vec(py, v).unbind()
}

fn matrix<T: numpy::Element>(py: Python<'_>, v: Vec<T>, rows: usize, cols: usize) -> Matrix<T> {
    Array2::from_shape_vec((rows, cols), v).expect("rows × cols buffer").into_pyarray(py).unbind()
}

fn labels(py: Python<'_>, l: &[u32]) -> Vector<i64> {
    vector(py, l.iter().map(|&v| v as i64).collect())
}

/// Spectral scores of descending covariance eigenvalues λ (`spectral_scores`).
#[pyclass(module = "isofast._core", frozen, get_all)]
pub struct SpectralScores {
    /// λ_k / Σλ.
    explained_variance_ratio: Vector<f64>,
    /// Smallest k with Σ_{i≤k} λ_i/Σλ ≥ eps.
    effective_dim: usize,
    /// (Σλ)² / Σλ².
    participation_ratio: f64,
    /// (PR − 1)/(d − 1) (Rudman et al. 2022).
    isoscore: f64,
    /// Σλ / λ₁.
    stable_rank: f64,
    /// λ₁ / Σλ.
    pc1_share: f64,
    /// exp(−Σ p_k ln p_k), p_k = √λ_k/Σ√λ (Roy & Vetterli 2007).
    effective_rank: f64,
    /// Σλ.
    total_variance: f64,
}

impl SpectralScores {
    pub fn new(py: Python<'_>, s: CoreSpectralScores) -> Self {
        SpectralScores {
            explained_variance_ratio: vector(py, s.explained_variance_ratio),
            effective_dim: s.effective_dim,
            participation_ratio: s.participation_ratio,
            isoscore: s.isoscore,
            stable_rank: s.stable_rank,
            pc1_share: s.pc1_share,
            effective_rank: s.effective_rank,
            total_variance: s.total_variance,
        }
    }
}

/// Per-group average cosine (`self_similarity`).
#[pyclass(module = "isofast._core", frozen, get_all)]
pub struct SelfSimilarityResult {
    /// Mean of the per-group averages over groups with ≥ 2 non-zero rows.
    mean: f64,
    /// Group labels in first-seen order.
    labels: Vector<i64>,
    /// Per-group average cosine (NaN for groups with < 2 non-zero rows).
    per_group: Vector<f64>,
    /// Per-group row counts (zero-norm rows included).
    counts: Vector<u64>,
    /// Rows skipped for zero norm.
    n_zero_norm: u64,
}

impl SelfSimilarityResult {
    pub fn new(py: Python<'_>, r: SelfSimilarity) -> Self {
        SelfSimilarityResult {
            mean: r.mean,
            labels: vector(py, r.labels),
            per_group: vector(py, r.per_group),
            counts: vector(py, r.counts),
            n_zero_norm: r.n_zero,
        }
    }
}

/// What a second pass has accumulated (`SecondPass.results()`).
#[pyclass(module = "isofast._core", frozen, get_all)]
pub struct SecondPassResults {
    /// log Z(±w_k) over the raw rows.
    log_z_raw_pos: Vector<f64>,
    log_z_raw_neg: Vector<f64>,
    /// log Z(±u_k) over the centred rows.
    log_z_centered_pos: Vector<f64>,
    log_z_centered_neg: Vector<f64>,
    /// min log Z − max log Z over both signs (raw; centred).
    log_partition_isotropy: f64,
    log_partition_isotropy_centered: f64,
    /// Average cosine of the centred rows, and the rows equal to the mean.
    avg_cosine_centered: f64,
    n_zero_norm_centered: u64,
    /// The raw parts of the centred cosine: Σ of the centred unit vectors
    /// and their count.
    unit_sum_centered: Vector<f64>,
    n_nonzero_centered: u64,
}

impl SecondPassResults {
    pub fn new(py: Python<'_>, s: &CoreSecondPass) -> Self {
        SecondPassResults {
            log_z_raw_pos: vector(py, s.raw.log_z_pos()),
            log_z_raw_neg: vector(py, s.raw.log_z_neg()),
            log_z_centered_pos: vector(py, s.centered.log_z_pos()),
            log_z_centered_neg: vector(py, s.centered.log_z_neg()),
            log_partition_isotropy: s.raw.log_isotropy(),
            log_partition_isotropy_centered: s.centered.log_isotropy(),
            avg_cosine_centered: s.unit_centered.average(),
            n_zero_norm_centered: s.unit_centered.n_zero,
            unit_sum_centered: vector(py, s.unit_centered.sum.clone()),
            n_nonzero_centered: s.unit_centered.n_nonzero,
        }
    }
}

/// A k-means fit (`kmeans`).
#[pyclass(module = "isofast._core", frozen, get_all)]
pub struct KMeansFit {
    /// k × d centres.
    centers: Matrix<f64>,
    /// The centre of every row.
    labels: Vector<i64>,
    /// Σ_i ‖x_i − c_{a(i)}‖² (exact).
    inertia: f64,
    /// Lloyd iterations of the kept restart.
    n_iter: usize,
    /// False when max_iter was reached before either stopping rule held.
    converged: bool,
    /// Empty clusters re-seeded during the kept run.
    n_relocated: usize,
}

impl KMeansFit {
    pub fn new(py: Python<'_>, f: CoreKMeansFit, d: usize) -> Self {
        KMeansFit {
            labels: labels(py, &f.labels),
            centers: matrix(py, f.centers, f.k, d),
            inertia: f.inertia,
            n_iter: f.n_iter,
            converged: f.converged,
            n_relocated: f.n_relocated,
        }
    }
}

/// Statistics of one cluster (`cluster_statistics`, `ClusterIsotropyResult.clusters`).
#[pyclass(module = "isofast._core", frozen, get_all)]
pub struct ClusterStatistics {
    size: u64,
    /// Mean cosine over ordered pairs after re-centring at the cluster mean.
    avg_cosine_centered: f64,
    /// Rows equal to the cluster mean (left out of the cosine).
    n_zero_norm: u64,
    /// I and log I over c ∈ {±u_k} of the cluster covariance.
    partition_isotropy: f64,
    log_partition_isotropy: f64,
    /// (PR − 1)/(d − 1) of the cluster covariance.
    isoscore: f64,
    /// Why some values are NaN, if they are.
    note: Option<String>,
}

impl ClusterStatistics {
    pub fn new(s: &ClusterStats) -> Self {
        ClusterStatistics {
            size: s.size,
            avg_cosine_centered: s.avg_cosine_centered,
            n_zero_norm: s.n_zero_norm,
            partition_isotropy: s.partition_isotropy,
            log_partition_isotropy: s.log_partition_isotropy,
            isoscore: s.isoscore,
            note: s.note.clone(),
        }
    }

    pub fn list(py: Python<'_>, stats: &[ClusterStats]) -> PyResult<Vec<Py<ClusterStatistics>>> {
        stats.iter().map(|s| Py::new(py, ClusterStatistics::new(s))).collect()
    }
}

/// The clustered-isotropy recipe's result (`cluster_isotropy`); the
/// per-k lists follow `k`.
#[pyclass(module = "isofast._core", frozen, get_all)]
pub struct ClusterIsotropyResult {
    n: u64,
    dim: usize,
    /// Global mean μ.
    mean: Vector<f64>,
    /// The input rows that were clustered (None: all).
    clustered_rows: Option<Vector<i64>>,
    n_fit: usize,
    n_silhouette: usize,
    silhouette_exact: bool,
    /// The k tried, and per k: silhouette, inertia, Lloyd iterations, convergence.
    k: Vec<usize>,
    silhouettes: Vec<f64>,
    inertias: Vec<f64>,
    n_iter: Vec<usize>,
    converged: Vec<bool>,
    best_k: usize,
    silhouette: f64,
    labels: Vector<i64>,
    /// best_k × d centres.
    centers: Matrix<f64>,
    clusters: Vec<Py<ClusterStatistics>>,
    inter_cluster_cosine: f64,
    inter_cluster_cosine_weighted: f64,
    /// The floor applied (≥ 2) and the clusters below it.
    min_cluster_size: usize,
    n_small_clusters: usize,
    /// Seconds per phase, in the order run.
    timings: Py<PyDict>,
}

impl ClusterIsotropyResult {
    pub fn new(py: Python<'_>, r: ClusterReport) -> PyResult<Self> {
        let timings = PyDict::new(py);
        for (name, secs) in &r.timings {
            timings.set_item(*name, *secs)?;
        }
        Ok(ClusterIsotropyResult {
            n: r.n,
            dim: r.dim,
            clustered_rows: r.clustered_rows.map(|c| vector(py, c.into_iter().map(|i| i as i64).collect())),
            n_fit: r.n_fit,
            n_silhouette: r.n_silhouette,
            silhouette_exact: r.silhouette_exact,
            k: r.scores.iter().map(|s| s.k).collect(),
            silhouettes: r.scores.iter().map(|s| s.silhouette).collect(),
            inertias: r.scores.iter().map(|s| s.inertia).collect(),
            n_iter: r.scores.iter().map(|s| s.n_iter).collect(),
            converged: r.scores.iter().map(|s| s.converged).collect(),
            best_k: r.best_k,
            silhouette: r.silhouette,
            labels: labels(py, &r.labels),
            centers: matrix(py, r.centers, r.best_k, r.dim),
            clusters: ClusterStatistics::list(py, &r.clusters)?,
            inter_cluster_cosine: r.inter_cluster_cosine,
            inter_cluster_cosine_weighted: r.inter_cluster_cosine_weighted,
            min_cluster_size: r.min_cluster_size,
            n_small_clusters: r.n_small_clusters,
            mean: vector(py, r.mean),
            timings: timings.unbind(),
        })
    }
}

/// The fused LM-head kernel's result (`log_partition_head`); the optional
/// fields are None unless asked for.
#[pyclass(module = "isofast._core", frozen, get_all)]
pub struct HeadResult {
    /// log Z(c_n) = logsumexp_w(⟨v_w, c_n⟩ + b_w), (N,).
    log_z: Vector<f64>,
    /// The top-k token ids, logits and probabilities per context, N × k.
    topk_indices: Option<Matrix<i64>>,
    topk_logits: Option<Matrix<f64>>,
    topk_probs: Option<Matrix<f64>>,
    /// log p(S|c_n) of the subset, (N,).
    subset_log_mass: Option<Vector<f64>>,
}

impl HeadResult {
    pub fn new(py: Python<'_>, r: CoreHeadResult) -> Self {
        let (n, k) = (r.n, r.topk);
        let (mut topk_indices, mut topk_logits, mut topk_probs) = (None, None, None);
        if k > 0 {
            let probs = r.topk_probs();
            topk_indices = Some(matrix(py, r.topk_indices.iter().map(|&i| i as i64).collect(), n, k));
            topk_logits = Some(matrix(py, r.topk_logits, n, k));
            topk_probs = Some(matrix(py, probs, n, k));
        }
        HeadResult {
            log_z: vector(py, r.log_z),
            topk_indices,
            topk_logits,
            topk_probs,
            subset_log_mass: r.subset_log_mass.map(|s| vector(py, s)),
        }
    }
}
