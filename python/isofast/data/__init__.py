"""Numeric data for isofast: synthetic series, bundled real series, user files,
windowing and perturbations.

Modules (one concept each):

* :mod:`~isofast.data.kernelsynth`: KernelSynth Gaussian-process series (Chronos)
  and the reference study's ten single-kernel presets.
* :mod:`~isofast.data.registry` / :mod:`~isofast.data.loaders`: real datasets
  that ship inside installed wheels (statsmodels, pmdarima, vega_datasets);
  never downloaded. Needs ``pip install "isofast[data]"``.
* :mod:`~isofast.data.readers`: CSV/TSV/parquet columns and Monash ``.tsf`` files.
* :mod:`~isofast.data.windows`: context/horizon windows, time-ordered splits,
  per-instance scalers.
* :mod:`~isofast.data.seasons`: seasonal periods (points per cycle) for
  frequency labels, KernelSynth presets and registry datasets.
* :mod:`~isofast.data.perturb`: the study's input noise and "harder" (2/3)
  context, plus missing values, level shifts and outliers.

Note: ``isofast.data.kernelsynth`` (the attribute) is the sampling function;
import the module's other names with ``from isofast.data.kernelsynth import ...``.

Only numpy is needed at import time; scipy (factorisations), pandas and the
dataset packages are imported when used.
"""

from .kernelsynth import (
    PRESETS,
    RBF,
    SEASONALITY_PERIODS,
    ConstantKernel,
    DotProduct,
    ExpSineSquared,
    Kernel,
    KernelFactor,
    Product,
    RationalQuadratic,
    Sum,
    WhiteKernel,
    factor,
    kernel_bank,
    kernel_matrix,
    kernelsynth,
    preset,
    random_kernel,
    synthetic_set,
)
from .loaders import load, load_all
from .perturb import add_missing, add_noise, add_outliers, level_shift, shorten_context
from .readers import DataFormatError, TSFData, read_csv, read_parquet, read_table, read_tsf
from .registry import REGISTRY, DatasetInfo, UnknownDatasetError, info, list_datasets
from .seasons import FREQUENCY_SEASONS, dataset_season, preset_season, season_length
from .series import NAN_POLICIES, Series
from .windows import (
    MeanScaler,
    MinMaxScaler,
    StandardScaler,
    Windows,
    make_windows,
    train_test_split,
)

__all__ = [
    # kernelsynth
    "Kernel",
    "DotProduct",
    "RBF",
    "RationalQuadratic",
    "ExpSineSquared",
    "WhiteKernel",
    "ConstantKernel",
    "Sum",
    "Product",
    "KernelFactor",
    "PRESETS",
    "SEASONALITY_PERIODS",
    "kernel_bank",
    "kernel_matrix",
    "preset",
    "factor",
    "random_kernel",
    "kernelsynth",
    "synthetic_set",
    # seasonal periods
    "FREQUENCY_SEASONS",
    "season_length",
    "preset_season",
    "dataset_season",
    # real data
    "Series",
    "NAN_POLICIES",
    "DatasetInfo",
    "REGISTRY",
    "UnknownDatasetError",
    "list_datasets",
    "info",
    "load",
    "load_all",
    # files
    "DataFormatError",
    "TSFData",
    "read_table",
    "read_csv",
    "read_parquet",
    "read_tsf",
    # windows
    "Windows",
    "make_windows",
    "train_test_split",
    "MeanScaler",
    "StandardScaler",
    "MinMaxScaler",
    # perturbations
    "add_noise",
    "shorten_context",
    "add_missing",
    "level_shift",
    "add_outliers",
]
