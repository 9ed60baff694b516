"""``isofast capture``: per-layer embeddings of a model reading a series file.

Example::

    isofast capture --model smollm2 --data series.csv --column value \\
        --layers 15 --positions digits --context 96 --out caps/smollm2-l15
    isofast capture --model chronos-bolt:/models/chronos-bolt-small --data series.csv \\
        --context 512 --out caps/bolt

A time-series foundation model (``FAMILY:PATH``, or a folder whose config.json
names its family) reads the numbers through its own package's scaling and
patching; ``--serializer`` does not apply to it, and its rows are the patches
(or value bins) of the captured stack, with the time steps each one reads in
the token table (``first_step``, ``last_step``).

``--data`` is a file or a bundled dataset name (``isofast data list``). Data
files: ``.csv``/``.tsv``/``.txt`` (optionally ``.gz``) and ``.parquet`` are
read with :func:`isofast.data.readers.read_table` — every column is a series
unless ``--column`` names one; ``.npy`` holds a 1-D series or a 2-D array with
one series per row (``--column K`` keeps row K).
"""

from __future__ import annotations

import argparse
import json

from isofast.cli._common import DATA_HELP, resolve_data


def _layers(text: str):
    text = text.strip()
    if text == "all":
        return "all"
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers takes 'all' or comma-separated integers, got {text!r}") from None


def _sites(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "capture",
        help="capture per-layer embeddings of a model reading numeric series",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        default="smollm2",
        help="bundled name (smollm2, minilm, tiny-gpt2, tiny-llama, tiny-t5), "
        "a local Hugging Face folder / .gguf file, or a time-series foundation model as FAMILY:PATH "
        "(chronos, chronos-bolt, chronos-2, timesfm-2.5, timesfm, patchtst, moirai, moirai-2, moment; "
        "docs/models.md) (default: smollm2)",
    )
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument(
        "--column", default=None, help="CSV/parquet column to use (default: all); for 2-D .npy the row index"
    )
    p.add_argument("--time-column", default=None, help="CSV/parquet column of timestamps (not a series)")
    p.add_argument("--out", required=True, help="capture folder to write (resumable)")
    p.add_argument(
        "--layers",
        type=_layers,
        default="all",
        help="'all' or comma-separated layer indices (0 = embeddings, -1 = last)",
    )
    p.add_argument(
        "--positions", default="all", help="all | digits | last, or comma-separated roles (digit,sign,separator,other)"
    )
    p.add_argument(
        "--sites",
        type=_sites,
        default=["residual", "attention"],
        help="comma-separated: residual,attention (default both)",
    )
    p.add_argument("--serializer", default="llmtime", help="llmtime (= llmtime:llama) | llmtime:gpt | chronos | patch")
    p.add_argument(
        "--context", type=int, default=None, help="context length in values; windows cut with isofast.data.windows"
    )
    p.add_argument("--window-mode", default="last", choices=["first", "last", "sliding", "random"])
    p.add_argument("--stride", type=int, default=None, help="stride of sliding windows (default: the context length)")
    p.add_argument("--n-windows", type=int, default=None, help="number of windows to keep/draw")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: auto)")
    p.add_argument("--nan", default="interpolate", choices=["interpolate", "error"])
    p.add_argument("--truncate", default="left", choices=["left", "error"])
    p.add_argument(
        "--no-resume", action="store_true", help="discard an earlier capture in --out instead of resuming it"
    )
    p.add_argument(
        "--future-tokens",
        type=int,
        default=None,
        help="chronos-2, moirai and moment only: future tokens capture's pass appends (default: the package's own "
        "embedding call); the number a forecast at horizon H appends captures that forecast's rows (docs/models.md)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from isofast.capture import capture

    positions = args.positions
    if positions not in ("all", "digits", "last"):
        positions = _sites(positions)
    stride = args.stride
    if args.window_mode == "sliding" and stride is None and args.context:
        stride = args.context  # non-overlapping contexts by default
    data, _ = resolve_data(args.data, args.column, args.time_column)
    model = args.model
    if args.future_tokens is not None:
        from isofast.errors import InputError
        from isofast.tsfm import load_tsfm, looks_like_tsfm

        if not looks_like_tsfm(model):
            raise InputError(f"--future-tokens applies to a time-series foundation model (FAMILY:PATH), not {model!r}")
        model = load_tsfm(model, device=args.device, future_tokens=args.future_tokens)
    result = capture(
        model,
        data,
        serializer=args.serializer,
        layers=args.layers,
        positions=positions,
        out=args.out,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        sites=args.sites,
        resume=not args.no_resume,
        context=args.context,
        window_mode=args.window_mode,
        stride=stride,
        n_windows=args.n_windows,
        seed=args.seed,
        nan=args.nan,
        truncate=args.truncate,
        progress=not args.quiet,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        layers = ", ".join(f"{s}: {v}" for s, v in result.layers.items())
        print(
            f"captured {result.n_rows} rows × {result.dim} from {result.n_windows} window(s) "
            f"of {result.model} ({layers}; {result.dtype}) into {result.path}"
        )
        if result.tokens_processed:
            print(
                f"{result.tokens_processed} tokens in {result.seconds:.2f} s "
                f"({result.tokens_per_s:,.0f} tokens/s on {result.device})"
            )
        else:
            print("already complete; nothing recomputed")
    return 0
