"""Chronos, Chronos-Bolt and Chronos-2 through isofast.tsfm: random-init
checkpoints built with the package's own config classes and saved with its
own save_pretrained, loaded back by path, captured, forecast on a real series
and checked against hand-written forward hooks."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("chronos")

import isofast  # noqa: E402
from isofast import tsfm  # noqa: E402
from isofast.errors import CheckpointError  # noqa: E402


@pytest.fixture(scope="module")
def bolt_dir(tmp_path_factory, one_torch_thread):
    d = tmp_path_factory.mktemp("bolt")
    tsfm.build_random("chronos-bolt", d, seed=0)
    return d


# --- Chronos-Bolt ---
def test_bolt_detected_and_loaded_by_path(bolt_dir):
    assert tsfm.detect_family(bolt_dir) == "chronos-bolt"
    m = isofast.load_tsfm(str(bolt_dir))
    assert m.family == "chronos-bolt" and m.n_layers == 2 and m.d_model == 32
    m2 = isofast.load_tsfm(f"chronos-bolt:{bolt_dir}")
    assert m2.weights_hash == m.weights_hash


def test_bolt_capture_counts_shapes_and_alignment(bolt_dir, co2):
    m = isofast.load_tsfm(f"chronos-bolt:{bolt_dir}")
    ctx = [co2[:100], co2[100:170], co2[200:264]]
    emb = m.embed(ctx, layers="all", sites=("residual", "attention"))
    assert sorted(emb.arrays) == [("attention", 1), ("attention", 2), ("residual", 0), ("residual", 1), ("residual", 2)]
    # 64-value limit → 8 patches of 8 + [REG] per context
    n_rows = 3 * 9
    assert all(a.shape == (n_rows, 32) for a in emb.arrays.values())
    assert np.array_equal(emb.window, np.repeat([0, 1, 2], 9))
    # context 1 has 70 values: the oldest 6 are cut, patch 0 reads steps 6..13
    w1 = emb.window == 1
    assert emb.first[w1][0] == 6 and emb.last[w1][0] == 13 and emb.last[w1][7] == 69
    assert emb.first[w1][8] == -1  # [REG]


def test_bolt_rows_equal_hand_written_hooks(bolt_dir, co2):
    m = isofast.load_tsfm(f"chronos-bolt:{bolt_dir}")
    x = co2[:64]
    got = m.embed([x], layers="all", sites=("residual", "attention"))
    inner = m.model
    store = {}
    hs = [
        inner.encoder.block[i].register_forward_hook(
            lambda mod, a, o, i=i: store.__setitem__(("residual", i + 1), o[0][0].detach().numpy())
        )
        for i in range(len(inner.encoder.block) - 1)
    ]
    hs.append(
        inner.encoder.final_layer_norm.register_forward_hook(
            lambda mod, a, o: store.__setitem__(("residual", 2), o[0].detach().numpy())
        )
    )
    hs += [
        inner.encoder.block[i]
        .layer[0]
        .SelfAttention.register_forward_hook(
            lambda mod, a, o, i=i: store.__setitem__(("attention", i + 1), o[0][0].detach().numpy())
        )
        for i in range(2)
    ]
    hs.append(
        inner.encoder.register_forward_pre_hook(
            lambda mod, a, kw: store.__setitem__(("residual", 0), kw["inputs_embeds"][0].detach().numpy()),
            with_kwargs=True,
        )
    )
    with torch.no_grad():
        inner.encode(torch.tensor(x, dtype=torch.float32)[None])
    for h in hs:
        h.remove()
    for key, want in store.items():
        np.testing.assert_array_equal(got.arrays[key], want, err_msg=str(key))


def test_bolt_forecast_real_series(bolt_dir, co2):
    m = isofast.load_tsfm(f"chronos-bolt:{bolt_dir}")
    fc = m.forecast([co2[:200], co2[300:364]], 12, quantile_levels=(0.1, 0.5, 0.9))
    assert fc.point.shape == (2, 12) and fc.quantiles.shape == (3, 2, 12)
    assert np.isfinite(fc.quantiles).all()
    # the point forecast is the median head
    np.testing.assert_allclose(fc.point, fc.quantiles[1], rtol=1e-6)


def test_bolt_folder_of_another_family_is_refused(bolt_dir, tmp_path):
    with pytest.raises(CheckpointError, match="expected a chronos-2 checkpoint, found chronos-bolt"):
        isofast.load_tsfm(f"chronos-2:{bolt_dir}")


def test_bolt_pickle_only_folder_is_refused(bolt_dir, tmp_path):
    import shutil

    d = tmp_path / "pickled"
    shutil.copytree(bolt_dir, d)
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="safetensors"):
        isofast.load_tsfm(f"chronos-bolt:{d}")


def test_bolt_layer_count_disagreeing_with_config(bolt_dir, tmp_path):
    import json
    import shutil

    d = tmp_path / "lying"
    shutil.copytree(bolt_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_layers"] = 3  # the weights hold 2 blocks
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError):
        isofast.load_tsfm(f"chronos-bolt:{d}")


def test_bolt_has_no_head(bolt_dir):
    m = isofast.load_tsfm(f"chronos-bolt:{bolt_dir}")
    assert m.has_head is False and m.head() is None


# --- Chronos (T5 over 4096 mean-scaled bins) ---
@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory, one_torch_thread):
    d = tmp_path_factory.mktemp("chronos")
    tsfm.build_random("chronos", d, seed=0)
    return d


@pytest.fixture(scope="module")
def t5(t5_dir):
    return isofast.load_tsfm(f"chronos:{t5_dir}")


def test_chronos_detected_and_loaded_by_path(t5_dir, t5):
    import json

    cfg = json.loads((t5_dir / "config.json").read_text())
    assert cfg["chronos_pipeline_class"] == "ChronosPipeline" and "chronos_config" in cfg
    assert tsfm.detect_family(t5_dir) == "chronos"
    m = isofast.load_tsfm(str(t5_dir))
    assert m.family == "chronos" and m.n_layers == 2 and m.d_model == 32 and m.has_head
    assert m.weights_hash == t5.weights_hash
    # without chronos_pipeline_class (older folders) the chronos_config still says chronos
    cfg.pop("chronos_pipeline_class")
    assert tsfm.spec.detect_from_config(cfg) == "chronos"
    from chronos import ChronosPipeline

    assert isinstance(m.pipeline, ChronosPipeline)


def test_chronos_token_counts_match_the_package_tokenizer(t5, co2):
    ser = t5.serializer
    assert ser.unit == "value" and ser.max_context == 64 and ser.suffix == ("eos",)
    for L in (1, 5, 33, 64, 65, 130):
        ids, mask, _ = t5.pipeline.tokenizer.context_input_transform(torch.tensor(co2[:L], dtype=torch.float32)[None])
        assert ids.shape[-1] == ser.n_tokens(L) == min(L, 64) + 1, L
        assert int(ids[0, -1]) == 1  # EOS
    emb = t5.embed([co2[:5], co2[:70], co2[100:164]], layers=[0, -1])
    assert emb.arrays[("residual", 0)].shape == (6 + 65 + 65, 32)
    w1 = emb.window == 1  # 70 values: the oldest 6 are cut
    assert emb.first[w1][0] == 6 and emb.last[w1][63] == 69 and emb.first[w1][64] == -1
    assert emb.kind[6 + 64] == "eos"


def test_chronos_serializer_ids_equal_the_package_tokenizer(t5, co2):
    """isofast.serializers.ChronosSerializer (numpy) against the package's
    MeanScaleUniformBins on the same contexts (≤ context_length: the
    serializer does not cut)."""
    from isofast.serializers import ChronosSerializer

    ser = ChronosSerializer(n_tokens=4096, context_length=None)
    tok = t5.pipeline.tokenizer
    n_diff = n_all = 0
    for x in (
        co2[:64],
        co2[500:530],
        co2[1000:1064] - 350.0,
        np.sin(np.arange(64) / 3.0),
        np.zeros(10),
        np.r_[np.full(20, 1e-3), np.full(20, -40.0)],
        np.r_[np.zeros(63), 1000.0],
    ):
        x32 = np.asarray(x, np.float32).astype(np.float64)  # the package computes in float32
        want = tok.context_input_transform(torch.tensor(x32, dtype=torch.float32)[None])[0][0].numpy()
        got = ser.encode(x32).ids
        assert got.shape == want.shape
        n_diff += int((got != want).sum())
        n_all += got.size
    assert n_diff == 0, f"{n_diff} of {n_all} ids differ"


def test_chronos_capture_counts_and_rows_equal_hand_written_hooks(t5, co2):
    x = co2[:64]
    got = t5.embed([x], layers="all", sites=("residual", "attention"))
    assert sorted(got.arrays) == [("attention", 1), ("attention", 2), ("residual", 0), ("residual", 1), ("residual", 2)]
    assert all(a.shape == (65, 32) for a in got.arrays.values())
    inner = t5.model
    enc = inner.encoder
    store = {}
    hs = [
        enc.embed_tokens.register_forward_hook(
            lambda mod, a, o: store.__setitem__(("residual", 0), o[0].detach().numpy())
        )
    ]
    hs.append(
        enc.block[0].register_forward_hook(
            lambda mod, a, o: store.__setitem__(("residual", 1), o[0][0].detach().numpy())
        )
    )
    hs.append(
        enc.final_layer_norm.register_forward_hook(
            lambda mod, a, o: store.__setitem__(("residual", 2), o[0].detach().numpy())
        )
    )
    hs += [
        enc.block[i]
        .layer[0]
        .SelfAttention.register_forward_hook(
            lambda mod, a, o, i=i: store.__setitem__(("attention", i + 1), o[0][0].detach().numpy())
        )
        for i in range(2)
    ]
    ids, mask, _ = t5.pipeline.tokenizer.context_input_transform(torch.tensor(x, dtype=torch.float32)[None])
    with torch.no_grad():
        inner.encoder(input_ids=ids, attention_mask=mask)
    for h in hs:
        h.remove()
    assert len(store) == 5
    for key, want in store.items():
        np.testing.assert_array_equal(got.arrays[key], want, err_msg=str(key))
    # and the last layer is what the package's own embed returns
    emb_pkg, _ = t5.pipeline.embed(torch.tensor(x, dtype=torch.float32))
    np.testing.assert_array_equal(got.arrays[("residual", 2)], emb_pkg[0].numpy())


def test_chronos_forecast_samples_seeded(t5, co2):
    ctx = [co2[:200], co2[300:364]]
    fc = t5.forecast(ctx, 12, n_samples=6, seed=3, quantile_levels=(0.1, 0.5, 0.9))
    assert fc.samples.shape == (2, 6, 12) and fc.point.shape == (2, 12) and fc.quantiles.shape == (3, 2, 12)
    assert np.isfinite(fc.samples).all() and np.isfinite(fc.quantiles).all()
    np.testing.assert_array_equal(fc.point, np.median(fc.samples, axis=1))
    state = torch.random.get_rng_state()
    again = t5.forecast(ctx, 12, n_samples=6, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's generator is left alone
    np.testing.assert_array_equal(fc.samples, again.samples)
    other = t5.forecast(ctx, 12, n_samples=6, seed=4)
    assert not np.array_equal(fc.samples, other.samples)
    # the same numbers as the package's predict_quantiles under the same global seed
    torch.manual_seed(3)
    q, _ = t5.pipeline.predict_quantiles(
        [torch.tensor(c, dtype=torch.float32) for c in ctx],
        prediction_length=12,
        quantile_levels=[0.1, 0.5, 0.9],
        num_samples=6,
    )
    np.testing.assert_allclose(fc.quantiles, np.moveaxis(q.numpy(), -1, 0), rtol=1e-5)
    # the values are bin centres × the context's mean |x|
    centres = t5.pipeline.tokenizer.centers.numpy().astype(np.float64)
    s0 = np.mean(np.abs(np.asarray(co2[136:200], np.float32)))
    assert np.abs(fc.samples[0, :, 0, None] / s0 - centres[None]).min(axis=1).max() < 1e-4


def test_chronos_head_reproduces_first_step_logits(t5, co2):
    from transformers import GenerationConfig

    from isofast.head import head_diagnostics

    W, b = t5.head()
    assert W.shape == (4096, 32) and W.dtype == np.float32 and b is None
    np.testing.assert_array_equal(W, t5.model.lm_head.weight.detach().numpy())
    ctx = [co2[:64], co2[64:128], co2[700:740], co2[900:964]]
    C, lg = t5.head_inputs(ctx, return_logits=True)
    assert C.shape == (4, 32) and C.dtype == np.float32
    # independent of our forward: the raw logits generate() samples the first value from
    inner = t5.model
    for i, c in enumerate(ctx):
        ids, mask, _ = t5.pipeline.tokenizer.context_input_transform(torch.tensor(c, dtype=torch.float32)[None])
        with torch.no_grad():
            out = inner.generate(
                input_ids=ids,
                attention_mask=mask,
                generation_config=GenerationConfig(
                    max_new_tokens=1,
                    do_sample=False,
                    output_logits=True,
                    return_dict_in_generate=True,
                    eos_token_id=1,
                    pad_token_id=0,
                ),
            )
        first = out.logits[0][0].double().numpy()
        np.testing.assert_allclose(W.astype(np.float64) @ C[i].astype(np.float64), first, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(lg[i], first, rtol=1e-6, atol=1e-6)
        # what the hook reads is the decoder's final-norm output × d_model ** -0.5 (T5's tied rescale)
        with torch.no_grad():
            enc = inner.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            dec = (
                inner.decoder(
                    input_ids=torch.zeros((1, 1), dtype=torch.long),
                    encoder_hidden_states=enc,
                    encoder_attention_mask=mask,
                )
                .last_hidden_state[0, 0]
                .numpy()
            )
        assert inner.config.scale_decoder_outputs is True
        np.testing.assert_allclose(C[i], dec * 32**-0.5, rtol=1e-6, atol=1e-7)
    rep = head_diagnostics(W, C, isotropy=False, head_isotropy=False)
    lse = np.log(np.exp(lg.astype(np.float64) - lg.max(1, keepdims=True)).sum(1)) + lg.max(1)
    np.testing.assert_allclose(rep.log_z, lse, rtol=1e-5)
    assert rep.vocab_size == 4096 and rep.n_contexts == 4


def test_chronos_untied_config_has_no_rescale_and_still_reproduces_logits(tmp_path, co2, one_torch_thread):
    d = tsfm.build_random("chronos", tmp_path / "untied", seed=1, tie_word_embeddings=False)
    m = isofast.load_tsfm(f"chronos:{d}")
    W, _ = m.head()
    C, lg = m.head_inputs([co2[:64]], return_logits=True)
    np.testing.assert_allclose(W.astype(np.float64) @ C[0].astype(np.float64), lg[0], rtol=1e-5, atol=1e-5)
    inner = m.model
    ids, mask, _ = m.pipeline.tokenizer.context_input_transform(torch.tensor(co2[:64], dtype=torch.float32)[None])
    with torch.no_grad():
        enc = inner.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        dec = (
            inner.decoder(
                input_ids=torch.zeros((1, 1), dtype=torch.long), encoder_hidden_states=enc, encoder_attention_mask=mask
            )
            .last_hidden_state[0, 0]
            .numpy()
        )
    scale = 32**-0.5 if inner.config.scale_decoder_outputs else 1.0
    np.testing.assert_allclose(C[0], dec * scale, rtol=1e-6, atol=1e-7)
    # the config file said tie_word_embeddings = False: T5 v1.1, no rescale
    assert inner.config.scale_decoder_outputs is False


def test_chronos_folder_of_another_family_pickle_and_lying_config(t5_dir, bolt_dir, tmp_path):
    import json
    import shutil

    with pytest.raises(CheckpointError, match="expected a chronos checkpoint, found chronos-bolt"):
        isofast.load_tsfm(f"chronos:{bolt_dir}")
    with pytest.raises(CheckpointError, match="expected a chronos-bolt checkpoint, found chronos"):
        isofast.load_tsfm(f"chronos-bolt:{t5_dir}")
    d = tmp_path / "pickled"
    shutil.copytree(t5_dir, d)
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="safetensors"):
        isofast.load_tsfm(f"chronos:{d}")
    d = tmp_path / "lying"
    shutil.copytree(t5_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_layers"] = 3  # the weights hold 2 encoder blocks
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match"):
        isofast.load_tsfm(f"chronos:{d}")
    d = tmp_path / "causal"
    shutil.copytree(t5_dir, d)
    cfg = json.loads((t5_dir / "config.json").read_text())
    cfg["chronos_config"]["model_type"] = "causal"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="seq2seq"):
        isofast.load_tsfm(f"chronos:{d}")


def test_chronos_missing_package_names_install_route(t5_dir, monkeypatch):
    import importlib.util

    from isofast.errors import MissingPackageError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a, **k: None if name == "chronos" else real(name, *a, **k)
    )
    for fam in ("chronos", "chronos-2"):
        with pytest.raises(MissingPackageError, match="chronos-forecasting"):
            isofast.load_tsfm(f"{fam}:{t5_dir}")


# --- isofast head on Chronos ---
@pytest.fixture(scope="module")
def series_file(tmp_path_factory, co2):
    f = tmp_path_factory.mktemp("head") / "co2.npy"
    np.save(f, co2[:400])
    return f


def test_head_cli_on_chronos_spec_and_bare_folder(t5, t5_dir, series_file, capsys, tmp_path):
    import json

    from isofast.cli import main
    from isofast.data import make_windows
    from isofast.head import head_diagnostics

    argv = ["head", "--data", str(series_file), "--context", "48", "--n-windows", "5", "--json", "--no-isotropy"]
    assert main(["head", "--model", f"chronos:{t5_dir}", *argv[1:]]) == 0
    d = json.loads(capsys.readouterr().out)
    w = make_windows([np.load(series_file)], 48, 0, mode="sliding", stride=48, n=5, seed=0, skip_short=True)
    W, b = t5.head()
    ref = head_diagnostics(W, t5.head_inputs(list(w.context)), b, isotropy=False, head_isotropy=False)
    assert d["n_contexts"] == len(w) == 5 and d["vocab_size"] == 4096 and d["dim"] == 32
    assert d["log_z_std"] == pytest.approx(ref.log_z_std, rel=1e-9)
    assert d["model"] == f"chronos:{t5_dir}"
    out = tmp_path / "h.json"
    assert (
        main(
            [
                "head",
                "--model",
                str(t5_dir),
                "--data",
                str(series_file),
                "--context",
                "48",
                "--n-windows",
                "5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "softmax head of chronos:" in text and "log Z std" in text
    assert json.loads(out.read_text())["log_z_std"] == pytest.approx(ref.log_z_std, rel=1e-9)


def test_head_cli_refuses_families_without_a_head(bolt_dir, series_file, capsys):
    from isofast.cli import main

    for spec in (f"chronos-bolt:{bolt_dir}", str(bolt_dir)):
        capsys.readouterr()
        assert main(["head", "--model", spec, "--data", str(series_file), "--context", "48"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert "chronos-bolt has no softmax head" in err


def test_head_cli_refuses_a_tsfm_capture(t5, co2, tmp_path, capsys):
    from isofast.cli import main
    from isofast.tsfm.capture import capture_tsfm

    out = tmp_path / "cap"
    capture_tsfm(t5, [co2[:64], co2[64:128]], layers=[-1], sites=("residual",), out=out, progress=False)
    capsys.readouterr()
    assert main(["head", "--capture", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "encoder" in err and "--model chronos:DIR" in err


# --- Chronos-2 ---
@pytest.fixture(scope="module")
def c2_dir(tmp_path_factory, one_torch_thread):
    d = tmp_path_factory.mktemp("chronos2")
    tsfm.build_random("chronos-2", d, seed=0)
    return d


@pytest.fixture(scope="module")
def c2(c2_dir):
    return isofast.load_tsfm(f"chronos-2:{c2_dir}")


def test_chronos2_detected_and_loaded_by_path(c2_dir, c2):
    import json

    cfg = json.loads((c2_dir / "config.json").read_text())
    assert cfg["chronos_pipeline_class"] == "Chronos2Pipeline" and cfg["architectures"] == ["Chronos2Model"]
    assert tsfm.detect_family(c2_dir) == "chronos-2"
    cfg.pop("chronos_pipeline_class")
    assert tsfm.spec.detect_from_config(cfg) == "chronos-2"
    m = isofast.load_tsfm(str(c2_dir))
    assert m.family == "chronos-2" and m.n_layers == 2 and m.d_model == 32 and not m.has_head
    assert m.weights_hash == c2.weights_hash and m.head() is None


def test_chronos2_token_counts_match_the_model(c2, co2):
    ser = c2.serializer
    assert ser.suffix == ("reg", "future") and ser.patch_len == 8 and ser.max_context == 64
    for L in (3, 8, 20, 64, 70, 150):
        x = torch.tensor(co2[:L], dtype=torch.float32)[None]
        with torch.no_grad():
            out, *_ = c2.model.encode(context=x, num_output_patches=1)
        assert out.last_hidden_state.shape[1] == ser.n_tokens(L) == -(-min(L, 64) // 8) + 2, L
    emb = c2.embed([co2[:20], co2[:70]], layers=[0, 2], sites=("residual", "attention"))
    assert emb.arrays[("residual", 0)].shape == (5 + 10, 32)
    assert emb.arrays[("attention", 2)].shape == (15, 32)
    # 20 values: left-padded by 4, patch 0 reads steps 0..3; then 4..11, 12..19, [REG], future
    assert list(emb.first[:5]) == [0, 4, 12, -1, -1] and list(emb.last[:5]) == [3, 11, 19, -1, -1]
    assert emb.kind[3:5] == ["reg", "future"]
    w1 = emb.window == 1  # 70 values: the oldest 6 are cut
    assert emb.first[w1][0] == 6 and emb.last[w1][7] == 69


def test_chronos2_rows_equal_hand_written_hooks(c2, co2):
    x = co2[:64]
    got = c2.embed([x], layers="all", sites=("residual", "attention"))
    assert all(a.shape == (10, 32) for a in got.arrays.values()) and len(got.arrays) == 5
    inner = c2.model
    enc = inner.encoder
    store = {}
    hs = [
        enc.register_forward_pre_hook(
            lambda mod, a, kw: store.__setitem__(("residual", 0), kw["inputs_embeds"][0].detach().numpy()),
            with_kwargs=True,
        )
    ]
    hs.append(
        enc.block[0].register_forward_hook(
            lambda mod, a, o: store.__setitem__(("residual", 1), o.hidden_states[0].detach().numpy())
        )
    )
    hs.append(
        enc.final_layer_norm.register_forward_hook(
            lambda mod, a, o: store.__setitem__(("residual", 2), o[0].detach().numpy())
        )
    )
    hs += [
        enc.block[i]
        .layer[0]
        .self_attention.register_forward_hook(
            lambda mod, a, o, i=i: store.__setitem__(("attention", i + 1), o.hidden_states[0].detach().numpy())
        )
        for i in range(2)
    ]
    with torch.no_grad():
        inner.encode(context=torch.tensor(x, dtype=torch.float32)[None], num_output_patches=1)
    for h in hs:
        h.remove()
    assert len(store) == 5
    for key, want in store.items():
        np.testing.assert_array_equal(got.arrays[key], want, err_msg=str(key))
    # the attention site is the pre-residual output: layer[0] adds it to its input
    blk = enc.block[0]
    h0 = torch.tensor(store[("residual", 0)])[None]
    with torch.no_grad():
        pos = torch.arange(10)[None]
        mask = torch.zeros(1, 1, 1, 10)
        res = blk.layer[0](h0, attention_mask=mask, position_ids=pos).hidden_states[0].numpy()
    np.testing.assert_allclose(res, store[("residual", 0)] + store[("attention", 1)], rtol=1e-5, atol=1e-6)
    # the last layer is what the package's own embed returns
    emb_pkg, _ = c2.pipeline.embed([torch.tensor(x, dtype=torch.float32)])
    np.testing.assert_array_equal(got.arrays[("residual", 2)], emb_pkg[0][0].numpy())


def test_chronos2_windows_of_a_batch_do_not_mix(c2, co2):
    ctx = [co2[i : i + 48] for i in (0, 100, 200, 300)]
    together = c2.embed(ctx, layers="all", batch_size=4)
    alone = [c2.embed([c], layers="all") for c in ctx]
    for key, arr in together.arrays.items():
        want = np.concatenate([a.arrays[key] for a in alone])
        np.testing.assert_allclose(arr, want, rtol=1e-5, atol=1e-6, err_msg=str(key))


def test_chronos2_forecast_real_series(c2, co2):
    fc = c2.forecast([co2[:200], co2[300:364]], 12, quantile_levels=(0.1, 0.25, 0.5, 0.9))
    assert fc.point.shape == (2, 12) and fc.quantiles.shape == (4, 2, 12) and fc.samples is None
    assert np.isfinite(fc.quantiles).all() and np.isfinite(fc.point).all()
    np.testing.assert_allclose(fc.point, fc.quantiles[2], rtol=1e-6)
    assert fc.settings["interpolated_levels"] == [0.25]
    # 0.25 is interpolated between the model's 0.2 and 0.3 heads
    q23 = c2.forecast([co2[:200], co2[300:364]], 12, quantile_levels=(0.2, 0.3)).quantiles
    lo, hi = np.minimum(q23[0], q23[1]), np.maximum(q23[0], q23[1])
    assert np.all((fc.quantiles[1] >= lo - 1e-6) & (fc.quantiles[1] <= hi + 1e-6))
    # beyond max_output_patches × patch (32): the package unrolls
    long = c2.forecast([co2[:200]], 40)
    assert long.point.shape == (1, 40) and np.isfinite(long.quantiles).all()


def test_chronos2_bad_folders(c2_dir, bolt_dir, tmp_path):
    import json
    import shutil

    with pytest.raises(CheckpointError, match="expected a chronos-2 checkpoint, found chronos-bolt"):
        isofast.load_tsfm(f"chronos-2:{bolt_dir}")
    with pytest.raises(CheckpointError, match="expected a chronos checkpoint, found chronos-2"):
        isofast.load_tsfm(f"chronos:{c2_dir}")
    d = tmp_path / "pickled"
    shutil.copytree(c2_dir, d)
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="safetensors"):
        isofast.load_tsfm(f"chronos-2:{d}")
    d = tmp_path / "lying"
    shutil.copytree(c2_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_layers"] = 3
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match"):
        isofast.load_tsfm(f"chronos-2:{d}")
