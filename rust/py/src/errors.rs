//! The bindings' one error type and its mapping onto `isofast.errors`.
//!
//! Every binding returns [`Result`]: `?` turns an [`isofast_core::Error`]
//! (mapped by variant, design.md §6) or any `PyErr` into a [`PyIsofastError`],
//! which PyO3 raises as the `PyErr` it wraps (the rustworkx `RxPyErr` /
//! polars `PyPolarsErr` pattern).
//!
//! The exception classes are *imported* from `isofast.errors`
//! (`import_exception!`), not declared here with `create_exception!`: the
//! classes have two bases (`InputError(IsofastError, ValueError)`,
//! `UnknownDatasetError(KeyError, InputError)`), `NonFiniteError` carries
//! `.row`/`.col` and `CorruptFileError` its `__reduce__` — none of which
//! `create_exception!` (one base, no fields) can express — and Python code
//! raises the same classes, so they have one home, in Python.

use isofast_core::Error as CoreError;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyModule;

pyo3::import_exception!(isofast.errors, ArgumentTypeError);
pyo3::import_exception!(isofast.errors, DimensionError);
pyo3::import_exception!(isofast.errors, EmptyInputError);
pyo3::import_exception!(isofast.errors, InputError);
pyo3::import_exception!(isofast.errors, NonFiniteError);
pyo3::import_exception!(isofast.errors, NumericalError);
pyo3::import_exception!(isofast.errors, ResourceError);

/// An error on its way from a binding to Python: a `PyErr` built lazily (no
/// GIL needed), whose class is one of `isofast.errors`.
#[derive(Debug)]
pub struct PyIsofastError(PyErr);

/// What every binding returns.
pub type Result<T> = std::result::Result<T, PyIsofastError>;

impl From<CoreError> for PyIsofastError {
    /// The kernel's variants onto the design contract's classes;
    /// `NonFinite`/`NonFiniteIn` keep their row and column.
    fn from(e: CoreError) -> Self {
        let msg = e.to_string();
        PyIsofastError(match e {
            CoreError::NonFinite { row, col } | CoreError::NonFiniteIn { row, col, .. } => {
                NonFiniteError::new_err((msg, row, col))
            }
            CoreError::Empty(_) => EmptyInputError::new_err(msg),
            CoreError::DimMismatch { .. } => DimensionError::new_err(msg),
            CoreError::InvalidArgument(_) => InputError::new_err(msg),
            CoreError::Numerical(_) => NumericalError::new_err(msg),
            CoreError::Resource(_) => ResourceError::new_err(msg),
        })
    }
}

impl From<PyErr> for PyIsofastError {
    fn from(e: PyErr) -> Self {
        PyIsofastError(e)
    }
}

impl From<PyIsofastError> for PyErr {
    fn from(e: PyIsofastError) -> PyErr {
        e.0
    }
}

/// A failed `update()` of a streaming state whose tiles before the failing
/// one were already folded in (`folded` rows): the error keeps its class and
/// fields and gains a PEP 678 note saying so, since the state now holds a
/// subset of the rows it was given. With `folded == 0` the state is as it
/// was and the error passes unchanged.
pub fn partial_update(py: Python<'_>, e: PyIsofastError, what: &str, folded: u64) -> PyIsofastError {
    if folded > 0 {
        let note = format!(
            "the {what} state already holds {folded} row(s) of this update (the tiles before the failing one): \
             discard it, or update a new state per chunk and merge() the good ones"
        );
        // add_note exists from Python 3.11 (the floor); a failure to add it
        // must not hide the original error
        let _ = e.0.value(py).call_method1("add_note", (note,));
    }
    e
}

/// A Rust panic caught at the boundary (it must not cross into the
/// interpreter): a RuntimeError asking for a report.
pub fn internal(payload: &(dyn std::any::Any + Send)) -> PyIsofastError {
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    PyIsofastError(PyRuntimeError::new_err(format!("isofast internal error (please report): {msg}")))
}

/// Imports `isofast.errors` when `_core` is loaded, so that a broken install
/// fails there with an ImportError, not later with a panic in an error path
/// (`import_exception!` panics when its module cannot be imported).
pub fn preload(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.py().import("isofast.errors").map(|_| ())
}
