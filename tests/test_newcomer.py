"""The newcomer's first hour (issue 16): `isofast demo`, `isofast doctor`,
`isofast --version`, presets in `isofast data`, numpy conventions of capture
layers, one-line CLI errors, and what the wheel must contain."""

from __future__ import annotations

import builtins
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import isofast
from isofast.cli import main

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ --version
def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"isofast {isofast.__version__}"


def test_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["no-such-command"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


# ------------------------------------------------------------------ demo
def _fake_study(tmp_path, calls, sentence="Isotropy does not predict NMSE here."):
    def run_study(config, out=None, **kw):
        calls.append((config, out, kw))
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.html").write_text("<html></html>")
        return SimpleNamespace(
            cells=[SimpleNamespace(error=None)] * 3,
            files={"report": str(out / "report.html")},
            verdict_sentence=sentence,
        )

    return run_study


def test_demo_runs_default_study_and_prints_report_and_verdict(tmp_path, monkeypatch, capsys):
    import isofast.study

    calls = []
    monkeypatch.setattr(isofast.study, "run_study", _fake_study(tmp_path, calls))
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--no-progress"]) == 0
    assert calls[0][0] == "default" and Path(calls[0][1]) == out
    text = capsys.readouterr().out
    assert f"report: {(out / 'report.html').resolve()}" in text
    assert "verdict: Isotropy does not predict NMSE here." in text


def test_demo_default_out_and_empty_verdict(tmp_path, monkeypatch, capsys):
    import isofast.study

    calls = []
    monkeypatch.setattr(isofast.study, "run_study", _fake_study(tmp_path, calls, sentence=""))
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    assert Path(calls[0][1]) == Path("isofast-demo")
    text = capsys.readouterr().out
    assert "report:" in text and "verdict" not in text


def test_demo_refuses_out_that_is_a_file(tmp_path, monkeypatch, capsys):
    import isofast.study

    calls = []
    monkeypatch.setattr(isofast.study, "run_study", _fake_study(tmp_path, calls))
    f = tmp_path / "a-file"
    f.write_text("x")
    assert main(["demo", "--out", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "existing file" in err
    assert not calls


def test_makefile_demo_calls_isofast_demo():
    mk = (ROOT / "Makefile").read_text()
    demo = mk.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "isofast demo" in demo


# ------------------------------------------------------------------ data presets
def test_data_list_shows_presets_with_kernels(capsys):
    from isofast.data import PRESETS

    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert any(line.split()[:1] == [name] for line in out.splitlines()), name
    row = next(line for line in out.splitlines() if line.startswith("DotProduct_1 "))
    assert "DotProduct" in row.split()[1] and "sigma_0=1" in row
    assert main(["data", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    presets = [r for r in rows if r.get("kind") == "kernelsynth"]
    assert [r["name"] for r in presets] == list(PRESETS)
    dp = next(r for r in presets if r["name"] == "DotProduct_1")
    assert dp["kernel"] == "DotProduct" and dp["parameters"] == {"sigma_0": 1.0}
    assert any(r.get("kind") == "dataset" for r in rows)


def test_data_show_preset_json_and_plot(tmp_path, capsys):
    assert main(["data", "show", "DotProduct_1", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["name"] == "DotProduct_1" and d["length"] == 1024 and d["domain"] == "synthetic"
    assert "DotProduct" in d["kernel"]
    pytest.importorskip("matplotlib")
    png = tmp_path / "dp.png"
    assert main(["data", "show", "DotProduct_1", "--plot", str(png), "--length", "256"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_data_show_unknown_lists_presets_and_datasets(capsys):
    assert main(["data", "show", "NoSuchThing"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "DotProduct_1" in err and "WhiteKernel_0.1" in err and "co2" in err


# ------------------------------------------------------------------ numpy conventions
def _layer(tmp_path, dtype):
    from isofast.store import CaptureLayer, storage_dtype, write_npy

    rng = np.random.default_rng(0)
    x32 = rng.standard_normal((7, 5)).astype(np.float32)
    if dtype == "bfloat16":
        bits = (x32.view(np.uint32) >> 16).astype(np.uint16)
        parts = [bits[:3], bits[3:]]
    else:
        parts = [x32[:3].astype(dtype), x32[3:].astype(dtype)]
    files = []
    for k, p in enumerate(parts):
        f = tmp_path / dtype / f"{k:05d}.npy"
        write_npy(f, p)
        files.append(f)
    assert parts[0].dtype == storage_dtype(dtype)
    return CaptureLayer(root=tmp_path, site="residual", layer=1, files=files, rows=[3, 4], dim=5, isofast_dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_capture_layer_is_an_array_to_numpy(tmp_path, dtype):
    layer = _layer(tmp_path, dtype)
    assert len(layer) == 7
    a = np.asarray(layer)
    ref = layer.to_numpy(float32=dtype == "bfloat16")
    assert a.shape == ref.shape == (7, 5)
    assert a.dtype == ref.dtype
    assert a.dtype == (np.float32 if dtype == "bfloat16" else np.dtype(dtype))
    np.testing.assert_array_equal(a, ref)
    assert a.dtype != np.uint16
    assert np.asarray(layer, dtype=np.float64).dtype == np.float64
    assert np.array(layer, copy=True).shape == (7, 5)
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        with pytest.raises(ValueError):
            np.asarray(layer, copy=False)
    # isofast still streams the shards (bfloat16 read as bfloat16, not as float32 copies)
    np.testing.assert_allclose(isofast.analyze(layer).mean, isofast.analyze(a).mean, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ doctor
def test_doctor_json(capsys):
    assert main(["doctor", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["packages"]["isofast"] == isofast.__version__
    assert r["packages"]["numpy"] == np.__version__
    for name in ("torch", "transformers", "dask", "chronos-forecasting", "timesfm", "uni2ts", "momentfm"):
        assert name in r["packages"]
    assert set(r["extras"]) >= {"torch", "dask", "data", "plot", "io"}
    assert {"smollm2", "minilm", "cache_root"} <= set(r["models"])
    assert isinstance(r["threads"]["rayon"], int) and r["threads"]["rayon"] >= 1
    assert "cpu_level" in r["simd"] and "devices" in r["cuda"]


def test_doctor_text(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for word in ("numpy", "torch", "rayon", "simd", "cuda", "smollm2", "momentfm"):
        assert word in out


def test_doctor_without_torch(monkeypatch, capsys):
    import importlib.metadata as md

    real_import = builtins.__import__
    real_version = md.version

    def no_torch(name, *a, **kw):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *a, **kw)

    def version(dist):
        if dist == "torch":
            raise md.PackageNotFoundError(dist)
        return real_version(dist)

    for mod in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", no_torch)
    monkeypatch.setattr(md, "version", version)
    assert main(["doctor", "--json"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    r = json.loads(captured.out)
    assert r["packages"]["torch"] == "not installed"
    assert r["threads"]["torch"] == "not installed"
    assert r["cuda"]["available"] is False and "torch" in r["cuda"]["reason"]
    assert main(["doctor"]) == 0
    assert "not installed" in capsys.readouterr().out


def test_doctor_is_fast_and_offline():
    import os
    import time

    env = dict(
        os.environ, HF_HUB_OFFLINE="1", no_proxy="*", http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9"
    )
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "isofast", "doctor"], capture_output=True, text=True, env=env, timeout=120
    )
    assert p.returncode == 0, p.stderr
    assert time.perf_counter() - t0 < 60  # seconds (torch's import dominates)


# ------------------------------------------------------------------ what the wheel ships
def test_package_data_is_in_the_package():
    pkg = Path(isofast.__file__).parent
    assert list((pkg / "examples").iterdir()), "bundled example data missing"
    configs = pkg / "study" / "configs"
    assert (configs / "default.toml").is_file() and (configs / "tiny.toml").is_file()
    assert (pkg / "py.typed").is_file()


def test_runtime_error_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    import isofast.study

    def boom(*a, **kw):
        raise RuntimeError("model exploded\nsecond line")

    monkeypatch.setattr(isofast.study, "run_study", boom)
    assert main(["demo", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "isofast demo: error: model exploded second line"
    assert not any("Traceback" in line for line in err)
