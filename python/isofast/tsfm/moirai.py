"""Moirai 1.x and Moirai 2.0 from ``uni2ts`` (Woo et al. 2024, "Unified
Training of Universal Time Series Forecasting Transformers", ICML; Moirai 2.0:
Salesforce 2025; code Apache-2.0, weights CC-BY-NC-4.0 per the model cards).

uni2ts is imported inside the functions, so this module (and
:func:`detect_config`) imports without it. uni2ts 2.0.0 installs only with
``--no-deps`` (``scripts/install_tsfm_nodeps.sh``, docs/models.md).

Loading
-------
``MoiraiModule.from_pretrained(folder)`` / ``Moirai2Module.from_pretrained``
(huggingface_hub's ``PyTorchModelHubMixin``): ``config.json`` holds the
module's init arguments and ``model.safetensors`` the weights. For a local
folder the mixin reads ``model.safetensors`` only (never
``pytorch_model.bin``); isofast also refuses a folder without it before the
mixin runs, and passes ``strict=True`` (the mixin's default ``strict=False``
would silently leave missing tensors random, e.g. for a config that claims
more layers than the weights hold): missing, unexpected or mis-shaped tensors
are a ``CheckpointError``. Moirai 1.x's config holds ``distr_output`` as a
hydra spec (``{"_target_": "uni2ts.distribution.mixture.MixtureOutput",
"components": [...]}``) that uni2ts decodes with ``hydra.utils.instantiate``
after its own ``safe_target_check`` (``_target_`` must start with
``uni2ts.distribution.``). isofast checks it first and more strictly: every
``_target_`` must name exactly one of the classes in
``uni2ts.distribution.DISTRIBUTION_OUTPUTS`` (by its defining module and
name), and no other hydra directive (``_args_``, ``_partial_``,
``_recursive_``, ``_convert_``…) may appear; so loading a folder imports and
instantiates nothing but uni2ts distribution-output classes. Nothing is
unpickled.

Numbers → inputs (the package's ``MoiraiForecast._convert`` /
``Moirai2Forecast._convert``, called by isofast with the package's own
code): one univariate series of L values (float32) → left-padded with
unobserved zeros to a multiple of the patch size P, cut into ⌈L/P⌉ patches
(``past_is_pad`` false, observed mask 1 on real values); then the prediction
window: ⌈prediction_length / P⌉ *future* patches (zeros, ``prediction_mask``
true). ``time_id`` counts patches, ``variate_id`` 0, ``sample_id`` 1. Inside
the module: ``PackedStdScaler`` — loc = mean, scale = population std (+1e-5)
over the observed context values (the prediction window excluded) —
(x − loc)/scale; Moirai 1.x: ``MultiInSizeLinear`` for patch size P, future
patches replaced by the learned ``mask_encoding``; Moirai 2.0: a residual
block over concat(scaled patch, observed mask). Transformer with RoPE on the
patch index and a binary same/other-variate attention bias; bidirectional
(1.x, masked encoder) or causal (2.0, decoder-only) attention.

Token layout (``serializer``): the last ``max_context`` values (default
(max_seq_len − 1) · P, so context plus one future patch fit the
``max_seq_len`` tokens the model was built for; uni2ts itself has no cut);
context patches (pad="left") then the prefill's future tokens
(``suffix=("future",)``): rows = ⌈min(L, max_context)/P⌉ + 1.

Patch size: Moirai 1.x checkpoints support several (``patch_sizes``, e.g.
8/16/32/64/128); its forecasts default to ``patch_size="auto"``, which runs
the module once per patch size on a validation split and keeps the best —
several passes, so capture uses one fixed ``patch_size`` (``load(…,
patch_size=P)``, default the smallest in ``patch_sizes``; recorded in
``describe()`` and the serializer). Moirai 2.0 has one ``patch_size``.

Layers and sites: blocks ``module.encoder.layers[i]``
(``TransformerEncoderLayer``, pre-norm, called positionally; returns a
Tensor (batch, tokens, d)); attention site ``layers[i].self_attn``
(``GroupedQueryAttention``: its ``out_proj`` output, before the residual
add); final norm ``module.encoder.norm`` (RMSNorm). ``num_heads = d_model //
64``, so d_model is a multiple of 64.

What is recorded (``_prefill``): the packed inputs of ``_convert`` with
``context_length = L`` and ``prediction_length = P`` (one future token; Moirai
1.x: ``k·P`` after ``set_future_tokens(k)``, the rows a forecast of ⌈H/P⌉ = k
patches computes, since its bidirectional attention lets every context row
see the future patches), and
**one** module forward on them — Moirai 1.x: ``MoiraiForecast._get_distr``
(the module forward of a fixed-patch forecast, without sampling); Moirai 2.0:
``Moirai2Module.forward(..., training_mode=False)``, the first call of
``Moirai2Forecast.forward`` (which, for horizons beyond ``num_predict_token``
patches, calls the module again autoregressively with the batch expanded by
the quantiles: not in the prefill). In Moirai 2.0 the attention is causal, so
the future token does not change the context rows.

Forecasts: Moirai 1.x — ``MoiraiForecast(past_target, past_observed_target,
past_is_pad)`` → ``n_samples`` paths (batch, n, H) from the mixture
distribution, torch's global generator seeded with ``seed`` in a forked random
state (the caller's state is restored); point = median of the samples,
quantiles = ``np.quantile`` of the samples. ``patch_size="auto"`` is
available for forecasts (``forecast(…, patch_size="auto")``; it needs more
than H values and uses the last H as the package's validation split).
Moirai 2.0 — ``Moirai2Forecast.predict([context])`` → the model's quantile
levels (the 9 deciles); other levels are interpolated linearly between the
model's levels (clamped outside them; ``settings`` lists them); point = the
0.5 level. Contexts are grouped by length (no padding added); each group is
forecast with ``context_length`` = its length (cut to ``max_context``).
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from isofast.errors import CheckpointError, InputError
from isofast.serializers.tsfm import TokenSerializer
from isofast.tsfm.base import (
    FoldPlan,
    _first_tokens,
    interp_quantiles,
    Stack,
    TSFMAdapter,
    TSFMForecast,
    as_torch_dtype,
    by_length,
    check_future_tokens,
    check_horizon,
    check_levels,
    check_seed,
    hash_folder_weights,
    offline,
    seeded,
)
from isofast.tsfm.spec import read_config

_DISTR_PREFIX = "uni2ts.distribution."
_REQUIRED = ("d_model", "num_layers", "max_seq_len")


# ------------------------------------------------------------------ detection
def _is_moe(cfg: dict) -> bool:
    return "patch_sizes" in cfg and "distr_output" in cfg and "d_ff" in cfg


def detect_config(cfg: dict) -> str | None:
    """``"moirai"`` / ``"moirai-2"`` for the config.json that uni2ts'
    ``save_pretrained`` (``PyTorchModelHubMixin``: the module's init
    arguments) writes, else None.

    * ``MoiraiModule``: ``d_model``, ``num_layers``, ``patch_sizes`` (list),
      ``max_seq_len``, ``attn_dropout_p``, ``dropout_p``, ``scaling`` and
      ``distr_output`` (a hydra spec whose ``_target_`` is in
      ``uni2ts.distribution``); no ``d_ff``.
    * ``Moirai2Module``: ``d_model``, ``d_ff``, ``num_layers``, ``patch_size``
      (int), ``max_seq_len``, … (``num_predict_token``, ``quantile_levels``
      when written by a current huggingface_hub); no ``distr_output``, no
      ``patch_sizes``.
    * ``MoiraiMoEModule`` (``patch_sizes`` + ``distr_output`` + ``d_ff``) is
      not a supported family: None.

    transformers configs (``model_type`` / ``architectures``) never match."""
    if not isinstance(cfg, dict) or "model_type" in cfg or "architectures" in cfg:
        return None
    if any(k not in cfg for k in _REQUIRED):
        return None
    if _is_moe(cfg):
        return None
    d = cfg.get("distr_output")
    if "patch_sizes" in cfg and isinstance(d, dict):
        tgt = d.get("_target_")
        if isinstance(tgt, str) and tgt.startswith(_DISTR_PREFIX) and isinstance(cfg["patch_sizes"], list):
            return "moirai"
        return None
    ps = cfg.get("patch_size")
    if (
        "distr_output" not in cfg
        and "patch_sizes" not in cfg
        and "d_ff" in cfg
        and isinstance(ps, int)
        and not isinstance(ps, bool)
    ):
        return "moirai-2"
    return None


def _expect(folder: Path, want: str) -> dict:
    from isofast.tsfm.spec import detect_from_config

    cfg = read_config(folder)
    got = detect_from_config(cfg)
    if got != want:
        if got:
            found = got
        elif _is_moe(cfg):
            found = "a Moirai-MoE config (uni2ts MoiraiMoEModule), which isofast does not support"
        else:
            found = (
                f"model_type={cfg.get('model_type')!r}, architectures={cfg.get('architectures')!r}, "
                f"keys {sorted(cfg)[:8]}"
            )
        raise CheckpointError(f"{folder}: expected a {want} checkpoint, found {found}")
    return cfg


def _require_model_safetensors(folder: Path, family: str) -> None:
    """The mixin reads exactly ``model.safetensors`` from a local folder."""
    if not (folder / "model.safetensors").is_file():
        found = sorted(p.name for p in folder.iterdir())[:8]
        raise CheckpointError(
            f"{folder}: a {family} checkpoint needs its weights as model.safetensors (found {found}); isofast does "
            "not unpickle weight files from a folder"
        )


def check_distr_output(spec, folder: Path | str = "config.json") -> None:
    """Refuse a ``distr_output`` spec that would make hydra import or build
    anything but a uni2ts distribution-output class: every ``_target_`` must
    be ``<module>.<name>`` of one of ``uni2ts.distribution.DISTRIBUTION_OUTPUTS``
    and no other ``_…_`` directive may appear (``CheckpointError``)."""
    import uni2ts.distribution as D

    allowed = {}
    for name in getattr(D, "DISTRIBUTION_OUTPUTS", []):
        cls = getattr(D, name, None)
        if isinstance(cls, type) and issubclass(cls, D.DistributionOutput):
            allowed[f"{cls.__module__}.{cls.__qualname__}"] = cls

    def bad(msg):
        return CheckpointError(
            f"{folder}: config.json distr_output {msg}; isofast builds only uni2ts distribution "
            f"outputs ({', '.join(sorted(allowed))})"
        )

    def walk(o, where):
        if isinstance(o, dict):
            for k in o:
                if not isinstance(k, str):
                    raise bad(f"has a non-string key {k!r} at {where}")
                if k.startswith("_") and k != "_target_":
                    raise bad(f"has the hydra directive {k!r} at {where}")
            if "_target_" in o and o["_target_"] not in allowed:
                raise bad(f"names the _target_ {o['_target_']!r} at {where}")
            for k, v in o.items():
                walk(v, f"{where}.{k}")
        elif isinstance(o, list):
            for i, v in enumerate(o):
                walk(v, f"{where}[{i}]")
        elif not (o is None or isinstance(o, (str, int, float, bool))):
            raise bad(f"holds a {type(o).__name__} at {where}")

    if not isinstance(spec, dict) or "_target_" not in spec:
        raise bad("is not a hydra object spec with a _target_")
    walk(spec, "distr_output")


def _load_module(module_cls, folder: Path, family: str, device: str, dtype: str):
    """``module_cls.from_pretrained(folder, strict=True)``, its "Loading weights"
    print silenced; ``CheckpointError`` when the weights do not fit the config."""
    offline()
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            module = module_cls.from_pretrained(str(folder), strict=True, map_location="cpu")
    except RuntimeError as exc:  # load_state_dict / safetensors: missing, unexpected or mis-shaped tensors
        msg = " ".join(str(exc).split())
        raise CheckpointError(
            f"{folder}: the weights do not match the {family} config in config.json ({msg[:400]})"
        ) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{folder}: cannot load it as a {family} checkpoint ({exc})") from exc
    return module.to(device=device, dtype=as_torch_dtype(dtype)).eval()


def _tensors(batch: np.ndarray, device, dtype):
    """(B, L) → past_target (B, L, 1), past_observed_target (B, L, 1), past_is_pad (B, L)."""
    import torch

    x = torch.as_tensor(np.ascontiguousarray(batch), dtype=dtype, device=device)[..., None]
    obs = torch.ones_like(x, dtype=torch.bool)
    pad = torch.zeros(x.shape[:2], dtype=torch.bool, device=device)
    return x, obs, pad


# ------------------------------------------------------------------ shared
class _MoiraiBase(TSFMAdapter):
    #: future (prediction-window) tokens the prefill appends: one patch
    prefill_future_tokens = 1

    def __init__(self, module, *, patch_size: int, max_context: int | None = None, **kw):
        super().__init__(module, **kw)
        self.module = module
        self.patch_size = int(patch_size)
        limit = (int(module.max_seq_len) - self.prefill_future_tokens) * self.patch_size
        self.max_context = int(max_context) if max_context is not None else max(limit, self.patch_size)

    @property
    def stack(self) -> Stack:
        enc = self.module.encoder
        return Stack("encoder", list(enc.layers), [layer.self_attn for layer in enc.layers], enc.norm)

    @property
    def d_model(self) -> int:
        return int(self.module.d_model)

    @property
    def config_layers(self) -> int:
        return int(self.module.num_layers)

    @property
    def _dtype(self):
        return next(self.module.parameters()).dtype

    @property
    def _device(self):
        return next(self.module.parameters()).device

    @property
    def serializer(self) -> TokenSerializer:
        return TokenSerializer(
            family=self.family,
            unit="patch",
            patch_len=self.patch_size,
            stride=self.patch_size,
            pad="left",
            max_context=self.max_context,
            suffix=("future",) * self.prefill_future_tokens,
            normalization="PackedStdScaler: (x − mean) / (population std + 1e-5) over the observed context, "
            "per series; future patches = the prediction window",
        )

    def describe(self) -> dict:
        d = super().describe()
        d.update(
            patch_size=self.patch_size, max_context=self.max_context, prefill_future_tokens=self.prefill_future_tokens
        )
        return d

    def _contexts_cut(self, series, nan):
        return [c[-self.max_context :] for c in self.contexts(series, nan=nan)]


def _check_max_context(max_context, patch: int):
    from isofast._input import check_int

    return check_int(max_context, "max_context", minimum=patch, allow_none=True)


# ------------------------------------------------------------------ Moirai 1.x
class MoiraiAdapter(_MoiraiBase):
    """Moirai 1.x (``MoiraiModule`` + ``MoiraiForecast``; module docstring)."""

    family = "moirai"

    @classmethod
    def load(
        cls,
        path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        patch_size: int | None = None,
        max_context: int | None = None,
    ) -> MoiraiAdapter:
        """``patch_size``: the fixed patch size of the prefill (and default
        of forecasts), one of the checkpoint's ``patch_sizes`` (default the
        smallest). ``max_context``: the longest context read (module docstring)."""
        from isofast._input import check_int

        offline()
        folder = Path(path)
        cfg = _expect(folder, cls.family)
        _require_model_safetensors(folder, cls.family)
        check_distr_output(cfg.get("distr_output"), folder / "config.json")
        from uni2ts.model.moirai import MoiraiModule

        sizes = [int(p) for p in cfg.get("patch_sizes") or []]
        if not sizes:
            raise CheckpointError(f"{folder}/config.json: patch_sizes is empty")
        if patch_size is None:
            patch_size = min(sizes)
        patch_size = check_int(patch_size, "patch_size", minimum=1)
        if patch_size not in sizes:
            raise InputError(f"patch_size {patch_size} is not one of this Moirai checkpoint's patch_sizes {sizes}")
        max_context = _check_max_context(max_context, patch_size)
        module = _load_module(MoiraiModule, folder, cls.family, device, dtype)
        return cls(
            module,
            patch_size=patch_size,
            max_context=max_context,
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
        d_model: int = 64,
        num_layers: int = 2,
        patch: int = 8,
        patch_sizes: Sequence[int] | None = None,
        max_seq_len: int = 512,
    ) -> Path:
        """A random-init ``MoiraiModule`` (patch sizes ``(patch, 2·patch)``
        unless given; the published mixture of Student-T, normal with fixed
        scale, negative binomial and log-normal), saved with its own
        ``save_pretrained`` (config.json + model.safetensors)."""
        import torch
        from uni2ts.distribution import (
            LogNormalOutput,
            MixtureOutput,
            NegativeBinomialOutput,
            NormalFixedScaleOutput,
            StudentTOutput,
        )
        from uni2ts.model.moirai import MoiraiModule

        _check_width(d_model)
        torch.manual_seed(seed)
        distr = MixtureOutput([StudentTOutput(), NormalFixedScaleOutput(), NegativeBinomialOutput(), LogNormalOutput()])
        sizes = tuple(int(p) for p in (patch_sizes or (patch, 2 * patch)))
        mod = MoiraiModule(
            distr_output=distr,
            d_model=d_model,
            num_layers=num_layers,
            patch_sizes=sizes,
            max_seq_len=max_seq_len,
            attn_dropout_p=0.0,
            dropout_p=0.0,
            scaling=True,
        ).eval()
        folder = Path(folder)
        mod.save_pretrained(str(folder))
        return folder

    def _forecaster(self, context_length: int, prediction_length: int, patch_size, num_samples: int = 1):
        from uni2ts.model.moirai import MoiraiForecast

        return (
            MoiraiForecast(
                module=self.module,
                prediction_length=int(prediction_length),
                context_length=int(context_length),
                patch_size=patch_size,
                num_samples=int(num_samples),
                target_dim=1,
                feat_dynamic_real_dim=0,
                past_feat_dynamic_real_dim=0,
            )
            .to(self._device)
            .eval()
        )

    def _prefill(self, batch: np.ndarray) -> None:
        """``MoiraiForecast._get_distr`` once: ``_convert`` (a prediction
        window of :attr:`future_tokens` patches, one by default) and one module
        forward; no sampling."""
        P = self.patch_size
        fc = self._forecaster(batch.shape[1], P * self.prefill_future_tokens, P)
        x, obs, pad = _tensors(batch, self._device, self._dtype)
        fc._get_distr(P, x, obs, pad)

    def _fold(self, ctx, horizon, forecast_kw):
        """A fixed-patch forecast is one module forward (``_get_distr``) then
        sampling. It is the prefill only when its prediction window is the
        prefill's one future patch (H ≤ P): attention is bidirectional, so
        more future patches change every context row."""
        why = self._one_batch(ctx)
        if why:
            return why
        P, H = self.patch_size, int(horizon)
        if forecast_kw.get("patch_size") not in (None, P):
            return f"{self.family}: the forecast's patch_size {forecast_kw['patch_size']!r} is not the prefill's {P}"
        k = self.future_tokens_for(H)
        if k != self.prefill_future_tokens:
            return (
                f"{self.family}: horizon {H} makes {k} future patches (the prefill reads "
                f"{self.prefill_future_tokens}); bidirectional attention makes the context rows depend on them "
                f"(future_tokens={k} captures the forecast's rows in one pass)"
            )
        return FoldPlan(calls=1)

    @property
    def future_tokens(self) -> int:
        return int(self.prefill_future_tokens)

    def future_tokens_for(self, horizon: int) -> int:
        """``⌈H / P⌉``: the future patches of the forecast's one module
        forward (its prediction window) at the adapter's patch size."""
        return -(-check_horizon(horizon) // self.patch_size)

    def set_future_tokens(self, k: int) -> None:
        # max_context stays as loaded, so forecasts do not change; the module
        # reads max_context / P + k tokens
        most = max(int(self.module.max_seq_len) - 1, 1)
        self.prefill_future_tokens = check_future_tokens(k, most, self.family, "the module's max_seq_len − 1")

    def forecast(
        self,
        series,
        horizon: int,
        *,
        n_samples: int = 20,
        seed: int = 0,
        quantile_levels: Sequence[float] = (0.1, 0.5, 0.9),
        nan: str = "interpolate",
        patch_size=None,
    ) -> TSFMForecast:
        """``MoiraiForecast`` sample paths (module docstring). ``patch_size``:
        default the adapter's; ``"auto"`` lets the package pick per series."""
        import torch

        from isofast._input import check_int

        H = check_horizon(horizon)
        n = check_int(n_samples, "n_samples", minimum=1)
        seed = check_seed(seed)
        levels = check_levels(quantile_levels)
        ps = self.patch_size if patch_size is None else patch_size
        if ps != "auto":
            ps = check_int(ps, "patch_size", minimum=1)
            if ps not in [int(p) for p in self.module.patch_sizes]:
                raise InputError(
                    f"patch_size {ps} is not one of this checkpoint's patch_sizes {list(self.module.patch_sizes)}"
                )
        ctx = self.contexts(series, nan=nan)
        t0 = time.perf_counter()
        out: list = [None] * len(ctx)
        with torch.inference_mode(), seeded(seed, self._device):
            for length, idx in by_length(ctx).items():
                if ps == "auto":
                    if length <= H:
                        raise InputError(
                            f"patch_size='auto' needs contexts longer than the horizon ({H}); got {length} values"
                        )
                    keep = min(length, self.max_context + H)
                    fc = self._forecaster(keep - H, H, "auto", n)
                else:
                    keep = min(length, self.max_context)
                    fc = self._forecaster(keep, H, ps, n)
                batch = np.stack([ctx[i][-keep:] for i in idx]).astype(np.float32)
                x, obs, pad = _tensors(batch, self._device, self._dtype)
                s = fc(past_target=x, past_observed_target=obs, past_is_pad=pad).float().cpu().numpy()
                for j, i in enumerate(idx):
                    out[i] = s[j]
        samples = np.stack(out).astype(np.float64)  # (S, n, H)
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
                "patch_size": ps,
                "point": "median of the samples",
                "quantiles": "np.quantile of the samples (linear)",
                "max_context": self.max_context,
            },
        )


def _check_width(d_model: int) -> None:
    if d_model < 64 or d_model % 64:
        raise InputError(
            f"Moirai's num_heads is d_model // 64: d_model must be a positive multiple of 64, got {d_model}"
        )


# ------------------------------------------------------------------ Moirai 2.0
class Moirai2Adapter(_MoiraiBase):
    """Moirai 2.0 (``Moirai2Module`` + ``Moirai2Forecast``; module docstring)."""

    family = "moirai-2"

    @classmethod
    def load(
        cls, path, *, device: str = "cpu", dtype: str = "float32", max_context: int | None = None
    ) -> Moirai2Adapter:
        offline()
        folder = Path(path)
        cfg = _expect(folder, cls.family)
        _require_model_safetensors(folder, cls.family)
        from uni2ts.model.moirai2 import Moirai2Module

        P = int(cfg["patch_size"])
        max_context = _check_max_context(max_context, P)
        module = _load_module(Moirai2Module, folder, cls.family, device, dtype)
        return cls(
            module,
            patch_size=int(module.patch_size),
            max_context=max_context,
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
        d_model: int = 64,
        num_layers: int = 2,
        patch: int = 8,
        d_ff: int | None = None,
        max_seq_len: int = 512,
        num_predict_token: int = 2,
    ) -> Path:
        """A random-init ``Moirai2Module`` (9 decile quantile head), saved with
        its own ``save_pretrained``."""
        import torch
        from uni2ts.model.moirai2 import Moirai2Module

        _check_width(d_model)
        torch.manual_seed(seed)
        mod = Moirai2Module(
            d_model=d_model,
            d_ff=d_ff or 2 * d_model,
            num_layers=num_layers,
            patch_size=patch,
            max_seq_len=max_seq_len,
            attn_dropout_p=0.0,
            dropout_p=0.0,
            scaling=True,
            num_predict_token=num_predict_token,
        ).eval()
        folder = Path(folder)
        mod.save_pretrained(str(folder))
        return folder

    def _forecaster(self, context_length: int, prediction_length: int):
        from uni2ts.model.moirai2 import Moirai2Forecast

        return Moirai2Forecast(
            module=self.module,
            prediction_length=int(prediction_length),
            context_length=int(context_length),
            target_dim=1,
            feat_dynamic_real_dim=0,
            past_feat_dynamic_real_dim=0,
        ).to(self._device)

    def _prefill(self, batch: np.ndarray) -> None:
        """``Moirai2Forecast._convert`` (one future patch) and one
        ``Moirai2Module.forward(..., training_mode=False)``: the first module
        call of the package's forward, without its autoregressive steps."""
        P = self.patch_size
        fc = self._forecaster(batch.shape[1], P * self.prefill_future_tokens)
        x, obs, pad = _tensors(batch, self._device, self._dtype)
        packed = fc._convert(P, x, obs, pad)
        self.module(*packed, training_mode=False)

    def _fold(self, ctx, horizon, forecast_kw):
        """``Moirai2Forecast`` calls the module once, then once per
        autoregressive step (the batch × the quantiles); the first call reads
        the context and up to ``num_predict_token`` future patches. Attention
        is causal, so the context rows and the first future token's do not
        depend on the later future tokens: the first tokens of the first call
        are the prefill's (equal to float rounding: another sequence length)."""
        why = self._one_batch(ctx)
        if why:
            return why
        n_tok = self.serializer.n_tokens(ctx[0].size)
        return FoldPlan(
            calls=1 + _ar_steps(int(horizon), self.patch_size, int(self.module.num_predict_token)),
            select=_first_tokens(n_tok),
            rows="equal to float rounding (the first call reads more future tokens)",
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
    ) -> TSFMForecast:
        """``Moirai2Forecast.predict`` (quantile head, no sampling: ``n_samples``
        and ``seed`` are ignored); module docstring."""
        import torch

        H = check_horizon(horizon)
        levels = check_levels(quantile_levels)
        ctx = self._contexts_cut(series, nan)
        model_levels = [float(v) for v in self.module.quantile_levels]
        t0 = time.perf_counter()
        out: list = [None] * len(ctx)
        with torch.inference_mode():
            for length, idx in by_length(ctx).items():
                fc = self._forecaster(length, H)
                q = np.asarray(fc.predict(past_target=[ctx[i].astype(np.float32) for i in idx]), np.float64)
                q = q.reshape(len(idx), len(model_levels), H)
                for j, i in enumerate(idx):
                    out[i] = q[j]
        qm = np.moveaxis(np.stack(out), 1, -1)  # (S, H, Qm)
        qs, interp, clamped = interp_quantiles(qm, model_levels, levels)
        med, _, _ = interp_quantiles(qm, model_levels, np.array([0.5]))
        return TSFMForecast(
            point=med[0],
            quantile_levels=levels,
            quantiles=qs,
            family=self.family,
            seconds=time.perf_counter() - t0,
            settings={
                "horizon": H,
                "point": "the 0.5 quantile",
                "model_quantiles": model_levels,
                "interpolated_levels": interp,
                "clamped_levels": clamped,
                "autoregressive_steps": _ar_steps(H, self.patch_size, int(self.module.num_predict_token)),
                "max_context": self.max_context,
            },
        )


def _ar_steps(horizon: int, patch: int, k: int) -> int:
    """Module calls after the first that Moirai2Forecast makes for ``horizon``."""
    return max(math.ceil((math.ceil(horizon / patch) - k) / k), 0)
