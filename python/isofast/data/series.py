"""The :class:`Series` record shared by loaders, readers and windowing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Series", "apply_nan_policy", "NAN_POLICIES"]

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
