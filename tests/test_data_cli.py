"""`isofast data list` and `isofast data show` through isofast.cli.main."""

import json
import os
import sys

import numpy as np
import pytest

from isofast.cli import main


def _need(mod):
    if not os.environ.get("CI"):
        pytest.importorskip(mod)


def test_data_list_table(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["name", "domain", "frequency", "length", "source"]
    row = next(line for line in lines if line.startswith("co2 "))
    assert row.split()[:4] == ["co2", "nature", "W-SAT", "2284"]
    assert any(line.split()[:4] == ["taylor", "energy", "30min", "4032"] for line in lines)


def test_data_list_json(capsys):
    assert main(["data", "list", "--json", "--domain", "energy"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["taylor"]
    assert rows[0]["length"] == 4032 and rows[0]["source"] == "pmdarima"


def test_data_show_with_plot(tmp_path, capsys):
    _need("statsmodels")
    _need("matplotlib")
    png = tmp_path / "plots" / "co2.png"
    assert main(["data", "show", "co2", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    fields = dict(line.split(None, 1) for line in out.splitlines())
    assert fields["length"] == "2284" and fields["n_missing"] == "59"
    assert 330 < float(fields["mean"]) < 350 and float(fields["std"]) > 0
    assert png.exists() and png.stat().st_size > 20_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    img = imread(png)
    assert img.shape[0] >= 300 and img.shape[1] >= 800
    assert img[..., :3].std() > 0.05  # not a blank canvas


def test_data_show_json_and_nan_policy(capsys):
    _need("statsmodels")
    assert main(["data", "show", "co2", "--json", "--nan", "drop"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["length"] == 2284 - 59 and d["n_missing"] == 0
    assert main(["data", "show", "macrodata", "--column", "unemp", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["name"] == "macrodata:unemp" and d["length"] == 203


def test_data_show_unknown_name(capsys):
    assert main(["data", "show", "co3"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'co3'" in err and "co2" in err and "taylor" in err


def test_plot_without_matplotlib(monkeypatch, tmp_path, capsys):
    _need("statsmodels")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rc = main(["data", "show", "co2", "--plot", str(tmp_path / "x.png")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "isofast[plot]" in err
    assert not (tmp_path / "x.png").exists()


def test_plot_series_without_timestamps(tmp_path):
    _need("matplotlib")
    from isofast.data import Series
    from isofast.data.summary import plot_series

    s = Series("walk", np.cumsum(np.random.default_rng(0).standard_normal(300)))
    out = plot_series(s, str(tmp_path / "walk.png"))
    assert os.path.getsize(out) > 10_000
