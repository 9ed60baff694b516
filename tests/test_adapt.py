"""isofast.adapt: fine-tuning with isotropy tracked and regularised (issue 18).

Statistics are checked against plain float64 numpy references written here
and against isofast's Rust kernels (the measured statistics' one home).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import isofast
from isofast.adapt.data import TrainingSet, encode_window, resolve_split
from isofast.adapt.finetune import finetune
from isofast.adapt.regularizers import (
    Regularizer,
    isoscore_star,
    log_partition,
    log_partition_variance,
)
from isofast.adapt.tracking import IsotropyCallback, IsotropyTracker
from isofast.models import tiny_model


# ------------------------------------------------------------------ references
def ref_isoscore(X: np.ndarray) -> float:
    """IsoScore by Rudman et al. (2022)'s five steps, float64 numpy."""
    X = np.asarray(X, np.float64)
    n = X.shape[1]
    Xc = X - X.mean(0)
    lam = np.linalg.eigvalsh(Xc.T @ Xc / (X.shape[0] - 1))  # variances along the PCA axes
    lam = np.clip(lam, 0, None)
    sig = np.sqrt(n) * lam / np.linalg.norm(lam)
    delta = np.linalg.norm(sig - 1) / np.sqrt(2 * (n - np.sqrt(n)))
    phi = (n - delta**2 * (n - np.sqrt(n))) ** 2 / n**2
    return float((n * phi - 1) / (n - 1))


def ref_log_z(C: np.ndarray, W: np.ndarray) -> np.ndarray:
    z = np.asarray(C, np.float64) @ np.asarray(W, np.float64).T
    m = z.max(1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(1, keepdims=True)))[:, 0]


def _data(kind: str, rng) -> np.ndarray:
    if kind == "random":
        return rng.standard_normal((200, 16))
    if kind == "offset":  # huge offset: centring must happen in float64
        return 1e4 + rng.standard_normal((200, 16))
    if kind == "rank_deficient":
        return rng.standard_normal((200, 3)) @ rng.standard_normal((3, 16))
    if kind == "n_lt_d":
        return rng.standard_normal((10, 32))
    if kind == "massive":
        X = rng.standard_normal((200, 16))
        X[7] *= 1e3
        return X
    if kind == "tiny_scale":
        return 1e-20 * rng.standard_normal((100, 8))
    if kind == "anisotropic":
        return rng.standard_normal((300, 12)) * np.geomspace(1, 100, 12)
    raise AssertionError(kind)


KINDS = ["random", "offset", "rank_deficient", "n_lt_d", "massive", "tiny_scale", "anisotropic"]


@pytest.mark.parametrize("kind", KINDS)
def test_isoscore_star_equals_reference_and_rust(kind):
    X = _data(kind, np.random.default_rng(KINDS.index(kind)))
    got = float(isoscore_star(torch.as_tensor(X)))
    np.testing.assert_allclose(got, ref_isoscore(X), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(got, isofast.isoscore(X), rtol=1e-6, atol=1e-9)


def test_isoscore_star_shrinkage():
    rng = np.random.default_rng(1)
    X = _data("anisotropic", rng)
    S = np.eye(12) * 3.0
    C = np.cov(X, rowvar=False)
    Cz = 0.7 * C + 0.3 * S
    lam = np.linalg.eigvalsh(Cz)
    ref = ((lam.sum() ** 2 / (lam**2).sum()) - 1) / 11
    got = float(isoscore_star(torch.as_tensor(X), zeta=0.3, shrinkage=S))
    np.testing.assert_allclose(got, ref, rtol=1e-10)
    assert ref > ref_isoscore(X)  # shrinking towards an isotropic Σ_S raises it
    with pytest.raises(ValueError, match="shrinkage"):
        isoscore_star(torch.as_tensor(X), zeta=0.3)
    with pytest.raises(ValueError, match="zeta"):
        isoscore_star(torch.as_tensor(X), zeta=1.5, shrinkage=S)
    with pytest.raises(ValueError, match="2 rows"):
        isoscore_star(torch.ones(1, 4))


@pytest.mark.parametrize("offset", [0.0, 50.0])
def test_log_partition_equals_reference_and_rust(offset):
    rng = np.random.default_rng(2)
    W = rng.standard_normal((300, 16)).astype(np.float32)
    C = (offset + rng.standard_normal((40, 16))).astype(np.float32)
    lz = log_partition(torch.as_tensor(C), torch.as_tensor(W)).numpy()
    np.testing.assert_allclose(lz, ref_log_z(C, W), rtol=1e-5)
    rust = isofast.log_partition_head(W, C)
    np.testing.assert_allclose(lz, rust, rtol=1e-5)
    v = float(log_partition_variance(torch.as_tensor(lz)))
    np.testing.assert_allclose(v, np.var(rust, ddof=1), rtol=1e-4)


# ------------------------------------------------ gradient moves the statistic
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_isoscore_gradient_moves_isotropy_in_the_intended_direction(sign):
    rng = np.random.default_rng(3)
    X0 = _data("anisotropic", rng) / 10
    H = torch.tensor(X0, requires_grad=True)
    reg = Regularizer("isoscore", sign, 0)
    pen = 1.0 - isoscore_star(H)
    (reg.weight * pen).backward()
    X1 = (H - 0.5 * H.grad / H.grad.norm() * np.linalg.norm(X0)).detach().numpy()  # one descent step
    before, after = isofast.isoscore(X0), isofast.isoscore(X1)
    assert (after - before) * sign > 1e-4, (before, after)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_logz_gradient_moves_the_spread_in_the_intended_direction(sign):
    rng = np.random.default_rng(4)
    W = rng.standard_normal((200, 8)).astype(np.float32)
    C0 = rng.standard_normal((64, 8)) * np.linspace(0.2, 2, 8)
    H = torch.tensor(C0, requires_grad=True)
    pen = log_partition_variance(log_partition(H, torch.as_tensor(W)))
    (sign * pen).backward()
    C1 = (H - 0.05 * H.grad / H.grad.norm()).detach().numpy().astype(np.float32)
    v0 = np.var(isofast.log_partition_head(W, C0.astype(np.float32)), ddof=1)
    v1 = np.var(isofast.log_partition_head(W, C1), ddof=1)
    assert (v0 - v1) * sign > 0, (v0, v1)


# ---------------------------------------------------------------- data layer
@pytest.fixture(scope="module")
def split():
    return resolve_split("RBF_0.1", context=32, horizon=4, n_test=4, length=64, n_train_series=6)


def test_value_token_mask(split):
    tok = tiny_model("llama").tokenizer
    w = encode_window(tok, split.train_context[0], split.train_target[0])
    text = [tok.decode([t]) for t in w.input_ids]
    assert not w.loss_mask[0]
    scored = [s for s, m in zip(text, w.loss_mask) if m]
    assert scored and all(set(s) <= set("0123456789,-") for s in scored)
    # the char tokenizer adds no special tokens: every token but the first is a scored value character
    assert int(w.loss_mask.sum()) == len(w.input_ids) - 1
    wt = encode_window(tok, split.train_context[0], split.train_target[0], loss_on="target")
    tail = "".join(s for s, m in zip(text, wt.loss_mask) if m)
    ser = isofast.serializers.get_serializer("llmtime")
    enc = ser.encode(
        np.concatenate([split.train_context[0], split.train_target[0]]), scaler=ser.fit(split.train_context[0])
    )
    # the scored tail is the separator closing the context plus the target's text
    assert enc.text.endswith(tail) and tail.startswith(",")
    assert tail.count(",") == 4 + 1
    with pytest.raises(ValueError, match="loss_on"):
        encode_window(tok, [1.0, 2.0], loss_on="all")


def test_training_windows_do_not_reach_test_targets():
    s = resolve_split("airpassengers", context=24, horizon=4, n_test=3)
    x = np.asarray(isofast.data.load("airpassengers").values, float)
    L = x.size
    first_target = L - 24 - 4 - 2 * 4 + 24  # index of the first test target value
    # the last training target ends before it: compare with the raw series
    last = s.train_target[-1]
    end = [i for i in range(L - 3) if np.array_equal(x[i : i + 4], last)]
    assert end and max(end) + 4 <= first_target


# ----------------------------------------------------------- fine-tuning runs
def _lm():
    return tiny_model("llama", seed=0)


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_training_reduces_the_loss_and_tracking_writes_rows(split, tmp_path):
    lm = _lm()
    ts = TrainingSet(lm.tokenizer, split.train_context, split.train_target)
    evalb = ts.collate(range(8))
    with torch.no_grad():
        l0 = float(lm.model(**evalb).loss)
    tr = IsotropyTracker(split.test_context, tokenizer=lm.tokenizer, every=5, layers=[0, 2])
    res = finetune(lm, ts, steps=12, batch_size=4, lr=3e-3, seed=0, tracker=tr)
    with torch.no_grad():
        l1 = float(lm.model(**evalb).loss)
    assert l1 < l0 - 0.3, (l0, l1)
    assert len(res.loss_curve) == 12 and res.train_seconds > 0
    df = tr.table()
    assert list(df.columns) == ["step", "layer", "statistic", "value"]
    assert sorted(df["step"].unique()) == [0, 5, 10, 12]
    assert sorted(df["layer"].unique()) == [0, 2]
    want = {
        "isoscore",
        "avg_cosine",
        "effective_rank",
        "inter_cluster_cosine",
        "n_massive",
        "massive_variance_share",
        "n_rows",
        "isoscore_null",
    }
    got0 = set(df[df.layer == 0]["statistic"])
    assert want <= got0
    head = set(df[df.layer == 2]["statistic"]) - got0
    assert {"head_log_z_std", "head_shift_norm_share_mean"} <= head
    # equal N at every step, the tracker's N
    n = df[df.statistic == "n_rows"]["value"].unique()
    assert n.tolist() == [tr.n_rows]
    # the measured statistic is the Rust kernel's on the probe's rows
    v = df[(df.statistic == "isoscore") & (df.layer == 0) & (df.step == 0)]["value"].iloc[0]
    assert 0 < v < 1
    files = tr.write(tmp_path)
    import pandas as pd

    back = pd.read_csv(files["csv"])
    assert list(back.columns) == ["step", "layer", "statistic", "value"] and len(back) == len(df)
    assert len(pd.read_parquet(files["parquet"])) == len(df)
    assert files["figures"] and all(p.endswith(".png") for p in files["figures"])


def test_runs_are_deterministic_and_weight_zero_is_bitwise_unregularised(split):
    ts = TrainingSet(_lm().tokenizer, split.train_context, split.train_target)
    finals = []
    for reg in (None, None, Regularizer("isoscore", 0.0, 1), Regularizer("logz", 0.0, 2)):
        lm = _lm()
        finetune(lm, ts, steps=4, batch_size=2, lr=1e-3, seed=7, regularizer=reg)
        finals.append(_params(lm.model))
    for other in finals[1:]:
        assert all(torch.equal(finals[0][k], other[k]) for k in finals[0])
    lm = _lm()
    finetune(lm, ts, steps=4, batch_size=2, lr=1e-3, seed=7, regularizer=Regularizer("isoscore", 1.0, 1))
    p = _params(lm.model)
    assert not all(torch.equal(finals[0][k], p[k]) for k in p)  # a weight ≠ 0 does change training


def test_regularised_training_moves_the_statistic(split):
    """A strong penalty on layer 1 raises (w > 0) or lowers (w < 0) its IsoScore."""
    ts = TrainingSet(_lm().tokenizer, split.train_context, split.train_target)
    vals = {}
    for w in (0.0, 5.0, -5.0):
        lm = _lm()
        tr = IsotropyTracker(split.test_context, tokenizer=lm.tokenizer, every=100, layers=[1], head=False)
        finetune(lm, ts, steps=10, batch_size=4, lr=3e-3, seed=0, tracker=tr, regularizer=Regularizer("isoscore", w, 1))
        vals[w] = tr.value("isoscore", 1, 10)
    assert vals[5.0] > vals[0.0] > vals[-5.0], vals


def test_lora_trains_adapters_and_the_adapted_model_reloads_and_forecasts(split, tmp_path):
    pytest.importorskip("peft")
    from isofast.adapt.finetune import save_adapted
    from isofast.forecast import forecast
    from isofast.models import load_model

    lm = _lm()
    before = _params(lm.model)
    ts = TrainingSet(lm.tokenizer, split.train_context, split.train_target)
    res = finetune(lm, ts, steps=6, batch_size=2, lr=1e-2, seed=0, lora=True)
    assert res.lora and 0 < res.trainable_params < res.total_params / 2
    after = _params(lm.model)
    assert set(after) == set(before)  # merged: a plain model again
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)
    folder = save_adapted(lm, tmp_path / "model")
    back = load_model(folder, device="cpu")
    for k, v in _params(back.model).items():
        assert torch.equal(v, after[k]), k
    f1 = forecast(back, split.test_context[:2], 4, n_samples=2, seed=0)
    f2 = forecast(lm, split.test_context[:2], 4, n_samples=2, seed=0)
    np.testing.assert_array_equal(f1.samples, f2.samples)
    assert np.isfinite(f1.median).all()


def test_trainer_callback(split):
    from transformers import Trainer, TrainingArguments

    lm = _lm()
    ts = TrainingSet(lm.tokenizer, split.train_context, split.train_target)

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(ts)

        def __getitem__(self, i):
            return {"idx": i}

    def collate(items):
        return ts.collate([it["idx"] for it in items])

    cb = IsotropyCallback(split.test_context, tokenizer=lm.tokenizer, every=2, layers=[0, 2])
    args = TrainingArguments(
        output_dir="/tmp/isofast-adapt-trainer-test",
        max_steps=4,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        logging_steps=100,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    lm.model.train()
    Trainer(model=lm.model, args=args, train_dataset=DS(), data_collator=collate, callbacks=[cb]).train()
    df = cb.tracker.table()
    assert sorted(df["step"].unique()) == [0, 2, 4]
    assert set(df["layer"].unique()) == {0, 2}


# ---------------------------------------------------------------- bad input
def test_bad_input(split, tmp_path):
    from isofast.adapt.data import check_tokenizer
    from isofast.adapt.finetune import check_causal_lm

    with pytest.raises(ValueError, match="causal-LM head"):
        check_causal_lm(tiny_model("t5"))
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(list("0123456789,-. ") + ["12", "34", "<unk>"])}
    merging = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.BPE(vocab=vocab, merges=[("1", "2"), ("3", "4")], unk_token="<unk>")),
        unk_token="<unk>",
    )
    with pytest.raises(ValueError, match="one token per digit"):
        check_tokenizer(merging)
    with pytest.raises(ValueError, match="one token per digit"):
        TrainingSet(merging, split.train_context, split.train_target)
    lm = _lm()
    ts = TrainingSet(lm.tokenizer, split.train_context, split.train_target)
    with pytest.raises(ValueError, match="out of range"):
        finetune(lm, ts, steps=2, regularizer=Regularizer("isoscore", 1.0, 3))
    with pytest.raises(ValueError, match="0 steps|positive int"):
        finetune(lm, ts, steps=0)
    with pytest.raises(ValueError, match="regularize must be"):
        Regularizer("entropy", 1.0, 1)
    with pytest.raises(ValueError, match="N = .* below d"):
        IsotropyTracker([np.arange(3.0)], tokenizer=lm.tokenizer).measure(lm.model, 0)
    with pytest.raises(ValueError, match="out of range"):
        IsotropyTracker(split.test_context, tokenizer=lm.tokenizer, layers=[9]).measure(lm.model, 0)


def _cli(*argv):
    from isofast.cli import main

    return main(list(argv))


def test_cli_end_to_end_and_refusals(tmp_path, capsys):
    out = tmp_path / "run"
    base = [
        "adapt",
        "--model",
        "tiny-llama",
        "--data",
        "RBF_0.1",
        "--context",
        "32",
        "--n-test",
        "4",
        "--track-every",
        "3",
        "--lr",
        "3e-3",
        "--threads",
        "1",
        "--quiet",
    ]
    assert _cli(*base, "--steps", "6", "--out", str(out)) == 0
    s = json.loads((out / "summary.json").read_text())
    assert np.isfinite(s["nmse_before"]) and np.isfinite(s["nmse_after"])
    import pandas as pd

    df = pd.read_csv(out / "tracking.csv")
    assert list(df.columns) == ["step", "layer", "statistic", "value"]
    assert sorted(df.step.unique()) == [0, 3, 6]
    assert (out / "model" / "config.json").is_file() and (out / "figures").is_dir()
    capsys.readouterr()
    # the same run may be repeated into its folder; a different one is refused (exit 2, one line)
    assert _cli(*base, "--steps", "6", "--out", str(out)) == 0
    capsys.readouterr()
    assert _cli(*base, "--steps", "7", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "different run" in err and "steps" in err and err.count("\n") == 1
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("hi")
    assert _cli(*base, "--steps", "6", "--out", str(tmp_path / "other")) == 2
    assert "not empty" in capsys.readouterr().err
    assert _cli(*base, "--steps", "0", "--out", str(tmp_path / "z")) == 2
    assert "steps" in capsys.readouterr().err
    assert (
        _cli(
            *base,
            "--steps",
            "2",
            "--regularize",
            "isoscore",
            "--weight",
            "1",
            "--layer",
            "5",
            "--out",
            str(tmp_path / "z"),
        )
        == 2
    )
    assert "out of range" in capsys.readouterr().err
    assert _cli(*base[:2], "tiny-t5", *base[3:], "--steps", "2", "--out", str(tmp_path / "z")) == 2
    assert "causal-LM head" in capsys.readouterr().err
    assert _cli(*base, "--steps", "2", "--weight", "1", "--out", str(tmp_path / "z")) == 2
    assert "--regularize" in capsys.readouterr().err
    assert _cli(*base[:4], "no_such_dataset", *base[5:], "--steps", "2", "--out", str(tmp_path / "z")) == 2
    assert "neither a KernelSynth preset" in capsys.readouterr().err
    assert _cli(*base[:4], str(tmp_path / "missing.csv"), *base[5:], "--steps", "2", "--out", str(tmp_path / "z")) == 2
    assert "no such file" in capsys.readouterr().err
