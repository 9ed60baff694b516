"""The study's on-disk cache: content-addressed, crash-safe, with hit counters.

Layout under the cache root::

    models/<kind>-<key>/        trained weights (save_pretrained) + isofast-study.json marker
    captures/<key>/             per-layer embeddings of one cell (isofast capture folder or .npy)
    forecasts/<key>.npz         forecast samples of one cell
    isotropy/<key>.json         the isotropy suite of one (cell, layer set)
    causal/<key>.json           one causal intervention
    baselines/<key>.npz         seasonal naive + ETS sample paths of one (dataset, perturbation)
    cells/<key>.json            a finished cell's whole result (rows, windows, forecast excerpt)

Every key is :func:`isofast.study.config.stable_hash` of everything the
result depends on: the cell's configuration, the model's weights hash and
:data:`CACHE_VERSION` (bumped when a computation changes meaning). Files are
written to a temporary name, fsync'ed and renamed (:func:`isofast.store.atomic_write`),
so an interrupted run (Ctrl-C, SIGKILL, a dead Dask worker) never leaves a
half-written entry, and two processes computing the same entry both write the
same bytes under one name. Every entry carries a SHA-256 of its content,
verified on read; a damaged entry is recomputed and counted. ``counters``
records, per stage, how many results were computed, read back and repaired
("damaged") — the tests of cache reuse read these.

The cache folder is the only state a study shares between processes, so on a
cluster it must be a path every worker sees (docs/cluster.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from isofast.report import jsonable
from isofast.store import atomic_write

#: Part of every key; bump when a stage's output changes meaning.
CACHE_VERSION = "study-3"

STAGES = ("train", "capture", "forecast", "isotropy", "baselines", "causal", "cells")


def _array_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class StudyCache:
    """The study's content-addressed cache (module docstring).

    Every entry carries a SHA-256 of its content, verified on read. An entry
    that is unreadable, truncated or fails its checksum is *damaged*: the
    loaders return ``None`` (the caller recomputes and atomically replaces it)
    and ``counters[stage]["damaged"]`` counts it, so a run says what it
    repaired instead of failing the same cell on every re-run.
    """

    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)
        self.counters: dict[str, dict[str, int]] = defaultdict(lambda: {"computed": 0, "cached": 0})

    def hit(self, stage: str) -> None:
        self.counters[stage]["cached"] += 1

    def miss(self, stage: str) -> None:
        self.counters[stage]["computed"] += 1

    def damaged(self, stage: str) -> None:
        c = self.counters[stage]
        c["damaged"] = c.get("damaged", 0) + 1

    def counts(self) -> dict:
        return {k: dict(v) for k, v in self.counters.items()}

    def merge_counts(self, other: dict) -> None:
        """Add another process's counters (a cell run on a Dask worker)."""
        for stage, c in other.items():
            mine = self.counters[stage]
            for k, v in c.items():
                mine[k] = mine.get(k, 0) + int(v)

    def dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def file(self, stage: str, key: str, suffix: str) -> Path:
        return self.root / stage / f"{key}{suffix}"

    # ------------------------------------------------------------- json
    def load_json(self, stage: str, key: str, *, count: bool = True) -> dict | None:
        """The entry's payload, or ``None`` when absent or damaged (counted
        unless ``count=False``: a second look at an entry already counted)."""
        p = self.file(stage, key, ".json")
        if not p.is_file():
            return None
        try:
            doc = json.loads(p.read_bytes())
            body = json.dumps(doc["payload"], sort_keys=True, allow_nan=True).encode()
            if doc.get("sha256") != hashlib.sha256(body).hexdigest():
                raise ValueError("checksum mismatch")
            return doc["payload"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            if count:
                self.damaged(stage)
            return None  # damaged entry: the caller recomputes it (replaced atomically)

    def save_json(self, stage: str, key: str, obj: Any) -> Path:
        p = self.file(stage, key, ".json")
        payload = jsonable(obj, keep_nonfinite=True)  # a NaN statistic reads back as NaN
        body = json.dumps(payload, sort_keys=True, allow_nan=True).encode()
        data = json.dumps(
            {"sha256": hashlib.sha256(body).hexdigest(), "payload": payload}, indent=1, allow_nan=True
        ).encode()
        atomic_write(p, lambda f: f.write(data))
        return p

    # -------------------------------------------------------------- npz
    def load_npz(self, stage: str, key: str) -> dict | None:
        """The entry's arrays, or ``None`` when absent or damaged (counted)."""
        p = self.file(stage, key, ".npz")
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                out = {k: z[k] for k in z.files}
            want = str(out.pop("__sha256__"))
            if want != _array_digest(out):
                raise ValueError("checksum mismatch")
            return out
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
            self.damaged(stage)
            return None

    def save_npz(self, stage: str, key: str, arrays: dict[str, np.ndarray]) -> Path:
        p = self.file(stage, key, ".npz")
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        if "__sha256__" in arrays:
            raise ValueError("'__sha256__' is reserved for the cache's checksum")
        buf = io.BytesIO()
        np.savez(buf, __sha256__=np.array(_array_digest(arrays)), **arrays)
        data = buf.getvalue()
        atomic_write(p, lambda f: f.write(data))
        return p
