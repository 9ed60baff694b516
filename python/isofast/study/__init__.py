"""The study: does a model's embedding isotropy predict its forecast quality?

``run_study(config, out=DIR)`` (or ``isofast study CONFIG.toml --out DIR``)
runs a grid of models × datasets × perturbations × layers: forecasts, the
isotropy suite of every layer, honest statistics (cluster-bootstrap CIs,
permutation p-values, Benjamini–Hochberg, a held-out layer choice), a causal
intervention test and an HTML report.

Modules: :mod:`~isofast.study.config` (TOML schema), :mod:`~isofast.study.datasets`
(splits, perturbations), :mod:`~isofast.study.models_lm` /
:mod:`~isofast.study.models_ts` (SmolLM2 & local causal LMs; PatchTST and a
Chronos-style T5 trained on CPU), :mod:`~isofast.study.isotropy` (per-layer
suite), :mod:`~isofast.study.stats` (correlations, bootstrap, permutation, BH),
:mod:`~isofast.study.tables` (correlation tables), :mod:`~isofast.study.causal`
(interventions), :mod:`~isofast.study.runner`, :mod:`~isofast.study.report`,
:mod:`~isofast.study.cache`; the command is :mod:`isofast.cli.study`.
"""

from isofast.study.config import (
    ConfigError,
    StudyConfig,
    bundled_config_path,
    load_config,
)
from isofast.study.runner import CellResult, StudyResult, run_study
from isofast.study.stats import (
    CorrelationResult,
    benjamini_hochberg,
    bootstrap_ci,
    correlate,
    kendall,
    permutation_test,
    spearman,
)

__all__ = [
    "CellResult",
    "ConfigError",
    "CorrelationResult",
    "StudyConfig",
    "StudyResult",
    "benjamini_hochberg",
    "bootstrap_ci",
    "bundled_config_path",
    "correlate",
    "kendall",
    "load_config",
    "permutation_test",
    "run_study",
    "spearman",
]
