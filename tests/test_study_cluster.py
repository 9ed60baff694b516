"""The study's cells on a Dask cluster, killed workers, interrupted runs, and the
cluster's bad input (isofast.study.schedule).

"Equal" here is exact: every column of the results table is compared with
``check_exact=True``. That holds because a cell is a pure function of the
configuration and the cache (seeded models, seeded sampling, the same torch
thread count in every process, deterministic Rust kernels); docs/cluster.md
states the promise and the cases (a GPU, different thread counts) where only a
tolerance can hold.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")
pytest.importorskip("torch")

from isofast.study.config import bundled_config_path  # noqa: E402
from isofast.study.runner import run_study  # noqa: E402
from isofast.study.schedule import ClusterError, check_shared_cache, connect  # noqa: E402

QUIET = {"progress": False, "report": False, "log": lambda m: None}


def _grid() -> dict:
    """The tiny study without causal tests (they run after the grid, in the
    study's own process, and do not exercise the scheduler)."""
    with open(bundled_config_path("tiny"), "rb") as f:
        d = tomllib.load(f)
    d["causal"] = {"enabled": False}
    d["report"]["enabled"] = False
    return d


def _toml(path: Path) -> Path:
    """The same grid as a TOML file, for the CLI."""
    text = bundled_config_path("tiny").read_text()
    text = text[: text.index("[[causal.tests]]")] + "[causal]\nenabled = false\n\n" + text[text.index("[report]") :]
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    out = tmp_path_factory.mktemp("seq")
    return run_study(_grid(), out=out, **QUIET)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert len(a) and list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True)


def test_two_worker_cluster_gives_the_sequential_table(sequential, client, tmp_path):
    res = run_study(_grid(), out=tmp_path, client=client, **QUIET)
    assert not any(c.error for c in res.cells)
    assert res.counters["cells"] == {"computed": 36, "cached": 0}
    _same(sequential.table, res.table)
    _same(sequential.windows, res.windows)
    _same(sequential.baselines, res.baselines)
    # every cell ran on a worker, none in this process: the workers' counters came back
    assert res.counters["forecast"]["computed"] == 36
    assert res.counters["train"]["computed"] == 7  # PatchTST once per dataset + the T5 once, never per perturbation


def test_local_cluster_from_workers_argument(sequential, tmp_path):
    res = run_study(_grid(), out=tmp_path, workers=2, **QUIET)
    _same(sequential.table, res.table)


def test_a_worker_killed_during_a_cell_does_not_change_the_table(sequential, tmp_path):
    """SIGKILL the worker process that is running a cell, until the scheduler
    has seen a worker die under a cell task (TaskState.suspicious), then check
    the table."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
    )
    c = distributed.Client(cluster)
    box: dict = {}

    def run():
        try:
            box["res"] = run_study(_grid(), out=tmp_path, client=c, **QUIET)
        except BaseException as exc:  # reported below
            box["exc"] = exc

    t = threading.Thread(target=run)
    t.start()
    killed = 0
    try:
        deadline = time.time() + 240
        while t.is_alive() and time.time() < deadline:
            sched = cluster.scheduler
            if any(k.startswith("isofast-cell-") and ts.suspicious > 0 for k, ts in list(sched.tasks.items())):
                break
            busy = [(w, keys) for w, keys in c.processing().items() if any(k.startswith("isofast-cell-") for k in keys)]
            if busy and killed < 6:
                w = busy[0][0]
                try:
                    pid = c.run(os.getpid, workers=[w])[w]
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except (KeyError, OSError, distributed.comm.core.CommClosedError):
                    pass
                time.sleep(0.5)
            time.sleep(0.05)
        suspicious = sum(
            ts.suspicious for k, ts in list(cluster.scheduler.tasks.items()) if k.startswith("isofast-cell-")
        )
        t.join(300)
    finally:
        c.close()
        cluster.close()
    assert "exc" not in box, box.get("exc")
    assert killed >= 1 and suspicious >= 1, "no worker died while running a cell"
    res = box["res"]
    assert not any(cell.error for cell in res.cells)
    _same(sequential.table, res.table)


def test_an_interrupted_run_resumes_with_only_the_unfinished_cells(sequential, tmp_path):
    cfg = _toml(tmp_path / "grid.toml")
    out = tmp_path / "run"
    cells = out / "cache" / "cells"
    proc = subprocess.Popen(
        [sys.executable, "-m", "isofast", "study", str(cfg), "--out", str(out), "--no-report", "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if cells.is_dir() and len(list(cells.glob("*.json"))) >= 8:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    finished = len(list(cells.glob("*.json")))  # complete entries only: temporary names start with '.'
    assert 8 <= finished < 36
    res = run_study(_grid(), out=out, **QUIET)
    assert res.counters["cells"] == {"computed": 36 - finished, "cached": finished}
    assert not any(c.error for c in res.cells)
    _same(sequential.table, res.table)


def test_a_damaged_cell_entry_is_recomputed_and_counted(sequential, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(Path(sequential.out) / "cache", out / "cache")
    victims = sorted((out / "cache" / "cells").glob("*.json"))[:3]
    victims[0].write_bytes(victims[0].read_bytes()[:-40])  # truncated
    b = bytearray(victims[1].read_bytes())
    i = b.index(b'"nmse": ') + 9
    b[i] = ord("7") if b[i] != ord("7") else ord("3")  # one digit of a number changed
    victims[1].write_bytes(bytes(b))
    victims[2].write_bytes(b"")  # emptied
    res = run_study(_grid(), out=out, **QUIET)
    assert res.counters["cells"] == {"computed": 3, "cached": 33, "damaged": 3}
    _same(sequential.table, res.table)


@pytest.mark.parametrize("damage", ["flip", "truncate", "swap", "delete", "marker"])
def test_a_damaged_capture_is_recomputed_never_read_as_data(sequential, tmp_path, damage):
    out = tmp_path / "run"
    shutil.copytree(Path(sequential.out) / "cache", out / "cache")
    for stage in ("cells", "isotropy"):  # so that the captures are read again
        shutil.rmtree(out / "cache" / stage)
    folders = sorted(f for f in (out / "cache" / "captures").iterdir() if (f / "L001.npy").is_file())
    f = folders[0]
    a, b = f / "L001.npy", f / "L002.npy"
    if damage == "flip":
        data = bytearray(a.read_bytes())
        data[-5] ^= 0x40  # one float of the last row
        a.write_bytes(bytes(data))
    elif damage == "truncate":
        a.write_bytes(a.read_bytes()[:-64])
    elif damage == "swap":  # two layers' files exchanged: same shape, other numbers
        da, db = a.read_bytes(), b.read_bytes()
        a.write_bytes(db)
        b.write_bytes(da)
    elif damage == "delete":
        a.unlink()
    else:
        (f / "complete.json").write_text('{"layers": [0, 1')
    res = run_study(_grid(), out=out, **QUIET)
    assert res.counters["capture"]["damaged"] == 1
    assert res.counters["capture"]["computed"] == 1  # that one capture, recomputed
    _same(sequential.table, res.table)


def test_a_failed_cell_is_not_stored_and_is_retried_on_the_next_run(sequential, tmp_path, monkeypatch):
    from isofast.study.cell import CellRunner

    real = CellRunner.run_cell

    def flaky(self, model, split, inputs, *a, **k):
        if inputs.dataset == "RBF_1" and model.name == "patchtst":
            raise MemoryError("simulated: out of memory")
        return real(self, model, split, inputs, *a, **k)

    monkeypatch.setattr(CellRunner, "run_cell", flaky)
    first = run_study(_grid(), out=tmp_path, **QUIET)
    failed = [c for c in first.cells if c.error]
    assert [(c.model, c.dataset) for c in failed] == [("patchtst", "RBF_1")] * 2
    assert "MemoryError: simulated" in failed[0].error
    monkeypatch.setattr(CellRunner, "run_cell", real)
    again = run_study(_grid(), out=tmp_path, **QUIET)
    assert again.counters["cells"] == {"computed": 2, "cached": 34}
    _same(sequential.table, again.table)


# ---------------------------------------------------------------- bad input
def test_an_unreachable_scheduler_is_named_within_seconds():
    t0 = time.perf_counter()
    with pytest.raises(ClusterError, match=re.escape("tcp://127.0.0.1:9")):
        connect("tcp://127.0.0.1:9", timeout=2)
    assert time.perf_counter() - t0 < 15


def test_cli_unreachable_scheduler_is_one_line(tmp_path):
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "isofast",
            "study",
            str(_toml(tmp_path / "g.toml")),
            "--out",
            str(tmp_path / "o"),
            "--scheduler",
            "tcp://127.0.0.1:9",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode in (1, 2)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines and "tcp://127.0.0.1:9" in lines[-1] and "Traceback" not in p.stderr


@pytest.mark.parametrize("n", ["0", "-3", "two"])
def test_cli_refuses_a_bad_number_of_workers(n, capsys):
    from isofast.cli import main

    with pytest.raises(SystemExit) as e:
        main(["study", "tiny", "--workers", n])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--workers" in err[0] and "positive integer" in err[0]


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_api_refuses_a_bad_number_of_workers(n, tmp_path):
    with pytest.raises(ValueError, match="workers"):
        run_study(_grid(), out=tmp_path, workers=n, **QUIET)


def test_scheduler_and_workers_are_exclusive(tmp_path):
    with pytest.raises(ValueError, match="at most one"):
        run_study(_grid(), out=tmp_path, workers=2, scheduler="tcp://127.0.0.1:9", **QUIET)


def _mount_namespace_works() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    p = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt && umount /mnt"], capture_output=True, timeout=30
    )
    return p.returncode == 0


@pytest.mark.skipif(not _mount_namespace_works(), reason="needs root and mount namespaces (unshare -m)")
def test_a_cache_folder_the_workers_cannot_see_is_refused_at_start(tmp_path):
    """A worker in its own mount namespace, with an empty tmpfs over the cache's
    parent: exactly what a node-local path looks like from another node."""
    shared = tmp_path / "node-local"
    (shared / "cache").mkdir(parents=True)
    cluster = distributed.LocalCluster(n_workers=0, dashboard_address=None, silence_logs=50)
    c = distributed.Client(cluster)
    script = (
        f"mount -t tmpfs none {shared} && exec {sys.executable} -m distributed.cli.dask_worker "
        f"{cluster.scheduler_address} --nworkers 1 --nthreads 1 --no-dashboard"
    )
    worker = subprocess.Popen(
        ["unshare", "-m", "sh", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        c.wait_for_workers(1, timeout=60)
        with pytest.raises(ClusterError, match="not visible from 1 of 1 Dask workers"):
            check_shared_cache(c, shared / "cache")
        with pytest.raises(ClusterError, match=re.escape(str(shared / "cache"))):
            run_study(_grid(), out=tmp_path / "o", cache=shared / "cache", client=c, **QUIET)
        assert not list((shared / "cache").glob(".probe-*"))  # the probe is removed
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
        c.close()
        cluster.close()


def test_a_scheduler_without_workers_is_refused(tmp_path):
    cluster = distributed.LocalCluster(n_workers=0, dashboard_address=None, silence_logs=50)
    c = distributed.Client(cluster)
    try:
        with pytest.raises(ClusterError, match="has no workers"):
            check_shared_cache(c, tmp_path, wait=1)
    finally:
        c.close()
        cluster.close()
