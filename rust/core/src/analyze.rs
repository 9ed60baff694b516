//! The whole global isotropy suite over in-memory views (two passes).
//!
//! Pass 1: [`Moments`] (mean, co-moment, raw unit sum). Between passes: the
//! eigendecompositions of the covariance and of XᵀX = M + nμμᵀ. Pass 2:
//! [`SecondPass`] (partition functions in both variants, centred cosine).

use crate::error::{Error, Result};
use crate::moments::Moments;
use crate::partition::SecondPass;
use crate::source::MatView;
use crate::spectrum::{spectral_scores, sym_eigen, sym_eigenvalues, SpectralScores, SymEigen};
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
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions { eps: 0.8, n_threads: None, one_pass: false }
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

/// Eigenpairs of XᵀX = M + nμμᵀ (descending): the raw partition directions.
pub fn gram_eigen(m: &Moments) -> Result<SymEigen> {
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
    Ok((cov_eigen(m)?, gram_eigen(m)?))
}

/// The second pass of [`analyze`] built straight from the moments, with the
/// covariance eigenvalues (descending). Each d×d input is dropped once
/// decomposed and the eigenvectors move into the pass (converted to f32 for
/// an f32 GEMM) instead of being copied; the peak is one eigendecomposition
/// (input, output and faer's divide-and-conquer workspace of ~3·d² f64) next
/// to the co-moment and the directions already kept.
/// `raw` / `centered` = false leaves that set of directions empty.
pub fn second_pass_for(m: &Moments, f64_gemm: bool, raw: bool, centered: bool) -> Result<(Vec<f64>, SecondPass)> {
    let d = m.dim();
    let ec = cov_eigen(m)?;
    let (values, u) = (ec.values, if centered { ec.vectors } else { Mat::zeros(d, 0) });
    let w = if raw { gram_eigen(m)?.vectors } else { Mat::zeros(d, 0) };
    Ok((values, SecondPass::new(m.mean().to_vec(), w, u, f64_gemm)?))
}

/// Run the suite over `views` (chunks of one stream, equal d).
pub fn analyze(views: &[MatView<'_>], opts: &AnalyzeOptions) -> Result<Report> {
    let d = views.first().map(|v| v.ncols()).ok_or_else(|| Error::Empty("no input".into()))?;
    for v in views {
        if v.ncols() != d {
            return Err(Error::DimMismatch { what: "input chunks".into(), expected: d, got: v.ncols() });
        }
    }
    threads::install(opts.n_threads, || {
        let mut m = Moments::new(d);
        for v in views {
            m.update(v)?;
        }
        let f64_gemm = views.iter().any(|v| v.elem().needs_f64());
        let (values, mut sp) = if opts.one_pass {
            (cov_eigenvalues(&m)?, None)
        } else {
            let (v, sp) = second_pass_for(&m, f64_gemm, true, true)?;
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
        let b = analyze(&[v.rows(0, 1234), v.rows(1234, n)], &AnalyzeOptions { n_threads: Some(3), ..Default::default() }).unwrap();
        for (x, y) in a.eigenvalues.iter().zip(&b.eigenvalues) {
            assert!((x - y).abs() <= 1e-12 * a.eigenvalues[0]);
        }
        let (pa, pb) = (a.log_partition_isotropy.unwrap(), b.log_partition_isotropy.unwrap());
        assert!((pa - pb).abs() <= 1e-9 * pa.abs().max(1.0), "{pa} vs {pb}");
    }
}
