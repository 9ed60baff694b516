//! Eigenpairs of a symmetric rank-one update A = M + ρ·vvᵀ from those of M.
//!
//! The raw second moment XᵀX = M + n·μμᵀ is the co-moment M plus a rank-one
//! term, so once the covariance M/(n−1) = U Λ Uᵀ is decomposed, XᵀX needs no
//! second O(d³) decomposition:
//!
//! A = U (D + ρ zzᵀ) Uᵀ,  D = (n−1)Λ,  z = Uᵀv/‖v‖,  ρ = n‖μ‖².
//!
//! The eigenvalues of D + ρzzᵀ (ρ > 0, D ascending) are the roots of the
//! secular equation f(λ) = 1/ρ + Σ_i z_i²/(d_i − λ) = 0, one in each interval
//! (d_j, d_{j+1}) and the last in (d_k, d_k + ρ‖z‖²] (Golub 1973; Bunch,
//! Nielsen & Sorensen 1978, "Rank-one modification of the symmetric
//! eigenproblem", Numer. Math. 31). Each root is found by the BNS two-pole
//! rational iteration, safeguarded by bisection, in coordinates shifted to
//! the nearer pole (λ = d_o + τ), so λ − d_i = (d_o − d_i) + τ is computed
//! without cancellation. Components are deflated first (LAPACK dlaed2): a
//! z_i with ρ|z_i| ≤ tol leaves (d_i, u_i) an eigenpair, and two values closer
//! than the coupling they would create are rotated (Givens) so one z_i is 0;
//! tol = 8ε·max(max|d_i|, ρ). The eigenvectors use the Gu–Eisenstat (1994)
//! correction: ẑ is recomputed from the computed roots (Löwner's formula)
//! so that the vectors q_j ∝ (ẑ_i/(d_i − λ_j))_i are orthogonal to working
//! precision, and W = U·Q is one GEMM (O(d³) flops, but at GEMM speed, not
//! the ~9d³ of a full decomposition).
//!
//! Accuracy (backward stable): the result is the exact decomposition of a
//! matrix within O(d·ε·‖A‖) of A, like the full decomposition it replaces.
//!
//! faer 0.24 has a secular-equation solver only inside its divide-and-conquer
//! tridiagonal solver (`pub(crate)`), so it is written here.

use crate::error::{Error, Result};
use crate::spectrum::SymEigen;
use crate::threads;
use faer::{Accum, Mat, MatRef};
use rayon::prelude::*;

/// Eigenpairs of M + ρ·vvᵀ from `eig` = eigenpairs of M (values descending,
/// as [`crate::spectrum::sym_eigen`] returns them), consumed so that the
/// d×d eigenvector matrix is reused in place. Result sorted descending.
/// ρ·‖v‖² = 0 returns `eig` unchanged. Needs ρ ≥ 0.
pub fn rank_one_update(eig: SymEigen, v: &[f64], rho: f64) -> Result<SymEigen> {
    let SymEigen { values, vectors: mut u } = eig;
    let d = values.len();
    if u.nrows() != d || u.ncols() != d || v.len() != d {
        return Err(Error::DimMismatch { what: "rank-one update".into(), expected: d, got: v.len() });
    }
    if !rho.is_finite() || rho < 0.0 || v.iter().any(|x| !x.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "rank-one update needs a finite ρ ≥ 0 and a finite v, got ρ = {rho}"
        )));
    }
    let vn = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let rho = rho * vn * vn;
    if d == 0 || rho == 0.0 || !rho.is_finite() {
        if !rho.is_finite() {
            return Err(Error::Numerical("rank-one update: ρ‖v‖² overflows".into()));
        }
        return Ok(SymEigen { values, vectors: u });
    }
    // z = Uᵀ v / ‖v‖ (‖z‖ = 1 up to rounding).
    let vhat: Vec<f64> = v.iter().map(|x| x / vn).collect();
    let mut zfull = vec![0.0f64; d];
    faer::linalg::matmul::matmul(
        faer::MatMut::from_column_major_slice_mut(&mut zfull, d, 1),
        Accum::Replace,
        u.as_ref().transpose(),
        MatRef::from_column_major_slice(&vhat, d, 1),
        1.0,
        threads::par(),
    );
    // Ascending order: position a ↔ column d−1−a of U.
    let dv: Vec<f64> = (0..d).map(|a| values[d - 1 - a]).collect();
    let zv: Vec<f64> = (0..d).map(|a| zfull[d - 1 - a]).collect();
    let cols: Vec<usize> = (0..d).map(|a| d - 1 - a).collect();
    let dmax = dv.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let tol = 8.0 * f64::EPSILON * dmax.max(rho);

    // Deflation (dlaed2). `nd` = kept (value, z, column); `defl` = (value, column).
    let mut nd: Vec<(f64, f64, usize)> = Vec::with_capacity(d);
    let mut defl: Vec<(f64, usize)> = Vec::new();
    let mut dv = dv;
    let mut zv = zv;
    let mut prev: Option<usize> = None; // position (ascending) of the last kept candidate
    for a in 0..d {
        if rho * zv[a].abs() <= tol {
            defl.push((dv[a], cols[a]));
            continue;
        }
        if let Some(p) = prev {
            // Rotate columns p, a so that z_p becomes 0 if the coupling
            // (d_a − d_p)·c·s this leaves off the diagonal is below tol.
            let (s0, c0) = (zv[p], zv[a]);
            let tau = s0.hypot(c0);
            let (c, s) = (c0 / tau, -s0 / tau);
            let t = dv[a] - dv[p];
            if (t * c * s).abs() <= tol {
                zv[a] = tau;
                zv[p] = 0.0;
                rotate_columns(&mut u, cols[p], cols[a], c, s);
                let dp = dv[p] * c * c + dv[a] * s * s;
                let da = dv[p] * s * s + dv[a] * c * c;
                dv[p] = dp;
                dv[a] = da;
                defl.push((dv[p], cols[p]));
            } else {
                nd.push((dv[p], zv[p], cols[p]));
            }
        }
        prev = Some(a);
    }
    if let Some(p) = prev {
        nd.push((dv[p], zv[p], cols[p]));
    }
    // Rotations keep each kept d within tol of its neighbours' order; sort
    // to restore strict ascending order for the interlacing.
    nd.sort_by(|x, y| x.0.total_cmp(&y.0));
    let k = nd.len();
    let dk: Vec<f64> = nd.iter().map(|x| x.0).collect();
    let zk: Vec<f64> = nd.iter().map(|x| x.1).collect();

    // Roots λ_j = d_{o_j} + τ_j, one per kept component, in parallel (each
    // root is computed by one thread, so the result is thread-count free).
    let roots: Vec<(usize, f64)> = (0..k).into_par_iter().map(|j| secular_root(&dk, &zk, rho, j)).collect();
    let lam = |j: usize| dk[roots[j].0] + roots[j].1;
    // λ_j − d_i without cancellation.
    let lam_minus = |j: usize, i: usize| (dk[roots[j].0] - dk[i]) + roots[j].1;

    // Gu–Eisenstat: ẑ_i² = ∏_j (λ_j − d_i) / (ρ ∏_{j≠i} (d_j − d_i)), paired
    // so every factor is a positive ratio near 1.
    let zhat: Vec<f64> = (0..k)
        .into_par_iter()
        .map(|i| {
            let mut p = lam_minus(k - 1, i) / rho;
            for j in 0..i {
                p *= lam_minus(j, i) / (dk[j] - dk[i]);
            }
            for j in i..k - 1 {
                p *= lam_minus(j, i) / (dk[j + 1] - dk[i]);
            }
            p.max(0.0).sqrt().copysign(zk[i])
        })
        .collect();
    // Gather the kept columns of U first (in place).
    let mut order: Vec<usize> = nd.iter().map(|x| x.2).collect();
    order.extend(defl.iter().map(|x| x.1));
    permute_columns(&mut u, &order);
    // W[:, :k] = U[:, :k]·Q with Q (k×k), column j ∝ (ẑ_i / (d_i − λ_j))_i,
    // built one panel of columns at a time: no k×k matrix is ever held, so
    // the step needs U, W and a k×PANEL block (≈ 2·d² float64).
    const QPANEL: usize = 512;
    let mut w = Mat::<f64>::zeros(d, d);
    let mut q = Mat::<f64>::zeros(k, QPANEL.min(k));
    for j0 in (0..k).step_by(QPANEL) {
        let pw = QPANEL.min(k - j0);
        q.as_mut().subcols_mut(0, pw).par_col_iter_mut().enumerate().for_each(|(jj, mut col)| {
            let j = j0 + jj;
            let mut ss = 0.0;
            for i in 0..k {
                let x = zhat[i] / -lam_minus(j, i);
                col[i] = x;
                ss += x * x;
            }
            let inv = 1.0 / ss.sqrt();
            for i in 0..k {
                col[i] *= inv;
            }
        });
        faer::linalg::matmul::matmul(
            w.as_mut().subcols_mut(j0, pw),
            Accum::Replace,
            u.as_ref().subcols(0, k),
            q.as_ref().subcols(0, pw),
            1.0,
            threads::par(),
        );
    }
    drop(q);
    w.as_mut().subcols_mut(k, d - k).copy_from(u.as_ref().subcols(k, d - k));
    drop(u);
    let mut vals: Vec<f64> = (0..k).map(lam).collect();
    vals.extend(defl.iter().map(|x| x.0));
    // Descending.
    let mut perm: Vec<usize> = (0..d).collect();
    perm.sort_by(|&a, &b| vals[b].total_cmp(&vals[a]));
    permute_columns(&mut w, &perm);
    let values = perm.iter().map(|&p| vals[p]).collect();
    Ok(SymEigen { values, vectors: w })
}

/// (x, y) ← (c·x + s·y, c·y − s·x) on columns `i`, `j`.
fn rotate_columns(u: &mut Mat<f64>, i: usize, j: usize, c: f64, s: f64) {
    for r in 0..u.nrows() {
        let (x, y) = (u[(r, i)], u[(r, j)]);
        u[(r, i)] = c * x + s * y;
        u[(r, j)] = c * y - s * x;
    }
}

/// New column t = old column `perm[t]`, in place (cycle by cycle, one spare
/// column of memory).
fn permute_columns(u: &mut Mat<f64>, perm: &[usize]) {
    let n = perm.len();
    let mut done = vec![false; n];
    let mut tmp = vec![0.0f64; u.nrows()];
    for start in 0..n {
        if done[start] || perm[start] == start {
            done[start] = true;
            continue;
        }
        // Walk the cycle start ← perm[start] ← perm[perm[start]] ...
        tmp.copy_from_slice(u.col(start).try_as_col_major().unwrap().as_slice());
        let mut t = start;
        loop {
            done[t] = true;
            let src = perm[t];
            if src == start {
                u.col_mut(t).try_as_col_major_mut().unwrap().as_slice_mut().copy_from_slice(&tmp);
                break;
            }
            let (a, b) = (t, src);
            copy_col(u, b, a);
            t = src;
        }
    }
}

fn copy_col(u: &mut Mat<f64>, from: usize, to: usize) {
    for r in 0..u.nrows() {
        u[(r, to)] = u[(r, from)];
    }
}

/// Root j (0-based, ascending) of 1/ρ + Σ z_i²/(d_i − λ) = 0 for strictly
/// ascending `dk` and non-zero `zk`: returns (origin o, τ) with λ = d_o + τ.
///
/// BNS fixed-weight iteration: ψ (poles at or left of d_j) and φ (poles
/// right of it) are each replaced by a + b/(δ − τ) matching value and slope
/// at the current τ, and the two-pole model's root in the bracket is the next
/// iterate; a step leaving the bracket is replaced by bisection.
fn secular_root(dk: &[f64], zk: &[f64], rho: f64, j: usize) -> (usize, f64) {
    let k = dk.len();
    let last = j == k - 1;
    let z2: f64 = zk.iter().map(|z| z * z).sum();
    let rinv = 1.0 / rho;
    // g(τ) with origin o, split at j: returns (g, ψ', φ', ψ, φ, Σ|terms|).
    let eval = |o: usize, tau: f64| {
        let (mut psi, mut dpsi, mut phi, mut dphi, mut abs) = (0.0, 0.0, 0.0, 0.0, 0.0);
        let d0 = dk[o];
        for i in 0..k {
            let del = (dk[i] - d0) - tau;
            let t = zk[i] / del;
            let term = zk[i] * t;
            abs += term.abs();
            if i <= j {
                psi += term;
                dpsi += t * t;
            } else {
                phi += term;
                dphi += t * t;
            }
        }
        (rinv + psi + phi, psi, dpsi, phi, dphi, abs)
    };
    let (o, mut lo, mut hi) = if last {
        (j, 0.0, rho * z2)
    } else {
        let gap = dk[j + 1] - dk[j];
        let (gm, ..) = eval(j, gap / 2.0);
        if gm > 0.0 {
            (j, 0.0, gap / 2.0)
        } else {
            (j + 1, -gap / 2.0, 0.0)
        }
    };
    // Poles in shifted coordinates: a = δ_j, b = δ_{j+1}.
    let a = dk[j] - dk[o];
    let b = if last { f64::INFINITY } else { dk[j + 1] - dk[o] };
    let mut tau = if last { hi / 2.0 } else { (lo + hi) / 2.0 };
    // The last root's bracket end ρ‖z‖² can be the root itself (z = e_k).
    for _ in 0..200 {
        let (g, psi, dpsi, phi, dphi, abs) = eval(o, tau);
        if g == 0.0 || g.abs() <= 8.0 * f64::EPSILON * (rinv + abs) {
            break;
        }
        if g < 0.0 {
            lo = tau;
        } else {
            hi = tau;
        }
        if hi - lo <= 2.0 * f64::EPSILON * lo.abs().max(hi.abs()) {
            break;
        }
        // Two-pole model w0 + B/(a − s) + E/(b − s) = 0.
        let da = a - tau;
        let bb = dpsi * da * da;
        let aa = psi - dpsi * da;
        let next = if last {
            let w0 = rinv + aa + phi;
            if w0 > 0.0 {
                a + bb / w0
            } else {
                f64::NAN
            }
        } else {
            let db = b - tau;
            let ee = dphi * db * db;
            let cc = phi - dphi * db;
            let w0 = rinv + aa + cc;
            let delta = b - a;
            if o == j {
                // x = s − a ∈ (0, Δ): w0x² − (w0Δ + B + E)x + BΔ = 0.
                a + quad_root_in(w0, -(w0 * delta + bb + ee), bb * delta, delta)
            } else {
                // y = b − s ∈ (0, Δ): w0y² + (B + E − w0Δ)y − EΔ = 0.
                b - quad_root_in(w0, bb + ee - w0 * delta, -ee * delta, delta)
            }
        };
        tau = if next > lo && next < hi { next } else { 0.5 * (lo + hi) };
    }
    (o, tau)
}

/// The root of αx² + βx + γ in (0, Δ) (NaN if none), computed stably.
fn quad_root_in(alpha: f64, beta: f64, gamma: f64, delta: f64) -> f64 {
    let inside = |x: f64| x > 0.0 && x < delta;
    if alpha == 0.0 {
        let x = -gamma / beta;
        return if inside(x) { x } else { f64::NAN };
    }
    let disc = beta * beta - 4.0 * alpha * gamma;
    if disc < 0.0 {
        return f64::NAN;
    }
    let q = -0.5 * (beta + beta.signum() * disc.sqrt());
    let (x1, x2) = (q / alpha, if q != 0.0 { gamma / q } else { f64::NAN });
    if inside(x1) {
        x1
    } else if inside(x2) {
        x2
    } else {
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spectrum::sym_eigen;

    fn lcg(s: &mut u64) -> f64 {
        *s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    }

    /// A random symmetric PSD M = GᵀG (G: r×d) with eigen-decomposition.
    fn psd(d: usize, r: usize, seed: u64, scale: impl Fn(usize) -> f64) -> Mat<f64> {
        let mut s = seed;
        let g = Mat::from_fn(r, d, |_, j| lcg(&mut s) * scale(j));
        g.as_ref().transpose() * g.as_ref()
    }

    /// Checks W against A = M + ρvvᵀ: orthogonality, residual, eigenvalues
    /// against the full decomposition, |⟨w_k, w'_k⟩| for separated values.
    fn check(m: &Mat<f64>, v: &[f64], rho: f64, what: &str) {
        let d = m.nrows();
        let a = Mat::from_fn(d, d, |i, j| m[(i, j)] + rho * v[i] * v[j]);
        let full = sym_eigen(a.as_ref()).unwrap();
        let ru = rank_one_update(sym_eigen(m.as_ref()).unwrap(), v, rho).unwrap();
        let norm = full.values[0].abs().max(1e-300);
        let tol = 64.0 * d as f64 * f64::EPSILON;
        for k in 0..d {
            let (x, y) = (ru.values[k], full.values[k]);
            assert!((x - y).abs() <= tol * norm, "{what}: λ_{k} {x} vs {y} (‖A‖ {norm})");
        }
        let w = &ru.vectors;
        let wtw = w.as_ref().transpose() * w.as_ref();
        let aw = a.as_ref() * w.as_ref();
        for j in 0..d {
            for i in 0..d {
                let e = if i == j { 1.0 } else { 0.0 };
                assert!((wtw[(i, j)] - e).abs() <= tol, "{what}: WᵀW[{i},{j}] = {}", wtw[(i, j)]);
                let r = aw[(i, j)] - ru.values[j] * w[(i, j)];
                assert!(r.abs() <= tol * norm, "{what}: residual {r} at ({i},{j})");
            }
        }
        for k in 0..d {
            let gap = (0..d)
                .filter(|&j| j != k)
                .map(|j| (full.values[j] - full.values[k]).abs())
                .fold(f64::INFINITY, f64::min);
            if gap > 1e-6 * norm {
                let dot: f64 = (0..d).map(|i| w[(i, k)] * full.vectors[(i, k)]).sum();
                assert!((dot.abs() - 1.0).abs() <= 1e-8, "{what}: |⟨w_{k}, w'_{k}⟩| = {}", dot.abs());
            }
        }
    }

    #[test]
    fn random_and_offset_and_massive() {
        let d = 40;
        let m = psd(d, 200, 1, |_| 1.0);
        let mut s = 9;
        let v: Vec<f64> = (0..d).map(|_| lcg(&mut s)).collect();
        check(&m, &v, 3.0, "random");
        check(&m, &v, 1e8, "huge offset");
        check(&m, &v, 1e-9, "tiny offset");
        // Massive activation: one coordinate 1e4 times the rest.
        let mm = psd(d, 200, 2, |j| if j == 3 { 1e4 } else { 1.0 });
        check(&mm, &v, 5.0, "massive coordinate");
        let mut vm = vec![0.01; d];
        vm[3] = 300.0;
        check(&mm, &vm, 200.0, "massive mean");
    }

    #[test]
    fn rank_deficient_and_n_below_d() {
        let d = 30;
        let m = psd(d, 7, 3, |_| 1.0); // rank 7: 23 zero eigenvalues
        let mut s = 4;
        let v: Vec<f64> = (0..d).map(|_| lcg(&mut s) + 2.0).collect();
        check(&m, &v, 10.0, "rank 7");
        let z = Mat::<f64>::zeros(d, d);
        check(&z, &v, 10.0, "M = 0");
    }

    #[test]
    fn degenerate_cases_deflate() {
        let d = 24;
        let m = psd(d, 100, 5, |_| 1.0);
        let e = sym_eigen(m.as_ref()).unwrap();
        // μ = 0 and ρ = 0: unchanged.
        let zero = vec![0.0; d];
        let r = rank_one_update(e.clone(), &zero, 5.0).unwrap();
        assert_eq!(r.values, e.values);
        check(&m, &zero, 5.0, "mu = 0");
        // μ parallel to an eigenvector: only that eigenvalue moves, by ρ.
        let u3: Vec<f64> = (0..d).map(|i| e.vectors[(i, 3)]).collect();
        check(&m, &u3, 7.0, "mu = u_3");
        let r = rank_one_update(e.clone(), &u3, 7.0).unwrap();
        let want = e.values[3] + 7.0;
        assert!(r.values.iter().any(|x| (x - want).abs() <= 1e-12 * want), "{:?}", r.values);
        // Repeated eigenvalues: M = diag with a 6-fold and a 4-fold value.
        let dg: Vec<f64> = (0..d)
            .map(|i| {
                if i < 6 {
                    2.0
                } else if i < 10 {
                    5.0
                } else {
                    1.0 + i as f64
                }
            })
            .collect();
        let md = Mat::from_fn(d, d, |i, j| if i == j { dg[i] } else { 0.0 });
        let mut s = 11;
        let v: Vec<f64> = (0..d).map(|_| lcg(&mut s)).collect();
        check(&md, &v, 3.0, "repeated");
        // Identity (all d equal) with a rotated basis.
        let q = sym_eigen(psd(d, 50, 6, |_| 1.0).as_ref()).unwrap().vectors;
        let mi = q.as_ref() * q.as_ref().transpose();
        check(&mi, &v, 0.5, "identity");
        // Near-repeated: gaps of 1e-14 relative.
        let dn: Vec<f64> = (0..d).map(|i| 1.0 + (i / 3) as f64 + (i % 3) as f64 * 1e-14).collect();
        let mn = Mat::from_fn(d, d, |i, j| if i == j { dn[i] } else { 0.0 });
        check(&mn, &v, 2.0, "near-repeated");
    }

    #[test]
    fn bad_arguments_are_refused() {
        let e = sym_eigen(Mat::<f64>::identity(3, 3).as_ref()).unwrap();
        assert!(rank_one_update(e.clone(), &[1.0, 2.0], 1.0).is_err());
        assert!(rank_one_update(e.clone(), &[1.0, 2.0, 3.0], -1.0).is_err());
        assert!(rank_one_update(e, &[1.0, f64::NAN, 3.0], 1.0).is_err());
    }
}
