"""Capture folders from time-series foundation models.

:func:`isofast.capture` hands a ``FAMILY:PATH`` spec (or a loaded
:class:`~isofast.tsfm.base.TSFMAdapter`) here. The folder has the same format
as every isofast capture (:mod:`isofast.store`: checksummed shards, a
manifest written last, resumable), so ``isofast analyze CAPTURE`` and the
Dask analysis read it unchanged. Rows are the tokens of the captured stack
(patches, value bins, ``[REG]``…), window-major; the token table adds
``first_step``/``last_step``, the time steps (within the window) whose
values each token reads, so rows line up with time steps or patches.

Positions: ``"all"`` every token the stack reads (padding-only patches
included, as the model sees them), ``"digits"`` (alias ``"values"``) only
tokens that read values, ``"last"`` the last value-reading token of each
window, or a collection of role names.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from isofast import store as _store
from isofast.errors import InputError
from isofast.progress import Progress
from isofast.serializers.base import DIGIT, ROLES
from isofast.tsfm.base import TSFMAdapter


def _keep(role: np.ndarray, window: np.ndarray, positions) -> np.ndarray:
    if positions == "all":
        return np.ones(role.size, bool)
    if positions in ("digits", "values"):
        return role == DIGIT
    if positions == "last":
        keep = np.zeros(role.size, bool)
        val = np.flatnonzero(role == DIGIT)
        if val.size:
            w = window[val]
            last = np.r_[w[1:] != w[:-1], True]
            keep[val[last]] = True
        return keep
    codes = {ROLES.index(r) for r in positions}
    return np.isin(role, list(codes))


def _check_positions(positions):
    if isinstance(positions, str):
        if positions not in ("all", "digits", "values", "last"):
            raise InputError(f"positions must be 'all', 'digits', 'last' or a collection of roles, got {positions!r}")
        return positions
    roles = sorted({str(r) for r in positions})
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise InputError(f"unknown roles {bad}; roles are {list(ROLES)}")
    return roles


def capture_tsfm(
    model,
    series,
    *,
    layers="all",
    positions="all",
    out=None,
    device=None,
    dtype: str = "float32",
    batch_size: int = 8,
    sites: Sequence[str] = ("residual", "attention"),
    resume: bool = True,
    context: int | None = None,
    window_mode: str = "last",
    stride: int | None = None,
    n_windows: int | None = None,
    seed: int = 0,
    nan: str = "interpolate",
    shard_bytes: int = 256 << 20,
    progress: bool = True,
):
    """Capture every requested layer of a TSFM into a capture folder (module
    docstring). Arguments as :func:`isofast.capture.capture`."""
    from isofast import capture as _cap
    from isofast._input import check_int
    from isofast.tsfm import load_tsfm
    from isofast.tsfm.base import resolve_layers

    t_start = time.perf_counter()
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    positions = _check_positions(positions)
    if dtype != "float32":
        raise InputError(
            f"TSFM capture stores float32 rows (the packages compute in float32 on CPU), got dtype={dtype!r}"
        )
    ad: TSFMAdapter = model if isinstance(model, TSFMAdapter) else load_tsfm(model, device=device)
    layer_map = resolve_layers(layers, ad.n_layers, sites)
    sites = [s for s in dict.fromkeys(sites)]
    wins, names = _cap._windows(
        series, context=context, window_mode=window_mode, stride=stride, n=n_windows, seed=seed, nan=nan
    )
    if not wins:
        raise InputError("no context windows to capture (are the series shorter than the context?)")
    ser = ad.serializer
    fp = hashlib.sha256()
    for w in wins:
        fp.update(np.asarray([w.series_id, w.start, w.values.size], np.int64).tobytes())
        fp.update(np.ascontiguousarray(w.values, np.float64).tobytes())
    if out is None:
        import tempfile

        out = tempfile.mkdtemp(prefix="isofast-capture-")
    root = Path(out).expanduser()
    resume_key = _store.ResumeKey(
        weights_hash=ad.weights_hash,
        family=ad.family,
        serializer=ser.to_dict(),
        positions=positions,
        layers=layer_map,
        sites=sites,
        dtype="float32",
        batch_size=int(batch_size),
        shard_bytes=int(shard_bytes),
        windows=len(wins),
        input_fingerprint=fp.hexdigest(),
    )
    writer = _store.open_writer(
        root,
        _store.Manifest(
            model={"name": f"{ad.family}:{ad.path}" if ad.path else ad.family, **ad.describe()},
            weights_hash=ad.weights_hash,
            serializer=ser.to_dict(),
            dtype="float32",
            sites=sites,
            layers=layer_map,
            positions=positions,
            dim=ad.d_model,
            n_windows=len(wins),
            series_names=names,
            layer_numbering="residual: 0 = input of block 1 (patch/token embedding), L = output of block L "
            "(last after the final norm); attention: L = self-attention output of block L "
            f"(before the residual add); stack: {ad.stack.name}",
            nan_policy=nan,
            device=str(ad.device),
            resume_key=resume_key,
        ),
        resume=resume,
    )
    manifest = writer.manifest
    start = int(manifest.windows_done)
    processed = 0
    t_loop = time.perf_counter()
    if not manifest.complete:
        keys = [(s, L) for s in sites for L in layer_map[s]]
        row_next = int(manifest.rows)
        k = len(manifest.shards)
        per_window = max(1, ad.d_model * 4 * len(keys) * max(ser.n_tokens(w.values.size) for w in wins))
        step = max(batch_size, (shard_bytes // per_window) // batch_size * batch_size)
        done = start
        # a TSFM's batches are windows (their token count is known only after embedding)
        bar = Progress(len(wins) - start, desc=f"capture {ad.family}", unit="window", noun="windows", enabled=progress)
        try:
            while done < len(wins):
                group = wins[done : done + step]
                emb = ad.embed([w.values for w in group], layers=layer_map, sites=sites, batch_size=batch_size, nan=nan)
                keep = _keep(emb.role, emb.window, positions)
                arrays = {}
                for key in keys:
                    site, L = key
                    emb_key = (site, L)
                    if emb_key not in emb.arrays:
                        raise RuntimeError(f"{ad.family}: {site} layer {L} was not captured")
                    arrays[key] = emb.arrays[emb_key][keep]
                n = int(keep.sum())
                wid = emb.window[keep]
                tokens = {
                    "row": np.arange(row_next, row_next + n, dtype=np.int64),
                    "series_id": np.asarray([group[i].series_id for i in wid], np.int64),
                    "window_id": (wid + done).astype(np.int64),
                    "position": emb.token[keep],
                    "token_id": np.full(n, -1, np.int64),
                    "token_text": [_kind_text(ser, emb, i) for i in np.flatnonzero(keep)],
                    "role": [ROLES[r] for r in emb.role[keep]],
                    "first_step": emb.first[keep],
                    "last_step": emb.last[keep],
                }
                windows = {
                    "window_id": np.arange(done, done + len(group), dtype=np.int64),
                    "series_id": np.asarray([w.series_id for w in group], np.int64),
                    "start": np.asarray([w.start for w in group], np.int64),
                    "n_values": np.asarray([w.values.size for w in group], np.int64),
                    "n_values_input": np.asarray([ser.kept(w.values.size) for w in group], np.int64),
                    "n_tokens": np.bincount(emb.window, minlength=len(group)).astype(np.int64),
                    "scale": np.full(len(group), np.nan),
                    "offset": np.full(len(group), np.nan),
                }
                writer.write_shard(k, arrays, tokens, windows, window_range=(done, done + len(group)))
                k += 1
                row_next += n
                processed += int(emb.role.size)
                done += len(group)
                bar.update(len(group))
        finally:
            bar.close()
        manifest.complete = True
        manifest.seconds = round(time.perf_counter() - t_start, 3)
        writer.write_manifest()
    seconds = time.perf_counter() - t_loop
    return _cap.CaptureResult(
        path=str(root),
        model=manifest.model["name"],
        weights_hash=ad.weights_hash,
        n_windows=int(manifest.n_windows),
        n_rows=int(manifest.rows),
        dim=int(manifest.dim),
        layers={s: list(v) for s, v in manifest.layers.items()},
        sites=list(manifest.sites),
        dtype="float32",
        device=str(ad.device),
        tokens_processed=processed,
        seconds=round(seconds, 4),
        tokens_per_s=float(processed / seconds) if processed and seconds > 0 else 0.0,
        resumed_from_window=start,
        complete=True,
        warnings=[],
    )


def _kind_text(ser, emb, i: int) -> str:
    """``patch[36:44]`` (steps 36..43), ``value[7]``, or the special token's kind."""
    kind, a, b = emb.kind[i], int(emb.first[i]), int(emb.last[i])
    if a < 0:
        return kind
    return f"{kind}[{a}]" if a == b else f"{kind}[{a}:{b + 1}]"
