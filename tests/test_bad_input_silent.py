"""Issue 17, class 2: no silent wrong number.

Every public statistic on adversarial arrays (tests/strategies.py) either
raises one of isofast's exception classes or returns the reference value
(mpmath where float64 is not enough); NaN only where the value is undefined,
with a note or warning saying why. Masks are honoured, cosines are
scale-invariant, contexts with NaN are refused, serializers do not wrap or
clamp.
"""

from __future__ import annotations

import math
import warnings

import isofast
import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from isofast.errors import (
    DimensionError,
    EmptyInputError,
    InputError,
    IsofastError,
    NumericalError,
    UndefinedStatisticWarning,
)
from isofast.serializers import ChronosSerializer, LLMTimeSerializer, PatchSerializer
from reference import avg_cosine_dense, spectral
from strategies import adversarial_arrays

mpmath.mp.dps = 60
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ mpmath references
def mp_unit_rows(X64):
    """Unit vectors of the non-zero rows, in 60-digit arithmetic."""
    out = []
    for row in X64:
        v = [mpmath.mpf(float(x)) for x in row]
        s = mpmath.sqrt(mpmath.fsum(x * x for x in v))
        if s != 0:
            out.append([x / s for x in v])
    return out


def mp_avg_cosine(X64):
    u = mp_unit_rows(X64)
    n = len(u)
    if n < 2:
        return math.nan
    tot = [mpmath.fsum(col) for col in zip(*u)]
    s2 = mpmath.fsum(t * t for t in tot)
    return float((s2 - n) / (n * (n - 1)))


def mp_norms(X64):
    return [float(mpmath.sqrt(mpmath.fsum(mpmath.mpf(float(x)) ** 2 for x in row))) for row in X64]


# ------------------------------------------------------------------ properties
@SETTINGS
@given(adversarial_arrays())
def test_row_norms_exact_or_refused(arr):
    X, X64 = arr
    if X.shape[1] == 0:
        with pytest.raises(DimensionError):
            isofast.row_norms(X)
        return
    got = isofast.row_norms(X)
    want = mp_norms(X64)
    assert got.shape == (X.shape[0],)
    for g, w in zip(got, want):
        if w == 0:
            assert g == 0
        elif w < 1e-300:  # denormal inputs carry few significant bits
            assert abs(g - w) <= 1e-3 * w
        else:
            assert abs(g - w) <= 4e-16 * w, (g, w)


@SETTINGS
@given(adversarial_arrays())
def test_avg_cosine_is_scale_invariant_and_exact(arr):
    X, X64 = arr
    n, d = X.shape
    if d == 0:
        with pytest.raises(DimensionError):
            isofast.avg_cosine(X)
        return
    if n == 0:
        with pytest.raises(EmptyInputError):
            isofast.avg_cosine(X)
        return
    want = mp_avg_cosine(X64)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = isofast.avg_cosine(X)
    if math.isnan(want):
        assert math.isnan(got)
        assert any(issubclass(x.category, UndefinedStatisticWarning) for x in w)
        return
    tol = 1e-12 if not np.any((np.abs(X64) > 0) & (np.abs(X64) < 1e-307)) else 1e-3
    assert abs(got - want) <= tol, (got, want)
    # the one-pass state counts as zero-norm exactly the rows of zeros
    m = isofast.Moments(d).update(X)._state
    assert m.n_zero_norm == int(np.sum(~np.any(X64 != 0, axis=1)))
    assert abs(m.avg_cosine - want) <= tol


@SETTINGS
@given(adversarial_arrays(min_rows=2, min_cols=1))
def test_analyze_matches_reference_or_refuses(arr):
    X, X64 = arr
    n, d = X.shape
    try:
        rep = isofast.analyze(X, partition=False)
    except IsofastError as e:
        assert isinstance(e, (ValueError, ArithmeticError, TypeError)), e
        return
    # accepted: the scale-invariant numbers must match a float64 reference
    # computed on a power-of-two rescaling of X (exact, avoids overflow)
    big = np.max(np.abs(X64))
    Y = X64 * 2.0 ** (-math.frexp(big)[1]) if big > 0 else X64
    assert np.all(np.isfinite(rep.eigenvalues))
    if d >= 2 and np.var(Y, axis=0).sum() > 0:
        ref = spectral(Y)
        if ref["eigenvalues"][0] > 0 and np.all(np.isfinite(ref["eigenvalues"])):
            assert abs(rep.pc1_share - ref["pc1_share"]) <= 1e-6
    assert abs(rep.avg_cosine - mp_avg_cosine(X64)) <= 1e-9 or (
        math.isnan(rep.avg_cosine) and any("NaN" in s for s in rep.notes)
    )


@SETTINGS
@given(adversarial_arrays(min_rows=1, min_cols=1, extremes=False))
def test_moderate_inputs_all_statistics_match_float64(arr):
    X, X64 = arr
    n, d = X.shape
    rtol = 1e-4 if X.dtype == np.float32 else 1e-9
    c = np.linspace(-1, 1, d)
    ref_lz = float(np.logaddexp.reduce(X64 @ c))
    assert abs(isofast.log_partition(X, c) - ref_lz) <= rtol * max(1, abs(ref_lz))
    if n >= 2 and d >= 2:
        rep = isofast.analyze(X)
        ref = spectral(X64)
        np.testing.assert_allclose(rep.eigenvalues, ref["eigenvalues"], rtol=rtol, atol=1e-9 * ref["eigenvalues"][0])
        assert abs(rep.avg_cosine_centered - avg_cosine_dense(X64, center=True)) <= max(rtol, 1e-9)


# ------------------------------------------------------------------ masks
@pytest.mark.parametrize("entry", ["avg_cosine", "analyze", "row_norms", "Moments.update", "kmeans"])
def test_masked_values_are_refused_not_read(entry):
    X = np.random.default_rng(0).normal(size=(20, 4))
    m = np.zeros_like(X, dtype=bool)
    m[7, 2] = True
    Xm = np.ma.masked_array(X, mask=m)
    f = {
        "avg_cosine": isofast.avg_cosine,
        "analyze": isofast.analyze,
        "row_norms": isofast.row_norms,
        "Moments.update": lambda a: isofast.Moments(4).update(a),
        "kmeans": lambda a: isofast.kmeans(a, 2),
    }[entry]
    with pytest.raises(InputError, match=r"masked .*\[7, 2\]"):
        f(Xm)
    # nothing masked: read as the plain array
    Xn = np.ma.masked_array(X, mask=np.zeros_like(m))
    if entry == "avg_cosine":
        assert f(Xn) == f(X)


def test_masked_chunks_are_refused():
    X = np.ma.masked_array(np.ones((4, 2)), mask=[[0, 0], [0, 0], [1, 0], [0, 0]])
    with pytest.raises(InputError, match="masked"):
        isofast.avg_cosine([np.ones((3, 2)), X])


# ------------------------------------------------------------------ cosines
@pytest.mark.parametrize("scale", [1e-320, 1e-300, 1e-170, 1e160, 1e200, 1e300])
def test_extreme_rows_are_not_zero_rows(scale):
    X = np.random.default_rng(1).normal(size=(40, 6))
    Y = X.copy()
    Y[::3] *= scale
    ref = avg_cosine_dense(X)
    tol = 1e-12 if scale > 1e-310 else 1e-2
    assert abs(isofast.avg_cosine(Y) - ref) <= tol
    m = isofast.Moments(6).update(Y)._state
    assert m.n_zero_norm == 0
    ss = isofast.self_similarity(Y, np.arange(40) % 2)
    ref_ss = np.mean([avg_cosine_dense(X[np.arange(40) % 2 == g]) for g in (0, 1)])
    assert abs(ss.value - ref_ss) <= tol and ss.n_zero_norm == 0


@pytest.mark.parametrize("n", [2, 3, 1000, 20000])
def test_identical_rows_centered_cosine_is_nan_with_reason(n):
    row = np.random.default_rng(2).normal(size=(1, 7)) * 1e3 + 0.1
    X = np.repeat(row, n, axis=0)
    with pytest.warns(UndefinedStatisticWarning, match="equal the mean"):
        assert math.isnan(isofast.avg_cosine(X, center=True))
    with pytest.warns(UndefinedStatisticWarning):
        assert math.isnan(isofast.avg_cosine(np.array_split(X, 3), center=True))
    # not 0.9999999999999997: every row sits at the mean
    u, nz, nzero = isofast._core.unit_sum(X, None, isofast._core.column_mean(X))
    assert nz == 0 and nzero == n


def test_centered_cosine_still_sees_small_real_differences():
    X = np.random.default_rng(3).normal(size=(200, 5)) * 1e-6 + 1e3
    ref = avg_cosine_dense(X, center=True)
    assert abs(isofast.avg_cosine(X, center=True) - ref) <= 1e-6


# ------------------------------------------------------------------ log_partition
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_log_partition_refuses_nonfinite_contexts(bad):
    X = np.ones((5, 3))
    c = np.array([[0.1, 0.2, 0.3], [0.0, bad, 1.0]])
    with pytest.raises(InputError, match="context vector 1.*component 1"):
        isofast.log_partition(X, c)
    with pytest.raises(InputError):
        isofast._core.log_partition(X, np.ascontiguousarray(c.T))


def test_log_partition_overflow_is_an_error_not_inf():
    X = np.array([[1e300, 1.0], [1.0, 2.0]])
    with pytest.raises(NumericalError, match="overflows"):
        isofast.log_partition(X, np.array([1e10, 0.0]))


def test_overflowing_variance_is_not_identical_rows():
    X = np.random.default_rng(4).normal(size=(30, 4)) * 1e200
    with pytest.raises(NumericalError, match="overflows"):
        isofast.analyze(X)


# ------------------------------------------------------------------ serializers
@pytest.mark.parametrize("prec", [12, 15, 20])
def test_llmtime_high_precision_refused_not_wrapped(prec):
    with pytest.raises(InputError, match="int64"):
        LLMTimeSerializer(prec=prec)


def test_llmtime_near_float_max_is_refused():
    s = LLMTimeSerializer.preset("llama")
    with pytest.raises(NumericalError, match="overflow"):
        s.encode(np.array([1.7e308, -1.7e308, 1.0]))


def test_llmtime_encodes_big_values_exactly():
    s = LLMTimeSerializer.preset("llama", prec=3)
    x = np.array([1e300, 2e300, 3e300, 4e300])
    enc = s.encode(x)
    dec = s.decode(enc.text, enc).values
    assert np.all(np.isfinite(dec))
    # |decode(encode(x)) − x| ≤ ½·10^−prec·q (module docstring)
    assert np.all(np.abs(dec - x) <= 0.5e-3 * enc.scaler.scale * (1 + 1e-12))
    assert np.all(enc.ints >= 0) and np.all(enc.ints < 2**63 - 1)


@pytest.mark.parametrize("steps", [0, 1, 3])
def test_llmtime_decode_steps(steps):
    s = LLMTimeSerializer.preset("llama")
    enc = s.encode(np.arange(1.0, 6.0))
    assert s.decode(enc.text, enc, steps=steps).values.size == steps


@pytest.mark.parametrize("steps", [-1, 2.5, True])
def test_llmtime_decode_bad_steps(steps):
    s = LLMTimeSerializer.preset("llama")
    enc = s.encode(np.arange(1.0, 6.0))
    with pytest.raises((InputError, TypeError), match="steps"):
        s.decode(enc.text, enc, steps=steps)


def test_llmtime_decode_too_many_digits_is_malformed_not_a_crash():
    s = LLMTimeSerializer.preset("llama")
    enc = s.encode(np.arange(1.0, 4.0))
    dec = s.decode("1" * 40 + "," + enc.text, enc)
    assert dec.n_malformed == 1 and dec.values.size == 3


@pytest.mark.parametrize("x", [[1e308, 1.7e308, -1.5e308], [1e300] * 5, [5e-324, 1e-320, 0.0]])
def test_chronos_huge_values_are_not_nan(x):
    s = ChronosSerializer()
    enc = s.encode(np.array(x))
    assert np.isfinite(enc.scale) and enc.scale > 0
    assert np.all(enc.ids[:-1] >= s.first_value_id)
    dec = s.decode(enc.ids, enc).values
    assert np.all(np.isfinite(dec))
    # mean-scaling: nearest centre of x/s
    z = np.array(x) / enc.scale
    c64 = s.centers.astype(np.float64)
    want = c64[np.argmin(np.abs(z[:, None] - c64[None, :]), axis=1)] * enc.scale
    np.testing.assert_allclose(dec, want, rtol=1e-6)


@pytest.mark.parametrize("bad", [[5000], [-1], [4096], [3, 4, 99999]])
def test_chronos_decode_refuses_ids_outside_the_vocabulary(bad):
    with pytest.raises(InputError, match="outside the vocabulary"):
        ChronosSerializer().decode(bad, 1.0)


@pytest.mark.parametrize("scale", [0.0, -1.0, np.nan, np.inf])
def test_chronos_bad_scale(scale):
    with pytest.raises(InputError, match="scale"):
        ChronosSerializer().decode([5, 6], scale)


@pytest.mark.parametrize("x", [[1.5e308, -1.5e308, 1e308, 0.0] * 5, [1e300, 2e300] * 10])
def test_patch_huge_values_round_trip(x):
    s = PatchSerializer()
    x = np.array(x)
    enc = s.encode(x)
    assert np.all(np.isfinite(enc.patches)) and np.isfinite(enc.mean) and np.isfinite(enc.std)
    np.testing.assert_allclose(s.decode(enc.patches, enc), x, rtol=1e-12, atol=1e-12 * np.abs(x).max())
    # same z as the direct formula on x / max|x| (exact power-of-two-free check)
    c = np.abs(x).max()
    y = x / c
    z = (y - y.mean()) / np.hypot(np.sqrt(y.var()), np.sqrt(s.eps) / c)
    np.testing.assert_allclose(enc.patches[0, : min(16, x.size)], z[:16], rtol=1e-12, atol=1e-12)


def test_patch_values_at_the_float64_maximum_decode_to_it():
    """Found by hypothesis (test_serializers_never_return_nan_for_finite_input):
    ±float64 max came back as ±inf, a few ulps of z·σ rounding past the
    maximum. Within that rounding the decoded value is ±max."""
    top = np.finfo(np.float64).max
    x = np.array([0.0] * 9 + [top, -top])
    s = PatchSerializer()
    out = s.decode(s.encode(x).patches, s.encode(x))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, x, rtol=1e-13, atol=1e-13 * top)


def test_patch_decode_overflow_is_refused_by_name():
    """A patch value (a model's output) whose z·σ + μ is beyond float64 is a
    NumericalError, not ±inf."""
    s = PatchSerializer()
    p = np.zeros((1, 16))
    p[0, 3] = 1e10
    with pytest.raises(NumericalError, match="decoded value 3 .* overflows float64"):
        s.decode(p, 0.0, 1e300, length=16)


def test_patch_decode_negative_length_refused():
    s = PatchSerializer()
    enc = s.encode(np.arange(40.0))
    with pytest.raises(InputError, match="length"):
        s.decode(enc.patches, enc.mean, enc.std, length=-3)
    with pytest.raises(InputError, match="empty"):
        s.decode(np.zeros((0, 16)))


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=2, max_size=30))
@settings(max_examples=80, deadline=None)
def test_serializers_never_return_nan_for_finite_input(xs):
    x = np.array(xs)
    for ser in (ChronosSerializer(), PatchSerializer()):
        enc = ser.encode(x)
        try:
            out = ser.decode(enc.patches, enc) if isinstance(ser, PatchSerializer) else ser.decode(enc.ids, enc).values
        except NumericalError:
            continue  # a decoded centre × scale beyond float64, refused by name
        assert np.all(np.isfinite(out)), (ser, x)
    s = LLMTimeSerializer.preset("llama")
    try:
        enc = s.encode(x)
    except IsofastError:
        return  # refused with a reason (range overflow / beyond max_val)
    except ValueError as e:
        assert "max_val" in str(e)
        return
    try:
        dec = s.decode(enc.text, enc).values
    except NumericalError:
        return  # x within ½ bin of the float64 maximum: the decoded value is not representable
    assert np.all(np.isfinite(dec))
