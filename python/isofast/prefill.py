"""One prefill per window: the capture's forward pass also feeds the forecast.

Before issue 13 a study cell of a language model ran every window's context
through the model twice: once in :func:`isofast.capture.capture` (hidden
states of every layer) and once in :func:`isofast.forecast.forecast` (the
prompt's KV cache). :func:`forecast_and_capture` runs it once.

How
---
:func:`isofast.capture.capture` runs one window per forward pass
(``batch_size=1``, so no padding) with ``use_cache`` on; a forward hook on the
model body keeps that pass's KV cache and final hidden states, and the
capture's ``on_batch`` callback hands them to the forecast:

* the capture reads the window's LLMTime text *with* its trailing separator
  (what :meth:`~isofast.study.models_lm.LMModel.rows_per_window` counts); the
  forecast's prompt is the same text *without* it (module docstring of
  :mod:`isofast.forecast`). When the prompt's tokens are a prefix of the
  capture's tokens — always, for tokenizers that split digits — causal
  attention makes the first ``len(prompt)`` positions of the capture's pass
  the prompt's own pass: the KV cache is cropped to them and the logits after
  the prompt are the head applied to the final hidden state at position
  ``len(prompt) − 1``;
* otherwise (a tokenizer merging the separator into the last digit, a window
  the forecast had to shorten, a cache this code cannot crop, a model whose
  head applies a soft cap) the window gets its own prefill, counted in
  ``separate``.

The capture is written exactly as :func:`isofast.capture.capture` writes it
(same rows, same store format, same resume rules); the forecast equals
:func:`isofast.forecast.forecast` up to float rounding of the prompt pass (a
pass over ``len(prompt)+1`` tokens instead of ``len(prompt)``; measured and
tested in tests/test_forecast_batched.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PrefillStats", "forecast_and_capture"]


@dataclass
class PrefillStats:
    """Where each window's prompt came from, and where the time went."""

    joint: int = 0  # windows whose forecast used the capture's pass
    separate: int = 0  # windows that needed their own prefill
    capture_seconds: float = 0.0  # capture() wall time (its passes, the decoding groups run inside it)
    seconds: float = 0.0
    reasons: dict = field(default_factory=dict)  # why windows were separate → count

    def to_dict(self) -> dict:
        return {
            "joint": self.joint,
            "separate": self.separate,
            "capture_seconds": self.capture_seconds,
            "seconds": self.seconds,
            "reasons": dict(self.reasons),
        }


def _softcap(lm) -> bool:
    c = getattr(lm.model, "config", None)
    return bool(getattr(c, "final_logit_softcapping", None))


def forecast_and_capture(
    model: Any,
    contexts: Sequence[Any],
    horizon: int,
    *,
    out,
    layers: Any = "all",
    positions: Any = "all",
    sites: Sequence[str] = ("residual",),
    serializer: Any = "llmtime",
    device: Any = None,
    dtype: Any = "float32",
    resume: bool = True,
    n_samples: int = 5,
    temperature: float = 1.0,
    top_p: float | None = None,
    seed: int = 0,
    max_digits: int | None = None,
    max_batch: int | None = None,
    kv_budget: int | None = None,
    quantile_levels: Sequence[float] = (0.1, 0.5, 0.9),
    n_threads: int | None = None,
):
    """:func:`isofast.capture.capture` of ``contexts`` into ``out`` and
    :func:`isofast.forecast.forecast` of them, with one forward pass per
    window over the context (module docstring).

    Returns ``(ForecastResult, CaptureResult, PrefillStats)``. The capture
    arguments are :func:`~isofast.capture.capture`'s (one window per pass);
    the forecast arguments :func:`~isofast.forecast.forecast`'s (no target,
    no first digit: the study scores its forecasts itself).
    """
    from isofast import forecast as F
    from isofast import models as M
    from isofast.capture import capture

    torch = M._torch()
    t0 = time.perf_counter()
    F._check_forecast_args(horizon, temperature, n_samples, top_p, max_batch)
    series = [np.asarray(c, np.float64) for c in contexts]
    lm = F._load(model)
    # capture() moves and casts the model in place; do it first so the
    # forecast session sees the final device
    lm.model.to(device=M.resolve_device(device), dtype=M.resolve_dtype(dtype))
    lm.model.eval()
    n = 1 if temperature == 0 else int(n_samples)
    sess = F._Session(lm, serializer, max_digits)
    run = F._Run(
        sess,
        series,
        horizon,
        n=n,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        target=None,
        first_digit=False,
        max_batch=max_batch,
        kv_budget=kv_budget,
    )
    stats = PrefillStats()
    head = lm.model.get_output_embeddings()
    body = lm.model.base_model if getattr(lm.model, "base_model", None) is not None else lm.model
    grabbed: dict = {}
    seen: set = set()

    def keep(_m, _args, kwargs, output):
        grabbed["ids"] = kwargs.get("input_ids")
        grabbed["out"] = output

    def separate(s: int, why: str) -> None:
        stats.reasons[why] = stats.reasons.get(why, 0) + 1

    def on_batch(i: int, _n_tok: int) -> None:
        s = int(i)  # batch_size=1: batch i is window i
        seen.add(s)
        output, ids_t = grabbed.pop("out", None), grabbed.pop("ids", None)
        cache = None
        if output is not None:
            cache = getattr(output, "cache", None)
            if cache is None:
                cache = getattr(output, "past_key_values", None)
        _, _, pids = run.prompt(s)
        Lp = len(pids)
        why = ""
        if cache is None or ids_t is None:
            why = "no KV cache from the capture pass"
        elif _softcap(lm) or head is None:
            why = "the head is not a plain linear map"
        else:
            ids = ids_t[0].tolist()
            if not (len(ids) > Lp and ids[:Lp] == list(pids)):
                why = "the prompt's tokens are not a prefix of the capture's"
        if why:
            separate(s, why)
            pending.append(s)
            return
        last = head(output.last_hidden_state[:, Lp - 1])[0]
        F._Session.crop(cache, Lp)
        stats.joint += 1
        run.window(s, last, cache)

    pending: list[int] = []
    h = body.register_forward_hook(keep, with_kwargs=True)
    old_use_cache = getattr(lm.model.config, "use_cache", None)
    lm.model.config.use_cache = True
    try:
        with torch.inference_mode(), F._torch_threads(torch, n_threads):
            t1 = time.perf_counter()
            cap = capture(
                lm,
                series,
                serializer=serializer,
                layers=layers,
                positions=positions,
                out=out,
                device=device,
                dtype=dtype,
                batch_size=1,
                sites=tuple(sites),
                resume=resume,
                progress=False,
                on_batch=on_batch,
            )
            stats.capture_seconds = time.perf_counter() - t1
            grabbed.clear()
            # windows the capture did not run now (resumed, or already complete)
            for s in range(len(series)):
                if s not in seen:
                    separate(s, "captured earlier")
                    pending.append(s)
            for s in pending:
                run.window(s, *run.prefill(s))
            stats.separate = len(pending)
            run.dec.flush()
    finally:
        h.remove()
        lm.model.config.use_cache = old_use_cache
    res = run.result(quantile_levels, F._settings(sess, n, temperature, top_p, seed, horizon, max_digits, run.dec))
    stats.seconds = time.perf_counter() - t0
    res.settings["prefill"] = stats.to_dict()
    return res, cap, stats
