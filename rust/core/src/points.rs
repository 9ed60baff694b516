//! Owned and borrowed row-major f64 point sets with their squared row norms
//! (the rows k-means, the silhouette and the clustered passes work on), their
//! column mean and a distinct-row count.

use crate::error::{invalid, Error, Result};
use crate::source::{first_non_finite, tile_rows, MatView};
use crate::vector::{add_column_sums, sqnorm};
use rayon::prelude::*;
use std::collections::HashSet;

/// Rows per work block (fixed, so results do not depend on the thread count).
pub(crate) const BLOCK: usize = 256;

/// A borrowed, row-major f64 point set with its squared row norms, and
/// optionally an f32 copy of the rows that distance GEMMs then use (for
/// inputs that carry no more precision than f32: twice the GEMM speed, half
/// the memory traffic; exact re-measurements still use the f64 rows).
#[derive(Clone, Copy, Debug)]
pub struct PointsRef<'a> {
    pub data: &'a [f64],
    pub sq: &'a [f64],
    pub n: usize,
    pub d: usize,
    pub data32: Option<&'a [f32]>,
}

impl<'a> PointsRef<'a> {
    #[inline]
    pub fn row(&self, i: usize) -> &'a [f64] {
        &self.data[i * self.d..(i + 1) * self.d]
    }

    /// Rows `start .. start + len`.
    pub fn rows(&self, start: usize, len: usize) -> PointsRef<'a> {
        let d = self.d;
        PointsRef {
            data: &self.data[start * d..(start + len) * d],
            sq: &self.sq[start..start + len],
            n: len,
            d,
            data32: self.data32.map(|x| &x[start * d..(start + len) * d]),
        }
    }
}

/// An owned, row-major f64 point set (the rows k-means and the silhouette
/// work on), with squared norms. Rows are finite by construction.
#[derive(Clone, Debug)]
pub struct Points {
    data: Vec<f64>,
    sq: Vec<f64>,
    n: usize,
    d: usize,
    data32: Option<Vec<f32>>,
}

impl Points {
    /// Wrap `n × d` row-major values; fails on a NaN/Inf (naming its row).
    pub fn new(data: Vec<f64>, n: usize, d: usize) -> Result<Points> {
        if n.checked_mul(d) != Some(data.len()) {
            return invalid(format!("{} values cannot form {n} rows of dimension {d}", data.len()));
        }
        if d == 0 {
            return Err(Error::Empty(format!("{n} points of dimension 0 (need d ≥ 1)")));
        }
        if let Some((r, c)) = first_non_finite(&data, d) {
            return Err(Error::NonFinite { row: r as u64, col: c });
        }
        let sq = row_sq_norms(&data, d);
        Ok(Points { data, sq, n, d, data32: None })
    }

    /// Read rows of `x` (all, or `rows` in the given order) converted to f64,
    /// minus `center` when given. A NaN/Inf is reported with its row in `x`.
    pub fn gather(x: &MatView<'_>, rows: Option<&[usize]>, center: Option<&[f64]>) -> Result<Points> {
        let d = x.ncols();
        if let Some(c) = center {
            if c.len() != d {
                return Err(Error::DimMismatch { what: "centre".into(), expected: d, got: c.len() });
            }
        }
        let mut data;
        match rows {
            None => {
                let n = x.nrows();
                data = vec![0.0f64; n * d];
                let b = tile_rows(d);
                let mut start = 0;
                while start < n {
                    let nb = b.min(n - start);
                    x.read_tile(start, nb, &mut data[start * d..(start + nb) * d]);
                    start += nb;
                }
            }
            Some(idx) => {
                if let Some(bad) = idx.iter().find(|&&i| i >= x.nrows()) {
                    return invalid(format!("row index {bad} out of range for {} rows", x.nrows()));
                }
                data = vec![0.0f64; idx.len() * d];
                if d > 0 {
                    data.par_chunks_mut(d).zip(idx.par_iter()).with_min_len(32).for_each(|(out, &i)| {
                        x.rows(i, 1).read_tile(0, 1, out);
                    });
                }
            }
        }
        let n = data.len().checked_div(d).unwrap_or_else(|| rows.map_or(x.nrows(), |r| r.len()));
        if x.elem().is_float() {
            if let Some((r, c)) = first_non_finite(&data, d) {
                let row = rows.map_or(r, |idx| idx[r]);
                return Err(Error::NonFinite { row: row as u64, col: c });
            }
        }
        if let Some(c) = center {
            if d > 0 {
                data.par_chunks_mut(d).with_min_len(64).for_each(|row| {
                    for (v, m) in row.iter_mut().zip(c) {
                        *v -= m;
                    }
                });
            }
        }
        let sq = row_sq_norms(&data, d);
        Ok(Points { data, sq, n, d, data32: None })
    }

    pub fn n(&self) -> usize {
        self.n
    }
    pub fn dim(&self) -> usize {
        self.d
    }
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    pub fn as_ref(&self) -> PointsRef<'_> {
        PointsRef { data: &self.data, sq: &self.sq, n: self.n, d: self.d, data32: self.data32.as_deref() }
    }

    /// A view of the whole set as a [`MatView`] (to feed streaming kernels).
    pub fn view(&self) -> MatView<'_> {
        MatView::row_major(&self.data, self.n, self.d).expect("points buffer has n·d values")
    }

    /// Column means (fixed summation order).
    pub fn mean(&self) -> Vec<f64> {
        column_mean(self.as_ref())
    }

    /// Subtract `c` from every row (and refresh the squared norms).
    pub fn subtract(&mut self, c: &[f64]) {
        let d = self.d;
        if d == 0 {
            return;
        }
        self.data.par_chunks_mut(d).with_min_len(64).for_each(|row| {
            for (v, m) in row.iter_mut().zip(c) {
                *v -= m;
            }
        });
        self.sq = row_sq_norms(&self.data, d);
        if self.data32.is_some() {
            self.data32 = Some(to_f32(&self.data));
        }
    }

    /// Keep an f32 copy of the rows for the distance GEMMs (see [`PointsRef`]).
    pub fn with_f32_mirror(mut self) -> Self {
        self.data32 = Some(to_f32(&self.data));
        self
    }

    /// Number of distinct rows, counting no further than `cap` (rows are
    /// compared by value; −0.0 equals 0.0).
    pub fn distinct_rows(&self, cap: usize) -> usize {
        distinct_rows(self.as_ref(), cap)
    }
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.par_iter().with_min_len(4096).map(|&x| x as f32).collect()
}

fn row_sq_norms(data: &[f64], d: usize) -> Vec<f64> {
    if d == 0 {
        return Vec::new();
    }
    data.par_chunks(d).with_min_len(256).map(sqnorm).collect()
}

/// Column means of a point set ([`add_column_sums`]'s fixed order: bitwise
/// free of the thread count, and equal to the streamed [`crate::cluster::stream_mean`]
/// of the same rows).
pub fn column_mean(p: PointsRef<'_>) -> Vec<f64> {
    let d = p.d;
    let mut mean = vec![0.0f64; d];
    if p.n == 0 || d == 0 {
        return mean;
    }
    add_column_sums(&mut mean, p.data, d);
    let inv = 1.0 / p.n as f64;
    mean.iter_mut().for_each(|v| *v *= inv);
    mean
}

/// Number of distinct rows of `p`, counting no further than `cap`.
pub fn distinct_rows(p: PointsRef<'_>, cap: usize) -> usize {
    // Two independent 64-bit hashes of the row's bits: a false merge of two
    // distinct rows needs a 128-bit collision.
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    for i in 0..p.n {
        let (mut h1, mut h2) = (0x243F_6A88_85A3_08D3u64, 0x1319_8A2E_0370_7344u64);
        for v in p.row(i) {
            let b = (v + 0.0).to_bits();
            h1 = (h1 ^ b).wrapping_mul(0x0000_0100_0000_01B3).rotate_left(29);
            h2 = (h2.rotate_left(17) ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        }
        seen.insert((h1, h2));
        if seen.len() >= cap {
            break;
        }
    }
    seen.len()
}
