"""Serializers: how a numeric window becomes model input, and back, exactly.

* :class:`LLMTimeSerializer` — digit strings for text LLMs (presets ``gpt``,
  ``llama``), module :mod:`isofast.serializers.llmtime`;
* :class:`ChronosSerializer` — mean-scaled uniform bins, 4096 token ids,
  module :mod:`isofast.serializers.chronos`;
* :class:`PatchSerializer` — normalised patches (16/8) for patch-based models,
  module :mod:`isofast.serializers.patching`.

Windowing (context/horizon splits) is :mod:`isofast.data.windows`, not here.
"""

from __future__ import annotations

from isofast.serializers.base import ROLES, as_series
from isofast.serializers.chronos import ChronosDecoding, ChronosSerializer, IdEncoding
from isofast.serializers.llmtime import (
    LLMTimeDecoding,
    LLMTimeSerializer,
    Scaler,
    TextEncoding,
    fit_scaler,
)
from isofast.serializers.patching import PatchEncoding, PatchSerializer

Serializer = LLMTimeSerializer | ChronosSerializer | PatchSerializer

__all__ = [
    "ROLES",
    "ChronosDecoding",
    "ChronosSerializer",
    "IdEncoding",
    "LLMTimeDecoding",
    "LLMTimeSerializer",
    "PatchEncoding",
    "PatchSerializer",
    "Scaler",
    "Serializer",
    "TextEncoding",
    "as_series",
    "fit_scaler",
    "get_serializer",
]


def get_serializer(spec: str | Serializer | None = "llmtime") -> Serializer:
    """Resolve a serializer name or pass an instance through.

    Names: ``"llmtime"`` (= ``"llmtime:llama"``), ``"llmtime:gpt"``,
    ``"llmtime:llama"``, ``"chronos"``, ``"patch"``.
    """
    if isinstance(spec, (LLMTimeSerializer, ChronosSerializer, PatchSerializer)):
        return spec
    if spec is None:
        spec = "llmtime"
    if not isinstance(spec, str):
        raise TypeError(f"serializer must be a name or a serializer object, got {type(spec).__name__}")
    key = spec.strip().lower()
    if key in ("llmtime", "llmtime:llama", "llama"):
        return LLMTimeSerializer.preset("llama")
    if key in ("llmtime:gpt", "gpt"):
        return LLMTimeSerializer.preset("gpt")
    if key == "chronos":
        return ChronosSerializer()
    if key in ("patch", "patching"):
        return PatchSerializer()
    raise ValueError(
        f"unknown serializer {spec!r}; choose 'llmtime' (= 'llmtime:llama'), "
        "'llmtime:gpt', 'chronos' or 'patch', or pass a serializer object"
    )
