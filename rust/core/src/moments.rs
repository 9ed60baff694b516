//! Mergeable first and second moments (Chan, Golub & LeVeque 1979).
//!
//! State: n, mean μ, co-moment M = Σ (x−μ)(x−μ)ᵀ (lower triangle), plus the
//! raw unit-vector sum used by the average cosine, so one read of the data
//! feeds every one-pass statistic. A tile of rows is centred at its own f64
//! mean before its Gram product is added, and the block is merged with
//! M ← M_a + M_b + δδᵀ·n_a·n_b/n, δ = μ_b − μ_a. Σxxᵀ − nμμᵀ is never formed,
//! so a common offset of 1e4 on a spread of 1e-2 costs no accuracy.
//!
//! Two precisions ([`Precision`]): `Exact` (default) forms each tile's Gram
//! product YᵀY in float64; `Fast` rounds the tile-centred Y to float32 and
//! forms YᵀY by a float32 GEMM, merged into the float64 state. Fast's error
//! bound (Higham 2002, §3.1, with Cauchy–Schwarz): for tiles of at most b
//! rows, |ΔM_ij| ≤ γ_{b+2} √(M_ii M_jj), γ_m = m·u/(1 − m·u), u = 2⁻²⁴,
//! hence ‖ΔM‖₂ ≤ ‖ΔM‖_F ≤ γ_{b+2}·tr M and every eigenvalue moves by at most
//! γ_{b+2}·tr M (Weyl). See docs/design.md, "Precision: exact and fast".

use crate::cosine::UnitSum;
use crate::error::{Error, Result};
use crate::source::{check_finite, for_each_tile, tile_mean, tile_rows, MatView};
use crate::threads;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, MatRef};
use rayon::prelude::*;

/// How a tile's Gram product is formed (the merge is float64 either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// float64 GEMM on float64 tile-centred rows (the contract of design.md §2).
    #[default]
    Exact,
    /// float32 GEMM on tile-centred rows rounded to float32, merged in
    /// float64; error bound in the module docs. Bitwise independent of the
    /// thread count for a given tile size ([`fast_tile_rows`]).
    Fast,
}

impl Precision {
    pub fn from_name(name: &str) -> Option<Precision> {
        match name {
            "exact" => Some(Precision::Exact),
            "fast" => Some(Precision::Fast),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Precision::Exact => "exact",
            Precision::Fast => "fast",
        }
    }
}

/// Rows per tile in [`Precision::Fast`]: twice the exact tile (a float64
/// tile of ~32 MiB), so the float64 merge of each tile's d×d Gram panel costs
/// little next to its GEMM. The fast error bound uses b = this.
pub fn fast_tile_rows(d: usize) -> usize {
    (2 * tile_rows(d)).min(8192)
}

/// Column width of the Gram panels of the fast path: fixed, so the float32
/// sums (and their bits) do not depend on how many threads share them.
const PANEL: usize = 128;

/// A column-major d×d buffer of which only the lower triangle is meaningful
/// (and resident): what [`Moments::take_covariance`] hands over.
pub struct LowerMat {
    dim: usize,
    data: Vec<f64>,
}

impl LowerMat {
    pub fn as_ref(&self) -> MatRef<'_, f64> {
        MatRef::from_column_major_slice(&self.data, self.dim, self.dim)
    }
}

#[derive(Clone, Debug)]
pub struct Moments {
    dim: usize,
    n: u64,
    mean: Vec<f64>,
    /// Co-moment, column-major d×d; only the lower triangle (i ≥ j) is
    /// written. Allocated zeroed by the OS and never touched above the
    /// diagonal, so about half of it is ever resident. Empty once released
    /// ([`Moments::take_covariance`]).
    m2: Vec<f64>,
    precision: Precision,
    /// Σ x/‖x‖ over rows of non-zero norm (uncentred).
    pub unit: UnitSum,
}

impl Moments {
    pub fn new(dim: usize) -> Self {
        Self::with_precision(dim, Precision::Exact)
    }

    pub fn with_precision(dim: usize, precision: Precision) -> Self {
        Moments { dim, n: 0, mean: vec![0.0; dim], m2: vec![0.0; dim * dim], precision, unit: UnitSum::new(dim) }
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }
    pub fn set_precision(&mut self, p: Precision) {
        self.precision = p;
    }

    /// True once [`Moments::take_covariance`] has moved the co-moment out.
    pub fn is_released(&self) -> bool {
        self.dim > 0 && self.m2.is_empty()
    }

    pub fn check_live(&self, what: &str) -> Result<()> {
        if self.is_released() {
            return Err(Error::InvalidArgument(format!(
                "{what}: this Moments state's co-moment was released (second_pass(release=True)); \
                 only n, mean and the cosine sums remain"
            )));
        }
        Ok(())
    }

    #[inline]
    fn at(&self, i: usize, j: usize) -> f64 {
        self.m2[i + j * self.dim]
    }

    fn m2_mut(&mut self) -> faer::MatMut<'_, f64> {
        let d = self.dim;
        faer::MatMut::from_column_major_slice_mut(&mut self.m2, d, d)
    }

    /// Move the co-moment out as the covariance M/(n−1) (lower triangle, the
    /// same bits as [`Moments::covariance`]'s), freeing the state's d×d copy:
    /// the state keeps n, mean and the unit sums only. For callers that need
    /// nothing else from M (the eigendecomposition between the passes).
    pub fn take_covariance(&mut self) -> Result<LowerMat> {
        self.check_live("take_covariance")?;
        if self.n < 2 {
            return Err(Error::Empty(format!("covariance needs at least 2 rows, got {}", self.n)));
        }
        let d = self.dim;
        let s = 1.0 / (self.n as f64 - 1.0);
        let mut m2 = std::mem::take(&mut self.m2);
        m2.shrink_to_fit();
        for j in 0..d {
            m2[j * d + j..(j + 1) * d].iter_mut().for_each(|v| *v *= s);
        }
        Ok(LowerMat { dim: d, data: m2 })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn count(&self) -> u64 {
        self.n
    }
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// The co-moment M as a full symmetric matrix (empty once released).
    pub fn comoment(&self) -> Mat<f64> {
        let d = if self.is_released() { 0 } else { self.dim };
        Mat::from_fn(d, d, |i, j| if i >= j { self.at(i, j) } else { self.at(j, i) })
    }

    /// Lower triangle of M (upper triangle unspecified; 0×0 once released).
    pub fn comoment_lower(&self) -> MatRef<'_, f64> {
        let d = if self.is_released() { 0 } else { self.dim };
        MatRef::from_column_major_slice(&self.m2, d, d)
    }

    /// True when every coordinate's spread is below the rounding noise of its
    /// mean (all rows identical up to float64 rounding): M_ii ≤ n·(16ε·|μ_i|)².
    /// False once released.
    pub fn is_constant(&self) -> bool {
        if self.is_released() {
            return false;
        }
        let n = self.n as f64;
        (0..self.dim).all(|i| {
            let noise = 16.0 * f64::EPSILON * self.mean[i].abs();
            self.at(i, i) <= n * noise * noise
        })
    }

    /// Sample covariance C = M/(n−1), full symmetric.
    pub fn covariance(&self) -> Result<Mat<f64>> {
        self.check_live("covariance")?;
        if self.n < 2 {
            return Err(Error::Empty(format!("covariance needs at least 2 rows, got {}", self.n)));
        }
        let s = 1.0 / (self.n as f64 - 1.0);
        let mut c = self.comoment();
        c.as_mut().col_iter_mut().for_each(|col| col.iter_mut().for_each(|v| *v *= s));
        Ok(c)
    }

    /// Add every row of `x`. Rows are numbered after those already seen, so a
    /// NaN error names the row's position in the whole stream.
    pub fn update(&mut self, x: &MatView<'_>) -> Result<()> {
        if x.ncols() != self.dim {
            return Err(Error::DimMismatch { what: "Moments.update".into(), expected: self.dim, got: x.ncols() });
        }
        self.check_live("Moments.update")?;
        let (n, d) = (x.nrows(), self.dim);
        if n == 0 {
            return Ok(());
        }
        if self.precision == Precision::Fast {
            return self.update_fast(x);
        }
        let mut scratch = Vec::new();
        let seen = self.n;
        for_each_tile(x, seen, |t, _| {
            let nb = t.len() / d;
            self.add_tile(t, nb, &mut scratch);
            Ok(())
        })?;
        Ok(())
    }

    /// Add a converted, finite row-major tile of `nb` rows (overwritten).
    pub fn add_tile(&mut self, t: &mut [f64], nb: usize, scratch: &mut Vec<f64>) {
        let d = self.dim;
        if nb == 0 {
            return;
        }
        self.unit.add_tile(t, d, scratch);
        // Tile mean (f64), then centre the tile in place.
        let mb = tile_mean(t, nb, d);
        t.par_chunks_mut(d).with_min_len(64).for_each(|row| {
            for (v, m) in row.iter_mut().zip(&mb) {
                *v -= m;
            }
        });
        // M += YᵀY (lower triangle only: half the flops of a full GEMM).
        let y = MatRef::from_row_major_slice(&t[..], nb, d);
        triangular::matmul(
            self.m2_mut(),
            BlockStructure::TriangularLower,
            Accum::Add,
            y.transpose(),
            BlockStructure::Rectangular,
            y,
            BlockStructure::Rectangular,
            1.0,
            threads::par(),
        );
        self.merge_mean(&mb, nb as u64);
    }

    /// [`Precision::Fast`] pass over `x`: tiles of [`fast_tile_rows`] rows,
    /// centred at their float64 mean, rounded to float32; M += f64(Y₃₂ᵀY₃₂).
    fn update_fast(&mut self, x: &MatView<'_>) -> Result<()> {
        let (n, d) = (x.nrows(), self.dim);
        let b = fast_tile_rows(d).min(n);
        let mut t = vec![0.0f64; b * d];
        let mut y32 = vec![0.0f32; b * d];
        let mut scratch = Vec::new();
        let mut start = 0;
        while start < n {
            let nb = b.min(n - start);
            let t = &mut t[..nb * d];
            x.read_tile(start, nb, t);
            check_finite(t, d, self.n, x.elem())?;
            // Unit sums in a fixed order (faer's GEMV splits its sum by
            // thread count), so every pass-1 output of this mode is
            // bitwise free of the thread count.
            unit_add_fixed(&mut self.unit, t, d, &mut scratch);
            let mb = tile_mean_fixed(t, nb, d);
            let y32 = &mut y32[..nb * d];
            t.par_chunks(d).zip(y32.par_chunks_mut(d)).with_min_len(64).for_each(|(row, out)| {
                for ((o, v), m) in out.iter_mut().zip(row).zip(&mb) {
                    *o = (v - m) as f32;
                }
            });
            gram_f32_into(&mut self.m2, y32, nb, d);
            self.merge_mean(&mb, nb as u64);
            start += nb;
        }
        Ok(())
    }

    /// Chan merge of a block with mean `mb` and `nb` rows whose centred Gram
    /// matrix has already been added to `m2`.
    fn merge_mean(&mut self, mb: &[f64], nb: u64) {
        let na = self.n;
        let n = na + nb;
        if na == 0 {
            self.mean.copy_from_slice(mb);
            self.n = n;
            return;
        }
        let delta: Vec<f64> = mb.iter().zip(&self.mean).map(|(b, a)| b - a).collect();
        let w = (na as f64) * (nb as f64) / (n as f64);
        rank1_lower_add(self.m2_mut(), &delta, w);
        let f = nb as f64 / n as f64;
        for (m, dl) in self.mean.iter_mut().zip(&delta) {
            *m += dl * f;
        }
        self.n = n;
    }

    /// Combine with a state built from other rows (any order, any grouping).
    pub fn merge(&mut self, other: &Moments) -> Result<()> {
        if other.dim != self.dim {
            return Err(Error::DimMismatch { what: "Moments.merge".into(), expected: self.dim, got: other.dim });
        }
        self.check_live("Moments.merge")?;
        other.check_live("Moments.merge (other)")?;
        if other.n == 0 {
            return Ok(());
        }
        self.unit.merge(&other.unit)?;
        if self.n == 0 {
            self.n = other.n;
            self.mean.clone_from(&other.mean);
            self.m2.clone_from(&other.m2);
            return Ok(());
        }
        let d = self.dim;
        for j in 0..d {
            for i in j..d {
                self.m2[i + j * d] += other.m2[i + j * d];
            }
        }
        self.merge_mean(&other.mean.clone(), other.n);
        Ok(())
    }

    /// Serialise to bytes (little endian): magic, dim, n, unit counts, mean,
    /// packed lower co-moment, unit sum.
    /// A released state (no co-moment) serialises with dim 0 in its place
    /// and cannot be read back.
    pub fn to_bytes(&self) -> Vec<u8> {
        let d = if self.is_released() { 0 } else { self.dim };
        let mut out = Vec::with_capacity(40 + 8 * (2 * d + d * (d + 1) / 2));
        out.extend_from_slice(MAGIC);
        for v in [d as u64, self.n, self.unit.n_nonzero, self.unit.n_zero] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        self.mean.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        for j in 0..d {
            for i in j..d {
                out.extend_from_slice(&self.at(i, j).to_le_bytes());
            }
        }
        if d == 0 {
            return out;
        }
        self.unit.sum.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Moments> {
        let bad = |why: &str| Error::InvalidArgument(format!("corrupt Moments state: {why}"));
        if bytes.len() < 40 || &bytes[..8] != MAGIC {
            return Err(bad("bad header"));
        }
        let u = |k: usize| u64::from_le_bytes(bytes[8 + 8 * k..16 + 8 * k].try_into().unwrap());
        let (d, n, nz, z) = (u(0) as usize, u(1), u(2), u(3));
        let need = d
            .checked_mul(d + 1)
            .map(|v| v / 2)
            .and_then(|tri| tri.checked_add(2 * d))
            .and_then(|k| k.checked_mul(8))
            .and_then(|k| k.checked_add(40));
        if need != Some(bytes.len()) {
            return Err(bad("length does not match the stored dimension"));
        }
        let mut pos = 40;
        let mut next = || {
            let v = f64::from_le_bytes(bytes[pos..pos + 8].try_into().unwrap());
            pos += 8;
            v
        };
        if d == 0 {
            return Err(bad("dimension 0 (a released state cannot be restored)"));
        }
        let mean: Vec<f64> = (0..d).map(|_| next()).collect();
        let mut m2 = vec![0.0f64; d * d];
        for j in 0..d {
            for i in j..d {
                m2[i + j * d] = next();
            }
        }
        let sum: Vec<f64> = (0..d).map(|_| next()).collect();
        Ok(Moments {
            dim: d,
            n,
            mean,
            m2,
            precision: Precision::Exact,
            unit: UnitSum { sum, n_nonzero: nz, n_zero: z },
        })
    }
}

const MAGIC: &[u8; 8] = b"ISOFMOM1";

/// M[i, j] += f64(Σ_r y_ri·y_rj) for i ≥ j, the sums in float32 GEMMs on
/// fixed panels of [`PANEL`] columns (rows j₀..d of each), each panel summed
/// by one thread: the bits do not depend on the thread count.
fn gram_f32_into(m2: &mut [f64], y32: &[f32], nb: usize, d: usize) {
    let y = MatRef::from_row_major_slice(y32, nb, d);
    m2.par_chunks_mut(PANEL * d).enumerate().for_each(|(p, cols)| {
        let j0 = p * PANEL;
        let w = cols.len() / d;
        let h = d - j0;
        let mut g = Mat::<f32>::zeros(h, w);
        // Lower part of the panel's diagonal block, then the rectangle below.
        triangular::matmul(
            g.as_mut().subrows_mut(0, w),
            BlockStructure::TriangularLower,
            Accum::Replace,
            y.subcols(j0, w).transpose(),
            BlockStructure::Rectangular,
            y.subcols(j0, w),
            BlockStructure::Rectangular,
            1.0f32,
            faer::Par::Seq,
        );
        if h > w {
            faer::linalg::matmul::matmul(
                g.as_mut().subrows_mut(w, h - w),
                Accum::Replace,
                y.subcols(j0 + w, h - w).transpose(),
                y.subcols(j0, w),
                1.0f32,
                faer::Par::Seq,
            );
        }
        for jj in 0..w {
            let col = &mut cols[jj * d..(jj + 1) * d];
            for i in (j0 + jj)..d {
                col[i] += g[(i - j0, jj)] as f64;
            }
        }
    });
}

/// Σ_r x_r/‖x_r‖ added to `u` with each column block summed over rows in
/// row order by one thread (bits independent of the thread count).
fn unit_add_fixed(u: &mut UnitSum, t: &[f64], d: usize, inv: &mut Vec<f64>) {
    let n = t.len() / d;
    inv.clear();
    inv.resize(n, 0.0);
    t.par_chunks(d).zip(inv.par_iter_mut()).with_min_len(64).for_each(|(row, iv)| {
        let s = crate::vector::sqnorm(row);
        *iv = if s > 0.0 { 1.0 / s.sqrt() } else { 0.0 };
    });
    let zeros = inv.iter().filter(|v| **v == 0.0).count() as u64;
    u.n_zero += zeros;
    u.n_nonzero += n as u64 - zeros;
    col_sum_fixed(t, d, Some(inv), &mut u.sum);
}

/// out_j += Σ_r w_r·t_rj (w = 1 when `None`): column blocks of 64 in
/// parallel, rows in order within each, so the bits do not depend on the
/// thread count.
fn col_sum_fixed(t: &[f64], d: usize, w: Option<&[f64]>, out: &mut [f64]) {
    const B: usize = 64;
    let n = t.len() / d;
    out.par_chunks_mut(B).enumerate().for_each(|(b, acc)| {
        let j0 = b * B;
        let mut part = [0.0f64; B];
        let wd = acc.len();
        for r in 0..n {
            let row = &t[r * d + j0..r * d + j0 + wd];
            let c = w.map_or(1.0, |w| w[r]);
            for (p, x) in part[..wd].iter_mut().zip(row) {
                *p += c * x;
            }
        }
        for (a, p) in acc.iter_mut().zip(&part[..wd]) {
            *a += p;
        }
    });
}

/// Column means of a tile by [`col_sum_fixed`]: sum, then divide once.
fn tile_mean_fixed(t: &[f64], nb: usize, d: usize) -> Vec<f64> {
    let mut mb = vec![0.0f64; d];
    col_sum_fixed(&t[..nb * d], d, None, &mut mb);
    let inv = 1.0 / nb as f64;
    mb.iter_mut().for_each(|v| *v *= inv);
    mb
}

/// M[i, j] += w·δ_i·δ_j for i ≥ j.
fn rank1_lower_add(m: faer::MatMut<'_, f64>, delta: &[f64], w: f64) {
    let d = delta.len();
    m.par_col_iter_mut().enumerate().for_each(|(j, mut col)| {
        let s = w * delta[j];
        for i in j..d {
            col[i] += s * delta[i];
        }
    });
}

/// Moments of several views in stream order, on `n_threads` threads.
pub fn moments_of(views: &[MatView<'_>], n_threads: Option<usize>) -> Result<Moments> {
    let d = views.first().map(|v| v.ncols()).ok_or_else(|| Error::Empty("no input chunks".into()))?;
    threads::install(n_threads, || {
        let mut m = Moments::new(d);
        for v in views {
            m.update(v)?;
        }
        Ok(m)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    }

    fn naive_cov(x: &[f64], n: usize, d: usize) -> Vec<f64> {
        let mut mu = vec![0.0; d];
        for r in 0..n {
            for j in 0..d {
                mu[j] += x[r * d + j] / n as f64;
            }
        }
        let mut c = vec![0.0; d * d];
        for r in 0..n {
            for i in 0..d {
                for j in 0..d {
                    c[i * d + j] += (x[r * d + i] - mu[i]) * (x[r * d + j] - mu[j]) / (n as f64 - 1.0);
                }
            }
        }
        c
    }

    #[test]
    fn matches_two_pass_reference_with_offset() {
        let (n, d) = (1000, 7);
        let mut s = 1;
        let x: Vec<f64> = (0..n * d).map(|_| 1e4 + 1e-2 * lcg(&mut s)).collect();
        let v = MatView::row_major(&x, n, d).unwrap();
        let m = moments_of(&[v], Some(2)).unwrap();
        let c = m.covariance().unwrap();
        let r = naive_cov(&x, n, d);
        for i in 0..d {
            for j in 0..d {
                let rel = (c[(i, j)] - r[i * d + j]).abs() / r[i * d + i].abs();
                assert!(rel < 1e-9, "rel {rel}");
            }
        }
    }

    #[test]
    fn merge_equals_single_pass_and_roundtrips() {
        let (n, d) = (777, 5);
        let mut s = 7;
        let x: Vec<f64> = (0..n * d).map(|_| lcg(&mut s) * 3.0 + 1.0).collect();
        let whole = moments_of(&[MatView::row_major(&x, n, d).unwrap()], Some(1)).unwrap();
        let a = moments_of(&[MatView::row_major(&x[..300 * d], 300, d).unwrap()], Some(2)).unwrap();
        let mut b = moments_of(&[MatView::row_major(&x[300 * d..], n - 300, d).unwrap()], Some(1)).unwrap();
        b.merge(&a).unwrap();
        let (cw, cb) = (whole.covariance().unwrap(), b.covariance().unwrap());
        for i in 0..d {
            for j in 0..d {
                assert!((cw[(i, j)] - cb[(i, j)]).abs() < 1e-12 * cw[(i, i)].abs());
            }
        }
        let back = Moments::from_bytes(&b.to_bytes()).unwrap();
        assert_eq!(back.count(), b.count());
        assert_eq!(back.comoment(), b.comoment());
        assert!(Moments::from_bytes(&b.to_bytes()[..50]).is_err());
        assert!(b.merge(&Moments::new(d + 1)).is_err());
    }
}
