"""One cell of the study: (model, dataset, perturbation) → forecast, captures,
isotropy suite, baselines, rows of the results table.

A cell is a pure function of the configuration and the cache folder: it reads
or computes every stage under a content-addressed key (:mod:`isofast.study.cache`),
so it can run in the study's own process or as a task on a Dask worker
(:mod:`isofast.study.schedule`) and give the same rows.

Stages, each cached:

1. the model's forecast (sample paths) of the cell's test windows → NMSE, MSE,
   MAE, MASE, CRPS (:mod:`isofast.metrics`);
2. the per-layer embeddings of the test contexts (for language models and
   pretrained TSFMs the capture can come from the forecast's own pass:
   ``joint_capture``);
3. the isotropy suite of every captured layer
   (:func:`isofast.study.isotropy.layer_suite`) and the LM-head diagnostics
   (:func:`isofast.head.head_diagnostics`) on the layer that feeds the head;
4. the seasonal-naive and ETS baselines of the (dataset, perturbation)
   (:mod:`isofast.baselines`), shared by every model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from isofast.study.cache import CACHE_VERSION, StudyCache
from isofast.study.config import StudyConfig, stable_hash
from isofast.study.datasets import CellInputs

#: error columns of the results table.
METRICS = ("nmse", "mse", "mae", "mase", "crps", "crps_normalized")
#: forecast baselines run in every cell (:mod:`isofast.baselines`) and their error columns.
BASELINES = ("snaive", "ets")
BASELINE_METRICS = ("nmse", "mase", "crps")
#: LM-head columns (on the layer that feeds the head; NaN elsewhere).
HEAD_FIELDS = (
    "log_z_std",
    "log_z_rel_std",
    "log_z_range",
    "z_cv",
    "shift_residual",
    "shift_norm_share_mean",
    "shift_variance_share",
    "logit_shift_variance_share",
)


def build_model(mcfg, *, seed: int, cache: StudyCache, threads: int):
    """The :class:`~isofast.study.adapters.StudyModel` of one ``[[models]]`` table."""
    from isofast.study.models_lm import LMModel
    from isofast.study.models_ts import ChronosT5Model, PatchTSTModel
    from isofast.study.models_tsfm import TSFMModel

    cls = {"lm": LMModel, "patchtst": PatchTSTModel, "chronos-t5": ChronosT5Model, "tsfm": TSFMModel}[mcfg.kind]
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

    @classmethod
    def from_dict(cls, d: dict) -> CellResult:
        """Inverse of :meth:`to_dict` after a JSON round trip (layer keys back to int)."""
        d = dict(d)
        d["layers"] = {int(k): v for k, v in (d.get("layers") or {}).items()}
        return cls(**d)


# ------------------------------------------------------------------ metrics
def cell_metrics(samples: np.ndarray, point: np.ndarray, target: np.ndarray, history: np.ndarray) -> dict:
    """NMSE, MSE, MAE (of the point forecast), MASE (against the clean context's
    naive scale) and CRPS (of the samples), pooled over series and horizon
    steps: :func:`isofast.metrics.evaluate`."""
    from isofast.metrics import evaluate

    m = evaluate(target, point, samples=samples, context=list(history))
    nan = float("nan")

    def f(v):
        return nan if v is None else float(v)

    return {
        "nmse": f(m.nmse),
        "mse": f(m.mse),
        "mae": f(m.mae),
        "mase": f(m.mase),
        "crps": f(m.crps),
        "crps_normalized": f(m.crps_normalized),
        "window_nmse": [f(v) for v in np.asarray(m.per_series.get("nmse", []), float).tolist()],
    }


# ------------------------------------------------------------------- a cell
def effective_options(model) -> dict:
    """The model's options as it runs them: ``device``/``dtype`` ``"auto"``
    resolved (CUDA + bfloat16 or CPU + float32), so that entries computed on a
    GPU and on a CPU never share a cache key."""
    return getattr(model, "o", None) or model.cfg.options


class CellRunner:
    """Runs cells of one study against one cache (module docstring)."""

    def __init__(self, cfg: StudyConfig, cache: StudyCache, log):
        self.cfg = cfg
        self.cache = cache
        self.log = log
        self._shift: dict = {}

    def forecast_key(self, model, wh: str, inputs: CellInputs, horizon: int) -> str:
        f = self.cfg.forecast
        opts = {
            k: v
            for k, v in effective_options(model).items()
            if k in ("serializer", "forecast", "device", "dtype", "top_k", "temperature")
        }
        return stable_hash(
            CACHE_VERSION,
            "forecast",
            model.kind,
            wh,
            opts,
            inputs.key,
            horizon,
            f.n_samples,
            self.cell_seed(model, inputs),
        )

    def capture_key(self, model, wh: str, inputs: CellInputs, forecast_key: str) -> str:
        """Key of a cell's captures: weights, layers, the options that change the
        rows (serializer, positions, future tokens, device, dtype), the inputs,
        and the forecast for models whose inputs come from it (Chronos ids)."""
        return stable_hash(
            CACHE_VERSION,
            "capture",
            model.kind,
            wh,
            [L.to_dict() for L in model.layers],
            {
                k: v
                for k, v in effective_options(model).items()
                if k in ("serializer", "positions", "future_tokens", "device", "dtype")
            },
            inputs.key,
            forecast_key,
        )

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
        joint = None  # capture folder filled by the forecast's own prefill (one forward pass)
        if fc is None:
            prepare()
            kw = {}
            if getattr(model, "joint_capture", False):
                folder = self.cache.dir("captures", self.capture_key(model, wh, inputs, ""))
                if not (folder / "complete.json").is_file():
                    kw["capture"] = joint = folder
            out = model.forecast(list(inputs.contexts), H, n_samples=cfg.forecast.n_samples, seed=seed, **kw)
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
            "context": inputs.contexts[:k].tolist(),
            "target": inputs.targets[:k].tolist(),
            "point": point[:k].tolist(),
            "lo": np.quantile(samples[:k], q[0], axis=1).tolist(),
            "hi": np.quantile(samples[:k], q[1], axis=1).tolist(),
            "n_samples": int(samples.shape[1]),
            "quantiles": list(q),
        }
        # ---- embeddings + isotropy
        layers = model.layers
        ckey = self.capture_key(model, wh, inputs, fkey if aux else "")
        rows_key = {str(k): int(v) for k, v in sorted(n_rows.items())}
        ikey = stable_hash(CACHE_VERSION, "isotropy", ckey, cfg.isotropy.__dict__, cfg.seed, model.has_head, rows_key)
        iso = self.cache.load_json("isotropy", ikey)
        if iso is None:
            emb, wins, cached = model.embed_cached(
                list(inputs.contexts),
                self.cache.dir("captures", ckey),
                split=split,
                aux=aux or None,
                prepare=prepare,
                damaged=lambda: self.cache.damaged("capture"),
            )
            # a capture written by this cell's forecast prefill was computed here
            (self.cache.hit if cached and joint is None else self.cache.miss)("capture")
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
                "name": L.name,
                "spectrum": li["spectrum"],
                "pca": li["pca"],
                "pca_labels": li["pca_labels"],
                "silhouettes": li.get("silhouettes", {}),
                "notes": li.get("notes", []),
                "skip_reason": li.get("skip_reason", ""),
            }
            row = {
                "model": model.name,
                "kind": model.kind,
                "dataset": inputs.dataset,
                "perturbation": inputs.perturbation,
                "layer": L.index,
                "layer_name": L.name,
                "stack": L.stack,
                "depth": L.depth,
                "context": int(inputs.contexts.shape[1]),
                "horizon": H,
                "n_series": int(inputs.contexts.shape[0]),
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
                wr = {
                    "model": model.name,
                    "kind": model.kind,
                    "dataset": inputs.dataset,
                    "perturbation": inputs.perturbation,
                    "layer": L.index,
                    "layer_name": L.name,
                    "depth": L.depth,
                    "window": j,
                    "n_rows": v["n_rows"],
                    "nmse": wnmse[j] if j < len(wnmse) else math.nan,
                    "skip_reason": row["skip_reason"],
                }
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

            li = layer_suite(
                emb[L.index], cfg.isotropy, seed, n_rows=int(n_rows[L.index]), windows=wins[L.index], head=head
            )
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
                sd = H.ShiftDirection(
                    u=z["u"],
                    residual=float(z["residual"]),
                    gram=z["gram"],
                    ones_proj=z["ones_proj"],
                    rank=int(z["rank"]),
                )
            else:
                sd = H.shift_direction(W)
                self.cache.save_npz(
                    "head",
                    key,
                    {
                        "u": sd.u,
                        "residual": np.array(sd.residual),
                        "gram": sd.gram,
                        "ones_proj": sd.ones_proj,
                        "rank": np.array(sd.rank),
                    },
                )
            self._shift[key] = sd

        return H.head_diagnostics(W, C, b, isotropy=False, head_isotropy=False, shift=sd)


# ---------------------------------------------------------------- baselines
def season_of(split) -> int:
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


def baselines(cfg, store: StudyCache, split, inputs: CellInputs) -> dict:
    """Seasonal naive and ETS sample paths (n, S, H) for every test window of one
    (dataset, perturbation), cached; ``"_info"`` holds their season and pooled metrics."""
    from isofast.baselines import ets, seasonal_naive

    season = season_of(split)
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
