//! Exact average cosine similarity through sums of unit vectors.
//!
//! For unit vectors x̂_i = x_i/‖x_i‖ over the N′ rows of non-zero norm,
//! Σ_{i≠j} cos(x_i, x_j) = ‖Σ x̂_i‖² − N′, so the mean over ordered pairs is
//! (‖Σ x̂_i‖² − N′)/(N′(N′−1)) — O(N·d) instead of the O(N²·d) pairwise matrix
//! (Ethayarajh 2019; Cai et al. 2021 for the centred variant).
//!
//! Cosines are scale-invariant, and so is their computation here: a row whose
//! Σ x_j² overflows or underflows float64 (|x| ≳ 1e154 or ≲ 1e-162) is first
//! divided by its largest |x_j| ([`unit_row`]), so only a row of exact zeros
//! counts as zero-norm. In the centred variant a row equal to the mean up to
//! the rounding of the mean itself ([`center_row`]) is a zero row: its
//! "direction" would be rounding noise (identical rows would give cosines
//! near 1 instead of an undefined average).

use crate::error::{Error, Result};
use crate::source::{for_each_tile, MatView};
use crate::threads;
use crate::vector::{add_column_sums, sqnorm};
use faer::{Accum, MatRef};
use rayon::prelude::*;
use std::collections::HashMap;

/// Σ x_j² is trusted when it lies in [2⁻⁹⁰⁰, f64::MAX]; outside, squares may
/// have overflowed or underflowed and the row is rescaled first.
const TINY: f64 = f64::from_bits((1023 - 900) << 52); // 2^-900

/// Componentwise relative tolerance under which x_j − μ_j is the rounding of
/// the computed mean μ rather than a difference in the data: 64 ulps.
pub const MEAN_ROUNDING: f64 = 64.0 * f64::EPSILON;

/// `row ← row − mean`; a row that equals the mean in every component up to
/// [`MEAN_ROUNDING`] · max(|x_j|, |μ_j|) becomes exactly zero (it is then a
/// zero-norm row of the centred statistics, reported as such).
#[inline]
pub fn center_row(row: &mut [f64], mean: &[f64]) {
    let mut at_mean = true;
    for (v, m) in row.iter_mut().zip(mean) {
        let diff = *v - m;
        if diff.abs() > MEAN_ROUNDING * v.abs().max(m.abs()) {
            at_mean = false;
        }
        *v = diff;
    }
    if at_mean {
        row.fill(0.0);
    }
}

/// Scale `row` to unit Euclidean norm in place; false (row unchanged) for a
/// row of exact zeros. Rows whose Σ x_j² leaves [2⁻⁹⁰⁰, f64::MAX] are first
/// divided by max_j |x_j| (as LAPACK's dnrm2 scales; Blue 1978), so 1e-300·x
/// and 1e300·x give the same unit vector as x up to rounding.
#[inline]
pub fn unit_row(row: &mut [f64]) -> bool {
    let s = sqnorm(row);
    if s.is_finite() && s >= TINY {
        let inv = 1.0 / s.sqrt();
        row.iter_mut().for_each(|v| *v *= inv);
        return true;
    }
    let m = row.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    if m == 0.0 {
        return false;
    }
    row.iter_mut().for_each(|v| *v /= m);
    let inv = 1.0 / sqnorm(row).sqrt();
    row.iter_mut().for_each(|v| *v *= inv);
    true
}

/// Mergeable Σ x̂ with counts of used and skipped (zero-norm) rows.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitSum {
    pub sum: Vec<f64>,
    pub n_nonzero: u64,
    pub n_zero: u64,
}

impl UnitSum {
    pub fn new(dim: usize) -> Self {
        UnitSum { sum: vec![0.0; dim], n_nonzero: 0, n_zero: 0 }
    }

    pub fn dim(&self) -> usize {
        self.sum.len()
    }

    /// Add every row of a row-major f64 tile (optionally minus `center`).
    /// `scratch` receives per-row inverse norms.
    pub fn add_tile(&mut self, tile: &[f64], d: usize, scratch: &mut Vec<f64>) {
        if d == 0 {
            return;
        }
        let n = tile.len() / d;
        scratch.clear();
        scratch.resize(n, 0.0);
        // inv = 1/‖x‖ on the fast path; -1 marks a row whose Σ x² left the
        // trusted range (rescaled below); 0 a row of exact zeros.
        tile.par_chunks(d).zip(scratch.par_iter_mut()).with_min_len(64).for_each(|(row, inv)| {
            let s = sqnorm(row);
            *inv = if s.is_finite() && s >= TINY {
                1.0 / s.sqrt()
            } else if row.iter().all(|v| *v == 0.0) {
                0.0
            } else {
                -1.0
            };
        });
        let mut special = Vec::new();
        for (r, inv) in scratch.iter_mut().enumerate() {
            if *inv < 0.0 {
                special.push(r);
                *inv = 0.0;
            }
        }
        let zeros = scratch.iter().filter(|v| **v == 0.0).count() as u64 - special.len() as u64;
        self.n_zero += zeros;
        self.n_nonzero += n as u64 - zeros;
        // Rare: rows of extreme magnitude, each made unit by rescaling.
        let mut y = vec![0.0f64; if special.is_empty() { 0 } else { d }];
        for &r in &special {
            y.copy_from_slice(&tile[r * d..(r + 1) * d]);
            unit_row(&mut y);
            self.sum.iter_mut().zip(&y).for_each(|(a, v)| *a += v);
        }
        // Σ_r inv_r · x_r as a GEMV: tileᵀ (d×n) · inv (n×1).
        let t = MatRef::from_row_major_slice(tile, n, d);
        let w = MatRef::from_column_major_slice(scratch.as_slice(), n, 1);
        let acc = faer::MatMut::from_column_major_slice_mut(self.sum.as_mut_slice(), d, 1);
        faer::linalg::matmul::matmul(acc, Accum::Add, t.transpose(), w, 1.0, threads::par());
    }

    pub fn merge(&mut self, other: &UnitSum) -> Result<()> {
        if other.dim() != self.dim() {
            return Err(Error::DimMismatch {
                what: "cosine state merge".into(),
                expected: self.dim(),
                got: other.dim(),
            });
        }
        for (a, b) in self.sum.iter_mut().zip(&other.sum) {
            *a += b;
        }
        self.n_nonzero += other.n_nonzero;
        self.n_zero += other.n_zero;
        Ok(())
    }

    /// Mean cosine over ordered pairs i≠j; NaN when fewer than 2 non-zero rows.
    pub fn average(&self) -> f64 {
        let n = self.n_nonzero as f64;
        if self.n_nonzero < 2 {
            return f64::NAN;
        }
        let s2: f64 = self.sum.iter().map(|v| v * v).sum();
        (s2 - n) / (n * (n - 1.0))
    }
}

/// Per-group average cosine (self-similarity, Ethayarajh 2019).
#[derive(Clone, Debug, PartialEq)]
pub struct SelfSimilarity {
    /// Mean of the per-group averages over groups with ≥ 2 non-zero rows.
    pub mean: f64,
    /// Group labels in first-seen order.
    pub labels: Vec<i64>,
    /// Per-group average cosine (NaN for groups with < 2 non-zero rows).
    pub per_group: Vec<f64>,
    /// Per-group row counts (zero-norm rows included).
    pub counts: Vec<u64>,
    /// Rows skipped for zero norm.
    pub n_zero: u64,
}

/// Self-similarity of `x` grouped by `groups` (one label per row), optionally
/// after subtracting `center` from every row.
pub fn self_similarity(x: &MatView<'_>, groups: &[i64], center: Option<&[f64]>) -> Result<SelfSimilarity> {
    let (n, d) = (x.nrows(), x.ncols());
    if groups.len() != n {
        return Err(Error::InvalidArgument(format!("groups has {} labels but the input has {n} rows", groups.len())));
    }
    if let Some(c) = center {
        if c.len() != d {
            return Err(Error::DimMismatch { what: "center".into(), expected: d, got: c.len() });
        }
        check_center(c)?;
    }
    let mut index: HashMap<i64, usize> = HashMap::new();
    let mut labels = Vec::new();
    let dense: Vec<usize> = groups
        .iter()
        .map(|g| {
            *index.entry(*g).or_insert_with(|| {
                labels.push(*g);
                labels.len() - 1
            })
        })
        .collect();
    let g = labels.len();
    let mut sums = vec![0.0f64; g * d];
    let mut nonzero = vec![0u64; g];
    let mut counts = vec![0u64; g];
    let mut n_zero = 0u64;
    for_each_tile(x, 0, |t, start| {
        t.par_chunks_mut(d).with_min_len(64).for_each(|row| {
            if let Some(c) = center {
                center_row(row, c);
            }
            unit_row(row);
        });
        for (r, row) in t.chunks(d).enumerate() {
            let gi = dense[start + r];
            counts[gi] += 1;
            if row.iter().all(|v| *v == 0.0) {
                n_zero += 1;
                continue;
            }
            nonzero[gi] += 1;
            for (a, v) in sums[gi * d..(gi + 1) * d].iter_mut().zip(row) {
                *a += v;
            }
        }
        Ok(())
    })?;
    let per_group: Vec<f64> = (0..g)
        .map(|gi| UnitSum { sum: sums[gi * d..(gi + 1) * d].to_vec(), n_nonzero: nonzero[gi], n_zero: 0 }.average())
        .collect();
    let valid: Vec<f64> = per_group.iter().cloned().filter(|v| v.is_finite()).collect();
    let mean = if valid.is_empty() { f64::NAN } else { valid.iter().sum::<f64>() / valid.len() as f64 };
    Ok(SelfSimilarity { mean, labels, per_group, counts, n_zero })
}

/// A centre with NaN/Inf would turn every row into NaN.
fn check_center(c: &[f64]) -> Result<()> {
    match c.iter().position(|v| !v.is_finite()) {
        Some(j) => Err(Error::InvalidArgument(format!("center contains NaN or Inf at column {j}"))),
        None => Ok(()),
    }
}

/// Σ x̂ over the rows of `x` (optionally minus `center`), streamed in tiles.
pub fn unit_sum_of(x: &MatView<'_>, center: Option<&[f64]>) -> Result<UnitSum> {
    let d = x.ncols();
    if let Some(c) = center {
        if c.len() != d {
            return Err(Error::DimMismatch { what: "center".into(), expected: d, got: c.len() });
        }
        check_center(c)?;
    }
    let mut acc = UnitSum::new(d);
    let mut scratch = Vec::new();
    for_each_tile(x, 0, |t, _| {
        if let Some(c) = center {
            t.par_chunks_mut(d).with_min_len(64).for_each(|row| center_row(row, c));
        }
        acc.add_tile(t, d, &mut scratch);
        Ok(())
    })?;
    Ok(acc)
}

/// Column means of `x` in f64 (one streamed pass).
///
/// Each tile's mean comes from the crate's column-sum kernel
/// ([`add_column_sums`]: fixed block order, so the bits do not depend on the
/// thread count) and is merged into the running mean by Chan's update
/// μ ← μ + (μ_b − μ)·n_b/(n + n_b) (Chan, Golub & LeVeque 1979).
pub fn column_mean(x: &MatView<'_>) -> Result<Vec<f64>> {
    let (n, d) = (x.nrows(), x.ncols());
    if n == 0 {
        return Err(Error::Empty("mean of an empty input".into()));
    }
    // Per-tile means merged with the running mean (Chan) keep large offsets exact.
    let mut mean = vec![0.0f64; d];
    let mut seen = 0u64;
    // Each tile's mean is taken about its first row r₀ (r₀ + mean(x − r₀)):
    // identical rows then give their value exactly (the differences are
    // exact zeros), so centred statistics see exact zero rows, not rounding
    // noise; for other data the shift only removes a common offset.
    for_each_tile(x, 0, |t, _| {
        let nb = t.len() / d;
        let r0 = t[..d].to_vec();
        t.par_chunks_mut(d).with_min_len(64).for_each(|row| row.iter_mut().zip(&r0).for_each(|(v, c)| *v -= c));
        let mut mb = vec![0.0f64; d];
        add_column_sums(&mut mb, t, d);
        let inv = 1.0 / nb as f64;
        mb.iter_mut().zip(&r0).for_each(|(m, c)| *m = *m * inv + c);
        let f = nb as f64 / (seen + nb as u64) as f64;
        mean.iter_mut().zip(&mb).for_each(|(m, b)| *m += (b - *m) * f);
        seen += nb as u64;
        Ok(())
    })?;
    Ok(mean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SplitMix64;

    fn data(n: usize, d: usize, offset: f64, seed: u64) -> Vec<f64> {
        let mut g = SplitMix64::new(seed);
        (0..n * d).map(|_| offset + g.uniform() - 0.5).collect()
    }

    /// Mean cosine over ordered pairs i ≠ j of the rows minus `c`, skipping zero rows.
    fn plain_avg_cos(x: &[f64], d: usize, c: &[f64]) -> f64 {
        let u: Vec<Vec<f64>> = x
            .chunks(d)
            .map(|r| r.iter().zip(c).map(|(v, m)| v - m).collect::<Vec<f64>>())
            .filter(|y| y.iter().any(|v| *v != 0.0))
            .map(|y| {
                let nrm = y.iter().map(|v| v * v).sum::<f64>().sqrt();
                y.iter().map(|v| v / nrm).collect()
            })
            .collect();
        let n = u.len();
        let mut s = 0.0;
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    s += u[i].iter().zip(&u[j]).map(|(a, b)| a * b).sum::<f64>();
                }
            }
        }
        s / (n * (n - 1)) as f64
    }

    fn plain_mean(x: &[f64], d: usize) -> Vec<f64> {
        let n = x.len() / d;
        (0..d).map(|j| x.iter().skip(j).step_by(d).sum::<f64>() / n as f64).collect()
    }

    #[test]
    fn unit_sum_and_mean_match_plain_formulas() {
        // Random data, N < d, and a huge offset (where the mean must be exact
        // enough for the centred cosine to survive the cancellation).
        for (n, d, offset) in [(200usize, 7usize, 0.0f64), (3, 10, 0.0), (150, 4, 1e6)] {
            let x = data(n, d, offset, n as u64);
            let v = MatView::row_major(&x, n, d).unwrap();
            let mu = column_mean(&v).unwrap();
            for (a, b) in mu.iter().zip(plain_mean(&x, d)) {
                assert!((a - b).abs() <= 1e-15 * b.abs().max(1.0), "{a} {b}");
            }
            let raw = unit_sum_of(&v, None).unwrap();
            assert_eq!(raw.n_nonzero, n as u64);
            let zero = vec![0.0; d];
            assert!((raw.average() - plain_avg_cos(&x, d, &zero)).abs() <= 1e-12);
            let cen = unit_sum_of(&v, Some(&mu)).unwrap();
            assert!((cen.average() - plain_avg_cos(&x, d, &mu)).abs() <= 1e-9, "{offset}");
        }
    }

    #[test]
    fn identical_rows_give_their_value_and_zero_rows_are_skipped() {
        let (n, d) = (50, 3);
        let row = [1e8 + 0.1, -3.3, 7.0];
        let x: Vec<f64> = (0..n).flat_map(|_| row).collect();
        let v = MatView::row_major(&x, n, d).unwrap();
        assert_eq!(column_mean(&v).unwrap(), row.to_vec());
        let mut y = x.clone();
        y[..d].iter_mut().for_each(|v| *v = 0.0);
        let u = unit_sum_of(&MatView::row_major(&y, n, d).unwrap(), None).unwrap();
        assert_eq!((u.n_nonzero, u.n_zero), (n as u64 - 1, 1));
        // n − 1 equal unit vectors: every pair has cosine 1.
        assert!((u.average() - 1.0).abs() < 1e-12);
        let c = unit_sum_of(&v, Some(&row)).unwrap();
        assert_eq!((c.n_nonzero, c.n_zero), (0, n as u64));
        assert!(c.average().is_nan());
    }

    #[test]
    fn self_similarity_matches_per_group_formula() {
        let (n, d) = (90, 5);
        let x = data(n, d, 0.2, 3);
        let groups: Vec<i64> = (0..n as i64).map(|i| i % 3 - 1).collect();
        let s = self_similarity(&MatView::row_major(&x, n, d).unwrap(), &groups, None).unwrap();
        let zero = vec![0.0; d];
        for (gi, label) in s.labels.iter().enumerate() {
            let rows: Vec<f64> =
                x.chunks(d).zip(&groups).filter(|(_, g)| *g == label).flat_map(|(r, _)| r.to_vec()).collect();
            assert!((s.per_group[gi] - plain_avg_cos(&rows, d, &zero)).abs() <= 1e-12);
        }
    }
}
