"""The model kinds of a study and their option tables.

Each ``[[models]]`` entry of a study configuration names a ``kind``; the keys
it may carry beside the common ones (name, kind, model, path, layers, rows,
n_windows), with their defaults, are the tables here. The configuration
parser (:mod:`isofast.study.config`) checks options against them and the
model modules (:mod:`isofast.study.models_ts`, :mod:`isofast.study.models_lm`,
:mod:`isofast.study.models_tsfm`) read them; neither imports the other for
this, so the tables have their own home.
"""

from __future__ import annotations

from typing import Any

from isofast.errors import ConfigError

TSFM_DEFAULTS: dict[str, Any] = {
    "positions": "all",  # "all" tokens of the captured stack, or "values" (tokens that read values)
    "batch_size": 8,
    "device": "cpu",  # "cpu", "cuda" or "auto"
    # Chronos-2, Moirai 1.x and MOMENT: future tokens capture's prefill appends
    # (0: the family's default — the package's own embedding call; k = ⌈H /
    # output patch⌉ records the rows the forecast at the study's horizon
    # computes, in the forecast's own pass)
    "future_tokens": 0,
}


def check_tsfm_options(options: dict, name: str) -> dict:
    bad = sorted(set(options) - set(TSFM_DEFAULTS))
    if bad:
        raise ConfigError(f"model {name!r} (tsfm): unknown key(s) {bad}; allowed: {sorted(TSFM_DEFAULTS)}")
    out = dict(TSFM_DEFAULTS)
    out.update(options)
    if out["positions"] not in ("all", "values"):
        raise ConfigError(f"model {name!r} (tsfm): positions must be 'all' or 'values', got {out['positions']!r}")
    k = out["future_tokens"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ConfigError(
            f"model {name!r} (tsfm): future_tokens must be an integer ≥ 0 (0: the family's default), got {k!r}"
        )
    return out


PATCHTST_DEFAULTS: dict[str, Any] = {
    "patch_length": 16,
    "patch_stride": 8,
    "d_model": 32,
    "num_layers": 2,
    "num_heads": 4,
    "ffn_dim": 128,
    "dropout": 0.1,
    "pooling_type": "mean",
    "lr": 1e-4,
    "epochs": 10,
    "batch_size": 32,
    "max_train_windows": 2048,
}

CHRONOS_DEFAULTS: dict[str, Any] = {
    "d_model": 64,
    "d_ff": 256,
    "num_layers": 2,
    "num_heads": 4,
    "d_kv": 16,
    "n_tokens": 4096,
    "context_length": 96,
    "min_context": 16,
    "prediction_length": 24,
    "train_series": 512,
    "train_steps": 300,
    "batch_size": 32,
    "lr": 1e-3,
    "dropout": 0.0,
    "tie_word_embeddings": True,
    "max_kernels": 3,
    "top_k": 50,
    "temperature": 1.0,
}

LM_DEFAULTS: dict[str, Any] = {
    "serializer": "llmtime",
    "positions": "all",
    "batch_size": 4,
    "dtype": "auto",  # bfloat16 on a CUDA device that supports it, else float32 (models_lm.resolve_device_dtype)
    "device": "auto",  # CUDA when present, else CPU
    "forecast": {},
}


def check_options(kind: str, options: dict, name: str) -> dict:
    """Kind-specific model keys with defaults; unknown keys raise ``ConfigError``."""
    if kind == "tsfm":
        return check_tsfm_options(options, name)
    table = {"patchtst": PATCHTST_DEFAULTS, "chronos-t5": CHRONOS_DEFAULTS, "lm": LM_DEFAULTS}.get(kind)
    if table is None:
        raise ConfigError(f"model {name!r}: unknown kind {kind!r}")
    bad = sorted(set(options) - set(table))
    if bad:
        raise ConfigError(f"model {name!r} ({kind}): unknown key(s) {bad}; allowed: {sorted(table)}")
    out = dict(table)
    out.update(options)
    return out
