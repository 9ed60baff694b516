//! Small f64 vector kernels (squared norms and distances, element-wise
//! accumulation) with a fixed summation order, compiled for AVX-512/AVX2 and
//! picked at run time; every path gives bitwise the same result.

use crate::simd::dispatch;

/// Σ_j a_j² (vectorised, fixed summation order).
#[inline]
pub fn sqnorm(a: &[f64]) -> f64 {
    sqdist_dispatch(a, None)
}

/// Exact squared distance Σ_j (a_j − b_j)² (no cancellation).
#[inline]
pub fn sqdist(a: &[f64], b: &[f64]) -> f64 {
    sqdist_dispatch(a, Some(b))
}

dispatch! {
    /// Σ_j (a_j − b_j)², or Σ_j a_j² without `b` (see [`crate::simd`]).
    #[inline]
    fn sqdist_dispatch(a: &[f64], b: Option<&[f64]>) -> f64 = sqdist_generic; avx2 "avx2";
}

#[inline(always)]
fn sqdist_generic(a: &[f64], b: Option<&[f64]>) -> f64 {
    // 32 independent partial sums: four 8-lane registers, so the additions
    // are not one long dependency chain; summed in a fixed tree at the end.
    const L: usize = 32;
    let mut acc = [0.0f64; L];
    let ca = a.chunks_exact(L);
    let ra = ca.remainder();
    let mut tail = 0.0;
    match b {
        Some(b) => {
            let cb = b.chunks_exact(L);
            let rb = cb.remainder();
            for (x, y) in ca.zip(cb) {
                for t in 0..L {
                    let v = x[t] - y[t];
                    acc[t] += v * v;
                }
            }
            for (x, y) in ra.iter().zip(rb) {
                let v = x - y;
                tail += v * v;
            }
        }
        None => {
            for x in ca {
                for t in 0..L {
                    acc[t] += x[t] * x[t];
                }
            }
            for x in ra {
                tail += x * x;
            }
        }
    }
    let mut w = L;
    while w > 1 {
        w /= 2;
        for t in 0..w {
            acc[t] += acc[t + w];
        }
    }
    acc[0] + tail
}

dispatch! {
    /// dst += src (or dst −= src), element-wise; vectorised when the CPU allows
    /// (element-wise, so every path gives the same bits).
    #[inline]
    pub fn add_assign(dst: &mut [f64], src: &[f64], subtract: bool) = add_generic; avx2 "avx2";
}

#[inline(always)]
fn add_generic(dst: &mut [f64], src: &[f64], subtract: bool) {
    if subtract {
        dst.iter_mut().zip(src).for_each(|(a, v)| *a -= v);
    } else {
        dst.iter_mut().zip(src).for_each(|(a, v)| *a += v);
    }
}

dispatch! {
    /// dst += (x − m)·w, element-wise (vectorised when the CPU allows).
    #[inline]
    pub fn axpy_centered(dst: &mut [f64], x: &[f64], m: &[f64], w: f64) = axpy_generic; avx2 "avx2";
}

#[inline(always)]
fn axpy_generic(dst: &mut [f64], x: &[f64], m: &[f64], w: f64) {
    for ((a, v), c) in dst.iter_mut().zip(x).zip(m) {
        *a += (v - c) * w;
    }
}
