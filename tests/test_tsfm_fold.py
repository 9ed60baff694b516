"""One pass for forecast and capture (issue 14): ``forecast_with_capture``
records capture's pass from the family's own forecast.

Per family, on the random-init builds of the family tests (same
``build_random`` arguments as tests/test_tsfm_<family>.py): the rows equal
``embed``'s (bitwise where the forecast's first pass reads the same batch,
else to the stated tolerance), the token layout equals ``embed``'s, the
forecast equals the bare forecast bitwise, and the forecast's calls of the
captured stack are counted (against a hand-written hook and a hand-computed
number). Families whose forecast does not run capture's pass keep the
separate prefill; the tests show the evidence (the forecast's first pass
differs from the prefill). Then the capture folder and one study cell
through the one-pass route against the two-pass route."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import isofast  # noqa: E402
from isofast import tsfm  # noqa: E402
from isofast.serializers.base import DIGIT  # noqa: E402

ALL = ("residual", "attention")
S = 3  # contexts per test: capture's batch (batch_size=8) holds them all, as the forecast's


def _ctx(co2, L, n=S):
    return [co2[40 + 7 * i : 40 + 7 * i + L] for i in range(n)]


# family → (package, build_random arguments of the family's tests, context length, horizon,
#           calls of each captured layer in the forecast, rows: None = bitwise, else (rtol, atol))
CASES = {
    # predict: one generate per prediction_length (8) block; the encoder once per generate
    "chronos": ("chronos", {}, 67, 20, 3, None),
    # predict: model(context) once, then once per 16-step block beyond the first (batch × 9 quantiles)
    "chronos-bolt": ("chronos", {}, 67, 40, 3, None),
    # one model call when the horizon fits one output patch (8 here)
    "chronos-2": ("chronos", {}, 67, 8, 1, None),
    # (1 + 2 AR steps of 16) × (x, −x); the package's decode path: equal to float rounding (test_tsfm_timesfm)
    "timesfm-2.5": ("timesfm", {"output_patch": 16, "output_quantile_len": 32}, 67, 40, 6, (1e-5, 1e-5)),
    # 3 blocks of 16 (unrolled by isofast) × flip; the forecast pads to context_length: rtol/atol of
    # test_t25_padding_only_patches_leave_real_rows_unchanged
    "timesfm-2.5-hf": (
        "timesfm",
        {"layout": "transformers", "output_patch": 16, "output_quantile_len": 32},
        67,
        40,
        6,
        (1e-3, 3e-4),
    ),
    # 3 blocks of horizon_length 16; padded to context_length: tolerance of test_t1_padding_only_patches_and_freq
    "timesfm": ("transformers", {"horizon_length": 16, "use_positional_embedding": True}, 67, 40, 3, (1e-4, 1e-5)),
    # one forward (the point head)
    "patchtst": (
        "transformers",
        {"context_length": 60, "patch": 8, "stride": 6, "prediction_length": 16},
        67,
        16,
        1,
        None,
    ),
    # one module forward then sampling; H ≤ patch (8): the prefill's one future patch
    "moirai": ("uni2ts", {"d_model": 64, "num_layers": 2, "patch": 8, "max_seq_len": 32}, 67, 8, 1, None),
    # 1 + ceil((ceil(40/8) − 2)/2) = 3 module calls; the first reads 2 future tokens (causal): float rounding
    "moirai-2": (
        "uni2ts",
        {"d_model": 64, "num_layers": 2, "patch": 8, "max_seq_len": 32, "num_predict_token": 2},
        67,
        40,
        3,
        (1e-5, 1e-5),
    ),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory, one_torch_thread):
    cache = {}

    def get(case):
        if case not in cache:
            pkg, kw = CASES[case][:2]
            pytest.importorskip(pkg)
            fam = case.removesuffix("-hf")
            d = tmp_path_factory.mktemp(case)
            tsfm.build_random(fam, d, seed=0, **kw)
            cache[case] = isofast.load_tsfm(f"{fam}:{d}")
        return cache[case]

    return get


def _count_calls(block):
    """A hand-written forward hook counting the calls of one block."""
    n = [0]
    h = block.register_forward_hook(lambda *_: n.__setitem__(0, n[0] + 1))
    return n, h


def _same_forecast(a, b):
    assert np.array_equal(a.point, b.point, equal_nan=True)
    assert np.array_equal(a.quantiles, b.quantiles, equal_nan=True)
    assert (a.samples is None) == (b.samples is None)
    if a.samples is not None:
        assert np.array_equal(a.samples, b.samples, equal_nan=True)


@pytest.mark.parametrize("case", list(CASES))
def test_one_pass_rows_forecast_and_calls(built, co2, case):
    _, _, L, H, calls, tol = CASES[case]
    m = built(case)
    ctx = _ctx(co2, L)
    bare = m.forecast(ctx, H, seed=3)
    n, h = _count_calls(m.stack.blocks[0])
    try:
        fc, emb, info = m.forecast_with_capture(ctx, H, layers="all", sites=ALL, seed=3)
    finally:
        h.remove()
    assert info["joint"] is True, info
    assert info["calls"] == calls == n[0], (info, n)
    _same_forecast(fc, bare)  # hooks only read
    ref = m.embed(ctx, layers="all", sites=ALL)
    assert sorted(emb.arrays) == sorted(ref.arrays)
    for a in ("window", "token", "role", "first", "last"):
        np.testing.assert_array_equal(getattr(emb, a), getattr(ref, a), err_msg=a)
    assert emb.kind == ref.kind
    for key in ref.arrays:
        if tol is None:
            np.testing.assert_array_equal(emb.arrays[key], ref.arrays[key], err_msg=str(key))
        else:
            np.testing.assert_allclose(emb.arrays[key], ref.arrays[key], rtol=tol[0], atol=tol[1], err_msg=str(key))


@pytest.mark.parametrize("case", ["timesfm", "timesfm-2.5-hf"])
def test_timesfm_rows_bitwise_without_extra_padding(built, co2, case):
    """At a context of ``context_length`` values the forecast pads no more
    than the prefill: the rows are bitwise equal."""
    m = built(case)
    C = int(m.model.config.context_length)
    ctx = _ctx(co2, C)
    fc, emb, info = m.forecast_with_capture(ctx, 16, layers="all", sites=ALL)
    assert info["joint"] and "bitwise" in info["rows"]
    ref = m.embed(ctx, layers="all", sites=ALL)
    for key in ref.arrays:
        np.testing.assert_array_equal(emb.arrays[key], ref.arrays[key], err_msg=str(key))
    _same_forecast(fc, m.forecast(ctx, 16))


def test_one_pass_rows_do_not_depend_on_the_batch_here(built, co2):
    """More contexts than capture's batch: the forecast's one batch of 11
    against capture's batches of 8 and 3 (bitwise on this CPU; BLAS is not
    obliged to give batch-invariant rows, docs/models.md)."""
    m = built("chronos-bolt")
    ctx = _ctx(co2, 67, n=11)
    _, emb, info = m.forecast_with_capture(ctx, 16, layers="all", batch_size=8)
    ref = m.embed(ctx, layers="all", batch_size=8)
    assert info["joint"]
    for key in ref.arrays:
        np.testing.assert_array_equal(emb.arrays[key], ref.arrays[key], err_msg=str(key))


def test_contexts_of_different_lengths_take_the_separate_prefill(built, co2):
    m = built("chronos-bolt")
    ctx = [co2[:67], co2[:50]]
    fc, emb, info = m.forecast_with_capture(ctx, 16, layers="all")
    assert info["joint"] is False and "different lengths" in info["reason"]
    ref = m.embed(ctx, layers="all")
    for key in ref.arrays:
        np.testing.assert_array_equal(emb.arrays[key], ref.arrays[key])
    _same_forecast(fc, m.forecast(ctx, 16))


def test_a_wrong_call_count_is_refused(built, co2, monkeypatch):
    """The count is checked: a plan expecting another number of calls (a
    changed package that adds a pass) fails loudly instead of recording it."""
    from isofast.tsfm.base import FoldPlan

    m = built("chronos-bolt")
    monkeypatch.setattr(type(m), "_fold", lambda self, ctx, H, kw: FoldPlan(calls=1))
    with pytest.raises(RuntimeError, match="ran the captured stack 3 times, expected 1"):
        m.forecast_with_capture(_ctx(co2, 67), 40, layers="all")


def _first_forecast_pass(m, ctx, H, layer):
    """The output of block ``layer`` in the forecast's first call (hand-written hook)."""
    got = []
    h = m.stack.blocks[layer - 1].register_forward_hook(
        lambda _m, _a, o: got.append(tsfm.base._tensor_of(o, "test").detach().clone())
    )
    try:
        m.forecast(ctx, H)
    finally:
        h.remove()
    return got[0]


@pytest.mark.parametrize(
    "case, build, H, why",
    [
        ("chronos-2", {}, 16, "future tokens"),
        ("moirai", {"d_model": 64, "num_layers": 2, "patch": 8, "max_seq_len": 32}, 40, "future patches"),
        ("moment", {"d_model": 32, "num_layers": 2}, 16, "other inputs"),
    ],
)
def test_families_without_the_pass_keep_the_separate_prefill(tmp_path, co2, one_torch_thread, case, build, H, why):
    """Chronos-2 beyond one output patch and Moirai 1.x beyond one patch read
    more future tokens with bidirectional attention; MOMENT's forecast reads
    other inputs. Evidence: the forecast's first pass of block 1 differs from
    the prefill's rows. The one-pass call then runs forecast + embed."""
    pytest.importorskip({"chronos-2": "chronos", "moirai": "uni2ts", "moment": "momentfm"}[case])
    tsfm.build_random(case, tmp_path, seed=0, **build)
    m = isofast.load_tsfm(f"{case}:{tmp_path}")
    ctx = _ctx(co2, 67)
    fc, emb, info = m.forecast_with_capture(ctx, H, layers="all")
    assert info["joint"] is False and why in info["reason"], info
    ref = m.embed(ctx, layers="all")
    for key in ref.arrays:
        np.testing.assert_array_equal(emb.arrays[key], ref.arrays[key])
    _same_forecast(fc, m.forecast(ctx, H))
    first = _first_forecast_pass(m, ctx, H, 1)
    k = int((ref.role[ref.window == 0] == DIGIT).sum())  # the context's tokens: the first k in both passes
    rows = ref.arrays[("residual", 1)].reshape(len(ctx), -1, m.d_model)[:, :k]
    assert first.shape[0] == len(ctx) and first.shape[1] >= k
    assert not np.allclose(first[:, :k].float().numpy(), rows, rtol=1e-3, atol=1e-4)


# ---- the capture folder
def test_forecast_and_capture_folder_equals_capture_tsfm(built, co2, tmp_path):
    from isofast.store import open_capture
    from isofast.tsfm.capture import capture_tsfm, forecast_and_capture_tsfm

    m = built("chronos-bolt")
    ctx = _ctx(co2, 67, n=5)
    a = capture_tsfm(m, ctx, out=tmp_path / "two", sites=ALL, progress=False)
    fc, b, info = forecast_and_capture_tsfm(m, ctx, 24, out=tmp_path / "one", sites=ALL)
    assert info["joint"] and info["calls"] == 2
    _same_forecast(fc, m.forecast(ctx, 24))
    files = sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    for f in files:
        if f.name != "manifest.json":  # shards, token and window tables: byte for byte
            assert (tmp_path / "two" / f).read_bytes() == (tmp_path / "one" / f).read_bytes(), f
    ma, mb = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("two", "one"))
    for k in set(ma) | set(mb):
        if k not in ("seconds", "created", "updated", "checksum"):  # timings, and the checksum over them
            assert ma.get(k) == mb.get(k), k
    A, B = open_capture(a.path), open_capture(b.path)
    assert a.n_rows == b.n_rows > 0
    for site in ALL:
        for L in a.layers[site]:
            np.testing.assert_array_equal(A.layer(L, site).to_numpy(), B.layer(L, site).to_numpy())
    # complete: the forecast runs alone, the folder is reused
    fc2, b2, info2 = forecast_and_capture_tsfm(m, ctx, 24, out=tmp_path / "one", sites=ALL)
    assert info2 == {"joint": False, "reason": "captured earlier", "forecast_seconds": info2["forecast_seconds"]}
    _same_forecast(fc2, fc)


# ---- the study cell
def _study(bolt_dir, out, cache, *, joint: bool, monkeypatch):
    import tomllib

    from isofast.study import run_study
    from isofast.study.config import bundled_config_path
    from isofast.study.models_tsfm import TSFMModel

    monkeypatch.setattr(TSFMModel, "joint_capture", joint)
    with open(bundled_config_path("tiny"), "rb") as f:
        data = tomllib.load(f)
    data["datasets"] = data["datasets"][:1]
    data["datasets"][0]["n_test"] = 10  # as test_study_cell_with_kind_tsfm: 50 rows ≥ d = 32
    data["perturbations"] = [{"name": "clean"}]
    data["models"] = [{"name": "bolt", "kind": "tsfm", "model": f"chronos-bolt:{bolt_dir}"}]
    data["causal"] = {"enabled": False}
    res = run_study(data, out=out, cache=cache, report=False, progress=False, log=lambda m: None)
    assert not any(c.error for c in res.cells)
    return res


def test_study_cell_one_pass_equals_two_pass(tmp_path, monkeypatch, one_torch_thread):
    pytest.importorskip("chronos")
    pytest.importorskip("matplotlib")
    import pandas as pd

    from isofast.study.models_tsfm import TSFMModel

    bolt_dir = tmp_path / "bolt"
    tsfm.build_random("chronos-bolt", bolt_dir, seed=1)
    seen = []
    orig = TSFMModel.forecast

    def spy(self, *a, **kw):
        out = orig(self, *a, **kw)
        seen.append((kw.get("capture") is not None, self.last_fold))
        return out

    monkeypatch.setattr(TSFMModel, "forecast", spy)
    one = _study(bolt_dir, tmp_path / "one", tmp_path / "c1", joint=True, monkeypatch=monkeypatch)
    assert seen and seen[0][0] and seen[0][1]["joint"] is True, seen
    seen.clear()
    two = _study(bolt_dir, tmp_path / "two", tmp_path / "c2", joint=False, monkeypatch=monkeypatch)
    assert seen and not seen[0][0], seen
    a, b = (pd.read_csv(tmp_path / d / "results.csv") for d in ("one", "two"))
    num = [c for c in a.columns if pd.api.types.is_numeric_dtype(a[c]) and not c.endswith("seconds")]
    pd.testing.assert_frame_equal(a[num], b[num])  # the same numbers, exactly
    assert [c.keys for c in one.cells] == [c.keys for c in two.cells]
    # the same cache entries: layer files and their digests in complete.json
    for c in one.cells:
        fa, fb = (tmp_path / r / "captures" / c.keys["capture"] for r in ("c1", "c2"))
        ja, jb = (json.loads((f / "complete.json").read_text()) for f in (fa, fb))
        assert ja == jb and ja["files"]
        for name in ja["files"]:
            assert (fa / name).read_bytes() == (fb / name).read_bytes()


# ---- future tokens: capture the rows the forecast at H computes (Chronos-2, Moirai 1.x)
FUTURE = {
    # patch 8, max_output_patches 4: H = 20 → 3 future tokens, H = 24 → 3, H = 40 → 4 (the most; the
    # package then unrolls: a second model call on the context grown by 32 steps)
    "chronos-2": ("chronos", {}, (20, 24, 40)),
    # patch 8: H = 20 → 3 future patches (the last one partly past H), H = 24 → 3
    "moirai": ("uni2ts", {"d_model": 64, "num_layers": 2, "patch": 8, "max_seq_len": 32}, (20, 24)),
    # patches of 8: short_forecast masks ⌈H/8⌉ patches (H = 16 → 2, H = 20 → 3); default: embed, no future patch
    "moment": ("momentfm", {"d_model": 32, "num_layers": 2}, (16, 20)),
}
DEFAULT_FUTURE = {"chronos-2": 1, "moirai": 1, "moment": 0}


@pytest.mark.parametrize("case", list(FUTURE))
def test_future_tokens_of_the_horizon_give_one_pass(tmp_path, co2, one_torch_thread, case):
    """``set_future_tokens(future_tokens_for(H))``: the forecast's first pass
    *is* capture's prefill — one pass, one call, rows and token table bitwise
    equal to ``embed``'s with the same setting — and the forecast equals the
    default adapter's (the setting changes capture only). The context rows
    differ from the default (one future token) rows: the option matters."""
    pkg, build, horizons = FUTURE[case]
    pytest.importorskip(pkg)
    tsfm.build_random(case, tmp_path, seed=0, **build)
    base = isofast.load_tsfm(f"{case}:{tmp_path}")
    assert base.future_tokens == DEFAULT_FUTURE[case]
    ctx = _ctx(co2, 67)
    one = base.embed(ctx, layers="all", sites=ALL)
    for H in horizons:
        k = base.future_tokens_for(H)
        assert k == (min(-(-H // 8), 4) if case != "moment" else -(-H // 8))
        m = isofast.load_tsfm(f"{case}:{tmp_path}", future_tokens=k)
        assert m.future_tokens == k
        assert m.serializer.to_dict() != base.serializer.to_dict()  # part of every capture key
        n, h = _count_calls(m.stack.blocks[0])
        try:
            fc, emb, info = m.forecast_with_capture(ctx, H, layers="all", sites=ALL, seed=3)
        finally:
            h.remove()
        calls = -(-H // 32) if case == "chronos-2" else 1  # Chronos-2 unrolls beyond 4 patches of 8
        assert info["joint"] is True and info["calls"] == calls == n[0], (H, info, n)
        _same_forecast(fc, base.forecast(ctx, H, seed=3))
        ref = m.embed(ctx, layers="all", sites=ALL)
        for a in ("window", "token", "role", "first", "last"):
            np.testing.assert_array_equal(getattr(emb, a), getattr(ref, a), err_msg=a)
        assert emb.kind == ref.kind and ref.kind.count("future") == k * len(ctx)
        for key in ref.arrays:
            np.testing.assert_array_equal(emb.arrays[key], ref.arrays[key], err_msg=f"H={H} {key}")
        # the context rows are not the default ones: bidirectional attention sees the k future tokens
        c = one.role == DIGIT
        assert int(c.sum()) == int((ref.role == DIGIT).sum())
        a1 = one.arrays[("residual", 1)][c]
        ak = ref.arrays[("residual", 1)][ref.role == DIGIT]
        assert not np.allclose(a1, ak, rtol=1e-3, atol=1e-4)
    # the default setting keeps the separate prefill at those horizons, and says which number folds
    _, _, info = base.forecast_with_capture(ctx, horizons[0], layers="all")
    assert info["joint"] is False and f"future_tokens={base.future_tokens_for(horizons[0])}" in info["reason"]


def test_future_tokens_bad_values_and_families(tmp_path, co2, one_torch_thread):
    pytest.importorskip("chronos")
    from isofast.errors import ArgumentTypeError, InputError

    tsfm.build_random("chronos-2", tmp_path / "c2", seed=0)
    m = isofast.load_tsfm(f"chronos-2:{tmp_path / 'c2'}")
    for bad, cls, msg in (
        (0, InputError, "future_tokens"),
        (-1, InputError, "future_tokens"),
        (5, InputError, "max_output_patches"),
        (2.5, ArgumentTypeError, "future_tokens must be an integer"),
    ):
        with pytest.raises(cls, match=msg):
            m.set_future_tokens(bad)
    assert m.future_tokens == 1  # a refused value changes nothing
    with pytest.raises(InputError, match="max_output_patches"):
        isofast.load_tsfm(f"chronos-2:{tmp_path / 'c2'}", future_tokens=9)
    tsfm.build_random("chronos-bolt", tmp_path / "bolt", seed=0)
    bolt = isofast.load_tsfm(f"chronos-bolt:{tmp_path / 'bolt'}")
    assert bolt.future_tokens is None and bolt.future_tokens_for(64) is None
    with pytest.raises(InputError, match="chronos-bolt: .*chronos-2, moirai and moment"):
        isofast.load_tsfm(f"chronos-bolt:{tmp_path / 'bolt'}", future_tokens=2)


def test_moment_future_tokens_need_the_reconstruction_head(tmp_path, one_torch_thread):
    pytest.importorskip("momentfm")
    from isofast.errors import InputError

    tsfm.build_random("moment", tmp_path / "r", seed=0)
    m = isofast.load_tsfm(f"moment:{tmp_path / 'r'}")
    with pytest.raises(InputError, match="less one patch"):
        m.set_future_tokens(64)  # 64 masked patches of 8 leave no context
    m.set_future_tokens(63)
    assert m.serializer.n_tokens(600) == 64 and m.serializer.kept(600) == 8
    tsfm.build_random("moment", tmp_path / "f", seed=0, task_name="forecasting", forecast_horizon=16)
    f = isofast.load_tsfm(f"moment:{tmp_path / 'f'}")
    assert f.future_tokens == 0 and f.future_tokens_for(16) is None
    with pytest.raises(InputError, match="reconstruction head"):
        f.set_future_tokens(2)


def test_future_tokens_in_the_study_config():
    from isofast.errors import ConfigError
    from isofast.study.kinds import check_tsfm_options

    assert check_tsfm_options({}, "m")["future_tokens"] == 0  # the family's default
    assert check_tsfm_options({"future_tokens": 4}, "m")["future_tokens"] == 4
    for bad in (-1, -2, 1.5, "4", True):
        with pytest.raises(ConfigError, match="future_tokens must be an integer"):
            check_tsfm_options({"future_tokens": bad}, "m")


def test_cli_capture_future_tokens(tmp_path, co2, one_torch_thread):
    pytest.importorskip("chronos")
    import subprocess
    import sys

    tsfm.build_random("chronos-2", tmp_path / "c2", seed=0)
    data = tmp_path / "s.csv"
    data.write_text("y\n" + "\n".join(str(float(v)) for v in co2[:67]) + "\n")
    run = [sys.executable, "-m", "isofast", "capture", "--data", str(data), "--quiet", "--json"]
    ok = subprocess.run(
        [*run, "--model", f"chronos-2:{tmp_path / 'c2'}", "--out", str(tmp_path / "o"), "--future-tokens", "3"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert list(man["serializer"]["suffix"]) == ["reg", "future", "future", "future"]
    for model, msg in ((f"chronos-2:{tmp_path / 'c2'}", "max_output_patches"), ("tiny-llama", "FAMILY:PATH")):
        bad = subprocess.run(
            [*run, "--model", model, "--out", str(tmp_path / "x"), "--future-tokens", "9"],
            capture_output=True,
            text=True,
        )
        assert bad.returncode in (1, 2) and "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and msg in bad.stderr, bad.stderr


def test_study_cell_future_tokens_fold_chronos2(tmp_path, monkeypatch, one_torch_thread):
    """A Chronos-2 with output patches of 4 at the tiny study's H = 6 (2 future
    tokens): the default cell runs the separate prefill; ``future_tokens = 2``
    folds it into the forecast's pass, with its own capture key and the same
    forecasts."""
    pytest.importorskip("chronos")
    pytest.importorskip("matplotlib")
    import tomllib

    import pandas as pd

    from isofast.study import run_study
    from isofast.study.config import bundled_config_path
    from isofast.study.models_tsfm import TSFMModel

    c2 = tmp_path / "c2"
    tsfm.build_random("chronos-2", c2, seed=1, patch=4)
    seen = []
    orig = TSFMModel.forecast

    def spy(self, *a, **kw):
        out = orig(self, *a, **kw)
        seen.append(self.last_fold)
        return out

    monkeypatch.setattr(TSFMModel, "forecast", spy)
    with open(bundled_config_path("tiny"), "rb") as f:
        data = tomllib.load(f)
    data["datasets"] = data["datasets"][:1]
    data["datasets"][0]["n_test"] = 10
    data["perturbations"] = [{"name": "clean"}]
    data["causal"] = {"enabled": False}
    runs = {}
    for k in (1, 2):  # 1: the default's number, given explicitly
        data["models"] = [{"name": "c2", "kind": "tsfm", "model": f"chronos-2:{c2}", "future_tokens": k}]
        seen.clear()
        res = run_study(data, out=tmp_path / f"o{k}", cache=tmp_path / f"c{k}", report=False, progress=False, log=print)
        assert not any(c.error for c in res.cells), [c.error for c in res.cells]
        assert seen and seen[0] is not None, seen
        runs[k] = (res, seen[0])
    assert runs[1][1]["joint"] is False and "future_tokens=2" in runs[1][1]["reason"]
    assert runs[2][1]["joint"] is True and runs[2][1]["calls"] == 1
    assert runs[1][0].cells[0].keys["capture"] != runs[2][0].cells[0].keys["capture"]
    assert runs[1][0].cells[0].keys["forecast"] == runs[2][0].cells[0].keys["forecast"]
    a, b = (pd.read_csv(tmp_path / f"o{k}" / "results.csv") for k in (1, 2))
    fc_cols = [c for c in a.columns if "nmse" in c or "crps" in c]
    assert fc_cols
    pd.testing.assert_frame_equal(a[fc_cols], b[fc_cols])  # forecasts do not change
