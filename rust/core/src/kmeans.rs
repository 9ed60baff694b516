//! Exact, seeded k-means: k-means++ seeding (Arthur & Vassilvitskii 2007, with
//! scikit-learn's greedy variant) and Lloyd iterations accelerated by
//! Hamerly's bounds (Hamerly 2010), with distances from GEMM tiles.
//!
//! Objective: minimise the inertia Σ_i ‖x_i − c_{a(i)}‖² over centres c and
//! labels a. Semantics follow `sklearn.cluster.KMeans(algorithm="lloyd")`:
//!
//! * seeding: first centre uniform; then each next centre is the best of
//!   `2 + ⌊ln k⌋` candidates drawn with probability ∝ D²(x) (the candidate
//!   giving the smallest potential Σ min(D², d²(x, cand)) wins);
//! * tolerance: `tol` is relative, tol_abs = tol · mean_j Var(X[:, j])
//!   (population variance); the loop stops on strict convergence (no label
//!   changed) or when Σ_c ‖c_new − c_old‖² ≤ tol_abs, after `max_iter`
//!   iterations at most, and a final assignment then makes the labels agree
//!   with the returned centres (unless convergence was strict);
//! * empty clusters are re-seeded with the points farthest from their own
//!   centre (unlike scikit-learn, the moved point is relabelled at once, so
//!   the centres are always the means of their labelled points);
//! * `n_init` restarts keep the run with the lowest inertia.
//!
//! Distances. Squared distances come from ‖x‖² − 2x·c + ‖c‖² on row tiles
//! (one GEMM per tile). That formula cancels catastrophically when x ≈ c, so
//! its rounding error is bounded explicitly — |err| ≤ κ(‖x‖² + ‖c‖²),
//! κ = 2(d+2)ε — and whenever that bound cannot single out the nearest centre,
//! the centres it cannot separate are re-measured exactly as Σ(x_j − c_j)².
//! Labels are therefore the argmin of exact distances (ties → lowest index, as
//! scikit-learn), the Hamerly bounds stay valid, and the inertia is computed
//! exactly. Callers centre the data first (the clustered-isotropy
//! recipe centres globally), which keeps κ‖x‖² small next to real distances.
//!
//! Pruning. Hamerly keeps, per point, an upper bound u on the distance to its
//! centre and a lower bound l on the distance to every other centre; a point
//! whose u ≤ max(l, ½ min_{j≠a} ‖c_a − c_j‖) cannot change label and is
//! skipped. Only the remaining rows are gathered into a tile for the GEMM, so
//! late iterations cost O(n) instead of O(n·k·d). (Hamerly's extra step of
//! re-measuring u exactly before a full search is dropped: with GEMM tiles a
//! full search costs one read of the row, as that single distance would.)
//!
//! Determinism. All randomness comes from a seeded SplitMix64 stream; work is
//! split into fixed blocks of rows (independent of the thread count), each
//! block uses single-threaded GEMMs, and every reduction is summed in block
//! order. Results are bitwise identical for any `n_threads`.

// The primitives below moved to their own modules; re-exported under their former paths.
pub use crate::points::{column_mean, distinct_rows, Points, PointsRef};
pub use crate::random::{derive_seed, sample_indices, SplitMix64};
pub use crate::vector::{add_assign, axpy_centered, sqdist, sqnorm};

use crate::error::{invalid, Result};
use crate::points::BLOCK;
use crate::source::{Float, MatView};
use faer::{Accum, Mat, MatRef, Par};
use rayon::prelude::*;

/// Bound factor κ of the Gram-formula error in a GEMM of precision `eps`
/// (machine epsilon): |d²_gram − d²| ≤ κ(‖x‖² + ‖c‖²), κ = 2(d+2)·eps (the
/// +2 covers rounding the operands to that precision).
#[inline]
pub(crate) fn gram_kappa_eps(d: usize, eps: f64) -> f64 {
    2.0 * (d as f64 + 2.0) * eps
}

/// Gᵀ = B·Aᵀ (k × m) for row-major A (m×d, the many rows) and B (k×d, the
/// few centres), single-threaded. This orientation (big operand on the
/// right, read column-major) runs about twice as fast in faer as A·Bᵀ.
pub(crate) fn gram_t<F: Float>(a: &[F], m: usize, b: &[F], k: usize, d: usize) -> Mat<F> {
    let mut g = Mat::<F>::zeros(k, m);
    if m > 0 && k > 0 && d > 0 {
        faer::linalg::matmul::matmul(
            g.as_mut(),
            Accum::Replace,
            MatRef::from_row_major_slice(b, k, d),
            MatRef::from_row_major_slice(a, m, d).transpose(),
            F::from_f64(1.0),
            Par::Seq,
        );
    }
    g
}

/// Centres ready for distance GEMMs: squared norms and, for points with an
/// f32 mirror, an f32 copy.
pub(crate) struct CentreSet<'a> {
    pub c: &'a [f64],
    pub c32: Option<Vec<f32>>,
    pub csq: Vec<f64>,
    pub k: usize,
    pub d: usize,
}

impl<'a> CentreSet<'a> {
    pub fn new(c: &'a [f64], k: usize, d: usize, f32_gemm: bool) -> Self {
        let csq = c.chunks_exact(d.max(1)).take(k).map(sqnorm).collect();
        CentreSet { c, c32: f32_gemm.then(|| c.iter().map(|&v| v as f32).collect()), csq, k, d }
    }
    fn row(&self, j: usize) -> &[f64] {
        &self.c[j * self.d..(j + 1) * self.d]
    }
}

/// Result of a nearest-centre search for one point.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Nearest {
    pub label: u32,
    /// Upper bound on the squared distance to the chosen centre (exact when
    /// the choice needed exact distances).
    pub d2_upper: f64,
    /// Lower bound on the squared distance to every other centre.
    pub second_lower: f64,
}

/// Nearest centre of the rows `sel` of `p` (all rows when `None`), the argmin
/// of the exact distances: Gram distances ± their error bound decide whenever
/// one centre is unambiguously nearest (no extra read of the row); otherwise
/// the centres the bound cannot separate are measured exactly in f64 (ties →
/// lowest index). The GEMM runs in f32 when `p` has an f32 mirror.
pub(crate) fn nearest_block(p: PointsRef<'_>, sel: Option<&[usize]>, cent: &CentreSet<'_>) -> Vec<Nearest> {
    match (p.data32, &cent.c32) {
        (Some(x32), Some(c32)) => nearest_in::<f32>(p, x32, sel, c32, cent, f32::EPSILON as f64),
        _ => nearest_in::<f64>(p, p.data, sel, cent.c, cent, f64::EPSILON),
    }
}

fn nearest_in<F: Float>(
    p: PointsRef<'_>,
    xs: &[F],
    sel: Option<&[usize]>,
    cf: &[F],
    cent: &CentreSet<'_>,
    eps: f64,
) -> Vec<Nearest> {
    let (k, d) = (cent.k, cent.d);
    let gathered;
    let (rows, m): (&[F], usize) = match sel {
        None => (xs, p.n),
        Some(idx) => {
            let mut g = Vec::with_capacity(idx.len() * d);
            for &r in idx {
                g.extend_from_slice(&xs[r * d..(r + 1) * d]);
            }
            gathered = g;
            (&gathered, idx.len())
        }
    };
    let g = gram_t(rows, m, cf, k, d);
    let kappa = gram_kappa_eps(d, eps);
    let csq = &cent.csq;
    let mut out = Vec::with_capacity(m);
    let mut approx = vec![0.0f64; k];
    let mut margin = vec![0.0f64; k];
    let mut exact = vec![f64::NAN; k];
    for t in 0..m {
        let r = sel.map_or(t, |idx| idx[t]);
        let sq = p.sq[r];
        let col = g.col(t).try_as_col_major().expect("contiguous column").as_slice();
        let mut best_hi = f64::INFINITY;
        let mut arg_hi = 0;
        for j in 0..k {
            approx[j] = sq + csq[j] - 2.0 * col[j].to_f64();
            margin[j] = kappa * (sq + csq[j]);
            let hi = approx[j] + margin[j];
            if hi < best_hi {
                best_hi = hi;
                arg_hi = j;
            }
        }
        let ambiguous = (0..k).any(|j| j != arg_hi && approx[j] - margin[j] <= best_hi);
        if !ambiguous {
            let second =
                (0..k).filter(|&j| j != arg_hi).map(|j| (approx[j] - margin[j]).max(0.0)).fold(f64::INFINITY, f64::min);
            out.push(Nearest { label: arg_hi as u32, d2_upper: best_hi.max(0.0), second_lower: second });
            continue;
        }
        let x = p.row(r);
        let mut label = usize::MAX;
        let mut best = f64::INFINITY;
        for j in 0..k {
            exact[j] = f64::NAN;
            if approx[j] - margin[j] <= best_hi {
                let e = sqdist(x, cent.row(j));
                exact[j] = e;
                if e < best {
                    best = e;
                    label = j;
                }
            }
        }
        let mut second = f64::INFINITY;
        for j in 0..k {
            if j != label {
                let lo = if exact[j].is_nan() { (approx[j] - margin[j]).max(0.0) } else { exact[j] };
                second = second.min(lo);
            }
        }
        out.push(Nearest { label: label as u32, d2_upper: best, second_lower: second });
    }
    out
}

/// Nearest centre (exact argmin) of every point.
pub fn assign(p: PointsRef<'_>, centers: &[f64], k: usize) -> Vec<u32> {
    let cent = CentreSet::new(centers, k, p.d, p.data32.is_some());
    let res: Vec<Vec<Nearest>> = (0..p.n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let s = b * BLOCK;
            nearest_block(p.rows(s, BLOCK.min(p.n - s)), None, &cent)
        })
        .collect();
    res.into_iter().flatten().map(|r| r.label).collect()
}

// ---------------------------------------------------------------------------
// Seeding
// ---------------------------------------------------------------------------

/// Squared distances from every point to each candidate row (`cands` indices
/// into `p`), candidate-major (`cands.len() × n`). Gram distances, with exact
/// re-measurement where the Gram error bound reaches zero.
fn dist2_to_rows(p: PointsRef<'_>, cands: &[usize]) -> Vec<f64> {
    match p.data32 {
        Some(x32) => dist2_in::<f32>(p, x32, cands, f32::EPSILON as f64),
        None => dist2_in::<f64>(p, p.data, cands, f64::EPSILON),
    }
}

fn dist2_in<F: Float>(p: PointsRef<'_>, xs: &[F], cands: &[usize], eps: f64) -> Vec<f64> {
    let (n, d, t) = (p.n, p.d, cands.len());
    let mut cdata: Vec<F> = Vec::with_capacity(t * d);
    for &c in cands {
        cdata.extend_from_slice(&xs[c * d..(c + 1) * d]);
    }
    let csq: Vec<f64> = cands.iter().map(|&c| p.sq[c]).collect();
    let kappa = gram_kappa_eps(d, eps);
    let blocks: Vec<Vec<f64>> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let s = b * BLOCK;
            let len = BLOCK.min(n - s);
            let g = gram_t(&xs[s * d..(s + len) * d], len, &cdata, t, d);
            let mut out = vec![0.0f64; t * len];
            for j in 0..t {
                for r in 0..len {
                    let sq = p.sq[s + r];
                    let approx = sq + csq[j] - 2.0 * g[(j, r)].to_f64();
                    out[j * len + r] =
                        if approx <= kappa * (sq + csq[j]) { sqdist(p.row(s + r), p.row(cands[j])) } else { approx };
                }
            }
            out
        })
        .collect();
    let mut res = vec![0.0f64; t * n];
    for (b, blk) in blocks.iter().enumerate() {
        let s = b * BLOCK;
        let len = blk.len() / t.max(1);
        for j in 0..t {
            res[j * n + s..j * n + s + len].copy_from_slice(&blk[j * len..(j + 1) * len]);
        }
    }
    res
}

/// Fixed-order sum (block partials, then in order).
fn det_sum(v: &[f64]) -> f64 {
    let parts: Vec<f64> = v.par_chunks(4 * BLOCK).map(|c| c.iter().sum::<f64>()).collect();
    parts.iter().sum()
}

/// scikit-learn's number of greedy local trials per k-means++ centre.
pub fn local_trials(k: usize) -> usize {
    2 + (k.max(1) as f64).ln().floor() as usize
}

/// The random stream of a k-means++ seeding: it depends on the number of
/// local trials, not on k, so (as with scikit-learn's fixed `random_state`)
/// the seeding of k is a prefix of the seeding of any larger k with the same
/// number of trials — model selection over k seeds each group once.
pub fn seeding_stream(seed: u64, trials: usize, restart: usize) -> SplitMix64 {
    SplitMix64::new(derive_seed(seed, &[trials as u64, restart as u64]))
}

/// k-means++ seeding with `trials` greedy local trials per centre
/// (scikit-learn's `_kmeans_plusplus`; use [`local_trials`]). Returns `k × d`
/// centres.
pub fn kmeans_plusplus(p: PointsRef<'_>, k: usize, trials: usize, rng: &mut SplitMix64) -> Vec<f64> {
    let (n, d) = (p.n, p.d);
    let trials = trials.max(1);
    let mut centers = Vec::with_capacity(k * d);
    let first = rng.below(n as u64) as usize;
    centers.extend_from_slice(p.row(first));
    let mut closest = dist2_to_rows(p, &[first]);
    let mut pot = det_sum(&closest);
    let mut cum = vec![0.0f64; n];
    for _ in 1..k {
        let mut acc = 0.0;
        for (c, v) in cum.iter_mut().zip(&closest) {
            acc += v;
            *c = acc;
        }
        // searchsorted(cumsum, r, side="left"), clipped to n − 1.
        let cands: Vec<usize> = (0..trials)
            .map(|_| {
                let r = rng.uniform() * pot;
                cum.partition_point(|&c| c < r).min(n - 1)
            })
            .collect();
        let mut dist = dist2_to_rows(p, &cands);
        for j in 0..trials {
            dist[j * n..(j + 1) * n].par_iter_mut().zip(closest.par_iter()).for_each(|(a, c)| *a = a.min(*c));
        }
        let pots: Vec<f64> = (0..trials).map(|j| det_sum(&dist[j * n..(j + 1) * n])).collect();
        let mut best = 0;
        for j in 1..trials {
            if pots[j] < pots[best] {
                best = j;
            }
        }
        pot = pots[best];
        closest.copy_from_slice(&dist[best * n..(best + 1) * n]);
        centers.extend_from_slice(p.row(cands[best]));
    }
    centers
}

// ---------------------------------------------------------------------------
// Lloyd with Hamerly bounds
// ---------------------------------------------------------------------------

/// Parameters of one k-means fit.
#[derive(Clone, Debug)]
pub struct KMeansParams {
    pub k: usize,
    /// Restarts (each with its own seed); the lowest inertia is kept.
    pub n_init: usize,
    pub max_iter: usize,
    /// Relative tolerance (scikit-learn's `tol`).
    pub tol: f64,
    pub seed: u64,
}

impl KMeansParams {
    pub fn new(k: usize, seed: u64) -> Self {
        KMeansParams { k, n_init: 1, max_iter: 300, tol: 1e-4, seed }
    }
}

/// A fitted k-means model.
#[derive(Clone, Debug)]
pub struct KMeansFit {
    pub k: usize,
    /// `k × d` row-major centres (in the coordinates of the fitted points).
    pub centers: Vec<f64>,
    pub labels: Vec<u32>,
    /// Σ_i ‖x_i − c_{a(i)}‖² (exact).
    pub inertia: f64,
    /// Lloyd iterations run (of the kept restart).
    pub n_iter: usize,
    /// False when `max_iter` was reached before either stopping rule held.
    pub converged: bool,
    /// Empty clusters re-seeded during the kept run.
    pub n_relocated: usize,
}

/// Absolute tolerance: tol · mean_j Var(X[:, j]) (population variance).
pub fn tolerance(p: PointsRef<'_>, tol: f64) -> f64 {
    if tol == 0.0 || p.n == 0 || p.d == 0 {
        return 0.0;
    }
    let mean = column_mean(p);
    let d = p.d;
    let parts: Vec<f64> = p
        .data
        .par_chunks(BLOCK * d)
        .map(|blk| blk.chunks_exact(d).map(|row| sqdist(row, &mean)).sum::<f64>())
        .collect();
    let total: f64 = parts.iter().sum();
    tol * total / (p.n as f64 * d as f64)
}

/// Validate, then run `n_init` seeded restarts and keep the lowest inertia.
pub fn kmeans(p: PointsRef<'_>, params: &KMeansParams) -> Result<KMeansFit> {
    check_params(p, params)?;
    let distinct = distinct_rows(p, params.k);
    if distinct < params.k {
        return invalid(format!(
            "k = {} exceeds the number of distinct rows ({distinct}): k-means cannot form more non-empty clusters than distinct points",
            params.k
        ));
    }
    let tol_abs = tolerance(p, params.tol);
    Ok(kmeans_unchecked(p, params, tol_abs))
}

/// k-means on every row of `x` (read into memory as f64, n·d·8 bytes): the
/// rows are centred at their mean for accurate Gram distances and the centres
/// are returned in the input's coordinates (scikit-learn does the same).
pub fn kmeans_view(x: &MatView<'_>, params: &KMeansParams, n_threads: Option<usize>) -> Result<KMeansFit> {
    crate::source::require_cols(x, "k-means")?;
    crate::threads::install(n_threads, || {
        let mut p = Points::gather(x, None, None)?;
        let mean = p.mean();
        p.subtract(&mean);
        if !x.elem().needs_f64() {
            p = p.with_f32_mirror();
        }
        let mut fit = kmeans(p.as_ref(), params)?;
        for c in fit.centers.chunks_exact_mut(p.dim().max(1)) {
            for (v, m) in c.iter_mut().zip(&mean) {
                *v += m;
            }
        }
        Ok(fit)
    })
}

pub(crate) fn check_params(p: PointsRef<'_>, params: &KMeansParams) -> Result<()> {
    if params.k < 1 {
        return invalid("k-means needs k ≥ 1 clusters");
    }
    if p.n < params.k {
        return invalid(format!("k-means with k = {} needs at least k rows, got {}", params.k, p.n));
    }
    if p.d == 0 {
        return invalid("k-means needs at least one column");
    }
    if params.n_init < 1 {
        return invalid("n_init must be at least 1");
    }
    if params.max_iter < 1 {
        return invalid("max_iter must be at least 1");
    }
    if !(params.tol >= 0.0 && params.tol.is_finite()) {
        return invalid(format!("tol must be a finite number ≥ 0, got {}", params.tol));
    }
    Ok(())
}

pub(crate) fn kmeans_unchecked(p: PointsRef<'_>, params: &KMeansParams, tol_abs: f64) -> KMeansFit {
    let seeds: Vec<Vec<f64>> = (0..params.n_init)
        .map(|init| {
            if params.k == 1 {
                column_mean(p)
            } else {
                let trials = local_trials(params.k);
                kmeans_plusplus(p, params.k, trials, &mut seeding_stream(params.seed, trials, init))
            }
        })
        .collect();
    best_of(p, params.k, seeds, params.max_iter, tol_abs)
}

/// Lloyd from each seeding; the lowest inertia wins (the first on ties).
pub(crate) fn best_of(p: PointsRef<'_>, k: usize, seeds: Vec<Vec<f64>>, max_iter: usize, tol_abs: f64) -> KMeansFit {
    let mut best: Option<KMeansFit> = None;
    for c in seeds {
        let fit = lloyd(p, c, k, max_iter, tol_abs);
        if best.as_ref().is_none_or(|b| fit.inertia < b.inertia) {
            best = Some(fit);
        }
    }
    best.expect("at least one seeding")
}

/// What one block of an assignment step found.
struct BlockOut {
    changes: Vec<Change>,
    /// The block's contribution to the cluster sums (k × d).
    sums: Option<Vec<f64>>,
}

/// One change of label found by an assignment step.
#[derive(Clone, Copy)]
struct Change {
    i: u32,
    old: u32,
    new: u32,
}

const NO_LABEL: u32 = u32::MAX;

struct Lloyd<'a> {
    p: PointsRef<'a>,
    k: usize,
    centers: Vec<f64>,
    labels: Vec<u32>,
    upper: Vec<f64>,
    lower: Vec<f64>,
    sums: Vec<f64>,
    counts: Vec<u64>,
}

impl Lloyd<'_> {
    /// ½ distance from each centre to its nearest other centre.
    fn half_separation(&self) -> Vec<f64> {
        let (k, d) = (self.k, self.p.d);
        (0..k)
            .map(|a| {
                let ca = &self.centers[a * d..(a + 1) * d];
                let m = (0..k)
                    .filter(|&b| b != a)
                    .map(|b| sqdist(ca, &self.centers[b * d..(b + 1) * d]))
                    .fold(f64::INFINITY, f64::min);
                0.5 * m.sqrt()
            })
            .collect()
    }

    /// Assignment step. `full` searches every point (first step); otherwise
    /// Hamerly's test skips points that cannot change label. While a block's
    /// rows are hot in cache it also produces its contribution to the cluster
    /// sums: all its rows by label when `full`, else ± the rows that changed.
    fn assign_step(&mut self, full: bool) -> Vec<BlockOut> {
        let (k, d, p) = (self.k, self.p.d, self.p);
        let half = if full { vec![0.0; k] } else { self.half_separation() };
        let cent = CentreSet::new(&self.centers, k, d, p.data32.is_some());
        self.labels
            .par_chunks_mut(BLOCK)
            .zip(self.upper.par_chunks_mut(BLOCK))
            .zip(self.lower.par_chunks_mut(BLOCK))
            .enumerate()
            .map(|(b, ((lab, up), lo))| {
                let s = b * BLOCK;
                let len = lab.len();
                let mut need: Vec<usize> = Vec::new();
                for r in 0..len {
                    if full || lab[r] == NO_LABEL {
                        need.push(r);
                        continue;
                    }
                    // No "tightening" of u by one exact distance: with GEMM
                    // tiles a full search reads the row once, as would the
                    // single distance.
                    let a = lab[r] as usize;
                    if up[r] > half[a].max(lo[r]) {
                        need.push(r);
                    }
                }
                let mut out = BlockOut { changes: Vec::new(), sums: None };
                if need.is_empty() {
                    return out;
                }
                let blk = p.rows(s, len);
                let found: Vec<Nearest> = if need.len() * 2 >= len {
                    // Most rows need a search: the whole block in place beats a gather copy.
                    let all = nearest_block(blk, None, &cent);
                    need.iter().map(|&r| all[r]).collect()
                } else {
                    nearest_block(blk, Some(&need), &cent)
                };
                for (&r, f) in need.iter().zip(&found) {
                    if f.label != lab[r] {
                        out.changes.push(Change { i: (s + r) as u32, old: lab[r], new: f.label });
                        lab[r] = f.label;
                    }
                    up[r] = f.d2_upper.sqrt();
                    lo[r] = f.second_lower.sqrt();
                }
                if full {
                    let mut part = vec![0.0f64; k * d];
                    #[allow(clippy::needless_range_loop)]
                    for r in 0..len {
                        let c = lab[r] as usize;
                        add_assign(&mut part[c * d..(c + 1) * d], blk.row(r), false);
                    }
                    out.sums = Some(part);
                } else if !out.changes.is_empty() {
                    let mut delta = vec![0.0f64; k * d];
                    for ch in &out.changes {
                        let row = p.row(ch.i as usize);
                        if ch.old != NO_LABEL {
                            let o = ch.old as usize;
                            add_assign(&mut delta[o * d..(o + 1) * d], row, true);
                        }
                        let c = ch.new as usize;
                        add_assign(&mut delta[c * d..(c + 1) * d], row, false);
                    }
                    out.sums = Some(delta);
                }
                out
            })
            .collect()
    }

    /// Fold the block contributions of an assignment step into the sums and
    /// counts (in block order: deterministic). Returns the label changes.
    fn fold_blocks(&mut self, outs: Vec<BlockOut>, full: bool) -> Vec<Change> {
        let d = self.p.d;
        if full {
            self.sums.iter_mut().for_each(|v| *v = 0.0);
            self.counts.iter_mut().for_each(|c| *c = 0);
            for &l in &self.labels {
                self.counts[l as usize] += 1;
            }
        }
        let mut changes = Vec::new();
        for o in outs {
            if let Some(part) = &o.sums {
                let touched: Vec<usize> = if full {
                    (0..self.k).collect()
                } else {
                    let mut t: Vec<usize> = o
                        .changes
                        .iter()
                        .flat_map(|c| [c.old, c.new])
                        .filter(|&c| c != NO_LABEL)
                        .map(|c| c as usize)
                        .collect();
                    t.sort_unstable();
                    t.dedup();
                    t
                };
                for c in touched {
                    add_assign(&mut self.sums[c * d..(c + 1) * d], &part[c * d..(c + 1) * d], false);
                }
            }
            if !full {
                for ch in &o.changes {
                    if ch.old != NO_LABEL {
                        self.counts[ch.old as usize] -= 1;
                    }
                    self.counts[ch.new as usize] += 1;
                }
            }
            changes.extend(o.changes);
        }
        changes
    }

    /// Cluster sums and counts from scratch (each cluster summed in row order).
    fn recompute_sums(&mut self) {
        let (d, p, labels) = (self.p.d, self.p, &self.labels);
        self.sums.par_chunks_mut(d).zip(self.counts.par_iter_mut()).enumerate().for_each(|(c, (s, cnt))| {
            s.iter_mut().for_each(|v| *v = 0.0);
            *cnt = 0;
            for (i, &l) in labels.iter().enumerate() {
                if l as usize == c {
                    *cnt += 1;
                    add_assign(s, p.row(i), false);
                }
            }
        });
    }

    /// Re-seed empty clusters with the points farthest from their current
    /// centre (scikit-learn's rule). Returns how many were re-seeded.
    fn relocate_empty(&mut self) -> usize {
        let (k, d, p) = (self.k, self.p.d, self.p);
        let empty: Vec<usize> = (0..k).filter(|&c| self.counts[c] == 0).collect();
        if empty.is_empty() {
            return 0;
        }
        let centers = &self.centers;
        let labels = &self.labels;
        let dist: Vec<f64> = (0..p.n)
            .into_par_iter()
            .with_min_len(BLOCK)
            .map(|i| sqdist(p.row(i), &centers[labels[i] as usize * d..(labels[i] as usize + 1) * d]))
            .collect();
        let mut order: Vec<usize> = (0..p.n).collect();
        let far = |a: &usize, b: &usize| dist[*b].total_cmp(&dist[*a]).then(a.cmp(b));
        let m = empty.len().min(p.n);
        if m < p.n {
            order.select_nth_unstable_by(m, far);
        }
        order[..m].sort_unstable_by(far);
        for (e, &c) in empty.iter().enumerate().take(m) {
            let f = order[e];
            let old = self.labels[f] as usize;
            self.counts[old] -= 1;
            add_assign(&mut self.sums[old * d..(old + 1) * d], p.row(f), true);
            self.sums[c * d..(c + 1) * d].copy_from_slice(p.row(f));
            self.counts[c] = 1;
            self.labels[f] = c as u32;
            self.upper[f] = f64::INFINITY;
            self.lower[f] = 0.0;
        }
        m
    }

    /// Centres ← sums/counts; returns each centre's displacement.
    fn move_centers(&mut self) -> Vec<f64> {
        let d = self.p.d;
        let mut shift = vec![0.0f64; self.k];
        #[allow(clippy::needless_range_loop)]
        for c in 0..self.k {
            let old = &mut self.centers[c * d..(c + 1) * d];
            if self.counts[c] == 0 {
                // Only possible when fewer distinct points than clusters remain
                // to re-seed with: the centre stays where it is.
                continue;
            }
            let inv = 1.0 / self.counts[c] as f64;
            let mut s2 = 0.0;
            for (o, s) in old.iter_mut().zip(&self.sums[c * d..(c + 1) * d]) {
                let nv = s * inv;
                s2 += (nv - *o) * (nv - *o);
                *o = nv;
            }
            shift[c] = s2.sqrt();
        }
        shift
    }

    /// Hamerly's bound update after the centres moved by `shift`.
    fn update_bounds(&mut self, shift: &[f64]) {
        let (mut r1, mut s1, mut s2) = (0usize, f64::NEG_INFINITY, f64::NEG_INFINITY);
        for (c, &s) in shift.iter().enumerate() {
            if s > s1 {
                s2 = s1;
                s1 = s;
                r1 = c;
            } else if s > s2 {
                s2 = s;
            }
        }
        let s2 = s2.max(0.0);
        self.labels
            .par_iter()
            .zip(self.upper.par_iter_mut())
            .zip(self.lower.par_iter_mut())
            .with_min_len(BLOCK)
            .for_each(|((&a, u), l)| {
                *u += shift[a as usize];
                *l -= if a as usize == r1 { s2 } else { s1 };
            });
    }

    fn inertia(&self) -> f64 {
        let (d, p) = (self.p.d, self.p);
        let parts: Vec<f64> = (0..p.n.div_ceil(BLOCK))
            .into_par_iter()
            .map(|b| {
                let s = b * BLOCK;
                (s..(s + BLOCK).min(p.n))
                    .map(|i| {
                        let a = self.labels[i] as usize;
                        sqdist(p.row(i), &self.centers[a * d..(a + 1) * d])
                    })
                    .sum::<f64>()
            })
            .collect();
        parts.iter().sum()
    }
}

/// Lloyd iterations from `init` centres (`k × d`), scikit-learn semantics
/// (see the module docs), accelerated by Hamerly's bounds.
pub fn lloyd(p: PointsRef<'_>, init: Vec<f64>, k: usize, max_iter: usize, tol_abs: f64) -> KMeansFit {
    let (n, d) = (p.n, p.d);
    let mut s = Lloyd {
        p,
        k,
        centers: init,
        labels: vec![NO_LABEL; n],
        upper: vec![f64::INFINITY; n],
        lower: vec![0.0; n],
        sums: vec![0.0; k * d],
        counts: vec![0; k],
    };
    // Incremental sum updates drift by rounding (≈ ε per update, far below
    // any effect on labels); rebuild them from scratch every few iterations.
    const REBUILD_EVERY: usize = 10;
    let mut since_rebuild = 0usize;
    let mut strict = false;
    let mut converged = false;
    let mut n_iter = 0;
    let mut relocated = 0;
    for it in 0..max_iter {
        n_iter = it + 1;
        let outs = s.assign_step(it == 0);
        let changes = s.fold_blocks(outs, it == 0);
        if it > 0 && since_rebuild >= REBUILD_EVERY {
            s.recompute_sums();
            since_rebuild = 0;
        } else {
            since_rebuild += 1;
        }
        let moved = s.relocate_empty();
        relocated += moved;
        if it > 0 && changes.is_empty() && moved == 0 {
            // Strict convergence: the labels (hence the centres) are fixed.
            strict = true;
            converged = true;
            break;
        }
        let shift = s.move_centers();
        s.update_bounds(&shift);
        let total: f64 = shift.iter().map(|v| v * v).sum();
        if total <= tol_abs {
            converged = true;
            break;
        }
    }
    if !strict {
        // Labels that agree with the final centres (scikit-learn's final
        // E-step; the bounds are valid, so it is pruned like any other).
        s.assign_step(false);
    }
    let inertia = s.inertia();
    KMeansFit { k, centers: s.centers, labels: s.labels, inertia, n_iter, converged, n_relocated: relocated }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs(n_per: usize, centers: &[[f64; 3]], spread: f64, seed: u64) -> Points {
        let mut rng = SplitMix64::new(seed);
        let mut data = Vec::new();
        for c in centers {
            for _ in 0..n_per {
                for v in c {
                    // Sum of uniforms: roughly Gaussian noise.
                    let e: f64 = (0..4).map(|_| rng.uniform() - 0.5).sum();
                    data.push(v + spread * e);
                }
            }
        }
        Points::new(data, n_per * centers.len(), 3).unwrap()
    }

    fn brute_inertia(p: PointsRef<'_>, c: &[f64], labels: &[u32]) -> f64 {
        (0..p.n).map(|i| sqdist(p.row(i), &c[labels[i] as usize * p.d..(labels[i] as usize + 1) * p.d])).sum()
    }

    #[test]
    fn separated_blobs_are_recovered() {
        let p = blobs(50, &[[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 5.0]], 0.5, 1);
        let fit = kmeans(p.as_ref(), &KMeansParams::new(3, 0)).unwrap();
        assert!(fit.converged);
        for b in 0..3 {
            let l = fit.labels[b * 50];
            assert!(fit.labels[b * 50..(b + 1) * 50].iter().all(|&x| x == l));
        }
        let brute = brute_inertia(p.as_ref(), &fit.centers, &fit.labels);
        assert!((fit.inertia - brute).abs() <= 1e-12 * brute);
    }

    #[test]
    fn labels_are_nearest_centres_and_centres_are_means() {
        let mut rng = SplitMix64::new(9);
        let (n, d) = (700, 5);
        let data: Vec<f64> = (0..n * d).map(|_| rng.uniform()).collect();
        let p = Points::new(data, n, d).unwrap();
        let fit = kmeans(p.as_ref(), &KMeansParams { k: 6, n_init: 2, max_iter: 300, tol: 0.0, seed: 5 }).unwrap();
        for i in 0..n {
            let own = sqdist(p.as_ref().row(i), &fit.centers[fit.labels[i] as usize * d..][..d]);
            for c in 0..6 {
                assert!(own <= sqdist(p.as_ref().row(i), &fit.centers[c * d..(c + 1) * d]) + 1e-15);
            }
        }
        if fit.converged {
            for c in 0..6 {
                let members: Vec<usize> = (0..n).filter(|&i| fit.labels[i] == c as u32).collect();
                for j in 0..d {
                    let m: f64 = members.iter().map(|&i| p.as_ref().row(i)[j]).sum::<f64>() / members.len() as f64;
                    assert!((m - fit.centers[c * d + j]).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn f32_gemms_still_give_exact_argmin_labels() {
        let mut rng = SplitMix64::new(21);
        let (n, d, k) = (1500, 40, 9);
        let data: Vec<f64> = (0..n * d).map(|i| rng.uniform() + (i % 7) as f64 * 0.01).collect();
        let p = Points::new(data, n, d).unwrap().with_f32_mirror();
        let prm = KMeansParams { k, n_init: 1, max_iter: 300, tol: 1e-4, seed: 3 };
        let a = crate::threads::install(Some(1), || kmeans(p.as_ref(), &prm)).unwrap();
        let b = crate::threads::install(Some(2), || kmeans(p.as_ref(), &prm)).unwrap();
        assert_eq!(a.labels, b.labels);
        for i in 0..n {
            let own = sqdist(p.as_ref().row(i), &a.centers[a.labels[i] as usize * d..][..d]);
            for c in 0..k {
                assert!(own <= sqdist(p.as_ref().row(i), &a.centers[c * d..(c + 1) * d]));
            }
        }
        let exact = brute_inertia(p.as_ref(), &a.centers, &a.labels);
        assert!((a.inertia - exact).abs() <= 1e-12 * exact);
    }

    #[test]
    fn hamerly_matches_plain_lloyd() {
        // Plain Lloyd: full search every iteration, same seeding.
        let mut rng = SplitMix64::new(11);
        let (n, d, k) = (900, 4, 7);
        let data: Vec<f64> = (0..n * d).map(|_| rng.uniform() * 3.0).collect();
        let p = Points::new(data, n, d).unwrap();
        let pr = p.as_ref();
        let mut r = SplitMix64::new(2);
        let init = kmeans_plusplus(pr, k, local_trials(k), &mut r);
        let fit = lloyd(pr, init.clone(), k, 300, 0.0);
        let mut c = init;
        let mut labels = vec![0u32; n];
        for _ in 0..fit.n_iter {
            labels = assign(pr, &c, k);
            let mut sums = vec![0.0; k * d];
            let mut cnt = vec![0.0; k];
            for i in 0..n {
                cnt[labels[i] as usize] += 1.0;
                for j in 0..d {
                    sums[labels[i] as usize * d + j] += pr.row(i)[j];
                }
            }
            for q in 0..k * d {
                c[q] = sums[q] / cnt[q / d];
            }
        }
        assert_eq!(labels, fit.labels);
    }

    #[test]
    fn deterministic_across_thread_counts() {
        let mut rng = SplitMix64::new(4);
        let (n, d) = (3000, 8);
        let data: Vec<f64> = (0..n * d).map(|_| rng.uniform()).collect();
        let p = Points::new(data, n, d).unwrap();
        let prm = KMeansParams { k: 9, n_init: 2, max_iter: 300, tol: 1e-4, seed: 7 };
        let a = crate::threads::install(Some(1), || kmeans(p.as_ref(), &prm)).unwrap();
        let b = crate::threads::install(Some(3), || kmeans(p.as_ref(), &prm)).unwrap();
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.inertia.to_bits(), b.inertia.to_bits());
        assert_eq!(a.centers, b.centers);
    }

    #[test]
    fn huge_offset_keeps_exact_labels() {
        // Gram distances on uncentred data with offset 1e4 cancel badly; the
        // exact re-measurement keeps the argmin right.
        let base = blobs(40, &[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], 0.05, 2);
        let shifted: Vec<f64> = base.data().iter().map(|v| v + 1e4).collect();
        let p = Points::new(shifted, base.n(), 3).unwrap();
        let fit = kmeans(p.as_ref(), &KMeansParams::new(2, 0)).unwrap();
        assert!(fit.labels[..40].iter().all(|&l| l == fit.labels[0]));
        assert!(fit.labels[40..].iter().all(|&l| l == fit.labels[40]));
        assert_ne!(fit.labels[0], fit.labels[40]);
    }

    #[test]
    fn duplicates_and_distinct_counts() {
        let data = vec![1.0, 2.0, 1.0, 2.0, -0.0, 3.0, 0.0, 3.0, 5.0, 5.0];
        let p = Points::new(data, 5, 2).unwrap();
        assert_eq!(p.distinct_rows(100), 3);
        assert_eq!(p.distinct_rows(2), 2);
        let fit = kmeans(p.as_ref(), &KMeansParams::new(3, 1)).unwrap();
        assert!(fit.inertia.abs() < 1e-24, "{}", fit.inertia);
        assert!(kmeans(p.as_ref(), &KMeansParams::new(6, 1)).is_err());
    }
}
