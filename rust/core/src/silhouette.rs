//! The silhouette coefficient (Rousseeuw 1987), exact and Euclidean, for
//! several labellings of the same rows in one sweep over pairwise distances.
//!
//! For row i in cluster A (|A| ≥ 2):
//!   a(i) = Σ_{j∈A, j≠i} ‖x_i − x_j‖ / (|A| − 1),
//!   b(i) = min_{B≠A, B non-empty} Σ_{j∈B} ‖x_i − x_j‖ / |B|,
//!   s(i) = (b − a) / max(a, b)   (0 when a = b = 0),
//! and s(i) = 0 when |A| = 1. The score is the mean of s(i) over all rows —
//! `sklearn.metrics.silhouette_score(X, labels, metric="euclidean")`, whose
//! conventions (singletons and 0/0 give 0) are kept.
//!
//! Algorithm. Every entry of the n×n distance matrix is needed, but never all
//! at once: the rows are cut into blocks of [`BLOCK`] and only blocks (I, J)
//! with J ≥ I are computed (‖x‖² + ‖y‖² − 2x·y from one GEMM, with the
//! cancellation guarded by exact re-measurement where the Gram error bound
//! reaches zero). With H the n×K one-hot matrix of all labellings side by
//! side (K = Σ k), the per-row, per-cluster distance sums S = D·H are
//! accumulated as S_I += D_IJ·H_J and S_J += D_IJᵀ·H_I, so one pass over the
//! distances scores every k of a model selection at once; memory is
//! O(n·K + BLOCK²) and no n×n matrix is formed.
//!
//! Determinism. Blocks use single-threaded GEMMs and every S_J receives its
//! contributions in a fixed order, so the result does not depend on the
//! number of threads.

use crate::error::{invalid, Error, Result};
use crate::points::{Points, PointsRef, BLOCK};
use crate::random::{sample_indices, SplitMix64};
use crate::simd::dispatch;
use crate::source::MatView;
use crate::threads;
use crate::vector::sqdist;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Dense labels `0..k` of the rows (clusters may be empty).
#[derive(Clone, Copy, Debug)]
pub struct Labelling<'a> {
    pub labels: &'a [u32],
    pub k: usize,
}

/// H: the n × K one-hot matrix of all labellings side by side.
fn one_hot<F: Float>(labellings: &[Labelling<'_>], offsets: &[usize], n: usize, kk: usize) -> Vec<F> {
    let mut h = vec![F::from_f64(0.0); n * kk];
    for (l, &o) in labellings.iter().zip(offsets) {
        for (i, &c) in l.labels.iter().enumerate() {
            h[i * kk + o + c as usize] = F::from_f64(1.0);
        }
    }
    h
}

/// Silhouette score of each labelling of the rows of `p`. A labelling with
/// fewer than 2 or more than n − 1 non-empty clusters scores NaN (the
/// coefficient is undefined there). `f32_gemm` computes the distance GEMMs
/// in f32 (for f32/f16/bf16 inputs: the input's precision, as the other
/// kernels do); pairs closer than the f32 Gram error bound are still
/// measured exactly, and all sums are f64.
pub fn silhouettes(p: PointsRef<'_>, labellings: &[Labelling<'_>], f32_gemm: bool) -> Result<Vec<f64>> {
    let n = p.n;
    for (t, l) in labellings.iter().enumerate() {
        if l.labels.len() != n {
            return invalid(format!("labelling {t} has {} labels for {n} rows", l.labels.len()));
        }
        if let Some(bad) = l.labels.iter().find(|&&v| v as usize >= l.k) {
            return invalid(format!("labelling {t} holds label {bad}, outside 0..{}", l.k));
        }
    }
    if labellings.is_empty() || n == 0 {
        return Ok(vec![f64::NAN; labellings.len()]);
    }
    let offsets: Vec<usize> = labellings
        .iter()
        .scan(0usize, |acc, l| {
            let o = *acc;
            *acc += l.k;
            Some(o)
        })
        .collect();
    let kk: usize = labellings.iter().map(|l| l.k).sum();
    let sums = if f32_gemm {
        let owned: Vec<f32>;
        let xs: &[f32] = match p.data32 {
            Some(x) => x,
            None => {
                owned = p.data.par_iter().map(|&v| v as f32).collect();
                &owned
            }
        };
        distance_sums::<f32>(p, xs, &one_hot(labellings, &offsets, n, kk), kk)
    } else {
        distance_sums::<f64>(p, p.data, &one_hot(labellings, &offsets, n, kk), kk)
    };
    Ok(labellings.iter().zip(&offsets).map(|(l, &o)| score(l, o, kk, &sums)).collect())
}

/// S = D·H (n × K, row-major) without forming D. Block pairs (I, J ≥ I) are
/// computed in parallel over J for each I: the task turns X_I·X_Jᵀ into the
/// distance block D_IJ, adds D_IJᵀ·H_I to its own S_J and keeps
/// D_IJ·H_J in its own slot; the slots are then added to S_I in J order.
/// Every GEMM runs in `F` (f64, or f32 for inputs that carry no more
/// precision than f32) over one block only; block results are summed in f64.
fn distance_sums<F: Float>(p: PointsRef<'_>, xs: &[F], h: &[F], kk: usize) -> Vec<f64> {
    let (n, d) = (p.n, p.d);
    // Gram error bound in the GEMM precision; pairs that could be that close
    // are re-measured exactly in f64.
    let kappa = 2.0 * (d as f64 + 2.0) * F::EPS;
    let mut s = vec![0.0f64; n * kk];
    let nb = n.div_ceil(BLOCK);
    let mut slots = vec![F::from_f64(0.0); nb * BLOCK * kk];
    let one = F::from_f64(1.0);
    let xm = |start: usize, len: usize| MatRef::from_row_major_slice(&xs[start * d..(start + len) * d], len, d);
    let hm = |start: usize, len: usize| MatRef::from_row_major_slice(&h[start * kk..(start + len) * kk], len, kk);
    for bi in 0..nb {
        let i0 = bi * BLOCK;
        let li = BLOCK.min(n - i0);
        let xi = p.rows(i0, li);
        let slots_i = &mut slots[..(nb - bi) * BLOCK * kk];
        s[i0 * kk..].par_chunks_mut(BLOCK * kk).zip(slots_i.par_chunks_mut(BLOCK * kk)).enumerate().for_each_init(
            || (Mat::<F>::zeros(BLOCK, BLOCK), Mat::<F>::zeros(BLOCK, kk)),
            |(g, tj), (jj, (s_j, slot))| {
                let bj = bi + jj;
                let j0 = bj * BLOCK;
                let lj = s_j.len() / kk;
                let xj = p.rows(j0, lj);
                let mut g = g.as_mut().submatrix_mut(0, 0, li, lj);
                faer::linalg::matmul::matmul(
                    g.as_mut(),
                    Accum::Replace,
                    xm(i0, li),
                    xm(j0, lj).transpose(),
                    one,
                    Par::Seq,
                );
                for c in 0..lj {
                    let col = g.as_mut().col_mut(c).try_as_col_major_mut().expect("contiguous column").as_slice_mut();
                    if F::distances(col, xi.sq, xj.sq[c], kappa) {
                        // Some pair is within the Gram error bound: measure it exactly.
                        #[allow(clippy::needless_range_loop)]
                        for r in 0..li {
                            if col[r].to_f64() < 0.0 {
                                col[r] = F::from_f64(sqdist(xi.row(r), xj.row(c)).sqrt());
                            }
                        }
                    }
                    if bj == bi {
                        col[c] = F::from_f64(0.0);
                    }
                }
                let u = MatMut::from_row_major_slice_mut(&mut slot[..li * kk], li, kk);
                faer::linalg::matmul::matmul(u, Accum::Replace, g.as_ref(), hm(j0, lj), one, Par::Seq);
                if bj > bi {
                    let mut t = tj.as_mut().submatrix_mut(0, 0, lj, kk);
                    faer::linalg::matmul::matmul(
                        t.as_mut(),
                        Accum::Replace,
                        g.as_ref().transpose(),
                        hm(i0, li),
                        one,
                        Par::Seq,
                    );
                    for c in 0..lj {
                        for q in 0..kk {
                            s_j[c * kk + q] += t[(c, q)].to_f64();
                        }
                    }
                }
            },
        );
        let s_i = &mut s[i0 * kk..(i0 + li) * kk];
        for slot in slots[..(nb - bi) * BLOCK * kk].chunks(BLOCK * kk) {
            for (a, v) in s_i.iter_mut().zip(&slot[..li * kk]) {
                *a += v.to_f64();
            }
        }
    }
    s
}

/// The GEMM precision of the silhouette distances.
pub(crate) trait Float: crate::source::Float {
    const EPS: f64;

    /// In place: col[r] ← √max(sq_i[r] + sq_j − 2·col[r], 0) (col holds dot
    /// products on entry). Returns whether some pair fell within the Gram
    /// error bound κ(‖x_i‖² + ‖x_j‖²) (and needs an exact distance), which is
    /// then flagged by a negative entry.
    fn distances(col: &mut [Self], sq_i: &[f64], sq_j: f64, kappa: f64) -> bool;
}

macro_rules! float_impl {
    ($t:ty, $eps:expr) => {
        impl Float for $t {
            const EPS: f64 = $eps;
            dispatch! {
                #[inline]
                fn distances(col: &mut [$t], sq_i: &[f64], sq_j: f64, kappa: f64) -> bool
                    = distances_generic; avx2 "avx2";
            }
        }
    };
}

float_impl!(f64, f64::EPSILON);
float_impl!(f32, f32::EPSILON as f64);

#[inline(always)]
fn distances_generic<F: crate::source::Float>(col: &mut [F], sq_i: &[f64], sq_j: f64, kappa: f64) -> bool {
    let mut hit = false;
    for (v, &sqi) in col.iter_mut().zip(sq_i) {
        let a = sqi + sq_j - 2.0 * v.to_f64();
        let near = a <= kappa * (sqi + sq_j);
        hit |= near;
        *v = F::from_f64(if near { -1.0 } else { a.sqrt() });
    }
    hit
}

fn score(l: &Labelling<'_>, off: usize, kk: usize, sums: &[f64]) -> f64 {
    let n = l.labels.len();
    let mut sizes = vec![0usize; l.k];
    for &c in l.labels {
        sizes[c as usize] += 1;
    }
    let nonempty = sizes.iter().filter(|&&s| s > 0).count();
    if nonempty < 2 || nonempty > n - 1 {
        return f64::NAN;
    }
    let parts: Vec<f64> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let mut acc = 0.0;
            for i in b * BLOCK..((b + 1) * BLOCK).min(n) {
                let own = l.labels[i] as usize;
                if sizes[own] <= 1 {
                    continue;
                }
                let row = &sums[i * kk + off..i * kk + off + l.k];
                let a = row[own] / (sizes[own] - 1) as f64;
                let mut b_min = f64::INFINITY;
                for (c, &sz) in sizes.iter().enumerate() {
                    if c != own && sz > 0 {
                        b_min = b_min.min(row[c] / sz as f64);
                    }
                }
                let den = a.max(b_min);
                if den > 0.0 {
                    acc += (b_min - a) / den;
                }
            }
            acc
        })
        .collect();
    parts.iter().sum::<f64>() / n as f64
}

/// `silhouette_score(X, labels)` for arbitrary input rows: dense labels
/// `0..k`, optionally on a seeded uniform sample of `sample_size` rows
/// (scikit-learn's `sample_size`). The rows are centred at their mean first
/// (the score is translation-invariant; centring keeps the Gram distances
/// accurate) and held in memory as f64 (n·d·8 bytes).
pub fn silhouette_score(
    x: &MatView<'_>,
    labels: &[u32],
    k: usize,
    sample_size: Option<usize>,
    seed: u64,
    n_threads: Option<usize>,
) -> Result<f64> {
    let n = x.nrows();
    if labels.len() != n {
        return invalid(format!("labels has {} entries but the input has {n} rows", labels.len()));
    }
    if x.ncols() == 0 {
        return invalid("the silhouette needs at least one column");
    }
    threads::install(n_threads, || {
        let (rows, lab): (Option<Vec<usize>>, Vec<u32>) = match sample_size {
            Some(m) if m < n => {
                let mut rng = SplitMix64::new(seed);
                let idx = sample_indices(n, m, &mut rng);
                let lab = idx.iter().map(|&i| labels[i]).collect();
                (Some(idx), lab)
            }
            _ => (None, labels.to_vec()),
        };
        let m = lab.len();
        let mut used = vec![false; k];
        for &c in &lab {
            if c as usize >= k {
                return invalid(format!("label {c} outside 0..{k}"));
            }
            used[c as usize] = true;
        }
        let n_labels = used.iter().filter(|&&u| u).count();
        if n_labels < 2 || n_labels + 1 > m {
            return Err(Error::InvalidArgument(format!(
                "the silhouette needs 2 ≤ number of clusters ≤ n − 1: got {n_labels} cluster(s) for {m} row(s)"
            )));
        }
        let mut p = Points::gather(x, rows.as_deref(), None)?;
        let mean = p.mean();
        p.subtract(&mean);
        let s = silhouettes(p.as_ref(), &[Labelling { labels: &lab, k }], !x.elem().needs_f64())?;
        Ok(s[0])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(x: &[f64], n: usize, d: usize, labels: &[u32], k: usize) -> f64 {
        let dist = |i: usize, j: usize| sqdist(&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d]).sqrt();
        let mut sizes = vec![0usize; k];
        labels.iter().for_each(|&c| sizes[c as usize] += 1);
        let mut total = 0.0;
        for i in 0..n {
            let own = labels[i] as usize;
            if sizes[own] == 1 {
                continue;
            }
            let mut s = vec![0.0; k];
            for j in 0..n {
                s[labels[j] as usize] += dist(i, j);
            }
            let a = s[own] / (sizes[own] - 1) as f64;
            let b = (0..k)
                .filter(|&c| c != own && sizes[c] > 0)
                .map(|c| s[c] / sizes[c] as f64)
                .fold(f64::INFINITY, f64::min);
            if a.max(b) > 0.0 {
                total += (b - a) / a.max(b);
            }
        }
        total / n as f64
    }

    #[test]
    fn matches_brute_force_for_several_labellings() {
        let mut rng = SplitMix64::new(1);
        let (n, d) = (600, 7); // more than two blocks, ragged last block
        let x: Vec<f64> = (0..n * d).map(|_| rng.uniform()).collect();
        let l2: Vec<u32> = (0..n).map(|_| rng.below(2) as u32).collect();
        let l5: Vec<u32> = (0..n).map(|_| rng.below(5) as u32).collect();
        let mut l3: Vec<u32> = (0..n).map(|_| rng.below(3) as u32).collect();
        l3[17] = 3; // a singleton cluster
        let p = Points::new(x.clone(), n, d).unwrap();
        let ls = [Labelling { labels: &l2, k: 2 }, Labelling { labels: &l5, k: 5 }, Labelling { labels: &l3, k: 5 }];
        let got = silhouettes(p.as_ref(), &ls, false).unwrap();
        let got32 = silhouettes(p.as_ref(), &ls, true).unwrap();
        for ((g, g32), (l, k)) in got.iter().zip(&got32).zip([(&l2, 2), (&l5, 5), (&l3, 5)]) {
            let b = brute(&x, n, d, l, k);
            assert!((g - b).abs() < 1e-12, "{g} vs {b}");
            assert!((g32 - b).abs() < 1e-5, "{g32} vs {b}");
        }
    }

    #[test]
    fn undefined_cases() {
        let p = Points::new(vec![0.0, 1.0, 2.0], 3, 1).unwrap();
        let one = [0u32, 0, 0];
        let all = [0u32, 1, 2];
        let s = silhouettes(p.as_ref(), &[Labelling { labels: &one, k: 1 }, Labelling { labels: &all, k: 3 }], false)
            .unwrap();
        assert!(s[0].is_nan() && s[1].is_nan());
        assert!(silhouettes(p.as_ref(), &[Labelling { labels: &[0, 1], k: 2 }], false).is_err());
        let v = MatView::row_major(&[0.0f64, 1.0, 2.0], 3, 1).unwrap();
        assert!(silhouette_score(&v, &one, 1, None, 0, Some(1)).is_err());
        let ok = silhouette_score(&v, &[0, 0, 1], 2, None, 0, Some(1)).unwrap();
        // a(0) = 1, b(0) = 2 → 0.5; a(1) = 1, b(1) = 1 → 0; singleton → 0.
        assert!((ok - 0.5 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn thread_count_does_not_matter() {
        let mut rng = SplitMix64::new(8);
        let (n, d) = (700, 12);
        let x: Vec<f64> = (0..n * d).map(|_| rng.uniform() + 100.0).collect();
        let lab: Vec<u32> = (0..n).map(|_| rng.below(4) as u32).collect();
        let v = MatView::row_major(&x, n, d).unwrap();
        let a = silhouette_score(&v, &lab, 4, None, 0, Some(1)).unwrap();
        let b = silhouette_score(&v, &lab, 4, None, 0, Some(3)).unwrap();
        assert_eq!(a.to_bits(), b.to_bits());
        let c = silhouette_score(&v, &lab, 4, Some(300), 5, Some(2)).unwrap();
        assert!(c.is_finite());
    }
}
