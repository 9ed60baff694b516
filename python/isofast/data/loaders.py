"""Load the registered real datasets from the packages that ship them.

No network access, ever: statsmodels and pmdarima keep these series in their
wheels, and ``vega_datasets.local_data`` reads the CSV files bundled with
vega_datasets (its URL loaders are never used). pmdarima's ``load_gasoline``,
which fetches over HTTP, is not registered.

NaN policy
----------
``load(name, nan=...)`` with ``nan`` one of

* ``"keep"`` (default): return the series as shipped, NaN included, so that
  nothing is invented silently (``co2`` has 59 NaN, ``ausbeer`` one trailing
  NaN; the others none);
* ``"interpolate"``: linear in the index, edges filled with the nearest value;
* ``"drop"``: remove missing points and their timestamps (uneven spacing);
* ``"error"``: ``ValueError`` naming the dataset and the first missing index.

The scalers in :mod:`isofast.data.windows` are NaN-aware, so ``"keep"`` flows
through windowing; models that cannot take NaN need one of the other policies.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any
from collections.abc import Callable

import numpy as np

from .registry import REGISTRY, DatasetInfo, info, list_datasets
from .series import Series, apply_nan_policy

__all__ = ["load", "load_all", "list_datasets", "require"]

_INSTALL_HINT = 'pip install "isofast[data]"'


def require(module: str, *, what: str, extra: str = "data") -> Any:
    """Import ``module`` or raise ``ImportError`` telling how to install it.

    The top-level package is imported first so that a package blocked or
    missing at the top is reported even when a submodule was cached.
    """
    top = module.split(".", 1)[0]
    try:
        importlib.import_module(top)
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f'{what} needs the optional package {top!r}, which is not installed: pip install "isofast[{extra}]"'
        ) from exc


# ------------------------------------------------------------------ time helpers


def _months(start: str, n: int, step: int = 1) -> np.ndarray:
    return (np.datetime64(start, "M") + step * np.arange(n)).astype("datetime64[s]")


def _years(start: int, n: int) -> np.ndarray:
    return (np.datetime64(str(start), "Y") + np.arange(n)).astype("datetime64[s]")


def _years_from(values: np.ndarray) -> np.ndarray:
    return (np.asarray(values, dtype=np.int64) - 1970).astype("datetime64[Y]").astype("datetime64[s]")


def _to_datetime64(col: Any) -> np.ndarray:
    import pandas as pd

    return pd.to_datetime(col).to_numpy().astype("datetime64[s]")


# ------------------------------------------------------------------ per-source loaders
# Each returns (values, timestamps or None, extra meta) for the default or
# requested column.


def _statsmodels_frame(name: str):
    require("statsmodels.datasets", what=f"dataset {name!r}")
    mod = importlib.import_module(f"statsmodels.datasets.{name}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas deprecation chatter inside statsmodels
        return mod.load_pandas().data


def _load_co2(e: DatasetInfo, column: str | None):
    df = _statsmodels_frame("co2")
    return df["co2"].to_numpy(np.float64), _to_datetime64(df.index), {}


def _load_sm_sunspots(e: DatasetInfo, column: str | None):
    df = _statsmodels_frame("sunspots")
    return df["SUNACTIVITY"].to_numpy(np.float64), _years_from(df["YEAR"]), {}


def _load_elnino(e: DatasetInfo, column: str | None):
    df = _statsmodels_frame("elnino")
    months = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    table = df[months].to_numpy(np.float64)
    first_year = int(df["YEAR"].iloc[0])
    # Row-major: year by year, Jan..Dec, i.e. chronological order.
    return table.ravel(), _months(f"{first_year}-01", table.size), {"layout": "61x12 flattened"}


def _load_macrodata(e: DatasetInfo, column: str | None):
    df = _statsmodels_frame("macrodata")
    col = column or e.column
    year = df["year"].to_numpy(np.int64)
    quarter = df["quarter"].to_numpy(np.int64)
    ts = ((year - 1970) * 12 + (quarter - 1) * 3).astype("datetime64[M]").astype("datetime64[s]")
    return df[col].to_numpy(np.float64), ts, {}


def _load_nile(e: DatasetInfo, column: str | None):
    df = _statsmodels_frame("nile")
    return df["volume"].to_numpy(np.float64), _years_from(df["year"]), {}


def _pmdarima(fn: str, name: str) -> np.ndarray:
    mod = require("pmdarima.datasets", what=f"dataset {name!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(getattr(mod, fn)(), dtype=np.float64)


def _pmd_loader(fn: str, stamps: Callable[[int], np.ndarray | None]):
    def load(e: DatasetInfo, column: str | None):
        v = _pmdarima(fn, e.name)
        return v, stamps(v.shape[0]), {}

    return load


def _load_msft(e: DatasetInfo, column: str | None):
    mod = require("pmdarima.datasets", what="dataset 'msft'")
    df = mod.load_msft()
    col = column or e.column
    return df[col].to_numpy(np.float64), _to_datetime64(df["Date"]), {}


def _vega_loader(attr: str, time_col: str = "date"):
    def load(e: DatasetInfo, column: str | None):
        vd = require("vega_datasets", what=f"dataset {e.name!r}")
        df = getattr(vd.local_data, attr)()  # bundled CSV, never the URL loader
        col = column or e.column
        return df[col].to_numpy(np.float64), _to_datetime64(df[time_col]), {}

    return load


_LOADERS: dict[str, Callable] = {
    "co2": _load_co2,
    "sunspots": _load_sm_sunspots,
    "elnino": _load_elnino,
    "macrodata": _load_macrodata,
    "nile": _load_nile,
    "airpassengers": _pmd_loader("load_airpassengers", lambda n: _months("1949-01", n)),
    "taylor": _pmd_loader(
        "load_taylor",
        lambda n: np.datetime64("2000-06-05T00:00", "s") + np.arange(n) * np.timedelta64(30, "m"),
    ),
    "wineind": _pmd_loader("load_wineind", lambda n: _months("1980-01", n)),
    "ausbeer": _pmd_loader("load_ausbeer", lambda n: _months("1956-01", n, 3)),
    "sunspots_monthly": _pmd_loader("load_sunspots", lambda n: _months("1749-01", n)),
    "woolyrnq": _pmd_loader("load_woolyrnq", lambda n: _months("1965-01", n, 3)),
    "heartrate": _pmd_loader("load_heartrate", lambda n: None),  # 0.5 s apart, no calendar
    "lynx": _pmd_loader("load_lynx", lambda n: _years(1821, n)),
    "austres": _pmd_loader("load_austres", lambda n: _months("1971-01", n, 3)),
    "msft": _load_msft,
    "seattle_temps": _vega_loader("seattle_temps"),
    "sf_temps": _vega_loader("sf_temps"),
    "seattle_weather": _vega_loader("seattle_weather"),
}

assert set(_LOADERS) == set(REGISTRY), "registry and loaders out of sync"


def load(name: str, *, nan: str = "keep", column: str | None = None) -> Series:
    """Load a registered dataset as a :class:`~isofast.data.series.Series`.

    Parameters
    ----------
    name:
        A registry name (:func:`list_datasets`). Unknown names raise
        ``UnknownDatasetError`` (a ``KeyError`` and ``ValueError``) listing them.
    nan:
        ``"keep"`` (default), ``"interpolate"``, ``"drop"`` or ``"error"``;
        see the module docstring.
    column:
        For multivariate sources (``macrodata``, ``msft``, ``seattle_weather``),
        the column to return instead of the registry default.

    Raises ``ImportError`` naming ``pip install "isofast[data]"`` when the
    package that ships the data is missing.
    """
    e = info(name)
    if column is not None:
        if not e.columns:
            raise ValueError(f"dataset {name!r} has a single series; column= is not accepted")
        if column not in e.columns:
            raise ValueError(f"dataset {name!r} has no column {column!r}; columns: {', '.join(e.columns)}")
    values, stamps, extra = _LOADERS[name](e, column)
    n_missing_raw = int(np.isnan(values).sum())
    values, stamps = apply_nan_policy(values, stamps, nan, where=f"dataset {name!r}")
    meta = {
        "source": e.source,
        "licence": e.licence,
        "origin": e.origin,
        "description": e.description,
        "column": column or e.column,
        "unit": e.unit if column is None or column == e.column else "",
        "nan_policy": nan,
        "n_missing_raw": n_missing_raw,
        **extra,
    }
    series_name = name if column is None or column == e.column else f"{name}:{column}"
    return Series(
        name=series_name,
        values=values,
        timestamps=stamps,
        frequency=e.frequency,
        domain=e.domain,
        meta=meta,
    )


def load_all(*, nan: str = "keep", domain: str | None = None) -> dict[str, Series]:
    """Every registered dataset (optionally one domain), by name."""
    return {e.name: load(e.name, nan=nan) for e in list_datasets(domain=domain)}
