"""Benchmark: isofast.log_partition_head (fused GEMM tiles + streaming
log-sum-exp in Rust) against chunked numpy and chunked torch, and against the
FLOP floor, in one run.

Problem: log Z(c_n) = logsumexp_w ⟨v_w, c_n⟩ for N contexts and the SmolLM2
head W (49,152 × 576, float32). W is the real SmolLM2-135M head when the
bundled model loads (isofast.models), else random data of that shape;
contexts are random float32 rows (N(0, 1), norm ≈ 24) of width 576 — the
cost does not depend on the values. Usage:

    python benches/bench_head.py                  # N = 100,000
    python benches/bench_head.py --n 20000        # shorter (2-core VMs)
    python benches/bench_head.py --blas-threads 1 --threads 1

Alternatives, each in the precision the task calls for (float32 GEMM):

* numpy: for each block of ``--chunk`` contexts, L = C_b @ W.T (float32,
  OpenBLAS), then a stable log-sum-exp in place (max, subtract, exp, float64
  sum, log): what a careful numpy user writes.
* torch (CPU): torch.logsumexp(C_b @ W.T, dim=1) per block.
* FLOP floor: 2·N·V·d at the float32 GEMM rate numpy reaches on a 4096³
  product in the same run.

Peak memory is the anonymous RSS above what was resident before each call
(inputs excluded), sampled every 5 ms (benches/memwatch.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memwatch import PeakMemory  # noqa: E402

V, D = 49152, 576


def head_weights(random: bool):
    if not random:
        try:
            from isofast.head import lm_head_weights
            from isofast.models import load_model

            lm = load_model("smollm2", device="cpu")
            W, _ = lm_head_weights(lm)
            del lm
            return np.ascontiguousarray(W, dtype=np.float32), "SmolLM2-135M head (real weights)"
        except Exception as exc:  # the bundled model is optional here
            print(f"(SmolLM2 not loadable: {exc}; using random weights)", file=sys.stderr)
    rng = np.random.default_rng(0)
    return (rng.standard_normal((V, D), dtype=np.float32) * 0.05), "random N(0, 0.05²) of the SmolLM2 head's shape"


def gemm_rate(reps: int = 3) -> float:
    rng = np.random.default_rng(1)
    A = rng.standard_normal((4096, 4096), dtype=np.float32)
    B = rng.standard_normal((4096, 4096), dtype=np.float32)
    A @ B
    best = min(_timed(lambda: A @ B)[0] for _ in range(reps))
    return 2 * 4096**3 / best


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def numpy_chunked(W, C, chunk):
    out = np.empty(C.shape[0])
    Wt = W.T
    for s in range(0, C.shape[0], chunk):
        L = C[s : s + chunk] @ Wt
        m = L.max(axis=1, keepdims=True)
        L -= m
        np.exp(L, out=L)
        out[s : s + chunk] = np.log(L.sum(axis=1, dtype=np.float64)) + m[:, 0]
        del L
    return out


def torch_chunked(W, C, chunk):
    import torch

    Wt = torch.from_numpy(W).T
    Ct = torch.from_numpy(C)
    out = np.empty(C.shape[0])
    with torch.inference_mode():
        for s in range(0, C.shape[0], chunk):
            out[s : s + chunk] = torch.logsumexp(Ct[s : s + chunk] @ Wt, dim=1).double().numpy()
    return out


def run(name, fn, reps):
    best, peak, res = float("inf"), 0, None
    for _ in range(reps):
        with PeakMemory() as pm:
            dt, res = _timed(fn)
        best = min(best, dt)
        peak = max(peak, pm.extra_anon)
    print(f"  {name:<28} {best:8.2f} s   peak +{peak / 2**20:7.1f} MiB", flush=True)
    return best, peak, res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="contexts (default 100,000)")
    ap.add_argument("--chunk", type=int, default=1024, help="numpy/torch block of contexts")
    ap.add_argument("--reps", type=int, default=1, help="repetitions (best is kept)")
    ap.add_argument("--threads", type=int, default=None, help="isofast threads (default all)")
    ap.add_argument("--blas-threads", type=int, default=None, help="OpenBLAS and torch threads")
    ap.add_argument("--random-weights", action="store_true", help="do not load SmolLM2")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", default=None, help="write the numbers to this file")
    args = ap.parse_args(argv)

    if args.blas_threads:
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.blas_threads)
        except ImportError:
            print("(threadpoolctl missing: --blas-threads applies to torch only)", file=sys.stderr)
    from isofast.head import log_partition_head

    W, w_desc = head_weights(args.random_weights)
    rng = np.random.default_rng(2)
    C = rng.standard_normal((args.n, D), dtype=np.float32)
    N = args.n
    flops = 2.0 * N * V * D
    print(
        f"log Z for N={N:,} contexts × V={V:,} × d={D} float32 ({flops / 1e12:.2f} TFLOP); "
        f"W: {w_desc}; {os.cpu_count()} cores"
    )

    rate = gemm_rate()
    floor = flops / rate
    print(f"  FLOP floor at numpy's 4096³ float32 GEMM rate ({rate / 1e9:.1f} GFLOP/s): {floor:.2f} s")

    t_iso, m_iso, lz = run("isofast", lambda: log_partition_head(W, C, n_threads=args.threads), args.reps)
    digits = np.arange(32, 42)  # SmolLM2's digit tokens "0".."9"
    t_iso_k, m_iso_k, _ = run(
        "isofast +top-5 +digit mass",
        lambda: log_partition_head(W, C, topk=5, subset=digits, n_threads=args.threads),
        args.reps,
    )
    t_np, m_np, lz_np = run(f"numpy (blocks of {args.chunk})", lambda: numpy_chunked(W, C, args.chunk), args.reps)
    res = {
        "n": N,
        "vocab": V,
        "dim": D,
        "weights": w_desc,
        "cores": os.cpu_count(),
        "gemm_rate_gflops": rate / 1e9,
        "floor_s": floor,
        "isofast_s": t_iso,
        "isofast_peak_mib": m_iso / 2**20,
        "isofast_topk_subset_s": t_iso_k,
        "isofast_topk_subset_peak_mib": m_iso_k / 2**20,
        "numpy_s": t_np,
        "numpy_peak_mib": m_np / 2**20,
    }
    if not args.no_torch:
        import torch

        if args.blas_threads:
            torch.set_num_threads(args.blas_threads)
        t_t, m_t, lz_t = run(f"torch CPU (blocks of {args.chunk})", lambda: torch_chunked(W, C, args.chunk), args.reps)
        res.update(torch_s=t_t, torch_peak_mib=m_t / 2**20, torch_threads=torch.get_num_threads())
        res["max_abs_diff_torch"] = float(np.abs(lz_t - lz).max())

    # Accuracy: a float64 reference on 64 rows (the float32 GEMM dominates).
    from scipy.special import logsumexp

    idx = np.linspace(0, N - 1, 64).astype(int)
    ref = logsumexp(C[idx].astype(np.float64) @ W.T.astype(np.float64), axis=1)
    res["max_abs_err_isofast_vs_f64"] = float(np.abs(lz[idx] - ref).max())
    res["max_abs_err_numpy_vs_f64"] = float(np.abs(lz_np[idx] - ref).max())
    res["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print("ratios (> 1: isofast faster):")
    print(f"  numpy / isofast        {t_np / t_iso:6.2f}x   (target ≥ 1.3x)")
    if "torch_s" in res:
        print(f"  torch / isofast        {res['torch_s'] / t_iso:6.2f}x   (target > 1x)")
    print(f"  isofast / FLOP floor   {t_iso / floor:6.2f}x   (target ≤ 1.3x)")
    print(f"  isofast GEMM rate      {flops / t_iso / 1e9:6.1f} GFLOP/s (numpy 4096³: {rate / 1e9:.1f})")
    print(f"  top-5 + subset cost    {t_iso_k / t_iso:6.2f}x of plain log Z")
    print(
        f"accuracy vs float64 (64 rows): isofast {res['max_abs_err_isofast_vs_f64']:.2e}, "
        f"numpy {res['max_abs_err_numpy_vs_f64']:.2e}"
    )
    print(
        f"peak memory above inputs: isofast {m_iso / 2**20:.0f} MiB (target ≤ 256), "
        f"numpy {m_np / 2**20:.0f} MiB; process max RSS {res['max_rss_mib']:.0f} MiB"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
