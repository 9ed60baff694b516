"""isofast.tsfm's shared parts: model specs, family detection, token layouts,
errors, the capture folder and the study kind "tsfm" (on a random-init
Chronos-Bolt; each family's own tests are in tests/test_tsfm_<family>.py)."""

import json
import subprocess
import sys

import numpy as np
import pytest

import isofast
from isofast.errors import CheckpointError, InputError, MissingPackageError
from isofast.serializers.base import DIGIT, OTHER
from isofast.serializers.tsfm import TokenSerializer
from isofast.tsfm import spec as tspec


# --- specs and detection (no torch) ---
@pytest.mark.parametrize(
    "cfg, fam",
    [
        ({"chronos_pipeline_class": "ChronosPipeline", "chronos_config": {}}, "chronos"),
        ({"chronos_pipeline_class": "ChronosBoltPipeline"}, "chronos-bolt"),
        ({"chronos_pipeline_class": "Chronos2Pipeline"}, "chronos-2"),
        ({"architectures": ["T5ForConditionalGeneration"], "chronos_config": {"n_tokens": 4096}}, "chronos"),
        ({"architectures": ["ChronosBoltModelForForecasting"], "chronos_config": {}}, "chronos-bolt"),
        ({"model_type": "timesfm2_5"}, "timesfm-2.5"),  # transformers' model_type
        ({"architectures": ["TimesFm2_5ModelForPrediction"]}, "timesfm-2.5"),
        ({"model_type": "timesfm"}, "timesfm"),
        ({"model_type": "patchtst"}, "patchtst"),
        ({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}, None),
    ],
)
def test_detect_from_config(cfg, fam):
    assert tspec.detect_from_config(cfg) == fam


def test_split_spec_keeps_paths_and_windows_drives():
    assert tspec.split_spec("chronos-bolt:/m/x") == ("chronos-bolt", "/m/x")
    assert tspec.split_spec("CHRONOS:/m/x") == ("chronos", "/m/x")
    assert tspec.split_spec("C:/models/x") == (None, "C:/models/x")
    assert tspec.split_spec("/m/x") == (None, "/m/x")
    with pytest.raises(TypeError):
        tspec.split_spec(3)


def test_bad_specs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such"):
        tspec.parse_spec(f"chronos-bolt:{tmp_path / 'no-such'}")
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not a folder"):
        tspec.parse_spec(f"chronos:{f}")
    with pytest.raises(CheckpointError, match="no config.json"):
        tspec.parse_spec(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        tspec.parse_spec(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(CheckpointError, match="names no supported time-series family"):
        tspec.parse_spec(str(tmp_path))
    assert not tspec.looks_like_tsfm(str(tmp_path))
    assert not tspec.looks_like_tsfm("smollm2")
    assert tspec.looks_like_tsfm("moirai:/nowhere")  # the family is named: it is a TSFM spec
    with pytest.raises(InputError, match="names no folder"):
        tspec.parse_spec("chronos:")


def test_missing_package_names_the_install_route(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uni2ts" else real(name, *a))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(MissingPackageError, match="uni2ts.*docs/models.md") as e:
        isofast.load_tsfm(f"moirai:{tmp_path}")
    assert isinstance(e.value, ImportError)


# --- token layouts (hand-computed) ---
def test_value_layout_with_eos_and_cut():
    s = TokenSerializer("chronos", unit="value", max_context=5, suffix=("eos",))
    t = s.tokens(7)
    assert len(t) == 6 and t.kind == ("value",) * 5 + ("eos",)
    assert t.first.tolist() == [2, 3, 4, 5, 6, -1] and t.role.tolist() == [DIGIT] * 5 + [OTHER]


def test_left_padded_patches_with_reg():
    s = TokenSerializer("bolt", patch_len=4, pad="left", max_context=16, suffix=("reg",))
    t = s.tokens(10)  # 2 padding positions, then patches [0..1], [2..5], [6..9]
    assert t.first.tolist() == [0, 2, 6, -1] and t.last.tolist() == [1, 5, 9, -1]
    t = s.tokens(40)  # cut to the last 16: steps 24..39 in 4 patches
    assert t.first.tolist() == [24, 28, 32, 36, -1] and s.kept(40) == 16


def test_fixed_length_input_has_padding_patches():
    s = TokenSerializer("moment", patch_len=8, pad="left", fixed_values=32)
    t = s.tokens(12)  # 32 positions: 20 padding, then 12 values → patches 0,1 pad; 2 reads 0..3; 3 reads 4..11
    assert t.kind == ("pad", "pad", "patch", "patch")
    assert t.first.tolist() == [-1, -1, 0, 4] and t.last.tolist() == [-1, -1, 3, 11]


def test_unpadded_patches_drop_the_oldest_remainder():
    s = TokenSerializer("patchtst", patch_len=4, stride=2, pad="none", drop="oldest")
    t = s.tokens(9)  # (9-4)//2+1 = 3 patches covering the last 8 values: steps 1..8
    assert t.first.tolist() == [1, 3, 5] and t.last.tolist() == [4, 6, 8]


def test_serializer_refuses_bad_settings():
    with pytest.raises(InputError):
        TokenSerializer("x", unit="pixel")
    with pytest.raises(InputError):
        TokenSerializer("x", pad="middle")
    with pytest.raises(InputError):
        TokenSerializer("x").tokens(0)


# --- capture folder, CLI and study on a random-init Chronos-Bolt ---
@pytest.fixture(scope="module")
def bolt(tmp_path_factory, one_torch_thread):
    pytest.importorskip("chronos")
    from isofast import tsfm

    d = tmp_path_factory.mktemp("bolt")
    tsfm.build_random("chronos-bolt", d, seed=1)
    return d


def test_capture_writes_a_checksummed_resumable_folder(bolt, tmp_path):
    y = 50 + 10 * np.sin(np.arange(300) / 5)
    r = isofast.capture(
        f"chronos-bolt:{bolt}",
        {"y": y},
        context=64,
        window_mode="sliding",
        out=tmp_path / "c",
        progress=False,
        shard_bytes=1,
    )
    cap = isofast.open_capture(tmp_path / "c")
    assert cap.complete and r.n_windows == 4 and cap.layers_of("residual") == [0, 1, 2]
    assert cap.layers_of("attention") == [1, 2]
    X = cap.layer(2).to_numpy()
    assert X.shape == (4 * 9, 32) and np.isfinite(X).all()
    tok = cap.tokens()
    assert list(tok["first_step"][:2]) == [0, 8] and tok["token_text"][8] == "reg"
    # the rows equal the adapter's own embedding of the same windows
    m = isofast.load_tsfm(str(bolt))
    emb = m.embed([y[i * 64 : (i + 1) * 64] for i in range(4)], layers=[2])
    np.testing.assert_array_equal(X, emb.arrays[("residual", 2)])
    # a re-run reuses the complete folder; analyze reads it
    again = isofast.capture(
        f"chronos-bolt:{bolt}",
        {"y": y},
        context=64,
        window_mode="sliding",
        out=tmp_path / "c",
        progress=False,
        shard_bytes=1,
    )
    assert again.tokens_processed == 0
    rep = isofast.analyze(cap.layer(1))
    assert rep.n == 36
    # positions="digits" keeps the patch rows only
    d = isofast.capture(
        f"chronos-bolt:{bolt}",
        {"y": y},
        context=64,
        window_mode="sliding",
        positions="digits",
        out=tmp_path / "d",
        progress=False,
    )
    assert d.n_rows == 4 * 8


def test_capture_refuses_a_text_serializer_for_a_tsfm(bolt, tmp_path):
    with pytest.raises(InputError, match="does not apply"):
        isofast.capture(f"chronos-bolt:{bolt}", np.arange(80.0), serializer="chronos", out=tmp_path / "x")


def test_cli_capture_with_a_family_spec(bolt, tmp_path):
    data = tmp_path / "s.csv"
    data.write_text("y\n" + "\n".join(str(50 + np.sin(i / 3)) for i in range(200)))
    out = tmp_path / "cap"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "isofast",
            "capture",
            "--model",
            f"chronos-bolt:{bolt}",
            "--data",
            str(data),
            "--context",
            "64",
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "captured 9 rows" in r.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "isofast",
            "capture",
            "--model",
            f"chronos-2:{bolt}",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.count("\n") == 1 and "expected a chronos-2 checkpoint, found chronos-bolt" in bad.stderr


def test_study_cell_with_kind_tsfm(bolt, tmp_path):
    pytest.importorskip("matplotlib")
    import tomllib

    from isofast.study import run_study
    from isofast.study.config import bundled_config_path

    with open(bundled_config_path("tiny"), "rb") as f:
        data = tomllib.load(f)
    data["datasets"] = data["datasets"][:1]
    data["datasets"][0]["n_test"] = 10  # 5 tokens per window: 50 rows ≥ d = 32 (the study's floor)
    data["perturbations"] = [{"name": "clean"}]
    data["models"] = [{"name": "bolt", "kind": "tsfm", "model": f"chronos-bolt:{bolt}"}]
    data["causal"] = {"enabled": False}
    res = run_study(data, out=tmp_path / "out", report=False, progress=False, log=lambda m: None)
    import pandas as pd

    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert (df["model"] == "bolt").all() and sorted(df["layer"]) == [0, 1, 2]
    err = df["error"].astype(object).where(df["error"].notna(), "").astype(str)
    assert (err == "").all(), err.tolist()
    assert np.isfinite(df["nmse"]).all()
    assert not any(c.error for c in res.cells)


def test_study_config_refuses_tsfm_without_a_model():
    from isofast.study.config import ConfigError, ModelConfig

    with pytest.raises(ConfigError, match="tsfm"):
        ModelConfig(name="x", kind="tsfm")


def test_cli_forecast_with_a_family_spec(bolt, tmp_path):
    out = tmp_path / "fc"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "isofast",
            "forecast",
            "--model",
            f"chronos-bolt:{bolt}",
            "--data",
            "co2",
            "--context",
            "64",
            "--horizon",
            "8",
            "--n-windows",
            "3",
            "--window-mode",
            "sliding",
            "--samples",
            "9",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    z = np.load(out / "forecasts.npz")  # no pickled objects in it
    assert z["samples"].shape == (3, 9, 8) and np.isfinite(z["samples"]).all()
    assert np.all(np.diff(z["samples"], axis=1) >= 0)  # the 9 quantile levels, in order
    m = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(m["metrics"]["nmse"]) and m["settings"]["family"] == "chronos-bolt"
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "isofast",
            "forecast",
            "--model",
            f"chronos-bolt:{bolt}",
            "--data",
            "co2",
            "--first-digit",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "language models only" in bad.stderr
