"""`isofast analyze` on files, capture-like inputs and the bundled example."""

from __future__ import annotations

import json

import numpy as np
import pytest

import isofast
from isofast.cli import main


def test_analyze_npy_table_and_json(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 16)).astype(np.float32)
    p = tmp_path / "x.npy"
    np.save(p, X)
    assert main(["analyze", str(p)]) == 0
    out = capsys.readouterr().out
    for name in ("isoscore", "effective_dim", "partition_isotropy", "avg_cosine_centered"):
        assert name in out
    assert main(["analyze", str(p), "--json", "--rows", "0:200"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["n"] == 200 and d["dim"] == 16
    assert d["isoscore"] == pytest.approx(isofast.isoscore(X[:200]), rel=1e-12)


def test_analyze_example(capsys):
    assert main(["analyze", "--example", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d) == {"example layer 1", "example layer 15", "example layer 30"}
    for rep in d.values():
        assert rep["n"] == 578 and rep["dim"] == 576
        assert rep["log_partition_isotropy"] < 0


def test_analyze_errors(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "missing.npy")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"\x93NUMPY garbage")
    assert main(["analyze", str(bad)]) == 2
    assert "bad.npy" in capsys.readouterr().err
    np.save(tmp_path / "v.npy", np.ones(5))
    assert main(["analyze", str(tmp_path / "v.npy")]) == 2
    assert "2-D" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["analyze", "--no-such-flag"])
