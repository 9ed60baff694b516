//! All-but-the-top post-processing (Mu & Viswanath 2018):
//! x ↦ (x − μ) − Σ_{k≤D} (u_kᵀ(x − μ)) u_k, with u_k the top-D covariance
//! eigenvectors. Removes the common mean and the dominating directions.

use crate::error::{Error, Result};
use crate::source::{check_finite, tile_rows, Float, MatView};
use crate::threads;
use faer::{Accum, Mat, MatRef};
use rayon::prelude::*;

/// Write the post-processed rows of `x` into `out` (row-major, N×d), given
/// the mean and the top directions as the columns of `top` (d × D).
pub fn all_but_the_top<F: Float>(x: &MatView<'_>, mean: &[f64], top: MatRef<'_, f64>, out: &mut [F]) -> Result<()> {
    crate::source::require_cols(x, "all_but_the_top")?;
    let (n, d) = (x.nrows(), x.ncols());
    if mean.len() != d || top.nrows() != d {
        return Err(Error::DimMismatch { what: "all_but_the_top".into(), expected: d, got: mean.len() });
    }
    if out.len() != n * d {
        return Err(Error::InvalidArgument(format!("output buffer has {} elements, need {}", out.len(), n * d)));
    }
    let k = top.ncols();
    let b = tile_rows(d);
    let mut t = vec![0.0f64; b.min(n) * d];
    let mut coef: Mat<f64> = Mat::zeros(b.min(n), k);
    let mut start = 0;
    while start < n {
        let nb = b.min(n - start);
        let tile = &mut t[..nb * d];
        x.read_tile(start, nb, tile);
        check_finite(tile, d, start as u64, x.elem())?;
        tile.par_chunks_mut(d).with_min_len(64).for_each(|row| {
            for (v, m) in row.iter_mut().zip(mean) {
                *v -= m;
            }
        });
        if k > 0 {
            let mut cb = coef.as_mut().subrows_mut(0, nb);
            let y = MatRef::from_row_major_slice(&tile[..], nb, d);
            faer::linalg::matmul::matmul(cb.as_mut(), Accum::Replace, y, top, 1.0, threads::par());
            let ym = faer::MatMut::from_row_major_slice_mut(&mut tile[..], nb, d);
            faer::linalg::matmul::matmul(ym, Accum::Add, cb.as_ref(), top.transpose(), -1.0, threads::par());
        }
        out[start * d..(start + nb) * d]
            .par_chunks_mut(d)
            .zip(tile.par_chunks(d))
            .with_min_len(64)
            .for_each(|(o, s)| o.iter_mut().zip(s).for_each(|(o, s)| *o = F::from_f64(*s)));
        start += nb;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SplitMix64;

    /// (x − μ) − Σ_k (u_kᵀ(x − μ)) u_k, row by row in plain f64.
    fn plain(x: &[f64], d: usize, mu: &[f64], top: &Mat<f64>) -> Vec<f64> {
        let mut out = Vec::with_capacity(x.len());
        for r in x.chunks(d) {
            let y: Vec<f64> = r.iter().zip(mu).map(|(v, m)| v - m).collect();
            let mut z = y.clone();
            for k in 0..top.ncols() {
                let c: f64 = (0..d).map(|j| top[(j, k)] * y[j]).sum();
                (0..d).for_each(|j| z[j] -= c * top[(j, k)]);
            }
            out.extend(z);
        }
        out
    }

    fn case(n: usize, d: usize, offset: f64, k: usize) {
        let mut g = SplitMix64::new(n as u64 * 31 + d as u64);
        let x: Vec<f64> = (0..n * d).map(|_| offset + g.uniform() - 0.5).collect();
        let mu: Vec<f64> = (0..d).map(|j| x.iter().skip(j).step_by(d).sum::<f64>() / n as f64).collect();
        // Orthonormal directions: e_0, (e_1 − e_2)/√2, … (first k of them).
        let mut top = Mat::<f64>::zeros(d, k);
        for c in 0..k {
            if c == 0 {
                top[(0, 0)] = 1.0;
            } else {
                top[(2 * c - 1, c)] = std::f64::consts::FRAC_1_SQRT_2;
                top[(2 * c, c)] = -std::f64::consts::FRAC_1_SQRT_2;
            }
        }
        let mut out = vec![0.0f64; n * d];
        all_but_the_top(&MatView::row_major(&x, n, d).unwrap(), &mu, top.as_ref(), &mut out).unwrap();
        let want = plain(&x, d, &mu, &top);
        for (a, b) in out.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-12 * (1.0 + offset.abs() * 1e-4), "{a} {b}");
        }
        // The result has zero mean and no component along the removed directions.
        for j in 0..d {
            let m: f64 = out.iter().skip(j).step_by(d).sum::<f64>() / n as f64;
            assert!(m.abs() < 1e-12 * (1.0 + offset.abs()), "column {j} mean {m}");
        }
        for c in 0..k {
            for r in out.chunks(d) {
                let p: f64 = (0..d).map(|j| top[(j, c)] * r[j]).sum();
                assert!(p.abs() < 1e-12, "{p}");
            }
        }
    }

    #[test]
    fn matches_plain_formula() {
        case(200, 6, 0.0, 2);
        case(3, 8, 0.0, 3); // N < d
        case(100, 5, 0.0, 0); // D = 0: centring only
        case(150, 4, 1e6, 1); // huge offset
        let mut out32 = vec![0.0f32; 4];
        let x = [1.0, 2.0, 3.0, 5.0];
        all_but_the_top(&MatView::row_major(&x, 2, 2).unwrap(), &[2.0, 3.5], Mat::zeros(2, 0).as_ref(), &mut out32)
            .unwrap();
        assert_eq!(out32, vec![-1.0, -1.5, 1.0, 1.5]);
        assert!(all_but_the_top(&MatView::row_major(&x, 2, 2).unwrap(), &[0.0], Mat::zeros(2, 0).as_ref(), &mut out32)
            .is_err());
    }
}
