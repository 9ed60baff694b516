"""Time-series model families of the study, trained from scratch on CPU.

PatchTST (kind ``"patchtst"``; Nie et al. 2023, Hugging Face ``PatchTSTForPrediction``)
--------------------------------------------------------------------------------------
Trained per dataset on its training windows (:mod:`isofast.study.datasets`)
as the reference study did: patch length 16, stride 8, d_model 32, 2 encoder
layers, 4 heads, dropout 0.1, Adam (lr 1e-4), 10 epochs, batch 32, MSE loss,
per-instance standard scaling (the HF default ``scaling="std"``) and the HF
default mean-pooled linear head. Seeded (``torch.manual_seed`` in a forked
RNG; the data loader's shuffling uses its own generator).

Note on the reference code: it passed ``stride=8`` and ``hidden_size=32`` to
``PatchTSTConfig``, whose arguments are ``patch_stride`` and ``d_model``; the
unknown keywords were silently kept as attributes, so its PatchTST actually
ran with stride 1 and d_model 128. isofast builds the model the paper
describes. A context shorter than the trained ``context_length`` (the
"harder" perturbation) is left-padded with its first value and marked
unobserved (``past_observed_mask = 0``), so the scaler ignores the padding.

Layers: 0 = patch embedding + positional encoding, L = output of encoder
layer L (rows: one per patch per window, d = d_model). Point forecasts only
(one "sample"): the MSE head has no predictive distribution.

Chronos-style T5 (kind ``"chronos-t5"``; Ansari et al. 2024)
------------------------------------------------------------
A small ``T5ForConditionalGeneration`` (default d_model 64, 2 encoder + 2
decoder layers, 4 heads, d_ff 256, head tied to the embeddings as in T5) trained from scratch on
KernelSynth random compositions (:func:`isofast.data.kernelsynth`) with the
Chronos recipe: mean scaling and 4096 uniform bins
(:class:`isofast.serializers.ChronosSerializer`), left-padded contexts of
random length in [``min_context``, ``context_length``], labels = the next
``prediction_length`` bin ids + EOS, cross-entropy, AdamW. Forecasts sample
``n_samples`` paths over bin tokens (temperature 1, top-k 50, special ids
suppressed) and decode bin centres × scale. ``path = "…"`` loads a local
Chronos/T5 checkpoint (e.g. a downloaded chronos-t5-small) instead of training.

Layers: ``encoder.0..n`` (embedding output … after the final norm) then
``decoder.0..n``; the decoder layers are read in one teacher-forced pass over
the first sampled path, so **every** decoding step is kept (the reference
hooks kept only the last step).

Trained weights are cached under ``<cache>/models/<kind>-<key>/`` (a plain
Hugging Face folder + a marker written last); the key hashes the training
configuration, the training data and the seed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from isofast.study.adapters import ForecastOutput, LayerSpec, StudyModel, select_layers
from isofast.study.cache import CACHE_VERSION
from isofast.study.config import stable_hash
from isofast.study.kinds import CHRONOS_DEFAULTS, PATCHTST_DEFAULTS

_MARKER = "isofast-study.json"


def _torch():
    from isofast.models import _torch as t

    return t()


def _write_marker(folder: Path, info: dict) -> None:
    with open(folder / _MARKER, "w") as f:
        json.dump(info, f, indent=1)


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / _MARKER).read_text())
    except (OSError, ValueError):
        return None


def _save_trained(model, target: Path, info: dict) -> dict:
    """save_pretrained into a temporary sibling, marker last, rename into place."""
    from isofast.models import _quiet_transformers, hash_folder

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        with _quiet_transformers():
            model.save_pretrained(str(tmp))
        info = dict(info, weights_hash=hash_folder(tmp))
        _write_marker(tmp, info)
        if target.exists():
            shutil.rmtree(target)
        tmp.replace(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def _seed_of(*parts) -> int:
    return int(stable_hash(*parts, n=8), 16)


# ==================================================================== PatchTST
class PatchTSTModel(StudyModel):
    """PatchTST trained per dataset (module docstring)."""

    kind = "patchtst"
    has_head = False

    def __init__(self, cfg, **kw):
        super().__init__(cfg, **kw)
        self.o = cfg.options
        self.model = None
        self._hash = None
        self._key = None
        self.info: dict = {}

    def _hparams(self, split) -> dict:
        return {k: self.o[k] for k in PATCHTST_DEFAULTS} | {
            "context_length": split.context,
            "prediction_length": split.horizon,
        }

    def weights_key(self, split) -> str:
        if self.cfg.path:
            from isofast.models import hash_folder

            return hash_folder(Path(self.cfg.path).expanduser())
        return stable_hash(CACHE_VERSION, "patchtst", self._hparams(split), split.key, self.seed)

    def _build(self, split):
        from transformers import PatchTSTConfig, PatchTSTForPrediction

        o = self.o
        C = split.context
        patch = min(o["patch_length"], max(2, C // 2))  # the reference's rule for short contexts
        cfg = PatchTSTConfig(
            num_input_channels=1,
            context_length=C,
            prediction_length=split.horizon,
            patch_length=patch,
            patch_stride=min(o["patch_stride"], patch),
            d_model=o["d_model"],
            num_hidden_layers=o["num_layers"],
            num_attention_heads=o["num_heads"],
            ffn_dim=o["ffn_dim"],
            dropout=o["dropout"],
            pooling_type=o["pooling_type"] or None,
            scaling="std",
            loss="mse",
        )
        return PatchTSTForPrediction(cfg)

    def _train(self, split):
        torch = _torch()
        o = self.o
        X, Y = split.train_context, split.train_target
        if X.shape[0] < 1:
            raise ValueError(
                f"dataset {split.name!r} has no training window for PatchTST "
                f"(context {split.context} + horizon {split.horizon} do not fit before the test part)"
            )
        seed = _seed_of(self.seed, "patchtst", split.key)
        rng = np.random.default_rng(seed)
        if X.shape[0] > o["max_train_windows"]:
            keep = np.sort(rng.choice(X.shape[0], o["max_train_windows"], replace=False))
            X, Y = X[keep], Y[keep]
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self._build(split)
            opt = torch.optim.Adam(model.parameters(), lr=o["lr"])
            xt = torch.tensor(X, dtype=torch.float32)[..., None]
            yt = torch.tensor(Y, dtype=torch.float32)[..., None]
            g = torch.Generator().manual_seed(seed)
            model.train()
            losses = []
            for _ in range(int(o["epochs"])):
                order = torch.randperm(xt.shape[0], generator=g)
                tot, cnt = 0.0, 0
                for b0 in range(0, xt.shape[0], int(o["batch_size"])):
                    idx = order[b0 : b0 + int(o["batch_size"])]
                    if idx.numel() < 2:  # BatchNorm needs two rows
                        continue
                    out = model(past_values=xt[idx], future_values=yt[idx])
                    opt.zero_grad()
                    out.loss.backward()
                    opt.step()
                    tot += out.loss.item() * idx.numel()
                    cnt += idx.numel()
                losses.append(tot / max(cnt, 1))
            model.eval()
        info = {
            "kind": "patchtst",
            "dataset": split.name,
            "hparams": self._hparams(split),
            "train_windows": int(X.shape[0]),
            "epoch_losses": losses,
            "seconds": round(time.perf_counter() - t0, 2),
            "seed": seed,
        }
        return model, info

    def prepare(self, split) -> None:
        from transformers import PatchTSTForPrediction

        key = self.weights_key(split)
        if self._key == key and self.model is not None:
            return
        from isofast.models import _quiet_transformers

        if self.cfg.path:
            folder = Path(self.cfg.path).expanduser()
            with _quiet_transformers():
                self.model = PatchTSTForPrediction.from_pretrained(str(folder)).eval()
            self._hash, self.info = key, {"path": str(folder)}
        else:
            folder = self.cache.root / "models" / f"patchtst-{key}"
            info = _read_marker(folder)
            if info is None:
                self.cache.miss("train")
                model, info = self._train(split)
                info = _save_trained(model, folder, info)
            else:
                self.cache.hit("train")
            with _quiet_transformers():
                self.model = PatchTSTForPrediction.from_pretrained(str(folder)).eval()
            self._hash, self.info = info["weights_hash"], info
        self._key = key
        m = self.model.config
        if m.context_length != split.context or m.prediction_length < split.horizon:
            raise ValueError(
                f"PatchTST {self.name!r} was built for context {m.context_length} / horizon "
                f"{m.prediction_length}, dataset {split.name!r} needs {split.context} / {split.horizon}"
            )

    def prepared_hash(self, split) -> str:
        """Weights hash without loading (from the marker) when trained before."""
        key = self.weights_key(split)
        if self.cfg.path:
            return key
        info = _read_marker(self.cache.root / "models" / f"patchtst-{key}")
        return info["weights_hash"] if info else ""

    @property
    def weights_hash(self) -> str:
        return self._hash or ""

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "options": self.o, "training": self.info}

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers) if self.model is not None else int(self.o["num_layers"])

    @property
    def layers(self) -> list[LayerSpec]:
        n = self.n_layers
        keep = select_layers(self.cfg.layers, n + 1, self.name)
        return [LayerSpec(i, f"encoder.{i}", "encoder", i / n) for i in keep]

    def dims(self) -> dict[int, int]:
        d = int(self.model.config.d_model) if self.model is not None else int(self.o["d_model"])
        return {L.index: d for L in self.layers}

    def rows_per_window(self, contexts, split) -> dict[int, np.ndarray]:
        """One row per patch: every context is padded to the trained
        ``context_length`` C (the dataset's context), so each window has
        (C − P) // S + 1 patches (HF ``PatchTSTPatchify``)."""
        C = int(split.context)  # the model is trained per dataset at its context
        P = min(int(self.o["patch_length"]), max(2, C // 2))
        S = min(int(self.o["patch_stride"]), P)
        n = (max(C, P) - P) // S + 1
        return {L.index: np.full(len(contexts), n, np.int64) for L in self.layers}

    def _inputs(self, contexts):
        torch = _torch()
        C = int(self.model.config.context_length)
        B = len(contexts)
        vals = np.zeros((B, C), np.float32)
        mask = np.zeros((B, C), np.float32)
        for j, c in enumerate(contexts):
            c = np.asarray(c, np.float64)[-C:]
            vals[j, C - c.size :] = c
            vals[j, : C - c.size] = c[0]  # padding value; masked out of the scaler
            mask[j, C - c.size :] = 1
        return torch.from_numpy(vals)[..., None], torch.from_numpy(mask)[..., None]

    def embed(self, contexts, *, folder=None, aux=None) -> dict[int, np.ndarray]:
        torch = _torch()
        x, m = self._inputs(contexts)
        enc = self.model.model.encoder
        grabbed = {}
        # HF collects the input of every encoder layer; the output of the last
        # one (the head's input) is read with a hook.
        h = enc.layers[-1].register_forward_hook(
            lambda _m, _i, o: grabbed.__setitem__("last", o[0] if isinstance(o, tuple) else o)
        )
        try:
            with torch.inference_mode():
                out = self.model(past_values=x, past_observed_mask=m, output_hidden_states=True)
        finally:
            h.remove()
        hs = list(out.hidden_states) + [grabbed["last"]]
        d = int(self.model.config.d_model)
        return {L.index: hs[L.index].reshape(-1, d).float().numpy() for L in self.layers}

    def forecast(self, contexts, horizon, *, n_samples=1, seed=0) -> ForecastOutput:
        torch = _torch()
        x, m = self._inputs(contexts)
        with torch.inference_mode():
            out = self.model(past_values=x, past_observed_mask=m)
        pred = out.prediction_outputs[..., 0].float().numpy()[:, :horizon].astype(np.float64)
        return ForecastOutput(pred[:, None, :], 0, ("point forecast (MSE head): no sample spread",))

    def hook_point(self, layer: int):
        enc = self.model.model.encoder
        n = len(enc.layers)
        if not 0 <= layer <= n:
            raise ValueError(f"PatchTST has layers 0..{n}, got {layer}")
        if layer < n:
            return enc.layers[layer], "pre"
        return enc.layers[n - 1], "post"

    def release(self) -> None:
        self.model = None
        self._key = None


# ================================================================ Chronos-T5
class ChronosT5Model(StudyModel):
    """A Chronos-style T5 trained once on KernelSynth (module docstring)."""

    kind = "chronos-t5"
    has_head = True

    def __init__(self, cfg, **kw):
        super().__init__(cfg, **kw)
        self.o = cfg.options
        self.model = None
        self._hash = None
        self.info: dict = {}
        from isofast.serializers import ChronosSerializer

        self.ser = ChronosSerializer(n_tokens=int(self.o["n_tokens"]), context_length=None)

    def _hparams(self) -> dict:
        return {k: self.o[k] for k in CHRONOS_DEFAULTS if k not in ("top_k", "temperature")}

    def weights_key(self, split=None) -> str:
        if self.cfg.path:
            from isofast.models import hash_folder

            return hash_folder(Path(self.cfg.path).expanduser())
        return stable_hash(CACHE_VERSION, "chronos-t5", self._hparams(), self.seed)

    def _folder(self) -> Path:
        return self.cache.root / "models" / f"chronos-t5-{self.weights_key()}"

    def _train(self):
        torch = _torch()
        import transformers as tf

        from isofast.data import kernelsynth
        from isofast.models import _quiet_transformers

        o = self.o
        seed = _seed_of(self.seed, "chronos-t5")
        Cmax, P = int(o["context_length"]), int(o["prediction_length"])
        L = Cmax + P
        t0 = time.perf_counter()
        data = kernelsynth(int(o["train_series"]), L, max_kernels=int(o["max_kernels"]), seed=seed)
        rng = np.random.default_rng(seed)
        ser = self.ser
        cfg = tf.T5Config(
            vocab_size=int(o["n_tokens"]),
            d_model=int(o["d_model"]),
            d_kv=int(o["d_kv"]),
            d_ff=int(o["d_ff"]),
            num_layers=int(o["num_layers"]),
            num_decoder_layers=int(o["num_layers"]),
            num_heads=int(o["num_heads"]),
            dropout_rate=float(o["dropout"]),
            feed_forward_proj="relu",
            pad_token_id=ser.pad_token_id,
            eos_token_id=ser.eos_token_id,
            decoder_start_token_id=ser.pad_token_id,
            tie_word_embeddings=bool(o["tie_word_embeddings"]),
        )
        cfg.chronos_config = {
            "tokenizer_class": "MeanScaleUniformBins",
            "n_tokens": int(o["n_tokens"]),
            "n_special_tokens": 2,
            "pad_token_id": 0,
            "eos_token_id": 1,
            "use_eos_token": True,
            "context_length": Cmax,
            "prediction_length": P,
            "low_limit": -15.0,
            "high_limit": 15.0,
            "model_type": "seq2seq",
            "trained_by": "isofast.study (tiny, KernelSynth, CPU)",
        }
        losses = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            with _quiet_transformers():
                model = tf.T5ForConditionalGeneration(cfg)
            opt = torch.optim.AdamW(model.parameters(), lr=float(o["lr"]), weight_decay=0.01)
            steps = int(o["train_steps"])
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / max(steps, 1)))
            model.train()
            B = int(o["batch_size"])
            for step in range(steps):
                rows = rng.integers(0, data.shape[0], B)
                ids = np.full((B, Cmax + 1), ser.pad_token_id, np.int64)
                att = np.zeros((B, Cmax + 1), np.int64)
                lab = np.empty((B, P + 1), np.int64)
                for j, r in enumerate(rows):
                    c = int(rng.integers(int(o["min_context"]), Cmax + 1))
                    ctx = data[r, Cmax - c : Cmax]
                    fut = data[r, Cmax : Cmax + P]
                    s = ser.scale_of(ctx)
                    e = ser.ids_of(ctx, s)
                    ids[j, Cmax - c : Cmax] = e
                    ids[j, Cmax] = ser.eos_token_id
                    att[j, Cmax - c :] = 1
                    lab[j, :P] = ser.ids_of(fut, s)
                    lab[j, P] = ser.eos_token_id
                out = model(
                    input_ids=torch.from_numpy(ids),
                    attention_mask=torch.from_numpy(att),
                    labels=torch.from_numpy(lab),
                )
                opt.zero_grad()
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                losses.append(out.loss.item())
            model.eval()
        k = max(1, len(losses) // 10)
        info = {
            "kind": "chronos-t5",
            "hparams": self._hparams(),
            "seed": seed,
            "loss_first": float(np.mean(losses[:k])),
            "loss_last": float(np.mean(losses[-k:])),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        return model, info

    def prepare(self, split=None) -> None:
        if self.model is not None:
            return
        import transformers as tf

        from isofast.models import _quiet_transformers

        if self.cfg.path:
            folder = Path(self.cfg.path).expanduser()
            self._hash, self.info = self.weights_key(), {"path": str(folder)}
            cc = getattr(tf.AutoConfig.from_pretrained(str(folder)), "chronos_config", None) or {}
            if cc:
                from isofast.serializers import ChronosSerializer

                self.ser = ChronosSerializer(
                    n_tokens=int(cc.get("n_tokens", 4096)),
                    low_limit=float(cc.get("low_limit", -15.0)),
                    high_limit=float(cc.get("high_limit", 15.0)),
                    context_length=None,
                )
        else:
            folder = self._folder()
            info = _read_marker(folder)
            if info is None:
                self.cache.miss("train")
                model, info = self._train()
                info = _save_trained(model, folder, info)
            else:
                self.cache.hit("train")
            self._hash, self.info = info["weights_hash"], info
        with _quiet_transformers():
            self.model = tf.T5ForConditionalGeneration.from_pretrained(str(folder)).eval()

    def prepared_hash(self, split=None) -> str:
        if self.cfg.path:
            return self.weights_key()
        info = _read_marker(self._folder())
        return info["weights_hash"] if info else ""

    @property
    def weights_hash(self) -> str:
        return self._hash or ""

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "options": self.o, "training": self.info}

    @property
    def n_layers(self) -> int:
        if self.model is not None:
            return int(self.model.config.num_layers)
        return int(self.o["num_layers"])

    @property
    def layers(self) -> list[LayerSpec]:
        n = self.n_layers
        total = 2 * (n + 1)
        keep = select_layers(self.cfg.layers, total, self.name)
        out = []
        for i in keep:
            stack, j = ("encoder", i) if i <= n else ("decoder", i - n - 1)
            out.append(LayerSpec(i, f"{stack}.{j}", stack, j / n))
        return out

    def dims(self) -> dict[int, int]:
        d = int(self.model.config.d_model) if self.model is not None else int(self.o["d_model"])
        return {L.index: d for L in self.layers}

    def rows_per_window(self, contexts, split) -> dict[int, np.ndarray]:
        """Encoder: one row per context token (the serializer's ids, EOS
        included, padding excluded); decoder: one row per forecast step."""
        enc = np.array([self.ser.encode(np.asarray(c, np.float64)).ids.size for c in contexts], np.int64)
        dec = np.full(len(contexts), int(split.horizon), np.int64)
        return {L.index: (enc if L.stack == "encoder" else dec) for L in self.layers}

    def _encode(self, contexts):
        torch = _torch()
        encs = [self.ser.encode(np.asarray(c, np.float64)) for c in contexts]
        T = max(e.ids.size for e in encs)
        ids = np.full((len(encs), T), self.ser.pad_token_id, np.int64)
        att = np.zeros((len(encs), T), np.int64)
        for j, e in enumerate(encs):  # left padding, as Chronos
            ids[j, T - e.ids.size :] = e.ids
            att[j, T - e.ids.size :] = 1
        return torch.from_numpy(ids), torch.from_numpy(att), np.array([e.scale for e in encs]), att.astype(bool)

    def _sample_ids(self, ids, att, horizon, n_samples, seed):
        torch = _torch()
        from isofast.models import _quiet_transformers

        suppress = [self.ser.pad_token_id, self.ser.eos_token_id] + list(range(2, self.ser.first_value_id))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            with torch.inference_mode(), _quiet_transformers():
                gen = self.model.generate(
                    input_ids=ids,
                    attention_mask=att,
                    max_new_tokens=horizon,
                    min_new_tokens=horizon,
                    do_sample=True,
                    top_k=int(self.o["top_k"]),
                    temperature=float(self.o["temperature"]),
                    num_return_sequences=n_samples,
                    suppress_tokens=sorted(set(suppress)),
                    pad_token_id=self.ser.pad_token_id,
                    eos_token_id=None,
                )
        return gen[:, 1 : horizon + 1].numpy()  # drop the decoder start token

    def forecast(self, contexts, horizon, *, n_samples=8, seed=0) -> ForecastOutput:
        ids, att, scales, _ = self._encode(contexts)
        toks = self._sample_ids(ids, att, horizon, n_samples, seed)
        n = len(contexts)
        toks = toks.reshape(n, n_samples, horizon)
        idx = np.clip(toks - self.ser.first_value_id, 0, self.ser.centers.size - 1)
        samples = self.ser.centers[idx].astype(np.float64) * scales[:, None, None]
        # the first path of each window: the decoder capture reads it teacher-forced
        return ForecastOutput(samples, 0, aux={"paths": toks[:, 0, :]})

    def embed(self, contexts, *, folder=None, aux=None) -> dict[int, np.ndarray]:
        """Encoder rows: one per context token (padding excluded); decoder rows:
        one per step of the forecast path ``aux["paths"]`` (teacher-forced)."""
        torch = _torch()
        ids, att, _, mask = self._encode(contexts)
        n = self.n_layers
        want = self.layers
        out: dict[int, np.ndarray] = {}
        if any(L.stack == "decoder" for L in want):
            if aux is None or "paths" not in aux:
                raise ValueError("the decoder layers need the forecast paths (aux['paths'])")
            paths = np.asarray(aux["paths"], np.int64)
        else:
            paths = np.full((len(contexts), 1), self.ser.first_value_id, np.int64)
        dec_in = np.concatenate([np.full((paths.shape[0], 1), self.ser.pad_token_id), paths[:, :-1]], axis=1)
        with torch.inference_mode():
            o = self.model(
                input_ids=ids,
                attention_mask=att,
                decoder_input_ids=torch.from_numpy(dec_in),
                output_hidden_states=True,
            )
        for L in want:
            if L.stack == "encoder":
                hs = o.encoder_hidden_states[L.index]
                out[L.index] = hs[torch.from_numpy(mask)].float().numpy()
            else:
                hs = o.decoder_hidden_states[L.index - n - 1]
                out[L.index] = hs.reshape(-1, hs.shape[-1]).float().numpy()
        return out

    def hook_point(self, layer: int):
        n = self.n_layers
        stack = self.model.encoder if layer <= n else self.model.decoder
        j = layer if layer <= n else layer - n - 1
        if not 0 <= j <= n:
            raise ValueError(f"Chronos-T5 has layers 0..{2 * n + 1}, got {layer}")
        if j < n:
            return stack.block[j], "pre"
        return stack.final_layer_norm, "post"

    def head(self):
        W = self.model.lm_head.weight.detach().float().numpy()
        return W, None

    def head_scale(self) -> float:
        """Factor between the decoder's last hidden state and the head's input."""
        c = self.model.config
        return float(c.d_model) ** -0.5 if getattr(c, "scale_decoder_outputs", c.tie_word_embeddings) else 1.0

    def head_layer(self) -> int:
        return 2 * self.n_layers + 1

    def release(self) -> None:
        self.model = None
