"""The study runner: the grid, the cache, the results table, statistics, report.

``run_study(config, out=DIR)`` runs every cell (model × dataset × perturbation):

1. the test windows of the dataset (:mod:`isofast.study.datasets`), perturbed;
2. the model's weights for that dataset (bundled, loaded from ``path``, or
   trained and cached: :mod:`isofast.study.models_ts`);
3. the forecast (sample paths) → NMSE, MSE, MAE, MASE, CRPS
   (:mod:`isofast.metrics`);
4. the per-layer embeddings of the test contexts
   (:mod:`isofast.capture` for language models);
5. the isotropy suite of every captured layer
   (:func:`isofast.study.isotropy.layer_suite`), and the LM-head diagnostics
   (:func:`isofast.head.head_diagnostics`) on the layer that feeds the head.

Every stage is cached under a key that hashes everything it depends on (the
cell's configuration, the weights hash, :data:`~isofast.study.cache.CACHE_VERSION`),
so a re-run skips finished work; ``StudyResult.counters`` says what was
computed and what was read back. A cell that raises is recorded — one row
with the error message — and the grid goes on. Then the correlation tables
(:mod:`isofast.study.tables`), the causal tests (:mod:`isofast.study.causal`)
and the report (:mod:`isofast.study.report`).

Outputs in ``DIR``: ``results.csv`` (+ ``results.parquet`` with pyarrow), one
row per (model, dataset, perturbation, layer); ``correlations.csv``,
``heldout.csv``, ``causal.csv``; ``summary.json``; ``report.html`` with
``figures/*.png``; ``report_data.json`` (every number in the report).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isofast.study.cell import (
    BASELINE_METRICS,
    BASELINES,
    HEAD_FIELDS,
    METRICS,
    CellResult,
    cell_metrics,
    effective_options,
)
from isofast.study.config import StudyConfig, load_config
from isofast.study.datasets import perturb, take_windows
from isofast.study.schedule import (
    CellProgress,
    CellSpec,
    StudyContext,
    Work,
    cell_key,
    check_shared_cache,
    connect,
    describe_where,
    failed_cell,
    run_dask,
    run_local,
)

__all__ = [
    "BASELINES",
    "BASELINE_METRICS",
    "HEAD_FIELDS",
    "METRICS",
    "CellResult",
    "StudyResult",
    "cell_metrics",
    "run_study",
]


@dataclass
class StudyResult:
    config: StudyConfig
    out: Path
    table: Any  # pandas DataFrame, one row per (model, dataset, perturbation, layer)
    correlations: Any
    heldout: Any
    heldout_info: dict
    causal: Any
    cells: list
    counters: dict
    seconds: float
    files: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    trust: Any = None  # per-context indicator, held-out (trust.csv)
    windows: Any = None  # per-window statistics and NMSE (windows.csv)
    baselines: Any = None  # seasonal naive and ETS per (dataset, perturbation) (baselines.csv)
    verdict: dict = field(default_factory=dict)
    adaptation: Any = None  # isofast.adapt.experiment.AdaptationResult when [adaptation] ran

    @property
    def verdict_sentence(self) -> str:
        """The study's answer in one sentence (:mod:`isofast.study.verdict`)."""
        return str(self.verdict.get("sentence", ""))

    def to_dict(self) -> dict:
        from isofast.report import jsonable

        return jsonable(
            {
                "config": self.config.to_dict(),
                "out": str(self.out),
                "counters": self.counters,
                "seconds": self.seconds,
                "files": self.files,
                "heldout_info": self.heldout_info,
                "models": self.models,
                "n_rows": len(self.table),
                "verdict": self.verdict,
                "n_failed_cells": int(sum(1 for c in self.cells if c.error)),
                "adaptation": self.adaptation.to_dict() if self.adaptation is not None else None,
            }
        )


# ---------------------------------------------------------------- the study
def _frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows)


def _write_table(df, path_base: Path) -> dict:
    files = {}
    csv = path_base.with_suffix(".csv")
    df.to_csv(csv, index=False)
    files["csv"] = str(csv)
    from isofast.store import have_pyarrow

    if have_pyarrow():
        pq = path_base.with_suffix(".parquet")
        df.to_parquet(pq, index=False)
        files["parquet"] = str(pq)
    return files


def run_study(
    config: Any,
    out: str | Path | None = None,
    *,
    cache: str | Path | None = None,
    progress: bool = True,
    report: bool | None = None,
    log=None,
    client=None,
    scheduler: str | None = None,
    workers: int | None = None,
) -> StudyResult:
    """Run a study (module docstring) and return its :class:`StudyResult`.

    ``config``: a TOML path, a bundled name (``"default"``, ``"tiny"``), a dict
    or a :class:`~isofast.study.config.StudyConfig`. ``out`` defaults to
    ``./isofast-study-<name>``; ``cache`` to the config's ``[study] cache`` or
    ``<out>/cache``. ``report`` overrides ``[report] enabled``.

    Where the cells run (:mod:`isofast.study.schedule`): in this process by
    default; on an existing Dask cluster with ``client`` (a
    ``distributed.Client``) or ``scheduler`` (its address, e.g.
    ``"tcp://host:8786"``); on a new ``LocalCluster`` of ``workers`` processes.
    The results are the same rows either way (docs/cluster.md says to what
    precision). Finished cells are read back from the cache, so an interrupted
    run resumes: ``counters["cells"]`` says how many were reused.
    """
    t_start = time.perf_counter()
    if sum(x is not None for x in (client, scheduler, workers)) > 1:
        raise ValueError("give at most one of client, scheduler and workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    cfg = load_config(config)
    out = Path(out if out is not None else f"isofast-study-{cfg.name}").expanduser()
    out.mkdir(parents=True, exist_ok=True)
    croot = Path(cache) if cache is not None else (Path(cfg.cache).expanduser() if cfg.cache else out / "cache")
    croot = croot.absolute()  # workers resolve it, not this process's working directory
    ctx = StudyContext(cfg, croot)
    store = ctx.store
    say = log if log is not None else (lambda m: print(m, file=sys.stderr))

    from isofast.study.config import ConfigError
    from isofast.study.plan import plan_rows

    splits: dict = {}
    for d in cfg.datasets:
        try:
            splits[d.name] = ctx.split(d.name)
        except (ValueError, OSError, KeyError) as exc:  # the grid cannot run: say so before anything does
            raise ConfigError(f"dataset {d.name!r}: {exc}") from exc

    def cell_inputs(mcfg, split, p):
        return take_windows(perturb(split, p, seed=cfg.seed), mcfg.n_windows)

    adapters: dict = {}
    model_err: dict = {}
    for mcfg in cfg.models:
        try:
            adapters[mcfg.name] = ctx.model(mcfg.name)
        except Exception as exc:  # noqa: BLE001 - recorded as the model's cells' error
            model_err[mcfg.name] = f"{type(exc).__name__}: {exc}"
    # rows per (model, layer), refused before any forward pass when a floor cannot be met
    plans = {}
    for name in list(adapters):
        try:
            plans.update(plan_rows(cfg, {name: adapters[name]}, splits, cell_inputs))
        except (OSError, ImportError) as exc:  # e.g. a model folder without a tokenizer
            model_err[name] = f"{type(exc).__name__}: {exc}"
            adapters.pop(name)

    if not adapters:  # nothing could run: refuse, naming every cause, before anything is written
        raise ConfigError("no model of the study can run: " + "; ".join(f"{m}: {e}" for m, e in model_err.items()))
    for name, err in model_err.items():  # the grid goes on without it, and says so first
        say(f"isofast study: model {name!r} cannot run ({err}); its cells are recorded as failed")

    # ---- the grid: cells already in the cache, cells to compute, their dependencies
    n_rows = {m: {L: lp.n_rows for L, lp in pl.items()} for m, pl in plans.items()}
    specs, done, todo = [], {}, []
    prepares: dict = {}
    prepare_of: dict = {}
    for mcfg in cfg.models:
        model = adapters.get(mcfg.name)
        for d in cfg.datasets:
            wkey = model.weights_key(splits[d.name]) if model is not None else ""
            for p in cfg.perturbations:
                i = len(specs)
                key = (
                    cell_key(cfg, mcfg, wkey, d.name, p.name, n_rows.get(mcfg.name, {}), effective_options(model))
                    if model
                    else ""
                )
                spec = CellSpec(i, mcfg.name, d.name, p.name, key)
                specs.append(spec)
                if model is None:
                    done[i] = failed_cell(spec, mcfg.kind, model_err[mcfg.name])
                    continue
                got = store.load_json("cells", key)
                if got is not None:
                    store.hit("cells")
                    done[i] = CellResult.from_dict(got)
                    continue
                todo.append(spec)
                if not model.prepared_hash(splits[d.name]):  # weights this study trains, not trained yet
                    prepare_of[i] = prepares.setdefault((mcfg.name, wkey), (mcfg.name, d.name))
    n_reused = sum(1 for c in done.values() if not c.error)
    work = Work(
        cfg,
        str(croot),
        [(d.name, p.name) for d in cfg.datasets for p in cfg.perturbations],
        list(prepares.values()),
        todo,
        n_rows,
        prepare_of,
    )

    own_client = False
    if scheduler is not None or workers is not None:
        client, own_client = connect(scheduler, workers)
    old_threads = None
    cells_by_index = dict(done)
    model_info: dict = {}
    bar = None
    try:
        if client is not None:
            n_workers = check_shared_cache(client, croot)
            where = describe_where(client, n_workers)
        else:
            where = "this process"
            try:
                from isofast.study.adapters import torch_threads

                # set only once the grid is known to run (a refused grid leaves torch as it was);
                # small models on a shared machine: oversubscribed threads are slower
                old_threads = torch_threads(cfg.threads)
            except ImportError:  # no torch: every cell will record the ImportError
                pass
        if progress:
            say(
                f"isofast study {cfg.name}: {len(specs)} cells, {n_reused} reused from the cache, "
                f"{len(todo)} to compute in {where}"
            )
        bar = CellProgress(len(specs), len(done), progress)
        runs = run_dask(work, client, bar, store, say) if client is not None else run_local(work, ctx, bar, say)
        for spec, res, info in runs:
            cells_by_index[spec.index] = res
            if info is not None:
                model_info[spec.model] = info
            bar.done(res)
    finally:
        if bar is not None:
            bar.close()
        if own_client:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()
    baselines = getattr(work, "baselines", {})
    cells: list[CellResult] = [cells_by_index[i] for i in range(len(specs))]
    for mcfg in cfg.models:
        model = adapters.get(mcfg.name)
        if model is not None:
            model_info[mcfg.name] = model_info.get(mcfg.name) or model.describe()
            model_info[mcfg.name]["rows_plan"] = {str(L): lp.to_dict() for L, lp in plans.get(mcfg.name, {}).items()}

    rows = [r for c in cells for r in c.rows]
    table = _frame(rows)
    files = {"results": _write_table(table, out / "results")}
    windows = _frame([w for c in cells for w in c.windows])
    files["windows"] = _write_table(windows, out / "windows")
    btab = _frame(
        [
            {"dataset": d, "perturbation": p, "baseline": b, "season": int(v["season"]), **v["metrics"]}
            for (d, p), bs in baselines.items()
            for b, v in bs["_info"].items()
        ]
    )
    btab.to_csv(out / "baselines.csv", index=False)
    files["baselines"] = str(out / "baselines.csv")

    # ---- statistics
    from isofast.study.tables import COLUMNS, heldout_table, per_layer_table

    corr = _frame(per_layer_table(table, cfg.stats)) if len(table) else _frame([])
    held_rows, held_info = heldout_table(table, cfg.stats) if len(table) else ([], {})
    held = _frame(held_rows)
    for df in (corr, held):
        for c in COLUMNS:
            if c not in df.columns:
                df[c] = []
    from isofast.study.tables import trust_table

    trust = _frame(trust_table(windows, cfg.stats, held_info) if len(windows) else [])
    for c in COLUMNS:
        if c not in trust.columns:
            trust[c] = []
    trust.to_csv(out / "trust.csv", index=False)
    files["trust"] = str(out / "trust.csv")
    corr.to_csv(out / "correlations.csv", index=False)
    held.to_csv(out / "heldout.csv", index=False)
    files["correlations"] = str(out / "correlations.csv")
    files["heldout"] = str(out / "heldout.csv")

    # ---- causal tests
    causal = _frame([])
    if cfg.causal.enabled and cfg.causal.tests:
        from isofast.study.causal import run_causal_tests

        causal = _frame(run_causal_tests(cfg, store, adapters, splits, cells, say))
    causal.to_csv(out / "causal.csv", index=False)
    files["causal"] = str(out / "causal.csv")

    # ---- the adaptation experiment ([adaptation], isofast.adapt): its own runs, statistics and cache
    adaptation = None
    acfg = cfg.adaptation
    if acfg is not None and getattr(acfg, "enabled", True):
        from isofast.adapt.experiment import run_experiment

        adaptation = run_experiment(acfg, out / "adaptation", croot / "adaptation", log=say)
        files["adaptation"] = str(out / "adaptation")

    if old_threads is not None:
        import torch

        torch.set_num_threads(old_threads)
    result = StudyResult(
        cfg,
        out,
        table,
        corr,
        held,
        held_info,
        causal,
        cells,
        store.counts(),
        time.perf_counter() - t_start,
        files,
        model_info,
        trust=trust,
        windows=windows,
        baselines=btab,
        adaptation=adaptation,
    )
    from isofast.study.verdict import build_verdict

    result.verdict = build_verdict(result)
    do_report = cfg.report.enabled if report is None else report
    if do_report:
        from isofast.study.report import write_report

        files.update(write_report(result))
    result.seconds = time.perf_counter() - t_start
    from isofast.store import write_json

    write_json(out / "summary.json", result.to_dict())
    files["summary"] = str(out / "summary.json")
    return result
