"""Plain float64 numpy references for the global statistics (design.md §3).

Written independently of isofast's kernels: dense, obvious, O(N²) where that
is the obvious way. Used by the tests only.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp


def clip_eigs(lam: np.ndarray) -> np.ndarray:
    lam = np.sort(lam)[::-1].copy()
    floor = max(lam[0], 0.0) * lam.size * np.finfo(np.float64).eps
    lam[lam <= floor] = 0.0
    return lam


def cov_eigs(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    C = np.cov(X, rowvar=False)
    return clip_eigs(np.linalg.eigvalsh(C))


def spectral(X: np.ndarray, eps: float = 0.8) -> dict:
    lam = cov_eigs(X)
    d = lam.size
    tot = lam.sum()
    evr = lam / tot
    cum = np.cumsum(evr)
    eff = int(np.argmax(cum >= eps - 1e-12) + 1)
    pr = tot**2 / np.sum(lam**2)
    r = np.sqrt(lam)
    p = r / r.sum()
    p = p[p > 0]
    return dict(
        eigenvalues=lam,
        explained_variance_ratio=evr,
        effective_dim=eff,
        participation_ratio=pr,
        isoscore=(pr - 1) / (d - 1),
        stable_rank=tot / lam[0],
        pc1_share=lam[0] / tot,
        effective_rank=float(np.exp(-np.sum(p * np.log(p)))),
    )


def isoscore_rudman(X: np.ndarray) -> float:
    """IsoScore by the steps of Rudman et al. (2022), Algorithm 1."""
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    Xc = X - X.mean(0)
    # Step 2: reorient by PCA; step 3: variance vector in the PCA basis.
    _, vecs = np.linalg.eigh(np.cov(Xc, rowvar=False))
    sigma = np.var(Xc @ vecs, axis=0, ddof=1)
    # Step 4: normalise to the diagonal's length √d.
    sigma_hat = np.sqrt(d) * sigma / np.linalg.norm(sigma)
    # Step 5: isotropy defect; step 6: fraction of dimensions used; step 7.
    delta = np.linalg.norm(sigma_hat - np.ones(d)) / np.sqrt(2 * (d - np.sqrt(d)))
    k = ((d - delta**2 * (d - np.sqrt(d))) ** 2) / d**2
    return float((d * k - 1) / (d - 1))


def avg_cosine_dense(X: np.ndarray, center: bool = False) -> float:
    X = np.asarray(X, dtype=np.float64)
    if center:
        X = X - X.mean(0)
    norms = np.linalg.norm(X, axis=1)
    Y = X[norms > 0] / norms[norms > 0, None]
    n = Y.shape[0]
    S = Y @ Y.T
    return float((S.sum() - np.trace(S)) / (n * (n - 1)))


def log_z_all(X: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """log Z(±c) for every column c of dirs, in log space."""
    P = np.asarray(X, dtype=np.float64) @ dirs
    return np.concatenate([logsumexp(P, axis=0), logsumexp(-P, axis=0)])


def log_partition_isotropy(X: np.ndarray, center: bool = False) -> float:
    X = np.asarray(X, dtype=np.float64)
    if center:
        Xc = X - X.mean(0)
        _, dirs = np.linalg.eigh(np.cov(Xc, rowvar=False))
        z = log_z_all(Xc, dirs)
    else:
        _, dirs = np.linalg.eigh(X.T @ X)
        z = log_z_all(X, dirs)
    return float(z.min() - z.max())


def all_but_the_top(X: np.ndarray, D: int) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    mu = X.mean(0)
    lam, U = np.linalg.eigh(np.cov(X, rowvar=False))
    U = U[:, ::-1][:, :D]
    Y = X - mu
    return Y - (Y @ U) @ U.T
