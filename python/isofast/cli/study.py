"""``isofast study``: does isotropy predict forecast quality? The end-to-end runner.

Examples::

    isofast study                       # the bundled default study → ./isofast-study-default
    isofast study my_study.toml --out runs/mine
    isofast study tiny --out /tmp/tiny  # the bundled test-sized study
    isofast study --show-config default # print a bundled configuration
    isofast study reference --workers 2 # cells on a local Dask cluster of 2 processes
    isofast study reference --scheduler tcp://head:8786 --cache /shared/isofast-cache

CONFIG is a TOML file or a bundled name (default, tiny); the schema is in
:mod:`isofast.study.config`. Results, statistics and ``report.html`` land in
``--out``; finished work is cached (``--cache``, default ``OUT/cache``), so a
re-run only computes what changed: after Ctrl-C or a killed process it
recomputes only the unfinished cells and says how many it reused. On a Dask
cluster the cache folder is the only shared state (docs/cluster.md).
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "study",
        help="run an isotropy-vs-forecast-quality study (grid, statistics, causal test, report)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "config",
        nargs="?",
        default="default",
        help="a study TOML file or a bundled name: default, tiny, reference (default: default)",
    )
    p.add_argument("--out", default=None, help="output folder (default: ./isofast-study-<name>)")
    p.add_argument("--cache", default=None, help="cache folder (default: the config's, else OUT/cache)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report and figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--show-config", action="store_true", help="print the configuration file and exit")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="run the cells as tasks on the Dask cluster whose scheduler is at ADDRESS "
        "(e.g. tcp://host:8786); the cache folder must be visible to every worker",
    )
    where.add_argument(
        "--workers",
        metavar="N",
        type=_positive_int,
        default=None,
        help="run the cells on a new local Dask cluster of N worker processes",
    )
    p.set_defaults(func=_run)


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from isofast.study.config import BUNDLED_CONFIGS, bundled_config_path, load_config

    if args.show_config:
        path = Path(args.config)
        if not path.is_file() and args.config in BUNDLED_CONFIGS:
            path = bundled_config_path(args.config)
        print(path.read_text())
        return 0
    cfg = load_config(args.config)
    from isofast.study.runner import run_study

    res = run_study(
        cfg,
        out=args.out,
        cache=args.cache,
        progress=not args.no_progress,
        report=False if args.no_report else None,
        scheduler=args.scheduler,
        workers=args.workers,
    )
    n_fail = sum(1 for c in res.cells if c.error)
    reused = res.counters.get("cells", {}).get("cached", 0)
    print(
        f"isofast study {cfg.name}: {len(res.cells)} cells ({n_fail} failed, {reused} reused from the cache), "
        f"{len(res.table)} rows in {res.seconds:.1f} s",
        file=sys.stderr,
    )
    print(f"cache: {json.dumps(res.counters)}", file=sys.stderr)
    causes: dict = {}
    for c in res.cells:
        if c.error:
            causes.setdefault(c.error, []).append(f"{c.model} / {c.dataset} / {c.perturbation}")
    for err, where in list(causes.items())[:5]:  # name the cause on the terminal, one line each
        more = f" and {len(where) - 1} more" if len(where) > 1 else ""
        print(f"failed: {where[0]}{more}: {' '.join(err.split())}", file=sys.stderr)
    if len(causes) > 5:
        print(f"failed: {len(causes) - 5} other causes (results.csv, column error)", file=sys.stderr)
    if res.verdict_sentence:
        print(f"verdict: {res.verdict_sentence}")
        for m, v in res.verdict.get("models", {}).items():
            for t in v.get("text", []):
                print(f"  {m}: {t}")
    for k in ("report", "results", "correlations", "heldout", "trust", "windows", "baselines", "causal", "summary"):
        v = res.files.get(k)
        if v:
            print(f"{k}: {v if isinstance(v, str) else v.get('csv', v)}")
    held = res.heldout
    if len(held):
        pooled = held[(held["scope"] == "pooled")]
        show = pooled if len(pooled) else held
        print("held-out correlations (layer chosen on other datasets):")

        def f(v, fmt):
            return "n/a" if v != v else format(v, fmt)  # NaN: too few cells for a CI / p-value

        for _, r in show.head(12).iterrows():
            print(
                f"  {r['scope']:>18} {r['statistic']:<32} {r['method']:<8} ρ={f(r['estimate'], '+.3f')} "
                f"[{f(r['ci_low'], '+.3f')}, {f(r['ci_high'], '+.3f')}] p={f(r['p_value'], '.3g')} "
                f"q={f(r['q_value'], '.3g')} n={int(r['n'])} ({int(r['n_groups'])} datasets)"
            )
    return 0 if n_fail < len(res.cells) else 1
