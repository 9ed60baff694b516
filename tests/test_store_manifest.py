"""store.Manifest / store.ResumeKey: the one owner of the capture manifest
schema. The JSON a capture writes is the one the dict-building code wrote
before the dataclass (same keys, same order, same bytes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from isofast import store
from isofast.errors import InputError

pytest.importorskip("torch")
pytest.importorskip("transformers")

# The keys, in order, that capture() wrote as a literal dict before store.Manifest.
LLM_KEYS = [
    "format", "format_version", "isofast_version", "complete", "created", "model", "weights_hash",
    "serializer", "dtype", "storage_dtype", "sites", "layers", "positions", "dim", "n_windows",
    "windows_done", "rows", "shapes", "shards", "series_names", "token_table_format", "roles",
    "layer_numbering", "attention_modules", "nan_policy", "truncate", "truncated_windows", "max_length",
    "device", "resume_key", "checksum", "seconds",
]  # fmt: skip
LLM_RESUME_KEYS = [
    "weights_hash", "serializer", "positions", "layers", "sites", "dtype", "batch_size", "shard_bytes",
    "windows", "input_fingerprint", "patch_embed", "seed",
]  # fmt: skip
# isofast.tsfm.capture wrote the same minus the LLM-only keys, and "family" in its resume key.
TSFM_KEYS = [k for k in LLM_KEYS if k not in ("attention_modules", "truncate", "truncated_windows", "max_length")]
TSFM_RESUME_KEYS = ["weights_hash", "family"] + LLM_RESUME_KEYS[1:-2]


def _golden(m: dict, keys, resume_keys) -> bytes:
    """The manifest bytes as the old code path produced them from the same values."""
    old = {k: m[k] for k in keys}
    old["resume_key"] = {k: m["resume_key"][k] for k in resume_keys}
    return json.dumps(old, indent=1, sort_keys=False).encode()


def _series():
    y = 50 + 10 * np.sin(np.arange(200) / 5)
    return {"a": y, "b": 2 * y[:150]}


def test_llm_manifest_bytes_are_the_old_ones(tmp_path):
    from isofast.capture import capture
    from isofast.models import tiny_model

    out = tmp_path / "c"
    capture(
        tiny_model("gpt2"),
        _series(),
        context=40,
        window_mode="sliding",
        out=out,
        shard_bytes=512,
        batch_size=2,
        progress=False,
    )
    raw = (out / store.MANIFEST).read_bytes()
    m = json.loads(raw)
    assert list(m) == LLM_KEYS and list(m["resume_key"]) == LLM_RESUME_KEYS
    assert raw == _golden(m, LLM_KEYS, LLM_RESUME_KEYS)
    assert len(m["shards"]) > 1 and m["checksum"] == store.manifest_checksum(m)
    # read back and rewritten unchanged (what resuming a complete capture does)
    rec = store.Manifest.from_dict(m)
    assert rec.to_dict() == m and list(rec.to_dict()) == LLM_KEYS
    assert json.dumps(rec.to_dict(), indent=1).encode() == raw
    before = raw
    capture(
        tiny_model("gpt2"),
        _series(),
        context=40,
        window_mode="sliding",
        out=out,
        shard_bytes=512,
        batch_size=2,
        progress=False,
    )
    assert (out / store.MANIFEST).read_bytes() == before
    cap = store.open_capture(out)
    assert cap.manifest == m and cap.record.dim == m["dim"] and cap.complete


def test_interrupted_then_resumed_manifest_bytes(tmp_path):
    from isofast.capture import capture
    from isofast.models import tiny_model

    lm = tiny_model("gpt2")
    kw = dict(context=30, window_mode="sliding", out=tmp_path / "r", shard_bytes=2048, batch_size=2, progress=False)

    def stop(i, n):
        if i == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        capture(lm, _series(), on_batch=stop, **kw)
    raw = (tmp_path / "r" / store.MANIFEST).read_bytes()
    m = json.loads(raw)
    assert not m["complete"] and m["shards"]
    keys = [k for k in LLM_KEYS if k != "seconds"]
    assert list(m) == keys and raw == _golden(m, keys, LLM_RESUME_KEYS)
    r = capture(lm, _series(), **kw)
    assert r.resumed_from_window == m["windows_done"] > 0
    raw = (tmp_path / "r" / store.MANIFEST).read_bytes()
    m = json.loads(raw)
    assert raw == _golden(m, LLM_KEYS, LLM_RESUME_KEYS)


def test_tsfm_manifest_bytes_are_the_old_ones(tmp_path, one_torch_thread):
    pytest.importorskip("chronos")
    import isofast
    from isofast import tsfm

    tsfm.build_random("chronos-bolt", tmp_path / "bolt", seed=1)
    out = tmp_path / "c"
    isofast.capture(f"chronos-bolt:{tmp_path / 'bolt'}", _series(), context=64, out=out, progress=False)
    raw = (out / store.MANIFEST).read_bytes()
    m = json.loads(raw)
    assert list(m) == TSFM_KEYS and list(m["resume_key"]) == TSFM_RESUME_KEYS
    assert raw == _golden(m, TSFM_KEYS, TSFM_RESUME_KEYS)


def test_a_different_resume_key_names_what_differs(tmp_path):
    from isofast.capture import capture
    from isofast.models import tiny_model

    lm = tiny_model("gpt2")
    capture(lm, _series(), context=40, out=tmp_path / "c", progress=False)
    with pytest.raises(InputError, match=r"differs in: batch_size, seed"):
        capture(lm, _series(), context=40, out=tmp_path / "c", progress=False, batch_size=3, seed=1)
    capture(lm, _series(), context=40, out=tmp_path / "c", progress=False, batch_size=3, resume=False)  # overwrites


def test_manifest_round_trip_keeps_what_it_does_not_know():
    d = {"format": store.FORMAT, "dim": 4, "sites": ["residual"], "future_key": [1, 2]}
    m = store.Manifest.from_dict(d)
    assert m.dim == 4 and m.rows is store.ABSENT and not m.complete
    assert m.extra == {"future_key": [1, 2]}
    assert m.to_dict() == d  # nothing derived or added on the way
    key = store.ResumeKey(
        weights_hash="h",
        serializer={},
        positions="all",
        layers={},
        sites=[],
        dtype="float32",
        batch_size=1,
        shard_bytes=1,
        windows=1,
        input_fingerprint="f",
    )
    assert "family" not in key.to_dict() and "seed" not in key.to_dict()
