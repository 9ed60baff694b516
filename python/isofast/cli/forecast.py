"""``isofast forecast``: forecasting with a language model's own head (LLMTime)
or a time-series foundation model's, scored against the truth.

Examples::

    isofast forecast --model smollm2 --data airpassengers --context 96 --horizon 12 \\
        --samples 5 --out runs/air
    isofast forecast --model smollm2 --data series.csv --column value --out runs/csv

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
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from isofast.cli._common import DATA_HELP, cut_windows, is_tsfm, resolve_data


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
    f.add_argument("--data", required=True, help=DATA_HELP)
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


def run_forecast(args) -> int:
    from isofast.forecast import forecast
    from isofast.metrics import evaluate
    from isofast.models import load_model

    series, season = resolve_data(args.data, args.column, args.time_column)
    w, names = cut_windows(series, args.context, args.horizon, args.window_mode, args.stride, args.n_windows, args.seed)
    if is_tsfm(args.model):
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
    from isofast.report import jsonable

    (out / "metrics.json").write_text(json.dumps(jsonable(summary), indent=1), encoding="utf-8")
    if args.json:
        print(json.dumps(jsonable(summary), indent=1))
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
