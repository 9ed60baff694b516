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
