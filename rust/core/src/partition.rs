//! Partition-function isotropy (Mu & Viswanath 2018) and the centred average
//! cosine, computed in one streaming pass over the data once the mean and the
//! eigenvectors are known.
//!
//! Z(c) = Σ_i exp(⟨x_i, c⟩); I = min_c Z(c) / max_c Z(c) over c ∈ {±w_k}, the
//! unit eigenvectors of XᵀX (raw) or, for the centred variant (Cai et al.
//! 2021), over c ∈ {±u_k} of the covariance with x_i − μ in place of x_i.
//! Z(c) ≠ Z(−c) on uncentred data and eigenvector signs are arbitrary, so both
//! signs are always evaluated. Everything is kept in log space: log I =
//! min log Z − max log Z (I itself underflows on LLM hidden states).
//!
//! Tiles of X·W are produced by a GEMM in the input's precision (f32 for
//! f32/f16/bf16 inputs, f64 otherwise) and consumed immediately by a streaming
//! log-sum-exp, so no N×d product is ever held.

use crate::cosine::{center_row, UnitSum};
use crate::error::{Error, Result};
use crate::lse::{update_both_signs, ExpSum, LogSumExp};
use crate::source::{check_finite, tile_rows, Float, MatView};
use crate::threads;
use faer::{Accum, Mat, MatRef};
use rayon::prelude::*;

/// Streaming log Z(±c) over a fixed set of directions.
#[derive(Clone, Debug)]
pub struct PartitionState {
    /// log Z(+c_k) accumulators.
    pub pos: Vec<LogSumExp>,
    /// log Z(−c_k) accumulators.
    pub neg: Vec<LogSumExp>,
}

impl PartitionState {
    pub fn new(m: usize) -> Self {
        PartitionState { pos: vec![LogSumExp::default(); m], neg: vec![LogSumExp::default(); m] }
    }

    /// Fold a column-major block of projections (`nb` rows × m directions).
    fn update_projections<F: Float + ExpSum>(&mut self, p: MatRef<'_, F>) {
        self.pos.par_iter_mut().zip(self.neg.par_iter_mut()).enumerate().for_each(|(k, (lp, ln))| {
            let col = p.col(k);
            let s = col.try_as_col_major().expect("contiguous projection column").as_slice();
            update_both_signs(lp, ln, s);
        });
    }

    pub fn merge(&mut self, other: &PartitionState) -> Result<()> {
        if other.pos.len() != self.pos.len() {
            return Err(Error::DimMismatch {
                what: "partition state merge".into(),
                expected: self.pos.len(),
                got: other.pos.len(),
            });
        }
        for (a, b) in self.pos.iter_mut().zip(&other.pos) {
            a.merge(b);
        }
        for (a, b) in self.neg.iter_mut().zip(&other.neg) {
            a.merge(b);
        }
        Ok(())
    }

    pub fn log_z_pos(&self) -> Vec<f64> {
        self.pos.iter().map(|s| s.value()).collect()
    }
    pub fn log_z_neg(&self) -> Vec<f64> {
        self.neg.iter().map(|s| s.value()).collect()
    }

    /// log I = min_c log Z(c) − max_c log Z(c) over both signs.
    pub fn log_isotropy(&self) -> f64 {
        let all = self.pos.iter().chain(&self.neg).map(|s| s.value());
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in all {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if lo.is_finite() && hi.is_finite() {
            lo - hi
        } else {
            f64::NAN
        }
    }
}

/// Directions (raw, centred) as columns, stored once in the GEMM precision:
/// at d = 4096 each f64 matrix is 128 MiB, so no second copy is kept.
#[derive(Clone, Debug)]
enum Dirs {
    F32(Mat<f32>, Mat<f32>),
    F64(Mat<f64>, Mat<f64>),
}

/// The directions in one working precision.
trait DirsIn: Sized {
    fn dirs(d: &Dirs) -> (MatRef<'_, Self>, MatRef<'_, Self>);
}
impl DirsIn for f32 {
    fn dirs(d: &Dirs) -> (MatRef<'_, f32>, MatRef<'_, f32>) {
        match d {
            Dirs::F32(r, c) => (r.as_ref(), c.as_ref()),
            Dirs::F64(..) => unreachable!("f32 GEMM with f64 directions"),
        }
    }
}
impl DirsIn for f64 {
    fn dirs(d: &Dirs) -> (MatRef<'_, f64>, MatRef<'_, f64>) {
        match d {
            Dirs::F64(r, c) => (r.as_ref(), c.as_ref()),
            Dirs::F32(..) => unreachable!("f64 GEMM with f32 directions"),
        }
    }
}

/// State of the second pass: raw and centred partition functions, and the
/// centred unit-vector sum.
#[derive(Clone, Debug)]
pub struct SecondPass {
    dim: usize,
    mean: Vec<f64>,
    /// Directions for raw rows (e.g. eigenvectors of XᵀX) and for centred
    /// rows (e.g. covariance eigenvectors).
    /// Its variant is the GEMM precision.
    dirs: Dirs,
    pub raw: PartitionState,
    pub centered: PartitionState,
    pub unit_centered: UnitSum,
    n: u64,
}

impl SecondPass {
    /// `dirs_*` hold directions as columns (d × m, m ≥ 0); they are consumed
    /// (converted to f32 and dropped when `f64_gemm` is false).
    pub fn new(mean: Vec<f64>, dirs_raw: Mat<f64>, dirs_centered: Mat<f64>, f64_gemm: bool) -> Result<Self> {
        let d = mean.len();
        if d == 0 {
            return Err(Error::Empty("second pass: the mean has 0 entries (need d ≥ 1)".into()));
        }
        if let Some(j) = mean.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!("second pass: the mean holds NaN or Inf at column {j}")));
        }
        for (name, m) in [("raw directions", &dirs_raw), ("centred directions", &dirs_centered)] {
            if m.nrows() != d {
                return Err(Error::DimMismatch { what: name.into(), expected: d, got: m.nrows() });
            }
        }
        let (mr, mc) = (dirs_raw.ncols(), dirs_centered.ncols());
        let dirs = if f64_gemm {
            Dirs::F64(dirs_raw, dirs_centered)
        } else {
            let to32 = |m: Mat<f64>| Mat::from_fn(m.nrows(), m.ncols(), |i, j| m[(i, j)] as f32);
            let r = to32(dirs_raw);
            Dirs::F32(r, to32(dirs_centered))
        };
        Ok(SecondPass {
            dim: d,
            mean,
            dirs,
            raw: PartitionState::new(mr),
            centered: PartitionState::new(mc),
            unit_centered: UnitSum::new(d),
            n: 0,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn count(&self) -> u64 {
        self.n
    }

    pub fn update(&mut self, x: &MatView<'_>) -> Result<()> {
        if x.ncols() != self.dim {
            return Err(Error::DimMismatch { what: "second pass".into(), expected: self.dim, got: x.ncols() });
        }
        match self.dirs {
            Dirs::F64(..) => self.update_in::<f64>(x),
            Dirs::F32(..) => self.update_in::<f32>(x),
        }
    }

    /// GEMMs in f64 (else f32).
    pub fn f64_gemm(&self) -> bool {
        matches!(self.dirs, Dirs::F64(..))
    }

    fn update_in<F: Float + ExpSum + DirsIn>(&mut self, x: &MatView<'_>) -> Result<()> {
        let (n, d) = (x.nrows(), self.dim);
        if n == 0 {
            return Ok(());
        }
        let b = tile_rows(d);
        let cap = b.min(n).max(2);
        let mut t64 = vec![0.0f64; cap * d];
        let mut raw_f: Vec<F> = vec![F::default(); cap * d];
        let mut cen_f: Vec<F> = vec![F::default(); cap * d];
        let (wr, wc) = F::dirs(&self.dirs);
        let mut pr: Mat<F> = Mat::zeros(cap, wr.ncols());
        let mut pc: Mat<F> = Mat::zeros(cap, wc.ncols());
        let mut scratch = Vec::new();
        let mean = &self.mean;
        let mut start = 0;
        while start < n {
            let nb = b.min(n - start);
            let t = &mut t64[..nb * d];
            x.read_tile(start, nb, t);
            check_finite(t, d, self.n, x.elem())?;
            let (rf, cf) = (&mut raw_f[..nb * d], &mut cen_f[..nb * d]);
            t.par_chunks_mut(d).zip(rf.par_chunks_mut(d)).zip(cf.par_chunks_mut(d)).with_min_len(64).for_each(
                |((row, r), c)| {
                    for j in 0..d {
                        r[j] = F::from_f64(row[j]);
                    }
                    center_row(row, mean);
                    for j in 0..d {
                        c[j] = F::from_f64(row[j]);
                    }
                },
            );
            self.unit_centered.add_tile(t, d, &mut scratch);
            // faer multiplies a single row with a matrix-vector kernel that
            // sums in another order than its GEMM kernels: a 1-row tile is
            // padded with a copy of its row so that every row's projections
            // are bitwise the same however the stream was chunked.
            let g = nb.max(2);
            if nb == 1 {
                raw_f.copy_within(0..d, d);
                cen_f.copy_within(0..d, d);
            }
            let (rf, cf) = (&raw_f[..g * d], &cen_f[..g * d]);
            let par = threads::par();
            let mut prb = pr.as_mut().subrows_mut(0, g);
            faer::linalg::matmul::matmul(
                prb.as_mut(),
                Accum::Replace,
                MatRef::from_row_major_slice(rf, g, d),
                wr,
                F::from_f64(1.0),
                par,
            );
            let mut pcb = pc.as_mut().subrows_mut(0, g);
            faer::linalg::matmul::matmul(
                pcb.as_mut(),
                Accum::Replace,
                MatRef::from_row_major_slice(cf, g, d),
                wc,
                F::from_f64(1.0),
                par,
            );
            self.raw.update_projections(pr.as_ref().subrows(0, nb));
            self.centered.update_projections(pc.as_ref().subrows(0, nb));
            self.n += nb as u64;
            start += nb;
        }
        Ok(())
    }

    pub fn merge(&mut self, other: &SecondPass) -> Result<()> {
        if other.dim != self.dim {
            return Err(Error::DimMismatch { what: "second pass merge".into(), expected: self.dim, got: other.dim });
        }
        self.raw.merge(&other.raw)?;
        self.centered.merge(&other.centered)?;
        self.unit_centered.merge(&other.unit_centered)?;
        self.n += other.n;
        Ok(())
    }
}

/// log Z(c_n) = log Σ_i exp(⟨x_i, c_n⟩) for arbitrary context vectors given as
/// the columns of `c` (d × m), streamed over the rows of `x`.
pub fn log_partition(x: &MatView<'_>, c: MatRef<'_, f64>, n_threads: Option<usize>) -> Result<Vec<f64>> {
    crate::source::require_cols(x, "log_partition")?;
    let d = x.ncols();
    if c.nrows() != d {
        return Err(Error::DimMismatch { what: "log_partition contexts".into(), expected: d, got: c.nrows() });
    }
    if x.nrows() == 0 {
        return Err(Error::Empty("log_partition needs at least one row".into()));
    }
    // exp(⟨x, c⟩) with a NaN/Inf in c is NaN or Inf for every row: refuse it.
    for k in 0..c.ncols() {
        if let Some(j) = (0..d).find(|&j| !c[(j, k)].is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "log_partition: context vector {k} holds NaN or Inf at component {j}"
            )));
        }
    }
    threads::install(n_threads, || {
        let mut sp = SecondPass::new(vec![0.0; d], c.to_owned(), Mat::zeros(d, 0), true)?;
        sp.update(x)?;
        let z = sp.raw.log_z_pos();
        // A projection ⟨x_i, c⟩ beyond the float64 range makes log Z = +Inf:
        // the value exists but cannot be represented, so say so.
        if let Some(k) = z.iter().position(|v| !v.is_finite()) {
            return Err(Error::Numerical(format!(
                "log_partition: log Z for context vector {k} is {}: some ⟨x_i, c⟩ overflows float64 (rescale x or c)",
                z[k]
            )));
        }
        Ok(z)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SplitMix64;

    /// n × d values: uniform noise of scale `s` around `offset`, with the last
    /// `flat` columns copies of the first (rank-deficient when flat > 0).
    fn data(n: usize, d: usize, offset: f64, s: f64, flat: usize, seed: u64) -> Vec<f64> {
        let mut g = SplitMix64::new(seed);
        let mut v = vec![0.0; n * d];
        for i in 0..n {
            for j in 0..d {
                v[i * d + j] = if j >= d - flat { v[i * d + j - (d - flat)] } else { offset + s * (g.uniform() - 0.5) };
            }
        }
        v
    }

    /// log Σ_i exp(±⟨x_i − μ, c⟩) in plain f64 (max-shifted).
    fn plain_log_z(x: &[f64], d: usize, mu: &[f64], c: &[f64], sign: f64) -> f64 {
        let z: Vec<f64> =
            x.chunks(d).map(|r| sign * r.iter().zip(mu).zip(c).map(|((v, m), w)| (v - m) * w).sum::<f64>()).collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
    }

    fn plain_avg_cos(x: &[f64], d: usize, mu: &[f64]) -> f64 {
        let u: Vec<Vec<f64>> = x
            .chunks(d)
            .map(|r| {
                let y: Vec<f64> = r.iter().zip(mu).map(|(v, m)| v - m).collect();
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

    fn check(n: usize, d: usize, offset: f64, flat: usize, f64_gemm: bool, tol: f64) {
        let x = data(n, d, offset, 2.0, flat, 7 + n as u64);
        let mu: Vec<f64> = (0..d).map(|j| x.iter().skip(j).step_by(d).sum::<f64>() / n as f64).collect();
        // Two orthonormal directions: e_0 and (e_1 + e_2)/√2.
        let mut w = Mat::<f64>::zeros(d, 2);
        w[(0, 0)] = 1.0;
        w[(1, 1)] = std::f64::consts::FRAC_1_SQRT_2;
        w[(2, 1)] = std::f64::consts::FRAC_1_SQRT_2;
        let mut sp = SecondPass::new(mu.clone(), w.clone(), w.clone(), f64_gemm).unwrap();
        sp.update(&MatView::row_major(&x, n, d).unwrap()).unwrap();
        assert_eq!(sp.count(), n as u64);
        let zero = vec![0.0; d];
        for k in 0..2 {
            let c: Vec<f64> = (0..d).map(|j| w[(j, k)]).collect();
            for (got, sign) in [(sp.raw.log_z_pos()[k], 1.0), (sp.raw.log_z_neg()[k], -1.0)] {
                let want = plain_log_z(&x, d, &zero, &c, sign);
                assert!((got - want).abs() <= tol * want.abs().max(1.0), "raw {k} {sign}: {got} vs {want}");
            }
            for (got, sign) in [(sp.centered.log_z_pos()[k], 1.0), (sp.centered.log_z_neg()[k], -1.0)] {
                let want = plain_log_z(&x, d, &mu, &c, sign);
                assert!((got - want).abs() <= tol * want.abs().max(1.0), "centred {k} {sign}: {got} vs {want}");
            }
        }
        let want = plain_avg_cos(&x, d, &mu);
        assert!((sp.unit_centered.average() - want).abs() <= 1e-12, "{} vs {want}", sp.unit_centered.average());
        // log I is min − max over both signs of the centred directions.
        let all: Vec<f64> = sp.centered.log_z_pos().into_iter().chain(sp.centered.log_z_neg()).collect();
        let li =
            all.iter().cloned().fold(f64::INFINITY, f64::min) - all.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(sp.centered.log_isotropy(), li);
    }

    #[test]
    fn second_pass_matches_plain_formulas() {
        check(300, 5, 0.0, 0, true, 1e-12);
        // N < d, and a rank-deficient input (two copied columns).
        check(4, 9, 0.0, 0, true, 1e-12);
        check(200, 6, 0.0, 2, true, 1e-12);
        // Huge offset: raw projections near 1e6; the centred ones stay exact.
        check(250, 4, 1e6, 0, true, 1e-12);
        // f32 GEMMs: products rounded to f32.
        check(300, 5, 0.0, 0, false, 1e-6);
    }

    #[test]
    fn chunked_and_merged_second_passes_agree() {
        let (n, d) = (301, 6);
        let x = data(n, d, 3.0, 1.0, 0, 5);
        let mu = vec![3.0; d];
        let w = Mat::<f64>::identity(d, d);
        let mut one = SecondPass::new(mu.clone(), w.clone(), w.clone(), true).unwrap();
        one.update(&MatView::row_major(&x, n, d).unwrap()).unwrap();
        let mut a = SecondPass::new(mu.clone(), w.clone(), w.clone(), true).unwrap();
        let mut b = SecondPass::new(mu, w.clone(), w, true).unwrap();
        a.update(&MatView::row_major(&x[..100 * d], 100, d).unwrap()).unwrap();
        b.update(&MatView::row_major(&x[100 * d..], n - 100, d).unwrap()).unwrap();
        a.merge(&b).unwrap();
        assert_eq!(a.count(), one.count());
        for (p, q) in a.raw.log_z_pos().iter().zip(one.raw.log_z_pos()) {
            assert!((p - q).abs() <= 1e-12 * q.abs(), "{p} {q}");
        }
        for (p, q) in a.centered.log_z_neg().iter().zip(one.centered.log_z_neg()) {
            assert!((p - q).abs() <= 1e-12 * q.abs().max(1.0), "{p} {q}");
        }
        assert!((a.unit_centered.average() - one.unit_centered.average()).abs() <= 1e-13);
        let bad = SecondPass::new(vec![0.0; 3], Mat::identity(3, 3), Mat::zeros(3, 0), true).unwrap();
        assert!(a.merge(&bad).is_err());
    }
}
