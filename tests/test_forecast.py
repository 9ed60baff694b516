"""LM-head forecasting: constrained decoding, KV-cache decoding against a full
re-run, the continuous NLL, tokenizer checks — on a tiny random Llama — and
one real forecast with the bundled SmolLM2-135M (runs in CI, not skipped)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from isofast.forecast import (  # noqa: E402
    AFTER_VALUE,
    ForecastResult,
    _Masks,
    continuous_nll,
    digit_vocabulary,
    forecast,
    next_value_first_digit,
)
from isofast.metrics import evaluate  # noqa: E402
from isofast.serializers import LLMTimeSerializer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tiny_models):
    return tiny_models("llama")


@pytest.fixture
def series():
    t = np.arange(60, dtype=float)
    return 10 + 3 * np.sin(t / 3) + 0.05 * t


def test_forecast_shapes_parse_and_reproducibility(tiny, series):
    r = forecast(tiny, [series[:30], series[5:25]], 4, n_samples=3, seed=7)
    assert isinstance(r, ForecastResult)
    assert r.samples.shape == (2, 3, 4) and np.isfinite(r.samples).all()
    assert r.median.shape == r.mean.shape == (2, 4)
    assert r.quantiles.shape == (3, 2, 4)
    np.testing.assert_allclose(r.quantiles[1], r.median)
    assert 0 < r.allowed_mass.min() <= 1
    again = forecast(tiny, [series[:30], series[5:25]], 4, n_samples=3, seed=7)
    np.testing.assert_array_equal(again.samples, r.samples)
    other = forecast(tiny, [series[:30], series[5:25]], 4, n_samples=3, seed=8)
    assert not np.array_equal(other.samples, r.samples)
    g = forecast(tiny, series[:30], 4, temperature=0)
    assert g.samples.shape == (1, 1, 4)
    # Every sampled value is on the serializer's grid: ints·10^-prec through the scaler.
    ser = LLMTimeSerializer.preset("llama")
    sc = r.scalers[0]
    z = (r.samples[0] - sc.offset) / sc.scale * 10**ser.prec
    np.testing.assert_allclose(z, np.rint(z), atol=1e-6)
    d = r.to_dict()
    assert len(d["samples"][0]) == 3 and d["settings"]["horizon"] == 4


def _naive_greedy(lm, text, voc, horizon, cap):
    """Greedy constrained decoding that re-runs the whole sequence every step."""
    masks = _Masks(voc, cap)
    ids = list(lm.tokenizer(text)["input_ids"])
    states, done, out = AFTER_VALUE, -1, []
    cand = torch.as_tensor(voc.ids)
    while done < horizon:
        with torch.no_grad():
            z = lm.model(input_ids=torch.tensor([ids])).logits[0, -1, cand].double()
        z[~torch.as_tensor(masks.mask(states))] = -math.inf
        k = int(z.argmax())
        states, fin = masks.step(states, k)
        done += fin
        out.append(voc.strings[k])
        ids.append(int(voc.ids[k]))
    return "".join(out)


def test_kv_cache_decoding_equals_full_rerun(tiny, series):
    ser = LLMTimeSerializer.preset("llama")
    ctx = series[:25]
    enc = ser.encode(ctx)
    voc = digit_vocabulary(tiny.tokenizer, ser)
    cap = max(len(str(abs(int(v)))) for v in enc.ints) + 1
    text = _naive_greedy(tiny, enc.text[:-1], voc, 5, cap)
    expect = ser.decode(text, enc.scaler, steps=5).values
    got = forecast(tiny, ctx, 5, temperature=0).samples[0, 0]
    np.testing.assert_allclose(got, expect, rtol=1e-12)


def test_continuous_nll_formula_scaling_and_teacher_forcing(tiny, series):
    ser = LLMTimeSerializer.preset("llama")
    ctx, tgt = series[:30], series[30:34]
    r = forecast(tiny, ctx, 4, n_samples=2, target=tgt)
    sc = r.scalers[0]
    assert r.nll[0] == pytest.approx(r.token_nll[0] - 3 * math.log(10) + math.log(sc.scale))
    nll = continuous_nll(tiny, ctx, tgt)
    assert nll[0] == pytest.approx(r.nll[0], rel=1e-9)
    # Scaling the data by a scales the density by 1/a: NLL + ln a, same tokens.
    a = 37.5
    assert continuous_nll(tiny, a * ctx, a * tgt)[0] == pytest.approx(nll[0] + math.log(a), rel=1e-9)
    # Teacher forcing on the full text (no cache) gives the same token NLL.
    enc = ser.encode(ctx)
    prompt = enc.text[:-1]
    full = prompt + ser.time_sep + ser.encode(tgt, scaler=enc.scaler).text
    ids = tiny.tokenizer(full)["input_ids"]
    n_p = len(tiny.tokenizer(prompt)["input_ids"])
    voc = digit_vocabulary(tiny.tokenizer, ser)
    masks = _Masks(voc, None)
    with torch.no_grad():
        logits = tiny.model(input_ids=torch.tensor([ids])).logits[0].double()
    pos = {int(t): k for k, t in enumerate(voc.ids)}
    states, tot = AFTER_VALUE, 0.0
    for j in range(n_p, len(ids)):
        z = logits[j - 1, torch.as_tensor(voc.ids)]
        z[~torch.as_tensor(masks.mask(states))] = -math.inf
        k = pos[ids[j]]
        tot -= float(z[k] - torch.logsumexp(z, 0))
        states, _ = masks.step(states, k)
    assert r.token_nll[0] == pytest.approx(tot / 4, rel=1e-9)


def test_first_digit_distribution(tiny, series):
    (fd,) = next_value_first_digit(tiny, series[:30])
    assert fd.digit_probs.shape == (10,)
    assert fd.digit_probs.sum() + fd.negative_prob == pytest.approx(1.0)
    assert np.all(np.diff(fd.edges) > 0) and fd.n_digits >= 1
    r = forecast(tiny, series[:30], 2, n_samples=1, first_digit=True)
    np.testing.assert_allclose(r.first_digit[0].digit_probs, fd.digit_probs, rtol=1e-9)


def _merging_tokenizer():
    """A BPE tokenizer that merges digit pairs ("12", "34"), like GPT-2's."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(list("0123456789,-. ") + ["12", "34", "<unk>"])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("1", "2"), ("3", "4")], unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


def test_tokenizer_that_merges_digits_is_refused(tiny, series):
    with pytest.raises(ValueError, match="one token per digit") as e:
        digit_vocabulary(_merging_tokenizer(), "llmtime")
    assert "supports" in str(e.value) and "12" in str(e.value)
    with pytest.raises(ValueError, match="LLMTime"):
        digit_vocabulary(tiny.tokenizer, "chronos")
    with pytest.raises(ValueError, match="horizon"):
        forecast(tiny, series[:20], 0)
    with pytest.raises(ValueError, match="target"):
        forecast(tiny, series[:20], 3, target=np.ones(2))


def test_spaced_layout_on_a_gpt2(series):
    from isofast.models import tiny_model

    lm = tiny_model("gpt2", seed=0)
    r = forecast(lm, series[:12], 3, n_samples=2, serializer="llmtime:gpt", target=series[12:15])
    assert r.samples.shape == (1, 2, 3) and np.isfinite(r.samples).all() and np.isfinite(r.nll).all()


def test_smollm2_forecasts_a_real_series():
    """The bundled SmolLM2-135M forecasts the airline-passengers series."""
    from isofast.data import load, make_windows
    from isofast.models import load_model

    t0 = time.perf_counter()
    lm = load_model("smollm2", device="cpu")
    tok = lm.tokenizer
    # SmolLM2 splits numbers into single digits.
    assert tok.convert_ids_to_tokens(tok("0123456789")["input_ids"]) == list("0123456789")
    voc = digit_vocabulary(tok, "llmtime")
    assert set("0123456789,-") <= set(voc.strings)
    w = make_windows(load("airpassengers"), 96, 12, mode="last")
    r = forecast(lm, w, 12, n_samples=5, seed=0, n_threads=1)
    assert r.samples.shape == (1, 5, 12) and np.isfinite(r.samples).all()
    assert np.isfinite(r.nll).all() and np.isfinite(r.token_nll).all()
    m = evaluate(w.target, r.median, samples=r.samples, context=w.context, season=12)
    assert np.isfinite(m.nmse) and np.isfinite(m.crps) and np.isfinite(m.mase)
    # Sane, not tuned: the median stays within the series' range and beats
    # forecasting zero by a wide margin (NMSE of 0 is 1).
    assert m.nmse < 0.5
    assert r.allowed_mass[0] > 0.5  # the model itself prefers digit tokens here
    assert time.perf_counter() - t0 < 120


def test_forecast_cli_writes_forecasts_and_metrics(tmp_path, capsys, series):
    import csv
    import json

    from isofast.cli import main

    f = tmp_path / "s.csv"
    with open(f, "w") as fh:
        fh.write("t,value\n" + "".join(f"{i},{v}\n" for i, v in enumerate(series)))
    out = tmp_path / "run"
    rc = main(
        [
            "forecast",
            "--model",
            "tiny-llama",
            "--data",
            str(f),
            "--column",
            "value",
            "--context",
            "20",
            "--horizon",
            "3",
            "--samples",
            "2",
            "--window-mode",
            "sliding",
            "--n-windows",
            "2",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert "NMSE" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "forecasts.csv")))
    assert len(rows) == 2 * 3 and {"truth", "median", "q0.9"} <= set(rows[0])
    z = np.load(out / "forecasts.npz")
    assert z["samples"].shape == (2, 2, 3)
    m = json.loads((out / "metrics.json").read_text())
    assert m["metrics"]["n_series"] == 2 and m["metrics"]["nmse"] is not None
    assert m["nll_per_value"] is not None
    assert main(["forecast", "--model", "tiny-llama", "--data", "no-such-dataset", "--out", str(out)]) == 2
