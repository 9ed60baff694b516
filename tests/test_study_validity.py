"""The study's validity rules on constructed data: massive rows, equal N, the
cluster floor, nulls, the per-context analysis against scipy, the verdict."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
scipy_stats = pytest.importorskip("scipy.stats")

import isofast
from isofast.study.config import IsotropyConfig, StatsConfig
from isofast.study.isotropy import layer_suite
from isofast.study.tables import split_datasets, trust_table
from isofast.study.verdict import build_verdict

ISO = IsotropyConfig(k_max=6, sample_size=None, pca_points=50)


def _gauss(n, d, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_a_planted_massive_row_is_detected_and_excluded():
    X = _gauss(300, 16)
    X[17] *= 1e4  # one attention-sink-like row, not at position 0
    win = np.repeat(np.arange(3), 100)
    li = layer_suite(X, ISO, 0, n_rows=299, windows=win)
    s = li["stats"]
    assert s["n_massive"] == 1 and s["massive_variance_share"] > 0.99
    assert s["n_rows"] == 299 and s["n_available"] == 299 and li["skip_reason"] == ""
    ref = isofast.analyze(np.delete(X, 17, axis=0))
    for k in ("isoscore", "pc1_share", "effective_dim", "avg_cosine_centered", "log_partition_isotropy_centered"):
        assert math.isclose(s[k], float(getattr(ref, k)), rel_tol=1e-9, abs_tol=1e-12), k
    # the window holding it reports the massive row and its share
    w0 = next(w["values"] for w in li["windows"] if w["values"]["window"] == 0)
    assert w0["n_massive"] == 1 and w0["massive_share"] > 0.99
    assert next(w["values"] for w in li["windows"] if w["values"]["window"] == 1)["n_massive"] == 0
    # "keep" measures every row
    keep = layer_suite(X, IsotropyConfig(massive="keep", k_max=6, sample_size=None), 0, n_rows=300, windows=win)
    assert keep["stats"]["n_massive"] == 1 and keep["stats"]["pc1_share"] > 0.99


def test_fewer_rows_than_the_layers_n_is_skipped_with_a_reason():
    X = _gauss(100, 8)
    li = layer_suite(X, ISO, 0, n_rows=120, windows=np.zeros(100, np.int64))
    assert "fewer than the N = 120" in li["skip_reason"]
    assert all(math.isnan(li["stats"][k]) for k in ("isoscore", "inter_cluster_cosine", "isoscore_null"))
    assert li["windows"] == []


def test_every_cell_gets_exactly_n_rows():
    for n in (150, 200):
        li = layer_suite(_gauss(n, 8, seed=n), ISO, 3, n_rows=140, windows=np.zeros(n, np.int64))
        assert li["stats"]["n_rows"] == 140


def test_a_two_row_cluster_never_contributes():
    rng = np.random.default_rng(1)
    blob = rng.standard_normal((200, 8)) * 0.3
    pair = np.array([[10.0] * 8, [10.5] * 8])  # a far-away 2-row cluster: its centred cosine is exactly −1
    X = np.vstack([blob, pair]).astype(np.float32)
    li = layer_suite(
        X, IsotropyConfig(k_min=2, k_max=2, sample_size=None), 0, n_rows=202, windows=np.zeros(202, np.int64)
    )
    s = li["stats"]
    assert s["best_k"] == 2 and s["n_small_clusters"] == 1
    ref = isofast.avg_cosine(blob, center=True)
    assert math.isclose(s["inter_cluster_cosine"], ref, rel_tol=1e-6, abs_tol=1e-9)
    # the reference recipe without floors takes the −1 in, and says so
    ref_li = layer_suite(
        X,
        IsotropyConfig(k_min=2, k_max=2, sample_size=None, floors=False),
        0,
        n_rows=202,
        windows=np.zeros(202, np.int64),
    )
    assert math.isclose(ref_li["stats"]["inter_cluster_cosine"], (ref - 1.0) / 2, rel_tol=1e-6)
    assert any("without floors" in n for n in ref_li["notes"])


@pytest.mark.parametrize("n,d", [(128, 64), (600, 48), (400, 200)])
def test_an_isotropic_gaussian_scores_about_its_null(n, d):
    li = layer_suite(
        _gauss(n, d, seed=n + d), IsotropyConfig(k_max=3, sample_size=None), 0, n_rows=n, windows=np.zeros(n, np.int64)
    )
    s = li["stats"]
    nul = isofast.null_statistics(n, d, scale=math.sqrt(s["total_variance"] / d))
    for k in ("isoscore", "participation_ratio", "effective_rank", "pc1_share"):
        assert s[f"{k}_null"] == pytest.approx(nul.mean[k])
        assert abs(s[k] - nul.mean[k]) <= 5 * nul.std[k] + 1e-9, k
        assert s[f"{k}_vs_null"] == pytest.approx(s[k] / s[f"{k}_null"])
        assert abs(s[f"{k}_vs_null"] - 1) < 0.1, k
    # a strongly anisotropic layer sits far from it
    A = _gauss(n, d) * np.geomspace(10, 0.01, d).astype(np.float32)
    a = layer_suite(A, IsotropyConfig(k_max=3, sample_size=None), 0, n_rows=n, windows=np.zeros(n, np.int64))["stats"]
    assert a["isoscore_vs_null"] < 0.3


def _windows_table(seed=0, n_ds=8, n_win=6, layers=(0, 1)):
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_ds):
        for p in ("clean", "noise"):
            for w in range(n_win):
                y = rng.gamma(2.0) * (g + 1)
                for L in layers:
                    # layer 1 tracks the error within each dataset, layer 0 is noise
                    x = (np.log(y) if L == 1 else 0.0) + rng.standard_normal() * (0.3 if L == 1 else 1.0) + 5 * g
                    rows.append(
                        {
                            "model": "m",
                            "dataset": f"ds{g}",
                            "perturbation": p,
                            "window": w,
                            "layer": L,
                            "layer_name": f"L{L}",
                            "depth": L / 1.0,
                            "nmse": y,
                            "win_avg_cosine": x,
                            "skip_reason": "",
                        }
                    )
    return pd.DataFrame(rows)


def test_the_per_context_analysis_equals_scipy_on_a_known_table():
    df = _windows_table()
    cfg = StatsConfig(methods=["spearman"], n_boot=1000, n_perm=1000, selection_fraction=0.5)
    sel, ev = split_datasets(df["dataset"].unique(), 0.5, 123)
    rows = trust_table(df, cfg, {"selection_datasets": sel, "evaluation_datasets": ev})
    assert len(rows) == 1
    r = rows[0]

    def mean_rho(layer, datasets):
        d = df[(df["layer"] == layer) & df["dataset"].isin(datasets)]
        return np.mean([scipy_stats.spearmanr(g["win_avg_cosine"], g["nmse"])[0] for _, g in d.groupby("dataset")])

    # the layer is chosen on the selection datasets (largest |mean within-dataset ρ|) …
    assert r["layer"] == max((0, 1), key=lambda L: abs(mean_rho(L, sel)))
    assert r["selection_estimate"] == pytest.approx(mean_rho(r["layer"], sel))
    # … and tested on the evaluation datasets only: windows are the units, datasets the groups
    assert r["estimate"] == pytest.approx(mean_rho(r["layer"], ev))
    assert r["n"] == len(ev) * 2 * 6 and r["n_groups"] == len(ev)
    assert r["layer"] == 1 and r["estimate"] > 0.5 and r["p_value"] <= 0.05
    assert r["ci_low"] <= r["estimate"] <= r["ci_high"]


def _fake_result(held, trust=None, causal=None):
    cfg = SimpleNamespace(
        stats=StatsConfig(), isotropy=IsotropyConfig(), models=[SimpleNamespace(name="a"), SimpleNamespace(name="b")]
    )
    table = pd.DataFrame(
        [
            {"model": "a", "n_massive": 3.0, "n_small_clusters": 1.0, "skip_reason": ""},
            {"model": "b", "n_massive": 0.0, "n_small_clusters": 0.0, "skip_reason": "too few rows"},
        ]
    )
    return SimpleNamespace(
        config=cfg,
        heldout=held,
        trust=trust if trust is not None else pd.DataFrame(),
        causal=causal if causal is not None else pd.DataFrame(),
        table=table,
        cells=[],
    )


def _held_row(model, stat, est, p, q):
    return {
        "table": "heldout",
        "scope": f"model:{model}",
        "model": model,
        "layer": 3,
        "layer_name": "residual.3",
        "statistic": stat,
        "target": "nmse",
        "method": "spearman",
        "n": 18,
        "n_groups": 6,
        "estimate": est,
        "ci_low": est - 0.2,
        "ci_high": est + 0.2,
        "p_value": p,
        "q_value": q,
        "significant": q <= 0.05,
    }


def test_the_verdict_agrees_with_the_heldout_table():
    held = pd.DataFrame(
        [
            _held_row("a", "isoscore", -0.7, 0.002, 0.01),
            _held_row("a", "pc1_share", 0.3, 0.2, 0.4),
            _held_row("b", "isoscore", 0.2, 0.3, 0.6),
            _held_row("b", "best_k", 0.4, 0.06, 0.36),
        ]
    )
    v = build_verdict(_fake_result(held))
    a, b = v["models"]["a"], v["models"]["b"]
    assert a["cell"]["statistic"] == "isoscore" and a["cell"]["significant"]
    assert a["cell"]["estimate"] == -0.7 and a["cell"]["q_value"] == 0.01
    assert "isoscore at layer residual.3 predicts NMSE" in a["text"][0]
    assert b["cell"]["statistic"] == "best_k" and not b["cell"]["significant"]
    assert "no statistic predicts NMSE" in b["text"][0]
    assert a["n_massive"] == 3 and a["n_small_clusters"] == 1 and b["n_skipped_rows"] == 1
    assert "1 of 2 models" in v["sentence"] and "isoscore" in v["sentence"]
    none = build_verdict(_fake_result(held.assign(q_value=0.5, significant=False)))
    assert none["sentence"].startswith("On held-out datasets no isotropy statistic predicted NMSE")


def test_trust_on_one_context_of_a_causal_lm():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from isofast.models import load_model
    from isofast.trust import WINDOW_STATISTICS, trust

    lm = load_model("tiny-llama")
    ctx = np.sin(np.arange(40) / 3.0) * 10 + 50
    rep = trust(lm, [ctx, ctx[:20]])
    assert rep.layer == lm.num_layers and len(rep.windows) == 2
    w = rep.windows[0]
    assert set(WINDOW_STATISTICS) <= set(w) and w["n_rows"] > 40
    assert 0 <= w["shift_norm_share"] <= 1 and w["log_z_std"] >= 0 and -1 <= w["avg_cosine"] <= 1
    # the head statistics exist only where the layer enters the head; a reason says why elsewhere
    mid = trust(lm, ctx, layer=1)
    assert math.isnan(mid.windows[0]["shift_norm_share"]) and "softmax head" in mid.reasons[0]["shift_norm_share"]
    short = trust(lm, [1.5, 2.5, 3.5])  # a few tokens, fewer than d = 32: said, not computed
    assert short.windows[0]["n_rows"] < short.dim
    assert any("spectral statistics are not measurable" in f for f in short.flags[0])
    assert any("spectral" in f for f in rep.flags[0]) == (rep.windows[0]["n_rows"] < rep.dim)
    # the cosines equal isofast.avg_cosine on the same captured rows (one home per computation)
    import tempfile

    from isofast.capture import capture

    with tempfile.TemporaryDirectory() as tmp:
        from isofast.store import open_capture

        res = capture(lm, [ctx], layers=[1], positions="all", out=tmp, sites=("residual",), progress=False)
        X = open_capture(res.path).layer(1, "residual").to_numpy(float32=True)
    assert mid.windows[0]["avg_cosine"] == pytest.approx(isofast.avg_cosine(X), rel=1e-9)
    with pytest.raises(ValueError, match="layer"):
        trust(lm, ctx, layer=99)


def test_moments_principal_axes_equal_numpy():
    X = np.random.default_rng(3).standard_normal((300, 7)) @ np.diag(np.arange(1.0, 8.0))
    m = isofast.Moments(7)
    m.update(X)
    vals, vecs = m.principal_axes()
    w, V = np.linalg.eigh(np.cov(X.T))
    np.testing.assert_allclose(vals, w[::-1], rtol=1e-10)
    np.testing.assert_allclose(np.abs(vecs.T @ V[:, ::-1]), np.eye(7), atol=1e-8)
    with pytest.raises(ValueError, match="2 rows"):
        isofast.Moments(3).principal_axes()
