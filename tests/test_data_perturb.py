"""Perturbations: stated statistics, seeding, inputs never mutated, targets untouched."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isofast.data import (
    add_missing,
    add_noise,
    add_outliers,
    level_shift,
    make_windows,
    shorten_context,
)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    base = np.cumsum(rng.standard_normal((200, 500)), axis=1) + 50  # random walks
    return base


@pytest.mark.parametrize("a", [0.1, 0.5, 1.0])
def test_noise_std_is_a_times_std_of_inputs(batch, a):
    x0 = batch.copy()
    out = add_noise(batch, a, seed=1)
    np.testing.assert_array_equal(batch, x0)  # not mutated
    e = out - batch
    N = e.size
    target = a * np.std(batch, ddof=1)  # global std, as torch.std(inp) in the study
    # sampling error of a std from N normal draws: sd / sqrt(2 N); of the mean: sd / sqrt(N)
    assert abs(e.std(ddof=1) - target) < 5 * target / math.sqrt(2 * N)
    assert abs(e.mean()) < 5 * target / math.sqrt(N)
    np.testing.assert_array_equal(add_noise(batch, a, seed=1), out)
    assert not np.array_equal(add_noise(batch, a, seed=2), out)


def test_noise_per_series_and_windows_inputs_only(batch):
    out = add_noise(batch, 0.5, seed=3, per_series=True)
    e = out - batch
    ratio = e.std(axis=1, ddof=1) / (0.5 * batch.std(axis=1, ddof=1))
    # each row: 500 draws, relative sd of a std ~ 1/sqrt(1000) = 0.032
    assert np.all(np.abs(ratio - 1) < 5 / math.sqrt(2 * 500))
    w = make_windows(batch, 400, 64)
    wn = add_noise(w, 1.0, seed=0)
    np.testing.assert_array_equal(wn.target, w.target)  # inputs only
    assert not np.allclose(wn.context, w.context)
    assert wn.context is not w.context and np.array_equal(w.context, batch[:, :400])
    assert np.array_equal(add_noise(batch, 0.0), batch)
    with pytest.raises(ValueError):
        add_noise(batch, -0.1)


@settings(max_examples=80, deadline=None)
@given(C=st.integers(2, 600))
def test_shorten_keeps_last_two_thirds(C):
    keep = (2 * C) // 3  # floor(2/3 C) in exact integer arithmetic
    x = np.arange(3 * (C + 5), dtype=float).reshape(3, C + 5)
    w = make_windows(x, C, 5)
    s = shorten_context(w)
    assert s.context.shape == (3, keep)
    np.testing.assert_array_equal(s.context, w.context[:, C - keep :])
    np.testing.assert_array_equal(s.target, w.target)
    assert np.all(s.start == w.start + (C - keep))
    # still contiguous with the target
    np.testing.assert_array_equal(s.context[:, -1] + 1, s.target[:, 0])


def test_shorten_study_lengths():
    for C, keep in [(500, 333), (72, 48), (90, 60), (144, 96), (36, 24), (24, 16)]:
        assert shorten_context(np.zeros((1, C))).shape == (1, keep)
    with pytest.raises(ValueError):
        shorten_context(np.zeros((1, 1)), 0.5)
    with pytest.raises(ValueError):
        shorten_context(np.zeros((1, 10)), 1.5)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.37, 1.0])
def test_missing_rate_is_exact(batch, rate):
    x = batch.copy()
    x[0, :10] = np.nan  # already missing: not counted again
    x0 = x.copy()
    out = add_missing(x, rate, seed=4)
    np.testing.assert_array_equal(np.isnan(x), np.isnan(x0))  # not mutated
    m = (~np.isnan(x)).sum()
    new = np.isnan(out) & ~np.isnan(x)
    assert new.sum() == round(rate * m)
    np.testing.assert_array_equal(out[~np.isnan(out)], x[~np.isnan(out)])
    with pytest.raises(ValueError):
        add_missing(x, 1.2)


def test_missing_positions_uniform(batch):
    # positions are uniform: each column's share is rate within binomial error
    out = add_missing(batch, 0.2, seed=5)
    per_col = np.isnan(out).mean(axis=0)  # 200 draws per column
    sd = math.sqrt(0.2 * 0.8 / 200)
    assert np.abs(per_col - 0.2).max() < 5 * sd


def test_level_shift(batch):
    out = level_shift(batch, 300, 7.5)
    np.testing.assert_array_equal(out[:, :300], batch[:, :300])
    np.testing.assert_allclose(out[:, 300:] - batch[:, 300:], 7.5)
    out2 = level_shift(batch[0], -10, -1.0)
    np.testing.assert_allclose(out2[-10:] - batch[0, -10:], -1.0)
    np.testing.assert_array_equal(out2[:-10], batch[0, :-10])
    with pytest.raises(ValueError):
        level_shift(batch, 501, 1.0)
    with pytest.raises(TypeError):
        level_shift(batch, 1.5, 1.0)


def test_outliers(batch):
    out = add_outliers(batch, 0.01, scale=6.0, seed=7)
    diff = out - batch
    changed = diff != 0
    assert changed.sum() == round(0.01 * batch.size)
    sd = np.std(batch, ddof=1)
    np.testing.assert_allclose(np.abs(diff[changed]), 6.0 * sd, rtol=1e-9)
    signs = np.sign(diff[changed])
    assert 0.3 < (signs > 0).mean() < 0.7  # both signs, about half each
    np.testing.assert_array_equal(add_outliers(batch, 0.01, 6.0, seed=7), out)
    w = make_windows(batch, 400, 50)
    wo = add_outliers(w, 0.05, 3.0, seed=0)
    np.testing.assert_array_equal(wo.target, w.target)
