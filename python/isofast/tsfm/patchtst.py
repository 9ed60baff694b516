"""PatchTST through transformers' ``PatchTSTForPrediction`` (Nie et al. 2023,
"A Time Series is Worth 64 Words: Long-term Forecasting with Transformers",
ICLR; code Apache-2.0, transformers).

transformers is imported inside the functions, so this module imports
without it.

Loading: a folder written by ``PatchTSTForPrediction.save_pretrained``
(``model_type`` ``patchtst``), loaded with ``from_pretrained`` from
safetensors and checked against config.json. Folders of the other PatchTST
heads (``PatchTSTForPretraining``, ``…ForRegression``,
``…ForClassification``) are refused by name: isofast forecasts with the
prediction head.

Numbers → inputs (``PatchTSTModel.forward``), channel-independent: the input
is (batch, time, C) with C = ``num_input_channels``; isofast feeds one
series and, when C > 1, the same series in every channel, and reads channel
``channel`` (``load(channel=…)``, default 0). PatchTST reads *exactly*
``context_length`` values: longer contexts are cut to the last
``context_length`` values; shorter ones are refused (``InputError``) — the
model has no padding mask (``past_observed_mask`` only changes the scaler's
statistics; masked positions still enter the patches as values). Scaling per
channel over the context (``config.scaling``): ``"std"`` (x − mean) /
sqrt(population var + 1e-5), ``"mean"`` or ``True`` x / mean(|x|) (≥ 1e-10),
else none. Patches (``PatchTSTPatchify``): ``num_patches = (context_length −
patch_length) // patch_stride + 1``; the first ``sequence_start =
context_length − (patch_length + patch_stride·(num_patches − 1))`` values
(the *oldest* remainder) are dropped, then ``unfold(patch_length,
patch_stride)``. Each patch → linear ``input_embedding`` → d_model, + the
positional encoding (``sincos`` or learned); with ``use_cls_token`` a CLS
token is prepended. Token layout: ``TokenSerializer(pad="none",
drop="oldest", patch_len, stride, max_context=context_length,
prefix=("cls",) if use_cls_token)``.

Layers and sites: blocks ``model.encoder.layers[i]`` (``PatchTSTEncoderLayer``,
called with the keyword ``hidden_state=``; returns the tuple ``(hidden,)``
with hidden (batch, C, patches, d) — 4-D, so :meth:`PatchTSTAdapter._rows`
takes channel ``channel``); attention site ``layers[i].self_attn``
(``out_proj`` output, before the residual add (pre-norm) or the add & norm
(post-norm), shape (batch·C, patches, d), reshaped to (batch, C, patches, d)
first). With ``channel_attention`` the same ``self_attn`` module also runs
across channels inside each block (a second call), so the attention site is
not offered for such checkpoints. No final norm after the stack: layer n is
the output of block n. transformers' ``output_hidden_states`` returns only
the n block *inputs* for PatchTST, so hooks are used.

What is recorded: one ``PatchTSTModel.forward`` (the encoder; the head is
not run) over the last ``context_length`` values. Dropout and input masking
are off in eval / for the prediction model (``do_mask_input=False``);
BatchNorm uses its running statistics, so rows do not depend on the batch.

Forecasts: ``prediction_outputs`` (batch, prediction_length, C), channel
``channel``. With ``loss="mse"`` the head is a point forecast: PatchTST
provides no quantiles, so every requested level repeats the point forecast
(``settings["quantiles"]`` says so) and ``samples`` is None. With a
distribution head (``loss="nll"``: ``distribution_output`` student_t, normal
or negative_binomial) ``generate`` draws ``n_samples`` paths (the config's
``num_parallel_samples`` is set to ``n_samples`` for the call; torch's
global generator seeded with ``seed`` in a forked random state); point = the
samples' median, quantiles = ``np.quantile`` of the samples. PatchTST is a
direct multi-step model: horizons beyond ``prediction_length`` are refused
(``InputError``), not rolled out.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from isofast.errors import InputError
from isofast.models import _quiet_transformers
from isofast.serializers.tsfm import TokenSerializer
from isofast.tsfm.base import (
    FoldPlan,
    load_transformers,
    Stack,
    TSFMAdapter,
    TSFMForecast,
    check_horizon,
    check_levels,
    check_seed,
    hash_folder_weights,
    seeded,
)


class PatchTSTAdapter(TSFMAdapter):
    """PatchTST (module docstring). ``channel``: the input channel whose rows
    and forecasts are read (every channel carries the same series)."""

    family = "patchtst"

    def __init__(self, model, *, channel: int = 0, **kw):
        super().__init__(model, **kw)
        self.channel = int(channel)

    @classmethod
    def load(cls, path, *, device: str = "cpu", dtype: str = "float32", channel: int = 0) -> PatchTSTAdapter:
        from transformers import PatchTSTForPrediction

        from isofast._input import check_int

        folder, model = load_transformers(cls, path, PatchTSTForPrediction, "PatchTSTForPrediction", device, dtype)
        C = int(model.config.num_input_channels)
        channel = check_int(channel, "channel", minimum=0, maximum=C - 1)
        return cls(model, channel=channel, path=folder, weights_hash=hash_folder_weights(folder), device=device)

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
        stride: int | None = None,
        prediction_length: int = 64,
        num_heads: int = 4,
        num_input_channels: int = 1,
        loss: str = "mse",
        distribution_output: str = "student_t",
        scaling: str | None = "std",
        use_cls_token: bool = False,
        norm_type: str = "batchnorm",
        channel_attention: bool = False,
        num_parallel_samples: int = 20,
    ) -> Path:
        """A random-init ``PatchTSTForPrediction`` (``PatchTSTConfig``),
        saved with its ``save_pretrained``. ``loss="nll"`` gives a
        distribution head (``distribution_output``)."""
        import torch
        from transformers import PatchTSTConfig, PatchTSTForPrediction

        torch.manual_seed(seed)
        cfg = PatchTSTConfig(
            num_input_channels=num_input_channels,
            context_length=context_length,
            prediction_length=prediction_length,
            patch_length=patch,
            patch_stride=stride or patch,
            d_model=d_model,
            num_attention_heads=num_heads,
            num_hidden_layers=num_layers,
            ffn_dim=2 * d_model,
            head_dropout=0.0,
            scaling=scaling,
            loss=loss,
            distribution_output=distribution_output,
            use_cls_token=use_cls_token,
            norm_type=norm_type,
            channel_attention=channel_attention,
            num_parallel_samples=num_parallel_samples,
        )
        folder = Path(folder)
        with _quiet_transformers():
            PatchTSTForPrediction(cfg).eval().save_pretrained(str(folder))
        return folder

    # ---- structure
    @property
    def cfg(self):
        return self.model.config

    @property
    def stack(self) -> Stack:
        layers = list(self.model.model.encoder.layers)
        attn = None if self.cfg.channel_attention else [b.self_attn for b in layers]
        return Stack("model.encoder.layers", layers, attn, None)

    @property
    def d_model(self) -> int:
        return int(self.cfg.d_model)

    @property
    def config_layers(self) -> int:
        return int(self.cfg.num_hidden_layers)

    @property
    def context_length(self) -> int:
        return int(self.cfg.context_length)

    @property
    def serializer(self) -> TokenSerializer:
        c = self.cfg
        if c.scaling == "std":
            norm = "(x − mean) / sqrt(population var + 1e-5) over the context"
        elif c.scaling == "mean" or c.scaling is True:
            norm = "x / mean(|x|) (≥ 1e-10) over the context"
        else:
            norm = "none"
        return TokenSerializer(
            family=self.family,
            unit="patch",
            patch_len=int(c.patch_length),
            stride=int(c.patch_stride),
            pad="none",
            drop="oldest",
            max_context=int(c.context_length),
            prefix=("cls",) if c.use_cls_token else (),
            normalization=norm + f"; exactly {c.context_length} values; the oldest remainder is dropped",
        )

    def describe(self) -> dict:
        d = super().describe()
        d.update(
            channel=self.channel,
            num_input_channels=int(self.cfg.num_input_channels),
            head="point (loss='mse')"
            if self.model.distribution_output is None
            else f"distribution ({self.cfg.distribution_output})",
            prefill="PatchTSTModel.forward (encoder, once; head not run)",
        )
        return d

    def _rows(self, tensor, batch: int, site: str):
        """(batch, C, patches, d) blocks, (batch·C, patches, d) attention →
        channel ``channel`` as (batch, patches, d)."""
        C = int(self.cfg.num_input_channels)
        if site == "attention" and tensor.ndim == 3 and tensor.shape[0] == batch * C:
            tensor = tensor.reshape(batch, C, *tensor.shape[1:])
        if tensor.ndim == 4:
            tensor = tensor[:, self.channel]
        return tensor

    # ---- inputs
    def _require_length(self, ctx: list[np.ndarray]) -> None:
        T = self.context_length
        short = [(i, c.size) for i, c in enumerate(ctx) if c.size < T]
        if short:
            i, n = short[0]
            raise InputError(
                f"patchtst reads exactly context_length = {T} values; series {i} has only {n} "
                f"({len(short)} series too short). PatchTST has no padding mask, so isofast does not pad: pass "
                f"contexts of at least {T} values (longer ones are cut to their last {T})"
            )

    def _input(self, batch):
        import torch

        T, C = self.context_length, int(self.cfg.num_input_channels)
        x = torch.as_tensor(np.asarray(batch), dtype=torch.float32)
        if x.shape[1] != T:
            raise InputError(f"patchtst reads exactly context_length = {T} values, got {x.shape[1]}")
        dt = next(self.model.parameters()).dtype
        return x[:, :, None].expand(-1, -1, C).contiguous().to(device=torch.device(self.device), dtype=dt)

    def embed(self, series, **kw):
        self._require_length(self.contexts(series, nan=kw.get("nan", "interpolate")))
        return super().embed(series, **kw)

    def _prefill(self, batch: np.ndarray) -> None:
        self.model.model(past_values=self._input(batch))

    def _fold(self, ctx, horizon, forecast_kw):
        """The forecast is one ``PatchTSTForPrediction`` forward (point head)
        or ``generate`` (one forward, then samples from its distribution): its
        encoder pass is the prefill, on the same (batch, context_length) input."""
        return self._one_batch(ctx) or FoldPlan(calls=1)

    # ---- forecasts
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
        """``prediction_outputs`` (point head) or ``generate`` (distribution
        head); module docstring. Horizons ≤ ``prediction_length`` only."""
        import torch

        from isofast._input import check_int

        H = check_horizon(horizon)
        levels = check_levels(quantile_levels)
        seed = check_seed(seed)
        Hm = int(self.cfg.prediction_length)
        if H > Hm:
            raise InputError(
                f"patchtst forecasts prediction_length = {Hm} steps in one shot (a direct multi-step head); horizon "
                f"{H} is longer, and isofast does not roll PatchTST out"
            )
        ctx = self.contexts(series, nan=nan)
        self._require_length(ctx)
        T = self.context_length
        x = self._input(np.stack([c[-T:] for c in ctx]).astype(np.float32))
        t0 = time.perf_counter()
        ch = self.channel
        if self.model.distribution_output is None:
            with torch.inference_mode():
                out = self.model(past_values=x).prediction_outputs  # (S, Hm, C)
            point = out[:, :H, ch].float().cpu().numpy().astype(np.float64)
            return TSFMForecast(
                point=point,
                quantile_levels=levels,
                quantiles=np.repeat(point[None], levels.size, axis=0),
                family=self.family,
                seconds=time.perf_counter() - t0,
                settings={
                    "horizon": H,
                    "point": "the point head (loss='mse')",
                    "channel": ch,
                    "quantiles": "not available: PatchTST's point head gives no quantiles; every level "
                    "repeats the point forecast",
                },
            )
        n = check_int(n_samples, "n_samples", minimum=1)
        old = self.cfg.num_parallel_samples
        self.cfg.num_parallel_samples = n
        try:
            with seeded(seed, self.device), torch.inference_mode():
                seq = self.model.generate(past_values=x).sequences  # (S, n, Hm, C)
        finally:
            self.cfg.num_parallel_samples = old
        samples = seq[:, :, :H, ch].float().cpu().numpy().astype(np.float64)
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
                "channel": ch,
                "point": "median of the samples",
                "distribution_output": self.cfg.distribution_output,
                "rng": "torch.manual_seed(seed) on torch's global generator (forked)",
            },
        )


__all__ = ["PatchTSTAdapter"]
