"""Massive rows: a few hidden states whose norm dwarfs all others.

Sun, Chen, Kolter & Liu (2024), "Massive activations in large language
models" (arXiv:2402.17762), found that LLMs carry a handful of activations
10³–10⁴× larger than typical ones, at the first token and at delimiter
tokens, acting as attention sinks / fixed biases. One such row dominates the
covariance (pc1_share → 1, IsoScore → 0, partition isotropy → 0) and makes the
clustered recipe isolate it in a singleton, so isotropy statistics then
describe that one token rather than the space. :func:`massive_rows` finds
such rows, wherever they are (position 0 is not assumed).

Definition. With r_i = ‖x_i‖ (overflow-safe, :func:`isofast.row_norms`) and
m = median_i r_i, row i is *massive* when r_i > ratio · m. Its share of the
spread is Σ_{massive} ‖x_i − μ‖² / Σ_all ‖x_i − μ‖², μ the mean of all rows.

Default ``ratio = 100``, measured on the bundled real example (SmolLM2-135M
hidden states of the airline passengers series, 578 × 576, see
docs/validity.md): at layer 15 the first token has max/median = 203 while the
second-largest row is at 1.23× the median; layers 1 and 30 have max/median
1.7 and 1.1 (no massive row). Controls of the same shape (50 seeds): an
isotropic Gaussian gives max/median 1.09 (at most 1.11), a Student-t with
3 dof 2.8 (at most 11.8). A ratio of 100 sits a factor ~2 below the real
massive row and ~8× above the worst heavy-tailed control.

Edge case: when more than half the rows are zero the median is 0 and every
row of non-zero norm is massive (r_i > 0 = ratio · m); an all-zero matrix
has no massive row. Both cases add a note.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Iterator

import numpy as np

from isofast import _core
from isofast._input import Chunk, Source, as_source, file_rows
from isofast.report import jsonable

__all__ = ["MassiveRows", "MassiveRowsWarning", "check_ratio", "excluding_rows", "massive_rows"]


class MassiveRowsWarning(UserWarning):
    """Massive rows were found and kept (``massive="flag"``)."""


def check_ratio(ratio: Any, name: str = "ratio") -> float:
    """``ratio`` as a finite float > 0, else ``ValueError`` naming ``name``."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise TypeError(f"{name} must be a real number > 0, got {ratio!r}")
    r = float(ratio)
    if not math.isfinite(r) or r <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {ratio!r}")
    return r


@dataclass
class MassiveRows:
    """Result of :func:`massive_rows` (see the module docstring)."""

    n: int
    n_massive: int
    indices: np.ndarray
    ratio: float
    median_norm: float
    threshold: float
    max_norm: float
    variance_share: float
    notes: list = field(default_factory=list)

    @property
    def mask(self) -> np.ndarray:
        """Boolean (N,) array, True at massive rows."""
        m = np.zeros(self.n, dtype=bool)
        m[self.indices] = True
        return m

    def to_dict(self) -> dict:
        return jsonable(
            {
                "n": self.n,
                "n_massive": self.n_massive,
                "indices": self.indices,
                "ratio": self.ratio,
                "median_norm": self.median_norm,
                "threshold": self.threshold,
                "max_norm": self.max_norm,
                "variance_share": self.variance_share,
                "notes": self.notes,
            }
        )


def _two_pass_source(X: Any, dtype: str | None, what: str) -> Source:
    src = as_source(X, dtype)
    if not src.reiterable:
        raise TypeError(
            f"{what} reads X more than once: pass an array, a list of chunks or a callable "
            "returning a fresh iterator (a one-shot iterator was given)"
        )
    return src


@file_rows
def massive_rows(
    X: Any, *, ratio: float = 100.0, n_threads: int | None = None, dtype: str | None = None
) -> MassiveRows:
    """Rows whose norm exceeds ``ratio`` × the median row norm (Sun et al. 2024).

    ``X``: anything :func:`isofast.analyze` reads that can be read twice
    (arrays, memmaps, lists of chunks, callables). Two streamed passes (row
    norms and the column mean; then the centred norms), each in Rust on row
    tiles with the GIL released; nothing N×d is copied. Needs N ≥ 1, d ≥ 1.
    """
    ratio = check_ratio(ratio)
    src = _two_pass_source(X, dtype, "massive_rows")
    norms = []
    mean: np.ndarray | None = None
    n = 0
    for arr, elem in src.chunks():
        if arr.shape[1] == 0:
            raise ValueError("X has 0 columns: massive_rows needs d ≥ 1")
        k = arr.shape[0]
        if k == 0:
            continue
        norms.append(_core.row_norms(arr, elem, None, n, n_threads))
        m = _core.column_mean(arr, elem, n_threads)
        # Running mean merged per chunk (stays exact under large offsets).
        mean = m if mean is None else mean + (m - mean) * (k / (n + k))
        n += k
    if mean is None:
        raise ValueError("X is empty: massive_rows needs at least 1 row")
    r = np.concatenate(norms)
    centred = np.concatenate(
        [_core.row_norms(arr, elem, mean, 0, n_threads) for arr, elem in src.chunks() if arr.shape[0]]
    )
    if centred.shape[0] != n:
        raise ValueError(f"X changed between passes: {n} rows, then {centred.shape[0]}")
    median = float(np.median(r))
    threshold = ratio * median
    idx = np.flatnonzero(r > threshold).astype(np.intp)
    top = float(centred.max())
    if top > 0 and math.isfinite(top):
        w = (centred / top) ** 2  # scaled: no overflow at 1e200, no underflow at 1e-200
        share = float(w[idx].sum() / w.sum())
    else:
        share = float("nan")
    notes = []
    if median == 0.0:
        if idx.size:
            notes.append(
                f"the median row norm is 0 (more than half the rows are zero): every row of non-zero "
                f"norm ({idx.size}) counts as massive"
            )
        else:
            notes.append("every row is zero: no row is massive")
    if idx.size:
        shown = ", ".join(str(i) for i in idx[:10]) + (", …" if idx.size > 10 else "")
        notes.append(
            f"{idx.size} of {n} rows have norm > {ratio:g} × the median row norm {median:.4g} "
            f"(rows {shown}; largest norm {float(r.max()):.4g}); they hold "
            f"{'nan' if math.isnan(share) else f'{100 * share:.2f}%'} of the centred variance "
            "(massive activations, Sun et al. 2024)"
        )
    return MassiveRows(
        n=n,
        n_massive=int(idx.size),
        indices=idx,
        ratio=ratio,
        median_norm=median,
        threshold=threshold,
        max_norm=float(r.max()),
        variance_share=share,
        notes=notes,
    )


def excluding_rows(X: Any, mask: np.ndarray, dtype: str | None = None) -> Source:
    """A re-iterable :class:`Source` of the rows of ``X`` where ``mask`` is
    False, as row tiles of ~16 MiB: tiles without masked rows are zero-copy
    views; a tile with masked rows is copied without them (memory bounded by
    one tile, memmaps welcome)."""
    src = _two_pass_source(X, dtype, "excluding rows")
    mask = np.asarray(mask, dtype=bool)

    def gen() -> Iterator[Chunk]:
        r = 0
        for arr, elem in src.chunks():
            k = arr.shape[0]
            if r + k > mask.shape[0]:
                raise ValueError(f"X has more rows than the mask ({mask.shape[0]})")
            step = max(64, (16 << 20) // max(1, arr.shape[1] * arr.dtype.itemsize))
            for a in range(0, k, step):
                b = min(k, a + step)
                m = mask[r + a : r + b]
                if not m.any():
                    yield arr[a:b], elem
                elif not m.all():
                    yield arr[a:b][~m], elem
            r += k

    return Source(gen, True, f"{src.description} without {int(mask.sum())} rows")
