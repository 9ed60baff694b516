//! numpy → [`MatView`] without copying, and kernel calls with the GIL released.

use crate::errors::{internal, ArgumentTypeError, DimensionError, InputError, Result};
use isofast_core::{Elem, Error, MatView};
use numpy::{PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// `n_threads` as given from Python: None or 0 (all cores) or a positive
/// int. Refuses bools, negative numbers and non-integers with a message that
/// names the argument (instead of pyo3's "can't convert negative int to
/// unsigned"). The pool size itself is bounded in `isofast_core::threads`.
pub fn n_threads_arg(ob: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    if ob.is_none() {
        return Ok(None);
    }
    if ob.is_instance_of::<pyo3::types::PyBool>() {
        return Err(ArgumentTypeError::new_err("n_threads must be an integer ≥ 0 or None, got a bool"));
    }
    let v: i64 = ob.extract().map_err(|_| {
        let t = ob.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        ArgumentTypeError::new_err(format!("n_threads must be an integer ≥ 0 or None, got {t}"))
    })?;
    if v < 0 {
        return Err(InputError::new_err(format!("n_threads must be ≥ 0 (0 or None = all cores), got {v}")));
    }
    Ok(Some(v as usize))
}

/// Run `f` with the GIL released; a Rust panic becomes a RuntimeError instead
/// of crossing into the interpreter.
pub fn run<T: Send>(py: Python<'_>, f: impl FnOnce() -> std::result::Result<T, Error> + Send) -> Result<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(r) => Ok(r?),
        Err(p) => Err(internal(&*p)),
    }
}

/// A borrowed 2-D numpy array as a strided view. `elem` overrides the element
/// type (used for bfloat16 passed as uint16 bit patterns).
///
/// The returned view borrows `arr`'s buffer; the caller keeps `arr` alive for
/// as long as the view is used (it holds the Bound for the whole call).
pub fn view<'a>(arr: &'a Bound<'_, PyAny>, elem: Option<&str>) -> Result<MatView<'a>> {
    let arr = arr.cast::<PyUntypedArray>().map_err(|_| ArgumentTypeError::new_err("expected a numpy.ndarray"))?;
    if arr.ndim() != 2 {
        let msg = format!("expected a 2-D array of row vectors (N×d), got {} dimension(s)", arr.ndim());
        return Err(DimensionError::new_err(msg).into());
    }
    let dtype = arr.dtype();
    let name: String = dtype.getattr("name")?.extract()?;
    let native: bool = dtype.getattr("isnative")?.extract()?;
    let base = Elem::from_name(&name)
        .ok_or_else(|| ArgumentTypeError::new_err(format!("unsupported dtype {name}: use a float or integer array")))?;
    let elem = match elem {
        None => base,
        Some("bfloat16") if base.size() == 2 => Elem::BF16,
        Some(other) => {
            let e = Elem::from_name(other)
                .ok_or_else(|| ArgumentTypeError::new_err(format!("unsupported element type {other}")))?;
            if e.size() != base.size() {
                let msg = format!("element type {other} does not match the array's itemsize {}", base.size());
                return Err(ArgumentTypeError::new_err(msg).into());
            }
            e
        }
    };
    if !native && base.size() > 1 {
        return Err(ArgumentTypeError::new_err(
            "byte-swapped (non-native byte order) arrays are not supported: use arr.astype(arr.dtype.newbyteorder('='))",
        )
        .into());
    }
    let shape = arr.shape();
    if shape[1] == 0 {
        // Every statistic needs d ≥ 1; refusing here keeps 0-column views
        // out of every kernel (they panicked in some: chunks of size 0).
        let msg = format!("input has {} rows and 0 columns: every statistic needs d ≥ 1", shape[0]);
        return Err(DimensionError::new_err(msg).into());
    }
    let strides = arr.strides();
    // SAFETY: shape/strides/data describe the live numpy buffer; numpy keeps
    // the buffer alive while `arr` is referenced, which the caller guarantees.
    let ptr = unsafe { (*arr.as_array_ptr()).fields.data as *const u8 };
    Ok(unsafe { MatView::from_raw(ptr, shape[0], shape[1], strides[0], strides[1], elem) })
}
