"""Benchmark: isofast.analyze vs a numpy/scipy pipeline computing the same
numbers, vs the FLOP floor, and covariance alone vs numpy X.T @ X.

Data (written once as memory-mapped float32 .npy under benches/data/):
anisotropic Gaussian rows (geometric spectrum, random rotation) plus a common
offset. Usage:

    python benches/bench_analyze.py                 # 1M×768 and 200k×4096
    python benches/bench_analyze.py --sizes 100000x256   # quick

The numpy pipeline is what a careful numpy user writes for the same numbers
and the same precision contract: float64 moments from float32 row tiles
(centred per tile, Chan-merged), np.linalg.eigh twice, unit-sum cosines,
float32 projections with a chunked stable scipy logsumexp for both partition
variants. It streams the memmap in tiles (no whole-array copies).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memwatch import PeakMemory  # noqa: E402

import isofast  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"


def make_data(n: int, d: int, seed: int = 0) -> Path:
    path = DATA / f"aniso_{n}x{d}_f32.npy"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    scales = np.geomspace(20.0, 0.05, d)
    offset = rng.normal(size=d) * 5.0 + 3.0
    tmp = path.with_suffix(".tmp.npy")
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, d))
    step = max(1, (64 << 20) // (8 * d))
    for s in range(0, n, step):
        k = min(step, n - s)
        mm[s : s + k] = ((rng.standard_normal((k, d), dtype=np.float32) * scales) @ Q.T + offset).astype(np.float32)
    mm.flush()
    del mm
    os.replace(tmp, path)
    return path


def numpy_pipeline(X: np.ndarray, tile: int = 16384) -> dict:
    n, d = X.shape
    # Pass 1: Chan-merged float64 moments from centred tiles; raw unit sums.
    cnt, mu, M, usum = 0, np.zeros(d), np.zeros((d, d)), np.zeros(d)
    for s in range(0, n, tile):
        t = np.asarray(X[s : s + tile], dtype=np.float64)
        k = t.shape[0]
        mb = t.mean(0)
        y = t - mb
        delta = mb - mu
        M += y.T @ y + np.outer(delta, delta) * (cnt * k / (cnt + k))
        mu += delta * k / (cnt + k)
        cnt += k
        nr = np.linalg.norm(t, axis=1)
        usum += (t[nr > 0] / nr[nr > 0, None]).sum(0)
    C = M / (n - 1)
    lam, U = np.linalg.eigh(C)
    lam, U = lam[::-1], U[:, ::-1]
    _, W = np.linalg.eigh(M + n * np.outer(mu, mu))
    U32, W32, mu32 = U.astype(np.float32), W.astype(np.float32), mu
    # Pass 2: partition functions (both signs) and centred unit sums.
    lz = {k: np.full(d, -np.inf) for k in ("rp", "rn", "cp", "cn")}
    csum = np.zeros(d)
    for s in range(0, n, tile):
        t = np.asarray(X[s : s + tile])
        yc64 = t.astype(np.float64) - mu32
        nr = np.linalg.norm(yc64, axis=1)
        csum += (yc64[nr > 0] / nr[nr > 0, None]).sum(0)
        pr = t @ W32
        pc = yc64.astype(np.float32) @ U32
        lz["rp"] = np.logaddexp(lz["rp"], logsumexp(pr.astype(np.float64), axis=0))
        lz["rn"] = np.logaddexp(lz["rn"], logsumexp(-pr.astype(np.float64), axis=0))
        lz["cp"] = np.logaddexp(lz["cp"], logsumexp(pc.astype(np.float64), axis=0))
        lz["cn"] = np.logaddexp(lz["cn"], logsumexp(-pc.astype(np.float64), axis=0))
    lam = np.clip(lam, 0, None)
    tot = lam.sum()
    pr_ = tot**2 / (lam**2).sum()
    raw = np.concatenate([lz["rp"], lz["rn"]])
    cen = np.concatenate([lz["cp"], lz["cn"]])
    return {
        "isoscore": (pr_ - 1) / (d - 1),
        "effective_dim": int(np.argmax(np.cumsum(lam) / tot >= 0.8 - 1e-12) + 1),
        "avg_cosine": (usum @ usum - n) / (n * (n - 1.0)),
        "avg_cosine_centered": (csum @ csum - n) / (n * (n - 1.0)),
        "log_partition_isotropy": raw.min() - raw.max(),
        "log_partition_isotropy_centered": cen.min() - cen.max(),
    }


def gemm_rate(n: int = 4096) -> float:
    a = np.ones((n, n), np.float32)
    a @ a
    t = time.perf_counter()
    a @ a
    return 2 * n**3 / (time.perf_counter() - t)


def timed(fn):
    gc.collect()
    with PeakMemory() as pm:
        t = time.perf_counter()
        out = fn()
        secs = time.perf_counter() - t
    return out, secs, pm.extra_anon


CONTENDERS = {
    "isofast": lambda X, d: isofast.analyze(X).to_dict(arrays=False),
    "numpy": lambda X, d: numpy_pipeline(X),
    "isofast_cov": lambda X, d: isofast.Moments(d).update(X).n,
    "numpy_XtX": lambda X, d: float((X.T @ X)[0, 0]),
}


def child(name: str, path: str) -> None:
    """Run one contender in a fresh process so its peak memory is its own."""
    X = np.load(path, mmap_mode="r")
    out, secs, extra = timed(lambda: CONTENDERS[name](X, X.shape[1]))
    print(json.dumps({"seconds": secs, "peak_extra_bytes": extra, "out": out}, default=float))


def run_child(name: str, path: Path) -> dict:
    import subprocess

    res = subprocess.run(
        [sys.executable, __file__, "--child", name, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench(n: int, d: int) -> dict:
    path = make_data(n, d)
    X = np.load(path, mmap_mode="r")
    # Warm the page cache so every contender reads from memory.
    for s in range(0, n, 65536):
        np.asarray(X[s : s + 65536]).sum()
    rate = gemm_rate()
    r = {name: run_child(name, path) for name in CONTENDERS}
    floor = 5.0 * n * d * d / rate
    rep, ref = r["isofast"]["out"], r["numpy"]["out"]
    t_iso, t_np = r["isofast"]["seconds"], r["numpy"]["seconds"]
    return {
        "n": n,
        "d": d,
        "numpy_f32_gemm_gflops": rate / 1e9,
        "isofast_analyze_s": t_iso,
        "numpy_pipeline_s": t_np,
        "speedup_vs_numpy": t_np / t_iso,
        "flop_floor_s": floor,
        "isofast_over_floor": t_iso / floor,
        "cov_isofast_s": r["isofast_cov"]["seconds"],
        "cov_numpy_XtX_f32_s": r["numpy_XtX"]["seconds"],
        "cov_ratio_numpy_over_isofast": r["numpy_XtX"]["seconds"] / r["isofast_cov"]["seconds"],
        "peak_extra_MiB_isofast_analyze": r["isofast"]["peak_extra_bytes"] / 2**20,
        "peak_extra_MiB_numpy_pipeline": r["numpy"]["peak_extra_bytes"] / 2**20,
        "peak_extra_MiB_isofast_cov": r["isofast_cov"]["peak_extra_bytes"] / 2**20,
        "peak_extra_MiB_numpy_XtX": r["numpy_XtX"]["peak_extra_bytes"] / 2**20,
        "memory_budget_MiB": (3 * d * d * 8 + (256 << 20)) / 2**20,
        "load_average_1min": os.getloadavg()[0],
        "agreement(isofast, numpy)": {k: (rep[k], v) for k, v in ref.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000000x768,200000x4096")
    ap.add_argument("--json", default=None, help="also write results here")
    ap.add_argument("--child", nargs=2, metavar=("NAME", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    results = []
    for spec in args.sizes.split(","):
        n, d = (int(v) for v in spec.lower().split("x"))
        r = bench(n, d)
        results.append(r)
        print(json.dumps(r, indent=2), flush=True)
        print(
            f"[{n}x{d}] isofast {r['isofast_analyze_s']:.2f}s | numpy {r['numpy_pipeline_s']:.2f}s "
            f"(x{r['speedup_vs_numpy']:.2f}) | floor {r['flop_floor_s']:.2f}s (x{r['isofast_over_floor']:.2f}) | "
            f"cov {r['cov_isofast_s']:.2f}s vs X.T@X {r['cov_numpy_XtX_f32_s']:.2f}s | "
            f"peak extra {r['peak_extra_MiB_isofast_analyze']:.0f} MiB (budget {r['memory_budget_MiB']:.0f})",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
