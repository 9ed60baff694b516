"""isofast.data.series.as_series_list: the one reader of "some series"
(capture, forecast, metrics, make_windows and the TSFM adapters call it)."""

from __future__ import annotations

import numpy as np
import pytest

from isofast.data.series import Series, as_named_series_list, as_series_list
from isofast.data.windows import make_windows
from isofast.errors import ArgumentTypeError, DimensionError, EmptyInputError


def _eq(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == np.float64 and g.ndim == 1
        np.testing.assert_array_equal(g, np.asarray(w, np.float64))


def test_one_1d_array_is_one_series():
    _eq(as_series_list(np.arange(5)), [np.arange(5.0)])
    _eq(as_series_list(np.arange(5, dtype=np.float32)), [np.arange(5.0)])
    _eq(as_series_list(np.array([True, False])), [[1.0, 0.0]])


def test_2d_array_is_one_series_per_row():
    a = np.arange(12.0).reshape(3, 4)
    _eq(as_series_list(a), list(a))
    items, names = as_named_series_list(a)
    assert names is None


def test_list_of_numbers_is_one_series():
    _eq(as_series_list([1, 2.5, 3]), [[1.0, 2.5, 3.0]])
    _eq(as_series_list((1.0, 2.0)), [[1.0, 2.0]])


def test_list_of_arrays_may_be_ragged():
    got = as_series_list([np.arange(3), [1.0, 2.0], (5,)])
    _eq(got, [np.arange(3.0), [1.0, 2.0], [5.0]])


def test_series_objects_are_named():
    a = Series("a", np.arange(3.0))
    b = Series("b", np.ones(2))
    items, names = as_named_series_list([a, b])
    _eq(items, [a.values, b.values])
    assert names == ["a", "b"]
    items, names = as_named_series_list(a)
    _eq(items, [a.values])
    assert names == ["a"]
    # mixed with plain arrays: the values, no names
    items, names = as_named_series_list([a, np.zeros(2)])
    _eq(items, [a.values, np.zeros(2)])
    assert names is None


def test_dict_and_dataframe_are_named():
    items, names = as_named_series_list({"x": [1, 2], 3: np.zeros(3)})
    _eq(items, [[1.0, 2.0], np.zeros(3)])
    assert names == ["x", "3"]
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4, 5, 6]})
    items, names = as_named_series_list(df)
    # one series per column (not per row of the frame)
    _eq(items, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert names == ["a", "b"]
    _eq(as_series_list(pd.Series([1.0, 2.0], name="s")), [[1.0, 2.0]])


def test_windows_give_their_context_rows():
    w = make_windows([np.arange(10.0), np.arange(20.0)], 4, 2)
    _eq(as_series_list(w), list(w.context))


def test_nan_is_kept_for_the_caller_to_handle():
    got = as_series_list([[1.0, np.nan, 3.0], [np.nan, 1.0]])
    assert np.isnan(got[0][1]) and np.isnan(got[1][0])
    # None in a list of numbers is a missing value
    got = as_series_list([1.0, None, 3.0])
    assert np.isnan(got[0][1])


def test_empty_is_refused_unless_allowed():
    for x in ([], (), {}, np.empty((0, 5))):
        with pytest.raises(EmptyInputError, match="no series given"):
            as_series_list(x)
        with pytest.raises(ValueError):  # EmptyInputError is a ValueError
            as_series_list(x)
    assert as_series_list([], allow_empty=True) == []
    with pytest.raises(EmptyInputError, match="no y_true given"):
        as_series_list([], name="y_true")


def test_wrong_dimensions_are_a_dimension_error():
    with pytest.raises(DimensionError, match=r"1-D or 2-D .*\(2, 2, 2\)"):
        as_series_list(np.zeros((2, 2, 2)))
    with pytest.raises(DimensionError, match=r"series 1 must be 1-D, got shape \(2, 2\)"):
        as_series_list([np.zeros(3), np.zeros((2, 2))])
    with pytest.raises(DimensionError, match="y_pred 0 must be 1-D"):
        as_series_list([np.float64(1.0) * np.ones(()), [1.0, 2.0]], name="y_pred")
    with pytest.raises(DimensionError):
        as_series_list([[1.0, [2.0, 3.0]]])
    with pytest.raises(ValueError):  # DimensionError is a ValueError
        as_series_list(np.zeros((1, 1, 1)))


def test_bad_dtype_or_type_is_an_argument_type_error():
    for bad in (["a", "b"], np.array(["1", "2"]), [np.array(["x"])], {"k": ["a"]}, np.array([1 + 2j])):
        with pytest.raises(ArgumentTypeError, match="numeric|float"):
            as_series_list(bad)
        with pytest.raises(TypeError):  # ArgumentTypeError is a TypeError
            as_series_list(bad)
    for bad in (3.0, "abc", b"x", None, object()):
        with pytest.raises(ArgumentTypeError, match="must be a 1-D/2-D array"):
            as_series_list(bad)


def test_the_callers_share_it():
    """capture, forecast, metrics and make_windows read the same inputs alike."""
    from isofast import metrics

    x = [np.arange(6.0), np.arange(8.0)]
    np.testing.assert_array_equal(metrics.mae(x, x), [0.0, 0.0])
    w = make_windows(x, 3, 1)
    assert w.context.shape == (2, 3)
    with pytest.raises(DimensionError):
        metrics.mae(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))
    with pytest.raises(DimensionError):
        make_windows(np.zeros((2, 2, 2)), 1, 1)
