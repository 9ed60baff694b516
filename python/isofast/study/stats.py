"""Rank correlations with honest uncertainty: bootstrap CIs, permutation p-values, BH.

Everything here is plain numpy (scipy only for the normal quantile) and seeded.

Correlations
------------
* Spearman's ρ: the Pearson correlation of average ranks (ties get the mean
  of the ranks they span), exactly ``scipy.stats.spearmanr``.
* Kendall's τ_b: Σ_{i<j} s_ij t_ij / sqrt(Σ_{i<j}|s_ij| · Σ_{i<j}|t_ij|) with
  s_ij = sign(x_i − x_j), t_ij = sign(y_i − y_j) (Kendall 1945; pairs tied in
  x or y drop out of the respective count), exactly ``scipy.stats.kendalltau``.

Both are NaN when x or y is constant (no ranking to correlate).

Dependence structure (groups, slots, strata)
--------------------------------------------
Study cells are not independent: the cells of one dataset (its perturbations,
and the same dataset seen by several models) share the series. Resampling or
permuting single cells would then pretend to more information than there is.
So both procedures act on **groups** (datasets) when ``groups`` is given:

* bootstrap: resample groups with replacement, keep all their cells (the
  cluster bootstrap, Davison & Hinkley 1997 §3.8);
* permutation: draw one permutation π of the group labels and pair the x of
  cell (g, slot) with the y of cell (π(g), slot), where ``slot`` identifies a
  cell within its group (e.g. perturbation × model). The whole within-group
  dependence is carried along, so the null is "isotropy carries no
  information about which dataset is hard" (a group-randomisation test,
  Edgington & Onghena 2007). Cells whose partner slot is missing drop out.

``strata`` (e.g. the model) make the statistic the unweighted mean of the
per-stratum correlations, so a pooled number reflects within-model
association and not the fact that one model is both more isotropic and
better overall.

p-values and intervals
----------------------
* Permutation p-value (two-sided): p = (1 + #{b : |T_b| ≥ |T_obs|}) / (1 + B)
  over B random permutations (Phipson & Smyth 2010: never 0, exact level);
  when the number of distinct permutations (n! or G!) is at most B they are
  all enumerated and p = #{π : |T_π| ≥ |T_obs|} / (number of permutations),
  the exact permutation p-value (the identity is one of them).
* Bootstrap CI: percentile, or BCa (Efron 1987) with bias correction
  z0 = Φ⁻¹(mid-rank share of T_b below T_obs) and acceleration
  a = Σ(θ̄ − θ_(i))³ / (6 [Σ(θ̄ − θ_(i))²]^{3/2}) from the leave-one-out
  (leave-one-group-out) jackknife. Resamples whose statistic is undefined
  (a constant x or y) are dropped and counted.
* Benjamini–Hochberg q-values (1995): q_(i) = min_{j≥i} p_(j) m / j, capped
  at 1; a family's discoveries at FDR α are the rows with q ≤ α.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import permutations as _all_perms
from typing import Any

import numpy as np

METHODS = ("spearman", "kendall")


# --------------------------------------------------------------- correlations
def rankdata(a: Any, axis: int = -1) -> np.ndarray:
    """Average ranks (1-based) along ``axis``; ties share the mean rank."""
    a = np.asarray(a, dtype=np.float64)
    a = np.moveaxis(a, axis, -1)
    n = a.shape[-1]
    order = np.argsort(a, axis=-1, kind="mergesort")
    s = np.take_along_axis(a, order, axis=-1)
    # tie blocks: a new block starts where the sorted value changes
    new = np.ones(s.shape, dtype=bool)
    new[..., 1:] = s[..., 1:] != s[..., :-1]
    block = np.cumsum(new, axis=-1) - 1  # block id per sorted position
    pos = np.broadcast_to(np.arange(1, n + 1, dtype=np.float64), s.shape)
    flat_b = block.reshape(-1, n)
    R = flat_b.shape[0]
    # one bincount over all rows: offset each row's block ids by row * n
    gid = (flat_b + (np.arange(R) * n)[:, None]).ravel()
    sums = np.bincount(gid, weights=pos.reshape(-1), minlength=R * n)
    cnt = np.bincount(gid, minlength=R * n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_rank = sums / np.maximum(cnt, 1)
    out_sorted = mean_rank[gid].reshape(R, n)
    ranks = np.empty_like(out_sorted)
    np.put_along_axis(ranks, order.reshape(-1, n), out_sorted, axis=-1)
    return np.moveaxis(ranks.reshape(a.shape), -1, axis)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of two (B, n) arrays (NaN for constant rows)."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    sxx = np.einsum("...i,...i->...", xc, xc)
    syy = np.einsum("...i,...i->...", yc, yc)
    sxy = np.einsum("...i,...i->...", xc, yc)
    den = np.sqrt(sxx * syy)
    # constant rows: relative tolerance so that rounding noise of a constant is 0
    scale = np.maximum(np.abs(x).max(axis=-1), 1.0) * np.maximum(np.abs(y).max(axis=-1), 1.0)
    ok = den > 1e-12 * scale * x.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(ok, sxy / np.where(ok, den, 1.0), np.nan)
    return np.clip(r, -1.0, 1.0)


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _pearson_rows(rankdata(x), rankdata(y))


def _kendall_rows(x: np.ndarray, y: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Row-wise Kendall τ_b of (B, n) arrays (chunks of rows bound the n² memory)."""
    B = x.shape[0]
    out = np.empty(B)
    for b0 in range(0, B, chunk):
        xs = x[b0 : b0 + chunk]
        ys = y[b0 : b0 + chunk]
        sx = np.sign(xs[:, :, None] - xs[:, None, :])
        sy = np.sign(ys[:, :, None] - ys[:, None, :])
        num = np.einsum("bij,bij->b", sx, sy)
        den = np.sqrt(np.abs(sx).sum(axis=(1, 2)) * np.abs(sy).sum(axis=(1, 2)))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[b0 : b0 + chunk] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return np.clip(out, -1.0, 1.0)


def _rows(method: str):
    if method == "spearman":
        return _spearman_rows
    if method == "kendall":
        return _kendall_rows
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _check_xy(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite (drop missing cells first)")
    return x, y


def spearman(x, y) -> float:
    """Spearman's ρ (average ranks for ties); NaN when x or y is constant."""
    x, y = _check_xy(x, y)
    if x.size < 2:
        return float("nan")
    return float(_spearman_rows(x[None], y[None])[0])


def kendall(x, y) -> float:
    """Kendall's τ_b; NaN when x or y is constant."""
    x, y = _check_xy(x, y)
    if x.size < 2:
        return float("nan")
    return float(_kendall_rows(x[None], y[None])[0])


def correlation(x, y, method: str = "spearman") -> float:
    """``spearman`` or ``kendall`` of x and y."""
    if method == "spearman":
        return spearman(x, y)
    if method == "kendall":
        return kendall(x, y)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _stat_rows(
    method: str, X: np.ndarray, Y: np.ndarray, strata: np.ndarray | None, S: np.ndarray | None = None
) -> np.ndarray:
    """The statistic for each row of (B, n) arrays: the correlation, or with
    strata the unweighted mean of per-stratum correlations (``S`` (B, n) are
    the per-row stratum labels; rows of a stratum with < 3 cells are skipped)."""
    f = _rows(method)
    if strata is None:
        return f(X, Y)
    if S is None:
        S = np.broadcast_to(strata, X.shape)
    labels = np.unique(strata)
    acc = np.zeros(X.shape[0])
    cnt = np.zeros(X.shape[0])
    # Strata have a fixed composition per row only when S is constant across
    # rows (permutations); with the cluster bootstrap sizes vary, so loop rows.
    if np.all(S == S[:1]):
        s0 = S[0]
        for lab in labels:
            m = s0 == lab
            if m.sum() < 3:
                continue
            r = f(X[:, m], Y[:, m])
            ok = np.isfinite(r)
            acc[ok] += r[ok]
            cnt[ok] += 1
    else:
        for b in range(X.shape[0]):
            for lab in labels:
                m = S[b] == lab
                if m.sum() < 3:
                    continue
                r = f(X[b : b + 1, m], Y[b : b + 1, m])[0]
                if np.isfinite(r):
                    acc[b] += r
                    cnt[b] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, acc / np.where(cnt > 0, cnt, 1), np.nan)


# ------------------------------------------------------------- resampling
def _group_index(groups: np.ndarray | None, n: int):
    if groups is None:
        return np.arange(n), [np.array([i]) for i in range(n)]
    g = np.asarray(groups)
    if g.shape[0] != n:
        raise ValueError(f"groups has {g.shape[0]} labels for {n} cells")
    uniq, inv = np.unique(g, return_inverse=True)
    members = [np.flatnonzero(inv == k) for k in range(uniq.size)]
    return inv, members


def bootstrap_distribution(
    x, y, *, method: str = "spearman", groups=None, strata=None, n_resamples: int = 2000, seed: int = 0
) -> np.ndarray:
    """Statistic over ``n_resamples`` (cluster) bootstrap resamples (NaNs kept)."""
    x, y = _check_xy(x, y)
    n = x.size
    _, members = _group_index(None if groups is None else np.asarray(groups), n)
    G = len(members)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, G, size=(n_resamples, G))
    st = None if strata is None else np.asarray(strata)
    sizes = {m.size for m in members}
    if len(sizes) == 1:
        M = np.stack(members)  # (G, size)
        idx = M[draws].reshape(n_resamples, -1)
        S = None if st is None else st[idx]
        return _stat_rows(method, x[idx], y[idx], st, S)
    out = np.empty(n_resamples)
    for b in range(n_resamples):
        idx = np.concatenate([members[k] for k in draws[b]])
        S = None if st is None else st[idx][None]
        out[b] = _stat_rows(method, x[idx][None], y[idx][None], None if st is None else st[idx], S)[0]
    return out


def _norm_ppf(p):
    from scipy.special import ndtri

    return ndtri(p)


def _norm_cdf(z):
    from scipy.special import ndtr

    return ndtr(z)


def _jackknife(x, y, method, members, strata) -> np.ndarray:
    vals = []
    for k in range(len(members)):
        keep = np.ones(x.size, bool)
        keep[members[k]] = False
        st = None if strata is None else np.asarray(strata)[keep]
        vals.append(_stat_rows(method, x[keep][None], y[keep][None], st)[0])
    return np.asarray(vals)


@dataclass
class BootstrapCI:
    low: float
    high: float
    level: float
    method: str
    n_resamples: int
    n_valid: int
    standard_error: float

    def to_dict(self) -> dict:
        return asdict(self)


def bootstrap_ci(
    x,
    y,
    *,
    method: str = "spearman",
    groups=None,
    strata=None,
    n_resamples: int = 2000,
    level: float = 0.95,
    ci_method: str = "bca",
    seed: int = 0,
    distribution: np.ndarray | None = None,
) -> BootstrapCI:
    """Percentile or BCa (cluster) bootstrap interval of the correlation."""
    x, y = _check_xy(x, y)
    if ci_method not in ("bca", "percentile"):
        raise ValueError(f"ci_method must be 'bca' or 'percentile', got {ci_method!r}")
    dist = (
        distribution
        if distribution is not None
        else bootstrap_distribution(
            x, y, method=method, groups=groups, strata=strata, n_resamples=n_resamples, seed=seed
        )
    )
    ok = dist[np.isfinite(dist)]
    nan = float("nan")
    if ok.size < max(10, 0.5 * dist.size):
        return BootstrapCI(nan, nan, level, ci_method, int(dist.size), int(ok.size), nan)
    alpha = (1.0 - level) / 2.0
    lo_q, hi_q = alpha, 1.0 - alpha
    st = None if strata is None else np.asarray(strata)
    theta = _stat_rows(method, x[None], y[None], st)[0]
    if ci_method == "bca" and np.isfinite(theta):
        # mid-rank share below theta (ties count half), as scipy.stats.bootstrap
        prop = (np.sum(ok < theta) + np.sum(ok <= theta)) / (2.0 * ok.size)
        prop = min(max(prop, 0.5 / ok.size), 1 - 0.5 / ok.size)
        z0 = float(_norm_ppf(prop))
        _, members = _group_index(None if groups is None else np.asarray(groups), x.size)
        jk = _jackknife(x, y, method, members, strata)
        jk = jk[np.isfinite(jk)]
        d = jk.mean() - jk if jk.size else np.zeros(1)
        den = 6.0 * (np.sum(d**2) ** 1.5)
        a = float(np.sum(d**3) / den) if den > 0 else 0.0
        za, zb = _norm_ppf(lo_q), _norm_ppf(hi_q)
        lo_q = float(_norm_cdf(z0 + (z0 + za) / (1 - a * (z0 + za))))
        hi_q = float(_norm_cdf(z0 + (z0 + zb) / (1 - a * (z0 + zb))))
    lo, hi = np.quantile(ok, [lo_q, hi_q])
    return BootstrapCI(float(lo), float(hi), level, ci_method, int(dist.size), int(ok.size), float(np.std(ok, ddof=1)))


def _permutation_plan(G: int, n_permutations: int, rng):
    """All permutations of G labels when there are at most n_permutations of
    them (exact test), else n_permutations uniform random ones."""
    if math.factorial(G) <= n_permutations:
        return np.array(list(_all_perms(range(G))), dtype=np.int64), True
    return np.stack([rng.permutation(G) for _ in range(n_permutations)]), False


@dataclass
class PermutationResult:
    statistic: float
    p_value: float
    n_permutations: int
    exact: bool
    n_valid: int

    def to_dict(self) -> dict:
        return asdict(self)


def permutation_test(
    x,
    y,
    *,
    method: str = "spearman",
    groups=None,
    slots=None,
    strata=None,
    n_permutations: int = 2000,
    seed: int = 0,
) -> PermutationResult:
    """Two-sided permutation p-value of the correlation (module docstring).

    Without ``groups`` the y values are permuted over cells; with ``groups``
    the group labels are permuted and cell (g, slot) is paired with
    (π(g), slot) — ``slots`` (default: the order of the cell within its
    group) says which cells correspond.
    """
    x, y = _check_xy(x, y)
    n = x.size
    rng = np.random.default_rng(seed)
    st = None if strata is None else np.asarray(strata)
    t_obs = float(_stat_rows(method, x[None], y[None], st)[0])
    if not np.isfinite(t_obs):
        return PermutationResult(t_obs, float("nan"), 0, False, 0)
    if groups is None:
        perms, exact = _permutation_plan(n, n_permutations, rng)
        T = _stat_rows(method, np.broadcast_to(x, perms.shape), y[perms], st)
    else:
        inv, members = _group_index(np.asarray(groups), n)
        G = len(members)
        if slots is None:
            slot = np.empty(n, dtype=object)
            for m in members:
                for j, i in enumerate(m):
                    slot[i] = j
        else:
            slot = np.asarray(slots, dtype=object)
            if slot.shape[0] != n:
                raise ValueError(f"slots has {slot.shape[0]} labels for {n} cells")
        where = {(int(inv[i]), slot[i]): i for i in range(n)}
        if len(where) != n:
            raise ValueError("each (group, slot) pair must identify one cell")
        perms, exact = _permutation_plan(G, n_permutations, rng)
        slot_keys = sorted({s for s in slot}, key=str)
        complete = all((g, s) in where for g in range(G) for s in slot_keys)
        if complete:
            # cells as a (G, S) grid: permuting rows keeps slots aligned
            grid = np.array([[where[(g, s)] for s in slot_keys] for g in range(G)])
            flat = grid.ravel()
            xs = x[flat]
            ys = y[grid[perms].reshape(perms.shape[0], -1)]
            T = _stat_rows(method, np.broadcast_to(xs, ys.shape), ys, None if st is None else st[flat])
        else:
            T = np.empty(perms.shape[0])
            for b, p in enumerate(perms):
                xi, yi = [], []
                for i in range(n):
                    j = where.get((int(p[inv[i]]), slot[i]))
                    if j is not None:
                        xi.append(i)
                        yi.append(j)
                xi, yi = np.asarray(xi), np.asarray(yi)
                T[b] = (
                    _stat_rows(method, x[xi][None], y[yi][None], None if st is None else st[xi])[0]
                    if xi.size >= 3
                    else np.nan
                )
    ok = np.isfinite(T)
    Tv = T[ok]
    # tolerance: permutations that reproduce the observed ranking exactly must count
    hit = np.abs(Tv) >= abs(t_obs) - 1e-12
    if exact:
        p = float(hit.sum() / max(Tv.size, 1))
    else:
        p = float((1 + hit.sum()) / (1 + Tv.size))
    return PermutationResult(t_obs, p, int(T.size), bool(exact), int(Tv.size))


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini–Hochberg q-values; NaN p-values stay NaN and are not counted in m."""
    p = np.asarray(p_values, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return q
    pv = p[ok]
    order = np.argsort(pv)
    ranked = pv[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    q[ok] = out
    return q


# ------------------------------------------------------------ one-stop call
@dataclass
class CorrelationResult:
    """One correlation with its CI and p-value; ``n`` cells in ``n_groups`` groups."""

    method: str
    estimate: float
    n: int
    n_groups: int
    ci_low: float
    ci_high: float
    ci_level: float
    ci_method: str
    p_value: float
    n_permutations: int
    exact: bool
    n_boot_valid: int
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def correlate(
    x,
    y,
    *,
    method: str = "spearman",
    groups=None,
    slots=None,
    strata=None,
    n_boot: int = 2000,
    n_perm: int = 2000,
    level: float = 0.95,
    ci_method: str = "bca",
    seed: int = 0,
) -> CorrelationResult:
    """Correlation + (cluster) bootstrap CI + (group) permutation p-value."""
    x, y = _check_xy(x, y)
    n = x.size
    G = n if groups is None else int(np.unique(np.asarray(groups)).size)
    nan = float("nan")
    notes = []
    if n < 4 or G < 3:
        notes.append(f"too few cells (n={n}, groups={G}) for a CI or a p-value")
        est = correlation(x, y, method) if n >= 2 else nan
        return CorrelationResult(method, est, n, G, nan, nan, level, ci_method, nan, 0, False, 0, notes)
    ss = np.random.SeedSequence(seed)
    s_boot, s_perm = (int(s.generate_state(1)[0]) for s in ss.spawn(2))
    perm = permutation_test(
        x, y, method=method, groups=groups, slots=slots, strata=strata, n_permutations=n_perm, seed=s_perm
    )
    ci = bootstrap_ci(
        x,
        y,
        method=method,
        groups=groups,
        strata=strata,
        n_resamples=n_boot,
        level=level,
        ci_method=ci_method,
        seed=s_boot,
    )
    if ci.n_valid < ci.n_resamples:
        notes.append(f"{ci.n_resamples - ci.n_valid} bootstrap resamples had a constant variable (dropped)")
    if perm.exact:
        notes.append(f"exact permutation p-value over all {perm.n_permutations} permutations")
    return CorrelationResult(
        method,
        perm.statistic,
        n,
        G,
        ci.low,
        ci.high,
        level,
        ci_method,
        perm.p_value,
        perm.n_permutations,
        perm.exact,
        ci.n_valid,
        notes,
    )
