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
