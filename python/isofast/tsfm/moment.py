"""MOMENT from ``momentfm`` (Goswami et al. 2024, "MOMENT: A Family of Open
Time-series Foundation Models", ICML; code MIT; weights per the model cards).

momentfm is imported inside the functions, so this module (and
:func:`detect_config`) imports without it. momentfm 0.1.4 pins
transformers 4.33; it installs with ``--no-deps``
(``scripts/install_tsfm_nodeps.sh``) and runs on transformers 5: its model is
transformers' ``T5EncoderModel(T5Config.from_dict(config["t5_config"]))
.get_encoder()`` (a ``T5Stack``).

Loading: ``MOMENTPipeline.from_pretrained(folder, model_kwargs={},
strict=True)`` (huggingface_hub's ``PyTorchModelHubMixin``; ``config.json`` is
the MOMENT config, with the T5 config under ``t5_config``). For a local
folder the mixin reads ``model.safetensors`` only; isofast refuses a folder
without it, and passes ``strict=True`` (the mixin's default would leave
missing tensors random): missing, unexpected or mis-shaped tensors are a
``CheckpointError``. The head is the one ``config.json``'s ``task_name``
names (``reconstruction`` in the published checkpoints, the pre-trained
masked-reconstruction head); isofast never calls ``.init()``, which would
swap in a *new, random* head. ``transformer_type`` must be ``encoder_only``
(the published models) and ``patch_stride_len`` must equal ``patch_len``
(the package's masks assume it). No ``trust_remote_code``; the T5 config is
plain data and no backbone is downloaded.

Numbers → inputs (``MOMENT.embed``, the package's own representation path):
the model reads exactly ``seq_len`` (512) values. isofast keeps the last
min(L, 512) values and left-pads them with zeros to 512, with ``input_mask``
0 on the padding (as the MOMENT tutorials do). RevIN (non-affine): mean and
population std (+1e-5) over the ``input_mask`` positions, x → (x − mean)/std,
NaN/inf → 0; patches of 8 every 8 (64 patches); a patch counts as observed
only when *all* its 8 positions are (``Masking.convert_seq_to_patch_view``),
so a partly padded patch — the oldest one when L is not a multiple of 8 — is
replaced by the learned ``mask_embedding`` and masked out of attention like
the pure-padding patches (its values still enter RevIN's statistics); linear
value embedding + sinusoidal positions; T5 encoder (relative position bias)
with ``attention_mask`` = the patch-view mask. Token layout:
:class:`MomentSerializer` (``TokenSerializer(fixed_values=512, patch_len=8,
pad="left")`` with partly padded patches marked ``pad``): always 64 rows.

Layers and sites: blocks ``model.encoder.block[i]`` (transformers' ``T5Block``;
returns a tuple whose element 0 is the hidden state); attention site
``block[i].layer[0].SelfAttention`` (``T5Attention``: the o-projected output
before the residual add); final norm ``model.encoder.final_layer_norm``.

What is recorded (``_prefill``): one ``MOMENT.embed(x_enc, input_mask,
reduction="none")`` — the encoder runs once; no head. (The reconstruction and
forecasting paths feed the encoder slightly differently: ``reconstruction``
draws a random pre-training mask when ``mask_ratio`` > 0, ``forecast`` embeds
the padding patches as values. ``embed`` is deterministic.) With
``set_future_tokens(k)`` (reconstruction head): one ``short_forecast(…,
forecast_horizon=8k)`` instead — the zero-shot forecast's own encoder pass
for ⌈H/8⌉ = k: the last ≤ 512 − 8k values, shifted left so that k masked
patches follow (tokens: ``fixed_values = 512 − 8k`` plus k ``future``);
then forecast and capture share that pass.

Forecasts (honest about the heads): a published MOMENT checkpoint holds only
the pre-trained *reconstruction* head; the ``forecasting`` head
(``ForecastingHead``, a linear map from all patch embeddings to the horizon)
is created with random weights by ``init()`` and is meaningless until
fine-tuned. So:

* reconstruction head (published checkpoints): ``MOMENT.short_forecast`` —
  the package's zero-shot short-horizon forecast by masked reconstruction:
  the input is shifted left by m = 8·⌈H/8⌉ steps, the last m positions are
  masked (mask embedding), and the reconstruction head fills them in; the
  first H are the forecast. isofast keeps the last min(L, 512 − m) values so
  that no context value wraps around. H ≤ 512 − 8.
* forecasting head (a folder saved after fine-tuning, ``task_name:
  "forecasting"`` with ``forecast_horizon``): ``MOMENT.forecast`` on the
  padded context; H ≤ ``forecast_horizon``.

Either way MOMENT gives one deterministic path: every requested quantile
level repeats the point forecast (``settings["quantiles"]`` says so),
``samples`` is None, ``n_samples``/``seed`` are ignored.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isofast.errors import CheckpointError, InputError
from isofast.serializers.base import OTHER
from isofast.serializers.tsfm import TokenSerializer, TokenTable
from isofast.tsfm.base import (
    FoldPlan,
    T5EncoderStack,
    TSFMAdapter,
    TSFMForecast,
    as_torch_dtype,
    check_future_tokens,
    check_horizon,
    check_levels,
    hash_folder_weights,
    offline,
)
from isofast.tsfm.spec import read_config

_TASKS = ("reconstruction", "forecasting", "embedding", "classification")


def detect_config(cfg: dict) -> str | None:
    """``"moment"`` for the config.json momentfm's ``save_pretrained`` writes
    (the MOMENT config: ``t5_config`` (an object), ``seq_len``,
    ``patch_len``, and ``transformer_backbone``/``transformer_type``/
    ``task_name``), else None."""
    if not isinstance(cfg, dict) or "model_type" in cfg or "architectures" in cfg:
        return None
    if not isinstance(cfg.get("t5_config"), dict):
        return None
    if "seq_len" not in cfg or "patch_len" not in cfg:
        return None
    if not any(k in cfg for k in ("transformer_backbone", "transformer_type", "task_name")):
        return None
    return "moment"


@dataclass(frozen=True)
class MomentSerializer(TokenSerializer):
    """MOMENT's layout: ``fixed_values`` (512) left-padded values in patches;
    a patch is observed only when all its positions are, so a partly padded
    patch reads no value (role ``other``, kind ``pad``), like a pure-padding
    one."""

    def tokens(self, length: int) -> TokenTable:
        t = super().tokens(length)
        role, first, last, kind = t.role.copy(), t.first.copy(), t.last.copy(), list(t.kind)
        P = int(self.patch_len)
        for i, k in enumerate(kind):
            if k == "patch" and last[i] - first[i] + 1 < P:
                role[i], first[i], last[i], kind[i] = OTHER, -1, -1, "pad"
        return TokenTable(role, first, last, tuple(kind))

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["partial_patch"] = "masked (reads no value)"
        return d


def _expect(folder: Path) -> dict:
    from isofast.tsfm.spec import detect_from_config

    cfg = read_config(folder)
    got = detect_from_config(cfg)
    if got != "moment":
        found = got or f"model_type={cfg.get('model_type')!r}, architectures={cfg.get('architectures')!r}"
        raise CheckpointError(f"{folder}: expected a moment checkpoint, found {found}")
    return cfg


def _check_config(folder: Path, cfg: dict) -> None:
    t5 = cfg["t5_config"]
    for k in ("num_layers", "d_model", "num_heads"):
        if not isinstance(t5.get(k), int):
            raise CheckpointError(f"{folder}/config.json: t5_config.{k} is missing or not an integer")
    for k in ("seq_len", "patch_len"):
        if not isinstance(cfg.get(k), int) or cfg[k] < 1:
            raise CheckpointError(f"{folder}/config.json: {k} is missing or not a positive integer")
    stride = cfg.get("patch_stride_len", cfg["patch_len"])
    if stride != cfg["patch_len"]:
        raise CheckpointError(
            f"{folder}/config.json: patch_stride_len {stride} differs from patch_len "
            f"{cfg['patch_len']}; momentfm's masks assume non-overlapping patches"
        )
    if cfg["seq_len"] % cfg["patch_len"]:
        raise CheckpointError(f"{folder}/config.json: seq_len {cfg['seq_len']} is not a multiple of patch_len")
    tt = cfg.get("transformer_type", "encoder_only")
    if tt != "encoder_only":
        raise CheckpointError(
            f"{folder}/config.json: transformer_type {tt!r}; isofast reads encoder_only MOMENT "
            "checkpoints (the published ones)"
        )
    task = cfg.get("task_name")
    if task not in _TASKS:
        raise CheckpointError(f"{folder}/config.json: task_name {task!r} is not one of {_TASKS}")
    if task == "forecasting" and not isinstance(cfg.get("forecast_horizon"), int):
        raise CheckpointError(f"{folder}/config.json: task_name 'forecasting' without an integer forecast_horizon")
    d = cfg.get("d_model")
    if d is not None and d != t5["d_model"]:
        raise CheckpointError(f"{folder}/config.json: d_model {d} differs from t5_config.d_model {t5['d_model']}")


class MomentAdapter(T5EncoderStack, TSFMAdapter):
    """MOMENT (module docstring)."""

    family = "moment"

    @classmethod
    def load(cls, path, *, device: str = "cpu", dtype: str = "float32") -> MomentAdapter:
        offline()
        folder = Path(path)
        cfg = _expect(folder)
        _check_config(folder, cfg)
        if not (folder / "model.safetensors").is_file():
            found = sorted(p.name for p in folder.iterdir())[:8]
            raise CheckpointError(
                f"{folder}: a moment checkpoint needs its weights as model.safetensors (found {found}); isofast "
                "does not unpickle weight files from a folder"
            )
        from momentfm import MOMENTPipeline

        kwargs = {}
        if cfg["task_name"] == "forecasting":  # the package's check wants the horizon in model_kwargs too
            kwargs = {"task_name": "forecasting", "forecast_horizon": cfg["forecast_horizon"]}
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), _quiet():
                model = MOMENTPipeline.from_pretrained(
                    str(folder), model_kwargs=kwargs, strict=True, map_location="cpu"
                )
        except RuntimeError as exc:
            msg = " ".join(str(exc).split())
            raise CheckpointError(
                f"{folder}: the weights do not match the moment config in config.json ({msg[:400]})"
            ) from exc
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{folder}: cannot load it as a moment checkpoint ({exc})") from exc
        model = model.to(device=device, dtype=as_torch_dtype(dtype)).eval()
        return cls(model, path=folder, weights_hash=hash_folder_weights(folder), device=device)

    @classmethod
    def build_random(
        cls,
        folder,
        *,
        seed: int = 0,
        d_model: int = 32,
        num_layers: int = 2,
        num_heads: int | None = None,
        d_ff: int | None = None,
        seq_len: int = 512,
        patch: int = 8,
        task_name: str = "reconstruction",
        forecast_horizon: int = 16,
    ) -> Path:
        """A random-init MOMENT (a small flan-T5-style encoder: gated-GELU,
        32 relative-position buckets, vocabulary 2 so the unused token table
        stays small), saved with ``MOMENTPipeline.save_pretrained`` like the
        published checkpoints (``task_name="reconstruction"``: the
        reconstruction head). ``task_name="forecasting"`` saves a folder with a
        (random, i.e. "fine-tuned" for tests) forecasting head instead."""
        import torch
        from momentfm import MOMENTPipeline

        if num_heads is None:
            num_heads = d_model // 64 if d_model >= 128 and d_model % 64 == 0 else 4
        torch.manual_seed(seed)
        t5_config = dict(
            d_model=d_model,
            d_kv=d_model // num_heads,
            d_ff=d_ff or 2 * d_model,
            num_layers=num_layers,
            num_decoder_layers=num_layers,
            num_heads=num_heads,
            feed_forward_proj="gated-gelu",
            relative_attention_num_buckets=32,
            relative_attention_max_distance=128,
            vocab_size=2,
            dropout_rate=0.1,
            layer_norm_epsilon=1e-6,
            is_encoder_decoder=True,
            model_type="t5",
            initializer_factor=1.0,
        )
        config = dict(
            task_name=task_name,
            model_name="MOMENT",
            seq_len=seq_len,
            patch_len=patch,
            patch_stride_len=patch,
            d_model=None,
            transformer_type="encoder_only",
            transformer_backbone="google/flan-t5-small",
            t5_config=t5_config,
            revin_affine=False,
            add_positional_embedding=True,
            value_embedding_bias=False,
            orth_gain=1.41,
            mask_ratio=0.3,
            randomly_initialize_backbone=False,
            enable_gradient_checkpointing=False,
            head_dropout=0.1,
        )
        mk = {"task_name": task_name}
        if task_name == "forecasting":
            config["forecast_horizon"] = forecast_horizon
            mk["forecast_horizon"] = forecast_horizon
        with _quiet():
            model = MOMENTPipeline(config, model_kwargs=mk)
        folder = Path(folder)
        model.eval().save_pretrained(str(folder))
        return folder

    # ---- structure
    @property
    def config_layers(self) -> int:
        return int(self.model.config.t5_config["num_layers"])

    @property
    def seq_len(self) -> int:
        return int(self.model.config.seq_len)

    @property
    def patch_len(self) -> int:
        return int(self.model.config.patch_len)

    @property
    def task_name(self) -> str:
        return str(self.model.task_name)

    #: masked future patches capture's pass appends: 0 = ``MOMENT.embed`` (the
    #: default); k ≥ 1 = the encoder pass of ``short_forecast`` for ⌈H/8⌉ = k
    _future = 0

    @property
    def serializer(self) -> MomentSerializer:
        k, T = self._future, self.seq_len
        how = (
            f"exactly {T} values, left zero-padded with input_mask 0; partly padded patches masked"
            if not k
            else f"short_forecast's encoder input: the last ≤ {T - k * self.patch_len} values, left zero-padded to "
            f"{T} positions, shifted left by {k * self.patch_len} so that {k} masked future patches follow"
        )
        return MomentSerializer(
            family=self.family,
            unit="patch",
            patch_len=self.patch_len,
            stride=self.patch_len,
            pad="left",
            fixed_values=T - k * self.patch_len,
            suffix=("future",) * k,
            normalization=f"RevIN: (x − mean) / (population std + 1e-5) over the observed values; {how}",
        )

    # ---- future tokens: the zero-shot forecast's own encoder pass
    @property
    def future_tokens(self) -> int:
        """0 by default (``MOMENT.embed``: no future patches); k after
        :meth:`set_future_tokens`."""
        return int(self._future)

    def future_tokens_for(self, horizon: int) -> int | None:
        """⌈H / patch_len⌉: the masked patches ``short_forecast`` appends
        (reconstruction head); None for a forecasting head (no such pass)."""
        if self.task_name != "reconstruction":
            return None
        return -(-check_horizon(horizon) // self.patch_len)

    def set_future_tokens(self, k: int) -> None:
        """Capture records ``short_forecast``'s encoder pass for ⌈H/8⌉ = k:
        the last ≤ 512 − 8k values followed by k masked patches (the rows the
        zero-shot forecast reads; forecast and capture then share it)."""
        if self.task_name != "reconstruction":
            raise InputError(
                f"{self.family}: future_tokens needs the reconstruction head (short_forecast's masked patches); "
                f"this checkpoint's {self.task_name!r} head reads the padded context without them"
            )
        most = (self.seq_len - self.patch_len) // self.patch_len
        self._future = check_future_tokens(k, most, self.family, f"{self.seq_len} positions less one patch of context")

    def describe(self) -> dict:
        d = super().describe()
        d.update(task_name=self.task_name, seq_len=self.seq_len)
        return d

    def _inputs(self, rows):
        """Contexts (each ≤ seq_len values; a (B, n) array or a list) → x_enc
        (B, 1, seq_len) left zero-padded and input_mask (B, seq_len), 1 on the values."""
        import torch

        T = self.seq_len
        p = next(self.model.parameters())
        x = torch.zeros((len(rows), 1, T), dtype=p.dtype, device=p.device)
        mask = torch.zeros((len(rows), T), dtype=p.dtype, device=p.device)
        for i, r in enumerate(rows):
            n = len(r)
            if n > T:
                raise InputError(f"moment reads at most {T} values, got {n}")
            x[i, 0, T - n :] = torch.as_tensor(
                np.ascontiguousarray(r, dtype=np.float32), dtype=p.dtype, device=p.device
            )
            mask[i, T - n :] = 1
        return x, mask

    def _prefill(self, batch: np.ndarray) -> None:
        """``MOMENT.embed(x_enc, input_mask, reduction="none")`` once; with
        :attr:`future_tokens` k ≥ 1, ``short_forecast(…, forecast_horizon=8k)``
        once (its encoder pass: the one the zero-shot forecast runs)."""
        x, mask = self._inputs(batch)
        if self._future:
            self.model.short_forecast(x_enc=x, input_mask=mask, forecast_horizon=self._future * self.patch_len)
        else:
            self.model.embed(x_enc=x, input_mask=mask, reduction="none")

    def _fold(self, ctx, horizon, forecast_kw):
        """By default never: ``short_forecast`` shifts the input left by
        8·⌈H/8⌉ steps and masks the end (another input than ``embed``'s), and
        ``forecast`` embeds the padding patches as values rather than as the
        mask embedding ``embed`` uses. With :attr:`future_tokens` = ⌈H/8⌉ the
        prefill *is* ``short_forecast``'s encoder pass: one call."""
        k = self.future_tokens_for(horizon)
        if not self._future or k != self._future:
            return (
                f"{self.family}: its forecast reads other inputs than capture's pass (short_forecast shifts and "
                "masks the context; the forecasting head embeds padding as values)"
                + (f" (future_tokens={k} captures the forecast's rows in one pass)" if k else "")
            )
        why = self._one_batch(ctx)
        if why:
            return why
        if len(ctx) > 64:
            return f"{self.family}: the forecast runs {len(ctx)} contexts in batches of 64"
        return FoldPlan(calls=1)

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
        """``short_forecast`` with the reconstruction head, or ``forecast`` with
        a fine-tuned forecasting head (module docstring). One deterministic
        path: every quantile level repeats the point forecast."""
        import torch

        H = check_horizon(horizon)
        levels = check_levels(quantile_levels)
        ctx = self.contexts(series, nan=nan)
        T, P = self.seq_len, self.patch_len
        task = self.task_name
        if task == "forecasting":
            fh = int(self.model.config.forecast_horizon)
            if H > fh:
                raise InputError(
                    f"this MOMENT checkpoint's forecasting head predicts {fh} steps; horizon {H} is longer"
                )
            keep, how = T, f"MOMENT.forecast with the checkpoint's forecasting head ({fh} steps, first {H} kept)"
        elif task == "reconstruction":
            m = P * -(-H // P)
            if m > T - P:
                raise InputError(
                    f"MOMENT's zero-shot forecast masks ⌈H/{P}⌉·{P} of its {T} positions; "
                    f"horizon {H} leaves no context (at most {T - P})"
                )
            keep = T - m
            how = (
                "MOMENT.short_forecast: zero-shot masked reconstruction of the last "
                f"{m} positions with the pre-trained reconstruction head"
            )
        else:
            raise InputError(f"this MOMENT checkpoint has a {task!r} head, which does not forecast")
        t0 = time.perf_counter()
        out = []
        with torch.inference_mode():
            for s0 in range(0, len(ctx), 64):
                x, mask = self._inputs([c[-keep:] for c in ctx[s0 : s0 + 64]])
                if task == "forecasting":
                    f = self.model.forecast(x_enc=x, input_mask=mask).forecast[:, 0, :H]
                else:
                    f = self.model.short_forecast(x_enc=x, input_mask=mask, forecast_horizon=H).forecast[:, 0]
                out.append(f.float().cpu().numpy())
        point = np.concatenate(out).astype(np.float64)
        return TSFMForecast(
            point=point,
            quantile_levels=levels,
            quantiles=np.repeat(point[None], levels.size, axis=0),
            family=self.family,
            seconds=time.perf_counter() - t0,
            settings={
                "horizon": H,
                "method": how,
                "context_kept": keep,
                "quantiles": "MOMENT gives one deterministic path: every level repeats the point forecast",
            },
        )


@contextlib.contextmanager
def _quiet():
    """momentfm warns on every non-reconstruction head ("Only reconstruction
    head is pre-trained…"); the docs say so once."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Only reconstruction head is pre-trained")
        yield
