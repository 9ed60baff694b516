//! Binding of the fused LM-head log-partition kernel (isofast_core::head).

use crate::array::{run, view};
use crate::errors::{InputError, Result};
use crate::results::HeadResult;
use isofast_core::head::{log_partition_head as core_head, log_partition_head_rows, HeadOptions};
use numpy::{Element, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

/// log Z(c_n) = logsumexp_w(⟨v_w, c_n⟩ + b_w) for every row of `c`; `w` is the
/// V×d output matrix. Returns a [`HeadResult`]: ``log_z`` (N,), and when
/// requested ``topk_indices``/``topk_logits``/``topk_probs`` (N×k) and
/// ``subset_log_mass`` (N,).
#[pyfunction]
#[pyo3(signature = (w, c, bias=None, topk=0, subset=None, w_elem=None, c_elem=None, n_threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn log_partition_head<'py>(
    py: Python<'py>,
    w: &Bound<'py, PyAny>,
    c: &Bound<'py, PyAny>,
    bias: Option<PyReadonlyArray1<'py, f64>>,
    topk: usize,
    subset: Option<PyReadonlyArray1<'py, i64>>,
    w_elem: Option<&str>,
    c_elem: Option<&str>,
    #[pyo3(from_py_with = crate::array::n_threads_arg)] n_threads: Option<usize>,
) -> Result<HeadResult> {
    let wv = view(w, w_elem)?;
    let cv = view(c, c_elem)?;
    // A C-contiguous, aligned float32/float64 W is read in place by the kernel
    // (no converted copy of the head) when that is the working precision.
    let w32 = if w_elem.is_none() { contiguous::<f32>(w) } else { None };
    let w64 = if w_elem.is_none() { contiguous::<f64>(w) } else { None };
    let s32 = w32.as_ref().and_then(|a| a.as_slice().ok());
    let s64 = w64.as_ref().and_then(|a| a.as_slice().ok());
    let (nv, nd) = (wv.nrows(), wv.ncols());
    let b: Option<Vec<f64>> = bias.map(|b| b.as_array().to_vec());
    let s: Option<Vec<usize>> = match subset {
        None => None,
        Some(s) => {
            let a = s.as_array();
            if let Some(&neg) = a.iter().find(|&&t| t < 0) {
                return Err(InputError::new_err(format!("subset token id {neg} is negative")).into());
            }
            Some(a.iter().map(|&t| t as usize).collect())
        }
    };
    let opts = HeadOptions { bias: b.as_deref(), topk, subset: s.as_deref() };
    let r = match (s32, s64) {
        (Some(ws), _) => run(py, || log_partition_head_rows(ws, nv, nd, &cv, &opts, n_threads))?,
        (_, Some(ws)) => run(py, || log_partition_head_rows(ws, nv, nd, &cv, &opts, n_threads))?,
        _ => run(py, || core_head(&wv, &cv, &opts, n_threads))?,
    };
    Ok(HeadResult::new(py, r))
}

/// A read-only borrow of `a` when it is a C-contiguous, aligned 2-D array of T.
fn contiguous<'py, T: Element>(a: &Bound<'py, PyAny>) -> Option<PyReadonlyArray2<'py, T>> {
    let arr = a.cast::<PyArray2<T>>().ok()?;
    if !arr.is_c_contiguous() {
        return None;
    }
    // SAFETY: reading the data pointer of a live array; nothing is dereferenced.
    let ptr = unsafe { (*arr.as_array_ptr()).fields.data } as usize;
    if !ptr.is_multiple_of(std::mem::align_of::<T>()) {
        return None;
    }
    arr.try_readonly().ok()
}
