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


def _states(d):
    """A fresh state of every streaming kind, as (name, new state, update)."""
    rng = np.random.default_rng(3)
    W = np.linalg.qr(rng.normal(size=(d, d)))[0]
    centers = rng.normal(size=(3, d))
    return [
        ("Moments", lambda: _core.Moments(d), lambda s, x: s.update(x)),
        ("SecondPass", lambda: _core.SecondPass(np.zeros(d), W, W, False), lambda s, x: s.update(x)),
        ("ClusterFirstPass", lambda: _core.ClusterFirstPass(centers, np.zeros(d)), lambda s, x: s.update(x)),
    ]


@pytest.mark.parametrize("kind", [0, 1, 2])
def test_failed_update_says_what_the_state_holds(kind):
    """A NaN far into a long update: the tiles before it are already folded
    in, so the error (class and row kept) carries a note saying how many rows
    the state now holds; an error before any row is folded carries none and
    leaves the state as it was."""
    from isofast.errors import NonFiniteError

    d = 8
    name, new, update = _states(d)[kind]
    X = np.random.default_rng(4).normal(size=(300_000, d))
    X[250_000, 3] = np.nan
    s = new()
    with pytest.raises(NonFiniteError) as info:
        update(s, X)
    assert (info.value.row, info.value.col) == (250_000, 3)
    assert 0 < s.n < 250_000  # whole tiles before the failing one
    notes = getattr(info.value, "__notes__", [])
    assert len(notes) == 1 and f"{name} state already holds {s.n} row(s)" in notes[0]
    t = new()
    before = t.__getstate__()
    with pytest.raises(NonFiniteError) as info:
        update(t, X[249_990:250_010])  # one tile: refused before anything is folded
    assert not getattr(info.value, "__notes__", None)
    assert t.n == 0 and t.__getstate__() == before


def test_failed_update_note_counts_every_chunk_of_the_call():
    """isofast.Moments.update over a source of several chunks: the note
    counts the rows of the earlier chunks too."""
    import isofast
    from isofast.errors import NonFiniteError

    rng = np.random.default_rng(5)
    good = rng.normal(size=(1000, 6))
    bad = rng.normal(size=(1000, 6))
    bad[0, 1] = np.nan  # refused in its first tile: only the first chunk is in
    m = isofast.Moments(6)
    with pytest.raises(NonFiniteError) as info:
        m.update(iter([good, bad]))
    assert m.n == 1000
    assert info.value.__notes__ == [
        "the Moments state already holds 1000 row(s) of this update (those before the failing tile): discard it, "
        "or update a new state per chunk and merge() the good ones"
    ]
