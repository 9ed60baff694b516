"""Figures of adaptation runs and the report's "Adaptation" section (HTML, verdict first).

:func:`section` turns an :class:`isofast.adapt.experiment.AdaptationResult`
into one ``<section>`` for the study report; its figures are PNGs written to
``figdir`` and referenced by file name relative to the report (the study
report keeps its figures in one folder beside ``report.html``).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_loss", "plot_tracking", "section"]

#: statistics drawn by default from a tracking table (when present).
DEFAULT_PLOTS = (
    "isoscore",
    "avg_cosine",
    "avg_cosine_centered",
    "effective_rank",
    "pc1_share",
    "log_partition_isotropy_centered",
    "inter_cluster_cosine",
    "n_massive",
    "massive_variance_share",
    "head_log_z_std",
    "head_shift_norm_share_mean",
)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name)


def _save(fig, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return str(path)


def plot_tracking(df, figdir: Path, statistics: Sequence[str] | None = None) -> list[str]:
    """One PNG per statistic of a tracking table: value by step, a line per layer."""
    if df is None or not len(df):
        return []
    plt = _plt()
    stats = list(statistics) if statistics is not None else [s for s in DEFAULT_PLOTS if s in set(df["statistic"])]
    out = []
    for s in stats:
        sub = df[(df["statistic"] == s) & (df["layer"] >= 0)]
        if not len(sub) or not np.isfinite(sub["value"].to_numpy(float)).any():
            continue
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for L, g in sub.groupby("layer"):
            g = g.sort_values("step")
            ax.plot(g["step"], g["value"], marker="o", ms=3, label=f"layer {L}")
        ax.set_xlabel("step")
        ax.set_ylabel(s)
        ax.set_title(f"{s} during fine-tuning")
        ax.legend(fontsize=7, ncol=2)
        out.append(_save(fig, Path(figdir) / f"tracking_{_safe(s)}.png"))
    return out


def plot_loss(curves: dict, path: Path) -> str | None:
    """Training loss by step; ``curves`` maps a label to a list of per-step dicts."""
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, c in curves.items():
        if c:
            ax.plot([r["step"] for r in c], [r["lm_loss"] for r in c], label=label, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("next-token loss (value tokens)")
    ax.legend(fontsize=7)
    return _save(fig, Path(path))


# ------------------------------------------------------------------ section
def _f(v: Any, nd: int = 3) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return html.escape(str(v))
    if not math.isfinite(v):
        return "n/a"
    if v != 0 and (abs(v) < 10**-nd or abs(v) >= 1e5):
        return f"{v:.{nd}g}"
    return f"{v:.{nd}f}"


def _img(path: str | None, figdir: Path) -> str:
    if not path:
        return ""
    p = Path(path)
    rel = p.name if p.parent == Path(figdir) else p.as_posix()
    return f'<img src="{html.escape(Path(Path(figdir).name, rel).as_posix())}" style="max-width:48%">'


def _table(rows: list[dict], cols: list[str]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_f(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def fig_gain_scatter(result, figdir: Path) -> str | None:
    """Pre-adaptation isotropy (chosen layer) vs gain, one point per run."""
    a = result.questions.get("a") or {}
    pts = a.get("points") or []
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    x = [p["x"] for p in pts]
    y = [p["y"] for p in pts]
    ax.scatter(x, y, s=14)
    for p in pts:
        ax.annotate(p["dataset"][:10], (p["x"], p["y"]), fontsize=6)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel(f"{a.get('statistic')} at layer {a.get('layer')} (before)")
    ax.set_ylabel("gain: NMSE before − after")
    return _save(fig, Path(figdir) / "adapt_gain_scatter.png")


def fig_intervention(result, figdir: Path) -> str | None:
    """Paired log NMSE ratios (regularised / unregularised) per arm."""
    arms = (result.questions.get("c") or {}).get("arms") or []
    if not arms:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i, arm in enumerate(arms):
        d = np.asarray(arm.get("log_ratios", []), float)
        ax.scatter(np.full(d.size, i) + np.linspace(-0.1, 0.1, max(d.size, 1))[: d.size], d, s=12)
        ax.errorbar(
            i,
            arm.get("estimate", np.nan),
            yerr=[[arm.get("estimate", 0) - arm.get("ci_low", 0)], [arm.get("ci_high", 0) - arm.get("estimate", 0)]],
            fmt="k_",
            capsize=4,
        )
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xticks(range(len(arms)), [a["arm"] for a in arms], rotation=20, fontsize=7)
    ax.set_ylabel("log(NMSE reg / NMSE unreg)")
    return _save(fig, Path(figdir) / "adapt_intervention.png")


def section(result, figdir: Path) -> str:
    """The "Adaptation" section (HTML), verdict first; writes its figures to ``figdir``."""
    figdir = Path(figdir)
    figdir.mkdir(parents=True, exist_ok=True)
    d = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    q = d.get("questions", {})
    parts = ['<section id="adaptation"><h2>Adaptation</h2>']
    parts.append(f'<p class="verdict"><strong>Verdict.</strong> {html.escape(d.get("verdict", ""))}</p>')
    for line in d.get("verdict_lines", []):
        parts.append(f"<p>{html.escape(line)}</p>")
    s = d.get("settings", {})
    parts.append(
        f"<p>{len(d.get('runs', []))} fine-tuning runs of <code>{html.escape(str(s.get('model')))}</code> "
        f"({'LoRA' if s.get('lora') else 'full'}, {s.get('steps')} steps × {s.get('batch_size')} windows, "
        f"seeds {s.get('seeds')}) on {len(s.get('datasets', []))} datasets; NMSE of the LM-head forecast of "
        f"each dataset's held-out test windows before and after. Layers chosen on "
        f"{len(q.get('a', {}).get('selection_datasets', []))} datasets and tested on the others; "
        "cluster bootstrap CIs and permutation p-values over datasets; BH q-values per question.</p>"
    )
    parts.append("<h3>(a) Pre-adaptation isotropy vs gain</h3>")
    parts.append(
        _table(
            q.get("a", {}).get("tests", []),
            ["statistic", "layer", "estimate", "ci_low", "ci_high", "p_value", "q_value", "n", "n_groups"],
        )
    )
    parts.append(_img(fig_gain_scatter(result, figdir), figdir))
    parts.append("<h3>(b) Change in isotropy vs improvement</h3>")
    parts.append(
        _table(
            q.get("b", {}).get("tests", []),
            ["statistic", "layer", "estimate", "ci_low", "ci_high", "p_value", "q_value", "n", "n_groups"],
        )
    )
    parts.append("<h3>(c) Regularised vs unregularised (paired over series)</h3>")
    parts.append(
        _table(
            q.get("c", {}).get("arms", []),
            [
                "arm",
                "estimate",
                "ci_low",
                "ci_high",
                "p_value",
                "q_value",
                "n",
                "n_groups",
                "share_better",
                "stat_change",
            ],
        )
    )
    parts.append(_img(fig_intervention(result, figdir), figdir))
    curves = {}
    for r in d.get("runs", [])[:6]:
        curves[f"{r['dataset']} s{r['seed']} {r['arm']}"] = r.get("loss_curve", [])
    parts.append(_img(plot_loss(curves, figdir / "adapt_loss.png"), figdir))
    for note in d.get("notes", []):
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    parts.append("</section>")
    return "\n".join(p for p in parts if p)
