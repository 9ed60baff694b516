"""Isotropy statistics of Dask arrays on any scheduler (``isofast.dask``).

:func:`analyze` computes the same report as :func:`isofast.analyze` — equal to
float64 rounding (≤ 1e-12 relative) — for a row-chunked ``N × d`` Dask array
that need not fit on one machine:

1. every block folds into a mergeable :class:`isofast.Moments` state on the
   worker that holds it; the states are merged in a tree (``split_every``
   states per merge task), so only d×d states travel, never rows;
2. the d×d eigendecompositions run once on the client;
3. the mean and eigenvectors go to the workers as one shared graph key (sent
   once per worker, not once per task), every block builds its second-pass
   state (partition functions, centred unit-vector sum) and those are merged
   in a tree again.

:func:`cluster_isotropy` does the clustered (local) isotropy the same way:
k-means and the choice of k on a seeded sample gathered to the client, then
distributed assignment of every row and per-cluster states in two
tree-reduced passes. :func:`from_source` makes a Dask array whose blocks the
workers read from files (:mod:`isofast.sources`).

Lost workers are handled by Dask itself: their tasks are recomputed from the
array's graph, and since every merge copies its inputs, a retried task can
never count a block twice.

Threads: a task runs the Rust kernels on ``n_threads`` threads, chosen so
that Dask threads × Rust threads ≤ cores on every host (see
:func:`rust_threads`). ``import dask`` below is the real package: this module
is ``isofast.dask`` and imports are absolute.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

import numpy as np

from isofast import _core
from isofast._input import as_matrix
from isofast.analysis import _check_rows, _needs_f64, fill_second_pass, report_from_moments
from isofast.moments import Moments
from isofast.report import IsotropyReport

__all__ = [
    "analyze",
    "cluster_isotropy",
    "fit_sample_rows",
    "moments",
    "from_source",
    "rust_threads",
]

ThreadPlan = int | dict[str, int] | None


def _require_dask():
    try:
        import dask as _dask
        import dask.array  # noqa: F401  (registers the array collection)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "isofast.dask needs dask[array] (and distributed for clusters): pip install 'isofast[dask]'"
        ) from exc
    return _dask


# ------------------------------------------------------------------ threads
def _cgroup_cpu_limit() -> int | None:
    """CPUs allowed by a cgroup CPU quota (Kubernetes CPU limits), if any.

    A quota does not show in the affinity mask: a pod limited to 8 CPUs on a
    64-core node still sees 64 cores there.
    """
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:  # cgroup v2: "quota period" or "max period"
            quota, period = f.read().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota_us = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period_us = int(f.read())
        if quota_us > 0 and period_us > 0:
            return max(1, math.ceil(quota_us / period_us))
    except (OSError, ValueError):
        pass
    return None


def _cores() -> int:
    """Cores this process may use: the affinity mask (SLURM/cpuset binding),
    capped by a cgroup CPU quota (container CPU limits)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    return min(n, limit) if limit else n


def _current_client(client: Any = None, scheduler: Any = None) -> Any:
    """The distributed client the computation will use, or None."""
    if client is not None:
        return client
    if scheduler is not None and not (isinstance(scheduler, str) and scheduler in ("distributed", "dask.distributed")):
        return scheduler if "Client" in type(scheduler).__name__ else None
    _dask = _require_dask()
    if scheduler is None and _dask.config.get("scheduler", None) not in (None, "distributed", "dask.distributed"):
        return None
    try:
        from distributed import Client
    except ImportError:
        return None
    try:
        return Client.current(allow_global=True)
    except ValueError:
        return None


def rust_threads(client: Any = None, scheduler: Any = None) -> ThreadPlan:
    """Rust threads per Dask task so that Dask threads × Rust threads ≤ cores.

    With a distributed client: a dict ``{worker address: threads}``, computed
    per host as ``cores // (sum of worker threads on that host)`` (at least 1),
    so two 1-thread workers on a 2-core machine get 1 Rust thread each. With a
    local scheduler: one number, ``cores // dask threads`` (all cores for the
    synchronous scheduler).
    """
    _dask = _require_dask()
    c = _current_client(client, scheduler)
    if c is not None:
        workers = c.scheduler_info(n_workers=-1)["workers"]
        cores = c.run(_cores)
        per_host: dict[str, int] = defaultdict(int)
        for w in workers.values():
            per_host[w.get("host", "")] += int(w.get("nthreads", 1))
        return {
            addr: max(1, int(cores.get(addr, _cores())) // max(1, per_host[w.get("host", "")]))
            for addr, w in workers.items()
        }
    name = scheduler if isinstance(scheduler, str) else _dask.config.get("scheduler", None)
    if name in ("sync", "synchronous", "single-threaded"):
        return _cores()
    from dask.system import CPU_COUNT

    pool = _dask.config.get("num_workers", None) or CPU_COUNT
    return max(1, _cores() // int(pool))


def _task_threads(plan: ThreadPlan) -> int | None:
    """Resolve a plan inside a task (looks up the worker running it)."""
    if plan is None or isinstance(plan, int):
        return plan
    try:
        from distributed import get_worker

        w = get_worker()
    except (ImportError, ValueError):
        return None
    n = plan.get(w.address)
    if n is None:  # a worker that joined after planning
        n = max(1, _cores() // max(1, int(w.state.nthreads)))
    return int(n)


# ------------------------------------------------------------------ block tasks
def _where(index: int, row0: int | None) -> str:
    at = f", which starts at row {row0} of the array" if row0 is not None else ""
    return f" (in Dask block {index}{at})"


def _in_block(update: Callable, index: int, row0: int | None):
    """Run ``update()``; a bad value is reported with the Dask block it is in
    (and a NaN/Inf with its row in the whole array when the block's start is known)."""
    from isofast.errors import NonFiniteError

    try:
        return update()
    except NonFiniteError as exc:
        row = None if row0 is None or exc.row is None else row0 + exc.row
        raise NonFiniteError(f"{exc}{_where(index, row0)}", row, exc.col) from None
    except ValueError as exc:
        msg = f"{exc}{_where(index, row0)}"
        try:
            again = type(exc)(msg)  # the same class (InputError, DimensionError, ...) with the block named
        except TypeError:  # a class whose constructor takes other arguments
            again = ValueError(msg)
        raise again from None


def _block_moments(block: Any, dtype: str | None, plan: ThreadPlan, index: int, row0: int | None) -> Moments:
    arr, elem = as_matrix(np.asarray(block), dtype)
    m = Moments(arr.shape[1])
    _in_block(lambda: m._state.update(arr, elem, _task_threads(plan)), index, row0)
    return m


def _merge_states(*states: Any) -> Any:
    """One state for the union of the rows of ``states`` (Moments or
    ``_core.SecondPass``: anything with ``copy`` and ``merge``)."""
    acc = states[0].copy()  # never mutate an input: a retried task must see it unchanged
    for s in states[1:]:
        acc.merge(s)
    return acc


@dataclass
class SecondPassSpec:
    """What every block needs for the second pass (broadcast once per worker):
    the arguments of ``_core.SecondPass``."""

    mean: np.ndarray
    dirs_raw: np.ndarray
    dirs_centered: np.ndarray
    f64: bool


def _block_second(
    block: Any, spec: SecondPassSpec, dtype: str | None, plan: ThreadPlan, index: int, row0: int | None
) -> _core.SecondPass:
    """The block's ``_core.SecondPass`` state, its directions released: it
    travels and waits to be merged in O(d + m) bytes, not 2·d·m."""
    arr, elem = as_matrix(np.asarray(block), dtype)
    sp = _core.SecondPass(spec.mean, spec.dirs_raw, spec.dirs_centered, spec.f64)
    _in_block(lambda: sp.update(arr, elem, _task_threads(plan)), index, row0)
    sp.release()
    return sp


# ------------------------------------------------------------------ sources on workers
def _read_rows(path: str, opts: dict, a: int, b: int, bf16: bool) -> np.ndarray:
    from isofast.sources import open_source

    arr = open_source(path, rows=slice(a, b), **opts).to_numpy()
    if bf16:
        import ml_dtypes

        arr = arr.view(ml_dtypes.bfloat16)
    return arr


def from_source(path: Any, *, block_rows: int | None = None, **open_kwargs: Any):
    """A Dask array whose blocks the *workers* read from a file or folder.

    ``path`` is anything :func:`isofast.sources.open_source` opens (``.npy``,
    shard folders, capture folders, safetensors, zarr, parquet) on storage
    the workers can see (a shared filesystem on a cluster). Only the shape is
    read on the client; each block task opens the source and reads its rows
    with ``preadv``. ``block_rows`` defaults to ~128 MiB per block.
    ``open_kwargs`` go to ``open_source`` (``layer``, ``site``, ``key``,
    ``rows``, ...). bfloat16 data becomes an ``ml_dtypes.bfloat16`` array.
    """
    _dask = _require_dask()
    import dask.array as da

    from isofast.sources import open_source

    rows = open_kwargs.pop("rows", None)
    src = open_source(path, rows=rows, **open_kwargs)
    if not hasattr(src, "select"):  # an .npz member is already in memory
        return da.from_array(src, chunks=(block_rows or "auto", -1))
    n, d = src.shape
    start = src._start
    bf16 = src.isofast_dtype == "bfloat16"
    if bf16:
        try:
            import ml_dtypes
        except ImportError as exc:
            raise ImportError("a bfloat16 source as a Dask array needs ml_dtypes (pip install ml_dtypes)") from exc
        dtype = np.dtype(ml_dtypes.bfloat16)
    else:
        dtype = src.dtype
    if block_rows is not None:  # 0 is refused, not read as "default"
        from isofast._input import check_int

        step = check_int(block_rows, "block_rows", minimum=1)
    else:
        step = max(1, (128 << 20) // max(1, d * dtype.itemsize))
    opts = {k: v for k, v in open_kwargs.items() if k != "rows"}
    # rows are absolute in the unselected source, so workers open it plainly
    blocks = [
        da.from_delayed(
            _dask.delayed(_read_rows, pure=False)(str(path), opts, start + a, start + min(a + step, n), bf16),
            shape=(min(a + step, n) - a, d),
            dtype=dtype,
        )
        for a in range(0, n, step)
    ]
    if not blocks:
        return da.zeros((0, d), dtype=dtype, chunks=(1, d))
    return da.concatenate(blocks, axis=0)


# ------------------------------------------------------------------ graph helpers
def _as_dask_array(x: Any):
    _require_dask()
    import dask.array as da

    if not isinstance(x, da.Array):
        raise TypeError(
            f"isofast.dask needs a dask.array.Array, got {type(x).__name__} (use isofast.analyze for in-memory data)"
        )
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D Dask array of row vectors (N×d), got {x.ndim} dimensions")
    if not isinstance(x.shape[1], (int, np.integer)) or math.isnan(x.shape[1]):
        raise ValueError("the number of columns (d) of the Dask array must be known")
    if x.numblocks[1] != 1:
        # A task needs whole rows: merge column chunks (rows per block stay).
        x = x.rechunk({1: -1})
    return x


def _tree(leaves: list[Any], merge: Callable, split_every: int, name: str):
    """Merge ``leaves`` ``split_every`` at a time until one remains."""
    _dask = _require_dask()
    level = leaves
    depth = 0
    while len(level) > 1:
        level = [
            _dask.delayed(merge, pure=False)(
                *level[i : i + split_every], dask_key_name=f"{name}-merge-{depth}-{i // split_every}"
            )
            for i in range(0, len(level), split_every)
        ]
        depth += 1
    return level[0]


def _name(kind: str) -> str:
    """A fresh key prefix per call, so concurrent calls never share keys."""
    return f"isofast-{kind}-{os.urandom(6).hex()}"


def _compute(obj: Any, client: Any, scheduler: Any):
    _dask = _require_dask()
    if client is not None:
        return client.compute(obj, sync=True)
    return _dask.compute(obj, scheduler=scheduler)[0]


def _blocks(x) -> list[Any]:
    return list(x.to_delayed(optimize_graph=True).ravel())


def _row_starts(x) -> list[int | None]:
    rows = x.chunks[0]
    if any(isinstance(r, float) and math.isnan(r) for r in rows):
        return [None] * len(rows)
    return [int(v) for v in np.concatenate([[0], np.cumsum(rows)[:-1]])]


def _plan(n_threads: int | None, client: Any, scheduler: Any) -> ThreadPlan:
    return int(n_threads) if n_threads is not None else rust_threads(client, scheduler)


def _moments_graph(x, dtype, plan, split_every, name):
    _dask = _require_dask()
    starts = _row_starts(x)
    leaves = [
        _dask.delayed(_block_moments, pure=False)(b, dtype, plan, i, starts[i], dask_key_name=f"{name}-block-{i}")
        for i, b in enumerate(_blocks(x))
    ]
    return _tree(leaves, _merge_states, split_every, name)


def moments(
    x: Any,
    *,
    dtype: str | None = None,
    n_threads: int | None = None,
    client: Any = None,
    scheduler: Any = None,
    split_every: int = 8,
) -> Moments:
    """The merged :class:`isofast.Moments` of a Dask array (one distributed pass)."""
    x = _as_dask_array(x)
    if split_every < 2:
        raise ValueError(f"split_every must be at least 2, got {split_every}")
    plan = _plan(n_threads, client, scheduler)
    return _compute(_moments_graph(x, dtype, plan, split_every, _name("moments")), client, scheduler)


def analyze(
    x: Any,
    *,
    center: bool = True,
    partition: bool = True,
    eps: float = 0.8,
    n_threads: int | None = None,
    dtype: str | None = None,
    client: Any = None,
    scheduler: Any = None,
    split_every: int = 8,
) -> IsotropyReport:
    """All global isotropy statistics of a Dask array's rows (design.md §3).

    Same parameters and result as :func:`isofast.analyze`, plus:

    client : a ``distributed.Client`` (default: the current one if any, else
        Dask's configured local scheduler).
    scheduler : a local scheduler name (``"threads"``, ``"processes"``,
        ``"sync"``) when no client is used.
    n_threads : Rust threads per task (default: :func:`rust_threads`, so
        that Dask threads × Rust threads ≤ cores).
    split_every : states merged per task in the reduction trees.

    Two distributed passes: moments (tree-reduced), then, after the d×d
    eigendecompositions on the client, the second-pass states with the mean
    and eigenvectors broadcast once per worker (tree-reduced).
    """
    _dask = _require_dask()
    x = _as_dask_array(x)
    if split_every < 2:
        raise ValueError(f"split_every must be at least 2, got {split_every}")
    if x.shape[1] == 0:
        raise ValueError("input has 0 columns")
    plan = _plan(n_threads, client, scheduler)
    m: Moments = _compute(_moments_graph(x, dtype, plan, split_every, _name("moments")), client, scheduler)
    state = m._state
    if state.n == 0:
        raise ValueError("empty input: no rows to analyse")
    if not (center or partition):
        rep = report_from_moments(state, eps, n_threads)
        rep.notes.append(f"computed with isofast.dask over {x.numblocks[0]} blocks")
        return rep
    _check_rows(state)
    ev_c, U, _, W = state.directions(n_threads)
    rep = report_from_moments(state, eps, n_threads, eigenvalues=ev_c)
    rep.notes.append(f"computed with isofast.dask over {x.numblocks[0]} blocks")
    d = state.dim
    empty = np.zeros((d, 0))
    spec = SecondPassSpec(
        mean=np.asarray(state.mean),
        dirs_raw=W if partition else empty,
        dirs_centered=U if (partition and center) else empty,
        f64=_needs_f64(np.empty((0, d), x.dtype), "bfloat16" if dtype == "bfloat16" else None),
    )
    name = _name("second")
    # One key holds the broadcast data; every block task depends on it, so
    # it travels once per worker instead of once per task.
    spec_d = _dask.delayed(spec, pure=True, name=f"{name}-spec")
    starts = _row_starts(x)
    leaves = [
        _dask.delayed(_block_second, pure=False)(
            b, spec_d, dtype, plan, i, starts[i], dask_key_name=f"{name}-block-{i}"
        )
        for i, b in enumerate(_blocks(x))
    ]
    sp: _core.SecondPass = _compute(_tree(leaves, _merge_states, split_every, name), client, scheduler)
    if sp.n != state.n:
        raise ValueError(f"the input changed between passes: {state.n} rows, then {sp.n}")
    fill_second_pass(rep, sp.results(), center, partition)
    return rep


# ------------------------------------------------------------------ clustered isotropy
def fit_sample_rows(n: int, m: int | None, seed: int) -> np.ndarray:
    """The rows :func:`cluster_isotropy` fits k-means on: ``m`` of ``n`` rows
    drawn without replacement by ``numpy.random.default_rng(seed)``, sorted
    (all rows when ``m`` is None or ≥ n). Public so a fit can be reproduced."""
    if m is None or m >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, int(m), replace=False))


def _cluster_block1(
    block: Any, empty: _core.ClusterFirstPass, dtype: str | None, plan: ThreadPlan, index: int, row0: int | None
) -> _core.ClusterFirstPass:
    """Pass 1 of one block: labels (nearest centre), sizes, sums, co-moments."""
    arr, elem = as_matrix(np.asarray(block), dtype)
    state = empty.copy()
    _in_block(lambda: state.update(arr, elem, _task_threads(plan)), index, row0)
    return state


def _cluster_block2(
    block: Any, cplan: _core.ClusterPlan, dtype: str | None, plan: ThreadPlan, index: int, row0: int | None
) -> tuple[_core.ClusterSecondPass, np.ndarray]:
    """Pass 2 of one block under the plan, and the block's labels."""
    arr, elem = as_matrix(np.asarray(block), dtype)
    state = _core.ClusterSecondPass(cplan)
    labels = _in_block(lambda: state.update(cplan, arr, elem, _task_threads(plan)), index, row0)
    return state, labels


def cluster_isotropy(
    x: Any,
    *,
    k_range: Any = range(2, 17),
    threshold: float = 0.1,
    fit_sample_size: int | None = 20000,
    silhouette_sample_size: int = 20000,
    n_init: int | str = "auto",
    max_iter: int = 300,
    tol: float = 1e-4,
    seed: int = 0,
    spectra: bool = True,
    labels: bool = True,
    n_threads: int | None = None,
    dtype: str | None = None,
    client: Any = None,
    scheduler: Any = None,
    split_every: int = 8,
):
    """Clustered (local) isotropy (design.md §3) of every row of a Dask array.

    The model is chosen on a seeded sample, then every row is assigned:

    1. ``fit_sample_size`` rows (:func:`fit_sample_rows`) are gathered to the
       client and :func:`isofast.cluster.cluster_isotropy` picks k (k-means++
       for each k in ``k_range``, silhouette on at most
       ``silhouette_sample_size`` of them, ``threshold``) and the centres;
    2. distributed pass 1 maps :class:`isofast._core.ClusterFirstPass` over
       the blocks (every row assigned to its nearest centre by the kernel's
       exact, tie-guarded search: the labels the in-memory recipe gives) and
       tree-merges the states (size, mean, co-moment per cluster);
    3. the client turns the merged state into a :class:`isofast._core.ClusterPlan`
       (every cluster covariance eigendecomposed);
    4. distributed pass 2 (the plan broadcast once per worker) maps
       :class:`isofast._core.ClusterSecondPass` over the blocks — centred
       partition functions and unit-vector sums; clusters of at most d rows
       keep their rows for the Gram route — tree-merged and finished on the
       client. Python only schedules: the statistics are the same Rust code
       as in memory.

    The per-cluster values equal
    ``isofast.cluster.cluster_statistics(X, report.labels)`` in memory (to
    float64 rounding) and the model selection equals
    ``isofast.cluster.cluster_isotropy`` on the sample rows. ``labels=False``
    skips collecting the N labels (``report.labels`` is then empty).
    Returns an :class:`isofast.cluster.ClusterReport` (``mode="full"``).
    """
    from isofast import cluster as _cluster

    _dask = _require_dask()
    x = _as_dask_array(x)
    if split_every < 2:
        raise ValueError(f"split_every must be at least 2, got {split_every}")
    if any(isinstance(c, float) and math.isnan(c) for c in x.chunks[0]):
        x = x.compute_chunk_sizes()
    n, d = int(x.shape[0]), int(x.shape[1])
    if n < 3:
        raise ValueError(f"clustering needs at least 3 rows, got {n}")
    if fit_sample_size is not None and int(fit_sample_size) < 3:
        raise ValueError(f"fit_sample_size must be at least 3 rows, got {fit_sample_size}")
    rows = fit_sample_rows(n, fit_sample_size, int(seed))
    sample = _compute(x[rows] if len(rows) < n else x, client, scheduler)
    fit = _cluster.cluster_isotropy(
        sample,
        k_range=k_range,
        threshold=threshold,
        sample_size=None,
        silhouette_sample_size=silhouette_sample_size,
        fit_sample_size=None,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        seed=seed,
        spectra=False,
        n_threads=n_threads,
        dtype=dtype,
    )
    # The fit sample's mean conditions the arithmetic (rows of LLMs carry
    # norms in the thousands; every statistic is translation-invariant).
    arr, elem = as_matrix(np.asarray(sample), dtype)
    shift = _core.column_mean(arr, elem, n_threads)
    k = int(fit.best_k)
    centers = np.asarray(fit.centers, dtype=np.float64).reshape(k, d) if k > 1 else shift[None, :]
    plan = _plan(n_threads, client, scheduler)
    starts = _row_starts(x)
    blocks = _blocks(x)

    # pass 1: labels, sizes, means, co-moments per cluster (ClusterFirstPass states, tree-merged)
    name = _name("cluster1")
    empty = _dask.delayed(_core.ClusterFirstPass(centers, shift, bool(spectra)), pure=True, name=f"{name}-empty")
    leaves = [
        _dask.delayed(_cluster_block1, pure=False)(
            b, empty, dtype, plan, i, starts[i], dask_key_name=f"{name}-block-{i}"
        )
        for i, b in enumerate(blocks)
    ]
    first: _core.ClusterFirstPass = _compute(_tree(leaves, _merge_states, split_every, name), client, scheduler)
    if first.n != n:
        raise ValueError(f"the input changed: {n} rows, but the first pass read {first.n}")
    # between the passes, on the client: one route per cluster (the covariance eigendecompositions)
    cplan = first.finish(0, n_threads)

    # pass 2 (plan broadcast once per worker) and the labels, in one graph run so each block is read once
    name = _name("cluster2")
    cplan_d = _dask.delayed(cplan, pure=True, name=f"{name}-plan")
    outs = [
        _dask.delayed(_cluster_block2, pure=False, nout=2)(
            b, cplan_d, dtype, plan, i, starts[i], dask_key_name=f"{name}-block-{i}"
        )
        for i, b in enumerate(blocks)
    ]
    root = _tree([o[0] for o in outs], _merge_states, split_every, name)
    if labels:
        second, lab_list = _compute((root, [o[1] for o in outs]), client, scheduler)
        all_labels = np.concatenate(lab_list).astype(np.intp) if lab_list else np.empty(0, np.intp)
    else:
        second = _compute(root, client, scheduler)
        all_labels = np.empty(0, np.intp)
    clusters = [dict(_cluster._cluster_dict(s), label=c) for c, s in enumerate(second.finish(cplan, n_threads))]
    ok = [s for s in clusters if math.isfinite(s["avg_cosine_centered"])]
    inter = float(np.mean([s["avg_cosine_centered"] for s in ok])) if ok else float("nan")
    w = float(sum(s["size"] for s in ok))
    inter_w = float(sum(s["size"] * s["avg_cosine_centered"] for s in ok) / w) if ok else float("nan")

    notes = [nt for nt in fit.notes if not nt.startswith("cluster ")]  # per-cluster notes of the sample are replaced
    notes.append(
        f"k-means fitted and k chosen on a seeded sample of {len(rows):,} of {n:,} rows "
        f"(isofast.dask.fit_sample_rows(n, {fit_sample_size}, seed={seed})); every row assigned to its nearest centre"
    )
    for s in clusters:
        if s.get("note"):
            notes.append(f"cluster {s['label']}: {s['note']}")
    if not labels:
        notes.append("labels not collected (labels=False)")
    return _cluster.ClusterReport(
        best_k=k,
        silhouette=fit.silhouette,
        silhouettes=fit.silhouettes,
        inertias=fit.inertias,
        inter_cluster_cosine=inter,
        inter_cluster_cosine_weighted=inter_w,
        labels=all_labels,
        clusters=clusters,
        seed=fit.seed,
        n=n,
        dim=d,
        mode="full",
        threshold=fit.threshold,
        n_clustered=n,
        n_fit=int(fit.n_fit),
        n_silhouette=int(fit.n_silhouette),
        silhouette_exact=bool(fit.silhouette_exact and len(rows) == n),
        clustered_rows=None,
        centers=cplan.means,
        n_iter=fit.n_iter,
        converged=fit.converged,
        params=dict(fit.params, fit_sample_size=fit_sample_size, dask_blocks=x.numblocks[0]),
        notes=notes,
    )
