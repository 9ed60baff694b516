"""The one interface the study runner sees for every model family.

A :class:`StudyModel` can

* ``prepare(split)`` — load or train (cached) the weights used for one dataset;
* ``weights_hash`` — identify those weights (part of every cache key);
* ``layers`` — the captured layers, as :class:`LayerSpec` in forward order;
* ``embed(contexts)`` — per-layer hidden states of the test contexts, N×d rows;
* ``forecast(contexts, horizon)`` — sample paths (n, S, H) on the data scale;
* ``hook_point(layer)`` — the module and side (input of the next block, or
  output of the final norm) where a layer's representation lives, so a causal
  intervention (:mod:`isofast.study.causal`) can rewrite exactly the captured
  representation inside the forward pass;
* ``head()`` — the softmax output matrix (vocab × d) and bias, or None.

Layer numbering follows :mod:`isofast.capture`: layer 0 is the embedding
output, layer L the output of block L, the last one after the final norm (the
input of the head).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LayerSpec:
    """One captured layer: ``index`` is its position in the model's forward order
    (0..n−1 over all stacks), ``name`` e.g. ``"residual.5"``, ``"encoder.2"``."""

    index: int
    name: str
    stack: str
    depth: float  # index / (number of layers of the stack − 1), in [0, 1]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ForecastOutput:
    samples: np.ndarray  # (n, S, H) on the data scale
    n_fallback: int = 0  # sample paths that could not be decoded and were replaced
    notes: tuple = ()
    aux: dict = field(default_factory=dict)  # extra arrays a model needs later (cached with the samples)
    stats: dict = field(default_factory=dict)  # scalar forecast diagnostics (e.g. allowed_mass)

    def point(self, how: str = "median") -> np.ndarray:
        return np.median(self.samples, axis=1) if how == "median" else np.mean(self.samples, axis=1)


class StudyModel:
    """Base class; see the module docstring."""

    kind: str = ""
    has_head: bool = False

    def __init__(self, cfg, *, seed: int, cache, threads: int = 1):
        self.cfg = cfg
        self.name = cfg.name
        self.seed = int(seed)
        self.cache = cache
        self.threads = threads

    # identification ---------------------------------------------------
    def weights_key(self, split) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare(self, split) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def weights_hash(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind}

    # work ---------------------------------------------------------------
    @property
    def layers(self) -> list[LayerSpec]:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed(self, contexts: list[np.ndarray], *, folder=None, aux=None) -> dict[int, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def forecast(
        self, contexts: list[np.ndarray], horizon: int, *, n_samples: int, seed: int
    ) -> ForecastOutput:  # pragma: no cover
        raise NotImplementedError

    # embeddings on disk ---------------------------------------------------
    def store_embeddings(self, folder: Path, emb: dict[int, np.ndarray]) -> dict[str, str] | None:
        """Write each layer as ``L<index>.npy`` (atomic) and return their SHA-256
        digests, which the caller records in the marker it writes last."""
        import hashlib

        from isofast.store import write_npy

        digests = {}
        for L, X in emb.items():
            name = f"L{int(L):03d}.npy"
            write_npy(folder / name, np.ascontiguousarray(X, dtype=np.float32))
            digests[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        return digests

    def load_embeddings(self, folder: Path, layers: list[int], digests: dict | None = None) -> dict[int, np.ndarray]:
        """Read the layers back, each file checked against its digest in the
        marker (``OSError`` naming the file when it does not match)."""
        import hashlib
        import io

        out = {}
        for L in layers:
            path = folder / f"L{int(L):03d}.npy"
            data = path.read_bytes()
            want = (digests or {}).get(path.name)
            if digests is not None and want != hashlib.sha256(data).hexdigest():
                raise OSError(f"{path}: content does not match its checksum in {folder / 'complete.json'}")
            out[L] = np.load(io.BytesIO(data), allow_pickle=False)
        return out

    # rows: how many each window contributes, and which window each row is
    def dims(self) -> dict[int, int]:  # pragma: no cover - abstract
        """Width d of every captured layer, known without loading the weights."""
        raise NotImplementedError

    def rows_per_window(self, contexts, split) -> dict[int, np.ndarray]:  # pragma: no cover - abstract
        """Rows each context contributes to every captured layer (int array,
        one entry per context), known before any forward pass: the study
        checks its row floors with it before anything runs."""
        raise NotImplementedError

    def window_ids(self, contexts, split, emb: dict[int, np.ndarray], folder: Path) -> dict[int, np.ndarray]:
        """Window index of every captured row (rows are window-major).

        Checked against the captured shapes, so a model that returned more or
        fewer rows than its inputs imply fails loudly instead of mislabelling."""
        counts = self.rows_per_window(contexts, split)
        out = {}
        for L, X in emb.items():
            c = np.asarray(counts[L], np.int64)
            if int(c.sum()) != X.shape[0]:
                raise RuntimeError(
                    f"{self.name}: layer {L} has {X.shape[0]} captured rows, its {c.size} windows imply {int(c.sum())}"
                )
            out[L] = np.repeat(np.arange(c.size), c)
        return out

    def embed_cached(self, contexts, folder: Path, *, split, aux=None, prepare=None, damaged=None):
        """Embeddings of ``contexts`` from ``folder`` when complete, else computed
        (``prepare()`` first) and stored; returns ``(layers, window_ids, was_cached)``.

        A complete entry that does not read back (a checksum, a shape or a row
        count that does not match: :mod:`isofast.store` verifies them) is
        damaged: ``damaged()`` is called, the folder is removed (so that a
        resumed capture cannot reuse its shards) and the embeddings recomputed."""
        folder = Path(folder)
        marker = folder / "complete.json"
        idx = [L.index for L in self.layers]
        emb = None
        cached = False
        if marker.is_file():
            try:
                import json

                info = json.loads(marker.read_text())
                files = info.get("files")
                emb = (
                    self.load_embeddings(folder, idx, files) if files is not None else self.load_embeddings(folder, idx)
                )
                wins = self.window_ids(contexts, split, emb, folder)
            except (OSError, ValueError, RuntimeError, KeyError, EOFError):
                emb = None
                if damaged is not None:
                    damaged()
                import shutil

                shutil.rmtree(folder, ignore_errors=True)
            else:
                return emb, wins, True
        if emb is None:
            if prepare is not None:
                prepare()
            emb = self.embed(contexts, folder=folder / "capture", aux=aux)
            files = self.store_embeddings(folder, emb)
            from isofast.store import write_json

            doc = {"layers": idx, "rows": {str(k): int(v.shape[0]) for k, v in emb.items()}}
            if files is not None:
                doc["files"] = files
            write_json(marker, doc)
        return emb, self.window_ids(contexts, split, emb, folder), cached

    def hook_point(self, layer: int) -> tuple[Any, str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def head(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        return None

    def head_layer(self) -> int | None:
        """Index of the layer whose rows enter the head (None without a head)."""
        return None

    def release(self) -> None:
        """Drop the loaded weights (the next ``prepare`` reloads them)."""


def select_layers(requested, n_available: int, what: str) -> list[int]:
    """``"all"`` or a list of ints (negative from the end) → sorted indices."""
    if requested == "all":
        return list(range(n_available))
    out = []
    for L in requested:
        L = int(L)
        if L < 0:
            L += n_available
        if not 0 <= L < n_available:
            raise ValueError(f"{what}: layer {L} out of range 0..{n_available - 1}")
        out.append(L)
    return sorted(set(out))


@contextlib.contextmanager
def transform_hook(point: tuple[Any, str], fn: Callable) -> Iterator[None]:
    """Rewrite a layer representation inside the forward pass.

    ``point`` is ``(module, side)``: ``"pre"`` rewrites the hidden states
    entering ``module`` (the first positional argument, or the
    ``hidden_states`` / ``hidden_state`` keyword), ``"post"`` its output (the
    tensor, or element 0 of a tuple). ``fn`` maps a (…, d) tensor to one of
    the same shape.
    """
    module, side = point
    if side == "pre":

        def pre(_m, args, kwargs):
            if args:
                return (fn(args[0]),) + tuple(args[1:]), kwargs
            for k in ("hidden_states", "hidden_state"):
                if k in kwargs:
                    kwargs = dict(kwargs)
                    kwargs[k] = fn(kwargs[k])
                    return args, kwargs
            raise RuntimeError(f"cannot find the hidden states entering {type(_m).__name__}")

        h = module.register_forward_pre_hook(pre, with_kwargs=True)
    elif side == "post":

        def post(_m, _inp, out):
            if isinstance(out, tuple):
                return (fn(out[0]),) + tuple(out[1:])
            if hasattr(out, "last_hidden_state"):
                out.last_hidden_state = fn(out.last_hidden_state)
                return out
            return fn(out)

        h = module.register_forward_hook(post)
    else:
        raise ValueError(f"side must be 'pre' or 'post', got {side!r}")
    try:
        yield
    finally:
        h.remove()


def torch_threads(n: int):
    """Set torch's intra-op threads (n ≤ 0 leaves the default); returns the old value."""
    import torch

    old = torch.get_num_threads()
    if n and n > 0:
        torch.set_num_threads(int(n))
    return old
