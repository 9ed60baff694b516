"""Causal language models (kind ``"lm"``): LLMTime text in, LM-head forecasts out.

The bundled SmolLM2-135M (``model = "smollm2"``), a tiny random model for
tests (``"tiny-llama"``, ``"tiny-gpt2"``) or any local Hugging Face folder
(``path = "…"``) reads each context as LLMTime text
(:mod:`isofast.serializers.llmtime`, the ``llama`` preset by default).

* Embeddings: :func:`isofast.capture` (residual stream, ``positions`` as in
  the config, default every token; one window per forward pass) into the
  cell's cache folder — layer 0 is the embedding output, layer L the output
  of block L, the last one after the final norm, i.e. exactly the rows the LM
  head multiplies.
* Forecasts: :func:`isofast.forecast.forecast` — LLMTime-style sampling of
  digit tokens from the softmax head (every non-digit, non-separator token
  masked), decoded back to numbers, all windows × sample paths decoded in
  batches; ``forecast = {…}`` in the model table passes extra keyword
  arguments through (``temperature``, ``top_p``, ``max_digits``,
  ``max_batch``, ``kv_budget``, ``n_threads``).
* One prefill per window (``joint_capture = True``): ``forecast(…,
  capture=folder)`` captures every study layer in the same forward pass that
  fills the forecast's KV cache (:func:`isofast.prefill.forecast_and_capture`)
  and writes the entry :meth:`StudyModel.embed_cached` reads. The rows are
  those :meth:`embed` alone writes (same calls, bitwise), and the prompt text
  is unchanged: the capture still reads each window's text with its trailing
  separator (the rows :meth:`rows_per_window` counts), the forecast the same
  text without it.
* Devices and dtypes: ``device = "auto"`` (default) → CUDA when
  ``torch.cuda.is_available()``, else CPU; ``dtype = "auto"`` (default) →
  bfloat16 on a CUDA device that supports it, else float32. The capture
  stores what the device computed (bfloat16 rows as bfloat16; docs/study.md,
  "Devices and dtypes").
* Head diagnostics: :func:`isofast.head.head_diagnostics` of the last layer's
  rows under the tied/untied output matrix.

Weights are never trained here; the weights hash comes from the files
(:func:`isofast.models.load_model`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from isofast.study.adapters import ForecastOutput, LayerSpec, StudyModel, select_layers

_FORECAST_KEYS = frozenset(
    {
        "n_samples",
        "seed",
        "temperature",
        "top_p",
        "max_digits",
        "max_batch",
        "kv_budget",
        "n_threads",
        "quantile_levels",
    }
)


def resolve_device_dtype(device="auto", dtype="auto") -> tuple[str, str]:
    """The study's device rules: ``device="auto"`` → ``"cuda"`` when torch
    sees a CUDA device, else ``"cpu"``; ``dtype="auto"`` → ``"bfloat16"`` on
    a CUDA device that supports it (compute capability ≥ 8.0), else
    ``"float32"`` (CPUs and older GPUs: float16 would overflow on massive
    activations). Explicit values pass through (checked by
    :func:`isofast.models.resolve_device` / ``resolve_dtype``)."""
    from isofast import models as M

    torch = M._torch()
    dev = str(device or "auto").lower()
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        M.resolve_device(dev)
    dt = str(dtype or "auto").lower()
    if dt == "auto":
        on_cuda = dev.startswith("cuda") and torch.cuda.is_available()
        dt = "bfloat16" if on_cuda and torch.cuda.is_bf16_supported() else "float32"
    else:
        dt = M.dtype_name(dt)
    return dev, dt


class LMModel(StudyModel):
    kind = "lm"
    has_head = True
    joint_capture = True  # forecast(…, capture=folder) also writes the capture entry

    def __init__(self, cfg, **kw):
        super().__init__(cfg, **kw)
        # a copy with device/dtype "auto" resolved for this machine (cfg.options untouched)
        self.o = dict(cfg.options)
        self.o["device"], self.o["dtype"] = resolve_device_dtype(
            self.o.get("device", "auto"), self.o.get("dtype", "auto")
        )
        self.last_prefill = None  # PrefillStats of the last joint forecast (benches)
        self.lm = None
        self._hash = None
        self._n_layers = None

    # ---------------------------------------------------------- identity
    @property
    def source(self) -> str:
        return self.cfg.path or self.cfg.model

    def weights_key(self, split=None) -> str:
        return self.prepared_hash()

    def prepared_hash(self, split=None) -> str:
        """The weights hash without loading the model where the files allow it."""
        if self._hash:
            return self._hash
        from isofast import models as M

        src = self.source
        key = M._ALIASES.get(src.lower(), src.lower())
        if key == "smollm2":
            h = M._marker_hash(M.ensure_smollm2(verbose=True))
        elif key.startswith("tiny-"):
            self._load()
            h = self.lm.weights_hash
        else:
            p = Path(src).expanduser()
            h = M.hash_weight_files([p]) if p.is_file() else M.hash_folder(p)
        self._hash = h
        return h

    def _load(self):
        if self.lm is None:
            from isofast.models import load_model

            self.lm = load_model(self.source, device=self.o["device"], dtype=self.o["dtype"])
            self.lm.model.eval()
            self._hash = self._hash or self.lm.weights_hash
            self._n_layers = self.lm.num_layers
        return self.lm

    def prepare(self, split=None) -> None:
        self._load()

    @property
    def weights_hash(self) -> str:
        return self.prepared_hash()

    def describe(self) -> dict:
        d = {"name": self.name, "kind": self.kind, "source": self.source, "options": self.o}
        if self.lm is not None:
            d["model"] = self.lm.to_dict()
        return d

    # ------------------------------------------------------------ layers
    def _folder(self) -> Path | None:
        from isofast import models as M

        key = M._ALIASES.get(self.source.lower(), self.source.lower())
        if key == "smollm2":
            return M.ensure_smollm2(verbose=True)
        if key == "minilm":
            return M.minilm_folder()
        p = Path(self.source).expanduser()
        return p if p.is_dir() else None

    @property
    def n_layers(self) -> int:
        if self._n_layers is None:
            folder = self._folder()
            if folder is not None and (folder / "config.json").is_file():
                # read the depth from config.json: a fully cached cell never loads the weights
                import json

                c = json.loads((folder / "config.json").read_text())
                for k in ("num_hidden_layers", "n_layer", "num_layers"):
                    if isinstance(c.get(k), int):
                        self._n_layers = int(c[k])
                        break
            if self._n_layers is None:
                self._load()
        return int(self._n_layers)

    @property
    def layers(self) -> list[LayerSpec]:
        n = self.n_layers
        keep = select_layers(self.cfg.layers, n + 1, self.name)
        return [LayerSpec(i, f"residual.{i}", "residual", i / n) for i in keep]

    def _config_json(self) -> dict:
        folder = self._folder()
        if folder is not None and (folder / "config.json").is_file():
            import json

            return json.loads((folder / "config.json").read_text())
        c = self._load().model.config
        return c.to_dict()

    def dims(self) -> dict[int, int]:
        c = self._config_json()
        d = next((int(c[k]) for k in ("hidden_size", "n_embd", "d_model") if isinstance(c.get(k), int)), None)
        if d is None:
            raise ValueError(f"{self.name}: cannot read the hidden size from the model's config")
        return {L.index: d for L in self.layers}

    def _tokenizer(self):
        from isofast import models as M

        key = M._ALIASES.get(self.source.lower(), self.source.lower())
        folder = self._folder()
        if key.startswith("tiny-") or folder is None:
            return self._load().tokenizer
        import transformers as tf

        with M._quiet_transformers():
            return tf.AutoTokenizer.from_pretrained(str(folder))

    def rows_per_window(self, contexts, split) -> dict[int, np.ndarray]:
        """Tokens of each context's LLMTime text (``positions = "all"``: every
        token is a row), counted with the model's own tokenizer."""
        if self.o["positions"] != "all":
            raise ValueError(
                f"{self.name}: the study counts rows for positions = 'all' only, got {self.o['positions']!r}"
            )
        from isofast.serializers import get_serializer

        if getattr(self, "_tok", None) is None:
            self._tok = self._tokenizer()
        ser = get_serializer(self.o["serializer"])
        n = np.array(
            [len(self._tok(ser.encode(np.asarray(c, np.float64)).text)["input_ids"]) for c in contexts], np.int64
        )
        return {L.index: n for L in self.layers}

    def window_ids(self, contexts, split, emb, folder) -> dict[int, np.ndarray]:
        """From the capture's token table (``window_id`` of every row)."""
        from isofast.store import open_capture

        tok = open_capture(Path(folder) / "capture").tokens()
        w = np.asarray(tok["window_id"], np.int64)
        for L, X in emb.items():
            if X.shape[0] != w.size:
                raise RuntimeError(f"{self.name}: layer {L} has {X.shape[0]} rows, the token table {w.size}")
        return {L: w for L in emb}

    def _capture_kw(self) -> dict:
        """The capture's arguments, shared by :meth:`embed` and the joint
        forecast so both write the same rows (one window per pass)."""
        return {
            "serializer": self.o["serializer"],
            "layers": [L.index for L in self.layers],
            "positions": self.o["positions"],
            "device": self.o["device"],
            "dtype": self.o["dtype"],
            "sites": ("residual",),
        }

    def embed(self, contexts, *, folder=None, aux=None) -> dict[int, np.ndarray]:
        from isofast.capture import capture
        from isofast.store import open_capture

        lm = self._load()
        kw = self._capture_kw()
        series = [np.asarray(c, np.float64) for c in contexts]
        try:
            res = capture(lm, series, out=folder, batch_size=1, resume=True, progress=False, **kw)
        except ValueError as e:
            if "holds a different capture" not in str(e):
                raise
            # an unfinished capture of other settings (e.g. an older batch size): start over
            res = capture(lm, series, out=folder, batch_size=1, resume=False, progress=False, **kw)
        cap = open_capture(res.path)
        return {L: cap.layer(L, "residual").to_numpy(float32=True) for L in kw["layers"]}

    def store_embeddings(self, folder, emb) -> None:
        """Nothing to add: :func:`isofast.capture` already wrote ``folder/capture``."""

    def load_embeddings(self, folder, layers):
        from isofast.store import open_capture

        cap = open_capture(Path(folder) / "capture")
        return {L: cap.layer(L, "residual").to_numpy(float32=True) for L in layers}

    # ---------------------------------------------------------- forecast
    def forecast(self, contexts, horizon, *, n_samples=8, seed=0, capture=None) -> ForecastOutput:
        """Sample paths (S, n, H). With ``capture`` (a folder) and no complete
        entry there, the same forward pass per window also captures every
        study layer into ``capture/"capture"`` and then writes
        ``capture/"complete.json"`` (atomically, last), the entry
        :meth:`embed_cached` reads."""
        from isofast import forecast as F

        lm = self._load()
        kw = dict(self.o.get("forecast") or {})
        bad = sorted(set(kw) - _FORECAST_KEYS)
        if bad:
            raise ValueError(f"{self.name}: unknown forecast option(s) {bad}; allowed: {sorted(_FORECAST_KEYS)}")
        kw.setdefault("n_samples", n_samples)
        kw.setdefault("seed", seed)
        series = [np.asarray(c, np.float64) for c in contexts]
        folder = None if capture is None else Path(capture)
        if folder is not None and not (folder / "complete.json").is_file():
            out = self._forecast_and_capture(lm, series, horizon, folder, kw)
        else:
            out = F.forecast(lm, series, horizon, serializer=self.o["serializer"], **kw)
        samples = np.asarray(out.samples, dtype=np.float64)
        if samples.ndim == 2:
            samples = samples[:, None, :]
        stats = {}
        mass = getattr(out, "allowed_mass", None)
        if mass is not None and np.size(mass):
            # probability the unconstrained head put on grammar-allowed tokens
            stats["allowed_mass"] = float(np.nanmean(np.asarray(mass, float)))
        return ForecastOutput(samples, int(getattr(out, "n_fallback", 0) or 0), (), stats=stats)

    def _forecast_and_capture(self, lm, series, horizon, folder: Path, kw: dict):
        from isofast.prefill import forecast_and_capture
        from isofast.store import open_capture, write_json

        ckw = self._capture_kw()
        args = dict(out=folder / "capture", **ckw, **kw)
        try:
            out, cap, stats = forecast_and_capture(lm, series, horizon, **args)
        except ValueError as e:
            if "holds a different capture" not in str(e):
                raise
            out, cap, stats = forecast_and_capture(lm, series, horizon, resume=False, **args)
        self.last_prefill = stats
        c = open_capture(cap.path)
        rows = {str(L): int(c.layer(L, "residual").shape[0]) for L in ckw["layers"]}
        # the same marker embed_cached writes, last (write_json is atomic)
        write_json(folder / "complete.json", {"layers": ckw["layers"], "rows": rows})
        return out

    # ------------------------------------------------------------- hooks
    def _stack(self):
        base = self._load().model.base_model
        for name in ("layers", "h", "block"):
            blocks = getattr(base, name, None)
            if blocks is not None:
                break
        for name in ("norm", "ln_f", "final_layer_norm"):
            norm = getattr(base, name, None)
            if norm is not None:
                break
        if blocks is None or norm is None:
            raise ValueError(f"cannot find the blocks and final norm of {type(base).__name__}")
        return blocks, norm

    def hook_point(self, layer: int):
        blocks, norm = self._stack()
        n = len(blocks)
        if not 0 <= layer <= n:
            raise ValueError(f"{self.name} has layers 0..{n}, got {layer}")
        # layer L < n is the input of block L; layer n the final norm's output
        return (blocks[layer], "pre") if layer < n else (norm, "post")

    def head(self):
        from isofast.head import lm_head_weights

        return lm_head_weights(self._load().model)

    def head_scale(self) -> float:
        return 1.0

    def head_layer(self) -> int:
        return self.n_layers

    def release(self) -> None:
        self.lm = None
