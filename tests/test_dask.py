"""isofast.dask on a real multi-process LocalCluster against the in-memory
isofast.analyze (≤ 1e-12 relative), including a worker killed mid-run."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import isofast  # noqa: E402
import isofast.dask as idask
from isofast.errors import NonFiniteError  # noqa: E402

FIELDS = (
    "isoscore",
    "participation_ratio",
    "effective_rank",
    "avg_cosine",
    "avg_cosine_centered",
    "log_partition_isotropy",
    "log_partition_isotropy_centered",
)


def same(a, b, rel=1e-12):
    assert a.n == b.n and a.dim == b.dim
    np.testing.assert_allclose(a.eigenvalues, b.eigenvalues, rtol=rel, atol=rel * b.eigenvalues[0])
    np.testing.assert_allclose(a.mean, b.mean, rtol=rel, atol=rel * np.abs(b.mean).max())
    assert a.effective_dim == b.effective_dim
    for k in FIELDS:
        if getattr(b, k) is None:  # not computed (center=False / partition=False)
            assert getattr(a, k) is None, k
            continue
        assert getattr(a, k) == pytest.approx(getattr(b, k), rel=rel, abs=rel), k


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None, silence_logs=40
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(11)
    return rng.standard_normal((6000, 40)) * np.linspace(4, 0.2, 40) + np.linspace(-1, 2, 40)


def test_distributed_equals_in_memory(client, X):
    for arr in (X, X.astype(np.float32)):
        # uneven row chunks and split columns (rechunked to whole rows)
        x = da.from_array(arr, chunks=((700,) * 8 + (400,), (25, 15)))
        same(idask.analyze(x, client=client), isofast.analyze(arr))


def test_default_client_and_split_every(client, X):
    x = da.from_array(X, chunks=(500, 40))
    rep = idask.analyze(x, split_every=2)  # the module's client is the default one
    same(rep, isofast.analyze(X))
    assert "12 blocks" in rep.notes[-1]


def test_local_schedulers(X):
    x = da.from_array(X, chunks=(1000, 40))
    base = isofast.analyze(X)
    same(idask.analyze(x, scheduler="sync"), base)
    same(idask.analyze(x, scheduler="threads", center=False), isofast.analyze(X, center=False))


def test_bfloat16_bit_patterns(client, X):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bits = X.astype(ml_dtypes.bfloat16).view(np.uint16)
    x = da.from_array(bits, chunks=(1500, 40))
    same(idask.analyze(x, dtype="bfloat16", client=client), isofast.analyze(bits, dtype="bfloat16"))


def test_moments_and_thread_plan(client, X):
    m = idask.moments(da.from_array(X, chunks=(999, 40)), client=client)
    ref = isofast.Moments(40).update(X)
    assert m.n == ref.n
    np.testing.assert_allclose(m.comoment(), ref.comoment(), rtol=1e-12, atol=1e-12 * np.abs(ref.comoment()).max())
    plan = idask.rust_threads(client)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert sorted(plan.values()) == [max(1, cores // 2)] * 2  # 2 one-thread workers share the host


def test_from_source_reads_on_workers(client, X, tmp_path):
    np.save(tmp_path / "x.npy", X.astype(np.float32))
    x = idask.from_source(tmp_path / "x.npy", block_rows=800, rows=slice(250, 5750))
    assert x.shape == (5500, 40) and x.numblocks == (7, 1)
    same(idask.analyze(x, client=client), isofast.analyze(X[250:5750].astype(np.float32)))


def test_from_source_bfloat16_safetensors(client, X, tmp_path):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    st = pytest.importorskip("safetensors.numpy")
    bf = X.astype(ml_dtypes.bfloat16)
    st.save_file({"h": bf}, str(tmp_path / "h.safetensors"))
    x = idask.from_source(tmp_path / "h.safetensors", block_rows=2000)
    assert x.dtype == bf.dtype
    same(idask.analyze(x, client=client), isofast.analyze(bf))


def test_bad_inputs(client, X):
    with pytest.raises(TypeError, match="dask.array.Array"):
        idask.analyze(X)
    with pytest.raises(ValueError, match="2-D"):
        idask.analyze(da.zeros(10, chunks=5))
    with pytest.raises(ValueError, match="split_every"):
        idask.analyze(da.from_array(X, chunks=(1000, 40)), split_every=1)
    bad = X.copy()
    bad[2503, 7] = np.nan
    with pytest.raises(NonFiniteError, match=r"(?i)nan.*Dask block 2, which starts at row 2000") as info:
        idask.analyze(da.from_array(bad, chunks=(1000, 40)), client=client)
    assert (info.value.row, info.value.col) == (2503, 7)  # located in the whole array, not the block


def test_killed_worker_result_unchanged(client, X):
    """A worker process dies mid-computation; Dask recomputes its tasks
    (blocks and the states it held) and the result is still exact."""

    def slow(b):  # pickled by value: the workers need not import this module
        time.sleep(0.08)
        return b

    x = da.from_array(X, chunks=(150, 40)).map_blocks(slow, dtype=X.dtype)  # 40 blocks
    out: dict = {}

    def run():
        try:
            out["rep"] = idask.analyze(x, client=client, split_every=4)
        except BaseException as exc:  # noqa: BLE001 - reported below
            out["err"] = exc

    t = threading.Thread(target=run)
    t.start()
    victim = None
    deadline = time.time() + 30
    while victim is None and time.time() < deadline:
        time.sleep(0.3)
        busy = {w: keys for w, keys in client.processing().items() if keys}
        done = client.run_on_scheduler(
            lambda dask_scheduler: sum(
                1 for k, ts in dask_scheduler.tasks.items() if "isofast" in str(k) and ts.state == "memory"
            )
        )
        if busy and done >= 2:
            victim = sorted(busy)[0]
    assert victim is not None, "the computation never got going"

    async def die():  # run(wait=False) needs a coroutine function
        os._exit(1)

    client.run(die, workers=[victim], wait=False)
    t.join(timeout=90)
    assert not t.is_alive(), "analysis did not finish after the worker was killed"
    assert "err" not in out, out.get("err")
    same(out["rep"], isofast.analyze(X))
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.scheduler_info(n_workers=-1)["workers"]


# ------------------------------------------------------------------ clustered isotropy
CLUSTER_FIELDS = ("avg_cosine_centered", "isoscore", "log_partition_isotropy")


@pytest.fixture(scope="module")
def blobs():
    """Three separated blobs (all clusters > d rows), shifted far from 0."""
    rng = np.random.default_rng(5)
    d = 10
    e = np.eye(d)
    X = np.concatenate(
        [
            rng.standard_normal((900, d)) + 9 * e[0],
            0.5 * rng.standard_normal((700, d)) - 7 * e[1],
            2 * rng.standard_normal((600, d)),
        ]
    )
    return X[rng.permutation(len(X))] + 40.0


def _same_clusters(got, want, rel=1e-12, rel_partition=1e-12):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a["size"] == b["size"] and a["n_zero_norm"] == b["n_zero_norm"]
        for k in CLUSTER_FIELDS:
            r = rel_partition if k == "log_partition_isotropy" else rel
            if np.isnan(b[k]):
                assert np.isnan(a[k]), k
            else:
                assert a[k] == pytest.approx(b[k], rel=r, abs=r), k


def test_cluster_isotropy_matches_in_memory(client, blobs):
    cl = pytest.importorskip("isofast.cluster")
    x = da.from_array(blobs, chunks=(350, 10))
    rep = idask.cluster_isotropy(x, k_range=range(2, 6), fit_sample_size=1200, seed=4, client=client)
    # model selection = the in-memory recipe on the same seeded sample
    rows = idask.fit_sample_rows(len(blobs), 1200, 4)
    fit = cl.cluster_isotropy(blobs[rows], k_range=range(2, 6), fit_sample_size=None, seed=4, spectra=False)
    assert rep.best_k == fit.best_k == 3 and rep.silhouettes == fit.silhouettes
    # per-cluster values = the in-memory statistics of every row with these labels
    assert rep.labels.shape == (len(blobs),) and rep.n == len(blobs) and rep.mode == "full"
    ref = cl.cluster_statistics(blobs, rep.labels)
    _same_clusters(rep.clusters, ref)
    finite = [c["avg_cosine_centered"] for c in ref]
    assert rep.inter_cluster_cosine == pytest.approx(np.mean(finite), rel=1e-12, abs=1e-15)
    for c in range(3):  # centres are the cluster means over all rows
        np.testing.assert_allclose(rep.centers[c], blobs[rep.labels == c].mean(axis=0), rtol=1e-12)


def test_cluster_isotropy_small_cluster_and_cosine_only(blobs):
    """A cluster of ≤ d rows takes the Gram route; spectra=False gives cosines only."""
    cl = pytest.importorskip("isofast.cluster")
    rng = np.random.default_rng(9)
    X = np.concatenate([blobs[:1500], 0.1 * rng.standard_normal((8, 10)) + 90.0])
    x = da.from_array(X, chunks=(500, 10))
    rep = idask.cluster_isotropy(x, k_range=range(2, 6), fit_sample_size=None, seed=1, scheduler="sync")
    sizes = sorted(c["size"] for c in rep.clusters)
    assert sizes[0] == 8
    # Gram route: the centring null direction is rounding noise whose sign the
    # in-memory kernel uses as is; isofast.dask drops it (log Z = ln n_c
    # exactly there), hence the looser partition tolerance.
    _same_clusters(rep.clusters, cl.cluster_statistics(X, rep.labels), rel_partition=1e-7)
    cos = idask.cluster_isotropy(
        x, k_range=range(2, 6), fit_sample_size=None, seed=1, spectra=False, labels=False, scheduler="sync"
    )
    assert cos.labels.size == 0 and all(np.isnan(c["isoscore"]) for c in cos.clusters)
    for a, b in zip(cos.clusters, rep.clusters):
        assert a["avg_cosine_centered"] == pytest.approx(b["avg_cosine_centered"], rel=1e-12, abs=1e-15)
