"""The adaptation experiment, its config, statistics and report section (tiny model)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from isofast.adapt.config import AdaptationConfig, parse
from isofast.adapt.experiment import paired_test, run_experiment
from isofast.study.config import ConfigError


def _tiny_table():
    ds = [
        {
            "name": k,
            "source": "kernelsynth",
            "context": 32,
            "horizon": 4,
            "n_test": 4,
            "length": 48,
            "n_train_series": 3,
        }
        for k in (
            "RBF_0.1",
            "DotProduct_1",
            "RationalQuadratic_1",
            "WhiteKernel_0.1",
            "Seasonality_0.25H",
            "DotProduct_0",
        )
    ]
    ds.append({"name": "airpassengers", "source": "registry", "context": 32, "horizon": 4, "n_test": 4})
    return {
        "model": "tiny-llama",
        "lora": False,
        "steps": 4,
        "batch_size": 2,
        "lr": 3e-3,
        "seeds": [0],
        "n_samples": 2,
        "layers": [0, 1, 2],
        "selection_fraction": 0.43,
        "n_boot": 200,
        "n_perm": 200,
        "statistics": ["isoscore", "avg_cosine_centered", "head_log_z_std"],
        "regularizers": [{"kind": "isoscore", "layer": 1, "weight": 2.0}, {"kind": "logz", "layer": 2, "weight": -1.0}],
        "datasets": ds,
    }


def test_parse_and_refusals():
    cfg = parse(_tiny_table())
    assert isinstance(cfg, AdaptationConfig) and len(cfg.datasets) == 7 and cfg.regularizers[1].kind == "logz"
    d = AdaptationConfig()
    assert len(d.datasets) >= 8 and {x.source for x in d.datasets} == {"kernelsynth", "registry"}
    with pytest.raises(ConfigError, match="unknown key"):
        parse({"stepz": 3})
    with pytest.raises(ConfigError, match="steps"):
        parse({"steps": 0})
    with pytest.raises(ConfigError, match="weight 0"):
        parse({"regularizers": [{"kind": "isoscore", "weight": 0.0}]})
    with pytest.raises(ConfigError, match="unknown key"):
        parse({"datasets": [{"name": "x", "context": 3, "horizon": 1, "bogus": 1}]})


def _ref_signflip(g: np.ndarray) -> float:
    t = abs(g.mean())
    vals = [abs((np.array(s) * g).mean()) for s in itertools.product([-1, 1], repeat=g.size)]
    return float(np.mean(np.array(vals) >= t - 1e-12))


def test_paired_test_against_enumeration():
    rng = np.random.default_rng(0)
    d = rng.normal(0.3, 1.0, 12)
    g = np.repeat(np.arange(6), 2)
    r = paired_test(d, g, n_boot=500, n_perm=2000, seed=1)
    means = np.array([d[g == k].mean() for k in range(6)])
    assert r["exact"] and r["n_groups"] == 6
    np.testing.assert_allclose(r["estimate"], means.mean())
    np.testing.assert_allclose(r["p_value"], _ref_signflip(means))
    assert r["ci_low"] <= r["estimate"] <= r["ci_high"]
    # a clear effect on every dataset reaches the exact floor 2/2^G
    r2 = paired_test(np.full(6, -1.0) + rng.normal(0, 0.01, 6), np.arange(6), n_perm=2000)
    assert r2["p_value"] == pytest.approx(2 / 64) and r2["share_better"] == 1.0
    assert np.isnan(paired_test(np.ones(2), np.arange(2))["p_value"])


def test_experiment_runs_caches_and_reports(tmp_path):
    from isofast.adapt.report import section

    acfg = parse(_tiny_table())
    logs = []
    res = run_experiment(acfg, tmp_path / "out", tmp_path / "cache", log=logs.append)
    assert len(res.runs) == 7 * 3
    assert {r["arm"] for r in res.runs} == {"none", "isoscore+2@L1", "logz-1@L2"}
    for r in res.runs:
        assert np.isfinite(r["nmse_before"]) and np.isfinite(r["nmse_after"])
        assert r["gain"] == pytest.approx(r["nmse_before"] - r["nmse_after"])
        assert set(r["pre"]) == {"0", "1", "2"} and "isoscore" in r["pre"]["1"]
        assert len(r["loss_curve"]) == 4
    qa = res.questions["a"]
    assert len(qa["selection_datasets"]) == 3 and len(qa["evaluation_datasets"]) == 4
    assert not set(qa["selection_datasets"]) & set(qa["evaluation_datasets"])
    assert qa["tests"] and res.questions["b"]["tests"]
    for t in qa["tests"] + res.questions["b"]["tests"]:
        # tested on the 4 held-out datasets only: 4! = 24 exact permutations
        assert t["n_groups"] == 4 and t["exact"] and 1 / 24 - 1e-12 <= t["p_value"] <= 1
        assert t["layer"] in (0, 1, 2) and np.isfinite(t["q_value"])
    assert (
        "head_log_z_std" not in {t["statistic"] for t in qa["tests"]}
        or next(t for t in qa["tests"] if t["statistic"] == "head_log_z_std")["layer"] == 2
    )
    arms = res.questions["c"]["arms"]
    assert [a["n_groups"] for a in arms] == [7, 7]
    # the IsoScore* arm (w = +2 on layer 1) raised layer 1's IsoScore against the paired run
    assert arms[0]["stat_change"] > 0
    assert res.verdict and res.verdict_lines
    d = json.loads((tmp_path / "out" / "adaptation.json").read_text())
    assert d["verdict"] == res.verdict
    html = section(res, tmp_path / "figures")
    assert html.index("Verdict") < html.index("(a)") and "Adaptation" in html
    assert (tmp_path / "figures" / "adapt_intervention.png").is_file()
    # a re-run is served from the cache, with identical results
    res2 = run_experiment(acfg, tmp_path / "out2", tmp_path / "cache", log=logs.append)
    assert res2.counters["computed"] == 0
    assert [r["nmse_after"] for r in res2.runs] == [r["nmse_after"] for r in res.runs]
