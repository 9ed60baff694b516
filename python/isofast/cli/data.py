"""``isofast data``: list and inspect what a study can use: the ten KernelSynth
presets (synthetic, :data:`isofast.data.PRESETS`) and the bundled real datasets.

    isofast data list [--json] [--domain DOMAIN]
    isofast data show NAME [--column COL] [--nan POLICY] [--json] [--plot OUT.png]
    isofast data show DotProduct_1 [--length L] [--seed S] [--plot OUT.png]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from isofast.data.kernelsynth import PRESETS
from isofast.data.registry import REGISTRY, info, list_datasets
from isofast.data.series import NAN_POLICIES, Series
from isofast.data.summary import plot_series, preset_entries, summarize


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


def _preset_series(name: str, length: int, seed: int) -> Series:
    from isofast.data.kernelsynth import kernelsynth, preset

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
        from isofast.data.loaders import load

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
