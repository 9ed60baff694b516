//! numpy → [`MatView`] without copying, and kernel calls with the GIL released.

use isofast_core::{Elem, Error, MatView};
use numpy::{PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyArithmeticError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// An instance of `isofast.errors.<cls>` built from `args`, or — when that
/// module cannot be imported (a bare `_core` outside the package) — the
/// built-in `fallback` class with the message.
fn project_err<'py, A>(py: Python<'py>, cls: &str, args: A, msg: &str, fallback: fn(String) -> PyErr) -> PyErr
where
    A: pyo3::call::PyCallArgs<'py>,
{
    let made = py.import("isofast.errors").and_then(|m| m.getattr(cls)).and_then(|c| c.call1(args));
    match made {
        Ok(inst) => PyErr::from_value(inst),
        Err(_) => fallback(msg.to_string()),
    }
}

/// `isofast.errors.<cls>(msg)`: the project's exception classes (subclasses
/// of ValueError/TypeError/ArithmeticError) raised from the bindings.
pub fn err(cls: &str, msg: impl Into<String>) -> PyErr {
    let msg = msg.into();
    let fallback: fn(String) -> PyErr = match cls {
        "ArgumentTypeError" => PyTypeError::new_err,
        "NumericalError" => PyArithmeticError::new_err,
        _ => PyValueError::new_err,
    };
    Python::attach(|py| project_err(py, cls, (msg.clone(),), &msg, fallback))
}

/// Map a kernel error to the Python exception of the design contract
/// (isofast.errors): NonFiniteError carries `.row` and `.col`.
pub fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::NonFinite { row, col } | Error::NonFiniteIn { row, col, .. } => {
            Python::attach(|py| project_err(py, "NonFiniteError", (msg.clone(), row, col), &msg, PyValueError::new_err))
        }
        Error::Empty(_) => err("EmptyInputError", msg),
        Error::DimMismatch { .. } => err("DimensionError", msg),
        Error::InvalidArgument(_) => err("InputError", msg),
        Error::Numerical(_) => err("NumericalError", msg),
        Error::Resource(_) => err("ResourceError", msg),
    }
}

/// `n_threads` as given from Python: None or 0 (all cores) or a positive
/// int. Refuses bools, negative numbers and non-integers with a message that
/// names the argument (instead of pyo3's "can't convert negative int to
/// unsigned"). The pool size itself is bounded in `isofast_core::threads`.
pub fn n_threads_arg(ob: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    if ob.is_none() {
        return Ok(None);
    }
    if ob.is_instance_of::<pyo3::types::PyBool>() {
        return Err(err("ArgumentTypeError", "n_threads must be an integer ≥ 0 or None, got a bool"));
    }
    let v: i64 = ob.extract().map_err(|_| {
        let t = ob.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        err("ArgumentTypeError", format!("n_threads must be an integer ≥ 0 or None, got {t}"))
    })?;
    if v < 0 {
        return Err(err("InputError", format!("n_threads must be ≥ 0 (0 or None = all cores), got {v}")));
    }
    Ok(Some(v as usize))
}

/// Run `f` with the GIL released; a Rust panic becomes a RuntimeError instead
/// of crossing into the interpreter.
pub fn run<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, Error> + Send) -> PyResult<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(to_py(e)),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(PyRuntimeError::new_err(format!("isofast internal error (please report): {msg}")))
        }
    }
}

/// A borrowed 2-D numpy array as a strided view. `elem` overrides the element
/// type (used for bfloat16 passed as uint16 bit patterns).
///
/// The returned view borrows `arr`'s buffer; the caller keeps `arr` alive for
/// as long as the view is used (it holds the Bound for the whole call).
pub fn view<'a>(arr: &'a Bound<'_, PyAny>, elem: Option<&str>) -> PyResult<MatView<'a>> {
    let arr = arr.cast::<PyUntypedArray>().map_err(|_| err("ArgumentTypeError", "expected a numpy.ndarray"))?;
    if arr.ndim() != 2 {
        return Err(err(
            "DimensionError",
            format!("expected a 2-D array of row vectors (N×d), got {} dimension(s)", arr.ndim()),
        ));
    }
    let dtype = arr.dtype();
    let name: String = dtype.getattr("name")?.extract()?;
    let native: bool = dtype.getattr("isnative")?.extract()?;
    let base = Elem::from_name(&name)
        .ok_or_else(|| err("ArgumentTypeError", format!("unsupported dtype {name}: use a float or integer array")))?;
    let elem = match elem {
        None => base,
        Some("bfloat16") if base.size() == 2 => Elem::BF16,
        Some(other) => {
            let e = Elem::from_name(other)
                .ok_or_else(|| err("ArgumentTypeError", format!("unsupported element type {other}")))?;
            if e.size() != base.size() {
                return Err(err(
                    "ArgumentTypeError",
                    format!("element type {other} does not match the array's itemsize {}", base.size()),
                ));
            }
            e
        }
    };
    if !native && base.size() > 1 {
        return Err(err("ArgumentTypeError",
            "byte-swapped (non-native byte order) arrays are not supported: use arr.astype(arr.dtype.newbyteorder('='))",
        ));
    }
    let shape = arr.shape();
    if shape[1] == 0 {
        // Every statistic needs d ≥ 1; refusing here keeps 0-column views
        // out of every kernel (they panicked in some: chunks of size 0).
        return Err(err(
            "DimensionError",
            format!("input has {} rows and 0 columns: every statistic needs d ≥ 1", shape[0]),
        ));
    }
    let strides = arr.strides();
    // SAFETY: shape/strides/data describe the live numpy buffer; numpy keeps
    // the buffer alive while `arr` is referenced, which the caller guarantees.
    let ptr = unsafe { (*arr.as_array_ptr()).fields.data as *const u8 };
    Ok(unsafe { MatView::from_raw(ptr, shape[0], shape[1], strides[0], strides[1], elem) })
}
