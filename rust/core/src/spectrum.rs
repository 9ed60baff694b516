//! Symmetric eigendecomposition of d×d covariance-like matrices (faer, pure
//! Rust: no system BLAS/LAPACK) and the spectral isotropy scores.

use crate::error::{Error, Result};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{self, ComputeEigenvectors};
use faer::{Mat, MatRef, Side};

/// Eigenpairs sorted by decreasing eigenvalue; `vectors` column k pairs with
/// `values[k]`.
#[derive(Clone, Debug)]
pub struct SymEigen {
    pub values: Vec<f64>,
    pub vectors: Mat<f64>,
}

/// Eigendecomposition of a symmetric matrix of which only the lower triangle
/// is read. Eigenvalues below the solver's noise floor λ₁·d·ε (and negative
/// round-off) are set to exactly 0, so rank-deficient inputs give exact ranks.
pub fn sym_eigen(a_lower: MatRef<'_, f64>) -> Result<SymEigen> {
    sym_eigen_route(a_lower, EigRoute::DivideAndConquer)
}

/// The two ways faer's symmetric solver can finish the tridiagonal problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EigRoute {
    /// Divide and conquer (faer's default, recursion threshold 128): fast,
    /// workspace ≈ 3·d² float64 (tridiagonal copy + two d×d buffers).
    DivideAndConquer,
    /// Implicit QR iteration: workspace ≈ 1·d² (the tridiagonal copy), about
    /// 4.5× slower at d = 4096 (benches/README.md).
    Qr,
}

impl EigRoute {
    fn params(self) -> evd::SelfAdjointEvdParams {
        let mut p: evd::SelfAdjointEvdParams = <evd::SelfAdjointEvdParams as faer::Auto<f64>>::auto();
        if self == EigRoute::Qr {
            p.recursion_threshold = usize::MAX;
        }
        p
    }

    /// Bytes of faer's workspace plus the d×d output for this route.
    pub fn peak_bytes(self, d: usize) -> usize {
        let par = faer::get_global_parallelism();
        let req = evd::self_adjoint_evd_scratch::<f64>(d, ComputeEigenvectors::Yes, par, self.params().into());
        req.size_bytes() + d * d * 8
    }

    /// The faster route whose workspace and output, next to `held` bytes
    /// already resident (the solver's input and whatever the caller keeps),
    /// fit in `budget`; the leaner one if neither fits.
    pub fn for_budget(d: usize, held: usize, budget: usize) -> EigRoute {
        if held + EigRoute::DivideAndConquer.peak_bytes(d) <= budget {
            EigRoute::DivideAndConquer
        } else {
            EigRoute::Qr
        }
    }
}

/// [`sym_eigen`] by a chosen route. With `DivideAndConquer` this is faer's
/// `SelfAdjointEigen::new` with the eigenvectors written straight into the
/// returned matrix and reversed in place (no second d×d copy): same routine,
/// same parallelism, so the same bits as before.
pub fn sym_eigen_route(a_lower: MatRef<'_, f64>, route: EigRoute) -> Result<SymEigen> {
    let d = check_square(a_lower)?;
    let par = faer::get_global_parallelism();
    let params = route.params();
    let mut u = Mat::<f64>::zeros(d, d);
    let mut s = faer::diag::Diag::<f64>::zeros(d);
    {
        let mut buf =
            MemBuffer::new(evd::self_adjoint_evd_scratch::<f64>(d, ComputeEigenvectors::Yes, par, params.into()));
        evd::self_adjoint_evd(a_lower, s.as_mut(), Some(u.as_mut()), par, MemStack::new(&mut buf), params.into())
            .map_err(|e| Error::Numerical(format!("symmetric eigensolver failed: {e:?}")))?;
    }
    // faer returns ascending eigenvalues; reverse to descending.
    let values = clip_noise((0..d).rev().map(|k| s[k]).collect());
    for k in 0..d / 2 {
        faer::perm::swap_cols_idx(u.as_mut(), k, d - 1 - k);
    }
    Ok(SymEigen { values, vectors: u })
}

/// Eigenvalues only (descending, noise floor as in [`sym_eigen`]): no
/// eigenvector work or d×d output, and all the one-pass spectral scores need.
pub fn sym_eigenvalues(a_lower: MatRef<'_, f64>) -> Result<Vec<f64>> {
    let d = check_square(a_lower)?;
    let mut values = a_lower
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| Error::Numerical(format!("symmetric eigensolver failed: {e:?}")))?;
    debug_assert_eq!(values.len(), d);
    values.reverse();
    Ok(clip_noise(values))
}

fn check_square(a: MatRef<'_, f64>) -> Result<usize> {
    let d = a.nrows();
    if d == 0 || a.ncols() != d {
        return Err(Error::InvalidArgument(format!(
            "eigendecomposition needs a non-empty square matrix, got {}×{}",
            a.nrows(),
            a.ncols()
        )));
    }
    Ok(d)
}

/// Set eigenvalues below λ₁·d·ε (and negative round-off) to exactly 0.
fn clip_noise(mut values: Vec<f64>) -> Vec<f64> {
    let d = values.len();
    let top = values[0].max(0.0);
    let floor = top * d as f64 * f64::EPSILON;
    for v in values.iter_mut() {
        if *v <= floor {
            *v = 0.0;
        }
    }
    values
}

/// Spectral scores of covariance eigenvalues λ₁ ≥ … ≥ λ_d ≥ 0.
#[derive(Clone, Debug, PartialEq)]
pub struct SpectralScores {
    /// λ_k / Σλ.
    pub explained_variance_ratio: Vec<f64>,
    /// Smallest k with Σ_{i≤k} λ_i/Σλ ≥ eps (Cai et al. 2021, d(ε)).
    pub effective_dim: usize,
    /// (Σλ)² / Σλ².
    pub participation_ratio: f64,
    /// (PR − 1)/(d − 1) (Rudman et al. 2022).
    pub isoscore: f64,
    /// Σλ / λ₁.
    pub stable_rank: f64,
    /// λ₁ / Σλ (Ethayarajh 2019, centred).
    pub pc1_share: f64,
    /// exp(−Σ p_k ln p_k), p_k = √λ_k/Σ√λ (Roy & Vetterli 2007).
    pub effective_rank: f64,
    /// Σλ (total variance).
    pub total_variance: f64,
}

/// Scores from descending, non-negative eigenvalues.
pub fn spectral_scores(values: &[f64], eps: f64) -> Result<SpectralScores> {
    let d = values.len();
    if d < 2 {
        return Err(Error::InvalidArgument(format!("spectral isotropy scores need at least 2 dimensions, got {d}")));
    }
    if !(eps > 0.0 && eps <= 1.0) {
        return Err(Error::InvalidArgument(format!("eps must lie in (0, 1], got {eps}")));
    }
    let total: f64 = values.iter().sum();
    if total.is_nan() || total <= 0.0 || total.is_infinite() {
        return Err(Error::InvalidArgument(
            "zero total variance (all rows identical): spectral statistics are undefined".into(),
        ));
    }
    let evr: Vec<f64> = values.iter().map(|v| v / total).collect();
    // Tolerance 1e-12 keeps eps = 0.8 from missing an exact 0.8 through rounding.
    let mut cum = 0.0;
    let mut effective_dim = d;
    for (k, r) in evr.iter().enumerate() {
        cum += r;
        if cum >= eps - 1e-12 {
            effective_dim = k + 1;
            break;
        }
    }
    let sq: f64 = values.iter().map(|v| v * v).sum();
    let pr = total * total / sq;
    let roots: Vec<f64> = values.iter().map(|v| v.sqrt()).collect();
    let root_sum: f64 = roots.iter().sum();
    let entropy: f64 = roots
        .iter()
        .filter(|r| **r > 0.0)
        .map(|r| {
            let p = r / root_sum;
            -p * p.ln()
        })
        .sum();
    Ok(SpectralScores {
        explained_variance_ratio: evr.clone(),
        effective_dim,
        participation_ratio: pr,
        isoscore: (pr - 1.0) / (d as f64 - 1.0),
        stable_rank: total / values[0],
        pc1_share: evr[0],
        effective_rank: entropy.exp(),
        total_variance: total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_of_diagonal_and_rotation() {
        let a = Mat::from_fn(3, 3, |i, j| if i == j { [2.0, 5.0, 1.0][i] } else { 0.0 });
        let e = sym_eigen(a.as_ref()).unwrap();
        assert_eq!(e.values.len(), 3);
        assert!((e.values[0] - 5.0).abs() < 1e-12 && (e.values[2] - 1.0).abs() < 1e-12);
        assert!((e.vectors[(1, 0)].abs() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn qr_route_matches_divide_and_conquer() {
        let n = 300;
        let mut sd = 5u64;
        let b = Mat::from_fn(n, n, |_, _| {
            sd = sd.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (sd >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        });
        let a = &b * b.transpose();
        let x = sym_eigen_route(a.as_ref(), EigRoute::DivideAndConquer).unwrap();
        let y = sym_eigen_route(a.as_ref(), EigRoute::Qr).unwrap();
        for k in 0..n {
            assert!((x.values[k] - y.values[k]).abs() <= 1e-12 * x.values[0]);
        }
        let r = &a * &y.vectors - &y.vectors * faer::Mat::from_fn(n, n, |i, j| if i == j { y.values[i] } else { 0.0 });
        assert!(r.norm_max() <= 1e-10 * x.values[0]);
        assert!(EigRoute::Qr.peak_bytes(n) < EigRoute::DivideAndConquer.peak_bytes(n));
        assert_eq!(EigRoute::for_budget(n, 0, usize::MAX), EigRoute::DivideAndConquer);
        assert_eq!(EigRoute::for_budget(n, 0, 0), EigRoute::Qr);
    }

    #[test]
    fn isotropic_and_rank_one_scores() {
        let iso = spectral_scores(&[1.0; 10], 0.8).unwrap();
        assert!((iso.isoscore - 1.0).abs() < 1e-12);
        assert_eq!(iso.effective_dim, 8);
        assert!((iso.effective_rank - 10.0).abs() < 1e-9);
        let mut v = vec![0.0; 10];
        v[0] = 3.0;
        let r1 = spectral_scores(&v, 0.8).unwrap();
        assert_eq!(r1.isoscore, 0.0);
        assert_eq!(r1.effective_dim, 1);
        assert!((r1.effective_rank - 1.0).abs() < 1e-12);
        assert!(spectral_scores(&[0.0, 0.0], 0.8).is_err());
        assert!(spectral_scores(&[1.0], 0.8).is_err());
        assert!(spectral_scores(&[1.0, 1.0], 1.5).is_err());
    }
}
