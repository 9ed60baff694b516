"""Fine-tuning a causal LM on LLMTime training windows: full or LoRA (peft).

The loop is plain PyTorch (AdamW, constant learning rate, gradient-norm
clipping) so that a run is **seeded and deterministic on CPU**: the LoRA
initialisation and everything else that draws from torch's RNG happens under
``torch.manual_seed(seed)`` inside a forked RNG (the caller's RNG is
untouched), the batches are a seeded permutation of the training windows
(:meth:`isofast.adapt.data.TrainingSet.order`), and the model is in train
mode with the architecture's own dropout (0 for Llama/SmolLM2). Two runs
with the same inputs give bitwise-equal weights (tested). On a GPU
(``device="cuda"``, the default when one is present) kernels may not be
bitwise reproducible.

Loss: the model's next-token cross-entropy over the value tokens of the
batch (labels of :mod:`isofast.adapt.data`; mean over scored tokens), plus
``weight · penalty`` of an optional :class:`~isofast.adapt.regularizers.Regularizer`
on one layer's hidden states. LoRA (Hu et al. 2022) goes through ``peft``
(``pip install 'isofast[adapt]'``): rank ``lora_r``, scaling
``lora_alpha / lora_r``, peft's default target modules for the architecture
(``q_proj``/``v_proj`` for Llama) unless ``lora_targets`` is given; the
adapted model is saved merged (a plain Hugging Face folder that
:func:`isofast.models.load_model` reads).

Tracking: an :class:`~isofast.adapt.tracking.IsotropyTracker` measures before
the first step, every ``tracker.every`` steps and after the last; its time
is kept apart from the training time (``FinetuneResult.tracking_seconds``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from isofast.forecast import (
    _torch_threads,  # one home for "n torch threads during a call"
)

__all__ = ["FinetuneResult", "check_causal_lm", "finetune", "prepare_model", "save_adapted"]

DEFAULT_LR = {"full": 1e-4, "lora": 1e-3}


def check_causal_lm(lm) -> None:
    """Refuse a model without a causal-LM head (``ValueError`` naming it)."""
    kind = getattr(lm, "kind", "causal-lm")
    m = getattr(lm, "model", lm)
    name = getattr(lm, "name", type(m).__name__)
    if kind != "causal-lm" or not hasattr(m, "get_output_embeddings") or m.get_output_embeddings() is None:
        raise ValueError(
            f"model {name!r} has no causal-LM head ({kind}); fine-tuning on LLMTime text needs a causal "
            "language model (e.g. smollm2, tiny-llama, or a local *ForCausalLM folder)"
        )


def _peft():
    try:
        import peft
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("LoRA needs peft: pip install 'isofast[adapt]'") from exc
    return peft


def prepare_model(
    model,
    *,
    lora: bool = False,
    lora_r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.0,
    lora_targets: list | None = None,
):
    """The trainable module: the model itself (full fine-tuning) or a peft
    LoRA wrapper (call under a seeded RNG: LoRA's A matrices are random)."""
    if not lora:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if lora_r < 1:
        raise ValueError(f"lora_r must be ≥ 1, got {lora_r}")
    peft = _peft()
    cfg = peft.LoraConfig(
        r=int(lora_r),
        lora_alpha=int(lora_alpha),
        lora_dropout=float(lora_dropout),
        target_modules=lora_targets,
        task_type="CAUSAL_LM",
        bias="none",
    )
    return peft.get_peft_model(model, cfg)


@dataclass
class FinetuneResult:
    """What :func:`finetune` did; ``model`` is the trained (merged) model."""

    model: Any
    steps: int
    lora: bool
    loss_curve: list = field(default_factory=list)  # per step: step, loss, lm_loss, penalty, seconds
    train_seconds: float = 0.0
    tracking_seconds: float = 0.0
    trainable_params: int = 0
    total_params: int = 0
    settings: dict = field(default_factory=dict)

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.train_seconds if self.train_seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        return {
            "steps": self.steps,
            "lora": self.lora,
            "loss_curve": self.loss_curve,
            "train_seconds": self.train_seconds,
            "tracking_seconds": self.tracking_seconds,
            "steps_per_second": self.steps_per_second,
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "settings": self.settings,
        }


def finetune(
    lm,
    train,
    *,
    steps: int,
    batch_size: int = 4,
    lr: float | None = None,
    seed: int = 0,
    lora: bool = False,
    lora_r: int = 8,
    lora_alpha: int = 16,
    lora_targets: list | None = None,
    regularizer=None,
    tracker=None,
    grad_clip: float | None = 1.0,
    weight_decay: float = 0.0,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
    log_every: int = 10,
) -> FinetuneResult:
    """Fine-tune ``lm`` (a :class:`isofast.models.LoadedModel`, modified in
    place) on ``train`` (a :class:`isofast.adapt.data.TrainingSet`) for
    ``steps`` optimiser steps of ``batch_size`` windows (module docstring).

    ``lr`` defaults to 1e-4 (full) or 1e-3 (LoRA). ``regularizer``: a
    :class:`~isofast.adapt.regularizers.Regularizer`; ``tracker``: an
    :class:`~isofast.adapt.tracking.IsotropyTracker`. Returns a
    :class:`FinetuneResult` whose ``model`` is the trained model (LoRA
    merged into the weights); ``lm.model`` is replaced by it.
    """
    import torch

    check_causal_lm(lm)
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int (a budget of {steps!r} steps trains nothing)")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if lr is None:
        lr = DEFAULT_LR["lora" if lora else "full"]
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    model = lm.model
    if regularizer is not None:
        regularizer.check(model)
    dev = next(model.parameters()).device
    order = train.order(int(steps), int(batch_size), seed)
    curve: list = []
    with _torch_threads(torch, threads), torch.random.fork_rng(devices=[] if dev.type == "cpu" else [dev]):
        torch.manual_seed(int(seed))
        net = prepare_model(model, lora=lora, lora_r=lora_r, lora_alpha=lora_alpha, lora_targets=lora_targets)
        params = [p for p in net.parameters() if p.requires_grad]
        n_train = sum(p.numel() for p in params)
        n_total = sum(p.numel() for p in net.parameters())
        opt = torch.optim.AdamW(params, lr=float(lr), weight_decay=float(weight_decay))
        if tracker is not None:
            tracker.measure(net, 0)
        net.train()
        t_train = 0.0
        need_hidden = regularizer is not None
        for step in range(1, int(steps) + 1):
            t0 = time.perf_counter()
            batch = train.collate(order[step - 1], device=dev)
            out = net(**batch, output_hidden_states=need_hidden, use_cache=False)
            lm_loss = out.loss
            loss = lm_loss
            pen_v = float("nan")
            if regularizer is not None:
                rows = batch["labels"] != -100
                if regularizer.weight != 0:
                    pen = regularizer.penalty(net, out.hidden_states, out.logits, rows)
                    loss = lm_loss + regularizer.weight * pen.to(lm_loss.dtype)
                    pen_v = float(pen.detach())
                else:  # logged only: weight 0 leaves the loss (and its graph) untouched
                    with torch.no_grad():
                        pen_v = float(regularizer.penalty(net, out.hidden_states, out.logits, rows))
            if not torch.isfinite(loss):
                raise ArithmeticError(f"the training loss became {float(loss)} at step {step}; lower lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params, float(grad_clip))
            opt.step()
            dt = time.perf_counter() - t0
            t_train += dt
            curve.append(
                {
                    "step": step,
                    "loss": float(loss.detach()),
                    "lm_loss": float(lm_loss.detach()),
                    "penalty": pen_v,
                    "seconds": dt,
                }
            )
            if log is not None and (step == 1 or step % max(1, log_every) == 0 or step == steps):
                log(f"step {step}/{steps}: loss {curve[-1]['loss']:.4f} (lm {curve[-1]['lm_loss']:.4f}), {dt:.2f} s")
            if tracker is not None:
                tracker.maybe_measure(net, step)
        if tracker is not None:
            tracker.finish(net, int(steps))
    net.eval()
    if lora:
        net = net.merge_and_unload()
    for p in net.parameters():
        p.requires_grad_(False)
    lm.model = net
    return FinetuneResult(
        model=net,
        steps=int(steps),
        lora=bool(lora),
        loss_curve=curve,
        train_seconds=t_train,
        tracking_seconds=tracker.seconds if tracker is not None else 0.0,
        trainable_params=int(n_train),
        total_params=int(n_total),
        settings={
            "batch_size": int(batch_size),
            "lr": float(lr),
            "seed": int(seed),
            "lora": bool(lora),
            "lora_r": lora_r if lora else None,
            "lora_alpha": lora_alpha if lora else None,
            "grad_clip": grad_clip,
            "weight_decay": weight_decay,
            "regularizer": regularizer.to_dict() if regularizer is not None else None,
            "loss_on": getattr(train, "loss_on", None),
            "n_train_windows": len(train),
        },
    )


def save_adapted(lm, folder: Any) -> Path:
    """Save the (merged) model and its tokenizer as a local Hugging Face folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lm.model.save_pretrained(str(folder), safe_serialization=True)
    if lm.tokenizer is not None:
        lm.tokenizer.save_pretrained(str(folder))
    return folder
