"""isofast: exact, fast isotropy analysis of model embeddings fed numeric data.

Global statistics (design.md §3) run in Rust kernels that stream row tiles,
accumulate in float64 and release the GIL: :func:`analyze`, one function per
statistic, mergeable :class:`Moments`. The clustered isotropy of the reference
study is :func:`cluster_isotropy`; the softmax-head tools are
:func:`log_partition_head` and :func:`head_diagnostics`. Capturing embeddings
(:func:`capture`, :func:`open_capture`), forecasting (:func:`forecast`) and the
study (:mod:`isofast.study`) need the ``torch`` extra and are imported lazily,
so ``import isofast`` needs numpy only.
"""

from importlib import import_module as _import_module

from isofast._core import __version__
from isofast.analysis import (
    SelfSimilarity,
    all_but_the_top,
    analyze,
    avg_cosine,
    effective_dim,
    isoscore,
    log_partition,
    partition_isotropy,
    row_norms,
    self_similarity,
)
from isofast.errors import (
    ArgumentTypeError,
    CheckpointError,
    ChecksumError,
    ClusterError,
    CorruptFileError,
    DataFormatError,
    DimensionError,
    EmptyInputError,
    InputError,
    IsofastError,
    MissingPackageError,
    NonFiniteError,
    NumericalError,
    ResourceError,
    TruncatedFileError,
    UndefinedStatisticWarning,
    UnknownDatasetError,
)
from isofast.moments import Moments
from isofast.report import IsotropyReport

# name -> (module, attribute or None for the module itself)
_LAZY = {
    "cluster_isotropy": ("isofast.cluster", "cluster_isotropy"),
    "reference_recipe": ("isofast.cluster", "reference_recipe"),
    "silhouette": ("isofast.cluster", "silhouette"),
    "kmeans": ("isofast.cluster", "kmeans"),
    "ClusterReport": ("isofast.cluster", "ClusterReport"),
    "massive_rows": ("isofast.massive", "massive_rows"),
    "MassiveRows": ("isofast.massive", "MassiveRows"),
    "null_statistics": ("isofast.nulls", "null_statistics"),
    "NullStatistics": ("isofast.nulls", "NullStatistics"),
    "relative_to_null": ("isofast.nulls", "relative_to_null"),
    "log_partition_head": ("isofast.head", "log_partition_head"),
    "head_diagnostics": ("isofast.head", "head_diagnostics"),
    "shift_direction": ("isofast.head", "shift_direction"),
    "HeadReport": ("isofast.head", "HeadReport"),
    "capture": ("isofast.capture", None),
    "open_capture": ("isofast.store", "open_capture"),
    "load_model": ("isofast.models", "load_model"),
    "forecast": ("isofast.forecast", None),
    "metrics": ("isofast.metrics", None),
    "data": ("isofast.data", None),
    "study": ("isofast.study", None),
    "run_study": ("isofast.study", "run_study"),
    "open_source": ("isofast.sources", "open_source"),
    "tsfm": ("isofast.tsfm", None),
    "load_tsfm": ("isofast.tsfm", "load_tsfm"),
}


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'isofast' has no attribute {name!r}") from None
    mod = _import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "__version__",
    "IsotropyReport",
    "Moments",
    "SelfSimilarity",
    "all_but_the_top",
    "analyze",
    "avg_cosine",
    "effective_dim",
    "isoscore",
    "log_partition",
    "partition_isotropy",
    "row_norms",
    "self_similarity",
    # the exception tree (isofast.errors)
    "ArgumentTypeError",
    "CheckpointError",
    "ChecksumError",
    "CorruptFileError",
    "DataFormatError",
    "DimensionError",
    "EmptyInputError",
    "InputError",
    "IsofastError",
    "MissingPackageError",
    "NonFiniteError",
    "NumericalError",
    "ResourceError",
    "ClusterError",
    "TruncatedFileError",
    "UndefinedStatisticWarning",
    "UnknownDatasetError",
    *_LAZY,
]
