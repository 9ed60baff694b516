"""The second-pass state at the Python boundary: pickling (checksummed core
bytes, like Moments), merging of unpickled partial states, and refusal of
damaged or truncated bytes with the project's error class."""

import pickle

import numpy as np
import pytest

from isofast import _core
from isofast.errors import InputError


def _setup(d=6, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(500, d)) * 2.0 + 1.0
    m = _core.Moments(d)
    m.update(X)
    ev_c, U, _, W = m.directions()
    return X, np.asarray(m.mean), W, U


def _pass(mean, W, U, f64, rows):
    sp = _core.SecondPass(mean, W, U, f64)
    sp.update(rows)
    return sp


def _same(a, b):
    ra, rb = a.results(), b.results()
    for f in (
        "log_z_raw_pos",
        "log_z_raw_neg",
        "log_z_centered_pos",
        "log_z_centered_neg",
        "unit_sum_centered",
    ):
        np.testing.assert_array_equal(getattr(ra, f), getattr(rb, f), err_msg=f)
    for f in (
        "log_partition_isotropy",
        "log_partition_isotropy_centered",
        "avg_cosine_centered",
        "n_zero_norm_centered",
        "n_nonzero_centered",
    ):
        x, y = getattr(ra, f), getattr(rb, f)
        assert x == y or (np.isnan(x) and np.isnan(y)), f
    assert a.n == b.n


@pytest.mark.parametrize("f64", [True, False])
def test_second_pass_pickle_round_trip(f64):
    X, mean, W, U = _setup()
    sp = _pass(mean, W, U, f64, X[:200])
    back = pickle.loads(pickle.dumps(sp))
    assert back.dim == sp.dim and not back.released
    _same(back, sp)
    # the restored state keeps streaming exactly like the original
    sp.update(X[200:])
    back.update(X[200:])
    _same(back, sp)


@pytest.mark.parametrize("f64", [True, False])
def test_merge_of_unpickled_partials_equals_one_shot(f64):
    X, mean, W, U = _setup()
    parts = [_pass(mean, W, U, f64, X[a : a + 100]) for a in range(0, 500, 100)]
    ref = parts[0].copy()
    for p in parts[1:]:
        ref.merge(p)
    for p in parts:
        p.release()  # what a Dask block ships: no directions
    restored = [pickle.loads(pickle.dumps(p)) for p in parts]
    assert all(p.released for p in restored)
    acc = restored[0].copy()
    for p in restored[1:]:
        acc.merge(p)
    _same(acc, ref)  # bitwise: pickling loses nothing
    one = _pass(mean, W, U, f64, X)
    r, o = acc.results(), one.results()
    assert r.log_partition_isotropy == pytest.approx(o.log_partition_isotropy, rel=1e-12, abs=1e-12)
    assert r.log_partition_isotropy_centered == pytest.approx(o.log_partition_isotropy_centered, rel=1e-12, abs=1e-12)
    assert r.avg_cosine_centered == pytest.approx(o.avg_cosine_centered, abs=1e-13)
    with pytest.raises(InputError, match="released"):
        acc.update(X[:3])


def test_released_state_pickles_small():
    X, mean, W, U = _setup(d=64)
    sp = _pass(mean, W, U, True, X[:10])
    full = len(pickle.dumps(sp))
    sp.release()
    small = len(pickle.dumps(sp))
    assert small < full / 10


def test_self_merge_doubles():
    X, mean, W, U = _setup()
    sp = _pass(mean, W, U, True, X)
    ref = sp.copy()
    ref.merge(sp.copy())
    sp.merge(sp)  # no "Already borrowed"
    assert sp.n == 2 * len(X)
    _same(sp, ref)


def test_damaged_or_truncated_state_is_refused():
    X, mean, W, U = _setup()
    sp = _pass(mean, W, U, False, X[:50])
    s = sp.__getstate__()
    target = _core.SecondPass(*sp.__getnewargs__())
    rng = np.random.default_rng(0)
    for pos in list(rng.integers(0, len(s), 40)) + [0, 8, 12, len(s) - 1]:
        b = bytearray(s)
        b[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(InputError, match="corrupt SecondPass state"):
            target.__setstate__(bytes(b))
    for cut in (0, 5, 12, 40, len(s) // 2, len(s) - 1):
        with pytest.raises(InputError, match="corrupt SecondPass state"):
            target.__setstate__(s[:cut])
    with pytest.raises(InputError, match="corrupt SecondPass state"):
        target.__setstate__(s[12:])  # the core bytes without their checksum
    with pytest.raises(InputError, match="corrupt SecondPass state"):
        target.__setstate__(_core.Moments(6).__getstate__())  # another state's bytes
    target.__setstate__(s)  # the intact state still loads
    _same(target, sp)
