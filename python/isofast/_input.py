"""Turning what users hold into row-tile sources for the Rust kernels.

Accepted: numpy arrays of any float/integer dtype, strides and order,
``np.memmap``, bfloat16 (``ml_dtypes.bfloat16`` arrays, or uint16 bit
patterns with ``dtype="bfloat16"``), CPU torch tensors, Dask arrays (block by
block), objects with ``iter_chunks()`` (e.g. capture layers), and iterables of
2-D chunks with equal d. Nothing here copies an N×d input whole: arrays are
handed to Rust as zero-copy views, chunks one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional, Tuple

import numpy as np

Chunk = Tuple[np.ndarray, Optional[str]]

_FLOAT_KINDS = {"f"}
_INT_KINDS = {"i", "u"}


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def as_matrix(x: Any, dtype: Optional[str] = None) -> Chunk:
    """One 2-D input as ``(ndarray, elem)`` for ``_core`` functions.

    ``elem`` is ``"bfloat16"`` when the array holds bfloat16 bit patterns, else
    ``None`` (the array's own dtype is used). Raises ``TypeError`` for
    non-numeric dtypes and ``ValueError`` for anything but 2 dimensions.
    """
    elem: Optional[str] = None
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
            x = np.asarray(x)
        else:
            raise TypeError(f"cannot read {type(x).__name__} as a matrix of row vectors")
    arr: np.ndarray = x
    name = arr.dtype.name
    if name == "bfloat16":  # ml_dtypes
        arr = arr.view(np.uint16)
        elem = "bfloat16"
    elif dtype is not None:
        if dtype != "bfloat16":
            raise TypeError(f"dtype override {dtype!r} is not supported (only 'bfloat16')")
        if arr.dtype.itemsize != 2 or arr.dtype.kind not in ("u", "i"):
            raise TypeError("dtype='bfloat16' needs uint16/int16 bit patterns")
        elem = "bfloat16"
    kind = arr.dtype.kind
    if elem is None:
        if kind not in _FLOAT_KINDS and kind not in _INT_KINDS:
            raise TypeError(
                f"unsupported dtype {arr.dtype}: isofast reads float (16/32/64-bit, bfloat16) "
                "and integer arrays"
            )
        if kind == "f" and arr.dtype.itemsize > 8:
            raise TypeError(f"unsupported dtype {arr.dtype}: use float64 or narrower")
    if arr.ndim != 2:
        raise ValueError(
            f"expected a 2-D array of row vectors (N×d), got shape {arr.shape}; "
            "reshape with x.reshape(-1, d)"
        )
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


def _checked(it: Iterable[Any], dtype: Optional[str]) -> Iterator[Chunk]:
    dim = None
    for i, c in enumerate(it):
        arr, elem = as_matrix(c, dtype)
        if dim is None:
            dim = arr.shape[1]
        elif arr.shape[1] != dim:
            raise ValueError(f"chunk {i} has {arr.shape[1]} columns, earlier chunks have {dim}")
        yield arr, elem


def as_source(x: Any, dtype: Optional[str] = None) -> Source:
    """Wrap any accepted input as a :class:`Source`."""
    if isinstance(x, Source):
        return x
    if isinstance(x, np.ndarray) or _is_torch(x):
        arr = as_matrix(x, dtype)
        return Source(lambda: iter([arr]), True, f"array {arr[0].shape}")
    if hasattr(x, "__dask_graph__") and hasattr(x, "blocks"):
        if x.ndim != 2:
            raise ValueError(f"expected a 2-D dask array, got {x.ndim} dimensions")

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
            raise ValueError("empty input: no rows to analyse")
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
    raise TypeError(f"cannot read {type(x).__name__} as a matrix or a stream of chunks")
