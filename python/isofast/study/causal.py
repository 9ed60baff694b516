"""Causal test: make one layer more isotropic inside the forward pass, re-forecast.

Correlation cannot say whether isotropy *matters*; an intervention can. For
one (model, layer) the layer's representation is rewritten by a forward
hook (:func:`isofast.study.adapters.transform_hook`: the input of the next
block, or the final norm's output for the last layer — exactly the captured
rows) and the same test windows are forecast again with the same sampling
seed, so every series has a paired (baseline, intervened) error.

Interventions, all fitted on the layer's captured rows X of the cell (the
test contexts only: targets are never used):

* ``abtt`` — all-but-the-top (Mu & Viswanath 2018), the semantics of
  :func:`isofast.all_but_the_top`: μ = mean of X, u_1..u_D the top-D
  eigenvectors of its covariance, x ↦ (x − μ) − Σ_{k≤D} (u_kᵀ(x − μ)) u_k.
  ``keep_mean = true`` adds μ back: the same removal of the dominant
  directions without moving the layer's location — it separates the effect
  of centring (LLM residual streams carry a large mean, e.g. massive
  activations) from the effect of the anisotropic directions themselves.
* ``random`` — the control for ``abtt``: the same centring and removal of D
  directions, but D random orthonormal ones (seeded). If ``abtt`` and
  ``random`` change the error alike, the effect is the centring / any
  projection, not the removal of the *dominant* directions.
* ``cluster_whiten`` — per-cluster whitening in the clustered-isotropy
  recipe: clusters from :func:`isofast.cluster.cluster_isotropy` on the
  centred rows (seeded); each row is assigned to its nearest centroid m_c and
  mapped to x ↦ m_c + s_c Σ_c^{-1/2}(x − m_c), whitening within the cluster's
  span: eigenvalues of Σ_c below 10⁻⁴·λ_max are floored there (a cluster of
  n_c ≤ d rows has rank ≤ n_c − 1, and its null directions must not be
  inflated from rounding noise), and s_c² = tr Σ_c / r_eff (r_eff the number
  of directions whitened) so each cluster keeps its total variance. Within
  each cluster the covariance becomes a multiple of I on its span: the most
  isotropic arrangement that keeps where the clusters are.

The effect: per series i, e_i = Σ_h (ŷ_ih − y_ih)² before and e′_i after;
ΔNMSE = Σ_i (e′_i − e_i) / Σ_i Σ_h y_ih² (the pooled NMSE difference, the
same normaliser for both), and the relative change ΔNMSE / NMSE. Several
datasets are combined as the mean of their ΔNMSE: series i of dataset k
carries the weight w_i = 1/(K Σ_{j∈k} ‖y_j‖²), ΔNMSE = Σ_i w_i (e′_i − e_i).

* CI: paired bootstrap over series (resampled within datasets), percentile;
* p-value: sign-flip permutation of the paired differences d_i = w_i(e′_i −
  e_i) (H0: intervened and baseline errors are exchangeable within each
  series), two-sided, (1 + #{|T*| ≥ |T|})/(1 + B), or exact over all 2^n
  sign patterns when 2^n ≤ B.

The isotropy of the layer before and after the rewrite (the statistics of
:func:`isofast.study.isotropy.layer_suite` on X and on T(X)) is reported so
a reader can see the intervention did make the layer more isotropic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import product

import numpy as np

FLOOR = 1e-4


# ------------------------------------------------------------ transforms
@dataclass
class LayerTransform:
    """A fitted rewrite x ↦ T(x) of one layer's rows (numpy and torch)."""

    method: str
    mu: np.ndarray
    basis: np.ndarray | None = None  # (d, D) directions removed (abtt/random)
    centroids: np.ndarray | None = None  # (k, d) cluster centres (cluster_whiten)
    maps: np.ndarray | None = None  # (k, d, d) s_c Σ_c^{-1/2} on the cluster's span
    info: dict = field(default_factory=dict)
    keep_mean: bool = False  # abtt/random: add μ back (remove directions, keep the location)

    def apply(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.method in ("abtt", "random"):
            Z = X - self.mu
            Y = Z - (Z @ self.basis) @ self.basis.T
            return Y + self.mu if self.keep_mean else Y
        lab = _nearest(X, self.centroids)
        out = np.empty_like(X)
        for c in range(self.centroids.shape[0]):
            m = lab == c
            if m.any():
                out[m] = self.centroids[c] + (X[m] - self.centroids[c]) @ self.maps[c].T
        return out

    def torch_fn(self):
        import torch

        cache: dict = {}

        def fn(t):
            key = (t.device, t.dtype)
            if key not in cache:

                def conv(a, device=t.device):
                    return None if a is None else torch.as_tensor(a, dtype=torch.float64, device=device)

                cache[key] = (conv(self.mu), conv(self.basis), conv(self.centroids), conv(self.maps))
            mu, B, C, M = cache[key]
            shape = t.shape
            x = t.reshape(-1, shape[-1]).to(torch.float64)
            if self.method in ("abtt", "random"):
                z = x - mu
                y = z - (z @ B) @ B.T
                if self.keep_mean:
                    y = y + mu
            else:
                lab = torch.cdist(x, C).argmin(dim=1)
                y = torch.empty_like(x)
                for c in range(C.shape[0]):
                    m = lab == c
                    if bool(m.any()):
                        y[m] = C[c] + (x[m] - C[c]) @ M[c].T
            return y.to(t.dtype).reshape(shape)

        return fn


def _nearest(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    d2 = (X**2).sum(1)[:, None] - 2 * X @ C.T + (C**2).sum(1)[None, :]
    return np.argmin(d2, axis=1)


def fit_transform(
    method: str, X: np.ndarray, *, n_components: int = 1, seed: int = 0, iso_cfg=None, keep_mean: bool = False
) -> LayerTransform:
    """Fit the rewrite ``method`` on rows X (module docstring); ``keep_mean``
    (abtt/random) adds μ back after the projection."""
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    mu = X.mean(axis=0)
    if method in ("abtt", "random"):
        D = int(n_components)
        if not 0 <= D <= d:
            raise ValueError(f"n_components must lie in [0, {d}], got {D}")
        if method == "abtt":
            Z = X - mu
            C = Z.T @ Z / max(n - 1, 1)
            w, V = np.linalg.eigh(C)
            basis = np.ascontiguousarray(V[:, ::-1][:, :D])
            info = {"removed_variance_share": float(w[::-1][:D].sum() / max(w.sum(), 1e-300))}
        else:
            rng = np.random.default_rng(seed)
            basis, _ = np.linalg.qr(rng.standard_normal((d, max(D, 1))))
            basis = basis[:, :D]
            Z = X - mu
            tot = float((Z**2).sum())
            info = {"removed_variance_share": float(((Z @ basis) ** 2).sum() / max(tot, 1e-300))}
        return LayerTransform(method, mu, basis=basis, info=info, keep_mean=bool(keep_mean))
    if method == "cluster_whiten":
        from isofast.cluster import cluster_isotropy

        kw = {}
        if iso_cfg is not None:
            kw = dict(
                k_range=range(iso_cfg.k_min, min(iso_cfg.k_max, n - 1) + 1),
                threshold=iso_cfg.threshold,
                silhouette_sample_size=iso_cfg.silhouette_sample_size,
                n_init=iso_cfg.n_init,
            )
        rep = cluster_isotropy(X, sample_size=None, seed=seed, **kw)
        labels = np.asarray(rep.labels)
        k = int(labels.max()) + 1 if labels.size else 1
        cents, maps, sizes = [], [], []
        for c in range(k):
            Xc = X[labels == c]
            m = Xc.mean(axis=0)
            Z = Xc - m
            S = Z.T @ Z / max(Xc.shape[0] - 1, 1)
            w, V = np.linalg.eigh(S)
            w = np.maximum(w, 0.0)
            # whiten within the cluster's span: eigenvalues below FLOOR·λ_max are
            # rounding noise (rank ≤ n_c − 1 < d for small clusters) and are not blown up
            floor = FLOOR * max(float(w.max()), 1e-300)
            g = np.where(w >= floor, w, floor) ** -0.5
            r_eff = float(np.sum(np.minimum(w / floor, 1.0)))
            scale = np.sqrt(float(w.sum()) / max(r_eff, 1e-300))  # keeps tr Σ_c
            maps.append(scale * (V * g) @ V.T)
            cents.append(m)
            sizes.append(int(Xc.shape[0]))
        return LayerTransform(
            "cluster_whiten",
            mu,
            centroids=np.stack(cents),
            maps=np.stack(maps),
            info={"k": k, "cluster_sizes": sizes, "floor": FLOOR},
        )
    raise ValueError(f"unknown intervention {method!r}; choose 'abtt', 'random' or 'cluster_whiten'")


# ------------------------------------------------------------- statistics
def _sign_flip_p(d: np.ndarray, n_perm: int, seed: int) -> tuple[float, bool]:
    t = abs(float(d.sum()))
    n = d.size
    if n == 0:
        return float("nan"), False
    tol = 1e-12 * max(float(np.abs(d).sum()), 1e-300)
    if 2**n <= n_perm:
        signs = np.array(list(product((1.0, -1.0), repeat=n)))
        T = np.abs(signs @ d)
        return float(np.mean(T >= t - tol)), True
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(n_perm, n))
    T = np.abs(signs @ d)
    return float((1 + np.sum(T >= t - tol)) / (1 + n_perm)), False


@dataclass
class PairedEffect:
    delta_nmse: float
    nmse_before: float
    nmse_after: float
    relative_change: float
    ci_low: float
    ci_high: float
    ci_level: float
    p_value: float
    exact: bool
    n_series: int
    n_datasets: int
    n_improved: int
    n_worse: int

    def to_dict(self) -> dict:
        return asdict(self)


def paired_effect(before_se, after_se, y2, datasets, *, n_boot=2000, n_perm=2000, level=0.95, seed=0) -> PairedEffect:
    """ΔNMSE with a paired bootstrap CI and a sign-flip p-value (module docstring).

    ``before_se``/``after_se``: per-series summed squared errors; ``y2``:
    per-series Σ_h y²; ``datasets``: per-series dataset label.
    """
    b = np.asarray(before_se, float)
    a = np.asarray(after_se, float)
    y2 = np.asarray(y2, float)
    ds = np.asarray(datasets)
    labels = np.unique(ds)
    K = labels.size
    w = np.empty_like(b)
    for lab in labels:
        m = ds == lab
        w[m] = 1.0 / (K * max(y2[m].sum(), 1e-300))
    d = w * (a - b)
    delta = float(d.sum())
    nb, na = float((w * b).sum()), float((w * a).sum())
    ss = np.random.SeedSequence(seed)
    s1, s2 = (int(s.generate_state(1)[0]) for s in ss.spawn(2))
    rng = np.random.default_rng(s1)
    # paired bootstrap within datasets: resample series, recompute the ratio
    members = [np.flatnonzero(ds == lab) for lab in labels]
    boots = np.empty(n_boot)
    for r in range(n_boot):
        tot = 0.0
        for m in members:
            pick = m[rng.integers(0, m.size, m.size)]
            tot += (a[pick] - b[pick]).sum() / max(y2[pick].sum(), 1e-300)
        boots[r] = tot / K
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    p, exact = _sign_flip_p(d, n_perm, s2)
    return PairedEffect(
        delta,
        nb,
        na,
        float(delta / nb) if nb > 0 else float("nan"),
        float(lo),
        float(hi),
        level,
        p,
        exact,
        int(b.size),
        int(K),
        int(np.sum(a < b)),
        int(np.sum(a > b)),
    )


def series_squared_errors(point: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-series Σ_h (ŷ − y)² and Σ_h y²."""
    point = np.asarray(point, float)
    target = np.asarray(target, float)
    return ((point - target) ** 2).sum(axis=1), (target**2).sum(axis=1)


# ------------------------------------------------------------- the runner
def _isotropy_pair(X, T, cfg, seed, n_rows: int) -> dict:
    """The layer's statistics before and after the rewrite, under the same
    validity rules and N as its cells (:func:`isofast.study.isotropy.layer_suite`)."""
    from isofast.study.isotropy import layer_suite

    X = np.asarray(X, np.float32)
    one = np.zeros(X.shape[0], np.int64)
    before = layer_suite(X, cfg.isotropy, seed, n_rows=n_rows, windows=one)["stats"]
    after = layer_suite(T.apply(X).astype(np.float32), cfg.isotropy, seed, n_rows=n_rows, windows=one)["stats"]
    keys = (
        "inter_cluster_cosine",
        "avg_cosine_centered",
        "isoscore",
        "effective_dim",
        "pc1_share",
        "log_partition_isotropy_centered",
    )
    return {f"{k}_before": before.get(k) for k in keys} | {f"{k}_after": after.get(k) for k in keys}


def run_causal_tests(cfg, cache, adapters: dict, splits: dict, cells: list, say) -> list[dict]:
    """Every ``[[causal.tests]]`` entry over its datasets; one row per
    (test, dataset) plus one ``dataset = "all"`` row (module docstring)."""
    from isofast.study.cache import CACHE_VERSION
    from isofast.study.config import stable_hash
    from isofast.study.datasets import perturb, take_windows

    by_cell = {(c.model, c.dataset, c.perturbation): c for c in cells}
    rows: list[dict] = []
    for test in cfg.causal.tests:
        model = adapters.get(test.model)
        datasets = test.datasets or [d.name for d in cfg.datasets]
        per_series = {"before": [], "after": [], "y2": [], "ds": []}
        for ds in datasets:
            row = {
                "test": test.label,
                "model": test.model,
                "layer": test.layer,
                "method": test.method,
                "n_components": test.n_components,
                "keep_mean": test.keep_mean,
                "perturbation": test.perturbation,
                "dataset": ds,
                "error": "",
            }
            cell = by_cell.get((test.model, ds, test.perturbation))
            try:
                if model is None or cell is None or cell.error or ds not in splits:
                    raise RuntimeError(
                        f"cell {test.model} / {ds} / {test.perturbation} is missing or failed"
                        + (f": {cell.error}" if cell is not None and cell.error else "")
                    )
                if test.layer not in [L.index for L in model.layers]:
                    raise ValueError(
                        f"layer {test.layer} was not captured for {test.model}; captured: "
                        f"{[L.index for L in model.layers]}"
                    )
                split = splits[ds]
                inputs = take_windows(
                    perturb(split, cfg.perturbation(test.perturbation), seed=cfg.seed), cfg.model(test.model).n_windows
                )
                lrow = next(r for r in cell.rows if r["layer"] == test.layer)
                if lrow.get("skip_reason"):
                    raise RuntimeError(f"layer {test.layer} of this cell was not measured: {lrow['skip_reason']}")
                n_rows = int(lrow["n_rows"])
                fkey, ckey = cell.keys["forecast"], cell.keys["capture"]
                key = stable_hash(
                    CACHE_VERSION,
                    "causal",
                    test.__dict__,
                    cell.keys,
                    cfg.isotropy.__dict__,
                    cfg.stats.seed,
                    cfg.forecast.__dict__,
                )
                hit = cache.load_json("causal", key)
                if hit is None:
                    fc = cache.load_npz("forecast", fkey)
                    aux = {k[4:]: v for k, v in fc.items() if k.startswith("aux_")}
                    model.prepare(split)
                    emb, _, _ = model.embed_cached(
                        list(inputs.contexts), cache.dir("captures", ckey), split=split, aux=aux or None
                    )
                    X = emb[test.layer]
                    tseed = int(stable_hash(cfg.seed, "causal", test.label, ds, n=8), 16)
                    T = fit_transform(
                        test.method,
                        X,
                        n_components=test.n_components,
                        seed=tseed,
                        iso_cfg=cfg.isotropy,
                        keep_mean=test.keep_mean,
                    )
                    from isofast.study.adapters import transform_hook

                    # the same seed as the baseline forecast: paired samples
                    seed = int(stable_hash(cfg.seed, "cell", model.name, inputs.dataset, inputs.perturbation, n=8), 16)
                    with transform_hook(model.hook_point(test.layer), T.torch_fn()):
                        out = model.forecast(
                            list(inputs.contexts), split.horizon, n_samples=cfg.forecast.n_samples, seed=seed
                        )
                    base = np.asarray(fc["samples"], float)
                    how = cfg.forecast.point
                    pb = np.median(base, axis=1) if how == "median" else base.mean(axis=1)
                    pa = out.point(how)
                    eb, y2 = series_squared_errors(pb, inputs.targets)
                    ea, _ = series_squared_errors(pa, inputs.targets)
                    hit = {
                        "before_se": eb.tolist(),
                        "after_se": ea.tolist(),
                        "y2": y2.tolist(),
                        "transform": T.info,
                        "isotropy": _isotropy_pair(X, T, cfg, tseed, n_rows),
                        "n_fallback_after": int(out.n_fallback),
                    }
                    cache.save_json("causal", key, hit)
                    cache.miss("causal")
                else:
                    cache.hit("causal")
                eff = paired_effect(
                    hit["before_se"],
                    hit["after_se"],
                    hit["y2"],
                    [ds] * len(hit["y2"]),
                    n_boot=cfg.stats.n_boot,
                    n_perm=cfg.stats.n_perm,
                    level=cfg.stats.ci,
                    seed=int(stable_hash(cfg.stats.seed, test.label, ds, n=8), 16),
                )
                row.update(eff.to_dict())
                row.update(hit["isotropy"])
                row["transform"] = str(hit["transform"])
                per_series["before"] += hit["before_se"]
                per_series["after"] += hit["after_se"]
                per_series["y2"] += hit["y2"]
                per_series["ds"] += [ds] * len(hit["y2"])
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
                say(f"isofast study: causal test {test.label} on {ds} failed: {row['error']}")
            rows.append(row)
        if len(set(per_series["ds"])) > 1:
            eff = paired_effect(
                per_series["before"],
                per_series["after"],
                per_series["y2"],
                per_series["ds"],
                n_boot=cfg.stats.n_boot,
                n_perm=cfg.stats.n_perm,
                level=cfg.stats.ci,
                seed=int(stable_hash(cfg.stats.seed, test.label, "all", n=8), 16),
            )
            rows.append(
                {
                    "test": test.label,
                    "model": test.model,
                    "layer": test.layer,
                    "method": test.method,
                    "n_components": test.n_components,
                    "keep_mean": test.keep_mean,
                    "perturbation": test.perturbation,
                    "dataset": "all",
                    "error": "",
                }
                | eff.to_dict()
            )
    return rows
