"""The study report: one self-contained HTML file, its PNGs, and every number as JSON/CSV.

Figures (``<out>/figures``; each is also embedded in ``report.html`` as base64):

* ``isotropy_by_layer_<model>.png`` — clustered cosine, best k, log partition
  isotropy, IsoScore and effective dimension against the layer, one line per
  dataset (first perturbation) and the dataset mean per perturbation;
* ``spectra_<model>.png`` — explained-variance ratio against the component
  (log–log), one panel per dataset, one line per layer;
* ``pca_<model>_<dataset>.png`` — the 2-D PCA scatter of every captured layer,
  points coloured by k-means cluster;
* ``scatter_<target>.png`` — isotropy against the error per model, at the layer
  chosen on the held-out split, the correlation, its CI, p and n in the title;
* ``heatmap_<model>.png`` — Spearman ρ of every statistic at every layer, BH
  discoveries starred;
* ``forecasts_<model>.png`` — context, truth, point forecast and the sample
  band for the first windows of every dataset;
* ``causal.png`` — ΔNMSE of every intervention with its CI.

``report_data.json`` holds every plotted number (per-layer statistics,
spectra, PCA coordinates, forecasts, correlation rows, causal rows); the tables
are also CSV files beside it.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import numpy as np

PANEL_STATS = (
    ("inter_cluster_cosine", "clustered cosine (inter-cluster)", False),
    ("best_k", "best k (k-means)", False),
    ("log_partition_isotropy", "log partition isotropy  log I(V)", False),
    ("isoscore", "IsoScore", False),
    ("effective_dim", "effective dim d(0.8)", False),
)
#: fewest points a PCA scatter is drawn with.
MIN_PCA_POINTS = 50
SCATTER_STATS = ("inter_cluster_cosine", "isoscore", "log_partition_isotropy", "effective_dim", "avg_cosine_centered")


#: Columns of a tested association in the report's held-out and trust tables, after its identifying columns.
_TEST_COLUMNS = (
    "method",
    "selection_estimate",
    "n",
    "n_groups",
    "estimate",
    "ci_low",
    "ci_high",
    "p_value",
    "q_value",
    "significant",
)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return str(path)


def _fmt(v, nd=3) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(v):
        return "—"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4):
        return f"{v:.2e}"
    return f"{v:.{nd}f}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def _ok(df):
    return (
        df[df["error"].astype(object).where(df["error"].notna(), "").astype(str) == ""] if "error" in df.columns else df
    )


# -------------------------------------------------------------- figures
def fig_isotropy_by_layer(df, model: str, perts: list, path: Path) -> str | None:
    plt = _plt()
    d = _ok(df)
    d = d[d["model"] == model]
    if d.empty:
        return None
    layers = sorted(d["layer"].unique())
    names = [str(d[d["layer"] == L]["layer_name"].iloc[0]) for L in layers]
    fig, axes = plt.subplots(1, len(PANEL_STATS), figsize=(4.0 * len(PANEL_STATS), 3.6), squeeze=False)
    datasets = sorted(d["dataset"].unique())
    cmap = plt.get_cmap("tab10" if len(datasets) <= 10 else "tab20")
    for ax, (stat, label, _) in zip(axes[0], PANEL_STATS):
        for i, ds in enumerate(datasets):
            s = d[(d["dataset"] == ds) & (d["perturbation"] == perts[0])].sort_values("layer")
            if len(s):
                ax.plot(s["layer"], s[stat], marker="o", ms=3, lw=1, color=cmap(i % cmap.N), label=ds)
        for j, p in enumerate(perts):
            s = d[d["perturbation"] == p].groupby("layer")[stat].mean()
            ax.plot(s.index, s.values, color="black", lw=2.2, ls=["-", "--", ":", "-."][j % 4], label=f"mean ({p})")
        ax.set_xlabel("layer")
        ax.set_ylabel(label)
        ax.set_xticks(layers)
        ax.set_xticklabels(names, rotation=60, fontsize=7, ha="right")
        ax.grid(alpha=0.3)
    h, lab = axes[0][0].get_legend_handles_labels()
    fig.legend(h, lab, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, title=f"dataset ({perts[0]})")
    fig.suptitle(f"{model}: isotropy by layer")
    fig.tight_layout()
    return _save(fig, path)


def fig_spectra(cells, model: str, pert: str, path: Path, max_panels: int = 8) -> str | None:
    plt = _plt()
    cs = [c for c in cells if c.model == model and c.perturbation == pert and not c.error and c.layers][:max_panels]
    if not cs:
        return None
    ncol = min(4, len(cs))
    nrow = math.ceil(len(cs) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.0 * nrow), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, c in zip(axes.ravel(), cs):
        keys = sorted(c.layers)
        for j, L in enumerate(keys):
            ev = np.asarray(c.layers[L]["spectrum"], float)
            ev = ev[ev > 0]
            if ev.size:
                ax.loglog(
                    np.arange(1, ev.size + 1),
                    ev,
                    color=cmap(j / max(len(keys) - 1, 1)),
                    lw=1.2,
                    label=c.layers[L]["name"],
                )
        ax.set_title(c.dataset, fontsize=9)
        ax.set_xlabel("component k")
        ax.set_ylabel("explained variance λ_k/Σλ")
        ax.grid(alpha=0.3, which="both")
    for ax in axes.ravel()[len(cs) :]:
        ax.remove()
    h, lab = axes[0][0].get_legend_handles_labels()
    fig.legend(h, lab, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, title="layer")
    fig.suptitle(f"{model}: covariance spectra ({pert})")
    fig.tight_layout()
    return _save(fig, path)


def fig_pca(cell, path: Path, max_layers: int = 12) -> str | None:
    plt = _plt()
    keys = sorted(cell.layers)
    if not keys:
        return None
    if len(keys) > max_layers:
        pick = np.unique(np.round(np.linspace(0, len(keys) - 1, max_layers)).astype(int))
        keys = [keys[i] for i in pick]
    ncol = min(6, len(keys))
    nrow = math.ceil(len(keys) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.9 * ncol, 2.8 * nrow), squeeze=False)
    stats = {r["layer"]: r for r in cell.rows}
    for ax, L in zip(axes.ravel(), keys):
        P = np.asarray(cell.layers[L]["pca"], float)
        lab = np.asarray(cell.layers[L]["pca_labels"], int)
        why = cell.layers[L].get("skip_reason", "")
        if P.ndim == 2 and P.shape[0] >= MIN_PCA_POINTS and not why:
            ax.scatter(P[:, 0], P[:, 1], c=lab, cmap="tab10", s=6, alpha=0.7, vmin=0, vmax=9)
        else:  # a PCA of a handful of points is no picture of a layer
            ax.text(
                0.5,
                0.5,
                "not enough rows\n" + (why[:60] if why else f"{P.shape[0] if P.ndim == 2 else 0} points"),
                ha="center",
                va="center",
                fontsize=7,
                transform=ax.transAxes,
                wrap=True,
            )
            ax.set_xticks([])
            ax.set_yticks([])
        r = stats.get(L, {})
        ax.set_title(
            f"{cell.layers[L]['name']}\nk={_fmt(r.get('best_k'), 0)}, cos={_fmt(r.get('inter_cluster_cosine'))}",
            fontsize=8,
        )
        ax.set_xlabel("PC1", fontsize=8)
        ax.set_ylabel("PC2", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(keys) :]:
        ax.remove()
    fig.suptitle(f"{cell.model} on {cell.dataset} ({cell.perturbation}): PCA of each layer, colour = cluster")
    fig.tight_layout()
    return _save(fig, path)


def fig_scatter(df, corr, held, target: str, path: Path, method: str = "spearman") -> tuple[str | None, list]:
    """Isotropy vs error per model at the held-out-chosen layer; returns the plotted points."""
    plt = _plt()
    d = _ok(df)
    models = sorted(d["model"].unique())
    stats_ = [s for s in SCATTER_STATS if s in d.columns]
    if not models or not stats_:
        return None, []
    fig, axes = plt.subplots(len(models), len(stats_), figsize=(3.5 * len(stats_), 3.1 * len(models)), squeeze=False)
    points = []
    perts = sorted(d["perturbation"].unique())
    markers = ["o", "s", "^", "D", "v", "P"]
    for i, m in enumerate(models):
        dm = d[d["model"] == m]
        for j, s in enumerate(stats_):
            ax = axes[i][j]
            h = (
                held[
                    (held["model"] == m)
                    & (held["statistic"] == s)
                    & (held["target"] == target)
                    & (held["method"] == method)
                ]
                if len(held)
                else held
            )
            if len(h):
                L = int(h["layer"].iloc[0])
                sub = f"held-out ρ={_fmt(h['estimate'].iloc[0], 2)} (n={int(h['n'].iloc[0])})"
            else:  # no held-out choice (too few datasets): the last layer
                L = int(dm["layer"].max())
                sub = "no held-out split"
            dl = dm[dm["layer"] == L]
            cr = (
                corr[
                    (corr["scope"] == f"model:{m}")
                    & (corr["layer"] == L)
                    & (corr["statistic"] == s)
                    & (corr["target"] == target)
                    & (corr["method"] == method)
                ]
                if len(corr)
                else corr
            )
            for k, p in enumerate(perts):
                q = dl[dl["perturbation"] == p]
                ax.scatter(q[s], q[target], marker=markers[k % len(markers)], s=28, alpha=0.8, label=p)
                for _, r in q.iterrows():
                    if k == 0:  # name each dataset once (at its first perturbation)
                        ax.annotate(
                            str(r["dataset"])[:10],
                            (r[s], r[target]),
                            fontsize=5,
                            alpha=0.7,
                            xytext=(2, 2),
                            textcoords="offset points",
                        )
                    points.append(
                        {
                            "model": m,
                            "statistic": s,
                            "layer": L,
                            "dataset": r["dataset"],
                            "perturbation": p,
                            "x": r[s],
                            "y": r[target],
                        }
                    )
            if len(cr):
                c = cr.iloc[0]
                title = (
                    f"ρ={_fmt(c['estimate'], 2)} [{_fmt(c['ci_low'], 2)}, {_fmt(c['ci_high'], 2)}]"
                    f" p={_fmt(c['p_value'], 3)} n={int(c['n'])}"
                )
            else:
                title = "ρ undefined"
            ax.set_title(f"{m} · {dl['layer_name'].iloc[0] if len(dl) else L}\n{title}\n{sub}", fontsize=7.5)
            ax.set_xlabel(s, fontsize=8)
            ax.set_ylabel(target.upper(), fontsize=8)
            if len(dl) and (dl[target] > 0).all():
                ax.set_yscale("log")
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    h, lab = axes[0][0].get_legend_handles_labels()
    fig.legend(h, lab, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, title="perturbation")
    fig.suptitle(f"isotropy vs {target.upper()} ({method}; cluster-bootstrap CI over datasets, permutation p)")
    fig.tight_layout()
    return _save(fig, path), points


def fig_heatmap(corr, model: str, target: str, path: Path, method: str = "spearman") -> str | None:
    plt = _plt()
    if not len(corr):
        return None
    c = corr[(corr["scope"] == f"model:{model}") & (corr["target"] == target) & (corr["method"] == method)]
    if c.empty:
        return None
    stats_ = list(dict.fromkeys(c["statistic"]))
    layers = sorted(c["layer"].unique())
    names = [str(c[c["layer"] == L]["layer_name"].iloc[0]) for L in layers]
    M = np.full((len(stats_), len(layers)), np.nan)
    star = np.zeros_like(M, dtype=bool)
    for _, r in c.iterrows():
        i, j = stats_.index(r["statistic"]), layers.index(r["layer"])
        M[i, j] = r["estimate"]
        star[i, j] = bool(r["significant"])
    fig, ax = plt.subplots(figsize=(max(4.5, 0.55 * len(layers) + 3), 0.38 * len(stats_) + 1.8))
    im = ax.imshow(M, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            if np.isfinite(M[i, j]):
                ax.text(j, i, f"{M[i, j]:.2f}{'*' if star[i, j] else ''}", ha="center", va="center", fontsize=6.5)
    ax.set_yticks(range(len(stats_)))
    ax.set_yticklabels(stats_, fontsize=7)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("layer")
    ax.set_ylabel("isotropy statistic")
    fig.colorbar(im, ax=ax, label=f"{method} ρ with {target.upper()}")
    ax.set_title(f"{model}: correlation with {target.upper()} per layer (* BH q ≤ α)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def fig_forecasts(cells, model: str, pert: str, path: Path, max_rows: int = 8) -> str | None:
    plt = _plt()
    cs = [c for c in cells if c.model == model and c.perturbation == pert and not c.error and c.forecast][:max_rows]
    if not cs:
        return None
    ncol = max(len(c.forecast["target"]) for c in cs)
    fig, axes = plt.subplots(len(cs), ncol, figsize=(4.2 * ncol, 2.3 * len(cs)), squeeze=False)
    for i, c in enumerate(cs):
        f = c.forecast
        for j in range(ncol):
            ax = axes[i][j]
            if j >= len(f["target"]):
                ax.remove()
                continue
            ctx = np.asarray(f["context"][j])
            tgt = np.asarray(f["target"][j])
            tc = np.arange(ctx.size)
            tf = np.arange(ctx.size, ctx.size + tgt.size)
            ax.plot(tc, ctx, color="tab:blue", lw=1, label="context")
            ax.plot(tf, tgt, color="black", lw=1.2, label="truth")
            ax.plot(tf, f["point"][j], color="tab:red", lw=1.2, label="point forecast")
            if f["n_samples"] > 1:
                ax.fill_between(
                    tf,
                    f["lo"][j],
                    f["hi"][j],
                    color="tab:red",
                    alpha=0.25,
                    label=f"{int(f['quantiles'][0] * 100)}–{int(f['quantiles'][1] * 100)}% band",
                )
            ax.set_title(f"{c.dataset} · window {j} · NMSE(cell)={_fmt(c.metrics.get('nmse'))}", fontsize=8)
            ax.set_xlabel("time step", fontsize=7)
            ax.set_ylabel("value", fontsize=7)
            ax.tick_params(labelsize=6)
    handles, labels = [], []
    for ax in axes.ravel():
        if ax.figure is fig and ax.axes is not None:
            h, lab = ax.get_legend_handles_labels()
            for hh, ll in zip(h, lab):
                if ll not in labels:
                    handles.append(hh)
                    labels.append(ll)
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 1.0 + 0.12 / len(cs)), ncol=4, fontsize=8)
    fig.suptitle(f"{model}: forecasts ({pert})", y=1.0 + 0.2 / len(cs))
    fig.tight_layout()
    return _save(fig, path)


def fig_causal(causal, path: Path) -> str | None:
    """One row per intervention: its pooled effect over datasets (the ``all``
    row; the dataset's own row when a test has one dataset), on a symlog axis
    because a broken model can multiply its NMSE by thousands."""
    plt = _plt()
    if not len(causal) or "delta_nmse" not in causal.columns:
        return None
    c = causal[causal["error"].astype(object).where(causal["error"].notna(), "").astype(str) == ""]
    c = c[np.isfinite(c["delta_nmse"].astype(float))]
    if c.empty:
        return None
    keep = []
    for test, g in c.groupby("test", sort=False):
        keep.append(g[g["dataset"] == "all"] if (g["dataset"] == "all").any() else g)
    import pandas as pd

    c = pd.concat(keep)
    labels = [f"{r['test']} · {r['dataset']}" for _, r in c.iterrows()]
    y = np.arange(len(c))[::-1]
    base = c["nmse_before"].to_numpy(float)
    rel = c["delta_nmse"].to_numpy(float) / base
    lo = c["ci_low"].to_numpy(float) / base
    hi = c["ci_high"].to_numpy(float) / base
    fig, ax = plt.subplots(figsize=(8.5, 0.42 * len(c) + 1.8))
    col = ["tab:green" if v < 0 else "tab:red" for v in rel]
    ax.errorbar(rel, y, xerr=[np.maximum(rel - lo, 0), np.maximum(hi - rel, 0)], fmt="none", ecolor="gray", capsize=3)
    ax.scatter(rel, y, c=col, zorder=3)
    ax.set_xscale("symlog", linthresh=0.1)
    right = max(float(np.nanmax(hi)), float(np.nanmax(rel)), 1.0)
    ax.set_xlim(min(-1.05, float(np.nanmin(lo)) * 1.2), right * 8)
    for yi, (_, r), h in zip(y, c.iterrows(), hi):
        ax.text(
            max(h, r["delta_nmse"] / r["nmse_before"]) * 1.15 + 0.02,
            yi,
            f" p={_fmt(r['p_value'], 3)}, n={int(r['n_series'])} series",
            va="center",
            fontsize=7,
        )
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("relative change in NMSE, ΔNMSE / NMSE (symlog; < 0 = the intervention helped)")
    ax.set_title(
        "causal test: one layer made more isotropic inside the forward pass\n"
        "(paired over series; 95% paired-bootstrap CI; sign-flip p)",
        fontsize=9,
    )
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _save(fig, path)


def fig_verdict(result, path: Path) -> str | None:
    """The answer in one figure: per model, the held-out ρ (with its 95% CI) of
    every statistic at the layer chosen for it — cell level (filled: BH q ≤ α)
    and per context (squares) — so the reader sees every test, not only the best."""
    plt = _plt()
    cfg = result.config
    method, target, alpha = cfg.stats.methods[0], cfg.stats.targets[0], cfg.stats.alpha
    models = [m.name for m in cfg.models]
    held, trust = result.heldout, result.trust
    rows_per_model = []
    for m in models:
        rs = []
        for tab, kind in ((held, "cell"), (trust, "context")):
            if tab is None or not len(tab):
                continue
            t = tab[
                (tab["model"] == m)
                & (tab["method"] == method)
                & (tab["target"] == (target if kind == "cell" else "nmse"))
            ]
            t = t[np.isfinite(t["estimate"].astype(float)) & np.isfinite(t["ci_low"].astype(float))]
            for _, r in t.iterrows():
                rs.append(
                    (
                        kind,
                        f"{r['statistic']} @ {r['layer_name']}",
                        float(r["estimate"]),
                        float(r["ci_low"]),
                        float(r["ci_high"]),
                        bool(r["significant"]),
                    )
                )
        rows_per_model.append((m, rs))
    if not any(rs for _, rs in rows_per_model):
        return None
    n = max(len(rs) for _, rs in rows_per_model)
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 0.28 * n + 1.8), squeeze=False)
    for ax, (m, rs) in zip(axes[0], rows_per_model):
        if not rs:
            ax.text(
                0.5,
                0.5,
                "no held-out test\n(too few datasets or cells)",
                ha="center",
                va="center",
                transform=ax.transAxes,
                fontsize=9,
            )
            ax.set_axis_off()
            ax.set_title(m, fontsize=10)
            continue
        y = np.arange(len(rs))[::-1]
        for yi, (kind, lab, est, lo, hi, sig) in zip(y, rs):
            col = "tab:blue" if kind == "cell" else "tab:orange"
            ax.plot([lo, hi], [yi, yi], color=col, lw=1.4)
            ax.scatter(
                [est],
                [yi],
                marker="o" if kind == "cell" else "s",
                s=30,
                zorder=3,
                facecolor=col if sig else "white",
                edgecolor=col,
            )
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlim(-1.05, 1.05)
        ax.set_yticks(y)
        ax.set_yticklabels([("" if k == "cell" else "ctx · ") + lab for k, lab, *_ in rs], fontsize=6.5)
        ax.set_xlabel(f"held-out {method} ρ with {target.upper()} (95% cluster-bootstrap CI)", fontsize=8)
        ax.set_title(m, fontsize=10)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(
        f"Does isotropy predict forecast error on held-out datasets? (filled: BH q ≤ {alpha:g}; "
        "circles: cells, squares: single contexts)",
        fontsize=9,
    )
    fig.tight_layout()
    return _save(fig, path)


def verdict_html(result, fig: str | None) -> str:
    """The report's first section, ``id="verdict"``."""
    v = result.verdict or {}
    parts = [
        "<section id='verdict'><h2>Verdict</h2>",
        f"<p class='answer'><b>{html.escape(v.get('sentence', ''))}</b></p><ul>",
    ]
    for m, mv in v.get("models", {}).items():
        items = "".join(f"<li>{html.escape(t)}</li>" for t in mv.get("text", []))
        excl = (
            f"Excluded: {mv['n_massive']} massive rows (norm > {result.config.isotropy.massive_ratio:g} × median; "
            f"{'removed' if result.config.isotropy.massive == 'exclude' else 'kept'}), "
            f"{mv['n_small_clusters']} clusters below {result.config.isotropy.min_cluster_size} rows, "
            f"{mv['n_skipped_rows']} layer-cells under a row floor, {mv['n_failed_cells']} failed cells."
        )
        if mv.get("skip_reasons"):
            excl += " Reasons: " + "; ".join(mv["skip_reasons"])
        parts.append(f"<li><b>{html.escape(m)}</b><ul>{items}<li>{html.escape(excl)}</li></ul></li>")
    parts.append("</ul>")
    parts.append(_img(fig))
    parts.append("</section>")
    return "".join(parts)


# ------------------------------------------------------------------ HTML
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:12px;margin:.6em 0}td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.sig{background:#fff3c4}.err{color:#b00}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}#verdict{background:#f7f9fc;border:1px solid #d6e0f0;padding:.2em 1em 1em;border-radius:6px}.answer{font-size:1.1em}.note{color:#555;font-size:13px}
code{background:#f5f5f5;padding:1px 4px}
"""


def _img(path: str | None) -> str:
    if not path:
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).name)}" src="data:image/png;base64,{data}"/>'


def _table(df, cols, *, sig_col=None, max_rows=None, left=()) -> str:
    if df is None or not len(df):
        return "<p class='note'>(no rows)</p>"
    d = df if max_rows is None else df.head(max_rows)
    head = "".join(f"<th class='{'l' if c in left else ''}'>{html.escape(c)}</th>" for c in cols)
    body = []
    for _, r in d.iterrows():
        cls = " class='sig'" if sig_col and bool(r.get(sig_col, False)) else ""
        tds = []
        for c in cols:
            v = r.get(c, "")
            txt = _fmt(v) if isinstance(v, (float, np.floating)) else html.escape(str(v))
            tds.append(f"<td class='{'l' if c in left else ''}'>{txt}</td>")
        body.append(f"<tr{cls}>{''.join(tds)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _skill_table(result) -> str:
    """Geometric mean over cells of MASE and CRPS relative to seasonal naive
    (GIFT-Eval / fev; ratios clipped to [0.01, 100]), per model and baseline."""
    from isofast.baselines import geometric_mean_skill

    df = _ok(result.table)
    rows = []
    if len(df) and "skill_mase" in df.columns:
        cells = df.drop_duplicates(["model", "dataset", "perturbation"])
        for m in sorted(cells["model"].unique()):
            c = cells[cells["model"] == m]
            rows.append(
                {
                    "model": m,
                    "cells": len(c),
                    "MASE / seasonal naive": geometric_mean_skill(c["skill_mase"]),
                    "CRPS / seasonal naive": geometric_mean_skill(c["skill_crps"]),
                    "mean NMSE": float(np.nanmean(c["nmse"])),
                }
            )
        for b in ("ets",):
            if f"mase_{b}" in cells.columns:
                c = cells.drop_duplicates(["dataset", "perturbation"])
                rows.append(
                    {
                        "model": f"baseline: {b.upper()}",
                        "cells": len(c),
                        "MASE / seasonal naive": geometric_mean_skill(c[f"mase_{b}"] / c["mase_snaive"]),
                        "CRPS / seasonal naive": geometric_mean_skill(c[f"crps_{b}"] / c["crps_snaive"]),
                        "mean NMSE": float(np.nanmean(c[f"nmse_{b}"])),
                    }
                )
    if not rows:
        return "<p class='note'>(no baseline columns)</p>"
    import pandas as pd

    t = pd.DataFrame(rows)
    return (
        "<p class='note'>Below 1: better than seasonal naive. Per-(dataset, perturbation) numbers: "
        "<code>baselines.csv</code>; per cell: <code>skill_mase</code>, <code>skill_crps</code> in results.csv.</p>"
        + _table(t, list(t.columns), left=("model",))
    )


CORR_COLS = [
    "scope",
    "layer_name",
    "statistic",
    "target",
    "method",
    "n",
    "n_groups",
    "estimate",
    "ci_low",
    "ci_high",
    "p_value",
    "q_value",
    "significant",
]


def write_report(result) -> dict:
    """Write figures, ``report.html`` and ``report_data.json`` into ``result.out``."""
    from isofast.report import jsonable

    out = Path(result.out)
    figdir = out / "figures"
    cfg = result.config
    df = result.table
    corr, held, causal = result.correlations, result.heldout, result.causal
    perts = [p.name for p in cfg.perturbations]
    figs: dict[str, str] = {}
    data: dict = {"scatter_points": {}}
    okdf = _ok(df) if len(df) else df
    models = [m.name for m in cfg.models if len(okdf) and (okdf["model"] == m.name).any()]
    target = cfg.stats.targets[0]
    method = cfg.stats.methods[0]
    for m in models:
        p = fig_isotropy_by_layer(df, m, perts, figdir / f"isotropy_by_layer_{_safe(m)}.png")
        if p:
            figs[f"isotropy_by_layer_{m}"] = p
        p = fig_spectra(result.cells, m, perts[0], figdir / f"spectra_{_safe(m)}.png")
        if p:
            figs[f"spectra_{m}"] = p
        p = fig_heatmap(corr, m, target, figdir / f"heatmap_{_safe(m)}.png", method)
        if p:
            figs[f"heatmap_{m}"] = p
        p = fig_forecasts(result.cells, m, perts[0], figdir / f"forecasts_{_safe(m)}.png")
        if p:
            figs[f"forecasts_{m}"] = p
        shown = 0
        for c in result.cells:
            if c.model == m and c.perturbation == perts[0] and not c.error and shown < cfg.report.pca_datasets:
                p = fig_pca(c, figdir / f"pca_{_safe(m)}_{_safe(c.dataset)}.png")
                if p:
                    figs[f"pca_{m}_{c.dataset}"] = p
                    shown += 1
    for t in cfg.stats.targets:
        if len(okdf):
            p, pts = fig_scatter(df, corr, held, t, figdir / f"scatter_{_safe(t)}.png", method)
            if p:
                figs[f"scatter_{t}"] = p
                data["scatter_points"][t] = pts
    p = fig_causal(causal, figdir / "causal.png")
    if p:
        figs["causal"] = p
    p = fig_verdict(result, figdir / "verdict.png")
    if p:
        figs["verdict"] = p

    # ---- every number behind the figures
    data.update(
        {
            "study": cfg.name,
            "config": cfg.to_dict(),
            "counters": result.counters,
            "results": df.to_dict(orient="records"),
            "correlations": corr.to_dict(orient="records"),
            "heldout": held.to_dict(orient="records"),
            "heldout_info": result.heldout_info,
            "causal": causal.to_dict(orient="records"),
            "verdict": result.verdict,
            "trust": result.trust.to_dict(orient="records") if result.trust is not None else [],
            "cells": [
                {
                    "model": c.model,
                    "dataset": c.dataset,
                    "perturbation": c.perturbation,
                    "error": c.error,
                    "seconds": c.seconds,
                    "metrics": c.metrics,
                    "forecast": c.forecast,
                    "head": c.head,
                    "layers": {str(k): v for k, v in c.layers.items()},
                }
                for c in result.cells
            ],
            "models": result.models,
            "figures": {k: str(Path(v).relative_to(out)) for k, v in figs.items()},
        }
    )
    (out / "report_data.json").write_text(json.dumps(jsonable(data), indent=1))

    # ---- HTML
    n_fail = sum(1 for c in result.cells if c.error)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>isofast study: {html.escape(cfg.name)}</title>"
        f"<style>{_CSS}</style></head><body>"
    ]
    parts.append(f"<h1>Does isotropy predict forecast quality? — study <code>{html.escape(cfg.name)}</code></h1>")
    parts.append(verdict_html(result, figs.get("verdict")))
    if getattr(result, "adaptation", None) is not None:  # the fine-tuning experiment, its verdict first
        from isofast.adapt.report import section

        parts.append(section(result.adaptation, figdir))
    parts.append(
        f"<p>{len(cfg.models)} models × {len(cfg.datasets)} datasets × {len(cfg.perturbations)} perturbations = "
        f"{len(result.cells)} cells ({n_fail} failed); {len(df)} result rows; grid, statistics and causal tests took {result.seconds:.1f} s. "
        f"Cache: {html.escape(json.dumps(result.counters))}.</p>"
    )
    iso = cfg.isotropy
    parts.append(
        "<p class='note'>Validity rules (docs/validity.md): every cell of a (model, layer) is measured on the same N "
        f"rows (rows = {html.escape(str(iso.rows))}; N ≥ d; per-layer N in <code>summary.json</code>); rows with norm > "
        f"{iso.massive_ratio:g} × the layer's median are <b>{'excluded' if iso.massive == 'exclude' else 'kept'}</b> "
        f"and counted (<code>n_massive</code>); clusters below {iso.min_cluster_size} rows leave the clustered cosine; "
        "every global statistic has an isotropic-Gaussian null at the same N and d (<code>*_null</code>, "
        "<code>*_vs_null</code>)." + ("" if iso.floors else " <b>Floors are off: reference recipe.</b>") + "</p>"
    )
    parts.append(
        "<p class='note'>Statistics: Spearman/Kendall correlations across cells; 95% intervals are cluster-bootstrap "
        f"({cfg.stats.ci_method}, {cfg.stats.n_boot} resamples of datasets); p-values permute dataset labels "
        f"({cfg.stats.n_perm} permutations, two-sided, +1 corrected; exact enumeration when fewer exist); q = "
        "Benjamini–Hochberg within each family (table, scope kind, target, method). <b>n</b> = cells, "
        "<b>n_groups</b> = datasets, the independent units. The held-out table chooses each model's layer on "
        f"datasets {html.escape(', '.join(result.heldout_info.get('selection_datasets', [])))} and tests it on "
        f"{html.escape(', '.join(result.heldout_info.get('evaluation_datasets', [])))} only.</p>"
    )
    if n_fail:
        fails = [c for c in result.cells if c.error]
        parts.append(
            "<h2>Failed cells</h2><ul>"
            + "".join(
                f"<li class='err'>{html.escape(c.model)} / {html.escape(c.dataset)} / {html.escape(c.perturbation)}: "
                f"{html.escape(c.error)}</li>"
                for c in fails
            )
            + "</ul>"
        )
    parts.append("<h2>Held-out layer (cell level)</h2>")
    if len(held):
        h = held.sort_values(["p_value", "scope", "statistic"]).head(20)
        parts.append(
            f"<p class='note'>The 20 smallest p-values of {len(held)} held-out tests (all: <code>heldout.csv</code>).</p>"
        )
        parts.append(
            _table(
                h,
                ["scope", "layer_name", "statistic", "target", *_TEST_COLUMNS],
                sig_col="significant",
                left=("scope", "layer_name", "statistic"),
            )
        )
    else:
        parts.append("<p class='note'>Too few datasets for a selection/evaluation split.</p>")
    for t in cfg.stats.targets:
        parts.append(_img(figs.get(f"scatter_{t}")))
    parts.append("<h2>Per-context trust indicator</h2>")
    parts.append(
        "<p class='note'>One unit = one test window; its statistic is computed on that window's own rows "
        "(isofast.trust: massive rows, cosines, the norm share along the softmax's shift direction, the "
        "log-Z spread; spectral statistics cannot be measured on one window) and correlated with that "
        "window's NMSE within datasets; layer chosen on the selection datasets, datasets are the "
        "bootstrap and permutation units (all: <code>trust.csv</code>, <code>windows.csv</code>).</p>"
    )
    tr = result.trust
    if tr is not None and len(tr):
        parts.append(
            _table(
                tr.sort_values("p_value"),
                ["scope", "layer_name", "statistic", *_TEST_COLUMNS],
                sig_col="significant",
                left=("scope", "layer_name", "statistic"),
            )
        )
    else:
        parts.append("<p class='note'>No per-window statistic could be tested.</p>")
    parts.append("<h2>Skill against baselines</h2>")
    parts.append(_skill_table(result))
    parts.append("<h2>Correlations per layer</h2>")
    if len(corr):
        best = corr.sort_values("p_value").head(40)
        parts.append(
            "<p class='note'>The 40 smallest p-values of all "
            f"{len(corr)} tests (all rows: <code>correlations.csv</code>). Highlighted: BH q ≤ {cfg.stats.alpha}.</p>"
        )
        parts.append(_table(best, CORR_COLS, sig_col="significant", left=("scope", "layer_name", "statistic")))
    for m in models:
        parts.append(_img(figs.get(f"heatmap_{m}")))
    parts.append("<h2>Causal test</h2>")
    if len(causal):
        cols = [
            c
            for c in [
                "test",
                "dataset",
                "n_series",
                "nmse_before",
                "nmse_after",
                "delta_nmse",
                "relative_change",
                "ci_low",
                "ci_high",
                "p_value",
                "n_improved",
                "n_worse",
                "inter_cluster_cosine_before",
                "inter_cluster_cosine_after",
                "isoscore_before",
                "isoscore_after",
                "error",
            ]
            if c in causal.columns
        ]
        parts.append(_table(causal, cols, left=("test", "dataset", "error")))
        parts.append(_img(figs.get("causal")))
    else:
        parts.append("<p class='note'>No causal tests configured.</p>")
    parts.append("<h2>Isotropy by layer</h2>")
    for m in models:
        parts.append(_img(figs.get(f"isotropy_by_layer_{m}")))
    parts.append("<h2>Spectra</h2>")
    for m in models:
        parts.append(_img(figs.get(f"spectra_{m}")))
    parts.append("<h2>PCA per layer</h2>")
    for k, v in figs.items():
        if k.startswith("pca_"):
            parts.append(_img(v))
    parts.append("<h2>Forecasts</h2>")
    for m in models:
        parts.append(_img(figs.get(f"forecasts_{m}")))
    parts.append("<h2>Models</h2><pre>" + html.escape(json.dumps(jsonable(result.models), indent=1)[:20000]) + "</pre>")
    parts.append(
        "<p class='note'>Every number: <code>report_data.json</code>, <code>results.csv</code>, "
        "<code>correlations.csv</code>, <code>heldout.csv</code>, <code>causal.csv</code>.</p></body></html>"
    )
    (out / "report.html").write_text("\n".join(parts))
    return {"report": str(out / "report.html"), "report_data": str(out / "report_data.json"), "figures": figs}
