"""Study grid throughput: cells per hour in one process and on a 2-worker
LocalCluster, the scheduling overhead per cell, and a projection of the
reference study's wall time on 1, 8 and 64 machines.

Each contender runs in its own process (a fresh cache, the same grid); the
parent samples the resident memory of the whole process tree (the study's
process plus its Dask workers) every 0.2 s.

    python benches/bench_study_grid.py                 # the tiny grid (36 cells)
    python benches/bench_study_grid.py --grid smollm2  # SmolLM2 cells at the default study's size
    python benches/bench_study_grid.py --cell-seconds 420   # + projection of the reference study
    python benches/bench_study_grid.py --no-measure --cell-seconds 420 --overhead 0.5

Overhead per cell = (wall × workers − Σ in-cell seconds) / cells on the cluster,
minus the same quantity in process: what running a cell as a Dask task costs
beyond running it (task submission, pickling, worker start-up amortised over
the grid, idle workers at the end of the grid).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tomllib


def grid(name: str) -> dict:
    from isofast.study.config import bundled_config_path

    if name == "tiny":
        with open(bundled_config_path("tiny"), "rb") as f:
            d = tomllib.load(f)
    elif name == "smollm2":
        with open(bundled_config_path("default"), "rb") as f:
            d = tomllib.load(f)
        d["models"] = [m for m in d["models"] if m.get("kind") == "lm"]
        d["datasets"] = d["datasets"][:4]
        d["perturbations"] = d["perturbations"][:1]
        d["study"]["threads"] = 1
    else:
        raise SystemExit(f"unknown grid {name!r}")
    d["causal"] = {"enabled": False}
    d["report"]["enabled"] = False
    return d


def child(args) -> None:
    from isofast.study.runner import run_study

    d = grid(args.grid)
    t0 = time.perf_counter()
    res = run_study(
        d,
        out=args.out,
        progress=False,
        report=False,
        log=lambda m: None,
        workers=args.workers if args.workers else None,
    )
    wall = time.perf_counter() - t0
    cells = [c for c in res.cells if not c.error]
    print(
        json.dumps(
            {
                "wall": wall,
                "n_cells": len(res.cells),
                "n_failed": len(res.cells) - len(cells),
                "cell_seconds": sum(c.seconds for c in cells),
                "counters": res.counters,
            }
        )
    )


def tree_rss(pid: int) -> int:
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run(mode_workers: int, grid_name: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="isofast-bench-grid-") as tmp:
        cmd = [sys.executable, __file__, "--child", "--grid", grid_name, "--out", tmp, "--workers", str(mode_workers)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        peak = [0]
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                peak[0] = max(peak[0], tree_rss(proc.pid))
                time.sleep(0.2)

        th = threading.Thread(target=watch, daemon=True)
        th.start()
        out, _ = proc.communicate()
        stop.set()
        th.join()
        if proc.returncode != 0:
            raise SystemExit(f"contender with workers={mode_workers} failed (exit {proc.returncode})")
        r = json.loads(out.strip().splitlines()[-1])
        r["peak_rss"] = peak[0]
        return r


def noop_latency(n: int = 200) -> tuple[float, float]:
    """Seconds to start a 2-worker LocalCluster, and per-task round trip of
    ``n`` no-op tasks submitted at once (the pure scheduling cost of a cell)."""
    import logging

    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    client = Client(cluster)
    client.wait_for_workers(2)
    start = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        futs = [client.submit(int, i, pure=False) for i in range(n)]
        client.gather(futs)
        per = (time.perf_counter() - t0) / n
    finally:
        client.close()
        cluster.close()
    return start, per


def projection(cell_seconds: float, n_cells: int, overhead: float, per_machine: int, machines: list) -> list:
    """Wall time of ``n_cells`` cells of ``cell_seconds`` each on M machines with
    ``per_machine`` single-cell workers each: ceil(n / (M·w)) waves of
    (cell + overhead). Cells are independent, so waves are the bound; training
    tasks and the client's statistics are not included (minutes)."""
    import math

    rows = []
    for m in machines:
        slots = m * per_machine
        waves = math.ceil(n_cells / slots)
        rows.append(
            {"machines": m, "workers": slots, "waves": waves, "hours": waves * (cell_seconds + overhead) / 3600}
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", default="tiny", choices=["tiny", "smollm2"])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument(
        "--cell-seconds",
        type=float,
        default=None,
        help="seconds of one reference cell (benches/bench_study_cell.py) for the projection",
    )
    ap.add_argument("--cells", type=int, default=216, help="cells of the reference study (18 × 4 × 3 = 216)")
    ap.add_argument(
        "--no-measure", action="store_true", help="only the projection (needs --cell-seconds and --overhead)"
    )
    ap.add_argument("--overhead", type=float, default=0.0, help="overhead per cell for --no-measure")
    ap.add_argument("--per-machine", type=int, default=2, help="cell workers per machine in the projection")
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    print(f"machine: {os.cpu_count()} CPUs; grid: {args.grid}")
    overhead = args.overhead
    if not args.no_measure:
        start, per = noop_latency()
        print(f"LocalCluster(2) start-up {start:.1f} s; no-op task round trip {per * 1e3:.2f} ms per task")
        seq = run(0, args.grid)
        par = run(2, args.grid)
        n = seq["n_cells"]
        for name, r, w in (("sequential", seq, 1), ("LocalCluster(2)", par, 2)):
            print(
                f"{name:>16}: {r['wall']:7.1f} s wall, {n / r['wall'] * 3600:8.0f} cells/h, "
                f"Σ cell {r['cell_seconds']:6.1f} s, failed {r['n_failed']}, peak RSS {r['peak_rss'] / 2**30:.2f} GiB"
            )
        o_seq = (seq["wall"] - seq["cell_seconds"]) / n
        o_par = (par["wall"] * 2 - par["cell_seconds"]) / n
        overhead = max(o_par - o_seq, 0.0)
        print(f"speed-up 2 workers / 1 process: {seq['wall'] / par['wall']:.2f}×")
        print(
            f"outside-cell time per cell: in process {o_seq:.2f} s, on the cluster {o_par:.2f} s "
            f"(worker-seconds); scheduling overhead per cell ≈ {overhead:.2f} s"
        )
        print(
            f"in-cell time, cluster / in process: {par['cell_seconds'] / max(seq['cell_seconds'], 1e-9):.2f}× "
            "(> 1: the two workers contend for the cores)"
        )
    if args.cell_seconds is not None:
        print(
            f"projection of the reference study ({args.cells} cells of {args.cell_seconds:.0f} s, "
            f"{args.per_machine} workers per machine, {overhead:.2f} s overhead per cell):"
        )
        for r in projection(args.cell_seconds, args.cells, overhead, args.per_machine, [1, 8, 64]):
            print(
                f"  {r['machines']:>3} machines ({r['workers']:>3} workers): {r['waves']:>3} waves → {r['hours']:.2f} h"
            )


if __name__ == "__main__":
    main()
