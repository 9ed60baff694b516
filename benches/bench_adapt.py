"""Adaptation benchmarks: tracking overhead, steps/s (full vs LoRA), experiment wall time.

    python benches/bench_adapt.py [--model smollm2] [--steps 6] [--batch-size 2] [--threads 2]
    python benches/bench_adapt.py --experiment-log /tmp/adexp/log.txt   # + the default experiment's wall time

* **Steps/s**: ``isofast.adapt.finetune.finetune`` for ``--steps`` optimiser
  steps of ``--batch-size`` LLMTime windows (context 64, horizon 4, ~275
  SmolLM2 tokens each) of airpassengers, full fine-tuning and LoRA (r = 8,
  q/v projections), each after one warm-up step; the median step time.
* **Tracking overhead**: one :meth:`IsotropyTracker.measure` (4 probe windows
  of 64 values → N = 972 rows per layer, 5 layers, the study's suite + head
  diagnostics; u* already cached) against the same training without
  tracking; the overhead at interval k is t_measure / (k · t_step), reported
  for the default k = 25 and measured directly as a tracked-vs-untracked run
  at k = ``--steps // 2``.
* Peak RSS (VmHWM) of the process at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--data", default="airpassengers")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--every", type=int, default=25, help="the default tracking interval")
    ap.add_argument("--experiment-log", default=None, help="log of a finished default experiment run")
    a = ap.parse_args()

    import torch
    from isofast.adapt.data import TrainingSet, resolve_split
    from isofast.adapt.finetune import finetune
    from isofast.adapt.tracking import IsotropyTracker
    from isofast.models import load_model

    torch.set_num_threads(a.threads)
    with open("/proc/loadavg") as f:
        print(f"load average at start: {f.read().split()[:3]}")
    split = resolve_split(a.data, context=64, horizon=4, n_test=4)
    base = load_model(a.model, device="cpu")
    ts = TrainingSet(base.tokenizer, split.train_context, split.train_target)
    print(f"{a.model}: {len(ts)} windows, ~{len(ts.windows[0].input_ids)} tokens each, batch {a.batch_size}")
    results = {}
    for lora in (False, True):
        lm = load_model(a.model, device="cpu")
        res = finetune(lm, ts, steps=a.steps + 1, batch_size=a.batch_size, lora=lora, seed=0)
        secs = [c["seconds"] for c in res.loss_curve[1:]]
        med = statistics.median(secs)
        results["lora" if lora else "full"] = med
        print(
            f"{'LoRA' if lora else 'full'}: median step {med:.2f} s ({1 / med:.3f} steps/s), "
            f"steps {[round(s, 2) for s in secs]}, trainable {res.trainable_params:,} of {res.total_params:,}"
        )
    # tracking: one measurement (u* cached by a first call)
    lm = load_model(a.model, device="cpu")
    tr = IsotropyTracker(split.test_context, tokenizer=lm.tokenizer, every=a.every)
    t0 = time.perf_counter()
    tr.measure(lm.model, 0)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    tr.measure(lm.model, 1)
    meas = time.perf_counter() - t0
    print(
        f"tracking: first measurement {first:.1f} s (incl. u* unless cached), then {meas:.1f} s "
        f"({len(tr.layers)} layers {tr.layers}, N = {tr.n_rows})"
    )
    for kind, t_step in results.items():
        print(f"  overhead at every={a.every}, {kind}: {meas / (a.every * t_step):.1%} of training time")
    # direct: tracked vs untracked LoRA run at k = steps // 2
    k = max(1, a.steps // 2)
    lm = load_model(a.model, device="cpu")
    tr = IsotropyTracker(split.test_context, tokenizer=lm.tokenizer, every=k)
    t0 = time.perf_counter()
    res = finetune(lm, ts, steps=a.steps, batch_size=a.batch_size, lora=True, seed=0, tracker=tr)
    wall_tracked = time.perf_counter() - t0
    lm = load_model(a.model, device="cpu")
    t0 = time.perf_counter()
    res0 = finetune(lm, ts, steps=a.steps, batch_size=a.batch_size, lora=True, seed=0)
    wall_plain = time.perf_counter() - t0
    print(
        f"direct, LoRA, {a.steps} steps, every={k} ({tr.n_measurements} measurements): tracked {wall_tracked:.1f} s "
        f"(training {res.train_seconds:.1f} s + tracking {res.tracking_seconds:.1f} s) vs untracked "
        f"{wall_plain:.1f} s; tracking / training = {res.tracking_seconds / res.train_seconds:.1%}, "
        f"{res.tracking_seconds / tr.n_measurements / (k * res0.train_seconds / a.steps):.1%} per interval"
    )
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    print(f"peak RSS {hwm / 1024:.0f} MiB")
    with open("/proc/loadavg") as f:
        print(f"load average at end: {f.read().split()[:3]}")
    if a.experiment_log:
        lines = Path(a.experiment_log).read_text().splitlines()
        done = [x for x in lines if " DONE " in x]
        print(
            "default experiment:",
            done[-1].strip() if done else f"not finished; last line: {lines[-1] if lines else ''}",
        )


if __name__ == "__main__":
    main()
