"""End-to-end study runs on the bundled tiny configuration (tiny random models,
four short KernelSynth sets, two perturbations): results table, statistics,
causal test, report with every figure, cache reuse, failed cells, the CLI."""

import json
import tomllib

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("matplotlib")
pd = pytest.importorskip("pandas")

from isofast.study import ConfigError, load_config, run_study  # noqa: E402
from isofast.study.config import STATISTICS, bundled_config_path  # noqa: E402

QUIET = {"progress": False, "log": lambda m: None}


def _err(df):
    """The error column as strings ('' for none; an all-empty CSV column reads as NaN)."""
    return df["error"].astype(object).where(df["error"].notna(), "").astype(str)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-study")
    return out, run_study("tiny", out=out, **QUIET)


def test_tiny_study_end_to_end(tiny_run):
    out, res = tiny_run
    cfg = res.config
    df = pd.read_csv(out / "results.csv")
    assert (out / "results.parquet").is_file()
    assert (_err(df) == "").all(), df.loc[_err(df) != "", "error"].tolist()
    # one row per (model, dataset, perturbation, layer): tiny-llama 0..2, PatchTST 0..2, T5 enc 0..2 + dec 0..2
    n_cells = len(cfg.datasets) * len(cfg.perturbations)
    assert len(df) == n_cells * (3 + 3 + 6)
    assert not df.duplicated(["model", "dataset", "perturbation", "layer"]).any()
    for col in list(STATISTICS) + ["nmse", "mse", "mae", "mase", "crps", "n_rows", "depth"]:
        assert col in df.columns, col
    assert np.isfinite(df[["nmse", "mse", "mae", "isoscore", "effective_dim"]].to_numpy()).all()
    # validity: equal N within every (model, layer), N ≥ d, never fewer rows than promised
    measured = df[df["skip_reason"].astype(object).where(df["skip_reason"].notna(), "") == ""]
    assert (measured.groupby(["model", "layer"])["n_rows"].nunique() == 1).all()
    assert (measured["n_rows"] >= measured["dim"]).all()
    assert (measured["n_available"] >= measured["n_rows"]).all()
    for col in (
        "n_massive",
        "n_small_clusters",
        "skip_reason",
        "skill_mase",
        "skill_crps",
        "isoscore_null",
        "isoscore_vs_null",
        "log_partition_isotropy_null",
        "nmse_snaive",
        "nmse_ets",
    ):
        assert col in df.columns, col
    assert np.isfinite(measured["isoscore_null"]).all() and (measured["isoscore_null"] > 0).all()
    np.testing.assert_allclose(measured["isoscore_vs_null"], measured["isoscore"] / measured["isoscore_null"])
    assert np.isfinite(df["skill_mase"]).all() and (df["skill_mase"] > 0).all()
    # LM-head diagnostics on the layer that feeds the head only
    lm = df[df["model"] == "tiny-llama"]
    head = lm["head_log_z_std"].notna()
    assert set(lm.loc[head, "layer"]) == {2}
    assert df.loc[df["model"] == "patchtst", "head_log_z_std"].isna().all()
    assert df.loc[(df["model"] == "chronos-t5") & (df["layer"] == 5), "head_log_z_std"].notna().all()
    # NMSE is the pooled definition over the cell's series
    cell = next(c for c in res.cells if c.model == "patchtst" and not c.error)
    assert cell.metrics["nmse"] > 0

    corr = pd.read_csv(out / "correlations.csv")
    assert {"model:tiny-llama", "model:patchtst", "model:chronos-t5", "pooled"} <= set(corr["scope"])
    assert {"spearman", "kendall"} == set(corr["method"])
    ok = corr[np.isfinite(corr["p_value"])]
    per_model = ok["scope"].str.startswith("model:")
    assert per_model.any() and (~per_model).any()
    # a cell enters a correlation only where its statistic is defined (floors): never more than the grid,
    # and every cell for the spectral statistics, which N ≥ d makes always defined
    assert (ok.loc[per_model, "n"] <= n_cells).all() and (ok.loc[~per_model, "n"] <= 3 * n_cells).all()
    spectral = ok["statistic"].isin(["isoscore", "effective_dim", "log_partition_isotropy"])
    assert (ok.loc[per_model & spectral, "n"] == n_cells).all()
    assert (ok.loc[~per_model & spectral, "n"] == 3 * n_cells).all()
    assert (ok.loc[spectral, "n_groups"] == len(cfg.datasets)).all()
    assert ((ok["p_value"] > 0) & (ok["p_value"] <= 1) & (ok["q_value"] >= ok["p_value"] - 1e-12)).all()
    assert (ok["ci_low"] <= ok["ci_high"]).all()
    held = pd.read_csv(out / "heldout.csv")
    assert len(held) and set(held["layer"]) - {-1} <= set(df["layer"])
    assert set(res.heldout_info["selection_datasets"]).isdisjoint(res.heldout_info["evaluation_datasets"])

    causal = pd.read_csv(out / "causal.csv")
    assert (_err(causal) == "").all()
    assert set(causal["test"]) == {"patchtst/L1/abtt1", "patchtst/L1/random1"}
    assert np.isfinite(causal["delta_nmse"]).all() and (causal["dataset"] == "all").sum() == 2

    html = (out / "report.html").read_text()
    figs = res.files["figures"]
    for m in ("tiny-llama", "patchtst", "chronos-t5"):
        for kind in ("isotropy_by_layer", "spectra", "heatmap", "forecasts"):
            assert f"{kind}_{m}" in figs, (kind, m)
        assert any(k.startswith(f"pca_{m}_") for k in figs)
    assert "scatter_nmse" in figs and "causal" in figs
    for p in figs.values():
        assert (out / "figures").joinpath(p.split("/")[-1]).stat().st_size > 5000
    assert html.count("data:image/png;base64,") == len(figs)
    data = json.loads((out / "report_data.json").read_text())
    assert len(data["results"]) == len(df) and len(data["correlations"]) == len(corr)
    assert data["cells"][0]["forecast"]["point"]


def test_rerun_reuses_the_cache(tiny_run):
    out, first = tiny_run
    again = run_study("tiny", out=out, report=False, **QUIET)
    assert again.counters, "the counters must record the cached stages"
    for stage, c in again.counters.items():
        assert c["computed"] == 0, (stage, c)
    n_cells = len(first.cells)
    # whole cells come back from cells/<key>.json; no stage is even looked at
    assert again.counters["cells"] == {"computed": 0, "cached": n_cells}
    assert again.counters["causal"]["cached"] == first.counters["causal"]["computed"]
    pd.testing.assert_frame_equal(first.table, again.table)
    # without the cell entries, every stage of every cell is read back instead
    import shutil

    shutil.move(out / "cache" / "cells", out / "cells-aside")
    try:
        staged = run_study("tiny", out=out, report=False, **QUIET)
    finally:
        shutil.rmtree(out / "cache" / "cells", ignore_errors=True)
        shutil.move(out / "cells-aside", out / "cache" / "cells")
    assert staged.counters["cells"] == {"computed": n_cells, "cached": 0}
    for stage in ("forecast", "isotropy"):
        assert staged.counters[stage] == {"computed": 0, "cached": n_cells}, stage
    pd.testing.assert_frame_equal(first.table, staged.table)


def test_cli_uses_the_same_cache(tiny_run, tmp_path, capsys):
    from isofast.cli import main

    out, _ = tiny_run
    rc = main(
        ["study", "tiny", "--out", str(tmp_path / "cli"), "--cache", str(out / "cache"), "--no-report", "--no-progress"]
    )
    assert rc == 0
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert all(c["computed"] == 0 for c in summary["counters"].values())
    assert summary["counters"]["cells"]["cached"] == 36
    assert "held-out correlations" in capsys.readouterr().out


def _tiny():
    with open(bundled_config_path("tiny"), "rb") as f:
        return tomllib.load(f)


def test_failed_cells_do_not_stop_the_grid(tmp_path):
    data = _tiny()
    data["datasets"] = data["datasets"][:1]
    data["perturbations"] = [{"name": "clean"}]
    data["models"] = [m for m in data["models"] if m["name"] == "patchtst"] + [
        {"name": "missing-lm", "kind": "lm", "path": str(tmp_path / "no-such-model")},
    ]
    data["causal"] = {"enabled": False}
    res = run_study(data, out=tmp_path / "out", report=False, **QUIET)
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    err = _err(df)
    failed = df[err != ""]
    assert set(zip(failed["model"], failed["dataset"])) == {("missing-lm", "RBF_1")}
    assert failed["error"].str.contains("FileNotFoundError|OSError").all()
    ok = df[(df["model"] == "patchtst") & (df["dataset"] == "RBF_1")]
    assert len(ok) == 3 and (_err(ok) == "").all() and np.isfinite(ok["nmse"]).all()
    assert sum(1 for c in res.cells if c.error) == 1


def test_a_grid_that_cannot_run_is_refused_before_anything_runs(tmp_path):
    # 144 points cannot hold a 500-point context: refused, naming the dataset
    data = _tiny()
    data["datasets"] = data["datasets"][:1] + [
        {"name": "airpassengers", "source": "registry", "context": 500, "horizon": 6, "n_test": 1},
    ]
    with pytest.raises(ConfigError, match="airpassengers"):
        run_study(data, out=tmp_path / "a", report=False, **QUIET)
    assert not (tmp_path / "a" / "results.csv").exists()
    # rows per cell below d: refused, naming the model, the layer and the numbers
    data = _tiny()
    data["models"] = [m for m in data["models"] if m["name"] == "patchtst"]
    data["models"][0]["d_model"] = 64  # 3 windows × 7 patches = 21 rows < d = 64
    with pytest.raises(ConfigError, match=r"'patchtst', layer encoder.0: N = 19 .*21.* below d = 64"):
        run_study(data, out=tmp_path / "b", report=False, **QUIET)
    # an explicit N above what a cell holds
    data = _tiny()
    data["isotropy"]["rows"] = 5000
    with pytest.raises(ConfigError, match="rows = 5000 but cell"):
        run_study(data, out=tmp_path / "c", report=False, **QUIET)


def test_configs_parse_and_refuse_typos():
    for name in ("default", "reference"):
        cfg = load_config(name)
        assert {m.kind for m in cfg.models} == {"lm", "patchtst", "chronos-t5"}
        assert len(cfg.datasets) >= 8 and cfg.causal.tests
    with open(bundled_config_path("tiny"), "rb") as f:
        data = tomllib.load(f)
    data["isotropy"]["rowz"] = 5
    with pytest.raises(ConfigError, match="rowz"):
        load_config(data)
    data["isotropy"].pop("rowz")
    data["models"][1]["epochz"] = 1
    with pytest.raises(ConfigError, match="epochz"):
        load_config(data)
    data["models"][1].pop("epochz")
    data["datasets"][0]["context"] = "32"
    with pytest.raises(ConfigError, match="context must be int"):
        load_config(data)
    data["datasets"][0]["context"] = 32
    data["stats"]["n_boot"] = 100
    with pytest.raises(ConfigError, match="1000"):
        load_config(data)


def test_report_opens_with_the_verdict_that_heldout_csv_backs(tiny_run):
    out, res = tiny_run
    html = (out / "report.html").read_text()
    v = html.index("id='verdict'")
    assert v < html.index("<h2>", v + 1) and html.count("<h2>") > 3
    assert html.index("id='verdict'") < html.index("Held-out layer (cell level)")
    held = pd.read_csv(out / "heldout.csv")
    for col in ("n", "n_groups", "p_value", "q_value"):
        assert col in held.columns
    for m, mv in res.verdict["models"].items():
        b = mv["cell"]
        if b is None:
            continue
        row = held[(held["model"] == m) & (held["statistic"] == b["statistic"]) & (held["method"] == "spearman")]
        assert len(row) == 1 and row["p_value"].iloc[0] == pytest.approx(b["p_value"])
        assert row["q_value"].iloc[0] == pytest.approx(b["q_value"]) and row["layer"].iloc[0] == b["layer"]
        # the smallest q of the model's held-out rows is the one the verdict names
        assert b["q_value"] == pytest.approx(
            held[(held["model"] == m) & (held["method"] == "spearman")]["q_value"].min()
        )
    assert res.verdict_sentence and res.verdict_sentence in html.replace("&#x27;", "'")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"]["sentence"] == res.verdict_sentence


def _png_std(path_or_bytes) -> float:
    import io

    import matplotlib.image as mpimg

    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    img = mpimg.imread(src, format="png")
    return float(np.asarray(img)[..., :3].std())


def test_report_renders_in_headless_chromium_without_broken_or_empty_images(tiny_run, tmp_path):
    import base64
    import re
    import shutil
    import subprocess

    out, res = tiny_run
    html = (out / "report.html").read_text()
    srcs = re.findall(r'<img alt="[^"]*" src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    for s in srcs:  # every embedded image decodes and is not a blank panel
        assert _png_std(base64.b64decode(s.split(",", 1)[1])) > 0.02
    exe = next((shutil.which(c) for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None)
    if exe is None:
        pytest.skip("no headless Chromium on this machine (.ci/run installs Debian's chromium)")
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1300,1600",
            (out / "report.html").as_uri(),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    assert shot.stat().st_size > 10_000
    assert _png_std(shot.read_bytes()) > 0.05  # text and figures, not a blank page


def test_cli_names_the_cause_of_failed_cells_and_refuses_a_grid_with_no_runnable_model(tmp_path, capsys):
    from isofast.cli import main

    data = _tiny()
    data["datasets"] = data["datasets"][:1]
    data["perturbations"] = [{"name": "clean", "kind": "none"}]
    data["models"] = [m for m in data["models"] if m["name"] == "patchtst"]
    data["causal"] = {"enabled": False}
    text = bundled_config_path("tiny").read_text()
    # one runnable model and one missing folder: the grid runs, the terminal names the cause
    grid = tmp_path / "g.toml"
    head = text[: text.index("[[datasets]]")]
    ds = text[text.index("[[datasets]]") : text.index("[[datasets]]", text.index("[[datasets]]") + 1)]
    pt = text[text.index('[[models]]\nname = "patchtst"') : text.index('[[models]]\nname = "chronos-t5"')]
    missing = tmp_path / "no-such-model"
    grid.write_text(
        head
        + ds
        + '[[perturbations]]\nname = "clean"\nkind = "none"\n\n'
        + pt
        + f'[[models]]\nname = "missing-lm"\nkind = "lm"\npath = "{missing}"\n\n'
        + "[causal]\nenabled = false\n\n[report]\nenabled = false\n"
    )
    rc = main(["study", str(grid), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0
    assert "model 'missing-lm' cannot run" in err and str(missing) in err
    assert any(line.startswith("failed: missing-lm / RBF_1 / clean:") for line in err.splitlines())
    # only the missing model: refused before anything runs, one line, exit 2
    grid.write_text(
        head
        + ds
        + '[[perturbations]]\nname = "clean"\nkind = "none"\n\n'
        + f'[[models]]\nname = "missing-lm"\nkind = "lm"\npath = "{missing}"\n\n'
        + "[causal]\nenabled = false\n"
    )
    rc = main(["study", str(grid), "--out", str(tmp_path / "p"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no model of the study can run" in err[0] and "missing-lm" in err[0]
    assert not (tmp_path / "p" / "results.csv").exists()


def test_adaptation_table_runs_the_experiment_and_the_report_shows_it_after_the_verdict(tmp_path):
    """[adaptation] in a study config: the fine-tuning experiment (isofast.adapt)
    runs after the grid; summary.json and report.html carry it."""
    data = _tiny()
    data["datasets"] = data["datasets"][:3]
    data["models"] = [m for m in data["models"] if m["name"] == "patchtst"]
    data["causal"] = {"enabled": False}
    ds = [
        {
            "name": k,
            "source": "kernelsynth",
            "context": 32,
            "horizon": 4,
            "n_test": 3,
            "length": 48,
            "n_train_series": 3,
        }
        for k in (
            "RBF_0.1",
            "DotProduct_1",
            "WhiteKernel_0.1",
            "Seasonality_0.25H",
            "DotProduct_0",
            "RationalQuadratic_1",
        )
    ]
    data["adaptation"] = {
        "model": "tiny-llama",
        "lora": False,
        "steps": 2,
        "batch_size": 2,
        "lr": 3e-3,
        "seeds": [0],
        "n_samples": 2,
        "layers": [0, 1],
        "selection_fraction": 0.5,
        "n_boot": 100,
        "n_perm": 100,
        "statistics": ["isoscore"],
        "regularizers": [{"kind": "logz", "layer": 1, "weight": 1.0}],
        "datasets": ds,
    }
    res = run_study(data, out=tmp_path / "out", report=True, **QUIET)
    assert res.adaptation is not None
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    a = summary["adaptation"]
    assert a is not None and a["verdict"] and len(a["runs"]) >= len(ds)
    assert (tmp_path / "out" / "adaptation" / "adaptation_runs.csv").is_file()
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.index("id='verdict'") < page.index('id="adaptation"')
