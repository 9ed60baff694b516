//! The whole global isotropy suite over in-memory views (two passes).
//!
//! Pass 1: [`Moments`] (mean, co-moment, raw unit sum; float64 or float32
//! Gram products by [`Precision`]). Between passes: one eigendecomposition,
//! of the covariance; the eigenpairs of XᵀX = M + nμμᵀ follow from it by the
//! rank-one update of [`crate::rankone`] (O(d²) secular equation + one GEMM).
//! Pass 2: [`SecondPass`] (partition functions in both variants, centred
//! cosine).

use crate::error::{Error, Result};
use crate::moments::{Moments, Precision};
use crate::partition::SecondPass;
use crate::rankone::rank_one_update;
use crate::source::MatView;
use crate::spectrum::{
    spectral_scores, sym_eigen, sym_eigen_route, sym_eigenvalues, EigRoute, SpectralScores, SymEigen,
};
use crate::threads;
use faer::Mat;

/// Options of [`analyze`].
#[derive(Clone, Debug)]
pub struct AnalyzeOptions {
    /// Cumulative explained-variance threshold of `effective_dim`.
    pub eps: f64,
    /// Threads (`None` = all cores).
    pub n_threads: Option<usize>,
    /// Skip the second pass (partition isotropy, centred cosine).
    pub one_pass: bool,
    /// Gram products of pass 1 in float64 (`Exact`) or float32 (`Fast`).
    pub precision: Precision,
    /// Bytes the step between the passes may hold above the input (`None`:
    /// [`default_budget`]); picks the eigensolver's route.
    pub memory_budget: Option<usize>,
}

/// 3·d²·8 bytes + 256 MiB: the memory budget of issue 19 above the input.
pub fn default_budget(d: usize) -> usize {
    3 * d * d * 8 + (256 << 20)
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions { eps: 0.8, n_threads: None, one_pass: false, precision: Precision::Exact, memory_budget: None }
    }
}

/// Every global statistic of design.md §3.
#[derive(Clone, Debug)]
pub struct Report {
    pub n: u64,
    pub dim: usize,
    pub mean: Vec<f64>,
    pub eigenvalues: Vec<f64>,
    pub scores: SpectralScores,
    pub avg_cosine: f64,
    pub avg_cosine_centered: Option<f64>,
    pub n_zero_norm: u64,
    pub n_zero_norm_centered: Option<u64>,
    pub log_partition_isotropy: Option<f64>,
    pub log_partition_isotropy_centered: Option<f64>,
}

fn check_spectral(m: &Moments) -> Result<()> {
    m.check_live("eigendecomposition")?;
    let n = m.count();
    if n < 2 {
        return Err(Error::Empty(format!("isotropy statistics need at least 2 rows, got {n}")));
    }
    if m.is_constant() {
        return Err(Error::InvalidArgument(
            "zero total variance (all rows identical): spectral statistics are undefined".into(),
        ));
    }
    Ok(())
}

/// Covariance eigenvalues only (descending): what the one-pass report needs.
pub fn cov_eigenvalues(m: &Moments) -> Result<Vec<f64>> {
    check_spectral(m)?;
    sym_eigenvalues(m.covariance()?.as_ref())
}

/// Eigenpairs of the covariance (descending).
pub fn cov_eigen(m: &Moments) -> Result<SymEigen> {
    check_spectral(m)?;
    sym_eigen(m.covariance()?.as_ref())
}

/// Eigenpairs of XᵀX = M + nμμᵀ (descending): the raw partition directions,
/// by the rank-one update of the covariance's eigenpairs (one O(d³)
/// decomposition, not two).
pub fn gram_eigen(m: &Moments) -> Result<SymEigen> {
    gram_from_cov(cov_eigen(m)?, m)
}

/// XᵀX = (n−1)·C + n·μμᵀ from the covariance's eigenpairs `ec` (consumed).
fn gram_from_cov(mut ec: SymEigen, m: &Moments) -> Result<SymEigen> {
    let nf = m.count() as f64;
    ec.values.iter_mut().for_each(|v| *v *= nf - 1.0);
    rank_one_update(ec, m.mean(), nf)
}

/// The reference route: XᵀX formed and decomposed in full (tests, benches).
pub fn gram_eigen_full(m: &Moments) -> Result<SymEigen> {
    check_spectral(m)?;
    let d = m.dim();
    let nf = m.count() as f64;
    let mu = m.mean();
    let lower = m.comoment_lower();
    let gram = Mat::from_fn(d, d, |i, j| {
        let (a, b) = if i >= j { (i, j) } else { (j, i) };
        lower[(a, b)] + nf * mu[a] * mu[b]
    });
    sym_eigen(gram.as_ref())
}

/// Eigendecompositions needed between the passes: (covariance, XᵀX).
pub fn directions(m: &Moments) -> Result<(SymEigen, SymEigen)> {
    let ec = cov_eigen(m)?;
    let er = gram_from_cov(ec.clone(), m)?;
    Ok((ec, er))
}

/// The second pass of [`analyze`] built straight from the moments, with the
/// covariance eigenvalues (descending). One eigendecomposition (of the
/// covariance); the raw directions come from it by the rank-one update.
/// `raw` / `centered` = false leaves that set of directions empty.
///
/// `release` = true moves the co-moment out of `m` (scaled in place into the
/// covariance, same bits) before the decomposition, so the state's d×d copy
/// is not held next to the solver's: the peak is then the solver's input
/// (lower triangle, ~d²/2 resident), its tridiagonal copy, its output and
/// its divide-and-conquer workspace (2·d²), ≈ 4.5·d² float64; the rank-one
/// step after it holds ≤ 3·d² (U, its copy consumed by the update, W).
/// `m` keeps n, mean and the cosine sums.
///
/// `budget` (bytes, `None` = [`default_budget`]) picks the solver's route
/// ([`EigRoute::for_budget`]): divide and conquer when its workspace, output
/// and the input fit (d ≤ 4733 at the default budget), else QR iteration
/// (≈ 2.5·d² in all, slower).
pub fn second_pass_for(
    m: &mut Moments,
    f64_gemm: bool,
    raw: bool,
    centered: bool,
    release: bool,
    budget: Option<usize>,
) -> Result<(Vec<f64>, SecondPass)> {
    let d = m.dim();
    check_spectral(m)?;
    let budget = budget.unwrap_or_else(|| default_budget(d));
    // Resident besides the solver's own memory: the lower triangle of its
    // input (released), or the state's lower triangle and a full copy.
    let held = if release { d * d * 4 } else { d * d * 12 };
    let route = EigRoute::for_budget(d, held, budget);
    let ec = if release {
        let c = m.take_covariance()?;
        sym_eigen_route(c.as_ref(), route)?
    } else {
        sym_eigen_route(m.covariance()?.as_ref(), route)?
    };
    let values = ec.values.clone();
    let (w, u) = match (raw, centered) {
        (true, true) => {
            let u = ec.vectors.clone();
            (gram_from_cov(ec, m)?.vectors, u)
        }
        (true, false) => (gram_from_cov(ec, m)?.vectors, Mat::zeros(d, 0)),
        (false, true) => (Mat::zeros(d, 0), ec.vectors),
        (false, false) => (Mat::zeros(d, 0), Mat::zeros(d, 0)),
    };
    Ok((values, SecondPass::new(m.mean().to_vec(), w, u, f64_gemm)?))
}

/// Run the suite over `views` (chunks of one stream, equal d): the Rust
/// entry point of the global suite, composing the same steps as the Python
/// pipeline (`isofast.analysis._analyze`: [`Moments`] → [`second_pass_for`]
/// with `release` → [`SecondPass`] over the chunks again).
///
/// No binding calls it — Python streams chunks through `Moments` and
/// `SecondPass` itself — and the Python pipeline is not tested against it
/// (the Python tests use the numpy reference `tests/reference.py`). Its
/// callers are this crate's tests: the suite's own (isotropic corners,
/// thread count and chunking) and `cluster.rs`, which checks the per-cluster
/// statistics at k = 1 against it.
pub fn analyze(views: &[MatView<'_>], opts: &AnalyzeOptions) -> Result<Report> {
    let d = views.first().map(|v| v.ncols()).ok_or_else(|| Error::Empty("no input".into()))?;
    for v in views {
        if v.ncols() != d {
            return Err(Error::DimMismatch { what: "input chunks".into(), expected: d, got: v.ncols() });
        }
    }
    threads::install(opts.n_threads, || {
        let mut m = Moments::with_precision(d, opts.precision);
        for v in views {
            m.update(v)?;
        }
        let f64_gemm = views.iter().any(|v| v.elem().needs_f64());
        let (values, mut sp) = if opts.one_pass {
            (cov_eigenvalues(&m)?, None)
        } else {
            let (v, sp) = second_pass_for(&mut m, f64_gemm, true, true, true, opts.memory_budget)?;
            (v, Some(sp))
        };
        let scores = spectral_scores(&values, opts.eps)?;
        let mut report = Report {
            n: m.count(),
            dim: d,
            mean: m.mean().to_vec(),
            eigenvalues: values,
            scores,
            avg_cosine: m.unit.average(),
            avg_cosine_centered: None,
            n_zero_norm: m.unit.n_zero,
            n_zero_norm_centered: None,
            log_partition_isotropy: None,
            log_partition_isotropy_centered: None,
        };
        if let Some(sp) = sp.as_mut() {
            for v in views {
                sp.update(v)?;
            }
            report.avg_cosine_centered = Some(sp.unit_centered.average());
            report.n_zero_norm_centered = Some(sp.unit_centered.n_zero);
            report.log_partition_isotropy = Some(sp.raw.log_isotropy());
            report.log_partition_isotropy_centered = Some(sp.centered.log_isotropy());
        }
        Ok(report)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotropic_cube_corners() {
        // ±e_k for every k: perfectly isotropic, mean 0, average cosine −1/(N−1).
        let d = 4;
        let mut x = vec![0.0f64; 2 * d * d];
        for k in 0..d {
            x[(2 * k) * d + k] = 1.0;
            x[(2 * k + 1) * d + k] = -1.0;
        }
        let v = MatView::row_major(&x, 2 * d, d).unwrap();
        let r = analyze(&[v], &AnalyzeOptions::default()).unwrap();
        assert!((r.scores.isoscore - 1.0).abs() < 1e-12);
        assert!((r.avg_cosine + 1.0 / 7.0).abs() < 1e-12);
        assert!(r.log_partition_isotropy.unwrap().abs() < 1e-12);
    }

    #[test]
    fn thread_count_does_not_change_results() {
        let (n, d) = (5000, 16);
        let mut s = 3u64;
        let x: Vec<f32> = (0..n * d)
            .map(|i| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * (1 + i % d) as f32 + 3.0
            })
            .collect();
        let v = MatView::row_major(&x, n, d).unwrap();
        let a = analyze(&[v], &AnalyzeOptions { n_threads: Some(1), ..Default::default() }).unwrap();
        let b =
            analyze(&[v.rows(0, 1234), v.rows(1234, n)], &AnalyzeOptions { n_threads: Some(3), ..Default::default() })
                .unwrap();
        for (x, y) in a.eigenvalues.iter().zip(&b.eigenvalues) {
            assert!((x - y).abs() <= 1e-12 * a.eigenvalues[0]);
        }
        let (pa, pb) = (a.log_partition_isotropy.unwrap(), b.log_partition_isotropy.unwrap());
        assert!((pa - pb).abs() <= 1e-9 * pa.abs().max(1.0), "{pa} vs {pb}");
    }

    fn data(n: usize, d: usize, seed: u64, f: impl Fn(usize, usize, f32) -> f32) -> Vec<f32> {
        let mut s = seed;
        (0..n * d)
            .map(|i| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                f(i / d, i % d, (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            })
            .collect()
    }

    #[test]
    fn rank_one_route_matches_full_gram_decomposition() {
        let (n, d) = (3000, 48);
        let cases: Vec<(&str, Vec<f32>)> = vec![
            ("random", data(n, d, 1, |_, j, r| r * (1 + j) as f32 + 0.3)),
            ("offset", data(n, d, 2, |_, _, r| 1e4 + 1e-2 * r)),
            ("massive", data(n, d, 3, |i, j, r| if i % 500 == 0 && j == 5 { 3e3 } else { r })),
            ("rank-deficient", data(n, d, 4, |_, j, r| if j < 10 { r + 1.0 } else { 0.5 })),
        ];
        for (what, x) in cases {
            let v = MatView::row_major(&x, n, d).unwrap();
            let m = crate::moments::moments_of(&[v], Some(2)).unwrap();
            let (a, b) = (gram_eigen(&m).unwrap(), gram_eigen_full(&m).unwrap());
            let top = b.values[0];
            for k in 0..d {
                assert!((a.values[k] - b.values[k]).abs() <= 1e-12 * d as f64 * top, "{what} λ_{k}");
            }
            // Same statistic through either set of directions.
            let lp = |w: Mat<f64>| {
                let mut sp = SecondPass::new(m.mean().to_vec(), w, Mat::zeros(d, 0), true).unwrap();
                sp.update(&v).unwrap();
                sp.raw.log_isotropy()
            };
            let (pa, pb) = (lp(a.vectors), lp(b.vectors));
            assert!((pa - pb).abs() <= 1e-9 * pb.abs().max(1.0), "{what}: {pa} vs {pb}");
        }
    }

    #[test]
    fn fast_is_bitwise_thread_invariant_and_within_bound() {
        let (n, d) = (9000, 300);
        for (what, x) in [
            ("offset", data(n, d, 5, |_, _, r| 1e4 + 1e-2 * r)),
            (
                "massive",
                data(n, d, 6, |i, j, r| if i % 1000 == 7 && j == 2 { 2e3 } else { r * (1.0 + j as f32 / 50.0) }),
            ),
        ] {
            let v = MatView::row_major(&x, n, d).unwrap();
            let run = |t, p| {
                analyze(&[v], &AnalyzeOptions { n_threads: Some(t), precision: p, ..Default::default() }).unwrap()
            };
            let (f1, f2, f3) = (run(1, Precision::Fast), run(2, Precision::Fast), run(3, Precision::Fast));
            let ex = run(2, Precision::Exact);
            let mf = |t| {
                crate::threads::install(Some(t), || {
                    let mut m = Moments::with_precision(d, Precision::Fast);
                    m.update(&v)?;
                    Ok(m)
                })
                .unwrap()
            };
            assert_eq!(mf(1).comoment(), mf(3).comoment(), "{what}: fast co-moment bits depend on threads");
            for f in [&f2, &f3] {
                assert_eq!(f.eigenvalues, f1.eigenvalues, "{what}: fast eigenvalues depend on threads");
                assert_eq!(f.scores, f1.scores);
                assert_eq!(f.mean, f1.mean);
            }
            // Bound: |Δλ_k| ≤ γ_{b+2}·tr M / (n−1) = γ·Σλ.
            let b = crate::moments::fast_tile_rows(d) as f64 + 2.0;
            let u = 2f64.powi(-24);
            let gamma = b * u / (1.0 - b * u);
            let tot: f64 = ex.eigenvalues.iter().sum();
            let worst = f1.eigenvalues.iter().zip(&ex.eigenvalues).map(|(a, e)| (a - e).abs()).fold(0.0, f64::max);
            assert!(worst <= gamma * tot, "{what}: |Δλ| {worst} > bound {}", gamma * tot);
            // Mean and cosine sums stay float64 (tiles differ: rounding only).
            assert!((f1.avg_cosine - ex.avg_cosine).abs() <= 1e-12, "{what}: avg_cosine");
            for (a, e) in f1.mean.iter().zip(&ex.mean) {
                assert!((a - e).abs() <= 1e-12 * e.abs().max(1.0), "{what}: mean");
            }
        }
    }
}
