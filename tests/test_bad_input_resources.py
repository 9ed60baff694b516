"""Issue 17, class 1: no panic, no hang, no unbounded resource.

The same bad input goes through the Python API, the file sources and the
CLI: zero columns, a FIFO where a file is expected, a tile larger than the
data, thread counts swept over 1..60 or refused by the OS.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time

import isofast
import numpy as np
import pytest
from _bad_input import assert_one_line_error, cli
from isofast import _core
from isofast.errors import DimensionError, IsofastError, ResourceError

ZERO_COLS = np.zeros((10, 0))

#: every public statistic, as a callable of X
API = {
    "analyze": lambda X: isofast.analyze(X),
    "avg_cosine": lambda X: isofast.avg_cosine(X),
    "avg_cosine_centered": lambda X: isofast.avg_cosine(X, center=True),
    "isoscore": lambda X: isofast.isoscore(X),
    "effective_dim": lambda X: isofast.effective_dim(X),
    "row_norms": lambda X: isofast.row_norms(X),
    "partition_isotropy": lambda X: isofast.partition_isotropy(X),
    "log_partition": lambda X: isofast.log_partition(X, np.zeros(0)),
    "all_but_the_top": lambda X: isofast.all_but_the_top(X, 0),
    "self_similarity": lambda X: isofast.self_similarity(X, np.arange(len(X)) % 2),
    "Moments.update": lambda X: isofast.Moments(1).update(X),
    "kmeans": lambda X: isofast.kmeans(X, 2),
    "silhouette": lambda X: isofast.silhouette(X, np.arange(len(X)) % 2),
    "cluster_isotropy": lambda X: isofast.cluster_isotropy(X),
    "massive_rows": lambda X: isofast.massive_rows(X),
    "log_partition_head": lambda X: isofast.log_partition_head(X, X),
}

#: raw kernels of the bindings (the shared boundary every wrapper crosses)
CORE = {
    "unit_sum": lambda X: _core.unit_sum(X),
    "column_mean": lambda X: _core.column_mean(X),
    "row_norms": lambda X: _core.row_norms(X),
    "self_similarity": lambda X: _core.self_similarity(X, np.zeros(len(X), np.int64)),
    "log_partition": lambda X: _core.log_partition(X, np.zeros((0, 1))),
    "Moments.update": lambda X: _core.Moments(1).update(X),
}


@pytest.mark.parametrize("name", sorted(API))
@pytest.mark.parametrize("layout", ["C", "F", "torch", "list_of_chunks"])
def test_zero_columns_is_a_dimension_error_everywhere(name, layout):
    X = ZERO_COLS
    if layout == "F":
        X = np.asfortranarray(X)
    elif layout == "torch":
        torch = pytest.importorskip("torch")
        X = torch.zeros(10, 0)
    elif layout == "list_of_chunks":
        if name in (
            "self_similarity",
            "kmeans",
            "silhouette",
            "cluster_isotropy",
            "all_but_the_top",
            "log_partition_head",
            "massive_rows",
        ):
            pytest.skip("takes one array")
        X = [np.zeros((4, 0)), np.zeros((6, 0))]
    with pytest.raises(DimensionError, match="0 columns"):
        API[name](X)


@pytest.mark.parametrize("name", sorted(CORE))
def test_zero_columns_refused_by_the_bindings(name):
    with pytest.raises(DimensionError, match="0 columns"):
        CORE[name](ZERO_COLS)


def test_zero_columns_in_files(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.zeros((10, 0)))
    with pytest.raises(DimensionError, match="x.npy.*0 columns"):
        isofast.open_source(p)
    assert_one_line_error(cli("analyze", p, "-q"), 2, "x.npy", "0 columns")


# ------------------------------------------------------------------ threads
def _os_threads() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads line")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux /proc needed")
def test_thread_pools_are_bounded_after_a_sweep():
    X = np.random.default_rng(0).normal(size=(300, 12))
    before = _os_threads()
    for n in range(1, 61):
        isofast.avg_cosine(X, n_threads=n)
        isofast.analyze(X, n_threads=n)
    time.sleep(0.3)  # evicted pools end their threads asynchronously
    after = _os_threads()
    # at most 4 cached pools of at most max(8, 2·cores) threads each; the
    # unbounded cache held 1 + 2 + … + 60 = 1830 threads.
    bound = 4 * max(8, 2 * _core.available_threads())
    assert after - before <= bound, (before, after, bound)
    # and a huge request is not honoured thread for thread
    isofast.avg_cosine(X, n_threads=100_000)
    assert _os_threads() - before <= bound + max(8, 2 * _core.available_threads())


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (True, TypeError), (2.5, TypeError), ("4", TypeError)])
@pytest.mark.parametrize("name", ["avg_cosine", "analyze", "row_norms", "kmeans", "Moments.update"])
def test_bad_n_threads_named(name, bad, exc):
    X = np.random.default_rng(1).normal(size=(20, 3))
    f = {
        "avg_cosine": lambda: isofast.avg_cosine(X, n_threads=bad),
        "analyze": lambda: isofast.analyze(X, n_threads=bad),
        "row_norms": lambda: isofast.row_norms(X, n_threads=bad),
        "kmeans": lambda: isofast.kmeans(X, 2, n_threads=bad),
        "Moments.update": lambda: isofast.Moments(3).update(X, n_threads=bad),
    }[name]
    with pytest.raises(exc, match="n_threads") as ei:
        f()
    assert isinstance(ei.value, IsofastError)


def test_bad_threads_on_the_cli(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.random.default_rng(2).normal(size=(50, 4)))
    assert_one_line_error(cli("analyze", p, "-q", "--threads", "-3"), 2, "n_threads")


_LIMITED = """
import resource, sys
import numpy as np
import isofast
from isofast.errors import ResourceError
X = np.random.default_rng(0).normal(size=(2000, 16))
vm = int([l for l in open('/proc/self/status') if l.startswith('VmSize')][0].split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (8 << 20), resource.RLIM_INFINITY))
ok = err = 0
for n in range(2, 9):
    try:
        isofast.avg_cosine(X, n_threads=n)
        ok += 1
    except (ResourceError, MemoryError) as e:
        err += 1
print('ok', ok, 'refused', err)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS on Linux")
def test_pool_refused_by_the_os_is_an_error_not_a_panic():
    import subprocess

    from _bad_input import env

    r = subprocess.run([sys.executable, "-c", _LIMITED], capture_output=True, text=True, env=env(), timeout=120)
    # no panic ("internal error"), no abort: every call either ran or was
    # refused with ResourceError/MemoryError
    assert r.returncode == 0, r.stderr[-2000:]
    assert "internal error" not in r.stderr and "panicked" not in r.stderr, r.stderr[-2000:]
    assert r.stdout.startswith("ok "), r.stdout


# ------------------------------------------------------------------ tiles
def test_tile_larger_than_the_data_is_bounded_by_the_data(tmp_path):
    p = tmp_path / "x.npy"
    X = np.random.default_rng(3).normal(size=(500, 4))  # 16 KB
    np.save(p, X)
    src = isofast.open_source(p, tile_bytes=10**12 * 2**20)
    assert src.tile_rows == 500
    chunks = list(src.iter_chunks())
    assert sum(len(c) for c in chunks) == 500
    rep = isofast.analyze(src)
    np.testing.assert_allclose(rep.mean, X.mean(axis=0), rtol=1e-12, atol=1e-15)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS on Linux")
def test_cli_tile_mb_huge_under_a_memory_limit(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.random.default_rng(4).normal(size=(500, 4)))

    def limit():  # 6 GiB of address space: 977 GiB cannot be allocated
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, resource.RLIM_INFINITY))

    r = cli("analyze", p, "-q", "--tile-mb", "1000000", preexec=limit)
    assert r.returncode == 0, r.stderr
    assert "500" in r.stdout


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_tile_bytes_named(tmp_path, bad):
    p = tmp_path / "x.npy"
    np.save(p, np.zeros((3, 2)))
    with pytest.raises((ValueError, TypeError), match="tile_bytes"):
        isofast.open_source(p, tile_bytes=bad)


@pytest.mark.parametrize("bad", ["0", "-5", "nan"])
def test_bad_tile_mb_on_the_cli(tmp_path, bad):
    p = tmp_path / "x.npy"
    np.save(p, np.zeros((3, 2)))
    assert_one_line_error(cli("analyze", p, "-q", f"--tile-mb={bad}"), 2, "--tile-mb")


# ------------------------------------------------------------------ FIFOs
def _in_thread(f, timeout=20):
    out = {}

    def go():
        try:
            out["value"] = f()
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "blocked (a FIFO was opened for reading)"
    return out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["x.npy", "x.safetensors", "x.npz", "x.parquet"])
def test_fifo_is_refused_not_waited_on(tmp_path, name):
    p = tmp_path / name
    os.mkfifo(p)
    out = _in_thread(lambda: isofast.open_source(p))
    e = out.get("error")
    assert isinstance(e, OSError) and isinstance(e, IsofastError), out
    assert name in str(e) and "FIFO" in str(e)
    assert_one_line_error(cli("analyze", p, "-q", timeout=60), 2, name, "FIFO")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_shard_in_a_folder_is_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 3)))
    os.mkfifo(tmp_path / "b.npy")
    out = _in_thread(lambda: isofast.open_source(tmp_path))
    e = out.get("error")
    assert isinstance(e, OSError) and "b.npy" in str(e), out


def test_resource_error_is_an_oserror():
    assert issubclass(ResourceError, OSError) and issubclass(ResourceError, IsofastError)
