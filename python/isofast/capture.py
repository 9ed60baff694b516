"""Per-layer capture of model embeddings for numeric series.

``capture(model, series, ...)`` serializes each context window, runs the model
in batches under ``torch.inference_mode`` and stores, for every requested layer
and *site*, one row per kept token in a capture folder (:mod:`isofast.store`).

Sites and layer numbering
-------------------------
* ``"residual"`` — the residual stream as returned with
  ``output_hidden_states=True``: layer 0 is the embedding output, layer L
  (1 ≤ L ≤ n_layers) the output of block L. Following Hugging Face, the last
  entry (L = n_layers) is taken *after* the model's final norm (``norm`` in
  Llama, ``ln_f`` in GPT-2, ``final_layer_norm`` in T5).
* ``"attention"`` — the self-attention sub-layer output of block L (after its
  output projection, before it is added to the residual stream), read with a
  forward hook as in the reference study (Shelim et al. 2025). Layers 1..n.
  The module hooked per architecture is listed in :mod:`isofast.models`
  (``ATTENTION_MODULES``).

Encoder-decoder models (T5, Chronos) run their *encoder* only: the context is
what the encoder reads; the reference study's decoder hooks kept only the last
decoding step.

Positions
---------
``"all"`` every real token; ``"digits"`` only tokens that carry a serialized
value (role ``digit``; a token is a digit token when any of its characters is
a digit, so GPT-2's " 6" counts); ``"last"`` the last real token of each window
(the one whose output predicts what comes next); or a collection of role names
(``{"digit", "sign"}``). Padded positions are never captured: batches are
right-padded with an attention mask, and only mask-1 positions are gathered.

Bad input (documented policies)
-------------------------------
* NaN: ``nan="interpolate"`` (default) fills gaps linearly with a warning;
  ``nan="error"`` raises (see :mod:`isofast.serializers.base`).
* Empty series, ±inf, unknown model: ``ValueError`` (unknown paths:
  ``FileNotFoundError``).
* Context longer than the model accepts (``max_position_embeddings``, GPT-2's
  ``n_positions``; for Chronos also the serializer's ``context_length``):
  ``truncate="left"`` (default) drops the *oldest* values — whole values, the
  scaler re-fitted on what is kept, as a forecaster given a shorter context —
  and warns once with the count; ``truncate="error"`` raises ``ValueError``.
* Unwritable output folder or a full disk: ``OSError`` naming the file; the
  manifest lists only complete shards, and ``resume=True`` continues after the
  last complete one.

Resuming
--------
The manifest holds a *resume key* (weights hash, serializer, positions, layers,
sites, dtype, batch size, shard size, a fingerprint of the windows). With
``resume=True`` a folder holding a capture with the same key continues after
its last complete shard — batches are aligned to the same boundaries, so the
shards are byte-identical to an uninterrupted run on the same machine; a
different key raises ``ValueError``. ``resume=False`` discards the earlier
capture's files (only files isofast wrote) and starts over.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import numpy as np

from isofast import models as _models
from isofast import store as _store
from isofast.data.series import as_named_series_list
from isofast.errors import InputError
from isofast.progress import Progress
from isofast.serializers import (
    ROLES,
    ChronosSerializer,
    LLMTimeSerializer,
    PatchSerializer,
    as_series,
    get_serializer,
)
from isofast.serializers.base import DIGIT, OTHER, SEPARATOR, SIGN

SITES = ("residual", "attention")


# --------------------------------------------------------------------- result
@dataclass
class CaptureResult:
    """What a :func:`capture` call did; ``open()`` reads the folder."""

    path: str
    model: str
    weights_hash: str
    n_windows: int
    n_rows: int
    dim: int
    layers: dict[str, list[int]]
    sites: list[str]
    dtype: str
    device: str
    tokens_processed: int
    seconds: float
    tokens_per_s: float
    resumed_from_window: int
    complete: bool
    warnings: list[str] = field(default_factory=list)

    def open(self) -> _store.Capture:
        return _store.open_capture(self.path)

    def layer(self, layer: int, site: str = "residual") -> _store.CaptureLayer:
        return self.open().layer(layer, site)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


# ---------------------------------------------------------------- windows in
@dataclass
class _Window:
    series_id: int
    start: int
    values: np.ndarray


def _is_windows(obj) -> bool:
    return all(hasattr(obj, a) for a in ("context", "series_id", "start"))


def _windows(
    series,
    *,
    context: int | None,
    window_mode: str,
    stride: int | None,
    n: int | None,
    seed: int,
    nan: str,
) -> tuple[list[_Window], list[str] | None]:
    if _is_windows(series):
        ctx = np.asarray(series.context, dtype=np.float64)
        sid = np.asarray(series.series_id)
        st = np.asarray(series.start)
        out = []
        for i in range(ctx.shape[0]):
            v = as_series(ctx[i], nan=nan, name=f"window {i}")
            out.append(_Window(int(sid[i]), int(st[i]), v))
        return out, getattr(series, "names", None)
    items, names = as_named_series_list(series)
    cleaned = [as_series(s, nan=nan, name=f"series {names[i] if names else i}") for i, s in enumerate(items)]
    if context is None:
        return [_Window(i, 0, v) for i, v in enumerate(cleaned)], names
    if context < 1:
        raise ValueError(f"context must be positive, got {context}")
    from isofast.data.windows import make_windows

    if window_mode == "sliding" and stride is None:
        stride = context  # non-overlapping contexts (make_windows' default is the horizon, 0 here)
    w = make_windows(cleaned, context, 0, mode=window_mode, stride=stride, n=n, seed=seed)
    ctx = np.asarray(w.context, dtype=np.float64)
    return (
        [_Window(int(s), int(t), ctx[i]) for i, (s, t) in enumerate(zip(w.series_id, w.start))],
        names,
    )


# ----------------------------------------------------------------- encoding
@dataclass
class _Item:
    window_id: int
    series_id: int
    start: int
    ids: np.ndarray | None  # token ids (text / chronos)
    patches: np.ndarray | None  # (P, patch_len) (patch serializer)
    roles: np.ndarray  # uint8 per token
    texts: list[str]
    n_values: int
    n_values_input: int
    scale: float
    offset: float

    @property
    def n_tokens(self) -> int:
        return int(self.roles.size)


def _token_roles(offsets, char_roles: np.ndarray) -> np.ndarray:
    roles = np.full(len(offsets), OTHER, dtype=np.uint8)
    for j, (s, e) in enumerate(offsets):
        if e <= s:
            continue  # special token
        r = char_roles[s:e]
        if (r == DIGIT).any():
            roles[j] = DIGIT
        elif (r == SIGN).any():
            roles[j] = SIGN
        elif (r == SEPARATOR).any():
            roles[j] = SEPARATOR
    return roles


class _Encoder:
    """Window → model input with token roles, honouring the length limit."""

    def __init__(self, ser, lm: _models.LoadedModel, *, truncate: str, need_roles: bool):
        self.ser = ser
        self.lm = lm
        self.truncate = truncate
        self.tok = lm.tokenizer
        limit = lm.max_length
        if isinstance(ser, ChronosSerializer) and ser.context_length:
            cl = ser.context_length + (1 if ser.use_eos_token else 0)
            limit = cl if limit is None else min(limit, cl)
        self.limit = limit
        self.n_truncated = 0
        self.warned_slow = False
        if isinstance(ser, LLMTimeSerializer):
            if self.tok is None:
                raise ValueError(
                    f"model {lm.name!r} has no tokenizer, so it cannot read LLMTime text; "
                    "use serializer='chronos' (token ids) or 'patch'"
                )
            if need_roles and not getattr(self.tok, "is_fast", False):
                raise ValueError("positions other than 'all'/'last' need a fast tokenizer (offset mapping)")
        if isinstance(ser, ChronosSerializer):
            vocab = getattr(lm.model.config, "vocab_size", None)
            if vocab is not None and vocab < ser.n_tokens:
                raise ValueError(
                    f"model {lm.name!r} has a vocabulary of {vocab} ids, fewer than the {ser.n_tokens} Chronos ids"
                )

    def _encode(self, values: np.ndarray):
        ser = self.ser
        if isinstance(ser, LLMTimeSerializer):
            enc = ser.encode(values)
            if getattr(self.tok, "is_fast", False):
                b = self.tok(enc.text, return_offsets_mapping=True)
                ids = list(b["input_ids"])
                offs = b["offset_mapping"]
                roles = _token_roles(offs, enc.char_roles)
                toks = self.tok.convert_ids_to_tokens(ids)
                texts = [enc.text[s:e] if e > s else t for (s, e), t in zip(offs, toks)]
            else:
                if not self.warned_slow:
                    warnings.warn("slow tokenizer without offsets: token roles are 'other'", UserWarning)
                    self.warned_slow = True
                ids = list(self.tok(enc.text)["input_ids"])
                roles = np.full(len(ids), OTHER, np.uint8)
                texts = [str(t) for t in self.tok.convert_ids_to_tokens(ids)]
            return (np.asarray(ids, np.int64), None, roles, texts, enc.scaler.scale, enc.scaler.offset)
        if isinstance(ser, ChronosSerializer):
            enc = ser.encode(values)
            texts = [f"<bin {i}>" if r == DIGIT else "</s>" for i, r in zip(enc.ids.tolist(), enc.roles)]
            return (enc.ids, None, enc.roles, texts, enc.scale, 0.0)
        enc = ser.encode(values)
        texts = [f"<patch {k}>" for k in range(enc.patches.shape[0])]
        return (None, enc.patches, enc.roles, texts, enc.std, enc.mean)

    def __call__(self, w: _Window, window_id: int) -> _Item:
        out = self._encode(w.values)
        n_keep = w.values.size
        if self.limit is not None and out[2].size > self.limit:
            if self.truncate == "error":
                raise ValueError(
                    f"window {window_id} (series {w.series_id}) needs {out[2].size} tokens, more "
                    f"than the model's maximum of {self.limit}; shorten the context or pass "
                    "truncate='left'"
                )
            # Largest number of most-recent values that fits (binary search).
            lo, hi = 1, w.values.size - 1
            best = None
            while lo <= hi:
                mid = (lo + hi) // 2
                cand = self._encode(w.values[-mid:])
                if cand[2].size <= self.limit:
                    best, lo = (mid, cand), mid + 1
                else:
                    hi = mid - 1
            if best is None:
                raise ValueError(f"window {window_id}: even one value needs more than {self.limit} tokens")
            n_keep, out = best
            self.n_truncated += 1
        ids, patches, roles, texts, scale, offset = out
        return _Item(
            window_id,
            w.series_id,
            w.start + (w.values.size - n_keep),
            ids,
            patches,
            roles,
            texts,
            int(n_keep),
            int(w.values.size),
            float(scale),
            float(offset),
        )


def _select_positions(item: _Item, positions) -> np.ndarray:
    n = item.n_tokens
    if positions == "all":
        return np.ones(n, bool)
    if positions == "last":
        m = np.zeros(n, bool)
        m[-1] = True
        return m
    if positions == "digits":
        return item.roles == DIGIT
    codes = [ROLES.index(r) for r in positions]
    return np.isin(item.roles, codes)


def _check_positions(positions):
    if isinstance(positions, str):
        if positions not in ("all", "digits", "last"):
            raise ValueError(
                f"positions must be 'all', 'digits', 'last' or a collection of roles {ROLES}, got {positions!r}"
            )
        return positions
    roles = sorted(set(positions))
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise ValueError(f"unknown token roles {bad}; roles are {ROLES}")
    return roles


# ------------------------------------------------------------------- layers
def _resolve_layers(layers, n_layers: int, sites: Sequence[str]) -> dict[str, list[int]]:
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"layers must be 'all', an int or a list of ints, got {layers!r}")
        req = list(range(n_layers + 1))
    else:
        if isinstance(layers, (int, np.integer)):
            layers = [int(layers)]
        req = []
        for L in layers:
            L = int(L)
            if L < 0:
                L = n_layers + 1 + L
            if not 0 <= L <= n_layers:
                raise ValueError(
                    f"layer {L} out of range: this model has layers 0..{n_layers} "
                    "(0 = embeddings, L = output of block L)"
                )
            req.append(L)
        req = sorted(set(req))
    out: dict[str, list[int]] = {}
    for site in sites:
        if site == "residual":
            out[site] = req
        else:
            # layer 0 (embeddings) has no attention sub-layer: residual only
            ls = [L for L in req if L >= 1]
            if not ls:
                raise ValueError(f"no attention layer requested (attention layers are 1..{n_layers})")
            out[site] = ls
    return out


# --------------------------------------------------------------------- main
def _fingerprint(items: list[_Item]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(np.asarray([it.series_id, it.start, it.n_values], np.int64).tobytes())
        h.update(np.asarray([it.scale, it.offset], np.float64).tobytes())
        if it.ids is not None:
            h.update(it.ids.tobytes())
        if it.patches is not None:
            h.update(np.ascontiguousarray(it.patches).tobytes())
        h.update(it.roles.tobytes())
    return "sha256:" + h.hexdigest()


def _patch_projection(ser: PatchSerializer, lm: _models.LoadedModel, seed: int, device, dtype):
    """A seeded random Linear(patch_len → d_model): stands in for the trained
    patch embedding of GPT4TS/Time-LLM (isofast has no trained one)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        proj = torch.nn.Linear(ser.patch_len, lm.hidden_size)
    return proj.to(device=device, dtype=dtype).eval()


class _ShardBuffer:
    """Rows and token/window records buffered until a shard is due, then
    written by one background thread (one write in flight at most, so I/O
    overlaps the next forward pass)."""

    def __init__(self, writer: _store.CaptureWriter, keys, dim: int, sdtype, shard_bytes: int):
        m = writer.manifest
        self.writer, self.keys, self.dim, self.sdtype = writer, list(keys), dim, sdtype
        self.shard_bytes = shard_bytes
        self.first_window = int(m.windows_done)
        self.row_next = int(m.rows)
        self.k = len(m.shards)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="isofast-capture-writer")
        self.pending: Future | None = None
        self._reset()

    def _reset(self) -> None:
        self.arrays: dict[tuple[str, int], list[np.ndarray]] = {k: [] for k in self.keys}
        self.tokens: dict[str, list] = {c: [] for c in _store.TOKEN_COLUMNS}
        self.windows: dict[str, list] = {c: [] for c in _store.WINDOW_COLUMNS}
        self.nbytes = 0

    def add(self, key: tuple[str, int], blocks: list[np.ndarray]) -> None:
        """Row blocks of one key, in token-record order (views are kept as they are)."""
        self.arrays[key].extend(blocks)
        self.nbytes += sum(b.nbytes for b in blocks)

    def add_records(self, batch: list[_Item], sel_np: np.ndarray) -> None:
        """Token rows in the order of ``hs[sel]``: window by window, positions ascending."""
        t = self.tokens
        for j, it in enumerate(batch):
            pos = np.flatnonzero(sel_np[j, : it.n_tokens])
            n = pos.size
            t["row"].append(np.arange(self.row_next, self.row_next + n, dtype=np.int64))
            self.row_next += n
            t["series_id"].append(np.full(n, it.series_id, np.int64))
            t["window_id"].append(np.full(n, it.window_id, np.int64))
            t["position"].append(pos.astype(np.int64))
            ids = it.ids[pos] if it.ids is not None else np.full(n, -1, np.int64)
            t["token_id"].append(ids.astype(np.int64))
            t["token_text"].append([it.texts[p] for p in pos])
            t["role"].append([ROLES[r] for r in it.roles[pos]])
            values = (
                it.window_id,
                it.series_id,
                it.start,
                it.n_values,
                it.n_values_input,
                it.n_tokens,
                it.scale,
                it.offset,
            )
            for c, v in zip(_store.WINDOW_COLUMNS, values):
                self.windows[c].append(v)

    def maybe_flush(self, end_window: int, *, last: bool) -> None:
        if self.nbytes < self.shard_bytes and not last:
            return
        # row blocks go to the writer as they are: stacked while written, never copied
        arrays = {key: (v if v else [np.empty((0, self.dim), self.sdtype)]) for key, v in self.arrays.items()}
        tokens = {
            c: (list(itertools.chain.from_iterable(v)) if c in ("token_text", "role") else np.concatenate(v))
            for c, v in self.tokens.items()
        }
        windows = {c: np.asarray(v) for c, v in self.windows.items()}
        self.wait()  # re-raises the previous shard's write error, if any
        self.pending = self.pool.submit(
            self.writer.write_shard,
            self.k,
            arrays,
            tokens,
            windows,
            window_range=(self.first_window, end_window),
        )
        self.k += 1
        self.first_window = end_window
        self._reset()

    def wait(self) -> None:
        if self.pending is not None:
            fut, self.pending = self.pending, None
            fut.result()

    def close(self) -> None:
        """Let an in-flight shard finish (or fail) before leaving."""
        try:
            self.wait()
        except BaseException:
            pass  # an exception is already propagating
        self.pool.shutdown(wait=True)


def capture(
    model,
    series,
    *,
    serializer="llmtime",
    layers="all",
    positions="all",
    out=None,
    device=None,
    dtype="float32",
    batch_size: int = 8,
    sites: Sequence[str] = ("residual", "attention"),
    resume: bool = True,
    context: int | None = None,
    window_mode: str = "last",
    stride: int | None = None,
    n_windows: int | None = None,
    seed: int = 0,
    nan: str = "interpolate",
    truncate: str = "left",
    shard_bytes: int = 256 << 20,
    patch_embed=None,
    progress: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
) -> CaptureResult:
    """Capture per-layer embeddings of ``model`` reading ``series``.

    Parameters
    ----------
    model : a :class:`~isofast.models.LoadedModel`, a bundled name
        (``"smollm2"``, ``"minilm"``, ``"tiny-gpt2"``…) or a local folder path
        (see :func:`isofast.models.load_model`). The model is moved to
        ``device`` and cast to ``dtype`` *in place*.
    series : a 1-D array (one series), a 2-D array (series × time), a list of
        1-D arrays, a dict name → 1-D array, a DataFrame (one series per
        column), an ``isofast.data.series.Series``
        or a list of them, or an ``isofast.data.windows.Windows`` (its
        ``.context`` rows are used as they are).
    serializer : ``"llmtime"`` (= ``"llmtime:llama"``), ``"llmtime:gpt"``,
        ``"chronos"``, ``"patch"`` or a serializer object.
    layers : ``"all"``, an int or a list of ints (negative counts from the
        end; 0 = embeddings). See the module docstring for the numbering.
    positions : ``"all"``, ``"digits"``, ``"last"`` or a collection of roles.
    out : the capture folder (created). ``None`` → a new temporary folder.
    device : None → cuda, then mps, then cpu.
    dtype : ``"float32"``, ``"bfloat16"`` or ``"float16"`` (model and stored rows).
    batch_size : windows per forward pass.
    sites : any of ``("residual", "attention")``.
    resume : continue an interrupted capture in ``out`` (module docstring).
    context, window_mode, stride, n_windows, seed : when ``context`` is given,
        each series is cut into context windows with
        ``isofast.data.windows.make_windows(series, context, 0, mode=window_mode,
        stride=stride, n=n_windows, seed=seed)``; sliding windows default to
        ``stride=context`` (no overlap).
    nan : ``"interpolate"`` (warn) or ``"error"``.
    truncate : ``"left"`` (drop oldest values, warn) or ``"error"``.
    shard_bytes : rows are buffered until about this many bytes (over all
        layers and sites) and then written as one shard.
    patch_embed : for ``serializer="patch"``: a torch module mapping patches
        (…, patch_len) to (…, d_model); default a seeded random Linear.
    progress : show a progress bar with tokens/s (tqdm, else a stderr line).
    on_batch : called as ``on_batch(batch_index, n_tokens)`` after each batch.

    Returns
    -------
    CaptureResult
    """
    from isofast.tsfm import TSFMAdapter, looks_like_tsfm

    if isinstance(model, TSFMAdapter) or (isinstance(model, (str, os.PathLike)) and looks_like_tsfm(model)):
        # A time-series foundation model reads numbers through its own
        # package's scaling/patching: isofast.tsfm.capture, same folder format.
        if serializer not in ("llmtime", None):
            raise InputError(
                f"serializer={serializer!r} does not apply to a time-series foundation model: "
                "it reads the numbers through its own package's preprocessing"
            )
        from isofast.tsfm.capture import capture_tsfm

        return capture_tsfm(
            model,
            series,
            layers=layers,
            positions=positions,
            out=out,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            sites=sites,
            resume=resume,
            context=context,
            window_mode=window_mode,
            stride=stride,
            n_windows=n_windows,
            seed=seed,
            nan=nan,
            shard_bytes=shard_bytes,
            progress=progress,
        )
    plan = _prepare(
        model,
        series,
        serializer=serializer,
        layers=layers,
        positions=positions,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        sites=sites,
        context=context,
        window_mode=window_mode,
        stride=stride,
        n_windows=n_windows,
        seed=seed,
        nan=nan,
        truncate=truncate,
        shard_bytes=shard_bytes,
        patch_embed=patch_embed,
    )
    writer = _open_or_resume(plan, out, resume=resume)
    manifest = writer.manifest
    start_window = int(manifest.windows_done)
    if manifest.complete:
        return _result(manifest, writer.root, plan.lm, plan.dev, 0, 0.0, start_window, plan.caught)
    processed, seconds = _run_batches(plan, writer, start_window, progress=progress, on_batch=on_batch)
    manifest.complete = True
    manifest.seconds = round(time.perf_counter() - plan.t_start, 3)
    writer.write_manifest()
    return _result(manifest, writer.root, plan.lm, plan.dev, processed, seconds, start_window, plan.caught)


@dataclass
class _Plan:
    """What :func:`_prepare` settled: the checked arguments, the model on its
    device, and every window encoded (for the fingerprint and the total)."""

    lm: _models.LoadedModel
    ser: Any
    dev: Any
    tdtype: Any
    dname: str
    sites: list[str]
    positions: Any
    layer_map: dict[str, list[int]]
    items: list[_Item]
    names: list[str] | None
    enc: _Encoder
    batch_size: int
    shard_bytes: int
    seed: int
    nan: str
    truncate: str
    patch_embed: Any
    caught: list[str]
    t_start: float


def _prepare(
    model,
    series,
    *,
    serializer,
    layers,
    positions,
    device,
    dtype,
    batch_size: int,
    sites: Sequence[str],
    context: int | None,
    window_mode: str,
    stride: int | None,
    n_windows: int | None,
    seed: int,
    nan: str,
    truncate: str,
    shard_bytes: int,
    patch_embed,
) -> _Plan:
    """Check the arguments, load the model onto its device, cut and encode the
    windows (cheap: all up front, for the fingerprint and the progress total)."""
    _models._torch()  # a missing torch extra is reported before anything else
    t_start = time.perf_counter()
    caught: list[str] = []

    # ---- arguments
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    sites = list(dict.fromkeys(sites))
    bad = [s for s in sites if s not in SITES]
    if bad or not sites:
        raise ValueError(f"sites must be a non-empty subset of {SITES}, got {sites}")
    positions = _check_positions(positions)
    if truncate not in ("left", "error"):
        raise ValueError(f"truncate must be 'left' or 'error', got {truncate!r}")
    ser = get_serializer(serializer)
    tdtype = _models.resolve_dtype(dtype)
    dname = _models.dtype_name(tdtype)
    _check_device(device)
    lm = _models.load_model(model, device=device, dtype=None)
    dev = _models.resolve_device(device)
    lm.model.to(device=dev, dtype=tdtype)
    lm.model.eval()
    n_layers = lm.num_layers
    layer_map = _resolve_layers(layers, n_layers, sites)

    # ---- windows and encodings (cheap; all up front for the fingerprint and the total)
    wins, names = _windows(
        series,
        context=context,
        window_mode=window_mode,
        stride=stride,
        n=n_windows,
        seed=seed,
        nan=nan,
    )
    if not wins:
        raise ValueError("no context windows to capture (are the series shorter than the context?)")
    enc = _Encoder(ser, lm, truncate=truncate, need_roles=positions not in ("all", "last"))
    items = [enc(w, i) for i, w in enumerate(wins)]
    if enc.n_truncated:
        msg = (
            f"{enc.n_truncated} of {len(items)} window(s) were longer than the model's maximum "
            f"of {enc.limit} tokens; their oldest values were dropped (truncate='left')"
        )
        warnings.warn(msg, UserWarning, stacklevel=3)  # the caller of capture()
        caught.append(msg)

    return _Plan(
        lm=lm,
        ser=ser,
        dev=dev,
        tdtype=tdtype,
        dname=dname,
        sites=sites,
        positions=positions,
        layer_map=layer_map,
        items=items,
        names=names,
        enc=enc,
        batch_size=int(batch_size),
        shard_bytes=int(shard_bytes),
        seed=int(seed),
        nan=nan,
        truncate=truncate,
        patch_embed=patch_embed,
        caught=caught,
        t_start=t_start,
    )


def _open_or_resume(plan: _Plan, out, *, resume: bool) -> _store.CaptureWriter:
    """The capture folder's writer: the manifest and resume key of this
    capture, resuming or discarding an earlier one there (:func:`isofast.store.open_writer`)."""
    lm, ser, enc, items = plan.lm, plan.ser, plan.enc, plan.items
    positions, layer_map, sites, dname = plan.positions, plan.layer_map, plan.sites, plan.dname
    batch_size, shard_bytes, seed, patch_embed = plan.batch_size, plan.shard_bytes, plan.seed, plan.patch_embed
    names, nan, truncate, dev = plan.names, plan.nan, plan.truncate, plan.dev
    if out is None:
        import tempfile

        out = tempfile.mkdtemp(prefix="isofast-capture-")
    root = Path(out).expanduser()
    resume_key = _store.ResumeKey(
        weights_hash=lm.weights_hash,
        serializer=ser.to_dict(),
        positions=positions,
        layers=layer_map,
        sites=sites,
        dtype=dname,
        batch_size=int(batch_size),
        shard_bytes=int(shard_bytes),
        windows=len(items),
        input_fingerprint=_fingerprint(items),
        patch_embed=None
        if not isinstance(ser, PatchSerializer)
        else ("seeded-linear" if patch_embed is None else _models.hash_state_dict(patch_embed)),
        seed=int(seed),
    )
    return _store.open_writer(
        root,
        _store.Manifest(
            model=lm.to_dict(),
            weights_hash=lm.weights_hash,
            serializer=ser.to_dict(),
            dtype=dname,
            sites=sites,
            layers=layer_map,
            positions=positions,
            dim=lm.hidden_size,
            n_windows=len(items),
            series_names=names,
            layer_numbering="residual: 0 = embeddings, L = output of block L (last after final norm); "
            "attention: L = self-attention output of block L",
            attention_modules=_models.ATTENTION_MODULES.get(lm.architecture),
            nan_policy=nan,
            truncate=truncate,
            truncated_windows=enc.n_truncated,
            max_length=enc.limit,
            device=str(dev),
            resume_key=resume_key,
        ),
        resume=resume,
    )


def _run_batches(
    plan: _Plan,
    writer: _store.CaptureWriter,
    start_window: int,
    *,
    progress: bool,
    on_batch: Callable[[int, int], None] | None,
) -> tuple[int, float]:
    """Run the windows from ``start_window`` on in batches, buffer the kept
    rows and write them as shards; returns (tokens processed, seconds)."""
    torch = _models._torch()
    lm, ser, dev, tdtype, dname = plan.lm, plan.ser, plan.dev, plan.tdtype, plan.dname
    items, positions, layer_map, sites = plan.items, plan.positions, plan.layer_map, plan.sites
    batch_size, shard_bytes, seed, patch_embed = plan.batch_size, plan.shard_bytes, plan.seed, plan.patch_embed
    # ---- model plumbing
    body = _models.hidden_states_module(lm)
    att_layers = layer_map.get("attention", [])
    res_layers = layer_map.get("residual", [])
    grabbed: dict[int, Any] = {}
    hooks = []
    if att_layers:
        for L, mod in _models.attention_modules(lm, att_layers).items():

            def hook(_m, _inp, output, L=L):
                grabbed[L] = output[0] if isinstance(output, (tuple, list)) else output

            hooks.append(mod.register_forward_hook(hook))
    proj = None
    if isinstance(ser, PatchSerializer):
        proj = patch_embed if patch_embed is not None else _patch_projection(ser, lm, seed, dev, tdtype)
        proj = proj.to(device=dev, dtype=tdtype)
    pad_id = 0
    if lm.tokenizer is not None:
        pad_id = lm.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = lm.tokenizer.eos_token_id or 0
    if isinstance(ser, ChronosSerializer):
        pad_id = ser.pad_token_id

    def to_np(t):
        t = t.detach().to("cpu")
        if dname == "bfloat16":
            return t.view(torch.int16).numpy().view(np.uint16)
        return t.numpy()

    # ---- the loop
    remaining = items[start_window:]
    bar = Progress(
        int(sum(it.n_tokens for it in remaining)),
        desc=f"capture {lm.name}",
        unit="tok",
        noun="tokens",
        enabled=progress,
        unit_scale=True,
    )
    shards = _ShardBuffer(
        writer,
        [(s, L) for s in sites for L in layer_map[s]],
        lm.hidden_size,
        _store.storage_dtype(dname),
        shard_bytes,
    )
    processed = 0
    t_loop = time.perf_counter()
    try:
        with torch.inference_mode():
            for b0 in range(0, len(remaining), batch_size):
                batch = remaining[b0 : b0 + batch_size]
                B = len(batch)
                T = max(it.n_tokens for it in batch)
                # right padding: real tokens keep positions 0..n-1, as when run alone
                mask_np = np.zeros((B, T), np.int64)
                sel_np = np.zeros((B, T), bool)
                for j, it in enumerate(batch):
                    mask_np[j, : it.n_tokens] = 1
                    sel_np[j, : it.n_tokens] = _select_positions(it, positions)
                kwargs: dict[str, Any] = {
                    "attention_mask": torch.from_numpy(mask_np).to(dev),
                    "output_hidden_states": True,
                }
                if proj is not None:
                    P = np.zeros((B, T, ser.patch_len), np.float32)
                    for j, it in enumerate(batch):
                        P[j, : it.n_tokens] = it.patches
                    kwargs["inputs_embeds"] = proj(torch.from_numpy(P).to(device=dev, dtype=tdtype))
                else:
                    ids_np = np.full((B, T), pad_id, np.int64)
                    for j, it in enumerate(batch):
                        ids_np[j, : it.n_tokens] = it.ids
                    kwargs["input_ids"] = torch.from_numpy(ids_np).to(dev)
                grabbed.clear()
                hs = body(**kwargs).hidden_states
                # sel is False on every padded position: padding is never captured
                kept = sel_np.sum(axis=1)
                if sel_np.all():  # nothing to drop: one (B·T, d) view, no gather

                    def blocks(h):
                        return [to_np(h.reshape(-1, h.shape[-1]))]
                elif (sel_np == (np.arange(T)[None, :] < kept[:, None])).all():
                    # every window keeps a prefix (all its real tokens): one view
                    # per window, no copy; the writer stacks them as it writes
                    def blocks(h):
                        return [to_np(h[j, :n]) for j, n in enumerate(kept.tolist()) if n]
                else:
                    sel = torch.from_numpy(sel_np).to(dev)

                    def blocks(h):
                        return [to_np(h[sel])]

                for L in res_layers:
                    shards.add(("residual", L), blocks(hs[L]))
                for L in att_layers:
                    shards.add(("attention", L), blocks(grabbed[L]))
                shards.add_records(batch, sel_np)
                n_tok = int(mask_np.sum())
                processed += n_tok
                bar.update(n_tok)
                end_window = start_window + b0 + B
                shards.maybe_flush(end_window, last=end_window == len(items))
                if on_batch is not None:
                    on_batch((start_window + b0) // batch_size, n_tok)
        shards.wait()
    finally:
        for h in hooks:
            h.remove()
        bar.close()
        shards.close()
    return processed, time.perf_counter() - t_loop


def _check_device(device) -> None:
    """Refuse, before any model is loaded, a device this machine does not
    have (``--device cuda`` without a GPU) or cannot name, with a message
    that says what is available."""
    if device is None or device == "auto":
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InputError(f"device {device!r} is not a device torch knows ({exc}); use cpu, cuda or mps") from None
    have = ["cpu"]
    if torch.cuda.is_available():
        have.append(f"cuda (×{torch.cuda.device_count()})")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        have.append("mps")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r}: no CUDA GPU is visible on this machine; available: {', '.join(have)}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s); available: {', '.join(have)}"
            )
    elif dev.type == "mps" and "mps" not in have:
        raise InputError(f"device {device!r}: MPS is not available on this machine; available: {', '.join(have)}")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device {device!r} is not supported by capture; available: {', '.join(have)}")


def _result(manifest: _store.Manifest, root, lm, dev, processed, seconds, start_window, caught) -> CaptureResult:
    return CaptureResult(
        path=str(root),
        model=lm.name,
        weights_hash=lm.weights_hash,
        n_windows=int(manifest.n_windows),
        n_rows=int(manifest.rows),
        dim=int(manifest.dim),
        layers={k: list(v) for k, v in manifest.layers.items()},
        sites=list(manifest.sites),
        dtype=manifest.dtype,
        device=str(dev),
        tokens_processed=int(processed),
        seconds=round(float(seconds), 4),
        tokens_per_s=float(processed / seconds) if seconds > 0 else 0.0,
        resumed_from_window=int(start_window),
        complete=bool(manifest.complete),
        warnings=caught,
    )


# ``isofast.capture(...)`` calls the function; the module stays reachable.
from isofast._callable import make_module_callable as _make_callable  # noqa: E402

_make_callable(__name__, capture)
