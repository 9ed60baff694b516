"""Windowing, time-ordered splits and per-instance scalers."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isofast.data import (
    MeanScaler,
    MinMaxScaler,
    Series,
    StandardScaler,
    Windows,
    make_windows,
    train_test_split,
)


def test_first_window_is_the_study_convention():
    X = np.arange(3 * 1024, dtype=float).reshape(3, 1024)
    w = make_windows(X, 500, 64, mode="first")
    assert isinstance(w, Windows) and len(w) == 3
    np.testing.assert_array_equal(w.context, X[:, :500])  # input = x[:, :500]
    np.testing.assert_array_equal(w.target, X[:, 500:564])  # target = x[:, 500:564]
    assert w.start.tolist() == [0, 0, 0] and w.series_id.tolist() == [0, 1, 2]
    assert w.context.dtype == np.float64 and w.context_len == 500 and w.horizon == 64


def test_last_window_ends_at_the_series_end():
    a, b = np.arange(50.0), np.arange(100.0, 180.0)
    w = make_windows([a, Series("b", b)], 10, 5, mode="last")
    np.testing.assert_array_equal(w.target[0], a[-5:])
    np.testing.assert_array_equal(w.target[1], b[-5:])
    assert w.start.tolist() == [35, 65]


def test_sliding_default_stride_is_horizon_and_n_subsets():
    x = np.arange(30.0)
    w = make_windows(x, 6, 4, mode="sliding")
    assert w.start.tolist() == [0, 4, 8, 12, 16, 20]
    w1 = make_windows(x, 6, 4, mode="sliding", stride=1)
    assert len(w1) == 30 - 10 + 1
    sub = make_windows(x, 6, 4, mode="sliding", stride=1, n=5, seed=3)
    assert len(sub) == 5 and np.all(np.diff(sub.start) > 0)  # original order kept
    assert set(sub.start) <= set(w1.start)
    again = make_windows(x, 6, 4, mode="sliding", stride=1, n=5, seed=3)
    np.testing.assert_array_equal(sub.start, again.start)


def test_random_mode_is_seeded_and_needs_n():
    xs = [np.arange(40.0), np.arange(100.0, 200.0)]
    w = make_windows(xs, 8, 4, mode="random", n=200, seed=1)
    assert len(w) == 200 and set(w.series_id.tolist()) == {0, 1}
    w2 = make_windows(xs, 8, 4, mode="random", n=200, seed=1)
    np.testing.assert_array_equal(w.start, w2.start)
    assert not np.array_equal(w.start, make_windows(xs, 8, 4, mode="random", n=200, seed=2).start)
    for i in range(len(w)):
        s = xs[w.series_id[i]]
        np.testing.assert_array_equal(w.context[i], s[w.start[i] : w.start[i] + 8])
    # every feasible start of the short series is reachable, none beyond
    short = w.start[w.series_id == 0]
    assert short.min() >= 0 and short.max() <= 40 - 12
    with pytest.raises(ValueError, match="needs n"):
        make_windows(xs, 8, 4, mode="random")


def test_window_longer_than_series_gives_both_lengths():
    with pytest.raises(ValueError, match=r"564 points.*\(100 points\)"):
        make_windows(np.zeros(100), 500, 64)
    with pytest.raises(ValueError, match=r"series 1 \(20 points\)"):
        make_windows([np.zeros(100), np.zeros(20)], 20, 5)
    w = make_windows([np.zeros(100), np.zeros(20)], 20, 5, skip_short=True)
    assert w.series_id.tolist() == [0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        make_windows(np.zeros(10), 2, 1, mode="middle")
    with pytest.raises(ValueError):
        make_windows(np.zeros(10), 0, 1)
    with pytest.raises(TypeError):
        make_windows(np.zeros(10), 2.5, 1)
    with pytest.raises(ValueError):
        make_windows(np.zeros((2, 2, 2)), 1, 1)
    with pytest.raises(ValueError):
        make_windows([], 1, 1)


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 60), min_size=1, max_size=5),
    C=st.integers(1, 20),
    H=st.integers(0, 10),
    mode=st.sampled_from(["first", "last", "sliding", "random"]),
    stride=st.one_of(st.none(), st.integers(1, 7)),
    seed=st.integers(0, 1000),
)
def test_windows_are_exact_slices(lengths, C, H, mode, stride, seed):
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(n) for n in lengths]
    if all(n < C + H for n in lengths):
        with pytest.raises(ValueError):
            make_windows(xs, C, H, mode=mode, stride=stride, n=4, seed=seed, skip_short=True)
        return
    w = make_windows(xs, C, H, mode=mode, stride=stride, n=4 if mode == "random" else None, seed=seed, skip_short=True)
    assert w.context.shape == (len(w), C) and w.target.shape == (len(w), H)
    for i in range(len(w)):
        s, t = xs[w.series_id[i]], w.start[i]
        assert 0 <= t <= len(s) - C - H
        np.testing.assert_array_equal(w.context[i], s[t : t + C])
        np.testing.assert_array_equal(w.target[i], s[t + C : t + C + H])
    d = w.to_dict()
    assert d["n"] == len(w) and len(d["start"]) == len(w)


def test_train_test_split_keeps_time_order():
    x = np.arange(10.0)
    tr, te = train_test_split(x, 3)
    assert tr.tolist() == list(range(7)) and te.tolist() == [7.0, 8.0, 9.0]
    tr, te = train_test_split(x, horizon=2)
    assert te.tolist() == [8.0, 9.0]
    tr, te = train_test_split(x, 0.25)  # ceil(2.5) = 3
    assert len(te) == 3 and tr.max() < te.min()
    X = np.arange(20.0).reshape(2, 10)
    tr, te = train_test_split(X, 4)
    assert tr.shape == (2, 6) and te.shape == (2, 4)
    s = Series("s", np.arange(5.0), np.arange("2024-01-01", "2024-01-06", dtype="datetime64[D]"))
    tr, te = train_test_split(s, 2)
    assert isinstance(tr, Series) and te.timestamps[0] == np.datetime64("2024-01-04")
    assert tr.timestamps.max() < te.timestamps.min()
    for bad in (0, 10, 1.5, -1):
        with pytest.raises(ValueError):
            train_test_split(x, bad)
    with pytest.raises(ValueError, match="exactly one"):
        train_test_split(x, 2, horizon=2)


def test_mean_scaler_is_chronos():
    ctx = np.array([[1.0, -3.0, np.nan, 2.0], [0.0, 0.0, 0.0, 0.0], [np.nan] * 4])
    sc = MeanScaler().fit(ctx)
    np.testing.assert_allclose(sc.scale.ravel(), [2.0, 1.0, 1.0])  # nanmean|x|, or 1
    np.testing.assert_allclose(sc.loc.ravel(), 0.0)
    tgt = np.array([[4.0], [5.0], [6.0]])
    np.testing.assert_allclose(sc.transform(tgt), [[2.0], [5.0], [6.0]])


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 5),
    C=st.integers(2, 30),
    seed=st.integers(0, 10_000),
    kind=st.sampled_from([MeanScaler, StandardScaler, MinMaxScaler]),
)
def test_scalers_round_trip_and_use_context_only(n, C, seed, kind):
    rng = np.random.default_rng(seed)
    ctx = rng.normal(5, 3, size=(n, C))
    tgt = rng.normal(5, 3, size=(n, 7))
    sc = kind().fit(ctx)
    np.testing.assert_allclose(sc.inverse_transform(sc.transform(tgt)), tgt, rtol=1e-12, atol=1e-9)
    # fitted on the context only: changing the target changes nothing
    before = (sc.loc.copy(), sc.scale.copy())
    sc.transform(tgt * 100)
    np.testing.assert_array_equal(sc.loc, before[0])
    z = sc.transform(ctx)
    if kind is StandardScaler:
        np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-9)
        np.testing.assert_allclose(z.std(axis=1), ctx.std(axis=1) / (ctx.std(axis=1) + 1e-5), rtol=1e-9)
    if kind is MinMaxScaler:
        np.testing.assert_allclose(z.min(axis=1), 0, atol=1e-12)
        np.testing.assert_allclose(z.max(axis=1), 1, atol=1e-12)
    one = kind().fit(ctx[0])
    assert one.transform(tgt[0]).shape == (7,)


def test_scaler_errors():
    with pytest.raises(ValueError, match="not fitted"):
        MeanScaler().transform(np.zeros(3))
    sc = StandardScaler().fit(np.ones((2, 3)))
    with pytest.raises(ValueError, match="fitted on 2"):
        sc.transform(np.ones((3, 3)))
    assert sc.to_dict()["kind"] == "StandardScaler"
