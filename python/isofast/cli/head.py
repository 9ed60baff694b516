"""``isofast head``: the shift-invariance diagnostics of the hidden states
that enter a language model's head.

Examples::

    isofast head --capture caps/smollm2-l30
    isofast head --model smollm2 --data airpassengers --context 96

``--data`` is a file (``.csv``/``.tsv``/``.parquet``: every column a series
unless ``--column``; ``.npy``: a 1-D series or one series per row) or a dataset
name of :mod:`isofast.data` (``isofast data list``).

``head`` prints :class:`isofast.head.HeadReport` for the hidden states that
enter the LM head: from a capture folder (its last ``residual`` layer, taken
after the final norm; the head's weights come from the capture's model) or
computed directly from ``--model`` and ``--data``.

``head --model chronos:DIR --data …`` (or a bare Chronos-T5 folder) reads
Chronos' softmax head over its value bins: W is the decoder's ``lm_head``
and each window gives one context, the vector entering ``lm_head`` at the
first decoding step (:meth:`isofast.tsfm.chronos.ChronosAdapter.head_inputs`;
``--positions`` and ``--serializer`` do not apply: Chronos tokenizes with its
own mean-scaled bins). Other time-series families (chronos-bolt, chronos-2,
TimesFM, …) have no softmax head and are refused with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

from isofast.cli._common import DATA_HELP, cut_windows, is_tsfm, resolve_data


def register(subparsers) -> None:
    h = subparsers.add_parser(
        "head",
        help="shift-invariance diagnostics of the hidden states entering an LM head",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = h.add_mutually_exclusive_group(required=True)
    src.add_argument("--capture", help="a capture folder holding the last residual layer")
    src.add_argument("--data", help=DATA_HELP + " (with --model)")
    h.add_argument(
        "--model",
        default=None,
        help="the model whose head to use (default for --capture: the capture's model; "
        "for --data: smollm2); chronos:DIR or a Chronos-T5 folder for Chronos' value-bin head",
    )
    h.add_argument("--column", default=None)
    h.add_argument("--time-column", default=None)
    h.add_argument("--context", type=int, default=96)
    h.add_argument("--window-mode", default="sliding", choices=["first", "last", "sliding", "random"])
    h.add_argument("--n-windows", type=int, default=8, help="windows read with --data (default 8)")
    h.add_argument(
        "--positions",
        default="all",
        choices=["all", "last"],
        help="with --data: every token's hidden state, or the last of each window",
    )
    h.add_argument("--serializer", default="llmtime")
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--no-isotropy", action="store_true", help="skip isofast.analyze of C and W")
    h.add_argument("--threads", type=int, default=None, help="Rust threads (default all cores)")
    h.add_argument("--device", default=None)
    h.add_argument("--out", default=None, help="also write the report as JSON to this file")
    h.add_argument("--json", action="store_true", help="print JSON instead of a table")
    h.set_defaults(func=run_head)


def _capture_contexts(folder: str, model: str | None):
    from isofast.store import open_capture

    cap = open_capture(folder)
    mf = cap.manifest.get("model", {})
    n_layers = mf.get("num_layers")
    if "residual" not in cap.sites or n_layers is None or n_layers not in cap.layers_of("residual"):
        have = cap.layers_of("residual") if "residual" in cap.sites else []
        raise ValueError(
            f"{folder} lacks the last residual layer (L = {n_layers}, taken after the final norm: "
            f"what the LM head reads); captured residual layers: {have}. "
            "Capture it with: isofast capture … --layers -1 --sites residual"
        )
    name = model
    if name is None:
        from isofast.models import BUNDLED

        nm, path = mf.get("name"), mf.get("path")
        name = nm if nm in BUNDLED or path is None else path
    return cap.layer(n_layers, "residual"), name, mf.get("weights_hash"), cap


def _data_windows(args):
    """The contexts of ``--data`` (read before any model is loaded, so a bad
    name fails at once)."""
    series, _ = resolve_data(args.data, args.column, args.time_column)
    w, _ = cut_windows(series, args.context, 0, args.window_mode, args.context, args.n_windows, args.seed)
    return w


def _direct_contexts(args, lm, w):
    from isofast.head import head_inputs
    from isofast.serializers import get_serializer

    ser = get_serializer(args.serializer)
    rows = []
    for ctx in w.context:
        ids = lm.tokenizer(ser.encode(ctx).text, add_special_tokens=True)["input_ids"]
        h = head_inputs(lm, ids)
        rows.append(h[-1:] if args.positions == "last" else h)
    return np.concatenate(rows)


def _tsfm_with_head(spec: str) -> str:
    """``spec`` normalised when its family has a softmax head (Chronos-T5);
    ``InputError`` (one line, exit 2) before anything is loaded otherwise."""
    from isofast.errors import InputError
    from isofast.tsfm import adapter_class, parse_spec

    ms = parse_spec(spec)
    if not adapter_class(ms.family).has_head:
        raise InputError(
            f"{ms.family} has no softmax head; `isofast head` needs a model whose output layer is a softmax over "
            f"tokens: a language model, or chronos:DIR (Chronos-T5, 4096 value bins); {ms.family} forecasts with a "
            "direct (quantile/regression) head"
        )
    return str(ms)


def _run_head_tsfm(args, spec: str) -> int:
    from isofast.head import head_diagnostics
    from isofast.tsfm import load_tsfm

    spec = _tsfm_with_head(spec)
    w = _data_windows(args)
    ad = load_tsfm(spec, device=args.device)
    C = ad.head_inputs(list(w.context))
    W, b = ad.head()
    rep = head_diagnostics(
        W, C, b, isotropy=not args.no_isotropy, head_isotropy=not args.no_isotropy, n_threads=args.threads
    )
    name = f"{ad.family}:{ad.path}"
    source = f"{args.data}: {C.shape[0]} first-step decoder states (one per window of {args.context} values)"
    return _emit_head(args, rep, name, source, f"softmax head of {name} ({W.shape[0]} value bins)")


def _refuse_tsfm_capture(folder: str) -> None:
    from isofast.errors import InputError
    from isofast.store import read_manifest

    try:
        mf = read_manifest(Path(folder)) if Path(folder).is_dir() else None
    except (OSError, ValueError):  # open_capture reports a bad folder itself
        return
    model = mf.get("model") if isinstance(mf, dict) else None
    fam = model.get("family") if isinstance(model, dict) else None
    if fam:
        raise InputError(
            f"{folder} is a capture of the time-series model {fam}, whose captured stack is its encoder; the "
            "Chronos head reads the decoder's first step: use `isofast head --model chronos:DIR --data …`"
        )


def run_head(args) -> int:
    from isofast.errors import InputError
    from isofast.head import head_diagnostics, lm_head_weights
    from isofast.models import load_model

    if args.capture is not None:
        _refuse_tsfm_capture(args.capture)
        if is_tsfm(args.model):
            raise InputError(
                f"--capture reads a language-model capture; for the time-series model {args.model} use "
                "--model with --data instead"
            )
    elif is_tsfm(args.model):
        return _run_head_tsfm(args, args.model)
    if args.capture is not None:
        C, name, whash, cap = _capture_contexts(args.capture, args.model)
        lm = load_model(name, device="cpu")
        if whash and lm.weights_hash and whash != lm.weights_hash:
            warnings.warn(
                f"the capture was made with weights {whash}, the loaded model has {lm.weights_hash}",
                stacklevel=1,
            )
        source = f"capture {args.capture} ({C.shape[0]} rows, layer {C.layer})"
    else:
        w = _data_windows(args)
        lm = load_model(args.model or "smollm2", device=args.device)
        C = _direct_contexts(args, lm, w)
        source = f"{args.data}: {C.shape[0]} hidden states ({args.positions} positions)"
    W, b = lm_head_weights(lm)
    rep = head_diagnostics(
        W, C, b, isotropy=not args.no_isotropy, head_isotropy=not args.no_isotropy, n_threads=args.threads
    )
    return _emit_head(args, rep, lm.name, source, f"LM head of {lm.name}")


def _emit_head(args, rep, model: str, source: str, title: str) -> int:
    """The head report as JSON (``--out``, ``--json``) or a table."""
    d = rep.to_dict()
    d["source"] = source
    d["model"] = model
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(d, indent=1), encoding="utf-8")
    if args.json:
        print(json.dumps(d, indent=1))
    else:
        print(f"{title}; contexts: {source}")
        print(rep.table())
    return 0
