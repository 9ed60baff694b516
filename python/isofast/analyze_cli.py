"""``isofast analyze``: the global isotropy table of a matrix, a file or a
folder (see :func:`isofast.sources.open_source` for the formats), read out of
core with progress on stderr; ``--example`` runs on the bundled SmolLM2
example."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO
from collections.abc import Iterator

from isofast.analysis import analyze
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


def _fmt_secs(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


class Progress:
    """Wraps a source and reports rows/s, MB/s and the ETA on ``stream``.

    ``passes`` is how often the analysis reads the source (2 for the full
    suite), so the ETA covers all of them. On a terminal the line is
    rewritten in place (at most twice a second); otherwise a line is written
    every ``every`` seconds. The wrapper is itself a re-iterable source with
    the wrapped one's ``isofast_dtype``.
    """

    def __init__(
        self, source: Any, *, passes: int = 2, stream: TextIO | None = None, every: float | None = None, label: str = ""
    ):
        self.source = source
        self.passes = int(passes)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every if every is not None else (0.5 if self.tty else 10.0)
        self.label = label
        self.isofast_dtype = getattr(source, "isofast_dtype", None)
        n = source.shape[0] if hasattr(source, "shape") else None
        self.total_rows = int(n) * self.passes if n is not None else None
        self.rows = 0
        self.bytes = 0
        self.pass_no = 0
        self._t0: float | None = None
        self._last = 0.0

    @property
    def shape(self):
        return self.source.shape

    # the wrapped source's row selection and name, so that a NaN row is
    # numbered in the file (isofast._input.in_file_rows)
    @property
    def _start(self):
        return getattr(self.source, "_start", 0)

    @property
    def _stop(self):
        return getattr(self.source, "_stop", None)

    def _describe(self) -> str:
        d = getattr(self.source, "_describe", None)
        return d() if callable(d) else ""

    def _tiles(self) -> Iterator[Any]:
        if hasattr(self.source, "iter_chunks"):
            return self.source.iter_chunks()
        arr = self.source  # an in-memory array: zero-copy row slices, so progress moves
        step = max(1, TILE_BYTES // max(1, arr.shape[1] * arr.dtype.itemsize))
        return (arr[a : a + step] for a in range(0, arr.shape[0], step))

    def iter_chunks(self) -> Iterator[Any]:
        self.pass_no += 1
        if self._t0 is None:
            self._t0 = self._last = time.perf_counter()
        for c in self._tiles():
            yield c
            self.rows += c.shape[0]
            self.bytes += c.nbytes
            now = time.perf_counter()
            if now - self._last >= self.every:
                self._last = now
                self._write(self.line(now), final=False)

    def line(self, now: float | None = None) -> str:
        el = max((now or time.perf_counter()) - (self._t0 or 0.0), 1e-9)
        rate, mbs = self.rows / el, self.bytes / el / 1e6
        parts = [f"isofast analyze{(' ' + self.label) if self.label else ''}: pass {self.pass_no}/{self.passes}"]
        if self.total_rows:
            parts.append(f"{self.rows:,}/{self.total_rows:,} rows ({100.0 * self.rows / self.total_rows:.1f}%)")
        else:
            parts.append(f"{self.rows:,} rows")
        parts.append(f"{rate:,.0f} rows/s, {mbs:,.1f} MB/s")
        if self.total_rows and rate > 0:
            parts.append(f"ETA {_fmt_secs(max(self.total_rows - self.rows, 0) / rate)}")
        return "  ".join(parts)

    def _write(self, text: str, final: bool) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        el = max(time.perf_counter() - (self._t0 or time.perf_counter()), 1e-9)
        self._write(
            f"isofast analyze{(' ' + self.label) if self.label else ''}: read {self.rows:,} rows "
            f"({self.bytes / 1e6:,.1f} MB) in {_fmt_secs(el)}: {self.rows / el:,.0f} rows/s, "
            f"{self.bytes / el / 1e6:,.1f} MB/s",
            final=True,
        )


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
            prog = src = Progress(x, passes=2, label="" if len(targets) == 1 else name)
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
