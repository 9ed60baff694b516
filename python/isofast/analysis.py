"""The global isotropy suite (design.md §3) over any supported input.

Pass 1 streams the rows once into a mergeable :class:`isofast.Moments` state
(mean, co-moment, raw unit-vector sum). The covariance and XᵀX are then
eigendecomposed (d×d), and pass 2 streams the rows again for the partition
functions and the centred cosine. Every kernel runs in Rust on ``n_threads``
threads with the GIL released; inputs are never copied whole.

Validity (docs/validity.md): every report lists in ``invalid`` the statistics
that are undefined or meaningless for its input (the spectral ones when
N < d); ``floors=True`` sets them to NaN. ``massive="flag"`` / ``"exclude"``
looks for massive rows first (:mod:`isofast.massive`, Sun et al. 2024) and
reports them or computes every statistic without them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isofast import _core
from isofast._input import as_source, check_int, file_rows
from isofast.errors import DimensionError, EmptyInputError, UndefinedStatisticWarning
from isofast.report import IsotropyReport, jsonable


def _needs_f64(arr: np.ndarray, elem: str | None) -> bool:
    """float64 and integer inputs get float64 projections; narrower floats
    (float32/16, bfloat16) get float32 GEMMs, matching their own precision."""
    # The rule of the core's Elem::needs_f64 (source.rs), applied across a
    # stream's chunks: Moments does not record its inputs' precision, and
    # Moments.second_pass / SecondPass take the choice as an argument.
    return elem is None and (arr.dtype == np.float64 or arr.dtype.kind in "iu")


#: Accepted values of ``precision=`` (design.md, "Precision: exact and fast").
PRECISIONS = ("exact", "fast")


def check_precision(precision: Any) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a clear error."""
    if not isinstance(precision, str):
        raise TypeError(f"precision must be 'exact' or 'fast', got {type(precision).__name__} {precision!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'exact' or 'fast', got {precision!r}")
    return precision


def _first_pass(X: Any, n_threads: int | None, dtype: str | None, precision: str = "exact"):
    src = as_source(X, dtype)
    state = None
    f64 = False
    for arr, elem in src.chunks():
        if state is None:
            if arr.shape[1] == 0:
                raise DimensionError("input has 0 columns")
            state = _core.Moments(arr.shape[1], precision)
        state.update(arr, elem, n_threads)
        f64 = f64 or _needs_f64(arr, elem)
    if state is None or state.n == 0:
        raise EmptyInputError("empty input: no rows to analyse")
    return src, state, f64


def _check_rows(state) -> None:
    # The core refuses n < 2 alike (analyze.rs check_spectral, the same
    # EmptyInputError message), but d < 2 only in spectral_scores, as an
    # InputError after the eigendecomposition: checked here, first and in
    # this order, so it stays a DimensionError.
    if state.n < 2:
        raise EmptyInputError(f"isotropy statistics need at least 2 rows, got {state.n}")
    if state.dim < 2:
        raise DimensionError(f"isotropy statistics need at least 2 dimensions, got {state.dim}")


#: Statistics that depend on the covariance (or XᵀX) spectrum: meaningless
#: when N < d, where the covariance is rank-deficient (rank ≤ N − 1 < d).
SPECTRAL_STATISTICS = (
    "isoscore",
    "participation_ratio",
    "effective_dim",
    "effective_rank",
    "stable_rank",
    "pc1_share",
    "explained_variance_ratio",
    "partition_isotropy",
    "log_partition_isotropy",
    "partition_isotropy_centered",
    "log_partition_isotropy_centered",
)


def invalid_statistics(n: int, d: int) -> dict:
    """Statistic name → reason, for the statistics undefined or meaningless
    on an n×d input (docs/validity.md): every spectral statistic when n < d.

    With n < d rows the sample covariance has rank ≤ n − 1 < d, so at least
    d − n + 1 eigenvalues are 0 whatever the population: IsoScore ≤
    (n − 2)/(d − 1), effective_dim ≤ n − 1, and the partition functions along
    the null directions equal n exactly. Those numbers measure N, not the
    embedding space.
    """
    if n >= d:
        return {}
    reason = f"N = {n} rows < d = {d} dimensions: the covariance is rank-deficient (rank ≤ N − 1)"
    return {k: reason for k in SPECTRAL_STATISTICS}


def apply_floors(rep: IsotropyReport) -> None:
    """Set every statistic listed in ``rep.invalid`` to NaN (in place)."""
    for k in rep.invalid:
        v = getattr(rep, k, None)
        if isinstance(v, np.ndarray):
            setattr(rep, k, np.full(v.shape, np.nan))
        elif v is not None:
            setattr(rep, k, float("nan"))


def _notes(n: int, d: int, n_zero: int) -> list:
    notes = []
    if n <= d:
        notes.append(
            f"N={n} ≤ d={d}: the covariance has rank ≤ N−1, so effective_dim ≤ N−1 and "
            f"IsoScore ≤ {(n - 2) / (d - 1):.4g}"
            + ("; the spectral statistics are listed in `invalid` (floors=True sets them to NaN)" if n < d else "")
        )
    elif n < 50 * d:
        notes.append(
            f"N={n} < 50·d: IsoScore is biased low at small N (isotropic Gaussian, d=256: "
            "0.33 at N=128, 0.98 at N=16384); compare values at equal N"
        )
    if n_zero:
        notes.append(f"{n_zero} zero-norm rows were skipped in the cosine statistics")
    if n - n_zero < 2:
        notes.append("avg_cosine is NaN (undefined): fewer than 2 rows have non-zero norm")
    return notes


def report_from_moments(
    state, eps: float = 0.8, n_threads: int | None = None, eigenvalues: np.ndarray | None = None
) -> IsotropyReport:
    """One-pass report (spectral scores and raw average cosine) of a state.

    ``eigenvalues``: the covariance eigenvalues when the caller already has
    them (from ``state.second_pass`` or ``state.directions``), so no
    decomposition is repeated.
    """
    _check_rows(state)
    ev_c = state.eigenvalues(n_threads) if eigenvalues is None else eigenvalues
    s = _core.spectral_scores(ev_c, eps)
    return IsotropyReport(
        n=int(state.n),
        dim=int(state.dim),
        mean=state.mean,
        eigenvalues=ev_c,
        explained_variance_ratio=s.explained_variance_ratio,
        effective_dim=int(s.effective_dim),
        eps=float(eps),
        participation_ratio=s.participation_ratio,
        isoscore=s.isoscore,
        stable_rank=s.stable_rank,
        pc1_share=s.pc1_share,
        effective_rank=s.effective_rank,
        total_variance=s.total_variance,
        avg_cosine=state.avg_cosine,
        n_zero_norm=int(state.n_zero_norm),
        notes=_notes(int(state.n), int(state.dim), int(state.n_zero_norm)),
        invalid=invalid_statistics(int(state.n), int(state.dim)),
    )


@file_rows
def analyze(
    X: Any,
    *,
    center: bool = True,
    partition: bool = True,
    eps: float = 0.8,
    n_threads: int | None = None,
    dtype: str | None = None,
    massive: str | None = None,
    massive_ratio: float = 100.0,
    floors: bool = False,
    precision: str = "exact",
    memory_budget: int | None = None,
) -> IsotropyReport:
    """All global isotropy statistics of the rows of ``X`` (design.md §3).

    One symmetric eigendecomposition (of the covariance) is done between the
    passes; the eigenvectors of XᵀX = M + n·μμᵀ for the raw partition
    isotropy follow from it by a rank-one update (secular equation, Bunch,
    Nielsen & Sorensen 1978; Gu & Eisenstat 1994 eigenvectors; deflation of
    degenerate cases), backward stable like a full decomposition.

    Parameters
    ----------
    X : array-like (N×d), memmap, CPU torch tensor, Dask array, capture layer,
        or a re-iterable of 2-D chunks with equal d.
    center : also compute the centred variants (``avg_cosine_centered``,
        ``partition_isotropy_centered``; Cai et al. 2021).
    partition : compute the partition isotropy I(V) (Mu & Viswanath 2018) in
        log space over both signs of every eigenvector.
    eps : cumulative explained-variance threshold of ``effective_dim``.
    n_threads : Rust threads (default: all cores); results depend on it only
        through float64 rounding.
    dtype : ``"bfloat16"`` when ``X`` holds bfloat16 bit patterns as uint16.
    massive : ``None`` (default: no detection, no extra cost); ``"flag"``:
        find massive rows (norm > ``massive_ratio`` × the median row norm,
        :func:`isofast.massive_rows`, Sun et al. 2024), fill ``n_massive`` /
        ``massive_variance_share``, add a note and warn
        (:class:`isofast.massive.MassiveRowsWarning`) when there are any —
        statistics still use every row; ``"exclude"``: compute every
        statistic on the rows that are not massive, streamed tile by tile
        (equal to ``analyze(X[~mask])`` up to float64 rounding; ``n`` then
        counts the kept rows). Both cost two extra O(N·d) passes and need an
        input that can be read more than once.
    massive_ratio : the ratio of :func:`isofast.massive_rows` (default 100,
        measured on real SmolLM2 states: docs/validity.md).
    floors : set the statistics listed in ``report.invalid`` (undefined or
        meaningless for this input, e.g. spectral ones when N < d) to NaN;
        they stay in ``invalid`` with the reason.
    precision : ``"exact"`` (default): the co-moment M = Σ(x−μ)(x−μ)ᵀ from
        float64 Gram products of tile-centred rows (Chan et al. 1979).
        ``"fast"``: each tile (b = ``isofast._core`` fast tile rows, ≤ 8192)
        is centred at its float64 mean, rounded to float32 and its Gram
        product formed by a float32 GEMM, then merged in float64. Bound
        (Higham 2002 §3.1 with Cauchy–Schwarz): |ΔM_ij| ≤ γ_{b+2}·√(M_ii·M_jj),
        γ_m = m·u/(1 − m·u), u = 2⁻²⁴, so every covariance eigenvalue moves by
        at most γ_{b+2}·Σλ (Weyl), total_variance and explained-variance
        ratios by ≤ γ_{b+2} (relative / absolute), participation ratio and
        IsoScore by ≤ 2γ_{b+2}(1 + √PR) relative; mean, avg_cosine and
        n_zero_norm are float64 as in exact mode. Meant for float32/16/bf16
        inputs, whose own rounding is already ≥ u. Bitwise independent of
        ``n_threads`` (all but ``avg_cosine_centered``, float64 rounding).
        Measured errors: docs/design.md.
    memory_budget : bytes the step between the passes may hold above the
        input (default ``None``: 3·d²·8 + 256 MiB). It picks the symmetric
        eigensolver's route: divide and conquer (≈ 4.5·d²·8 bytes in all)
        when it fits — d ≤ 4733 at the default — else QR iteration
        (≈ 2.5·d²·8 bytes, several times slower; benches/README.md).

    A one-shot iterator can be read only once: the two-pass statistics are
    then ``None`` and a warning says so.
    """
    if massive not in (None, "flag", "exclude"):
        raise ValueError(f"massive must be None, 'flag' or 'exclude', got {massive!r}")
    if not isinstance(floors, (bool, np.bool_)):
        raise TypeError(f"floors must be True or False, got {floors!r}")
    check_precision(precision)
    if memory_budget is not None and (
        isinstance(memory_budget, (bool, np.bool_))
        or not isinstance(memory_budget, (int, np.integer))
        or memory_budget <= 0
    ):
        raise ValueError(f"memory_budget must be a positive number of bytes or None, got {memory_budget!r}")
    mr = None
    if massive is not None:
        from isofast.massive import (
            MassiveRowsWarning,
            check_ratio,
            excluding_rows,
            massive_rows,
        )

        check_ratio(massive_ratio, "massive_ratio")
        src0 = as_source(X, dtype)
        if not src0.reiterable:
            raise TypeError(
                f"massive={massive!r} reads X more than once: pass an array, a list of chunks or a "
                "callable (a one-shot iterator was given)"
            )
        mr = massive_rows(src0, ratio=massive_ratio, n_threads=n_threads)
        X = excluding_rows(src0, mr.mask) if (massive == "exclude" and mr.n_massive) else src0
    rep = _analyze(X, center, partition, eps, n_threads, dtype, precision, memory_budget)
    if precision == "fast":
        rep.notes.append("precision='fast': float32 Gram products merged in float64 (error bound: docs/design.md)")
    if mr is not None:
        rep.n_massive = mr.n_massive
        rep.massive_variance_share = mr.variance_share
        rep.massive_excluded = massive == "exclude"
        rep.notes.extend(mr.notes)
        if mr.n_massive and massive == "flag":
            rep.notes.append("massive rows were kept: statistics use every row (massive='exclude' drops them)")
            warnings.warn(f"{mr.notes[-1]}; statistics use every row", MassiveRowsWarning, stacklevel=2)
        elif mr.n_massive:
            rep.notes.append(f"the {mr.n_massive} massive rows were excluded: statistics use the other {rep.n} rows")
    elif rep.pc1_share > 0.9:
        rep.notes.append(
            f"pc1_share = {rep.pc1_share:.3f} > 0.9: one direction dominates; a few massive rows "
            "(huge-norm tokens, Sun et al. 2024) are a common cause: try analyze(X, massive='flag')"
        )
    if floors:
        apply_floors(rep)
    return rep


def _analyze(
    X: Any,
    center: bool,
    partition: bool,
    eps: float,
    n_threads: int | None,
    dtype: str | None,
    precision: str = "exact",
    memory_budget: int | None = None,
) -> IsotropyReport:
    src, state, f64 = _first_pass(X, n_threads, dtype, precision)
    if not (center or partition) or not src.reiterable:
        rep = report_from_moments(state, eps, n_threads)
        if center or partition:
            warnings.warn(
                "a one-shot iterator was given: the centred cosine and partition isotropy need a "
                "second pass and were not computed (pass a list, a re-iterable or a callable)",
                stacklevel=3,
            )
            rep.notes.append("two-pass statistics skipped: input could be read only once")
        return rep
    _check_rows(state)
    # release=True: the state's d×d co-moment becomes the solver's input and
    # is freed with it (the report needs only n, mean and the cosine sums).
    ev_c, sp = state.second_pass(
        f64,
        raw=partition,
        centered=partition and center,
        n_threads=n_threads,
        release=True,
        memory_budget=None if memory_budget is None else int(memory_budget),
    )
    rep = report_from_moments(state, eps, n_threads, eigenvalues=ev_c)
    for arr, elem in src.chunks():
        sp.update(arr, elem, n_threads)
    if sp.n != state.n:
        raise ValueError(f"the input changed between passes: {state.n} rows, then {sp.n}")
    fill_second_pass(rep, sp.results(), center, partition)
    return rep


def fill_second_pass(rep: IsotropyReport, r: Any, center: bool, partition: bool) -> None:
    """Copy second-pass results (``SecondPass.results()``, a
    ``_core.SecondPassResults``, or anything with its attributes) into a report;
    shared by :func:`analyze` and :func:`isofast.dask.analyze` so both fill it alike."""
    if center:
        rep.avg_cosine_centered = r.avg_cosine_centered
        rep.n_zero_norm_centered = int(r.n_zero_norm_centered)
        if rep.n_zero_norm_centered:
            rep.notes.append(f"{rep.n_zero_norm_centered} rows equal to the mean were skipped in avg_cosine_centered")
        if math.isnan(rep.avg_cosine_centered):
            rep.notes.append(
                "avg_cosine_centered is NaN (undefined): fewer than 2 rows differ from the mean beyond float64 rounding"
            )
    if partition:
        rep.log_partition_isotropy = r.log_partition_isotropy
        rep.partition_isotropy = math.exp(rep.log_partition_isotropy)
        if center:
            rep.log_partition_isotropy_centered = r.log_partition_isotropy_centered
            rep.partition_isotropy_centered = math.exp(rep.log_partition_isotropy_centered)


@file_rows
def row_norms(X: Any, *, center: Any = None, n_threads: int | None = None, dtype: str | None = None) -> np.ndarray:
    """Euclidean norm of every row, ‖x_i‖ — or ‖x_i − center‖ when ``center``
    is a length-d vector — as a float64 array (N,).

    Computed in Rust on row tiles with the GIL released, safe against
    overflow and underflow: the plain Σ x_j² is used when it lies in
    [2⁻⁹⁰⁰, float64 max], else the row is redone with max-abs scaling
    m·√Σ(x_j/m)² (the idea of LAPACK dnrm2; Blue 1978, Anderson 2017), so rows
    of magnitude 1e±300 get finite, correct norms. Bitwise independent of
    chunking, row order and thread count. NaN/Inf raise ``ValueError`` naming
    the row and column. An input with 0 rows gives an empty array.
    """
    c = None
    if center is not None:
        if isinstance(center, (bool, np.bool_)):
            raise TypeError("center must be a length-d vector or None, got a bool")
        c = np.ascontiguousarray(center, dtype=np.float64)
        if c.ndim != 1:
            raise ValueError(f"center must be a length-d vector, got shape {c.shape}")
        bad = np.flatnonzero(~np.isfinite(c))
        if bad.size:
            raise ValueError(f"center contains NaN or Inf at column {bad[0]}")
    src = as_source(X, dtype)
    out = []
    rows = 0
    for arr, elem in src.chunks():
        if arr.shape[1] == 0:
            raise ValueError("X has 0 columns: row norms need d ≥ 1")
        if c is not None and c.shape[0] != arr.shape[1]:
            raise ValueError(f"center has {c.shape[0]} entries but X has {arr.shape[1]} columns")
        out.append(_core.row_norms(arr, elem, c, rows, n_threads))
        rows += arr.shape[0]
    return np.concatenate(out) if out else np.zeros(0)


@file_rows
def isoscore(X: Any, *, n_threads: int | None = None, dtype: str | None = None) -> float:
    """IsoScore (Rudman et al. 2022) = (PR − 1)/(d − 1), PR = (Σλ)²/Σλ².

    Strongly biased at small N; report N beside it.
    """
    _, state, _ = _first_pass(X, n_threads, dtype)
    return float(report_from_moments(state, 0.8, n_threads).isoscore)


@file_rows
def effective_dim(X: Any, eps: float = 0.8, *, n_threads: int | None = None, dtype: str | None = None) -> int:
    """Smallest k with Σ_{i≤k} λ_i/Σλ ≥ eps (Cai et al. 2021, d(ε))."""
    _, state, _ = _first_pass(X, n_threads, dtype)
    return int(report_from_moments(state, eps, n_threads).effective_dim)


@file_rows
def avg_cosine(X: Any, center: bool = False, *, n_threads: int | None = None, dtype: str | None = None) -> float:
    """Mean cos(x_i, x_j) over ordered pairs i≠j of non-zero-norm rows.

    Exact through the unit-sum identity (‖Σ x̂_i‖² − N′)/(N′(N′−1)) in O(N·d)
    (Ethayarajh 2019); ``center=True`` uses x_i − μ (Cai et al. 2021).
    NaN when fewer than two rows have non-zero norm.
    """
    src = as_source(X, dtype)
    mu = None
    if center:
        # Chunk means merged as Rust merges tiles (Chan et al.): one chunk
        # gives its mean exactly (m·k/k would not), so identical rows centre
        # to exact zeros.
        mu, n = None, 0
        for arr, elem in src.chunks():
            m = _core.column_mean(arr, elem, n_threads) if arr.shape[0] else None
            if m is None:
                continue
            k = arr.shape[0]
            n += k
            mu = m if mu is None else mu + (m - mu) * (k / n)
        if not n:
            raise EmptyInputError("empty input: no rows to analyse")
        if not src.reiterable:
            raise TypeError("avg_cosine(center=True) needs two passes: pass a re-iterable input")
    s, nz = None, 0
    rows = 0
    for arr, elem in src.chunks():
        u, a, _ = _core.unit_sum(arr, elem, mu, n_threads)
        s = u if s is None else s + u
        nz += a
        rows += arr.shape[0]
    if rows == 0:
        raise EmptyInputError("empty input: no rows to analyse")
    if nz < 2:
        # Undefined, not zero: say why (a NaN alone would look like a bug).
        why = (
            f"{rows - nz} of {rows} rows equal the mean (within rounding)"
            if center
            else f"{rows - nz} of {rows} rows have zero norm"
        )
        warnings.warn(
            f"avg_cosine is undefined (NaN): fewer than 2 usable rows; {why}", UndefinedStatisticWarning, stacklevel=2
        )
        return float("nan")
    return float((s @ s - nz) / (nz * (nz - 1.0)))


@file_rows
def partition_isotropy(
    X: Any, center: bool = False, *, log: bool = False, n_threads: int | None = None, dtype: str | None = None
) -> float:
    """I(V) = min_c Z(c)/max_c Z(c), Z(c) = Σ_i exp(⟨x_i, c⟩) (Mu & Viswanath 2018).

    c ranges over ±w_k, the unit eigenvectors of XᵀX (``center=False``), or
    ±u_k of the covariance with rows x_i − μ (``center=True``, Cai et al.
    2021). Computed in log space; ``log=True`` returns log I (I underflows
    to 0 on LLM hidden states with massive activations).
    """
    rep = analyze(X, center=center, partition=True, n_threads=n_threads, dtype=dtype)
    v = rep.log_partition_isotropy_centered if center else rep.log_partition_isotropy
    return float(v if log else math.exp(v))


@file_rows
def log_partition(X: Any, c: Any, *, n_threads: int | None = None, dtype: str | None = None):
    """log Z(c) = log Σ_i exp(⟨x_i, c⟩) (Arora et al. 2016), streaming
    log-sum-exp (never exp of raw logits). ``c`` is one vector (d,) → float, or
    rows of vectors (m, d) → array of m values."""
    c = np.asarray(c, dtype=np.float64)
    single = c.ndim == 1
    C = np.atleast_2d(c)
    if C.ndim != 2:
        raise ValueError(f"c must be a vector or a matrix of row vectors, got shape {c.shape}")
    src = as_source(X, dtype)
    out = None
    for arr, elem in src.chunks():
        if arr.shape[1] != C.shape[1]:
            raise ValueError(f"c has dimension {C.shape[1]} but the rows have {arr.shape[1]}")
        if arr.shape[0] == 0:
            continue
        z = _core.log_partition(arr, np.ascontiguousarray(C.T), elem, n_threads)
        out = z if out is None else np.logaddexp(out, z)
    if out is None:
        raise ValueError("empty input: no rows to analyse")
    return float(out[0]) if single else out


@file_rows
def all_but_the_top(
    X: Any, n_components: int, *, out_dtype: Any = None, n_threads: int | None = None, dtype: str | None = None
) -> np.ndarray:
    """x ↦ (x − μ) − Σ_{k≤D} (u_kᵀ(x − μ)) u_k (Mu & Viswanath 2018).

    Returns a new N×d array (float64 for float64/integer input, else float32
    unless ``out_dtype`` says otherwise).
    """
    n_components = check_int(n_components, "n_components", minimum=0)
    src, state, f64 = _first_pass(X, n_threads, dtype)
    _check_rows(state)
    d = state.dim
    if not (0 <= n_components <= d):
        raise ValueError(f"n_components must lie in [0, {d}], got {n_components}")
    if not src.reiterable:
        raise TypeError("all_but_the_top needs two passes: pass a re-iterable input")
    _, U = state.cov_directions(n_threads)
    top = np.ascontiguousarray(U[:, : int(n_components)])
    dt = np.dtype(out_dtype) if out_dtype is not None else np.dtype(np.float64 if f64 else np.float32)
    if dt not in (np.float32, np.float64):
        raise TypeError("out_dtype must be float32 or float64")
    out = np.empty((int(state.n), d), dtype=dt)
    r = 0
    for arr, elem in src.chunks():
        k = arr.shape[0]
        _core.all_but_the_top(arr, state.mean, top, out[r : r + k], elem, n_threads)
        r += k
    return out


@dataclass
class SelfSimilarity:
    """Average cosine within each group (Ethayarajh 2019), averaged over the
    groups with at least two non-zero rows."""

    value: float
    groups: np.ndarray
    per_group: np.ndarray
    counts: np.ndarray
    n_zero_norm: int
    notes: list = field(default_factory=list)

    def __float__(self) -> float:
        return float(self.value)

    def to_dict(self) -> dict:
        return jsonable(
            {
                "value": self.value,
                "groups": self.groups,
                "per_group": self.per_group,
                "counts": self.counts,
                "n_zero_norm": self.n_zero_norm,
                "notes": self.notes,
            }
        )


@file_rows
def self_similarity(
    X: Any, groups: Any, *, center: bool = False, n_threads: int | None = None, dtype: str | None = None
) -> SelfSimilarity:
    """Self-similarity: avg_cosine within each group label (e.g. token id or
    series id), averaged over groups with ≥ 2 rows (Ethayarajh 2019).
    ``center=True`` subtracts the global mean first."""
    src = as_source(X, dtype)
    chunks = list(src.chunks())
    if len(chunks) != 1:
        raise TypeError("self_similarity needs one array (labels align with its rows)")
    arr, elem = chunks[0]
    g = np.asarray(groups)
    if g.ndim != 1:
        raise ValueError(f"groups must be 1-D, got shape {g.shape}")
    if g.shape[0] != arr.shape[0]:
        raise ValueError(f"groups has {g.shape[0]} labels but X has {arr.shape[0]} rows")
    if arr.shape[0] == 0:
        raise ValueError("empty input: no rows to analyse")
    if g.dtype.kind in "iub":
        codes = g.astype(np.int64)
        uniq = None
    else:
        uniq, codes = np.unique(g, return_inverse=True)
        codes = codes.astype(np.int64)
    mu = _core.column_mean(arr, elem, n_threads) if center else None
    r = _core.self_similarity(arr, codes, elem, mu, n_threads)
    labels = r.labels if uniq is None else uniq[r.labels]
    notes = []
    single = int(np.sum(r.counts < 2))
    if single:
        notes.append(f"{single} groups with fewer than 2 rows were left out of the mean")
    return SelfSimilarity(float(r.mean), labels, r.per_group, r.counts, int(r.n_zero_norm), notes)
