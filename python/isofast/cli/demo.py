"""``isofast demo``: the main job for a pip user, the bundled default study.

    isofast demo [--out DIR]      # default DIR: ./isofast-demo

Runs ``isofast.study.run_study("default", out=DIR)`` (three model families ×
KernelSynth presets and real series × clean/noisy inputs × layers; a few
minutes on 2 CPU cores the first time, a re-run reuses DIR/cache), then
prints where ``report.html`` is and the verdict in one sentence.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_OUT = "isofast-demo"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the bundled default study (the main job) into ./isofast-demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: ./{DEFAULT_OUT})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _report_path(res: Any, out: Path) -> Path:
    files = getattr(res, "files", None) or {}
    rep = files.get("report") if isinstance(files, dict) else None
    if isinstance(rep, dict):
        rep = rep.get("html") or next(iter(rep.values()), None)
    return Path(rep) if rep else out / "report.html"


def _run(args: argparse.Namespace) -> int:
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        print(f"isofast demo: error: --out {out} is an existing file, not a folder", file=sys.stderr)
        return 2
    try:
        from isofast.study import run_study
    except ImportError as exc:
        raise ImportError(f'the demo needs the study\'s optional packages ({exc}): pip install "isofast[all]"') from exc
    print(
        f"isofast demo: running the bundled default study into {out}/ "
        "(a few minutes the first time; a re-run reuses the cache)",
        file=sys.stderr,
    )
    res = run_study("default", out=str(out), progress=not args.no_progress)
    cells = getattr(res, "cells", None)
    if cells is not None:
        n_fail = sum(1 for c in cells if getattr(c, "error", None))
        print(f"cells: {len(cells)} ({n_fail} failed)")
    report = _report_path(res, out)
    print(f"report: {report.resolve() if report.exists() else report}")
    sentence = getattr(res, "verdict_sentence", "") or ""
    if sentence:
        print(f"verdict: {sentence}")
    if cells is not None and len(cells) and all(getattr(c, "error", None) for c in cells):
        return 1
    return 0
