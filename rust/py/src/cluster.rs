//! Bindings of clustered isotropy: k-means, the silhouette, per-cluster
//! statistics and the whole recipe (isofast_core::{kmeans, silhouette, cluster}).

use crate::array::{run, view};
use isofast_core::cluster::{self as core_cluster, ClusterOptions, ClusterStats};
use isofast_core::kmeans::{kmeans_view, KMeansParams};
use isofast_core::silhouette::silhouette_score as core_silhouette;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// Dense labels 0..k from an int64 array (negative or ≥ k is an error).
fn dense_labels(labels: &PyReadonlyArray1<'_, i64>, k: usize) -> PyResult<Vec<u32>> {
    let a = labels.as_array();
    if let Some(&bad) = a.iter().find(|&&v| v < 0 || v as u64 >= k as u64) {
        return Err(PyValueError::new_err(format!("label {bad} outside 0..{k}")));
    }
    Ok(a.iter().map(|&v| v as u32).collect())
}

fn labels_to_py<'py>(py: Python<'py>, l: &[u32]) -> Bound<'py, PyArray1<i64>> {
    PyArray1::from_vec(py, l.iter().map(|&v| v as i64).collect())
}

fn centers_to_py<'py>(py: Python<'py>, c: Vec<f64>, k: usize, d: usize) -> Bound<'py, numpy::PyArray2<f64>> {
    Array2::from_shape_vec((k, d), c).expect("k×d centres").into_pyarray(py)
}

pub(crate) fn stats_to_py<'py>(py: Python<'py>, stats: &[ClusterStats]) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for s in stats {
        let d = PyDict::new(py);
        d.set_item("size", s.size)?;
        d.set_item("avg_cosine_centered", s.avg_cosine_centered)?;
        d.set_item("n_zero_norm", s.n_zero_norm)?;
        d.set_item("partition_isotropy", s.partition_isotropy)?;
        d.set_item("log_partition_isotropy", s.log_partition_isotropy)?;
        d.set_item("isoscore", s.isoscore)?;
        d.set_item("note", s.note.clone())?;
        out.append(d)?;
    }
    Ok(out)
}

/// k-means (k-means++ greedy seeding, Lloyd with Hamerly bounds), seeded.
#[pyfunction]
#[pyo3(signature = (x, k, elem=None, n_init=1, max_iter=300, tol=1e-4, seed=0, n_threads=None))]
#[allow(clippy::too_many_arguments)]
fn kmeans<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    k: usize,
    elem: Option<&str>,
    n_init: usize,
    max_iter: usize,
    tol: f64,
    seed: u64,
    #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let v = view(x, elem)?;
    let params = KMeansParams { k, n_init, max_iter, tol, seed };
    let f = run(py, || kmeans_view(&v, &params, n_threads))?;
    let d = PyDict::new(py);
    d.set_item("centers", centers_to_py(py, f.centers, f.k, v.ncols()))?;
    d.set_item("labels", labels_to_py(py, &f.labels))?;
    d.set_item("inertia", f.inertia)?;
    d.set_item("n_iter", f.n_iter)?;
    d.set_item("converged", f.converged)?;
    d.set_item("n_relocated", f.n_relocated)?;
    Ok(d)
}

/// Mean silhouette coefficient (Euclidean) of dense labels 0..k.
#[pyfunction]
#[pyo3(signature = (x, labels, k, elem=None, sample_size=None, seed=0, n_threads=None))]
#[allow(clippy::too_many_arguments)]
fn silhouette_score<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    labels: PyReadonlyArray1<'py, i64>,
    k: usize,
    elem: Option<&str>,
    sample_size: Option<usize>,
    seed: u64,
    #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
) -> PyResult<f64> {
    let v = view(x, elem)?;
    let l = dense_labels(&labels, k)?;
    run(py, || core_silhouette(&v, &l, k, sample_size, seed, n_threads))
}

/// Per-cluster statistics for dense labels 0..k (one per row).
#[pyfunction]
#[pyo3(signature = (x, labels, k, elem=None, spectra=true, n_threads=None))]
fn cluster_statistics<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    labels: PyReadonlyArray1<'py, i64>,
    k: usize,
    elem: Option<&str>,
    spectra: bool,
    #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyList>> {
    let v = view(x, elem)?;
    let l = dense_labels(&labels, k)?;
    let stats = run(py, || core_cluster::cluster_statistics(&v, &l, k, spectra, n_threads))?;
    stats_to_py(py, &stats)
}

/// The clustered-isotropy recipe; returns a dict of plain values and arrays.
#[pyfunction]
#[pyo3(signature = (
    x, k_range, elem=None, threshold=0.1, sample_size=None, silhouette_sample_size=20000,
    fit_sample_size=Some(20000), n_init=1, max_iter=300, tol=1e-4, seed=0, spectra=true,
    min_cluster_size=0, rows=None, n_threads=None
))]
#[allow(clippy::too_many_arguments)]
fn cluster_isotropy<'py>(
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
) -> PyResult<Bound<'py, PyDict>> {
    let v = view(x, elem)?;
    let rows = match rows {
        None => None,
        Some(r) => {
            let a = r.as_array();
            if let Some(&bad) = a.iter().find(|&&i| i < 0) {
                return Err(PyValueError::new_err(format!("rows contains {bad}: row indices must be ≥ 0")));
            }
            Some(a.iter().map(|&i| i as usize).collect::<Vec<usize>>())
        }
    };
    if let Some(&k) = k_range.iter().find(|&&k| k < 2) {
        return Err(PyValueError::new_err(format!(
            "k_range contains k = {k}: model selection needs k ≥ 2 (k = 1 is the automatic fallback when no k reaches the silhouette threshold)"
        )));
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
    let d = PyDict::new(py);
    d.set_item("n", r.n)?;
    d.set_item("dim", r.dim)?;
    d.set_item("mean", PyArray1::from_vec(py, r.mean))?;
    d.set_item(
        "clustered_rows",
        r.clustered_rows.map(|c| PyArray1::from_vec(py, c.into_iter().map(|i| i as i64).collect())),
    )?;
    d.set_item("n_fit", r.n_fit)?;
    d.set_item("n_silhouette", r.n_silhouette)?;
    d.set_item("silhouette_exact", r.silhouette_exact)?;
    let ks: Vec<usize> = r.scores.iter().map(|s| s.k).collect();
    d.set_item("k", ks)?;
    d.set_item("silhouettes", r.scores.iter().map(|s| s.silhouette).collect::<Vec<_>>())?;
    d.set_item("inertias", r.scores.iter().map(|s| s.inertia).collect::<Vec<_>>())?;
    d.set_item("n_iter", r.scores.iter().map(|s| s.n_iter).collect::<Vec<_>>())?;
    d.set_item("converged", r.scores.iter().map(|s| s.converged).collect::<Vec<_>>())?;
    d.set_item("best_k", r.best_k)?;
    d.set_item("silhouette", r.silhouette)?;
    d.set_item("labels", labels_to_py(py, &r.labels))?;
    d.set_item("centers", centers_to_py(py, r.centers, r.best_k, r.dim))?;
    d.set_item("clusters", stats_to_py(py, &r.clusters)?)?;
    d.set_item("inter_cluster_cosine", r.inter_cluster_cosine)?;
    d.set_item("inter_cluster_cosine_weighted", r.inter_cluster_cosine_weighted)?;
    d.set_item("min_cluster_size", r.min_cluster_size)?;
    d.set_item("n_small_clusters", r.n_small_clusters)?;
    let t = PyDict::new(py);
    for (name, secs) in &r.timings {
        t.set_item(*name, *secs)?;
    }
    d.set_item("timings", t)?;
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(kmeans, m)?)?;
    m.add_function(wrap_pyfunction!(silhouette_score, m)?)?;
    m.add_function(wrap_pyfunction!(cluster_statistics, m)?)?;
    m.add_function(wrap_pyfunction!(cluster_isotropy, m)?)?;
    Ok(())
}
