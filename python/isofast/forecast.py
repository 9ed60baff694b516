"""Forecasting numeric series with a language model's own head (LLMTime style).

Gruver, Finzi, Qiu & Wilson (2023), "Large Language Models Are Zero-Shot Time
Series Forecasters": serialize the context as digits
(:class:`isofast.serializers.LLMTimeSerializer`), let the model continue the
text, decode the continuation back to numbers.

Decoding
--------
* **Constrained**: only tokens made of digits, the value separator
  (``time_sep``), the digit separator (``bit_sep``) and the sign may be
  produced (LLMTime's logit mask). isofast goes one step further and masks by
  a small grammar, ``value := [sign] (bit_sep digit)+ time_sep``, tracked as a
  character automaton over each token's text: every sampled continuation
  parses, a sign can only start a value, and a value may not grow beyond
  ``max_digits`` digits (default: the most digits in the context plus one),
  so decoding always terminates after exactly ``horizon`` values. Composite
  tokens such as SmolLM2's ``",-"`` are allowed where the grammar allows
  their characters.
* **Incremental and batched across windows**: each window's prompt runs
  once; its KV cache is copied to the ``n_samples`` rows of that window, and
  the rows of many windows are decoded as one batch (left padding under an
  attention mask, explicit position ids, one grammar state per row; rows
  that have produced ``horizon`` values leave the batch). Batches are sized
  by ``max_batch`` rows and a KV-memory budget (:class:`_Decoder`).
* **Greedy** (``temperature=0``) or **sampled** (``temperature``, optional
  nucleus ``top_p``): window s draws float64 uniforms from its own torch
  generator, seeded by ``window_seed(seed, s)``, and each path inverts the
  float64 CDF of the allowed tokens. A window's paths therefore do not depend
  on the other windows of the call or on the batching; batched and unbatched
  decoding give the same paths (tests/test_forecast_batched.py states the
  tolerance on the logits). Before issue 13 one generator ran through all
  windows in turn (``torch.multinomial``): the same seed now gives other,
  equally valid, paths.
* The prompt is the serialized context *without* its trailing separator, so
  the first generated token is the separator itself, tokenized as the model
  would see it (``",-"`` before a negative value is one SmolLM2 token).

Point forecasts are the median and the mean over samples, with quantiles.

Continuous NLL (LLMTime's density)
----------------------------------
For a target y_1..y_D the serialized continuation is scored token by token
under the same grammar mask (renormalised over the allowed tokens). With the
digits fixed to ``prec`` decimals after the affine scaler z = (x − m)/q, a
token string of probability P is a bin of width 10^−prec in z, so

    NLL per value = −Σ log P(tokens)/D − prec·ln(10) − mean ln|dz/dx|
                  = −Σ log P(tokens)/D − prec·ln(10) + ln q

(natural log, per value; lower is better).

Tokenizers
----------
The method needs one token per digit: LLaMA/SmolLM2/Mistral-style tokenizers
that split numbers into single digits (layout ``"llmtime:llama"``,
``"123,-45,"``), or GPT-style BPE with the spaced layout ``"llmtime:gpt"``
(``" 1 2 3 ,"``, each ``" d"`` one token). A tokenizer that merges digits
(GPT-2 reading ``"1234"`` as ``["12", "34"]``) is detected and refused with a
message saying so. SmolLM2's tokenizer splits digits individually (tested).

For a one-token-per-digit tokenizer the model's next-token distribution at
the start of the next value *is* a distribution over the next value's first
digit: :func:`next_value_first_digit` returns it, with the value intervals
each digit stands for.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isofast.data.series import as_series_list
from isofast.report import jsonable
from isofast.serializers import LLMTimeSerializer, get_serializer
from isofast.serializers.llmtime import Scaler

__all__ = [
    "DigitVocabulary",
    "FirstDigit",
    "ForecastResult",
    "continuous_nll",
    "digit_vocabulary",
    "forecast",
    "next_value_first_digit",
    "window_seed",
]

_DIGITS = "0123456789"


# ------------------------------------------------------------------ grammar
class _Grammar:
    """Character automaton for ``[sign] (bit_sep digit)+ time_sep`` values.

    NFA states (tuples):
      ("S",)          at the start of a value
      ("M", s, i)     i characters into the sign string s
      ("B", i, n)     i characters into bit_sep before digit n + 1
      ("D", n)        a digit must come next (n digits so far)
      ("A", n)        right after digit n: more digits or the separator
      ("T", i)        i characters into time_sep
    A token is allowed in a state set when feeding its characters leaves at
    least one path alive; completing time_sep counts one finished value.
    """

    def __init__(self, ser: LLMTimeSerializer, max_digits: int | None):
        self.signs = [s for s in (ser.minus_sign, ser.plus_sign) if s]
        self.B = ser.bit_sep
        self.T = ser.time_sep
        self.cap = max_digits

    def _digit_start(self, n: int) -> list:
        if self.cap is not None and n >= self.cap:
            return []
        return [("B", 0, n)] if self.B else [("D", n)]

    def _closure(self, st) -> list:
        kind = st[0]
        if kind == "S":
            return [("M", s, 0) for s in self.signs] + self._digit_start(0)
        if kind == "A":
            return self._digit_start(st[1]) + [("T", 0)]
        return [st]

    def feed(self, states: frozenset, text: str) -> tuple[frozenset, int]:
        """Consume ``text``; returns (surviving states, values completed)."""
        cur = {(s, 0) for s in states}
        for ch in text:
            nxt = set()
            for st, done in cur:
                for q in self._closure(st):
                    k = q[0]
                    if k == "M":
                        s, i = q[1], q[2]
                        if ch == s[i]:
                            if i + 1 == len(s):
                                nxt.update((r, done) for r in self._digit_start(0))
                            else:
                                nxt.add((("M", s, i + 1), done))
                    elif k == "B":
                        i, n = q[1], q[2]
                        if ch == self.B[i]:
                            nxt.add((("B", i + 1, n) if i + 1 < len(self.B) else ("D", n), done))
                    elif k == "D":
                        if ch in _DIGITS:
                            nxt.add((("A", q[1] + 1), done))
                    elif k == "T":
                        i = q[1]
                        if ch == self.T[i]:
                            nxt.add((("T", i + 1), done) if i + 1 < len(self.T) else (("S",), done + 1))
            cur = nxt
            if not cur:
                return frozenset(), 0
        # Paths alive after the whole token agree on completions in practice
        # (ambiguity such as " " = bit_sep or time_sep start resolves on the
        # next character, never across a finished separator).
        return frozenset(s for s, _ in cur), max(d for _, d in cur)


@dataclass
class DigitVocabulary:
    """The tokens a constrained decoder may emit, for one tokenizer and layout.

    ``ids`` (K,) candidate token ids and ``strings`` their texts: tokens made
    only of digits (at most one), separator and sign characters. The grammar
    decides, state by state, which of them are allowed.
    """

    ids: np.ndarray
    strings: list
    serializer: LLMTimeSerializer
    tokenizer_name: str

    def __len__(self) -> int:
        return len(self.ids)


_VOCAB_CACHE: dict = {}


def _tokenizer_name(tok) -> str:
    return str(getattr(tok, "name_or_path", "") or type(tok).__name__)


def _token_texts(tok) -> list:
    n = len(tok)
    return tok.batch_decode([[i] for i in range(n)], clean_up_tokenization_spaces=False)


def digit_vocabulary(tokenizer, serializer: Any = "llmtime") -> DigitVocabulary:
    """Check that ``tokenizer`` gives one token per digit under the layout of
    ``serializer`` and collect the candidate tokens (module docstring).

    Raises ``ValueError`` for a tokenizer that merges digits, naming what it
    did and which tokenizers/layouts are supported.
    """
    ser = get_serializer(serializer)
    if not isinstance(ser, LLMTimeSerializer):
        raise ValueError(  # noqa: TRY004 - the caller named the wrong layout: a value, not a type, error
            f"LM-head forecasting reads digit strings: use an LLMTime serializer, not {ser.name!r}"
        )
    if tokenizer is None:
        raise ValueError("this model has no tokenizer; LM-head forecasting needs a text tokenizer")
    key = (id(tokenizer), ser)
    hit = _VOCAB_CACHE.get(key)
    if hit is not None and hit[0] is tokenizer:
        return hit[1]
    name = _tokenizer_name(tokenizer)
    # One token per digit, checked on a serialized sample in context.
    sample = ser.encode(np.array([1234.567, -0.987, 5.5, 8.9]), scaler=Scaler(0.0, 1.0)).text
    ids = tokenizer(sample, add_special_tokens=False)["input_ids"]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    texts = tokenizer.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)
    merged = [t for t in texts if sum(ch in _DIGITS for ch in t) > 1]
    if merged:
        raise ValueError(
            f"tokenizer {name!r} does not give one token per digit under the "
            f"{ser.preset_name or 'given'} layout: {sample[:24]!r} → {pieces[:10]} "
            f"(merged digits: {merged[:3]}). LM-head forecasting supports tokenizers that split "
            "numbers into single digits (LLaMA, SmolLM2, Mistral: layout 'llmtime:llama'), or "
            "GPT-style BPE with the spaced layout 'llmtime:gpt' (' 1 2 3 ,', one token per ' d')."
        )
    all_texts = _token_texts(tokenizer)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    alphabet = set(_DIGITS) | set(ser.time_sep) | set(ser.bit_sep) | set(ser.minus_sign) | set(ser.plus_sign)
    cand = [
        (i, t)
        for i, t in enumerate(all_texts)
        if t and i not in special and set(t) <= alphabet and sum(ch in _DIGITS for ch in t) <= 1
    ]
    have = {t for _, t in cand}
    missing = [d for d in _DIGITS if (ser.bit_sep + d) not in have and d not in have]
    if missing:
        raise ValueError(f"tokenizer {name!r} has no single token for the digit(s) {missing}")
    voc = DigitVocabulary(
        ids=np.array([i for i, _ in cand], dtype=np.int64),
        strings=[t for _, t in cand],
        serializer=ser,
        tokenizer_name=name,
    )
    _VOCAB_CACHE[key] = (tokenizer, voc)
    return voc


class _Masks:
    """Memoised grammar transitions and allowed-token masks over a vocabulary."""

    def __init__(self, voc: DigitVocabulary, max_digits: int | None):
        self.voc = voc
        self.g = _Grammar(voc.serializer, max_digits)
        self._step: dict = {}
        self._mask: dict = {}
        self.pos = {int(t): k for k, t in enumerate(voc.ids)}

    def step(self, states: frozenset, k: int) -> tuple[frozenset, int]:
        key = (states, k)
        r = self._step.get(key)
        if r is None:
            r = self.g.feed(states, self.voc.strings[k])
            self._step[key] = r
        return r

    def mask(self, states: frozenset) -> np.ndarray:
        m = self._mask.get(states)
        if m is None:
            m = np.array([bool(self.step(states, k)[0]) for k in range(len(self.voc))])
            self._mask[states] = m
        return m


AFTER_VALUE = frozenset({("T", 0)})  # a value just ended: only time_sep may follow
VALUE_START = frozenset({("S",)})


# ------------------------------------------------------------------ results
@dataclass
class FirstDigit:
    """The model's distribution over the first character of the next value.

    ``digit_probs[d]`` = p(first digit = d) and ``negative_prob`` = p(sign),
    renormalised over the tokens the grammar allows at a value start.
    Assuming the next value has ``n_digits`` digits like the last context
    value, digit d stands for the integers [d·10^(n−1), (d+1)·10^(n−1)),
    i.e. the values between ``edges[d]`` and ``edges[d+1]`` after the
    inverse scaler (for n = 1, digit d is the bin [d, d+1)).
    """

    digit_probs: np.ndarray
    negative_prob: float
    n_digits: int
    edges: np.ndarray

    def to_dict(self) -> dict:
        return {
            "digit_probs": self.digit_probs.tolist(),
            "negative_prob": float(self.negative_prob),
            "n_digits": int(self.n_digits),
            "edges": self.edges.tolist(),
        }


@dataclass
class ForecastResult:
    """Sampled forecasts of S series over a horizon H.

    ``samples`` (S, n, H); ``median``/``mean`` (S, H); ``quantiles``
    (Q, S, H) at ``quantile_levels``; with a target: ``nll`` (S,) the
    continuous NLL per value and ``token_nll`` (S,) = −Σ log P(tokens)/D
    (module docstring); ``first_digit`` per series when requested.
    """

    samples: np.ndarray
    median: np.ndarray
    mean: np.ndarray
    quantile_levels: np.ndarray
    quantiles: np.ndarray
    scalers: list
    nll: np.ndarray | None = None
    token_nll: np.ndarray | None = None
    first_digit: list | None = None
    n_generated_tokens: int = 0
    allowed_mass: np.ndarray | None = None
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)

    @property
    def horizon(self) -> int:
        return int(self.samples.shape[2])

    def to_dict(self, samples: bool = True) -> dict:
        d = {
            "median": self.median,
            "mean": self.mean,
            "quantile_levels": self.quantile_levels,
            "quantiles": self.quantiles,
            "scalers": [s.to_dict() for s in self.scalers],
            "nll": self.nll,
            "token_nll": self.token_nll,
            "first_digit": None if self.first_digit is None else [f.to_dict() for f in self.first_digit],
            "n_generated_tokens": self.n_generated_tokens,
            "allowed_mass": self.allowed_mass,
            "seconds": self.seconds,
            "settings": self.settings,
        }
        if samples:
            d["samples"] = self.samples
        return jsonable(d)


# ------------------------------------------------------------------ inputs
def _load(model):
    from isofast.models import LoadedModel, load_model

    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        return load_model(model)
    if hasattr(model, "model") and hasattr(model, "tokenizer"):
        return model
    raise TypeError("model must be a name, a path or a LoadedModel (isofast.models.load_model)")


class _Session:
    """One model + tokenizer + layout: prompts, cached forward passes, masks."""

    def __init__(self, model, serializer, max_digits: int | None = None):
        import torch

        self.torch = torch
        self.lm = _load(model)
        if getattr(self.lm, "kind", "causal-lm") != "causal-lm":
            raise ValueError(f"LM-head forecasting needs a causal language model, {self.lm.name!r} is {self.lm.kind}")
        self.m = self.lm.model
        self.m.eval()
        self.tok = self.lm.tokenizer
        self.ser = get_serializer(serializer)
        self.voc = digit_vocabulary(self.tok, self.ser)
        self.max_digits = max_digits
        self.dev = next(self.m.parameters()).device
        self.cand = torch.as_tensor(self.voc.ids, device=self.dev)
        # transformers ≥ 5.x names the cache argument ``cache`` (``past_key_values``
        # before) and the last-logits option ``logits_to_keep``.
        import inspect

        params = inspect.signature(self.m.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._keep_kw = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)

    # -- text
    def prompt(self, ctx: np.ndarray, reserve: int):
        """Encode the context (trailing separator removed) and tokenize it;
        drops the oldest values (warning) when it would not fit the model
        with ``reserve`` tokens left for the continuation."""
        ser = self.ser
        max_len = getattr(self.lm, "max_length", None)
        x = ctx
        dropped = 0
        while True:
            enc = ser.encode(x)
            text = enc.text[: -len(ser.time_sep)]
            ids = self.tok(text, add_special_tokens=True)["input_ids"]
            if max_len is None or len(ids) + reserve <= max_len or x.size <= 1:
                break
            per = len(ids) / max(x.size, 1)
            keep = max(1, int((max_len - reserve) / per) - 1)
            if keep >= x.size:
                keep = x.size - 1
            dropped += x.size - keep
            x = x[-keep:]
        if max_len is not None and len(ids) + reserve > max_len:
            raise ValueError(
                f"the model accepts {max_len} tokens; even one context value plus the "
                f"{reserve} tokens of the horizon do not fit"
            )
        if dropped:
            warnings.warn(
                f"context too long for {self.lm.name} ({max_len} tokens): dropped the "
                f"{dropped} oldest values and re-fitted the scaler",
                stacklevel=3,
            )
        return enc, text, ids

    def reserve(self, horizon: int, enc) -> int:
        cap = self.cap(enc)
        per_value = len(self.ser.minus_sign) + cap * (1 + len(self.ser.bit_sep)) + len(self.ser.time_sep)
        return horizon * per_value + 2

    def cap(self, enc) -> int:
        if self.max_digits is not None:
            return int(self.max_digits)
        most = max((len(str(abs(int(v)))) for v in enc.ints), default=1)
        return most + 1

    # -- model
    def run(self, ids, cache=None, *, all_logits: bool = False):
        """Forward ``ids`` (1-D or batch × steps) on top of ``cache``; returns
        (logits, cache). Only the last position's logits are computed unless
        ``all_logits`` (the head is a V×d GEMM per position)."""
        torch = self.torch
        t = torch.as_tensor(ids, device=self.dev)
        if t.ndim == 1:
            t = t[None]
        kw = {"input_ids": t, "use_cache": True, self._cache_kw: cache}
        if self._keep_kw and not all_logits:
            kw[self._keep_kw] = 1
        out = self.m(**kw)
        new = getattr(out, "cache", None)
        if new is None:
            new = getattr(out, "past_key_values", None)
        return out.logits, new

    @staticmethod
    def crop(cache, length: int) -> None:
        """Cut the cache back to its first ``length`` positions (a negative
        argument removes that many tokens, in every transformers version)."""
        extra = cache.get_seq_length() - length
        if extra > 0:
            cache.crop(-extra)

    def masked_logp(self, logits_row, masks: _Masks, states: frozenset):
        """log-probabilities over the candidate tokens allowed in ``states``
        (−inf elsewhere), float64."""
        torch = self.torch
        z = logits_row[self.cand].double()
        allowed = torch.as_tensor(masks.mask(states), device=z.device)
        z = torch.where(allowed, z, torch.full_like(z, -math.inf))
        return z - torch.logsumexp(z, 0)


@contextlib.contextmanager
def _torch_threads(torch, n: int | None):
    """Run with ``n`` torch intra-op threads, restoring the setting after.

    Decoding feeds one token per step, so each step is a chain of tiny GEMMs;
    on a busy machine OpenMP's spinning threads can make them ~50× slower
    than one thread (measured: 31 ms vs 0.8 ms for a 5×576·576×1536 product
    with 2 threads on 2 loaded cores). ``None`` or 0 leaves torch's setting."""
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _digits_of(v: int) -> int:
    return len(str(abs(int(v))))


# ------------------------------------------------------------------- scoring
def _score(sess: _Session, enc, text: str, prompt_ids: list, last_logits, cache, target: np.ndarray):
    """−Σ log P(continuation tokens) under the grammar mask (cache restored)."""
    ser = sess.ser
    cont_text = ser.time_sep + ser.encode(target, scaler=enc.scaler).text
    full = sess.tok(text + cont_text, add_special_tokens=True)["input_ids"]
    if full[: len(prompt_ids)] != list(prompt_ids):
        # The boundary merged: tokenize the continuation on its own.
        cont = sess.tok(cont_text, add_special_tokens=False)["input_ids"]
    else:
        cont = full[len(prompt_ids) :]
    masks = _Masks(sess.voc, None)
    states = AFTER_VALUE
    total = 0.0
    logits, _ = sess.run(cont[:-1], cache, all_logits=True) if len(cont) > 1 else (None, cache)
    for j, t in enumerate(cont):
        row = last_logits if j == 0 else logits[0, j - 1]
        k = masks.pos.get(int(t))
        if k is None:
            raise ValueError(
                f"the target's tokenization uses token {t} ({sess.tok.decode([t])!r}), "
                "which is not a digit/separator/sign token"
            )
        lp = sess.masked_logp(row, masks, states)
        total -= float(lp[k])
        states, _ = masks.step(states, k)
        if not states:
            raise ValueError(f"the target's token {sess.tok.decode([t])!r} breaks the value grammar")
    sess.crop(cache, len(prompt_ids))
    return total


def _first_digit(sess: _Session, enc, prompt_ids, cache) -> FirstDigit:
    """p(first digit), p(sign) of the next value from the model's next-token
    distribution after the separator. A token that commits to neither (the
    lone digit separator of the spaced layout, e.g. SmolLM2's " " before a
    digit) is expanded one more step and its mass split by what follows."""
    torch = sess.torch
    sep_ids = sess.tok(sess.ser.time_sep, add_special_tokens=False)["input_ids"]
    masks = _Masks(sess.voc, None)
    sign = sess.ser.minus_sign.strip() or sess.ser.minus_sign
    digit = np.zeros(10)
    neg = 0.0

    def spread(row, states, weight, depth):
        nonlocal neg
        p = torch.exp(sess.masked_logp(row, masks, states)).cpu().numpy()
        for k in np.flatnonzero(p > 0):
            s = sess.voc.strings[k]
            w = weight * float(p[k])
            ds = [ch for ch in s if ch in _DIGITS]
            if sign in s:
                neg += w
            elif ds:
                digit[int(ds[0])] += w
            elif depth == 0 and w > 1e-6:
                n_before = cache.get_seq_length()
                lg, _ = sess.run([int(sess.voc.ids[k])], cache)
                spread(lg[0, -1], masks.step(states, int(k))[0], w, 1)
                sess.crop(cache, n_before)

    logits, _ = sess.run(sep_ids, cache)
    spread(logits[0, -1], VALUE_START, 1.0, 0)
    sess.crop(cache, len(prompt_ids))
    total = digit.sum() + neg
    if total > 0:  # mass left on undecided tokens after one step is dropped
        digit, neg = digit / total, neg / total
    n = _digits_of(enc.ints[-1])
    ints = np.arange(11) * 10 ** (n - 1)
    edges = enc.scaler.inverse(ints / 10.0**sess.ser.prec)
    return FirstDigit(digit_probs=digit, negative_prob=float(neg), n_digits=n, edges=edges)


# ------------------------------------------------------------------ sampling
def window_seed(seed: int, window: int) -> int:
    """The seed of window ``window``'s generator: its draws depend on
    (seed, window index) only, never on which windows share its batch."""
    return int(np.random.SeedSequence([int(seed) & (2**63 - 1), int(window)]).generate_state(1, np.uint64)[0] >> 1)


@dataclass
class _Pending:
    """One window waiting to be decoded: its prompt's KV cache (batch 1) and
    the logits after its last prompt token."""

    s: int
    enc: Any
    n_prompt: int
    last: Any
    cache: Any
    masks: Any
    gen: Any
    max_steps: int


def _cache_layers(cache):
    layers = getattr(cache, "layers", None)
    if layers is None or not all(type(L).__name__ == "DynamicLayer" for L in layers):
        return None
    return layers


def _kv_bytes_per_token(cache) -> int:
    """Bytes one sequence's KV cache holds per position (all layers)."""
    layers = _cache_layers(cache)
    if not layers:
        return 0
    T = max(cache.get_seq_length(), 1)
    return int(sum((L.keys.numel() + L.values.numel()) * L.keys.element_size() for L in layers) // T)


def _default_kv_budget(torch, dev) -> int:
    """KV bytes one decoding batch may hold: half the free memory of a CUDA
    device, else a quarter of the machine's memory (at most 4 GiB)."""
    if getattr(dev, "type", "cpu") == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free * 0.5)
    try:
        import os

        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(min(total // 4, 4 << 30))


class _Decoder:
    """Batched constrained decoding across windows (module docstring).

    Windows are added one at a time with their prompt's KV cache (batch 1)
    and decoded in groups: every sample path of every window of a group is
    one row of one batch. Prompts of different lengths are left-padded (an
    attention mask hides the padding, explicit position ids keep each row's
    positions 0..n−1 as when run alone); each row carries its own grammar
    state; a row that has produced ``horizon`` values leaves the batch (and
    padding no remaining row needs is cut off). A group is as large as
    ``max_batch`` rows and ``kv_budget`` bytes of KV cache allow; a window's
    ``n`` paths always stay together.

    Randomness: window s draws ``n`` float64 uniforms per step from its own
    generator (seeded by :func:`window_seed`) for as long as any of its paths
    is unfinished, and each path picks the token where the uniform falls in
    the CDF of the allowed tokens (float64). Its draws therefore do not
    depend on which windows share its batch, nor on when other rows finish.
    """

    def __init__(self, sess, horizon, n, temperature, top_p, *, max_batch=None, kv_budget=None, trace=None):
        self.sess, self.horizon, self.n = sess, int(horizon), int(n)
        self.temperature, self.top_p = float(temperature), top_p
        self.max_batch = None if max_batch is None else max(int(max_batch), 1)
        self.kv_budget = kv_budget
        self.pending: list[_Pending] = []
        self.out: dict = {}  # s -> (values (n, H), tokens generated, mean allowed mass)
        self.trace = trace  # dict s -> list of (step, path, cand logits float64 numpy), for tests
        self.groups: list[int] = []  # windows per decoded group (for benches)
        self.rows: list[list[int]] = []  # per group: rows in the batch at each forward pass (benches)
        self.steps = 0  # batched forward passes
        self._masks: dict = {}

    def _fits(self, extra: _Pending) -> bool:
        grp = self.pending + [extra]
        rows = len(grp) * self.n
        if self.max_batch is not None and rows > self.max_batch:
            return False
        if _cache_layers(extra.cache) is None:
            return False  # a cache we cannot pad and stack: one window at a time
        if self.kv_budget is None:
            self.kv_budget = _default_kv_budget(self.sess.torch, self.sess.dev)
        T = max(p.n_prompt + p.max_steps for p in grp)
        return rows * T * _kv_bytes_per_token(extra.cache) <= self.kv_budget

    def add(self, s, enc, n_prompt, last, cache, gen, max_steps) -> None:
        cap = self.sess.cap(enc)
        masks = self._masks.get(cap)
        if masks is None:  # windows with the same digit cap share memoised grammar masks
            masks = self._masks[cap] = _Masks(self.sess.voc, cap)
        p = _Pending(s, enc, int(n_prompt), last, cache, masks, gen, int(max_steps))
        if self.pending and not self._fits(p):
            self.flush()
        self.pending.append(p)
        if not self._fits_alone():
            self.flush()

    def _fits_alone(self) -> bool:
        return _cache_layers(self.pending[-1].cache) is not None

    def flush(self) -> None:
        if self.pending:
            grp, self.pending = self.pending, []
            self.groups.append(len(grp))
            self._decode(grp)

    # -- one group
    def _stack_cache(self, grp):
        """One cache for the group: each window's KV left-padded to the
        longest prompt and repeated for its ``n`` paths (row = window·n + path)."""
        torch, n = self.sess.torch, self.n
        if len(grp) == 1:
            c = grp[0].cache
            c.batch_repeat_interleave(n)
            return c, 0
        T = max(p.n_prompt for p in grp)
        base = grp[0].cache
        for li, L in enumerate(base.layers):
            ks, vs = [], []
            for p in grp:
                Lp = p.cache.layers[li]
                pad = T - p.n_prompt
                k, v = Lp.keys, Lp.values
                if pad:
                    z = k.new_zeros(k.shape[:2] + (pad,) + k.shape[3:])
                    k = torch.cat([z, k], dim=2)
                    v = torch.cat([v.new_zeros(z.shape[:3] + v.shape[3:]), v], dim=2)
                ks.append(k.expand(n, -1, -1, -1))
                vs.append(v.expand(n, -1, -1, -1))
            L.keys = torch.cat(ks, 0).contiguous()
            L.values = torch.cat(vs, 0).contiguous()
        for p in grp[1:]:
            p.cache = None
        return base, T

    def _decode(self, grp) -> None:
        sess, torch, n, H = self.sess, self.sess.torch, self.n, self.horizon
        G = len(grp)
        B = G * n
        cache, T = self._stack_cache(grp)
        dev = sess.dev
        # per row: owning window (position in grp) and path
        win = np.repeat(np.arange(G), n)
        path = np.tile(np.arange(n), G)
        states = [AFTER_VALUE] * B
        # The first separator closes the context's last value, not a forecast one.
        done = np.full(B, -1, dtype=np.int64)
        texts = [[] for _ in range(B)]
        ntok = np.zeros(G, np.int64)
        mass_sum = torch.zeros(G, dtype=torch.float64, device=dev)  # summed on the device: no sync per step
        mass_cnt = np.zeros(G, np.int64)
        lens = np.array([p.n_prompt for p in grp], np.int64)[win]  # tokens each row holds
        pad = (T - lens) if G > 1 else np.zeros(B, np.int64)  # left padding of each row
        act = np.arange(B)  # rows still in the batch, in batch order
        logits = torch.stack([grp[g].last for g in range(G)], 0).repeat_interleave(n, 0)
        max_steps = max(p.max_steps for p in grp)
        steps = 0
        rows = []
        self.rows.append(rows)
        while act.size and steps < max_steps:
            z = logits[:, sess.cand].double()
            # float32 is ample for a diagnostic over 10^4..10^5 logits (max-shifted)
            full_lse = torch.logsumexp(logits.float(), dim=1).double()
            allowed_np = np.stack([grp[win[r]].masks.mask(states[r]) for r in act])
            allowed = torch.as_tensor(allowed_np, device=z.device)
            zm = z.masked_fill(~allowed, -math.inf)
            m = torch.exp(torch.logsumexp(zm, 1) - full_lse)
            mass_sum.index_add_(0, torch.as_tensor(win[act], device=dev), m)
            np.add.at(mass_cnt, win[act], 1)
            if self.trace is not None:
                zc = z.cpu().numpy()
                for j, r in enumerate(act):
                    self.trace.setdefault(grp[win[r]].s, []).append((steps, int(path[r]), zc[j]))
            if self.temperature == 0:
                pick = zm.argmax(1).cpu().numpy()
            else:
                p = torch.softmax(zm / self.temperature, 1)
                if self.top_p is not None and self.top_p < 1.0:
                    ps, order = torch.sort(p, dim=1, descending=True, stable=True)
                    keep = torch.cumsum(ps, 1) - ps < self.top_p
                    p = torch.zeros_like(p).scatter(1, order, ps * keep)
                cdf = torch.cumsum(p, 1)
                # each window with a live path draws n uniforms, whatever its batch
                u = np.empty(act.size)
                live = np.unique(win[act])
                draws = {int(g): torch.rand(n, generator=grp[g].gen, dtype=torch.float64).numpy() for g in live}
                for j, r in enumerate(act):
                    u[j] = draws[int(win[r])][path[r]]
                tgt = torch.as_tensor(u, device=cdf.device)[:, None] * cdf[:, -1:]
                pick = torch.searchsorted(cdf, tgt, right=True)[:, 0].clamp_(max=cdf.shape[1] - 1).cpu().numpy()
            nxt = np.empty(act.size, dtype=np.int64)
            for j, r in enumerate(act):
                k = int(pick[j])
                if not allowed_np[j, k]:  # cannot happen: zero-probability tokens are never picked
                    raise RuntimeError(f"decoding picked a token the grammar forbids (row {r}, step {steps})")
                nxt[j] = sess.voc.ids[k]
                states[r], finished = grp[win[r]].masks.step(states[r], k)
                texts[r].append(sess.voc.strings[k])
                done[r] += finished
                ntok[win[r]] += 1
            steps += 1
            alive = done[act] < H
            if not alive.any():
                break
            if not alive.all():
                keep = np.flatnonzero(alive)
                cache.batch_select_indices(torch.as_tensor(keep, device=dev))
                act, nxt = act[keep], nxt[keep]
                cut = int(pad[act].min())
                if cut:  # padding no remaining row needs
                    for L in cache.layers:
                        L.keys, L.values = L.keys[:, :, cut:], L.values[:, :, cut:]
                    pad = pad - cut
            rows.append(int(act.size))
            out = self._step(cache, nxt, lens[act], pad[act], G > 1)
            lens[act] += 1
            logits = out
            self.steps += 1
        mass_sum = mass_sum.cpu().numpy()
        for g, p in enumerate(grp):
            vals = np.empty((n, H))
            for i in range(n):
                r = g * n + i
                dec = sess.ser.decode("".join(texts[r]), p.enc.scaler, steps=H)
                v = dec.values
                if v.size < H:  # cannot happen under the grammar; kept as a guard
                    raise RuntimeError(f"window {p.s} sample {i} decoded to {v.size} values, expected {H}")
                vals[i] = v[:H]
            mass = float(mass_sum[g] / mass_cnt[g]) if mass_cnt[g] else float("nan")
            self.out[p.s] = (vals, int(ntok[g]), mass)
            p.cache = None

    def _step(self, cache, nxt, pos, pad, stacked):
        """One token per row on top of ``cache``; the logits (rows, V)."""
        sess, torch = self.sess, self.sess.torch
        ids = torch.as_tensor(nxt[:, None], device=sess.dev)
        kw = {"input_ids": ids, "use_cache": True, sess._cache_kw: cache}
        if stacked:
            kw["position_ids"] = torch.as_tensor(pos[:, None], device=sess.dev)
            if pad.any():
                T = cache.get_seq_length() + 1
                left = torch.as_tensor(pad, device=sess.dev)[:, None]
                kw["attention_mask"] = (torch.arange(T, device=sess.dev)[None, :] >= left).long()
        if sess._keep_kw:
            kw[sess._keep_kw] = 1
        out = sess.m(**kw)
        return out.logits[:, -1]


# ------------------------------------------------------------------ front door
def _check_forecast_args(horizon, temperature, n_samples, top_p, max_batch):
    if not isinstance(horizon, (int, np.integer)) or isinstance(horizon, bool) or horizon < 1:
        raise ValueError(f"horizon must be a positive int, got {horizon!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be ≥ 0, got {temperature}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if max_batch is not None and (not isinstance(max_batch, (int, np.integer)) or max_batch < 1):
        raise ValueError(f"max_batch must be a positive int or None, got {max_batch!r}")


class _Run:
    """One forecast call: prompts, per-window prefill products (scores,
    first digits) and the batched decoder. :func:`forecast` feeds it window by
    window; :func:`isofast.prefill.forecast_and_capture` feeds it the KV
    caches of the capture's own forward passes."""

    def __init__(
        self,
        sess,
        series,
        horizon,
        *,
        n,
        temperature,
        top_p,
        seed,
        target,
        first_digit,
        max_batch=None,
        kv_budget=None,
        trace=None,
    ):
        self.sess, self.series, self.horizon = sess, series, int(horizon)
        self.n, self.seed, self.target = int(n), int(seed), target
        S = len(series)
        self.nll = np.full(S, np.nan) if target is not None else None
        self.tok_nll = np.full(S, np.nan) if target is not None else None
        self.firsts = [None] * S if first_digit else None
        self.scalers = [None] * S
        self.dec = _Decoder(
            sess, horizon, self.n, temperature, top_p, max_batch=max_batch, kv_budget=kv_budget, trace=trace
        )
        self.prompts: dict = {}
        self.t0 = time.perf_counter()

    def prompt(self, s: int):
        """(enc, text, ids) of window s's prompt (memoised)."""
        hit = self.prompts.get(s)
        if hit is None:
            sess, ctx = self.sess, self.series[s]
            # Reserve room for the scored target as well as for sampling.
            enc0 = sess.ser.encode(ctx)
            reserve = sess.reserve(self.horizon, enc0)
            if self._scores(s):
                reserve = max(reserve, len(sess.ser.encode(self.target[s], scaler=enc0.scaler).text) + 2)
            hit = self.prompts[s] = sess.prompt(ctx, reserve)
        return hit

    def _scores(self, s) -> bool:
        # A target with a missing value cannot be serialized: no NLL (NaN).
        return self.target is not None and bool(np.isfinite(self.target[s]).all())

    def prefill(self, s: int):
        """Window s's own prefill: (last logits, cache)."""
        _, _, ids = self.prompt(s)
        logits, cache = self.sess.run(ids)
        return logits[0, -1], cache

    def window(self, s: int, last, cache) -> None:
        """Window s's prompt has been run (``cache`` holds exactly its prompt
        tokens, ``last`` the logits after the last one): score, first digit,
        then queue it for decoding."""
        sess = self.sess
        enc, text, ids = self.prompt(s)
        self.scalers[s] = enc.scaler
        if self.firsts is not None:
            self.firsts[s] = _first_digit(sess, enc, ids, cache)
        if self._scores(s):
            tot = _score(sess, enc, text, ids, last, cache, self.target[s])
            self.tok_nll[s] = tot / self.horizon
            self.nll[s] = self.tok_nll[s] - sess.ser.prec * math.log(10.0) + math.log(enc.scaler.scale)
        gen = None
        if self.dec.temperature != 0:
            gen = sess.torch.Generator().manual_seed(window_seed(self.seed, s))
        self.dec.add(s, enc, len(ids), last, cache, gen, sess.reserve(self.horizon, enc) + 8)

    def result(self, quantile_levels, settings: dict) -> ForecastResult:
        self.dec.flush()
        S, H = len(self.series), self.horizon
        samples = np.empty((S, self.n, H))
        masses = np.empty(S)
        generated = 0
        for s in range(S):
            vals, ntok, mass = self.dec.out[s]
            samples[s] = vals
            masses[s] = mass
            generated += ntok
        levels = np.asarray(quantile_levels, np.float64)
        return ForecastResult(
            samples=samples,
            median=np.median(samples, axis=1),
            mean=samples.mean(axis=1),
            quantile_levels=levels,
            quantiles=np.quantile(samples, levels, axis=1) if levels.size else np.empty((0, S, H)),
            scalers=self.scalers,
            nll=self.nll,
            token_nll=self.tok_nll,
            first_digit=self.firsts,
            n_generated_tokens=int(generated),
            allowed_mass=masses,
            seconds=time.perf_counter() - self.t0,
            settings=settings,
        )


def _prepare_target(context, target, series, horizon):
    if target is None and hasattr(context, "target") and hasattr(context, "series_id"):
        tgt = np.asarray(context.target, np.float64)
        target = tgt if tgt.shape[1] == horizon else None
    if target is not None:
        target = np.asarray(target, np.float64)
        if target.ndim == 1:
            target = target[None]
        if target.shape != (len(series), horizon):
            raise ValueError(f"target must have shape ({len(series)}, {horizon}), got {target.shape}")
        if np.isinf(target).any():
            raise ValueError("target holds ±Inf")
    return target


def _settings(sess, n, temperature, top_p, seed, horizon, max_digits, dec) -> dict:
    return {
        "model": sess.lm.name,
        "serializer": sess.ser.to_dict(),
        "n_samples": n,
        "temperature": float(temperature),
        "top_p": top_p,
        "seed": int(seed),
        "seeding": "per window: window_seed(seed, window index)",
        "horizon": int(horizon),
        "max_digits": max_digits,
        "decode_groups": list(dec.groups),
    }


def forecast(
    model: Any,
    context: Any,
    horizon: int,
    *,
    n_samples: int = 5,
    temperature: float = 1.0,
    top_p: float | None = None,
    seed: int = 0,
    serializer: Any = "llmtime",
    target: Any = None,
    quantile_levels: Sequence[float] = (0.1, 0.5, 0.9),
    first_digit: bool = False,
    max_digits: int | None = None,
    n_threads: int | None = None,
    max_batch: int | None = None,
    kv_budget: int | None = None,
) -> ForecastResult:
    """Forecast ``horizon`` values of each series in ``context`` with the
    model's LM head (module docstring for the method).

    Parameters
    ----------
    model : ``"smollm2"``, a model path, or a :class:`isofast.models.LoadedModel`.
    context : one series (1-D), series × time (2-D), a list of 1-D series, or
        an ``isofast.data.windows.Windows`` (its targets become ``target``).
    horizon : values to forecast.
    n_samples, temperature, top_p, seed : sampling; ``temperature=0`` is
        greedy decoding (one sample). Window s draws from its own generator
        seeded by ``window_seed(seed, s)``: its paths do not depend on the
        other windows of the call nor on how they were batched.
    serializer : an LLMTime layout (``"llmtime"`` = ``"llmtime:llama"``, or
        ``"llmtime:gpt"``) or an :class:`~isofast.serializers.LLMTimeSerializer`.
    target : the true continuations (S × H) for the continuous NLL (a row
        with a missing value gets NaN).
    first_digit : also return :func:`next_value_first_digit` per series.
    max_digits : most digits a sampled value may have (default: context max + 1).
    n_threads : torch intra-op threads during the call (default: leave torch's
        setting); 1 is often fastest for decoding on a shared machine.
    max_batch : most rows (windows × sample paths) decoded in one batch
        (default: as many as ``kv_budget`` allows; 1 window per batch when
        ``max_batch < n_samples``).
    kv_budget : bytes of KV cache one decoding batch may hold (default: half
        the free memory of a CUDA device, else min(RAM/4, 4 GiB)).
    """
    torch = __import__("torch")
    _check_forecast_args(horizon, temperature, n_samples, top_p, max_batch)
    series = as_series_list(context)
    target = _prepare_target(context, target, series, horizon)
    n = 1 if temperature == 0 else int(n_samples)
    sess = _Session(model, serializer, max_digits)
    run = _Run(
        sess,
        series,
        horizon,
        n=n,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        target=target,
        first_digit=first_digit,
        max_batch=max_batch,
        kv_budget=kv_budget,
    )
    with torch.inference_mode(), _torch_threads(torch, n_threads):
        for s in range(len(series)):
            run.window(s, *run.prefill(s))
        run.dec.flush()
    return run.result(quantile_levels, _settings(sess, n, temperature, top_p, seed, horizon, max_digits, run.dec))


def continuous_nll(
    model: Any, context: Any, target: Any, *, serializer: Any = "llmtime", n_threads: int | None = None
) -> np.ndarray:
    """LLMTime's continuous NLL per value of ``target`` given ``context``
    (one value per series; module docstring for the formula)."""
    torch = __import__("torch")
    series = as_series_list(context)
    tgt = np.asarray(target, np.float64)
    if tgt.ndim == 1:
        tgt = tgt[None]
    if tgt.shape[0] != len(series):
        raise ValueError(f"{len(series)} contexts but {tgt.shape[0]} targets")
    sess = _Session(model, serializer)
    out = np.empty(len(series))
    with torch.inference_mode(), _torch_threads(torch, n_threads):
        for s, ctx in enumerate(series):
            enc0 = sess.ser.encode(ctx)
            reserve = len(sess.ser.encode(tgt[s], scaler=enc0.scaler).text) + 2
            enc, text, ids = sess.prompt(ctx, reserve)
            logits, cache = sess.run(ids)
            tot = _score(sess, enc, text, ids, logits[0, -1], cache, tgt[s])
            out[s] = tot / tgt.shape[1] - sess.ser.prec * math.log(10.0) + math.log(enc.scaler.scale)
    return out


def next_value_first_digit(
    model: Any, context: Any, *, serializer: Any = "llmtime", n_threads: int | None = None
) -> list:
    """The model's distribution over the first digit (and sign) of the value
    following each context: one forward pass, no sampling (:class:`FirstDigit`)."""
    torch = __import__("torch")
    series = as_series_list(context)
    sess = _Session(model, serializer)
    out = []
    with torch.inference_mode(), _torch_threads(torch, n_threads):
        for ctx in series:
            enc, _text, ids = sess.prompt(ctx, 4)
            _, cache = sess.run(ids)
            out.append(_first_digit(sess, enc, ids, cache))
    return out


# ``isofast.forecast(...)`` calls the function; the module stays reachable.
from isofast._callable import make_module_callable as _make_callable  # noqa: E402

_make_callable(__name__, forecast)
