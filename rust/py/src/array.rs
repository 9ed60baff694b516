//! numpy → [`MatView`] without copying, and kernel calls with the GIL released.

use isofast_core::{Elem, Error, MatView};
use numpy::{PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyArithmeticError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Map a kernel error to the Python exception of the design contract.
pub fn to_py(e: Error) -> PyErr {
    match e {
        Error::Numerical(_) => PyArithmeticError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
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
    let arr = arr
        .cast::<PyUntypedArray>()
        .map_err(|_| PyTypeError::new_err("expected a numpy.ndarray"))?;
    if arr.ndim() != 2 {
        return Err(PyValueError::new_err(format!(
            "expected a 2-D array of row vectors (N×d), got {} dimension(s)",
            arr.ndim()
        )));
    }
    let dtype = arr.dtype();
    let name: String = dtype.getattr("name")?.extract()?;
    let native: bool = dtype.getattr("isnative")?.extract()?;
    let base = Elem::from_name(&name)
        .ok_or_else(|| PyTypeError::new_err(format!("unsupported dtype {name}: use a float or integer array")))?;
    let elem = match elem {
        None => base,
        Some("bfloat16") if base.size() == 2 => Elem::BF16,
        Some(other) => {
            let e = Elem::from_name(other)
                .ok_or_else(|| PyTypeError::new_err(format!("unsupported element type {other}")))?;
            if e.size() != base.size() {
                return Err(PyTypeError::new_err(format!(
                    "element type {other} does not match the array's itemsize {}",
                    base.size()
                )));
            }
            e
        }
    };
    if !native && base.size() > 1 {
        return Err(PyTypeError::new_err(
            "byte-swapped (non-native byte order) arrays are not supported: use arr.astype(arr.dtype.newbyteorder('='))",
        ));
    }
    let shape = arr.shape();
    let strides = arr.strides();
    // SAFETY: shape/strides/data describe the live numpy buffer; numpy keeps
    // the buffer alive while `arr` is referenced, which the caller guarantees.
    let ptr = unsafe { (*arr.as_array_ptr()).fields.data as *const u8 };
    Ok(unsafe { MatView::from_raw(ptr, shape[0], shape[1], strides[0], strides[1], elem) })
}
