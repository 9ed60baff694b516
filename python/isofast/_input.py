"""Turning what users hold into row-tile sources for the Rust kernels.

Accepted: numpy arrays of any float/integer dtype, strides and order,
``np.memmap``, bfloat16 (``ml_dtypes.bfloat16`` arrays, or uint16 bit
patterns with ``dtype="bfloat16"``), CPU torch tensors, Dask arrays (block by
block), objects with ``iter_chunks()`` (e.g. capture layers), and iterables of
2-D chunks with equal d. Nothing here copies an N×d input whole: arrays are
handed to Rust as zero-copy views, chunks one at a time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from isofast.errors import (
    ArgumentTypeError,
    DimensionError,
    EmptyInputError,
    InputError,
    NonFiniteError,
)

Chunk = tuple[np.ndarray, str | None]

_FLOAT_KINDS = {"f"}
_INT_KINDS = {"i", "u"}


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _is_pandas(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "pandas"


def _from_dataframe(x: Any) -> np.ndarray:
    """A pandas DataFrame of numeric columns as an (N, d) array (one column
    per dimension); a non-numeric column is refused by name."""
    import pandas as pd

    if isinstance(x, pd.Series):
        raise DimensionError(
            f"a pandas Series is one column ({len(x)} values): pass a DataFrame with one column per "
            "dimension, or series.to_frame()"
        )
    if not isinstance(x, pd.DataFrame):
        raise ArgumentTypeError(f"cannot read {type(x).__name__} as a matrix of row vectors")
    api = pd.api.types
    for name, dt in x.dtypes.items():
        if not api.is_numeric_dtype(dt) or api.is_bool_dtype(dt):
            raise ArgumentTypeError(
                f"DataFrame column {name!r} has dtype {dt}: isofast reads numeric columns only "
                "(drop or encode it first)"
            )
        if not isinstance(dt, np.dtype) and bool(x[name].isna().any()):  # Int64/Float64 with NA
            row = int(np.flatnonzero(x[name].isna().to_numpy())[0])
            raise InputError(f"DataFrame column {name!r} holds a missing value (NA) at row {row}")
    dts = set(x.dtypes)
    if len(dts) == 1 and isinstance(next(iter(dts)), np.dtype):
        return x.to_numpy()  # one numpy dtype: often a view, no copy
    return x.to_numpy(dtype=np.float64)


def _unmasked(x: np.ma.MaskedArray) -> np.ndarray:
    """The data of a masked array with nothing masked; a masked value is
    refused (naming its row and column) instead of being read silently."""
    m = np.ma.getmaskarray(x)
    if m.any():
        idx = np.argwhere(m)[0]
        where = ", ".join(str(int(i)) for i in idx)
        raise InputError(
            f"masked array with {int(m.sum())} masked values (first at [{where}]): isofast does not read "
            "masked values; drop the masked rows (x[~x.mask.any(axis=1)].data) or fill them (x.filled(v))"
        )
    return np.ma.getdata(x)


def as_matrix(x: Any, dtype: str | None = None) -> Chunk:
    """One 2-D input as ``(ndarray, elem)`` for ``_core`` functions.

    ``elem`` is ``"bfloat16"`` when the array holds bfloat16 bit patterns, else
    ``None`` (the array's own dtype is used). Raises
    :class:`~isofast.errors.ArgumentTypeError` (a ``TypeError``) for
    non-numeric dtypes and :class:`~isofast.errors.DimensionError` (a
    ``ValueError``) for anything but 2 dimensions or 0 columns. Masked arrays
    are read only when nothing is masked; pandas DataFrames of numeric
    columns are read as (rows × columns).
    """
    elem: str | None = None
    if isinstance(x, np.ma.MaskedArray):
        x = _unmasked(x)
    elif _is_pandas(x):
        x = _from_dataframe(x)
    if _is_torch(x):
        import torch

        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()  # a GPU tensor must cross to host memory
        if t.dtype == torch.bfloat16:
            x = t.view(torch.int16).numpy().view(np.uint16)
            elem = "bfloat16"
        else:
            x = t.numpy()
    elif not isinstance(x, np.ndarray):
        if hasattr(x, "__array__") or isinstance(x, (list, tuple)):
            try:
                x = np.asarray(x)
            except (ValueError, TypeError) as exc:  # ragged lists
                raise DimensionError(f"cannot read the input as an N×d matrix: {exc}") from None
            if isinstance(x, np.ma.MaskedArray):
                x = _unmasked(x)
        else:
            raise ArgumentTypeError(f"cannot read {type(x).__name__} as a matrix of row vectors")
    arr: np.ndarray = x
    name = arr.dtype.name
    if name == "bfloat16":  # ml_dtypes
        arr = arr.view(np.uint16)
        elem = "bfloat16"
    elif dtype is not None:
        if dtype != "bfloat16":
            raise ArgumentTypeError(f"dtype override {dtype!r} is not supported (only 'bfloat16')")
        if arr.dtype.itemsize != 2 or arr.dtype.kind not in ("u", "i"):
            raise ArgumentTypeError("dtype='bfloat16' needs uint16/int16 bit patterns")
        elem = "bfloat16"
    kind = arr.dtype.kind
    if elem is None:
        if kind not in _FLOAT_KINDS and kind not in _INT_KINDS:
            raise ArgumentTypeError(
                f"unsupported dtype {arr.dtype}: isofast reads float (16/32/64-bit, bfloat16) and integer arrays"
            )
        if kind == "f" and arr.dtype.itemsize > 8:
            raise ArgumentTypeError(f"unsupported dtype {arr.dtype}: use float64 or narrower")
    if arr.ndim != 2:
        raise DimensionError(
            f"expected a 2-D array of row vectors (N×d), got shape {arr.shape}; reshape with x.reshape(-1, d)"
        )
    if arr.shape[1] == 0:
        raise DimensionError(f"input has shape {arr.shape}: 0 columns (every statistic needs d ≥ 1)")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr, elem


@dataclass
class Source:
    """A stream of 2-D chunks; ``chunks()`` starts a fresh pass when possible."""

    _factory: Callable[[], Iterator[Chunk]]
    reiterable: bool
    description: str

    def chunks(self) -> Iterator[Chunk]:
        return self._factory()


def _checked(it: Iterable[Any], dtype: str | None) -> Iterator[Chunk]:
    dim = None
    for i, c in enumerate(it):
        arr, elem = as_matrix(c, dtype)
        if dim is None:
            dim = arr.shape[1]
        elif arr.shape[1] != dim:
            raise DimensionError(f"chunk {i} has {arr.shape[1]} columns, earlier chunks have {dim}")
        yield arr, elem


def as_source(x: Any, dtype: str | None = None) -> Source:
    """Wrap any accepted input as a :class:`Source`."""
    if isinstance(x, Source):
        return x
    if isinstance(x, np.ndarray) or _is_torch(x) or _is_pandas(x):
        arr = as_matrix(x, dtype)
        return Source(lambda: iter([arr]), True, f"array {arr[0].shape}")
    if hasattr(x, "__dask_graph__") and hasattr(x, "blocks"):
        if x.ndim != 2:
            raise DimensionError(f"expected a 2-D dask array, got {x.ndim} dimensions")

        def dask_chunks() -> Iterator[Chunk]:
            for i in range(x.numblocks[0]):
                yield as_matrix(np.asarray(x.blocks[i, :].compute()), dtype)

        return Source(dask_chunks, True, f"dask array {x.shape}")
    if hasattr(x, "iter_chunks"):
        elem = getattr(x, "isofast_dtype", None)
        override = "bfloat16" if elem == "bfloat16" else dtype
        return Source(lambda: _checked(x.iter_chunks(), override), True, f"{type(x).__name__}")
    if isinstance(x, (list, tuple)):
        if len(x) == 0:
            raise EmptyInputError("empty input: no rows to analyse")
        if all(isinstance(c, np.ndarray) or _is_torch(c) for c in x):
            return Source(lambda: _checked(x, dtype), True, f"{len(x)} chunks")
        arr = as_matrix(np.asarray(x), dtype)
        return Source(lambda: iter([arr]), True, f"array {arr[0].shape}")
    if callable(x):
        return Source(lambda: _checked(x(), dtype), True, "chunk factory")
    if hasattr(x, "__iter__"):
        one_shot = iter(x) is x
        return Source(lambda: _checked(x, dtype), not one_shot, "iterable of chunks")
    if hasattr(x, "__array__"):
        arr = as_matrix(x, dtype)
        return Source(lambda: iter([arr]), True, f"array {arr[0].shape}")
    raise ArgumentTypeError(f"cannot read {type(x).__name__} as a matrix or a stream of chunks")


def in_file_rows(exc: NonFiniteError, x: Any) -> NonFiniteError:
    """A NaN/Inf error numbered in the file rather than in a ``rows=A:B``
    selection of it. The kernels count rows from the start of the stream they
    were given; a file source selected with ``rows=A:B`` (its ``_start`` is
    A) starts that stream at file row A, so the file row is ``A + row``. The
    message gives both numbers; other inputs are returned unchanged."""
    start = int(getattr(x, "_start", 0) or 0)
    if exc.row is None or not start or getattr(exc, "in_file", False):
        return exc  # nothing to renumber, or a nested entry point renumbered it already
    row = exc.row + start
    out = NonFiniteError(
        f"NaN or Inf at row {row} of the file {_where(x)} (row {exc.row} of the selection rows={start}:"
        f"{getattr(x, '_stop', '')}), column {exc.col}",
        row,
        exc.col,
    )
    out.in_file = True
    return out


def _where(x: Any) -> str:
    try:
        d = x._describe()
    except Exception:  # noqa: BLE001 - only for a message
        d = ""
    return d or "the file"


def file_rows(fn: Callable | None = None, *, arg: int = 0, name: str | None = None) -> Callable:
    """Decorator for the public statistics: a NaN/Inf found in a selected
    file source is reported with its file row (:func:`in_file_rows`). One
    mechanism for every entry point, instead of renumbering at each caller.
    ``arg``/``name``: where the data argument is (default the first)."""

    def deco(f: Callable) -> Callable:
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            try:
                return f(*args, **kwargs)
            except NonFiniteError as exc:
                x = (
                    kwargs.get(name)
                    if name is not None and name in kwargs
                    else (args[arg] if len(args) > arg else None)
                )
                new = in_file_rows(exc, x)
                if new is exc:
                    raise
                raise new from exc

        return wrapper

    return deco(fn) if fn is not None else deco


def check_int(
    value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None, allow_none: bool = False
) -> int | None:
    """``value`` as an int, validated once at the API boundary.

    Refuses bools, floats (``2.7`` is not silently 2, nor ``2.0`` a count)
    and anything without ``__index__`` with :class:`ArgumentTypeError`, and
    values outside ``[minimum, maximum]`` with :class:`InputError`; both
    messages name the argument.
    """
    if value is None:
        if allow_none:
            return None
        raise ArgumentTypeError(f"{name} must be an integer, got None")
    if isinstance(value, (bool, np.bool_)) or not hasattr(type(value), "__index__"):
        raise ArgumentTypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    v = int(value.__index__())
    if minimum is not None and v < minimum:
        raise InputError(f"{name} must be ≥ {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise InputError(f"{name} must be ≤ {maximum}, got {v}")
    return v


def check_float(
    value: Any, name: str, *, minimum: float | None = None, maximum: float | None = None, strict_min: bool = False
) -> float:
    """``value`` as a finite float (NaN and ±Inf refused), optionally within
    ``[minimum, maximum]`` (``(minimum, …`` with ``strict_min``)."""
    if isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{name} must be a number, got a bool")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v):
        raise InputError(f"{name} must be finite, got {v}")
    if minimum is not None and (v < minimum or (strict_min and v == minimum)):
        raise InputError(f"{name} must be {'>' if strict_min else '≥'} {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise InputError(f"{name} must be ≤ {maximum}, got {v}")
    return v
