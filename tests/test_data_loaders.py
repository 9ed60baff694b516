"""Real datasets shipped inside wheels: documented lengths, NaN policies, errors.

CI installs the ``data`` extra, so nothing here is skipped there; locally a
missing package skips its datasets (never in CI, where ``CI`` is set).
"""

import os
import sys

import numpy as np
import pytest

from isofast.data import REGISTRY, Series, UnknownDatasetError, info, list_datasets, load

_MODULES = {"statsmodels": "statsmodels", "pmdarima": "pmdarima", "vega_datasets": "vega_datasets"}


def _need(source: str) -> None:
    if os.environ.get("CI"):
        return  # in CI a missing package must fail, not skip
    pytest.importorskip(_MODULES[source])


@pytest.mark.parametrize("name", list(REGISTRY))
def test_documented_length_and_shape(name):
    e = info(name)
    _need(e.source)
    s = load(name)
    assert isinstance(s, Series)
    assert s.values.dtype == np.float64 and s.values.ndim == 1
    assert len(s) == e.length, (name, len(s), e.length)
    assert s.n_missing == e.n_missing
    assert s.frequency == e.frequency and s.domain == e.domain
    assert s.meta["source"] == e.source and s.meta["licence"]
    if s.timestamps is not None:
        assert s.timestamps.dtype.kind == "M" and s.timestamps.shape == s.values.shape
        assert np.all(np.diff(s.timestamps) > np.timedelta64(0, "s"))
    d = s.to_dict()
    assert d["length"] == e.length and len(d["values"]) == e.length


def test_known_values_and_calendars():
    _need("statsmodels")
    co2 = load("co2")
    assert co2.timestamps[0] == np.datetime64("1958-03-29")
    assert np.all(np.diff(co2.timestamps) == np.timedelta64(7, "D"))
    assert co2.values[0] == pytest.approx(316.1)
    el = load("elnino")
    assert el.timestamps[0] == np.datetime64("1950-01-01") and el.timestamps[-1] == np.datetime64("2010-12-01")
    mac = load("macrodata")
    assert mac.timestamps[2] == np.datetime64("1959-07-01")  # 1959Q3
    _need("pmdarima")
    tay = load("taylor")
    assert tay.timestamps[-1] == np.datetime64("2000-08-27T23:30")  # Sunday 27 Aug 2000, 23:30
    assert load("wineind").timestamps[-1] == np.datetime64("1994-08-01")
    assert load("airpassengers").values[:3].tolist() == [112.0, 118.0, 132.0]
    assert load("heartrate").timestamps is None
    _need("vega_datasets")
    st = load("seattle_temps")
    assert st.timestamps[0] == np.datetime64("2010-01-01T00:00")


def test_nan_policies_on_co2():
    _need("statsmodels")
    raw = load("co2")  # default: keep
    assert raw.n_missing == 59 and raw.meta["nan_policy"] == "keep"
    interp = load("co2", nan="interpolate")
    assert len(interp) == 2284 and interp.n_missing == 0
    obs = ~np.isnan(raw.values)
    np.testing.assert_array_equal(interp.values[obs], raw.values[obs])
    # a one-point gap is filled with the midpoint of its neighbours (linear)
    single = [i for i in np.flatnonzero(~obs) if 0 < i < len(raw) - 1 and obs[i - 1] and obs[i + 1]]
    assert single
    for i in single:
        assert interp.values[i] == pytest.approx((raw.values[i - 1] + raw.values[i + 1]) / 2)
    dropped = load("co2", nan="drop")
    assert len(dropped) == 2284 - 59 and dropped.n_missing == 0
    assert len(dropped.timestamps) == len(dropped)
    with pytest.raises(ValueError, match=r"co2.*59 missing"):
        load("co2", nan="error")
    with pytest.raises(ValueError, match="nan must be one of"):
        load("co2", nan="zero")


def test_columns():
    _need("statsmodels")
    u = load("macrodata", column="unemp")
    assert u.name == "macrodata:unemp" and u.values[0] == pytest.approx(5.8)
    with pytest.raises(ValueError, match="realgdp"):  # lists the columns
        load("macrodata", column="gdp")
    with pytest.raises(ValueError, match="single series"):
        load("co2", column="co2")


def test_unknown_name_lists_known_names():
    with pytest.raises(KeyError) as ei:
        load("co3")
    msg = str(ei.value)
    assert "co3" in msg and "co2" in msg and "seattle_temps" in msg
    assert isinstance(ei.value, ValueError) and isinstance(ei.value, UnknownDatasetError)
    with pytest.raises(TypeError):
        load(3)


@pytest.mark.parametrize(
    "name, blocked", [("airpassengers", "pmdarima"), ("co2", "statsmodels"), ("seattle_temps", "vega_datasets")]
)
def test_missing_optional_package_says_how_to_install(monkeypatch, name, blocked):
    # None in sys.modules makes `import <blocked>` raise ImportError, as if the
    # package were not installed (even when it was imported before).
    monkeypatch.setitem(sys.modules, blocked, None)
    with pytest.raises(ImportError) as ei:
        load(name)
    assert 'pip install "isofast[data]"' in str(ei.value)
    assert blocked in str(ei.value)


def test_registry_listing():
    names = [e.name for e in list_datasets()]
    assert names == list(REGISTRY)
    for must in (
        "co2",
        "sunspots",
        "elnino",
        "macrodata",
        "airpassengers",
        "taylor",
        "wineind",
        "ausbeer",
        "sunspots_monthly",
        "woolyrnq",
        "heartrate",
        "seattle_temps",
    ):
        assert must in names
    assert {e.name for e in list_datasets(domain="energy")} == {"taylor"}
    assert all(e.source == "pmdarima" for e in list_datasets(source="pmdarima"))
    d = info("co2").to_dict()
    assert d["length"] == 2284 and d["n_missing"] == 59 and d["frequency"] == "W-SAT"
