"""Benchmark: isofast.analyze vs a numpy/scipy pipeline computing the same
numbers, vs the FLOP floor, and covariance alone vs numpy X.T @ X.

Data (written once as memory-mapped float32 .npy under benches/data/, or
``--data DIR`` / $ISOFAST_BENCHDATA — the wide sizes need ~3.3 GB each):
anisotropic Gaussian rows (geometric spectrum, random rotation) plus a common
offset. Usage:

    python benches/bench_analyze.py                 # 1M×768 and 200k×4096
    python benches/bench_analyze.py --sizes 100000x256   # quick
    python benches/bench_analyze.py --data /work/benchdata \
        --sizes 200000x2048,200000x4096,50000x8192 --contenders isofast,isofast_fast,numpy
    python benches/bench_analyze.py --eig 2048,4096,8192  # the decompositions alone

Contenders (each in its own process): ``isofast`` (precision="exact"),
``isofast_fast`` (precision="fast"), ``isofast_dc`` / ``isofast_fast_dc`` (the
same with ``memory_budget`` = 4.5·d²·8 + 256 MiB, so that the eigensolver
keeps divide and conquer above d ≈ 4733), ``numpy`` (the pipeline below),
``isofast_cov`` / ``isofast_cov_fast`` (pass 1 only) and ``numpy_XtX``.

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
import isofast
from memwatch import PeakMemory

DATA = Path(os.environ.get("ISOFAST_BENCHDATA", Path(__file__).resolve().parent / "data"))


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
    # float32 rotation for d > 1024 (the wide sizes): a float64 GEMM of N×d²
    # only to write test data would take minutes on a small machine.
    Qt = Q.T.astype(np.float32) if d > 1024 else Q.T
    sc = scales.astype(np.float32) if d > 1024 else scales
    for s in range(0, n, step):
        k = min(step, n - s)
        mm[s : s + k] = ((rng.standard_normal((k, d), dtype=np.float32) * sc) @ Qt + offset).astype(np.float32)
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
    "isofast_fast": lambda X, d: isofast.analyze(X, precision="fast").to_dict(arrays=False),
    "numpy": lambda X, d: numpy_pipeline(X),
    # Divide and conquer at every width: a budget of 4.5·d²·8 + 256 MiB (what
    # that solver holds, see benches/README.md), above the default 3·d²·8 + 256.
    "isofast_dc": lambda X, d: isofast.analyze(X, memory_budget=int(4.5 * d * d * 8) + (256 << 20)).to_dict(
        arrays=False
    ),
    "isofast_fast_dc": lambda X, d: isofast.analyze(
        X, precision="fast", memory_budget=int(4.5 * d * d * 8) + (256 << 20)
    ).to_dict(arrays=False),
    "isofast_cov": lambda X, d: isofast.Moments(d).update(X).n,
    "isofast_cov_fast": lambda X, d: isofast.Moments(d, precision="fast").update(X).n,
    "numpy_XtX": lambda X, d: float((X.T @ X)[0, 0]),
}
DEFAULT_CONTENDERS = "isofast,isofast_fast,numpy,isofast_cov,numpy_XtX"


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


def bench(n: int, d: int, contenders: list) -> dict:
    path = make_data(n, d)
    X = np.load(path, mmap_mode="r")
    # Warm the page cache so every contender reads from memory.
    for s in range(0, n, 65536):
        np.asarray(X[s : s + 65536]).sum()
    load0 = os.getloadavg()[0]
    rate = gemm_rate()
    r = {}
    for name in contenders:
        r[name] = run_child(name, path)
        print(
            f"  [{n}x{d}] {name}: {r[name]['seconds']:.2f} s, peak +{r[name]['peak_extra_bytes'] / 2**20:.0f} MiB",
            flush=True,
        )
    rate_after = gemm_rate()
    floor = 5.0 * n * d * d / rate
    budget = 3 * d * d * 8 + (256 << 20)
    out = {
        "n": n,
        "d": d,
        "numpy_f32_gemm_gflops": rate / 1e9,
        "numpy_f32_gemm_gflops_after": rate_after / 1e9,
        "flop_floor_s": floor,
        "memory_budget_MiB": budget / 2**20,
        "load_average_1min_before": load0,
        "load_average_1min_after": os.getloadavg()[0],
    }
    for name, v in r.items():
        out[f"{name}_s"] = v["seconds"]
        out[f"peak_extra_MiB_{name}"] = v["peak_extra_bytes"] / 2**20
    t_np = r["numpy"]["seconds"] if "numpy" in r else None
    for name in ("isofast", "isofast_fast", "isofast_dc", "isofast_fast_dc"):
        if name in r:
            t = r[name]["seconds"]
            out[f"{name}_over_floor"] = t / floor
            out[f"{name}_within_budget"] = r[name]["peak_extra_bytes"] <= budget
            if t_np:
                out[f"{name}_speedup_vs_numpy"] = t_np / t
    if "numpy_XtX" in r and "isofast_cov" in r:
        out["cov_ratio_numpy_over_isofast"] = r["numpy_XtX"]["seconds"] / r["isofast_cov"]["seconds"]
    if "numpy" in r:
        ref = r["numpy"]["out"]
        for name in ("isofast", "isofast_fast", "isofast_dc", "isofast_fast_dc"):
            if name in r:
                out[f"agreement({name}, numpy)"] = {k: (r[name]["out"][k], v) for k, v in ref.items()}
    return out


def eig_bench(d: int, seed: int = 0) -> dict:
    """The decompositions between the passes at width d: two full symmetric
    eigendecompositions (covariance and XᵀX, the route before issue 19) vs
    one plus the rank-one update (``Moments.directions``), on a state from
    2·d anisotropic offset rows; and the agreement of the two routes."""
    rng = np.random.default_rng(seed)
    n = 2 * d
    X = rng.standard_normal((n, d), dtype=np.float32) * np.geomspace(20, 0.05, d).astype(np.float32) + (
        rng.normal(size=d) * 5 + 3
    ).astype(np.float32)
    m = isofast._core.Moments(d)
    m.update(X)
    del X
    mu = m.mean
    t = time.perf_counter()
    _lam_c, _ = isofast._core.sym_eigen(m.covariance())
    t_cov = time.perf_counter() - t
    G = m.comoment()
    G += n * np.outer(mu, mu)
    t = time.perf_counter()
    lam_g, W_full = isofast._core.sym_eigen(G)
    t_gram = time.perf_counter() - t
    t = time.perf_counter()
    _, _, lam_r, W = m.directions()
    t_route = time.perf_counter() - t
    norm = lam_g[0]
    gaps = np.abs(np.diff(lam_g))
    sep = np.r_[gaps[0], np.minimum(gaps[:-1], gaps[1:]), gaps[-1]] > 1e-6 * norm
    dots = np.abs(np.einsum("ij,ij->j", W, W_full))
    resid = np.abs(G @ W[:, :64] - W[:, :64] * lam_r[:64]).max() / norm
    return {
        "d": d,
        "two_full_s": t_cov + t_gram,
        "cov_full_s": t_cov,
        "one_full_plus_rank_one_s": t_route,
        "rank_one_s_approx": t_route - t_cov,
        "saved_s": t_cov + t_gram - t_route,
        "max_abs_eigenvalue_diff_over_norm": float(np.max(np.abs(lam_r - lam_g)) / norm),
        "min_abs_dot_separated": float(dots[sep].min()) if sep.any() else None,
        "n_separated": int(sep.sum()),
        "max_residual_first64_over_norm": float(resid),
        "load_average_1min": os.getloadavg()[0],
    }


def main() -> None:
    global DATA
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000000x768,200000x4096")
    ap.add_argument("--contenders", default=DEFAULT_CONTENDERS)
    ap.add_argument("--data", default=None, help="directory of the memory-mapped inputs")
    ap.add_argument("--eig", default=None, help="widths for the decomposition-only benchmark")
    ap.add_argument("--json", default=None, help="also write results here")
    ap.add_argument("--child", nargs=2, metavar=("NAME", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.data:
        DATA = Path(args.data)
    if args.child:
        child(*args.child)
        return
    results = []
    if args.eig:
        for d in (int(v) for v in args.eig.split(",")):
            r = eig_bench(d)
            results.append(r)
            print(json.dumps(r, indent=2), flush=True)
    else:
        names = [c for c in args.contenders.split(",") if c]
        bad = [c for c in names if c not in CONTENDERS]
        if bad:
            ap.error(f"unknown contenders {bad}; choose from {sorted(CONTENDERS)}")
        for spec in args.sizes.split(","):
            n, d = (int(v) for v in spec.lower().split("x"))
            r = bench(n, d, names)
            results.append(r)
            print(json.dumps(r, indent=2), flush=True)
            line = f"[{n}x{d}] floor {r['flop_floor_s']:.2f}s, budget {r['memory_budget_MiB']:.0f} MiB"
            for name in ("isofast", "isofast_fast", "isofast_dc", "isofast_fast_dc"):
                if f"{name}_s" in r:
                    line += (
                        f" | {name} {r[f'{name}_s']:.2f}s (x{r.get(f'{name}_speedup_vs_numpy', float('nan')):.2f}"
                        f" vs numpy, x{r[f'{name}_over_floor']:.2f} floor, +{r[f'peak_extra_MiB_{name}']:.0f} MiB)"
                    )
            print(line, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
