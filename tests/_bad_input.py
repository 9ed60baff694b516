"""Helpers shared by the tests/test_bad_input_*.py modules (issue 17): the
CLI run in a subprocess (so a hang or a crash is seen as such), and the
assertion that an error is one line on stderr with the right exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT / "python") + os.pathsep + e.get("PYTHONPATH", "")
    return e


def cli(*args, timeout: float = 120, preexec=None) -> subprocess.CompletedProcess:
    """``python -m isofast ARGS`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "isofast", *map(str, args)],
        capture_output=True,
        text=True,
        env=env(),
        timeout=timeout,
        preexec_fn=preexec,
    )


def assert_one_line_error(r: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """Exit ``code``, no traceback, one line on stderr containing ``needles``."""
    err = r.stderr.strip()
    assert r.returncode == code, (r.returncode, err)
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, (n, err)
    return err
