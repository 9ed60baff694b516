"""Model specs ``FAMILY:PATH``, the family registry and folder detection.

A spec names a time-series foundation model in a local folder:

* ``"chronos-bolt:/models/bolt-small"`` — the family, then the folder;
* ``"/models/bolt-small"`` — a bare folder; the family is detected from its
  ``config.json`` (:func:`detect_family`);
* a bundled name (``smollm2``, ``tiny-llama``…) is *not* a TSFM spec; those
  keep going through :func:`isofast.models.load_model`.

Nothing here imports torch or a TSFM package: parsing and detection read
only ``config.json``, so the CLI can refuse a bad spec before loading
anything.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from isofast.errors import ArgumentTypeError, CheckpointError, InputError


@dataclass(frozen=True)
class Family:
    """One supported family: its name, the module of its adapter, the
    packages it imports and how to install them."""

    name: str
    module: str  # isofast.tsfm.<module>
    adapter: str  # class name in that module
    packages: tuple  # import names the adapter needs
    install: str  # what to tell a user whose packages are missing
    description: str


_CHRONOS = "pip install 'isofast[tsfm]' (or: pip install chronos-forecasting)"
_TIMESFM = "pip install 'isofast[tsfm]' (or: pip install timesfm)"
_TRANSFORMERS = "pip install 'isofast[torch]' (transformers ≥ 5)"
_UNI2TS = (
    "the --no-deps recipe in docs/models.md (bash scripts/install_tsfm_nodeps.sh PYTHON): "
    "pip install --no-deps uni2ts==2.0.0 gluonts==0.17.0 && pip install lightning 'hydra-core==1.3.*' "
    "jaxtyping jax jaxlib"
)
_MOMENT = (
    "the --no-deps recipe in docs/models.md (bash scripts/install_tsfm_nodeps.sh PYTHON): "
    "pip install --no-deps momentfm==0.1.4"
)

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "chronos",
            "chronos",
            "ChronosAdapter",
            ("chronos",),
            _CHRONOS,
            "Chronos (T5 encoder-decoder over 4096 mean-scaled value bins; softmax head)",
        ),
        Family(
            "chronos-bolt",
            "chronos",
            "ChronosBoltAdapter",
            ("chronos",),
            _CHRONOS,
            "Chronos-Bolt (T5 over patches of 16, direct quantile head)",
        ),
        Family(
            "chronos-2",
            "chronos",
            "Chronos2Adapter",
            ("chronos",),
            _CHRONOS,
            "Chronos-2 (encoder with time and group attention over patches)",
        ),
        # transformers' layout needs only transformers; the package layout checks
        # for the timesfm package itself (isofast.tsfm.timesfm)
        Family(
            "timesfm-2.5",
            "timesfm",
            "TimesFM25Adapter",
            ("transformers",),
            _TIMESFM,
            "TimesFM 2.5 (decoder over patches of 32; the timesfm package's torch backend, or transformers' "
            "TimesFm2_5ModelForPrediction for a folder in transformers' layout)",
        ),
        Family(
            "timesfm",
            "timesfm",
            "TimesFMAdapter",
            ("transformers",),
            _TRANSFORMERS,
            "TimesFM 1.0/2.0 (transformers' TimesFmModelForPrediction)",
        ),
        Family(
            "patchtst",
            "patchtst",
            "PatchTSTAdapter",
            ("transformers",),
            _TRANSFORMERS,
            "PatchTST (transformers' PatchTSTForPrediction)",
        ),
        Family(
            "moirai",
            "moirai",
            "MoiraiAdapter",
            ("uni2ts",),
            _UNI2TS,
            "Moirai 1.x (uni2ts MoiraiModule: masked encoder over multi-size patches)",
        ),
        Family(
            "moirai-2",
            "moirai",
            "Moirai2Adapter",
            ("uni2ts",),
            _UNI2TS,
            "Moirai 2.0 (uni2ts Moirai2Module: decoder-only, quantile head)",
        ),
        Family(
            "moment",
            "moment",
            "MomentAdapter",
            ("momentfm",),
            _MOMENT,
            "MOMENT (T5 encoder over 64 patches of 8 values)",
        ),
    )
}


def family(name: str) -> Family:
    try:
        return FAMILIES[name.strip().lower()]
    except KeyError:
        raise InputError(f"unknown model family {name!r}; known families: {', '.join(FAMILIES)}") from None


def check_packages(fam: Family) -> None:
    """``MissingPackageError`` naming the install route when a package is absent."""
    import importlib.util

    from isofast.errors import MissingPackageError

    for pkg in fam.packages:
        if importlib.util.find_spec(pkg) is None:
            raise MissingPackageError(
                f"model family {fam.name!r} needs the package {pkg!r}, which is not installed; install it with {fam.install}"
            )


@dataclass(frozen=True)
class ModelSpec:
    family: str
    path: Path

    def __str__(self) -> str:
        return f"{self.family}:{self.path}"


def split_spec(spec) -> tuple[str | None, str]:
    """``"fam:path"`` → ``("fam", "path")`` when ``fam`` is a known family,
    else ``(None, spec)`` (a bare path; Windows drive letters stay paths)."""
    if isinstance(spec, os.PathLike):
        return None, os.fspath(spec)
    if not isinstance(spec, str):
        raise ArgumentTypeError(f"a model spec must be a string or a path, got {type(spec).__name__}")
    head, sep, tail = spec.partition(":")
    if sep and head.strip().lower() in FAMILIES:
        return head.strip().lower(), tail
    return None, spec


def read_config(folder: Path) -> dict:
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise CheckpointError(f"{folder} holds no config.json: not a model checkpoint folder")
    try:
        doc = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{cfg}: cannot read it as JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise CheckpointError(f"{cfg}: expected a JSON object, found {type(doc).__name__}")
    return doc


def detect_family(folder) -> str | None:
    """The family a checkpoint folder holds, from its ``config.json``, or None.

    Rules (first match wins): ``chronos_pipeline_class`` (Chronos pipelines
    record ``ChronosPipeline``, ``ChronosBoltPipeline`` or
    ``Chronos2Pipeline``); a ``chronos_config`` with a T5 architecture
    (older Chronos-T5 folders); ``architectures`` naming a Chronos, TimesFM
    or PatchTST class; ``model_type`` (``timesfm``, ``timesfm2_5``,
    ``patchtst``); and the keys the uni2ts, timesfm and momentfm packages
    write (see :mod:`isofast.tsfm` family modules)."""
    folder = Path(folder)
    cfg = read_config(folder)
    return detect_from_config(cfg)


def detect_from_config(cfg: dict) -> str | None:
    pipe = cfg.get("chronos_pipeline_class")
    archs = [str(a) for a in (cfg.get("architectures") or [])]
    if pipe == "ChronosPipeline":
        return "chronos"
    if pipe == "ChronosBoltPipeline":
        return "chronos-bolt"
    if pipe == "Chronos2Pipeline":
        return "chronos-2"
    if any("ChronosBolt" in a for a in archs):
        return "chronos-bolt"
    if any(a.startswith("Chronos2") for a in archs):
        return "chronos-2"
    if cfg.get("chronos_config") is not None:
        return "chronos"
    mt = str(cfg.get("model_type", "")).lower()
    if mt in ("timesfm2_5", "timesfm_2p5") or any(a.startswith("TimesFm2_5") for a in archs):
        return "timesfm-2.5"
    if mt == "timesfm" or any(a.startswith("TimesFm") for a in archs):
        return "timesfm"
    if mt == "patchtst" or any(a.startswith("PatchTST") for a in archs):
        return "patchtst"
    for name in ("timesfm-2.5", "moirai-2", "moirai", "moment"):
        mod = _family_module(name)
        det = getattr(mod, "detect_config", None) if mod is not None else None
        if det is not None and det(cfg) == name:
            return name
    return None


def _family_module(name: str):
    """The family module when it imports without its optional package (the
    modules import their packages lazily, inside functions)."""
    import importlib

    try:
        return importlib.import_module(f"isofast.tsfm.{FAMILIES[name].module}")
    except ImportError:  # pragma: no cover - a family module that is not written yet
        return None


def looks_like_tsfm(spec) -> bool:
    """True for ``FAMILY:PATH`` and for a folder whose config.json names a
    TSFM family (cheap: no model is loaded)."""
    try:
        fam, raw = split_spec(spec)
    except ArgumentTypeError:
        return False
    if fam is not None:
        return True
    p = Path(raw).expanduser()
    if not (p / "config.json").is_file():
        return False
    try:
        return detect_family(p) is not None
    except CheckpointError:
        return False


def parse_spec(spec) -> ModelSpec:
    """``FAMILY:PATH`` or a bare folder → :class:`ModelSpec` (the folder must
    exist; a bare folder's family is detected)."""
    fam, raw = split_spec(spec)
    if not raw:
        raise InputError(f"model spec {spec!r} names no folder: use FAMILY:PATH")
    p = Path(raw).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"no such model folder: {raw!r} (from the model spec {spec!r})")
    if not p.is_dir():
        raise CheckpointError(f"{raw!r} is not a folder: a {fam or 'TSFM'} checkpoint is a folder with config.json")
    if fam is None:
        fam = detect_family(p)
        if fam is None:
            raise CheckpointError(
                f"{p}/config.json names no supported time-series family; pass FAMILY:PATH with one of "
                f"{', '.join(FAMILIES)}"
            )
    return ModelSpec(fam, p)
