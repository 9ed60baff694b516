"""Batched decoding across windows equals unbatched decoding (issue 13).

"Equal" means, for the same seed:

* the sampled paths are identical (bitwise: the same tokens, hence the same
  decoded values), and so are the generated-token counts;
* at every decoding step, every path's logits over the candidate tokens agree
  with the unbatched ones to ``|Δ| ≤ RTOL · (1 + max |logit| of the row)``,
  RTOL = 1e-4. Bitwise equality of the logits is not promised: a batch of
  other shapes (more rows, left padding under an attention mask) runs other
  GEMM and attention blockings, so float32 sums round differently (measured:
  ≤ 1.2e-7 on tiny-llama, ≤ 4.2e-5 on SmolLM2 with logits up to 38, i.e.
  ~1e-6 relative). Identical paths follow because each path's token is the
  point where its own float64 uniform falls in the CDF of the allowed tokens:
  a rounding difference moves a draw only when the uniform lands within
  ~1e-6 of a CDF boundary, which none of the tested seeds does;
* the mean allowed mass per window agrees to 1e-5 (relative).

"Unbatched" is one window per batch (``max_batch = n_samples``): the
pre-issue-13 decoding (one window, its paths batched, no padding, no mask).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from isofast import forecast as F

RTOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tiny_models):
    return tiny_models("llama")


def _contexts(lengths, seed=1):
    """Windows of different lengths (so the batch is left-padded), some
    negative (a sign token: paths of different token counts finish at
    different steps and leave the batch early)."""
    rng = np.random.default_rng(seed)
    out = []
    for k, L in enumerate(lengths):
        x = 50 + 10 * np.sin(np.arange(L) / 4 + k) + rng.normal(0, 3, L)
        out.append(x - (60 if k % 2 else 0))
    return out


def _run(lm, ctx, H, n, *, max_batch, temperature=1.0, top_p=None, seed=3, kv_budget=None):
    """forecast() internals with a logit trace: s → [(step, path, logits)]."""
    sess = F._Session(lm, "llmtime")
    trace: dict = {}
    run = F._Run(
        sess,
        ctx,
        H,
        n=n,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        target=None,
        first_digit=False,
        max_batch=max_batch,
        kv_budget=kv_budget,
        trace=trace,
    )
    with torch.inference_mode():
        for s in range(len(ctx)):
            run.window(s, *run.prefill(s))
        run.dec.flush()
    return run.result((0.5,), {}), trace, list(run.dec.groups)


def _assert_equal(a, b, ta, tb):
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.n_generated_tokens == b.n_generated_tokens
    np.testing.assert_allclose(a.allowed_mass, b.allowed_mass, rtol=1e-5)
    compared = 0
    for s in ta:
        ra = {(st, p): z for st, p, z in ta[s]}
        rb = {(st, p): z for st, p, z in tb[s]}
        assert ra.keys() == rb.keys(), f"window {s}: different decoding steps"
        for key, za in ra.items():
            zb = rb[key]
            fin = np.isfinite(za)
            np.testing.assert_array_equal(fin, np.isfinite(zb))
            tol = RTOL * (1 + np.abs(za[fin]).max())
            assert np.abs(za[fin] - zb[fin]).max() <= tol, (s, key)
            compared += 1
    assert compared > 0


def _steps_per_path(trace):
    out = {}
    for s, rows in trace.items():
        for st, p, _ in rows:
            out[(s, p)] = max(out.get((s, p), 0), st + 1)
    return out


def test_batched_equals_unbatched_tiny_llama(tiny):
    ctx = _contexts([30, 45, 20, 60, 38])
    H, n = 6, 4
    a, ta, ga = _run(tiny, ctx, H, n, max_batch=n)
    b, tb, gb = _run(tiny, ctx, H, n, max_batch=None)
    c, tc, gc = _run(tiny, ctx, H, n, max_batch=2 * n)
    assert ga == [1, 1, 1, 1, 1] and gb == [5] and gc == [2, 2, 1]
    # the test exercises padding and early drop-out: paths of different lengths
    steps = _steps_per_path(tb)
    assert len(set(steps.values())) > 1
    _assert_equal(a, b, ta, tb)
    _assert_equal(a, c, ta, tc)
    assert a.samples.shape == (5, n, H) and np.isfinite(a.samples).all()


@pytest.mark.parametrize("temperature,top_p", [(0.0, None), (0.7, 0.9)])
def test_batched_equals_unbatched_greedy_and_nucleus(tiny, temperature, top_p):
    ctx = _contexts([25, 40, 33], seed=5)
    n = 1 if temperature == 0 else 3
    a, ta, _ = _run(tiny, ctx, 5, n, max_batch=n, temperature=temperature, top_p=top_p)
    b, tb, gb = _run(tiny, ctx, 5, n, max_batch=None, temperature=temperature, top_p=top_p)
    assert gb == [3]
    _assert_equal(a, b, ta, tb)


def test_batched_equals_unbatched_gpt2_spaced_layout():
    """Absolute learned positions (GPT-2) and the spaced layout: explicit
    position ids keep every row's positions those of its own run."""
    from isofast.models import tiny_model

    lm = tiny_model("gpt2", seed=0)
    ctx = [c[:k] for c, k in zip(_contexts([20, 20, 20], seed=2), (12, 16, 9))]

    def run(mb):
        sess = F._Session(lm, "llmtime:gpt")
        trace: dict = {}
        r = F._Run(
            sess,
            ctx,
            3,
            n=3,
            temperature=1.0,
            top_p=None,
            seed=2,
            target=None,
            first_digit=False,
            max_batch=mb,
            trace=trace,
        )
        with torch.inference_mode():
            for s in range(len(ctx)):
                r.window(s, *r.prefill(s))
            r.dec.flush()
        return r.result((0.5,), {}), trace, list(r.dec.groups)

    a, ta, ga = run(3)
    b, tb, gb = run(None)
    assert ga == [1, 1, 1] and gb == [3]
    _assert_equal(a, b, ta, tb)


def test_a_windows_paths_do_not_depend_on_the_other_windows(tiny):
    """Per-window generators: window s's paths are the same whether it is
    forecast with more windows after it or not, batched or not."""
    ctx = _contexts([30, 45, 20, 60])
    full = F.forecast(tiny, ctx, 5, n_samples=3, seed=11)
    head = F.forecast(tiny, ctx[:2], 5, n_samples=3, seed=11, max_batch=3)
    np.testing.assert_array_equal(full.samples[:2], head.samples)
    other = F.forecast(tiny, ctx, 5, n_samples=3, seed=12)
    assert not np.array_equal(other.samples, full.samples)
    assert F.window_seed(11, 0) != F.window_seed(11, 1) != F.window_seed(12, 1)


def test_kv_budget_splits_the_batch(tiny):
    ctx = _contexts([30, 45, 20])
    a, ta, ga = _run(tiny, ctx, 4, 2, max_batch=None, kv_budget=1)
    b, tb, gb = _run(tiny, ctx, 4, 2, max_batch=None)
    assert ga == [1, 1, 1] and gb == [3]
    _assert_equal(a, b, ta, tb)


def test_the_front_door_reports_groups_and_checks_max_batch(tiny):
    ctx = _contexts([30, 45])
    r = F.forecast(tiny, ctx, 4, n_samples=2, seed=0)
    assert r.settings["decode_groups"] == [2]
    assert r.settings["seeding"].startswith("per window")
    for bad in (0, -3, 1.5):
        with pytest.raises(ValueError, match="max_batch"):
            F.forecast(tiny, ctx, 4, n_samples=2, max_batch=bad)


@pytest.mark.slow
def test_batched_equals_unbatched_smollm2():
    from isofast.models import load_model

    lm = load_model("smollm2", device="cpu", dtype="float32")
    ctx = _contexts([100, 150, 80, 120])
    n = 4
    a, ta, ga = _run(lm, ctx, 8, n, max_batch=n)
    b, tb, gb = _run(lm, ctx, 8, n, max_batch=None)
    assert ga == [1, 1, 1, 1] and gb == [4]
    _assert_equal(a, b, ta, tb)


# ------------------------------------------------------------ one prefill per window
def _lm_model(model="tiny-llama", **options):
    from isofast.study.config import ModelConfig
    from isofast.study.models_lm import LMModel
    from isofast.study.kinds import check_options

    cfg = ModelConfig(name="lm", kind="lm", model=model, options=check_options("lm", options, "lm"))
    return LMModel(cfg, seed=0, cache=None)


def test_joint_prefill_equals_capture_then_forecast(tiny, tmp_path):
    """The capture's pass feeds the forecast: the rows are capture()'s own
    (bitwise) and the paths forecast()'s own (same seed)."""
    from isofast.capture import capture
    from isofast.prefill import forecast_and_capture
    from isofast.store import open_capture

    ctx = _contexts([30, 45, 20, 60])
    r, _cap, st = forecast_and_capture(tiny, ctx, 6, out=tmp_path / "a", n_samples=3, seed=4)
    assert (st.joint, st.separate) == (4, 0)
    ref = F.forecast(tiny, ctx, 6, n_samples=3, seed=4)
    np.testing.assert_array_equal(r.samples, ref.samples)
    np.testing.assert_allclose(r.allowed_mass, ref.allowed_mass, rtol=1e-5)
    capture(tiny, ctx, out=tmp_path / "b", batch_size=1, sites=("residual",), progress=False)
    a, b = open_capture(tmp_path / "a"), open_capture(tmp_path / "b")
    assert a.layers_of("residual") == b.layers_of("residual") == [0, 1, 2]
    for L in a.layers_of("residual"):
        np.testing.assert_array_equal(a.layer(L).to_numpy(), b.layer(L).to_numpy())
    # the capture is complete: a second call reuses it and prefills on its own
    r2, _, st2 = forecast_and_capture(tiny, ctx, 6, out=tmp_path / "a", n_samples=3, seed=4)
    assert (st2.joint, st2.separate) == (0, 4) and st2.reasons == {"captured earlier": 4}
    np.testing.assert_array_equal(r2.samples, r.samples)


def test_joint_prefill_with_the_spaced_gpt_layout(tmp_path):
    from isofast.models import tiny_model
    from isofast.prefill import forecast_and_capture

    lm = tiny_model("gpt2", seed=0)
    ctx = _contexts([12, 16])
    r, _, st = forecast_and_capture(lm, ctx, 3, out=tmp_path / "g", n_samples=2, seed=1, serializer="llmtime:gpt")
    assert st.joint + st.separate == 2
    ref = F.forecast(lm, ctx, 3, n_samples=2, seed=1, serializer="llmtime:gpt")
    np.testing.assert_array_equal(r.samples, ref.samples)


def test_lm_model_forecast_with_capture_writes_the_entry_embed_reads(tmp_path):
    m = _lm_model()
    assert m.joint_capture is True
    assert (m.o["device"], m.o["dtype"]) == ("cpu", "float32")  # "auto" on a CPU-only machine
    ctx = _contexts([30, 45, 20])
    folder = tmp_path / "entry"
    out = m.forecast(ctx, 5, n_samples=3, seed=2, capture=folder)
    assert out.samples.shape == (3, 3, 5)
    assert m.last_prefill.joint == 3
    import json

    marker = json.loads((folder / "complete.json").read_text())
    assert marker["layers"] == [L.index for L in m.layers]
    # embed_cached reads it without a forward pass ...
    emb, wins, cached = m.embed_cached(ctx, folder, split=None, prepare=lambda: pytest.fail("no prepare"))
    assert cached
    # ... and embed() alone gives the same rows, counted by rows_per_window
    other = tmp_path / "alone"
    emb2, wins2, cached2 = m.embed_cached(ctx, other, split=None)
    assert not cached2
    counts = m.rows_per_window(ctx, None)
    for L in emb:
        np.testing.assert_array_equal(emb[L], emb2[L])
        assert emb[L].shape[0] == int(counts[L].sum()) == marker["rows"][str(L)]
        np.testing.assert_array_equal(wins[L], wins2[L])
        np.testing.assert_array_equal(np.bincount(wins[L]), counts[L])
    # the forecast itself equals the plain one
    plain = m.forecast(ctx, 5, n_samples=3, seed=2)
    np.testing.assert_array_equal(plain.samples, out.samples)
    # with a complete entry, forecast(capture=…) does not capture again
    again = m.forecast(ctx, 5, n_samples=3, seed=2, capture=folder)
    np.testing.assert_array_equal(again.samples, out.samples)


def test_lm_model_refuses_unknown_forecast_options():
    m = _lm_model(forecast={"temprature": 0.5})
    with pytest.raises(ValueError, match="temprature"):
        m.forecast(_contexts([20]), 3, n_samples=2, seed=0)


def test_device_and_dtype_rules(monkeypatch):
    from isofast.study.models_lm import resolve_device_dtype

    assert resolve_device_dtype("cpu", "bfloat16") == ("cpu", "bfloat16")
    assert resolve_device_dtype("cpu", "auto") == ("cpu", "float32")
    with pytest.raises(ValueError, match="dtype"):
        resolve_device_dtype("cpu", "float8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device_dtype("auto", "auto") == ("cpu", "float32")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_device_dtype("auto", "auto") == ("cuda", "bfloat16")
    assert resolve_device_dtype("auto", "float32") == ("cuda", "float32")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_device_dtype("auto", "auto") == ("cuda", "float32")


def test_an_interrupted_joint_forecast_leaves_no_entry_and_reruns(tmp_path, monkeypatch):
    """A failure inside the capture's passes (here: the forecast side of
    window 1) leaves no complete.json; the rerun resumes and gives the
    plain results."""
    m = _lm_model()
    ctx = _contexts([30, 45, 20])
    folder = tmp_path / "entry"
    real = F._Run.window

    def boom(self, s, last, cache):
        if s == 1:
            raise KeyboardInterrupt
        return real(self, s, last, cache)

    monkeypatch.setattr(F._Run, "window", boom)
    with pytest.raises(KeyboardInterrupt):
        m.forecast(ctx, 4, n_samples=2, seed=5, capture=folder)
    assert not (folder / "complete.json").exists()
    monkeypatch.setattr(F._Run, "window", real)
    out = m.forecast(ctx, 4, n_samples=2, seed=5, capture=folder)
    assert (folder / "complete.json").is_file()
    plain = m.forecast(ctx, 4, n_samples=2, seed=5)
    np.testing.assert_array_equal(out.samples, plain.samples)
    emb, _, cached = m.embed_cached(ctx, folder, split=None)
    assert cached and all(X.shape[0] == int(m.rows_per_window(ctx, None)[L].sum()) for L, X in emb.items())
