"""Issue 17, class 3: what isofast wrote is verified when it is read.

A capture folder (written by the real CaptureWriter) is damaged in every way
the fuzz draws — a flipped byte, a truncation, two shards swapped between
layers, a deleted file, an edited manifest — and then read through every
entry point (open_capture, CaptureLayer chunks, the tiled file source, the
token tables, the CLI). Every damaged state raises an ``OSError`` subclass
naming the damaged file; none is read as data. Moments pickles carry a
checksum too. (Study cache entries are the lead's part of the issue.)
"""

from __future__ import annotations

import json
import os
import pickle
import shutil

import isofast
import numpy as np
import pytest
from _bad_input import assert_one_line_error, cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from isofast import store
from isofast.errors import ChecksumError, CorruptFileError, InputError, IsofastError

D = 6


def _write_capture(root, shards=2, rows=(5, 7), layers=(0, 1), seed=0):
    """A capture folder written by CaptureWriter, as capture() writes it."""
    rng = np.random.default_rng(seed)
    m = {
        "format": store.FORMAT,
        "format_version": store.FORMAT_VERSION,
        "complete": True,
        "model": {"name": "fake", "num_layers": max(layers)},
        "dtype": "float32",
        "storage_dtype": "float32",
        "sites": ["residual"],
        "layers": {"residual": list(layers)},
        "dim": D,
        "n_windows": shards,
        "windows_done": 0,
        "rows": 0,
        "shapes": {},
        "shards": [],
        "token_table_format": "parquet" if store.have_pyarrow() else "csv",
    }
    w = store.CaptureWriter.prepare(root, m)
    data = {}
    for k in range(shards):
        n = rows[k % len(rows)]
        arrays = {("residual", L): rng.normal(size=(n, D)).astype(np.float32) for L in layers}
        for key, a in arrays.items():
            data.setdefault(key, []).append(a)
        tokens = {
            "row": np.arange(n),
            "series_id": np.zeros(n, int),
            "window_id": np.full(n, k),
            "position": np.arange(n),
            "token_id": np.arange(n),
            "token_text": np.array(["x"] * n, object),
            "role": np.array(["digit"] * n, object),
        }
        windows = {c: np.array([k]) for c in store.WINDOW_COLUMNS}
        w.write_shard(k, arrays, tokens, windows, window_range=(k, k + 1))
    return {k: np.concatenate(v) for k, v in data.items()}


def _files(root):
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def _read_everything(root):
    """Every way to read a capture; returns the arrays read."""
    cap = isofast.open_capture(root)
    out = {}
    for L in cap.layers_of("residual"):
        out[("chunks", L)] = np.concatenate(list(cap.layer(L).iter_chunks()))
        src = isofast.open_source(root, layer=L)
        out[("source", L)] = np.concatenate(list(src.iter_chunks()))
    cap.tokens()
    cap.windows()
    return out


def test_intact_capture_reads_back_exactly(tmp_path):
    data = _write_capture(tmp_path / "c")
    got = _read_everything(tmp_path / "c")
    for (kind, L), arr in got.items():
        np.testing.assert_array_equal(arr, data[("residual", L)])
    m = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert m["checksum"] == store.manifest_checksum(m)
    assert all(len(s["checksums"]) == 4 for s in m["shards"])  # 2 layers + 2 tables


def _damage(root, kind, pick, rng):
    files = _files(root)
    f = files[pick % len(files)]
    if kind == "flip":
        b = bytearray(f.read_bytes())
        if not b:
            return None
        b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
        f.write_bytes(bytes(b))
    elif kind == "truncate":
        b = f.read_bytes()
        f.write_bytes(b[: int(rng.integers(len(b)))])
    elif kind == "delete":
        f.unlink()
    elif kind == "swap":
        shards = [p for p in files if p.suffix == ".npy"]
        a, b = shards[pick % len(shards)], shards[(pick + 1) % len(shards)]
        if a.read_bytes() == b.read_bytes():
            return None
        ta = a.read_bytes()
        a.write_bytes(b.read_bytes())
        b.write_bytes(ta)
        return {a, b}
    return {f}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["flip", "truncate", "delete", "swap"]), pick=st.integers(0, 100), seed=st.integers(0, 2**31)
)
def test_damaged_capture_is_detected_naming_the_file(tmp_path_factory, kind, pick, seed):
    root = tmp_path_factory.mktemp("cap") / "c"
    data = _write_capture(root)
    damaged = _damage(root, kind, pick, np.random.default_rng(seed))
    if damaged is None:
        return
    store._VERIFIED.clear()
    try:
        got = _read_everything(root)
    except OSError as e:
        assert isinstance(e, (IsofastError, FileNotFoundError)), repr(e)
        assert any(str(f) in str(e) or f.name in str(e) for f in damaged), (str(e), damaged)
        return
    # nothing raised: then nothing that was read may differ from what was written
    for (_, L), arr in got.items():
        np.testing.assert_array_equal(arr, data[("residual", L)])
    pytest.fail(f"{kind} of {damaged} was not detected")


def test_swapped_layers_are_named(tmp_path):
    root = tmp_path / "c"
    _write_capture(root)
    a, b = root / "residual/L000/00000.npy", root / "residual/L001/00000.npy"
    ta = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(ta)
    store._VERIFIED.clear()
    with pytest.raises(ChecksumError, match="L000/00000.npy"):
        list(isofast.open_capture(root).layer(0).iter_chunks())
    with pytest.raises(ChecksumError, match="00000.npy"):
        isofast.open_source(root, layer=1)
    assert_one_line_error(cli("analyze", root, "--layer", "0", "-q"), 2, "00000.npy", "checksum")


@pytest.mark.parametrize("edit", ["value", "json", "drop_checksum", "rows"])
def test_edited_manifest_is_detected(tmp_path, edit):
    root = tmp_path / "c"
    _write_capture(root)
    p = root / "manifest.json"
    m = json.loads(p.read_text())
    if edit == "value":
        m["shards"][0]["rows"] += 1
        p.write_text(json.dumps(m))
    elif edit == "rows":
        m["dim"] = D + 1
        p.write_text(json.dumps(m))
    elif edit == "json":
        p.write_text(p.read_text()[:-5])
    else:
        m.pop("checksum")
        p.write_text(json.dumps(m))
    with pytest.raises(CorruptFileError, match="manifest.json"):
        isofast.open_capture(root)
    assert_one_line_error(cli("analyze", root, "--layer", "0", "-q"), 2, "manifest.json")


def test_format_1_captures_still_open(tmp_path):
    """Captures written before checksums are read (unverified)."""
    root = tmp_path / "c"
    data = _write_capture(root)
    p = root / "manifest.json"
    m = json.loads(p.read_text())
    m["format_version"] = 1
    m.pop("checksum")
    for s in m["shards"]:
        s.pop("checksums")
    p.write_text(json.dumps(m))
    got = _read_everything(root)
    np.testing.assert_array_equal(got[("chunks", 0)], data[("residual", 0)])


def test_verified_once_per_process(tmp_path, monkeypatch):
    root = tmp_path / "c"
    _write_capture(root)
    store._VERIFIED.clear()
    calls = []
    real = store.checksum_of
    monkeypatch.setattr(store, "checksum_of", lambda p: calls.append(p) or real(p))
    lay = isofast.open_capture(root).layer(0)
    list(lay.iter_chunks())
    n = len(calls)
    list(lay.iter_chunks())
    assert len(calls) == n == 2
    # a changed file is re-verified
    f = root / "residual/L000/00001.npy"
    b = bytearray(f.read_bytes())
    b[-1] ^= 0xFF
    f.write_bytes(bytes(b))
    os.utime(f, ns=(1, 1))
    with pytest.raises(ChecksumError):
        list(lay.iter_chunks())


# ------------------------------------------------------------------ Moments state
def _state():
    m = isofast._core.Moments(4)
    m.update(np.random.default_rng(5).normal(size=(30, 4)))
    return m


@settings(max_examples=60, deadline=None)
@given(pos=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_moments_state_with_a_flipped_bit_is_refused(pos, bit):
    s = bytearray(_state().__getstate__())
    s[pos % len(s)] ^= 1 << bit
    with pytest.raises(InputError, match="corrupt Moments state"):
        isofast._core.Moments(4).__setstate__(bytes(s))


def test_moments_state_content_is_checked_even_without_checksum():
    body = _state().__getstate__()[12:]  # the legacy (unchecksummed) layout
    n_at = 16  # magic(8), d(8), then n
    for value in (2**62, 0, 31):
        b = bytearray(body)
        b[n_at : n_at + 8] = int(value).to_bytes(8, "little")
        with pytest.raises(InputError, match="corrupt Moments state"):
            isofast._core.Moments(4).__setstate__(bytes(b))
    b = bytearray(body)
    b[40:48] = np.float64(np.nan).tobytes()  # mean[0] = NaN
    with pytest.raises(InputError, match="mean"):
        isofast._core.Moments(4).__setstate__(bytes(b))
    m = isofast._core.Moments(4)
    m.__setstate__(bytes(body))  # intact legacy state still loads
    assert m.n == 30


def test_moments_pickle_round_trip_and_self_merge():
    m = _state()
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m2.mean, m.mean)
    ref = m.copy()
    ref.merge(m.copy())
    m.merge(m)  # no "Already borrowed"
    assert m.n == 60
    np.testing.assert_allclose(m.comoment(), ref.comoment(), rtol=1e-14)


def test_concurrent_update_is_a_clear_error_or_serialised():
    import threading

    m = isofast._core.Moments(64)
    X = np.random.default_rng(6).normal(size=(200_000, 64))
    errors = []

    def go():
        try:
            m.update(X)
        except Exception as e:
            errors.append(e)

    ts = [threading.Thread(target=go) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for e in errors:
        assert isinstance(e, InputError) and "another thread" in str(e), repr(e)
    assert m.n == 200_000 * (3 - len(errors))


# ------------------------------------------------------------------ zarr
def test_zarr_missing_chunk_is_refused(tmp_path):
    zarr = pytest.importorskip("zarr")
    p = tmp_path / "a.zarr"
    z = zarr.create_array(str(p), shape=(100, 4), chunks=(10, 4), dtype="f4")
    z[:] = np.random.default_rng(7).normal(size=(100, 4)).astype("f4")
    victim = next(q for q in sorted(p.rglob("*")) if q.is_file() and q.parent.name == "0" and q.name == "0")
    os.remove(victim)
    with pytest.raises(CorruptFileError, match="a.zarr.*1 of 10 chunks missing"):
        isofast.open_source(p)
    assert_one_line_error(cli("analyze", p, "-q"), 2, "a.zarr", "missing")


def test_zarr_damaged_chunk_is_an_oserror_naming_the_store(tmp_path):
    zarr = pytest.importorskip("zarr")
    p = tmp_path / "b.zarr"
    z = zarr.create_array(str(p), shape=(100, 4), chunks=(10, 4), dtype="f4")
    z[:] = np.random.default_rng(8).normal(size=(100, 4)).astype("f4")
    victim = sorted(q for q in p.rglob("*") if q.is_file() and q.name != "zarr.json")[3]
    victim.write_bytes(b"\x00garbage" * 3)
    with pytest.raises(OSError, match="b.zarr"):
        isofast.analyze(isofast.open_source(p))


def test_copy_of_capture_verifies(tmp_path):
    """Checksums cover bytes, not paths: a copied folder still verifies."""
    _write_capture(tmp_path / "c")
    shutil.copytree(tmp_path / "c", tmp_path / "d")
    _read_everything(tmp_path / "d")
