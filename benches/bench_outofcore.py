"""Out-of-core and Dask benchmarks (one run, ratios).

1. Out-of-core: ``isofast.analyze(open_source(F))`` on an N × d float32 .npy
   larger than RAM (default 10,000,000 × 768 = 30.7 GB) — peak RSS, and
   throughput against the in-memory ``isofast.analyze(array)`` on the first
   ``--slice`` rows loaded into RAM, measured in the same run.
2. Dask: ``isofast.dask.analyze`` on a ``LocalCluster`` (2 worker processes
   × 1 thread, array persisted on the workers) against in-process
   ``isofast.analyze`` on the same in-memory ``--dask-rows`` × d array.

Each measurement runs in a fresh child process so its peak RSS
(``ru_maxrss``) is its own. The file's pages are evicted from the page cache
(``posix_fadvise(DONTNEED)``, per file: ``/proc/sys/vm/drop_caches`` needs
root) before every out-of-core run, so it reads from disk cold.

Usage::

    python benches/bench_outofcore.py                      # full: 30.7 GB file
    python benches/bench_outofcore.py --n 3000000 --drop-cache   # smaller file, cache dropped as read
    python benches/bench_outofcore.py --n 200000 --slice 100000 --dask-rows 100000   # smoke test

The data file is written under ``benches/data/`` (git-ignored) and deleted at
the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"


# ------------------------------------------------------------------ data
def header_bytes(n: int, d: int) -> bytes:
    import io

    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": "<f4", "fortran_order": False, "shape": (n, d)})
    return b.getvalue()


def make_file(path: Path, n: int, d: int, seed: int = 0) -> float:
    """Anisotropic float32 rows (column scales 4 → 0.05, a non-zero mean),
    written sequentially (never memory-mapped) and evicted from the cache."""
    rng = np.random.default_rng(seed)
    scale = np.geomspace(4.0, 0.05, d).astype(np.float32)
    shift = np.linspace(-1.0, 1.0, d).astype(np.float32)
    t0 = time.perf_counter()
    block = 32768
    with open(path, "wb") as f:
        f.write(header_bytes(n, d))
        for a in range(0, n, block):
            k = min(block, n - a)
            z = rng.standard_normal((k, d), dtype=np.float32)
            z *= scale
            z += shift
            f.write(memoryview(z).cast("B"))  # no bytes copy
            if (a // block) % 128 == 127:  # keep dirty pages from piling up
                f.flush()
                os.fsync(f.fileno())
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return time.perf_counter() - t0


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def load_rows(path: str, a: int, b: int, d: int) -> np.ndarray:
    """Rows [a, b) of the benchmark file into memory."""
    off = _data_offset(path)
    return np.fromfile(path, dtype="<f4", count=(b - a) * d, offset=off + a * d * 4).reshape(b - a, d)


def _data_offset(path: str) -> int:
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        return f.tell()


def peak_rss() -> int:
    """Peak resident set of this process (VmHWM). Not ru_maxrss: Linux keeps
    that across fork+exec, so a child would report its parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


SUMMARY = (
    "n",
    "isoscore",
    "avg_cosine",
    "avg_cosine_centered",
    "log_partition_isotropy",
    "log_partition_isotropy_centered",
)


def summary(rep) -> dict:
    return {k: getattr(rep, k) for k in SUMMARY} | {"lambda1": float(rep.eigenvalues[0])}


# ------------------------------------------------------------------ children
def child_inmem(path: str, rows: int, d: int, threads) -> dict:
    import isofast

    X = load_rows(path, 0, rows, d)
    t0 = time.perf_counter()
    rep = isofast.analyze(X, n_threads=threads)
    secs = time.perf_counter() - t0
    return {"seconds": secs, "rows_per_s": rows / secs, "peak_rss": peak_rss(), "report": summary(rep)}


def child_ooc(path: str, rows, threads, drop_cache) -> dict:
    import isofast
    from isofast.sources import open_source

    evict(Path(path))
    src = open_source(path, rows=slice(0, rows) if rows else None, drop_cache=drop_cache)
    t0 = time.perf_counter()
    rep = isofast.analyze(src, n_threads=threads)
    secs = time.perf_counter() - t0
    n = src.shape[0]
    return {
        "seconds": secs,
        "rows_per_s": n / secs,
        "mb_per_s": 2 * src.nbytes / secs / 1e6,
        "peak_rss": peak_rss(),
        "report": summary(rep),
        "tile_rows": src.tile_rows,
    }


def child_dask(path: str, rows: int, d: int, chunk: int, reps: int = 3, cluster: bool = False) -> dict:
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster, wait

    import isofast
    import isofast.dask as idask

    out = {}
    with (
        LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None, silence_logs=40) as cl,
        Client(cl) as c,
    ):
        blocks = [
            da.from_delayed(
                dask.delayed(load_rows)(path, a, min(a + chunk, rows), d),
                shape=(min(a + chunk, rows) - a, d),
                dtype=np.float32,
            )
            for a in range(0, rows, chunk)
        ]
        x = da.concatenate(blocks).persist()
        wait(x)
        out["thread_plan"] = idask.rust_threads(c)
        # in-process on the same rows, interleaved with the Dask runs so a
        # change in machine load hits both
        X = load_rows(path, 0, rows, d)
        t_in, t_dk = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            r_in = isofast.analyze(X)
            t_in.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            r_dk = idask.analyze(x, client=c)
            t_dk.append(time.perf_counter() - t0)
        out |= {
            "inproc_seconds": t_in,
            "dask_seconds": t_dk,
            # per interleaved pair, then the median: robust to load drifting
            # between pairs (the machine is shared)
            "pair_overheads": [a / b - 1.0 for a, b in zip(t_dk, t_in)],
            "overhead": float(np.median([a / b - 1.0 for a, b in zip(t_dk, t_in)])),
            "overhead_total": sum(t_dk) / sum(t_in) - 1.0,
            "inproc": summary(r_in),
            "dask": summary(r_dk),
            "blocks": x.numblocks[0],
        }
        if cluster:
            # clustered isotropy (k-means on the 20k-row sample, every row
            # labelled, per-cluster spectra), the same interleaving
            c_in, c_dk = [], []
            for _ in range(reps):
                t0 = time.perf_counter()
                k_in = isofast.cluster_isotropy(X, seed=0)
                c_in.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                k_dk = idask.cluster_isotropy(x, seed=0, client=c)
                c_dk.append(time.perf_counter() - t0)
            worst = 0.0
            for a, b in zip(k_dk.clusters, k_in.clusters):
                for key in ("avg_cosine_centered", "log_partition_isotropy", "isoscore"):
                    if np.isfinite(b[key]):
                        worst = max(worst, abs(a[key] - b[key]) / max(abs(b[key]), 1e-300))
            out["cluster"] = {
                "inproc_seconds": c_in,
                "dask_seconds": c_dk,
                "overhead": float(np.median([a / b - 1.0 for a, b in zip(c_dk, c_in)])),
                "best_k": [k_in.best_k, k_dk.best_k],
                "sizes_equal": [s["size"] for s in k_in.clusters] == [s["size"] for s in k_dk.clusters],
                "max_rel_diff": worst,
            }
    return out


# ------------------------------------------------------------------ parent
def run_child(args, kind: str, **kw) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--child-args", json.dumps(kw)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        raise SystemExit(f"child {kind} failed ({res.returncode})")
    return json.loads(res.stdout.strip().splitlines()[-1])


def rel_diff(a: dict, b: dict) -> float:
    worst = 0.0
    for k in SUMMARY[1:] + ("lambda1",):
        x, y = a[k], b[k]
        worst = max(worst, abs(x - y) / max(abs(y), 1e-300))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000_000, help="rows of the out-of-core file")
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--slice", type=int, default=1_000_000, help="rows analysed in memory for the baseline")
    ap.add_argument("--dask-rows", type=int, default=1_000_000)
    ap.add_argument("--dask-chunk", type=int, default=50_000, help="rows per Dask block")
    ap.add_argument("--dask-reps", type=int, default=3, help="interleaved in-process/Dask pairs")
    ap.add_argument("--dask-cluster", action="store_true", help="also time cluster_isotropy, in-process vs Dask")
    ap.add_argument("--threads", type=int, default=None, help="Rust threads (default all cores)")
    ap.add_argument("--drop-cache", action="store_true", help="force dropping read pages (default: auto by size)")
    ap.add_argument("--skip-ooc", action="store_true")
    ap.add_argument("--skip-full", action="store_true", help="out-of-core on the slice only (no full-file run)")
    ap.add_argument("--skip-dask", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the data file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-args", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        kw = json.loads(args.child_args)
        fn = {"inmem": child_inmem, "ooc": child_ooc, "dask": child_dask}[args.child]
        print(json.dumps(fn(**kw)))
        return

    DATA.mkdir(exist_ok=True)
    n, d = args.n, args.d
    path = DATA / f"ooc_{n}x{d}_f32.npy"
    need = len(header_bytes(n, d)) + n * d * 4
    free = shutil.disk_usage(DATA).free
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    print(f"machine: {os.cpu_count()} cores, {mem / 2**30:.1f} GiB RAM; load {os.getloadavg()}")
    print(f"file: {path} ({need / 1e9:.1f} GB; {free / 1e9:.0f} GB free on disk; RAM/file = {mem / need:.2f})")
    if not (path.exists() and path.stat().st_size == need):
        if free < need + (2 << 30):
            raise SystemExit(f"not enough disk: need {need / 1e9:.1f} GB + 2 GB margin, have {free / 1e9:.1f} GB")
        secs = make_file(path, n, d)
        print(f"wrote in {secs:.0f} s ({need / secs / 1e6:.0f} MB/s)")
    try:
        results: dict = {"n": n, "d": d}
        rows = min(args.slice, n)

        def inmem(tag: str) -> dict:
            r = run_child(args, "inmem", path=str(path), rows=rows, d=d, threads=args.threads)
            print(
                f"in-memory ({tag}) {rows:>11,} rows: {r['seconds']:8.1f} s  {r['rows_per_s']:>9,.0f} rows/s  "
                f"peak RSS {r['peak_rss'] / 2**30:.2f} GiB  load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            return r

        base = results["inmem"] = inmem("before")
        if not args.skip_ooc:
            # the same rows read from disk (cold, pages dropped), right after
            # the in-memory run: the cleanest ratio on a machine whose load drifts
            sl = run_child(args, "ooc", path=str(path), rows=rows, threads=args.threads, drop_cache=True)
            results["ooc_slice"] = sl
            print(
                f"out-of-core, same {rows:,} rows: {sl['seconds']:8.1f} s  {sl['rows_per_s']:>9,.0f} rows/s  "
                f"peak RSS {sl['peak_rss'] / 2**30:.2f} GiB  ratio {sl['rows_per_s'] / base['rows_per_s']:.2f}",
                flush=True,
            )
        if not (args.skip_ooc or args.skip_full):
            ooc = run_child(
                args,
                "ooc",
                path=str(path),
                rows=None,
                threads=args.threads,
                drop_cache=True if args.drop_cache else None,
            )
            results["ooc"] = ooc
            after = results["inmem_after"] = inmem("after")
            ref = 0.5 * (base["rows_per_s"] + after["rows_per_s"])
            ratio = ooc["rows_per_s"] / ref
            print(
                f"out-of-core {n:>10,} rows: {ooc['seconds']:8.1f} s  {ooc['rows_per_s']:>9,.0f} rows/s  "
                f"{ooc['mb_per_s']:.0f} MB/s read  peak RSS {ooc['peak_rss'] / 2**30:.2f} GiB  "
                f"throughput ratio {ratio:.2f} vs the mean in-memory rate (target ≥ 0.70; RSS target ≤ 2 GiB)",
                flush=True,
            )
            results["ooc_ratio"] = ratio
        if not args.skip_dask:
            dr = min(args.dask_rows, n)
            dk = run_child(
                args,
                "dask",
                path=str(path),
                rows=dr,
                d=d,
                chunk=args.dask_chunk,
                reps=args.dask_reps,
                cluster=args.dask_cluster,
            )
            results["dask"] = dk
            print(
                f"dask 2x1    {dr:>10,} rows: in-process {', '.join(f'{t:.1f}' for t in dk['inproc_seconds'])} s, "
                f"LocalCluster {', '.join(f'{t:.1f}' for t in dk['dask_seconds'])} s ({dk['blocks']} blocks, Rust "
                f"threads/task {sorted(set(dk['thread_plan'].values()))}): overhead median of pairs "
                f"{100 * dk['overhead']:+.1f}%, total {100 * dk['overhead_total']:+.1f}% (target ≤ 15%); "
                f"max rel. diff {rel_diff(dk['dask'], dk['inproc']):.1e}"
            )
            if "cluster" in dk:
                ck = dk["cluster"]
                print(
                    f"dask 2x1 cluster_isotropy: in-process {', '.join(f'{t:.1f}' for t in ck['inproc_seconds'])} s, "
                    f"LocalCluster {', '.join(f'{t:.1f}' for t in ck['dask_seconds'])} s: overhead median of pairs "
                    f"{100 * ck['overhead']:+.1f}%; best k {ck['best_k']}, sizes equal {ck['sizes_equal']}, "
                    f"max rel. diff {ck['max_rel_diff']:.1e}"
                )
        print(json.dumps(results, default=float))
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
