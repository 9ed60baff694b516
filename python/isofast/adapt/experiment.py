"""The adaptation experiment (issue 18 §3): when does isotropy help adapt an LM to numbers?

For every dataset d and seed s of :class:`~isofast.adapt.config.AdaptationConfig`:

1. the base model forecasts d's held-out test windows → NMSE_before; the
   tracker measures every tracked layer on the test contexts (the probe,
   contexts only) → the pre-adaptation isotropy I_before(L, stat);
2. an unregularised fine-tune on d's training windows (``steps`` × ``batch_size``,
   seed s) → NMSE_after, I_after; gain = NMSE_before − NMSE_after;
3. each regulariser arm r fine-tunes with the same data order, seed and
   budget plus ``weight · penalty`` on one layer → NMSE_r.

Questions, all over datasets as the unit (cells of one dataset share its
series; :mod:`isofast.study.stats`):

(a) Spearman ρ(I_before(L, stat), gain); (b) ρ(I_after − I_before, gain).
    **Held-out layer choice**: a seeded ``selection_fraction`` of the
    datasets chooses, per statistic, the layer with the largest |ρ|; ρ is
    then tested on the other datasets only, with a cluster-bootstrap BCa CI
    and a group permutation p-value (:func:`isofast.study.stats.correlate`,
    groups = datasets, slots = seeds), BH q-values over the statistics.
(c) For each arm, the paired log ratio δ = log(NMSE_r / NMSE_unreg) per
    (dataset, seed), averaged per dataset; the estimate is the mean over
    datasets, its CI a percentile cluster bootstrap over datasets, its
    p-value a sign-flip permutation test over datasets (two-sided; exact
    over all 2^G sign patterns when 2^G ≤ n_perm, else Phipson–Smyth
    (1 + #)/(1 + B)); BH over arms. δ < 0: the regulariser helped.

Isotropy is measured by :class:`isofast.adapt.tracking.IsotropyTracker`,
i.e. the study's :func:`~isofast.study.isotropy.layer_suite` under its
validity rules (equal N, floors, nulls, massive rows excluded).

Runs are cached under ``cache`` by a hash of everything that determines them,
so a re-run only computes what changed.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from isofast.report import jsonable

__all__ = ["AdaptationResult", "paired_test", "run_experiment"]

CACHE_VERSION = "adapt-exp-1"


@dataclass
class AdaptationResult:
    """Everything the experiment found; ``to_dict()`` is JSON-ready."""

    settings: dict
    runs: list = field(default_factory=list)
    questions: dict = field(default_factory=dict)
    verdict: str = ""
    verdict_lines: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    files: dict = field(default_factory=dict)
    counters: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return jsonable(asdict(self))


def _nan(v) -> float:
    return float("nan") if v is None else float(v)


# ------------------------------------------------------------ paired tests
def paired_test(
    delta: np.ndarray, groups: np.ndarray, *, n_boot: int = 2000, n_perm: int = 2000, level: float = 0.95, seed: int = 0
) -> dict:
    """Mean paired difference over groups with a cluster-bootstrap CI and a
    sign-flip permutation p-value (module docstring, (c))."""
    delta = np.asarray(delta, np.float64)
    groups = np.asarray(groups)
    ok = np.isfinite(delta)
    delta, groups = delta[ok], groups[ok]
    uniq = list(dict.fromkeys(groups.tolist()))
    g_means = np.array([delta[groups == g].mean() for g in uniq])
    G = g_means.size
    nan = float("nan")
    out = {
        "estimate": float(g_means.mean()) if G else nan,
        "n": int(delta.size),
        "n_groups": int(G),
        "ci_low": nan,
        "ci_high": nan,
        "p_value": nan,
        "exact": False,
        "n_permutations": 0,
        "share_better": float(np.mean(g_means < 0)) if G else nan,
        "group_means": g_means.tolist(),
    }
    if G < 3:
        out["note"] = f"{G} datasets: too few for a CI or a p-value"
        return out
    ss = np.random.SeedSequence(seed)
    rb, rp = (np.random.default_rng(s) for s in ss.spawn(2))
    boot = g_means[rb.integers(0, G, size=(n_boot, G))].mean(1)
    a = (1 - level) / 2
    out["ci_low"], out["ci_high"] = (float(v) for v in np.quantile(boot, [a, 1 - a]))
    t_obs = abs(g_means.mean())
    if 2**G <= n_perm:
        signs = ((np.arange(2**G)[:, None] >> np.arange(G)[None, :]) & 1) * 2 - 1
        T = np.abs((signs * g_means).mean(1))
        out["p_value"] = float(np.mean(T >= t_obs - 1e-12))
        out["exact"], out["n_permutations"] = True, int(2**G)
    else:
        signs = rp.choice([-1.0, 1.0], size=(n_perm, G))
        T = np.abs((signs * g_means).mean(1))
        out["p_value"] = float((1 + np.sum(T >= t_obs - 1e-12)) / (1 + n_perm))
        out["n_permutations"] = int(n_perm)
    return out


# ---------------------------------------------------------------- helpers
def _layer_stats(tracker, step: int) -> dict:
    """{layer: {statistic: value}} at ``step`` from a tracker's rows."""
    out: dict = {}
    for r in tracker.rows:
        if r["step"] == step and r["layer"] >= 0:
            out.setdefault(int(r["layer"]), {})[r["statistic"]] = r["value"]
    return out


def _selection(datasets: list[str], fraction: float, seed: int) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    order = [datasets[i] for i in rng.permutation(len(datasets))]
    k = min(max(1, round(fraction * len(datasets))), len(datasets) - 3)
    if k < 1:
        return [], list(datasets)
    return sorted(order[:k]), sorted(order[k:])


def _xy(runs: list, stat: str, layer: int, which: str, datasets: list) -> tuple:
    x, y, g, s = [], [], [], []
    for r in runs:
        if r["arm"] != "none" or r["dataset"] not in datasets:
            continue
        pre = r["pre"].get(str(layer), {}).get(stat, math.nan)
        post = r["post"].get(str(layer), {}).get(stat, math.nan)
        v = pre if which == "a" else post - pre
        gain = r["gain"]
        if math.isfinite(v) and math.isfinite(gain):
            x.append(v)
            y.append(gain)
            g.append(r["dataset"])
            s.append(r["seed"])
    return np.asarray(x), np.asarray(y), np.asarray(g), np.asarray(s)


def _question(runs: list, acfg, which: str, layers: list, sel: list, ev: list) -> dict:
    from isofast.study.stats import benjamini_hochberg, correlate, correlation

    tests = []
    for stat in acfg.statistics:
        best, best_rho = None, -1.0
        for L in layers:
            x, y, _, _ = _xy(runs, stat, L, which, sel)
            if x.size < 3:
                continue
            rho = correlation(x, y, "spearman")
            if math.isfinite(rho) and abs(rho) > best_rho:
                best, best_rho = L, abs(rho)
        if best is None:
            continue
        x, y, g, s = _xy(runs, stat, best, which, ev)
        if x.size < 2:
            continue
        c = correlate(
            x,
            y,
            method="spearman",
            groups=g,
            slots=s,
            n_boot=acfg.n_boot,
            n_perm=acfg.n_perm,
            level=acfg.ci,
            seed=acfg.seed,
        )
        tests.append({"statistic": stat, "layer": best, "selection_rho": best_rho, **c.to_dict()})
    q = benjamini_hochberg([t["p_value"] for t in tests])
    for t, v in zip(tests, q):
        t["q_value"] = float(v)
    out = {"tests": tests, "selection_datasets": sel, "evaluation_datasets": ev}
    if tests and which == "a":
        t0 = min(tests, key=lambda t: (t["q_value"] if math.isfinite(t["q_value"]) else 2.0, -abs(_nan(t["estimate"]))))
        x, y, g, _ = _xy(runs, t0["statistic"], t0["layer"], "a", sel + ev)
        out.update(
            statistic=t0["statistic"],
            layer=t0["layer"],
            points=[{"x": float(a), "y": float(b), "dataset": str(d)} for a, b, d in zip(x, y, g)],
        )
    return out


def _intervention(runs: list, acfg, arm_layers: dict) -> dict:
    from isofast.study.stats import benjamini_hochberg

    base = {(r["dataset"], r["seed"]): r for r in runs if r["arm"] == "none"}
    arms = []
    for arm in acfg.regularizers:
        name = arm.name
        d, g, chg = [], [], []
        L = arm_layers[name]
        stat = "isoscore" if arm.kind == "isoscore" else "head_log_z_std"
        for r in runs:
            if r["arm"] != name:
                continue
            b = base.get((r["dataset"], r["seed"]))
            if b is None or not (r["nmse_after"] > 0 and b["nmse_after"] > 0):
                continue
            d.append(math.log(r["nmse_after"] / b["nmse_after"]))
            g.append(r["dataset"])
            sl = str(L) if arm.kind == "isoscore" else str(max(int(k) for k in r["post"]))
            chg.append(_nan(r["post"].get(sl, {}).get(stat)) - _nan(b["post"].get(sl, {}).get(stat)))
        t = paired_test(
            np.asarray(d), np.asarray(g), n_boot=acfg.n_boot, n_perm=acfg.n_perm, level=acfg.ci, seed=acfg.seed
        )
        arms.append(
            {
                "arm": name,
                "kind": arm.kind,
                "layer": L,
                "weight": arm.weight,
                "log_ratios": d,
                "stat_change": float(np.nanmean(chg)) if chg and np.isfinite(chg).any() else float("nan"),
                "stat_changed": stat,
                **t,
            }
        )
    q = benjamini_hochberg([a["p_value"] for a in arms])
    for a, v in zip(arms, q):
        a["q_value"] = float(v)
    return {"arms": arms}


def _verdict(res: AdaptationResult, alpha: float) -> None:
    qa, qb, qc = (res.questions.get(k, {}) for k in ("a", "b", "c"))
    lines = []

    def best(tests):
        ok = [t for t in tests if math.isfinite(_nan(t.get("p_value")))]
        return min(ok, key=lambda t: t["q_value"]) if ok else None

    sig = []
    for tag, q, what in (
        ("a", qa, "pre-adaptation isotropy predicts the gain"),
        ("b", qb, "the change in isotropy tracks the improvement"),
    ):
        t = best(q.get("tests", []))
        if t is None:
            lines.append(f"({tag}) untestable: too few datasets with a finite statistic.")
            continue
        s = t["q_value"] <= alpha
        sig.append(s)
        lines.append(
            f"({tag}) {'Yes' if s else 'Not shown'}: {what} — best held-out {t['statistic']} at layer {t['layer']}, "
            f"Spearman ρ = {t['estimate']:+.2f} [{_nan(t['ci_low']):+.2f}, {_nan(t['ci_high']):+.2f}], "
            f"p = {_nan(t['p_value']):.3g}, q = {t['q_value']:.3g} over {t['n_groups']} held-out datasets."
        )
    for a in qc.get("arms", []):
        if not math.isfinite(_nan(a.get("p_value"))):
            lines.append(f"(c) {a['arm']}: untestable ({a.get('note', 'too few datasets')}).")
            continue
        s = a["q_value"] <= alpha
        sig.append(s)
        eff = math.exp(a["estimate"])
        lines.append(
            f"(c) {a['arm']}: NMSE × {eff:.3g} vs unregularised [{math.exp(a['ci_low']):.3g}, "
            f"{math.exp(a['ci_high']):.3g}], p = {a['p_value']:.3g}, q = {a['q_value']:.3g}; better on "
            f"{a['share_better']:.0%} of {a['n_groups']} datasets — {'a real effect' if s else 'no shown effect'}"
            f"{'' if not s else (' (helps)' if a['estimate'] < 0 else ' (hurts)')}."
        )
    if not sig:
        res.verdict = (
            "No question could be tested: too few datasets with finite statistics and NMSE "
            f"({len(res.settings.get('datasets', []))} datasets; (a) and (b) need ≥ 3 held-out ones)."
        )
    elif any(sig):
        res.verdict = (
            "At FDR "
            + f"{alpha:g}"
            + ", some adaptation effects of isotropy are shown: "
            + "; ".join(line for line, s in zip(lines, sig) if s)
        )
    else:
        res.verdict = (
            f"At FDR {alpha:g}, no tested question shows an effect: isotropy neither predicted nor "
            "tracked the gain from adaptation, and regularising it did not change NMSE detectably, at this "
            f"budget ({res.settings.get('steps')} steps, {len(res.settings.get('datasets', []))} datasets)."
        )
    res.verdict_lines = lines


# ------------------------------------------------------------------ runner
def run_experiment(acfg, out: Path, cache: Path, log: Callable[[str], None] = print) -> AdaptationResult:
    """Run the experiment of :class:`~isofast.adapt.config.AdaptationConfig`
    ``acfg`` (module docstring); writes ``adaptation.json``,
    ``adaptation_runs.csv``, ``adaptation_tests.csv`` into ``out`` and caches
    every run in ``cache``. Returns an :class:`AdaptationResult`."""
    from isofast.adapt.data import TrainingSet, check_tokenizer
    from isofast.adapt.finetune import check_causal_lm, finetune
    from isofast.adapt.regularizers import Regularizer
    from isofast.adapt.run import forecast_nmse
    from isofast.adapt.tracking import IsotropyTracker, default_layers
    from isofast.models import load_model
    from isofast.study.config import stable_hash
    from isofast.study.datasets import load_split

    t_all = time.perf_counter()
    out, cache = Path(out), Path(cache)
    out.mkdir(parents=True, exist_ok=True)
    (cache / "adapt").mkdir(parents=True, exist_ok=True)
    base = load_model(acfg.model)  # cuda when present, else cpu
    check_causal_lm(base)
    check_tokenizer(base.tokenizer)
    n_layers = base.num_layers
    arm_layers = {a.name: (n_layers // 2 if a.layer < 0 else a.layer) for a in acfg.regularizers}
    for a in acfg.regularizers:
        Regularizer(a.kind, a.weight, arm_layers[a.name], a.zeta).check(base.model)
    layers = default_layers(n_layers) if acfg.layers == "auto" else sorted(set(acfg.layers))
    layers = sorted(set(layers) | {arm_layers[a.name] for a in acfg.regularizers if a.kind == "isoscore"})
    settings = {
        "model": acfg.model,
        "weights_hash": base.weights_hash,
        "lora": acfg.lora,
        "steps": acfg.steps,
        "batch_size": acfg.batch_size,
        "lr": acfg.lr or None,
        "seeds": list(acfg.seeds),
        "loss_on": acfg.loss_on,
        "n_samples": acfg.n_samples,
        "layers": layers,
        "datasets": [d.name for d in acfg.datasets],
        "arms": {a.name: {**a.__dict__, "layer": arm_layers[a.name]} for a in acfg.regularizers},
    }
    res = AdaptationResult(settings=settings)
    counters = {"computed": 0, "cached": 0}
    import torch

    old_threads = torch.get_num_threads()
    if acfg.threads:
        torch.set_num_threads(int(acfg.threads))
    try:
        for dcfg in acfg.datasets:
            split = load_split(dcfg, seed=acfg.seed)
            train = TrainingSet(
                base.tokenizer,
                split.train_context,
                split.train_target,
                loss_on=acfg.loss_on,
                max_length=base.max_length,
            )
            pre_key = stable_hash(CACHE_VERSION, "pre", settings["weights_hash"], split.key, layers, acfg.n_samples)
            pre_path = cache / "adapt" / f"pre-{pre_key}.json"
            if pre_path.is_file():
                pre = json.loads(pre_path.read_text())
                counters["cached"] += 1
            else:
                tr = IsotropyTracker(
                    split.test_context,
                    tokenizer=base.tokenizer,
                    every=10**9,
                    layers=layers,
                    cache=cache / "adapt",
                    seed=acfg.seed,
                )
                tr.measure(base.model, 0)
                fc = forecast_nmse(
                    base,
                    split.test_context,
                    split.test_target,
                    n_samples=acfg.n_samples,
                    seed=acfg.seed,
                    threads=acfg.threads or None,
                )
                pre = {
                    "stats": {str(k): v for k, v in _layer_stats(tr, 0).items()},
                    "forecast": fc,
                    "n_rows": tr.n_rows,
                    "tracking_seconds": tr.seconds,
                    "notes": tr.notes,
                }
                pre_path.write_text(json.dumps(jsonable(pre)))
                counters["computed"] += 1
            log(f"{split.name}: NMSE before {pre['forecast']['nmse']:.4g}")
            for seed in acfg.seeds:
                for arm in [None, *acfg.regularizers]:
                    name = "none" if arm is None else arm.name
                    reg = None if arm is None else Regularizer(arm.kind, arm.weight, arm_layers[name], arm.zeta)
                    key = stable_hash(
                        CACHE_VERSION,
                        "run",
                        settings["weights_hash"],
                        split.key,
                        layers,
                        seed,
                        name,
                        None if reg is None else reg.to_dict(),
                        acfg.lora,
                        acfg.steps,
                        acfg.batch_size,
                        acfg.lr,
                        acfg.loss_on,
                        acfg.n_samples,
                    )
                    path = cache / "adapt" / f"run-{key}.json"
                    if path.is_file():
                        run = json.loads(path.read_text())
                        counters["cached"] += 1
                    else:
                        lm = copy.copy(base)  # the base model is never trained: each run copies it
                        lm.model = copy.deepcopy(base.model)
                        tr = IsotropyTracker(
                            split.test_context,
                            tokenizer=base.tokenizer,
                            every=10**9,
                            layers=layers,
                            cache=cache / "adapt",
                            seed=acfg.seed,
                        )
                        ft = finetune(
                            lm,
                            train,
                            steps=acfg.steps,
                            batch_size=acfg.batch_size,
                            lr=acfg.lr or None,
                            seed=seed,
                            lora=acfg.lora,
                            regularizer=reg,
                            tracker=None,
                        )
                        tr.measure(lm.model, acfg.steps)
                        fc = forecast_nmse(
                            lm,
                            split.test_context,
                            split.test_target,
                            n_samples=acfg.n_samples,
                            seed=acfg.seed,
                            threads=acfg.threads or None,
                        )
                        run = {
                            "post": {str(k): v for k, v in _layer_stats(tr, acfg.steps).items()},
                            "nmse_after": fc["nmse"],
                            "nll_after": fc["nll"],
                            "loss_curve": ft.loss_curve,
                            "train_seconds": ft.train_seconds,
                            "tracking_seconds": tr.seconds,
                            "forecast_seconds": fc["seconds"],
                        }
                        path.write_text(json.dumps(jsonable(run)))
                        counters["computed"] += 1
                        del lm
                    run.update(
                        dataset=split.name,
                        seed=int(seed),
                        arm=name,
                        pre=pre["stats"],
                        nmse_before=pre["forecast"]["nmse"],
                        nll_before=pre["forecast"]["nll"],
                    )
                    run["nmse_after"] = _nan(run["nmse_after"])
                    run["gain"] = run["nmse_before"] - run["nmse_after"]
                    run["post"] = {k: {s: _nan(v) for s, v in d.items()} for k, d in run["post"].items()}
                    run["pre"] = {k: {s: _nan(v) for s, v in d.items()} for k, d in run["pre"].items()}
                    res.runs.append(run)
                    log(
                        f"  seed {seed} {name}: NMSE after {run['nmse_after']:.4g} "
                        f"({run['train_seconds']:.1f} s training)"
                    )
    finally:
        torch.set_num_threads(old_threads)
    names = [d.name for d in acfg.datasets]
    sel, ev = _selection(names, acfg.selection_fraction, acfg.seed)
    if len(ev) < 3:
        res.notes.append(f"only {len(ev)} evaluation datasets: held-out tests need ≥ 3")
    res.questions["a"] = _question(res.runs, acfg, "a", layers, sel, ev)
    res.questions["b"] = _question(res.runs, acfg, "b", layers, sel, ev)
    res.questions["c"] = _intervention(res.runs, acfg, arm_layers)
    _verdict(res, acfg.alpha)
    res.counters = counters
    res.seconds = time.perf_counter() - t_all
    res.files = _write(res, out)
    return res


def _write(res: AdaptationResult, out: Path) -> dict:
    import pandas as pd

    files = {}
    rows = [
        {k: r[k] for k in ("dataset", "seed", "arm", "nmse_before", "nmse_after", "gain", "train_seconds")}
        for r in res.runs
    ]
    pd.DataFrame(rows).to_csv(out / "adaptation_runs.csv", index=False)
    files["runs"] = str(out / "adaptation_runs.csv")
    tests = []
    for q in ("a", "b"):
        for t in res.questions.get(q, {}).get("tests", []):
            tests.append({"question": q, **{k: v for k, v in t.items() if k != "notes"}})
    for a in res.questions.get("c", {}).get("arms", []):
        tests.append({"question": "c", **{k: v for k, v in a.items() if k not in ("log_ratios", "group_means")}})
    pd.DataFrame(tests).to_csv(out / "adaptation_tests.csv", index=False)
    files["tests"] = str(out / "adaptation_tests.csv")
    (out / "adaptation.json").write_text(json.dumps(res.to_dict(), indent=2))
    files["json"] = str(out / "adaptation.json")
    return files
