"""LM-head statistics: the fused log-partition kernel against float64 scipy,
top-k / subset against numpy, bad input, and the shift-invariance diagnostics
on constructed heads."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp

from isofast.head import (
    EXACT_SHIFT_TOL,
    HeadLogits,
    HeadReport,
    head_diagnostics,
    log_partition_head,
    shift_direction,
)


def _head(V=700, d=24, N=50, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(V, d))
    C = rng.normal(size=(N, d)) * scale
    b = rng.normal(size=V)
    return W, C, b


def _ref(W, C, b=None):
    Z = np.asarray(C, np.float64) @ np.asarray(W, np.float64).T
    if b is not None:
        Z = Z + b
    return Z, logsumexp(Z, axis=1)


# ------------------------------------------------------------------ kernel
def test_equals_scipy_float64_including_huge_logits():
    W, C, b = _head(scale=60.0)  # logits of several thousand
    Z, ref = _ref(W, C, b)
    assert np.abs(Z).max() > 1e3
    got = log_partition_head(W, C, b)
    assert got.dtype == np.float64 and got.shape == (50,)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(log_partition_head(W, C), _ref(W, C)[1], rtol=1e-13, atol=1e-12)


def test_float32_and_half_inputs_use_their_own_precision():
    W, C, b = _head(V=3000, d=40, N=70, scale=20.0)
    W32, C32 = W.astype(np.float32), C.astype(np.float32)
    _, ref = _ref(W32, C32, b)  # float64 reference on the float32 values
    got = log_partition_head(W32, C32, b)
    np.testing.assert_allclose(got, ref, rtol=2e-6)
    W16, C16 = W.astype(np.float16), (C / 20).astype(np.float16)
    np.testing.assert_allclose(log_partition_head(W16, C16), _ref(W16, C16)[1], rtol=1e-5)
    ml = pytest.importorskip("ml_dtypes")
    Wb, Cb = W.astype(ml.bfloat16), C.astype(ml.bfloat16)
    ref_b = _ref(Wb.astype(np.float64), Cb.astype(np.float64))[1]
    np.testing.assert_allclose(log_partition_head(Wb, Cb), ref_b, rtol=2e-6)
    # uint16 bit patterns with dtype="bfloat16"
    np.testing.assert_allclose(
        log_partition_head(Wb.view(np.uint16), Cb.view(np.uint16), dtype="bfloat16"), ref_b, rtol=2e-6
    )


def test_layouts_torch_memmap_and_one_context(tmp_path):
    W, C, b = _head()
    ref = _ref(W, C, b)[1]
    np.testing.assert_allclose(log_partition_head(np.asfortranarray(W), C[::-1], b), ref[::-1], rtol=1e-13)
    wide = np.zeros((50, 72))
    wide[:, ::3] = C
    np.testing.assert_allclose(log_partition_head(W, wide[:, ::3], b), ref, rtol=1e-13)
    np.testing.assert_allclose(log_partition_head(W, C[7], b), ref[7:8], rtol=1e-13)
    path = tmp_path / "w.npy"
    np.save(path, W)
    np.testing.assert_allclose(log_partition_head(np.load(path, mmap_mode="r"), C, b), ref, rtol=1e-13)
    torch = pytest.importorskip("torch")
    got = log_partition_head(torch.from_numpy(W), torch.from_numpy(C), torch.from_numpy(b))
    np.testing.assert_allclose(got, ref, rtol=1e-13)


def test_topk_and_subset_against_numpy():
    W, C, b = _head(V=5000, d=16, N=40, scale=3.0)
    Z, ref = _ref(W, C, b)
    digits = np.array([3, 17, 17, 4999, 250, 2600])
    r = log_partition_head(W, C, b, topk=5, subset=digits)
    assert isinstance(r, HeadLogits)
    np.testing.assert_allclose(r.log_z, ref, rtol=1e-13)
    order = np.argsort(-Z, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(r.topk_indices, order)
    np.testing.assert_allclose(r.topk_logits, np.take_along_axis(Z, order, 1), rtol=1e-13)
    P = np.exp(Z - ref[:, None])
    np.testing.assert_allclose(r.topk_probs, np.take_along_axis(P, order, 1), rtol=1e-12)
    uniq = np.unique(digits)
    np.testing.assert_allclose(r.subset_log_mass, logsumexp(Z[:, uniq], axis=1) - ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(r.subset_mass, P[:, uniq].sum(1), rtol=1e-12)
    mask = np.zeros(5000, bool)
    mask[uniq] = True
    np.testing.assert_allclose(log_partition_head(W, C, b, subset=mask).subset_log_mass, r.subset_log_mass)


def test_many_contexts_and_thread_count_invariance():
    rng = np.random.default_rng(5)
    W = rng.normal(size=(300, 10)).astype(np.float32)
    C = rng.normal(size=(17000, 10)).astype(np.float32) * 2  # > 64 context blocks
    a = log_partition_head(W, C, topk=3, n_threads=1)
    bb = log_partition_head(W, C, topk=3, n_threads=2)
    np.testing.assert_array_equal(a.log_z, bb.log_z)
    np.testing.assert_array_equal(a.topk_indices, bb.topk_indices)
    _, ref = _ref(W, C)
    np.testing.assert_allclose(a.log_z, ref, rtol=1e-5)


@pytest.mark.parametrize(
    "case, match",
    [
        ("dim", "dimension mismatch"),
        ("empty_vocab", "vocabulary is empty"),
        ("nan_w", r"W .*row 4"),
        ("nan_c", r"C .*row 2"),
        ("inf_b", "index 6"),
        ("overflow", "logit is not finite"),
        ("topk", "exceeds the vocabulary"),
        ("subset", "outside the vocabulary"),
        ("neg_subset", "negative"),
        ("bias_len", "bias b has length"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(case, match):
    W, C, b = _head(V=10, d=4, N=5)
    kw = {}
    if case == "dim":
        C = C[:, :3]
    elif case == "empty_vocab":
        W = W[:0]
        b = None
    elif case == "nan_w":
        W[4, 1] = np.nan
    elif case == "nan_c":
        C[2, 3] = np.inf
    elif case == "inf_b":
        b[6] = -np.inf
    elif case == "overflow":
        W = np.full((10, 4), 3e19, np.float32)
        C = np.full((5, 4), 3e19, np.float32)
        b = None
    elif case == "topk":
        kw["topk"] = 11
    elif case == "subset":
        kw["subset"] = [1, 10]
    elif case == "neg_subset":
        kw["subset"] = [-1]
    elif case == "bias_len":
        b = b[:9]
    with pytest.raises(ValueError, match=match):
        log_partition_head(W, C, b, **kw)


def test_bad_types():
    with pytest.raises(TypeError):
        log_partition_head(np.array([["a"]]), np.zeros((1, 1)))
    with pytest.raises(ValueError):
        log_partition_head(np.zeros((3, 2, 2)), np.zeros((1, 2)))


# ------------------------------------------------------------- diagnostics
def _sphere(N, d, r, rng):
    X = rng.normal(size=(N, d))
    return r * X / np.linalg.norm(X, axis=1, keepdims=True)


def test_isotropic_head_has_small_log_z_spread_common_direction_large():
    rng = np.random.default_rng(1)
    V, d, N = 8192, 64, 400
    G = rng.normal(size=(V, d)) / np.sqrt(d)
    C = _sphere(N, d, 3.0, rng)
    iso = head_diagnostics(G, C, head_isotropy=False)
    a = np.zeros(d)
    a[0] = 1.0
    common = head_diagnostics(G + 2.0 * a, C, head_isotropy=False)
    # log Z(c) ≈ const + 2⟨a, c⟩: std ≈ 2·3/√64 = 0.75
    assert iso.log_z_std < 0.05
    assert common.log_z_std > 0.4
    assert common.log_z_std > 10 * iso.log_z_std
    assert iso.z_cv < 0.05 < common.z_cv
    assert iso.log_z_mean == pytest.approx(np.log(V) + 9 / (2 * d), abs=0.05)  # E exp⟨g,c⟩
    assert not iso.shift_exact and iso.shift_residual > 0.9
    d_ = iso.to_dict()
    assert "log_z" not in d_ and d_["n_contexts"] == N and d_["isotropy"]["n"] == N
    assert len(iso.to_dict(arrays=True)["log_z"]) == N
    assert "log Z std" in iso.table()


def test_exact_shift_direction_is_detected_and_only_moves_log_z():
    rng = np.random.default_rng(2)
    V, d, N = 3000, 32, 300
    u0 = rng.normal(size=d)
    G = rng.normal(size=(V, d))
    # Project every row onto the affine set ⟨v, u0⟩ = 1: then W u0 = 1 exactly.
    W = G - np.outer(G @ u0 - 1.0, u0) / (u0 @ u0)
    sd = shift_direction(W, chunk_rows=700)
    assert sd.residual < 1e-12
    np.testing.assert_allclose(sd.u, u0, rtol=1e-9)  # unique when W has full column rank
    base = rng.normal(size=d)
    t = rng.normal(size=N) * 3
    C = base + np.outer(t, u0)  # contexts differ only along the shift direction
    rep = head_diagnostics(W, C, isotropy=False, head_isotropy=False)
    assert isinstance(rep, HeadReport)
    assert rep.shift_exact and rep.shift_residual < EXACT_SHIFT_TOL
    # log Z(c + t u0) = log Z(c) + t: the spread is exactly that of t.
    np.testing.assert_allclose(rep.log_z - rep.log_z[0], t - t[0], atol=1e-9)
    assert rep.shift_variance_share == pytest.approx(1.0, abs=1e-9)
    assert rep.logit_shift_variance_share == pytest.approx(1.0, abs=1e-9)
    # A random head has no such direction; variance of random contexts is not a shift.
    rnd = head_diagnostics(G, rng.normal(size=(N, d)), isotropy=False, head_isotropy=False)
    assert not rnd.shift_exact and rnd.shift_residual > 0.5
    assert rnd.logit_shift_variance_share < 0.2
    assert 0 <= rnd.shift_norm_share_mean <= 1


def test_shift_direction_matches_lstsq_and_rank_deficient_head():
    rng = np.random.default_rng(3)
    W = rng.normal(size=(500, 12)) + 0.3
    sd = shift_direction(W, chunk_rows=64)
    u, *_ = np.linalg.lstsq(W, np.ones(500), rcond=None)
    np.testing.assert_allclose(sd.u, u, rtol=1e-9)
    assert sd.residual == pytest.approx(np.linalg.norm(W @ u - 1) / np.sqrt(500), rel=1e-9)
    np.testing.assert_allclose(sd.gram, W.T @ W, rtol=1e-9)
    np.testing.assert_allclose(sd.ones_proj, W.sum(0), rtol=1e-9)
    Wd = np.hstack([W, W[:, :1]])  # rank 12 < d = 13
    rep = head_diagnostics(Wd, rng.normal(size=(20, 13)), isotropy=False, head_isotropy=False)
    assert rep.shift_rank == 12 and any("rank" in n for n in rep.notes)
    with pytest.raises(ValueError, match="row 7"):
        Wn = W.copy()
        Wn[7, 0] = np.nan
        shift_direction(Wn)


def test_chunked_contexts_equal_one_array():
    W, C, b = _head(V=400, d=8, N=90)
    one = head_diagnostics(W, C, b, head_isotropy=False)
    many = head_diagnostics(W, [C[:20], C[20:70], C[70:]], b, head_isotropy=False)
    np.testing.assert_allclose(many.log_z, one.log_z, rtol=1e-13)
    for k in ("log_z_std", "shift_variance_share", "logit_shift_variance_share", "shift_norm_share_mean"):
        assert getattr(many, k) == pytest.approx(getattr(one, k), rel=1e-10), k
    assert many.isotropy["isoscore"] == pytest.approx(one.isotropy["isoscore"], rel=1e-10)


# ------------------------------------------------------------------- CLI
def _tiny_capture(tmp_path, layers):
    torch = pytest.importorskip("torch")
    from isofast.capture import capture
    from isofast.models import tiny_model

    lm = tiny_model("llama", seed=0)
    x = 10 + 3 * np.sin(np.arange(40) / 3)
    out = tmp_path / "cap"
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny GEMMs: one thread is fastest on a shared machine
    try:
        capture(lm, [x[:20], x[5:30]], layers=layers, sites=("residual",), out=out, progress=False)
    finally:
        torch.set_num_threads(old)
    return lm, out


def test_head_inputs_are_the_last_residual_layer_and_cli_reads_captures(tmp_path, capsys):
    import json

    from isofast.cli import main
    from isofast.head import head_inputs, lm_head_weights
    from isofast.serializers import get_serializer
    from isofast.store import open_capture

    lm, out = _tiny_capture(tmp_path, [-1])
    cap = open_capture(out)
    layer = cap.layer(lm.num_layers, "residual")
    x = 10 + 3 * np.sin(np.arange(40) / 3)
    ids = lm.tokenizer(get_serializer("llmtime").encode(x[:20]).text)["input_ids"]
    h = head_inputs(lm, ids)  # hook on the head's input = after the final norm
    np.testing.assert_allclose(layer.to_numpy()[: h.shape[0]], h, atol=1e-5)
    W, b = lm_head_weights(lm)
    assert W.shape == (128, 32) and b is None
    ref = head_diagnostics(W, layer.to_numpy(), isotropy=False, head_isotropy=False)
    assert main(["head", "--capture", str(out), "--json", "--no-isotropy"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["n_contexts"] == cap.n_rows and d["model"] == "tiny-llama"
    assert d["log_z_std"] == pytest.approx(ref.log_z_std, rel=1e-9)


def test_head_cli_without_last_layer_and_direct_mode(tmp_path, capsys):
    import json

    from isofast.cli import main

    _, out = _tiny_capture(tmp_path, [1])
    assert main(["head", "--capture", str(out)]) == 2
    assert "last residual layer" in capsys.readouterr().err
    f = tmp_path / "s.npy"
    np.save(f, 5 + np.cos(np.arange(80) / 4))
    report = tmp_path / "head.json"
    assert (
        main(
            [
                "head",
                "--model",
                "tiny-llama",
                "--data",
                str(f),
                "--context",
                "20",
                "--n-windows",
                "2",
                "--out",
                str(report),
            ]
        )
        == 0
    )
    assert "log Z std" in capsys.readouterr().out
    d = json.loads(report.read_text())
    assert d["n_contexts"] > 40 and d["isotropy"]["n"] == d["n_contexts"]
