"""Descriptions of series for people: summary statistics, a line plot, and the
KernelSynth presets as records (what ``isofast data list/show`` prints)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .kernelsynth import PRESETS
from .series import Series

__all__ = ["plot_series", "preset_entries", "summarize"]


def preset_entries() -> list[dict[str, Any]]:
    """One record per KernelSynth preset: name, kernel class and parameters."""
    from dataclasses import fields, is_dataclass

    from .kernelsynth import preset

    out = []
    for name in PRESETS:
        k = preset(name)
        params = {f.name: getattr(k, f.name) for f in fields(k)} if is_dataclass(k) else {}
        out.append(
            {
                "name": name,
                "kind": "kernelsynth",
                "domain": "synthetic",
                "kernel": type(k).__name__,
                "parameters": {a: (float(v) if isinstance(v, (int, float)) else repr(v)) for a, v in params.items()},
                "repr": repr(k),
                "length": 1024,
            }
        )
    return out


def summarize(s: Series) -> dict[str, Any]:
    """Length, NaN count and NaN-aware moments of a series, plus its time span."""
    v = s.values
    obs = v[~np.isnan(v)]

    def f(x: float) -> float | None:
        return None if x is None or not np.isfinite(x) else float(x)

    return {
        "name": s.name,
        "domain": s.domain,
        "frequency": s.frequency,
        "length": len(s),
        "n_missing": s.n_missing,
        "mean": f(obs.mean()) if obs.size else None,
        "std": f(obs.std(ddof=1)) if obs.size > 1 else None,
        "min": f(obs.min()) if obs.size else None,
        "max": f(obs.max()) if obs.size else None,
        "start": None if s.timestamps is None else str(s.timestamps[0]) if len(s) else None,
        "end": None if s.timestamps is None else str(s.timestamps[-1]) if len(s) else None,
        "source": s.meta.get("source"),
        "licence": s.meta.get("licence"),
        "description": s.meta.get("description"),
    }


def plot_series(s: Series, out: str, *, title: str | None = None) -> str:
    """Write a PNG line plot of ``s`` to ``out``; returns the path.

    Uses matplotlib's object API with the Agg canvas, so no global backend or
    pyplot state is touched.
    """
    try:
        import matplotlib  # noqa: F401  (top level first: a blocked package must fail here)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError('plotting needs the optional package matplotlib: pip install "isofast[plot]"') from exc
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = s.timestamps if s.timestamps is not None else np.arange(len(s))
    ax.plot(x, s.values, lw=0.8, color="tab:blue")
    n_nan = s.n_missing
    if n_nan:
        # mark the gaps so "keep" shows where data is missing
        miss = np.isnan(s.values)
        lo = np.nanmin(s.values) if (~miss).any() else 0.0
        ax.plot(np.asarray(x)[miss], np.full(int(miss.sum()), lo), "|", color="tab:red", label=f"missing ({n_nan})")
        ax.legend(loc="best")
    label = s.meta.get("column") or s.name
    unit = s.meta.get("unit")
    ax.set_xlabel("time" if s.timestamps is not None else f"index ({s.frequency or 'step'})")
    ax.set_ylabel(f"{label} ({unit})" if unit else str(label))
    ax.set_title(title or f"{s.name} ({s.domain}, {s.frequency}, n={len(s)})")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    d = os.path.dirname(os.path.abspath(out))
    os.makedirs(d, exist_ok=True)
    fig.savefig(out, format="png")
    return out
