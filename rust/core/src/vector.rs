//! Small f64 vector kernels (squared norms and distances, element-wise
//! accumulation) with a fixed summation order, compiled for AVX-512/AVX2 and
//! picked at run time; every path gives bitwise the same result.

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

/// Runs the same fixed-order arithmetic compiled for AVX-512/AVX2 when the CPU
/// has them (Rust never contracts a·b + c into an FMA on its own, so every
/// path gives bitwise the same result).
#[inline]
fn sqdist_dispatch(a: &[f64], b: Option<&[f64]>) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was detected at run time.
            return unsafe { sqdist_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was detected at run time.
            return unsafe { sqdist_avx2(a, b) };
        }
    }
    sqdist_generic(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sqdist_avx512(a: &[f64], b: Option<&[f64]>) -> f64 {
    sqdist_generic(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sqdist_avx2(a: &[f64], b: Option<&[f64]>) -> f64 {
    sqdist_generic(a, b)
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

/// dst += src (or dst −= src), element-wise; vectorised when the CPU allows
/// (element-wise, so every path gives the same bits).
#[inline]
pub fn add_assign(dst: &mut [f64], src: &[f64], subtract: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was detected at run time.
            return unsafe { add_avx512(dst, src, subtract) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was detected at run time.
            return unsafe { add_avx2(dst, src, subtract) };
        }
    }
    add_generic(dst, src, subtract)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn add_avx512(dst: &mut [f64], src: &[f64], subtract: bool) {
    add_generic(dst, src, subtract)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_avx2(dst: &mut [f64], src: &[f64], subtract: bool) {
    add_generic(dst, src, subtract)
}

#[inline(always)]
fn add_generic(dst: &mut [f64], src: &[f64], subtract: bool) {
    if subtract {
        dst.iter_mut().zip(src).for_each(|(a, v)| *a -= v);
    } else {
        dst.iter_mut().zip(src).for_each(|(a, v)| *a += v);
    }
}

/// dst += (x − m)·w, element-wise (vectorised when the CPU allows).
#[inline]
pub fn axpy_centered(dst: &mut [f64], x: &[f64], m: &[f64], w: f64) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was detected at run time.
            return unsafe { axpy_avx512(dst, x, m, w) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was detected at run time.
            return unsafe { axpy_avx2(dst, x, m, w) };
        }
    }
    axpy_generic(dst, x, m, w)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn axpy_avx512(dst: &mut [f64], x: &[f64], m: &[f64], w: f64) {
    axpy_generic(dst, x, m, w)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn axpy_avx2(dst: &mut [f64], x: &[f64], m: &[f64], w: f64) {
    axpy_generic(dst, x, m, w)
}

#[inline(always)]
fn axpy_generic(dst: &mut [f64], x: &[f64], m: &[f64], w: f64) {
    for ((a, v), c) in dst.iter_mut().zip(x).zip(m) {
        *a += (v - c) * w;
    }
}
