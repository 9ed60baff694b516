//! Bindings of the global statistics: Moments, the second pass, eigen,
//! scores, self-similarity, all-but-the-top and log-partition.

use crate::array::{run, view};
use crate::errors::{partial_update, ArgumentTypeError, InputError, NumericalError, PyIsofastError, Result};
use crate::results::{SecondPassResults, SelfSimilarityResult, SpectralScores};
use crate::state::{busy, merge_into};
use isofast_core::analyze::{cov_eigen, cov_eigenvalues, directions, second_pass_for};
use isofast_core::checksum::crc32;
use isofast_core::faer;
use isofast_core::moments::Precision;
use isofast_core::partition::SecondPass as CoreSecondPass;
use isofast_core::{abtt, cosine, norms, partition, spectrum, threads, Moments as CoreMoments};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// (eigenvalues descending, eigenvectors as columns) handed to Python.
type Eigen<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray2<f64>>);
/// SecondPass.__getnewargs__: (mean, raw directions, centred directions, f64_gemm).
type Placeholder<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray2<f64>>, Bound<'py, PyArray2<f64>>, bool);
/// (cov eigenvalues, cov eigenvectors, XᵀX eigenvalues, XᵀX eigenvectors).
type Directions<'py> =
    (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<f64>>, Bound<'py, PyArray2<f64>>);

fn mat_to_py<'py>(py: Python<'py>, m: faer::MatRef<'_, f64>) -> Bound<'py, PyArray2<f64>> {
    let (r, c) = (m.nrows(), m.ncols());
    Array2::from_shape_fn((r, c), |(i, j)| m[(i, j)]).into_pyarray(py)
}

fn mat_from_py(a: &PyReadonlyArray2<'_, f64>) -> faer::Mat<f64> {
    let v = a.as_array();
    faer::Mat::from_fn(v.nrows(), v.ncols(), |i, j| v[[i, j]])
}

fn vec_to_py<'py>(py: Python<'py>, v: Vec<f64>) -> Bound<'py, PyArray1<f64>> {
    PyArray1::from_vec(py, v)
}

/// Refuse a state whose mean or co-moment overflowed float64: its spectrum
/// would be Inf/NaN and read as "all rows identical" further on.
fn check_finite_state(m: &CoreMoments) -> Result<()> {
    if m.mean().iter().any(|v| !v.is_finite()) {
        return Err(NumericalError::new_err("the column means overflow float64: rescale the input (statistics are scale-invariant except total_variance)").into());
    }
    let c = m.comoment_lower();
    let bad = (0..c.ncols()).any(|j| (j..c.nrows()).any(|i| !c[(i, j)].is_finite()));
    // Co-moments below 2^-900 are sums of squares that may have underflowed
    // (differences ≲ 1e-135): their eigenvalues would be rounding noise
    // (e.g. pc1_share 0.5 for a rank-one spread).
    let top = (0..c.ncols()).map(|j| c[(j, j)]).fold(0.0f64, f64::max);
    if !bad && top > 0.0 && top < f64::from_bits((1023 - 900) << 52) {
        return Err(NumericalError::new_err(format!(
            "the variance underflows float64 (largest co-moment {top:.3e}; differences between rows ≲ 1e-135): \
                 rescale the input, e.g. X / abs(X).max() (every statistic but total_variance is scale-invariant)"
        ))
        .into());
    }
    if bad {
        return Err(NumericalError::new_err(
            "the variance overflows float64 (entries of magnitude ≳ 1e154): rescale the input, e.g. X / abs(X).max() \
             (every statistic but total_variance is scale-invariant)",
        )
        .into());
    }
    Ok(())
}

/// Pickled states (Moments, SecondPass) are `STATE_MAGIC ‖ crc32 (4 bytes
/// LE) ‖ the core's bytes`: a flipped byte anywhere is detected before the
/// state is parsed.
const STATE_MAGIC: &[u8; 8] = b"ISOFCRC1";

fn corrupt(why: String) -> PyIsofastError {
    InputError::new_err(format!("corrupt Moments state: {why}")).into()
}

/// The core's bytes in the checksummed envelope.
fn seal<'py>(py: Python<'py>, body: &[u8]) -> Bound<'py, PyBytes> {
    let mut out = Vec::with_capacity(body.len() + 12);
    out.extend_from_slice(STATE_MAGIC);
    out.extend_from_slice(&crc32(body).to_le_bytes());
    out.extend_from_slice(body);
    PyBytes::new(py, &out)
}

/// The core's bytes out of the envelope, if `b` has one; Err when its
/// checksum does not match, with "corrupt {what} state" in the message.
fn unseal<'b>(b: &'b [u8], what: &str) -> Result<Option<&'b [u8]>> {
    if b.len() < 12 || &b[..8] != STATE_MAGIC {
        return Ok(None);
    }
    let want = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
    let got = crc32(&b[12..]);
    if got != want {
        return Err(InputError::new_err(format!(
            "corrupt {what} state: checksum {got:08x} ≠ {want:08x} (bytes changed after pickling)"
        ))
        .into());
    }
    Ok(Some(&b[12..]))
}

/// What a state read from bytes must satisfy whatever its checksum says:
/// the row counts add up, the mean and co-moment are finite, variances are
/// ≥ 0 and ‖Σ x̂‖ ≤ the number of unit vectors.
fn check_state_content(m: &CoreMoments) -> Result<()> {
    let (n, nz, z) = (m.count(), m.unit.n_nonzero, m.unit.n_zero);
    if nz.checked_add(z) != Some(n) {
        return Err(corrupt(format!("{n} rows but {nz} non-zero + {z} zero-norm rows")));
    }
    if let Some(j) = m.mean().iter().position(|v| !v.is_finite()) {
        return Err(corrupt(format!("mean holds {} at column {j}", m.mean()[j])));
    }
    if n == 0 && m.mean().iter().any(|v| *v != 0.0) {
        return Err(corrupt("an empty state with a non-zero mean".into()));
    }
    let c = m.comoment_lower();
    for j in 0..c.ncols() {
        let v = c[(j, j)];
        if !v.is_finite() || v < 0.0 {
            return Err(corrupt(format!("co-moment diagonal {j} is {}", c[(j, j)])));
        }
        if let Some(i) = (j..c.nrows()).find(|&i| !c[(i, j)].is_finite()) {
            return Err(corrupt(format!("co-moment ({i}, {j}) is {}", c[(i, j)])));
        }
    }
    let s2: f64 = m.unit.sum.iter().map(|v| v * v).sum();
    if !s2.is_finite() || s2.sqrt() > nz as f64 * (1.0 + 1e-9) + 1e-9 {
        return Err(corrupt(format!("‖Σ x̂‖ = {} exceeds the {nz} unit vectors summed", s2.sqrt())));
    }
    Ok(())
}

/// Mergeable one-pass state: count, mean, co-moment, raw unit-vector sum.
#[pyclass(module = "isofast._core", name = "Moments")]
#[derive(Clone)]
pub struct Moments {
    pub inner: CoreMoments,
}

#[pymethods]
impl Moments {
    #[new]
    #[pyo3(signature = (dim, precision="exact"))]
    fn new(dim: usize, precision: &str) -> Result<Self> {
        if dim == 0 {
            return Err(InputError::new_err("dim must be at least 1").into());
        }
        let p = parse_precision(precision)?;
        Ok(Moments { inner: CoreMoments::with_precision(dim, p) })
    }

    /// "exact" (float64 Gram products) or "fast" (float32, merged in float64).
    #[getter]
    fn precision(&self) -> &'static str {
        self.inner.precision().name()
    }

    /// True once second_pass(release=True) has freed the co-moment.
    #[getter]
    fn released(&self) -> bool {
        self.inner.is_released()
    }

    #[pyo3(signature = (x, elem=None, n_threads=None))]
    fn update(
        slf: &Bound<'_, Self>,
        x: &Bound<'_, PyAny>,
        elem: Option<&str>,
        #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
    ) -> Result<()> {
        let py = slf.py();
        let v = view(x, elem)?;
        let mut me = slf.try_borrow_mut().map_err(|_| busy("Moments"))?;
        let inner = &mut me.inner;
        let before = inner.count();
        run(py, || threads::install(n_threads, || inner.update(&v)))
            .map_err(|e| partial_update(py, e, "Moments", me.inner.count() - before))
    }

    /// Merge `other` into this state; `m.merge(m)` doubles the state (the
    /// same rows counted twice), as merging an equal copy would.
    fn merge(slf: &Bound<'_, Self>, other: &Bound<'_, Self>) -> Result<()> {
        merge_into(slf, other, "Moments", |mine, theirs| Ok(mine.inner.merge(&theirs.inner)?))
    }

    fn copy(&self) -> Moments {
        self.clone()
    }

    #[getter]
    fn n(&self) -> u64 {
        self.inner.count()
    }
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    #[getter]
    fn mean<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        vec_to_py(py, self.inner.mean().to_vec())
    }
    fn comoment<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyArray2<f64>>> {
        if self.inner.is_released() {
            return Err(InputError::new_err(
                "comoment: this Moments state's co-moment was released by second_pass(release=True)",
            )
            .into());
        }
        Ok(mat_to_py(py, self.inner.comoment().as_ref()))
    }
    fn covariance<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyArray2<f64>>> {
        let c = self.inner.covariance()?;
        Ok(mat_to_py(py, c.as_ref()))
    }
    #[getter]
    fn unit_sum<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        vec_to_py(py, self.inner.unit.sum.clone())
    }
    #[getter]
    fn n_zero_norm(&self) -> u64 {
        self.inner.unit.n_zero
    }
    #[getter]
    fn avg_cosine(&self) -> f64 {
        self.inner.unit.average()
    }

    /// Covariance eigenvalues, descending (no eigenvectors).
    #[pyo3(signature = (n_threads=None))]
    fn eigenvalues<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
    ) -> Result<Bound<'py, PyArray1<f64>>> {
        check_finite_state(&self.inner)?;
        let inner = &self.inner;
        let ev = run(py, || threads::install(n_threads, || cov_eigenvalues(inner)))?;
        Ok(vec_to_py(py, ev))
    }

    /// (covariance eigenvalues desc, the SecondPass over both direction sets)
    /// built in Rust: the d×d eigenvector matrices never travel through numpy.
    /// `release=True` frees the co-moment first (the state keeps n, mean and
    /// the cosine sums; covariance/update/merge/pickle then raise).
    /// `memory_budget` (bytes; default 3·d²·8 + 256 MiB) picks the
    /// eigensolver's route.
    #[pyo3(signature = (f64_gemm, raw=true, centered=true, n_threads=None, release=false, memory_budget=None))]
    #[allow(clippy::too_many_arguments)]
    fn second_pass<'py>(
        &mut self,
        py: Python<'py>,
        f64_gemm: bool,
        raw: bool,
        centered: bool,
        #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
        release: bool,
        memory_budget: Option<usize>,
    ) -> Result<(Bound<'py, PyArray1<f64>>, SecondPass)> {
        check_finite_state(&self.inner)?;
        let inner = &mut self.inner;
        let (ev, sp) = run(py, || {
            threads::install(n_threads, || second_pass_for(inner, f64_gemm, raw, centered, release, memory_budget))
        })?;
        Ok((vec_to_py(py, ev), SecondPass { inner: sp }))
    }

    /// (covariance eigenvalues desc, their eigenvectors as columns): one
    /// decomposition, for callers that need no raw directions.
    #[pyo3(signature = (n_threads=None))]
    fn cov_directions<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
    ) -> Result<Eigen<'py>> {
        check_finite_state(&self.inner)?;
        let inner = &self.inner;
        let e = run(py, || threads::install(n_threads, || cov_eigen(inner)))?;
        Ok((vec_to_py(py, e.values), mat_to_py(py, e.vectors.as_ref())))
    }

    /// (cov eigenvalues desc, cov eigenvectors, XᵀX eigenvalues, XᵀX eigenvectors)
    #[pyo3(signature = (n_threads=None))]
    fn directions<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
    ) -> Result<Directions<'py>> {
        check_finite_state(&self.inner)?;
        let inner = &self.inner;
        let (ec, er) = run(py, || threads::install(n_threads, || directions(inner)))?;
        Ok((
            vec_to_py(py, ec.values),
            mat_to_py(py, ec.vectors.as_ref()),
            vec_to_py(py, er.values),
            mat_to_py(py, er.vectors.as_ref()),
        ))
    }

    fn __getstate__<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyBytes>> {
        if self.inner.is_released() {
            return Err(InputError::new_err(
                "this Moments state's co-moment was released by second_pass(release=True): it cannot be pickled",
            )
            .into());
        }
        Ok(seal(py, &self.inner.to_bytes()))
    }
    /// The precision set at construction (`__getnewargs__`) is kept.
    fn __setstate__(&mut self, state: &Bound<'_, PyBytes>) -> Result<()> {
        let p = self.inner.precision();
        let b = state.as_bytes();
        // States pickled before checksums (no envelope) are still read, and
        // checked for content below.
        let body = unseal(b, "Moments")?.unwrap_or(b);
        let mut inner = CoreMoments::from_bytes(body)?;
        check_state_content(&inner)?;
        inner.set_precision(p);
        self.inner = inner;
        Ok(())
    }
    fn __getnewargs__(&self) -> (usize, &'static str) {
        (self.inner.dim(), self.inner.precision().name())
    }
    fn __repr__(&self) -> String {
        format!(
            "Moments(dim={}, n={}, precision={:?})",
            self.inner.dim(),
            self.inner.count(),
            self.inner.precision().name()
        )
    }
}

fn parse_precision(name: &str) -> Result<Precision> {
    Precision::from_name(name)
        .ok_or_else(|| InputError::new_err(format!("precision must be 'exact' or 'fast', got {name:?}")).into())
}

/// Second pass: partition functions (raw and centred) and centred cosine.
/// Picklable like Moments (checksummed core bytes, `__getnewargs__` a
/// placeholder of the right dimension that `__setstate__` replaces).
#[pyclass(module = "isofast._core", name = "SecondPass")]
#[derive(Clone)]
pub struct SecondPass {
    inner: CoreSecondPass,
}

#[pymethods]
impl SecondPass {
    #[new]
    fn new(
        mean: PyReadonlyArray1<'_, f64>,
        dirs_raw: PyReadonlyArray2<'_, f64>,
        dirs_centered: PyReadonlyArray2<'_, f64>,
        f64_gemm: bool,
    ) -> Result<Self> {
        let mean = mean.as_array().to_vec();
        let inner = CoreSecondPass::new(mean, mat_from_py(&dirs_raw), mat_from_py(&dirs_centered), f64_gemm)?;
        Ok(SecondPass { inner })
    }

    #[pyo3(signature = (x, elem=None, n_threads=None))]
    fn update(
        &mut self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        elem: Option<&str>,
        #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
    ) -> Result<()> {
        let v = view(x, elem)?;
        let inner = &mut self.inner;
        let before = inner.count();
        run(py, || threads::install(n_threads, || inner.update(&v)))
            .map_err(|e| partial_update(py, e, "SecondPass", self.inner.count() - before))
    }

    /// Merge `other` into this state; `s.merge(s)` doubles it, as for Moments.
    fn merge(slf: &Bound<'_, Self>, other: &Bound<'_, Self>) -> Result<()> {
        merge_into(slf, other, "SecondPass", |mine, theirs| Ok(mine.inner.merge(&theirs.inner)?))
    }

    fn copy(&self) -> SecondPass {
        self.clone()
    }

    /// Drop the directions once the last rows are in: the state still
    /// merges, reports and pickles, in O(d + m) bytes, but cannot update.
    fn release(&mut self) {
        self.inner.release();
    }

    #[getter]
    fn released(&self) -> bool {
        self.inner.is_released()
    }

    #[getter]
    fn n(&self) -> u64 {
        self.inner.count()
    }

    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn __getstate__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        seal(py, &self.inner.to_bytes())
    }
    fn __setstate__(&mut self, state: &Bound<'_, PyBytes>) -> Result<()> {
        let b = state.as_bytes();
        let body = unseal(b, "SecondPass")?.ok_or_else(|| -> PyIsofastError {
            InputError::new_err("corrupt SecondPass state: no checksummed header").into()
        })?;
        self.inner = CoreSecondPass::from_bytes(body)?;
        Ok(())
    }
    fn __getnewargs__<'py>(&self, py: Python<'py>) -> Placeholder<'py> {
        let d = self.inner.dim();
        (
            vec_to_py(py, vec![0.0; d]),
            Array2::<f64>::zeros((d, 0)).into_pyarray(py),
            Array2::<f64>::zeros((d, 0)).into_pyarray(py),
            self.inner.f64_gemm(),
        )
    }
    fn __repr__(&self) -> String {
        format!(
            "SecondPass(dim={}, n={}, f64_gemm={}, released={})",
            self.inner.dim(),
            self.inner.count(),
            self.inner.f64_gemm(),
            self.inner.is_released()
        )
    }

    fn results(&self, py: Python<'_>) -> SecondPassResults {
        SecondPassResults::new(py, &self.inner)
    }
}

/// Eigendecomposition of a symmetric matrix (lower triangle read), descending.
#[pyfunction]
#[pyo3(signature = (a, n_threads=None))]
pub fn sym_eigen<'py>(
    py: Python<'py>,
    a: PyReadonlyArray2<'py, f64>,
    #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
) -> Result<Eigen<'py>> {
    let m = mat_from_py(&a);
    let e = run(py, || threads::install(n_threads, || spectrum::sym_eigen(m.as_ref())))?;
    Ok((vec_to_py(py, e.values), mat_to_py(py, e.vectors.as_ref())))
}

/// Spectral scores from descending non-negative eigenvalues.
#[pyfunction]
#[pyo3(signature = (values, eps=0.8))]
pub fn spectral_scores(py: Python<'_>, values: PyReadonlyArray1<'_, f64>, eps: f64) -> Result<SpectralScores> {
    let v = values.as_array().to_vec();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(NumericalError::new_err(format!(
            "eigenvalue {i} is {}: the variance overflows float64; rescale the input",
            v[i]
        ))
        .into());
    }
    if !eps.is_finite() {
        return Err(InputError::new_err(format!("eps must lie in (0, 1], got {eps}")).into());
    }
    // Every score but total_variance is scale-invariant: compute them on
    // λ / λ_max so that λ² (participation ratio) neither overflows nor
    // underflows, and scale total_variance back.
    let top = v.iter().cloned().fold(0.0f64, f64::max);
    let scaled: Vec<f64> = if top > 0.0 { v.iter().map(|x| x / top).collect() } else { v.clone() };
    let mut s = spectrum::spectral_scores(&scaled, eps)?;
    if top > 0.0 {
        s.total_variance *= top;
    }
    Ok(SpectralScores::new(py, s))
}

/// Per-group average cosine.
#[pyfunction]
#[pyo3(signature = (x, groups, elem=None, center=None, n_threads=None))]
pub fn self_similarity<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    groups: PyReadonlyArray1<'py, i64>,
    elem: Option<&str>,
    center: Option<PyReadonlyArray1<'py, f64>>,
    #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
) -> Result<SelfSimilarityResult> {
    let v = view(x, elem)?;
    let g = groups.as_array().to_vec();
    let c = center.map(|c| c.as_array().to_vec());
    let r = run(py, || threads::install(n_threads, || cosine::self_similarity(&v, &g, c.as_deref())))?;
    Ok(SelfSimilarityResult::new(py, r))
}

/// All-but-the-top into a preallocated C-contiguous float32/float64 output.
#[pyfunction]
#[pyo3(signature = (x, mean, top, out, elem=None, n_threads=None))]
pub fn all_but_the_top<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    mean: PyReadonlyArray1<'py, f64>,
    top: PyReadonlyArray2<'py, f64>,
    out: &Bound<'py, PyAny>,
    elem: Option<&str>,
    #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
) -> Result<()> {
    let v = view(x, elem)?;
    let mean = mean.as_array().to_vec();
    let top = mat_from_py(&top);
    if let Ok(o) = out.cast::<PyArray2<f64>>() {
        let mut rw = o.try_readwrite().map_err(|e| InputError::new_err(e.to_string()))?;
        let s = rw.as_slice_mut().map_err(|_| InputError::new_err("out must be C-contiguous"))?;
        run(py, || threads::install(n_threads, || abtt::all_but_the_top(&v, &mean, top.as_ref(), s)))
    } else if let Ok(o) = out.cast::<PyArray2<f32>>() {
        let mut rw = o.try_readwrite().map_err(|e| InputError::new_err(e.to_string()))?;
        let s = rw.as_slice_mut().map_err(|_| InputError::new_err("out must be C-contiguous"))?;
        run(py, || threads::install(n_threads, || abtt::all_but_the_top(&v, &mean, top.as_ref(), s)))
    } else {
        Err(ArgumentTypeError::new_err("out must be a float32 or float64 2-D array").into())
    }
}

/// log Σ_i exp(⟨x_i, c⟩) for each column c of `contexts` (d × m).
#[pyfunction]
#[pyo3(signature = (x, contexts, elem=None, n_threads=None))]
pub fn log_partition<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    contexts: PyReadonlyArray2<'py, f64>,
    elem: Option<&str>,
    #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
) -> Result<Bound<'py, PyArray1<f64>>> {
    let v = view(x, elem)?;
    let c = mat_from_py(&contexts);
    let r = run(py, || partition::log_partition(&v, c.as_ref(), n_threads))?;
    Ok(vec_to_py(py, r))
}

#[pyfunction]
pub fn available_threads() -> usize {
    threads::available()
}

/// Rows per tile of precision="fast" at width d (the b of its error bound).
#[pyfunction]
pub fn fast_tile_rows(d: usize) -> usize {
    isofast_core::moments::fast_tile_rows(d)
}

/// (Σ x̂, n_nonzero, n_zero) over rows of x (minus `center` when given).
#[pyfunction]
#[pyo3(signature = (x, elem=None, center=None, n_threads=None))]
pub fn unit_sum<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    elem: Option<&str>,
    center: Option<PyReadonlyArray1<'py, f64>>,
    #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
) -> Result<(Bound<'py, PyArray1<f64>>, u64, u64)> {
    let v = view(x, elem)?;
    let c = center.map(|c| c.as_array().to_vec());
    let u = run(py, || threads::install(n_threads, || cosine::unit_sum_of(&v, c.as_deref())))?;
    Ok((vec_to_py(py, u.sum), u.n_nonzero, u.n_zero))
}

/// Column means in float64.
#[pyfunction]
#[pyo3(signature = (x, elem=None, n_threads=None))]
pub fn column_mean<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    elem: Option<&str>,
    #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
) -> Result<Bound<'py, PyArray1<f64>>> {
    let v = view(x, elem)?;
    let m = run(py, || threads::install(n_threads, || cosine::column_mean(&v)))?;
    Ok(vec_to_py(py, m))
}

/// Euclidean norm of every row (of x_i − center when given), overflow- and
/// underflow-safe; `row_offset` numbers rows in NaN/Inf errors.
#[pyfunction]
#[pyo3(signature = (x, elem=None, center=None, row_offset=0, n_threads=None))]
pub fn row_norms<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    elem: Option<&str>,
    center: Option<PyReadonlyArray1<'py, f64>>,
    row_offset: u64,
    #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
) -> Result<Bound<'py, PyArray1<f64>>> {
    let v = view(x, elem)?;
    let c = center.map(|c| c.as_array().to_vec());
    let r = run(py, || threads::install(n_threads, || norms::row_norms(&v, c.as_deref(), row_offset)))?;
    Ok(vec_to_py(py, r))
}
