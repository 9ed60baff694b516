"""From the results table to the correlation tables that answer the question.

Unit of analysis and dependence
-------------------------------
A *cell* is (model, dataset, perturbation); each has one error value (NMSE…)
and, per captured layer, the isotropy statistics. Cells of the same dataset
share series, so **datasets are the independent units**: every interval is a
cluster bootstrap over datasets and every p-value a permutation of dataset
labels that keeps each dataset's cells together (slots = perturbation, and
model for pooled scopes); see :mod:`isofast.study.stats`.

Tables
------
* **per layer** (:func:`per_layer_table`): for each model and each captured
  layer, the correlation of every statistic with every target over that
  model's cells (scope ``model:<name>``); plus scope ``pooled`` at five
  relative positions in each model's captured-layer list (0, ¼, ½, ¾, 1),
  whose statistic is the mean of the within-model correlations (strata =
  model), so that differences *between* models (one model both more
  isotropic and better) cannot masquerade as an isotropy effect.
* **held-out layer** (:func:`heldout_table`): the datasets are split once
  (seeded) into a selection part (``selection_fraction``) and an evaluation
  part. For each model and statistic the layer with the largest |ρ| on the
  selection cells is chosen (a point estimate only, ties → the shallower
  layer) and tested on the evaluation cells alone — the number a reader can
  trust for "the best layer", free of the double dipping of picking the best
  of many layers and reporting its in-sample correlation. Scope ``pooled``
  pools the evaluation cells of all models, each at its own chosen layer.

Multiple comparisons: Benjamini–Hochberg q-values within each family =
(table, scope kind, target, method) across statistics × layers (× models for
``model:`` scopes). ``n`` (cells) and ``n_groups`` (datasets) stand beside
every number.
"""

from __future__ import annotations

import numpy as np

from isofast.study import stats as S
from isofast.study.config import StatsConfig, stable_hash

DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)

COLUMNS = [
    "table",
    "scope",
    "model",
    "layer",
    "layer_name",
    "depth",
    "statistic",
    "target",
    "method",
    "n",
    "n_groups",
    "estimate",
    "ci_low",
    "ci_high",
    "ci_level",
    "ci_method",
    "p_value",
    "q_value",
    "significant",
    "exact",
    "n_permutations",
    "n_boot_valid",
    "selected_on",
    "selection_estimate",
    "notes",
]


def _seed(cfg: StatsConfig, *parts) -> int:
    return int(stable_hash(cfg.seed, *parts, n=8), 16)


def _cells(df, model=None, layer=None, stat=None, target=None, datasets=None):
    d = df
    if model is not None:
        d = d[d["model"] == model]
    if layer is not None:
        d = d[d["layer"] == layer]
    if datasets is not None:
        d = d[d["dataset"].isin(list(datasets))]
    if stat is not None and target is not None:
        d = d[np.isfinite(d[stat].astype(float)) & np.isfinite(d[target].astype(float))]
    return d


def _row(table, scope, model, layer, layer_name, depth, stat, target, res: S.CorrelationResult, **extra):
    r = {
        "table": table,
        "scope": scope,
        "model": model,
        "layer": layer,
        "layer_name": layer_name,
        "depth": depth,
        "statistic": stat,
        "target": target,
        "method": res.method,
        "n": res.n,
        "n_groups": res.n_groups,
        "estimate": res.estimate,
        "ci_low": res.ci_low,
        "ci_high": res.ci_high,
        "ci_level": res.ci_level,
        "ci_method": res.ci_method,
        "p_value": res.p_value,
        "q_value": np.nan,
        "significant": False,
        "exact": res.exact,
        "n_permutations": res.n_permutations,
        "n_boot_valid": res.n_boot_valid,
        "selected_on": "",
        "selection_estimate": np.nan,
        "notes": "; ".join(res.notes),
    }
    r.update(extra)
    return r


def _correlate(d, stat, target, method, cfg: StatsConfig, seed: int, *, strata=False):
    x = d[stat].to_numpy(float)
    y = d[target].to_numpy(float)
    groups = d["dataset"].to_numpy()
    slots = (
        (d["model"].astype(str) + "|" + d["perturbation"].astype(str)).to_numpy()
        if strata
        else d["perturbation"].astype(str).to_numpy()
    )
    return S.correlate(
        x,
        y,
        method=method,
        groups=groups,
        slots=slots,
        strata=d["model"].to_numpy() if strata else None,
        n_boot=cfg.n_boot,
        n_perm=cfg.n_perm,
        level=cfg.ci,
        ci_method=cfg.ci_method,
        seed=seed,
    )


def _depth_layers(df, model) -> dict[float, int]:
    """Captured layer nearest to each relative position of DEPTHS."""
    layers = sorted(df.loc[df["model"] == model, "layer"].dropna().unique().astype(int))
    if not layers:
        return {}
    out = {}
    for q in DEPTHS:
        out[q] = layers[int(round(q * (len(layers) - 1)))]
    return out


def _ok(df):
    if "error" in df.columns:
        return df[df["error"].astype(object).where(df["error"].notna(), "").astype(str) == ""]
    return df


def _bh(rows: list[dict], keys: tuple[str, ...], alpha: float) -> None:
    fam: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        kind = "model" if str(r["scope"]).startswith("model:") else r["scope"]
        fam.setdefault((r["table"], kind) + tuple(r[k] for k in keys), []).append(i)
    for idx in fam.values():
        q = S.benjamini_hochberg([rows[i]["p_value"] for i in idx])
        for i, qi in zip(idx, q):
            rows[i]["q_value"] = float(qi)
            rows[i]["significant"] = bool(np.isfinite(qi) and qi <= alpha)


def per_layer_table(df, cfg: StatsConfig, statistics=None) -> list[dict]:
    """Correlations per (model, layer) and pooled per relative depth (module docstring)."""
    df = _ok(df)
    stats_ = [s for s in (statistics or cfg.statistics) if s in df.columns]
    rows: list[dict] = []
    if df.empty:
        return rows
    for model in sorted(df["model"].unique()):
        dm = df[df["model"] == model]
        for layer in sorted(dm["layer"].unique()):
            dl = dm[dm["layer"] == layer]
            name = str(dl["layer_name"].iloc[0])
            depth = float(dl["depth"].iloc[0])
            for target in cfg.targets:
                for stat in stats_:
                    d = _cells(dl, stat=stat, target=target)
                    if len(d) < 2:
                        continue
                    for method in cfg.methods:
                        res = _correlate(
                            d, stat, target, method, cfg, _seed(cfg, "layer", model, int(layer), stat, target, method)
                        )
                        rows.append(
                            _row("per_layer", f"model:{model}", model, int(layer), name, depth, stat, target, res)
                        )
    models = sorted(df["model"].unique())
    if len(models) > 1:
        maps = {m: _depth_layers(df, m) for m in models}
        for q in DEPTHS:
            parts = [df[(df["model"] == m) & (df["layer"] == maps[m][q])] for m in models if q in maps[m]]
            if not parts:
                continue
            import pandas as pd

            dq = pd.concat(parts)
            for target in cfg.targets:
                for stat in stats_:
                    d = _cells(dq, stat=stat, target=target)
                    if len(d) < 4:
                        continue
                    for method in cfg.methods:
                        res = _correlate(
                            d, stat, target, method, cfg, _seed(cfg, "pooled", q, stat, target, method), strata=True
                        )
                        names = ",".join(f"{m}:{maps[m][q]}" for m in models if q in maps[m])
                        rows.append(_row("per_layer", "pooled", "all", -1, names, q, stat, target, res))
    _bh(rows, ("target", "method"), cfg.alpha)
    return rows


def split_datasets(datasets, fraction: float, seed: int) -> tuple[list, list]:
    """Seeded split of dataset names into (selection, evaluation)."""
    ds = sorted(datasets)
    rng = np.random.default_rng(seed)
    perm = list(rng.permutation(len(ds)))
    k = int(round(fraction * len(ds)))
    k = min(max(k, 1), len(ds) - 1) if len(ds) > 1 else len(ds)
    sel = sorted(ds[i] for i in perm[:k])
    ev = sorted(ds[i] for i in perm[k:])
    return sel, ev


def heldout_table(df, cfg: StatsConfig, statistics=None) -> tuple[list[dict], dict]:
    """Layer chosen on selection datasets, tested on the others (module docstring)."""
    df = _ok(df)
    stats_ = [s for s in (statistics or cfg.statistics) if s in df.columns]
    rows: list[dict] = []
    if df.empty:
        return rows, {}
    sel, ev = split_datasets(df["dataset"].unique(), cfg.selection_fraction, _seed(cfg, "split"))
    info = {"selection_datasets": sel, "evaluation_datasets": ev}
    if len(ev) < 1 or len(sel) < 1:
        return rows, info
    models = sorted(df["model"].unique())
    for target in cfg.targets:
        for method in cfg.methods:
            for stat in stats_:
                chosen = {}
                for model in models:
                    dm = df[df["model"] == model]
                    best, best_r = None, -1.0
                    for layer in sorted(dm["layer"].unique()):
                        d = _cells(dm[dm["layer"] == layer], stat=stat, target=target, datasets=sel)
                        if len(d) < 3:
                            continue
                        r = S.correlation(d[stat].to_numpy(float), d[target].to_numpy(float), method)
                        if np.isfinite(r) and abs(r) > best_r + 1e-12:
                            best, best_r = (int(layer), r), abs(r)
                    if best is None:
                        continue
                    layer, r_sel = best
                    chosen[model] = layer
                    d = _cells(dm[dm["layer"] == layer], stat=stat, target=target, datasets=ev)
                    if len(d) < 2:
                        continue
                    res = _correlate(d, stat, target, method, cfg, _seed(cfg, "heldout", model, stat, target, method))
                    rows.append(
                        _row(
                            "heldout",
                            f"model:{model}",
                            model,
                            layer,
                            str(d["layer_name"].iloc[0]),
                            float(d["depth"].iloc[0]),
                            stat,
                            target,
                            res,
                            selected_on=",".join(sel),
                            selection_estimate=float(r_sel),
                        )
                    )
                if len(chosen) > 1:
                    import pandas as pd

                    parts = [df[(df["model"] == m) & (df["layer"] == L)] for m, L in chosen.items()]
                    d = _cells(pd.concat(parts), stat=stat, target=target, datasets=ev)
                    if len(d) >= 4:
                        res = _correlate(
                            d,
                            stat,
                            target,
                            method,
                            cfg,
                            _seed(cfg, "heldout-pooled", stat, target, method),
                            strata=True,
                        )
                        rows.append(
                            _row(
                                "heldout",
                                "pooled",
                                "all",
                                -1,
                                ",".join(f"{m}:{L}" for m, L in chosen.items()),
                                np.nan,
                                stat,
                                target,
                                res,
                                selected_on=",".join(sel),
                            )
                        )
    _bh(rows, ("target", "method"), cfg.alpha)
    return rows, info


# ------------------------------------------------------- per-context (trust)
#: per-window statistics tested by :func:`trust_table` (columns of ``windows.csv``).
TRUST_STATISTICS = (
    "win_n_massive",
    "win_massive_share",
    "win_avg_cosine",
    "win_avg_cosine_centered",
    "win_shift_norm_share",
    "win_log_z_std",
)


def _trust_correlate(d, stat, method, cfg: StatsConfig, seed: int):
    """Within-dataset association pooled over datasets: the mean of the
    per-dataset correlations (strata = dataset); the cluster bootstrap resamples
    datasets and the permutation permutes dataset labels, pairing window
    (dataset, perturbation, window) with the same slot of another dataset."""
    x = d[stat].to_numpy(float)
    y = d["nmse"].to_numpy(float)
    groups = d["dataset"].to_numpy()
    slots = (d["perturbation"].astype(str) + "|" + d["window"].astype(str)).to_numpy()
    return S.correlate(
        x,
        y,
        method=method,
        groups=groups,
        slots=slots,
        strata=groups,
        n_boot=cfg.n_boot,
        n_perm=cfg.n_perm,
        level=cfg.ci,
        ci_method=cfg.ci_method,
        seed=seed,
    )


def trust_table(wdf, cfg: StatsConfig, info: dict) -> list[dict]:
    """The per-context trust indicator's answer: for each model and per-window
    statistic, the layer is chosen on the selection datasets (largest |ρ|,
    ties → shallower) and tested on the evaluation datasets (``info`` from
    :func:`heldout_table`: the same split as the cell-level answer). The unit
    is one test window; its target is that window's own NMSE."""
    rows: list[dict] = []
    if wdf is None or not len(wdf):
        return rows
    wdf = wdf[wdf["skip_reason"].fillna("").astype(str) == ""] if "skip_reason" in wdf.columns else wdf
    sel, ev = info.get("selection_datasets", []), info.get("evaluation_datasets", [])
    if not sel or not ev:
        return rows
    stats_ = [s for s in TRUST_STATISTICS if s in wdf.columns]
    for model in sorted(wdf["model"].unique()):
        dm = wdf[wdf["model"] == model]
        for method in cfg.methods:
            for stat in stats_:
                best, best_r = None, -1.0
                for layer in sorted(dm["layer"].unique()):
                    d = _cells(dm[dm["layer"] == layer], stat=stat, target="nmse", datasets=sel)
                    if len(d) < 4 or d[stat].nunique() < 2:
                        continue
                    # the point estimate only (mean within-dataset correlation)
                    r = float(
                        S._stat_rows(
                            method,
                            d[stat].to_numpy(float)[None],
                            d["nmse"].to_numpy(float)[None],
                            d["dataset"].to_numpy(),
                        )[0]
                    )
                    if np.isfinite(r) and abs(r) > best_r + 1e-12:
                        best, best_r = (int(layer), r), abs(r)
                if best is None:
                    continue
                layer, r_sel = best
                d = _cells(dm[dm["layer"] == layer], stat=stat, target="nmse", datasets=ev)
                if len(d) < 4 or d[stat].nunique() < 2:
                    continue
                res = _trust_correlate(d, stat, method, cfg, _seed(cfg, "trust", model, stat, method))
                rows.append(
                    _row(
                        "trust",
                        f"model:{model}",
                        model,
                        layer,
                        str(d["layer_name"].iloc[0]),
                        float(d["depth"].iloc[0]),
                        stat,
                        "nmse",
                        res,
                        selected_on=",".join(sel),
                        selection_estimate=float(r_sel),
                    )
                )
    _bh(rows, ("target", "method"), cfg.alpha)
    return rows
