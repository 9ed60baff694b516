"""Capture throughput vs a bare forward pass over the same batches (CPU, SmolLM2).

Configurations, all over identical batches (the same windows serialized by the
same LLMTime serializer, right-padded the same way, ``batch_size`` windows each):

* ``bare-full``   ``model(input_ids, attention_mask)``: the causal-LM forward
                  with its LM head, nothing kept (what a user would otherwise run);
* ``bare-body``   the transformer body only (no LM head), nothing kept;
* ``capture-l15-digits``  :func:`isofast.capture`, layer 15, digit tokens, both
                  sites, shards written to a temporary folder;
* ``capture-all-all``     every layer (0..30) and site, every token: the worst
                  case, ~140 KB written per token.

Two measurements:

1. **Peak RSS**: each configuration once in its own subprocess, so its
   peak resident memory (``ru_maxrss``) is its own (model load included).
2. **Paired rounds** (one process, model loaded once): each round runs every
   configuration once, in a rotated order, timing wall clock and process CPU
   time (``time.process_time``: all threads, the capture's writer thread
   included). The machine this was written on is shared and its load drifts
   over minutes, so the report gives per-configuration medians and the median
   of the *per-round* ratios, which cancels most of the drift.

Tokens/s counts real (unpadded) tokens. Usage::

    python benches/bench_capture.py [--windows 16] [--context 96] [--batch-size 4] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

CONFIGS = ["bare-full", "bare-body", "capture-l15-digits", "capture-all-all"]
_CAPTURE = {"capture-l15-digits": ([15], "digits"), "capture-all-all": ("all", "all")}


def _series(n_windows: int, context: int, seed: int = 0) -> list[np.ndarray]:
    """Airline-like monthly series: trend × seasonality + noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(context)
    out = []
    for i in range(n_windows):
        level = 100 + 20 * i
        season = 1 + 0.2 * np.sin(2 * np.pi * (t + i) / 12)
        out.append(np.round((level + 1.5 * t) * season + rng.normal(0, 3, context), 1))
    return out


def _peak_rss_mib() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20


class Bench:
    def __init__(self, n_windows: int, context: int, batch_size: int):
        import torch

        from isofast.models import load_model
        from isofast.serializers import LLMTimeSerializer

        self.torch = torch
        self.lm = load_model("smollm2", device="cpu", dtype="float32")
        self.series = _series(n_windows, context)
        self.batch_size = batch_size
        ser = LLMTimeSerializer.preset("llama")
        ids = [self.lm.tokenizer(ser.encode(x).text)["input_ids"] for x in self.series]
        self.n_tokens = sum(len(i) for i in ids)
        pad = self.lm.tokenizer.pad_token_id or 0
        self.batches = []
        for b in range(0, len(ids), batch_size):
            chunk = ids[b : b + batch_size]
            T = max(len(i) for i in chunk)
            x = torch.full((len(chunk), T), pad, dtype=torch.long)
            m = torch.zeros((len(chunk), T), dtype=torch.long)
            for j, i in enumerate(chunk):
                x[j, : len(i)] = torch.tensor(i)
                m[j, : len(i)] = 1
            self.batches.append((x, m))
        self.tmp = tempfile.mkdtemp(prefix="isofast-bench-capture-")
        self.k = 0
        self.last_written = 0

    def run(self, config: str) -> None:
        """One pass over all windows with ``config``."""
        torch, lm = self.torch, self.lm
        if config in ("bare-full", "bare-body"):
            fn = lm.model if config == "bare-full" else lm.model.model
            with torch.inference_mode():
                for x, m in self.batches:
                    fn(input_ids=x, attention_mask=m)
            return
        from isofast.capture import capture

        layers, positions = _CAPTURE[config]
        out = os.path.join(self.tmp, f"run{self.k}")
        self.k += 1
        capture(
            lm, self.series, out=out, layers=layers, positions=positions, batch_size=self.batch_size, progress=False
        )
        self.last_out = out

    def cleanup(self) -> None:
        """Count and delete the last capture folder (outside the timings)."""
        out = getattr(self, "last_out", None)
        if out:
            self.last_written = sum(os.path.getsize(os.path.join(p, f)) for p, _, fs in os.walk(out) for f in fs)
            shutil.rmtree(out, ignore_errors=True)
            self.last_out = None

    def timed(self, config: str) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        self.run(config)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        self.cleanup()
        return wall, cpu

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def one(config: str, a) -> dict:
    """Subprocess: warm-up, one timed pass, peak RSS."""
    b = Bench(a.windows, a.context, a.batch_size)
    b.run(config)
    b.cleanup()
    wall, cpu = b.timed(config)
    b.close()
    return {
        "config": config,
        "tokens": b.n_tokens,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mib": _peak_rss_mib(),
        "written_bytes": b.last_written,
        "threads": b.torch.get_num_threads(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--context", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-rss", action="store_true", help="skip the per-config subprocess runs")
    ap.add_argument("--one", choices=CONFIGS, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(one(a.one, a)))
        return 0
    # The one-time conversion runs in a child so that this process stays small:
    # Linux keeps ru_maxrss across fork+exec, so the RSS children below would
    # otherwise report this process's peak instead of their own.
    subprocess.run([sys.executable, "-c", "from isofast.models import ensure_smollm2; ensure_smollm2()"], check=True)

    # 1. peak RSS, one subprocess per config, spawned before this process loads the model
    rss = {}
    if not a.no_rss:
        for cfg in CONFIGS:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                cfg,
                "--windows",
                str(a.windows),
                "--context",
                str(a.context),
                "--batch-size",
                str(a.batch_size),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rss[cfg] = json.loads(out.strip().splitlines()[-1])["peak_rss_mib"]

    # 2. paired rounds
    b = Bench(a.windows, a.context, a.batch_size)
    for cfg in CONFIGS:
        b.run(cfg)  # warm-up
        b.cleanup()
    wall = {c: [] for c in CONFIGS}
    cpu = {c: [] for c in CONFIGS}
    written = {}
    for r in range(a.rounds):
        order = CONFIGS[r % len(CONFIGS) :] + CONFIGS[: r % len(CONFIGS)]
        for cfg in order:
            w, c = b.timed(cfg)
            wall[cfg].append(w)
            cpu[cfg].append(c)
            if cfg.startswith("capture"):
                written[cfg] = b.last_written
    n_tok, threads = b.n_tokens, b.torch.get_num_threads()
    b.close()

    med = statistics.median
    print(
        f"SmolLM2-135M float32 on CPU ({threads} torch threads): {a.windows} windows × "
        f"{a.context} values = {n_tok} tokens, batch {a.batch_size}, {a.rounds} paired rounds"
    )
    print(
        f"{'config':<20}{'tok/s wall':>11}{'tok/CPU-s':>11}"
        f"{'wall vs full':>13}{'wall vs body':>13}{'CPU vs full':>12}{'CPU vs body':>12}"
        f"{'peak RSS MiB':>13}{'written MB':>11}"
    )
    results = {}
    for cfg in CONFIGS:

        def ratio(d, ref):
            # median of per-round throughput ratios = ref time / cfg time
            return med([t_ref / t for t, t_ref in zip(d[cfg], d[ref])])

        res = {
            "tokens_per_s": n_tok / med(wall[cfg]),
            "tokens_per_cpu_s": n_tok / med(cpu[cfg]),
            "wall_vs_full": ratio(wall, "bare-full"),
            "wall_vs_body": ratio(wall, "bare-body"),
            "cpu_vs_full": ratio(cpu, "bare-full"),
            "cpu_vs_body": ratio(cpu, "bare-body"),
            "peak_rss_mib": rss.get(cfg),
            "written_mb": written.get(cfg, 0) / 1e6,
            "wall_s": [round(x, 2) for x in wall[cfg]],
            "cpu_s": [round(x, 2) for x in cpu[cfg]],
        }
        results[cfg] = res
        print(
            f"{cfg:<20}{res['tokens_per_s']:>11.0f}{res['tokens_per_cpu_s']:>11.0f}"
            f"{res['wall_vs_full']:>13.2f}{res['wall_vs_body']:>13.2f}"
            f"{res['cpu_vs_full']:>12.2f}{res['cpu_vs_body']:>12.2f}"
            f"{(res['peak_rss_mib'] or float('nan')):>13.0f}{res['written_mb']:>11.1f}"
        )
    print(json.dumps({"tokens": n_tok, "threads": threads, "rounds": a.rounds, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
