"""``isofast data``: list and inspect what a study can use: the ten KernelSynth
presets (synthetic, :data:`isofast.data.PRESETS`) and the bundled real datasets.

    isofast data list [--json] [--domain DOMAIN]
    isofast data show NAME [--column COL] [--nan POLICY] [--json] [--plot OUT.png]
    isofast data show DotProduct_1 [--length L] [--seed S] [--plot OUT.png]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

from .kernelsynth import PRESETS
from .registry import REGISTRY, info, list_datasets
from .series import NAN_POLICIES, Series

__all__ = ["register", "summarize", "plot_series"]


def register(subparsers: Any) -> None:
    """Add the ``data`` command (with ``list`` and ``show``) to ``subparsers``."""
    p = subparsers.add_parser(
        "data",
        help="list and inspect the KernelSynth presets and bundled real datasets",
        description="KernelSynth presets (synthetic) and real time series shipped inside installed packages (offline).",
    )
    sub = p.add_subparsers(dest="data_command", metavar="{list,show}")
    sub.required = True

    pl = sub.add_parser("list", help="table of KernelSynth presets and registered datasets")
    pl.add_argument("--json", action="store_true", help="print JSON instead of a table")
    pl.add_argument("--domain", default=None, help="only this domain (e.g. energy, nature)")
    pl.set_defaults(func=_cmd_list)

    ps = sub.add_parser("show", help="summary statistics of one dataset")
    ps.add_argument("name", help="preset or dataset name (see `isofast data list`)")
    ps.add_argument("--length", type=int, default=1024, help="preset series length (default 1024)")
    ps.add_argument("--seed", type=int, default=0, help="preset sampling seed (default 0)")
    ps.add_argument("--column", default=None, help="column of a multivariate dataset")
    ps.add_argument("--nan", default="keep", choices=NAN_POLICIES, help="missing-value policy (default keep)")
    ps.add_argument("--json", action="store_true", help="print JSON instead of text")
    ps.add_argument("--plot", default=None, metavar="OUT.png", help="write a line plot (needs matplotlib)")
    ps.set_defaults(func=_cmd_show)


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


def unknown_name(name: str) -> ValueError:
    """The one-line error for a name that is neither a preset nor a dataset."""
    return ValueError(
        f"unknown dataset {name!r} (nor a KernelSynth preset); presets: {', '.join(PRESETS)}; "
        f"datasets: {', '.join(sorted(REGISTRY))}"
    )


def _cmd_list(args: argparse.Namespace) -> int:
    entries = list_datasets(domain=args.domain)
    presets = preset_entries() if args.domain in (None, "synthetic") else []
    if args.json:
        # one list: datasets (kind "dataset"), then presets (kind "kernelsynth")
        real = [dict(e.to_dict(), kind="dataset") for e in entries]
        print(json.dumps(real + presets, indent=2))
        return 0
    if entries:
        rows = [("name", "domain", "frequency", "length", "source")]
        rows += [(e.name, e.domain, e.frequency, str(e.length), e.source) for e in entries]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for k, r in enumerate(rows):
            cells = [c.rjust(w) if i == 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
            print("  ".join(cells).rstrip())
            if k == 0:
                print("  ".join("-" * w for w in widths))
    if presets:
        if entries:
            print()
        print("KernelSynth presets (synthetic, isofast.data.PRESETS; length 1024 unless --length)")
        rows = [("name", "kernel", "parameters")]
        rows += [
            (
                p["name"],
                p["kernel"],
                ", ".join(f"{a}={v:g}" if isinstance(v, float) else f"{a}={v}" for a, v in p["parameters"].items()),
            )
            for p in presets
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for k, r in enumerate(rows):
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
            if k == 0:
                print("  ".join("-" * w for w in widths))
    return 0


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


def _preset_series(name: str, length: int, seed: int) -> Series:
    from .kernelsynth import kernelsynth, preset

    if length < 2:
        raise ValueError(f"--length must be at least 2, got {length}")
    k = preset(name, length)
    values = np.asarray(kernelsynth(1, length, kernel=k, seed=seed)[0], dtype=np.float64)
    return Series(
        name=name,
        values=values,
        timestamps=None,
        frequency="step",
        domain="synthetic",
        meta={
            "source": "KernelSynth (isofast.data.kernelsynth)",
            "description": f"one sample of {k!r}, seed {seed}",
            "kernel": repr(k),
        },
    )


def _cmd_show(args: argparse.Namespace) -> int:
    if args.name in PRESETS:
        s = _preset_series(args.name, args.length, args.seed)
    else:
        if args.name not in REGISTRY:
            raise unknown_name(args.name)  # before any import
        from .loaders import load

        info(args.name)
        s = load(args.name, nan=args.nan, column=args.column)
    summary = summarize(s)
    if args.name in PRESETS:
        summary["kernel"] = s.meta["kernel"]
        summary["seed"] = args.seed
    if args.plot:
        summary["plot"] = plot_series(s, args.plot)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    width = max(len(k) for k in summary)
    for k, v in summary.items():
        if v is None:
            continue
        if isinstance(v, float):
            v = f"{v:.6g}"
        print(f"{k.ljust(width)}  {v}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="isofast")
    register(parser.add_subparsers(dest="command"))
    a = parser.parse_args()
    sys.exit(a.func(a))
