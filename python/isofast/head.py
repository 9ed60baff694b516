"""LM-head (softmax) statistics: the fused log-partition and shift-invariance
diagnostics of the hidden states that feed the head.

Log-linear model (Arora et al. 2016, "A Latent Variable Model Approach to
PMI-based Word Embeddings"): a language model's head gives

    p(w | c) = exp(⟨v_w, c⟩ + b_w) / Z(c),   log Z(c) = logsumexp_w(⟨v_w, c⟩ + b_w)

for the vocabulary vectors v_w (rows of the output matrix W, V×d) and the
context c (the final hidden state, after the final norm). Arora et al. show
that when the v_w are spread isotropically, Z(c) concentrates around a
constant: the *spread* of log Z over contexts is a direct test of that.

Shift-invariance: softmax(z + a·1) = softmax(z), so a direction u with
W u = 1 (a "shift direction") changes only the normaliser, never a
prediction; the component of c along it is not identified by next-token
training, and the cross-entropy gradient E_p[v] − v_target lies in
span{v_w − v_w'} so it gets no gradient through the head either. The best
such direction is u* = argmin_u ‖W u − 1‖ (least squares); the relative
residual ‖W u* − 1‖/‖1‖ is near 0 exactly when a shift direction exists.

:func:`log_partition_head` is the fused Rust kernel (tiles of C·Wᵀ folded into
a streaming log-sum-exp; no N×V matrix is held). :func:`head_diagnostics`
returns a :class:`HeadReport`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from isofast import _core
from isofast._input import as_matrix, check_int, file_rows
from isofast.analysis import analyze
from isofast.errors import renamed
from isofast.models import head_inputs, lm_head_weights  # public here too (isofast.head.__all__)
from isofast.report import jsonable

__all__ = [
    "HeadLogits",
    "HeadReport",
    "ShiftDirection",
    "head_diagnostics",
    "head_inputs",
    "lm_head_weights",
    "log_partition_head",
    "shift_direction",
]


# ------------------------------------------------------------------- inputs
def _matrix(x: Any, name: str, dtype: str | None = None, *, allow_1d: bool = False):
    """``(array, elem)`` via :func:`isofast._input.as_matrix`; ``dtype`` (only
    ``"bfloat16"``) applies to 16-bit integer arrays holding bit patterns."""
    if allow_1d and getattr(x, "ndim", None) == 1:
        x = x.reshape(1, -1)
    elif allow_1d and isinstance(x, (list, tuple)) and np.ndim(x) == 1:
        x = np.asarray(x).reshape(1, -1)
    dt = getattr(x, "dtype", None)
    if dtype is not None and not (isinstance(dt, np.dtype) and dt.kind in "ui" and dt.itemsize == 2):
        dtype = None
    try:
        return as_matrix(x, dtype)
    except (ValueError, TypeError) as exc:
        raise renamed(exc, f"{name}: {exc}") from None


def _vector(b: Any, name: str = "b") -> np.ndarray | None:
    if b is None:
        return None
    if type(b).__module__.split(".")[0] == "torch":
        b = b.detach().cpu().double().numpy()
    arr = np.asarray(b, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one bias per vocabulary entry), got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _subset_ids(subset: Any, vocab: int) -> np.ndarray | None:
    if subset is None:
        return None
    s = np.asarray(subset)
    if s.dtype == bool:
        if s.shape != (vocab,):
            raise ValueError(f"a boolean subset mask must have shape ({vocab},), got {s.shape}")
        return np.flatnonzero(s).astype(np.int64)
    if s.size and s.dtype.kind not in "iu":
        raise TypeError(f"subset must hold integer token ids or be a boolean mask, got {s.dtype}")
    return np.ascontiguousarray(s.reshape(-1).astype(np.int64))


def _rows_f64(arr: np.ndarray, elem: str | None, start: int, stop: int) -> np.ndarray:
    """Rows start..stop as float64 (bfloat16 bit patterns decoded)."""
    blk = np.asarray(arr[start:stop])
    if elem == "bfloat16":
        blk = (blk.astype(np.uint32) << 16).view(np.float32)
    return blk.astype(np.float64)


# ------------------------------------------------------------------- kernel
@dataclass
class HeadLogits:
    """Everything one fused pass over the head returns (:func:`log_partition_head`).

    ``log_z`` (N,) is log Z(c_n); ``topk_indices``/``topk_logits``/
    ``topk_probs`` (N×k) are the k largest logits per context in descending
    order (ties: lower token id first) and their probabilities
    p(w|c) = exp(z_w − log Z); ``subset_log_mass`` (N,) is
    log p(S|c) = log Σ_{w∈S} exp(z_w) − log Z(c) for the requested subset S.
    """

    log_z: np.ndarray
    topk_indices: np.ndarray | None = None
    topk_logits: np.ndarray | None = None
    topk_probs: np.ndarray | None = None
    subset_log_mass: np.ndarray | None = None

    @property
    def subset_mass(self) -> np.ndarray | None:
        """p(S|c) = exp(subset_log_mass)."""
        return None if self.subset_log_mass is None else np.exp(self.subset_log_mass)


def log_partition_head(
    W: Any,
    C: Any,
    b: Any = None,
    *,
    topk: int = 0,
    subset: Any = None,
    n_threads: int | None = None,
    dtype: str | None = None,
):
    """log Z(c_n) = logsumexp_w(⟨v_w, c_n⟩ + b_w) for every context row c_n.

    Parameters
    ----------
    W : the output matrix (V×d, one row per vocabulary entry): numpy of any
        float/int dtype, strides or order, memmap, ml_dtypes bfloat16 or a CPU
        torch tensor (read without copying).
    C : the contexts (N×d, or one context as a 1-D vector): same forms.
    b : optional bias (length V).
    topk : also return the k largest logits of every context.
    subset : token ids (or a boolean mask over the vocabulary) whose total
        probability is wanted, e.g. the digit tokens.
    n_threads : Rust threads (default all cores); the result is bitwise the
        same for every thread count.
    dtype : ``"bfloat16"`` when W and C hold bfloat16 bit patterns as uint16.

    The product is tiled (float32 GEMM when W and C are float32/16/bfloat16,
    float64 otherwise) and each tile is folded at once into a float64
    streaming log-sum-exp, so no N×V matrix is ever held and logits in the
    thousands do not overflow.

    Returns
    -------
    ``np.ndarray`` of float64, length N, when neither ``topk`` nor ``subset``
    is given; otherwise a :class:`HeadLogits`.

    Raises
    ------
    ValueError : hidden sizes differ, the vocabulary is empty, b has the wrong
        length, a subset id is out of range, ``topk`` > V, or W, C, b (or a
        float32 product) hold NaN/Inf — the message names the matrix and row.
    TypeError : unsupported dtypes.
    """
    topk = check_int(topk, "topk", minimum=0)
    w, we = _matrix(W, "W", dtype)
    c, ce = _matrix(C, "C", dtype, allow_1d=True)
    bias = _vector(b)
    ids = _subset_ids(subset, w.shape[0])
    r = _core.log_partition_head(w, c, bias, int(topk), ids, we, ce, n_threads)
    if topk == 0 and ids is None:
        return r.log_z
    return HeadLogits(
        log_z=r.log_z,
        topk_indices=r.topk_indices,
        topk_logits=r.topk_logits,
        topk_probs=r.topk_probs,
        subset_log_mass=r.subset_log_mass,
    )


# --------------------------------------------------------- shift direction
@dataclass
class ShiftDirection:
    """u* = argmin_u ‖W u − 1‖ and what the same QR gives for free.

    ``u`` (d,) the minimum-norm least-squares solution; ``residual`` the
    relative residual ‖W u* − 1‖/‖1‖ (0: an exact shift direction exists;
    near 1: W u barely correlates with 1); ``gram`` WᵀW and ``ones_proj``
    Wᵀ1 (both float64), used for the logit-space variance shares.
    """

    u: np.ndarray
    residual: float
    gram: np.ndarray
    ones_proj: np.ndarray
    rank: int

    @property
    def unit(self) -> np.ndarray:
        n = float(np.linalg.norm(self.u))
        return self.u / n if n > 0 else self.u


def shift_direction(W: Any, *, chunk_rows: int = 4096, dtype: str | None = None) -> ShiftDirection:
    """Least-squares shift direction u* = argmin ‖W u − 1‖ of an output matrix.

    Method: a streaming (tall-skinny) QR of the augmented matrix [W, 1] in
    float64, one block of ``chunk_rows`` rows at a time: R ← qr([R; block]).
    Then [W, 1]ᵀ[W, 1] = RᵀR, so u* solves R[:d,:d] u = R[:d, d] (minimum-norm
    solution via SVD when W is rank-deficient), and WᵀW, Wᵀ1 come out of R
    without another pass. Backward stable — no normal equations, whose
    squared condition number would blur an exact (residual ≈ 0) shift
    direction. The residual is then measured directly, ‖W u* − 1‖, in a
    second float64 pass. Memory: O(chunk_rows·d + d²).
    """
    w, we = _matrix(W, "W", dtype)
    V, d = w.shape
    if V == 0:
        raise ValueError("W has no rows: the vocabulary is empty")
    R = np.zeros((0, d + 1))
    for s in range(0, V, chunk_rows):
        blk = _rows_f64(w, we, s, min(V, s + chunk_rows))
        if not np.isfinite(blk).all():
            bad = s + int(np.flatnonzero(~np.isfinite(blk).all(axis=1))[0])
            raise ValueError(f"W (output matrix) contains NaN or Inf: first non-finite value at row {bad}")
        A = np.empty((blk.shape[0], d + 1))
        A[:, :d] = blk
        A[:, d] = 1.0
        R = np.linalg.qr(np.vstack([R, A]), mode="r")
    Rw = R[:, :d]
    gram = Rw.T @ Rw
    ones_proj = Rw.T @ R[:, d]
    top = R[:d]  # (≤ d) × (d + 1)
    if d > 0:
        u, _, rank, _ = np.linalg.lstsq(top[:, :d], top[:, d], rcond=None)
        rank = int(rank)
    else:
        u, rank = np.zeros(0), 0
    sq = 0.0
    for s in range(0, V, chunk_rows):
        blk = _rows_f64(w, we, s, min(V, s + chunk_rows))
        r = blk @ u - 1.0
        sq += float(r @ r)
    return ShiftDirection(u=u, residual=math.sqrt(sq / V), gram=gram, ones_proj=ones_proj, rank=rank)


# --------------------------------------------------------------- the report
#: Relative residual below which a shift direction counts as exact.
EXACT_SHIFT_TOL = 1e-6


@dataclass
class HeadReport:
    """Shift-invariance diagnostics of the contexts C entering a softmax head.

    log-partition spread (constant-Z check, Arora et al. 2016)
        ``log_z_mean``, ``log_z_std``, ``log_z_min``, ``log_z_max``,
        ``log_z_range`` (= max − min) over the N contexts; relative to the
        mean: ``log_z_rel_std`` = std/|mean|, ``log_z_rel_range`` =
        range/|mean|; ``z_cv`` = std(Z)/mean(Z) (computed in log space; Arora
        et al.'s Z(c) = Z₀(1 ± ε) has z_cv ≈ ε); ``log_z_uniform`` =
        logsumexp(b) (log V without bias), the value at c = 0.
    shift direction (softmax(z + a·1) = softmax(z))
        ``shift_residual`` = ‖W u* − 1‖/‖1‖ with u* = argmin ‖W u − 1‖;
        ``shift_exact`` when it is below :data:`EXACT_SHIFT_TOL`;
        ``shift_direction_norm`` = ‖u*‖ (the hidden-state step that raises
        every logit by 1).
    contexts along û* = u*/‖u*‖
        ``shift_cosine`` (N,) = ⟨c_n, û⟩/‖c_n‖; each context's share of its
        squared norm along û* is ``shift_norm_share`` = cos²
        (summaries ``*_mean``, ``*_median``, ``*_max``);
        ``mean_context_shift_share`` = cos²(mean context, û).
    variance that changes only the normaliser (Σ = covariance of the contexts)
        ``shift_variance_share`` = ûᵀΣû / tr Σ: the share of the contexts'
        variance along û*;
        ``logit_shift_variance_share`` = (gᵀΣg/V) / tr(WΣWᵀ), g = Wᵀ1: of the
        variance the contexts induce in the logit vector, the share that is a
        uniform shift z ↦ z + a·1 (it changes log Z and nothing else). Basis
        free, and meaningful whether or not an exact shift direction exists.
    global isotropy
        ``isotropy`` (of the contexts) and ``head_isotropy`` (of the rows of
        W): :meth:`isofast.analyze` reports as dicts, when computed.
    """

    n_contexts: int
    vocab_size: int
    dim: int
    has_bias: bool
    log_z_mean: float
    log_z_std: float
    log_z_min: float
    log_z_max: float
    log_z_range: float
    log_z_rel_std: float
    log_z_rel_range: float
    z_cv: float
    log_z_uniform: float
    shift_residual: float
    shift_exact: bool
    shift_direction_norm: float
    shift_rank: int
    shift_norm_share_mean: float
    shift_norm_share_median: float
    shift_norm_share_max: float
    mean_context_shift_share: float
    shift_variance_share: float
    logit_shift_variance_share: float
    log_z: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    shift_cosine: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    shift_direction: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    isotropy: dict | None = None
    head_isotropy: dict | None = None
    notes: list = field(default_factory=list)

    _ARRAYS = ("log_z", "shift_cosine", "shift_direction")

    def to_dict(self, arrays: bool = False) -> dict:
        """JSON-safe dict; ``arrays=True`` keeps the per-context arrays and u*."""
        d = asdict(self)
        if not arrays:
            for k in self._ARRAYS:
                d.pop(k)
        return jsonable(d)

    def to_json(self, indent: int | None = 2, arrays: bool = False) -> str:
        return json.dumps(self.to_dict(arrays=arrays), indent=indent)

    def table(self) -> str:
        def f(v):
            if isinstance(v, bool):
                return str(v)
            if isinstance(v, (int, np.integer)):
                return f"{int(v):,}"
            return "n/a" if v is None or not np.isfinite(v) else f"{v:.6g}"

        rows = [
            ("contexts (N)", f(self.n_contexts)),
            ("vocabulary (V)", f(self.vocab_size)),
            ("dimension (d)", f(self.dim)),
            ("log Z mean", f(self.log_z_mean)),
            ("log Z std", f(self.log_z_std)),
            ("log Z range", f(self.log_z_range)),
            ("log Z std / |mean|", f(self.log_z_rel_std)),
            ("log Z range / |mean|", f(self.log_z_rel_range)),
            ("Z coefficient of variation", f(self.z_cv)),
            ("log Z at c = 0", f(self.log_z_uniform)),
            ("shift residual ‖Wu*−1‖/‖1‖", f(self.shift_residual)),
            ("exact shift direction", f(self.shift_exact)),
            ("‖u*‖", f(self.shift_direction_norm)),
            ("norm share along u* (mean)", f(self.shift_norm_share_mean)),
            ("norm share along u* (median)", f(self.shift_norm_share_median)),
            ("norm share along u* (max)", f(self.shift_norm_share_max)),
            ("mean context's share along u*", f(self.mean_context_shift_share)),
            ("variance share along u*", f(self.shift_variance_share)),
            ("logit variance share: pure shift", f(self.logit_shift_variance_share)),
        ]
        for label, rep in (("contexts", self.isotropy), ("head rows", self.head_isotropy)):
            if rep:
                for k in ("isoscore", "avg_cosine", "pc1_share", "log_partition_isotropy"):
                    if k in rep:
                        rows.append((f"{label}: {k}", f(rep[k])))
        w = max(len(r[0]) for r in rows)
        out = [f"{k:<{w}}  {v}" for k, v in rows]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()


def _context_chunks(C: Any, dtype: str | None):
    """The contexts as a re-iterable list of ``(array, elem)`` chunks: one
    for an array/tensor (1-D = one context), one per shard for a capture layer
    or any chunk source :func:`isofast._input.as_source` reads."""
    if (
        isinstance(C, np.ndarray)
        or type(C).__module__.split(".")[0] == "torch"
        or (isinstance(C, (list, tuple)) and C and np.isscalar(C[0]))
    ):
        return [_matrix(C, "C", dtype, allow_1d=True)]
    from isofast._input import as_source

    src = as_source(C, dtype)
    return _ReChunks(src)


class _ReChunks:
    """A source's chunks, re-iterated on every pass (memory-mapped shards stay on disk)."""

    def __init__(self, src):
        self.src = src

    def __iter__(self):
        return iter(self.src.chunks())


def _analyze_dict(X: Any, n_threads: int | None, dtype: str | None) -> dict:
    return analyze(X, n_threads=n_threads, dtype=dtype).to_dict(arrays=False)


def _logsumexp(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + math.log(float(np.sum(np.exp(x - m))))


@file_rows(arg=1, name="C")
def head_diagnostics(
    W: Any,
    C: Any,
    b: Any = None,
    *,
    isotropy: bool = True,
    head_isotropy: bool = True,
    n_threads: int | None = None,
    dtype: str | None = None,
    chunk_rows: int = 4096,
    shift: ShiftDirection | None = None,
) -> HeadReport:
    """Shift-invariance diagnostics of contexts ``C`` (N×d) under the head
    ``W`` (V×d, bias ``b``); see :class:`HeadReport` for every field.

    ``shift``: the :func:`shift_direction` of this ``W`` when the caller has it
    already (it depends on W only and costs a streaming QR of the V×d head).

    ``C`` should be the hidden states that enter the head — after the model's
    final norm (:func:`head_inputs`, or the last ``residual`` layer of an
    isofast capture). ``isotropy``/``head_isotropy`` add
    :func:`isofast.analyze` of the contexts / of W's rows.
    """
    w, we = _matrix(W, "W", dtype)
    V, d = w.shape
    chunks = _context_chunks(C, dtype)
    bias = _vector(b)
    notes: list[str] = []
    sd = shift if shift is not None else shift_direction(w, chunk_rows=chunk_rows, dtype=we)
    if sd.u.shape != (d,):
        raise ValueError(f"shift direction has shape {sd.u.shape}, the head W has d = {d}")
    u_norm = float(np.linalg.norm(sd.u))
    uh = sd.unit
    if sd.rank < d:
        notes.append(f"W has rank {sd.rank} < d = {d}: directions in its null space change no logit")

    # One pass over the contexts: log Z (fused Rust kernel), the cosine with
    # û*, and the float64 moments for the covariance.
    log_zs, coss = [], []
    mom = _core.Moments(d)
    for c, ce in chunks:
        if c.shape[1] != d:
            raise ValueError(f"dimension mismatch: contexts C have {c.shape[1]} columns, the head W has {d}")
        log_zs.append(_core.log_partition_head(w, c, bias, 0, None, we, ce, n_threads).log_z)
        for s0 in range(0, c.shape[0], chunk_rows):
            blk = _rows_f64(c, ce, s0, min(c.shape[0], s0 + chunk_rows))
            nrm = np.linalg.norm(blk, axis=1)
            coss.append(np.where(nrm > 0, (blk @ uh) / np.where(nrm > 0, nrm, 1.0), 0.0))
            mom.update(blk, None, n_threads)
    log_z = np.concatenate(log_zs) if log_zs else np.empty(0)
    cos = np.concatenate(coss) if coss else np.empty(0)
    N = int(log_z.size)
    if N == 0:
        raise ValueError("C has no rows: no contexts to diagnose")
    mean = float(log_z.mean())
    std = float(log_z.std(ddof=1)) if N > 1 else 0.0
    lo, hi = float(log_z.min()), float(log_z.max())
    rel = (lambda v: v / abs(mean)) if mean != 0 else (lambda v: float("nan"))
    # Z_n / max Z in log space: the coefficient of variation never overflows.
    zr = np.exp(log_z - hi)
    z_cv = float(zr.std(ddof=1) / zr.mean()) if N > 1 else 0.0
    log_z_uniform = _logsumexp(bias) if bias is not None else math.log(V)

    share = cos**2
    mu = np.asarray(mom.mean)
    mu_n = float(np.linalg.norm(mu))
    mean_share = float((mu @ uh / mu_n) ** 2) if mu_n > 0 else 0.0
    if N > 1:
        S = np.asarray(mom.covariance())
        tr = float(np.trace(S))
        var_share = float(uh @ S @ uh / tr) if tr > 0 else float("nan")
        total_logit = float(np.sum(sd.gram * S))  # tr(WΣWᵀ) = tr(GΣ)
        g = sd.ones_proj
        logit_share = float(g @ S @ g / V / total_logit) if total_logit > 0 else float("nan")
    else:
        var_share = logit_share = float("nan")
        notes.append("one context only: variance shares are undefined")

    rep = HeadReport(
        n_contexts=N,
        vocab_size=V,
        dim=d,
        has_bias=bias is not None,
        log_z_mean=mean,
        log_z_std=std,
        log_z_min=lo,
        log_z_max=hi,
        log_z_range=hi - lo,
        log_z_rel_std=rel(std),
        log_z_rel_range=rel(hi - lo),
        z_cv=z_cv,
        log_z_uniform=log_z_uniform,
        shift_residual=sd.residual,
        shift_exact=bool(sd.residual < EXACT_SHIFT_TOL),
        shift_direction_norm=u_norm,
        shift_rank=sd.rank,
        shift_norm_share_mean=float(share.mean()),
        shift_norm_share_median=float(np.median(share)),
        shift_norm_share_max=float(share.max()),
        mean_context_shift_share=mean_share,
        shift_variance_share=var_share,
        logit_shift_variance_share=logit_share,
        log_z=log_z,
        shift_cosine=cos,
        shift_direction=sd.u,
        notes=notes,
    )
    if isotropy and N > 1:
        if isinstance(chunks, list):  # one array
            rep.isotropy = _analyze_dict(chunks[0][0], n_threads, chunks[0][1])
        else:  # a chunk source (e.g. a capture layer): analyze streams it itself
            rep.isotropy = _analyze_dict(C, n_threads, dtype)
    if head_isotropy:
        rep.head_isotropy = _analyze_dict(w, n_threads, we)
    return rep
