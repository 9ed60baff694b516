"""Costs of issue 17's guards: OS threads after an n_threads sweep, and the
checksum verification of a capture shard next to reading it.

    PYTHONPATH=python python benches/bench_robustness.py [--mb 256]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import isofast
from isofast import store


def threads() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=256)
    a = ap.parse_args()
    X = np.random.default_rng(0).normal(size=(2000, 64))
    t0 = threads()
    for n in range(1, 61):
        isofast.avg_cosine(X, n_threads=n)
    time.sleep(0.5)
    print(
        f"OS threads: {t0} before, {threads()} after a sweep over n_threads 1..60 "
        f"(an unbounded cache of pools holds 1 + ... + 60 = 1830)"
    )

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "shard.npy"
        rows = (a.mb << 20) // (4 * 576)
        Y = np.random.default_rng(1).normal(size=(rows, 576)).astype(np.float32)
        digest = store.write_npy(p, Y)
        del Y
        t = time.perf_counter()
        store.checksum_of(p)
        t_crc = time.perf_counter() - t
        t = time.perf_counter()
        src = isofast.open_source(p)
        isofast.avg_cosine(src)
        t_read = time.perf_counter() - t
        store._VERIFIED.clear()
        t = time.perf_counter()
        store.verify_file(p, digest)
        store.verify_file(p, digest)  # cached: free
        t_ver = time.perf_counter() - t
        print(
            f"{a.mb} MiB shard (page cache warm): CRC-32 {t_crc:.3f} s ({a.mb / t_crc:.0f} MiB/s), "
            f"verify twice {t_ver:.3f} s, avg_cosine pass over the file {t_read:.3f} s, "
            f"ratio verify/pass {t_ver / t_read:.2f}"
        )


if __name__ == "__main__":
    main()
