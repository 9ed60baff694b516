"""One adaptation run: fine-tune, track, forecast before and after, save (``isofast adapt``).

Output folder (``out``)::

    run.json          the run's settings and their hash (guards the folder)
    summary.json      nmse_before, nmse_after (+ NLL, timings, loss curve summary)
    loss.csv          step, loss, lm_loss, penalty, seconds
    tracking.csv      step, layer, statistic, value   (+ tracking.parquet, tracking.json)
    figures/          tracking_<statistic>.png, loss.png
    model/            the adapted model (a local Hugging Face folder; LoRA merged)

NMSE (Σ(ŷ − y)²/Σy², :func:`isofast.metrics.nmse`, the study's) is of the
median of ``n_samples`` LM-head forecasts (:func:`isofast.forecast.forecast`,
seeded) of the dataset's held-out test windows, which the training windows
never overlap (:func:`isofast.study.datasets.load_split`). The probe set of
the tracker is the first ``probe_windows`` test contexts (contexts only).

A folder that already holds a *different* run (another ``run.json`` hash, or
files that are not an isofast adaptation run) is refused; the same settings
may be re-run into it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["adapt", "check_out", "forecast_nmse"]

RUN_FILE = "run.json"


class OutputFolderError(FileExistsError):
    """The output folder holds another run (or other files)."""


def check_out(out: Path, key: str, settings: dict) -> None:
    """Refuse an output folder that holds a different run (module docstring)."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputFolderError(f"--out {out} exists and is not a folder")
    entries = [p for p in out.iterdir()]
    if not entries:
        return
    run = out / RUN_FILE
    if not run.is_file():
        raise OutputFolderError(
            f"--out {out} is not empty and holds no isofast adaptation run ({RUN_FILE}); choose another folder"
        )
    try:
        old = json.loads(run.read_text())
    except (OSError, ValueError) as exc:
        raise OutputFolderError(f"--out {out}: cannot read {RUN_FILE} ({exc})") from None
    if old.get("key") != key:
        prev = old.get("settings", {})
        diff = sorted(k for k in set(prev) | set(settings) if prev.get(k) != settings.get(k))
        raise OutputFolderError(
            f"--out {out} already holds a different run (settings differ in {diff}); choose another folder"
        )


def forecast_nmse(
    lm,
    contexts: np.ndarray,
    targets: np.ndarray,
    *,
    n_samples: int,
    seed: int,
    serializer: Any = "llmtime",
    threads: int | None = 1,
) -> dict:
    """NMSE of the median forecast and the mean continuous NLL on test windows."""
    from isofast.forecast import forecast
    from isofast.metrics import nmse

    H = int(targets.shape[1])
    r = forecast(
        lm, contexts, H, n_samples=n_samples, seed=seed, serializer=serializer, target=targets, n_threads=threads
    )
    per = [nmse(targets[i], r.median[i]) for i in range(targets.shape[0])]
    return {
        "nmse": float(nmse(targets, r.median)),
        "nll": float(np.nanmean(r.nll)),
        "window_nmse": [float(v) for v in per],
        "seconds": float(r.seconds),
    }


def adapt(
    model: Any = "smollm2",
    data: Any = "airpassengers",
    *,
    out: Any,
    steps: int,
    lora: bool = False,
    track_every: int = 25,
    track_layers: Any = "auto",
    regularize: str | None = None,
    weight: float = 0.0,
    layer: int | None = None,
    batch_size: int = 4,
    lr: float | None = None,
    seed: int = 0,
    context: int = 64,
    horizon: int = 4,
    n_test: int = 8,
    length: int = 256,
    n_train_series: int = 32,
    column: str = "",
    probe_windows: int = 4,
    n_samples: int = 4,
    loss_on: str = "window",
    threads: int | None = None,
    device: Any = None,
    save_model: bool = True,
    cache: Any = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run one adaptation (module docstring); returns the summary dict."""
    import torch

    from isofast.adapt.data import TrainingSet, check_tokenizer, resolve_split
    from isofast.adapt.finetune import check_causal_lm, finetune, save_adapted
    from isofast.adapt.regularizers import Regularizer
    from isofast.adapt.report import plot_loss
    from isofast.adapt.tracking import IsotropyTracker
    from isofast.models import load_model
    from isofast.study.config import stable_hash

    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"--steps must be a positive int (a budget of {steps!r} steps trains nothing)")
    if track_every is not None and (not isinstance(track_every, int) or track_every < 1):
        raise ValueError(f"--track-every must be a positive int, got {track_every!r}")
    reg = None
    if regularize is not None:
        if layer is None:
            raise ValueError("--regularize needs --layer")
        reg = Regularizer(regularize, float(weight), int(layer))
    out = Path(out)
    settings = {
        "model": str(getattr(model, "name", model)),
        "data": str(data),
        "steps": steps,
        "lora": bool(lora),
        "track_every": track_every,
        "track_layers": track_layers,
        "regularize": regularize,
        "weight": float(weight),
        "layer": layer,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "context": context,
        "horizon": horizon,
        "n_test": n_test,
        "length": length,
        "n_train_series": n_train_series,
        "column": column,
        "probe_windows": probe_windows,
        "n_samples": n_samples,
        "loss_on": loss_on,
    }
    key = stable_hash("isofast-adapt-1", settings)
    check_out(out, key, settings)
    t_all = time.perf_counter()
    # bad data fails before the (slower) model load
    split = resolve_split(
        data,
        context=context,
        horizon=horizon,
        n_test=n_test,
        length=length,
        n_train_series=n_train_series,
        column=column,
        seed=seed,
    )
    lm = load_model(model, device=device)
    check_causal_lm(lm)
    check_tokenizer(lm.tokenizer)
    if reg is not None:
        reg.check(lm.model)
    train = TrainingSet(
        lm.tokenizer, split.train_context, split.train_target, loss_on=loss_on, max_length=lm.max_length
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_FILE).write_text(json.dumps({"key": key, "settings": settings}, indent=2, default=str))
    log(
        f"{split.name}: {len(train)} training windows, {split.test_context.shape[0]} test windows "
        f"(context {split.context}, horizon {split.horizon})"
    )
    before = forecast_nmse(
        lm, split.test_context, split.test_target, n_samples=n_samples, seed=seed, threads=threads or 1
    )
    log(f"NMSE before: {before['nmse']:.4g}")
    tracker = None
    if track_every:
        tracker = IsotropyTracker(
            split.test_context[: max(1, probe_windows)],
            tokenizer=lm.tokenizer,
            every=track_every,
            layers=track_layers,
            cache=cache,
            seed=seed,
        )
    res = finetune(
        lm,
        train,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        lora=lora,
        regularizer=reg,
        tracker=tracker,
        threads=threads,
        log=log,
    )
    after = forecast_nmse(
        lm, split.test_context, split.test_target, n_samples=n_samples, seed=seed, threads=threads or 1
    )
    log(f"NMSE after: {after['nmse']:.4g}")
    files: dict = {}
    import pandas as pd

    pd.DataFrame(res.loss_curve).to_csv(out / "loss.csv", index=False)
    files["loss"] = str(out / "loss.csv")
    files["loss_figure"] = plot_loss({"train": res.loss_curve}, out / "figures" / "loss.png")
    if tracker is not None:
        files["tracking"] = tracker.write(out)
    if save_model:
        files["model"] = str(save_adapted(lm, out / "model"))
    summary = {
        "nmse_before": before["nmse"],
        "nmse_after": after["nmse"],
        "nll_before": before["nll"],
        "nll_after": after["nll"],
        "window_nmse_before": before["window_nmse"],
        "window_nmse_after": after["window_nmse"],
        "dataset": split.to_dict(),
        "model": lm.name,
        "settings": settings,
        "key": key,
        "finetune": res.to_dict(),
        "tracking_seconds": res.tracking_seconds,
        "tracking_overhead": (res.tracking_seconds / res.train_seconds) if res.train_seconds > 0 else None,
        "seconds": time.perf_counter() - t_all,
        "files": files,
        "torch_version": torch.__version__,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
