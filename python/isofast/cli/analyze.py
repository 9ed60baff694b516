"""``isofast analyze``: the global isotropy table of a matrix, a file or a
folder (see :func:`isofast.sources.open_source` for the formats), read out of
core with progress on stderr; ``--example`` runs on the bundled SmolLM2
example."""

from __future__ import annotations

import argparse
import json
import sys
import time

from isofast.analysis import analyze
from isofast.progress import SourceProgress
from isofast.readahead import TILE_BYTES
from isofast.report import jsonable
from isofast.sources import EXAMPLE_LAYERS, load_example, open_source


def _rows(spec: str | None):
    if not spec:
        return None
    a, sep, b = spec.partition(":")
    try:
        if not sep:
            raise ValueError
        return slice(int(a) if a else None, int(b) if b else None)
    except ValueError:
        raise ValueError(f"--rows expects A:B (e.g. 0:100000, :5000, 1000:), got {spec!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="isotropy statistics of embeddings (.npy, shards, safetensors, zarr, parquet, capture folder)",
        description=(
            "Global isotropy statistics (design.md §3) of an N×d matrix of embeddings. Files are read "
            "out of core in row tiles (two passes), with progress on stderr."
        ),
    )
    p.add_argument(
        "path",
        nargs="?",
        help=".npy/.npz/.safetensors/.parquet file, zarr store, folder of .npy or .parquet shards, or capture folder",
    )
    p.add_argument("--example", action="store_true", help="analyse the bundled SmolLM2 example (3 layers)")
    p.add_argument("--layer", type=int, help="layer of a capture folder, or index into a 3-D (layers × rows × d) array")
    p.add_argument("--site", default="residual", help="capture site: residual or attention")
    p.add_argument(
        "--key", help="member of an .npz, tensor of a .safetensors, array of a zarr group, or parquet column"
    )
    p.add_argument("--rows", help="row range A:B (0-based, B exclusive; either side may be empty)")
    p.add_argument("--tile-mb", type=float, default=TILE_BYTES / 2**20, help="MiB per row tile read ahead (default 32)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    p.add_argument("--dtype", choices=["bfloat16"], help="uint16 input holds bfloat16 bit patterns")
    p.add_argument("--eps", type=float, default=0.8, help="threshold of effective_dim (default 0.8)")
    p.add_argument("--threads", type=int, default=None, help="Rust threads (default: all cores)")
    p.add_argument("--clusters", action="store_true", help="add the clustered (local) isotropy table")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def _clusters(x, args):
    from isofast.cluster import cluster_isotropy, format_cluster_table

    if hasattr(x, "as_array"):  # clustering samples rows at random: map or load the file
        bf16 = x.isofast_dtype == "bfloat16"
        x = x.as_array()
        if bf16:  # keep the element type with the bits (ml_dtypes arrays carry it)
            import ml_dtypes

            x = x.view(ml_dtypes.bfloat16)
    rep = cluster_isotropy(x, n_threads=args.threads)
    return rep, format_cluster_table(rep)


def run(args: argparse.Namespace) -> int:
    if args.example == bool(args.path):
        raise ValueError("give either PATH or --example")
    rows = _rows(args.rows)
    if args.example:
        targets = [(f"example layer {L}", load_example(L)) for L in EXAMPLE_LAYERS]
        if rows is not None:
            targets = [(n, x[rows]) for n, x in targets]
    else:
        if not (args.tile_mb > 0) or args.tile_mb * 2**20 > 2**62:  # NaN fails the first test
            raise ValueError(f"--tile-mb must be a positive number of MiB, got {args.tile_mb}")
        x = open_source(
            args.path,
            layer=args.layer,
            site=args.site,
            key=args.key,
            rows=rows,
            dtype=args.dtype,
            tile_bytes=int(args.tile_mb * 2**20),
        )
        targets = [(str(args.path), x)]
    results = {}
    for name, x in targets:
        t0 = time.perf_counter()
        src = x
        prog = None
        if not (args.quiet or args.example):  # the bundled example is tiny: no progress noise
            prog = src = SourceProgress(x, passes=2, label="" if len(targets) == 1 else name)
        # a NaN row is numbered in the file, not in --rows (isofast._input.file_rows;
        # the progress wrapper passes the selection through)
        rep = analyze(src, eps=args.eps, n_threads=args.threads, dtype=args.dtype)
        if prog is not None:
            prog.finish()
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
