"""Capture with tiny random models: exactness, padding, storage, resume, bad input."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from isofast import store  # noqa: E402
from isofast.capture import capture  # noqa: E402
from isofast.models import ATTENTION_MODULES, load_model, tiny_model  # noqa: E402
from isofast.serializers import ChronosSerializer, LLMTimeSerializer  # noqa: E402
from isofast.store import open_capture  # noqa: E402

ARCHS = ["gpt2", "llama", "t5"]


def _manual(lm, ids, layers, att_layers):
    """One window, no padding, through the full model with our own hooks."""
    named = dict(lm.model.named_modules())
    got = {}
    hooks = []
    for L in att_layers:
        mod = named[ATTENTION_MODULES[lm.architecture].format(i=L - 1)]
        hooks.append(mod.register_forward_hook(lambda m, i, o, L=L: got.__setitem__(L, o[0])))
    x = torch.tensor([ids])
    with torch.inference_mode():
        if lm.kind == "encoder-decoder":
            out = lm.model(
                input_ids=x, decoder_input_ids=torch.zeros((1, 1), dtype=torch.long), output_hidden_states=True
            )
            hs = out.encoder_hidden_states
        else:
            hs = lm.model(input_ids=x, output_hidden_states=True).hidden_states
    for h in hooks:
        h.remove()
    return {L: hs[L][0].numpy() for L in layers}, {L: got[L][0].numpy() for L in att_layers}


@pytest.mark.parametrize("arch", ARCHS)
def test_capture_equals_manual_forward(arch, tiny_models, short_series, tmp_path):
    lm = tiny_models(arch)
    r = capture(lm, short_series, out=tmp_path / "c", batch_size=3, progress=False)
    assert r.complete and r.n_windows == 3
    cap = open_capture(r.path)
    tokens = cap.tokens()
    n_layers = lm.num_layers
    assert cap.layers == list(range(n_layers + 1))
    assert cap.layers_of("attention") == list(range(1, n_layers + 1))
    ser = LLMTimeSerializer.preset("llama")
    for w, x in enumerate(short_series):
        text = ser.encode(x).text
        ids = lm.tokenizer(text)["input_ids"]
        rows = np.flatnonzero(tokens["window_id"].to_numpy() == w)
        assert len(rows) == len(ids)  # every real token once, no padding
        np.testing.assert_array_equal(tokens["token_id"].to_numpy()[rows], ids)
        np.testing.assert_array_equal(tokens["position"].to_numpy()[rows], np.arange(len(ids)))
        res, att = _manual(lm, ids, range(n_layers + 1), range(1, n_layers + 1))
        for L in range(n_layers + 1):
            got = cap.layer(L).to_numpy()[rows]
            np.testing.assert_allclose(got, res[L], rtol=1e-4, atol=1e-5)
        for L in range(1, n_layers + 1):
            got = cap.layer(L, "attention").to_numpy()[rows]
            np.testing.assert_allclose(got, att[L], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_never_leaks(arch, tiny_models, short_series, tmp_path):
    """A batch of unequal lengths gives the rows of one-by-one passes."""
    lm = tiny_models(arch)
    a = capture(lm, short_series, out=tmp_path / "batched", batch_size=3, progress=False).open()
    b = capture(lm, short_series, out=tmp_path / "single", batch_size=1, progress=False).open()
    assert a.n_rows == b.n_rows
    ta, tb = a.tokens(), b.tokens()
    assert ta.equals(tb)
    pad = lm.tokenizer.pad_token_id
    assert not (ta["token_id"] == pad).any()
    for site in a.sites:
        for L in a.layers_of(site):
            np.testing.assert_allclose(a.layer(L, site).to_numpy(), b.layer(L, site).to_numpy(), rtol=1e-4, atol=1e-5)


def test_positions_and_roles(tiny_models, short_series, tmp_path):
    lm = tiny_models("llama")
    full = capture(lm, short_series, out=tmp_path / "all", layers=[1], progress=False).open()
    dig = capture(lm, short_series, out=tmp_path / "dig", layers=[1], positions="digits", progress=False).open()
    last = capture(
        lm, short_series, out=tmp_path / "last", layers=[-1], positions="last", sites=["residual"], progress=False
    ).open()
    tf, td = full.tokens(), dig.tokens()
    assert set(td["role"]) == {"digit"}
    assert all(t.isdigit() for t in td["token_text"])
    keep = (tf["role"] == "digit").to_numpy()
    np.testing.assert_array_equal(dig.layer(1).to_numpy(), full.layer(1).to_numpy()[keep])
    np.testing.assert_array_equal(td["position"], tf["position"][keep])
    tl = last.tokens()
    assert len(tl) == 3 and list(tl["token_text"]) == [",", ",", ","]
    assert last.layers == [lm.num_layers]
    # roles, on the gpt layout with a sign
    sgn = capture(
        lm,
        [[-1.0, 2.0, -3.5]],
        serializer=LLMTimeSerializer.preset("gpt", basic=True),
        out=tmp_path / "sign",
        layers=[0],
        sites=["residual"],
        progress=False,
    ).open()
    assert {"digit", "separator", "sign"} <= set(sgn.tokens()["role"])


def test_bfloat16_and_float16_storage(tiny_models, short_series, tmp_path):
    lm = tiny_model("gpt2")  # own copy: capture casts in place
    ref = capture(lm, short_series, out=tmp_path / "f32", progress=False).open()
    for dt, tol in (("bfloat16", 0.1), ("float16", 0.01)):
        lm = tiny_model("gpt2")
        cap = capture(lm, short_series, out=tmp_path / dt, dtype=dt, progress=False).open()
        assert cap.manifest["dtype"] == dt
        lay = cap.layer(2)
        assert lay.isofast_dtype == dt
        chunk = next(iter(lay))
        assert chunk.ndim == 2 and chunk.dtype == (np.uint16 if dt == "bfloat16" else np.float16)
        assert isinstance(chunk, np.memmap)
        if dt == "bfloat16":
            assert cap.manifest["storage_dtype"] == "uint16"
        x = lay.to_numpy(float32=True)
        y = ref.layer(2).to_numpy()
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, atol=tol * np.abs(y).max())
    # the layer is a re-iterable of chunks
    lay = ref.layer(1, "attention")
    assert sum(c.shape[0] for c in lay) == sum(c.shape[0] for c in lay) == lay.shape[0]


def _snapshot(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def test_resume_after_interruption_is_byte_identical(tiny_models, tmp_path):
    lm = tiny_models("llama")
    rng = np.random.default_rng(0)
    series = [rng.normal(size=int(n)).cumsum() for n in rng.integers(5, 30, size=11)]
    kw = dict(batch_size=2, shard_bytes=1, progress=False)  # one shard per batch
    ref = capture(lm, series, out=tmp_path / "ref", **kw)

    class Boom(RuntimeError):
        pass

    def interrupt(batch_index, n_tokens):
        if batch_index == 2:
            raise Boom

    with pytest.raises(Boom):
        capture(lm, series, out=tmp_path / "run", on_batch=interrupt, **kw)
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert not m["complete"] and m["windows_done"] == 6 and len(m["shards"]) == 3
    part = open_capture(tmp_path / "run")
    assert part.layer(1).shape[0] == m["rows"]
    again = capture(lm, series, out=tmp_path / "run", **kw)
    assert again.resumed_from_window == 6 and again.complete
    assert _snapshot(tmp_path / "run") == _snapshot(tmp_path / "ref")
    a, b = open_capture(tmp_path / "run"), open_capture(tmp_path / "ref")
    assert a.tokens().equals(b.tokens()) and a.windows().equals(b.windows())
    assert a.manifest["shards"] == b.manifest["shards"]
    # a complete capture is not recomputed
    done = capture(lm, series, out=tmp_path / "run", **kw)
    assert done.tokens_processed == 0 and done.n_rows == ref.n_rows


def test_resume_guards_and_overwrite(tiny_models, short_series, tmp_path):
    lm = tiny_models("gpt2")
    capture(lm, short_series, out=tmp_path / "c", layers=[1], progress=False)
    with pytest.raises(ValueError, match="different capture.*layers"):
        capture(lm, short_series, out=tmp_path / "c", layers=[2], progress=False)
    r = capture(lm, short_series, out=tmp_path / "c", layers=[2], resume=False, progress=False)
    cap = open_capture(r.path)
    assert cap.layers == [2] and not (tmp_path / "c" / "residual" / "L001").exists()


def test_csv_token_table_without_pyarrow(tiny_models, short_series, tmp_path, monkeypatch):
    monkeypatch.setattr(store, "have_pyarrow", lambda: False)
    lm = tiny_models("gpt2")
    r = capture(
        lm, [short_series[2], [1.0, -2.0]], serializer="llmtime:gpt", out=tmp_path / "c", layers=[1], progress=False
    )
    cap = open_capture(r.path)
    assert cap.manifest["token_table_format"] == "csv"
    assert list((tmp_path / "c" / "tokens").glob("*.csv"))
    t = cap.tokens()
    assert len(t) == cap.n_rows
    assert {"digit", "separator"} <= set(t["role"]) and " " in set(t["token_text"])
    assert t["token_id"].dtype == np.int64


def test_chronos_ids_on_t5(tiny_models, short_series, tmp_path):
    lm = tiny_models("t5")
    r = capture(lm, short_series, serializer="chronos", out=tmp_path / "c", progress=False)
    cap = open_capture(r.path)
    t = cap.tokens()
    assert len(t) == sum(len(x) + 1 for x in short_series)  # values + EOS
    ser = ChronosSerializer()
    np.testing.assert_array_equal(t["token_id"][t["window_id"] == 0], ser.encode(short_series[0]).ids)
    assert cap.windows()["scale"][0] == pytest.approx(np.mean(np.abs(short_series[0])))


def test_patch_capture(tiny_models, short_series, tmp_path):
    lm = tiny_models("gpt2")
    r = capture(lm, short_series, serializer="patch", out=tmp_path / "c", progress=False)
    cap = open_capture(r.path)
    n = [(len(x) + 8 - 16) // 8 + 1 if len(x) + 8 >= 16 else 1 for x in short_series]
    assert cap.n_rows == sum(n)
    r2 = capture(lm, short_series, serializer="patch", out=tmp_path / "d", progress=False)
    np.testing.assert_array_equal(r2.layer(2).to_numpy(), cap.layer(2).to_numpy())


def test_layer_selection(tiny_models, short_series, tmp_path):
    lm = tiny_models("gpt2")
    r = capture(lm, short_series, layers=[0, -1], out=tmp_path / "c", progress=False)
    assert r.layers == {"residual": [0, 2], "attention": [2]}
    cap = r.open()
    with pytest.raises(KeyError):
        cap.layer(1)
    with pytest.raises(KeyError):
        cap.layer(0, "attention")
    assert cap.layer(-1).layer == 2
    with pytest.raises(ValueError, match="out of range"):
        capture(lm, short_series, layers=[7], out=tmp_path / "d", progress=False)
    with pytest.raises(ValueError, match="no attention layer"):
        capture(lm, short_series, layers=[0], sites=["attention"], out=tmp_path / "f", progress=False)
    with pytest.raises(ValueError, match="sites"):
        capture(lm, short_series, sites=["mlp"], out=tmp_path / "e", progress=False)


# ------------------------------------------------------------------ bad input
def test_unknown_model():
    with pytest.raises(ValueError, match="smollm2") as e:
        load_model("gpt-17")
    assert "local Hugging Face folder" in str(e.value)
    with pytest.raises(FileNotFoundError, match="no such model"):
        load_model("./does/not/exist")
    with pytest.raises(FileNotFoundError, match="config.json"):
        from isofast.models import load_folder

        load_folder(Path(__file__).parent)


def test_nan_and_empty_series(tiny_models, tmp_path):
    lm = tiny_models("gpt2")
    with pytest.warns(UserWarning, match="filled 2 NaN"):
        r = capture(lm, [[1.0, np.nan, np.nan, 4.0]], out=tmp_path / "a", progress=False)
    cap = r.open()
    assert cap.windows()["n_values"][0] == 4
    with pytest.raises(ValueError, match="NaN at index 1"):
        capture(lm, [[1.0, np.nan, 4.0]], nan="error", out=tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="empty"):
        capture(lm, [[1.0, 2.0], []], out=tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="every value is NaN"):
        capture(lm, [np.full(3, np.nan)], out=tmp_path / "d", progress=False)


def test_context_longer_than_model(tiny_models, tmp_path):
    lm = tiny_models("gpt2")  # 256 positions; ~5 tokens per value
    long = np.linspace(1, 2, 200)
    with pytest.raises(ValueError, match="maximum of 256"):
        capture(lm, [long], truncate="error", out=tmp_path / "a", progress=False)
    with pytest.warns(UserWarning, match="oldest values were dropped"):
        r = capture(lm, [long, long[:10]], out=tmp_path / "b", progress=False)
    w = r.open().windows()
    assert w["n_tokens"][0] <= 256 and w["n_values_input"][0] == 200
    assert w["n_values"][0] < 200 and w["start"][0] == 200 - w["n_values"][0]
    assert w["n_values"][1] == 10
    # as many values as fit: one more would not
    ser = LLMTimeSerializer.preset("llama")
    more = ser.encode(long[-(w["n_values"][0] + 1) :]).text
    assert len(lm.tokenizer(more)["input_ids"]) > 256


def test_unwritable_output(tiny_models, short_series, tmp_path):
    lm = tiny_models("gpt2")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="cannot create capture folder"):
        capture(lm, short_series, out=blocker / "sub", progress=False)


def test_disk_full_leaves_no_claimed_partial_shard(tiny_models, short_series, tmp_path, monkeypatch):
    """ENOSPC half-way through the second shard's second array."""
    lm = tiny_models("gpt2")
    real_atomic = store.atomic_write
    seen = {"n": 0}

    def atomic_write(path, write):
        if Path(path).name == "00001.npy":
            seen["n"] += 1
            if seen["n"] == 2:

                def half_then_full(f):
                    f.write(b"\x93NUMPY partial")
                    raise OSError(errno.ENOSPC, "No space left on device")

                return real_atomic(path, half_then_full)
        return real_atomic(path, write)

    monkeypatch.setattr(store, "atomic_write", atomic_write)
    kw = dict(batch_size=1, shard_bytes=1, layers=[1, 2], progress=False)
    with pytest.raises(OSError, match="No space left") as e:
        capture(lm, short_series, out=tmp_path / "c", **kw)
    assert "cannot write capture file" in str(e.value) and "00001.npy" in str(e.value)
    assert e.value.errno == errno.ENOSPC
    monkeypatch.setattr(store, "atomic_write", real_atomic)
    m = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert not m["complete"]
    claimed = {s["index"] for s in m["shards"]}
    assert claimed == {0}
    # every claimed shard is complete and readable; no temp files remain
    cap = open_capture(tmp_path / "c")
    for site in cap.sites:
        for L in cap.layers_of(site):
            assert cap.layer(L, site).shape[0] == m["rows"]
            for k in claimed:
                assert store.shard_path(tmp_path / "c", site, L, k).is_file()
    assert not [p for p in (tmp_path / "c").rglob("*.tmp")]
    # and it resumes to the same result as a clean run
    r = capture(lm, short_series, out=tmp_path / "c", **kw)
    capture(lm, short_series, out=tmp_path / "ref", **kw)
    assert _snapshot(tmp_path / "c") == _snapshot(tmp_path / "ref") and r.complete


def test_minilm_encoder(tmp_path):
    lm = load_model("minilm", device="cpu")
    assert lm.kind == "encoder" and lm.architecture == "bert" and lm.max_length == 512
    r = capture(lm, [np.arange(6.0)], layers=[3], out=tmp_path / "m", progress=False)
    cap = r.open()
    t = cap.tokens()
    assert t["token_text"].iloc[0] == "[CLS]" and t["role"].iloc[0] == "other"
    assert cap.layer(3).shape == (len(t), 384)
    assert cap.manifest["weights_hash"].startswith("sha256:")


def test_tiny_model_hash_is_deterministic():
    a, b, c = tiny_model("llama", seed=0), tiny_model("llama", seed=0), tiny_model("llama", seed=1)
    assert a.weights_hash == b.weights_hash != c.weights_hash
    before = torch.random.get_rng_state()
    tiny_model("gpt2")
    assert torch.equal(before, torch.random.get_rng_state())


def test_progress_line_without_tqdm(tiny_models, short_series, tmp_path, monkeypatch, capsys):
    import sys

    lm = tiny_models("gpt2")  # first: transformers itself imports tqdm.auto
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # "not installed"
    capture(lm, short_series, out=tmp_path / "a", layers=[1], progress=True)
    err = capsys.readouterr().err
    assert "tokens" in err and "tok/s" in err
    capture(lm, short_series, out=tmp_path / "b", layers=[1], progress=False)
    assert capsys.readouterr().err == ""


def test_positions_as_roles(tiny_models, tmp_path):
    lm = tiny_models("gpt2")
    r = capture(
        lm,
        [[-1.0, 2.0, -3.0]],
        serializer=LLMTimeSerializer.preset("llama", basic=True),
        positions=["digit", "sign"],
        out=tmp_path / "a",
        layers=[1],
        progress=False,
    )
    t = r.open().tokens()
    assert set(t["role"]) == {"digit", "sign"} and (t["token_text"] == "-").sum() == 2
    with pytest.raises(ValueError, match="unknown token roles"):
        capture(lm, [[1.0]], positions=["digits"], out=tmp_path / "b", progress=False)


def test_windows_input(tiny_models, tmp_path):
    from isofast.data.windows import make_windows

    lm = tiny_models("gpt2")
    x = np.sin(np.arange(50) / 5)
    w = make_windows([x, 2 * x], 12, 4, mode="sliding", stride=20)
    r = capture(lm, w, out=tmp_path / "a", layers=[1], progress=False)
    win = r.open().windows()
    assert list(win["series_id"]) == list(w.series_id) and list(win["start"]) == list(w.start)
    assert (win["n_values"] == 12).all()
    # context= cuts the same windows through make_windows
    r2 = capture(
        lm, [x], context=12, window_mode="random", n_windows=3, seed=1, out=tmp_path / "b", layers=[1], progress=False
    )
    assert len(r2.open().windows()) == 3


def test_local_hugging_face_folder_by_path(tmp_path, short_series):
    # Any local HF folder (config + weights + tokenizer) loads by path and
    # captures exactly what the same in-memory model captures.
    lm = tiny_model("llama", seed=3)
    folder = tmp_path / "tiny-llama-folder"
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    again = load_model(str(folder), device="cpu")
    assert again.architecture == lm.architecture and again.num_layers == lm.num_layers
    a = capture(lm, short_series, layers=[2], out=tmp_path / "a", sites=("residual",), progress=False).open()
    b = capture(str(folder), short_series, layers=[2], out=tmp_path / "b", sites=("residual",), progress=False).open()
    np.testing.assert_allclose(b.layer(2).to_numpy(), a.layer(2).to_numpy(), rtol=1e-6, atol=1e-6)
    assert b.manifest["weights_hash"].startswith("sha256:")


def test_analyze_cli_on_capture_folder(tmp_path, short_series, capsys):
    from isofast.cli import main

    r = capture(tiny_model("gpt2"), short_series, layers=[1, 2], out=tmp_path / "cap", progress=False)
    assert main(["analyze", str(r.path), "--layer", "2", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    rep = got if "isoscore" in got else next(iter(got.values()))
    expect = __import__("isofast").analyze(r.open().layer(2).to_numpy())
    assert rep["n"] == expect.n and rep["isoscore"] == pytest.approx(expect.isoscore, rel=1e-9)
    assert main(["analyze", str(r.path), "--layer", "2"]) == 0
    assert "isoscore" in capsys.readouterr().out.lower()
    assert main(["analyze", str(r.path), "--layer", "7"]) == 2
