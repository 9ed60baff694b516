//! Euclidean row norms ‖x_i‖ (or ‖x_i − c‖), overflow- and underflow-safe.
//!
//! The fast path is the vectorised fixed-order Σ x_j² of [`sqnorm`] /
//! [`sqdist`]. When that sum overflows to +Inf or falls below 2⁻⁹⁰⁰ (where
//! squares of the smallest entries may have underflowed), the row is redone
//! with max-abs scaling: m = max_j |y_j|, ‖y‖ = m·√Σ (y_j/m)² — the idea of
//! LAPACK's dnrm2 (Blue 1978; Anderson 2017, "Algorithm 978: Safe scaling in
//! the Level 1 BLAS"). Rows of magnitude 1e±300 therefore get finite, correct
//! norms. Centred differences x_j − c_j that overflow are formed as
//! 2·(x_j/2 − c_j/2), so the norm is +Inf only when the true norm exceeds the
//! float64 range.
//!
//! Every row is computed independently with the same arithmetic, so results
//! are bitwise independent of tiling, row order and thread count.

use crate::error::{Error, Result};
use crate::source::{for_each_tile, MatView};
use crate::vector::{sqdist, sqnorm};
use rayon::prelude::*;

/// Below this Σy² the fast path may have lost underflowed squares.
const TINY: f64 = f64::from_bits((1023 - 900) << 52); // 2^-900

/// ‖y‖ by max-abs scaling, for y_j = x_j (no centre) or x_j − c_j computed
/// at half scale when the difference itself would overflow.
fn scaled_norm(row: &[f64], center: Option<&[f64]>) -> f64 {
    let half = match center {
        Some(c) => row.iter().zip(c).any(|(x, m)| !(x - m).is_finite()),
        None => false,
    };
    let y = |j: usize| -> f64 {
        match center {
            Some(c) if half => row[j] * 0.5 - c[j] * 0.5,
            Some(c) => row[j] - c[j],
            None => row[j],
        }
    };
    let d = row.len();
    let m = (0..d).map(|j| y(j).abs()).fold(0.0f64, f64::max);
    if m == 0.0 {
        return 0.0;
    }
    let inv = 1.0 / m;
    let s: f64 = if inv.is_finite() {
        (0..d).map(|j| (y(j) * inv) * (y(j) * inv)).sum()
    } else {
        // m is subnormal: 1/m overflows, so divide instead.
        (0..d).map(|j| (y(j) / m) * (y(j) / m)).sum()
    };
    let n = m * s.sqrt();
    if half {
        2.0 * n
    } else {
        n
    }
}

/// ‖row‖ (or ‖row − center‖), safe against overflow and underflow.
#[inline]
pub fn row_norm(row: &[f64], center: Option<&[f64]>) -> f64 {
    let s = match center {
        Some(c) => sqdist(row, c),
        None => sqnorm(row),
    };
    if s.is_finite() && s >= TINY {
        s.sqrt()
    } else {
        scaled_norm(row, center)
    }
}

/// Row norms of `x` (minus `center` when given) into `out` (one per row),
/// streamed in converted tiles. `row_offset` numbers rows in NaN/Inf errors.
pub fn row_norms_into(x: &MatView<'_>, center: Option<&[f64]>, row_offset: u64, out: &mut [f64]) -> Result<()> {
    let (n, d) = (x.nrows(), x.ncols());
    if out.len() != n {
        return Err(Error::InvalidArgument(format!("row_norms: output has {} slots for {n} rows", out.len())));
    }
    if d == 0 {
        return Err(Error::InvalidArgument("row norms need at least one column (d ≥ 1)".into()));
    }
    if let Some(c) = center {
        if c.len() != d {
            return Err(Error::DimMismatch { what: "row_norms center".into(), expected: d, got: c.len() });
        }
        if let Some(j) = c.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!("center contains NaN or Inf at column {j}")));
        }
    }
    for_each_tile(x, row_offset, |t, start| {
        let nb = t.len() / d;
        out[start..start + nb]
            .par_iter_mut()
            .zip(t.par_chunks(d))
            .with_min_len(64)
            .for_each(|(o, row)| *o = row_norm(row, center));
        Ok(())
    })
}

/// Row norms of `x` (minus `center` when given) as a new vector.
pub fn row_norms(x: &MatView<'_>, center: Option<&[f64]>, row_offset: u64) -> Result<Vec<f64>> {
    let mut out = vec![0.0f64; x.nrows()];
    row_norms_into(x, center, row_offset, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(row: &[f64]) -> f64 {
        row.iter().map(|v| v * v).sum::<f64>().sqrt()
    }

    #[test]
    fn matches_plain_sum_in_range() {
        let x: Vec<f64> = (0..60).map(|i| ((i * 37) % 11) as f64 - 5.0).collect();
        let v = MatView::row_major(&x, 6, 10).unwrap();
        let r = row_norms(&v, None, 0).unwrap();
        for (i, n) in r.iter().enumerate() {
            let p = plain(&x[i * 10..(i + 1) * 10]);
            assert!((n - p).abs() <= 1e-15 * p.max(1.0), "{n} vs {p}");
        }
    }

    #[test]
    fn extreme_magnitudes_are_finite_and_exact() {
        for scale in [1e-300, 1e-200, 1e-160, 1e150, 1e200, 1e300, 5e-324] {
            let base = [3.0, -4.0, 12.0, 0.0];
            let x: Vec<f64> = base.iter().map(|v| v * scale).collect();
            let v = MatView::row_major(&x, 1, 4).unwrap();
            let n = row_norms(&v, None, 0).unwrap()[0];
            let want = 13.0 * scale;
            if scale > 1e-320 {
                assert!((n - want).abs() <= 1e-14 * want, "scale {scale}: {n} vs {want}");
            } else {
                assert!(n > 0.0 && n.is_finite());
            }
        }
        // Centred differences that overflow.
        let x = [1.5e308, -1.5e308];
        let c = [-1.5e308, 1.5e308];
        let v = MatView::row_major(&x, 1, 2).unwrap();
        assert!(row_norms(&v, Some(&c), 0).unwrap()[0].is_infinite());
        let x = [1.0e308, 0.0];
        let c = [-0.5e308, 0.0];
        let v = MatView::row_major(&x, 1, 2).unwrap();
        let n = row_norms(&v, Some(&c), 0).unwrap()[0];
        assert!((n - 1.5e308).abs() <= 1e-15 * 1.5e308, "{n}");
    }

    #[test]
    fn errors_are_reported() {
        let mut x = vec![1.0f64; 12];
        x[7] = f64::NAN;
        let v = MatView::row_major(&x, 4, 3).unwrap();
        assert_eq!(row_norms(&v, None, 10).unwrap_err(), Error::NonFinite { row: 12, col: 1 });
        let v = MatView::row_major(&x[..0], 0, 3).unwrap();
        assert!(row_norms(&v, None, 0).unwrap().is_empty());
        let v = MatView::row_major(&x[..3], 1, 3).unwrap();
        assert!(row_norms(&v, Some(&[0.0, 1.0]), 0).is_err());
        let e: [f64; 0] = [];
        let v = MatView::row_major(&e, 2, 0).unwrap();
        assert!(row_norms(&v, None, 0).is_err());
    }
}
