"""Time-series foundation models from their own packages: load a local
checkpoint, capture every layer, forecast, and (Chronos) read the softmax head.

    >>> m = isofast.load_tsfm("chronos-bolt:/models/chronos-bolt-small")  # doctest: +SKIP
    >>> emb = m.embed(series, layers="all")                                # doctest: +SKIP
    >>> fc = m.forecast(series, horizon=64)                                # doctest: +SKIP
    >>> fc, emb, info = m.forecast_with_capture(series, 64, layers="all")  # doctest: +SKIP

``forecast_with_capture`` records capture's pass from the forecast's own
first pass of the stack where the family allows it (docs/models.md, "One
pass"), else runs the separate prefill.

Families (``isofast.tsfm.FAMILIES``; docs/models.md for loading, layers,
serializers and licences): ``chronos``, ``chronos-bolt``, ``chronos-2``
(chronos-forecasting), ``timesfm-2.5`` (timesfm, or transformers' layout),
``timesfm`` (1.0/2.0) and ``patchtst`` (transformers), ``moirai`` and
``moirai-2`` (uni2ts), ``moment`` (momentfm).

Specs: ``FAMILY:PATH``, or a bare ``PATH`` whose ``config.json`` names the
family (:func:`isofast.tsfm.spec.detect_family`). Nothing is downloaded:
``HF_HUB_OFFLINE=1`` is set before any load.
"""

from __future__ import annotations

import importlib

from isofast.tsfm.base import SITES, FirstPassTap, FoldPlan, LayerTap, Stack, TSFMAdapter, TSFMEmbedding, TSFMForecast
from isofast.tsfm.spec import FAMILIES, ModelSpec, detect_family, looks_like_tsfm, parse_spec

__all__ = [
    "FAMILIES",
    "SITES",
    "FirstPassTap",
    "FoldPlan",
    "LayerTap",
    "ModelSpec",
    "Stack",
    "TSFMAdapter",
    "TSFMEmbedding",
    "TSFMForecast",
    "adapter_class",
    "build_random",
    "detect_family",
    "load_tsfm",
    "looks_like_tsfm",
    "parse_spec",
]


def adapter_class(family: str) -> type[TSFMAdapter]:
    """The adapter class of a family (its package is checked first:
    ``MissingPackageError`` names the install route)."""
    from isofast.tsfm.spec import check_packages
    from isofast.tsfm.spec import family as _family

    fam = _family(family)
    check_packages(fam)
    mod = importlib.import_module(f"isofast.tsfm.{fam.module}")
    return getattr(mod, fam.adapter)


def load_tsfm(
    spec, *, device: str | None = "cpu", dtype: str = "float32", future_tokens: int | None = None
) -> TSFMAdapter:
    """Load ``FAMILY:PATH`` (or a bare folder) as a :class:`TSFMAdapter`.

    ``device`` None → cuda when present, else cpu. ``future_tokens`` (Chronos-2,
    Moirai 1.x and MOMENT only): the future tokens capture's prefill appends
    (:meth:`TSFMAdapter.set_future_tokens`; default the package's own
    embedding call).
    Errors: ``FileNotFoundError`` (no folder), ``CheckpointError`` (not a
    checkpoint of that family, or layers/width that disagree with its config),
    ``MissingPackageError``, ``InputError`` (``future_tokens`` for another
    family, or out of range)."""
    if isinstance(spec, TSFMAdapter):
        if future_tokens is not None:
            spec.set_future_tokens(future_tokens)
        return spec
    from isofast.models import resolve_device

    ms = parse_spec(spec)
    cls = adapter_class(ms.family)
    dev = str(resolve_device(device))
    ad = cls.load(ms.path, device=dev, dtype=dtype)
    ad.check_structure()
    if future_tokens is not None:
        ad.set_future_tokens(future_tokens)
    return ad


def build_random(family: str, folder, *, seed: int = 0, **size):
    """Write a small random-init checkpoint of ``family`` to ``folder`` with
    the family's own config class and ``save_pretrained`` (the on-disk layout
    of real checkpoints). For tests and examples; returns the folder."""
    return adapter_class(family).build_random(folder, seed=seed, **size)
