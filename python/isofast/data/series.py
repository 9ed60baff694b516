"""The :class:`Series` record shared by loaders, readers and windowing, and
:func:`as_series_list`, the one reader of "some series" for every API that
takes them (capture, forecast, metrics, windows, the TSFM adapters)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isofast.errors import ArgumentTypeError, DimensionError, EmptyInputError

__all__ = ["Series", "apply_nan_policy", "as_named_series_list", "as_series_list", "NAN_POLICIES"]

#: Accepted values of the ``nan=`` argument of loaders and readers.
NAN_POLICIES = ("keep", "interpolate", "drop", "error")


@dataclass
class Series:
    """One univariate time series.

    Attributes
    ----------
    name:
        Identifier (dataset name, column, or the ``series_name`` of a .tsf row).
    values:
        float64, 1-D; missing observations are NaN.
    timestamps:
        ``numpy.datetime64`` array of the same length, or None when the source
        gives no calendar (e.g. an index only).
    frequency:
        Sampling frequency as a short label (``"W"``, ``"30min"``, ``"MS"``,
        ``"QS"``, ``"YS"``, ``"h"`` ...) or None when unknown.
    domain:
        Application domain (energy, finance, health, nature, retail, ...) or None.
    meta:
        Anything else (source, units, licence, column, NaN handling, ...).
    """

    name: str
    values: np.ndarray
    timestamps: np.ndarray | None = None
    frequency: str | None = None
    domain: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v = np.asarray(self.values)
        if v.dtype.kind not in "fiub":
            raise TypeError(f"series {self.name!r}: values must be numeric, got dtype {v.dtype}")
        v = np.ascontiguousarray(v, dtype=np.float64)
        if v.ndim != 1:
            raise ValueError(f"series {self.name!r}: values must be 1-D, got shape {v.shape}")
        self.values = v
        if self.timestamps is not None:
            ts = np.asarray(self.timestamps)
            if ts.dtype.kind != "M":
                ts = ts.astype("datetime64[ns]")
            if ts.shape != v.shape:
                raise ValueError(f"series {self.name!r}: {ts.shape[0]} timestamps for {v.shape[0]} values")
            self.timestamps = ts

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_missing(self) -> int:
        return int(np.isnan(self.values).sum())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (values as a list, NaN as None, timestamps as ISO strings)."""
        vals = [None if np.isnan(x) else float(x) for x in self.values]
        ts = None if self.timestamps is None else [str(t) for t in self.timestamps]
        return {
            "name": self.name,
            "length": len(self),
            "frequency": self.frequency,
            "domain": self.domain,
            "values": vals,
            "timestamps": ts,
            "meta": dict(self.meta),
        }


def apply_nan_policy(
    values: np.ndarray,
    timestamps: np.ndarray | None,
    nan: str,
    *,
    where: str,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply a NaN policy to one series.

    * ``"keep"``: unchanged (NaN stays; the model layer decides).
    * ``"interpolate"``: linear interpolation in the index; leading/trailing
      NaN take the nearest observed value (no extrapolated trend).
    * ``"drop"``: remove the missing points (and their timestamps); the series
      is then no longer evenly spaced.
    * ``"error"``: ``ValueError`` naming ``where`` and the first missing index.
    """
    if nan not in NAN_POLICIES:
        raise ValueError(f"nan must be one of {NAN_POLICIES}, got {nan!r}")
    values = np.asarray(values, dtype=np.float64)
    miss = np.isnan(values)
    if not miss.any() or nan == "keep":
        return values, timestamps
    if nan == "error":
        first = int(np.argmax(miss))
        raise ValueError(
            f"{where}: {int(miss.sum())} missing values (first at index {first}); "
            "pass nan='interpolate', 'drop' or 'keep'"
        )
    if nan == "drop":
        keep = ~miss
        return values[keep], None if timestamps is None else timestamps[keep]
    # interpolate
    if miss.all():
        raise ValueError(f"{where}: every value is missing, nothing to interpolate from")
    idx = np.arange(values.shape[0])
    out = values.copy()
    out[miss] = np.interp(idx[miss], idx[~miss], values[~miss])
    return out, timestamps


# ------------------------------------------------------------ many series in
def _floats(v: Any, what: str) -> np.ndarray:
    """``v`` as a float64 array; a ragged nesting is a DimensionError, a
    non-numeric dtype (strings, dates, complex) an ArgumentTypeError."""
    try:
        a = np.asarray(v)
    except ValueError as exc:  # ragged nested lists
        raise DimensionError(f"{what}: cannot read it as an array ({exc})") from None
    if a.dtype.kind in "fiub":
        return np.asarray(a, dtype=np.float64)
    if a.dtype.kind == "O":  # e.g. numbers mixed with None (a missing value)
        try:
            return a.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ArgumentTypeError(f"{what}: cannot convert to a float array ({exc})") from None
    raise ArgumentTypeError(f"{what}: values must be numeric, got dtype {a.dtype}")


def _is_windows(x: Any) -> bool:
    return hasattr(x, "context") and hasattr(x, "series_id") and hasattr(x, "start")


def _is_frame(x: Any) -> bool:
    return hasattr(x, "columns") and hasattr(x, "to_numpy") and not isinstance(x, np.ndarray)


def _is_series_obj(x: Any) -> bool:
    """An :class:`isofast.data.series.Series` or a look-alike with ``.name``
    and ``.values`` (array-likes such as a pandas Series are read as arrays)."""
    if isinstance(x, Series):
        return True
    return hasattr(x, "values") and hasattr(x, "name") and not isinstance(x, (np.ndarray, dict))


def _is_number(v: Any) -> bool:
    """One value of a plain list of numbers (None: a missing one)."""
    if isinstance(v, (list, tuple, dict)) or _is_series_obj(v):
        return False
    return np.ndim(v) == 0


def _is_array_like(x: Any) -> bool:
    return isinstance(x, np.ndarray) or (hasattr(x, "__array__") and not isinstance(x, (list, tuple, dict, str)))


def as_named_series_list(
    x: Any, *, name: str = "series", allow_empty: bool = False
) -> tuple[list[np.ndarray], list[str] | None]:
    """Many series as a list of 1-D float64 arrays, with their names when the
    input gives them (else ``None``).

    Accepted, tried in this order:

    * an :class:`isofast.data.windows.Windows` (or anything with ``context``,
      ``series_id`` and ``start``): its ``context`` rows (names: its ``names``);
    * a dict name → 1-D array;
    * a DataFrame: one series per column, named by the column;
    * a :class:`Series`: one series, named;
    * an array (or anything with ``__array__``, e.g. a pandas Series): 1-D is
      one series, 2-D is one series per row (series × time);
    * a list or tuple (or other iterable): of numbers (one series), of
      :class:`Series` (named), or of 1-D arrays / Series mixed.

    NaN is kept as it is: the caller applies its NaN policy
    (:func:`isofast.serializers.base.as_series`, :func:`apply_nan_policy`).
    Raises :class:`~isofast.errors.DimensionError` for anything but 1-D
    series (3-D arrays, 2-D list items, ragged nesting),
    :class:`~isofast.errors.ArgumentTypeError` for a non-numeric dtype or an
    unreadable type, and :class:`~isofast.errors.EmptyInputError` when no
    series is given (unless ``allow_empty``). ``name`` names the argument in
    the messages.
    """
    names: list[str] | None = None
    if _is_windows(x):
        ctx = _floats(x.context, f"{name} windows' context")
        if ctx.ndim != 2:
            raise DimensionError(f"{name}: windows' context must be 2-D (windows × time), got shape {ctx.shape}")
        items = list(ctx)
        names = getattr(x, "names", None)
    elif isinstance(x, dict):
        names = [str(k) for k in x]
        items = [_floats(v, f"{name} {k!r}") for k, v in x.items()]
    elif _is_frame(x):
        names = [str(c) for c in x.columns]
        items = [_floats(x[c].to_numpy(), f"{name} column {c!r}") for c in x.columns]
    elif isinstance(x, Series):
        names, items = [str(x.name)], [x.values]
    elif _is_array_like(x):
        a = _floats(x, name)
        if a.ndim == 1:
            items = [a]
        elif a.ndim == 2:
            items = list(a)
        else:
            raise DimensionError(f"{name} array must be 1-D or 2-D (series × time), got shape {a.shape}")
    elif _is_series_obj(x):
        names, items = [str(x.name)], [_floats(x.values, f"{name} {x.name!r}")]
    elif isinstance(x, (str, bytes)) or not hasattr(x, "__iter__"):
        raise ArgumentTypeError(
            f"{name} must be a 1-D/2-D array, a list of 1-D arrays, a dict name → array, a DataFrame, "
            f"a Series or an isofast.data.windows.Windows, got {type(x).__name__}"
        )
    else:
        seq = list(x)
        if not seq:
            if allow_empty:
                return [], None
            raise EmptyInputError(f"no {name} given (empty list)")
        if all(_is_number(v) for v in seq):  # a plain list of numbers
            items = [_floats(seq, name)]
        else:
            if all(_is_series_obj(v) for v in seq):
                names = [str(v.name) for v in seq]
            items = []
            for i, v in enumerate(seq):
                a = _floats(v.values if _is_series_obj(v) else v, f"{name} {i}")
                if a.ndim != 1:
                    raise DimensionError(f"{name} {i} must be 1-D, got shape {a.shape}")
                items.append(a)
    if not items and not allow_empty:
        raise EmptyInputError(f"no {name} given")
    return items, names


def as_series_list(x: Any, *, name: str = "series", allow_empty: bool = False) -> list[np.ndarray]:
    """:func:`as_named_series_list` without the names."""
    return as_named_series_list(x, name=name, allow_empty=allow_empty)[0]
