"""Training windows for fine-tuning a causal LM on LLMTime text, value tokens only.

A window is a context x_1..x_C and its continuation y_1..y_H. As in
forecasting (:mod:`isofast.forecast`), the affine scaler is fitted on the
**context only** and the whole window is serialised with it
(``LLMTimeSerializer.encode(concat(x, y), scaler=fit(x))``), so the model is
trained on exactly the text it later continues; the tokenizer adds its
special tokens as in forecasting (``add_special_tokens=True``).

Loss mask ("value tokens only"): a token takes part in the next-token loss
when its characters belong to the serialised values — digits, signs and the
separators that delimit them (roles of :mod:`isofast.serializers.base`, read
through the tokenizer's offset mapping, the same rule as
:func:`isofast.capture`). Special tokens (BOS, padding) never do, nor does
the first token (nothing predicts it). ``loss_on``:

* ``"window"`` (default): every value token of the window — LLMTime-style
  fine-tuning on the whole serialised series;
* ``"target"``: only the tokens from the separator that closes the context
  onwards, i.e. exactly the tokens the forecaster generates and
  :func:`isofast.forecast.continuous_nll` scores.

Labels follow the Hugging Face convention: ``labels[t] = input_ids[t]`` where
the mask holds and −100 elsewhere; the model shifts them internally.

Splits: windows come from :func:`isofast.study.datasets.load_split` (training
windows end before the first test target: no target is ever trained on) —
this module only serialises them. A tokenizer that merges digits is refused
by :func:`isofast.forecast.digit_vocabulary`, as in forecasting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from isofast.serializers import LLMTimeSerializer, get_serializer
from isofast.serializers.base import OTHER

__all__ = [
    "EncodedWindow",
    "TrainingSet",
    "check_tokenizer",
    "encode_probe",
    "encode_window",
    "resolve_split",
]

LOSS_ON = ("window", "target")
IGNORE = -100


def _llmtime(serializer: Any) -> LLMTimeSerializer:
    ser = get_serializer(serializer)
    if not isinstance(ser, LLMTimeSerializer):
        raise TypeError(f"fine-tuning on text needs an LLMTime serializer, not {ser.name!r}")
    return ser


def check_tokenizer(tokenizer: Any, serializer: Any = "llmtime") -> LLMTimeSerializer:
    """The serializer, after checking that ``tokenizer`` gives one token per
    digit and reports offsets (a fast tokenizer); raises ``ValueError``."""
    from isofast.forecast import digit_vocabulary

    ser = _llmtime(serializer)
    digit_vocabulary(tokenizer, ser)  # refuses tokenizers that merge digits
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            "fine-tuning needs a fast tokenizer (offset mappings decide which tokens are value tokens); "
            f"{type(tokenizer).__name__} is not one"
        )
    return ser


@dataclass
class EncodedWindow:
    """One serialised window: token ids, the loss mask and the scaler's text."""

    input_ids: list
    loss_mask: np.ndarray  # bool, one per token
    n_context_values: int
    n_target_values: int

    @property
    def labels(self) -> list:
        return [t if m else IGNORE for t, m in zip(self.input_ids, self.loss_mask.tolist())]


def encode_window(
    tokenizer: Any,
    context: Any,
    target: Any = None,
    *,
    serializer: Any = "llmtime",
    loss_on: str = "window",
    max_length: int | None = None,
) -> EncodedWindow:
    """Serialise one window and build its value-token loss mask (module docstring)."""
    if loss_on not in LOSS_ON:
        raise ValueError(f"loss_on must be one of {LOSS_ON}, got {loss_on!r}")
    ser = _llmtime(serializer)
    ctx = np.asarray(context, np.float64).reshape(-1)
    tgt = np.empty(0) if target is None else np.asarray(target, np.float64).reshape(-1)
    if ctx.size < 1:
        raise ValueError("a training window needs at least one context value")
    if loss_on == "target" and tgt.size == 0:
        raise ValueError("loss_on='target' needs a target")
    scaler = ser.fit(ctx)
    enc = ser.encode(np.concatenate([ctx, tgt]), scaler=scaler)
    out = tokenizer(enc.text, add_special_tokens=True, return_offsets_mapping=True)
    ids = list(out["input_ids"])
    offsets = out["offset_mapping"]
    roles = np.full(len(ids), OTHER, np.uint8)
    starts = np.full(len(ids), -1, np.int64)
    for j, (s, e) in enumerate(offsets):
        if e > s:  # special tokens have empty spans
            r = enc.char_roles[s:e]
            if (r != OTHER).all():
                roles[j] = r[0]
            starts[j] = s
    mask = roles != OTHER
    mask[0] = False  # nothing predicts the first token
    if loss_on == "target":
        first = int(enc.value_starts[ctx.size]) - len(ser.time_sep)
        mask &= starts >= first
    if max_length is not None and len(ids) > max_length:
        raise ValueError(
            f"a window of {ctx.size}+{tgt.size} values is {len(ids)} tokens, more than the model's "
            f"{max_length}; shorten the context"
        )
    return EncodedWindow(ids, mask, int(ctx.size), int(tgt.size))


def encode_probe(tokenizer: Any, contexts: Sequence, *, serializer: Any = "llmtime") -> list:
    """Token ids of each probe context exactly as the forecaster prompts it:
    the serialised context without its trailing separator, special tokens added."""
    ser = _llmtime(serializer)
    out = []
    for c in contexts:
        enc = ser.encode(np.asarray(c, np.float64))
        out.append(list(tokenizer(enc.text[: -len(ser.time_sep)], add_special_tokens=True)["input_ids"]))
    return out


class TrainingSet:
    """Encoded training windows and seeded, padded mini-batches."""

    def __init__(
        self,
        tokenizer: Any,
        contexts: Any,
        targets: Any = None,
        *,
        serializer: Any = "llmtime",
        loss_on: str = "window",
        max_length: int | None = None,
    ):
        ctx = np.asarray(contexts, np.float64)
        if ctx.ndim != 2 or ctx.shape[0] == 0:
            raise ValueError(f"training contexts must be a non-empty windows × values array, got shape {ctx.shape}")
        tgt = None if targets is None else np.asarray(targets, np.float64)
        if tgt is not None and (tgt.ndim != 2 or tgt.shape[0] != ctx.shape[0]):
            raise ValueError(f"training targets must be {ctx.shape[0]} × H, got shape {tgt.shape}")
        self.serializer = check_tokenizer(tokenizer, serializer)
        self.tokenizer = tokenizer
        self.loss_on = loss_on
        self.windows = [
            encode_window(
                tokenizer,
                ctx[i],
                None if tgt is None else tgt[i],
                serializer=self.serializer,
                loss_on=loss_on,
                max_length=max_length,
            )
            for i in range(ctx.shape[0])
        ]
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:
            pad = getattr(tokenizer, "eos_token_id", None)
        self.pad_id = int(pad if pad is not None else 0)

    def __len__(self) -> int:
        return len(self.windows)

    def order(self, steps: int, batch_size: int, seed: int) -> np.ndarray:
        """(steps, batch_size) window indices: seeded epochs of permutations, so
        every window is seen once per epoch and runs with one seed agree."""
        rng = np.random.default_rng(seed)
        need = steps * batch_size
        parts = []
        while sum(p.size for p in parts) < need:
            parts.append(rng.permutation(len(self.windows)))
        return np.concatenate(parts)[:need].reshape(steps, batch_size)

    def collate(self, idx: Sequence[int], device=None) -> dict:
        """A right-padded batch: ``input_ids``, ``attention_mask``, ``labels``."""
        import torch

        ws = [self.windows[int(i)] for i in idx]
        T = max(len(w.input_ids) for w in ws)
        ids = torch.full((len(ws), T), self.pad_id, dtype=torch.long)
        att = torch.zeros((len(ws), T), dtype=torch.long)
        lab = torch.full((len(ws), T), IGNORE, dtype=torch.long)
        for b, w in enumerate(ws):
            n = len(w.input_ids)
            ids[b, :n] = torch.as_tensor(w.input_ids)
            att[b, :n] = 1
            lab[b, :n] = torch.as_tensor(w.labels)
        out = {"input_ids": ids, "attention_mask": att, "labels": lab}
        if device is not None:
            out = {k: v.to(device) for k, v in out.items()}
        return out


def resolve_split(
    data: Any,
    *,
    context: int = 64,
    horizon: int = 4,
    n_test: int = 8,
    length: int = 256,
    n_train_series: int = 32,
    column: str = "",
    seed: int = 0,
):
    """A :class:`isofast.study.datasets.DatasetSplit` for ``data``: a
    ``DatasetConfig``, a KernelSynth preset name, a registry dataset name or a
    CSV file (one column, or ``column``)."""
    from isofast.data import PRESETS, REGISTRY
    from isofast.study.config import DatasetConfig
    from isofast.study.datasets import load_split

    if isinstance(data, DatasetConfig):
        cfg = data
    else:
        if not isinstance(data, (str, Path)):
            raise TypeError(f"data must be a dataset name, a CSV path or a DatasetConfig, got {type(data).__name__}")
        name = str(data)
        p = Path(name).expanduser()
        if name in PRESETS:
            cfg = DatasetConfig(
                name=name,
                source="kernelsynth",
                context=context,
                horizon=horizon,
                n_test=n_test,
                length=length,
                n_train_series=n_train_series,
            )
        elif name in REGISTRY:
            cfg = DatasetConfig(
                name=name, source="registry", context=context, horizon=horizon, n_test=n_test, column=column
            )
        elif p.is_file():
            cfg = DatasetConfig(
                name=p.stem, source="csv", path=str(p), context=context, horizon=horizon, n_test=n_test, column=column
            )
        elif p.suffix or "/" in name:
            raise FileNotFoundError(f"data: no such file {name!r}")
        else:
            raise ValueError(
                f"data: {name!r} is neither a KernelSynth preset, a registry dataset nor a file "
                "(see `isofast data list`)"
            )
    split = load_split(cfg, seed=seed)
    if split.train_context.shape[0] == 0:
        raise ValueError(f"data {cfg.name!r}: no training windows before the first test target")
    return split
