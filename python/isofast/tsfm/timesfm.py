"""TimesFM 2.5 (the ``timesfm`` package's torch backend, or transformers'
``TimesFm2_5ModelForPrediction``) and TimesFM 1.0/2.0 (transformers'
``TimesFmModelForPrediction``). Das et al. 2024, "A decoder-only foundation
model for time-series forecasting" (ICML); code Apache-2.0 (google-research/
timesfm, and transformers).

The packages are imported inside the functions, so this module imports
without them (family detection and error messages need no package).

TimesFM 2.5 — two on-disk layouts, one family name ``timesfm-2.5``
-----------------------------------------------------------------
* **The timesfm package's layout** (``google/timesfm-2.5-200m-pytorch``;
  ``TimesFM_2p5_200M_torch.save_pretrained``): ``model.safetensors``,
  ``README.md`` and a ``config.json`` that holds only the wrapper's
  ``__init__`` arguments — ``{"torch_compile": …}`` (huggingface_hub's
  ``ModelHubMixin`` records the jsonable init arguments; the sizes are a
  class attribute, ``TimesFM_2p5_200M_torch_module.config``, and are not
  written). :func:`detect_config` recognises that config; a folder whose
  config.json names no family but whose weights carry the package's tensor
  names (``tokenizer.*``, ``stacked_xf.*``) is read as this layout too when
  the spec says ``timesfm-2.5:PATH``.
  Because the layout records no sizes, isofast reads them from the
  *shapes* in the safetensors header (patch = tokenizer input / 2, width,
  layers, heads = width / ``per_dim_scale`` length, ff width, output patch
  and quantile-head lengths / 10); what no tensor shows (activations swish,
  RMS norms, rotary positions, the 9 decile levels, decode index 5) is taken
  from ``TimesFM_2p5_200M_Definition``. For the 200M checkpoint the inferred
  definition *is* ``TimesFM_2p5_200M_Definition()`` and the package's own
  ``TimesFM_2p5_200M_torch_module`` is built; for other sizes a subclass with
  the inferred ``config`` (the package's own extension point). The weights
  are loaded by the package's ``TimesFM_2p5_200M_torch_module.load_checkpoint``
  (``safetensors.load_file`` + ``load_state_dict(strict=True)``) and wrapped
  in a ``TimesFM_2p5_200M_torch`` created without its ``__init__`` (which
  would first build a full 200M module) and ``torch_compile=False`` — the
  object ``TimesFM_2p5_200M_torch.from_pretrained(folder, torch_compile=False)``
  returns for the 200M checkpoint, which is how real users load it.
  Runs in float32 only (the package builds its statistics in float32).
* **transformers' layout** (``TimesFm2_5ModelForPrediction.save_pretrained``,
  ``model_type`` ``timesfm2_5``): loaded with ``from_pretrained``
  (safetensors, checked against config.json).

The backend is chosen from the folder's config and recorded in
``describe()["backend"]`` and every forecast's ``settings``.

Numbers → inputs (the same in both implementations): the context is cut to
the last ``max_context`` values (package: 16384, the model's
``context_limit``, or ``load(max_context=…)``; transformers:
``config.context_length``); left-padded with zeros to a multiple of the
patch (32 in the real model), mask 1 on the padding; global normalisation
``(x − mean) / std`` over the padded row (``torch.mean``/``torch.std``, the
padding zeros included — package ``normalize_inputs=True``; transformers
always); cut into patches; per-patch *running* (Welford) mean and
population std over the observed values up to and including each patch;
each patch RevIN-normalised with its running statistics (σ < 1e-6 → 1),
padding → 0; input = concat(patch, mask) (2 × patch) → the ``tokenizer``
residual block (transformers: ``input_ff_layer``) → d_model. Decoder
layers: causal self-attention over patches (RoPE with positions shifted by
the number of padding patches; padding patches masked as keys; qk RMS norm;
learned per-dimension query scale) and a feed-forward block, each with pre-
and post- RMS norms. Because the RevIN step is affine-invariant and padding
patches are masked, the rows of real patches do not depend on how much
padding precedes them (up to float rounding).
Token layout: ``TokenSerializer(pad="left", patch_len=patch, max_context=…)``;
a patch made only of padding is a ``pad`` token (role ``other``).

Layers and sites. Package: blocks ``model.stacked_xf[i]`` (``Transformer``,
returns ``(hidden, DecodeCache | None)``); attention site
``stacked_xf[i].attn`` (``MultiHeadAttention``: the out-projected attention,
*before* ``post_attn_ln`` and the residual add); layer 0 = the tokenizer
output entering block 0. transformers: blocks ``model.model.layers[i]``
(Tensor); attention ``layers[i].self_attn`` (``o_proj`` output, before
``post_attention_layernorm`` and the residual add). Neither has a final norm
after the stack (the output heads read the last block), so layer n is the
output of block n. transformers' ``output_hidden_states`` is not used: hooks
only.

What is recorded: one prefill over the context patches. Package: the
package's own prefill, ``TimesFM_2p5_200M_torch_module.decode(1, inputs,
masks)`` — horizon 1 means ``(1 − 1) // output_patch_len = 0``
autoregressive steps, so each layer runs once — on the inputs that
``compile(...)``'s decode function builds (``normalize_inputs`` global
normalisation; no flip, because flip invariance lives in that function and
runs a second full decode on −x). transformers: one
``m(past_values=…, forecast_context_len=padded length,
force_flip_invariance=False, truncate_negative=False)`` call (one decoder
pass; the point/quantile heads also run, uncaptured). Switched off in the
prefill: flip invariance (its second pass on −x), AR steps, and the padding
to ``max_context`` that ``forecast`` adds (minimal padding instead, which
leaves real-patch rows unchanged, see above).

Forecasts. Package: ``compile(ForecastConfig(max_context, max_horizon,
normalize_inputs=True, use_continuous_quantile_head=max_horizon ≤
output_quantile_len, force_flip_invariance=True, infer_is_positive=True,
fix_quantile_crossing=True))`` — the flags of the package README — then
``forecast(horizon, inputs)``; horizons beyond ``output_patch_len`` (128)
are decoded autoregressively by the package. transformers: one forward per
``horizon_length`` block with the family's defaults (flip invariance on,
continuous quantile head per config); horizons beyond ``horizon_length``
are unrolled by isofast: the median forecast is appended to the context and
the model is called again (the package's own AR loop also feeds the median
back; it keeps a KV cache and runs flip averaging per pass, so long
horizons can differ slightly between the backends). ``infer_is_positive``
clamps at 0 per series whose context is non-negative (as the package does;
transformers' forward would clamp by the whole batch's minimum, so isofast
passes ``truncate_negative=False`` and clamps per series). Point = the
median (decile 0.5, index 5); other levels are interpolated linearly
between the model's deciles 0.1 … 0.9 and clamped outside them
(``settings["interpolated_levels"]`` / ``["clamped_levels"]``).

TimesFM 1.0 / 2.0 (``timesfm``)
-------------------------------
transformers' ``TimesFmModelForPrediction`` (``model_type`` ``timesfm``).
Numbers → inputs (``TimesFmModel.forward``): the context is cut to the last
``config.context_length`` values (512 in 1.0, 2048 in 2.0); left-padded with
zeros to a multiple of ``patch_length`` (32), padding flag 1; patches;
loc/scale = mean and population std of the *first patch holding at least 3
observed values* (``_timesfm_masked_mean_std``; σ clamped at
``tolerance``); ``(x − loc) / scale`` with padding → 0; concat(patch,
padding flags) → ``input_ff_layer`` → d_model, plus positional embedding
when ``use_positional_embedding`` (shifted so the first real patch is
position 0), plus the frequency embedding ``freq_emb[freq]`` (freq 0 =
high, 1 = medium, 2 = low; ``load(freq=…)`` sets the default, ``forecast(
freq=…)`` overrides it). Layers ``decoder.layers[i]`` (``TimesFmDecoderLayer``,
Tensor): RMS norm → causal attention (padding patches masked as keys) →
residual → MLP with its own LayerNorm, output × (1 − padding) + residual;
attention site ``layers[i].self_attn`` (``o_proj`` output before the
residual add); no final norm. ``forward`` runs the decoder once per
``ceil(horizon_length / horizon_length) = 1`` step, so one call runs each
layer once: the prefill is ``m(past_values=…, freq=…,
forecast_context_len=padded length)``. Token layout as TimesFM 2.5
(``pad="left"``); padding-only patches do not change the real patches'
rows (masked keys, stats from the first patch with ≥ 3 values).
Forecasts: ``m(past_values, freq)`` per ``horizon_length`` block; longer
horizons unrolled by isofast by appending the mean forecast (index 0) to the
context, as the model's own (single-step) loop does; point = the mean head;
quantiles interpolated between ``config.quantiles``.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from isofast.errors import CheckpointError, InputError, MissingPackageError
from isofast.models import _quiet_transformers
from isofast.serializers.tsfm import TokenSerializer
from isofast.tsfm.base import (
    FoldPlan,
    _last_tokens,
    load_transformers,
    interp_quantiles,
    Stack,
    TSFMAdapter,
    TSFMForecast,
    as_torch_dtype,
    check_horizon,
    check_levels,
    hash_folder_weights,
    load_checked,
    offline,
    require_safetensors,
)
from isofast.tsfm.spec import read_config

#: keys ``TimesFM_2p5_200M_torch.save_pretrained`` writes to config.json (the wrapper's init arguments)
PACKAGE_CONFIG_KEYS = frozenset({"torch_compile", "config"})
_WEIGHTS = "model.safetensors"


def detect_config(cfg: dict) -> str | None:
    """``"timesfm-2.5"`` for the config.json of either TimesFM 2.5 layout:
    transformers' (``model_type`` ``timesfm2_5``; spec.py also knows
    ``timesfm_2p5`` and the ``TimesFm2_5*`` architectures) and the timesfm
    package's, which holds only ``torch_compile`` (and possibly a null
    ``config``): the wrapper's init arguments."""
    if not isinstance(cfg, dict):
        return None
    mt = str(cfg.get("model_type", "")).lower()
    if mt in ("timesfm2_5", "timesfm_2p5"):
        return "timesfm-2.5"
    keys = set(cfg)
    if "torch_compile" in keys and keys <= PACKAGE_CONFIG_KEYS and cfg.get("config") in (None, {}):
        return "timesfm-2.5"
    return None


# ------------------------------------------------------------------ helpers
def _need_timesfm() -> None:
    import importlib.util

    from isofast.tsfm.spec import FAMILIES

    if importlib.util.find_spec("timesfm") is None:
        raise MissingPackageError(
            "model family 'timesfm-2.5' (the timesfm package's layout) needs the package 'timesfm', which is not "
            f"installed; install it with {FAMILIES['timesfm-2.5'].install}"
        )


def safetensors_shapes(path: Path) -> dict[str, tuple]:
    """Tensor name → shape from a safetensors header (no tensor is read)."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if not 0 < n < 1 << 28:
                raise ValueError(f"header length {n}")
            head = json.loads(f.read(n).decode("utf-8"))
    except (OSError, ValueError, struct.error, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    return {k: tuple(v["shape"]) for k, v in head.items() if k != "__metadata__" and isinstance(v, dict)}


def _looks_like_package_weights(shapes: dict) -> bool:
    return "tokenizer.hidden_layer.weight" in shapes and any(k.startswith("stacked_xf.0.") for k in shapes)


def definition_from_shapes(shapes: dict, where: str = ""):
    """The ``TimesFM_2p5_200M_Definition`` whose module has these tensor
    shapes (module docstring: what is read from the shapes and what is the
    200M definition's). ``CheckpointError`` when the tensors are not a
    TimesFM 2.5 module."""
    from timesfm import configs
    from timesfm.timesfm_2p5 import timesfm_2p5_base as base

    ref = base.TimesFM_2p5_200M_Definition()
    q = len(ref.quantiles) + 1

    def shape(k):
        if k not in shapes:
            raise CheckpointError(f"{where}: the weights lack {k!r}: not a TimesFM 2.5 (timesfm package) checkpoint")
        return shapes[k]

    tok_in = shape("tokenizer.hidden_layer.weight")[1]
    if tok_in % 2:
        raise CheckpointError(f"{where}: tokenizer input width {tok_in} is not 2 × patch")
    p = tok_in // 2
    layers = sorted({int(k.split(".")[1]) for k in shapes if k.startswith("stacked_xf.") and k.split(".")[1].isdigit()})
    if not layers or layers != list(range(len(layers))):
        raise CheckpointError(f"{where}: the stacked_xf blocks in the weights are not numbered 0..n−1 ({layers[:8]})")
    md = shape("stacked_xf.0.ff0.weight")[1]
    hd = shape("stacked_xf.0.attn.per_dim_scale.per_dim_scale")[0]
    if hd <= 0 or md % hd:
        raise CheckpointError(f"{where}: width {md} is not a multiple of the head size {hd}")
    out_point = shape("output_projection_point.output_layer.weight")[0]
    out_q = shape("output_projection_quantiles.output_layer.weight")[0]
    if out_point % q or out_q % q:
        raise CheckpointError(f"{where}: output heads of {out_point} and {out_q} are not multiples of {q} quantities")
    t = ref.stacked_transformers.transformer

    def block(prefix, dims_in):
        return configs.ResidualBlockConfig(
            input_dims=dims_in,
            hidden_dims=shape(f"{prefix}.hidden_layer.weight")[0],
            output_dims=shape(f"{prefix}.output_layer.weight")[0],
            use_bias=f"{prefix}.hidden_layer.bias" in shapes,
            activation="swish",
        )

    return base.TimesFM_2p5_200M_Definition(
        input_patch_len=p,
        output_patch_len=out_point // q,
        output_quantile_len=out_q // q,
        quantiles=list(ref.quantiles),
        decode_index=ref.decode_index,
        tokenizer=block("tokenizer", 2 * p),
        stacked_transformers=configs.StackedTransformersConfig(
            num_layers=len(layers),
            transformer=configs.TransformerConfig(
                model_dims=md,
                hidden_dims=shape("stacked_xf.0.ff0.weight")[0],
                num_heads=md // hd,
                attention_norm=t.attention_norm,
                feedforward_norm=t.feedforward_norm,
                qk_norm="rms" if "stacked_xf.0.attn.query_ln.scale" in shapes else "none",
                use_bias="stacked_xf.0.ff0.bias" in shapes,
                use_rotary_position_embeddings=t.use_rotary_position_embeddings,
                ff_activation=t.ff_activation,
                fuse_qkv="stacked_xf.0.attn.qkv_proj.weight" in shapes,
            ),
        ),
        output_projection_point=block("output_projection_point", md),
        output_projection_quantiles=block("output_projection_quantiles", md),
    )


def package_module_class(definition):
    """The package's ``TimesFM_2p5_200M_torch_module`` for the 200M
    definition, else a subclass whose ``config`` is ``definition``."""
    from timesfm.timesfm_2p5 import timesfm_2p5_base as base
    from timesfm.timesfm_2p5 import timesfm_2p5_torch as tt

    if definition == base.TimesFM_2p5_200M_Definition():
        return tt.TimesFM_2p5_200M_torch_module
    return type("TimesFM_2p5_torch_module_sized", (tt.TimesFM_2p5_200M_torch_module,), {"config": definition})


def package_wrapper(module, torch_compile: bool = False):
    """A ``TimesFM_2p5_200M_torch`` around ``module``, made without the
    wrapper's ``__init__`` (which builds a full 200M module first)."""
    from timesfm.timesfm_2p5 import timesfm_2p5_torch as tt

    w = tt.TimesFM_2p5_200M_torch.__new__(tt.TimesFM_2p5_200M_torch, torch_compile=torch_compile)
    w.model = module
    w.torch_compile = torch_compile
    return w


def _ceil_to(n: int, p: int) -> int:
    return -(-int(n) // int(p)) * int(p)


def _check_freq(freq, size: int) -> int:
    from isofast._input import check_int

    return check_int(freq, "freq", minimum=0, maximum=int(size) - 1)


# ------------------------------------------------------------------ TimesFM 2.5
class TimesFM25Adapter(TSFMAdapter):
    """TimesFM 2.5 through the timesfm package (``backend="timesfm"``) or
    transformers (``backend="transformers"``); module docstring."""

    family = "timesfm-2.5"

    def __init__(self, model, *, backend: str, wrapper=None, max_context: int, normalize_inputs: bool = True, **kw):
        super().__init__(model, **kw)
        self.backend = backend
        self.wrapper = wrapper
        self.max_context = int(max_context)
        self.normalize_inputs = bool(normalize_inputs)

    # ---- loading
    @classmethod
    def load(
        cls,
        path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        max_context: int | None = None,
        normalize_inputs: bool = True,
    ) -> TimesFM25Adapter:
        """A TimesFM 2.5 folder in either layout (module docstring).
        ``max_context`` (package layout): the prefill's context limit,
        default the model's ``context_limit`` (16384)."""
        from isofast._input import check_int
        from isofast.tsfm.spec import detect_from_config

        offline()
        folder = Path(path)
        cfg = read_config(folder)
        got = detect_from_config(cfg)
        max_context = check_int(max_context, "max_context", minimum=1, allow_none=True)
        hf_layout = str(cfg.get("model_type", "")).lower() in ("timesfm2_5", "timesfm_2p5") or any(
            str(a).startswith("TimesFm2_5") for a in cfg.get("architectures") or []
        )
        if got == cls.family and hf_layout:
            return cls._load_transformers(folder, device, dtype, max_context)
        if got == cls.family:
            return cls._load_package(folder, device, dtype, max_context, normalize_inputs, recognised=True)
        if (
            got is None
            and (folder / _WEIGHTS).is_file()
            and _looks_like_package_weights(safetensors_shapes(folder / _WEIGHTS))
        ):
            return cls._load_package(folder, device, dtype, max_context, normalize_inputs, recognised=False)
        found = got or f"model_type={cfg.get('model_type')!r}, architectures={cfg.get('architectures')!r}"
        raise CheckpointError(f"{folder}: expected a {cls.family} checkpoint, found {found}")

    @classmethod
    def _load_package(cls, folder: Path, device, dtype, max_context, normalize_inputs, recognised: bool):
        import torch

        _need_timesfm()
        require_safetensors(folder, cls.family)
        if as_torch_dtype(dtype) != torch.float32:
            raise InputError(f"{cls.family}: the timesfm package's torch backend runs in float32, not {dtype}")
        wfile = folder / _WEIGHTS
        if not wfile.is_file():
            raise CheckpointError(f"{folder}: the timesfm package's layout keeps its weights in {_WEIGHTS} (not found)")
        definition = definition_from_shapes(safetensors_shapes(wfile), str(folder))
        try:
            module = package_module_class(definition)()
        except (ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{folder}: the weights' shapes give no valid TimesFM 2.5 module ({exc})") from exc
        module.device = torch.device(device)
        try:
            module.load_checkpoint(str(wfile))
        except (RuntimeError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"{folder}: the weights do not load into the TimesFM 2.5 module their shapes describe ({exc})"
            ) from exc
        module.eval()
        limit = int(definition.context_limit)
        ad = cls(
            module,
            backend="timesfm",
            wrapper=package_wrapper(module),
            path=folder,
            weights_hash=hash_folder_weights(folder),
            device=device,
            max_context=min(max_context or limit, limit),
            normalize_inputs=normalize_inputs,
        )
        ad.config_recognised = recognised
        return ad

    @classmethod
    def _load_transformers(cls, folder: Path, device, dtype, max_context):
        from transformers import TimesFm2_5ModelForPrediction

        require_safetensors(folder, cls.family)
        model = load_checked(TimesFm2_5ModelForPrediction, folder, cls.family, dtype).to(device).eval()
        p, C = int(model.config.patch_length), int(model.config.context_length)
        if C % p:
            raise CheckpointError(f"{folder}: context_length {C} is not a multiple of patch_length {p}")
        ad = cls(
            model,
            backend="transformers",
            path=folder,
            weights_hash=hash_folder_weights(folder),
            device=device,
            max_context=min(max_context or C, C),
        )
        ad.config_recognised = True
        return ad

    # ---- random checkpoints
    @classmethod
    def build_random(
        cls,
        folder,
        *,
        seed: int = 0,
        layout: str = "timesfm",
        d_model: int = 32,
        num_layers: int = 2,
        patch: int = 8,
        output_patch: int = 128,
        output_quantile_len: int = 1024,
        num_heads: int = 4,
        context_length: int = 128,
        horizon_length: int | None = None,
    ) -> Path:
        """A random-init TimesFM 2.5 in the package's layout
        (``layout="timesfm"``: a small ``TimesFM_2p5_200M_Definition``, every
        RMSNorm scale set to 1 — the package initialises them to 0, which
        makes every layer an identity — saved with
        ``TimesFM_2p5_200M_torch.save_pretrained``; ``context_length`` is not
        part of that layout) or in transformers' (``layout="transformers"``:
        ``TimesFm2_5Config``, ``TimesFm2_5ModelForPrediction.save_pretrained``;
        ``horizon_length`` defaults to ``output_patch``). Output patch and
        quantile-head lengths default to the published model's (128, 1024)."""
        import torch

        torch.manual_seed(seed)
        folder = Path(folder)
        if layout == "transformers":
            from transformers import TimesFm2_5Config, TimesFm2_5ModelForPrediction

            cfg = TimesFm2_5Config(
                patch_length=patch,
                context_length=context_length,
                horizon_length=horizon_length or output_patch,
                output_quantile_len=output_quantile_len,
                num_hidden_layers=num_layers,
                hidden_size=d_model,
                intermediate_size=2 * d_model,
                head_dim=d_model // num_heads,
                num_attention_heads=num_heads,
                num_key_value_heads=num_heads,
                max_position_embeddings=max(context_length // patch, 1) * 2 + 64,
            )
            with _quiet_transformers():
                TimesFm2_5ModelForPrediction(cfg).eval().save_pretrained(str(folder))
            return folder
        if layout != "timesfm":
            raise InputError(f"layout must be 'timesfm' (the package's) or 'transformers', got {layout!r}")
        from timesfm import configs
        from timesfm.timesfm_2p5 import timesfm_2p5_base as base
        from timesfm.torch.normalization import RMSNorm

        q = 10
        definition = base.TimesFM_2p5_200M_Definition(
            input_patch_len=patch,
            output_patch_len=output_patch,
            output_quantile_len=output_quantile_len,
            tokenizer=configs.ResidualBlockConfig(2 * patch, d_model, d_model, True, "swish"),
            stacked_transformers=configs.StackedTransformersConfig(
                num_layers=num_layers,
                transformer=configs.TransformerConfig(
                    model_dims=d_model,
                    hidden_dims=2 * d_model,
                    num_heads=num_heads,
                    attention_norm="rms",
                    feedforward_norm="rms",
                    qk_norm="rms",
                    use_bias=False,
                    use_rotary_position_embeddings=True,
                    ff_activation="swish",
                    fuse_qkv=True,
                ),
            ),
            output_projection_point=configs.ResidualBlockConfig(d_model, d_model, output_patch * q, False, "swish"),
            output_projection_quantiles=configs.ResidualBlockConfig(
                d_model, d_model, output_quantile_len * q, False, "swish"
            ),
        )
        module = package_module_class(definition)().eval()
        with torch.no_grad():
            for m in module.modules():
                if isinstance(m, RMSNorm):
                    m.scale.fill_(1.0)  # the package's zeros would make every layer an identity
        package_wrapper(module).save_pretrained(str(folder))
        return folder

    # ---- structure
    @property
    def stack(self) -> Stack:
        if self.backend == "timesfm":
            xf = self.model.stacked_xf
            return Stack("stacked_xf", list(xf), [b.attn for b in xf], None)
        layers = self.model.model.layers
        return Stack("model.layers", list(layers), [b.self_attn for b in layers], None)

    @property
    def d_model(self) -> int:
        if self.backend == "timesfm":
            return int(self.model.config.stacked_transformers.transformer.model_dims)
        return int(self.model.config.hidden_size)

    @property
    def config_layers(self) -> int:
        if self.backend == "timesfm":
            return int(self.model.config.stacked_transformers.num_layers)
        return int(self.model.config.num_hidden_layers)

    @property
    def patch(self) -> int:
        return int(self.model.p) if self.backend == "timesfm" else int(self.model.config.patch_length)

    @property
    def model_levels(self) -> list[float]:
        qs = self.model.config.quantiles
        return [float(v) for v in qs]

    @property
    def serializer(self) -> TokenSerializer:
        glob = (
            "global (x − mean) / std over the padded row, then "
            if (self.backend == "transformers" or self.normalize_inputs)
            else ""
        )
        return TokenSerializer(
            family=self.family,
            unit="patch",
            patch_len=self.patch,
            pad="left",
            max_context=self.max_context,
            normalization=(
                glob + "per-patch running (Welford) mean / population std over the observed values up "
                "to each patch (RevIN), padding → 0; input = concat(patch, mask)"
            ),
        )

    def describe(self) -> dict:
        d = super().describe()
        d["backend"] = {"timesfm": "timesfm package (torch)", "transformers": "transformers"}[self.backend]
        d["prefill"] = (
            "TimesFM_2p5_200M_torch_module.decode(1, …): one pass, no AR step, no flip"
            if self.backend == "timesfm"
            else "TimesFm2_5ModelForPrediction(force_flip_invariance=False): one pass, no flip"
        )
        d["normalize_inputs"] = self.normalize_inputs if self.backend == "timesfm" else True
        d["config_recognised"] = getattr(self, "config_recognised", True)
        return d

    # ---- the recorded pass
    def _prefill(self, batch: np.ndarray) -> None:
        import torch

        x = torch.as_tensor(np.asarray(batch), dtype=torch.float32)
        B, L = x.shape
        p = self.patch
        dev = torch.device(self.device)
        if self.backend == "timesfm":
            from timesfm.torch import util

            lead = _ceil_to(L, p) - L
            inputs = torch.cat([torch.zeros(B, lead), x], dim=1).to(dev)
            masks = torch.cat([torch.ones(B, lead, dtype=torch.bool), torch.zeros(B, L, dtype=torch.bool)], 1).to(dev)
            if self.normalize_inputs:  # as compile(...)'s decode function
                mu = torch.mean(inputs, dim=-1, keepdim=True)
                sigma = torch.std(inputs, dim=-1, keepdim=True)
                inputs = util.revin(inputs, mu, sigma, reverse=False)
            self.model.decode(1, inputs, masks)  # horizon 1: the prefill only, no AR step
            return
        x = x.to(dev)
        self.model(
            past_values=list(x),
            forecast_context_len=_ceil_to(L, p),
            force_flip_invariance=False,
            truncate_negative=False,
        )

    def _fold(self, ctx, horizon, forecast_kw):
        """The forecast's first decode is the prefill (flip pass on −x and AR
        steps come after it). Package: ``compile`` pads to ``max_context`` =
        the padded context length, as the prefill (the same tokens); the rows
        agree to float rounding (the decode function's path). transformers: the
        forecast pads to the whole ``context_length`` (more padding patches:
        the last tokens are kept; equal to float rounding, docs/models.md)."""
        why = self._one_batch(ctx)
        if why:
            return why
        H, p = int(horizon), self.patch
        kept = self.serializer.kept(ctx[0].size)
        n_tok = self.serializer.n_tokens(ctx[0].size)
        if self.backend == "timesfm":
            mod = self.model
            o, limit = int(mod.o), int(mod.config.context_limit)
            mh = _ceil_to(H, o)
            if _ceil_to(kept, p) + mh > limit:
                return f"{self.family}: horizon {H} makes the package cut the context below the prefill's"
            return FoldPlan(
                calls=2 * (mh // o),  # (prefill + AR steps) × (x, −x)
                rows="equal to float rounding (the package's decode function on the same padded inputs)",
            )
        cfg = self.model.config
        steps = -(-H // int(cfg.horizon_length))
        same = _ceil_to(kept, p) == int(cfg.context_length)
        return FoldPlan(
            calls=steps * (2 if cfg.force_flip_invariance else 1),
            select=_last_tokens(n_tok),
            rows="bitwise (no extra padding)" if same else "equal to float rounding (the forecast pads more)",
        )

    # ---- forecasts
    def forecast(
        self,
        series,
        horizon: int,
        *,
        n_samples: int = 0,
        seed: int = 0,
        quantile_levels: Sequence[float] = (0.1, 0.5, 0.9),
        nan: str = "interpolate",
    ) -> TSFMForecast:
        """Quantile forecasts (no sampling: ``n_samples`` and ``seed`` are
        ignored); module docstring for the flags and long horizons."""
        H = check_horizon(horizon)
        levels = check_levels(quantile_levels)
        ctx = self.contexts(series, nan=nan)
        t0 = time.perf_counter()
        if self.backend == "timesfm":
            full, settings = self._forecast_package(ctx, H)
        else:
            full, settings = self._forecast_transformers(ctx, H)
        # full: (S, H, 1 + Q) = mean, then the model's quantile levels
        qs, interp, clamped = interp_quantiles(full[..., 1:], self.model_levels, levels)
        med = 1 + self.model_levels.index(0.5) if 0.5 in self.model_levels else int(self.model.config.decode_index)
        settings.update(
            {
                "horizon": H,
                "point": "median (decile 0.5)",
                "model_quantiles": self.model_levels,
                "interpolated_levels": interp,
                "clamped_levels": clamped,
                "backend": self.describe()["backend"],
            }
        )
        return TSFMForecast(
            point=full[..., med],
            quantile_levels=levels,
            quantiles=qs,
            family=self.family,
            seconds=time.perf_counter() - t0,
            settings=settings,
        )

    def _forecast_package(self, ctx, H):
        import torch
        from timesfm import configs

        mod = self.model
        p, o, os_ = int(mod.p), int(mod.o), int(mod.os)
        limit = int(mod.config.context_limit)
        mh = _ceil_to(H, o)
        mc = _ceil_to(max(min(c.size, self.max_context) for c in ctx), p)
        if mc + mh > limit:
            mc = (limit - mh) // p * p
        if mc < p:
            raise InputError(f"{self.family}: horizon {H} leaves no context within the model's limit of {limit} steps")
        fc = configs.ForecastConfig(
            max_context=mc,
            max_horizon=mh,
            normalize_inputs=self.normalize_inputs,
            per_core_batch_size=len(ctx),
            use_continuous_quantile_head=mh <= os_,
            force_flip_invariance=True,
            infer_is_positive=True,
            fix_quantile_crossing=True,
        )
        self.wrapper.compile(fc)
        with torch.inference_mode():
            _, full = self.wrapper.forecast(horizon=H, inputs=[np.asarray(c, np.float64) for c in ctx])
        settings = {
            "max_context": mc,
            "max_horizon": mh,
            "normalize_inputs": fc.normalize_inputs,
            "use_continuous_quantile_head": fc.use_continuous_quantile_head,
            "force_flip_invariance": True,
            "infer_is_positive": True,
            "fix_quantile_crossing": True,
            "long_horizon": "autoregressive decode by the package",
        }
        return np.asarray(full, np.float64), settings

    def _forecast_transformers(self, ctx, H):
        import torch

        m, cfg = self.model, self.model.config
        h, C = int(cfg.horizon_length), int(cfg.context_length)
        di = int(cfg.decode_index)
        dev, dt = torch.device(self.device), next(m.parameters()).dtype
        cur = [np.asarray(c, np.float64) for c in ctx]
        parts = []
        steps = -(-H // h)
        with torch.inference_mode():
            for _ in range(steps):
                out = m(
                    past_values=[torch.as_tensor(c[-C:], dtype=torch.float32, device=dev).to(dt) for c in cur],
                    truncate_negative=False,
                )
                full = out.full_predictions.float().cpu().numpy().astype(np.float64)  # (S, h, 1 + Q)
                parts.append(full)
                cur = [np.concatenate([c, full[i, :, di]]) for i, c in enumerate(cur)]
        full = np.concatenate(parts, axis=1)[:, :H]
        if cfg.infer_is_positive:
            for i, c in enumerate(ctx):
                if c.min() >= 0:
                    full[i] = np.maximum(full[i], 0.0)
        settings = {
            "force_flip_invariance": bool(cfg.force_flip_invariance),
            "use_continuous_quantile_head": bool(cfg.use_continuous_quantile_head),
            "infer_is_positive": bool(cfg.infer_is_positive) and "per series",
            "calls": steps,
            "long_horizon": (
                f"unrolled by isofast: the median of each {h}-step block is appended to the context"
                if steps > 1
                else "none"
            ),
        }
        return full, settings


# ------------------------------------------------------------------ TimesFM 1.0 / 2.0
class TimesFMAdapter(TSFMAdapter):
    """TimesFM 1.0/2.0 through transformers' ``TimesFmModelForPrediction``
    (module docstring). ``freq``: the frequency id (0 high, 1 medium, 2 low)."""

    family = "timesfm"

    def __init__(self, model, *, freq: int = 0, **kw):
        super().__init__(model, **kw)
        self.freq = int(freq)

    @classmethod
    def load(cls, path, *, device: str = "cpu", dtype: str = "float32", freq: int = 0) -> TimesFMAdapter:
        from transformers import TimesFmModelForPrediction

        folder, model = load_transformers(
            cls, path, TimesFmModelForPrediction, "TimesFmModelForPrediction", device, dtype
        )
        p, C = int(model.config.patch_length), int(model.config.context_length)
        if C % p:
            raise CheckpointError(f"{folder}: context_length {C} is not a multiple of patch_length {p}")
        return cls(
            model,
            freq=_check_freq(freq, model.config.freq_size),
            path=folder,
            weights_hash=hash_folder_weights(folder),
            device=device,
        )

    @classmethod
    def build_random(
        cls,
        folder,
        *,
        seed: int = 0,
        d_model: int = 32,
        num_layers: int = 2,
        patch: int = 8,
        context_length: int = 128,
        horizon_length: int = 128,
        num_heads: int = 4,
        use_positional_embedding: bool = False,
    ) -> Path:
        """A random-init TimesFM 1.0/2.0 (``TimesFmConfig``), saved with
        ``TimesFmModelForPrediction.save_pretrained``."""
        import torch
        from transformers import TimesFmConfig, TimesFmModelForPrediction

        torch.manual_seed(seed)
        cfg = TimesFmConfig(
            patch_length=patch,
            context_length=context_length,
            horizon_length=horizon_length,
            num_hidden_layers=num_layers,
            hidden_size=d_model,
            intermediate_size=2 * d_model,
            head_dim=d_model // num_heads,
            num_attention_heads=num_heads,
            use_positional_embedding=use_positional_embedding,
        )
        folder = Path(folder)
        with _quiet_transformers():
            TimesFmModelForPrediction(cfg).eval().save_pretrained(str(folder))
        return folder

    @property
    def stack(self) -> Stack:
        layers = list(self.model.decoder.layers)[: int(self.model.config.num_hidden_layers)]
        return Stack("decoder.layers", layers, [b.self_attn for b in layers], None)

    @property
    def d_model(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def config_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def serializer(self) -> TokenSerializer:
        c = self.model.config
        return TokenSerializer(
            family=self.family,
            unit="patch",
            patch_len=int(c.patch_length),
            pad="left",
            max_context=int(c.context_length),
            normalization=(
                "(x − mean) / population std of the first patch with ≥ 3 observed values (σ ≥ "
                f"{c.tolerance}), padding → 0; input = concat(patch, padding); + freq embedding"
                + (" + shifted positional embedding" if c.use_positional_embedding else "")
            ),
        )

    def describe(self) -> dict:
        d = super().describe()
        d["freq"] = self.freq
        d["prefill"] = "TimesFmModelForPrediction forward (one decoder pass over the context patches)"
        return d

    def _prefill(self, batch: np.ndarray) -> None:
        import torch

        m = self.model
        dt = next(m.parameters()).dtype
        x = torch.as_tensor(np.asarray(batch), dtype=torch.float32, device=torch.device(self.device)).to(dt)
        B, L = x.shape
        m(past_values=list(x), freq=[self.freq] * B, forecast_context_len=_ceil_to(L, int(m.config.patch_length)))

    def _fold(self, ctx, horizon, forecast_kw):
        """One decoder pass per ``horizon_length`` block; the first is the
        prefill, padded to the whole ``context_length`` (the last tokens are
        kept; equal to float rounding where that adds padding patches)."""
        why = self._one_batch(ctx)
        if why:
            return why
        if forecast_kw.get("freq") not in (None, self.freq):
            return f"{self.family}: the forecast's freq {forecast_kw['freq']} is not the prefill's {self.freq}"
        cfg = self.model.config
        kept = self.serializer.kept(ctx[0].size)
        same = _ceil_to(kept, int(cfg.patch_length)) == int(cfg.context_length)
        return FoldPlan(
            calls=-(-int(horizon) // int(cfg.horizon_length)),
            select=_last_tokens(self.serializer.n_tokens(ctx[0].size)),
            rows="bitwise (no extra padding)" if same else "equal to float rounding (the forecast pads more)",
        )

    def forecast(
        self,
        series,
        horizon: int,
        *,
        n_samples: int = 0,
        seed: int = 0,
        quantile_levels: Sequence[float] = (0.1, 0.5, 0.9),
        nan: str = "interpolate",
        freq: int | None = None,
    ) -> TSFMForecast:
        """``m(past_values, freq)`` per ``horizon_length`` block (longer
        horizons unrolled with the mean forecast, module docstring). No
        sampling: ``n_samples`` and ``seed`` are ignored. Point = the mean head."""
        import torch

        H = check_horizon(horizon)
        levels = check_levels(quantile_levels)
        m, cfg = self.model, self.model.config
        f = self.freq if freq is None else _check_freq(freq, cfg.freq_size)
        ctx = self.contexts(series, nan=nan)
        h, C = int(cfg.horizon_length), int(cfg.context_length)
        dev, dt = torch.device(self.device), next(m.parameters()).dtype
        t0 = time.perf_counter()
        cur = [np.asarray(c, np.float64) for c in ctx]
        parts = []
        steps = -(-H // h)
        with torch.inference_mode():
            for _ in range(steps):
                out = m(
                    past_values=[torch.as_tensor(c[-C:], dtype=torch.float32, device=dev).to(dt) for c in cur],
                    freq=[f] * len(cur),
                )
                full = out.full_predictions.float().cpu().numpy().astype(np.float64)  # (S, h, 1 + Q)
                parts.append(full)
                cur = [np.concatenate([c, full[i, :, 0]]) for i, c in enumerate(cur)]
        full = np.concatenate(parts, axis=1)[:, :H]
        model_levels = [float(v) for v in cfg.quantiles]
        qs, interp, clamped = interp_quantiles(full[..., 1:], model_levels, levels)
        return TSFMForecast(
            point=full[..., 0],
            quantile_levels=levels,
            quantiles=qs,
            family=self.family,
            seconds=time.perf_counter() - t0,
            settings={
                "horizon": H,
                "freq": f,
                "point": "the mean head (index 0)",
                "model_quantiles": model_levels,
                "interpolated_levels": interp,
                "clamped_levels": clamped,
                "calls": steps,
                "long_horizon": (
                    f"unrolled by isofast: the mean of each {h}-step block is appended to the context"
                    if steps > 1
                    else "none"
                ),
            },
        )


__all__ = ["TimesFM25Adapter", "TimesFMAdapter", "detect_config", "definition_from_shapes", "safetensors_shapes"]
