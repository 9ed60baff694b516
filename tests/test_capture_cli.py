"""``isofast capture`` through its own registered parser (tiny model, fast)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

pytest.importorskip("torch")

from isofast.cli import capture as capture_cli  # noqa: E402
from isofast.store import open_capture  # noqa: E402


def _run(argv):
    parser = argparse.ArgumentParser(prog="isofast")
    capture_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_csv_column_context(tmp_path, capsys):
    csv = tmp_path / "data.csv"
    t = np.arange(60)
    lines = ["date,value,other"] + [f"2020-01-{1 + i % 28:02d},{10 + np.sin(i / 4):.4f},{i * 0.5}" for i in t]
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "cap"
    rc = _run(
        [
            "capture",
            "--model",
            "tiny-llama",
            "--data",
            str(csv),
            "--column",
            "value",
            "--time-column",
            "date",
            "--layers",
            "1,-1",
            "--out",
            str(out),
            "--positions",
            "digits",
            "--context",
            "24",
            "--quiet",
        ]
    )
    assert rc == 0
    assert "captured" in capsys.readouterr().out
    cap = open_capture(out)
    assert cap.layers == [1, 2] and cap.manifest["series_names"] == ["value"]
    w = cap.windows()
    assert len(w) == 1 and w["start"][0] == 36 and w["n_values"][0] == 24
    assert set(cap.tokens()["role"]) == {"digit"}
    # running again resumes a complete capture: nothing recomputed
    rc = _run(
        [
            "capture",
            "--model",
            "tiny-llama",
            "--data",
            str(csv),
            "--column",
            "value",
            "--time-column",
            "date",
            "--layers",
            "1,-1",
            "--out",
            str(out),
            "--positions",
            "digits",
            "--context",
            "24",
            "--quiet",
            "--json",
        ]
    )
    assert rc == 0 and json.loads(capsys.readouterr().out)["tokens_processed"] == 0


def test_cli_npy_rows_and_sliding(tmp_path, capsys):
    arr = np.random.default_rng(1).normal(size=(3, 40)).cumsum(axis=1)
    npy = tmp_path / "x.npy"
    np.save(npy, arr)
    out = tmp_path / "cap"
    rc = _run(
        [
            "capture",
            "--model",
            "tiny-gpt2",
            "--data",
            str(npy),
            "--layers",
            "all",
            "--sites",
            "residual",
            "--context",
            "16",
            "--window-mode",
            "sliding",
            "--out",
            str(out),
            "--quiet",
            "--dtype",
            "bfloat16",
        ]
    )
    assert rc == 0
    cap = open_capture(out)
    assert cap.sites == ["residual"] and cap.isofast_dtype == "bfloat16"
    w = cap.windows()
    assert len(w) == 3 * 2 and list(w["start"][:2]) == [0, 16]  # stride = context
    rc = _run(
        [
            "capture",
            "--model",
            "tiny-gpt2",
            "--data",
            str(npy),
            "--column",
            "1",
            "--out",
            str(tmp_path / "one"),
            "--quiet",
            "--layers",
            "2",
        ]
    )
    assert rc == 0 and len(open_capture(tmp_path / "one").windows()) == 1


def test_cli_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        _run(["capture", "--data", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        _run(["capture", "--data", "x.csv", "--out", "o", "--layers", "first"])
    np.save(tmp_path / "x.npy", np.arange(10.0))
    with pytest.raises(ValueError, match="unknown model"):
        _run(["capture", "--model", "nope", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "o"), "--quiet"])
