"""``isofast forecast`` and ``isofast head``: forecasting with a language
model's own head, and the head's shift-invariance diagnostics.

Examples::

    isofast forecast --model smollm2 --data airpassengers --context 96 --horizon 12 \\
        --samples 5 --out runs/air
    isofast forecast --model smollm2 --data series.csv --column value --out runs/csv
    isofast head --capture caps/smollm2-l30
    isofast head --model smollm2 --data airpassengers --context 96

``--data`` is a file (``.csv``/``.tsv``/``.parquet``: every column a series
unless ``--column``; ``.npy``: a 1-D series or one series per row) or a dataset
name of :mod:`isofast.data` (``isofast data list``).

``forecast --model FAMILY:PATH`` (a time-series foundation model, see
docs/models.md) forecasts through the family's own package; quantile
families' ``--samples`` sample paths are that many equally spaced quantile
levels (k − ½)/n, and the settings in ``metrics.json`` say which.

``forecast`` writes into ``--out``: ``forecasts.csv`` (one row per window and
step: truth, median, mean, quantiles), ``forecasts.npz`` (samples
(S, n, H), median, mean, quantiles, context, target, series_id, start) and
``metrics.json`` (NMSE, MSE, MAE, MASE, CRPS pooled and per window, the
continuous NLL, settings).

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
import csv
import json
import sys
import warnings
from pathlib import Path

import numpy as np


def register(subparsers) -> None:
    f = subparsers.add_parser(
        "forecast",
        help="forecast series with a language model's head (LLMTime) and score the forecasts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    f.add_argument(
        "--model",
        default="smollm2",
        help="bundled name (smollm2, tiny-llama, …), a local Hugging Face folder, or a time-series "
        "foundation model FAMILY:PATH (chronos, chronos-bolt, chronos-2, timesfm-2.5, timesfm, patchtst, "
        "moirai, moirai-2, moment; docs/models.md)",
    )
    f.add_argument("--data", required=True, help="a .csv/.tsv/.parquet/.npy file or a dataset name")
    f.add_argument("--column", default=None, help="file column (or .npy row) to use")
    f.add_argument("--time-column", default=None, help="CSV/parquet column of timestamps")
    f.add_argument("--context", type=int, default=96, help="context length in values (default 96)")
    f.add_argument("--horizon", type=int, default=12, help="values to forecast (default 12)")
    f.add_argument("--samples", type=int, default=5, help="sampled continuations per window")
    f.add_argument("--temperature", type=float, default=1.0, help="0 = greedy decoding")
    f.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--serializer", default="llmtime", help="llmtime (= llmtime:llama) | llmtime:gpt")
    f.add_argument("--window-mode", default="last", choices=["first", "last", "sliding", "random"])
    f.add_argument("--stride", type=int, default=None, help="stride of sliding windows")
    f.add_argument("--n-windows", type=int, default=None, help="windows to keep/draw")
    f.add_argument(
        "--season", type=int, default=None, help="MASE seasonal period (default: from the dataset frequency, else 1)"
    )
    f.add_argument("--crps", default="standard", choices=["standard", "fair"], help="CRPS estimator")
    f.add_argument(
        "--first-digit",
        action="store_true",
        help="also store the model's distribution over the next value's first digit",
    )
    f.add_argument("--threads", type=int, default=None, help="torch threads while decoding")
    f.add_argument("--device", default=None, help="cpu, cuda, mps (default: auto)")
    f.add_argument("--out", required=True, help="output folder")
    f.add_argument("--json", action="store_true", help="print the metrics as JSON")
    f.set_defaults(func=run_forecast)

    h = subparsers.add_parser(
        "head",
        help="shift-invariance diagnostics of the hidden states entering an LM head",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = h.add_mutually_exclusive_group(required=True)
    src.add_argument("--capture", help="a capture folder holding the last residual layer")
    src.add_argument("--data", help="a data file or dataset name (with --model)")
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


# ------------------------------------------------------------------- data
def _read(data: str, column, time_column):
    """A file or a dataset name → (dict name → 1-D values, MASE season or None)."""
    p = Path(data)
    if p.is_file():
        from isofast.capture_cli import read_series

        return read_series(data, column, time_column), None
    looks_like_path = any(ch in data for ch in "/\\") or p.suffix != ""
    if looks_like_path:
        raise FileNotFoundError(f"no data file {data!r}")
    from isofast.data import dataset_season, load

    s = load(data, column=column)
    return {s.name: s.values}, dataset_season(data)


def _windows(series: dict, context: int, horizon: int, mode: str, stride, n, seed):
    from isofast.data import make_windows

    names = list(series)
    w = make_windows(
        [series[k] for k in names], context, horizon, mode=mode, stride=stride, n=n, seed=seed, skip_short=True
    )
    skipped = len(names) - len(set(w.series_id.tolist()))
    if skipped:
        print(f"isofast: {skipped} series shorter than context + horizon skipped", file=sys.stderr)
    return w, names


# --------------------------------------------------------------- forecast
def run_forecast(args) -> int:
    from isofast.forecast import forecast
    from isofast.metrics import evaluate
    from isofast.models import load_model

    series, season = _read(args.data, args.column, args.time_column)
    w, names = _windows(series, args.context, args.horizon, args.window_mode, args.stride, args.n_windows, args.seed)
    if _is_tsfm(args.model):
        res, model_name = _tsfm_forecast(args, w)
    else:
        lm = load_model(args.model, device=args.device)
        model_name = lm.name
        res = forecast(
            lm,
            w,
            args.horizon,
            n_samples=args.samples,
            temperature=args.temperature,
            top_p=args.top_p,
            seed=args.seed,
            serializer=args.serializer,
            first_digit=args.first_digit,
            n_threads=args.threads,
        )
    season = args.season or season or 1
    if args.context <= season:
        season = 1
    met = evaluate(
        w.target, res.median, samples=res.samples, context=w.context, season=season, crps_estimator=args.crps
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    q = res.quantile_levels
    with open(out / "forecasts.csv", "w", newline="", encoding="utf-8") as fh:
        wr = csv.writer(fh)
        wr.writerow(["series", "window", "start", "step", "truth", "median", "mean"] + [f"q{lv:g}" for lv in q])
        for i in range(len(w)):
            for t in range(args.horizon):
                wr.writerow(
                    [names[w.series_id[i]], i, int(w.start[i]), t + 1, w.target[i, t], res.median[i, t], res.mean[i, t]]
                    + [res.quantiles[j, i, t] for j in range(q.size)]
                )
    np.savez(
        out / "forecasts.npz",
        samples=res.samples,
        median=res.median,
        mean=res.mean,
        quantiles=res.quantiles,
        quantile_levels=q,
        context=w.context,
        target=w.target,
        series_id=w.series_id,
        start=w.start,
        **({"nll": res.nll} if res.nll is not None else {}),  # no object arrays: loads without allow_pickle
    )
    nll = res.nll[np.isfinite(res.nll)] if res.nll is not None else np.empty(0)
    summary = {
        "metrics": met.to_dict(),
        "nll_per_value": float(nll.mean()) if nll.size else None,
        "nll_per_window": res.nll,
        "allowed_mass": res.allowed_mass,
        "first_digit": None if res.first_digit is None else [f.to_dict() for f in res.first_digit],
        "series": names,
        "n_windows": len(w),
        "context": args.context,
        "horizon": args.horizon,
        "data": args.data,
        "seconds": res.seconds,
        "settings": res.settings,
    }
    from isofast.head import _jsonable

    (out / "metrics.json").write_text(json.dumps(_jsonable(summary), indent=1), encoding="utf-8")
    if args.json:
        print(json.dumps(_jsonable(summary), indent=1))
    else:

        def fmt(v):
            return "n/a" if v is None or not np.isfinite(v) else f"{v:.4g}"

        print(
            f"{len(w)} window(s) × {args.horizon} steps, {res.samples.shape[1]} sample(s) each, "
            f"{res.seconds:.1f} s ({model_name})"
        )
        print(
            f"NMSE {fmt(met.nmse)}  MSE {fmt(met.mse)}  MAE {fmt(met.mae)}  "
            f"MASE(m={season}) {fmt(met.mase)}  CRPS {fmt(met.crps)}  "
            f"NLL/value {fmt(summary['nll_per_value'])}"
        )
        print(f"wrote {out / 'forecasts.csv'}, {out / 'forecasts.npz'}, {out / 'metrics.json'}")
    return 0


def _tsfm_forecast(args, w):
    """A time-series foundation model's own forecast of the windows, in the
    shape the LM path writes: ``samples`` (S, n, H) are the family's sample
    paths, or — for quantile families — the ``n`` equally spaced levels
    (k − ½)/n standing in for them (as in the study, docs/models.md); a
    point-only family gives one path."""
    from types import SimpleNamespace

    from isofast.errors import InputError
    from isofast.tsfm import load_tsfm

    if args.first_digit or args.serializer != "llmtime" or args.temperature != 1.0 or args.top_p is not None:
        raise InputError(
            "--first-digit, --serializer, --temperature and --top-p apply to language models only; "
            "a time-series foundation model forecasts through its own package"
        )
    ad = load_tsfm(args.model, device=args.device)
    n = max(1, int(args.samples))
    shown = np.array([0.1, 0.5, 0.9])
    grid = (np.arange(n) + 0.5) / n
    levels = np.unique(np.concatenate([shown, grid]))
    fc = ad.forecast(list(w.context), args.horizon, n_samples=n, seed=args.seed, quantile_levels=levels.tolist())
    q = np.asarray(fc.quantiles, np.float64)
    if fc.samples is not None:
        samples = np.asarray(fc.samples, np.float64)
    elif np.all(q == q[:1]):
        samples = np.asarray(fc.point, np.float64)[:, None, :]
    else:
        samples = np.moveaxis(q[np.searchsorted(levels, grid)], 0, 1)
    res = SimpleNamespace(
        samples=samples,
        median=np.asarray(fc.point, np.float64),
        mean=samples.mean(axis=1),
        quantile_levels=shown,
        quantiles=q[np.searchsorted(levels, shown)],
        nll=None,
        allowed_mass=None,
        first_digit=None,
        seconds=fc.seconds,
        settings={
            "family": ad.family,
            **fc.settings,
            "sample_paths": "family's samples"
            if fc.samples is not None
            else ("point forecast only" if samples.shape[1] == 1 else f"{n} quantile levels (k-1/2)/{n}"),
        },
    )
    return res, f"{ad.family}:{ad.path}"


# ------------------------------------------------------------------- head
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


def _direct_contexts(args, lm):
    from isofast.head import head_inputs
    from isofast.serializers import get_serializer

    series, _ = _read(args.data, args.column, args.time_column)
    w, _ = _windows(series, args.context, 0, args.window_mode, args.context, args.n_windows, args.seed)
    ser = get_serializer(args.serializer)
    rows = []
    for ctx in w.context:
        ids = lm.tokenizer(ser.encode(ctx).text, add_special_tokens=True)["input_ids"]
        h = head_inputs(lm, ids)
        rows.append(h[-1:] if args.positions == "last" else h)
    return np.concatenate(rows)


def _is_tsfm(spec) -> bool:
    from isofast.tsfm.spec import looks_like_tsfm

    return spec is not None and looks_like_tsfm(spec)


def _tsfm_with_head(spec: str, device):
    """The TSFM adapter of ``spec`` when its family has a softmax head
    (Chronos-T5); ``InputError`` (one line, exit 2) before loading otherwise."""
    from isofast.errors import InputError
    from isofast.tsfm import adapter_class, load_tsfm, parse_spec

    ms = parse_spec(spec)
    if not adapter_class(ms.family).has_head:
        raise InputError(
            f"{ms.family} has no softmax head; `isofast head` needs a model whose output layer is a softmax over "
            f"tokens: a language model, or chronos:DIR (Chronos-T5, 4096 value bins); {ms.family} forecasts with a "
            "direct (quantile/regression) head"
        )
    return load_tsfm(str(ms), device=device)


def _tsfm_contexts(args, ad) -> np.ndarray:
    series, _ = _read(args.data, args.column, args.time_column)
    w, _ = _windows(series, args.context, 0, args.window_mode, args.context, args.n_windows, args.seed)
    return ad.head_inputs(list(w.context))


def _run_head_tsfm(args, spec: str) -> int:
    from isofast.head import head_diagnostics

    ad = _tsfm_with_head(spec, args.device)
    C = _tsfm_contexts(args, ad)
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
        if _is_tsfm(args.model):
            raise InputError(
                f"--capture reads a language-model capture; for the time-series model {args.model} use "
                "--model with --data instead"
            )
    elif _is_tsfm(args.model):
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
        lm = load_model(args.model or "smollm2", device=args.device)
        C = _direct_contexts(args, lm)
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


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="isofast")
    register(parser.add_subparsers(dest="command", required=True))
    a = parser.parse_args()
    sys.exit(a.func(a))
