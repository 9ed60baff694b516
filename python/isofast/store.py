"""Capture folders: per-layer, per-site ``.npy`` shards, a manifest, a token table.

Layout of a capture folder ``DIR``::

    DIR/manifest.json                      what was captured, and which shards are complete
    DIR/<site>/L<layer:03d>/<k:05d>.npy    rows of shard k for one (site, layer), shape (n_k, d)
    DIR/tokens/<k:05d>.parquet|.csv        one row per captured token of shard k
    DIR/windows/<k:05d>.parquet|.csv       one row per window of shard k (scaler, lengths)

Row r of every (site, layer) array is the same token: row r of the token table.
Columns of the token table: ``row``, ``series_id``, ``window_id``,
``position`` (token index in the unpadded sequence), ``token_id``,
``token_text``, ``role`` (``digit``/``sign``/``separator``/``other``, see
:mod:`isofast.serializers.base`). Parquet when pyarrow is installed, else CSV.

The windows table has ``window_id``, ``series_id``, ``start`` (index of the
first value *kept* in the series), ``n_values`` (values kept),
``n_values_input`` (values before any truncation), ``n_tokens``, and the
serializer's affine map as ``scale``/``offset`` (LLMTime: q and m; Chronos: s
and 0; patches: σ and μ). ``token_id`` is −1 for patches (no vocabulary).

Storage dtypes: float32 and float16 are stored as such; bfloat16 is stored as
its uint16 bit patterns (numpy has no bfloat16), and the manifest says
``"dtype": "bfloat16", "storage_dtype": "uint16"``; :class:`CaptureLayer`
reports ``isofast_dtype == "bfloat16"`` so :func:`isofast.analyze` reads them
right.

Integrity: every file isofast writes gets a CRC-32 and its size
(``"crc32:<8 hex>:<bytes>"``), recorded in the shard's ``checksums`` entry of
the manifest under its path relative to the folder; the manifest carries a
checksum of its own content (``"checksum"``, over the canonical JSON of the
other keys). Both are verified when the files are read (each file once per
process while its size, inode and mtime are unchanged), so overwritten
bytes, a truncated file or two shards swapped between layers raise
:class:`~isofast.errors.ChecksumError` (an ``OSError``) naming the file,
never load as data. Captures written before checksums (format version 1)
are read unverified.

Crash safety: every file is written to a temporary name in the same folder,
flushed, fsync'ed and renamed with ``os.replace``; the manifest (written the
same way) lists shard k only after all of shard k's files are in place. A
shard file not listed in the manifest is never read and is overwritten when
the capture resumes. Write errors (full disk, permissions) surface as
``OSError`` naming the file; the manifest then still describes only complete
shards.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import numpy as np

from isofast.errors import ChecksumError, CorruptFileError, InputError, file_error

FORMAT = "isofast-capture"
#: 2: per-file checksums in the shard entries and a manifest checksum.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
TOKEN_COLUMNS = ("row", "series_id", "window_id", "position", "token_id", "token_text", "role")
# Written by captures of time-series foundation models (isofast.tsfm.capture):
# the first and last time step (within the window) whose values a token reads,
# −1 for tokens that read none ([REG], EOS, padding-only patches).
OPTIONAL_TOKEN_COLUMNS = ("first_step", "last_step")
WINDOW_COLUMNS = (
    "window_id",
    "series_id",
    "start",
    "n_values",
    "n_values_input",
    "n_tokens",
    "scale",
    "offset",
)
_STORAGE = {"float32": "float32", "float16": "float16", "bfloat16": "uint16"}


def storage_dtype(isofast_dtype: str) -> np.dtype:
    try:
        return np.dtype(_STORAGE[isofast_dtype])
    except KeyError:
        raise ValueError(f"unsupported capture dtype {isofast_dtype!r}") from None


def have_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def shard_path(root: Path, site: str, layer: int, k: int) -> Path:
    return root / site / f"L{layer:03d}" / f"{k:05d}.npy"


# ------------------------------------------------------------ checksums
_CHUNK = 8 << 20


def checksum_of(path) -> str:
    """``"crc32:<8 hex digits>:<size in bytes>"`` of a file (read once, in 8 MiB
    pieces). CRC-32 detects every burst error up to 32 bits and any other
    accidental change with probability 1 − 2⁻³²; it is not meant to resist
    deliberate forgery."""
    import zlib

    from isofast.readahead import open_regular_file

    crc, size = 0, 0
    with open_regular_file(path, "rb") as f:
        while True:
            b = f.read(_CHUNK)
            if not b:
                break
            crc = zlib.crc32(b, crc)
            size += len(b)
    return f"crc32:{crc:08x}:{size}"


_VERIFIED: dict = {}


def verify_file(path, expected, what: str = "file") -> None:
    """Raise :class:`ChecksumError` naming ``path`` unless its content has the
    ``expected`` checksum (``None``: written before checksums, not checked).
    A file verified once is not re-read while its size, inode and mtime stay
    the same."""
    if expected is None:
        return
    p = str(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"{what} {p} listed in the manifest is missing", p) from None
    key = (p, st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, expected)
    if key in _VERIFIED:
        return
    got = checksum_of(p)
    if got != expected:
        raise ChecksumError(
            p,
            0,
            f"{what} does not match the checksum the manifest records ({got} ≠ {expected}): "
            "overwritten, truncated, swapped with another file or damaged",
        )
    if len(_VERIFIED) > 100_000:
        _VERIFIED.clear()
    _VERIFIED[key] = True


def _manifest_body(m: dict) -> bytes:
    return json.dumps({k: v for k, v in m.items() if k != "checksum"}, sort_keys=True, separators=(",", ":")).encode()


def manifest_checksum(m: dict) -> str:
    import zlib

    body = _manifest_body(m)
    return f"crc32:{zlib.crc32(body):08x}:{len(body)}"


# ------------------------------------------------------------ atomic writes
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write) -> str:
    """Call ``write(fileobj)`` on a temporary file, fsync it, rename it to ``path``;
    returns the file's checksum (:func:`checksum_of`, of the bytes on disk).

    On any error the temporary file is removed and an ``OSError`` naming
    ``path`` is raised, so ``path`` either holds the complete new content or
    is untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write capture file {path}: {exc.strerror or exc}", str(path)) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        digest = checksum_of(tmp)  # of what reached the disk (page cache: no second I/O)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise type(exc)(
                exc.errno if exc.errno is not None else errno.EIO,
                f"cannot write capture file {path}: {exc.strerror or exc}; "
                "the manifest still lists only complete shards",
                str(path),
            ) from exc
        raise
    _fsync_dir(path.parent)
    return digest


def write_npy(path: Path, arr) -> str:
    """Write one 2-D array — or a list of row blocks with equal width and
    dtype, stacked, without concatenating them in memory — as a ``.npy`` file
    (format 1.0, C order), atomically."""
    parts = list(arr) if isinstance(arr, (list, tuple)) else [arr]
    if not parts:
        raise ValueError(f"{path}: nothing to write")
    first = parts[0]
    n = sum(int(p.shape[0]) for p in parts)
    if any(p.ndim != 2 or p.shape[1:] != first.shape[1:] or p.dtype != first.dtype for p in parts):
        raise ValueError(f"{path}: row blocks differ in width or dtype")
    header = {
        "descr": np.lib.format.dtype_to_descr(first.dtype),
        "fortran_order": False,
        "shape": (n,) + tuple(first.shape[1:]),
    }

    def _write(f):
        np.lib.format.write_array_header_1_0(f, header)
        for p in parts:
            f.write(memoryview(np.ascontiguousarray(p)).cast("B"))

    return atomic_write(path, _write)


def write_json(path: Path, obj: dict) -> str:
    data = json.dumps(obj, indent=1, sort_keys=False).encode()
    return atomic_write(path, lambda f: f.write(data))


def _column_list(v) -> list:
    return v.tolist() if isinstance(v, np.ndarray) else list(v)


def write_table(path: Path, columns: dict[str, Any]) -> str:
    """Parquet (pyarrow) when ``path`` ends in .parquet, else CSV (utf-8)."""
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {
                k: (pa.array(v) if isinstance(v, np.ndarray) and v.dtype != object else pa.array(_column_list(v)))
                for k, v in columns.items()
            }
        )
        return atomic_write(path, lambda f: pq.write_table(table, f))

    def _csv(f):
        import io

        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        w = csv.writer(text)
        names = list(columns)
        w.writerow(names)
        w.writerows(zip(*(_column_list(columns[n]) for n in names)))
        text.flush()
        text.detach()

    return atomic_write(path, _csv)


def read_table(path: Path, checksum: str | None = None) -> dict[str, np.ndarray]:
    verify_file(path, checksum, "capture table")
    try:
        return _read_table(path)
    except (OSError, CorruptFileError):
        raise
    except Exception as exc:
        raise file_error(path, exc, "unreadable capture table") from None


def _read_table(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(path)
        return {name: t.column(name).to_numpy(zero_copy_only=False) for name in t.column_names}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        col = [r[j] for r in body]
        if name in ("token_text", "role"):
            out[name] = np.asarray(col, dtype=object)
        elif name in ("scale", "offset"):
            out[name] = np.asarray(col, dtype=np.float64)
        else:
            out[name] = np.asarray(col, dtype=np.int64)
    return out


# ---------------------------------------------------------------- manifest
class _Absent:
    """The value of a manifest field this kind of capture does not write: the
    key is left out of the JSON (not written as null)."""

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:  # read like a missing key: manifest.get(k) is falsy
        return False


ABSENT: Any = _Absent()


def _ordered(obj, skip=()) -> dict:
    """The dataclass's fields in declaration order (= JSON key order), without the ABSENT ones."""
    return {
        f.name: getattr(obj, f.name) for f in fields(obj) if f.name not in skip and getattr(obj, f.name) is not ABSENT
    }


@dataclass(kw_only=True)
class ResumeKey:
    """What must be equal for ``resume=True`` to continue a capture folder:
    the same weights, serializer, selection, batching, sharding and input
    windows give byte-identical shards. Field order is the JSON key order."""

    weights_hash: str
    #: TSFM captures only (isofast.tsfm.capture): the model family
    family: str = ABSENT
    serializer: dict
    positions: Any
    layers: dict
    sites: list
    dtype: str
    batch_size: int
    shard_bytes: int
    #: number of windows
    windows: int
    #: sha256 over the encoded windows (LLM: ids/patches, roles, scaler; TSFM: the values)
    input_fingerprint: str
    #: serializer="patch" only: ``"seeded-linear"`` or the patch embedding's state-dict hash (else null)
    patch_embed: Any = ABSENT
    seed: int = ABSENT

    def to_dict(self) -> dict:
        return _ordered(self)


@dataclass(kw_only=True)
class Manifest:
    """The record ``manifest.json`` holds: what was captured and which shards
    are complete. The one owner of the manifest schema: capture builders
    (:func:`isofast.capture`, :func:`isofast.tsfm.capture.capture_tsfm`)
    construct it, :class:`CaptureWriter` commits it, :class:`Capture` reads
    it. Field order is the JSON key order; ``ABSENT`` fields are not written;
    keys this version does not know are kept in ``extra`` (written last).
    """

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    isofast_version: str = field(default_factory=lambda: _isofast_version())
    #: True once every window is written
    complete: bool = False
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    #: LoadedModel.to_dict() (or the TSFM adapter's description); readers use ``name`` and ``num_layers``
    model: dict
    weights_hash: str
    serializer: dict
    #: "float32", "bfloat16" or "float16": the model's and the rows' dtype
    dtype: str
    #: numpy dtype of the stored rows (uint16 for bfloat16); derived from ``dtype`` when not given
    storage_dtype: str = ABSENT
    sites: list
    #: site → captured layer indices
    layers: dict
    positions: Any
    #: row width (d_model)
    dim: int
    n_windows: int
    #: windows in complete shards (resume continues here)
    windows_done: int = 0
    #: rows in complete shards
    rows: int = 0
    #: site → {layer: [rows, dim]}
    shapes: dict = field(default_factory=dict)
    #: one entry per complete shard: index, rows, windows, tokens, windows_table, checksums
    shards: list = field(default_factory=list)
    series_names: list | None
    #: "parquet" (pyarrow installed) or "csv"
    token_table_format: str = field(default_factory=lambda: "parquet" if have_pyarrow() else "csv")
    roles: list = field(default_factory=lambda: _roles())
    layer_numbering: str
    #: LLM captures: the hooked module pattern of the architecture (null when found by suffix)
    attention_modules: str | None = ABSENT
    nan_policy: str
    #: LLM captures: the truncation policy, its count, and the token limit
    truncate: str = ABSENT
    truncated_windows: int = ABSENT
    max_length: int | None = ABSENT
    device: str
    #: :class:`ResumeKey` as a dict
    resume_key: dict
    #: written by :meth:`CaptureWriter.write_manifest` (manifest_checksum)
    checksum: str = ABSENT
    #: wall time of the capture that completed the folder
    seconds: float = ABSENT
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.resume_key, ResumeKey):
            self.resume_key = self.resume_key.to_dict()
        if self.storage_dtype is ABSENT and self.dtype is not ABSENT:
            self.storage_dtype = str(storage_dtype(self.dtype))

    def to_dict(self) -> dict:
        """The JSON object (same objects, not copies)."""
        return {**_ordered(self, skip=("extra",)), **self.extra}

    @classmethod
    def from_dict(cls, d: dict) -> Manifest:
        """A manifest as read (or built by hand): missing keys stay ABSENT,
        nothing is derived or added, unknown keys go to ``extra``."""
        m = cls.__new__(cls)
        names = {f.name for f in fields(cls)} - {"extra"}
        for f in fields(cls):
            if f.name != "extra":
                setattr(m, f.name, d.get(f.name, ABSENT))
        m.extra = {k: v for k, v in d.items() if k not in names}
        return m


def _isofast_version() -> str:
    from isofast import __version__

    return str(__version__)


def _roles() -> list:
    from isofast.serializers.base import ROLES

    return list(ROLES)


def discard(root: Path, manifest: dict | Manifest) -> None:
    """Remove an earlier capture's files (only those isofast writes)."""
    import shutil

    m = manifest.to_dict() if isinstance(manifest, Manifest) else manifest
    for site in m.get("sites", []):
        shutil.rmtree(root / site, ignore_errors=True)
    for sub in ("tokens", "windows"):
        shutil.rmtree(root / sub, ignore_errors=True)
    (root / MANIFEST).unlink(missing_ok=True)


def open_writer(root, manifest: Manifest, *, resume: bool) -> CaptureWriter:
    """A writer for ``manifest``'s capture in ``root``.

    With ``resume=True`` a folder holding a capture with the same resume key
    continues from its own manifest (after its last complete shard); a
    different key raises :class:`~isofast.errors.InputError` naming the keys
    that differ. ``resume=False`` discards the earlier capture's files
    (:func:`discard`) and starts over. Stale shard files are removed.
    """
    root = Path(root).expanduser()
    previous = read_manifest(root) if root.is_dir() else None
    if previous is not None and resume:
        old = previous.get("resume_key")
        if old != manifest.resume_key:
            old = old or {}
            new = manifest.resume_key
            diff = sorted(k for k in set(new) | set(old) if old.get(k) != new.get(k))
            raise InputError(
                f"{root} holds a different capture (differs in: {', '.join(diff)}); "
                "use another folder or pass resume=False to overwrite it"
            )
        manifest = Manifest.from_dict(previous)
    elif previous is not None:
        discard(root, previous)
    writer = CaptureWriter.prepare(root, manifest)
    writer.remove_stale()
    return writer


# ---------------------------------------------------------------- reading
@dataclass
class CaptureLayer:
    """One (layer, site) of a capture: a re-iterable of 2-D chunks.

    ``iter_chunks()`` (and ``iter(layer)``) yields each complete shard as a
    memory-mapped array of shape (n_k, d) in the storage dtype (uint16 bit
    patterns for bfloat16, see ``isofast_dtype``); ``to_numpy()`` concatenates
    them (small captures).

    numpy conventions: ``len(layer)`` is the row count and ``np.asarray(layer)``
    is the (N, d) array (numpy 2 ``__array__(dtype, copy)`` semantics): float32
    and float16 layers come back in their own dtype, bfloat16 layers decoded to
    float32 (never as raw uint16 bit patterns). The result is always a fresh
    in-memory copy, so ``copy=False`` raises ``ValueError``.
    """

    root: Path
    site: str
    layer: int
    files: list[Path]
    rows: list[int]
    dim: int
    isofast_dtype: str
    #: checksum of each file (None: written before checksums)
    checksums: list | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (int(sum(self.rows)), self.dim)

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype of the chunks (uint16 for bfloat16)."""
        return storage_dtype(self.isofast_dtype)

    def iter_chunks(self, *, mmap: bool = True) -> Iterator[np.ndarray]:
        sums = self.checksums or [None] * len(self.files)
        for path, n, cs in zip(self.files, self.rows, sums):
            verify_file(path, cs, f"capture shard ({self.site}, layer {self.layer})")
            try:
                arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (OSError, CorruptFileError):
                raise
            except Exception as exc:
                raise file_error(path, exc, "unreadable capture shard") from None
            if arr.shape != (n, self.dim) or arr.dtype != self.dtype:
                raise CorruptFileError(
                    path,
                    0,
                    f"capture shard has shape {arr.shape} {arr.dtype}, manifest says ({n}, {self.dim}) {self.dtype}",
                )
            yield arr

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.iter_chunks()

    def __len__(self) -> int:
        return int(sum(self.rows))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if copy is False:
            raise ValueError(
                "a capture layer is stored in shards on disk; np.asarray(layer) always "
                "copies them into one array (copy=False is impossible)"
            )
        arr = self.to_numpy(float32=self.isofast_dtype == "bfloat16")
        if dtype is not None and arr.dtype != np.dtype(dtype):
            arr = arr.astype(dtype)
        return arr

    def to_numpy(self, *, float32: bool = False) -> np.ndarray:
        """All rows in one array; ``float32=True`` decodes float16/bfloat16."""
        chunks = [np.asarray(c) for c in self.iter_chunks(mmap=False)]
        arr = np.concatenate(chunks) if chunks else np.empty((0, self.dim), self.dtype)
        if float32:
            arr = to_float32(arr, self.isofast_dtype)
        return arr

    def __repr__(self) -> str:
        return (
            f"CaptureLayer(site={self.site!r}, layer={self.layer}, shape={self.shape}, "
            f"isofast_dtype={self.isofast_dtype!r}, shards={len(self.files)})"
        )


def to_float32(arr: np.ndarray, isofast_dtype: str) -> np.ndarray:
    """Decode stored rows to float32 (bfloat16: shift the 16 bits up)."""
    if isofast_dtype == "bfloat16":
        return (np.asarray(arr, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(arr, dtype=np.float32)


class Capture:
    """A capture folder opened for reading (:func:`open_capture`)."""

    def __init__(self, root, manifest: dict | Manifest):
        self.root = Path(root)
        self.record = manifest if isinstance(manifest, Manifest) else Manifest.from_dict(manifest)

    @property
    def manifest(self) -> dict:
        """The manifest as the JSON object it is stored as (:class:`Manifest` is ``record``)."""
        return self.record.to_dict()

    # -- description
    @property
    def sites(self) -> list[str]:
        return list(self.record.sites)

    @property
    def layers(self) -> list[int]:
        """Every captured layer index (union over sites)."""
        return sorted({int(layer) for site in self.sites for layer in self.record.layers[site]})

    def layers_of(self, site: str) -> list[int]:
        return [int(layer) for layer in self.record.layers[site]]

    @property
    def complete(self) -> bool:
        return bool(self.record.complete)

    @property
    def n_rows(self) -> int:
        return int(sum(s["rows"] for s in self.record.shards))

    @property
    def dim(self) -> int:
        return int(self.record.dim)

    @property
    def isofast_dtype(self) -> str:
        return self.record.dtype

    # -- arrays
    def layer(self, layer: int, site: str = "residual") -> CaptureLayer:
        if site not in self.record.layers:
            raise KeyError(f"site {site!r} was not captured; captured sites: {self.sites}")
        layers = self.layers_of(site)
        L = int(layer)
        if L < 0:  # -1 = the last captured layer of this site's model
            L = self.record.model["num_layers"] + 1 + L
        if L not in layers:
            raise KeyError(f"layer {layer} of site {site!r} was not captured; captured: {layers}")
        shards = self.record.shards
        files = [shard_path(self.root, site, L, s["index"]) for s in shards]
        return CaptureLayer(
            root=self.root,
            site=site,
            layer=L,
            files=files,
            rows=[int(s["rows"]) for s in shards],
            dim=self.dim,
            isofast_dtype=self.isofast_dtype,
            checksums=[
                (s.get("checksums") or {}).get(f.relative_to(self.root).as_posix()) for s, f in zip(shards, files)
            ],
        )

    def __getitem__(self, key) -> CaptureLayer:
        if isinstance(key, tuple):
            return self.layer(*key)
        return self.layer(key)

    # -- tables
    def _table(self, kind: str):
        key = "tokens" if kind == "tokens" else "windows_table"
        parts = [read_table(self.root / s[key], (s.get("checksums") or {}).get(s[key])) for s in self.record.shards]
        cols = TOKEN_COLUMNS if kind == "tokens" else WINDOW_COLUMNS
        if kind == "tokens" and parts:
            cols = cols + tuple(c for c in OPTIONAL_TOKEN_COLUMNS if all(c in p for p in parts))
        if parts:
            data = {c: np.concatenate([p[c] for p in parts]) for c in cols}
        else:
            data = {c: np.empty(0) for c in cols}
        try:
            import pandas as pd
        except ImportError:
            return data
        return pd.DataFrame(data)

    def tokens(self):
        """The token table (pandas DataFrame when pandas is installed, else a
        dict of numpy columns); row r describes row r of every layer array."""
        return self._table("tokens")

    def windows(self):
        """One row per captured window: series, start, lengths, scaler."""
        return self._table("windows")

    def __repr__(self) -> str:
        m = self.record
        return (
            f"Capture({str(self.root)!r}, model={m.model['name']!r}, rows={self.n_rows}, "
            f"dim={m.dim}, sites={self.sites}, layers={self.layers}, dtype={m.dtype!r}, "
            f"complete={self.complete})"
        )


def read_manifest(root) -> dict | None:
    p = Path(root) / MANIFEST
    if not p.exists():
        return None
    from isofast.readahead import open_regular_file

    try:
        with open_regular_file(p, "rb") as f:
            m = json.loads(f.read().decode("utf-8"))
    except CorruptFileError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(p, getattr(exc, "pos", 0) or 0, f"capture manifest is not valid JSON ({exc})") from None
    if not isinstance(m, dict):
        raise CorruptFileError(p, 0, "capture manifest is not a JSON object")
    if m.get("format") != FORMAT:
        raise CorruptFileError(p, 0, 'not an isofast capture manifest (no "format": "isofast-capture")')
    if "checksum" in m and m["checksum"] != manifest_checksum(m):
        raise ChecksumError(
            p,
            0,
            f"capture manifest does not match its own checksum ({manifest_checksum(m)} ≠ {m['checksum']}): edited or damaged",
        )
    if int(m.get("format_version", 0)) >= 2 and "checksum" not in m:
        raise ChecksumError(p, 0, "capture manifest of format 2 has no checksum: edited or damaged")
    try:
        _check_manifest(m)
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptFileError(p, 0, f"capture manifest is malformed ({type(exc).__name__}: {exc})") from None
    if int(m.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{p} has format version {m['format_version']}; this isofast reads up to {FORMAT_VERSION}")
    return m


def _check_manifest(m: dict) -> None:
    """The keys readers rely on, with plausible types (a damaged or hand-
    edited manifest fails here, naming itself, instead of deep inside)."""
    for k in ("sites", "layers", "shards", "dim", "dtype"):
        if k not in m:
            raise KeyError(f"missing key {k!r}")
    if isinstance(m["dim"], bool) or not isinstance(m["dim"], int) or m["dim"] < 1:
        raise ValueError(f"dim {m['dim']!r}")
    for s in m["shards"]:
        for k in ("index", "rows"):
            v = s[k]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"shard {k} {v!r}")
    storage_dtype(m["dtype"])


def open_capture(root) -> Capture:
    """Open a capture folder written by :func:`isofast.capture`.

    An interrupted capture opens too: it exposes the complete shards only
    (``.complete`` is False).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no capture folder at {root}")
    m = read_manifest(root)
    if m is None:
        raise FileNotFoundError(f"{root} holds no {MANIFEST}: not an isofast capture folder")
    return Capture(root, m)


# ---------------------------------------------------------------- writing
class CaptureWriter:
    """Appends shards to a capture folder; the manifest is the commit record."""

    def __init__(self, root: Path, manifest: Manifest | dict):
        self.root = Path(root)
        self.manifest = manifest if isinstance(manifest, Manifest) else Manifest.from_dict(manifest)
        self.table_ext = self.manifest.token_table_format

    @classmethod
    def prepare(cls, root, manifest: Manifest | dict) -> CaptureWriter:
        """Create the folder and check it is writable (clear ``OSError`` if not)."""
        root = Path(root).expanduser()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise type(exc)(
                exc.errno, f"cannot create capture folder {root}: {exc.strerror or exc}", str(root)
            ) from exc
        if not os.access(root, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, f"capture folder {root} is not writable", str(root))
        w = cls(root, manifest)
        w.write_manifest()
        return w

    def write_manifest(self) -> None:
        m = self.manifest
        m.format_version = FORMAT_VERSION
        m.checksum = manifest_checksum(m.to_dict())
        write_json(self.root / MANIFEST, m.to_dict())

    def remove_stale(self) -> None:
        """Delete temporary files and shards the manifest does not list (a
        previous run's interrupted shard), so nothing unlisted lingers."""
        listed = {s["index"] for s in self.manifest.shards}
        dirs = [self.root / "tokens", self.root / "windows"]
        for site in self.manifest.sites:
            dirs += sorted((self.root / site).glob("L*")) if (self.root / site).is_dir() else []
        for d in dirs:
            if not d.is_dir():
                continue
            for p in d.iterdir():
                stem = p.name.split(".")[0]
                if p.name.startswith(".") and p.name.endswith(".tmp"):
                    p.unlink(missing_ok=True)
                elif stem.isdigit() and int(stem) not in listed:
                    p.unlink(missing_ok=True)

    def write_shard(
        self,
        k: int,
        arrays: dict[tuple[str, int], np.ndarray | list[np.ndarray]],
        tokens: dict[str, Any],
        windows: dict[str, Any],
        *,
        window_range: tuple[int, int],
    ) -> None:
        rows = {sum(p.shape[0] for p in a) if isinstance(a, (list, tuple)) else a.shape[0] for a in arrays.values()}
        if len(rows) != 1:
            raise RuntimeError(f"shard {k}: layers disagree on the row count {sorted(rows)}")
        n = rows.pop()
        if len(tokens["row"]) != n:
            raise RuntimeError(f"shard {k}: {n} rows but {len(tokens['row'])} token records")
        sums = {}
        for (site, layer), arr in arrays.items():
            path = shard_path(self.root, site, layer, k)
            sums[path.relative_to(self.root).as_posix()] = write_npy(path, arr)
        tok_rel = f"tokens/{k:05d}.{self.table_ext}"
        win_rel = f"windows/{k:05d}.{self.table_ext}"
        sums[tok_rel] = write_table(self.root / tok_rel, tokens)
        sums[win_rel] = write_table(self.root / win_rel, windows)
        # Only now does the manifest claim shard k.
        self.manifest.shards.append(
            {
                "index": k,
                "rows": int(n),
                "windows": [int(window_range[0]), int(window_range[1])],
                "tokens": tok_rel,
                "windows_table": win_rel,
                "checksums": sums,
            }
        )
        self.manifest.windows_done = int(window_range[1])
        self._totals()
        try:
            self.write_manifest()
        except BaseException:
            # keep the in-memory record consistent with the file on disk
            self.manifest.shards.pop()
            self.manifest.windows_done = int(window_range[0])
            self._totals()
            raise

    def _totals(self) -> None:
        m = self.manifest
        total = int(sum(s["rows"] for s in m.shards))
        m.rows = total
        m.shapes = {site: {str(layer): [total, int(m.dim)] for layer in m.layers[site]} for site in m.sites}
