"""What several commands share: reading ``--data`` (one meaning everywhere:
a file or a bundled dataset name), cutting it into windows, and telling a
time-series foundation model spec from a language model.

Data files: ``.csv``/``.tsv``/``.txt`` (optionally ``.gz``) and ``.parquet``
are read with :func:`isofast.data.readers.read_table` — every column is a
series unless ``--column`` names one; ``.npy`` holds a 1-D series or a 2-D
array with one series per row (``--column K`` keeps row K). A name that is
not a file is a dataset of :mod:`isofast.data` (``isofast data list``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

DATA_HELP = "a .csv/.tsv/.parquet/.npy file or a bundled dataset name (isofast data list)"


def read_series(path: str, column: str | None, time_column: str | None = None) -> dict[str, np.ndarray]:
    """A data file → dict name → 1-D float array."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no data file {path!r}")
    if p.suffix == ".npy":
        arr = np.load(p, allow_pickle=False)
        if arr.ndim == 1:
            if column not in (None, "0"):
                raise ValueError(f"{path} holds one series; --column {column} does not apply")
            return {p.stem: arr.astype(np.float64)}
        if arr.ndim != 2:
            raise ValueError(f"{path}: expected a 1-D or 2-D array, got shape {arr.shape}")
        if column is not None:
            k = int(column)
            if not -arr.shape[0] <= k < arr.shape[0]:
                raise ValueError(f"{path} has {arr.shape[0]} rows; no row {k}")
            return {f"{p.stem}[{k}]": arr[k].astype(np.float64)}
        return {f"{p.stem}[{i}]": arr[i].astype(np.float64) for i in range(arr.shape[0])}
    from isofast.data.readers import read_table

    series = read_table(str(p), column=column, time_column=time_column, nan="keep")
    return {s.name: s.values for s in series}


def resolve_data(data: str, column: str | None, time_column: str | None = None):
    """``--data`` → (dict name → 1-D values, MASE season or None).

    A file is read with :func:`read_series` (season unknown: None); otherwise
    ``data`` names a registry dataset, loaded with :func:`isofast.data.load`,
    whose season comes from its frequency (:func:`isofast.data.dataset_season`).
    Something that looks like a path (a separator or a suffix) but is no file
    raises ``FileNotFoundError``; any other unknown name raises
    :class:`isofast.data.UnknownDatasetError` listing the datasets (both one
    line, exit code 2).
    """
    if Path(data).is_file():
        return read_series(data, column, time_column), None
    from isofast.data import REGISTRY, UnknownDatasetError, dataset_season, load

    if data not in REGISTRY:
        if any(ch in data for ch in "/\\") or Path(data).suffix != "":
            raise FileNotFoundError(f"no data file {data!r}")
        raise UnknownDatasetError(
            f"--data {data!r} is neither a file nor a dataset name; datasets: {', '.join(sorted(REGISTRY))} "
            "(see isofast data list)"
        )
    s = load(data, column=column)
    return {s.name: s.values}, dataset_season(data)


def cut_windows(series: dict, context: int, horizon: int, mode: str, stride, n, seed):
    """Context/horizon windows of every series (:func:`isofast.data.make_windows`);
    series too short for one window are skipped with a note on stderr."""
    from isofast.data import make_windows

    names = list(series)
    w = make_windows(
        [series[k] for k in names], context, horizon, mode=mode, stride=stride, n=n, seed=seed, skip_short=True
    )
    skipped = len(names) - len(set(w.series_id.tolist()))
    if skipped:
        print(f"isofast: {skipped} series shorter than context + horizon skipped", file=sys.stderr)
    return w, names


def is_tsfm(spec) -> bool:
    """Whether ``--model`` names a time-series foundation model (``FAMILY:PATH``
    or a folder whose config names its family)."""
    from isofast.tsfm.spec import looks_like_tsfm

    return spec is not None and looks_like_tsfm(spec)
