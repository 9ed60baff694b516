"""The command-line package: one module per command, no command importing
another, and ``--data`` meaning the same in every command that reads series."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

import isofast.cli
from isofast.cli import COMMANDS, main

CLI_DIR = Path(isofast.cli.__file__).parent
COMMAND_NAMES = {m.rsplit(".", 1)[1] for m in COMMANDS}


def _imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` in ``path`` names, relative imports resolved
    against ``isofast.cli`` (``from isofast.cli import x`` names ``isofast.cli.x``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(["isofast", "cli"][: 3 - node.level] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def test_every_command_module_is_registered():
    modules = {p.stem for p in CLI_DIR.glob("*.py") if not p.stem.startswith("_")}
    assert modules == COMMAND_NAMES
    assert len(COMMANDS) == len(set(COMMANDS))


@pytest.mark.parametrize("path", sorted(CLI_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_command_module_imports_another(path):
    if path.stem == "__init__":  # the registry imports them all, by name
        return
    others = {f"isofast.cli.{n}" for n in COMMAND_NAMES} - {f"isofast.cli.{path.stem}"}
    crossed = sorted(_imported_modules(path) & others)
    assert not crossed, f"{path.name} imports {crossed}; shared code belongs in isofast.cli._common or the library"


def test_the_cross_import_check_sees_relative_and_from_imports(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("from . import capture\nfrom .head import run_head\nfrom isofast.cli import data\n")
    got = _imported_modules(p)
    assert {"isofast.cli.capture", "isofast.cli.head", "isofast.cli.data"} <= got


@pytest.mark.parametrize(
    "old",
    ["isofast.analyze_cli", "isofast.capture_cli", "isofast.head_cli", "isofast.demo_cli", "isofast.doctor"],
)
def test_old_module_names_are_gone(old):
    assert importlib.util.find_spec(old) is None


@pytest.mark.parametrize("old", ["isofast.data.cli", "isofast.study.cli", "isofast.adapt.cli"])
def test_old_subpackage_cli_modules_are_gone(old):
    assert importlib.util.find_spec(old) is None


# ------------------------------------------------------------------ --data
@pytest.mark.parametrize(
    "argv",
    [
        ["capture", "--model", "tiny-llama"],
        ["forecast", "--model", "tiny-llama"],
        ["head", "--model", "tiny-llama"],
    ],
    ids=lambda a: a[0],
)
def test_data_that_is_neither_a_file_nor_a_dataset_is_one_line_exit_2(argv, tmp_path, capsys):
    rc = main([*argv, "--data", "no_such_dataset", *(["--out", str(tmp_path / "o")] if argv[0] != "head" else [])])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert f"isofast {argv[0]}: error:" in err[0] and "neither a file nor a dataset name" in err[0]
    assert "airpassengers" in err[0]  # the datasets are listed


@pytest.mark.parametrize("cmd", ["capture", "forecast", "head"])
def test_missing_data_file_is_one_line_exit_2(cmd, tmp_path, capsys):
    extra = ["--out", str(tmp_path / "o")] if cmd != "head" else []
    rc = main([cmd, "--model", "tiny-llama", "--data", str(tmp_path / "nope.csv"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no data file" in err[0]


def test_capture_reads_a_dataset_name(tmp_path, capsys):
    pytest.importorskip("torch")
    from isofast.store import open_capture

    out = tmp_path / "cap"
    argv = ["capture", "--model", "tiny-llama", "--data", "airpassengers", "--context", "24"]
    argv += ["--layers", "1", "--sites", "residual", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert "captured" in capsys.readouterr().out
    cap = open_capture(out)
    assert cap.manifest["series_names"] == ["airpassengers"]
    w = cap.windows()
    assert len(w) == 1 and w["start"][0] == 144 - 24 and w["n_values"][0] == 24
