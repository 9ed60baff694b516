"""Capture throughput vs a bare forward pass over the same batches (CPU, SmolLM2).

Each configuration runs in its own subprocess so that its peak RSS is its own:

* ``bare-full``   ``model(input_ids, attention_mask)``: the causal-LM forward
                  with its LM head, nothing kept (what a user would otherwise run);
* ``bare-body``   the transformer body only (no LM head), nothing kept;
* ``capture-*``   :func:`isofast.capture` writing shards to a temporary folder:
                  ``l15-digits`` (one layer, digit tokens, both sites) and
                  ``all-all`` (every layer and site, every token: the worst case,
                  ~140 KB written per token).

The batches are identical: the same windows, serialized by the same LLMTime
serializer, right-padded the same way, ``batch_size`` windows each. Tokens/s
counts real (unpadded) tokens. Both wall-clock and process CPU time
(``time.process_time``: all threads, the capture's writer thread included) are
reported; on a shared machine the CPU-time ratio is the steadier one. Usage::

    python benches/bench_capture.py [--windows 4] [--context 96] [--batch-size 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


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


def run_one(config: str, n_windows: int, context: int, batch_size: int, repeat: int) -> dict:
    import torch

    from isofast.capture import capture
    from isofast.models import load_model
    from isofast.serializers import LLMTimeSerializer

    lm = load_model("smollm2", device="cpu", dtype="float32")
    series = _series(n_windows, context)
    ser = LLMTimeSerializer.preset("llama")
    ids = [lm.tokenizer(ser.encode(x).text)["input_ids"] for x in series]
    n_tokens = sum(len(i) for i in ids)
    pad = lm.tokenizer.pad_token_id or 0
    batches = []
    for b in range(0, len(ids), batch_size):
        chunk = ids[b : b + batch_size]
        T = max(len(i) for i in chunk)
        x = torch.full((len(chunk), T), pad, dtype=torch.long)
        m = torch.zeros((len(chunk), T), dtype=torch.long)
        for j, i in enumerate(chunk):
            x[j, : len(i)] = torch.tensor(i)
            m[j, : len(i)] = 1
        batches.append((x, m))

    cpu = {"s": 0.0}

    def bare(fn):
        with torch.inference_mode():
            fn(*batches[0])  # warm-up
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(repeat):
                for x, m in batches:
                    fn(x, m)
            cpu["s"] = time.process_time() - c0
            return time.perf_counter() - t0

    if config == "bare-full":
        secs = bare(lambda x, m: lm.model(input_ids=x, attention_mask=m))
    elif config == "bare-body":
        secs = bare(lambda x, m: lm.model.model(input_ids=x, attention_mask=m))
    else:
        layers, positions = {"capture-l15-digits": ([15], "digits"),
                             "capture-all-all": ("all", "all")}[config]
        with tempfile.TemporaryDirectory() as d:
            # warm-up on one batch
            capture(lm, series[:batch_size], out=os.path.join(d, "warm"), layers=layers,
                    positions=positions, batch_size=batch_size, progress=False)
            secs = 0.0
            c0 = time.process_time()
            for r in range(repeat):
                res = capture(lm, series, out=os.path.join(d, f"run{r}"), layers=layers,
                              positions=positions, batch_size=batch_size, progress=False)
                secs += res.seconds
            cpu["s"] = time.process_time() - c0
            rows = res.n_rows
            written = sum(
                os.path.getsize(os.path.join(p, f)) for p, _, fs in os.walk(os.path.join(d, "run0"))
                for f in fs
            )
        return {"config": config, "tokens": n_tokens * repeat, "seconds": secs,
                "tokens_per_s": n_tokens * repeat / secs, "rows_per_run": rows,
                "bytes_written_per_run": written, "peak_rss_mib": _peak_rss_mib(),
                "cpu_seconds": cpu["s"], "tokens_per_cpu_s": n_tokens * repeat / cpu["s"],
                "threads": torch.get_num_threads()}
    return {"config": config, "tokens": n_tokens * repeat, "seconds": secs,
            "tokens_per_s": n_tokens * repeat / secs, "peak_rss_mib": _peak_rss_mib(),
            "cpu_seconds": cpu["s"], "tokens_per_cpu_s": n_tokens * repeat / cpu["s"],
            "threads": torch.get_num_threads()}


CONFIGS = ["bare-full", "bare-body", "capture-l15-digits", "capture-all-all"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--context", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1, help="passes over the windows per run")
    ap.add_argument("--rounds", type=int, default=5,
                    help="rounds of all configs, interleaved; the best round is reported")
    ap.add_argument("--one", choices=CONFIGS, help=argparse.SUPPRESS)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(run_one(a.one, a.windows, a.context, a.batch_size, a.repeat)))
        return 0
    # the converted model must exist before timing anything
    from isofast.models import ensure_smollm2

    ensure_smollm2()
    configs = a.configs.split(",")
    runs: dict[str, list[dict]] = {c: [] for c in configs}
    # Interleaved rounds: on a shared machine, load changes over minutes; each
    # config sees the same conditions on average and the best round is kept.
    for _ in range(a.rounds):
        for cfg in configs:
            cmd = [sys.executable, __file__, "--one", cfg, "--windows", str(a.windows),
                   "--context", str(a.context), "--batch-size", str(a.batch_size),
                   "--repeat", str(a.repeat)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[cfg].append(json.loads(out.strip().splitlines()[-1]))
    results = {}
    for cfg, rs in runs.items():
        results[cfg] = {
            **rs[0],
            "tokens_per_s": max(r["tokens_per_s"] for r in rs),
            "tokens_per_cpu_s": max(r["tokens_per_cpu_s"] for r in rs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
            "all_tokens_per_s": [round(r["tokens_per_s"], 1) for r in rs],
            "all_tokens_per_cpu_s": [round(r["tokens_per_cpu_s"], 1) for r in rs],
        }
    first = results[configs[0]]
    print(f"SmolLM2-135M float32, CPU ({first['threads']} threads), {a.windows} windows × "
          f"{a.context} values ({first['tokens'] // a.repeat} tokens), batch {a.batch_size}, "
          f"best of {a.rounds} interleaved rounds")
    for key, label in (("tokens_per_s", "wall"), ("tokens_per_cpu_s", "CPU")):
        full = results.get("bare-full", {}).get(key)
        body = results.get("bare-body", {}).get(key)
        print(f"\n{'config':<22}{'tok/' + label + '-s':>12}{'vs full':>9}{'vs body':>9}"
              f"{'peak RSS MiB':>14}{'written MB':>12}  all rounds")
        for cfg, r in results.items():
            wr = r.get("bytes_written_per_run")
            print(f"{cfg:<22}{r[key]:>12.0f}"
                  f"{(r[key] / full if full else float('nan')):>9.2f}"
                  f"{(r[key] / body if body else float('nan')):>9.2f}"
                  f"{r['peak_rss_mib']:>14.0f}{(wr / 1e6 if wr else 0):>12.1f}  "
                  f"{r['all_' + key]}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
