//! Bindings of the per-cluster streaming passes (isofast_core::cluster_pass):
//! ClusterFirstPass → ClusterPlan → ClusterSecondPass, each picklable (the
//! core's versioned, checksummed bytes), updates with the GIL released.

use crate::array::{run, view};
use crate::errors::{partial_update, InputError, Result};
use crate::results::ClusterStatistics;
use crate::state::{busy, merge_into};
use isofast_core::cluster_pass::{
    ClusterFirstPass as CoreFirst, ClusterPlan as CorePlan, ClusterSecondPass as CoreSecond,
};
use isofast_core::threads;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

fn rows_to_py<'py>(py: Python<'py>, v: Vec<f64>, k: usize, d: usize) -> Bound<'py, PyArray2<f64>> {
    Array2::from_shape_vec((k, d), v).expect("k×d values").into_pyarray(py)
}

/// Pass 1: nearest-centre labels, then per cluster size, sum, zero-variance
/// test and (spectra) co-moment. Mergeable and picklable.
#[pyclass(module = "isofast._core", name = "ClusterFirstPass")]
#[derive(Clone)]
pub struct ClusterFirstPass {
    inner: CoreFirst,
}

#[pymethods]
impl ClusterFirstPass {
    /// `centers` (k × d, input coordinates); rows and centres are shifted by
    /// `shift` (length d, any point near the data) before anything else.
    #[new]
    #[pyo3(signature = (centers, shift, spectra=true))]
    fn new(centers: PyReadonlyArray2<'_, f64>, shift: PyReadonlyArray1<'_, f64>, spectra: bool) -> Result<Self> {
        let c = centers.as_array();
        if c.ncols() != shift.len()? {
            return Err(isofast_core::Error::DimMismatch {
                what: "ClusterFirstPass centres (columns)".into(),
                expected: shift.len()?,
                got: c.ncols(),
            }
            .into());
        }
        let flat: Vec<f64> = c.iter().copied().collect();
        let inner = CoreFirst::new(&flat, shift.as_array().to_vec(), spectra)?;
        Ok(ClusterFirstPass { inner })
    }

    #[pyo3(signature = (x, elem=None, n_threads=None))]
    fn update(
        slf: &Bound<'_, Self>,
        x: &Bound<'_, PyAny>,
        elem: Option<&str>,
        #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
    ) -> Result<()> {
        let v = view(x, elem)?;
        let mut me = slf.try_borrow_mut().map_err(|_| busy("ClusterFirstPass"))?;
        let inner = &mut me.inner;
        let before = inner.count();
        run(slf.py(), || threads::install(n_threads, || inner.update(&v)))
            .map_err(|e| partial_update(slf.py(), e, "ClusterFirstPass", me.inner.count() - before))
    }

    /// Merge `other` into this state; `s.merge(s)` doubles it (the same rows
    /// counted twice), as merging an equal copy would.
    fn merge(slf: &Bound<'_, Self>, other: &Bound<'_, Self>) -> Result<()> {
        merge_into(slf, other, "ClusterFirstPass", |mine, theirs| Ok(mine.inner.merge(&theirs.inner)?))
    }

    fn copy(&self) -> ClusterFirstPass {
        self.clone()
    }

    #[getter]
    fn k(&self) -> usize {
        self.inner.k()
    }
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    #[getter]
    fn n(&self) -> u64 {
        self.inner.count()
    }
    #[getter]
    fn sizes(&self) -> Vec<u64> {
        self.inner.sizes().to_vec()
    }

    /// The plan of pass 2 (covariance eigendecompositions run here); clusters
    /// below `min_cluster_size` rows get NaN statistics (≤ 2: no floor).
    #[pyo3(signature = (min_cluster_size=0, n_threads=None))]
    fn finish(
        &self,
        py: Python<'_>,
        min_cluster_size: i64,
        #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
    ) -> Result<ClusterPlan> {
        let min_cluster_size = usize::try_from(min_cluster_size)
            .map_err(|_| InputError::new_err(format!("min_cluster_size must be ≥ 0, got {min_cluster_size}")))?;
        let state = self.inner.clone();
        let plan = run(py, || threads::install(n_threads, || state.finish(min_cluster_size)))?;
        Ok(ClusterPlan { inner: Some(plan) })
    }

    fn __getstate__<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.inner.to_bytes()?))
    }
    fn __setstate__(&mut self, state: &Bound<'_, PyBytes>) -> Result<()> {
        self.inner = CoreFirst::from_bytes(state.as_bytes())?;
        Ok(())
    }
    /// Placeholder arguments (one zero centre): `__setstate__` replaces them.
    fn __getnewargs__<'py>(&self, py: Python<'py>) -> (Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<f64>>, bool) {
        let d = self.inner.dim();
        (rows_to_py(py, vec![0.0; d], 1, d), PyArray1::from_vec(py, vec![0.0; d]), self.inner.spectra())
    }
    fn __repr__(&self) -> String {
        format!("ClusterFirstPass(k={}, dim={}, n={})", self.inner.k(), self.inner.dim(), self.inner.count())
    }
}

/// Between the passes: per cluster its size, mean and route. Made by
/// ClusterFirstPass.finish(); `ClusterPlan()` is an empty placeholder for
/// unpickling.
#[pyclass(module = "isofast._core", name = "ClusterPlan")]
#[derive(Clone)]
pub struct ClusterPlan {
    inner: Option<CorePlan>,
}

impl ClusterPlan {
    fn get(&self) -> Result<&CorePlan> {
        self.inner
            .as_ref()
            .ok_or_else(|| InputError::new_err("an empty ClusterPlan: get one from ClusterFirstPass.finish()").into())
    }
}

#[pymethods]
impl ClusterPlan {
    #[new]
    fn new() -> Self {
        ClusterPlan { inner: None }
    }
    #[getter]
    fn k(&self) -> Result<usize> {
        Ok(self.get()?.k())
    }
    #[getter]
    fn dim(&self) -> Result<usize> {
        Ok(self.get()?.dim())
    }
    #[getter]
    fn sizes(&self) -> Result<Vec<u64>> {
        Ok(self.get()?.sizes().to_vec())
    }
    #[getter]
    fn shift<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyArray1<f64>>> {
        Ok(PyArray1::from_vec(py, self.get()?.shift().to_vec()))
    }
    /// Cluster means (k × d) in input coordinates (shift added back).
    #[getter]
    fn means<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyArray2<f64>>> {
        let p = self.get()?;
        let v: Vec<f64> =
            p.means().iter().flat_map(|m| m.iter().zip(p.shift()).map(|(a, b)| a + b).collect::<Vec<_>>()).collect();
        Ok(rows_to_py(py, v, p.k(), p.dim()))
    }
    /// "undefined", "cosine", "primal" or "gram" per cluster.
    #[getter]
    fn routes(&self) -> Result<Vec<&'static str>> {
        Ok(self.get()?.routes())
    }

    fn __getstate__<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.get()?.to_bytes()))
    }
    fn __setstate__(&mut self, state: &Bound<'_, PyBytes>) -> Result<()> {
        self.inner = Some(CorePlan::from_bytes(state.as_bytes())?);
        Ok(())
    }
    fn __getnewargs__<'py>(&self, py: Python<'py>) -> Bound<'py, PyTuple> {
        PyTuple::empty(py)
    }
    fn __repr__(&self) -> String {
        match &self.inner {
            Some(p) => format!("ClusterPlan(k={}, dim={}, sizes={:?})", p.k(), p.dim(), p.sizes()),
            None => "ClusterPlan(empty)".into(),
        }
    }
}

/// Pass 2: per cluster centred log Z(±u_k) and unit sum, or the rows (Gram
/// route). `ClusterSecondPass()` (no plan) is the identity of merge.
#[pyclass(module = "isofast._core", name = "ClusterSecondPass")]
#[derive(Clone)]
pub struct ClusterSecondPass {
    inner: CoreSecond,
}

#[pymethods]
impl ClusterSecondPass {
    #[new]
    #[pyo3(signature = (plan=None))]
    fn new(plan: Option<&ClusterPlan>) -> Result<Self> {
        let inner = match plan {
            Some(p) => CoreSecond::new(p.get()?),
            None => CoreSecond::empty(),
        };
        Ok(ClusterSecondPass { inner })
    }

    /// Fold every row of `x`; returns its labels (nearest centre of the plan).
    #[pyo3(signature = (plan, x, elem=None, n_threads=None))]
    fn update<'py>(
        slf: &Bound<'py, Self>,
        plan: &ClusterPlan,
        x: &Bound<'py, PyAny>,
        elem: Option<&str>,
        #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
    ) -> Result<Bound<'py, PyArray1<i64>>> {
        let py = slf.py();
        let v = view(x, elem)?;
        let p = plan.get()?;
        let mut me = slf.try_borrow_mut().map_err(|_| busy("ClusterSecondPass"))?;
        let inner = &mut me.inner;
        let before = inner.count();
        let lab = run(py, || threads::install(n_threads, || inner.update(p, &v)))
            .map_err(|e| partial_update(py, e, "ClusterSecondPass", me.inner.count() - before))?;
        Ok(PyArray1::from_vec(py, lab.into_iter().map(i64::from).collect()))
    }

    /// Merge `other` into this state; `s.merge(s)` doubles it, as for
    /// ClusterFirstPass.
    fn merge(slf: &Bound<'_, Self>, other: &Bound<'_, Self>) -> Result<()> {
        merge_into(slf, other, "ClusterSecondPass", |mine, theirs| Ok(mine.inner.merge(&theirs.inner)?))
    }

    fn copy(&self) -> ClusterSecondPass {
        self.clone()
    }

    #[getter]
    fn n(&self) -> u64 {
        self.inner.count()
    }

    /// Per-cluster statistics, as cluster_statistics() gives them.
    #[pyo3(signature = (plan, n_threads=None))]
    fn finish<'py>(
        &self,
        py: Python<'py>,
        plan: &ClusterPlan,
        #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
    ) -> Result<Vec<Py<ClusterStatistics>>> {
        let p = plan.get()?;
        let state = self.inner.clone();
        let stats = run(py, || threads::install(n_threads, || state.finish(p)))?;
        Ok(ClusterStatistics::list(py, &stats)?)
    }

    fn __getstate__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }
    fn __setstate__(&mut self, state: &Bound<'_, PyBytes>) -> Result<()> {
        self.inner = CoreSecond::from_bytes(state.as_bytes())?;
        Ok(())
    }
    fn __getnewargs__<'py>(&self, py: Python<'py>) -> Bound<'py, PyTuple> {
        PyTuple::empty(py)
    }
    fn __repr__(&self) -> String {
        format!("ClusterSecondPass(n={})", self.inner.count())
    }
}
