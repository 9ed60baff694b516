"""Issue 17, class 5: arguments that should not be accepted are refused at
the boundary, with a message naming the argument (never silently rounded,
clamped or replaced by a default)."""

from __future__ import annotations

import isofast
import numpy as np
import pytest
from _bad_input import assert_one_line_error, cli
from isofast.errors import ArgumentTypeError, InputError, IsofastError
from isofast.serializers import PatchSerializer

X = np.random.default_rng(0).normal(size=(60, 5))


CALLS = {
    "all_but_the_top n_components": lambda v: isofast.all_but_the_top(X, v),
    "kmeans k": lambda v: isofast.kmeans(X, v),
    "kmeans n_init": lambda v: isofast.kmeans(X, 2, n_init=v),
    "kmeans max_iter": lambda v: isofast.kmeans(X, 2, max_iter=v),
    "kmeans seed": lambda v: isofast.kmeans(X, 2, seed=v),
    "log_partition_head topk": lambda v: isofast.log_partition_head(X, X[:3], topk=v),
    "silhouette sample_size": lambda v: isofast.silhouette(X, np.arange(60) % 2, sample_size=v),
    "n_threads": lambda v: isofast.analyze(X, n_threads=v),
    "patch decode length": lambda v: PatchSerializer().decode(np.zeros((3, 16)), 0.0, 1.0, length=v),
}
NAMES = {k: k.split()[-1] for k in CALLS}


@pytest.mark.parametrize("bad", [2.7, 2.0, True, "3", None])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_non_integers_are_refused_by_name(call, bad):
    if bad is None and call in ("patch decode length", "n_threads", "silhouette sample_size"):
        pytest.skip("None means 'default' here")
    with pytest.raises((TypeError, ValueError), match=NAMES[call]) as ei:
        CALLS[call](bad)
    assert isinstance(ei.value, IsofastError) or "must" in str(ei.value)


@pytest.mark.parametrize("call", sorted(CALLS))
def test_negative_integers_are_refused_by_name(call):
    with pytest.raises(ValueError, match=NAMES[call]):
        CALLS[call](-3)


def test_all_but_the_top_is_not_rounded():
    with pytest.raises(ArgumentTypeError, match="n_components"):
        isofast.all_but_the_top(X, 2.7)
    a = isofast.all_but_the_top(X, np.int64(2))
    b = isofast.all_but_the_top(X, 2)
    np.testing.assert_array_equal(a, b)


def test_block_rows_zero_is_refused_not_defaulted(tmp_path):
    pytest.importorskip("dask")
    from isofast.dask import from_source

    p = tmp_path / "x.npy"
    np.save(p, X)
    for bad in (0, -1, 2.5):
        with pytest.raises((InputError, ArgumentTypeError), match="block_rows"):
            from_source(p, block_rows=bad)
    assert from_source(p, block_rows=7).chunks[0][0] == 7


def test_cli_threads_not_an_int(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, X)
    assert_one_line_error(cli("analyze", p, "-q", "--threads", "2.5"), 2, "--threads")


@pytest.mark.parametrize("eps", [float("nan"), 0.0, 1.5, -1.0])
def test_eps_out_of_range_named(eps):
    with pytest.raises(ValueError, match="eps"):
        isofast.analyze(X, eps=eps)


@pytest.mark.parametrize(
    "bad, exc", [(-1, InputError), (0, InputError), (2.5, ArgumentTypeError), (True, ArgumentTypeError)]
)
def test_moments_dim_named(bad, exc):
    with pytest.raises(exc, match="dim"):
        isofast.Moments(bad)


def test_moments_self_merge_through_the_wrapper():
    m = isofast.Moments(5).update(X)
    m.merge(m)
    assert m.n == 120
