"""The study's answer in words: per model, what predicts NMSE, what the
intervention did, what the per-context indicator says, and what was excluded.

Every number is read from the tables the study wrote (``heldout.csv``,
``causal.csv``, ``trust.csv``, ``results.csv``); nothing is recomputed here.

Rules (fixed before looking at the data):

* **cell level** — the held-out table (layer chosen on the selection
  datasets, tested on the evaluation datasets), Spearman, the first target.
  A statistic *predicts* NMSE when its BH q-value is ≤ α. The row reported is
  the one with the smallest q (then p, then the larger |ρ|); when none
  reaches α, that row is reported as "the strongest" and the verdict says no
  statistic predicts NMSE.
* **causal** — per intervention, the pooled ("all") row; *changed NMSE
  significantly* when its sign-flip p ≤ α (tests are few and pre-specified).
* **per context** — ``trust.csv``, the same rule as the cell level.
* **excluded** — massive rows (sum over measured cells), cells under a floor
  (``skip_reason``), small clusters, failed cells.
"""

from __future__ import annotations

import math

import numpy as np


def _f(v, nd=2) -> str:
    from isofast.study.report import _fmt

    return _fmt(v, nd)


def _best(df, model: str, alpha: float, method: str, target: str):
    if df is None or not len(df):
        return None
    d = df[(df["model"] == model) & (df["method"] == method) & (df["target"] == target)]
    d = d[np.isfinite(d["p_value"].astype(float))]
    if d.empty:
        return None
    d = d.assign(_q=d["q_value"].astype(float).fillna(1.0), _a=-d["estimate"].astype(float).abs())
    r = d.sort_values(["_q", "p_value", "_a"]).iloc[0]
    return {
        k: (r[k].item() if hasattr(r[k], "item") else r[k])
        for k in (
            "statistic",
            "layer",
            "layer_name",
            "estimate",
            "ci_low",
            "ci_high",
            "p_value",
            "q_value",
            "n",
            "n_groups",
        )
    } | {"significant": bool(float(r["_q"]) <= alpha)}


def _claim(b, what: str, unit: str) -> str:
    if b is None:
        return f"{what}: not enough data for a test."
    nums = (
        f"ρ = {_f(b['estimate'])} [95% CI {_f(b['ci_low'])}, {_f(b['ci_high'])}], p = {_f(b['p_value'], 3)}, "
        f"q = {_f(b['q_value'], 3)}; {int(b['n'])} {unit} in {int(b['n_groups'])} held-out datasets"
    )
    if b["significant"]:
        return f"{what}: {b['statistic']} at layer {b['layer_name']} predicts NMSE ({nums})."
    return (
        f"{what}: no statistic predicts NMSE at the false-discovery rate; the strongest was "
        f"{b['statistic']} at layer {b['layer_name']} ({nums})."
    )


def build_verdict(result) -> dict:
    """``{"models": {name: {...}}, "excluded": {...}, "sentence": str}`` (module docstring)."""
    cfg = result.config
    alpha = cfg.stats.alpha
    method = cfg.stats.methods[0]
    target = cfg.stats.targets[0]
    held, causal, trust, table = result.heldout, result.causal, result.trust, result.table
    models = [m.name for m in cfg.models]
    out: dict = {"alpha": alpha, "method": method, "target": target, "models": {}}
    for m in models:
        cell = _best(held[held["scope"] == f"model:{m}"] if len(held) else held, m, alpha, method, target)
        ctx = _best(trust, m, alpha, method, "nmse") if trust is not None and len(trust) else None
        interventions = []
        if causal is not None and len(causal) and "model" in causal.columns:
            c = causal[(causal["model"] == m) & (causal["dataset"] == "all")]
            for _, r in c.iterrows():
                if not math.isfinite(float(r.get("delta_nmse", math.nan))):
                    continue
                rel = float(r["delta_nmse"]) / float(r["nmse_before"]) if float(r["nmse_before"]) else math.nan
                interventions.append(
                    {
                        "test": r["test"],
                        "relative_change": rel,
                        "p_value": float(r["p_value"]),
                        "ci_low": float(r["ci_low"]),
                        "ci_high": float(r["ci_high"]),
                        "significant": bool(float(r["p_value"]) <= alpha),
                        "n_series": int(r["n_series"]),
                    }
                )
        tm = table[table["model"] == m] if len(table) else table
        skipped = tm[tm["skip_reason"].fillna("").astype(str) != ""] if "skip_reason" in tm.columns else tm.iloc[:0]
        measured = tm[tm["skip_reason"].fillna("").astype(str) == ""] if "skip_reason" in tm.columns else tm
        texts = [_claim(cell, "Cell level", "cells"), _claim(ctx, "Per context", "windows")]
        for iv in interventions:
            texts.append(
                f"Intervention {iv['test']}: NMSE changed by {iv['relative_change']:+.1%} "
                f"(95% CI of ΔNMSE {_f(iv['ci_low'], 3)} to {_f(iv['ci_high'], 3)}, p = {_f(iv['p_value'], 3)}, "
                f"{iv['n_series']} series): {'significant' if iv['significant'] else 'not significant'} at α = {alpha:g}."
            )
        out["models"][m] = {
            "cell": cell,
            "context": ctx,
            "causal": interventions,
            "text": texts,
            "n_massive": int(np.nansum(measured["n_massive"])) if "n_massive" in measured else 0,
            "n_small_clusters": int(np.nansum(measured["n_small_clusters"])) if "n_small_clusters" in measured else 0,
            "n_skipped_rows": len(skipped),
            "skip_reasons": sorted(set(skipped["skip_reason"].astype(str)))[:5] if len(skipped) else [],
            "n_failed_cells": int(sum(1 for c in result.cells if c.model == m and c.error)),
        }
    sig = [(m, v["cell"]) for m, v in out["models"].items() if v["cell"] and v["cell"]["significant"]]
    tested = [m for m, v in out["models"].items() if v["cell"]]
    if sig:
        parts = [
            f"{m}: {b['statistic']} at {b['layer_name']} (ρ = {_f(b['estimate'])}, q = {_f(b['q_value'], 3)})"
            for m, b in sig
        ]
        sentence = (
            f"On held-out datasets, isotropy predicted NMSE for {len(sig)} of {len(tested)} models — "
            + "; ".join(parts)
            + "."
        )
    elif tested:
        best = min(
            ((m, v["cell"]) for m, v in out["models"].items() if v["cell"]),
            key=lambda t: (t[1]["p_value"], -abs(t[1]["estimate"])),
        )
        m, b = best
        sentence = (
            f"On held-out datasets no isotropy statistic predicted NMSE for any of {len(tested)} models at "
            f"FDR {alpha:g}; the strongest was {m}'s {b['statistic']} at {b['layer_name']} "
            f"(ρ = {_f(b['estimate'])}, p = {_f(b['p_value'], 3)}, q = {_f(b['q_value'], 3)})."
        )
    else:
        sentence = "Too few datasets or cells for a held-out test."
    out["sentence"] = sentence
    return out
