//! Bindings of clustered isotropy: k-means, the silhouette, per-cluster
//! statistics and the whole recipe (isofast_core::{kmeans, silhouette, cluster}).

use crate::array::{run, view};
use crate::errors::{InputError, Result};
use crate::results::{ClusterIsotropyResult, ClusterStatistics, KMeansFit};
use isofast_core::cluster::{self as core_cluster, ClusterOptions};
use isofast_core::kmeans::{kmeans_view, KMeansParams};
use isofast_core::silhouette::silhouette_score as core_silhouette;
use numpy::PyReadonlyArray1;
use pyo3::prelude::*;

/// Dense labels 0..k from an int64 array (negative or ≥ k is an error).
fn dense_labels(labels: &PyReadonlyArray1<'_, i64>, k: usize) -> Result<Vec<u32>> {
    let a = labels.as_array();
    if let Some(&bad) = a.iter().find(|&&v| v < 0 || v as u64 >= k as u64) {
        return Err(InputError::new_err(format!("label {bad} outside 0..{k}")).into());
    }
    Ok(a.iter().map(|&v| v as u32).collect())
}

/// k-means (k-means++ greedy seeding, Lloyd with Hamerly bounds), seeded.
#[pyfunction]
#[pyo3(signature = (x, k, elem=None, n_init=1, max_iter=300, tol=1e-4, seed=0, n_threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn kmeans<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    k: usize,
    elem: Option<&str>,
    n_init: usize,
    max_iter: usize,
    tol: f64,
    seed: u64,
    #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
) -> Result<KMeansFit> {
    let v = view(x, elem)?;
    let params = KMeansParams { k, n_init, max_iter, tol, seed };
    let f = run(py, || kmeans_view(&v, &params, n_threads))?;
    Ok(KMeansFit::new(py, f, v.ncols()))
}

/// Mean silhouette coefficient (Euclidean) of dense labels 0..k.
#[pyfunction]
#[pyo3(signature = (x, labels, k, elem=None, sample_size=None, seed=0, n_threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn silhouette_score<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    labels: PyReadonlyArray1<'py, i64>,
    k: usize,
    elem: Option<&str>,
    sample_size: Option<usize>,
    seed: u64,
    #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
) -> Result<f64> {
    let v = view(x, elem)?;
    let l = dense_labels(&labels, k)?;
    run(py, || core_silhouette(&v, &l, k, sample_size, seed, n_threads))
}

/// Per-cluster statistics for dense labels 0..k (one per row).
#[pyfunction]
#[pyo3(signature = (x, labels, k, elem=None, spectra=true, n_threads=None))]
pub fn cluster_statistics<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    labels: PyReadonlyArray1<'py, i64>,
    k: usize,
    elem: Option<&str>,
    spectra: bool,
    #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
) -> Result<Vec<Py<ClusterStatistics>>> {
    let v = view(x, elem)?;
    let l = dense_labels(&labels, k)?;
    let stats = run(py, || core_cluster::cluster_statistics(&v, &l, k, spectra, n_threads))?;
    Ok(ClusterStatistics::list(py, &stats)?)
}

/// The clustered-isotropy recipe.
#[pyfunction]
#[pyo3(signature = (
    x, k_range, elem=None, threshold=0.1, sample_size=None, silhouette_sample_size=20000,
    fit_sample_size=Some(20000), n_init=1, max_iter=300, tol=1e-4, seed=0, spectra=true,
    min_cluster_size=0, rows=None, n_threads=None
))]
#[allow(clippy::too_many_arguments)]
pub fn cluster_isotropy<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    k_range: Vec<i64>,
    elem: Option<&str>,
    threshold: f64,
    sample_size: Option<usize>,
    silhouette_sample_size: usize,
    fit_sample_size: Option<usize>,
    n_init: usize,
    max_iter: usize,
    tol: f64,
    seed: u64,
    spectra: bool,
    min_cluster_size: usize,
    rows: Option<PyReadonlyArray1<'py, i64>>,
    #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
) -> Result<ClusterIsotropyResult> {
    let v = view(x, elem)?;
    let rows = match rows {
        None => None,
        Some(r) => {
            let a = r.as_array();
            if let Some(&bad) = a.iter().find(|&&i| i < 0) {
                return Err(InputError::new_err(format!("rows contains {bad}: row indices must be ≥ 0")).into());
            }
            Some(a.iter().map(|&i| i as usize).collect::<Vec<usize>>())
        }
    };
    if let Some(&k) = k_range.iter().find(|&&k| k < 2) {
        return Err(InputError::new_err(format!(
            "k_range contains k = {k}: model selection needs k ≥ 2 (k = 1 is the automatic fallback when no k reaches the silhouette threshold)"
        )).into());
    }
    let opts = ClusterOptions {
        k_range: k_range.iter().map(|&k| k as usize).collect(),
        threshold,
        sample_size,
        silhouette_sample_size,
        fit_sample_size,
        n_init,
        max_iter,
        tol,
        seed,
        spectra,
        min_cluster_size,
        rows,
        n_threads,
    };
    let r = run(py, || core_cluster::cluster_isotropy(&v, &opts))?;
    Ok(ClusterIsotropyResult::new(py, r)?)
}
