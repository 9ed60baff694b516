"""Chronos, Chronos-Bolt and Chronos-2 from ``chronos-forecasting``
(Ansari et al. 2024, "Chronos: Learning the Language of Time Series";
Chronos-Bolt and Chronos-2 from the same package, Apache-2.0).

The package is imported inside the functions, so this module imports
without it (family detection and error messages need no package).

Chronos-Bolt
------------
Numbers → inputs (the package's ``ChronosBoltModelForForecasting.encode``):
the context is cut to the last ``chronos_config.context_length`` values;
instance normalisation (loc = nanmean, scale = population nan-std, 0 → ε);
left-padded with NaN to a multiple of ``input_patch_size``; patches of
``input_patch_size`` every ``input_patch_stride``; input = concat(patch with
NaN → 0, observed mask) → ``input_patch_embedding`` → d_model; with
``use_reg_token`` a ``[REG]`` token is appended. Captured stack: the T5
*encoder* (``model.encoder.block[i]``; attention site
``block[i].layer[0].SelfAttention``, its output before the residual add;
final norm ``encoder.final_layer_norm``). The prefill runs ``model.encode``
only, so every encoder block runs once; the forecast's decoder runs one
step and is not captured.

Chronos (T5)
------------
Numbers → inputs (the package's ``MeanScaleUniformBins.context_input_transform``):
the context is cut to the last ``chronos_config.context_length`` values
(512 in the published models); scale s = mean(|x|) over the observed values
(1 when not > 0); token id = ``bucketize(x / s, boundaries, right=True) +
n_special_tokens`` over ``n_tokens − n_special_tokens − 1`` uniform bin
centres on ``[low_limit, high_limit]`` (4093 centres on [−15, 15], ids
3..4095), clamped to ``[0, n_tokens − 1]``; NaN → pad id 0; with
``use_eos_token`` (seq2seq) the EOS id 1 is appended. One token per value
plus EOS: ``TokenSerializer(unit="value", suffix=("eos",))``.
:class:`isofast.serializers.ChronosSerializer` reproduces these ids in numpy
(tests/test_tsfm_chronos.py checks them against the package's tokenizer).
Captured stack: the T5 *encoder* of the ``T5ForConditionalGeneration``
(``encoder.block[i]``; attention site ``block[i].layer[0].SelfAttention``,
the o-projected output before the residual add; final norm
``encoder.final_layer_norm``). The prefill runs ``ChronosModel.encode``
(= ``inner.encoder(input_ids, attention_mask)`` on the package tokenizer's
ids) once; the decoder, which ``predict`` runs once per generated token with
batch × num_samples rows, is not captured.

The softmax head: ``head()`` is the decoder's ``lm_head`` (V = n_tokens rows
× d_model, no bias). ``head_inputs()`` returns, per context, the vector that
enters ``lm_head`` at the first decoding step (the decoder run on the single
``decoder_start_token_id``), read with a pre-hook on ``lm_head``. In
transformers 5 ``T5ForConditionalGeneration.forward`` multiplies the
decoder's final-norm output by ``d_model ** -0.5`` when
``config.scale_decoder_outputs`` (set from ``tie_word_embeddings`` in the
config file: True unless that is False; transformers 5 ties ``lm_head`` to
``shared`` always); the hook sees the vector after that rescale, so
``W @ c`` is exactly the first step's logits.

Forecasts: ``ChronosPipeline.predict`` samples ``num_samples`` token paths
(temperature/top-k/top-p from the checkpoint's ``chronos_config``) and decodes
bin centres × s; horizons beyond ``prediction_length`` are unrolled by the
package (context + median path). The package takes no random generator: the
sampling uses torch's global generator, which isofast seeds with
``torch.manual_seed(seed)`` inside ``torch.random.fork_rng`` (the caller's
global random state is restored afterwards).

Chronos-2
---------
Numbers → inputs (``Chronos2Model._prepare_patched_context``): the context is
cut to the last ``chronos_config.context_length`` values; instance
normalisation (loc = nanmean, scale = population nan-std, 0 → 1e-5), then
``arcsinh`` when ``use_arcsinh``; left-padded with NaN to a multiple of
``input_patch_size``; patches of ``input_patch_size`` (stride
``input_patch_stride``); each patch → concat(time encoding (−C..−1) /
``time_encoding_scale``, values with NaN → 0, observed mask) →
``input_patch_embedding`` → d_model; a ``[REG]`` token when
``use_reg_token``; then ``num_output_patches`` *future* tokens (time encoding
0..h−1, no values, mask 0), whose final hidden states the quantile head reads.
The prefill appends **one** future token by default, as the package's own
``Chronos2Pipeline.embed`` does (``encode``'s default
``num_output_patches=1``): tokens = context patches + ``[REG]`` + 1 future
token (``suffix=("reg", "future")``). A forecast appends
``ceil(horizon / output_patch_size)`` future tokens (at most
``max_output_patches``), so its encoder sees more tokens than the prefill and
every context row changes (bidirectional attention).
``set_future_tokens(k)`` makes the prefill append ``k`` (1 ≤ k ≤
``max_output_patches``): with ``k = future_tokens_for(H)`` the rows are those
the forecast at H computes, and forecast and capture share its one pass.

Captured stack: ``model.encoder.block[i]`` (``Chronos2EncoderBlock``: time
self-attention ``layer[0]`` (RoPE), group attention ``layer[1]`` across the
batch axis, feed-forward ``layer[2]``; returns ``Chronos2EncoderBlockOutput``,
read as ``.hidden_states``); attention site ``block[i].layer[0].self_attention``
(the time-attention ``MHA``: its ``AttentionOutput.hidden_states`` is the
o-projected output before the residual add; ``layer[0]`` itself returns the
residual stream after the add); final norm ``encoder.final_layer_norm``. The
prefill runs ``Chronos2Model.encode`` once with ``group_ids = arange(B)``:
every context of a batch is its own group, so group attention mixes nothing
across windows (each token attends only to itself along the batch axis), as
in the package's default (``cross_learning=False``).

Forecasts: ``Chronos2Pipeline.predict_quantiles`` (quantile head, no sampling;
levels outside the model's set are interpolated by the package's
``interpolate_quantiles``, clamped at its outermost levels; horizons beyond
``max_output_patches × output_patch_size`` are unrolled by the package,
which needs the model's quantiles to include 0.1 … 0.9).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from isofast.errors import CheckpointError
from isofast.serializers.tsfm import TokenSerializer
from isofast.tsfm.base import (
    FoldPlan,
    Stack,
    T5EncoderStack,
    TSFMAdapter,
    TSFMForecast,
    by_length,
    check_horizon,
    check_future_tokens,
    check_levels,
    check_seed,
    expect_family,
    hash_folder_weights,
    load_checked,
    offline,
    require_safetensors,
    seeded,
)


class _PipelineAdapter(TSFMAdapter):
    """An adapter around a chronos pipeline: ``model`` is the network the
    pipeline runs (its ``_model_attr``), ``pipeline`` forecasts."""

    _model_attr = "model"

    def __init__(self, pipeline, **kw):
        super().__init__(getattr(pipeline, self._model_attr), **kw)
        self.pipeline = pipeline


def _load_pipeline(cls, path, model_cls, pipeline_cls, device: str, dtype: str):
    """A Bolt or Chronos-2 folder: family checked, safetensors only, weights
    that fit the config, wrapped in the package's pipeline."""
    offline()
    folder = Path(path)
    expect_family(folder, cls.family)
    require_safetensors(folder, cls.family)
    model = load_checked(model_cls, folder, cls.family, dtype)
    pipe = pipeline_cls(model=model.to(device).eval())
    return cls(pipe, path=folder, weights_hash=hash_folder_weights(folder), device=device)


class ChronosBoltAdapter(T5EncoderStack, _PipelineAdapter):
    """Chronos-Bolt (module docstring)."""

    family = "chronos-bolt"

    @classmethod
    def load(cls, path, *, device: str = "cpu", dtype: str = "float32") -> ChronosBoltAdapter:
        from chronos import ChronosBoltPipeline
        from chronos.chronos_bolt import ChronosBoltModelForForecasting

        return _load_pipeline(cls, path, ChronosBoltModelForForecasting, ChronosBoltPipeline, device, dtype)

    @classmethod
    def build_random(
        cls,
        folder,
        *,
        seed: int = 0,
        d_model: int = 32,
        num_layers: int = 2,
        context_length: int = 64,
        prediction_length: int = 16,
        patch: int = 8,
        num_heads: int = 4,
        d_ff: int | None = None,
    ) -> Path:
        import torch
        from chronos.chronos_bolt import ChronosBoltModelForForecasting
        from transformers import T5Config

        torch.manual_seed(seed)
        cc = dict(
            context_length=context_length,
            prediction_length=prediction_length,
            input_patch_size=patch,
            input_patch_stride=patch,
            quantiles=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
            use_reg_token=True,
        )
        cfg = T5Config(
            d_model=d_model,
            d_kv=d_model // num_heads,
            d_ff=d_ff or 4 * d_model,
            num_layers=num_layers,
            num_decoder_layers=1,
            num_heads=num_heads,
            feed_forward_proj="relu",
            decoder_start_token_id=0,
            pad_token_id=0,
            chronos_config=cc,
            chronos_pipeline_class="ChronosBoltPipeline",
            architectures=["ChronosBoltModelForForecasting"],
        )
        model = ChronosBoltModelForForecasting(cfg).eval()
        folder = Path(folder)
        model.save_pretrained(str(folder))
        return folder

    @property
    def cc(self):
        return self.model.chronos_config

    @property
    def config_layers(self) -> int:
        return int(self.model.config.num_layers)

    @property
    def serializer(self) -> TokenSerializer:
        cc = self.cc
        return TokenSerializer(
            family=self.family,
            unit="patch",
            patch_len=int(cc.input_patch_size),
            stride=int(cc.input_patch_stride),
            pad="left",
            max_context=int(cc.context_length),
            suffix=("reg",) if cc.use_reg_token else (),
            normalization="instance: (x − nanmean) / population nan-std (0 → 1e-5), per context",
        )

    def _prefill(self, batch: np.ndarray) -> None:
        import torch

        ctx = torch.as_tensor(batch, dtype=torch.float32, device=self.model.device)
        self.model.encode(ctx)

    def _fold(self, ctx, horizon, forecast_kw):
        """``predict`` runs ``model(context)`` (= ``encode`` + one decoder
        step) on the stacked batch, then once more per ``prediction_length``
        block beyond the first with the batch × the quantiles: the first
        encoder call is the prefill."""
        return self._one_batch(ctx) or FoldPlan(calls=-(-int(horizon) // int(self.cc.prediction_length)))

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
        """The package's ``predict_quantiles`` (a direct quantile head, no
        sampling: ``n_samples`` and ``seed`` are ignored). Horizons beyond the
        model's ``prediction_length`` are unrolled by the package."""
        import torch

        H = check_horizon(horizon)
        levels = check_levels(quantile_levels)
        ctx = self.contexts(series, nan=nan)
        t0 = time.perf_counter()
        with torch.inference_mode():
            q, mean = self.pipeline.predict_quantiles(
                [torch.as_tensor(c, dtype=torch.float32) for c in ctx],
                prediction_length=H,
                quantile_levels=levels.tolist(),
            )
        qs = np.moveaxis(q.float().numpy().astype(np.float64), -1, 0)  # (Q, S, H)
        return TSFMForecast(
            point=mean.float().numpy().astype(np.float64),
            quantile_levels=levels,
            quantiles=qs,
            family=self.family,
            seconds=time.perf_counter() - t0,
            settings={"horizon": H, "point": "median (the 0.5 quantile head)"},
        )


# ------------------------------------------------------------------ Chronos (T5)
_CHRONOS_KEYS = (
    "tokenizer_class",
    "tokenizer_kwargs",
    "context_length",
    "prediction_length",
    "n_tokens",
    "n_special_tokens",
    "pad_token_id",
    "eos_token_id",
    "use_eos_token",
    "model_type",
    "num_samples",
    "temperature",
    "top_k",
    "top_p",
)


class ChronosAdapter(T5EncoderStack, _PipelineAdapter):
    """Chronos (T5 over mean-scaled value bins; module docstring). The only
    family with a softmax head: :meth:`head` and :meth:`head_inputs`."""

    family = "chronos"
    has_head = True

    _model_attr = "inner_model"  # the T5ForConditionalGeneration inside ChronosModel

    @classmethod
    def load(cls, path, *, device: str = "cpu", dtype: str = "float32") -> ChronosAdapter:
        offline()
        folder = Path(path)
        cfg = expect_family(folder, cls.family)
        raw = cfg.get("chronos_config")
        if not isinstance(raw, dict):
            raise CheckpointError(f"{folder}/config.json has no chronos_config object: not a Chronos checkpoint")
        missing = [k for k in _CHRONOS_KEYS if k not in raw]
        if missing:
            raise CheckpointError(f"{folder}/config.json: chronos_config lacks {missing}")
        if raw.get("model_type") != "seq2seq":
            raise CheckpointError(
                f"{folder}: chronos_config.model_type is {raw.get('model_type')!r}; isofast reads Chronos "
                "encoder-decoder (model_type 'seq2seq', T5) checkpoints only"
            )
        if raw.get("tokenizer_class") != "MeanScaleUniformBins":
            raise CheckpointError(
                f"{folder}: chronos_config.tokenizer_class is {raw.get('tokenizer_class')!r}; the Chronos "
                "tokenizer isofast knows is 'MeanScaleUniformBins'"
            )
        require_safetensors(folder, cls.family)
        from chronos import ChronosConfig, ChronosModel, ChronosPipeline
        from transformers import T5ForConditionalGeneration

        try:
            cc = ChronosConfig(**{k: raw[k] for k in _CHRONOS_KEYS})
            tokenizer = cc.create_tokenizer()
        except (TypeError, ValueError, AssertionError) as exc:
            raise CheckpointError(f"{folder}: chronos_config is not a valid ChronosConfig ({exc})") from exc
        inner = load_checked(T5ForConditionalGeneration, folder, cls.family, dtype)
        if int(inner.config.vocab_size) != int(cc.n_tokens):
            raise CheckpointError(
                f"{folder}: the T5 vocabulary has {inner.config.vocab_size} tokens, chronos_config.n_tokens says "
                f"{cc.n_tokens}"
            )
        pipe = ChronosPipeline(tokenizer=tokenizer, model=ChronosModel(cc, inner.to(device).eval()))
        return cls(pipe, path=folder, weights_hash=hash_folder_weights(folder), device=device)

    @classmethod
    def build_random(
        cls,
        folder,
        *,
        seed: int = 0,
        d_model: int = 32,
        num_layers: int = 2,
        num_decoder_layers: int = 1,
        context_length: int = 64,
        prediction_length: int = 8,
        n_tokens: int = 4096,
        num_samples: int = 4,
        tie_word_embeddings: bool | None = None,
    ) -> Path:
        """A random-init Chronos-T5 (the package's ``ChronosConfig`` in a
        ``T5Config``), saved with ``T5ForConditionalGeneration.save_pretrained``.
        ``tie_word_embeddings=False`` writes a config whose decoder outputs are
        not rescaled by d_model ** -0.5 (T5 v1.1 style)."""
        import torch
        from transformers import T5Config, T5ForConditionalGeneration

        torch.manual_seed(seed)
        cc = dict(
            tokenizer_class="MeanScaleUniformBins",
            tokenizer_kwargs={"low_limit": -15.0, "high_limit": 15.0},
            context_length=context_length,
            prediction_length=prediction_length,
            n_tokens=n_tokens,
            n_special_tokens=2,
            pad_token_id=0,
            eos_token_id=1,
            use_eos_token=True,
            model_type="seq2seq",
            num_samples=num_samples,
            temperature=1.0,
            top_k=50,
            top_p=1.0,
        )
        extra = {} if tie_word_embeddings is None else {"tie_word_embeddings": bool(tie_word_embeddings)}
        cfg = T5Config(
            vocab_size=n_tokens,
            d_model=d_model,
            d_kv=d_model // 4,
            d_ff=2 * d_model,
            num_layers=num_layers,
            num_decoder_layers=num_decoder_layers,
            num_heads=4,
            relative_attention_num_buckets=32,
            feed_forward_proj="relu",
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
            chronos_config=cc,
            chronos_pipeline_class="ChronosPipeline",
            architectures=["T5ForConditionalGeneration"],
            **extra,
        )
        model = T5ForConditionalGeneration(cfg).eval()
        folder = Path(folder)
        model.save_pretrained(str(folder))
        return folder

    @property
    def cc(self):
        return self.pipeline.model.config

    @property
    def config_layers(self) -> int:
        return int(self.model.config.num_layers)

    @property
    def serializer(self) -> TokenSerializer:
        cc = self.cc
        lo, hi = cc.tokenizer_kwargs.get("low_limit"), cc.tokenizer_kwargs.get("high_limit")
        eos = bool(cc.use_eos_token and cc.model_type == "seq2seq")
        return TokenSerializer(
            family=self.family,
            unit="value",
            max_context=int(cc.context_length),
            suffix=("eos",) if eos else (),
            normalization=(
                f"mean scaling x / mean(|x|) (1 if not > 0), then {cc.n_tokens - cc.n_special_tokens - 1} "
                f"uniform bins on [{lo}, {hi}], id = bin + {cc.n_special_tokens}"
            ),
        )

    def _tokens(self, batch):
        import torch

        ctx = torch.as_tensor(np.asarray(batch), dtype=torch.float32)
        if ctx.ndim == 1:
            ctx = ctx[None]
        ids, mask, scale = self.pipeline.tokenizer.context_input_transform(ctx)
        dev = self.model.device
        return ids.to(dev), mask.to(dev), scale

    def _prefill(self, batch: np.ndarray) -> None:
        ids, mask, _ = self._tokens(batch)
        self.pipeline.model.encode(input_ids=ids, attention_mask=mask)

    def _fold(self, ctx, horizon, forecast_kw):
        """``predict`` runs ``generate`` once per ``prediction_length`` block
        (the context grown by the median path); ``generate`` runs the encoder
        once on the batch, then expands its output to the sample paths for the
        decoder (not hooked): the first encoder call is the prefill."""
        return self._one_batch(ctx) or FoldPlan(calls=-(-int(horizon) // int(self.cc.prediction_length)))

    def forecast(
        self,
        series,
        horizon: int,
        *,
        n_samples: int = 20,
        seed: int = 0,
        quantile_levels: Sequence[float] = (0.1, 0.5, 0.9),
        nan: str = "interpolate",
    ) -> TSFMForecast:
        """``ChronosPipeline.predict``: ``n_samples`` sampled paths per context
        (S, n, H); point = their median, quantiles = ``np.quantile`` of the
        samples (linear, as the package's ``predict_quantiles``). Seeded
        through torch's global generator (module docstring)."""
        import torch

        from isofast._input import check_int

        H = check_horizon(horizon)
        levels = check_levels(quantile_levels)
        n = check_int(n_samples, "n_samples", minimum=1)
        seed = check_seed(seed)
        ctx = self.contexts(series, nan=nan)
        t0 = time.perf_counter()
        with seeded(seed, self.model.device), torch.inference_mode():
            s = self.pipeline.predict(
                [torch.as_tensor(c, dtype=torch.float32) for c in ctx], prediction_length=H, num_samples=n
            )
        samples = s.float().numpy().astype(np.float64)  # (S, n, H)
        cc = self.cc
        return TSFMForecast(
            point=np.median(samples, axis=1),
            quantile_levels=levels,
            quantiles=np.quantile(samples, levels, axis=1),
            samples=samples,
            family=self.family,
            seconds=time.perf_counter() - t0,
            settings={
                "horizon": H,
                "n_samples": n,
                "seed": seed,
                "point": "median of the samples",
                "temperature": cc.temperature,
                "top_k": cc.top_k,
                "top_p": cc.top_p,
                "rng": "torch.manual_seed(seed) on torch's global generator (forked)",
            },
        )

    # ---- the softmax head
    def head(self) -> tuple[np.ndarray, None]:
        """The decoder's ``lm_head`` weight (n_tokens × d_model, float32) and
        no bias: logits = W c for the vector c of :meth:`head_inputs`."""
        W = self.model.get_output_embeddings().weight.detach().float().cpu().numpy()
        return W, None

    def _decoder_start_id(self) -> int:
        gc = getattr(self.model, "generation_config", None)
        for v in (
            getattr(gc, "decoder_start_token_id", None),
            self.model.config.decoder_start_token_id,
            self.cc.pad_token_id,
        ):
            if v is not None:
                return int(v)
        raise CheckpointError(f"{self.path}: no decoder_start_token_id in the config")  # pragma: no cover

    def head_inputs(self, series, *, batch_size: int = 8, nan: str = "interpolate", return_logits: bool = False):
        """(S, d) float32: per context, the vector entering ``lm_head`` at the
        first decoding step (decoder over the start token, final norm, the T5
        rescale d_model ** -0.5 when ``config.scale_decoder_outputs``), read
        with a pre-hook on ``lm_head``. ``return_logits``: also the model's
        first-step logits (S, V) from the same pass."""
        import torch

        from isofast._input import check_int

        batch_size = check_int(batch_size, "batch_size", minimum=1)
        ctx = self.contexts(series, nan=nan)
        head = self.model.get_output_embeddings()
        start = self._decoder_start_id()
        got: list = []

        def hook(_mod, args):
            got.append(args[0].detach())

        rows: list = [None] * len(ctx)
        logits: list = [None] * len(ctx)
        h = head.register_forward_pre_hook(hook)
        try:
            with torch.inference_mode():
                for _length, idx in by_length(ctx).items():
                    for s0 in range(0, len(idx), batch_size):
                        group = idx[s0 : s0 + batch_size]
                        ids, mask, _ = self._tokens(np.stack([ctx[i] for i in group]))
                        dec = torch.full((len(group), 1), start, dtype=torch.long, device=ids.device)
                        got.clear()
                        out = self.model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec)
                        if len(got) != 1 or tuple(got[0].shape) != (len(group), 1, self.d_model):
                            raise RuntimeError(
                                f"chronos: lm_head ran {len(got)} times in one first-step pass "
                                f"(shape {tuple(got[0].shape) if got else None}); expected once with "
                                f"({len(group)}, 1, {self.d_model})"
                            )
                        c = got[0][:, 0].float().cpu().numpy()
                        lg = out.logits[:, 0].float().cpu().numpy()
                        for j, i in enumerate(group):
                            rows[i], logits[i] = c[j], lg[j]
        finally:
            h.remove()
        C = np.ascontiguousarray(np.stack(rows), dtype=np.float32)
        if return_logits:
            return C, np.stack(logits)
        return C


# ------------------------------------------------------------------ Chronos-2
class Chronos2Adapter(_PipelineAdapter):
    """Chronos-2 (module docstring)."""

    family = "chronos-2"
    #: future (output-patch) tokens the prefill appends: 1 by default, as
    #: Chronos2Pipeline.embed; :meth:`set_future_tokens` sets it per adapter
    prefill_output_patches = 1

    @property
    def future_tokens(self) -> int:
        return int(self.prefill_output_patches)

    def future_tokens_for(self, horizon: int) -> int:
        """``min(⌈H / output_patch⌉, max_output_patches)``: the future tokens
        ``predict_quantiles`` appends in its first model call."""
        ops = int(self.pipeline.model_output_patch_size)
        return min(-(-check_horizon(horizon) // ops), int(self.cc.max_output_patches))

    def set_future_tokens(self, k: int) -> None:
        self.prefill_output_patches = check_future_tokens(
            k, int(self.cc.max_output_patches), self.family, "the checkpoint's max_output_patches"
        )

    @classmethod
    def load(cls, path, *, device: str = "cpu", dtype: str = "float32") -> Chronos2Adapter:
        from chronos import Chronos2Pipeline
        from chronos.chronos2 import Chronos2Model

        return _load_pipeline(cls, path, Chronos2Model, Chronos2Pipeline, device, dtype)

    @classmethod
    def build_random(
        cls,
        folder,
        *,
        seed: int = 0,
        d_model: int = 32,
        num_layers: int = 2,
        context_length: int = 64,
        patch: int = 8,
        max_output_patches: int = 4,
    ) -> Path:
        """A random-init Chronos-2 (``Chronos2CoreConfig``), saved with
        ``Chronos2Pipeline.save_pretrained``. Its quantiles are the 9 deciles
        (the package's long-horizon unrolling needs 0.1 … 0.9)."""
        import torch
        from chronos import Chronos2Pipeline
        from chronos.chronos2 import Chronos2CoreConfig, Chronos2Model

        torch.manual_seed(seed)
        cc = dict(
            context_length=context_length,
            input_patch_size=patch,
            input_patch_stride=patch,
            output_patch_size=patch,
            quantiles=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
            use_reg_token=True,
            use_arcsinh=True,
            max_output_patches=max_output_patches,
        )
        cfg = Chronos2CoreConfig(
            d_model=d_model,
            d_kv=d_model // 4,
            d_ff=2 * d_model,
            num_layers=num_layers,
            num_heads=4,
            chronos_config=cc,
            chronos_pipeline_class="Chronos2Pipeline",
            architectures=["Chronos2Model"],
        )
        model = Chronos2Model(cfg).eval()
        folder = Path(folder)
        Chronos2Pipeline(model=model).save_pretrained(str(folder))
        return folder

    @property
    def cc(self):
        return self.model.chronos_config

    @property
    def stack(self) -> Stack:
        enc = self.model.encoder
        return Stack("encoder", list(enc.block), [b.layer[0].self_attention for b in enc.block], enc.final_layer_norm)

    @property
    def d_model(self) -> int:
        return int(self.model.config.d_model)

    @property
    def config_layers(self) -> int:
        return int(self.model.config.num_layers)

    @property
    def serializer(self) -> TokenSerializer:
        cc = self.cc
        suffix = (("reg",) if cc.use_reg_token else ()) + ("future",) * self.prefill_output_patches
        return TokenSerializer(
            family=self.family,
            unit="patch",
            patch_len=int(cc.input_patch_size),
            stride=int(cc.input_patch_stride),
            pad="left",
            max_context=int(cc.context_length),
            suffix=suffix,
            normalization="instance: (x − nanmean) / population nan-std (0 → 1e-5)"
            + (", then arcsinh" if cc.use_arcsinh else "")
            + ", per context; + time encoding channel",
        )

    def _prefill(self, batch: np.ndarray) -> None:
        """``Chronos2Model.encode`` once, each context its own group
        (``group_ids = arange(B)``: no group attention across windows), with
        :attr:`future_tokens` future tokens (``num_output_patches``; 1 by
        default, as ``Chronos2Pipeline.embed``)."""
        import torch

        dev = self.model.device
        ctx = torch.as_tensor(batch, dtype=torch.float32, device=dev)
        groups = torch.arange(ctx.shape[0], dtype=torch.long, device=dev)
        self.model.encode(context=ctx, group_ids=groups, num_output_patches=self.prefill_output_patches)

    def _fold(self, ctx, horizon, forecast_kw):
        """``predict_quantiles`` runs the model on batches of 256 contexts with
        ``min(⌈H / output_patch⌉, max_output_patches)`` future tokens, then
        unrolls longer horizons. Time attention is bidirectional, so the
        context rows depend on the number of future tokens: the first call is
        the prefill only when it appends the prefill's :attr:`future_tokens`
        (by default one: H ≤ output patch)."""
        why = self._one_batch(ctx)
        if why:
            return why
        if len(ctx) > 256:
            return f"{self.family}: the pipeline forecasts {len(ctx)} contexts in batches of 256"
        n_out = self.future_tokens_for(horizon)
        # beyond max_output_patches × output patch the package unrolls: one
        # more model call per such span, on the context grown by the median
        span = int(self.cc.max_output_patches) * int(self.pipeline.model_output_patch_size)
        if n_out != self.prefill_output_patches:
            return (
                f"{self.family}: horizon {horizon} makes the forecast append {n_out} future tokens (the prefill "
                f"{self.prefill_output_patches}); bidirectional time attention makes the context rows depend on them "
                f"(future_tokens={n_out} captures the forecast's rows in one pass)"
            )
        return FoldPlan(calls=-(-int(horizon) // span))

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
        """``Chronos2Pipeline.predict_quantiles`` (quantile head, no sampling:
        ``n_samples`` and ``seed`` are ignored; each context is its own task,
        no cross-learning). Levels outside the model's set are interpolated
        by the package; the point forecast is its median (0.5) quantile."""
        import torch

        H = check_horizon(horizon)
        levels = check_levels(quantile_levels)
        ctx = self.contexts(series, nan=nan)
        t0 = time.perf_counter()
        with torch.inference_mode():
            q, med = self.pipeline.predict_quantiles(
                [torch.as_tensor(c, dtype=torch.float32) for c in ctx],
                prediction_length=H,
                quantile_levels=levels.tolist(),
            )
        qs = np.stack([x[0].float().numpy() for x in q]).astype(np.float64)  # (S, H, Q)
        point = np.stack([m[0].float().numpy() for m in med]).astype(np.float64)  # (S, H)
        model_levels = [float(v) for v in self.cc.quantiles]
        interp = [float(v) for v in levels if not any(abs(v - m) < 1e-12 for m in model_levels)]
        return TSFMForecast(
            point=point,
            quantile_levels=levels,
            quantiles=np.moveaxis(qs, -1, 0),
            family=self.family,
            seconds=time.perf_counter() - t0,
            settings={
                "horizon": H,
                "point": "median (the 0.5 quantile head)",
                "model_quantiles": model_levels,
                "interpolated_levels": interp,
                "cross_learning": False,
            },
        )
