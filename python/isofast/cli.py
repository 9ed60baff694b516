"""The ``isofast`` command line.

Each subcommand lives beside the concept it drives; a module listed in
``_SUBCOMMANDS`` exposes ``register(subparsers)`` which adds its parser and sets
``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an
exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# (module, required extra or None). A module whose optional dependencies are
# missing still registers its parser; it raises a clear error when run.
_SUBCOMMANDS: list[str] = [
    "isofast.analyze_cli",
    "isofast.data.cli",
    "isofast.capture_cli",
    "isofast.head_cli",
    "isofast.study.cli",
]


def build_parser() -> argparse.ArgumentParser:
    from isofast import __version__

    parser = argparse.ArgumentParser(
        prog="isofast",
        description="Isotropy analysis of model embeddings fed numeric data.",
    )
    parser.add_argument("--version", action="version", version=f"isofast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, OSError, ImportError, KeyError) as exc:
        print(f"isofast {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
