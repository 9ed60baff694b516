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

import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from isofast.study.cache import CACHE_VERSION, StudyCache
from isofast.study.config import StudyConfig, load_config, stable_hash
from isofast.study.datasets import CellInputs, load_split, perturb

#: error columns of the results table.
METRICS = ("nmse", "mse", "mae", "mase", "crps", "crps_normalized")
#: forecast baselines run in every cell (:mod:`isofast.baselines`) and their error columns.
BASELINES = ("snaive", "ets")
BASELINE_METRICS = ("nmse", "mase", "crps")
#: LM-head columns (on the layer that feeds the head; NaN elsewhere).
HEAD_FIELDS = (
    "log_z_std", "log_z_rel_std", "log_z_range", "z_cv", "shift_residual",
    "shift_norm_share_mean", "shift_variance_share", "logit_shift_variance_share",
)


def build_model(mcfg, *, seed: int, cache: StudyCache, threads: int):
    """The :class:`~isofast.study.adapters.StudyModel` of one ``[[models]]`` table."""
    from isofast.study.models_lm import LMModel
    from isofast.study.models_ts import ChronosT5Model, PatchTSTModel

    cls = {"lm": LMModel, "patchtst": PatchTSTModel, "chronos-t5": ChronosT5Model}[mcfg.kind]
    return cls(mcfg, seed=seed, cache=cache, threads=threads)


# ------------------------------------------------------------------ results
@dataclass
class CellResult:
    """One (model, dataset, perturbation): its rows, forecast and per-layer extras."""

    model: str
    kind: str
    dataset: str
    perturbation: str
    error: str = ""
    rows: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    forecast: dict = field(default_factory=dict)  # first windows: context, target, point, lo, hi
    layers: dict = field(default_factory=dict)  # layer index → {name, spectrum, pca, pca_labels}
    head: dict = field(default_factory=dict)
    windows: list = field(default_factory=list)  # per-window (trust) rows
    seconds: float = 0.0
    keys: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


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

    @property
    def verdict_sentence(self) -> str:
        """The study's answer in one sentence (:mod:`isofast.study.verdict`)."""
        return str(self.verdict.get("sentence", ""))

    def to_dict(self) -> dict:
        from isofast.report import jsonable

        return jsonable({
            "config": self.config.to_dict(), "out": str(self.out), "counters": self.counters,
            "seconds": self.seconds, "files": self.files, "heldout_info": self.heldout_info,
            "models": self.models, "n_rows": len(self.table), "verdict": self.verdict,
            "n_failed_cells": int(sum(1 for c in self.cells if c.error)),
        })


# ------------------------------------------------------------------ metrics
def cell_metrics(samples: np.ndarray, point: np.ndarray, target: np.ndarray, history: np.ndarray) -> dict:
    """NMSE, MSE, MAE (of the point forecast), MASE (against the clean context's
    naive scale) and CRPS (of the samples), pooled over series and horizon
    steps: :func:`isofast.metrics.evaluate`."""
    from isofast.metrics import evaluate

    m = evaluate(target, point, samples=samples, context=list(history))
    nan = float("nan")
    f = lambda v: nan if v is None else float(v)
    return {"nmse": f(m.nmse), "mse": f(m.mse), "mae": f(m.mae), "mase": f(m.mase), "crps": f(m.crps),
            "crps_normalized": f(m.crps_normalized),
            "window_nmse": [f(v) for v in np.asarray(m.per_series.get("nmse", []), float).tolist()]}


# ------------------------------------------------------------------- a cell
class _Grid:
    def __init__(self, cfg: StudyConfig, cache: StudyCache, log):
        self.cfg = cfg
        self.cache = cache
        self.log = log
        self._shift: dict = {}

    def forecast_key(self, model, wh: str, inputs: CellInputs, horizon: int) -> str:
        f = self.cfg.forecast
        opts = {k: v for k, v in model.cfg.options.items() if k in ("serializer", "forecast", "dtype", "top_k", "temperature")}
        return stable_hash(CACHE_VERSION, "forecast", model.kind, wh, opts, inputs.key, horizon, f.n_samples, self.cell_seed(model, inputs))

    def cell_seed(self, model, inputs) -> int:
        return int(stable_hash(self.cfg.seed, "cell", model.name, inputs.dataset, inputs.perturbation, n=8), 16)

    def run_cell(self, model, split, inputs: CellInputs, n_rows: dict, baselines: dict | None = None) -> CellResult:
        cfg = self.cfg
        t0 = time.perf_counter()
        res = CellResult(model.name, model.kind, inputs.dataset, inputs.perturbation)
        prepared = {"done": False}

        def prepare():
            if not prepared["done"]:
                model.prepare(split)
                prepared["done"] = True

        wh = model.prepared_hash(split)
        if not wh:
            prepare()
            wh = model.weights_hash
        H = split.horizon
        seed = self.cell_seed(model, inputs)
        # ---- forecast
        fkey = self.forecast_key(model, wh, inputs, H)
        fc = self.cache.load_npz("forecast", fkey)
        if fc is None:
            prepare()
            out = model.forecast(list(inputs.contexts), H, n_samples=cfg.forecast.n_samples, seed=seed)
            fc = {"samples": out.samples, "n_fallback": np.array(out.n_fallback)}
            fc.update({f"aux_{k}": np.asarray(v) for k, v in out.aux.items()})
            fc.update({f"stat_{k}": np.asarray(float(v)) for k, v in out.stats.items()})
            self.cache.save_npz("forecast", fkey, fc)
            self.cache.miss("forecast")
        else:
            self.cache.hit("forecast")
        samples = np.asarray(fc["samples"], np.float64)
        aux = {k[4:]: v for k, v in fc.items() if k.startswith("aux_")}
        point = np.median(samples, axis=1) if cfg.forecast.point == "median" else samples.mean(axis=1)
        res.metrics = cell_metrics(samples, point, inputs.targets, inputs.history)
        res.metrics["n_fallback"] = int(fc["n_fallback"])
        res.metrics["allowed_mass"] = float(fc["stat_allowed_mass"]) if "stat_allowed_mass" in fc else math.nan
        q = cfg.forecast.quantiles
        k = min(cfg.report.forecast_windows, samples.shape[0])
        res.forecast = {
            "context": inputs.contexts[:k].tolist(), "target": inputs.targets[:k].tolist(),
            "point": point[:k].tolist(), "lo": np.quantile(samples[:k], q[0], axis=1).tolist(),
            "hi": np.quantile(samples[:k], q[1], axis=1).tolist(), "n_samples": int(samples.shape[1]),
            "quantiles": list(q),
        }
        # ---- embeddings + isotropy
        layers = model.layers
        ckey = stable_hash(
            CACHE_VERSION, "capture", model.kind, wh, [L.to_dict() for L in layers],
            {k: v for k, v in model.cfg.options.items() if k in ("serializer", "positions", "dtype")},
            inputs.key, fkey if aux else "",
        )
        rows_key = {str(k): int(v) for k, v in sorted(n_rows.items())}
        ikey = stable_hash(CACHE_VERSION, "isotropy", ckey, cfg.isotropy.__dict__, cfg.seed, model.has_head, rows_key)
        iso = self.cache.load_json("isotropy", ikey)
        if iso is None:
            emb, wins, cached = model.embed_cached(
                list(inputs.contexts), self.cache.dir("captures", ckey), split=split, aux=aux or None, prepare=prepare
            )
            (self.cache.hit if cached else self.cache.miss)("capture")
            iso = self._isotropy(model, emb, wins, layers, prepare, n_rows)
            self.cache.save_json("isotropy", ikey, iso)
            self.cache.miss("isotropy")
        else:
            self.cache.hit("isotropy")
        res.keys = {"weights": wh, "forecast": fkey, "capture": ckey, "isotropy": ikey}
        res.head = iso.get("head") or {}
        base = {}
        if baselines:
            k = inputs.contexts.shape[0]
            for bname, bs in baselines.items():
                if bname.startswith("_"):
                    continue
                bm = cell_metrics(bs[:k], np.median(bs[:k], axis=1), inputs.targets, inputs.history)
                for mname in BASELINE_METRICS:
                    base[f"{mname}_{bname}"] = bm[mname]
            from isofast.baselines import skill

            base["skill_mase"] = skill(res.metrics["mase"], base.get("mase_snaive", math.nan))
            base["skill_crps"] = skill(res.metrics["crps"], base.get("crps_snaive", math.nan))
        res.metrics.update(base)
        wnmse = res.metrics.get("window_nmse", [])
        for L in layers:
            li = iso["layers"][str(L.index)]
            res.layers[L.index] = {
                "name": L.name, "spectrum": li["spectrum"], "pca": li["pca"], "pca_labels": li["pca_labels"],
                "silhouettes": li.get("silhouettes", {}), "notes": li.get("notes", []),
                "skip_reason": li.get("skip_reason", ""),
            }
            row = {
                "model": model.name, "kind": model.kind, "dataset": inputs.dataset,
                "perturbation": inputs.perturbation, "layer": L.index, "layer_name": L.name,
                "stack": L.stack, "depth": L.depth, "context": int(inputs.contexts.shape[1]),
                "horizon": H, "n_series": int(inputs.contexts.shape[0]),
            }
            row.update(li["stats"])
            row["skip_reason"] = li.get("skip_reason", "")
            row["floors"] = bool(cfg.isotropy.floors)
            row["massive_policy"] = cfg.isotropy.massive
            is_head = L.index == iso.get("head_layer") and not row["skip_reason"]
            for f in HEAD_FIELDS:
                row[f"head_{f}"] = float(res.head.get(f, math.nan)) if is_head else math.nan
            row.update({m: res.metrics[m] for m in METRICS})
            row.update(base)
            row["n_fallback"] = res.metrics["n_fallback"]
            row["allowed_mass"] = res.metrics["allowed_mass"]
            row["weights_hash"] = wh
            row["error"] = ""
            res.rows.append(row)
            for w in li.get("windows", []):
                v = w["values"]
                j = int(v["window"])
                wr = {"model": model.name, "kind": model.kind, "dataset": inputs.dataset,
                      "perturbation": inputs.perturbation, "layer": L.index, "layer_name": L.name,
                      "depth": L.depth, "window": j, "n_rows": v["n_rows"],
                      "nmse": wnmse[j] if j < len(wnmse) else math.nan,
                      "skip_reason": row["skip_reason"]}
                from isofast.trust import WINDOW_STATISTICS

                for st in WINDOW_STATISTICS:
                    wr[f"win_{st}"] = v.get(st, math.nan) if not row["skip_reason"] else math.nan
                wr["reasons"] = "; ".join(f"{a}: {b}" for a, b in sorted(w.get("reasons", {}).items()))
                res.windows.append(wr)
        res.seconds = time.perf_counter() - t0
        return res

    def _isotropy(self, model, emb, wins, layers, prepare, n_rows: dict) -> dict:
        from isofast.study.isotropy import layer_suite

        cfg = self.cfg
        out: dict = {"layers": {}}
        hl = model.head_layer() if model.has_head else None
        for L in layers:
            seed = int(stable_hash(cfg.seed, cfg.isotropy.seed, "rows", L.index, n=8), 16)
            head = None
            if L.index == hl:
                def head(Xs):
                    prepare()
                    W, b = model.head()
                    C = Xs.astype(np.float32) * np.float32(model.head_scale())
                    rep = self._head_report(model, W, C, b)
                    return rep.to_dict(), rep.shift_cosine, rep.log_z

            li = layer_suite(emb[L.index], cfg.isotropy, seed, n_rows=int(n_rows[L.index]),
                             windows=wins[L.index], head=head)
            if li.get("head") is not None:
                out["head"] = li.pop("head")
                out["head_layer"] = hl
            else:
                li.pop("head", None)
            out["layers"][str(L.index)] = li
        return out

    def _head_report(self, model, W, C, b):
        """:func:`isofast.head.head_diagnostics` of contexts C under the head (W, b).

        The shift direction u* = argmin‖Wu − 1‖ depends on W only and costs a
        streaming QR of the V×d head (≈ 40 s for SmolLM2's 49152×576 on one
        core), so it is computed once per weights hash, kept on disk, and
        handed to ``head_diagnostics(shift=...)``.
        """
        import isofast.head as H

        key = stable_hash(CACHE_VERSION, "shift", model.weights_hash, W.shape)
        sd = self._shift.get(key)
        if sd is None:
            z = self.cache.load_npz("head", key)
            if z is not None:
                sd = H.ShiftDirection(u=z["u"], residual=float(z["residual"]), gram=z["gram"],
                                      ones_proj=z["ones_proj"], rank=int(z["rank"]))
            else:
                sd = H.shift_direction(W)
                self.cache.save_npz("head", key, {"u": sd.u, "residual": np.array(sd.residual), "gram": sd.gram,
                                                  "ones_proj": sd.ones_proj, "rank": np.array(sd.rank)})
            self._shift[key] = sd

        return H.head_diagnostics(W, C, b, isotropy=False, head_isotropy=False, shift=sd)


# ---------------------------------------------------------------- baselines
def _season(split) -> int:
    """Seasonal period of a dataset: its frequency (registry), the preset's cycle
    (KernelSynth), else 1; never as long as half the context (seasonal naive
    and MASE need a full season in the context)."""
    from isofast.data import dataset_season, preset_season

    d = split.config
    m = None
    try:
        if d.source == "registry":
            m = dataset_season(d.name)
        elif d.source == "kernelsynth":
            m = preset_season(d.kernel, d.length)
    except (KeyError, ValueError):
        m = None
    m = int(m or 1)
    return m if 1 <= m <= split.context // 2 else 1


def _baselines(cfg, store: StudyCache, split, inputs: CellInputs) -> dict:
    """Seasonal naive and ETS sample paths (n, S, H) for every test window of one
    (dataset, perturbation), cached; ``"_info"`` holds their season and pooled metrics."""
    from isofast.baselines import ets, seasonal_naive

    season = _season(split)
    H = split.horizon
    key = stable_hash(CACHE_VERSION, "baselines", inputs.key, H, season, cfg.seed)
    z = store.load_npz("baselines", key)
    if z is None:
        sn = seasonal_naive(list(inputs.contexts), H, season=season)
        seed = int(stable_hash(cfg.seed, "ets", inputs.key, n=8), 16)
        et = ets(list(inputs.contexts), H, season=season, n_samples=max(cfg.forecast.n_samples, 20), seed=seed)
        z = {"snaive": sn.samples, "ets": et.samples, "ets_fallback": np.array(et.n_fallback)}
        store.save_npz("baselines", key, z)
        store.miss("baselines")
    else:
        store.hit("baselines")
    out = {b: np.asarray(z[b], np.float64) for b in BASELINES}
    info = {}
    for b in BASELINES:
        m = cell_metrics(out[b], np.median(out[b], axis=1), inputs.targets, inputs.history)
        info[b] = {"season": season, "metrics": {k: m[k] for k in ("nmse", "mase", "crps")}}
    out["_info"] = info
    return out


# ---------------------------------------------------------------- the study
def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="cell", desc="study", file=sys.stderr, dynamic_ncols=True)
    except ImportError:  # pragma: no cover
        return None


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


def run_study(config: Any, out: str | Path | None = None, *, cache: str | Path | None = None,
              progress: bool = True, report: bool | None = None, log=None) -> StudyResult:
    """Run a study (module docstring) and return its :class:`StudyResult`.

    ``config``: a TOML path, a bundled name (``"default"``, ``"tiny"``), a dict
    or a :class:`~isofast.study.config.StudyConfig`. ``out`` defaults to
    ``./isofast-study-<name>``; ``cache`` to the config's ``[study] cache`` or
    ``<out>/cache``. ``report`` overrides ``[report] enabled``.
    """
    t_start = time.perf_counter()
    cfg = load_config(config)
    out = Path(out if out is not None else f"isofast-study-{cfg.name}").expanduser()
    out.mkdir(parents=True, exist_ok=True)
    croot = Path(cache) if cache is not None else (Path(cfg.cache).expanduser() if cfg.cache else out / "cache")
    store = StudyCache(croot)
    say = log if log is not None else (lambda m: print(m, file=sys.stderr))
    grid = _Grid(cfg, store, say)

    from isofast.study.datasets import take_windows
    from isofast.study.plan import plan_rows

    splits: dict = {}
    for d in cfg.datasets:
        try:
            splits[d.name] = load_split(d, seed=cfg.seed)
        except (ValueError, OSError, KeyError) as exc:  # the grid cannot run: say so before anything does
            from isofast.study.config import ConfigError

            raise ConfigError(f"dataset {d.name!r}: {exc}") from exc

    def cell_inputs(mcfg, split, p):
        return take_windows(perturb(split, p, seed=cfg.seed), mcfg.n_windows)

    adapters: dict = {}
    model_err: dict = {}
    for mcfg in cfg.models:
        try:
            adapters[mcfg.name] = build_model(mcfg, seed=cfg.seed, cache=store, threads=cfg.threads)
        except Exception as exc:
            model_err[mcfg.name] = f"{type(exc).__name__}: {exc}"
    # rows per (model, layer), refused before any forward pass when a floor cannot be met
    plans = {}
    for name in list(adapters):
        try:
            plans.update(plan_rows(cfg, {name: adapters[name]}, splits, cell_inputs))
        except (OSError, ImportError) as exc:  # e.g. a model folder without a tokenizer
            model_err[name] = f"{type(exc).__name__}: {exc}"
            adapters.pop(name)
    baselines = {}
    for d in cfg.datasets:
        for p in cfg.perturbations:
            baselines[(d.name, p.name)] = _baselines(cfg, store, splits[d.name], perturb(splits[d.name], p, seed=cfg.seed))

    old_threads = None
    try:
        from isofast.study.adapters import torch_threads

        # set only once the grid is known to run (a refused grid leaves torch as it was);
        # small models on a shared machine: oversubscribed threads are slower
        old_threads = torch_threads(cfg.threads)
    except ImportError:  # no torch: every cell will record the ImportError
        pass

    cells: list[CellResult] = []
    model_info: dict = {}
    bar = _progress(len(cfg.models) * len(cfg.datasets) * len(cfg.perturbations), progress)
    try:
        for mcfg in cfg.models:
            model = adapters.get(mcfg.name)
            m_err = model_err.get(mcfg.name, "")
            for d in cfg.datasets:
                for p in cfg.perturbations:
                    if bar is not None:
                        bar.set_postfix_str(f"{mcfg.name} / {d.name} / {p.name}")
                    err = m_err
                    if not err:
                        try:
                            inputs = cell_inputs(mcfg, splits[d.name], p)
                            n_rows = {L: lp.n_rows for L, lp in plans[mcfg.name].items()}
                            cells.append(grid.run_cell(model, splits[d.name], inputs, n_rows, baselines[(d.name, p.name)]))
                        except Exception as exc:
                            err = f"{type(exc).__name__}: {exc}"
                            say(f"isofast study: cell {mcfg.name} / {d.name} / {p.name} failed: {err}\n"
                                + "".join(traceback.format_exc(limit=3)))
                    if err:
                        cells.append(CellResult(mcfg.name, mcfg.kind, d.name, p.name, error=err, rows=[{
                            "model": mcfg.name, "kind": mcfg.kind, "dataset": d.name, "perturbation": p.name,
                            "layer": -1, "layer_name": "", "stack": "", "depth": math.nan, "error": err,
                        }]))
                    if bar is not None:
                        bar.update(1)
            if model is not None:
                model_info[mcfg.name] = model.describe()
                model_info[mcfg.name]["rows_plan"] = {str(L): lp.to_dict() for L, lp in plans.get(mcfg.name, {}).items()}
    finally:
        if bar is not None:
            bar.close()

    rows = [r for c in cells for r in c.rows]
    table = _frame(rows)
    files = {"results": _write_table(table, out / "results")}
    windows = _frame([w for c in cells for w in c.windows])
    files["windows"] = _write_table(windows, out / "windows")
    btab = _frame([{"dataset": d, "perturbation": p, "baseline": b, "season": int(v["season"]), **v["metrics"]}
                   for (d, p), bs in baselines.items() for b, v in bs["_info"].items()])
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

    if old_threads is not None:
        import torch

        torch.set_num_threads(old_threads)
    result = StudyResult(cfg, out, table, corr, held, held_info, causal, cells, store.counts(),
                         time.perf_counter() - t_start, files, model_info, trust=trust, windows=windows,
                         baselines=btab)
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
