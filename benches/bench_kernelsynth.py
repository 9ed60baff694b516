"""Benchmark: the reference study's synthetic set (10 kernels x 1,000 series x 1,024 points).

isofast.data.synthetic_set (one cached factor per kernel, then one GEMM)
against scikit-learn's GaussianProcessRegressor(kernel).sample_y, which every
KernelSynth implementation derived from Chronos calls, in the same run:

* sklearn, per series: ``sample_y(X, n_samples=1)`` once per series, as
  Chronos' ``generate_time_series`` does (one SVD of K per series). Timed on
  ``--per-series`` series per kernel and extrapolated linearly to 1,000.
* sklearn, batched: ``sample_y(X, n_samples=1000)`` once per kernel (one SVD
  per kernel): the best case for sklearn, run in full.

Peak memory: tracemalloc (numpy registers its buffers with it) for each phase,
and the process' maximum RSS (resource.getrusage) at the end.

    python benches/bench_kernelsynth.py            # full comparison
    python benches/bench_kernelsynth.py --quick    # 100 series per kernel
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
import tracemalloc

import numpy as np


def _sk_kernel(k):
    from sklearn.gaussian_process import kernels as skk

    from isofast.data.kernelsynth import (
        RBF,
        ConstantKernel,
        DotProduct,
        ExpSineSquared,
        RationalQuadratic,
        WhiteKernel,
    )

    if isinstance(k, DotProduct):
        return skk.DotProduct(sigma_0=k.sigma_0)
    if isinstance(k, RBF):
        return skk.RBF(length_scale=k.length_scale)
    if isinstance(k, RationalQuadratic):
        return skk.RationalQuadratic(length_scale=k.length_scale, alpha=k.alpha)
    if isinstance(k, ExpSineSquared):
        return skk.ExpSineSquared(length_scale=k.length_scale, periodicity=k.periodicity)
    if isinstance(k, WhiteKernel):
        return skk.WhiteKernel(noise_level=k.noise_level)
    if isinstance(k, ConstantKernel):
        return skk.ConstantKernel(constant_value=k.constant_value)
    raise TypeError(k)


def _measure(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, dt, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="series per kernel (default 1000)")
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument(
        "--per-series", type=int, default=5, help="series per kernel timed for sklearn's per-series path (extrapolated)"
    )
    ap.add_argument("--no-batched", action="store_true", help="skip sklearn's batched path")
    ap.add_argument("--quick", action="store_true", help="100 series per kernel")
    ap.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="limit BLAS/LAPACK threads for the whole run (threadpoolctl); "
        "1 is fairest to sklearn's SVD on a busy machine",
    )
    args = ap.parse_args()
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=args.blas_threads, user_api="blas"):
            return run(args)
    return run(args)


def run(args) -> None:
    n = 100 if args.quick else args.n
    L = args.length

    from isofast.data import PRESETS, synthetic_set
    from isofast.data.kernelsynth import clear_cache, preset

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"numpy {np.__version__}, BLAS threads limit: {args.blas_threads or 'default'}, "
        f"load average at start: {os.getloadavg()[0]:.2f}"
    )
    print(f"set: {len(PRESETS)} kernels x {n} series x {L} points\n")

    clear_cache()
    data, t_cold, peak_cold = _measure(lambda: synthetic_set(PRESETS, n, L, seed=0))
    _, t_warm, peak_warm = _measure(lambda: synthetic_set(PRESETS, n, L, seed=1))
    total = sum(v.nbytes for v in data.values())
    print(
        f"isofast  synthetic_set, cold cache : {t_cold:8.2f} s  peak {peak_cold / 2**20:7.1f} MiB "
        f"(output itself {total / 2**20:.1f} MiB)"
    )
    print(f"isofast  synthetic_set, warm cache : {t_warm:8.2f} s  peak {peak_warm / 2**20:7.1f} MiB")

    from sklearn.gaussian_process import GaussianProcessRegressor

    x = np.linspace(0, 1, L)[:, None]
    m = args.per_series

    def per_series():
        out = {}
        for j, name in enumerate(PRESETS):
            gpr = GaussianProcessRegressor(kernel=_sk_kernel(preset(name, L)))
            out[name] = np.stack([gpr.sample_y(x, 1, random_state=1000 * j + i)[:, 0] for i in range(m)])
        return out

    _, t_ps, peak_ps = _measure(per_series)
    t_ps_full = t_ps * n / m
    print(
        f"sklearn  sample_y per series       : {t_ps:8.2f} s for {m}/kernel -> "
        f"{t_ps_full:8.1f} s extrapolated to {n}/kernel  peak {peak_ps / 2**20:7.1f} MiB"
    )

    if not args.no_batched:

        def batched():
            out = {}
            for j, name in enumerate(PRESETS):
                gpr = GaussianProcessRegressor(kernel=_sk_kernel(preset(name, L)))
                out[name] = gpr.sample_y(x, n, random_state=j).T
            return out

        sk, t_b, peak_b = _measure(batched)
        print(f"sklearn  sample_y batched          : {t_b:8.2f} s  peak {peak_b / 2**20:7.1f} MiB")
        # same distribution: mean per-point variance agrees within sampling error
        print("\nsanity (mean per-point variance, isofast vs sklearn batched):")
        for name in PRESETS:
            a, b = data[name].var(axis=0).mean(), sk[name].var(axis=0).mean()
            print(f"  {name:22s} {a:9.4f} {b:9.4f}")
    print()
    print(
        f"speed-up vs sklearn per series (extrapolated): {t_ps_full / t_cold:8.1f}x (cold), "
        f"{t_ps_full / t_warm:.1f}x (warm)"
    )
    if not args.no_batched:
        print(f"speed-up vs sklearn batched                 : {t_b / t_cold:8.1f}x (cold), {t_b / t_warm:.1f}x (warm)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process max RSS: {rss:.0f} MiB; load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
