"""Adaptation: fine-tuning LMs on numeric series with isotropy tracked,
predicted and regularised (docs/adaptation.md).

* :mod:`isofast.adapt.data` — LLMTime training windows, value-token loss masks;
* :mod:`isofast.adapt.finetune` — full and LoRA fine-tuning (seeded);
* :mod:`isofast.adapt.tracking` — :class:`IsotropyCallback` (a
  ``transformers.TrainerCallback``) and :class:`IsotropyTracker` (custom loops);
* :mod:`isofast.adapt.regularizers` — IsoScore* and var(log Z) penalties;
* :mod:`isofast.adapt.experiment` — does isotropy predict / track / drive the
  gain from adaptation? (``[adaptation]`` in the study config);
* :mod:`isofast.adapt.report` — the report's "Adaptation" section.

Names are imported lazily (torch is only needed when used).
"""

from importlib import import_module as _import_module

_LAZY = {
    "IsotropyCallback": "isofast.adapt.tracking",
    "IsotropyTracker": "isofast.adapt.tracking",
    "Regularizer": "isofast.adapt.regularizers",
    "TrainingSet": "isofast.adapt.data",
    "finetune": "isofast.adapt.finetune",
    "AdaptationConfig": "isofast.adapt.config",
    "run_experiment": "isofast.adapt.experiment",
    "adapt": "isofast.adapt.run",
}


def __getattr__(name: str):
    try:
        mod = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'isofast.adapt' has no attribute {name!r}") from None
    value = getattr(_import_module(mod), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = list(_LAZY)
