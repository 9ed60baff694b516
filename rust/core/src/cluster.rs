//! Clustered (local) isotropy — the reference study's measure (design.md §3,
//! after Cai et al. 2021, "Isotropy in the contextual embedding space:
//! clusters and manifolds").
//!
//! Recipe: (1) centre all rows at the global mean μ; (2) optionally draw a
//! seeded uniform sample of `sample_size` rows (reference: 2000); (3) for
//! each k in `k_range` (reference: 2..16) fit k-means (k-means++, seeded,
//! best of `n_init`) and score it with the silhouette; (4) keep the k with
//! the best silhouette if that silhouette ≥ `threshold` (reference: 0.1),
//! else k = 1; (5) re-centre every cluster at its own mean and take the
//! average cosine over ordered pairs i≠j; (6) `inter_cluster_cosine` is the
//! unweighted mean of those over clusters (the size-weighted mean, sizes,
//! per-cluster partition isotropy and IsoScore are reported too).
//!
//! Every statistic here is translation-invariant (k-means, silhouette,
//! re-centred cosine, covariance spectra), so the centring only conditions
//! the arithmetic (Gram distances on uncentred data cancel). Reference mode
//! centres at the global mean, as the study does (a pass over every row that
//! also rejects NaN/Inf anywhere); full mode centres at the mean of its
//! in-memory sample and takes the global mean and the NaN/Inf check from its
//! first streaming pass, which reads every row anyway.
//!
//! Scale. The rows that are clustered (all N, or the sample) are never
//! copied whole: k-means is fitted on at most `fit_sample_size` of them
//! (a seeded uniform sample when there are more), the silhouette is exact on
//! at most `silhouette_sample_size` rows (else on a seeded uniform sample,
//! scikit-learn's `sample_size` semantics), and then every clustered row is
//! streamed in tiles from the input view: assigned to its nearest centre and
//! folded into per-cluster states. The fit and silhouette samples are nested
//! prefixes of one random ordering, so they share one in-memory copy; rows of
//! the silhouette sample outside the fit sample are labelled by assignment,
//! exactly the labels the full assignment gives them.
//!
//! The per-cluster passes are the public, mergeable states of
//! [`crate::cluster_pass`] (also mapped over blocks by isofast.dask).
//! Per-cluster statistics reuse the global kernels: [`Moments`] (co-moment),
//! [`sym_eigen`], [`spectral_scores`] (IsoScore) and [`SecondPass`] (centred
//! partition functions over ±u_k and the centred unit-vector sum, Ethayarajh's
//! identity — no n×n matrix). A cluster with n_c ≤ d rows has rank < d; its
//! spectrum is then taken from the n_c×n_c Gram matrix of its centred rows
//! (same non-zero eigenvalues; projections onto u_k are √Λ_k·v_k), and the
//! d − rank null directions give log Z = ln n_c exactly. That makes small
//! clusters cost O(n_c²d) instead of an O(d³) eigendecomposition each.
//!
//! Clusters with fewer than 2 rows, or whose rows are all identical, get NaN
//! statistics with a note; they are left out of the means over clusters.
//! So are clusters below `min_cluster_size` rows (when that floor is above
//! 2): the re-centred cosine of a 2-row cluster is exactly −1 (x₁ − μ =
//! −(x₂ − μ)), and of an n_c-row cluster it is at least −1/(n_c − 1), so tiny
//! clusters drag the mean over clusters towards −1 whatever the geometry. The
//! floor is applied here, where the means are taken (one home), and
//! `n_small_clusters` counts the clusters it removed.
//!
//! `rows` restricts the recipe to a subset of input rows (e.g. all rows but
//! massive activations) without copying: the rows are read by index.

pub use crate::cluster_pass::ClusterStats;
use crate::cluster_pass::{ClusterFirstPass, ClusterSecondPass};
use crate::error::{invalid, Error, Result};
use crate::kmeans::{assign, best_of, kmeans_plusplus, local_trials, seeding_stream, tolerance, KMeansFit};
use crate::points::{distinct_rows, Points, PointsRef};
use crate::random::{derive_seed, sample_indices, SplitMix64};
use crate::silhouette::{silhouettes, Labelling};
use crate::source::{for_each_tile, tile_rows, MatView, RowSource};
use crate::threads;
use crate::vector::add_column_sums;
use rayon::prelude::*;
use std::time::Instant;

/// Options of [`cluster_isotropy`]. `Default` is full mode on all rows;
/// [`ClusterOptions::reference`] is the study's recipe.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Candidate numbers of clusters (each ≥ 2; order and repeats ignored).
    pub k_range: Vec<usize>,
    /// Minimum best silhouette for k > 1 to be kept.
    pub threshold: f64,
    /// Cluster a seeded sample of this many rows (`None` = all rows).
    pub sample_size: Option<usize>,
    /// Exact silhouette up to this many clustered rows, else on a sample.
    pub silhouette_sample_size: usize,
    /// Fit k-means on at most this many rows (`None` = all clustered rows).
    pub fit_sample_size: Option<usize>,
    pub n_init: usize,
    pub max_iter: usize,
    /// Relative tolerance (scikit-learn's `tol`).
    pub tol: f64,
    pub seed: u64,
    /// Per-cluster covariance spectra (IsoScore, partition isotropy).
    pub spectra: bool,
    /// Clusters with fewer rows get NaN statistics (note "below
    /// min_cluster_size") and are left out of the means over clusters.
    /// 0, 1 and 2 all mean "no floor": the reference recipe, where every
    /// cluster of ≥ 2 rows counts (a 2-row cluster's re-centred cosine is
    /// exactly −1, since x₁ − μ = −(x₂ − μ)).
    pub min_cluster_size: usize,
    /// Cluster only these input rows (sorted, distinct, each < N), e.g. the
    /// rows that are not massive activations; `None` = all rows. In
    /// reference mode the sample is drawn from them; labels and
    /// `clustered_rows` refer to them. No copy of the input is made.
    pub rows: Option<Vec<usize>>,
    pub n_threads: Option<usize>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            k_range: (2..=16).collect(),
            threshold: 0.1,
            sample_size: None,
            silhouette_sample_size: 20_000,
            fit_sample_size: Some(20_000),
            n_init: 1,
            max_iter: 300,
            tol: 1e-4,
            seed: 0,
            spectra: true,
            min_cluster_size: 0,
            rows: None,
            n_threads: None,
        }
    }
}

impl ClusterOptions {
    /// The reference study's recipe with an explicit seed: 2000 sampled rows,
    /// k = 2..16, threshold 0.1, one k-means++ run per k (scikit-learn ≥ 1.4's
    /// `n_init="auto"`), max_iter 300, tol 1e-4.
    pub fn reference(seed: u64) -> Self {
        ClusterOptions { sample_size: Some(2000), seed, ..Default::default() }
    }
}

/// Model-selection record of one k.
#[derive(Clone, Debug, PartialEq)]
pub struct KScore {
    pub k: usize,
    /// Silhouette on the silhouette rows (NaN when undefined).
    pub silhouette: f64,
    /// k-means inertia on the fit rows.
    pub inertia: f64,
    pub n_iter: usize,
    pub converged: bool,
}

/// Result of [`cluster_isotropy`].
#[derive(Clone, Debug)]
pub struct ClusterReport {
    /// Rows and columns of the input.
    pub n: u64,
    pub dim: usize,
    /// Global mean μ.
    pub mean: Vec<f64>,
    /// Sorted input rows that were clustered (`None` = all rows).
    pub clustered_rows: Option<Vec<usize>>,
    /// Rows k-means was fitted on, and rows the silhouette was computed on.
    pub n_fit: usize,
    pub n_silhouette: usize,
    pub silhouette_exact: bool,
    /// One record per candidate k, ascending.
    pub scores: Vec<KScore>,
    pub best_k: usize,
    /// Best silhouette over `k_range` (the value compared with the threshold).
    pub silhouette: f64,
    /// Label of each clustered row (in `clustered_rows` order).
    pub labels: Vec<u32>,
    /// Cluster means over all clustered rows (input coordinates), `best_k × d`.
    pub centers: Vec<f64>,
    pub clusters: Vec<ClusterStats>,
    pub inter_cluster_cosine: f64,
    pub inter_cluster_cosine_weighted: f64,
    /// The floor applied (`ClusterOptions::min_cluster_size`, at least 2).
    pub min_cluster_size: usize,
    /// Clusters with fewer than `min_cluster_size` rows (left out of the means).
    pub n_small_clusters: usize,
    /// Wall-clock seconds of each stage, in order (for profiling).
    pub timings: Vec<(&'static str, f64)>,
}

/// Stage stopwatch.
struct Clock {
    last: Instant,
    laps: Vec<(&'static str, f64)>,
}

impl Clock {
    fn new() -> Self {
        Clock { last: Instant::now(), laps: Vec::new() }
    }
    fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        self.laps.push((name, now.duration_since(self.last).as_secs_f64()));
        self.last = now;
    }
}

fn validate(opts: &ClusterOptions) -> Result<Vec<usize>> {
    if opts.k_range.is_empty() {
        return invalid(
            "k_range is empty: give at least one number of clusters k ≥ 2 (the reference recipe uses 2..16)",
        );
    }
    if let Some(&k) = opts.k_range.iter().find(|&&k| k < 2) {
        return invalid(format!(
            "k_range contains k = {k}: model selection needs k ≥ 2 (k = 1 is the automatic fallback when no k reaches the silhouette threshold)"
        ));
    }
    if !(opts.threshold.is_finite() && (-1.0..=1.0).contains(&opts.threshold)) {
        return invalid(format!("threshold must be a number in [-1, 1] (a silhouette value), got {}", opts.threshold));
    }
    if let Some(s) = opts.sample_size {
        if s < 3 {
            return invalid(format!("sample_size must be at least 3 rows, got {s}"));
        }
    }
    if opts.silhouette_sample_size < 3 {
        return invalid(format!("silhouette_sample_size must be at least 3 rows, got {}", opts.silhouette_sample_size));
    }
    if let Some(f) = opts.fit_sample_size {
        if f < 3 {
            return invalid(format!("fit_sample_size must be at least 3 rows, got {f}"));
        }
    }
    if opts.n_init < 1 {
        return invalid("n_init must be at least 1");
    }
    if opts.max_iter < 1 {
        return invalid("max_iter must be at least 1");
    }
    if !(opts.tol >= 0.0 && opts.tol.is_finite()) {
        return invalid(format!("tol must be a finite number ≥ 0, got {}", opts.tol));
    }
    let mut ks = opts.k_range.clone();
    ks.sort_unstable();
    ks.dedup();
    Ok(ks)
}

/// Column means over every row of `x`, checking every value is finite
/// ([`add_column_sums`]'s fixed order: bitwise free of the thread count).
pub fn stream_mean(x: &MatView<'_>) -> Result<Vec<f64>> {
    let (n, d) = (x.nrows(), x.ncols());
    let mut sum = vec![0.0f64; d];
    if n == 0 || d == 0 {
        return Ok(sum);
    }
    for_each_tile(x, 0, |t, _| {
        add_column_sums(&mut sum, t, d);
        Ok(())
    })?;
    let inv = 1.0 / n as f64;
    sum.iter_mut().for_each(|v| *v *= inv);
    Ok(sum)
}

/// Column means over the listed rows of `x` (fixed-order summation),
/// checking those rows are finite.
fn indexed_mean(x: &MatView<'_>, rows: &[usize]) -> Result<Vec<f64>> {
    let d = x.ncols();
    let zero = vec![0.0f64; d];
    let mut sum = vec![0.0f64; d];
    if rows.is_empty() || d == 0 {
        return Ok(sum);
    }
    let src = RowSource::Indexed { x: *x, rows, center: &zero };
    src.for_each_tile(d, true, |_, t, _| {
        add_column_sums(&mut sum, t, d);
        Ok(())
    })?;
    let inv = 1.0 / rows.len() as f64;
    sum.iter_mut().for_each(|v| *v *= inv);
    Ok(sum)
}

/// Labels of the streamed rows, cluster means (centred coordinates) and
/// per-cluster statistics.
type PerCluster = (Vec<u32>, Vec<Vec<f64>>, Vec<ClusterStats>);

/// Label source of the per-cluster passes.
enum LabelSource<'a> {
    Known(&'a [u32]),
    /// Nearest of these centres (`k × d`, centred coordinates).
    Assign(&'a [f64]),
}

/// Labels and per-cluster statistics of the rows of `src` in the two
/// streaming passes of [`crate::cluster_pass`] (pass 1: labels, sizes, sums
/// and — for clusters that may need it — the co-moment; pass 2: the centred
/// partition functions and unit sums, or the Gram route's rows).
#[allow(clippy::too_many_arguments)]
fn per_cluster(
    src: &RowSource<'_>,
    labels: LabelSource<'_>,
    k: usize,
    d: usize,
    spectra: bool,
    f64_gemm: bool,
    min_size: usize,
    clock: &mut Clock,
) -> Result<PerCluster> {
    let (mut lab, known_sizes) = checked_labels(&labels, src.len(), k)?;
    let mut first = match (&labels, &known_sizes) {
        (LabelSource::Known(_), Some(s)) => ClusterFirstPass::with_labels(k, d, s, spectra, f64_gemm),
        (LabelSource::Assign(c), _) => ClusterFirstPass::with_centers(c.to_vec(), k, d, spectra, f64_gemm),
        (LabelSource::Known(_), None) => unreachable!("known labels come with their sizes"),
    };
    src.for_each_tile(d, true, |start, t, nb| first.update_tile(t, nb, &mut lab[start..start + nb]))?;
    first.flush()?;
    clock.lap("pass 1: labels, sizes, means, co-moments");
    let mut plan = first.finish(min_size)?;
    clock.lap("cluster covariance eigendecompositions");
    let mut second = ClusterSecondPass::new(&plan);
    // The eigenvectors move into the pass-2 kernels (no second d×d copy per
    // cluster); the plan is not used for another pass.
    let vectors = plan.take_vectors();
    second.update_source(&plan, Some(vectors), src, &mut lab, false)?;
    clock.lap("pass 2: partition functions, unit sums");
    let stats = second.finish(&plan)?;
    clock.lap("small clusters (Gram route)");
    Ok((lab, plan.means().to_vec(), stats))
}

/// The label buffer of the passes, and the cluster sizes when the labels are
/// given (checked: one per row, each in `0..k`); zeros and `None` when the
/// labels are to be assigned in pass 1.
fn checked_labels(labels: &LabelSource<'_>, n: usize, k: usize) -> Result<(Vec<u32>, Option<Vec<u64>>)> {
    match labels {
        LabelSource::Known(l) => {
            if l.len() != n {
                return invalid(format!("got {} labels for {n} rows", l.len()));
            }
            if let Some(bad) = l.iter().find(|&&c| c as usize >= k) {
                return invalid(format!("label {bad} outside 0..{k}"));
            }
            let mut s = vec![0u64; k];
            l.iter().for_each(|&c| s[c as usize] += 1);
            Ok((l.to_vec(), Some(s)))
        }
        LabelSource::Assign(_) => Ok((vec![0u32; n], None)),
    }
}

/// Unweighted and size-weighted means of the finite per-cluster cosines.
fn cluster_means(stats: &[ClusterStats]) -> (f64, f64) {
    let ok: Vec<&ClusterStats> = stats.iter().filter(|s| s.avg_cosine_centered.is_finite()).collect();
    if ok.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let unweighted = ok.iter().map(|s| s.avg_cosine_centered).sum::<f64>() / ok.len() as f64;
    let w: f64 = ok.iter().map(|s| s.size as f64).sum();
    let weighted = ok.iter().map(|s| s.size as f64 * s.avg_cosine_centered).sum::<f64>() / w;
    (unweighted, weighted)
}

/// Per-cluster statistics of `x` for given dense labels `0..k` (one per
/// row), with the same definitions as [`cluster_isotropy`]'s clusters.
pub fn cluster_statistics(
    x: &MatView<'_>,
    labels: &[u32],
    k: usize,
    spectra: bool,
    n_threads: Option<usize>,
) -> Result<Vec<ClusterStats>> {
    if x.ncols() == 0 {
        return invalid("cluster statistics need at least one column");
    }
    threads::install(n_threads, || {
        // Any point near the data conditions the Gram products (every
        // statistic is translation-invariant): the mean of the first tile.
        let head = x.rows(0, tile_rows(x.ncols()));
        let center = Points::gather(&head, None, None)?.mean();
        let src = RowSource::View { x: *x, center: Some(&center) };
        let mut clock = Clock::new();
        let (_, _, stats) =
            per_cluster(&src, LabelSource::Known(labels), k, x.ncols(), spectra, x.elem().needs_f64(), 0, &mut clock)?;
        Ok(stats)
    })
}

/// The whole clustered-isotropy recipe (see the module docs).
pub fn cluster_isotropy(x: &MatView<'_>, opts: &ClusterOptions) -> Result<ClusterReport> {
    let ks = validate(opts)?;
    let (n, d) = (x.nrows(), x.ncols());
    if d == 0 {
        return invalid("clustered isotropy needs at least one column");
    }
    if let Some(rows) = &opts.rows {
        if let Some(w) = rows.windows(2).find(|w| w[0] >= w[1]) {
            return invalid(format!("rows must be sorted and distinct: {} is followed by {}", w[0], w[1]));
        }
        if let Some(&r) = rows.iter().find(|&&r| r >= n) {
            return invalid(format!("rows contains {r}, outside the input's {n} rows"));
        }
    }
    let n_eff = opts.rows.as_ref().map_or(n, |r| r.len());
    if n_eff < 3 {
        return Err(Error::Empty(format!(
            "clustered isotropy needs at least 3 rows (the silhouette is defined for 2 ≤ k ≤ n − 1), got {n_eff}"
        )));
    }
    threads::install(opts.n_threads, || run(x, opts, &ks))
}

/// The rows the recipe works on (module docs, steps 1–2): the clustered rows
/// C and, in memory, the prefix of one random ordering P of C that k-means
/// is fitted on (`fit_n` rows) and the silhouette computed on (`sil_n`).
struct Sample {
    /// Global mean (reference mode: a pass over every row).
    global_mean: Option<Vec<f64>>,
    /// Sorted input rows clustered (`None` = all rows).
    clustered: Option<Vec<usize>>,
    /// Number of clustered rows.
    nc: usize,
    fit_n: usize,
    sil_n: usize,
    /// P is C in input order (all clustered rows are in memory).
    natural: bool,
    /// Rows of P, centred at `center`.
    points: Points,
    /// The centre subtracted from every row (global or sample mean).
    center: Vec<f64>,
}

/// Step 1–2: the global mean (reference mode), the clustered rows, and the
/// fit/silhouette rows gathered into memory and centred. Refuses k values
/// the rows cannot support.
fn sample_rows(x: &MatView<'_>, opts: &ClusterOptions, k_max: usize, clock: &mut Clock) -> Result<Sample> {
    let n = x.nrows();
    // Reference mode centres at the global mean, as the study does (one pass
    // over every row, which also rejects NaN/Inf anywhere). Full mode reads
    // every row in its first streaming pass anyway, so it centres at the mean
    // of the in-memory sample instead (all statistics are translation-
    // invariant; centring only conditions the arithmetic) and gets the global
    // mean and the NaN/Inf check from that pass.
    let base = opts.rows.as_deref();
    let n_eff = base.map_or(n, |b| b.len());
    let reference = matches!(opts.sample_size, Some(m) if m < n_eff);
    let global_mean = if reference {
        let m = match base {
            None => stream_mean(x)?,
            Some(b) => indexed_mean(x, b)?,
        };
        clock.lap("global mean (all rows)");
        Some(m)
    } else {
        None
    };
    // Clustered rows C.
    let clustered: Option<Vec<usize>> = match opts.sample_size {
        Some(m) if m < n_eff => {
            let mut rng = SplitMix64::new(derive_seed(opts.seed, &[0x5A4D_504C]));
            let mut v = sample_indices(n_eff, m, &mut rng);
            v.sort_unstable();
            if let Some(b) = base {
                v.iter_mut().for_each(|i| *i = b[*i]);
            }
            Some(v)
        }
        _ => base.map(|b| b.to_vec()),
    };
    let nc = clustered.as_ref().map_or(n, |v| v.len());
    // Working rows: the fit rows and the silhouette rows are prefixes of one
    // ordering P of (a sample of) C.
    let fit_n = opts.fit_sample_size.unwrap_or(usize::MAX).min(nc);
    let sil_n = opts.silhouette_sample_size.min(nc);
    let m = fit_n.max(sil_n);
    let natural = m == nc && sil_n == nc;
    let positions: Option<Vec<usize>> = if natural {
        None
    } else {
        let mut rng = SplitMix64::new(derive_seed(opts.seed, &[0x4649_5453]));
        Some(sample_indices(nc, m, &mut rng))
    };
    let rows_of_p: Option<Vec<usize>> = match (&positions, &clustered) {
        (None, None) => None,
        (None, Some(c)) => Some(c.clone()),
        (Some(p), None) => Some(p.clone()),
        (Some(p), Some(c)) => Some(p.iter().map(|&i| c[i]).collect()),
    };
    let limit = fit_n.min(sil_n);
    if k_max + 1 > limit {
        let role = if limit == nc {
            "being clustered"
        } else if limit == sil_n {
            "of the silhouette sample (silhouette_sample_size)"
        } else {
            "of the k-means fit sample (fit_sample_size)"
        };
        return invalid(format!(
            "k = {k_max} is too large for the {limit} rows {role}: the silhouette needs k ≤ n − 1 = {}; lower k_range or use more rows",
            limit - 1
        ));
    }
    let mut points = Points::gather(x, rows_of_p.as_deref(), global_mean.as_deref())?;
    let center = match &global_mean {
        Some(m) => m.clone(),
        None => {
            let c = points.mean();
            points.subtract(&c);
            c
        }
    };
    if !x.elem().needs_f64() {
        // Distance GEMMs in the input's precision (see `PointsRef`).
        points = points.with_f32_mirror();
    }
    let n_distinct = distinct_rows(points.as_ref().rows(0, fit_n), k_max);
    if n_distinct < 2 {
        return invalid(format!(
            "all {fit_n} rows being clustered are identical: clustering and the re-centred cosine are undefined"
        ));
    }
    if n_distinct < k_max {
        return invalid(format!(
            "k = {k_max} exceeds the number of distinct rows ({n_distinct}) among the {fit_n} rows k-means is fitted on: k-means cannot form more non-empty clusters than distinct points; use k_range up to {n_distinct}"
        ));
    }
    clock.lap("sample rows into memory");
    Ok(Sample { global_mean, clustered, nc, fit_n, sil_n, natural, points, center })
}

/// Step 3a: k-means on the fit rows for every k (k-means++ seeded, best of
/// `n_init`), in ascending k.
fn fit_every_k(fit_p: PointsRef<'_>, ks: &[usize], opts: &ClusterOptions) -> Vec<KMeansFit> {
    let d = fit_p.d;
    let tol_abs = tolerance(fit_p, opts.tol);
    // Seedings: k-means++ streams depend on the number of local trials only,
    // so one seeding per (trials, restart), as long as the group's largest k,
    // serves every k of the group as a prefix (see `seeding_stream`).
    let mut groups: Vec<(usize, usize)> = Vec::new(); // (trials, largest k)
    for &k in ks {
        let t = local_trials(k);
        match groups.iter_mut().find(|g| g.0 == t) {
            Some(g) => g.1 = g.1.max(k),
            None => groups.push((t, k)),
        }
    }
    let jobs: Vec<(usize, usize, usize)> =
        groups.iter().flat_map(|&(t, kmax)| (0..opts.n_init).map(move |i| (t, kmax, i))).collect();
    let seedings: Vec<Vec<f64>> = jobs
        .par_iter()
        .map(|&(t, kmax, i)| kmeans_plusplus(fit_p, kmax, t, &mut seeding_stream(opts.seed, t, i)))
        .collect();
    // Lloyd for every k (largest first so the long jobs start early).
    let mut fits: Vec<KMeansFit> = ks
        .iter()
        .rev()
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|&k| {
            let t = local_trials(k);
            let seeds: Vec<Vec<f64>> =
                jobs.iter().zip(&seedings).filter(|(j, _)| j.0 == t).map(|(_, c)| c[..k * d].to_vec()).collect();
            best_of(fit_p, k, seeds, opts.max_iter, tol_abs)
        })
        .collect();
    fits.reverse();
    fits
}

/// Step 3b: the silhouette of every fit on the silhouette rows, in one
/// sweep (rows past the fit rows are labelled by assignment).
fn silhouette_every_k(s: &Sample, fits: &[KMeansFit], f32_gemm: bool) -> Result<Vec<f64>> {
    let pts = s.points.as_ref();
    let (fit_n, sil_n) = (s.fit_n, s.sil_n);
    let sil_labels: Vec<Vec<u32>> = fits
        .iter()
        .map(|f| {
            if sil_n <= fit_n {
                f.labels[..sil_n].to_vec()
            } else {
                let mut l = f.labels.clone();
                l.extend(assign(pts.rows(fit_n, sil_n - fit_n), &f.centers, f.k));
                l
            }
        })
        .collect();
    let labellings: Vec<Labelling<'_>> =
        sil_labels.iter().zip(fits).map(|(l, f)| Labelling { labels: l, k: f.k }).collect();
    silhouettes(pts.rows(0, sil_n), &labellings, f32_gemm)
}

/// Step 4, model selection: the best silhouette (first on ties) and the
/// index of the fit kept — `None` (k = 1) when that silhouette is below
/// `threshold` or none is defined.
fn choose_k(sils: &[f64], threshold: f64) -> (f64, Option<usize>) {
    let mut best: Option<usize> = None;
    for (i, s) in sils.iter().enumerate() {
        if s.is_finite() && best.is_none_or(|b| *s > sils[b]) {
            best = Some(i);
        }
    }
    let best_sil = best.map_or(f64::NAN, |b| sils[b]);
    let chosen = match best {
        Some(b) if best_sil >= threshold => Some(b),
        _ => None,
    };
    (best_sil, chosen)
}

/// Step 5: labels of every clustered row and the per-cluster statistics
/// (the two streaming passes), with the chosen fit's centres or one cluster.
fn cluster_every_row(
    x: &MatView<'_>,
    s: &Sample,
    chosen: Option<&KMeansFit>,
    opts: &ClusterOptions,
    min_size: usize,
    clock: &mut Clock,
) -> Result<PerCluster> {
    let src = if s.natural {
        RowSource::View { x: s.points.view(), center: None }
    } else {
        match &s.clustered {
            None => RowSource::View { x: *x, center: Some(&s.center) },
            Some(rows) => RowSource::Indexed { x: *x, rows, center: &s.center },
        }
    };
    let zeros;
    let (k, label_src) = match chosen {
        None => {
            zeros = vec![0u32; s.nc];
            (1, LabelSource::Known(&zeros))
        }
        Some(f) if s.natural && s.fit_n == s.nc => (f.k, LabelSource::Known(&f.labels)),
        Some(f) => (f.k, LabelSource::Assign(&f.centers)),
    };
    per_cluster(&src, label_src, k, x.ncols(), opts.spectra, x.elem().needs_f64(), min_size, clock)
}

/// Step 6: cluster means in input coordinates (`k × d`) and the global mean
/// — in full mode, where every row was clustered, the size-weighted mean of
/// the cluster means.
fn input_means(s: &Sample, means: &[Vec<f64>], clusters: &[ClusterStats], d: usize) -> (Vec<f64>, Vec<f64>) {
    let center = &s.center;
    let centers: Vec<f64> =
        means.iter().flat_map(|m| m.iter().zip(center).map(|(a, b)| a + b).collect::<Vec<_>>()).collect();
    let mean = match &s.global_mean {
        Some(m) => m.clone(),
        None => {
            let mut g = vec![0.0f64; d];
            for (c, st) in means.iter().zip(clusters) {
                let w = st.size as f64 / s.nc as f64;
                for (a, v) in g.iter_mut().zip(c) {
                    *a += w * v;
                }
            }
            g.iter().zip(center).map(|(a, b)| a + b).collect()
        }
    };
    (centers, mean)
}

/// The recipe in its named steps (module docs): sample, fit every k, score
/// every k, choose k, cluster every row, means.
fn run(x: &MatView<'_>, opts: &ClusterOptions, ks: &[usize]) -> Result<ClusterReport> {
    let (n, d) = (x.nrows(), x.ncols());
    let mut clock = Clock::new();
    let k_max = *ks.last().expect("validated non-empty");
    let sample = sample_rows(x, opts, k_max, &mut clock)?;
    let fits = fit_every_k(sample.points.as_ref().rows(0, sample.fit_n), ks, opts);
    clock.lap("k-means (all k)");
    let sils = silhouette_every_k(&sample, &fits, !x.elem().needs_f64())?;
    clock.lap("silhouettes (all k)");
    let scores: Vec<KScore> = fits
        .iter()
        .zip(&sils)
        .map(|(f, &s)| KScore { k: f.k, silhouette: s, inertia: f.inertia, n_iter: f.n_iter, converged: f.converged })
        .collect();
    let (best_sil, chosen) = choose_k(&sils, opts.threshold);
    let best_k = chosen.map_or(1, |b| fits[b].k);
    let min_size = opts.min_cluster_size.max(2);
    let (labels, means, clusters) =
        cluster_every_row(x, &sample, chosen.map(|b| &fits[b]), opts, min_size, &mut clock)?;
    let n_small_clusters = clusters.iter().filter(|c| (c.size as usize) < min_size).count();
    let (centers, mean) = input_means(&sample, &means, &clusters, d);
    let (icc, iccw) = cluster_means(&clusters);
    let (nc, n_fit, n_silhouette) = (sample.nc, sample.fit_n, sample.sil_n);
    Ok(ClusterReport {
        n: n as u64,
        dim: d,
        mean,
        clustered_rows: sample.clustered,
        n_fit,
        n_silhouette,
        silhouette_exact: n_silhouette == nc,
        scores,
        best_k,
        silhouette: best_sil,
        labels,
        centers,
        clusters,
        inter_cluster_cosine: icc,
        inter_cluster_cosine_weighted: iccw,
        min_cluster_size: min_size,
        n_small_clusters,
        timings: clock.laps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::{analyze, AnalyzeOptions};
    use crate::vector::sqnorm;

    fn gauss(rng: &mut SplitMix64) -> f64 {
        // Box–Muller.
        let (u, v) = (rng.uniform().max(1e-300), rng.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    #[test]
    fn streamed_and_in_memory_means_agree_bitwise() {
        // Several tiles (tile_rows(1100) = 1856 rows), one kernel: the same bits.
        let (n, d) = (4000, 1100);
        let mut rng = SplitMix64::new(11);
        let data: Vec<f64> = (0..n * d).map(|_| 1e3 + gauss(&mut rng)).collect();
        let x = MatView::row_major(&data, n, d).unwrap();
        let streamed = stream_mean(&x).unwrap();
        let in_memory = Points::gather(&x, None, None).unwrap().mean();
        assert_eq!(streamed, in_memory);
        let rows: Vec<usize> = (0..n).collect();
        assert_eq!(indexed_mean(&x, &rows).unwrap(), in_memory);
        let cosine = crate::cosine::column_mean(&x).unwrap();
        for (a, b) in cosine.iter().zip(&in_memory) {
            assert!((a - b).abs() <= 1e-12 * b.abs(), "{a} {b}");
        }
    }

    fn blobs(n_per: usize, k: usize, d: usize, sep: f64, seed: u64) -> Vec<f64> {
        let mut rng = SplitMix64::new(seed);
        let centres: Vec<f64> = (0..k * d).map(|_| sep * gauss(&mut rng)).collect();
        let mut x = Vec::with_capacity(n_per * k * d);
        for c in 0..k {
            for _ in 0..n_per {
                for j in 0..d {
                    x.push(centres[c * d + j] + gauss(&mut rng));
                }
            }
        }
        x
    }

    fn brute_cosine(rows: &[f64], d: usize) -> f64 {
        let n = rows.len() / d;
        let mut mu = vec![0.0; d];
        for r in rows.chunks(d) {
            for j in 0..d {
                mu[j] += r[j] / n as f64;
            }
        }
        let y: Vec<Vec<f64>> = rows.chunks(d).map(|r| r.iter().zip(&mu).map(|(a, b)| a - b).collect()).collect();
        let mut s = 0.0;
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    let dot: f64 = y[i].iter().zip(&y[j]).map(|(a, b)| a * b).sum();
                    s += dot / (sqnorm(&y[i]).sqrt() * sqnorm(&y[j]).sqrt());
                }
            }
        }
        s / (n * (n - 1)) as f64
    }

    #[test]
    fn gram_route_matches_global_kernels() {
        // n_c ≤ d takes the n_c×n_c Gram route; analyze() on the same rows
        // takes Moments + d×d eigen + SecondPass.
        let (n, d) = (12, 20);
        let mut rng = SplitMix64::new(3);
        let x: Vec<f64> = (0..n * d).map(|i| gauss(&mut rng) * (1.0 + (i % d) as f64 * 0.2) + 0.3).collect();
        let v = MatView::row_major(&x, n, d).unwrap();
        let stats = cluster_statistics(&v, &vec![0u32; n], 1, true, Some(2)).unwrap();
        let r = analyze(&[v], &AnalyzeOptions::default()).unwrap();
        let s = &stats[0];
        assert!((s.avg_cosine_centered - r.avg_cosine_centered.unwrap()).abs() < 1e-12);
        assert!((s.isoscore - r.scores.isoscore).abs() < 1e-10, "{} {}", s.isoscore, r.scores.isoscore);
        let (a, b) = (s.log_partition_isotropy, r.log_partition_isotropy_centered.unwrap());
        assert!((a - b).abs() < 1e-8 * b.abs().max(1.0), "{a} vs {b}");
        // And the primal route (n_c > d) against analyze() as well.
        let (n, d) = (90, 6);
        let x: Vec<f64> = (0..n * d).map(|i| gauss(&mut rng) * (1.0 + (i % d) as f64) - 2.0).collect();
        let v = MatView::row_major(&x, n, d).unwrap();
        let s = &cluster_statistics(&v, &vec![0u32; n], 1, true, Some(1)).unwrap()[0];
        let r = analyze(&[v], &AnalyzeOptions::default()).unwrap();
        assert!((s.isoscore - r.scores.isoscore).abs() < 1e-12);
        assert!((s.log_partition_isotropy - r.log_partition_isotropy_centered.unwrap()).abs() < 1e-9);
        assert!((s.avg_cosine_centered - brute_cosine(&x, d)).abs() < 1e-12);
    }

    #[test]
    fn per_cluster_cosine_matches_brute_force_and_handles_degenerate_clusters() {
        let (n, d) = (40, 3);
        let mut rng = SplitMix64::new(5);
        let mut x: Vec<f64> = (0..n * d).map(|_| gauss(&mut rng) + 1e4).collect();
        let mut labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        labels[7] = 3; // singleton
        for i in [10, 20, 30] {
            labels[i] = 4; // identical rows
            x[i * d..(i + 1) * d].copy_from_slice(&[1.0, 2.0, 3.0]);
        }
        let v = MatView::row_major(&x, n, d).unwrap();
        let st = cluster_statistics(&v, &labels, 5, true, Some(2)).unwrap();
        for c in 0..3u32 {
            let rows: Vec<f64> =
                (0..n).filter(|&i| labels[i] == c).flat_map(|i| x[i * d..(i + 1) * d].to_vec()).collect();
            assert!((st[c as usize].avg_cosine_centered - brute_cosine(&rows, d)).abs() < 1e-9);
        }
        let fast = cluster_statistics(&v, &labels, 5, false, Some(2)).unwrap();
        for (a, b) in st.iter().zip(&fast) {
            assert_eq!(a.size, b.size);
            let (x, y) = (a.avg_cosine_centered, b.avg_cosine_centered);
            assert!((x.is_nan() && y.is_nan()) || (x - y).abs() < 1e-12, "{x} vs {y}");
            assert!(b.isoscore.is_nan());
        }
        assert!(st[3].avg_cosine_centered.is_nan() && st[3].note.is_some());
        assert!(st[4].isoscore.is_nan() && st[4].partition_isotropy.is_nan() && st[4].note.is_some());
        let (u, w) = cluster_means(&st);
        assert!(u.is_finite() && w.is_finite());
    }

    #[test]
    fn blobs_are_found_and_noise_falls_back_to_one_cluster() {
        let (k, d, n_per) = (4, 10, 60);
        let x = blobs(n_per, k, d, 12.0, 1);
        let v = MatView::row_major(&x, n_per * k, d).unwrap();
        let opts = ClusterOptions { k_range: (2..=8).collect(), n_threads: Some(2), ..Default::default() };
        let r = cluster_isotropy(&v, &opts).unwrap();
        assert_eq!(r.best_k, k);
        for b in 0..k {
            let l = r.labels[b * n_per];
            assert!(r.labels[b * n_per..(b + 1) * n_per].iter().all(|&x| x == l));
        }
        assert!(r.silhouette_exact && r.silhouette > 0.5);
        assert_eq!(r.clusters.iter().map(|c| c.size).sum::<u64>(), (n_per * k) as u64);
        // Isotropic noise: no k reaches the threshold.
        let mut rng = SplitMix64::new(2);
        let noise: Vec<f64> = (0..600 * 8).map(|_| gauss(&mut rng)).collect();
        let v = MatView::row_major(&noise, 600, 8).unwrap();
        let r = cluster_isotropy(&v, &opts).unwrap();
        assert_eq!(r.best_k, 1);
        assert!(r.silhouette < 0.1);
        assert_eq!(r.clusters.len(), 1);
        assert!((r.inter_cluster_cosine - brute_cosine(&noise, 8)).abs() < 1e-12);
    }

    #[test]
    fn sampled_fit_assigns_every_row_deterministically() {
        let (k, d, n_per) = (3, 6, 700);
        let x: Vec<f32> = blobs(n_per, k, d, 10.0, 7).iter().map(|&v| v as f32).collect();
        let v = MatView::row_major(&x, n_per * k, d).unwrap();
        let opts = |t| ClusterOptions {
            k_range: vec![2, 3, 4],
            fit_sample_size: Some(500),
            silhouette_sample_size: 300,
            n_threads: Some(t),
            seed: 11,
            ..Default::default()
        };
        let a = cluster_isotropy(&v, &opts(1)).unwrap();
        let b = cluster_isotropy(&v, &opts(2)).unwrap();
        assert_eq!(a.best_k, 3);
        assert_eq!((a.n_fit, a.n_silhouette, a.silhouette_exact), (500, 300, false));
        assert_eq!(a.labels.len(), n_per * k);
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.scores, b.scores);
        for (p, q) in a.clusters.iter().zip(&b.clusters) {
            assert!((p.avg_cosine_centered - q.avg_cosine_centered).abs() < 1e-12);
            assert!((p.isoscore - q.isoscore).abs() < 1e-12);
        }
        // The reported global mean comes from the streaming pass.
        for j in 0..d {
            let m: f64 = (0..n_per * k).map(|i| x[i * d + j] as f64).sum::<f64>() / (n_per * k) as f64;
            assert!((a.mean[j] - m).abs() < 1e-9);
        }
        // A NaN is reported with its row whether it falls inside the
        // in-memory sample (caught when gathering) or outside it (caught by
        // the first streaming pass; 500 of 2100 rows are sampled).
        for row in [0usize, 700, 1400, 2099] {
            let mut bad = x.clone();
            bad[row * d + 2] = f32::NAN;
            let vb = MatView::row_major(&bad, n_per * k, d).unwrap();
            assert_eq!(cluster_isotropy(&vb, &opts(2)).unwrap_err(), Error::NonFinite { row: row as u64, col: 2 });
        }
        // Reference mode: a sample of the rows is clustered.
        let r = cluster_isotropy(&v, &ClusterOptions { sample_size: Some(400), ..opts(2) }).unwrap();
        assert_eq!(r.clustered_rows.as_ref().unwrap().len(), 400);
        assert_eq!(r.labels.len(), 400);
    }

    #[test]
    fn min_cluster_size_floor_and_row_subset() {
        // Two blobs of 40 rows plus a planted pair far away: k = 3 puts the
        // pair in its own cluster, whose re-centred cosine is exactly −1.
        let (d, n_per) = (5, 40);
        let mut x = blobs(n_per, 2, d, 15.0, 9);
        let mut rng = SplitMix64::new(4);
        for _ in 0..2 {
            for _ in 0..d {
                x.push(500.0 + gauss(&mut rng));
            }
        }
        let n = 2 * n_per + 2;
        let v = MatView::row_major(&x, n, d).unwrap();
        let o = |m: usize| ClusterOptions {
            k_range: vec![3],
            threshold: -1.0,
            min_cluster_size: m,
            n_threads: Some(2),
            ..Default::default()
        };
        let free = cluster_isotropy(&v, &o(0)).unwrap();
        let pair = free.clusters.iter().position(|c| c.size == 2).expect("the planted pair is a cluster");
        assert!((free.clusters[pair].avg_cosine_centered + 1.0).abs() < 1e-12);
        assert_eq!((free.min_cluster_size, free.n_small_clusters), (2, 0));
        let floored = cluster_isotropy(&v, &o(10)).unwrap();
        assert_eq!((floored.min_cluster_size, floored.n_small_clusters), (10, 1));
        let c = &floored.clusters[pair];
        assert!(c.avg_cosine_centered.is_nan() && c.note.as_ref().unwrap().contains("below min_cluster_size"));
        let big: Vec<f64> = floored.clusters.iter().filter(|c| c.size > 2).map(|c| c.avg_cosine_centered).collect();
        assert_eq!(big.len(), 2);
        assert!((floored.inter_cluster_cosine - (big[0] + big[1]) / 2.0).abs() < 1e-15);
        // Every cluster below the floor: NaN means.
        let all_small = cluster_isotropy(&v, &o(1000)).unwrap();
        assert_eq!(all_small.n_small_clusters, 3);
        assert!(all_small.inter_cluster_cosine.is_nan() && all_small.inter_cluster_cosine_weighted.is_nan());
        // A row subset equals clustering a copy of those rows.
        let keep: Vec<usize> = (0..2 * n_per).collect();
        let sub =
            cluster_isotropy(&v, &ClusterOptions { rows: Some(keep.clone()), k_range: vec![2, 3], ..o(10) }).unwrap();
        let vb = MatView::row_major(&x[..2 * n_per * d], 2 * n_per, d).unwrap();
        let copy = cluster_isotropy(&vb, &ClusterOptions { k_range: vec![2, 3], ..o(10) }).unwrap();
        assert_eq!(sub.best_k, 2);
        assert_eq!(sub.labels, copy.labels);
        assert_eq!(sub.clustered_rows.as_deref(), Some(&keep[..]));
        assert!((sub.inter_cluster_cosine - copy.inter_cluster_cosine).abs() < 1e-12);
        for j in 0..d {
            assert!((sub.mean[j] - copy.mean[j]).abs() < 1e-9 * copy.mean[j].abs().max(1.0));
        }
        // Reference mode on a subset samples from the subset only.
        let r =
            cluster_isotropy(&v, &ClusterOptions { rows: Some(keep), sample_size: Some(30), k_range: vec![2], ..o(0) })
                .unwrap();
        assert!(r.clustered_rows.unwrap().iter().all(|&i| i < 2 * n_per));
        let bad = |rows: Vec<usize>| {
            cluster_isotropy(&v, &ClusterOptions { rows: Some(rows), ..o(0) }).unwrap_err().to_string()
        };
        assert!(bad(vec![3, 2, 5]).contains("sorted"));
        assert!(bad(vec![0, 1, n]).contains("outside"));
        assert!(bad(vec![0, 1]).contains("at least 3 rows"));
    }

    #[test]
    fn bad_inputs_are_reported() {
        let x = vec![0.0f64, 1.0, 2.0, 3.0, 4.0, 5.0];
        let v = MatView::row_major(&x, 3, 2).unwrap();
        let o = |ks: Vec<usize>| ClusterOptions { k_range: ks, ..Default::default() };
        assert!(cluster_isotropy(&v, &o(vec![])).unwrap_err().to_string().contains("k_range is empty"));
        assert!(cluster_isotropy(&v, &o(vec![1, 2])).unwrap_err().to_string().contains("k = 1"));
        assert!(cluster_isotropy(&v, &o(vec![3])).unwrap_err().to_string().contains("too large"));
        let two = MatView::row_major(&x[..4], 2, 2).unwrap();
        assert!(cluster_isotropy(&two, &o(vec![2])).unwrap_err().to_string().contains("at least 3 rows"));
        let same = vec![1.5f64; 20];
        let v = MatView::row_major(&same, 10, 2).unwrap();
        assert!(cluster_isotropy(&v, &o(vec![2])).unwrap_err().to_string().contains("identical"));
        let mut few = vec![0.0f64; 20];
        few[2] = 1.0;
        few[4] = 2.0;
        let v = MatView::row_major(&few, 10, 2).unwrap();
        assert!(cluster_isotropy(&v, &o(vec![2, 3, 4])).unwrap_err().to_string().contains("distinct rows (3)"));
        assert_eq!(cluster_isotropy(&v, &o(vec![2, 3])).unwrap().scores.len(), 2);
        let mut bad = vec![0.0f64; 20];
        bad[13] = f64::NAN;
        let v = MatView::row_major(&bad, 10, 2).unwrap();
        assert_eq!(cluster_isotropy(&v, &o(vec![2])).unwrap_err(), Error::NonFinite { row: 6, col: 1 });
    }
}
