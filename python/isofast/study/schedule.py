"""Where the study's cells run: in this process, or as tasks on a Dask cluster.

The grid is a small task graph:

* ``baselines(dataset, perturbation)``: seasonal naive and ETS, shared by every model;
* ``prepare(model, weights)``: training a model that the study trains (PatchTST
  once per dataset, the Chronos-style T5 once), so that no two cells train the
  same weights and a perturbation never retrains;
* ``cell(model, dataset, perturbation)``: forecast, captures, isotropy suite,
  rows (:class:`isofast.study.cell.CellRunner`), depending on the two above.

Each task is a module-level function of (configuration, cache folder, names):
it builds what it needs once per process (:func:`context`) and reads or writes
only the cache folder, whose entries are content-addressed, checksummed and
written atomically (:mod:`isofast.study.cache`). So a task can run here or on
any Dask worker, run twice, or die half-way, and the cache stays consistent:
a dead worker's cell is recomputed elsewhere (Dask reschedules it) and gives the
same rows. A finished cell is stored whole under ``cells/<key>.json``; a re-run
(after Ctrl-C, SIGKILL or a failed cell) recomputes only the cells that have no
entry and says how many it reused. Failed cells are not stored, so a re-run
retries them.

The cache folder is the only shared state. On a remote cluster it must be a path
every worker sees under the same name (a shared file system); the run checks
that before it submits anything (:func:`check_shared_cache`). See docs/cluster.md.
"""

from __future__ import annotations

import math
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isofast.errors import ClusterError
from isofast.progress import Progress
from isofast.study.cache import CACHE_VERSION, StudyCache
from isofast.study.cell import CellResult, CellRunner, baselines, build_model
from isofast.study.config import StudyConfig, stable_hash
from isofast.study.datasets import load_split, perturb, take_windows


@dataclass(frozen=True)
class CellSpec:
    """One cell of the grid, in grid order (``index``), with its cache key."""

    index: int
    model: str
    dataset: str
    perturbation: str
    key: str

    @property
    def label(self) -> str:
        return f"{self.model} / {self.dataset} / {self.perturbation}"


def cell_key(
    cfg: StudyConfig, mcfg, weights_key: str, dataset: str, pert: str, n_rows: dict, options: dict | None = None
) -> str:
    """Everything a cell's result depends on: the model's options (as run:
    device and dtype resolved) and weights, the dataset and perturbation, the
    forecast, isotropy, report and seed settings, and the planned rows per layer."""
    return stable_hash(
        CACHE_VERSION,
        "cell",
        mcfg.key(),
        options or {},
        weights_key,
        cfg.dataset(dataset).key(),
        cfg.perturbation(pert).key(),
        cfg.forecast.__dict__,
        cfg.isotropy.__dict__,
        cfg.report.forecast_windows,
        cfg.seed,
        {str(k): int(v) for k, v in sorted(n_rows.items())},
    )


# ------------------------------------------------------------ per process
class StudyContext:
    """What one process needs to run tasks of one study: the configuration, the
    cache, the dataset splits and the model adapters, each built once."""

    def __init__(self, cfg: StudyConfig, root: Path | str):
        self.cfg = cfg
        self.store = StudyCache(root)
        self.runner = CellRunner(cfg, self.store, None)
        self.splits: dict = {}
        self.adapters: dict = {}
        self.model_err: dict = {}

    def split(self, name: str):
        if name not in self.splits:
            self.splits[name] = load_split(self.cfg.dataset(name), seed=self.cfg.seed)
        return self.splits[name]

    def inputs(self, model: str, dataset: str, pert: str):
        p = self.cfg.perturbation(pert)
        return take_windows(perturb(self.split(dataset), p, seed=self.cfg.seed), self.cfg.model(model).n_windows)

    def model(self, name: str):
        """The adapter of model ``name``; raises (once, then the same message)
        when it cannot be built."""
        if name in self.model_err:
            raise RuntimeError(self.model_err[name])
        if name not in self.adapters:
            try:
                self.adapters[name] = build_model(
                    self.cfg.model(name), seed=self.cfg.seed, cache=self.store, threads=self.cfg.threads
                )
            except Exception as exc:
                self.model_err[name] = f"{type(exc).__name__}: {exc}"
                raise
        return self.adapters[name]


_CONTEXTS: dict = {}
_THREADS_SET = {"done": False}


def context(cfg: StudyConfig, root: Path | str) -> StudyContext:
    """A Dask worker's :class:`StudyContext` for (cfg, root), kept for the
    worker's next tasks; the first also sets torch's intra-op threads to
    ``[study] threads`` (the study's own process makes a fresh context per run
    and sets and restores the threads itself)."""
    key = (stable_hash(cfg.to_dict()), str(Path(root)))
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        if len(_CONTEXTS) >= 4:  # a long-lived worker serving many studies: keep the newest
            _CONTEXTS.pop(next(iter(_CONTEXTS)))
        ctx = _CONTEXTS[key] = StudyContext(cfg, root)
    if not _THREADS_SET["done"]:
        try:
            from isofast.study.adapters import torch_threads

            torch_threads(cfg.threads)
        except ImportError:
            pass
        _THREADS_SET["done"] = True
    return ctx


def _delta(before: dict, after: dict) -> dict:
    out = {}
    for stage, c in after.items():
        b = before.get(stage, {})
        d = {k: int(v) - int(b.get(k, 0)) for k, v in c.items()}
        if any(d.values()):
            out[stage] = d
    return out


# ------------------------------------------------------------------ tasks
def task_baselines(cfg: StudyConfig, root: str, dataset: str, pert: str, ctx: StudyContext | None = None):
    """Baseline sample paths of one (dataset, perturbation): ``(baselines, counters)``."""
    ctx = ctx or context(cfg, root)
    before = ctx.store.counts()
    split = ctx.split(dataset)
    out = baselines(cfg, ctx.store, split, perturb(split, cfg.perturbation(pert), seed=cfg.seed))
    return out, _delta(before, ctx.store.counts())


def task_prepare(cfg: StudyConfig, root: str, model: str, dataset: str, ctx: StudyContext | None = None):
    """Train (or load) one model's weights for one dataset: ``(error, counters)``."""
    ctx = ctx or context(cfg, root)
    before = ctx.store.counts()
    err = ""
    try:
        ctx.model(model).prepare(ctx.split(dataset))
    except Exception as exc:  # noqa: BLE001 - the cells that need these weights record the error
        err = f"{type(exc).__name__}: {exc}"
    return err, _delta(before, ctx.store.counts())


def task_cell(
    cfg: StudyConfig,
    root: str,
    spec: CellSpec,
    n_rows: dict,
    base: dict | None,
    prepared: Any = None,
    ctx: StudyContext | None = None,
):
    """Run one cell (or read it back if another process finished it):
    ``(CellResult, counters, describe, log)``. Exceptions become the cell's
    error; a failed cell is not stored, so a re-run retries it."""
    ctx = ctx or context(cfg, root)
    before = ctx.store.counts()
    # finished meanwhile by another process (a rescheduled task)? The study's
    # process looked before submitting and counted a damaged entry already.
    got = ctx.store.load_json("cells", spec.key, count=False)
    if got is not None:
        ctx.store.hit("cells")
        return CellResult.from_dict(got), _delta(before, ctx.store.counts()), None, ""
    log = ""
    info = None
    prep_err = prepared[0] if isinstance(prepared, tuple) and prepared and prepared[0] else ""
    if prep_err:  # training these weights failed: every cell that needs them says why
        return failed_cell(spec, cfg.model(spec.model).kind, prep_err), _delta(before, ctx.store.counts()), None, ""
    try:
        model = ctx.model(spec.model)
        split = ctx.split(spec.dataset)
        inputs = ctx.inputs(spec.model, spec.dataset, spec.perturbation)
        res = ctx.runner.run_cell(model, split, inputs, n_rows, base)
        ctx.store.save_json("cells", spec.key, res.to_dict())
        ctx.store.miss("cells")
        info = model.describe()
    except Exception as exc:  # noqa: BLE001 - a failing cell is recorded, the grid goes on
        err = f"{type(exc).__name__}: {exc}"
        mcfg = cfg.model(spec.model)
        res = failed_cell(spec, mcfg.kind, err)
        log = f"isofast study: cell {spec.label} failed: {err}\n" + "".join(traceback.format_exc(limit=3))
    return res, _delta(before, ctx.store.counts()), info, log


def failed_cell(spec: CellSpec, kind: str, err: str) -> CellResult:
    return CellResult(
        spec.model,
        kind,
        spec.dataset,
        spec.perturbation,
        error=err,
        rows=[
            {
                "model": spec.model,
                "kind": kind,
                "dataset": spec.dataset,
                "perturbation": spec.perturbation,
                "layer": -1,
                "layer_name": "",
                "stack": "",
                "depth": math.nan,
                "error": err,
            }
        ],
    )


# --------------------------------------------------------------- progress
class CellProgress:
    """The one progress display of a grid, the same in process and on a cluster:
    cells done / total, failures, reused, ETA (:class:`isofast.progress.Progress`
    on stderr). Reused cells count towards the total, not the rate."""

    def __init__(self, total: int, reused: int, enabled: bool):
        self.total, self.reused, self.failed, self.current = total, reused, 0, ""
        self.bar = Progress(
            total, desc="study", unit="cell", noun="cells", initial=reused, enabled=enabled and bool(total)
        )

    def _note(self) -> None:
        parts = [f"{self.reused} reused"] if self.reused else []
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.current:
            parts.append(self.current)
        self.bar.set_postfix(", ".join(parts))

    def running(self, text: str) -> None:
        self.current = text
        self._note()

    def done(self, res: CellResult) -> None:
        self.failed += bool(res.error)
        self._note()
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# ------------------------------------------------------------- executors
@dataclass
class Work:
    """The grid as the runner hands it to an executor."""

    cfg: StudyConfig
    root: str
    pairs: list  # (dataset, perturbation) whose baselines are needed
    prepares: list  # (model, dataset) whose weights must be trained first
    cells: list  # CellSpec still to compute
    n_rows: dict  # model → {layer: N}
    prepare_of: dict  # CellSpec.index → (model, dataset) of its prepare task, or None


def run_local(
    work: Work, ctx: StudyContext, progress: CellProgress, say: Callable[[str], None]
) -> Iterator[tuple[CellSpec, CellResult, dict | None]]:
    """Run the tasks in this process, in grid order; yields finished cells."""
    base = {}
    for d, p in work.pairs:
        base[(d, p)], _ = task_baselines(work.cfg, work.root, d, p, ctx=ctx)
    prepared = {}
    for spec in work.cells:
        progress.running(spec.label)
        pk = work.prepare_of.get(spec.index)
        if pk is not None and pk not in prepared:
            prepared[pk], _ = task_prepare(work.cfg, work.root, *pk, ctx=ctx)
        res, _, info, log = task_cell(
            work.cfg,
            work.root,
            spec,
            work.n_rows[spec.model],
            base.get((spec.dataset, spec.perturbation)),
            (prepared[pk],) if pk is not None else None,
            ctx=ctx,
        )
        if log:
            say(log)
        yield spec, res, info
    work.baselines = base  # type: ignore[attr-defined]


def run_dask(
    work: Work, client, progress: CellProgress, store: StudyCache, say: Callable[[str], None]
) -> Iterator[tuple[CellSpec, CellResult, dict | None]]:
    """Submit the task graph to ``client`` and yield cells as they finish.

    Worker deaths are Dask's to handle: a task whose worker died is rerun on
    another worker (up to ``distributed.scheduler.allowed-failures`` times, then
    the cell is recorded as failed with Dask's ``KilledWorker`` message)."""
    from distributed import as_completed

    cfg, root = work.cfg, work.root
    tag = stable_hash(cfg.to_dict(), root, n=8)
    base_f = {
        (d, p): client.submit(task_baselines, cfg, root, d, p, key=f"isofast-baselines-{d}-{p}-{tag}", pure=False)
        for d, p in work.pairs
    }
    prep_f = {
        pk: client.submit(task_prepare, cfg, root, *pk, key=f"isofast-prepare-{pk[0]}-{pk[1]}-{tag}", pure=False)
        for pk in work.prepares
    }
    futs = {}
    for spec in work.cells:
        pk = work.prepare_of.get(spec.index)
        bf = base_f[(spec.dataset, spec.perturbation)]
        f = client.submit(
            _cell_on_worker,
            cfg,
            root,
            spec,
            work.n_rows[spec.model],
            bf,
            prep_f[pk] if pk is not None else None,
            key=f"isofast-cell-{spec.key}",
            pure=False,
        )
        futs[f] = spec
    try:
        for f in as_completed(list(futs)):
            spec = futs[f]
            try:
                res, counters, info, log = f.result()
                store.merge_counts(counters)
            except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker after repeated worker deaths
                res, info, log = failed_cell(spec, cfg.model(spec.model).kind, f"{type(exc).__name__}: {exc}"), None, ""
                say(f"isofast study: cell {spec.label} failed on the cluster: {type(exc).__name__}: {exc}")
            if log:
                say(log)
            yield spec, res, info
        out = {}
        for pk, f in prep_f.items():
            _, c = f.result()
            store.merge_counts(c)
        for k, f in base_f.items():
            out[k], c = f.result()
            store.merge_counts(c)
        work.baselines = out  # type: ignore[attr-defined]
    except BaseException:
        client.cancel(list(futs) + list(base_f.values()) + list(prep_f.values()))
        raise


def _cell_on_worker(cfg, root, spec, n_rows, base_and_counts, prepared):
    base = base_and_counts[0] if base_and_counts is not None else None
    return task_cell(cfg, root, spec, n_rows, base, prepared)


# ------------------------------------------------------------ the cluster
def connect(scheduler: str | None = None, workers: int | None = None, *, timeout: float = 5.0):
    """A ``distributed.Client``: to the scheduler at ``scheduler`` (raises
    :class:`ClusterError` naming it within ``timeout`` seconds when it cannot
    be reached), or to a new ``LocalCluster`` of ``workers`` processes (one
    thread each). Returns ``(client, owned)``: close ``client`` (and its
    cluster) when ``owned``."""
    if scheduler is not None and workers is not None:
        raise ValueError("give either a scheduler address or a number of workers, not both")
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - the dask extra
        raise ImportError("running the study on Dask needs the dask extra: pip install 'isofast[dask]'") from exc
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        import logging

        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
        )
        return Client(cluster), True
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise ValueError(f"scheduler must be an address such as tcp://HOST:8786, got {scheduler!r}")
    try:
        client = Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {scheduler} within {timeout:g} s: "
            f"{' '.join(str(exc).split()) or type(exc).__name__}"
        ) from exc
    return client, True


def _probe(path: str, token: str) -> str:
    """On a worker: '' when ``path`` holds ``token``, else why not."""
    import socket

    host = socket.gethostname()
    try:
        with open(path) as f:
            got = f.read()
    except OSError as exc:
        return f"{host}: {exc.strerror or exc}"
    return "" if got == token else f"{host}: the file there has other content (another folder of that name)"


def check_shared_cache(client, root: Path, *, wait: float = 10.0) -> int:
    """Check that every worker of ``client`` sees the cache folder ``root``
    (a file written here is read back on each worker); returns the number of
    workers. Raises :class:`ClusterError` when there are no workers or when
    some cannot see the folder (a relative or node-local path)."""
    try:
        client.wait_for_workers(1, timeout=wait)
    except (TimeoutError, OSError) as exc:
        raise ClusterError(f"the Dask scheduler {client.scheduler.address} has no workers (waited {wait:g} s)") from exc
    root = Path(root)
    token = uuid.uuid4().hex
    probe = root / f".probe-{token}"
    probe.write_text(token)
    try:
        answers = client.run(_probe, str(probe), token)
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    bad = {w: why for w, why in answers.items() if why}
    if bad:
        w, why = next(iter(bad.items()))
        raise ClusterError(
            f"the cache folder {root} is not visible from {len(bad)} of {len(answers)} Dask workers "
            f"(worker {w}: {why}); the cache is the study's only shared state, so it must be a "
            "path that every worker mounts under the same name (docs/cluster.md)"
        )
    return len(answers)


def describe_where(client, n_workers: int) -> str:
    addr = getattr(getattr(client, "scheduler", None), "address", "?")
    return f"Dask cluster at {addr} ({n_workers} worker{'s' if n_workers != 1 else ''})"


__all__ = [
    "CellProgress",
    "CellSpec",
    "ClusterError",
    "StudyContext",
    "Work",
    "cell_key",
    "check_shared_cache",
    "connect",
    "context",
    "run_dask",
    "run_local",
    "task_baselines",
    "task_cell",
    "task_prepare",
]
