"""``isofast adapt``: fine-tune a causal LM on numeric series with isotropy tracked.

Examples::

    isofast adapt --data airpassengers --steps 50 --out runs/air
    isofast adapt --data RBF_0.1 --steps 40 --lora --track-every 10 --out runs/rbf
    isofast adapt --data series.csv --steps 30 --regularize isoscore --weight 0.5 --layer 15 --out runs/reg

--data is a KernelSynth preset, a registry dataset (``isofast data list``) or
a CSV file. The folder gets the adapted model (``model/``, a local Hugging
Face folder), ``tracking.csv``/``.parquet`` (step, layer, statistic, value),
figures, ``loss.csv`` and ``summary.json`` (``nmse_before``, ``nmse_after``).
Regulariser sign (I-STAR): --weight > 0 pushes towards more isotropy, < 0
towards less.
"""

from __future__ import annotations

import argparse
import sys


def _layers(text: str):
    if text == "auto":
        return "auto"
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--track-layers must be 'auto' or comma-separated ints, got {text!r}"
        ) from None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "adapt",
        help="fine-tune an LM on numeric series (full or LoRA) with isotropy tracked / regularised",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default="smollm2", help="bundled name (smollm2, tiny-llama) or a local HF folder")
    p.add_argument("--data", required=True, help="KernelSynth preset, registry dataset or CSV file")
    p.add_argument("--column", default="", help="column of a multi-column dataset / CSV")
    p.add_argument("--steps", type=int, required=True, help="optimiser steps (the budget)")
    p.add_argument("--batch-size", type=int, default=4, help="windows per step (default 4)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-4 full, 1e-3 LoRA)")
    p.add_argument("--lora", action="store_true", help="LoRA through peft instead of full fine-tuning")
    p.add_argument("--track-every", type=int, default=25, help="measure isotropy every K steps (0: off; default 25)")
    p.add_argument("--track-layers", type=_layers, default="auto", help="'auto' or e.g. 0,10,20,30")
    p.add_argument("--probe-windows", type=int, default=4, help="test contexts in the probe set (default 4)")
    p.add_argument("--regularize", choices=["isoscore", "logz"], default=None, help="isotropy regulariser")
    p.add_argument("--weight", type=float, default=0.0, help="regulariser weight (>0 more isotropy, <0 less)")
    p.add_argument("--layer", type=int, default=None, help="layer whose hidden states are regularised")
    p.add_argument("--context", type=int, default=64, help="context values per window (default 64)")
    p.add_argument("--horizon", type=int, default=4, help="forecast horizon (default 4)")
    p.add_argument("--n-test", type=int, default=8, help="held-out test windows (default 8)")
    p.add_argument("--n-samples", type=int, default=4, help="forecast samples per window (default 4)")
    p.add_argument(
        "--loss-on",
        choices=["window", "target"],
        default="window",
        help="value tokens in the loss: the whole window or the target only",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: cuda when present)")
    p.add_argument("--no-save-model", action="store_true", help="do not write the adapted model")
    p.add_argument("--out", required=True, help="output folder (refused if it holds a different run)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from isofast.adapt.run import adapt

    if args.regularize is None and (args.weight != 0.0 or args.layer is not None):
        raise ValueError("--weight/--layer need --regularize isoscore|logz")
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr))
    s = adapt(
        args.model,
        args.data,
        out=args.out,
        steps=args.steps,
        lora=args.lora,
        track_every=args.track_every or None,
        track_layers=args.track_layers,
        regularize=args.regularize,
        weight=args.weight,
        layer=args.layer,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        context=args.context,
        horizon=args.horizon,
        n_test=args.n_test,
        column=args.column,
        probe_windows=args.probe_windows,
        n_samples=args.n_samples,
        loss_on=args.loss_on,
        threads=args.threads,
        device=args.device,
        save_model=not args.no_save_model,
        log=log,
    )
    ft = s["finetune"]
    print(
        f"nmse_before {s['nmse_before']:.6g}  nmse_after {s['nmse_after']:.6g}  "
        f"({ft['steps']} steps, {ft['steps_per_second']:.3g} steps/s, tracking {s['tracking_seconds']:.1f} s)"
    )
    print(f"summary: {args.out}/summary.json")
    return 0
