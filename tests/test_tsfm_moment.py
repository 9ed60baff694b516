"""MOMENT (momentfm) through isofast.tsfm: a random-init MOMENTPipeline built
with momentfm's own class and saved with its own save_pretrained, detected,
loaded by path, captured, compared with hand-written forward hooks on the
package's own embed call, forecast on a real series and refused when the
folder is wrong.

Skipped when momentfm is not installed (scripts/install_tsfm_nodeps.sh)."""

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("momentfm")

import isofast  # noqa: E402
from isofast import tsfm  # noqa: E402
from isofast.errors import CheckpointError, InputError  # noqa: E402


@pytest.fixture(scope="module")
def mdir(tmp_path_factory, one_torch_thread):
    d = tmp_path_factory.mktemp("moment")
    tsfm.build_random("moment", d, seed=0, d_model=32, num_layers=2)
    return d


@pytest.fixture(scope="module")
def mm(mdir):
    return isofast.load_tsfm(f"moment:{mdir}")


def test_config_detection_and_loading(mdir, mm):
    from isofast.tsfm.moment import detect_config

    cfg = json.loads((mdir / "config.json").read_text())
    assert (mdir / "model.safetensors").is_file()
    assert cfg["task_name"] == "reconstruction" and cfg["seq_len"] == 512 and cfg["patch_len"] == 8
    assert isinstance(cfg["t5_config"], dict) and cfg["t5_config"]["num_layers"] == 2
    assert detect_config(cfg) == "moment" and tsfm.detect_family(mdir) == "moment"
    assert detect_config({**cfg, "model_type": "t5"}) is None
    assert detect_config({k: v for k, v in cfg.items() if k != "t5_config"}) is None
    m = isofast.load_tsfm(str(mdir))
    assert m.family == "moment" and m.n_layers == 2 and m.d_model == 32 and m.task_name == "reconstruction"
    assert m.weights_hash == mm.weights_hash
    from momentfm import MOMENTPipeline

    assert isinstance(m.model, MOMENTPipeline)
    # the weights are the saved ones, the reconstruction head included (no fresh head swapped in)
    from safetensors.torch import load_file

    saved = load_file(str(mdir / "model.safetensors"))
    state = m.model.state_dict()
    assert any(k.startswith("head.") for k in saved)
    for k, v in saved.items():
        assert torch.equal(state[k], v), k


def test_tokens_the_stack_sees_equal_the_serializer(mm, co2):
    ser = mm.serializer
    assert ser.fixed_values == 512 and ser.patch_len == 8 and ser.pad == "left"
    for L in (3, 8, 13, 64, 100, 512, 600):
        emb = mm.embed([co2[:L]], layers=[0, -1], sites=("residual", "attention"))
        assert ser.n_tokens(L) == 64
        assert all(a.shape == (64, 32) for a in emb.arrays.values()), L
        n_full = min(L, 512) // 8
        assert sum(k == "patch" for k in emb.kind) == n_full, L
        if n_full:
            assert emb.last[-1] == L - 1
    # 13 values: patches 0..61 pure padding, patch 62 partly padded (masked by MOMENT: reads no value), 63 = steps 5..12
    emb = mm.embed([co2[:13]], layers=[0])
    assert list(emb.kind[61:]) == ["pad", "pad", "patch"] and emb.first[63] == 5 and emb.last[63] == 12
    assert emb.first[62] == -1
    # 600 > 512: the oldest 88 values are cut
    emb = mm.embed([co2[:600]], layers=[0])
    assert emb.first[0] == 88 and emb.last[0] == 95 and emb.last[63] == 599


def test_partly_padded_patch_is_the_mask_embedding_like_momentfm(mm, co2):
    """The package's patch-view mask: a patch is observed only when all 8
    positions are, so the partly padded patch enters as mask_embedding + position."""
    emb = mm.embed([co2[:13]], layers=[0])
    pe = mm.model.patch_embedding
    want = (pe.mask_embedding + pe.position_embedding.pe[0, 62]).detach().numpy()
    np.testing.assert_allclose(emb.arrays[("residual", 0)][62], want, rtol=1e-6, atol=1e-6)


def test_rows_equal_hand_written_hooks_on_the_packages_embed(mdir, mm, co2):
    from momentfm import MOMENTPipeline

    x = co2[:300]
    got = mm.embed([x], layers="all", sites=("residual", "attention"))
    assert sorted(got.arrays) == [("attention", 1), ("attention", 2), ("residual", 0), ("residual", 1), ("residual", 2)]
    # an independent pipeline with the package's own "embedding" task, run through its forward()
    pkg = MOMENTPipeline.from_pretrained(str(mdir), model_kwargs={"task_name": "embedding"})
    pkg.init()
    pkg.eval()
    enc = pkg.encoder
    store = {}
    hs = [
        enc.block[0].register_forward_pre_hook(
            lambda mod, a, kw: store.setdefault(("residual", 0), []).append(
                (a[0] if a else kw["hidden_states"])[0].detach().clone()
            ),
            with_kwargs=True,
        )
    ]
    hs.append(
        enc.block[0].register_forward_hook(
            lambda mod, a, o: store.setdefault(("residual", 1), []).append(o[0][0].detach().clone())
        )
    )
    hs.append(
        enc.final_layer_norm.register_forward_hook(
            lambda mod, a, o: store.setdefault(("residual", 2), []).append(o[0].detach().clone())
        )
    )
    hs += [
        enc.block[i]
        .layer[0]
        .SelfAttention.register_forward_hook(
            lambda mod, a, o, i=i: store.setdefault(("attention", i + 1), []).append(o[0][0].detach().clone())
        )
        for i in range(2)
    ]
    xe = torch.zeros(1, 1, 512)
    xe[0, 0, -300:] = torch.tensor(x, dtype=torch.float32)
    mask = torch.zeros(1, 512)
    mask[0, -300:] = 1
    try:
        with torch.no_grad():
            out = pkg(x_enc=xe, input_mask=mask, reduction="none")
    finally:
        for h in hs:
            h.remove()
    assert len(store) == 5 and all(len(v) == 1 for v in store.values())
    for key, recs in store.items():
        np.testing.assert_array_equal(got.arrays[key], recs[0].numpy(), err_msg=str(key))
    # the last layer is the package's own embeddings (batch, channels, patches, d)
    assert tuple(out.embeddings.shape) == (1, 1, 64, 32)
    np.testing.assert_array_equal(got.arrays[("residual", 2)], out.embeddings[0, 0].numpy())


def test_batched_capture_equals_one_at_a_time(mm, co2):
    ctx = [co2[i : i + 100] for i in (0, 200, 400)] + [co2[:37]]
    together = mm.embed(ctx, layers="all", sites=("residual", "attention"), batch_size=4)
    alone = [mm.embed([c], layers="all", sites=("residual", "attention")) for c in ctx]
    for key, arr in together.arrays.items():
        np.testing.assert_allclose(arr, np.concatenate([a.arrays[key] for a in alone]), rtol=1e-5, atol=1e-5)


def test_zero_shot_forecast_uses_the_reconstruction_head(mm, co2):
    ctx = [co2[:200], co2[300:364], co2[:700]]
    fc = mm.forecast(ctx, 12, quantile_levels=(0.1, 0.5, 0.9))
    assert fc.point.shape == (3, 12) and fc.quantiles.shape == (3, 3, 12) and fc.samples is None
    assert np.isfinite(fc.point).all()
    for q in fc.quantiles:  # one deterministic path
        np.testing.assert_array_equal(q, fc.point)
    assert "short_forecast" in fc.settings["method"] and fc.settings["context_kept"] == 512 - 16
    # the package's short_forecast on the same padded input
    x = co2[300:364]
    xe = torch.zeros(1, 1, 512)
    xe[0, 0, -64:] = torch.tensor(x, dtype=torch.float32)
    mask = torch.zeros(1, 512)
    mask[0, -64:] = 1
    with torch.no_grad():
        want = mm.model.short_forecast(x_enc=xe, input_mask=mask, forecast_horizon=12).forecast[0, 0].numpy()
    np.testing.assert_allclose(fc.point[1], want, rtol=1e-6)
    with pytest.raises(InputError, match="no context"):
        mm.forecast([co2[:100]], 510)


def test_forecasting_head_folder(tmp_path, co2, one_torch_thread):
    d = tsfm.build_random("moment", tmp_path / "fh", seed=1, task_name="forecasting", forecast_horizon=16)
    m = isofast.load_tsfm(str(d))
    assert m.task_name == "forecasting"
    fc = m.forecast([co2[:100], co2[:600]], 10)
    assert fc.point.shape == (2, 10) and np.isfinite(fc.point).all()
    assert "forecasting head" in fc.settings["method"]
    with pytest.raises(InputError, match="16 steps"):
        m.forecast([co2[:100]], 20)
    # capture does not depend on the head
    assert m.embed([co2[:50]], layers="all").arrays[("residual", 2)].shape == (64, 32)


def test_bad_folders(mdir, tmp_path):
    pytest.importorskip("chronos")
    bolt = tsfm.build_random("chronos-bolt", tmp_path / "bolt")
    with pytest.raises(CheckpointError, match="expected a moment checkpoint, found chronos-bolt"):
        isofast.load_tsfm(f"moment:{bolt}")
    with pytest.raises(CheckpointError, match="expected a chronos-bolt checkpoint, found moment"):
        isofast.load_tsfm(f"chronos-bolt:{mdir}")
    d = tmp_path / "pickled"
    shutil.copytree(mdir, d)
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="safetensors"):
        isofast.load_tsfm(f"moment:{d}")
    for change in ({"num_layers": 3}, {"d_model": 64, "d_kv": 16}):
        d = tmp_path / f"lying{len(change)}"
        shutil.copytree(mdir, d)
        cfg = json.loads((d / "config.json").read_text())
        cfg["t5_config"].update(change)  # the weights hold 2 blocks of width 32
        (d / "config.json").write_text(json.dumps(cfg))
        with pytest.raises(CheckpointError, match="do not match"):
            isofast.load_tsfm(f"moment:{d}")
    d = tmp_path / "overlap"
    shutil.copytree(mdir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["patch_stride_len"] = 4
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="patch_stride_len"):
        isofast.load_tsfm(f"moment:{d}")


def test_missing_package_names_install_route(mdir, monkeypatch):
    import importlib.util

    from isofast.errors import MissingPackageError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a, **k: None if name == "momentfm" else real(name, *a, **k)
    )
    for spec in (f"moment:{mdir}", str(mdir)):
        with pytest.raises(MissingPackageError, match="momentfm"):
            isofast.load_tsfm(spec)
    with pytest.raises(MissingPackageError, match="--no-deps momentfm"):
        tsfm.build_random("moment", mdir / "never")
