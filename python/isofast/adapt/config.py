"""``[adaptation]`` of the study config → :class:`AdaptationConfig`.

Schema (every key optional)::

    [adaptation]
    enabled = true
    model = "smollm2"           # bundled name or local causal-LM folder
    lora = true                 # LoRA (peft) instead of full fine-tuning
    steps = 8                   # optimiser steps per run (the equal budget)
    batch_size = 2
    lr = 0.0                    # 0 → 1e-4 (full) / 1e-3 (LoRA)
    seeds = [0]                 # every arm runs with every seed (paired)
    loss_on = "window"          # value tokens of the whole window, or "target"
    n_samples = 4               # forecast samples per test window (median → NMSE)
    threads = 1                 # torch threads (0: torch's default)
    layers = "auto"             # tracked layers ("auto" = 5 evenly spaced) or a list
    statistics = [...]          # isotropy columns tested in (a) and (b) (default STATISTICS)
    selection_fraction = 0.4    # share of datasets that choose the layer (held-out choice)
    n_boot = 2000
    n_perm = 2000
    ci = 0.95
    alpha = 0.05                # BH false-discovery rate per question
    seed = 0                    # statistics and the selection split

    [[adaptation.regularizers]] # arms of (c); default: IsoScore* on the middle layer, ±1
    kind = "isoscore"           # "isoscore" or "logz"
    layer = -1                  # -1 → the middle layer (n_layers // 2); ≥ 0 as in capture
    weight = 1.0                # > 0 more isotropy, < 0 less (I-STAR's sign)

    [[adaptation.datasets]]     # default: 5 KernelSynth presets + 3 real series
    name = "RBF_0.1"            # the keys of [[datasets]] (isofast.study.config.DatasetConfig)
    source = "kernelsynth"
    context = 64
    horizon = 4
    n_test = 4

Unknown keys raise :class:`isofast.study.config.ConfigError`.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from isofast.study.config import ConfigError, DatasetConfig

__all__ = ["STATISTICS", "AdaptationConfig", "ArmConfig", "default_datasets", "parse"]

#: isotropy statistics tested in (a) and (b) by default (names of the tracking table).
STATISTICS = (
    "isoscore",
    "avg_cosine_centered",
    "effective_rank",
    "pc1_share",
    "log_partition_isotropy_centered",
    "inter_cluster_cosine",
    "isoscore_vs_null",
    "head_log_z_std",
    "head_shift_norm_share_mean",
)

_KS = ("DotProduct_1", "Seasonality_0.25H", "RationalQuadratic_1", "RBF_0.1", "WhiteKernel_0.1")
_REAL = ("airpassengers", "sunspots_monthly", "co2")


def default_datasets() -> list[DatasetConfig]:
    """5 KernelSynth presets (the study's) and 3 real series: 8 datasets, 4
    test windows of 64 values each (≥ 607 probe rows for SmolLM2's d = 576)."""
    out = [
        DatasetConfig(name=k, source="kernelsynth", context=64, horizon=4, n_test=4, length=256, n_train_series=16)
        for k in _KS
    ]
    out += [DatasetConfig(name=r, source="registry", context=64, horizon=4, n_test=4) for r in _REAL]
    return out


@dataclass
class ArmConfig:
    kind: str = "isoscore"
    layer: int = -1
    weight: float = 1.0
    zeta: float = 0.0

    def __post_init__(self):
        if self.kind not in ("isoscore", "logz"):
            raise ConfigError(f"[adaptation.regularizers] kind must be 'isoscore' or 'logz', got {self.kind!r}")
        if not isinstance(self.layer, int) or self.layer < -1:
            raise ConfigError(f"[adaptation.regularizers] layer must be an int ≥ 0 (or -1: middle), got {self.layer!r}")
        if self.weight == 0:
            raise ConfigError("[adaptation.regularizers] weight 0 is the unregularised run; give a non-zero weight")

    @property
    def name(self) -> str:
        where = "mid" if self.layer < 0 else str(self.layer)
        return f"{self.kind}{'+' if self.weight > 0 else '-'}{abs(self.weight):g}@L{where}"


@dataclass
class AdaptationConfig:
    """``[adaptation]`` (module docstring)."""

    enabled: bool = True
    model: str = "smollm2"
    lora: bool = True
    steps: int = 8
    batch_size: int = 2
    lr: float = 0.0
    seeds: list = field(default_factory=lambda: [0])
    loss_on: str = "window"
    n_samples: int = 4
    threads: int = 1
    layers: Any = "auto"
    statistics: list = field(default_factory=lambda: list(STATISTICS))
    selection_fraction: float = 0.4
    n_boot: int = 2000
    n_perm: int = 2000
    ci: float = 0.95
    alpha: float = 0.05
    seed: int = 0
    regularizers: list = field(
        default_factory=lambda: [ArmConfig("isoscore", -1, 1.0), ArmConfig("isoscore", -1, -1.0)]
    )
    datasets: list = field(default_factory=default_datasets)

    def __post_init__(self):
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"[adaptation] steps must be an int ≥ 1, got {self.steps!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"[adaptation] batch_size must be an int ≥ 1, got {self.batch_size!r}")
        if self.lr < 0:
            raise ConfigError(f"[adaptation] lr must be ≥ 0 (0: default), got {self.lr}")
        if not self.seeds or not all(isinstance(s, int) for s in self.seeds):
            raise ConfigError(f"[adaptation] seeds must be a non-empty list of ints, got {self.seeds!r}")
        if self.loss_on not in ("window", "target"):
            raise ConfigError(f"[adaptation] loss_on must be 'window' or 'target', got {self.loss_on!r}")
        if not 0 < self.selection_fraction < 1:
            raise ConfigError(f"[adaptation] selection_fraction must be in (0, 1), got {self.selection_fraction}")
        if len(self.datasets) < 3:
            raise ConfigError(f"[adaptation] needs ≥ 3 datasets for any test, got {len(self.datasets)}")
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ConfigError(f"[adaptation] dataset names must be unique, got {names}")
        if not (
            self.layers == "auto" or (isinstance(self.layers, list) and all(isinstance(v, int) for v in self.layers))
        ):
            raise ConfigError("[adaptation] layers must be 'auto' or a list of ints")
        if self.n_boot < 100 or self.n_perm < 100:
            raise ConfigError("[adaptation] n_boot and n_perm must be ≥ 100")

    def to_dict(self) -> dict:
        d = asdict(self)
        return d


def parse(table: dict | None) -> AdaptationConfig:
    """``[adaptation]`` table (as read by tomllib) → :class:`AdaptationConfig`."""
    if table is None:
        return AdaptationConfig()
    if not isinstance(table, dict):
        raise ConfigError(f"[adaptation] must be a table, got {type(table).__name__}")
    t = copy.deepcopy(table)
    allowed = {f.name for f in fields(AdaptationConfig)}
    bad = sorted(set(t) - allowed)
    if bad:
        raise ConfigError(f"[adaptation]: unknown key(s) {bad}; allowed: {sorted(allowed)}")
    if "datasets" in t:
        ds = []
        for i, d in enumerate(t["datasets"]):
            if not isinstance(d, dict):
                raise ConfigError(f"[[adaptation.datasets]] #{i} must be a table")
            known = {f.name for f in fields(DatasetConfig)}
            extra = sorted(set(d) - known)
            if extra:
                raise ConfigError(f"[[adaptation.datasets]] #{i}: unknown key(s) {extra}; allowed: {sorted(known)}")
            try:
                ds.append(DatasetConfig(**d))
            except TypeError as exc:
                raise ConfigError(f"[[adaptation.datasets]] #{i}: {exc}") from None
        t["datasets"] = ds
    if "regularizers" in t:
        arms = []
        for i, a in enumerate(t["regularizers"]):
            if not isinstance(a, dict):
                raise ConfigError(f"[[adaptation.regularizers]] #{i} must be a table")
            extra = sorted(set(a) - {f.name for f in fields(ArmConfig)})
            if extra:
                raise ConfigError(f"[[adaptation.regularizers]] #{i}: unknown key(s) {extra}")
            arms.append(ArmConfig(**a))
        t["regularizers"] = arms
    try:
        return AdaptationConfig(**t)
    except TypeError as exc:
        raise ConfigError(f"[adaptation]: {exc}") from None
