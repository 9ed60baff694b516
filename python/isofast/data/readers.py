"""Read user files into :class:`~isofast.data.series.Series`.

* :func:`read_table`: columns of a CSV/TSV file (optionally ``.gz``), parsed
  with the standard library so that every error names the file and the line,
  or of a parquet file (needs ``pyarrow``: ``pip install "isofast[io]"``).
* :func:`read_tsf`: the Monash forecasting archive's ``.tsf`` format
  (Godahewa et al. 2021): ``#`` comments, a header of ``@relation``,
  ``@attribute NAME TYPE`` (TYPE in ``string | numeric | date``), ``@frequency``,
  ``@horizon``, ``@missing``, ``@equallength``, then ``@data`` lines
  ``attr_1:...:attr_k:v_1,v_2,...`` with ``?`` for a missing value. Dates use
  ``%Y-%m-%d %H-%M-%S`` (hyphens, so that ``:`` stays the field separator).

Malformed input raises :class:`DataFormatError`, a ``ValueError`` whose message
starts with ``path:line:``; a missing file raises ``FileNotFoundError``.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from collections.abc import Iterator, Sequence

import numpy as np

from isofast.errors import DataFormatError  # defined there (one exception tree); re-exported

from .series import Series, apply_nan_policy

__all__ = [
    "DataFormatError",
    "read_table",
    "read_csv",
    "read_parquet",
    "read_tsf",
    "TSFData",
    "TSF_FREQUENCIES",
]

#: Strings read as a missing value in CSV cells (case-insensitive).
NA_STRINGS = frozenset({"", "?", "na", "nan", "n/a", "null", "none", "-"})


def _open_text(path: Any) -> io.TextIOBase:
    from isofast.readahead import open_regular_file

    p = os.fspath(path)
    with open_regular_file(p, "rb") as f:  # a FIFO is refused, not waited on
        try:
            data = gzip.GzipFile(fileobj=f).read() if p.endswith(".gz") else f.read()
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            from isofast.errors import file_error

            raise file_error(p, exc, "unreadable gzip file") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")  # Monash files are cp1252
    return io.StringIO(text, newline="")


# ------------------------------------------------------------------ tables


def _as_columns(column: str | Sequence[str] | None) -> list[str] | None:
    if column is None:
        return None
    if isinstance(column, str):
        return [column]
    cols = list(column)
    if not all(isinstance(c, str) for c in cols):
        raise TypeError("column must be a str, a sequence of str, or None")
    return cols


def _parse_float(cell: str) -> float:
    s = cell.strip()
    if s.lower() in NA_STRINGS:
        return float("nan")
    return float(s)


def _parse_time(cell: str) -> np.datetime64:
    s = cell.strip()
    if s.lower() in NA_STRINGS:
        return np.datetime64("NaT")
    # numpy wants ISO 8601 with a "T"; accept the common space-separated form.
    return np.datetime64(s.replace(" ", "T", 1) if " " in s else s, "s")


def read_csv(
    path: Any,
    column: str | Sequence[str] | None = None,
    time_column: str | None = None,
    *,
    delimiter: str | None = None,
    nan: str = "keep",
    frequency: str | None = None,
    domain: str | None = None,
) -> list[Series]:
    """Columns of a delimited text file with a header row, one Series each.

    ``column=None`` takes every column but ``time_column``. Cells in
    ``{"", "?", "NA", "NaN", "N/A", "null", "None", "-"}`` are missing (NaN).
    The delimiter defaults to tab for ``.tsv``/``.tab`` and comma otherwise.
    """
    p = os.fspath(path)
    if delimiter is None:
        stem = p[:-3] if p.endswith(".gz") else p
        delimiter = "\t" if stem.endswith((".tsv", ".tab")) else ","
    reader = csv.reader(_open_text(p), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataFormatError(p, 1, "empty file: no header row") from None
    except csv.Error as exc:
        raise DataFormatError(p, 1, f"cannot parse header: {exc}") from None
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise DataFormatError(p, 1, f"duplicate column names {dup}")
    cols = _as_columns(column)
    if time_column is not None and time_column not in header:
        raise DataFormatError(p, 1, f"no time column {time_column!r}; columns: {header}")
    if cols is None:
        cols = [h for h in header if h != time_column]
    for c in cols:
        if c not in header:
            raise DataFormatError(p, 1, f"no column {c!r}; columns: {header}")
    if not cols:
        raise DataFormatError(p, 1, "no value columns")
    idx = [header.index(c) for c in cols]
    t_idx = header.index(time_column) if time_column is not None else None
    values: list[list[float]] = [[] for _ in cols]
    times: list[np.datetime64] = []
    line = 1
    try:
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) != len(header):
                raise DataFormatError(p, line, f"expected {len(header)} fields, found {len(row)}")
            for j, k in enumerate(idx):
                try:
                    values[j].append(_parse_float(row[k]))
                except ValueError:
                    raise DataFormatError(p, line, f"column {cols[j]!r}: cannot parse {row[k]!r} as a number") from None
            if t_idx is not None:
                try:
                    times.append(_parse_time(row[t_idx]))
                except ValueError:
                    raise DataFormatError(
                        p, line, f"time column {time_column!r}: cannot parse {row[t_idx]!r}"
                    ) from None
    except csv.Error as exc:
        raise DataFormatError(p, reader.line_num, str(exc)) from None
    ts = np.array(times, dtype="datetime64[s]") if t_idx is not None else None
    out = []
    for c, v in zip(cols, values):
        arr, t = apply_nan_policy(np.array(v, dtype=np.float64), ts, nan, where=f"{p}, column {c!r}")
        out.append(Series(c, arr, t, frequency, domain, {"source": p, "column": c, "nan_policy": nan}))
    return out


def read_parquet(
    path: Any,
    column: str | Sequence[str] | None = None,
    time_column: str | None = None,
    *,
    nan: str = "keep",
    frequency: str | None = None,
    domain: str | None = None,
) -> list[Series]:
    """Numeric columns of a parquet file (needs pyarrow), one Series each."""
    from .loaders import require

    pq = require("pyarrow.parquet", what="reading parquet files", extra="io")
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(p)
    try:
        schema = pq.read_schema(p)
    except Exception as exc:  # pyarrow raises ArrowInvalid (a ValueError) or OSError
        raise DataFormatError(p, None, f"not a readable parquet file: {exc}") from None
    names = list(schema.names)
    cols = _as_columns(column)
    if time_column is not None and time_column not in names:
        raise DataFormatError(p, None, f"no time column {time_column!r}; columns: {names}")
    if cols is None:
        cols = [n for n in names if n != time_column]
    for c in cols:
        if c not in names:
            raise DataFormatError(p, None, f"no column {c!r}; columns: {names}")
    wanted = cols + ([time_column] if time_column is not None else [])
    table = pq.read_table(p, columns=wanted)
    ts = None
    if time_column is not None:
        tcol = table.column(time_column).to_numpy(zero_copy_only=False)
        try:
            ts = np.asarray(tcol).astype("datetime64[s]")
        except (TypeError, ValueError):
            raise DataFormatError(p, None, f"time column {time_column!r} is not a timestamp column") from None
    out = []
    for c in cols:
        raw = table.column(c).to_numpy(zero_copy_only=False)
        try:
            arr = np.asarray(raw, dtype=np.float64)  # nulls arrive as NaN / None
        except (TypeError, ValueError):
            raise DataFormatError(p, None, f"column {c!r} has non-numeric type {table.schema.field(c).type}") from None
        arr, t = apply_nan_policy(arr, ts, nan, where=f"{p}, column {c!r}")
        out.append(Series(c, arr, t, frequency, domain, {"source": p, "column": c, "nan_policy": nan}))
    return out


def read_table(
    path: Any,
    column: str | Sequence[str] | None = None,
    time_column: str | None = None,
    **kwargs: Any,
) -> list[Series]:
    """CSV/TSV (``.csv``, ``.tsv``, ``.txt``, optionally ``.gz``) or parquet
    (``.parquet``, ``.pq``) columns as a list of Series; see :func:`read_csv`
    and :func:`read_parquet` for the keyword arguments."""
    p = os.fspath(path)
    if p.lower().endswith((".parquet", ".pq")):
        return read_parquet(p, column, time_column, **kwargs)
    return read_csv(p, column, time_column, **kwargs)


# ------------------------------------------------------------------ Monash .tsf

#: Monash frequency names -> pandas-style aliases used for Series.frequency.
TSF_FREQUENCIES: dict[str, str] = {
    "yearly": "YS",
    "quarterly": "QS",
    "monthly": "MS",
    "weekly": "W",
    "daily": "D",
    "hourly": "h",
    "half_hourly": "30min",
    "minutely": "min",
    "10_minutes": "10min",
    "4_seconds": "4s",
}

_FIXED_STEPS = {
    "W": np.timedelta64(7, "D"),
    "D": np.timedelta64(1, "D"),
    "h": np.timedelta64(1, "h"),
    "30min": np.timedelta64(30, "m"),
    "min": np.timedelta64(1, "m"),
    "10min": np.timedelta64(10, "m"),
    "4s": np.timedelta64(4, "s"),
}
_MONTH_STEPS = {"MS": 1, "QS": 3, "YS": 12}
_TSF_TYPES = ("string", "numeric", "date")


@dataclass
class TSFData:
    """A parsed ``.tsf`` file: the series and the header.

    Behaves as a sequence of :class:`Series` (``len``, indexing, iteration).
    """

    series: list[Series]
    relation: str | None = None
    attributes: list[tuple[str, str]] = field(default_factory=list)
    frequency: str | None = None  # as written in the file (e.g. "half_hourly")
    horizon: int | None = None
    missing: bool | None = None
    equallength: bool | None = None
    path: str | None = None

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, i: int) -> Series:
        return self.series[i]

    def __iter__(self) -> Iterator[Series]:
        return iter(self.series)

    def header(self) -> dict[str, Any]:
        return {
            "relation": self.relation,
            "attributes": [list(a) for a in self.attributes],
            "frequency": self.frequency,
            "horizon": self.horizon,
            "missing": self.missing,
            "equallength": self.equallength,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.header(), "path": self.path, "series": [s.to_dict() for s in self.series]}


def _tsf_bool(p: str, line: int, tag: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "false"):
        return v == "true"
    raise DataFormatError(p, line, f"@{tag} must be true or false, got {value!r}")


def _tsf_timestamps(start: np.datetime64, n: int, alias: str | None) -> np.ndarray | None:
    if alias in _FIXED_STEPS:
        return start + np.arange(n) * _FIXED_STEPS[alias]
    if alias in _MONTH_STEPS:
        month0 = start.astype("datetime64[M]")
        offset = start - month0.astype("datetime64[s]")  # keep day/time within the month
        months = month0 + _MONTH_STEPS[alias] * np.arange(n)
        return months.astype("datetime64[s]") + offset
    return None


def read_tsf(path: Any, *, nan: str = "keep") -> TSFData:
    """Parse a Monash ``.tsf`` file (optionally ``.gz``).

    Each ``@data`` line becomes a Series: ``name`` is its ``series_name``
    attribute if present (else ``"<relation>_<i>"``), ``meta`` holds every
    attribute value (numeric as float, date as ``datetime64[s]``), and
    ``timestamps`` start at a ``start_timestamp`` date attribute when the
    frequency is one of :data:`TSF_FREQUENCIES`. ``?`` is NaN, then ``nan``
    applies (see :func:`isofast.data.series.apply_nan_policy`).
    """
    p = os.fspath(path)
    f = _open_text(p)
    out = TSFData(series=[], path=p)
    in_data = False
    seen_lengths: int | None = None
    for line_no, raw in enumerate(f, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise DataFormatError(p, line_no, "data line before @data")
            tag, _, rest = line[1:].partition(" ")
            tag = tag.lower()
            rest = rest.strip()
            if tag == "relation":
                out.relation = rest
            elif tag == "attribute":
                parts = rest.split()
                if len(parts) != 2 or parts[1].lower() not in _TSF_TYPES:
                    raise DataFormatError(
                        p, line_no, f"@attribute needs NAME TYPE with TYPE in {_TSF_TYPES}, got {rest!r}"
                    )
                out.attributes.append((parts[0], parts[1].lower()))
            elif tag == "frequency":
                out.frequency = rest
            elif tag == "horizon":
                try:
                    out.horizon = int(rest)
                except ValueError:
                    raise DataFormatError(p, line_no, f"@horizon must be an integer, got {rest!r}") from None
            elif tag == "missing":
                out.missing = _tsf_bool(p, line_no, tag, rest)
            elif tag == "equallength":
                out.equallength = _tsf_bool(p, line_no, tag, rest)
            elif tag == "data":
                in_data = True
            else:
                raise DataFormatError(p, line_no, f"unknown header tag @{tag}")
            continue
        # ---- a data line: attributes then the values, separated by ':'
        fields = line.split(":")
        k = len(out.attributes)
        if len(fields) != k + 1:
            raise DataFormatError(
                p,
                line_no,
                f"expected {k} attribute field(s) and the values separated by ':', found {len(fields)} field(s)",
            )
        meta: dict[str, Any] = {}
        for (aname, atype), val in zip(out.attributes, fields[:k]):
            if atype == "numeric":
                try:
                    meta[aname] = float(val)
                except ValueError:
                    raise DataFormatError(p, line_no, f"attribute {aname!r}: {val!r} is not numeric") from None
            elif atype == "date":
                try:
                    meta[aname] = np.datetime64(datetime.strptime(val.strip(), "%Y-%m-%d %H-%M-%S"), "s")
                except ValueError:
                    raise DataFormatError(
                        p, line_no, f"attribute {aname!r}: {val!r} is not a date 'YYYY-mm-dd HH-MM-SS'"
                    ) from None
            else:
                meta[aname] = val
        if not fields[k].strip():
            raise DataFormatError(p, line_no, "series has no values")
        cells = fields[k].split(",")
        try:
            vals = np.array([float("nan") if c.strip() == "?" else float(c) for c in cells], dtype=np.float64)
        except ValueError:
            bad = next(c for c in cells if c.strip() != "?" and not _is_float(c))
            raise DataFormatError(p, line_no, f"series value {bad!r} is not a number or '?'") from None
        if np.isnan(vals).all():
            raise DataFormatError(p, line_no, "every value of the series is missing")
        if out.equallength:
            if seen_lengths is None:
                seen_lengths = vals.size
            elif vals.size != seen_lengths:
                raise DataFormatError(
                    p,
                    line_no,
                    f"@equallength true but this series has {vals.size} values, the first had {seen_lengths}",
                )
        alias = TSF_FREQUENCIES.get((out.frequency or "").lower())
        start = meta.get("start_timestamp")
        ts = _tsf_timestamps(start, vals.size, alias) if isinstance(start, np.datetime64) else None
        name = str(meta.get("series_name", f"{out.relation or 'series'}_{len(out.series)}"))
        vals, ts = apply_nan_policy(vals, ts, nan, where=f"{p}:{line_no} ({name})")
        meta.update({"source": p, "line": line_no, "nan_policy": nan})
        out.series.append(Series(name, vals, ts, alias or out.frequency, None, meta))
    if not in_data:
        raise DataFormatError(p, None, "no @data section")
    return out


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False
