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
    /// rows (e.g. covariance eigenvectors), in the GEMM precision; None once
    /// [`SecondPass::release`]d (the state still merges and reports).
    dirs: Option<Dirs>,
    /// GEMMs in f64 (else f32).
    f64_gemm: bool,
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
            dirs: Some(dirs),
            f64_gemm,
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
        if self.dirs.is_none() {
            return Err(Error::InvalidArgument(
                "this second-pass state's directions were released: it can be merged and read, not updated".into(),
            ));
        }
        if self.f64_gemm {
            self.update_in::<f64>(x)
        } else {
            self.update_in::<f32>(x)
        }
    }

    /// GEMMs in f64 (else f32).
    pub fn f64_gemm(&self) -> bool {
        self.f64_gemm
    }

    /// Drop the directions (d × m each, 128 MiB per f64 matrix at d = 4096)
    /// once the last rows are in: a partial state that only waits to be
    /// merged (a Dask block's) then holds and serialises O(d + m) numbers.
    pub fn release(&mut self) {
        self.dirs = None;
    }

    /// True once [`SecondPass::release`] has dropped the directions.
    pub fn is_released(&self) -> bool {
        self.dirs.is_none()
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
        let (wr, wc) = F::dirs(self.dirs.as_ref().expect("update checks the directions are kept"));
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

    /// Serialise to bytes (little endian), as [`crate::Moments::to_bytes`]:
    /// magic (version in its last byte); u64 dim, n, m_raw, m_centered,
    /// unit-vector counts (non-zero, zero) and flags (bit 0: f64 GEMMs, bit 1:
    /// directions kept); f64 mean; (max, sum) of log Z(+c), then of log Z(−c),
    /// raw then centred; f64 unit-vector sum; then, unless released, the raw
    /// and centred directions column by column in the GEMM precision.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (d, mr, mc) = (self.dim, self.raw.pos.len(), self.centered.pos.len());
        let flags = u64::from(self.f64_gemm) | (u64::from(self.dirs.is_some()) << 1);
        let mut out = Vec::with_capacity(SP_HEADER + 8 * (2 * d + 4 * (mr + mc)));
        out.extend_from_slice(SP_MAGIC);
        let (nz, z) = (self.unit_centered.n_nonzero, self.unit_centered.n_zero);
        for v in [d as u64, self.n, mr as u64, mc as u64, nz, z, flags] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let mut f = |v: f64| out.extend_from_slice(&v.to_le_bytes());
        self.mean.iter().for_each(|&v| f(v));
        for st in [&self.raw, &self.centered] {
            st.pos.iter().chain(&st.neg).for_each(|l| {
                f(l.max);
                f(l.sum);
            });
        }
        self.unit_centered.sum.iter().for_each(|&v| f(v));
        match &self.dirs {
            Some(Dirs::F64(r, c)) => {
                for m in [r, c] {
                    (0..m.ncols()).for_each(|j| (0..d).for_each(|i| out.extend_from_slice(&m[(i, j)].to_le_bytes())));
                }
            }
            Some(Dirs::F32(r, c)) => {
                for m in [r, c] {
                    (0..m.ncols()).for_each(|j| (0..d).for_each(|i| out.extend_from_slice(&m[(i, j)].to_le_bytes())));
                }
            }
            None => {}
        }
        out
    }

    /// Read [`SecondPass::to_bytes`]'s layout back. Refuses, with a message
    /// starting "corrupt SecondPass state", a wrong magic or version, a
    /// length that does not match the stored sizes, and content no state can
    /// hold (row counts that do not add up, a non-finite mean, direction or
    /// unit-vector sum, a NaN or +∞ log-sum-exp, ‖Σ x̂‖ above the rows summed).
    pub fn from_bytes(bytes: &[u8]) -> Result<SecondPass> {
        let bad = |why: String| Error::InvalidArgument(format!("corrupt SecondPass state: {why}"));
        if bytes.len() < SP_HEADER || &bytes[..8] != SP_MAGIC {
            return Err(bad("bad header (not a SecondPass state of this version)".into()));
        }
        let u = |k: usize| u64::from_le_bytes(bytes[8 + 8 * k..16 + 8 * k].try_into().expect("8 bytes"));
        let (n, nz, z, flags) = (u(1), u(4), u(5), u(6));
        let (d, mr, mc) = (usize::try_from(u(0)), usize::try_from(u(2)), usize::try_from(u(3)));
        let (Ok(d), Ok(mr), Ok(mc)) = (d, mr, mc) else {
            return Err(bad("sizes beyond this machine's address space".into()));
        };
        if flags > 3 {
            return Err(bad(format!("unknown flags {flags:#x}")));
        }
        let (f64_gemm, kept) = (flags & 1 != 0, flags & 2 != 0);
        let width = if f64_gemm { 8 } else { 4 };
        let need = mr
            .checked_add(mc)
            .and_then(|m| m.checked_mul(4))
            .and_then(|k| k.checked_add(d.checked_mul(2)?))
            .and_then(|k| k.checked_mul(8))
            .and_then(|k| {
                let dirs = if kept { d.checked_mul(mr.checked_add(mc)?)?.checked_mul(width)? } else { 0 };
                k.checked_add(dirs)
            })
            .and_then(|k| k.checked_add(SP_HEADER));
        if need != Some(bytes.len()) {
            return Err(bad("length does not match the stored dimension and directions".into()));
        }
        if d == 0 {
            return Err(bad("dimension 0".into()));
        }
        if nz.checked_add(z) != Some(n) {
            return Err(bad(format!("{n} rows but {nz} non-zero + {z} zero-norm unit vectors")));
        }
        let mut pos = SP_HEADER;
        let mut next = || {
            let v = f64::from_le_bytes(bytes[pos..pos + 8].try_into().expect("8 bytes"));
            pos += 8;
            v
        };
        let mean: Vec<f64> = (0..d).map(|_| next()).collect();
        if let Some(j) = mean.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("mean holds {} at column {j}", mean[j])));
        }
        let mut lse = |m: usize| -> Result<Vec<LogSumExp>> {
            (0..m)
                .map(|_| {
                    let l = LogSumExp { max: next(), sum: next() };
                    let empty = l.sum == 0.0 && l.max == f64::NEG_INFINITY;
                    if empty || (l.max.is_finite() && l.sum.is_finite() && l.sum > 0.0) {
                        Ok(l)
                    } else {
                        Err(bad(format!("log-sum-exp (max {}, sum {}) no stream can give", l.max, l.sum)))
                    }
                })
                .collect()
        };
        let raw = PartitionState { pos: lse(mr)?, neg: lse(mr)? };
        let centered = PartitionState { pos: lse(mc)?, neg: lse(mc)? };
        if n == 0 && raw.pos.iter().chain(&raw.neg).chain(&centered.pos).chain(&centered.neg).any(|l| l.sum != 0.0) {
            return Err(bad("an empty state with partition sums".into()));
        }
        let sum: Vec<f64> = (0..d).map(|_| next()).collect();
        let s2: f64 = sum.iter().map(|v| v * v).sum();
        if !s2.is_finite() || s2.sqrt() > nz as f64 * (1.0 + 1e-9) + 1e-9 {
            return Err(bad(format!("‖Σ x̂‖ = {} exceeds the {nz} unit vectors summed", s2.sqrt())));
        }
        let mut at = pos;
        // The d × k matrices stored column-major in `w`-byte little-endian
        // floats, one after the other from `at`.
        fn read<T: faer::traits::ComplexField>(
            bytes: &[u8],
            at: &mut usize,
            d: usize,
            k: usize,
            w: usize,
            decode: impl Fn(&[u8]) -> T,
        ) -> Mat<T> {
            let start = *at;
            *at += w * d * k;
            Mat::from_fn(d, k, |i, j| decode(&bytes[start + w * (i + j * d)..][..w]))
        }
        let dirs = if !kept {
            None
        } else if f64_gemm {
            let f = |b: &[u8]| f64::from_le_bytes(b.try_into().expect("8 bytes"));
            let r = read(bytes, &mut at, d, mr, 8, f);
            Some(Dirs::F64(r, read(bytes, &mut at, d, mc, 8, f)))
        } else {
            let f = |b: &[u8]| f32::from_le_bytes(b.try_into().expect("4 bytes"));
            let r = read(bytes, &mut at, d, mr, 4, f);
            Some(Dirs::F32(r, read(bytes, &mut at, d, mc, 4, f)))
        };
        let finite = |r: MatRef<'_, f64>| (0..r.ncols()).all(|j| (0..r.nrows()).all(|i| r[(i, j)].is_finite()));
        let ok = match &dirs {
            None => true,
            Some(Dirs::F64(r, c)) => finite(r.as_ref()) && finite(c.as_ref()),
            Some(Dirs::F32(r, c)) => {
                let f = |m: &Mat<f32>| (0..m.ncols()).all(|j| (0..d).all(|i| m[(i, j)].is_finite()));
                f(r) && f(c)
            }
        };
        if !ok {
            return Err(bad("a direction holds NaN or Inf".into()));
        }
        Ok(SecondPass {
            dim: d,
            mean,
            dirs,
            f64_gemm,
            raw,
            centered,
            unit_centered: UnitSum { sum, n_nonzero: nz, n_zero: z },
            n,
        })
    }
}

/// Magic of [`SecondPass::to_bytes`]; its last byte is the layout version.
const SP_MAGIC: &[u8; 8] = b"ISOFSEC1";
/// Magic and seven u64 fields.
const SP_HEADER: usize = 8 + 7 * 8;

#[cfg(test)]
mod bytes_tests {
    use super::*;

    fn pass(x: &[f64], d: usize, f64_gemm: bool) -> SecondPass {
        let mu: Vec<f64> = (0..d).map(|j| 0.1 * j as f64).collect();
        let w = Mat::from_fn(d, 3, |i, j| ((i + 2 * j) as f64 * 0.37).sin());
        let mut sp = SecondPass::new(mu, w.clone(), w, f64_gemm).unwrap();
        sp.update(&MatView::row_major(x, x.len() / d, d).unwrap()).unwrap();
        sp
    }

    #[test]
    fn second_pass_bytes_round_trip_and_refuse_damage() {
        let d = 5;
        let x: Vec<f64> = (0..60 * d).map(|i| ((i * 7919) % 113) as f64 / 50.0 - 1.0).collect();
        for f64_gemm in [true, false] {
            let (a, b) = (pass(&x[..20 * d], d, f64_gemm), pass(&x[20 * d..], d, f64_gemm));
            let back = SecondPass::from_bytes(&a.to_bytes()).unwrap();
            assert_eq!(back.to_bytes(), a.to_bytes());
            // a restored state keeps updating like the original
            let (mut p, mut q) = (a.clone(), back);
            p.update(&MatView::row_major(&x[..d], 1, d).unwrap()).unwrap();
            q.update(&MatView::row_major(&x[..d], 1, d).unwrap()).unwrap();
            assert_eq!(p.to_bytes(), q.to_bytes());
            // merging restored partial states is bitwise the merge of the originals
            let mut rb = b.clone();
            rb.release();
            let rb = SecondPass::from_bytes(&rb.to_bytes()).unwrap();
            assert!(rb.is_released());
            let (mut m1, mut m2) = (a.clone(), SecondPass::from_bytes(&a.to_bytes()).unwrap());
            m1.merge(&b).unwrap();
            m2.merge(&rb).unwrap();
            assert_eq!(m1.raw.log_z_pos(), m2.raw.log_z_pos());
            assert_eq!(m1.centered.log_z_neg(), m2.centered.log_z_neg());
            assert_eq!(m1.unit_centered.sum, m2.unit_centered.sum);
            assert!(rb.clone().update(&MatView::row_major(&x[..d], 1, d).unwrap()).is_err());
            let bytes = a.to_bytes();
            for cut in [0, 8, SP_HEADER, bytes.len() - 1] {
                assert!(SecondPass::from_bytes(&bytes[..cut]).is_err(), "cut {cut}");
            }
            let mut bad = bytes.clone();
            bad[7] = b'9'; // another layout version
            assert!(SecondPass::from_bytes(&bad).is_err());
            let mut bad = bytes.clone();
            bad[16..24].copy_from_slice(&1u64.to_le_bytes()); // n ≠ unit-vector counts
            assert!(SecondPass::from_bytes(&bad).is_err());
            let mut bad = bytes;
            bad[SP_HEADER..SP_HEADER + 8].copy_from_slice(&f64::NAN.to_le_bytes()); // mean[0]
            let e = SecondPass::from_bytes(&bad).unwrap_err().to_string();
            assert!(e.contains("corrupt SecondPass state") && e.contains("mean"), "{e}");
        }
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
