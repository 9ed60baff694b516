"""Opening files and folders of embeddings as out-of-core row-tile sources.

``open_source(PATH)`` understands

* a single ``.npy`` file (C or Fortran order, any byte order; a 3-D
  ``layers × rows × d`` array with ``layer=``),
* a folder of ``.npy`` shards: an isofast capture folder (``manifest.json``,
  choose ``layer=``/``site=``) or a plain folder of ``*.npy`` files read in
  name order,
* a ``.safetensors`` file (read natively: bfloat16 arrives as uint16 bit
  patterns with ``isofast_dtype == "bfloat16"``),
* a zarr array or group (folder, ``key=`` picks the array of a group),
* parquet files (or a folder of them) with a fixed-size-list embedding column,
* an ``.npz`` member (loaded into memory: zip members are not tiled).

Every source object is re-iterable: ``iter_chunks()`` yields 2-D row tiles
read ahead on a background thread (:mod:`isofast.readahead`) while the Rust
kernels compute on the previous tile, and only a bounded number of tiles is
resident. So ``isofast.analyze(open_source(PATH))`` runs on files larger than
memory: its two passes re-read the file instead of keeping it. ``shape``,
``dtype`` (storage dtype), ``isofast_dtype`` and ``nbytes`` describe the
selected rows; ``select(rows)`` narrows to a row range without reading.

Damaged files raise :class:`CorruptFileError` / :class:`TruncatedFileError`
(``OSError`` subclasses naming the file and byte offset); shards that
disagree on d or dtype raise ``ValueError`` naming the shard.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any
from collections.abc import Iterator, Sequence

import numpy as np

from isofast.errors import DimensionError
from isofast.readahead import (
    DEPTH,
    TILE_BYTES,
    CorruptFileError,
    FileArray,
    NotRegularFileError,
    TruncatedFileError,
    check_regular,
    check_tile_bytes,
    chunked,
    file_tiles,
    open_regular_file,
    tile_rows_for,
)

__all__ = [
    "EXAMPLES",
    "EXAMPLE_LAYERS",
    "CorruptFileError",
    "FileArraySource",
    "NotRegularFileError",
    "ParquetSource",
    "TiledSource",
    "TruncatedFileError",
    "ZarrSource",
    "example_path",
    "load_example",
    "open_capture_layer",
    "open_npy",
    "open_npy_folder",
    "open_parquet",
    "open_safetensors",
    "open_source",
    "open_zarr",
]

EXAMPLES = Path(__file__).resolve().parent / "examples"
EXAMPLE_LAYERS = (1, 15, 30)


def example_path(layer: int = 15) -> Path:
    """Bundled example: SmolLM2-135M residual stream on the airline series."""
    p = EXAMPLES / f"smollm2_airpassengers_layer{layer}.npy"
    if not p.exists():
        raise FileNotFoundError(f"no bundled example for layer {layer}; have {EXAMPLE_LAYERS}")
    return p


def load_example(layer: int = 15) -> np.ndarray:
    """The bundled example matrix (578 × 576, float16) for one layer."""
    return np.load(example_path(layer), mmap_mode="r")


# ------------------------------------------------------------------ helpers
def _row_range(rows: slice | None, n: int) -> tuple[int, int]:
    """``rows`` (a slice with step 1, or None) as absolute [start, stop)."""
    if rows is None:
        return 0, n
    if not isinstance(rows, slice):
        raise TypeError(f"rows must be a slice (e.g. slice(0, 1000)), got {type(rows).__name__}")
    start, stop, step = rows.indices(n)
    if step != 1:
        raise ValueError(f"rows must be a contiguous range (step 1), got step {step}")
    return start, max(start, stop)


def _storage_name(dtype: np.dtype, isofast_dtype: str | None) -> str:
    return isofast_dtype if isofast_dtype else dtype.newbyteorder("=").name


def _check_numeric(dtype: np.dtype, where: str) -> None:
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "fiu":
        raise TypeError(f"{where}: unsupported dtype {dtype} (isofast reads float and integer arrays)")
    if dtype.kind == "f" and dtype.itemsize > 8:
        raise TypeError(f"{where}: unsupported dtype {dtype}: use float64 or narrower")


class TiledSource:
    """Base of the file sources: a re-iterable stream of row tiles.

    Subclasses implement :meth:`_chunks` for the selected rows
    ``[self._start, self._stop)``.
    """

    #: storage dtype of the tiles (uint16 for bfloat16)
    dtype: np.dtype
    #: element type the kernels should use ("bfloat16" for uint16 bit patterns)
    isofast_dtype: str
    dim: int

    def __init__(self, n_rows: int, *, tile_bytes: int = TILE_BYTES, depth: int = DEPTH):
        check_tile_bytes(tile_bytes, depth)
        self._n_total = int(n_rows)
        self._start, self._stop = 0, int(n_rows)
        self.tile_bytes = int(tile_bytes)
        self.depth = int(depth)

    @property
    def shape(self) -> tuple[int, int]:
        return (self._stop - self._start, self.dim)

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.dim * self.dtype.itemsize

    @property
    def tile_rows(self) -> int:
        # never more rows than the selection holds (memory is bounded by the data)
        return max(1, min(tile_rows_for(self.dim, self.dtype.itemsize, self.tile_bytes), self.shape[0]))

    def select(self, rows: slice | None) -> TiledSource:
        """A copy restricted to ``rows`` (relative to the current selection)."""
        a, b = _row_range(rows, self.shape[0])
        out = copy.copy(self)
        out._start, out._stop = self._start + a, self._start + b
        return out

    def iter_chunks(self) -> Iterator[np.ndarray]:
        """Row tiles of the selected rows, read ahead in the background."""
        if self._stop <= self._start:
            return iter(())
        return self._chunks()

    def _chunks(self) -> Iterator[np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.iter_chunks()

    def to_numpy(self) -> np.ndarray:
        """All selected rows in one in-memory array (small sources only)."""
        out = np.empty(self.shape, self.dtype)
        r = 0
        for c in self.iter_chunks():
            out[r : r + c.shape[0]] = c
            r += c.shape[0]
        return out

    def as_array(self) -> np.ndarray:
        """The selected rows as one array for code that needs random access
        (e.g. clustering): memory-mapped where the format allows it (a single
        uncompressed file), else read into memory."""
        return self.to_numpy()

    def _describe(self) -> str:  # pragma: no cover - overridden
        return ""

    def __repr__(self) -> str:
        sel = "" if (self._start, self._stop) == (0, self._n_total) else f", rows={self._start}:{self._stop}"
        return (
            f"{type(self).__name__}({self._describe()}, shape={self.shape}, isofast_dtype={self.isofast_dtype!r}{sel})"
        )


# ------------------------------------------------------------------ uncompressed files
class FileArraySource(TiledSource):
    """Rows of one or more uncompressed arrays in files (.npy, shards,
    safetensors), read with ``preadv`` into reusable buffers.

    ``drop_cache`` (default: auto) drops finished byte ranges from the page
    cache when the data exceeds half the available memory.
    """

    def __init__(
        self,
        arrays: Sequence[FileArray],
        *,
        isofast_dtype: str | None = None,
        description: str = "",
        tile_bytes: int = TILE_BYTES,
        depth: int = DEPTH,
        drop_cache: bool | None = None,
    ):
        arrays = list(arrays)
        if not arrays:
            raise ValueError(f"{description or 'source'}: no arrays to read")
        super().__init__(sum(a.rows for a in arrays), tile_bytes=tile_bytes, depth=depth)
        self.arrays = arrays
        self.dim = arrays[0].dim
        self.dtype = arrays[0].dtype.newbyteorder("=")
        self.isofast_dtype = _storage_name(arrays[0].dtype, isofast_dtype)
        self.description = description
        self.drop_cache = drop_cache

    @property
    def paths(self) -> list[str]:
        return [a.path for a in self.arrays]

    def _selected(self) -> list[FileArray]:
        out, base = [], 0
        for fa in self.arrays:
            lo, hi = max(self._start - base, 0), min(self._stop - base, fa.rows)
            if lo < hi:
                out.append(
                    FileArray(fa.path, fa.offset, fa.n_rows, fa.dim, fa.dtype, fa.fortran, fa.start + lo, fa.start + hi)
                )
            base += fa.rows
        return out

    def _chunks(self) -> Iterator[np.ndarray]:
        return file_tiles(self._selected(), tile_bytes=self.tile_bytes, depth=self.depth, drop_cache=self.drop_cache)

    def as_array(self) -> np.ndarray:
        sel = self._selected()
        if len(sel) != 1:
            return self.to_numpy()
        fa = sel[0]
        mm = np.memmap(
            fa.path,
            dtype=fa.dtype,
            mode="r",
            offset=fa.offset,
            shape=(fa.n_rows, fa.dim),
            order="F" if fa.fortran else "C",
        )
        return mm[fa.start : fa.stop]

    def _describe(self) -> str:
        return self.description


def _npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int, int]:
    """(shape, fortran, dtype, data offset, file size) of a .npy file."""
    fmt = np.lib.format
    with open_regular_file(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            major, minor = fmt.read_magic(f)
        except ValueError as exc:
            raise CorruptFileError(path, 0, f"not a .npy file ({exc})") from None
        try:
            if (major, minor) == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(f)
            elif (major, minor) == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(f)
            elif (major, minor) == (3, 0):
                impl = getattr(fmt, "_read_array_header", None) or np.lib._format_impl._read_array_header
                shape, fortran, dtype = impl(f, version=(3, 0))
            else:
                raise CorruptFileError(path, 6, f"unsupported .npy format version {major}.{minor}")
        except CorruptFileError:
            raise
        except Exception as exc:
            raise CorruptFileError(path, 8, f"unreadable .npy header ({type(exc).__name__}: {exc})") from None
        offset = f.tell()
    return _checked_shape(path, shape, ".npy header", 8), bool(fortran), np.dtype(dtype), offset, size


def _checked_shape(path, shape, what: str, offset: int) -> tuple[int, ...]:
    """A stored shape as a tuple of ints, refusing what no file can hold:
    non-integers, booleans, negative sizes (a header saying -5 rows) and
    sizes whose product overflows int64 (a header promising 2⁶³ elements)."""
    try:
        items = list(shape)
    except TypeError:
        raise CorruptFileError(path, offset, f"{what}: shape {shape!r} is not a list of sizes") from None
    out = []
    for s in items:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)):
            raise CorruptFileError(
                path, offset, f"{what}: shape {tuple(items)!r} holds {s!r}, not a non-negative integer"
            )
        if int(s) < 0:
            raise CorruptFileError(path, offset, f"{what}: shape {tuple(items)} holds a negative size")
        out.append(int(s))
    total = 1
    for s in out:
        total *= s
    if total >= 2**63:
        raise CorruptFileError(path, offset, f"{what}: shape {tuple(out)} holds {total} elements, more than any file")
    return tuple(out)


def _file_array(
    path: Path, shape, fortran: bool, dtype: np.dtype, offset: int, size: int, layer: int | None, what: str
) -> FileArray:
    """Validate a stored array (2-D, or 3-D with a layer) against the file size."""
    _check_numeric(dtype, str(path))
    shape = _checked_shape(path, shape, what, offset)
    need = offset
    n_el = 1
    for s in shape:
        n_el *= s  # Python ints: no int64 wrap-around
    need += n_el * dtype.itemsize
    if size < need:
        item_row = (shape[-1] if shape else 1) * dtype.itemsize
        whole = max(0, (size - offset) // item_row) if item_row and not fortran and len(shape) == 2 else None
        rows = f"; {whole} of {shape[0]} rows complete" if whole is not None else ""
        raise TruncatedFileError(
            path, size, f"file ends early: {what} {tuple(shape)} {dtype} needs {need} bytes, the file has {size}{rows}"
        )
    if len(shape) == 3:
        if layer is None:
            raise ValueError(f"{path}: {what} has shape {tuple(shape)} (layers × rows × d): choose a layer")
        L = int(layer)
        if L < 0:
            L += shape[0]
        if not 0 <= L < shape[0]:
            raise ValueError(f"{path}: layer {layer} out of range for {shape[0]} layers")
        if fortran:
            raise ValueError(f"{path}: a Fortran-ordered 3-D array cannot be read by layer; save it in C order")
        n, d = shape[1], shape[2]
        if d == 0:
            raise DimensionError(f"{path}: {what} {tuple(shape)} has 0 columns (every statistic needs d ≥ 1)")
        return FileArray(str(path), offset + L * n * d * dtype.itemsize, n, d, dtype)
    if len(shape) != 2:
        raise DimensionError(f"{path}: expected a 2-D array of row vectors (N×d), got shape {tuple(shape)}")
    if shape[1] == 0:
        raise DimensionError(f"{path}: {what} {tuple(shape)} has 0 columns (every statistic needs d ≥ 1)")
    if layer is not None:
        raise ValueError(f"{path}: layer={layer} given but {what} is 2-D {tuple(shape)}")
    return FileArray(str(path), offset, shape[0], shape[1], dtype, fortran=fortran and shape[0] > 1 and shape[1] > 1)


def _npy_array(path: Path, layer: int | None = None) -> FileArray:
    shape, fortran, dtype, offset, size = _npy_header(path)
    return _file_array(path, shape, fortran, dtype, offset, size, layer, "the array")


def open_npy(path: Any, *, layer: int | None = None, dtype: str | None = None, **opts) -> FileArraySource:
    """A ``.npy`` file as a tiled source (never memory-mapped or loaded whole).

    ``dtype="bfloat16"`` marks uint16 content as bfloat16 bit patterns.
    ``opts``: ``tile_bytes``, ``depth``, ``drop_cache``.
    """
    p = Path(path)
    fa = _npy_array(p, layer)
    return FileArraySource([fa], isofast_dtype=_bf16(dtype, fa.dtype, p), description=str(p), **opts)


def _bf16(dtype: str | None, stored: np.dtype, where) -> str | None:
    if dtype is None:
        return None
    if dtype != "bfloat16":
        raise TypeError(f"dtype override {dtype!r} is not supported (only 'bfloat16')")
    if stored.itemsize != 2 or stored.kind not in "ui":
        raise TypeError(f"{where}: dtype='bfloat16' needs uint16/int16 bit patterns, the data is {stored}")
    return "bfloat16"


def _check_shards(
    arrays: Sequence[FileArray], names: Sequence[Any], expect: tuple[int, np.dtype] | None = None
) -> None:
    """Every shard must have the d and dtype of the first (or of ``expect``)."""
    d0, t0 = expect if expect is not None else (arrays[0].dim, arrays[0].dtype.newbyteorder("="))
    ref = "the manifest" if expect is not None else f"the first shard {names[0]}"
    for fa, name in zip(arrays, names):
        if fa.dim != d0:
            raise ValueError(f"shard {name} has d={fa.dim}, {ref} has d={d0}")
        if fa.dtype.newbyteorder("=") != t0:
            raise ValueError(f"shard {name} has dtype {fa.dtype}, {ref} has {t0}")


def open_npy_folder(path: Any, *, layer: int | None = None, dtype: str | None = None, **opts) -> FileArraySource:
    """A plain folder of ``*.npy`` shards, concatenated in file-name order."""
    p = Path(path)
    # Every *.npy entry is a shard: one that is not a regular file (a FIFO,
    # a folder) is refused by name, not skipped (skipping would drop rows).
    files = sorted(f for f in p.iterdir() if f.suffix.lower() == ".npy")
    if not files:
        raise FileNotFoundError(f"{p}: no .npy shards in this folder")
    arrays = [_npy_array(f, layer) for f in files]
    _check_shards(arrays, files)
    return FileArraySource(
        arrays, isofast_dtype=_bf16(dtype, arrays[0].dtype, p), description=f"{p} ({len(files)} shards)", **opts
    )


def open_capture_layer(path: Any, layer: int | None, site: str = "residual", **opts) -> FileArraySource:
    """One (layer, site) of an isofast capture folder as a tiled source.

    Only shards the manifest lists as complete are read; a shard whose d or
    dtype disagrees with the manifest raises ``ValueError`` naming it.
    """
    from isofast.store import open_capture, storage_dtype, verify_file

    cap = open_capture(path)
    if layer is None:
        raise ValueError(f"{path} is a capture with layers {cap.layers}: choose one with layer= (--layer)")
    lay = cap.layer(layer, site=site)
    if not lay.files:
        raise ValueError(f"{path}: the capture holds no complete shards yet")
    arrays = []
    sums = lay.checksums or [None] * len(lay.files)
    for f, n, cs in zip(lay.files, lay.rows, sums):
        if not f.exists():
            raise FileNotFoundError(f"capture shard {f} listed in the manifest is missing")
        # the bytes are what isofast wrote for this (site, layer, shard)
        verify_file(f, cs, f"capture shard ({site}, layer {lay.layer})")
        fa = _npy_array(f)
        if fa.rows != n:
            raise CorruptFileError(f, 0, f"capture shard has {fa.rows} rows, the manifest says {n}")
        arrays.append(fa)
    _check_shards(arrays, lay.files, (lay.dim, storage_dtype(lay.isofast_dtype)))
    return FileArraySource(
        arrays,
        isofast_dtype="bfloat16" if lay.isofast_dtype == "bfloat16" else None,
        description=f"{path} layer {lay.layer} {site}",
        **opts,
    )


# ------------------------------------------------------------------ safetensors
_ST_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
}
_ST_MAX_HEADER = 100 << 20  # the format's own limit


def safetensors_header(path: Any) -> tuple[dict, int, int]:
    """(tensor table, data start offset, file size) of a safetensors file:
    8-byte little-endian header length, then that many bytes of JSON."""
    p = Path(path)
    with open_regular_file(p, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise TruncatedFileError(p, len(head), "file ends inside the 8-byte safetensors header length")
        n = int.from_bytes(head, "little")
        if n > _ST_MAX_HEADER:
            raise CorruptFileError(p, 0, f"safetensors header length {n} is implausible (not a safetensors file?)")
        if 8 + n > size:
            raise TruncatedFileError(p, size, f"file ends inside the safetensors header ({n} bytes promised)")
        raw = f.read(n)
    try:
        table = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(p, 8, f"safetensors header is not valid JSON ({exc})") from None
    if not isinstance(table, dict):
        raise CorruptFileError(p, 8, "safetensors header is not a JSON object")
    table.pop("__metadata__", None)
    return table, 8 + n, size


def open_safetensors(path: Any, *, key: str | None = None, layer: int | None = None, **opts) -> FileArraySource:
    """One tensor of a ``.safetensors`` file, read natively from its byte range.

    ``key`` names the tensor (needed when the file holds several). BF16
    tensors arrive as uint16 bit patterns with ``isofast_dtype="bfloat16"``.
    """
    p = Path(path)
    table, start, size = safetensors_header(p)
    names = sorted(table)
    if key is None:
        if len(names) != 1:
            raise ValueError(f"{p} holds tensors {names}: choose one with key= (--key)")
        key = names[0]
    if key not in table:
        raise KeyError(f"{p} has no tensor {key!r}; tensors: {names}")
    info = table[key]
    try:
        st_dtype, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        for v in (b, e):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"data_offsets holds {v!r}, not an integer")
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptFileError(p, 8, f"safetensors entry {key!r} is malformed ({exc!r})") from None
    # JSON sizes must be integers: 2.7 rows or true columns are damage, not data.
    shape = list(_checked_shape(p, shape, f"safetensors entry {key!r}", 8))
    if st_dtype not in _ST_DTYPES:
        raise TypeError(f"{p}: tensor {key!r} has unsupported dtype {st_dtype} (supported: {sorted(_ST_DTYPES)})")
    dt = np.dtype(_ST_DTYPES[st_dtype])
    n_el = 1
    for s in shape:
        n_el *= s
    if e - b != n_el * dt.itemsize or b < 0:
        raise CorruptFileError(
            p, start + b, f"tensor {key!r} {tuple(shape)} {st_dtype} does not match its byte range [{b}, {e})"
        )
    fa = _file_array(p, shape, False, dt, start + b, size, layer, f"tensor {key!r}")
    return FileArraySource(
        [fa],
        isofast_dtype="bfloat16" if st_dtype == "BF16" else None,
        description=f"{p}[{key}]",
        **opts,
    )


# ------------------------------------------------------------------ zarr
class ZarrSource(TiledSource):
    """A 2-D zarr array (or one layer of a 3-D one), read in whole row chunks
    (shards when sharded) on a background thread; decompression releases the
    GIL."""

    def __init__(
        self,
        array: Any,
        *,
        layer: int | None = None,
        description: str = "",
        dtype: str | None = None,
        tile_bytes: int = TILE_BYTES,
        depth: int = DEPTH,
    ):
        shape = tuple(int(s) for s in array.shape)
        if len(shape) == 3:
            if layer is None:
                raise ValueError(f"{description}: zarr array has shape {shape} (layers × rows × d): choose a layer")
            L = int(layer) + (shape[0] if int(layer) < 0 else 0)
            if not 0 <= L < shape[0]:
                raise ValueError(f"{description}: layer {layer} out of range for {shape[0]} layers")
            self.layer = L
            shape = shape[1:]
        elif len(shape) == 2:
            if layer is not None:
                raise ValueError(f"{description}: layer={layer} given but the zarr array is 2-D {shape}")
            self.layer = None
        else:
            raise ValueError(f"{description}: expected a 2-D zarr array of row vectors, got shape {shape}")
        super().__init__(shape[0], tile_bytes=tile_bytes, depth=depth)
        self.array = array
        self.dim = shape[1]
        self.dtype = np.dtype(array.dtype)
        _check_numeric(self.dtype, description)
        self.isofast_dtype = _storage_name(self.dtype, _bf16(dtype, self.dtype, description))
        self.description = description
        grid = getattr(array, "shards", None) or array.chunks
        self.chunk_rows = int(grid[-2])
        self._check_chunks(description)

    def _check_chunks(self, description: str) -> None:
        """Refuse a store with missing chunks: zarr reads a missing chunk as
        the fill value, which would enter the statistics as rows of data."""
        try:
            have, total = int(self.array.nchunks_initialized), int(self.array.nchunks)
        except Exception:
            return
        if have < total:
            raise CorruptFileError(
                description,
                0,
                f"zarr array has {total - have} of {total} chunks missing (they would read as fill values); "
                "if they really are all fill values, rewrite the store with write_empty_chunks=True",
            )

    def _read(self, a: int, b: int) -> np.ndarray:
        sel = (self.layer, slice(a, b)) if self.layer is not None else slice(a, b)
        try:
            return np.asarray(self.array[sel])
        except Exception as exc:
            raise CorruptFileError(
                self.description, 0, f"rows {a}:{b} cannot be decoded ({type(exc).__name__}: {exc})"
            ) from exc

    def _chunks(self) -> Iterator[np.ndarray]:
        # Whole stored chunks per tile: a tile boundary inside a chunk would
        # decompress that chunk twice.
        step = self.chunk_rows * max(1, self.tile_rows // self.chunk_rows)
        return chunked(self._read, self._start, self._stop, step, depth=self.depth)

    def _describe(self) -> str:
        return self.description


def open_zarr(
    path: Any, *, key: str | None = None, layer: int | None = None, dtype: str | None = None, **opts
) -> ZarrSource:
    """A zarr array (a group needs ``key=`` unless it holds one array)."""
    import zarr

    p = str(path)
    try:
        obj = zarr.open(p, mode="r")
    except Exception as exc:  # zarr raises several types for unreadable stores
        raise CorruptFileError(p, 0, f"not a readable zarr store ({type(exc).__name__}: {exc})") from exc
    if hasattr(obj, "array_keys"):
        names = sorted(obj.array_keys())
        if key is None:
            if len(names) != 1:
                raise ValueError(f"{p} is a zarr group with arrays {names}: choose one with key= (--key)")
            key = names[0]
        if key not in names:
            raise KeyError(f"{p} has no array {key!r}; arrays: {names}")
        obj = obj[key]
        p = f"{p}[{key}]"
    return ZarrSource(obj, layer=layer, description=p, dtype=dtype, **opts)


# ------------------------------------------------------------------ parquet
class ParquetSource(TiledSource):
    """An embedding column of parquet files (fixed-size list, or a list of
    constant length), read in record batches on a background thread.

    The list column becomes an (n, d) array with ``values.to_numpy().reshape``
    (no Python loop per row). A null row or null element is a ``ValueError``
    naming the row.
    """

    def __init__(
        self,
        files: Sequence[Any],
        *,
        column: str | None = None,
        dtype: str | None = None,
        tile_bytes: int = TILE_BYTES,
        depth: int = DEPTH,
    ):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.files = [str(f) for f in files]
        if not self.files:
            raise FileNotFoundError("no parquet files")
        counts, dim, vtype = [], None, None
        for f in self.files:
            check_regular(f)
            try:
                meta = pq.ParquetFile(f)
            except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
                raise CorruptFileError(f, 0, f"not a readable parquet file ({exc})") from None
            schema = meta.schema_arrow
            col = column if column is not None else self._guess_column(schema, f)
            if col not in schema.names:
                raise KeyError(f"{f} has no column {col!r}; columns: {schema.names}")
            t = schema.field(col).type
            if pa.types.is_fixed_size_list(t):
                d = t.list_size
            elif pa.types.is_list(t) or pa.types.is_large_list(t):
                d = self._list_dim(meta, col, f)
            else:
                raise TypeError(f"{f}: column {col!r} has type {t}; expected a (fixed-size) list of numbers")
            vt = t.value_type
            if not (pa.types.is_floating(vt) or pa.types.is_integer(vt)):
                raise TypeError(f"{f}: column {col!r} holds {vt}; expected floats or integers")
            if dim is not None and (d != dim or vt != vtype):
                raise ValueError(f"shard {f} has d={d} {vt}, the first file {self.files[0]} has d={dim} {vtype}")
            dim, vtype, column = d, vt, col
            counts.append([meta.metadata.row_group(i).num_rows for i in range(meta.metadata.num_row_groups)])
        super().__init__(sum(sum(c) for c in counts), tile_bytes=tile_bytes, depth=depth)
        self.column = column
        self.dim = int(dim)
        self.dtype = np.dtype(vtype.to_pandas_dtype())
        self.isofast_dtype = _storage_name(self.dtype, _bf16(dtype, self.dtype, self.files[0]))
        self._groups = counts

    @staticmethod
    def _guess_column(schema, f) -> str:
        import pyarrow as pa

        lists = [n for n, t in zip(schema.names, schema.types) if pa.types.is_fixed_size_list(t)]
        if not lists:
            lists = [n for n, t in zip(schema.names, schema.types) if pa.types.is_list(t) or pa.types.is_large_list(t)]
        if len(lists) != 1:
            raise ValueError(
                f"{f}: cannot tell the embedding column among {schema.names}: choose one with column= (--key)"
            )
        return lists[0]

    @staticmethod
    def _list_dim(meta, col: str, f) -> int:
        if meta.metadata.num_rows == 0:
            raise ValueError(f"{f}: empty file, cannot tell the list length of {col!r}")
        first = next(meta.iter_batches(batch_size=1, columns=[col]))
        return len(first.column(0)[0])

    def _to_numpy(self, arr, row0: int, f: str) -> np.ndarray:
        import pyarrow as pa

        if arr.null_count:
            bad = row0 + int(np.flatnonzero(np.asarray(arr.is_null()))[0])
            raise ValueError(f"{f}: row {bad} of column {self.column!r} is null")
        if not pa.types.is_fixed_size_list(arr.type):
            lens = np.diff(np.asarray(arr.offsets))
            if np.any(lens != self.dim):
                bad = row0 + int(np.flatnonzero(lens != self.dim)[0])
                raise ValueError(
                    f"{f}: row {bad} of column {self.column!r} has {lens[bad - row0]} values, expected {self.dim}"
                )
        flat = arr.flatten()  # respects the slice offset, unlike .values
        if flat.null_count:
            bad = row0 + int(np.flatnonzero(np.asarray(flat.is_null()))[0]) // self.dim
            raise ValueError(f"{f}: row {bad} of column {self.column!r} holds a null value")
        return flat.to_numpy(zero_copy_only=False).reshape(-1, self.dim)

    def _produce(self) -> Iterator[np.ndarray]:
        import pyarrow.parquet as pq

        base = 0
        for f, groups in zip(self.files, self._groups):
            # Row groups overlapping the selection, and the rows to skip in the first.
            starts = np.concatenate([[0], np.cumsum(groups)]) + base
            sel = [i for i in range(len(groups)) if starts[i] < self._stop and starts[i + 1] > self._start]
            base += int(sum(groups))
            if not sel:
                continue
            row = int(starts[sel[0]])
            try:
                pf = pq.ParquetFile(f)
                batches = iter(
                    pf.iter_batches(batch_size=self.tile_rows, row_groups=sel, columns=[self.column], use_threads=True)
                )
            except Exception as exc:
                raise CorruptFileError(f, 0, f"not a readable parquet file ({type(exc).__name__}: {exc})") from exc
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except Exception as exc:
                    raise CorruptFileError(
                        f, 0, f"rows from {row} cannot be decoded ({type(exc).__name__}: {exc})"
                    ) from exc
                n = batch.num_rows
                lo, hi = max(self._start - row, 0), min(self._stop - row, n)
                if lo < hi:
                    col = batch.column(0)
                    yield self._to_numpy(col.slice(lo, hi - lo), row + lo, f)
                row += n
                if row >= self._stop:
                    return

    def _chunks(self) -> Iterator[np.ndarray]:
        from isofast.readahead import prefetch

        return prefetch(self._produce, self.depth)

    def _describe(self) -> str:
        return f"{self.files[0]}{f' +{len(self.files) - 1}' if len(self.files) > 1 else ''}[{self.column}]"


def open_parquet(path: Any, *, column: str | None = None, dtype: str | None = None, **opts) -> ParquetSource:
    """A parquet file or a folder of parquet files (name order)."""
    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in (".parquet", ".pq")) if p.is_dir() else [p]
    if not files:
        raise FileNotFoundError(f"{p}: no parquet files in this folder")
    return ParquetSource(files, column=column, dtype=dtype, **opts)


# ------------------------------------------------------------------ dispatch
def _is_zarr(p: Path) -> bool:
    return p.suffix.lower() == ".zarr" or any((p / m).exists() for m in ("zarr.json", ".zarray", ".zgroup"))


def open_source(
    path: Any,
    *,
    layer: int | None = None,
    site: str = "residual",
    key: str | None = None,
    rows: slice | None = None,
    dtype: str | None = None,
    tile_bytes: int = TILE_BYTES,
    depth: int = DEPTH,
    drop_cache: bool | None = None,
) -> Any:
    """Open ``path`` as something :func:`isofast.analyze` reads in tiles.

    ``layer`` picks a capture layer or the first axis of a 3-D array;
    ``site`` a capture site; ``key`` an .npz member, safetensors tensor, zarr
    group member or parquet column; ``rows`` a contiguous row range;
    ``dtype="bfloat16"`` marks uint16 bit patterns. ``tile_bytes``/``depth``
    size the read-ahead; ``drop_cache`` (None = auto) drops finished pages.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    opts = dict(tile_bytes=tile_bytes, depth=depth)
    src: Any
    if p.is_dir():
        if (p / "manifest.json").exists():
            src = open_capture_layer(p, layer, site, drop_cache=drop_cache, **opts)
        elif _is_zarr(p):
            src = open_zarr(p, key=key, layer=layer, dtype=dtype, **opts)
        elif any(f.suffix.lower() == ".npy" for f in p.iterdir()):
            src = open_npy_folder(p, layer=layer, dtype=dtype, drop_cache=drop_cache, **opts)
        elif any(f.suffix.lower() in (".parquet", ".pq") for f in p.iterdir()):
            src = open_parquet(p, column=key, dtype=dtype, **opts)
        else:
            raise FileNotFoundError(
                f"{p}: not a capture (manifest.json), zarr store, or folder of .npy/.parquet shards"
            )
        return src.select(rows)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return open_npy(p, layer=layer, dtype=dtype, drop_cache=drop_cache, **opts).select(rows)
    if suffix == ".safetensors":
        return open_safetensors(p, key=key, layer=layer, drop_cache=drop_cache, **opts).select(rows)
    if suffix in (".parquet", ".pq"):
        return open_parquet(p, column=key, dtype=dtype, **opts).select(rows)
    if suffix == ".npz":
        return _npz_member(p, key, layer, rows)
    raise ValueError(
        f"{p}: unsupported file type {suffix!r} (supported: .npy, .safetensors, .parquet, .npz, "
        "zarr stores and folders of .npy shards or capture folders)"
    )


def _npz_member(p: Path, key: str | None, layer: int | None, rows: slice | None) -> np.ndarray:
    """An .npz member, loaded into memory (zip members are not tiled)."""
    check_regular(p)
    try:
        z = np.load(p, allow_pickle=False)
    except Exception as exc:
        raise CorruptFileError(p, 0, f"not a readable .npz file ({type(exc).__name__}: {exc})") from None
    with z:
        names = list(z.files)
        if key is None:
            if len(names) != 1:
                raise ValueError(f"{p} holds {names}: choose one with --key")
            key = names[0]
        if key not in names:
            raise KeyError(f"{p} has no member {key!r}; members: {names}")
        try:
            arr = z[key]
        except Exception as exc:
            raise CorruptFileError(p, 0, f"member {key!r} is unreadable ({type(exc).__name__}: {exc})") from None
    if arr.ndim == 3 and layer is not None:
        arr = arr[layer]
    elif layer is not None:
        raise ValueError(f"{p}: layer={layer} given but member {key!r} has shape {arr.shape}")
    if arr.ndim != 2:
        raise ValueError(f"{p}: expected a 2-D array of row vectors, got shape {arr.shape}")
    a, b = _row_range(rows, arr.shape[0])
    return arr[a:b]
