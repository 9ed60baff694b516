"""Reading row tiles of files in the background with bounded memory.

The Rust kernels release the GIL, so a reader thread can fetch tile t+1 from
disk while the kernels compute on tile t. Three rules keep a source larger
than RAM from growing the process:

* only a bounded number of tiles exists at once (:func:`prefetch`'s queue of
  ``depth`` tiles, one being read, one being computed on);
* tiles are read with ``os.preadv`` into reusable buffers
  (:class:`BufferPool`) instead of slicing a memory map, because pages of a
  mapping count as resident memory of the process until it is unmapped;
* byte ranges that are finished are dropped from the page cache
  (``posix_fadvise(POSIX_FADV_DONTNEED)``) when the file is too large to
  stay cached anyway, so a 30 GB scan does not push everyone else's pages out.

Files that end early or carry nonsense raise :class:`TruncatedFileError` /
:class:`CorruptFileError` (``OSError`` subclasses) naming the file and the byte
offset.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from dataclasses import dataclass
from typing import TypeVar
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

# One exception tree for the package (isofast.errors); re-exported here so
# ``from isofast.readahead import CorruptFileError`` keeps working.
from isofast.errors import CorruptFileError, TruncatedFileError, _rebuild_error  # noqa: F401

T = TypeVar("T")

#: Default bytes per tile: large enough that per-call overhead vanishes next
#: to the GEMMs, small enough that a few resident tiles stay far below 1 GiB.
TILE_BYTES = 32 << 20
#: Default number of tiles read ahead of the one being computed on.
DEPTH = 2


# ------------------------------------------------------------------ file I/O
class NotRegularFileError(CorruptFileError):
    """A path that is not a regular file (a FIFO, a device, a socket, a
    folder where a file was expected): reading it could block forever or
    never end, so it is refused before it is opened for reading."""


def open_regular(path) -> int:
    """Open ``path`` read-only and return the descriptor, refusing anything
    but a regular file.

    The open is non-blocking, so a FIFO named ``x.npy`` is refused at once
    instead of blocking until some writer appears; the check is made on the
    open descriptor (``fstat``), so no other file can be swapped in between.
    """
    import stat

    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(os.fspath(path), flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = (
                "a FIFO"
                if stat.S_ISFIFO(mode)
                else "a folder"
                if stat.S_ISDIR(mode)
                else "a socket"
                if stat.S_ISSOCK(mode)
                else "a device"
                if (stat.S_ISCHR(mode) or stat.S_ISBLK(mode))
                else "not a regular file"
            )
            raise NotRegularFileError(
                path, 0, f"is {kind}, not a regular file: refused (reading it could block or never end)"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular_file(path, mode: str = "rb"):
    """:func:`open_regular` as a Python file object (binary, or text when
    ``mode`` is ``"r"``, read as UTF-8)."""
    fd = open_regular(path)
    if "b" in mode:
        return os.fdopen(fd, mode)
    return os.fdopen(fd, mode, encoding="utf-8", newline="")


def check_regular(path) -> None:
    """Refuse ``path`` unless it is a regular file (see :func:`open_regular`);
    for libraries that open the file themselves (numpy, zarr, pyarrow)."""
    os.close(open_regular(path))


def read_exact(fd: int, buf: memoryview, offset: int, path) -> None:
    """Fill ``buf`` from byte ``offset`` of the open file ``fd``.

    A short read means the file ends early: :class:`TruncatedFileError`
    naming ``path`` and the offset where the data stopped.
    """
    view = memoryview(buf).cast("B")
    total = len(view)
    got = 0
    while got < total:
        try:
            if hasattr(os, "preadv"):
                n = os.preadv(fd, [view[got:]], offset + got)
            else:  # pragma: no cover - platforms without preadv
                os.lseek(fd, offset + got, os.SEEK_SET)
                n = os.readv(fd, [view[got:]])
        except InterruptedError:  # pragma: no cover - PEP 475 retries already
            continue
        except OSError as exc:
            raise type(exc)(exc.errno, f"{path}: read failed at byte offset {offset + got}: {exc.strerror}") from exc
        if n == 0:
            raise TruncatedFileError(
                path,
                offset + got,
                f"file ends early: {total - got} of {total} bytes missing from the tile at byte {offset}",
            )
        got += n


def drop_pages(fd: int, offset: int, length: int) -> None:
    """Tell the kernel we are done with a byte range (clean pages are freed)."""
    if length > 0 and hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except OSError:  # pragma: no cover - e.g. a filesystem without fadvise
            pass


def advise_sequential(fd: int) -> None:
    """Ask for aggressive kernel read-ahead on a file read front to back."""
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except OSError:  # pragma: no cover
            pass


def available_memory() -> int | None:
    """MemAvailable in bytes (Linux), else ``None``."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def should_drop_cache(total_bytes: int, drop_cache: bool | None) -> bool:
    """Resolve ``drop_cache=None`` (auto): drop finished pages when the data
    would not fit in half of the available memory, i.e. when a second pass
    could not find it cached anyway."""
    if drop_cache is not None:
        return bool(drop_cache)
    avail = available_memory()
    return avail is not None and total_bytes > avail // 2


# ------------------------------------------------------------------ buffers
class BufferPool:
    """Byte buffers that are reused once nobody outside the pool uses them.

    A tile handed out is a view of a pool buffer; numpy points every view
    (and every view of a view) at the owning buffer, so the buffer's reference
    count tells whether any tile made from it is still alive. A consumer that
    keeps tiles (``list(source.iter_chunks())``) therefore gets fresh buffers
    instead of overwritten ones; a streaming consumer gets the same few
    buffers back, so no new pages are faulted in per tile.
    """

    def __init__(self, capacity: int = DEPTH + 2):
        self.capacity = int(capacity)
        self._bufs: list[np.ndarray] = []
        self._lock = threading.Lock()
        # Reference count of a buffer that only the pool holds, measured the
        # same way `_is_free` measures (list slot + call argument).
        probe = [np.empty(1, np.uint8)]
        self._free_refs = self._refs(probe, 0)

    @staticmethod
    def _refs(bufs: list[np.ndarray], i: int) -> int:
        return sys.getrefcount(bufs[i])

    def get(self, nbytes: int) -> np.ndarray:
        """A uint8 buffer of at least ``nbytes`` bytes nobody else uses."""
        with self._lock:
            for i in range(len(self._bufs)):
                if self._bufs[i].nbytes >= nbytes and self._refs(self._bufs, i) <= self._free_refs:
                    return self._bufs[i]
            buf = np.empty(max(int(nbytes), 1), np.uint8)
            if len(self._bufs) < self.capacity:
                self._bufs.append(buf)
            else:
                # Replace a free but too-small buffer, if any, so the pool
                # adapts to the tile size; otherwise the new one is transient.
                for i in range(len(self._bufs)):
                    if self._refs(self._bufs, i) <= self._free_refs:
                        self._bufs[i] = buf
                        break
            return buf


# ------------------------------------------------------------------ prefetch
_ITEM, _DONE, _ERROR = 0, 1, 2


def prefetch(produce: Callable[[], Iterable[T]], depth: int = DEPTH, name: str = "isofast-readahead") -> Iterator[T]:
    """Iterate ``produce()`` on a background thread, ``depth`` items ahead.

    Exceptions of the producer are raised in the consumer at the position
    where they happened. Closing the returned generator early (``break``)
    stops and joins the thread.
    """
    if depth <= 0:
        yield from produce()
        return
    q: queue.Queue = queue.Queue(maxsize=int(depth))
    stop = threading.Event()

    def put(msg) -> bool:
        while not stop.is_set():
            try:
                q.put(msg, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in produce():
                if not put((_ITEM, item)):
                    return
                del item  # the queue holds it now: keep no second reference
            put((_DONE, None))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            put((_ERROR, exc))

    t = threading.Thread(target=work, name=name, daemon=True)
    t.start()
    try:
        while True:
            kind, val = q.get()
            if kind == _ITEM:
                yield val
                del val  # release the consumed tile before waiting for the next
            elif kind == _DONE:
                return
            else:
                raise val
    finally:
        stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                break
        t.join()


# ------------------------------------------------------------------ file tiles
@dataclass(frozen=True)
class FileArray:
    """A 2-D array stored uncompressed in a file.

    ``n_rows × dim`` elements of ``dtype`` start at byte ``offset`` of
    ``path``, row-major (C order) or column-major (``fortran``). ``start`` and
    ``stop`` select the rows to read.
    """

    path: str
    offset: int
    n_rows: int
    dim: int
    dtype: np.dtype
    fortran: bool = False
    start: int = 0
    stop: int | None = None

    @property
    def rows(self) -> int:
        return (self.n_rows if self.stop is None else self.stop) - self.start

    @property
    def nbytes(self) -> int:
        return self.rows * self.dim * self.dtype.itemsize


def _swap_to_native(arr: np.ndarray) -> None:
    """Byte-swap a big-endian piece in place (the buffer is ours)."""
    if not arr.dtype.isnative and arr.dtype.itemsize > 1:
        arr.byteswap(inplace=True)


class _Files:
    """The open file of the current shard (one descriptor at a time, so a
    folder of thousands of shards never exhausts descriptors)."""

    def __init__(self) -> None:
        self.path: str | None = None
        self._fd: int | None = None

    def fd(self, path: str) -> int:
        if path != self.path:
            self.close()
            self._fd = open_regular(path)
            self.path = path
            advise_sequential(self._fd)
        assert self._fd is not None
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self.path = None, None


def _fortran_tiles(fa: FileArray, files: _Files, tile_rows: int, pool: BufferPool, drop: bool) -> Iterator[np.ndarray]:
    """Tiles of a column-major array: column j is contiguous in the file, so
    the (nb,) piece of every column is read into a (d, nb) buffer whose
    transpose is the (nb, d) tile (the kernels take any strides)."""
    dt, d, item = fa.dtype, fa.dim, fa.dtype.itemsize
    stop = fa.n_rows if fa.stop is None else fa.stop
    fd = files.fd(fa.path)
    a = fa.start
    while a < stop:
        nb = min(tile_rows, stop - a)
        buf = pool.get(nb * d * item)
        cols = buf[: nb * d * item].view(dt).reshape(d, nb)
        del buf
        for j in range(d):
            off = fa.offset + (j * fa.n_rows + a) * item
            read_exact(fd, cols[j].view(np.uint8), off, fa.path)
            if drop:
                drop_pages(fd, off, nb * item)
        _swap_to_native(cols)
        tile = cols.view(dt.newbyteorder("=")).T
        del cols
        yield tile
        del tile
        a += nb


def _row_tiles(
    arrays: Sequence[FileArray], files: _Files, tile_rows: int, pool: BufferPool, drop: bool
) -> Iterator[np.ndarray]:
    """Tiles of row-major arrays read as one concatenation: a tile may span
    shard boundaries, so tiles are full-sized whatever the shard sizes (and
    the kernels see the same tiling as for one file)."""
    dt = arrays[0].dtype.newbyteorder("=")
    d, item = arrays[0].dim, dt.itemsize
    row_bytes = d * item
    pieces = [(fa, fa.start, fa.n_rows if fa.stop is None else fa.stop) for fa in arrays]
    # A tile never holds more rows than the data: tile_bytes larger than the
    # file (``--tile-mb 1000000`` on 16 KB) allocates the file's size, not
    # the request.
    tile_rows = max(1, min(int(tile_rows), sum(stop - a for _, a, stop in pieces)))
    k = 0
    while k < len(pieces):
        buf = pool.get(tile_rows * row_bytes)
        filled = 0
        while filled < tile_rows and k < len(pieces):
            fa, a, stop = pieces[k]
            nb = min(tile_rows - filled, stop - a)
            fd = files.fd(fa.path)
            off = fa.offset + a * row_bytes
            piece = buf[filled * row_bytes : (filled + nb) * row_bytes]
            read_exact(fd, piece, off, fa.path)
            if drop:
                drop_pages(fd, off, nb * row_bytes)
            _swap_to_native(piece.view(fa.dtype))
            filled += nb
            if a + nb >= stop:
                k += 1
            else:
                pieces[k] = (fa, a + nb, stop)
        tile = buf[: filled * row_bytes].view(dt).reshape(filled, d)
        del buf
        yield tile
        del tile


def tile_rows_for(dim: int, itemsize: int, tile_bytes: int = TILE_BYTES) -> int:
    """Rows per tile so that one tile holds about ``tile_bytes`` bytes."""
    return max(1, int(tile_bytes) // max(1, int(dim) * int(itemsize)))


def check_tile_bytes(tile_bytes, depth=DEPTH) -> None:
    """Validate ``tile_bytes`` (> 0 bytes) and ``depth`` (≥ 0 tiles)."""
    if isinstance(tile_bytes, bool) or not isinstance(tile_bytes, (int, np.integer)) or int(tile_bytes) <= 0:
        from isofast.errors import InputError

        raise InputError(f"tile_bytes must be a positive integer number of bytes, got {tile_bytes!r}")
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or int(depth) < 0:
        from isofast.errors import InputError

        raise InputError(f"depth must be an integer ≥ 0, got {depth!r}")


def file_tiles(
    arrays: Sequence[FileArray],
    *,
    tile_bytes: int = TILE_BYTES,
    depth: int = DEPTH,
    drop_cache: bool | None = None,
) -> Iterator[np.ndarray]:
    """Row tiles of several file arrays in order (shards), read ahead.

    Row-major arrays are tiled as one concatenation (tiles span shard
    boundaries); column-major arrays are tiled on their own. At most ``depth + 2`` tiles are resident (queued, being read, being used),
    plus any tiles the consumer chooses to keep.
    """
    check_tile_bytes(tile_bytes, depth)
    arrays = list(arrays)
    drop = should_drop_cache(sum(a.nbytes for a in arrays), drop_cache)

    def produce() -> Iterator[np.ndarray]:
        pool = BufferPool(depth + 2)
        files = _Files()
        try:
            run: list[FileArray] = []  # consecutive row-major arrays, tiled together
            for fa in arrays + [None]:
                if fa is not None and not fa.fortran:
                    run.append(fa)
                    continue
                if run:
                    rows = tile_rows_for(run[0].dim, run[0].dtype.itemsize, tile_bytes)
                    yield from _row_tiles(run, files, rows, pool, drop)
                    run = []
                if fa is not None:
                    rows = tile_rows_for(fa.dim, fa.dtype.itemsize, tile_bytes)
                    yield from _fortran_tiles(fa, files, rows, pool, drop)
        finally:
            files.close()

    return prefetch(produce, depth)


def chunked(
    read: Callable[[int, int], np.ndarray],
    start: int,
    stop: int,
    step: int,
    *,
    depth: int = DEPTH,
) -> Iterator[np.ndarray]:
    """``read(a, b)`` for consecutive row ranges ending at multiples of
    ``step`` (so a tile never splits a stored chunk when ``step`` is a
    multiple of the chunk length), read ahead on a background thread. For
    formats that decode into fresh arrays (zarr)."""

    def produce() -> Iterator[np.ndarray]:
        a = start
        while a < stop:
            b = min(stop, (a // step + 1) * step)
            yield read(a, b)
            a = b

    return prefetch(produce, depth)
