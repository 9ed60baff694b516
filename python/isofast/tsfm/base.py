"""What every TSFM adapter shares: the layer stack, hooks that cannot go
silently wrong, per-layer embeddings, forecasts and safe weight loading.

An adapter wraps one family's own model object (from its own package). It
provides, per family:

* ``load(path, device, dtype)`` — a local checkpoint folder, through the
  family's own loader, weights from safetensors only (every supported
  family ships safetensors; nothing is unpickled), never
  ``trust_remote_code``;
* ``stack`` — the :class:`Stack` capture reads: its blocks in forward order,
  each block's self-attention sub-module, the final norm;
* ``serializer`` — the :class:`~isofast.serializers.tsfm.TokenSerializer`
  saying which values each token (row) carries;
* ``_prefill(batch)`` — one forward pass over a batch of equal-length
  contexts that runs the captured stack exactly once (the encoder of an
  encoder-decoder; a decoder's prefill, with flip averaging and
  autoregressive steps switched off);
* ``forecast(contexts, horizon, …)`` — through the family's own pipeline;
* ``_fold(contexts, horizon, kw)`` — how that forecast's first pass of the
  stack is the prefill (a :class:`FoldPlan`: expected calls, which tokens),
  or why it is not; :meth:`TSFMAdapter.forecast_with_capture` then records
  capture's rows from the forecast itself (one pass) or runs the prefill;
* ``head()`` — the softmax matrix over value bins (Chronos only).

Layer numbering (as :mod:`isofast.capture`): layer 0 is the input of the
first block (the patch or token embedding), layer L (1 ≤ L < n) the output of
block L, layer n the output of the final norm when the stack has one (else of
block n). Site ``"attention"``: the output of block L's self-attention
sub-module (its output projection, before the residual add), layers 1..n.

What capture asserts (:class:`LayerTap`), so that a changed package cannot
give silently wrong rows: every requested layer's hook fired exactly once per
prefill (a second call means an autoregressive step, a flip-averaged pass or
sample expansion got in); every captured tensor is (batch, tokens, d_model)
with the token count the serializer predicts; and the number of blocks equals
the config's layer count. Pre-hooks are registered ``with_kwargs=True``, so
hidden states passed as keyword arguments are seen.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from isofast.errors import CheckpointError, InputError
from isofast.serializers.base import as_series

SITES = ("residual", "attention")


@dataclass
class Stack:
    """The block stack capture reads. ``attention[i]`` is block i's
    self-attention sub-module (None where the family has none)."""

    name: str
    blocks: list
    attention: list | None = None
    final_norm: Any = None

    @property
    def n_layers(self) -> int:
        return len(self.blocks)


@dataclass
class TSFMForecast:
    """Forecasts of S contexts over a horizon H, on the data scale.

    ``point`` (S, H) is the family's point forecast (the median quantile or
    the mean of the samples); ``quantiles`` (Q, S, H) at ``quantile_levels``;
    ``samples`` (S, n, H) when the family samples (Chronos, Moirai 1.x), else
    None."""

    point: np.ndarray
    quantile_levels: np.ndarray
    quantiles: np.ndarray
    samples: np.ndarray | None = None
    family: str = ""
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)

    @property
    def horizon(self) -> int:
        return int(self.point.shape[1])

    def to_dict(self, samples: bool = True) -> dict:
        from isofast.report import jsonable

        d = {
            "family": self.family,
            "point": self.point,
            "quantile_levels": self.quantile_levels,
            "quantiles": self.quantiles,
            "seconds": self.seconds,
            "settings": self.settings,
        }
        if samples and self.samples is not None:
            d["samples"] = self.samples
        return jsonable(d)


@dataclass
class TSFMEmbedding:
    """Per-layer rows of a batch of contexts: ``arrays[(site, layer)]`` is
    (rows, d) float32, rows window-major; ``window``, ``token``, ``role``,
    ``first``, ``last`` give each row's context, token index, role code and
    the time steps it reads (−1: none)."""

    arrays: dict
    window: np.ndarray
    token: np.ndarray
    role: np.ndarray
    first: np.ndarray
    last: np.ndarray
    kind: list = field(default_factory=list)


def _tensor_of(out, where: str):
    """The hidden-state tensor in a module output: the tensor itself, element
    0 of a tuple, or ``hidden_states`` / ``last_hidden_state`` / element 0 of
    a ModelOutput."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    for key in ("hidden_states", "last_hidden_state"):
        v = getattr(out, key, None)
        if isinstance(v, torch.Tensor):
            return v
    if hasattr(out, "to_tuple"):
        t = out.to_tuple()
        if t and isinstance(t[0], torch.Tensor):
            return t[0]
    raise RuntimeError(f"{where}: cannot find a hidden-state tensor in a {type(out).__name__} output")


_INPUT_KEYS = ("hidden_states", "hidden_state", "x", "inputs_embeds", "input")


def _input_of(args, kwargs, where: str):
    import torch

    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    for k in _INPUT_KEYS:
        v = kwargs.get(k)
        if isinstance(v, torch.Tensor):
            return v
    raise RuntimeError(f"{where}: cannot find the hidden states entering the block (args or keyword {_INPUT_KEYS})")


class LayerTap:
    """Hooks on a :class:`Stack` recording every call of the requested
    layers and sites; :meth:`take` checks the call counts and shapes."""

    def __init__(self, stack: Stack, layers: dict[str, list[int]], d_model: int, family: str = "", rows=None):
        self.stack, self.layers, self.d_model, self.family = stack, layers, int(d_model), family
        #: ``rows(tensor, batch, site) -> (batch, tokens, d)``: a family whose blocks carry another layout
        #: (PatchTST: (batch, channels, patches, d)) maps its tensors here (:meth:`TSFMAdapter._rows`)
        self.rows = rows
        self.records: dict[tuple[str, int], list] = {}
        self._handles: list = []

    def _rec(self, key):
        def store(t):
            self.records.setdefault(key, []).append(t.detach())

        return store

    def __enter__(self) -> LayerTap:
        st, n = self.stack, self.stack.n_layers
        for L in self.layers.get("residual", []):
            key, store = ("residual", L), self._rec(("residual", L))
            if L == 0:
                where = f"{st.name}.blocks[0] input"

                def pre(_m, args, kwargs, store=store, where=where):
                    store(_input_of(args, kwargs, where))

                self._handles.append(st.blocks[0].register_forward_pre_hook(pre, with_kwargs=True))
            else:
                mod = st.final_norm if (L == n and st.final_norm is not None) else st.blocks[L - 1]
                where = f"{st.name} layer {L}"

                def post(_m, _args, _kwargs, out, store=store, where=where):
                    store(_tensor_of(out, where))

                self._handles.append(mod.register_forward_hook(post, with_kwargs=True))
            self.records.setdefault(key, [])
        for L in self.layers.get("attention", []):
            mod = (st.attention or [None] * n)[L - 1]
            if mod is None:
                self.__exit__(None, None, None)  # __exit__ is not called when __enter__ raises: drop the hooks so far
                raise InputError(f"{self.family}: block {L} has no self-attention sub-layer to capture")
            key, store = ("attention", L), self._rec(("attention", L))
            where = f"{st.name} attention {L}"

            def post(_m, _args, _kwargs, out, store=store, where=where):
                store(_tensor_of(out, where))

            self._handles.append(mod.register_forward_hook(post, with_kwargs=True))
            self.records.setdefault(key, [])
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def take(self, batch: int, tokens: int) -> dict[tuple[str, int], np.ndarray]:
        """The one prefill call of every hooked layer as float32 numpy
        (batch, tokens, d); ``RuntimeError`` naming the layer when a hook
        fired other than once or a tensor has another shape."""
        out = {}
        for key, recs in self.records.items():
            site, L = key
            if len(recs) != 1:
                raise RuntimeError(
                    f"{self.family}: {site} layer {L} ran {len(recs)} times in one prefill (expected once): "
                    "an autoregressive step, a second (flip-averaged) pass or sample expansion reached the captured "
                    "stack, so the rows would mix passes"
                )
            out[key] = self._checked(key, recs[0], batch, tokens)
        self.records = {k: [] for k in self.records}
        return out

    def _checked(self, key, t, batch: int, tokens: int, select=None) -> np.ndarray:
        """One recorded call as float32 numpy (batch, tokens, d): the family's
        layout mapped (``rows``), then ``select(tensor, site)`` (the fold's
        slice of the forecast's pass), then the shape checked."""
        site, L = key
        if self.rows is not None:
            t = self.rows(t, batch, site)
        if select is not None:
            t = select(t, site)
        want = (batch, tokens, self.d_model)
        if tuple(t.shape) != want:
            raise RuntimeError(
                f"{self.family}: {site} layer {L} captured a tensor of shape {tuple(t.shape)}, expected "
                f"(batch, tokens, d_model) = {want} from the serializer's token layout"
            )
        return t.float().cpu().numpy()


class FirstPassTap(LayerTap):
    """A :class:`LayerTap` for a whole forecast: keeps the *first* call of
    every hooked layer (the pass capture records) and only counts the others
    (autoregressive steps, the flip-averaged pass, sample expansion), so a
    long forecast holds one pass in memory."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.calls: dict[tuple[str, int], int] = {}

    def _rec(self, key):
        def store(t):
            self.calls[key] = self.calls.get(key, 0) + 1
            if self.calls[key] == 1:
                self.records.setdefault(key, []).append(t.detach().clone())  # later passes may reuse buffers

        return store

    def take_first(self, batch: int, tokens: int, *, calls: int | None = None, select=None):
        """The first call of every hooked layer as float32 numpy (batch,
        tokens, d), and the number of calls per layer. ``RuntimeError`` when a
        layer never ran, when layers ran different numbers of times (every
        pass runs the whole stack, so a difference means the hooks saw part
        of a pass), when ``calls`` is given and differs, or on a shape."""
        counts = {key: self.calls.get(key, 0) for key in self.records}
        for key, c in counts.items():
            if c == 0:
                raise RuntimeError(f"{self.family}: {key[0]} layer {key[1]} never ran in the forecast")
        if len(set(counts.values())) > 1:
            raise RuntimeError(f"{self.family}: the hooked layers ran different numbers of times {counts}")
        n = next(iter(counts.values()))
        if calls is not None and n != calls:
            raise RuntimeError(
                f"{self.family}: the forecast ran the captured stack {n} times, expected {calls}: the first call "
                "may not be the pass capture records"
            )
        out = {key: self._checked(key, recs[0], batch, tokens, select) for key, recs in self.records.items()}
        self.records = {k: [] for k in self.records}
        return out, n


def resolve_layers(layers, n: int, sites: Sequence[str]) -> dict[str, list[int]]:
    """``"all"``, an int or ints (negative from the end) per site: residual
    0..n, attention 1..n; or a dict site → such a spec."""
    if isinstance(layers, dict):
        return {site: resolve_layers(v, n, [site])[site] for site, v in layers.items()}
    sites = list(dict.fromkeys(sites))
    bad = [s for s in sites if s not in SITES]
    if bad or not sites:
        raise InputError(f"sites must be a non-empty subset of {SITES}, got {list(sites)}")
    out = {}
    for site in sites:
        lo = 0 if site == "residual" else 1
        if isinstance(layers, str):
            if layers != "all":
                raise InputError(f"layers must be 'all', an int or a list of ints, got {layers!r}")
            out[site] = list(range(lo, n + 1))
            continue
        req = [layers] if isinstance(layers, (int, np.integer)) else list(layers)
        got = []
        for L in req:
            if isinstance(L, bool) or not isinstance(L, (int, np.integer)):
                raise InputError(f"layer {L!r} is not an int")
            L = int(L)
            if L < 0:
                L += n + 1
            if not lo <= L <= n:
                if site == "attention" and L == 0:
                    continue  # the embedding has no attention output
                raise InputError(f"{site} layer {L} out of range {lo}..{n}")
            got.append(L)
        if not got:
            raise InputError(f"no {site} layer among {req} (valid {lo}..{n})")
        out[site] = sorted(set(got))
    return out


def hash_folder_weights(folder: Path) -> str:
    """sha256 over the weight files (``*.safetensors``, else ``*.ckpt``/``*.pt``
    /``*.bin``) in name order, each prefixed by its name and size (as
    :func:`isofast.models.hash_weight_files`)."""
    from isofast.models import hash_weight_files

    files = sorted(folder.glob("*.safetensors")) or sorted(
        p for ext in ("*.ckpt", "*.pt", "*.bin") for p in folder.glob(ext)
    )
    if not files:
        raise CheckpointError(f"{folder} holds no weight file (*.safetensors, *.ckpt, *.pt)")
    return hash_weight_files(files)


def require_safetensors(folder: Path, family: str) -> None:
    """Refuse a folder whose only weights are pickles (``*.bin``): loading them
    would unpickle untrusted bytes."""
    if not any(folder.glob("*.safetensors")):
        found = sorted(p.name for p in folder.iterdir())[:8]
        raise CheckpointError(
            f"{folder}: a {family} checkpoint needs its weights as *.safetensors (found {found}); isofast does "
            "not unpickle weight files from a folder"
        )


def load_checked(model_cls, folder: Path, family: str, dtype: str = "float32", **kw):
    """``model_cls.from_pretrained(folder)`` from safetensors, offline, with
    transformers' progress bars off; ``CheckpointError`` when the weights do
    not fit the config (missing, unexpected or mismatched tensors: a config
    whose layer count or width disagrees with the weights)."""
    from isofast.models import _quiet_transformers

    offline()
    with _quiet_transformers():
        try:
            model, info = model_cls.from_pretrained(
                str(folder), dtype=as_torch_dtype(dtype), use_safetensors=True, output_loading_info=True, **kw
            )
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{folder}: cannot load it as a {family} checkpoint ({exc})") from exc
    bad = {k: list(info.get(k) or []) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    bad = {k: v for k, v in bad.items() if v}
    if bad:
        what = "; ".join(
            f"{k.replace('_', ' ')}: {v[:3]}{' …' if len(v) > 3 else ''} ({len(v)})" for k, v in bad.items()
        )
        raise CheckpointError(f"{folder}: the weights do not match the {family} config in config.json ({what})")
    return model.eval()


# ---------------------------------------------------------------- shared checks
def check_levels(levels) -> np.ndarray:
    q = np.asarray(list(levels), np.float64)
    if q.ndim != 1 or q.size == 0 or not np.all((q > 0) & (q < 1)):
        raise InputError(f"quantile_levels must be numbers strictly between 0 and 1, got {list(levels)!r}")
    return q


def check_horizon(horizon) -> int:
    from isofast._input import check_int

    return check_int(horizon, "horizon", minimum=1)


def check_future_tokens(k, most: int, family: str, why: str) -> int:
    """``k`` future tokens for capture's prefill: an int in 1..``most``."""
    from isofast._input import check_int

    k = check_int(k, "future_tokens", minimum=1)
    if k > most:
        raise InputError(f"{family}: future_tokens {k} is more than {most} ({why})")
    return k


def check_seed(seed) -> int:
    from isofast._input import check_int

    return check_int(seed, "seed", minimum=0)


@contextmanager
def seeded(seed: int, device):
    """``torch.manual_seed(seed)`` in a forked random state: the packages'
    sampling uses torch's global generator (they take no generator
    argument); the caller's global state is restored on exit."""
    import torch

    devs = []
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        devs = [dev.index if dev.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devs):
        torch.manual_seed(seed)
        yield


def by_length(ctx: list) -> dict[int, list[int]]:
    """Indices of the contexts grouped by length (batches need equal lengths)."""
    out: dict[int, list[int]] = {}
    for i, c in enumerate(ctx):
        out.setdefault(c.size, []).append(i)
    return out


def expect_family(folder: Path, want: str) -> dict:
    """The folder's config, refused with what was found when it is not ``want``."""
    from isofast.tsfm.spec import detect_from_config, read_config

    cfg = read_config(folder)
    got = detect_from_config(cfg)
    if got != want:
        found = got or f"model_type={cfg.get('model_type')!r}, architectures={cfg.get('architectures')!r}"
        raise CheckpointError(f"{folder}: expected a {want} checkpoint, found {found}")
    return cfg


def interp_quantiles(q_model: np.ndarray, model_levels, levels: np.ndarray):
    """``q_model`` (..., Qm) at increasing ``model_levels`` → (Q, ...) at
    ``levels``: linear between neighbouring model levels, clamped to the
    outermost outside them. Also returns the interpolated and clamped levels."""
    ml = np.asarray(list(model_levels), np.float64)
    out, interp, clamped = [], [], []
    for lv in levels:
        hit = np.flatnonzero(np.isclose(ml, lv, rtol=0, atol=1e-9))
        if hit.size:
            out.append(q_model[..., int(hit[0])])
            continue
        if lv < ml[0] or lv > ml[-1]:
            clamped.append(float(lv))
            out.append(q_model[..., 0 if lv < ml[0] else -1])
            continue
        j = int(np.searchsorted(ml, lv))
        w = (lv - ml[j - 1]) / (ml[j] - ml[j - 1])
        interp.append(float(lv))
        out.append((1.0 - w) * q_model[..., j - 1] + w * q_model[..., j])
    return np.stack(out), interp, clamped


def load_transformers(cls, path, model_cls, architecture: str, device: str, dtype: str):
    """A transformers built-in family's folder (TimesFM 1.0/2.0, PatchTST):
    the family checked, the head class checked against ``architectures``,
    safetensors only, weights that fit the config."""
    offline()
    folder = Path(path)
    cfg = expect_family(folder, cls.family)
    archs = [str(a) for a in cfg.get("architectures") or []]
    if archs and architecture not in archs:
        raise CheckpointError(
            f"{folder}: isofast reads {architecture} checkpoints (the forecasting head); this folder holds {archs}"
        )
    require_safetensors(folder, cls.family)
    return folder, load_checked(model_cls, folder, cls.family, dtype).to(device).eval()


class TSFMAdapter:
    """Base class of the family adapters (module docstring)."""

    family: str = ""
    has_head: bool = False

    def __init__(self, model: Any, *, path: Path | None, weights_hash: str, device: str = "cpu"):
        self.model = model
        self.path = None if path is None else Path(path)
        self.weights_hash = weights_hash
        self.device = device

    # ---- what each family provides
    @classmethod
    def load(cls, path, *, device: str = "cpu", dtype: str = "float32") -> TSFMAdapter:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def build_random(cls, folder, *, seed: int = 0, **size) -> Path:  # pragma: no cover
        """Save a small random-init checkpoint of this family in ``folder``
        with the package's own ``save_pretrained`` (tests and examples)."""
        raise NotImplementedError

    @property
    def stack(self) -> Stack:  # pragma: no cover
        raise NotImplementedError

    @property
    def d_model(self) -> int:  # pragma: no cover
        raise NotImplementedError

    @property
    def config_layers(self) -> int:  # pragma: no cover
        """The layer count the checkpoint's config states."""
        raise NotImplementedError

    @property
    def serializer(self):  # pragma: no cover
        raise NotImplementedError

    def _prefill(self, batch: np.ndarray) -> None:  # pragma: no cover
        """One forward pass over ``batch`` (B, L) float32 that runs the
        captured stack exactly once."""
        raise NotImplementedError

    def forecast(
        self,
        contexts,
        horizon: int,
        *,
        n_samples: int = 20,
        seed: int = 0,
        quantile_levels: Sequence[float] = (0.1, 0.5, 0.9),
    ) -> TSFMForecast:  # pragma: no cover
        raise NotImplementedError

    def head(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        return None

    # ---- future tokens of capture's prefill (bidirectional families)
    @property
    def future_tokens(self) -> int | None:
        """The future (prediction-window) tokens capture's prefill appends
        after the context, for the families whose attention lets every
        context row see them (Chronos-2, Moirai 1.x: 1 by default; MOMENT: 0
        by default, its ``embed`` pass); None for the others, whose context
        rows do not depend on a number of future tokens."""
        return None

    def future_tokens_for(self, horizon: int) -> int | None:
        """The future tokens this family's forecast at ``horizon`` appends in
        its first pass of the captured stack (None where :attr:`future_tokens`
        is None). Capture with that many (:meth:`set_future_tokens`) records
        the rows that forecast computes, so forecast and capture share one
        pass (:meth:`forecast_with_capture`)."""
        return None

    def set_future_tokens(self, k: int) -> None:
        """Make capture's prefill append ``k`` ≥ 1 future tokens (default:
        the package's own embedding call, :attr:`future_tokens`). The rows of
        a context then are those the model computes when it forecasts ``k``
        output patches; the number is part of :attr:`serializer` (its token
        table gains the future rows) and so of every capture key. Forecasts
        do not change."""
        raise InputError(
            f"{self.family}: capture's rows do not depend on a number of future tokens (its attention is causal or "
            "it appends none); future_tokens applies to chronos-2, moirai and moment"
        )

    def _rows(self, tensor, batch: int, site: str):
        """A captured tensor as (batch, tokens, d_model): the identity here;
        a family whose blocks carry another layout overrides it (PatchTST's
        (batch, channels, patches, d) blocks)."""
        return tensor

    # ---- shared
    @property
    def n_layers(self) -> int:
        return self.stack.n_layers

    def check_structure(self) -> None:
        """The stack has as many blocks as the config says, and the width
        (``CheckpointError`` otherwise)."""
        n, want = self.stack.n_layers, self.config_layers
        if n != want:
            raise CheckpointError(
                f"{self.family} checkpoint {self.path}: its config says {want} layers, the model has {n} blocks"
            )

    def describe(self) -> dict:
        return {
            "family": self.family,
            "path": None if self.path is None else str(self.path),
            "weights_hash": self.weights_hash,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "serializer": self.serializer.to_dict(),
            "has_head": self.has_head,
        }

    def contexts(self, series, *, nan: str = "interpolate") -> list[np.ndarray]:
        """Validated 1-D float64 contexts (NaN policy of
        :func:`isofast.serializers.base.as_series`)."""
        from isofast.data.series import as_series_list

        out = []
        for i, s in enumerate(as_series_list(series)):
            out.append(as_series(s, nan=nan, name=f"series {i}"))
        if not out:
            raise InputError("no series given")
        return out

    def embed(
        self,
        series,
        *,
        layers="all",
        sites: Sequence[str] = ("residual",),
        batch_size: int = 8,
        nan: str = "interpolate",
    ) -> TSFMEmbedding:
        """Per-layer rows of every context (module docstring for what is
        checked). Contexts are batched by length, so no padding is added
        beyond the family's own."""
        import torch

        from isofast._input import check_int

        batch_size = check_int(batch_size, "batch_size", minimum=1)
        ctx = self.contexts(series, nan=nan)
        self.check_structure()
        want = resolve_layers(layers, self.n_layers, sites)
        ser = self.serializer
        chunks: list[tuple[list[int], dict, Any]] = []  # (windows, rows per key, token table)
        with torch.inference_mode(), LayerTap(self.stack, want, self.d_model, self.family, rows=self._rows) as tap:
            for length, idx in by_length(ctx).items():
                table = ser.tokens(length)
                for s in range(0, len(idx), batch_size):
                    group = idx[s : s + batch_size]
                    kept = ser.kept(length)
                    batch = np.stack([ctx[i][-kept:] for i in group]).astype(np.float32)
                    self._prefill(batch)
                    chunks.append((group, tap.take(len(group), len(table)), table))
        return _assemble(chunks)

    # ---- one pass: the forecast's own first pass serves the capture
    def _fold(self, ctx: list[np.ndarray], horizon: int, forecast_kw: dict) -> FoldPlan | str:
        """How the forecast of ``ctx`` runs the captured stack, as a
        :class:`FoldPlan`, or why its first pass is not capture's prefill (a
        string; the one-pass route then runs the separate prefill). The
        default: no one-pass route for this family."""
        return f"{self.family}: its forecast's first pass is not capture's prefill (docs/models.md)"

    def _one_batch(self, ctx: list[np.ndarray]) -> str | None:
        """Why the forecast's single batch of ``ctx`` is not one capture batch
        (None when it is): the pipelines stack every context into one batch,
        left-padding shorter ones, while capture batches contexts by length."""
        lengths = {c.size for c in ctx}
        if len(lengths) > 1:
            return (
                f"{self.family}: contexts of {len(lengths)} different lengths; the forecast pads them into one batch, "
                "capture batches them by length"
            )
        return None

    def forecast_with_capture(
        self,
        series,
        horizon: int,
        *,
        layers="all",
        sites: Sequence[str] = ("residual",),
        batch_size: int = 8,
        nan: str = "interpolate",
        **forecast_kw,
    ) -> tuple[TSFMForecast, TSFMEmbedding, dict]:
        """:meth:`forecast` and :meth:`embed` of the same contexts with one
        pass of the captured stack where the family allows it.

        Hooks (:class:`FirstPassTap`: the hooks, checks and row layout of
        :meth:`embed`) are attached while the family's own forecast runs; they
        keep the first call of every hooked layer — the pass capture records
        (docs/models.md, per family) — and count the others (autoregressive
        steps, the flip-averaged pass, sample expansion), checked against the
        family's expected count. Hooks only read, so the forecast is the bare
        forecast's. The rows are :meth:`embed`'s with ``batch_size`` ≥ the
        number of contexts, bitwise where the forecast's first pass reads the
        same batch as the prefill; ``info["rows"]`` says where it does not
        (TimesFM pads to the whole context: equal to float rounding).

        Where the family's forecast does not run capture's pass (its reason
        in ``info["reason"]``), this is :meth:`forecast` then :meth:`embed`.
        Returns ``(forecast, embedding, info)``; ``info["joint"]`` says which
        route ran, ``info["calls"]`` how often the forecast ran each layer."""
        import torch

        from isofast._input import check_int

        H = check_horizon(horizon)
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        ctx = self.contexts(series, nan=nan)
        self.check_structure()
        want = resolve_layers(layers, self.n_layers, sites)
        plan = self._fold(ctx, H, forecast_kw)
        t0 = time.perf_counter()
        if isinstance(plan, str):
            fc = self.forecast(ctx, H, nan=nan, **forecast_kw)
            t1 = time.perf_counter()
            emb = self.embed(ctx, layers=want, sites=sites, batch_size=batch_size, nan=nan)
            info = {
                "joint": False,
                "reason": plan,
                "forecast_seconds": t1 - t0,
                "capture_seconds": time.perf_counter() - t1,
            }
            return fc, emb, info
        table = self.serializer.tokens(ctx[0].size)
        with torch.inference_mode(), FirstPassTap(self.stack, want, self.d_model, self.family, rows=self._rows) as tap:
            fc = self.forecast(ctx, H, nan=nan, **forecast_kw)
        got, n = tap.take_first(len(ctx), len(table), calls=plan.calls, select=plan.select)
        emb = _assemble([(list(range(len(ctx))), got, table)])
        info = {"joint": True, "calls": n, "rows": plan.rows, "seconds": time.perf_counter() - t0}
        return fc, emb, info


@dataclass
class FoldPlan:
    """How a forecast's first pass of the captured stack is capture's
    prefill: ``calls`` — the calls of every hooked layer the whole forecast
    makes (None: not checked beyond "the same for every layer");
    ``select(tensor, site)`` — the capture's tokens in the first call's
    (batch, tokens, d) tensor (None: all of them); ``rows`` — how the rows
    compare with :meth:`TSFMAdapter.embed`'s."""

    calls: int | None = None
    select: Any = None
    rows: str = "bitwise equal to embed's with one batch of every context"


def _last_tokens(n: int):
    """``select`` keeping the last ``n`` tokens (the forecast left-pads more)."""

    def select(t, _site):
        return t[:, -n:]

    return select


def _first_tokens(n: int):
    """``select`` keeping the first ``n`` tokens (the forecast appends more)."""

    def select(t, _site):
        return t[:, :n]

    return select


def _assemble(chunks: list[tuple[list[int], dict, Any]]) -> TSFMEmbedding:
    """A :class:`TSFMEmbedding` from batches ``(windows, {key: (batch, tokens,
    d)}, token table)``, rows back in window order."""
    parts: dict[tuple[str, int], list] = {}
    meta = {k: [] for k in ("window", "token", "role", "first", "last")}
    kinds: list[str] = []
    order = sorted((w, ci, j) for ci, (group, _, _) in enumerate(chunks) for j, w in enumerate(group))
    for w, ci, j in order:
        _, got, table = chunks[ci]
        for key, arr in got.items():
            parts.setdefault(key, []).append(arr[j])
        n_t = len(table)
        meta["window"].append(np.full(n_t, w, np.int64))
        meta["token"].append(np.arange(n_t, dtype=np.int64))
        meta["role"].append(table.role)
        meta["first"].append(table.first)
        meta["last"].append(table.last)
        kinds.extend(table.kind)
    arrays = {k: np.ascontiguousarray(np.concatenate(v), dtype=np.float32) for k, v in parts.items()}
    m = {k: np.concatenate(v) for k, v in meta.items()}
    return TSFMEmbedding(arrays, m["window"], m["token"], m["role"], m["first"], m["last"], kinds)


class T5EncoderStack:
    """Mixin for adapters whose captured stack is a T5 encoder at
    ``self.model.encoder`` (Chronos-T5, Chronos-Bolt, MOMENT): blocks
    ``encoder.block[i]``, attention ``block[i].layer[0].SelfAttention`` (its
    output before the residual add), final norm ``encoder.final_layer_norm``."""

    model: Any

    @property
    def stack(self) -> Stack:
        enc = self.model.encoder
        return Stack("encoder", list(enc.block), [b.layer[0].SelfAttention for b in enc.block], enc.final_layer_norm)

    @property
    def d_model(self) -> int:
        return int(self.model.config.d_model)


def as_torch_dtype(dtype: str):
    from isofast.models import resolve_dtype

    return resolve_dtype(dtype)


def offline() -> None:
    """Never let a package reach a model hub from here."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
