"""The ``isofast`` command line: one module per command in this package
(``isofast.cli.analyze``, ``.capture``, ``.forecast``, ``.head``, ``.data``,
``.study``, ``.adapt``, ``.demo``, ``.doctor``), helpers they share in
:mod:`isofast.cli._common`. No command module imports another.

Each command module exposes ``register(subparsers)``, which adds its parser
and sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and
returning an exit code). A command whose optional packages are missing still
registers its parser; it raises a clear error when run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

#: command modules, in the order ``isofast --help`` lists their commands
COMMANDS: list[str] = [
    "isofast.cli.analyze",
    "isofast.cli.data",
    "isofast.cli.capture",
    "isofast.cli.forecast",
    "isofast.cli.head",
    "isofast.cli.study",
    "isofast.cli.adapt",
    "isofast.cli.demo",
    "isofast.cli.doctor",
]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``isofast CMD: error: ...``, exit 2)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from isofast import __version__

    parser = _Parser(
        prog="isofast",
        description="Isotropy analysis of model embeddings fed numeric data.",
    )
    parser.add_argument("--version", action="version", version=f"isofast {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (anywhere on the line)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; errors are one line on stderr and an exit code:
    2 for bad usage or input (argparse, ValueError, TypeError, KeyError, a
    file that cannot be read or written, a missing optional package), 1 for
    any other runtime failure. ``--debug`` (anywhere on the line) shows the
    full traceback instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    if debug:
        return int(args.func(args) or 0)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # e.g. `isofast data list | head`
        try:
            sys.stdout = open(os.devnull, "w")  # no second error at interpreter exit
        except OSError:  # pragma: no cover
            pass
        return 0
    except KeyboardInterrupt:
        print(f"isofast {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ImportError, KeyError) as exc:
        print(f"isofast {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # runtime failures: one line, no traceback
        print(f"isofast {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError) and type(exc) is KeyError and len(exc.args) == 1:
        text = str(exc.args[0])
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
