"""Moirai 1.x and Moirai 2.0 (uni2ts) through isofast.tsfm: random-init
modules built with uni2ts' own classes and saved with their own
save_pretrained (PyTorchModelHubMixin), detected, loaded by path, captured,
compared with hand-written forward hooks on the package's own forecast call,
forecast on a real series, and refused when the folder is wrong.

Skipped when uni2ts is not installed (scripts/install_tsfm_nodeps.sh)."""

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("uni2ts")

import isofast  # noqa: E402
from isofast import tsfm  # noqa: E402
from isofast.errors import CheckpointError, InputError  # noqa: E402


@pytest.fixture(scope="module")
def m1_dir(tmp_path_factory, one_torch_thread):
    d = tmp_path_factory.mktemp("moirai")
    # max_seq_len 32 → max_context (32 − 1) · 8 = 248 values at patch 8
    tsfm.build_random("moirai", d, seed=0, d_model=64, num_layers=2, patch=8, max_seq_len=32)
    return d


@pytest.fixture(scope="module")
def m2_dir(tmp_path_factory, one_torch_thread):
    d = tmp_path_factory.mktemp("moirai2")
    tsfm.build_random("moirai-2", d, seed=0, d_model=64, num_layers=2, patch=8, max_seq_len=32, num_predict_token=2)
    return d


@pytest.fixture(scope="module")
def m1(m1_dir):
    return isofast.load_tsfm(f"moirai:{m1_dir}")


@pytest.fixture(scope="module")
def m2(m2_dir):
    return isofast.load_tsfm(f"moirai-2:{m2_dir}")


def _hooks(module, store):
    """Hand-written hooks on the uni2ts stack: layer 0 = layers[0]'s input,
    L = layers[L-1] output, last = encoder.norm, attention = self_attn."""
    enc = module.encoder
    n = len(enc.layers)
    hs = [
        enc.layers[0].register_forward_pre_hook(
            lambda mod, a: store.setdefault(("residual", 0), []).append(a[0].detach().clone())
        )
    ]
    for i in range(n - 1):
        hs.append(
            enc.layers[i].register_forward_hook(
                lambda mod, a, o, i=i: store.setdefault(("residual", i + 1), []).append(o.detach().clone())
            )
        )
    hs.append(
        enc.norm.register_forward_hook(
            lambda mod, a, o: store.setdefault(("residual", n), []).append(o.detach().clone())
        )
    )
    for i in range(n):
        hs.append(
            enc.layers[i].self_attn.register_forward_hook(
                lambda mod, a, o, i=i: store.setdefault(("attention", i + 1), []).append(o.detach().clone())
            )
        )
    return hs


# --- detection and loading ---
def test_config_files_and_detection(m1_dir, m2_dir):
    from isofast.tsfm.moirai import detect_config

    c1 = json.loads((m1_dir / "config.json").read_text())
    c2 = json.loads((m2_dir / "config.json").read_text())
    assert (m1_dir / "model.safetensors").is_file() and not (m1_dir / "pytorch_model.bin").exists()
    # what uni2ts' save_pretrained writes (the module's init arguments)
    assert c1["patch_sizes"] == [8, 16]
    assert c1["distr_output"]["_target_"] == "uni2ts.distribution.mixture.MixtureOutput"
    assert [c["_target_"].rsplit(".", 1)[1] for c in c1["distr_output"]["components"]] == [
        "StudentTOutput",
        "NormalFixedScaleOutput",
        "NegativeBinomialOutput",
        "LogNormalOutput",
    ]
    assert "d_ff" not in c1 and "patch_size" not in c1
    assert c2["patch_size"] == 8 and c2["num_predict_token"] == 2 and "distr_output" not in c2 and "d_ff" in c2
    assert len(c2["quantile_levels"]) == 9
    assert detect_config(c1) == "moirai" and detect_config(c2) == "moirai-2"
    assert tsfm.detect_family(m1_dir) == "moirai" and tsfm.detect_family(m2_dir) == "moirai-2"
    # Moirai-MoE (patch_sizes + distr_output + d_ff) is not a supported family; transformers configs never match
    assert detect_config({**c1, "d_ff": 512}) is None
    assert detect_config({**c2, "model_type": "patchtst"}) is None
    assert detect_config({"d_model": 64}) is None


def test_loaded_by_bare_path_and_spec(m1_dir, m2_dir, m1, m2):
    a = isofast.load_tsfm(str(m1_dir))
    assert a.family == "moirai" and a.n_layers == 2 and a.d_model == 64 and a.patch_size == 8
    assert a.weights_hash == m1.weights_hash and a.max_context == 248
    b = isofast.load_tsfm(str(m2_dir))
    assert b.family == "moirai-2" and b.n_layers == 2 and b.d_model == 64 and b.patch_size == 8
    assert b.weights_hash == m2.weights_hash
    from uni2ts.model.moirai import MoiraiModule
    from uni2ts.model.moirai2 import Moirai2Module

    assert type(a.model) is MoiraiModule and type(b.model) is Moirai2Module
    # the loaded weights are the saved ones
    from safetensors.torch import load_file

    saved = load_file(str(m1_dir / "model.safetensors"))
    state = a.model.state_dict()
    for k, v in saved.items():
        assert torch.equal(state[k], v), k
    d = a.describe()
    assert d["patch_size"] == 8 and d["serializer"]["suffix"] == ["future"]


# --- token counts ---
@pytest.mark.parametrize("fam", ["moirai", "moirai-2"])
def test_tokens_the_stack_sees_equal_the_serializer(fam, m1, m2, co2):
    m = m1 if fam == "moirai" else m2
    ser = m.serializer
    for L in (3, 8, 13, 64, 100, 248, 300):
        emb = m.embed([co2[:L]], layers=[0, -1], sites=("residual", "attention"))
        n = ser.n_tokens(L)
        assert n == -(-min(L, 248) // 8) + 1, L
        assert all(a.shape == (n, 64) for a in emb.arrays.values()), L
        assert emb.kind[-1] == "future" and emb.first[-1] == -1
        assert emb.last[-2] == L - 1
    # 300 > max_context 248: the oldest 52 values are cut; the first patch reads steps 52..59
    emb = m.embed([co2[:300]], layers=[0])
    assert emb.first[0] == 52 and emb.last[0] == 59
    # 13 values: the first patch is left-padded and reads steps 0..4
    emb = m.embed([co2[:13]], layers=[0])
    assert list(emb.first[:2]) == [0, 5] and list(emb.last[:2]) == [4, 12]


def test_moirai_patch_size_option(m1_dir, co2):
    from isofast.tsfm.moirai import MoiraiAdapter

    m = MoiraiAdapter.load(m1_dir, patch_size=16)
    assert m.patch_size == 16 and m.serializer.patch_len == 16 and m.max_context == 31 * 16
    emb = m.embed([co2[:100]], layers="all")
    assert emb.arrays[("residual", 2)].shape == (7 + 1, 64)
    with pytest.raises(InputError, match="patch_sizes"):
        MoiraiAdapter.load(m1_dir, patch_size=32)


# --- rows against hand-written hooks on the package's own forward ---
def test_moirai_rows_equal_hand_written_hooks(m1, co2):
    from uni2ts.model.moirai import MoiraiForecast

    x = co2[:61]
    got = m1.embed([x], layers="all", sites=("residual", "attention"))
    assert sorted(got.arrays) == [("attention", 1), ("attention", 2), ("residual", 0), ("residual", 1), ("residual", 2)]
    assert all(a.shape == (8 + 1, 64) for a in got.arrays.values())
    store = {}
    hs = _hooks(m1.model, store)
    fc = MoiraiForecast(
        module=m1.model,
        prediction_length=8,
        context_length=61,
        patch_size=8,
        num_samples=3,
        target_dim=1,
        feat_dynamic_real_dim=0,
        past_feat_dynamic_real_dim=0,
    )
    t = torch.tensor(x, dtype=torch.float32)[None, :, None]
    try:
        with torch.no_grad():
            s = fc(
                past_target=t,
                past_observed_target=torch.ones_like(t, dtype=torch.bool),
                past_is_pad=torch.zeros(1, 61, dtype=torch.bool),
            )
    finally:
        for h in hs:
            h.remove()
    assert s.shape == (1, 3, 8)
    assert len(store) == 5 and all(len(v) == 1 for v in store.values())  # the package's forward: one pass
    for key, recs in store.items():
        np.testing.assert_array_equal(got.arrays[key], recs[0][0].numpy(), err_msg=str(key))
    # the attention site is pre-residual: block 1 = input + attention + ffn(norm2(input + attention))
    blk = m1.model.encoder.layers[0]
    h0, a1 = store[("residual", 0)][0], store[("attention", 1)][0]
    with torch.no_grad():
        want = h0 + a1 + blk.ffn(blk.norm2(h0 + a1))
    np.testing.assert_allclose(store[("residual", 1)][0].numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    # the future token is the learned mask embedding
    np.testing.assert_array_equal(got.arrays[("residual", 0)][-1], m1.model.mask_encoding.weight[0].detach().numpy())


def test_moirai2_rows_equal_hand_written_hooks(m2, co2):
    from uni2ts.model.moirai2 import Moirai2Forecast

    x = co2[:61]
    got = m2.embed([x], layers="all", sites=("residual", "attention"))
    assert all(a.shape == (8 + 1, 64) for a in got.arrays.values()) and len(got.arrays) == 5
    store = {}
    hs = _hooks(m2.model, store)
    fc = Moirai2Forecast(
        module=m2.model,
        prediction_length=8,
        context_length=61,
        target_dim=1,
        feat_dynamic_real_dim=0,
        past_feat_dynamic_real_dim=0,
    )
    try:
        q = fc.predict(past_target=[x.astype(np.float32)])
    finally:
        for h in hs:
            h.remove()
    assert np.asarray(q).shape == (1, 9, 8)
    assert len(store) == 5 and all(len(v) == 1 for v in store.values())
    for key, recs in store.items():
        np.testing.assert_array_equal(got.arrays[key], recs[0][0].numpy(), err_msg=str(key))


def test_moirai2_causal_context_rows_do_not_see_the_future_token(m2, co2):
    """Moirai 2.0 is decoder-only: the context rows equal a pass without the
    future token."""
    from isofast.tsfm.moirai import _tensors

    x = co2[:64]
    got = m2.embed([x], layers=[-1])
    fc = m2._forecaster(64, 8)
    packed = fc._convert(8, *_tensors(x[None].astype(np.float32), "cpu", torch.float32))
    ctx_only = [t[:, :8] for t in packed]
    store = {}
    h = m2.model.encoder.norm.register_forward_hook(lambda mod, a, o: store.setdefault("n", o.detach()))
    try:
        with torch.no_grad():
            m2.model(*ctx_only, training_mode=False)
    finally:
        h.remove()
    np.testing.assert_allclose(got.arrays[("residual", 2)][:8], store["n"][0].numpy(), rtol=1e-5, atol=1e-5)


def test_batched_capture_equals_one_at_a_time(m1, co2):
    ctx = [co2[i : i + 40] for i in (0, 100, 200)]
    together = m1.embed(ctx, layers="all", batch_size=3)
    alone = [m1.embed([c], layers="all") for c in ctx]
    for key, arr in together.arrays.items():
        np.testing.assert_allclose(arr, np.concatenate([a.arrays[key] for a in alone]), rtol=1e-5, atol=1e-5)


def test_autoregressive_forecast_would_trip_the_call_count_check(m2, co2):
    """A horizon beyond num_predict_token patches makes Moirai2Forecast call
    the stack again: the tap refuses to mix passes."""
    from isofast.tsfm.base import LayerTap, resolve_layers

    fc = m2._forecaster(64, 40)  # 5 patches > num_predict_token 2 → AR steps
    with LayerTap(m2.stack, resolve_layers("all", 2, ["residual"]), 64, "moirai-2") as tap:
        fc.predict(past_target=[co2[:64].astype(np.float32)])
        with pytest.raises(RuntimeError, match="ran 3 times"):
            tap.take(1, 9)


# --- forecasts ---
def test_moirai_forecast_samples_seeded(m1, co2):
    ctx = [co2[:200], co2[300:364]]
    fc = m1.forecast(ctx, 12, n_samples=6, seed=3, quantile_levels=(0.1, 0.5, 0.9))
    assert fc.samples.shape == (2, 6, 12) and fc.point.shape == (2, 12) and fc.quantiles.shape == (3, 2, 12)
    assert np.isfinite(fc.samples).all() and np.isfinite(fc.quantiles).all()
    np.testing.assert_array_equal(fc.point, np.median(fc.samples, axis=1))
    state = torch.random.get_rng_state()
    again = m1.forecast(ctx, 12, n_samples=6, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(fc.samples, again.samples)
    assert not np.array_equal(fc.samples, m1.forecast(ctx, 12, n_samples=6, seed=4).samples)
    # the same numbers as the package's MoiraiForecast under the same global seed
    from uni2ts.model.moirai import MoiraiForecast

    one = m1.forecast([co2[300:364]], 12, n_samples=6, seed=3)
    t = torch.tensor(co2[300:364], dtype=torch.float32)[None, :, None]
    pkg = MoiraiForecast(
        module=m1.model,
        prediction_length=12,
        context_length=64,
        patch_size=8,
        num_samples=6,
        target_dim=1,
        feat_dynamic_real_dim=0,
        past_feat_dynamic_real_dim=0,
    )
    torch.manual_seed(3)
    with torch.no_grad():
        s = pkg(
            past_target=t,
            past_observed_target=torch.ones_like(t, dtype=torch.bool),
            past_is_pad=torch.zeros(1, 64, dtype=torch.bool),
        )
    np.testing.assert_allclose(one.samples[0], s[0].numpy(), rtol=1e-5)
    auto = m1.forecast([co2[:200]], 12, n_samples=4, patch_size="auto")
    assert auto.samples.shape == (1, 4, 12) and np.isfinite(auto.samples).all()
    assert auto.settings["patch_size"] == "auto"


def test_moirai2_forecast_quantiles(m2, co2):
    ctx = [co2[:200], co2[300:364]]
    fc = m2.forecast(ctx, 12, quantile_levels=(0.1, 0.25, 0.5, 0.9))
    assert fc.point.shape == (2, 12) and fc.quantiles.shape == (4, 2, 12) and fc.samples is None
    assert np.isfinite(fc.quantiles).all()
    np.testing.assert_array_equal(fc.point, fc.quantiles[2])
    assert fc.settings["interpolated_levels"] == [0.25]
    q = m2.forecast(ctx, 12, quantile_levels=(0.2, 0.3)).quantiles
    np.testing.assert_allclose(fc.quantiles[1], 0.5 * (q[0] + q[1]), rtol=1e-9)
    # the package's predict on the same context: the model's 9 levels, 0.1 and 0.9 at index 0 and 8
    from uni2ts.model.moirai2 import Moirai2Forecast

    pkg = Moirai2Forecast(
        module=m2.model,
        prediction_length=12,
        context_length=64,
        target_dim=1,
        feat_dynamic_real_dim=0,
        past_feat_dynamic_real_dim=0,
    )
    want = np.asarray(pkg.predict(past_target=[co2[300:364].astype(np.float32)]))[0]
    np.testing.assert_allclose(fc.quantiles[0, 1], want[0], rtol=1e-5)
    np.testing.assert_allclose(fc.quantiles[3, 1], want[8], rtol=1e-5)
    # beyond num_predict_token · patch (16): the package's autoregressive steps
    long = m2.forecast([co2[:200]], 40)
    assert long.point.shape == (1, 40) and np.isfinite(long.quantiles).all()
    assert long.settings["autoregressive_steps"] == 2


# --- bad folders ---
def test_folder_of_another_family_is_refused(m1_dir, m2_dir):
    with pytest.raises(CheckpointError, match="expected a moirai-2 checkpoint, found moirai"):
        isofast.load_tsfm(f"moirai-2:{m1_dir}")
    with pytest.raises(CheckpointError, match="expected a moirai checkpoint, found moirai-2"):
        isofast.load_tsfm(f"moirai:{m2_dir}")


def test_moe_folder_is_named(m1_dir, tmp_path):
    d = tmp_path / "moe"
    shutil.copytree(m1_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["d_ff"] = 128
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="expected a moirai checkpoint, found a Moirai-MoE config"):
        isofast.load_tsfm(f"moirai:{d}")


@pytest.mark.parametrize("fam", ["moirai", "moirai-2"])
def test_pickle_only_folder_is_refused(fam, m1_dir, m2_dir, tmp_path):
    d = tmp_path / "pickled"
    shutil.copytree(m1_dir if fam == "moirai" else m2_dir, d)
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="safetensors"):
        isofast.load_tsfm(f"{fam}:{d}")


@pytest.mark.parametrize("fam", ["moirai", "moirai-2"])
def test_layer_count_disagreeing_with_config(fam, m1_dir, m2_dir, tmp_path):
    d = tmp_path / "lying"
    shutil.copytree(m1_dir if fam == "moirai" else m2_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_layers"] = 3  # the weights hold 2 layers; the mixin's default strict=False would hide it
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match"):
        isofast.load_tsfm(f"{fam}:{d}")
    cfg["num_layers"], cfg["d_model"] = 2, 128  # width
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match"):
        isofast.load_tsfm(f"{fam}:{d}")


@pytest.mark.parametrize(
    "target,extra",
    [
        ("os.system", {}),
        ("builtins.eval", {}),
        ("uni2ts.distribution.mixture.Mixture", {}),  # in the package, but not a DistributionOutput
        ("uni2ts.distribution.mixture.MixtureOutput", {"_args_": ["x"]}),
        ("uni2ts.distribution.mixture.MixtureOutput", {"_partial_": True}),
    ],
)
def test_distr_output_targets_are_restricted(m1_dir, tmp_path, target, extra, monkeypatch):
    import uni2ts.model.moirai.module as umod

    called = []
    real = umod.instantiate
    monkeypatch.setattr(umod, "instantiate", lambda *a, **k: (called.append(a), real(*a, **k))[1])
    d = tmp_path / "evil"
    shutil.copytree(m1_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["distr_output"] = {"_target_": target, "components": cfg["distr_output"]["components"], **extra}
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="distr_output"):
        isofast.load_tsfm(f"moirai:{d}")
    # nested: one component names another target
    cfg = json.loads((m1_dir / "config.json").read_text())
    cfg["distr_output"]["components"][1] = {"_target_": target, **extra}
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="distr_output"):
        isofast.load_tsfm(f"moirai:{d}")
    assert called == []  # refused before hydra was asked to build anything
    isofast.load_tsfm(f"moirai:{m1_dir}")  # control: a valid spec does reach uni2ts' hydra instantiate
    assert len(called) == 1


def test_build_random_width_must_be_a_multiple_of_64(tmp_path):
    with pytest.raises(InputError, match="multiple of 64"):
        tsfm.build_random("moirai", tmp_path / "x", d_model=32)


def test_missing_package_names_install_route(m1_dir, m2_dir, monkeypatch):
    import importlib.util

    from isofast.errors import MissingPackageError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a, **k: None if name == "uni2ts" else real(name, *a, **k)
    )
    for spec in (f"moirai:{m1_dir}", f"moirai-2:{m2_dir}", str(m1_dir)):
        with pytest.raises(MissingPackageError, match="install_tsfm_nodeps|--no-deps uni2ts"):
            isofast.load_tsfm(spec)
    with pytest.raises(MissingPackageError, match="uni2ts"):
        tsfm.build_random("moirai", m1_dir / "never")
