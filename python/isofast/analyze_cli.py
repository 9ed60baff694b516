"""``isofast analyze``: the global isotropy table of a matrix, a file or a
capture folder; ``--example`` runs on the bundled SmolLM2 example."""

from __future__ import annotations

import argparse
import json
import sys
import time

from isofast.analysis import analyze
from isofast.report import jsonable
from isofast.sources import EXAMPLE_LAYERS, load_example, open_source


def _rows(spec: str | None):
    if not spec:
        return None
    a, _, b = spec.partition(":")
    return slice(int(a) if a else None, int(b) if b else None)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="isotropy statistics of embeddings (.npy, .npz, capture folder)",
        description="Global isotropy statistics (design.md §3) of an N×d matrix of embeddings.",
    )
    p.add_argument("path", nargs="?", help=".npy/.npz file or capture folder")
    p.add_argument("--example", action="store_true", help="analyse the bundled SmolLM2 example (3 layers)")
    p.add_argument("--layer", type=int, help="layer of a capture folder")
    p.add_argument("--site", default="residual", help="capture site: residual or attention")
    p.add_argument("--key", help="member of an .npz file")
    p.add_argument("--rows", help="row range A:B")
    p.add_argument("--dtype", choices=["bfloat16"], help="uint16 input holds bfloat16 bit patterns")
    p.add_argument("--eps", type=float, default=0.8, help="threshold of effective_dim (default 0.8)")
    p.add_argument("--threads", type=int, default=None, help="Rust threads (default: all cores)")
    p.add_argument("--clusters", action="store_true", help="add the clustered (local) isotropy table")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def _clusters(x, args):
    from isofast.cluster import cluster_isotropy, format_cluster_table

    rep = cluster_isotropy(x, n_threads=args.threads)
    return rep, format_cluster_table(rep)


def run(args: argparse.Namespace) -> int:
    if args.example == bool(args.path):
        raise ValueError("give either PATH or --example")
    if args.example:
        targets = [(f"example layer {L}", load_example(L)) for L in EXAMPLE_LAYERS]
    else:
        x = open_source(args.path, layer=args.layer, site=args.site, key=args.key, rows=_rows(args.rows))
        targets = [(str(args.path), x)]
    results = {}
    for name, x in targets:
        t0 = time.perf_counter()
        rep = analyze(x, eps=args.eps, n_threads=args.threads, dtype=args.dtype)
        secs = time.perf_counter() - t0
        entry = {"report": rep, "seconds": secs}
        if args.clusters:
            entry["clusters"] = _clusters(x, args)
        results[name] = entry
    if args.json:
        out = {}
        for name, e in results.items():
            d = e["report"].to_dict(arrays=False)
            d["seconds"] = e["seconds"]
            if "clusters" in e:
                d["clusters"] = e["clusters"][0].to_dict()
            out[name] = d
        json.dump(jsonable(out if len(out) > 1 else next(iter(out.values()))), sys.stdout, indent=2)
        print()
        return 0
    for name, e in results.items():
        print(f"== {name}  ({e['seconds']:.3f} s)")
        print(e["report"].table())
        if "clusters" in e:
            print(e["clusters"][1])
        print()
    return 0
