"""Benchmark: capture overhead of isofast.tsfm against each family's bare calls.

For every family whose package is installed: a random-init checkpoint at the
published model's size (built with the family's own config class and saved
with its own save_pretrained, as the tests do; no weights are downloaded) is
loaded through ``isofast.load_tsfm``; then, on the same batch of real
contexts (CO2, statsmodels) at a realistic context length:

* ``bare prefill``: the family's own forward over the captured stack, no hooks;
* ``capture``: ``adapter.embed`` of every layer and both sites (hooks, call
  and shape checks, copies to float32 numpy);
* ``bare forecast``: the family's own forecast call;
* ``one pass``: ``adapter.forecast_with_capture`` (the forecast with the
  capture hooks on its own first pass of the stack, every layer and both
  sites; the separate prefill where the family's forecast does not run that
  pass, docs/models.md).

Overhead = the median over ``--repeat`` interleaved (prefill, capture) pairs
of capture / bare prefill, − 1 (the target is ≤ 15%); capture / bare
forecast is reported too. The one-pass overhead = the median over
``--fold-repeat`` interleaved (bare forecast, one pass) pairs of one pass /
bare forecast, − 1: "forecast and capture" against "forecast alone". Timings are medians after one warm-up, torch on ``--threads`` threads. Peak RSS is reported
per family (each family runs in its own process).

    python benches/bench_tsfm_capture.py                    # every installed family
    python benches/bench_tsfm_capture.py --families chronos-bolt,timesfm-2.5 --repeat 5
    python benches/bench_tsfm_capture.py --families chronos-2,moirai --future-tokens   # capture at H's future tokens
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Sizes of the published checkpoints (their config.json), passed to each
# family's build_random; contexts at the published context length.
SIZES: dict[str, tuple[dict, int]] = {
    # chronos-t5-small: d_model 512, 6 + 6 layers, context 512
    "chronos": ({"d_model": 512, "num_layers": 6, "num_decoder_layers": 6, "context_length": 512}, 512),
    # chronos-bolt-small: d_model 512, 6 layers, 8 heads, d_ff 2048, patches of 16, context 2048
    "chronos-bolt": (
        {"d_model": 512, "num_layers": 6, "num_heads": 8, "d_ff": 2048, "context_length": 2048, "patch": 16},
        512,
    ),
    # chronos-2: d_model 768, 12 layers, patches of 16, context 8192 (read at 512)
    "chronos-2": ({"d_model": 768, "num_layers": 12, "context_length": 8192, "patch": 16}, 512),
    # timesfm-2.5-200m: d_model 1280, 20 layers, 16 heads, patches of 32
    "timesfm-2.5": ({"d_model": 1280, "num_layers": 20, "num_heads": 16, "patch": 32}, 1024),
    # timesfm-2.0-500m: d_model 1280, 50 layers; 1.0-200m: 20 layers (the smaller one here), context 512
    "timesfm": ({"d_model": 1280, "num_layers": 20, "num_heads": 16, "patch": 32, "context_length": 512}, 512),
    # a PatchTST at the paper's ETT size: d_model 128, 3 layers, patches of 16 stride 8, context 512
    "patchtst": (
        {"d_model": 128, "num_layers": 3, "num_heads": 16, "context_length": 512, "patch": 16, "stride": 8},
        512,
    ),
    # moirai-1.1-R-small / moirai-2.0-R-small: d_model 384, 6 layers
    "moirai": ({"d_model": 384, "num_layers": 6, "patch": 16}, 512),
    "moirai-2": ({"d_model": 384, "num_layers": 6, "patch": 16}, 512),
    # MOMENT-1-small: d_model 512, 8 layers (always 512 values)
    "moment": ({"d_model": 512, "num_layers": 8}, 512),
}


def _median_time(fn, repeat: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _pairs(a, b, repeat: int) -> tuple[list, list, list]:
    """Times of ``repeat`` interleaved (a, b) / (b, a) pairs, and b / a per pair."""
    ta, tb, ratios = [], [], []
    for i in range(repeat):
        got = {}
        for fn in (a, b) if i % 2 == 0 else (b, a):
            t = time.perf_counter()
            fn()
            got[fn] = time.perf_counter() - t
        ta.append(got[a]), tb.append(got[b]), ratios.append(got[b] / got[a])
    return ta, tb, ratios


def child(
    family: str, repeat: int, threads: int, batch: int, fold_repeat: int | None = None, future: bool = False
) -> dict:
    import resource

    import torch

    import isofast
    from isofast import tsfm

    torch.set_num_threads(threads)
    size, ctx_len = SIZES[family]
    y = np.asarray(isofast.data.load("co2", nan="interpolate").values, np.float64)
    ctxs = [y[i * 37 : i * 37 + ctx_len] for i in range(batch)]
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        try:
            tsfm.build_random(family, d, seed=0, **size)
        except TypeError as exc:  # a family whose build_random takes other size names
            return {"family": family, "error": f"build_random{tuple(size)}: {exc}"}
        build = time.perf_counter() - t
        m = isofast.load_tsfm(f"{family}:{d}")
        if future and m.future_tokens is not None:
            # capture the rows the forecast at H = 64 computes (its future tokens): one pass
            m.set_future_tokens(m.future_tokens_for(64))
        n_params = sum(p.numel() for p in m.model.parameters())
        kept = m.serializer.kept(ctx_len)
        arr = np.stack([c[-kept:] for c in ctxs]).astype(np.float32)

        def prefill():
            with torch.inference_mode():
                m._prefill(arr)

        def capture():
            m.embed(ctxs, layers="all", sites=("residual", "attention"), batch_size=batch)

        # paired and interleaved (prefill, capture, capture, prefill, …): a
        # shared VM's speed drifts by more than the overhead between blocks of
        # runs, so the overhead is the median of the per-pair ratios
        prefill(), capture()
        bares, caps, ratios = _pairs(prefill, capture, repeat)
        bare, cap = statistics.median(bares), statistics.median(caps)
        fc = _median_time(lambda: m.forecast(ctxs, 64), max(1, repeat // 2))
        info = {}

        def forecast():
            m.forecast(ctxs, 64)

        def one_pass():
            info.update(
                m.forecast_with_capture(ctxs, 64, layers="all", sites=("residual", "attention"), batch_size=batch)[2]
            )

        one_pass()  # warm-up (forecast() ran above)
        f_bare, f_one, f_ratios = _pairs(forecast, one_pass, fold_repeat or repeat)
    return {
        "family": family,
        "parameters": n_params,
        "d_model": m.d_model,
        "layers": m.n_layers,
        "future_tokens": m.future_tokens,
        "context": ctx_len,
        "tokens": m.serializer.n_tokens(ctx_len),
        "batch": batch,
        "threads": threads,
        "build_s": build,
        "bare_prefill_s": bare,
        "capture_s": cap,
        "bare_forecast_s": fc,
        "overhead_vs_prefill": statistics.median(ratios) - 1.0,
        "pair_ratios": ratios,
        "capture_over_forecast": cap / fc,
        "one_pass_joint": bool(info.get("joint")),
        "one_pass_calls": info.get("calls"),
        "one_pass_reason": info.get("reason", ""),
        "one_pass_bare_forecast_s": statistics.median(f_bare),
        "one_pass_s": statistics.median(f_one),
        "one_pass_overhead_vs_forecast": statistics.median(f_ratios) - 1.0,
        "one_pass_pair_ratios": f_ratios,
        "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", default=",".join(SIZES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fold-repeat", type=int, default=None, help="(forecast, one pass) pairs; default --repeat")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument(
        "--future-tokens",
        action="store_true",
        help="chronos-2 and moirai: capture with the future tokens of the H = 64 forecast (set_future_tokens)",
    )
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.repeat, a.threads, a.batch, a.fold_repeat, a.future_tokens)))
        return
    import importlib.util
    import os

    from isofast.tsfm.spec import FAMILIES

    out = []
    for fam in a.families.split(","):
        missing = [p for p in FAMILIES[fam].packages if importlib.util.find_spec(p) is None]
        if missing:
            print(f"{fam}: skipped ({', '.join(missing)} not installed)", flush=True)
            continue
        load0 = os.getloadavg()[0]
        r = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                fam,
                "--repeat",
                str(a.repeat),
                "--threads",
                str(a.threads),
                "--batch",
                str(a.batch),
            ]
            + (["--fold-repeat", str(a.fold_repeat)] if a.fold_repeat else [])
            + (["--future-tokens"] if a.future_tokens else []),
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            print(f"{fam}: failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
            continue
        res = json.loads(r.stdout.strip().splitlines()[-1])
        res["load_before"], res["load_after"] = load0, os.getloadavg()[0]
        out.append(res)
        if "error" in res:
            print(f"{fam}: {res['error']}", flush=True)
            continue
        print(
            f"{fam:13s} {res['parameters'] / 1e6:6.1f}M params, ctx {res['context']} ({res['tokens']} tokens) × "
            f"{res['batch']}: prefill {res['bare_prefill_s'] * 1e3:8.1f} ms, capture {res['capture_s'] * 1e3:8.1f} ms "
            f"(overhead {100 * res['overhead_vs_prefill']:+5.1f}%), forecast {res['bare_forecast_s'] * 1e3:8.1f} ms, "
            f"one pass {res['one_pass_s'] * 1e3:8.1f} ms vs forecast {res['one_pass_bare_forecast_s'] * 1e3:8.1f} ms "
            f"({100 * res['one_pass_overhead_vs_forecast']:+5.1f}%, "
            f"{'joint' if res['one_pass_joint'] else 'separate prefill'}), "
            f"peak {res['peak_rss_MiB']:.0f} MiB, load {load0:.1f}→{res['load_after']:.1f}",
            flush=True,
        )
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
