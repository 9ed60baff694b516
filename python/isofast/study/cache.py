"""The study's on-disk cache: content-addressed, crash-safe, with hit counters.

Layout under the cache root::

    models/<kind>-<key>/        trained weights (save_pretrained) + isofast-study.json marker
    captures/<key>/             per-layer embeddings of one cell (isofast capture folder or .npy)
    forecasts/<key>.npz         forecast samples of one cell
    isotropy/<key>.json         the isotropy suite of one (cell, layer set)
    causal/<key>.json           one causal intervention

Every key is :func:`isofast.study.config.stable_hash` of everything the
result depends on: the cell's configuration, the model's weights hash and
:data:`CACHE_VERSION` (bumped when a computation changes meaning). Files are
written to a temporary name, fsync'ed and renamed (:func:`isofast.store.atomic_write`),
so an interrupted run never leaves a half-written entry that a re-run would
trust. ``counters`` records, per stage, how many results were computed and
how many were read back — the test of cache reuse reads these.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from isofast.report import jsonable
from isofast.store import atomic_write

#: Part of every key; bump when a stage's output changes meaning.
CACHE_VERSION = "study-2"

STAGES = ("train", "capture", "forecast", "isotropy", "baselines", "causal")


class StudyCache:
    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)
        self.counters: dict[str, dict[str, int]] = defaultdict(lambda: {"computed": 0, "cached": 0})

    def hit(self, stage: str) -> None:
        self.counters[stage]["cached"] += 1

    def miss(self, stage: str) -> None:
        self.counters[stage]["computed"] += 1

    def counts(self) -> dict:
        return {k: dict(v) for k, v in self.counters.items()}

    def dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def file(self, stage: str, key: str, suffix: str) -> Path:
        return self.root / stage / f"{key}{suffix}"

    # ------------------------------------------------------------- json
    def load_json(self, stage: str, key: str) -> dict | None:
        p = self.file(stage, key, ".json")
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return None  # unreadable entry: recompute (it is replaced atomically)

    def save_json(self, stage: str, key: str, obj: Any) -> Path:
        p = self.file(stage, key, ".json")
        data = json.dumps(jsonable(obj), indent=1).encode()
        atomic_write(p, lambda f: f.write(data))
        return p

    # -------------------------------------------------------------- npz
    def load_npz(self, stage: str, key: str) -> dict | None:
        p = self.file(stage, key, ".npz")
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):
            return None

    def save_npz(self, stage: str, key: str, arrays: dict[str, np.ndarray]) -> Path:
        p = self.file(stage, key, ".npz")
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
        atomic_write(p, lambda f: f.write(data))
        return p
