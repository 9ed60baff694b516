"""isofast's exception classes: one tree (design.md, "Errors").

Every error isofast raises on purpose is an :class:`IsofastError` *and* one
of the built-in classes callers already catch, so ``except ValueError`` (or
``OSError``, ``TypeError``, ``ArithmeticError``) keeps working::

    IsofastError
    ├── InputError(ValueError)            bad values in the data or an argument
    │   ├── NonFiniteError                NaN/Inf at .row, .col
    │   ├── DimensionError                wrong or zero number of columns/dims
    │   ├── EmptyInputError               no rows (or too few) to compute on
    │   ├── DataFormatError               a malformed user data file (.path, .line)
    │   ├── UnknownDatasetError(KeyError) a dataset name not in the registry
    │   ├── CheckpointError               a model folder that is not what was named (isofast.tsfm)
    │   └── ConfigError                   a study configuration that cannot run
    ├── ArgumentTypeError(TypeError)      an argument of the wrong type
    ├── MissingPackageError(ImportError)  an optional package a model family needs
    ├── NumericalError(ArithmeticError)   a computation that cannot be done in float64
    ├── ResourceError(OSError)            the OS refused threads or memory
    ├── ClusterError(ConnectionError)     a Dask cluster that cannot run the study
    └── CorruptFileError(OSError)         a damaged file (.filename, .offset)
        ├── TruncatedFileError            a file that ends early
        └── ChecksumError                 bytes differ from the checksum isofast wrote

The Rust kernels' errors are mapped onto the same classes by the bindings
(``rust/py/src/errors.rs`` imports these classes), so a NaN found in Rust is a
:class:`NonFiniteError` with ``.row`` and ``.col`` like one found in Python.
"""

from __future__ import annotations

import errno
from typing import Any

__all__ = [
    "ArgumentTypeError",
    "CheckpointError",
    "ChecksumError",
    "ClusterError",
    "ConfigError",
    "CorruptFileError",
    "DataFormatError",
    "DimensionError",
    "EmptyInputError",
    "InputError",
    "IsofastError",
    "MissingPackageError",
    "NonFiniteError",
    "NumericalError",
    "ResourceError",
    "TruncatedFileError",
    "UndefinedStatisticWarning",
    "UnknownDatasetError",
]


class IsofastError(Exception):
    """Base of every exception isofast raises on purpose."""


class InputError(IsofastError, ValueError):
    """A bad value in the input data or in an argument (message names it)."""


class NonFiniteError(InputError):
    """The input holds NaN or ±Inf; ``row`` and ``col`` locate the first one
    (``row`` counts from the start of the stream; ``None`` when unknown)."""

    def __init__(self, message: str, row: int | None = None, col: int | None = None):
        super().__init__(message)
        self.row = None if row is None else int(row)
        self.col = None if col is None else int(col)

    def __reduce__(self):
        return (type(self), (str(self), self.row, self.col))


class DimensionError(InputError):
    """Wrong shape: zero columns, mismatched d, wrong number of dimensions."""


class EmptyInputError(InputError):
    """No rows (or fewer than the statistic needs)."""


class ConfigError(InputError):
    """A study configuration that cannot be run (the message names the key)."""


class DataFormatError(InputError):
    """A malformed data file; ``path`` and ``line`` (1-based, or None) say where."""

    def __init__(self, path: Any, line: int | None, message: str):
        import os

        self.path = os.fspath(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")

    def __reduce__(self):
        msg = str(self)
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return (type(self), (self.path, self.line, msg[len(where) + 2 :]))


class UnknownDatasetError(KeyError, InputError):
    """A dataset name that is not registered; the message lists the known names.

    Both a ``KeyError`` (lookup by name) and a ``ValueError`` (bad argument
    value), so either ``except`` clause catches it.
    """

    def __str__(self) -> str:  # KeyError would repr() the message (quotes)
        return str(self.args[0]) if self.args else ""


class CheckpointError(InputError):
    """A model folder that is not a checkpoint of the family it was named as
    (or whose weights disagree with its config); the message says what was
    expected and what was found."""


class MissingPackageError(IsofastError, ImportError):
    """An optional package a model family needs is not installed; the
    message names the extra or the install recipe."""


class ArgumentTypeError(IsofastError, TypeError):
    """An argument of the wrong type (message names the argument)."""


class NumericalError(IsofastError, ArithmeticError):
    """A computation that float64 cannot carry out (e.g. the eigensolver did
    not converge, a variance that overflows)."""


class ClusterError(IsofastError, ConnectionError):
    """A Dask cluster that cannot run the work: an unreachable scheduler, no
    workers, or a cache folder the workers cannot see (an ``OSError``)."""


class ResourceError(IsofastError, OSError):
    """The OS refused a resource isofast needed (threads, memory), or a
    request exceeds what the data can need (e.g. a tile larger than RAM)."""


class CorruptFileError(IsofastError, OSError):
    """A file whose content is not what its format promises.

    ``filename`` is the file and ``offset`` the byte offset where reading
    went wrong.
    """

    def __init__(self, path, offset: int, what: str, code: int = errno.EIO):
        OSError.__init__(self, code, f"{path}: {what} (at byte offset {int(offset)})")
        self.filename = str(path)
        self.offset = int(offset)

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self):  # keep the subclass and fields when pickled (Dask workers)
        return (_rebuild_error, (type(self), self.filename, self.offset, self.strerror))


class TruncatedFileError(CorruptFileError):
    """A file that ends before the data its header describes."""


class ChecksumError(CorruptFileError):
    """A file isofast wrote whose bytes no longer match the checksum recorded
    with it (overwritten, swapped with another file, or damaged)."""


class UndefinedStatisticWarning(UserWarning):
    """A statistic came out NaN because it is undefined for this input (the
    message says why: fewer than two non-zero rows, rows equal to the mean…)."""


def _rebuild_error(cls, filename, offset, message):
    e = cls.__new__(cls)
    OSError.__init__(e, errno.EIO, message)
    e.filename, e.offset = filename, offset
    return e


def renamed(exc: BaseException, message: str) -> BaseException:
    """The same kind of error as ``exc`` with a new message (e.g. prefixed
    with the argument's name), keeping ``row``/``col`` of a NonFiniteError;
    a built-in ValueError/TypeError becomes InputError/ArgumentTypeError."""
    if isinstance(exc, NonFiniteError):
        return type(exc)(message, exc.row, exc.col)
    if isinstance(exc, IsofastError) and not isinstance(exc, (OSError, DataFormatError)):
        try:
            return type(exc)(message)
        except TypeError:
            pass
    if isinstance(exc, TypeError):
        return ArgumentTypeError(message)
    return InputError(message)


def file_error(path: Any, exc: BaseException, what: str = "unreadable file", offset: int = 0) -> CorruptFileError:
    """Wrap a library's exception about a damaged file (``BadZipFile``,
    ``EOFError``, a zstd ``RuntimeError``, ``JSONDecodeError``, …) as a
    :class:`CorruptFileError` naming the file."""
    if isinstance(exc, CorruptFileError):
        return exc
    if isinstance(exc, EOFError):
        return TruncatedFileError(path, offset, f"{what}: file ends early ({type(exc).__name__}: {exc})")
    return CorruptFileError(path, offset, f"{what} ({type(exc).__name__}: {exc})")
