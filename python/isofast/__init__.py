"""isofast: exact, fast isotropy analysis of model embeddings fed numeric data.

Global statistics (design.md §3) run in Rust kernels that stream row tiles,
accumulate in float64 and release the GIL. See :func:`analyze`.
"""

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
    self_similarity,
)
from isofast.moments import Moments
from isofast.report import IsotropyReport

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
    "self_similarity",
]
