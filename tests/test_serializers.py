"""Serializers: exact round trips (hypothesis), presets, edges, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from isofast.serializers import (
    ROLES,
    ChronosSerializer,
    LLMTimeSerializer,
    PatchSerializer,
    Scaler,
    get_serializer,
)

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False, width=64)
series = hnp.arrays(np.float64, st.integers(1, 60), elements=finite)
PRESETS = ["gpt", "llama"]


# ------------------------------------------------------------------- LLMTime
def test_presets_layout():
    x = np.array([0.645, -1.2, 3.0])
    gpt = LLMTimeSerializer.preset("gpt")
    assert gpt.encode(x, scaler=Scaler(0.0, 1.0)).text == " 6 4 5 , - 1 2 0 0 , 3 0 0 0 ,"
    llama = LLMTimeSerializer.preset("llama")
    assert llama.encode(x, scaler=Scaler(0.0, 1.0)).text == "645,-1200,3000,"
    assert llama.alpha == 0.99 and llama.beta == 0.3
    assert get_serializer("llmtime") == llama


def test_rounding_departure_and_original_truncation():
    x = np.array([0.645, 1.2, 0.0005, 0.0015])
    near = LLMTimeSerializer.preset("llama")
    trunc = LLMTimeSerializer.preset("llama", rounding="truncate")
    s = Scaler(0.0, 1.0)
    # nearest: the closest 3-decimal value (ties to even: 0.0005 -> 0, 0.0015 -> 2)
    assert near.encode(x, scaler=s).text == "645,1200,0,2,"
    # the original's digit loop truncates: 0.645 -> 644, 1.2 -> 1199
    assert trunc.encode(x, scaler=s).text.startswith("644,1199,")
    # ...and its decoder adds half a bin
    np.testing.assert_allclose(trunc.decode("644,1199,", s).values, [0.6445, 1.1995])


def test_scaler_formulas():
    x = np.array([1.0, 2.0, 3.0, 10.0])
    ser = LLMTimeSerializer.preset("llama")
    sc = ser.fit(x)
    m = 1.0 - 0.3 * 9.0
    assert sc.offset == pytest.approx(m)
    assert sc.scale == pytest.approx(np.quantile(x - m, 0.99))
    basic = LLMTimeSerializer.preset("gpt", basic=True).fit(x)
    assert basic.offset == 0.0 and basic.scale == pytest.approx(np.quantile(np.abs(x), 0.95))
    # constant series: q would be 0 -> 1
    assert ser.fit(np.full(5, 7.0)).scale == 1.0
    assert LLMTimeSerializer.preset("gpt", basic=True).fit(np.zeros(3)).scale == 0.01


@pytest.mark.parametrize("preset", PRESETS)
@settings(max_examples=150, deadline=None)
@given(x=series)
def test_llmtime_roundtrip_values(preset, x):
    ser = LLMTimeSerializer.preset(preset)
    enc = ser.encode(x)
    dec = ser.decode(enc.text, enc)
    assert dec.n_malformed == 0
    assert dec.values.shape == x.shape
    # the grid value is exact; its distance to x is at most half a step
    np.testing.assert_array_equal(dec.ints, enc.ints)
    tol = 0.5 * 10.0**-ser.prec * enc.scaler.scale * (1 + 1e-9) + 1e-9 * np.abs(x).max()
    assert np.all(np.abs(dec.values - x) <= tol)


@pytest.mark.parametrize("preset", PRESETS)
@settings(max_examples=150, deadline=None)
@given(
    ints=hnp.arrays(np.int64, st.integers(1, 40), elements=st.integers(-(10**9), 10**9)),
    offset=st.floats(-100, 100),
    scale=st.floats(0.01, 100),
)
def test_llmtime_roundtrip_strings(preset, ints, offset, scale):
    """encode(decode(s)) == s for every string the encoder can produce."""
    ser = LLMTimeSerializer.preset(preset, max_val=1e12)
    sc = Scaler(offset, scale)
    text = ser.encode(ints / 10.0**ser.prec * scale + offset, scaler=sc).text
    dec = ser.decode(text, sc)
    assert ser.encode(dec.values, scaler=sc).text == text


@pytest.mark.parametrize("preset", PRESETS)
def test_llmtime_char_roles(preset):
    ser = LLMTimeSerializer.preset(preset)
    enc = ser.encode([-1.5, 20.0], scaler=Scaler(0.0, 1.0))
    roles = "".join("dsSo"[r] for r in enc.char_roles)  # digit sign Separator other
    assert len(roles) == len(enc.text)
    for ch, r in zip(enc.text, roles):
        assert (r == "d") == ch.isdigit()
    assert "s" in roles and "o" not in roles
    assert list(enc.value_starts) == [0, enc.text.index(ser.time_sep) + len(ser.time_sep)]
    assert ROLES[0] == "digit"


def test_llmtime_robust_decode():
    ser = LLMTimeSerializer.preset("llama")
    s = Scaler(0.0, 1.0)
    dec = ser.decode("645,12a,,-,-3,7 7,999", s)
    np.testing.assert_allclose(dec.values, [0.645, -0.003, 0.999])
    assert dec.n_malformed == 3 and [m[1] for m in dec.malformed] == ["12a", "-", "7 7"]
    with pytest.raises(ValueError, match="malformed"):
        ser.decode("1,x,", s, strict=True)
    gpt = LLMTimeSerializer.preset("gpt")
    dec = gpt.decode(" 6 4 5 , - 1 2 , 3 x ,", s)
    np.testing.assert_allclose(dec.values, [0.645, -0.012])
    assert dec.n_malformed == 1
    assert len(ser.decode("1,2,3,4", s, steps=2).values) == 2


def test_llmtime_bad_input():
    ser = LLMTimeSerializer.preset("llama")
    with pytest.raises(ValueError, match="empty"):
        ser.encode([])
    with pytest.raises(ValueError, match="infinite"):
        ser.encode([1.0, np.inf])
    with pytest.raises(ValueError, match="every value is NaN"):
        ser.encode([np.nan, np.nan])
    with pytest.raises(ValueError, match="index 1"):
        ser.encode([1.0, np.nan, 3.0], nan="error")
    with pytest.warns(UserWarning, match="filled 1 NaN"):
        enc = ser.encode([1.0, np.nan, 3.0], scaler=Scaler(0.0, 1.0))
    assert enc.text == "1000,2000,3000,"
    with pytest.raises(ValueError, match="max_val"):
        ser.encode([1e9], scaler=Scaler(0.0, 1.0))
    with pytest.raises(ValueError, match="time_sep"):
        LLMTimeSerializer(time_sep=" ", bit_sep=" ")
    with pytest.raises(ValueError, match="preset"):
        LLMTimeSerializer.preset("bert")
    with pytest.raises(ValueError, match="unknown serializer"):
        get_serializer("nope")


# ------------------------------------------------------------------- Chronos
def test_chronos_bins_and_offsets():
    c = ChronosSerializer()
    assert c.centers.size == 4093 and c.boundaries.size == 4094
    assert c.centers[0] == -15 and c.centers[-1] == 15
    # edges: the end centres map to ids 3 and 4095; beyond them stays clipped
    enc = c.encode([-15.0, 15.0, -1e6, 1e6, 0.0], scale=1.0)
    assert enc.ids.tolist() == [3, 4095, 3, 4095, 2049, 1]
    assert enc.roles.tolist() == [0, 0, 0, 0, 0, 3]
    # id 2 is never produced; decoding it clamps to the first centre as the original
    assert c.decode([2], 1.0).values[0] == -15
    # a value exactly on the midpoint between centres 99 and 100 goes up to
    # centre 100 (bucketize right=True), i.e. id 100 + 3
    mid = float(c.boundaries[100])
    assert c.ids_of(np.array([mid]), 1.0)[0] == 100 + 3
    assert c.decode([103], 1.0).values[0] == c.centers[100]
    assert c.decode([0, 1, 5], 2.0).n_special == 2


def test_chronos_scale():
    c = ChronosSerializer()
    assert c.encode([1.0, -3.0]).scale == 2.0
    assert c.encode([0.0, 0.0]).scale == 1.0
    assert c.encode([1.0, 2.0], scale=5.0).scale == 5.0
    assert ChronosSerializer(use_eos_token=False).encode([1.0]).ids.size == 1


@settings(max_examples=200, deadline=None)
@given(x=series)
def test_chronos_decode_is_nearest_centre(x):
    c = ChronosSerializer()
    enc = c.encode(x)
    dec = c.decode(enc.ids, enc)
    assert dec.n_special == 1  # the EOS
    z = (x / enc.scale).astype(np.float32)
    j = enc.ids[:-1] - 3
    # the chosen centre is the nearest one, in float32 as the original computes
    dist = np.abs(z[:, None] - c.centers[None, :])
    assert np.all(dist[np.arange(z.size), j] <= dist.min(axis=1) + 1e-6)
    # and decoding returns exactly that centre times the scale
    np.testing.assert_array_equal(dec.values, c.centers[j].astype(np.float64) * enc.scale)


# ------------------------------------------------------------------ patching
@pytest.mark.parametrize("length", [1, 5, 8, 15, 16, 17, 24, 96, 97, 103])
def test_patch_counts(length):
    p = PatchSerializer()
    enc = p.encode(np.arange(length, dtype=float))
    if length + 8 >= 16:
        assert enc.patches.shape == ((length + 8 - 16) // 8 + 1, 16)
    else:
        assert enc.patches.shape == (1, 16)
    # replication at the end
    assert enc.patches[-1, -1] == enc.patches.max()
    np.testing.assert_allclose(p.decode(enc.patches, enc), np.arange(length), atol=1e-9)


def test_patch_bad_settings():
    with pytest.raises(ValueError, match="stride"):
        PatchSerializer(patch_len=4, stride=8)


def test_patch_normalisation():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    enc = PatchSerializer().encode(x)
    assert enc.mean == 2.5 and enc.std == pytest.approx(np.sqrt(x.var() + 1e-5))
    flat = PatchSerializer().encode(np.full(20, 3.0))
    assert np.all(flat.patches == 0)


@settings(max_examples=150, deadline=None)
@given(x=series, plen=st.integers(1, 20), data=st.data())
def test_patch_roundtrip(x, plen, data):
    stride = data.draw(st.integers(1, plen))
    p = PatchSerializer(patch_len=plen, stride=stride)
    enc = p.encode(x)
    back = p.decode(enc.patches, enc)
    np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-9 * (1 + np.abs(x).max()))


def test_nan_policy_shared():
    for ser in (ChronosSerializer(), PatchSerializer(), LLMTimeSerializer.preset("gpt")):
        with pytest.raises(ValueError):
            ser.encode([1.0, np.nan], nan="error")
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            ser.encode([np.nan, 1.0, np.nan, 3.0])
        assert any("filled 2 NaN" in str(m.message) for m in w)
