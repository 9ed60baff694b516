"""Registry of real datasets that ship inside installed wheels (never downloaded).

Every entry names its source package, the sampling frequency, the number of
points the loader returns (verified with statsmodels 0.15.0, pmdarima 2.1.1
and vega_datasets 0.9.0; the tests assert it), its domain and its licence.

Licences: the *package* licence is the one under which the file reaches you;
the upstream origin is given because several of these series come from R
packages or public agencies. Check upstream terms before redistributing.

Multivariate sources are reduced to one documented series:

* ``elnino`` (61 years x 12 months of Nino 1+2 sea-surface temperature) is
  flattened row-major into one monthly series, Jan 1950 .. Dec 2010 (732).
* ``macrodata`` (US quarterly macro data) uses ``realgdp``; other columns via
  ``load("macrodata", column=...)``.
* ``seattle_weather`` uses ``temp_max``; ``msft`` uses ``Close``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from isofast.errors import UnknownDatasetError  # defined there (one exception tree); re-exported

__all__ = ["DatasetInfo", "REGISTRY", "UnknownDatasetError", "list_datasets", "info", "unknown_dataset"]


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of one bundled dataset."""

    name: str
    domain: str
    frequency: str  # pandas-style alias: W-SAT, YS, MS, QS, 30min, h, D, B, 500ms
    length: int  # points returned by load(name) with nan="keep" (default column)
    source: str  # the package that ships the data
    licence: str
    description: str
    n_missing: int = 0  # NaN in the raw series
    column: str | None = None  # default column of a multivariate source
    columns: tuple[str, ...] = field(default_factory=tuple)  # selectable columns
    origin: str = ""  # upstream provenance
    unit: str = ""  # unit of the default column

    @property
    def extra(self) -> str:
        """The pip extra that installs the source package."""
        return "data"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["columns"] = list(self.columns)
        return d


_SM = "public domain (statsmodels dataset COPYRIGHT note); statsmodels is BSD-3-Clause"
_PMD = "shipped in pmdarima (MIT)"
_VEGA = "shipped in vega_datasets (MIT)"

_ENTRIES = [
    # ------------------------------------------------------------- statsmodels
    DatasetInfo(
        "co2",
        "nature",
        "W-SAT",
        2284,
        "statsmodels",
        _SM,
        "Mauna Loa weekly atmospheric CO2 (ppmv), 1958-03-29 .. 2001-12-29",
        n_missing=59,
        origin="Keeling & Whorf, Scripps (CDIAC)",
        unit="ppmv",
    ),
    DatasetInfo(
        "sunspots",
        "nature",
        "YS",
        309,
        "statsmodels",
        _SM,
        "Yearly sunspot activity, 1700 .. 2008",
        column="SUNACTIVITY",
        origin="NOAA NGDC",
        unit="sunspot number",
    ),
    DatasetInfo(
        "elnino",
        "nature",
        "MS",
        732,
        "statsmodels",
        _SM,
        "Nino 1+2 monthly sea-surface temperature (deg C), Jan 1950 .. Dec 2010, "
        "the 61x12 year-by-month table flattened row-major",
        origin="NOAA CPC, ERSST.V3B",
        unit="deg C",
    ),
    DatasetInfo(
        "macrodata",
        "economics",
        "QS",
        203,
        "statsmodels",
        _SM,
        "US quarterly macroeconomic data, 1959Q1 .. 2009Q3 (default column realgdp)",
        column="realgdp",
        columns=(
            "realgdp",
            "realcons",
            "realinv",
            "realgovt",
            "realdpi",
            "cpi",
            "m1",
            "tbilrate",
            "unemp",
            "pop",
            "infl",
            "realint",
        ),
        origin="FRED (St. Louis Fed) and BLS, compiled by S. Seabold",
        unit="bn chained 2005 USD",
    ),
    DatasetInfo(
        "nile",
        "nature",
        "YS",
        100,
        "statsmodels",
        _SM,
        "Annual Nile flow at Aswan (1e8 m^3), 1871 .. 1970",
        column="volume",
        origin="Cobb (1978)",
        unit="1e8 m^3",
    ),
    # ---------------------------------------------------------------- pmdarima
    DatasetInfo(
        "airpassengers",
        "transport",
        "MS",
        144,
        "pmdarima",
        _PMD,
        "Monthly international airline passengers (thousands), 1949 .. 1960",
        origin="Box & Jenkins; R datasets::AirPassengers (GPL-2|3)",
        unit="thousands",
    ),
    DatasetInfo(
        "taylor",
        "energy",
        "30min",
        4032,
        "pmdarima",
        _PMD,
        "Half-hourly electricity demand in England and Wales (MW), Mon 2000-06-05 .. Sun 2000-08-27",
        origin="Taylor (2003); R forecast::taylor (GPL-3)",
        unit="MW",
    ),
    DatasetInfo(
        "wineind",
        "retail",
        "MS",
        176,
        "pmdarima",
        _PMD,
        "Australian wine sales (bottles <= 1 l), Jan 1980 .. Aug 1994",
        origin="R forecast::wineind (GPL-3)",
        unit="bottles",
    ),
    DatasetInfo(
        "ausbeer",
        "production",
        "QS",
        212,
        "pmdarima",
        _PMD,
        "Quarterly Australian beer production (megalitres), 1956Q1 .. 2008Q3 "
        "(211 observations) plus a trailing NaN slot for 2008Q4 as shipped",
        n_missing=1,
        origin="R fpp::ausbeer (GPL-3)",
        unit="megalitres",
    ),
    DatasetInfo(
        "sunspots_monthly",
        "nature",
        "MS",
        2820,
        "pmdarima",
        _PMD,
        "Monthly mean relative sunspot numbers, Jan 1749 .. Dec 1983",
        origin="R datasets::sunspots (GPL-2|3)",
        unit="sunspot number",
    ),
    DatasetInfo(
        "woolyrnq",
        "production",
        "QS",
        119,
        "pmdarima",
        _PMD,
        "Quarterly production of woollen yarn in Australia (tonnes), 1965Q1 .. 1994Q3",
        origin="R forecast::woolyrnq (GPL-3)",
        unit="tonnes",
    ),
    DatasetInfo(
        "heartrate",
        "health",
        "500ms",
        150,
        "pmdarima",
        _PMD,
        "Heart rate (beats/min) of one subject, 150 samples 0.5 s apart (no calendar)",
        origin="MIT time-series database (ecg.mit.edu), Goldberger & Rigney",
        unit="beats/min",
    ),
    DatasetInfo(
        "lynx",
        "nature",
        "YS",
        114,
        "pmdarima",
        _PMD,
        "Annual Canadian lynx trappings, 1821 .. 1934",
        origin="Brockwell & Davis (1991); R datasets::lynx (GPL-2|3)",
        unit="trappings",
    ),
    DatasetInfo(
        "austres",
        "economics",
        "QS",
        89,
        "pmdarima",
        _PMD,
        "Australian residents (thousands), quarterly 1971Q1 .. 1993Q1",
        origin="R datasets::austres (GPL-2|3)",
        unit="thousands",
    ),
    DatasetInfo(
        "msft",
        "finance",
        "B",
        7983,
        "pmdarima",
        _PMD,
        "Microsoft daily close price (USD), 1986-03-13 .. 2017-11-10, trading days",
        column="Close",
        columns=("Open", "High", "Low", "Close", "Volume"),
        origin="Kaggle 'Price Volume Data for All US Stocks & ETFs' (B. Marjanovic)",
        unit="USD",
    ),
    # ------------------------------------------------------------ vega_datasets
    DatasetInfo(
        "seattle_temps",
        "nature",
        "h",
        8759,
        "vega_datasets",
        _VEGA,
        "Hourly temperature in Seattle (deg F), 2010-01-01 00:00 .. 2010-12-31 23:00 (one 2-hour step: the DST change)",
        column="temp",
        origin="NOAA",
        unit="deg F",
    ),
    DatasetInfo(
        "sf_temps",
        "nature",
        "h",
        8759,
        "vega_datasets",
        _VEGA,
        "Hourly temperature in San Francisco (deg F), 2010",
        column="temp",
        origin="NOAA",
        unit="deg F",
    ),
    DatasetInfo(
        "seattle_weather",
        "nature",
        "D",
        1461,
        "vega_datasets",
        _VEGA,
        "Daily Seattle weather 2012 .. 2015 (default column temp_max, deg C)",
        column="temp_max",
        columns=("precipitation", "temp_max", "temp_min", "wind"),
        origin="NOAA",
        unit="deg C",
    ),
]

#: name -> DatasetInfo, in listing order.
REGISTRY: dict[str, DatasetInfo] = {e.name: e for e in _ENTRIES}


def list_datasets(*, domain: str | None = None, source: str | None = None) -> list[DatasetInfo]:
    """Registered datasets, optionally filtered by domain or source package."""
    return [
        e
        for e in REGISTRY.values()
        if (domain is None or e.domain == domain) and (source is None or e.source == source)
    ]


def unknown_dataset(name: object) -> UnknownDatasetError:
    """The error raised for a name not in the registry (lists the known names)."""
    return UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(REGISTRY)}")


def info(name: str) -> DatasetInfo:
    """Registry entry for ``name`` (``KeyError`` listing known names otherwise)."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name).__name__}")
    try:
        return REGISTRY[name]
    except KeyError:
        raise unknown_dataset(name) from None
