//! Small f64 vector kernels (squared norms and distances, element-wise
//! accumulation) with a fixed summation order, compiled for AVX-512/AVX2 and
//! picked at run time; every path gives bitwise the same result.

use crate::simd::dispatch;
use rayon::prelude::*;

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

/// Rows per block of [`add_column_sums`].
pub const SUM_BLOCK: usize = 64;

/// The crate's one column-sum kernel: `sum_j += Σ_r t[r, j]` over the rows of
/// a row-major tile `t` of width `d` (column means divide this by the count).
///
/// Determinism: the rows are cut into blocks of [`SUM_BLOCK`] consecutive
/// rows; each block is summed from zero in row order, and the block sums are
/// added to `sum` in block order. The bits therefore do not depend on the
/// thread count, and a stream fed in tiles whose lengths are multiples of
/// [`SUM_BLOCK`] (every [`crate::source::tile_rows`] tile but the last) gives
/// the same bits as one call over all rows.
pub fn add_column_sums(sum: &mut [f64], t: &[f64], d: usize) {
    if d == 0 || t.is_empty() {
        return;
    }
    let parts: Vec<Vec<f64>> = t
        .par_chunks(SUM_BLOCK * d)
        .map(|blk| {
            let mut s = vec![0.0f64; d];
            for row in blk.chunks_exact(d) {
                add_assign(&mut s, row, false);
            }
            s
        })
        .collect();
    for p in &parts {
        for (a, v) in sum.iter_mut().zip(p) {
            *a += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_sums_are_tiling_and_thread_invariant() {
        let (n, d) = (1000, 7);
        let t: Vec<f64> = (0..n * d).map(|i| ((i * 7919) % 1013) as f64 * 0.37 - 180.0 + 1e-9 * i as f64).collect();
        let mut once = vec![0.0; d];
        add_column_sums(&mut once, &t, d);
        let mut tiled = vec![0.0; d];
        for tile in t.chunks(3 * SUM_BLOCK * d) {
            add_column_sums(&mut tiled, tile, d);
        }
        assert_eq!(once, tiled);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let mut one = vec![0.0; d];
        pool.install(|| add_column_sums(&mut one, &t, d));
        assert_eq!(once, one);
        for (j, s) in once.iter().enumerate() {
            let plain: f64 = (0..n).map(|r| t[r * d + j]).sum();
            assert!((s - plain).abs() <= 1e-12 * plain.abs().max(1.0), "{s} {plain}");
        }
    }

    #[test]
    fn distances_match_plain_formulas() {
        for n in [0usize, 1, 31, 32, 33, 100] {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).sin()).collect();
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 1.3).cos()).collect();
            let sq: f64 = a.iter().map(|x| x * x).sum();
            let sd: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            assert!((sqnorm(&a) - sq).abs() <= 1e-14 * sq.max(1.0));
            assert!((sqdist(&a, &b) - sd).abs() <= 1e-14 * sd.max(1.0));
        }
    }
}
