"""Study configuration: a TOML file (read with :mod:`tomllib`) → :class:`StudyConfig`.

A study is a grid **models × datasets × perturbations × layers**. A *cell* is
one (model, dataset, perturbation): the model forecasts the cell's test
windows once (→ NMSE, MSE, MAE) and every captured layer gets the isotropy
suite (→ one results row per layer).

Schema (every key optional unless marked *required*)::

    [study]
    name = "default"            # label in the report
    seed = 0                    # master seed (data, training, sampling, statistics)
    threads = 1                 # torch intra-op threads (0: leave torch's default)
    cache = ""                  # cache folder; "" → <out>/cache

    [isotropy]                  # the suite of isofast.analyze + cluster_isotropy per layer
    rows = "auto"               # rows per (model, layer), equal in every cell: an int, or
                                # "auto" = (1 − row_margin) × the fewest rows any cell has
                                # (checked before anything runs; must be ≥ d)
    row_margin = 0.05           # "auto": head-room for massive rows removed per cell
    massive = "exclude"         # rows with norm > massive_ratio × median: "exclude" or "keep"
    massive_ratio = 100.0
    floors = true               # false = the reference recipe without floors (labelled)
    min_cluster_size = 10       # smaller clusters leave inter_cluster_cosine
    min_window_rows = 10        # per-window (trust) statistics need this many rows
    null_reps = 0               # isotropic-Gaussian null draws (0 = automatic)
    k_min = 2                   # k-means k range (reference: 2..16)
    k_max = 16
    threshold = 0.1             # silhouette threshold (reference 0.1)
    sample_size = 2000          # rows clustered (reference 2000)
    silhouette_sample_size = 2000
    n_init = 1
    seed = 0                    # explicit clustering seed (the reference left it unseeded)
    pca_points = 300            # rows kept for the PCA scatter of the report
    spectrum = 64               # explained-variance ratios kept for the spectra plot

    [forecast]
    n_samples = 8               # sample paths per window (LM and Chronos-T5)
    quantiles = [0.1, 0.9]      # the band drawn in the forecast plots
    point = "median"            # point forecast from the samples: "median" or "mean"

    [[datasets]]                # *required*, one table per dataset
    name = "airpassengers"      # label; also the registry name when source = "registry"
    source = "registry"         # "registry" (isofast.data.load), "kernelsynth", "csv"
    context = 36                # *required* context length
    horizon = 12                # *required* forecast horizon
    n_test = 4                  # test windows per cell
    # registry/csv: the last n_test non-overlapping windows of the series are the
    #   test windows; training (PatchTST) uses sliding windows of the earlier part.
    # kernelsynth: kernel = "RBF_1" (a preset), length, n_train_series; the test
    #   windows are the first window ("first" mode, as the study) of n_test fresh series.
    column = ""                 # registry column / csv column
    path = ""                   # csv file

    [[perturbations]]           # default: one "clean" perturbation
    name = "clean"
    kind = "none"               # "none", "noise" (level a), "shorten" (fraction)
    level = 0.0
    fraction = 1.0

    [[models]]                  # *required*, one table per model
    name = "smollm2"
    kind = "lm"                 # "lm" (causal LM, LLMTime text, LM-head forecasting),
                                # "patchtst" (trained per dataset), "chronos-t5"
                                # (trained once on KernelSynth, or a local checkpoint),
                                # "tsfm" (a pretrained TSFM: model = "FAMILY:PATH",
                                # isofast.study.models_tsfm; families in isofast.tsfm)
    model = "smollm2"           # lm: bundled name ("smollm2", "tiny-llama"…) or folder
    path = ""                   # a local Hugging Face folder (overrides ``model``;
                                # for patchtst/chronos-t5: load instead of training)
    layers = "all"              # "all" or a list of layer indices (see models_ts/models_lm)
    rows = "auto"               # overrides [isotropy] rows for this model
    n_windows = 0               # forecast only the first n_windows test windows (0 = all)
    # + kind-specific keys, see isofast.study.models_ts / models_lm

    [stats]
    methods = ["spearman", "kendall"]
    targets = ["nmse"]          # error columns correlated with isotropy
    statistics = [...]          # isotropy columns tested (default: STATISTICS)
    n_boot = 2000               # bootstrap resamples (≥ 1000)
    n_perm = 2000               # permutations (≥ 1000)
    ci = 0.95
    ci_method = "bca"           # "bca" or "percentile"
    selection_fraction = 0.5    # share of datasets used to choose the layer
    seed = 0
    alpha = 0.05                # BH false-discovery rate

    [causal]
    enabled = true
    [[causal.tests]]
    model = "patchtst"          # a model name of [[models]]
    layer = 1
    method = "abtt"             # "abtt", "cluster_whiten" or "random" (control)
    n_components = 1            # D of all-but-the-top / the random control
    keep_mean = false           # abtt/random: add the mean back (remove directions only)
    perturbation = "clean"
    datasets = []               # [] → every dataset

    [report]
    enabled = true
    forecast_windows = 2        # windows drawn per (model, dataset)
    pca_datasets = 2            # datasets with a PCA scatter per model (first ones)

Unknown keys raise ``ValueError`` (a typo never silently changes a study).
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any

from isofast.errors import ConfigError
from isofast.nulls import NULL_STATISTICS
from isofast.study.kinds import check_options

#: isotropy columns tested by default (all are in the results table).
STATISTICS: tuple[str, ...] = (
    "inter_cluster_cosine",
    "inter_cluster_cosine_weighted",
    "best_k",
) + NULL_STATISTICS  # the global statistics, each with an isotropic-Gaussian null

MODEL_KINDS = ("lm", "patchtst", "chronos-t5", "tsfm")
DATA_SOURCES = ("registry", "kernelsynth", "csv")
PERTURBATION_KINDS = ("none", "noise", "shorten")
CAUSAL_METHODS = ("abtt", "cluster_whiten", "random")

BUNDLED_CONFIGS = ("default", "tiny", "reference")


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def stable_hash(*parts: Any, n: int = 16) -> str:
    """sha256 over the canonical JSON of ``parts`` (first ``n`` hex digits)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(_canon(p).encode())
        h.update(b"\x00")
    return h.hexdigest()[:n]


def _take(table: dict, where: str, allowed: dict[str, Any]) -> dict:
    """Defaults of ``allowed`` overridden by ``table``; unknown keys raise."""
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table, got {type(table).__name__}")
    bad = sorted(set(table) - set(allowed))
    if bad:
        raise ConfigError(f"[{where}]: unknown key(s) {bad}; allowed: {sorted(allowed)}")
    out = copy.deepcopy(allowed)
    out.update(table)
    return out


# ----------------------------------------------------------------- sections
@dataclass
class IsotropyConfig:
    """``[isotropy]``: how each layer of each cell is measured (validity rules
    in docs/validity.md and :mod:`isofast.study.isotropy`)."""

    rows: Any = "auto"
    row_margin: float = 0.05
    massive: str = "exclude"
    massive_ratio: float = 100.0
    floors: bool = True
    min_cluster_size: int = 10
    min_window_rows: int = 10
    null_reps: int = 0
    k_min: int = 2
    k_max: int = 16
    threshold: float = 0.1
    sample_size: int | None = 2000
    silhouette_sample_size: int = 2000
    n_init: int = 1
    seed: int = 0
    pca_points: int = 300
    spectrum: int = 64

    def __post_init__(self):
        if not (self.rows == "auto" or (isinstance(self.rows, int) and not isinstance(self.rows, bool))):
            raise ConfigError(f'[isotropy] rows must be an int or "auto", got {self.rows!r}')
        if isinstance(self.rows, int) and self.rows < 4:
            raise ConfigError(f"[isotropy] rows must be ≥ 4, got {self.rows}")
        if not 0 <= self.row_margin < 1:
            raise ConfigError(f"[isotropy] row_margin must be in [0, 1), got {self.row_margin}")
        if self.massive not in ("exclude", "keep"):
            raise ConfigError(f"[isotropy] massive must be 'exclude' or 'keep', got {self.massive!r}")
        if not self.massive_ratio > 1:
            raise ConfigError(f"[isotropy] massive_ratio must be > 1, got {self.massive_ratio}")
        if self.min_cluster_size < 2:
            raise ConfigError(f"[isotropy] min_cluster_size must be ≥ 2, got {self.min_cluster_size}")
        if self.min_window_rows < 2:
            raise ConfigError(f"[isotropy] min_window_rows must be ≥ 2, got {self.min_window_rows}")
        if self.null_reps < 0:
            raise ConfigError(f"[isotropy] null_reps must be ≥ 0 (0 = automatic), got {self.null_reps}")
        if not 2 <= self.k_min <= self.k_max:
            raise ConfigError(f"[isotropy] need 2 ≤ k_min ≤ k_max, got {self.k_min}..{self.k_max}")
        if self.sample_size is not None and self.sample_size <= 0:
            self.sample_size = None


@dataclass
class ForecastConfig:
    n_samples: int = 8
    quantiles: list = field(default_factory=lambda: [0.1, 0.9])
    point: str = "median"

    def __post_init__(self):
        if self.n_samples < 1:
            raise ConfigError(f"[forecast] n_samples must be ≥ 1, got {self.n_samples}")
        if self.point not in ("median", "mean"):
            raise ConfigError(f"[forecast] point must be 'median' or 'mean', got {self.point!r}")
        if len(self.quantiles) != 2 or not 0 < self.quantiles[0] < self.quantiles[1] < 1:
            raise ConfigError(f"[forecast] quantiles must be two levels in (0, 1), got {self.quantiles}")


@dataclass
class DatasetConfig:
    name: str
    context: int
    horizon: int
    source: str = "registry"
    n_test: int = 4
    column: str = ""
    path: str = ""
    kernel: str = ""
    length: int = 0
    n_train_series: int = 32

    def __post_init__(self):
        if self.source not in DATA_SOURCES:
            raise ConfigError(f"dataset {self.name!r}: source must be one of {DATA_SOURCES}, got {self.source!r}")
        if self.context < 2 or self.horizon < 1:
            raise ConfigError(f"dataset {self.name!r}: need context ≥ 2 and horizon ≥ 1")
        if self.n_test < 1:
            raise ConfigError(f"dataset {self.name!r}: n_test must be ≥ 1")
        if self.source == "kernelsynth":
            if not self.kernel:
                self.kernel = self.name
            if self.length <= 0:
                self.length = self.context + self.horizon
            if self.length < self.context + self.horizon:
                raise ConfigError(
                    f"dataset {self.name!r}: length {self.length} < context + horizon ({self.context + self.horizon})"
                )
        if self.source == "csv" and not self.path:
            raise ConfigError(f"dataset {self.name!r}: source 'csv' needs path")

    def key(self) -> dict:
        return asdict(self)


@dataclass
class PerturbationConfig:
    name: str
    kind: str = "none"
    level: float = 0.0
    fraction: float = 1.0

    def __post_init__(self):
        if self.kind not in PERTURBATION_KINDS:
            raise ConfigError(f"perturbation {self.name!r}: kind must be one of {PERTURBATION_KINDS}")
        if self.kind == "noise" and not self.level >= 0:
            raise ConfigError(f"perturbation {self.name!r}: level must be ≥ 0")
        if self.kind == "shorten" and not 0 < self.fraction <= 1:
            raise ConfigError(f"perturbation {self.name!r}: fraction must be in (0, 1]")

    def key(self) -> dict:
        return asdict(self)


@dataclass
class ModelConfig:
    """One model of the grid; ``options`` holds the kind-specific keys."""

    name: str
    kind: str
    model: str = ""
    path: str = ""
    layers: Any = "all"
    rows: Any = None  # None → [isotropy] rows; an int or "auto" for this model
    n_windows: int = 0  # test windows of each dataset this model forecasts (0 = all n_test)
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.rows is not None and not (self.rows == "auto" or (isinstance(self.rows, int) and self.rows >= 4)):
            raise ConfigError(f'model {self.name!r}: rows must be an int ≥ 4 or "auto", got {self.rows!r}')
        if not isinstance(self.n_windows, int) or self.n_windows < 0:
            raise ConfigError(f"model {self.name!r}: n_windows must be an int ≥ 0, got {self.n_windows!r}")
        if self.kind not in MODEL_KINDS:
            raise ConfigError(f"model {self.name!r}: kind must be one of {MODEL_KINDS}, got {self.kind!r}")
        if not (
            self.layers == "all" or (isinstance(self.layers, list) and all(isinstance(i, int) for i in self.layers))
        ):
            raise ConfigError(f"model {self.name!r}: layers must be 'all' or a list of ints")
        if self.kind == "lm" and not (self.model or self.path):
            raise ConfigError(f"model {self.name!r}: kind 'lm' needs model or path")
        if self.kind == "tsfm" and not (self.model or self.path):
            raise ConfigError(f"model {self.name!r}: kind 'tsfm' needs model = \"FAMILY:PATH\" (or path)")

    def key(self) -> dict:
        return asdict(self)


@dataclass
class StatsConfig:
    methods: list = field(default_factory=lambda: ["spearman", "kendall"])
    targets: list = field(default_factory=lambda: ["nmse"])
    statistics: list = field(default_factory=lambda: list(STATISTICS))
    n_boot: int = 2000
    n_perm: int = 2000
    ci: float = 0.95
    ci_method: str = "bca"
    selection_fraction: float = 0.5
    seed: int = 0
    alpha: float = 0.05

    def __post_init__(self):
        bad = [m for m in self.methods if m not in ("spearman", "kendall")]
        if bad or not self.methods:
            raise ConfigError(f"[stats] methods must be a subset of ['spearman', 'kendall'], got {self.methods}")
        if self.n_boot < 1000 or self.n_perm < 1000:
            raise ConfigError("[stats] n_boot and n_perm must be ≥ 1000 (honest CIs and p-values)")
        if not 0 < self.ci < 1:
            raise ConfigError("[stats] ci must be in (0, 1)")
        if self.ci_method not in ("bca", "percentile"):
            raise ConfigError("[stats] ci_method must be 'bca' or 'percentile'")
        if not 0 < self.selection_fraction < 1:
            raise ConfigError("[stats] selection_fraction must be in (0, 1)")


@dataclass
class CausalTest:
    model: str
    layer: int
    method: str = "abtt"
    n_components: int = 1
    perturbation: str = ""
    datasets: list = field(default_factory=list)
    keep_mean: bool = False

    def __post_init__(self):
        if self.method not in CAUSAL_METHODS:
            raise ConfigError(f"causal test: method must be one of {CAUSAL_METHODS}, got {self.method!r}")
        if self.n_components < 0:
            raise ConfigError("causal test: n_components must be ≥ 0")

    @property
    def label(self) -> str:
        m = self.method if self.method == "cluster_whiten" else f"{self.method}{self.n_components}"
        return f"{self.model}/L{self.layer}/{m}" + (
            "+mean" if self.keep_mean and self.method != "cluster_whiten" else ""
        )


@dataclass
class CausalConfig:
    enabled: bool = True
    tests: list = field(default_factory=list)


@dataclass
class ReportConfig:
    enabled: bool = True
    forecast_windows: int = 2
    pca_datasets: int = 2


@dataclass
class StudyConfig:
    name: str
    seed: int
    threads: int
    cache: str
    isotropy: IsotropyConfig
    forecast: ForecastConfig
    datasets: list
    perturbations: list
    models: list
    stats: StatsConfig
    causal: CausalConfig
    report: ReportConfig
    source: str = ""
    adaptation: Any = None  # isofast.adapt.config.AdaptationConfig when [adaptation] is given

    def to_dict(self) -> dict:
        return asdict(self)

    def model(self, name: str) -> ModelConfig:
        for m in self.models:
            if m.name == name:
                return m
        raise ConfigError(f"no model named {name!r}; models: {[m.name for m in self.models]}")

    def dataset(self, name: str) -> DatasetConfig:
        for d in self.datasets:
            if d.name == name:
                return d
        raise ConfigError(f"no dataset named {name!r}")

    def perturbation(self, name: str) -> PerturbationConfig:
        for p in self.perturbations:
            if p.name == name:
                return p
        raise ConfigError(f"no perturbation named {name!r}")


# ------------------------------------------------------------------ parsing
def _build(cls, table: dict, where: str):
    """Instantiate dataclass ``cls`` from ``table`` (defaults filled, unknown keys refused)."""
    allowed: dict[str, Any] = {}
    required = []
    for k, f in cls.__dataclass_fields__.items():
        if f.default is not MISSING:
            allowed[k] = f.default
        elif f.default_factory is not MISSING:
            allowed[k] = f.default_factory()
        else:
            allowed[k] = None
            required.append(k)
    vals = _take(table, where, allowed)
    missing = [k for k in required if vals.get(k) is None]
    if missing:
        raise ConfigError(f"[{where}]: missing required key(s) {missing}")
    samples = {int: 0, float: 0.0, str: "", bool: False, "int": 0, "float": 0.0, "str": "", "bool": False}
    for k, v in list(vals.items()):
        ftype = cls.__dataclass_fields__[k].type
        if ftype == "Any":  # checked by the dataclass itself (e.g. an int or "auto")
            continue
        proto = allowed[k] if allowed[k] is not None else samples.get(ftype)
        vals[k] = _typed(v, proto, f"[{where}] {k}")
    return cls(**vals)


def _typed(value, default, where: str):
    """Check a value against the type of its default (ints are accepted as floats)."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, (str, list)):
        ok = isinstance(value, type(default))
    else:
        ok = True
    if not ok:
        raise ConfigError(f"{where} must be {type(default).__name__}, got {value!r}")
    return value


_MODEL_KEYS = {"name", "kind", "model", "path", "layers", "rows", "n_windows"}


def _parse_model(t: dict, i: int) -> ModelConfig:
    if not isinstance(t, dict):
        raise ConfigError(f"[[models]] #{i + 1} must be a table")
    if "name" not in t or "kind" not in t:
        raise ConfigError(f"[[models]] #{i + 1}: 'name' and 'kind' are required")
    base = {k: t[k] for k in _MODEL_KEYS if k in t}
    options = {k: v for k, v in t.items() if k not in _MODEL_KEYS}
    options = check_options(t["kind"], options, t["name"])
    return ModelConfig(options=options, **base)


def parse_config(data: dict, source: str = "") -> StudyConfig:
    """Validate a parsed TOML document (a dict) and build the :class:`StudyConfig`."""
    if not isinstance(data, dict):
        raise ConfigError("a study configuration is a TOML table")
    top = set(data) - {
        "study",
        "isotropy",
        "forecast",
        "datasets",
        "perturbations",
        "models",
        "stats",
        "causal",
        "report",
        "adaptation",
    }
    if top:
        raise ConfigError(f"unknown top-level section(s) {sorted(top)}")
    st = _take(
        data.get("study", {}), "study", {"name": "study", "seed": 0, "threads": 1, "cache": "", "description": ""}
    )
    iso = _build(IsotropyConfig, data.get("isotropy", {}), "isotropy")
    fc = _build(ForecastConfig, data.get("forecast", {}), "forecast")
    ds_t = data.get("datasets")
    if not ds_t:
        raise ConfigError("a study needs at least one [[datasets]] table")
    datasets = [_build(DatasetConfig, t, f"datasets #{i + 1}") for i, t in enumerate(ds_t)]
    pt_t = data.get("perturbations") or [{"name": "clean"}]
    perts = [_build(PerturbationConfig, t, f"perturbations #{i + 1}") for i, t in enumerate(pt_t)]
    md_t = data.get("models")
    if not md_t:
        raise ConfigError("a study needs at least one [[models]] table")
    models = [_parse_model(t, i) for i, t in enumerate(md_t)]
    for what, items in (("datasets", datasets), ("perturbations", perts), ("models", models)):
        names = [x.name for x in items]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"duplicate {what} name(s): {dup}")
    stats = _build(StatsConfig, data.get("stats", {}), "stats")
    ca_t = dict(data.get("causal", {}))
    tests_t = ca_t.pop("tests", [])
    causal = _build(CausalConfig, ca_t, "causal")
    causal.tests = [_build(CausalTest, t, f"causal.tests #{i + 1}") for i, t in enumerate(tests_t)]
    for t in causal.tests:
        if t.model not in [m.name for m in models]:
            raise ConfigError(f"causal test {t.label}: no model named {t.model!r}")
        if not t.perturbation:
            t.perturbation = perts[0].name
        if t.perturbation not in [p.name for p in perts]:
            raise ConfigError(f"causal test {t.label}: no perturbation named {t.perturbation!r}")
        bad = [d for d in t.datasets if d not in [x.name for x in datasets]]
        if bad:
            raise ConfigError(f"causal test {t.label}: unknown dataset(s) {bad}")
    rep = _build(ReportConfig, data.get("report", {}), "report")
    adaptation = None
    if "adaptation" in data:  # the fine-tuning experiment (isofast.adapt), run after the grid
        from isofast.adapt.config import parse as parse_adaptation

        adaptation = parse_adaptation(data["adaptation"])
    return StudyConfig(
        name=str(st["name"]),
        seed=int(st["seed"]),
        threads=int(st["threads"]),
        cache=str(st["cache"]),
        isotropy=iso,
        forecast=fc,
        datasets=datasets,
        perturbations=perts,
        models=models,
        stats=stats,
        causal=causal,
        report=rep,
        source=source,
        adaptation=adaptation,
    )


def bundled_config_path(name: str) -> Path:
    """Path of a bundled configuration (``"default"`` or ``"tiny"``)."""
    if name not in BUNDLED_CONFIGS:
        raise ConfigError(f"unknown bundled config {name!r}; choose one of {BUNDLED_CONFIGS}")
    return Path(__file__).with_name("configs") / f"{name}.toml"


def load_config(config: Any) -> StudyConfig:
    """A :class:`StudyConfig` from a path, a bundled name, a dict or a config.

    Strings name a TOML file, or a bundled config (``"default"``, ``"tiny"``)
    when no such file exists.
    """
    if isinstance(config, StudyConfig):
        return config
    if isinstance(config, dict):
        return parse_config(copy.deepcopy(config), source="<dict>")
    p = Path(str(config)).expanduser()
    if not p.is_file():
        if str(config) in BUNDLED_CONFIGS:
            p = bundled_config_path(str(config))
        else:
            raise FileNotFoundError(
                f"no study configuration at {str(config)!r} (bundled: {', '.join(BUNDLED_CONFIGS)})"
            )
    try:
        with open(p, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from exc
    return parse_config(data, source=str(p))
