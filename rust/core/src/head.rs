//! LM-head (softmax) log-partition: log Z(c_n) = logsumexp_w(⟨v_w, c_n⟩ + b_w)
//! for every context row c_n, without ever holding the N×V logit matrix.
//!
//! For an output matrix W (V×d, rows v_w, optional bias b) and contexts C (N×d,
//! the hidden states entering the head) the kernel multiplies tiles of C·Wᵀ
//! (faer GEMM in f32 when both inputs are f32/f16/bf16, f64 otherwise) and folds
//! each tile at once into a streaming log-sum-exp per context (Arora et al.
//! 2016, the log-linear model p(w|c) = exp(⟨v_w, c⟩ + b_w)/Z(c)). The same pass
//! can keep the top-k logits of every context and the log-sum-exp over a token
//! subset S, giving log p(S|c) = log Σ_{w∈S} exp(z_w) − log Z(c) (e.g. the mass
//! on the digit tokens). All sums are float64; exponentials are taken only of
//! z − max ≤ 0 ([`crate::lse::exp_nonpos`]), so logits in the thousands are fine.
//!
//! Work split. Contexts are cut into blocks of [`CTX_BLOCK`] rows; the
//! vocabulary into chunks. A task (block, chunk) converts its context rows,
//! then walks the chunk in GEMM tiles of [`VOCAB_TILE`] rows, each tile
//! (`VOCAB_TILE × CTX_BLOCK`, column-major so one context's logits are
//! contiguous) small enough to stay in L2 until it is folded. Tasks run in
//! parallel with sequential GEMMs inside, and their partial states are merged
//! per context in vocabulary order. The split depends only on the shapes, never
//! on the thread count, so results are bitwise identical for any `n_threads`.
//!
//! Memory. W is converted once into the working precision, at most
//! [`W_BUDGET_BYTES`] at a time (a larger head is processed in super-blocks of
//! rows, re-reading the contexts once per super-block); beyond that only
//! per-task buffers (~2 MiB: a block of C and one logit tile) and O(N·(1 + k))
//! states are held.

use crate::error::{Error, Result};
#[cfg(test)]
use crate::lse::exp_nonpos_f32;
use crate::lse::{exp_nonpos, ExpSum, LogSumExp};
use crate::simd::dispatch;
use crate::source::{first_non_finite, Float, MatView, ViewElem};
use crate::threads;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Context rows per task: the GEMM's n dimension. Large enough that packing
/// the W tile (~10% of the time at 256 rows) is amortised over many contexts.
pub const CTX_BLOCK: usize = 512;
/// Vocabulary rows per GEMM tile: a multiple of 96, the f32 AVX-512
/// micro-kernel's height (1024 = 10·96 + 64 left a slower 64-row kernel on
/// every tile); with [`CTX_BLOCK`] the f32 logit tile is 960 KiB and is
/// folded while still in L2.
pub const VOCAB_TILE: usize = 480;
/// Vocabulary chunk per task when there are few context blocks, so that a
/// handful of contexts (decoding steps) still spreads over all cores.
pub const VOCAB_CHUNK: usize = 4 * VOCAB_TILE;
/// Below this many context blocks the vocabulary is split into chunks.
pub const SPLIT_BELOW_BLOCKS: usize = 32;
/// Most bytes of converted W held at once (the SmolLM2 head, 49,152×576 f32,
/// is 108 MiB and fits in one super-block).
pub const W_BUDGET_BYTES: usize = 128 << 20;

/// What to compute besides log Z.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeadOptions<'a> {
    /// Bias b (length V), or none.
    pub bias: Option<&'a [f64]>,
    /// Keep the k largest logits of every context (0 = none).
    pub topk: usize,
    /// Token ids whose probability mass is wanted (duplicates are ignored).
    pub subset: Option<&'a [usize]>,
}

/// Result of [`log_partition_head`].
#[derive(Clone, Debug, PartialEq)]
pub struct HeadResult {
    /// Number of contexts N.
    pub n: usize,
    /// Vocabulary size V.
    pub vocab: usize,
    /// log Z(c_n), length N.
    pub log_z: Vec<f64>,
    /// k of the top-k lists (0 when not requested).
    pub topk: usize,
    /// Token ids of the k largest logits per context, row-major N×k, in
    /// descending logit order (ties: lower id first).
    pub topk_indices: Vec<u32>,
    /// The matching logits z = ⟨v_w, c⟩ + b_w (float64), N×k.
    pub topk_logits: Vec<f64>,
    /// log p(S|c_n) = log Σ_{w∈S} exp(z_w) − log Z(c_n) (−∞ for an empty S),
    /// when a subset was given.
    pub subset_log_mass: Option<Vec<f64>>,
}

impl HeadResult {
    /// Top-k probabilities p(w|c) = exp(z_w − log Z(c)), N×k.
    pub fn topk_probs(&self) -> Vec<f64> {
        let k = self.topk;
        (0..self.n * k).map(|i| exp_nonpos(self.topk_logits[i] - self.log_z[i / k]).min(1.0)).collect()
    }
}

/// log Z(c_n) = log Σ_w exp(⟨v_w, c_n⟩ + b_w) for every row c_n of `c`, with
/// `w` holding the vocabulary vectors v_w as rows (module docs for the method).
///
/// Errors: an empty vocabulary, a hidden-size mismatch, a bias of the wrong
/// length, a subset id outside the vocabulary, `topk > V`, and NaN/±Inf in W,
/// C, b or in a computed logit (f32 overflow), each naming the offending row.
pub fn log_partition_head(
    w: &MatView<'_>,
    c: &MatView<'_>,
    opts: &HeadOptions<'_>,
    n_threads: Option<usize>,
) -> Result<HeadResult> {
    head_impl(w, Direct::default(), c, opts, n_threads)
}

/// [`log_partition_head`] for W held as a row-major `vocab × dim` slice:
/// when its type is the working precision (f32 with f32/f16/bf16 contexts,
/// f64 with f64 contexts) W is read in place — no converted copy of the head
/// (108 MiB for SmolLM2 in f32), which also makes calls with few contexts
/// (one decoding step) cheap.
pub fn log_partition_head_rows<T: RowElem>(
    w: &[T],
    vocab: usize,
    dim: usize,
    c: &MatView<'_>,
    opts: &HeadOptions<'_>,
    n_threads: Option<usize>,
) -> Result<HeadResult> {
    let view = MatView::row_major(w, vocab, dim)?;
    head_impl(&view, T::direct(w), c, opts, n_threads)
}

/// Element types W can be given in place as (see [`log_partition_head_rows`]).
pub trait RowElem: ViewElem {
    #[doc(hidden)]
    fn direct(w: &[Self]) -> Direct<'_>;
}
impl RowElem for f32 {
    fn direct(w: &[f32]) -> Direct<'_> {
        Direct { f32: Some(w), f64: None }
    }
}
impl RowElem for f64 {
    fn direct(w: &[f64]) -> Direct<'_> {
        Direct { f32: None, f64: Some(w) }
    }
}

/// W's rows already in memory in a working precision (read in place).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Direct<'a> {
    f32: Option<&'a [f32]>,
    f64: Option<&'a [f64]>,
}

fn head_impl(
    w: &MatView<'_>,
    direct: Direct<'_>,
    c: &MatView<'_>,
    opts: &HeadOptions<'_>,
    n_threads: Option<usize>,
) -> Result<HeadResult> {
    let (v, d, n) = (w.nrows(), w.ncols(), c.nrows());
    if v == 0 {
        return Err(Error::Empty("W has no rows: the vocabulary is empty".into()));
    }
    if c.ncols() != d {
        return Err(Error::DimMismatch {
            what: "log_partition_head: contexts C (N×d) against the output matrix W (V×d)".into(),
            expected: d,
            got: c.ncols(),
        });
    }
    if v > u32::MAX as usize {
        return Err(Error::InvalidArgument(format!("vocabulary of {v} rows exceeds 2^32 − 1")));
    }
    if let Some(b) = opts.bias {
        if b.len() != v {
            return Err(Error::InvalidArgument(format!(
                "bias b has length {} but W has {v} rows (one bias per vocabulary entry)",
                b.len()
            )));
        }
        if let Some(i) = b.iter().position(|x| !x.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "bias b contains NaN or Inf: first non-finite value at index {i} (token id) = {}",
                b[i]
            )));
        }
    }
    if opts.topk > v {
        return Err(Error::InvalidArgument(format!("topk={} exceeds the vocabulary size {v}", opts.topk)));
    }
    let subset = match opts.subset {
        None => None,
        Some(s) => {
            if let Some(&bad) = s.iter().find(|&&t| t >= v) {
                return Err(Error::InvalidArgument(format!(
                    "subset token id {bad} is outside the vocabulary (0 ≤ id < {v})"
                )));
            }
            let mut s = s.to_vec();
            s.sort_unstable();
            s.dedup();
            Some(s)
        }
    };
    if n == 0 {
        return Ok(HeadResult {
            n,
            vocab: v,
            log_z: Vec::new(),
            topk: opts.topk,
            topk_indices: Vec::new(),
            topk_logits: Vec::new(),
            subset_log_mass: subset.map(|_| Vec::new()),
        });
    }
    let f64_gemm = w.elem().needs_f64() || c.elem().needs_f64();
    let job = Job { w, direct, c, bias: opts.bias, topk: opts.topk, subset: subset.as_deref() };
    threads::install(n_threads, || if f64_gemm { job.run::<f64>() } else { job.run::<f32>() })
}

/// Per-(block, chunk) partial state: log-sum-exp over all and over the subset,
/// and the running top-k (descending, −∞/`u32::MAX` padded).
#[derive(Clone, Debug)]
struct Partial {
    lse: Vec<LogSumExp>,
    sub: Vec<LogSumExp>,
    top_val: Vec<f64>,
    top_idx: Vec<u32>,
}

impl Partial {
    fn new(rows: usize, k: usize, with_subset: bool) -> Self {
        Partial {
            lse: vec![LogSumExp::default(); rows],
            sub: if with_subset { vec![LogSumExp::default(); rows] } else { Vec::new() },
            top_val: vec![f64::NEG_INFINITY; rows * k],
            top_idx: vec![u32::MAX; rows * k],
        }
    }
}

/// Insert (x, id) into a descending list of length k if it beats the last
/// entry; equal values keep the earlier (lower-id) entry first.
#[inline]
fn topk_insert(vals: &mut [f64], idx: &mut [u32], x: f64, id: u32) {
    let k = vals.len();
    let mut p = k - 1;
    while p > 0 && vals[p - 1] < x {
        vals[p] = vals[p - 1];
        idx[p] = idx[p - 1];
        p -= 1;
    }
    vals[p] = x;
    idx[p] = id;
}

struct Job<'v, 'a> {
    w: &'v MatView<'a>,
    direct: Direct<'v>,
    c: &'v MatView<'a>,
    bias: Option<&'v [f64]>,
    topk: usize,
    subset: Option<&'v [usize]>,
}

impl Job<'_, '_> {
    fn run<F: Fold>(&self) -> Result<HeadResult> {
        let (v, d, n) = (self.w.nrows(), self.w.ncols(), self.c.nrows());
        let k = self.topk;
        let nblocks = n.div_ceil(CTX_BLOCK);
        // Super-block rows: a multiple of the chunk size within the budget.
        let budget_rows = (W_BUDGET_BYTES / (d.max(1) * std::mem::size_of::<F>())).max(VOCAB_CHUNK);
        // The same split whether W is converted or read in place, so both
        // give bitwise the same result.
        let (chunk, super_rows) = if nblocks >= SPLIT_BELOW_BLOCKS {
            // Many contexts: one chunk per super-block, so each context's
            // state stays in its task and is never merged within a super-block.
            let sr = if budget_rows >= v { v } else { budget_rows / VOCAB_CHUNK * VOCAB_CHUNK };
            (sr, sr)
        } else {
            let sr = if budget_rows >= v {
                v.div_ceil(VOCAB_CHUNK) * VOCAB_CHUNK
            } else {
                budget_rows / VOCAB_CHUNK * VOCAB_CHUNK
            };
            (VOCAB_CHUNK, sr)
        };
        let nchunks = v.div_ceil(chunk);
        let with_subset = self.subset.is_some();
        // The bias in the working precision: added to the GEMM's logits
        // before the fold (exact for f64; rounded like the f32 logits for f32).
        let bias_f: Option<Vec<F>> = self.bias.map(|b| b.iter().map(|&x| F::from_f64(x)).collect());
        let bias_f = bias_f.as_deref();
        let mut parts: Vec<Partial> = (0..nblocks * nchunks)
            .map(|i| {
                let b = i / nchunks;
                Partial::new(CTX_BLOCK.min(n - b * CTX_BLOCK), k, with_subset)
            })
            .collect();
        if let Some(rows) = F::pick(&self.direct) {
            // W already in the working precision: read in place, one pass.
            self.check_w(rows, 0)?;
            self.superblock::<F>(&mut parts, nchunks, chunk, 0, v, rows, bias_f)?;
            return Ok(self.merge(parts, nchunks, n, v));
        }
        let mut wbuf: Vec<F> = vec![F::default(); super_rows.min(v) * d];
        let mut r0 = 0;
        while r0 < v {
            let rn = super_rows.min(v - r0);
            let wt = &mut wbuf[..rn * d];
            self.w.read_tile(r0, rn, wt);
            self.check_w(wt, r0)?;
            self.superblock::<F>(&mut parts, nchunks, chunk, r0, rn, wt, bias_f)?;
            r0 += rn;
        }
        drop(wbuf);
        Ok(self.merge(parts, nchunks, n, v))
    }

    fn check_w<F: Float>(&self, rows: &[F], r0: usize) -> Result<()> {
        if self.w.elem().is_float() {
            if let Some((r, col)) = first_non_finite(rows, self.w.ncols()) {
                return Err(Error::InvalidArgument(format!(
                    "W (output matrix) contains NaN or Inf: first non-finite value at row {} (token id), column {col}",
                    r0 + r
                )));
            }
        }
        Ok(())
    }

    /// Run every (block, chunk) task whose chunk lies in vocabulary rows
    /// `r0 .. r0 + rn`, held row-major in `wsb`.
    #[allow(clippy::too_many_arguments)]
    fn superblock<F: Fold>(
        &self,
        parts: &mut [Partial],
        nchunks: usize,
        chunk: usize,
        r0: usize,
        rn: usize,
        wsb: &[F],
        bias_f: Option<&[F]>,
    ) -> Result<()> {
        let (v, d) = (self.w.nrows(), self.w.ncols());
        let (j0, j1) = (r0 / chunk, (r0 + rn).div_ceil(chunk));
        let results: Vec<Result<()>> = parts
            .par_chunks_mut(nchunks)
            .enumerate()
            .flat_map(|(b, ps)| ps[j0..j1].par_iter_mut().enumerate().map(move |(jj, p)| (b, j0 + jj, p)))
            .map(|(b, j, p)| {
                let lo = j * chunk;
                let hi = ((j + 1) * chunk).min(v);
                self.task::<F>(b, lo, hi, &wsb[(lo - r0) * d..(hi - r0) * d], bias_f, p)
            })
            .collect();
        // Collected in (block, chunk) order: the first error is the one at
        // the lowest context row.
        results.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(())
    }

    /// Fold contexts of block `b` against vocabulary rows `lo..hi` (`w_rows`
    /// holds them converted, row-major) into `p`.
    fn task<F: Fold>(
        &self,
        b: usize,
        lo: usize,
        hi: usize,
        w_rows: &[F],
        bias_f: Option<&[F]>,
        p: &mut Partial,
    ) -> Result<()> {
        let d = self.w.ncols();
        let c0 = b * CTX_BLOCK;
        let cn = p.lse.len();
        let mut cb: Vec<F> = vec![F::default(); cn * d];
        self.c.read_tile(c0, cn, &mut cb);
        if self.c.elem().is_float() {
            if let Some((r, col)) = first_non_finite(&cb, d) {
                // the contexts are the streamed input: NonFinite, so Python
                // gets a NonFiniteError with .row and .col like every kernel's
                return Err(Error::NonFiniteIn { what: "C (contexts)", row: (c0 + r) as u64, col });
            }
        }
        let k = self.topk;
        let tile = VOCAB_TILE.min(hi - lo);
        let mut logits: Vec<F> = vec![F::default(); tile * cn];
        let mut xs = vec![F::default(); tile];
        let mut gathered: Vec<f64> = Vec::new();
        let ct = MatRef::from_column_major_slice(&cb[..], d, cn);
        let mut t0 = lo;
        while t0 < hi {
            let tn = VOCAB_TILE.min(hi - t0);
            let wt = MatRef::from_row_major_slice(&w_rows[(t0 - lo) * d..(t0 - lo + tn) * d], tn, d);
            let out = MatMut::from_column_major_slice_mut(&mut logits[..tn * cn], tn, cn);
            faer::linalg::matmul::matmul(out, Accum::Replace, wt, ct, F::from_f64(1.0), Par::Seq);
            let bias = bias_f.map(|bb| &bb[t0..t0 + tn]);
            let sub_ids = self.subset.map(|s| {
                let a = s.partition_point(|&t| t < t0);
                let z = s.partition_point(|&t| t < t0 + tn);
                &s[a..z]
            });
            for ci in 0..cn {
                let col = &logits[ci * tn..(ci + 1) * tn];
                let x = &mut xs[..tn];
                let (m, finite) = load_max(col, bias, x);
                if !finite {
                    let i = x.iter().position(|z| !z.is_finite_()).unwrap_or(0);
                    return Err(Error::InvalidArgument(format!(
                        "a logit is not finite (context row {}, token id {}): the product overflowed \
                         the working precision; pass float64 W and C",
                        c0 + ci,
                        t0 + i
                    )));
                }
                let s = F::sum_exp(x, m);
                let m = m.to_f64();
                p.lse[ci].merge(&LogSumExp { max: m, sum: s });
                if let Some(ids) = sub_ids {
                    if !ids.is_empty() {
                        gathered.clear();
                        gathered.extend(ids.iter().map(|&t| x[t - t0].to_f64()));
                        p.sub[ci].update(&gathered);
                    }
                }
                if k > 0 {
                    let vals = &mut p.top_val[ci * k..(ci + 1) * k];
                    let idx = &mut p.top_idx[ci * k..(ci + 1) * k];
                    let mut thr = vals[k - 1];
                    // Nothing in this tile can enter the list unless it beats
                    // the current k-th value: one comparison per logit.
                    if m > thr {
                        for (i, z) in x.iter().enumerate() {
                            let z = z.to_f64();
                            if z > thr {
                                topk_insert(vals, idx, z, (t0 + i) as u32);
                                thr = vals[k - 1];
                            }
                        }
                    }
                }
            }
            t0 += tn;
        }
        Ok(())
    }

    /// Merge the partials of every block in vocabulary order.
    fn merge(&self, parts: Vec<Partial>, nchunks: usize, n: usize, v: usize) -> HeadResult {
        let k = self.topk;
        let with_subset = self.subset.is_some();
        let mut log_z = Vec::with_capacity(n);
        let mut sub = if with_subset { Vec::with_capacity(n) } else { Vec::new() };
        let mut topk_indices = Vec::with_capacity(n * k);
        let mut topk_logits = Vec::with_capacity(n * k);
        for block in parts.chunks(nchunks) {
            let mut acc = block[0].clone();
            for p in &block[1..] {
                for (a, b) in acc.lse.iter_mut().zip(&p.lse) {
                    a.merge(b);
                }
                for (a, b) in acc.sub.iter_mut().zip(&p.sub) {
                    a.merge(b);
                }
                if k > 0 {
                    for r in 0..acc.lse.len() {
                        let vals = &mut acc.top_val[r * k..(r + 1) * k];
                        let idx = &mut acc.top_idx[r * k..(r + 1) * k];
                        for q in 0..k {
                            let (x, id) = (p.top_val[r * k + q], p.top_idx[r * k + q]);
                            if x > vals[k - 1] {
                                topk_insert(vals, idx, x, id);
                            } else {
                                break; // p's list is descending
                            }
                        }
                    }
                }
            }
            for (r, l) in acc.lse.iter().enumerate() {
                let lz = l.value();
                log_z.push(lz);
                if with_subset {
                    sub.push(acc.sub[r].value() - lz);
                }
            }
            topk_indices.extend_from_slice(&acc.top_idx);
            topk_logits.extend_from_slice(&acc.top_val);
        }
        HeadResult {
            n,
            vocab: v,
            log_z,
            topk: k,
            topk_indices,
            topk_logits,
            subset_log_mass: if with_subset { Some(sub) } else { None },
        }
    }
}

// ---------------------------------------------------------------- fold kernels
//
// Two passes over one context's tile of logits (≤ VOCAB_TILE values, in L1):
// z = logit + bias with the running max, then Σ exp(z − max) accumulated in
// f64. For f32 products the exponentials are evaluated in f32 (16 lanes per
// AVX-512 register; relative error < 2e-7, below the f32 logits' own
// rounding) and summed in f64; for f64 products everything is f64. Each
// kernel is compiled for AVX-512 and AVX2 and picked at run time; independent
// accumulators let the compiler vectorise without reassociating.

/// Working precisions of the fold: Σ exp(z − m) accumulated in f64
/// ([`ExpSum`]).
pub(crate) trait Fold: Float + ExpSum {
    /// W's rows in this precision, when given in place.
    fn pick<'s>(d: &Direct<'s>) -> Option<&'s [Self]>;
}

impl Fold for f64 {
    fn pick<'s>(d: &Direct<'s>) -> Option<&'s [f64]> {
        d.f64
    }
}

impl Fold for f32 {
    fn pick<'s>(d: &Direct<'s>) -> Option<&'s [f32]> {
        d.f32
    }
}

dispatch! {
    /// z_i = col_i + bias_i into `out`; returns (max z, every z finite).
    fn load_max[F: Float][F](col: &[F], bias: Option<&[F]>, out: &mut [F]) -> (F, bool)
        = load_max_generic; avx2 "avx2", "fma";
}

#[inline(always)]
fn load_max_generic<F: Float>(col: &[F], bias: Option<&[F]>, out: &mut [F]) -> (F, bool) {
    const L: usize = 16;
    let n = col.len();
    let out = &mut out[..n];
    match bias {
        Some(b) => {
            let b = &b[..n];
            for i in 0..n {
                out[i] = col[i] + b[i];
            }
        }
        None => out.copy_from_slice(col),
    }
    // z·0 is NaN exactly when z is NaN or ±Inf: one multiply-add per value
    // detects overflowed logits without a branch.
    let zero = F::from_f64(0.0);
    let mut mx = [F::from_f64(f64::NEG_INFINITY); L];
    let mut probe = [zero; L];
    let chunks = out.chunks_exact(L);
    let rem = chunks.remainder();
    for c in chunks {
        for j in 0..L {
            mx[j] = if c[j] > mx[j] { c[j] } else { mx[j] };
            probe[j] += c[j] * zero;
        }
    }
    let mut m = F::from_f64(f64::NEG_INFINITY);
    let mut pr = zero;
    for &z in rem {
        m = if z > m { z } else { m };
        pr += z * zero;
    }
    for j in 0..L {
        m = if mx[j] > m { mx[j] } else { m };
        pr += probe[j];
    }
    (m, pr.is_finite_())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        }
    }

    /// Direct float64 reference: logits, log Z, top-k, subset mass.
    fn reference(w: &[f64], c: &[f64], b: Option<&[f64]>, v: usize, d: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
        let n = c.len() / d.max(1);
        let n = if d == 0 { c.len() } else { n };
        let mut all = Vec::new();
        let mut lz = Vec::new();
        for i in 0..n {
            let z: Vec<f64> = (0..v)
                .map(|t| {
                    let dot: f64 = (0..d).map(|j| w[t * d + j] * c[i * d + j]).sum();
                    dot + b.map_or(0.0, |b| b[t])
                })
                .collect();
            let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            lz.push(m + z.iter().map(|x| (x - m).exp()).sum::<f64>().ln());
            all.push(z);
        }
        (all, lz)
    }

    fn check(v: usize, d: usize, n: usize, scale: f64, k: usize) {
        let mut r = rng((v * 31 + d * 7 + n) as u64);
        let w: Vec<f64> = (0..v * d).map(|_| r() * scale).collect();
        let c: Vec<f64> = (0..n * d).map(|_| r() * scale).collect();
        let b: Vec<f64> = (0..v).map(|_| r() * 3.0).collect();
        let subset: Vec<usize> = (0..v).step_by(7).chain([3, 3]).collect();
        let wv = MatView::row_major(&w, v, d).unwrap();
        let cv = MatView::row_major(&c, n, d).unwrap();
        let opts = HeadOptions { bias: Some(&b), topk: k, subset: Some(&subset) };
        let res = log_partition_head(&wv, &cv, &opts, Some(3)).unwrap();
        let (logits, lz) = reference(&w, &c, Some(&b), v, d);
        let mut sset: Vec<usize> = subset.clone();
        sset.sort();
        sset.dedup();
        for i in 0..n {
            let tol = 1e-12 * lz[i].abs().max(1.0);
            assert!((res.log_z[i] - lz[i]).abs() < tol, "row {i}: {} vs {}", res.log_z[i], lz[i]);
            let z = &logits[i];
            let mut order: Vec<usize> = (0..v).collect();
            order.sort_by(|&a, &b| z[b].partial_cmp(&z[a]).unwrap().then(a.cmp(&b)));
            for q in 0..k {
                assert_eq!(res.topk_indices[i * k + q] as usize, order[q]);
                assert!((res.topk_logits[i * k + q] - z[order[q]]).abs() < tol);
            }
            let m = sset.iter().map(|&t| z[t]).fold(f64::NEG_INFINITY, f64::max);
            let ls = m + sset.iter().map(|&t| (z[t] - m).exp()).sum::<f64>().ln() - lz[i];
            let got = res.subset_log_mass.as_ref().unwrap()[i];
            assert!((got - ls).abs() < tol, "subset row {i}: {got} vs {ls}");
        }
    }

    #[test]
    fn matches_reference_small_and_chunked() {
        check(7, 3, 5, 1.0, 3);
        check(5000, 16, 11, 1.0, 5); // several vocab chunks and tiles
        check(300, 8, 600, 1.0, 2); // several context blocks
        check(2100, 40, 40, 6.0, 1); // logits far above 1e3
    }

    #[test]
    fn many_blocks_single_chunk_and_threads_agree() {
        let (v, d, n) = (1500, 12, SPLIT_BELOW_BLOCKS * CTX_BLOCK + 17);
        let mut r = rng(9);
        let w: Vec<f32> = (0..v * d).map(|_| r() as f32).collect();
        let c: Vec<f32> = (0..n * d).map(|_| (r() * 4.0) as f32).collect();
        let wv = MatView::row_major(&w, v, d).unwrap();
        let cv = MatView::row_major(&c, n, d).unwrap();
        let o = HeadOptions { topk: 2, ..Default::default() };
        let a = log_partition_head(&wv, &cv, &o, Some(1)).unwrap();
        let b = log_partition_head(&wv, &cv, &o, Some(4)).unwrap();
        assert_eq!(a, b, "results must not depend on the thread count");
        // f32 GEMM against an f64 reference on the f32 values.
        let w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
        for i in [0usize, 1, n / 2, n - 1] {
            let z: Vec<f64> = (0..v).map(|t| (0..d).map(|j| w64[t * d + j] * c[i * d + j] as f64).sum()).collect();
            let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lz = m + z.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            assert!((a.log_z[i] - lz).abs() < 1e-4, "{} vs {lz}", a.log_z[i]);
        }
    }

    #[test]
    fn bad_inputs_are_named() {
        let w = vec![1.0f64; 12];
        let wv = MatView::row_major(&w, 4, 3).unwrap();
        let c = vec![0.5f64; 6];
        let cv = MatView::row_major(&c, 2, 3).unwrap();
        let empty: Vec<f64> = Vec::new();
        let e = log_partition_head(&MatView::row_major(&empty, 0, 3).unwrap(), &cv, &HeadOptions::default(), None);
        assert!(matches!(e, Err(Error::Empty(_))));
        let c2 = vec![0.5f64; 4];
        let e = log_partition_head(&wv, &MatView::row_major(&c2, 2, 2).unwrap(), &HeadOptions::default(), None);
        assert!(matches!(e, Err(Error::DimMismatch { expected: 3, got: 2, .. })));
        let mut wn = w.clone();
        wn[7] = f64::NAN;
        let e = log_partition_head(&MatView::row_major(&wn, 4, 3).unwrap(), &cv, &HeadOptions::default(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("W") && e.contains("row 2"), "{e}");
        let mut cn = c.clone();
        cn[4] = f64::INFINITY;
        let e = log_partition_head(&wv, &MatView::row_major(&cn, 2, 3).unwrap(), &HeadOptions::default(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("C") && e.contains("row 1"), "{e}");
        let b = [0.0, 1.0, f64::NAN, 0.0];
        let e = log_partition_head(&wv, &cv, &HeadOptions { bias: Some(&b), ..Default::default() }, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("index 2"), "{e}");
        // f32 overflow of a finite product.
        let wb = vec![1e20f32; 3];
        let cb = vec![1e20f32; 3];
        let e = log_partition_head(
            &MatView::row_major(&wb, 1, 3).unwrap(),
            &MatView::row_major(&cb, 1, 3).unwrap(),
            &HeadOptions::default(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("context row 0"), "{e}");
        let e = log_partition_head(&wv, &cv, &HeadOptions { topk: 5, ..Default::default() }, None);
        assert!(e.is_err());
        let e = log_partition_head(&wv, &cv, &HeadOptions { subset: Some(&[4]), ..Default::default() }, None);
        assert!(e.is_err());
    }

    #[test]
    fn rows_in_place_equal_the_converted_path() {
        let (v, d, n) = (3000, 10, 700);
        let mut r = rng(4);
        let w: Vec<f32> = (0..v * d).map(|_| r() as f32).collect();
        let c: Vec<f32> = (0..n * d).map(|_| (r() * 3.0) as f32).collect();
        let b: Vec<f64> = (0..v).map(|_| r()).collect();
        let cv = MatView::row_major(&c, n, d).unwrap();
        let o = HeadOptions { bias: Some(&b), topk: 3, subset: Some(&[1, 5, 2999]) };
        let conv = log_partition_head(&MatView::row_major(&w, v, d).unwrap(), &cv, &o, Some(2)).unwrap();
        let direct = log_partition_head_rows(&w, v, d, &cv, &o, Some(2)).unwrap();
        assert_eq!(conv, direct);
        // f64 contexts: the f32 rows are converted (f64 GEMM) instead.
        let c64: Vec<f64> = c.iter().map(|&x| x as f64).collect();
        let cv64 = MatView::row_major(&c64, n, d).unwrap();
        let a = log_partition_head_rows(&w, v, d, &cv64, &o, None).unwrap();
        let bb = log_partition_head(&MatView::row_major(&w, v, d).unwrap(), &cv64, &o, None).unwrap();
        assert_eq!(a, bb);
        let mut wn = w.clone();
        wn[7 * d + 3] = f32::NAN;
        let e = log_partition_head_rows(&wn, v, d, &cv, &o, None).unwrap_err().to_string();
        assert!(e.contains("row 7"), "{e}");
        assert!(log_partition_head_rows(&w, v, d + 1, &cv, &o, None).is_err());
    }

    #[test]
    fn exp_f32_is_accurate() {
        let mut worst: f64 = 0.0;
        let mut x = -86.99f32;
        while x <= 0.0 {
            let a = exp_nonpos_f32(x) as f64;
            let b = (x as f64).exp();
            worst = worst.max(((a - b) / b).abs());
            x += 0.00731;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        assert_eq!(exp_nonpos_f32(-100.0), 0.0);
        assert_eq!(exp_nonpos_f32(0.0), 1.0);
    }

    #[test]
    fn edge_shapes() {
        // d = 0: every logit is the bias.
        let w: Vec<f64> = Vec::new();
        let c: Vec<f64> = Vec::new();
        let wv = MatView::row_major(&w, 3, 0).unwrap();
        let cv = MatView::row_major(&c, 2, 0).unwrap();
        let r = log_partition_head(&wv, &cv, &HeadOptions::default(), None).unwrap();
        assert!((r.log_z[0] - 3f64.ln()).abs() < 1e-15);
        // N = 0.
        let w1 = vec![1.0f64; 3];
        let r = log_partition_head(
            &MatView::row_major(&w1, 1, 3).unwrap(),
            &MatView::row_major(&c, 0, 3).unwrap(),
            &HeadOptions::default(),
            None,
        )
        .unwrap();
        assert!(r.log_z.is_empty());
        // Empty subset: log mass −∞.
        let c1 = vec![1.0f64; 3];
        let r = log_partition_head(
            &MatView::row_major(&w1, 1, 3).unwrap(),
            &MatView::row_major(&c1, 1, 3).unwrap(),
            &HeadOptions { subset: Some(&[]), topk: 1, ..Default::default() },
            None,
        )
        .unwrap();
        assert_eq!(r.subset_log_mass.as_ref().unwrap()[0], f64::NEG_INFINITY);
        assert!((r.log_z[0] - 3.0).abs() < 1e-15);
        assert_eq!(r.topk_probs(), vec![1.0]);
    }
}
