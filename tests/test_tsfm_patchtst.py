"""PatchTST (transformers' PatchTSTForPrediction) through isofast.tsfm:
random-init checkpoints built with PatchTSTConfig and saved with
save_pretrained, loaded back by path, captured (4-D channel blocks mapped to
rows), forecast on a real series and checked against hand-written hooks."""

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import isofast  # noqa: E402
from isofast import tsfm  # noqa: E402
from isofast.errors import CheckpointError, InputError, MissingPackageError  # noqa: E402

ALL = ("residual", "attention")


@pytest.fixture(scope="module")
def pt_dir(tmp_path_factory, one_torch_thread):
    # 60 values, patches of 8 every 6: 9 patches over the last 56 values, the oldest 4 dropped
    d = tmp_path_factory.mktemp("patchtst")
    tsfm.build_random("patchtst", d, seed=0, context_length=60, patch=8, stride=6, prediction_length=16)
    return d


@pytest.fixture(scope="module")
def pt(pt_dir):
    return isofast.load_tsfm(f"patchtst:{pt_dir}")


def _hooks(model, channel=0, C=1):
    layers = list(model.model.encoder.layers)
    store: dict = {}

    def put(key, t):
        store.setdefault(key, []).append(t.detach().clone())

    hs = [
        layers[0].register_forward_pre_hook(
            lambda m, a, kw: put(("residual", 0), kw["hidden_state"][:, channel]), with_kwargs=True
        )
    ]
    for i, b in enumerate(layers):
        hs.append(b.register_forward_hook(lambda m, a, o, i=i: put(("residual", i + 1), o[0][:, channel])))
        hs.append(
            b.self_attn.register_forward_hook(
                lambda m, a, o, i=i: put(("attention", i + 1), o[0].reshape(-1, C, *o[0].shape[1:])[:, channel])
            )
        )
    return store, hs


def test_patchtst_detected_and_loaded_by_path(pt_dir, pt):
    from transformers import PatchTSTForPrediction

    cfg = json.loads((pt_dir / "config.json").read_text())
    assert cfg["model_type"] == "patchtst" and cfg["architectures"] == ["PatchTSTForPrediction"]
    assert tsfm.detect_family(pt_dir) == "patchtst"
    m = isofast.load_tsfm(str(pt_dir))
    assert m.family == "patchtst" and m.n_layers == 2 and m.d_model == 32 and isinstance(m.model, PatchTSTForPrediction)
    assert m.weights_hash == pt.weights_hash
    assert m.describe()["head"] == "point (loss='mse')" and m.describe()["channel"] == 0


def test_patchtst_token_layout_matches_patchify(pt, co2):
    pf = pt.model.model.patchifier
    assert (pf.num_patches, pf.sequence_start) == (9, 4)
    ser = pt.serializer
    assert (ser.pad, ser.drop, ser.patch_len, ser.stride, ser.max_context) == ("none", "oldest", 8, 6, 60)
    seen = []
    h = pt.model.model.encoder.layers[0].register_forward_pre_hook(
        lambda m, a, kw: seen.append(tuple(kw["hidden_state"].shape)), with_kwargs=True
    )
    try:
        for L in (60, 61, 100, 333):
            emb = pt.embed([co2[:L]], layers="all", sites=ALL)
            assert seen[-1] == (1, 1, 9, 32) and ser.n_tokens(L) == 9, L
            assert emb.arrays[("attention", 1)].shape == (9, 32)
            assert list(emb.first) == [L - 60 + 4 + 6 * p for p in range(9)] and emb.last[-1] == L - 1
    finally:
        h.remove()


def test_patchtst_short_contexts_are_refused(pt, co2):
    for L in (1, 8, 59):
        with pytest.raises(InputError, match="exactly context_length = 60"):
            pt.embed([co2[:100], co2[:L]])
        with pytest.raises(InputError, match="context_length = 60"):
            pt.forecast([co2[:L]], 8)


def test_patchtst_rows_equal_hand_written_hooks_and_package_outputs(pt, co2):
    x = co2[200:260]
    got = pt.embed([x], layers="all", sites=ALL)
    assert sorted(got.arrays) == [("attention", 1), ("attention", 2), ("residual", 0), ("residual", 1), ("residual", 2)]
    store, hs = _hooks(pt.model)
    xt = torch.tensor(x, dtype=torch.float32)[None, :, None]
    try:
        with torch.no_grad():
            base = pt.model.model(past_values=xt, output_hidden_states=True)
    finally:
        for h in hs:
            h.remove()
    assert len(store) == 5 and all(len(v) == 1 for v in store.values())
    for key, (want,) in store.items():
        assert want.shape == (1, 9, 32)
        np.testing.assert_array_equal(got.arrays[key], want[0].numpy(), err_msg=str(key))
    # last layer = last_hidden_state; output_hidden_states holds only the 2 block *inputs*
    np.testing.assert_array_equal(got.arrays[("residual", 2)], base.last_hidden_state[0, 0].numpy())
    assert len(base.hidden_states) == 2
    np.testing.assert_array_equal(got.arrays[("residual", 1)], base.hidden_states[1][0, 0].numpy())


def test_patchtst_layer0_is_the_documented_numbers_to_inputs(pt, co2):
    """std scaling over the context, patches from step 4 every 6, linear
    embedding + positional encoding, written out in numpy."""
    x = co2[200:260].astype(np.float32).astype(np.float64)
    got = pt.embed([x], layers=[0]).arrays[("residual", 0)]
    z = (x - x.mean()) / np.sqrt(x.var() + 1e-5)
    patches = np.stack([z[4 + 6 * p : 12 + 6 * p] for p in range(9)])
    enc = pt.model.model.encoder
    W = enc.embedder.input_embedding.weight.detach().double().numpy()
    b = enc.embedder.input_embedding.bias.detach().double().numpy()
    pe = enc.positional_encoder.position_enc.detach().double().numpy()
    np.testing.assert_allclose(got, patches @ W.T + b + pe, rtol=1e-4, atol=1e-5)


def test_patchtst_cls_token_multichannel_and_channel_attention(tmp_path, co2, one_torch_thread):
    from isofast.tsfm.patchtst import PatchTSTAdapter

    d = tsfm.build_random(
        "patchtst",
        tmp_path / "cls",
        seed=1,
        context_length=64,
        patch=8,
        use_cls_token=True,
        num_input_channels=3,
        norm_type="layernorm",
    )
    m = PatchTSTAdapter.load(d, channel=1)
    assert m.serializer.prefix == ("cls",) and m.serializer.n_tokens(64) == 9
    x = co2[:64]
    got = m.embed([x], layers="all", sites=ALL)
    assert got.kind[0] == "cls" and got.first[0] == -1 and got.first[1] == 0
    store, hs = _hooks(m.model, channel=1, C=3)
    try:
        with torch.no_grad():
            m.model.model(past_values=torch.tensor(x, dtype=torch.float32)[None, :, None].repeat(1, 1, 3))
    finally:
        for h in hs:
            h.remove()
    for key, (want,) in store.items():
        assert want.shape == (1, 9, 32)
        np.testing.assert_array_equal(got.arrays[key], want[0].numpy(), err_msg=str(key))
    # every channel carries the same series and the embedding is shared: channel 0 reads the same rows
    ch0 = PatchTSTAdapter.load(d, channel=0).embed([x], layers=[2])
    np.testing.assert_allclose(ch0.arrays[("residual", 2)], got.arrays[("residual", 2)], rtol=1e-6, atol=1e-6)
    with pytest.raises(InputError, match="channel"):
        PatchTSTAdapter.load(d, channel=3)
    # channel attention calls self_attn twice per block: no attention site
    d2 = tsfm.build_random(
        "patchtst",
        tmp_path / "chattn",
        seed=1,
        context_length=64,
        patch=8,
        num_input_channels=2,
        channel_attention=True,
    )
    m2 = isofast.load_tsfm(f"patchtst:{d2}")
    assert m2.embed([x], layers=[1]).arrays[("residual", 1)].shape == (8, 32)
    with pytest.raises(InputError, match="no self-attention"):
        m2.embed([x], layers=[1], sites=("attention",))


def test_patchtst_point_forecast_real_series(pt, co2):
    ctx = [co2[:200], co2[300:364]]
    fc = pt.forecast(ctx, 12, quantile_levels=(0.1, 0.5, 0.9))
    assert fc.point.shape == (2, 12) and fc.quantiles.shape == (3, 2, 12) and fc.samples is None
    assert np.isfinite(fc.point).all()
    for q in fc.quantiles:
        np.testing.assert_array_equal(q, fc.point)
    assert "not available" in fc.settings["quantiles"]
    with torch.no_grad():
        out = pt.model(past_values=torch.tensor(np.stack([c[-60:] for c in ctx]), dtype=torch.float32)[..., None])
    np.testing.assert_allclose(fc.point, out.prediction_outputs[:, :12, 0].numpy(), rtol=1e-6)
    with pytest.raises(InputError, match="prediction_length = 16"):
        pt.forecast(ctx, 17)


def test_patchtst_distribution_head_samples_seeded(tmp_path, co2, one_torch_thread):
    d = tsfm.build_random(
        "patchtst", tmp_path / "nll", seed=0, context_length=64, patch=8, loss="nll", distribution_output="student_t"
    )
    m = isofast.load_tsfm(str(d))
    assert m.describe()["head"] == "distribution (student_t)"
    ctx = [co2[:200], co2[300:364]]
    fc = m.forecast(ctx, 10, n_samples=7, seed=3, quantile_levels=(0.1, 0.5, 0.9))
    assert fc.samples.shape == (2, 7, 10) and fc.point.shape == (2, 10) and fc.quantiles.shape == (3, 2, 10)
    assert np.isfinite(fc.samples).all()
    np.testing.assert_array_equal(fc.point, np.median(fc.samples, axis=1))
    state = torch.random.get_rng_state()
    again = m.forecast(ctx, 10, n_samples=7, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(fc.samples, again.samples)
    assert not np.array_equal(fc.samples, m.forecast(ctx, 10, n_samples=7, seed=4).samples)
    assert m.model.config.num_parallel_samples == 20  # restored after the call


def test_patchtst_bad_folders_and_missing_package(pt_dir, tmp_path, monkeypatch, one_torch_thread):
    import importlib.util

    from transformers import PatchTSTConfig, PatchTSTForPretraining

    t1 = tsfm.build_random("timesfm", tmp_path / "t1", seed=0)
    with pytest.raises(CheckpointError, match="expected a patchtst checkpoint, found timesfm"):
        isofast.load_tsfm(f"patchtst:{t1}")
    with pytest.raises(CheckpointError, match="expected a timesfm checkpoint, found patchtst"):
        isofast.load_tsfm(f"timesfm:{pt_dir}")
    pre = tmp_path / "pretrain"
    PatchTSTForPretraining(
        PatchTSTConfig(context_length=32, patch_length=8, patch_stride=8, d_model=16, num_hidden_layers=1, ffn_dim=32)
    ).save_pretrained(str(pre))
    with pytest.raises(CheckpointError, match="PatchTSTForPretraining"):
        isofast.load_tsfm(str(pre))
    d = tmp_path / "pickled"
    shutil.copytree(pt_dir, d)
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="safetensors"):
        isofast.load_tsfm(f"patchtst:{d}")
    d = tmp_path / "lying"
    shutil.copytree(pt_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_hidden_layers"] = 3
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match"):
        isofast.load_tsfm(f"patchtst:{d}")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a, **k: None if name == "transformers" else real(name, *a, **k)
    )
    with pytest.raises(MissingPackageError, match=r"isofast\[torch\]"):
        isofast.load_tsfm(f"patchtst:{pt_dir}")
