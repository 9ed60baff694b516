"""Mergeable one-pass moments (Chan, Golub & LeVeque 1979) for streaming and
distributed use: build states on chunks or workers, merge in any order,
pickle them, and report the one-pass statistics."""

from __future__ import annotations

from typing import Any

import numpy as np

from isofast import _core
from isofast._input import as_source, check_int, file_rows
from isofast.analysis import report_from_moments
from isofast.report import IsotropyReport


class Moments:
    """Count, mean, co-moment M = Σ(x−μ)(x−μ)ᵀ and the raw unit-vector sum.

    ``update`` accepts any input :func:`isofast.analyze` accepts; ``merge``
    combines states built from disjoint rows (associative and commutative up
    to float64 rounding); instances pickle compactly. ``precision``: as in
    :func:`isofast.analyze` (``"exact"`` default, or ``"fast"``).
    """

    __slots__ = ("_state",)

    def __init__(self, dim: int, precision: str = "exact"):
        from isofast.analysis import check_precision

        self._state = _core.Moments(check_int(dim, "dim", minimum=1), check_precision(precision))

    @property
    def precision(self) -> str:
        return str(self._state.precision)

    @file_rows(arg=1, name="chunk")
    def update(self, chunk: Any, *, n_threads: int | None = None, dtype: str | None = None) -> Moments:
        """Fold every row of ``chunk`` into the state. If a row is refused
        (NaN/Inf, design.md §6) after earlier rows went in, the error's note
        (``exc.__notes__``) says how many rows of this call the state now
        holds; an error before any row carries none and changes nothing."""
        n0 = self._state.n
        try:
            for arr, elem in as_source(chunk, dtype).chunks():
                self._state.update(arr, elem, n_threads)
        except ValueError as exc:
            folded = self._state.n - n0
            if folded:  # one note for the whole call: a source may come in several chunks
                exc.__notes__ = [
                    f"the Moments state already holds {folded} row(s) of this update (those before the failing "
                    "tile): discard it, or update a new state per chunk and merge() the good ones"
                ]
            raise
        return self

    def merge(self, other: Moments) -> Moments:
        if not isinstance(other, Moments):
            raise TypeError(f"can only merge Moments, got {type(other).__name__}")
        self._state.merge(other._state)
        return self

    def copy(self) -> Moments:
        m = Moments.__new__(Moments)
        m._state = self._state.copy()
        return m

    def __add__(self, other: Moments) -> Moments:
        return self.copy().merge(other)

    @property
    def n(self) -> int:
        return int(self._state.n)

    @property
    def dim(self) -> int:
        return int(self._state.dim)

    @property
    def mean(self) -> np.ndarray:
        return self._state.mean

    def covariance(self) -> np.ndarray:
        """C = M/(n−1) (needs n ≥ 2)."""
        return self._state.covariance()

    def principal_axes(self, *, n_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(covariance eigenvalues descending, their unit eigenvectors as columns):
        the principal axes of the rows seen so far (float64, faer's symmetric solver)."""
        if self._state.n < 2:
            raise ValueError(f"principal axes need at least 2 rows, got {self._state.n}")
        return self._state.cov_directions(n_threads)

    def comoment(self) -> np.ndarray:
        return self._state.comoment()

    def report(self, eps: float = 0.8, *, n_threads: int | None = None) -> IsotropyReport:
        """Spectral scores and the raw average cosine; the two-pass fields are
        ``None`` (use :func:`isofast.analyze` for those)."""
        rep = report_from_moments(self._state, eps, n_threads)
        rep.notes.append("one-pass report: centred cosine and partition isotropy need isofast.analyze")
        return rep

    def __getstate__(self):
        # Exact states pickle as before (bytes); fast ones as (bytes, "fast").
        data = self._state.__getstate__()
        return data if self._state.precision == "exact" else (data, self._state.precision)

    def __setstate__(self, state):
        from isofast.analysis import check_precision

        if isinstance(state, tuple):
            if len(state) != 2:
                raise ValueError("corrupt Moments state: expected (bytes, precision)")
            data, precision = state
        else:
            data, precision = state, "exact"
        self._state = _core.Moments(1, check_precision(precision))
        self._state.__setstate__(data)

    def __repr__(self) -> str:
        return f"Moments(dim={self.dim}, n={self.n})"
