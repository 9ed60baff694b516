"""TimesFM 2.5 (the timesfm package's layout and transformers' layout) and
TimesFM 1.0/2.0 (transformers) through isofast.tsfm: random-init checkpoints
built with the families' own config classes and saved with their own
save_pretrained, loaded back by path, captured, forecast on a real series and
checked against hand-written forward hooks."""

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
def pkg_dir(tmp_path_factory, one_torch_thread):
    pytest.importorskip("timesfm")
    d = tmp_path_factory.mktemp("t25pkg")
    tsfm.build_random("timesfm-2.5", d, seed=0, output_patch=16, output_quantile_len=32)
    return d


@pytest.fixture(scope="module")
def pkg(pkg_dir):
    return isofast.load_tsfm(f"timesfm-2.5:{pkg_dir}")


@pytest.fixture(scope="module")
def hf25_dir(tmp_path_factory, one_torch_thread):
    pytest.importorskip("timesfm")  # the family's registered package
    d = tmp_path_factory.mktemp("t25hf")
    tsfm.build_random("timesfm-2.5", d, seed=0, layout="transformers", output_patch=16, output_quantile_len=32)
    return d


@pytest.fixture(scope="module")
def hf25(hf25_dir):
    return isofast.load_tsfm(f"timesfm-2.5:{hf25_dir}")


@pytest.fixture(scope="module")
def t1_dir(tmp_path_factory, one_torch_thread):
    d = tmp_path_factory.mktemp("t1")
    tsfm.build_random("timesfm", d, seed=0, horizon_length=16, use_positional_embedding=True)
    return d


@pytest.fixture(scope="module")
def t1(t1_dir):
    return isofast.load_tsfm(f"timesfm:{t1_dir}")


def _hooks(blocks, attns, block_out=lambda o: o, first_in=lambda a, kw: a[0]):
    """Hand-written hooks: every call of every block / attention, and block 0's input."""
    store: dict = {}

    def put(key, t):
        store.setdefault(key, []).append(t.detach().clone())

    hs = [blocks[0].register_forward_pre_hook(lambda m, a, kw: put(("residual", 0), first_in(a, kw)), with_kwargs=True)]
    for i, b in enumerate(blocks):
        hs.append(b.register_forward_hook(lambda m, a, o, i=i: put(("residual", i + 1), block_out(o))))
    for i, at in enumerate(attns):
        hs.append(at.register_forward_hook(lambda m, a, o, i=i: put(("attention", i + 1), o[0])))
    return store, hs


def _remove(hs):
    for h in hs:
        h.remove()


# ================================================================ TimesFM 2.5, the package's layout
def test_t25_package_layout_config_and_detection(pkg_dir, pkg):
    from timesfm.timesfm_2p5 import timesfm_2p5_torch as tt

    from isofast.tsfm.timesfm import detect_config

    assert sorted(p.name for p in pkg_dir.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((pkg_dir / "config.json").read_text())
    assert cfg == {"torch_compile": False}  # the wrapper's init arguments only: no sizes
    assert tsfm.detect_family(pkg_dir) == "timesfm-2.5"
    assert detect_config({"torch_compile": True}) == "timesfm-2.5"
    assert detect_config({"model_type": "timesfm2_5"}) == "timesfm-2.5"  # transformers' real model_type
    assert detect_config({"torch_compile": True, "d_model": 3}) is None
    assert tsfm.spec.detect_from_config({"model_type": "timesfm2_5"}) == "timesfm-2.5"
    m = isofast.load_tsfm(str(pkg_dir))
    assert m.family == "timesfm-2.5" and m.backend == "timesfm" and m.n_layers == 2 and m.d_model == 32
    assert m.weights_hash == pkg.weights_hash
    assert m.describe()["backend"] == "timesfm package (torch)" and m.describe()["config_recognised"]
    assert isinstance(m.model, tt.TimesFM_2p5_200M_torch_module)
    assert isinstance(m.wrapper, tt.TimesFM_2p5_200M_torch) and m.wrapper.model is m.model
    assert m.model.p == 8 and m.model.o == 16 and m.model.os == 32 and m.model.h == 4


def test_t25_sizes_inferred_from_the_200m_module_are_its_definition():
    """What the package layout does not record is read from the weights'
    shapes: for the published 200M module they give exactly the package's
    TimesFM_2p5_200M_Definition, so its own module class is built."""
    pytest.importorskip("timesfm")
    from timesfm.timesfm_2p5 import timesfm_2p5_base as base
    from timesfm.timesfm_2p5 import timesfm_2p5_torch as tt

    from isofast.tsfm.timesfm import definition_from_shapes, package_module_class

    with torch.device("meta"):
        big = tt.TimesFM_2p5_200M_torch_module()
    shapes = {k: tuple(v.shape) for k, v in big.state_dict().items()}
    d = definition_from_shapes(shapes, "200M")
    assert d == base.TimesFM_2p5_200M_Definition()
    assert package_module_class(d) is tt.TimesFM_2p5_200M_torch_module
    assert sum(v.numel() for v in big.state_dict().values()) > 200_000_000


def test_t25_layers_are_not_identities(pkg):
    from timesfm.torch.normalization import RMSNorm

    scales = [m.scale for m in pkg.model.modules() if isinstance(m, RMSNorm)]
    assert len(scales) == 2 * 6 and all(bool((s == 1).all()) for s in scales)  # build_random set them to 1
    x = np.sin(np.arange(64) / 5.0) * 3 + 10
    emb = pkg.embed([x], layers="all", sites=ALL)
    for L in (1, 2):
        assert np.abs(emb.arrays[("residual", L)] - emb.arrays[("residual", L - 1)]).max() > 1e-2, L
        assert np.abs(emb.arrays[("attention", L)]).max() > 1e-3
    # the pitfall itself: the package's own init (RMSNorm.scale = 0) makes every layer an identity
    raw = type(pkg.model)().eval()
    h = torch.randn(1, 8, 32)
    with torch.no_grad():
        out, _ = raw.stacked_xf[0](h, torch.zeros(1, 8, dtype=torch.bool))
    assert torch.equal(out, h)


def test_t25_package_token_counts_cut_and_padding(pkg, pkg_dir, co2):
    from isofast.tsfm.timesfm import TimesFM25Adapter

    ser = pkg.serializer
    assert (ser.pad, ser.patch_len, ser.max_context) == ("left", 8, 16384)
    seen = []
    h = pkg.model.stacked_xf[0].register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[1]))
    try:
        for L in (1, 5, 8, 33, 64, 100):
            emb = pkg.embed([co2[:L]], layers=[0, -1], sites=ALL)
            assert seen[-1] == ser.n_tokens(L) == -(-L // 8), L
            assert emb.arrays[("residual", 2)].shape == (ser.n_tokens(L), 32)
    finally:
        h.remove()
    t = ser.tokens(33)  # 7 padding positions, then patches of 8
    assert (t.first[0], t.last[0], t.first[1], t.last[1], t.last[-1]) == (0, 0, 1, 8, 32)
    # above the context limit: the oldest values are cut
    small = TimesFM25Adapter.load(pkg_dir, max_context=64)
    emb = small.embed([co2[:100]], layers=[1])
    assert emb.arrays[("residual", 1)].shape == (8, 32) and emb.first[0] == 36 and emb.last[-1] == 99
    long = co2[: 16384 + 40] if co2.size >= 16424 else np.tile(co2, 40)[: 16384 + 40]
    emb = pkg.embed([long], layers=[2])
    assert emb.arrays[("residual", 2)].shape == (2048, 32) and emb.first[0] == 40


def _pkg_manual_prefill(mod, x):
    """The package's numbers → inputs written out by hand, then the module's
    own forward without a decode cache (not the adapter's decode(1, …) call)."""
    from timesfm.torch import util

    p, L = mod.p, x.size
    lead = (-L) % p
    inp = torch.cat([torch.zeros(lead), torch.tensor(x, dtype=torch.float32)])[None]
    msk = torch.cat([torch.ones(lead, dtype=torch.bool), torch.zeros(L, dtype=torch.bool)])[None]
    inp = util.revin(inp, torch.mean(inp, -1, keepdim=True), torch.std(inp, -1, keepdim=True))
    pi, pm = inp.reshape(1, -1, p), msk.reshape(1, -1, p)
    n, mu, sd = torch.zeros(1), torch.zeros(1), torch.zeros(1)
    mus, sds = [], []
    for i in range(pi.shape[1]):
        (n, mu, sd), _ = util.update_running_stats(n, mu, sd, pi[:, i], pm[:, i])
        mus.append(mu), sds.append(sd)
    normed = torch.where(pm, 0.0, util.revin(pi, torch.stack(mus, 1), torch.stack(sds, 1)))
    with torch.no_grad():
        mod(normed, pm)


def test_t25_package_rows_equal_hand_written_hooks(pkg, co2):
    x = co2[10:77]  # 67 values: 9 patches, the first with 5 padding positions
    got = pkg.embed([x], layers="all", sites=ALL)
    assert sorted(got.arrays) == [("attention", 1), ("attention", 2), ("residual", 0), ("residual", 1), ("residual", 2)]
    mod = pkg.model
    store, hs = _hooks(list(mod.stacked_xf), [b.attn for b in mod.stacked_xf], block_out=lambda o: o[0])
    try:
        _pkg_manual_prefill(mod, x)
    finally:
        _remove(hs)
    assert len(store) == 5 and all(len(v) == 1 for v in store.values())
    for key, (want,) in store.items():
        assert want.shape == (1, 9, 32)
        np.testing.assert_array_equal(got.arrays[key], want[0].numpy(), err_msg=str(key))


def test_t25_package_prefill_is_the_forecasts_first_pass(pkg, co2):
    """The package's forecast runs each layer several times (flip pass on −x,
    one AR step per 16 values here); its first call is the prefill isofast
    records (same padding when max_context equals the padded length)."""
    x = co2[100:164]
    got = pkg.embed([x], layers="all", sites=("residual",))
    mod = pkg.model
    store, hs = _hooks(list(mod.stacked_xf), [], block_out=lambda o: o[0])
    from timesfm import configs

    try:
        pkg.wrapper.compile(
            configs.ForecastConfig(
                max_context=64,
                max_horizon=48,
                normalize_inputs=True,
                force_flip_invariance=True,
                infer_is_positive=True,
            )
        )
        pkg.wrapper.forecast(horizon=40, inputs=[x.copy()])
    finally:
        _remove(hs)
    assert len(store[("residual", 1)]) == 2 * (1 + 2)  # (prefill + 2 AR steps) × (x, −x)
    for key, calls in store.items():
        np.testing.assert_allclose(got.arrays[key], calls[0][0].numpy(), rtol=1e-5, atol=1e-5, err_msg=str(key))


def test_t25_package_forecast_real_series(pkg, co2):
    fc = pkg.forecast([co2[:200], co2[300:364]], 40, quantile_levels=(0.05, 0.1, 0.25, 0.5, 0.9))
    assert fc.point.shape == (2, 40) and fc.quantiles.shape == (5, 2, 40)
    assert np.isfinite(fc.point).all() and np.isfinite(fc.quantiles).all()
    np.testing.assert_array_equal(fc.point, fc.quantiles[3])
    s = fc.settings
    assert s["backend"] == "timesfm package (torch)" and s["force_flip_invariance"] is True
    assert s["interpolated_levels"] == [0.25] and s["clamped_levels"] == [0.05]
    np.testing.assert_array_equal(fc.quantiles[0], fc.quantiles[1])  # 0.05 clamped to 0.1
    # the same numbers as the package's own forecast call with those flags
    _, q = pkg.wrapper.forecast(horizon=40, inputs=[co2[:200].copy(), co2[300:364].copy()])
    np.testing.assert_allclose(fc.point, q[..., 5], rtol=1e-6)
    np.testing.assert_allclose(fc.quantiles[2], 0.5 * (q[..., 2] + q[..., 3]), rtol=1e-6)


def test_t25_package_defaults_continuous_quantile_head(tmp_path, co2, one_torch_thread):
    """build_random's defaults keep the published model's output patch (128) and quantile head (1024):
    a 150-step forecast takes one AR step and uses the continuous quantile head."""
    pytest.importorskip("timesfm")
    d = tsfm.build_random("timesfm-2.5", tmp_path / "t25", seed=2, patch=32)
    m = isofast.load_tsfm(str(d))
    assert (m.model.p, m.model.o, m.model.os) == (32, 128, 1024)
    fc = m.forecast([co2[:300]], 150, quantile_levels=(0.1, 0.5, 0.9))
    assert fc.point.shape == (1, 150) and np.isfinite(fc.quantiles).all()
    assert fc.settings["use_continuous_quantile_head"] is True and fc.settings["max_horizon"] == 256
    assert np.all(fc.quantiles[0] <= fc.quantiles[1]) and np.all(fc.quantiles[1] <= fc.quantiles[2])


def test_t25_package_bad_folders(pkg_dir, t1_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    with pytest.raises(CheckpointError, match="expected a timesfm-2.5 checkpoint, found timesfm"):
        isofast.load_tsfm(f"timesfm-2.5:{t1_dir}")
    with pytest.raises(CheckpointError, match="expected a timesfm checkpoint, found timesfm-2.5"):
        isofast.load_tsfm(f"timesfm:{pkg_dir}")
    d = tmp_path / "pickled"
    shutil.copytree(pkg_dir, d)
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="safetensors"):
        isofast.load_tsfm(f"timesfm-2.5:{d}")
    # the layout records no layer count; weights that are not one consistent module are refused
    d = tmp_path / "holed"
    shutil.copytree(pkg_dir, d)
    w = load_file(str(d / "model.safetensors"))
    del w["stacked_xf.1.ff0.weight"]
    save_file(w, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match="do not load"):
        isofast.load_tsfm(f"timesfm-2.5:{d}")
    # a config.json that names nothing: read by FAMILY:PATH from the weights' names, refused as a bare path
    d = tmp_path / "noconfig"
    shutil.copytree(pkg_dir, d)
    (d / "config.json").write_text("{}")
    m = isofast.load_tsfm(f"timesfm-2.5:{d}")
    assert m.backend == "timesfm" and m.describe()["config_recognised"] is False
    with pytest.raises(CheckpointError, match="names no supported"):
        isofast.load_tsfm(str(d))
    with pytest.raises(InputError, match="float32"):
        isofast.load_tsfm(f"timesfm-2.5:{pkg_dir}", dtype="bfloat16")


def test_t25_missing_package_names_install_route(pkg_dir, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a, **k: None if name == "timesfm" else real(name, *a, **k)
    )
    with pytest.raises(MissingPackageError, match=r"pip install 'isofast\[tsfm\]' \(or: pip install timesfm\)"):
        isofast.load_tsfm(f"timesfm-2.5:{pkg_dir}")


# ================================================================ TimesFM 2.5, transformers' layout
def test_t25_transformers_layout_detected_and_loaded(hf25_dir, hf25):
    from transformers import TimesFm2_5ModelForPrediction

    cfg = json.loads((hf25_dir / "config.json").read_text())
    assert cfg["model_type"] == "timesfm2_5" and cfg["architectures"] == ["TimesFm2_5ModelForPrediction"]
    assert tsfm.detect_family(hf25_dir) == "timesfm-2.5"
    m = isofast.load_tsfm(str(hf25_dir))
    assert m.backend == "transformers" and m.describe()["backend"] == "transformers"
    assert isinstance(m.model, TimesFm2_5ModelForPrediction) and m.n_layers == 2 and m.d_model == 32
    assert m.weights_hash == hf25.weights_hash
    assert hf25.serializer.max_context == 128 and hf25.serializer.patch_len == 8


def test_t25_transformers_token_counts_and_cut(hf25, co2):
    seen = []
    h = hf25.model.model.layers[0].register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[1]))
    try:
        for L in (3, 8, 33, 128, 200):
            emb = hf25.embed([co2[:L]], layers=[-1], sites=ALL)
            assert seen[-1] == hf25.serializer.n_tokens(L) == -(-min(L, 128) // 8), L
            assert emb.arrays[("attention", 2)].shape == (seen[-1], 32)
    finally:
        h.remove()
    emb = hf25.embed([co2[:200]], layers=[1])
    assert emb.first[0] == 72 and emb.last[-1] == 199


def test_t25_transformers_rows_equal_hand_written_hooks(hf25, co2):
    x = co2[5:50]  # 45 values: 6 patches, 3 padding positions
    got = hf25.embed([x], layers="all", sites=ALL)
    m = hf25.model
    layers = list(m.model.layers)
    store, hs = _hooks(layers, [b.self_attn for b in layers])
    ts = torch.cat([torch.zeros(3), torch.tensor(x, dtype=torch.float32)])[None]
    pad = torch.cat([torch.ones(3), torch.zeros(45)])[None]
    try:
        with torch.no_grad():
            normed = m.model._revin(ts, ts.mean(dim=1, keepdim=True), ts.std(dim=1, keepdim=True), reverse=False)
            m.model(past_values=normed, past_values_padding=pad)
    finally:
        _remove(hs)
    assert len(store) == 5 and all(len(v) == 1 for v in store.values())
    for key, (want,) in store.items():
        np.testing.assert_array_equal(got.arrays[key], want[0].numpy(), err_msg=str(key))
    # the family's default forward runs every layer twice (flip invariance): why the prefill switches it off
    store, hs = _hooks(layers, [])
    try:
        with torch.no_grad():
            m(past_values=[torch.tensor(x, dtype=torch.float32)])
    finally:
        _remove(hs)
    assert len(store[("residual", 1)]) == 2


def test_t25_padding_only_patches_leave_real_rows_unchanged(hf25, pkg, co2):
    """The prefill pads to a multiple of the patch; the forecast pads to the
    whole context. Real patches' rows agree (masked keys, affine-invariant RevIN)."""
    x = co2[:45]
    m = hf25.model
    got = hf25.embed([x], layers=[2])
    store, hs = _hooks(list(m.model.layers), [])
    try:
        with torch.no_grad():
            m(past_values=[torch.tensor(x, dtype=torch.float32)], force_flip_invariance=False)  # padded to 128
    finally:
        _remove(hs)
    full = store[("residual", 2)][0][0].numpy()
    assert full.shape == (16, 32)
    # equal up to float32 rounding, amplified here by the two normalisations (co2 ≈ 316 with a per-patch
    # spread of ≈ 0.5): measured max |diff| ≈ 1e-4 on rows of norm ≈ 10
    np.testing.assert_allclose(full[-6:], got.arrays[("residual", 2)], rtol=1e-3, atol=3e-4)
    # the package backend likewise: its forecast pads to max_context (128 here), the prefill to 48
    store, hs = _hooks(list(pkg.model.stacked_xf), [], block_out=lambda o: o[0])
    from timesfm import configs

    try:
        pkg.wrapper.compile(configs.ForecastConfig(max_context=128, max_horizon=16, normalize_inputs=True))
        pkg.wrapper.forecast(horizon=16, inputs=[x.copy()])
    finally:
        _remove(hs)
    full = store[("residual", 2)][0][0].numpy()
    assert full.shape == (16, 32)
    np.testing.assert_allclose(full[-6:], pkg.embed([x], layers=[2]).arrays[("residual", 2)], rtol=1e-3, atol=3e-4)


def test_t25_transformers_forecast_real_series_and_long_horizon(hf25, co2):
    ctx = [co2[:200], co2[300:364]]
    fc = hf25.forecast(ctx, 40, quantile_levels=(0.1, 0.5, 0.9))
    assert fc.point.shape == (2, 40) and fc.quantiles.shape == (3, 2, 40)
    assert np.isfinite(fc.point).all() and np.isfinite(fc.quantiles).all()
    assert fc.settings["calls"] == 3 and "unrolled by isofast" in fc.settings["long_horizon"]
    assert fc.settings["force_flip_invariance"] is True
    np.testing.assert_array_equal(fc.point, fc.quantiles[1])
    one = hf25.forecast(ctx, 16)
    with torch.no_grad():
        out = hf25.model(
            past_values=[torch.tensor(c[-128:], dtype=torch.float32) for c in ctx], truncate_negative=False
        )
    np.testing.assert_allclose(one.point, np.maximum(out.mean_predictions.numpy(), 0), rtol=1e-6)  # co2 > 0
    np.testing.assert_allclose(fc.point[:, :16], one.point, rtol=1e-6)


def test_t25_transformers_bad_folders(hf25_dir, tmp_path):
    d = tmp_path / "lying"
    shutil.copytree(hf25_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_hidden_layers"] = 3
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match"):
        isofast.load_tsfm(f"timesfm-2.5:{d}")
    d = tmp_path / "pickled"
    shutil.copytree(hf25_dir, d)
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="safetensors"):
        isofast.load_tsfm(str(d))


# ================================================================ TimesFM 1.0 / 2.0
def test_t1_detected_loaded_and_freq(t1_dir, t1):
    from isofast.tsfm.timesfm import TimesFMAdapter

    assert json.loads((t1_dir / "config.json").read_text())["model_type"] == "timesfm"
    assert tsfm.detect_family(t1_dir) == "timesfm"
    m = isofast.load_tsfm(str(t1_dir))
    assert m.family == "timesfm" and m.n_layers == 2 and m.d_model == 32 and m.freq == 0
    assert m.weights_hash == t1.weights_hash and m.describe()["freq"] == 0
    assert TimesFMAdapter.load(t1_dir, freq=2).freq == 2
    with pytest.raises(InputError, match="freq"):
        TimesFMAdapter.load(t1_dir, freq=3)


def test_t1_token_counts_and_cut(t1, co2):
    seen = []
    h = t1.model.decoder.layers[0].register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[1]))
    try:
        for L in (1, 5, 8, 33, 128, 200):
            emb = t1.embed([co2[:L]], layers=[0, 2], sites=ALL)
            assert seen[-1] == t1.serializer.n_tokens(L) == -(-min(L, 128) // 8), L
            assert emb.arrays[("residual", 0)].shape == (seen[-1], 32)
    finally:
        h.remove()
    emb = t1.embed([co2[:5], co2[:200]], layers=[1])
    assert emb.kind[0] == "patch" and emb.first[0] == 0 and emb.last[0] == 4
    w1 = emb.window == 1
    assert emb.first[w1][0] == 72


def test_t1_rows_equal_hand_written_hooks(t1, co2):
    x = co2[7:50]  # 43 values: 6 patches, 5 padding positions
    got = t1.embed([x], layers="all", sites=ALL)
    dec = t1.model.decoder
    layers = list(dec.layers)
    store, hs = _hooks(layers, [b.self_attn for b in layers])
    try:
        with torch.no_grad():
            dec(
                past_values=torch.cat([torch.zeros(5), torch.tensor(x, dtype=torch.float32)])[None],
                past_values_padding=torch.cat([torch.ones(5), torch.zeros(43)])[None],
                freq=torch.zeros((1, 1), dtype=torch.int32),
            )
    finally:
        _remove(hs)
    assert len(store) == 5 and all(len(v) == 1 for v in store.values())
    for key, (want,) in store.items():
        np.testing.assert_array_equal(got.arrays[key], want[0].numpy(), err_msg=str(key))


def test_t1_padding_only_patches_and_freq(t1, t1_dir, co2):
    from isofast.tsfm.timesfm import TimesFMAdapter

    x = co2[7:50]
    got = t1.embed([x], layers=[2])
    store, hs = _hooks(list(t1.model.decoder.layers), [])
    try:
        with torch.no_grad():
            t1.model(past_values=[torch.tensor(x, dtype=torch.float32)], freq=[0])  # padded to 128: 16 patches
    finally:
        _remove(hs)
    assert len(store[("residual", 1)]) == 1  # one forward = one decoder pass
    full = store[("residual", 2)][0][0].numpy()
    np.testing.assert_allclose(full[-6:], got.arrays[("residual", 2)], rtol=1e-4, atol=1e-5)
    other = TimesFMAdapter.load(t1_dir, freq=1).embed([x], layers=[2])
    assert np.abs(other.arrays[("residual", 2)] - got.arrays[("residual", 2)]).max() > 1e-4


def test_t1_forecast_real_series(t1, co2):
    ctx = [co2[:200], co2[300:364]]
    fc = t1.forecast(ctx, 40, quantile_levels=(0.1, 0.5, 0.9))
    assert fc.point.shape == (2, 40) and fc.quantiles.shape == (3, 2, 40)
    assert np.isfinite(fc.point).all() and np.isfinite(fc.quantiles).all()
    assert fc.settings["calls"] == 3 and fc.settings["freq"] == 0
    with torch.no_grad():
        out = t1.model(past_values=[torch.tensor(c[-128:], dtype=torch.float32) for c in ctx], freq=[0, 0])
    np.testing.assert_allclose(fc.point[:, :16], out.mean_predictions.numpy(), rtol=1e-6)
    np.testing.assert_allclose(fc.quantiles[1, :, :16], out.full_predictions[..., 5].numpy(), rtol=1e-6)
    f2 = t1.forecast(ctx, 16, freq=2)
    assert f2.settings["freq"] == 2 and not np.allclose(f2.point, fc.point[:, :16])


def test_t1_bad_folders_and_missing_package(t1_dir, tmp_path, monkeypatch):
    import importlib.util

    d = tmp_path / "lying"
    shutil.copytree(t1_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_hidden_layers"] = 3
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match"):
        isofast.load_tsfm(f"timesfm:{d}")
    d = tmp_path / "pickled"
    shutil.copytree(t1_dir, d)
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="safetensors"):
        isofast.load_tsfm(f"timesfm:{d}")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a, **k: None if name == "transformers" else real(name, *a, **k)
    )
    with pytest.raises(MissingPackageError, match=r"isofast\[torch\]"):
        isofast.load_tsfm(f"timesfm:{t1_dir}")
