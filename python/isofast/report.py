"""Result types of the global isotropy analysis."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np


def jsonable(v: Any, *, keep_nonfinite: bool = False) -> Any:
    """numpy → plain Python; non-finite floats → None (valid JSON), or kept
    as floats with ``keep_nonfinite`` (for readers that take ``NaN``, such
    as the study's cache, where a NaN must read back as NaN). Paths become
    strings."""
    if isinstance(v, dict):
        return {str(k): jsonable(x, keep_nonfinite=keep_nonfinite) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x, keep_nonfinite=keep_nonfinite) for x in v]
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist(), keep_nonfinite=keep_nonfinite)
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, PurePath):
        return str(v)
    if isinstance(v, float) and not keep_nonfinite and not math.isfinite(v):
        return None
    return v


@dataclass
class IsotropyReport:
    """Every global statistic of design.md §3 for one N×d matrix.

    Spectral statistics use the covariance C = X_cᵀX_c/(N−1) with eigenvalues
    λ₁ ≥ … ≥ λ_d ≥ 0. Two-pass fields (centred cosine, partition isotropy) are
    ``None`` when they were not computed (one-pass :class:`isofast.Moments`).

    Validity (docs/validity.md): ``invalid`` maps each statistic that is
    undefined or meaningless for this input to the reason (e.g. every spectral
    statistic when N < d: the covariance is rank-deficient); with
    ``analyze(..., floors=True)`` those fields are NaN. ``n_massive`` and
    ``massive_variance_share`` are ``None`` unless ``analyze(..., massive=...)``
    looked for massive rows (:func:`isofast.massive_rows`);
    ``massive_excluded`` says the statistics were computed without them (then
    ``n`` counts the kept rows).
    """

    n: int
    dim: int
    mean: np.ndarray
    eigenvalues: np.ndarray
    explained_variance_ratio: np.ndarray
    effective_dim: int
    eps: float
    participation_ratio: float
    isoscore: float
    stable_rank: float
    pc1_share: float
    effective_rank: float
    total_variance: float
    avg_cosine: float
    n_zero_norm: int
    avg_cosine_centered: float | None = None
    n_zero_norm_centered: int | None = None
    partition_isotropy: float | None = None
    log_partition_isotropy: float | None = None
    partition_isotropy_centered: float | None = None
    log_partition_isotropy_centered: float | None = None
    notes: list = field(default_factory=list)
    n_massive: int | None = None
    massive_variance_share: float | None = None
    massive_excluded: bool = False
    invalid: dict = field(default_factory=dict)

    def to_dict(self, arrays: bool = True) -> dict:
        """JSON-safe dict. ``arrays=False`` drops ``mean`` and the spectra."""
        d = asdict(self)
        if not arrays:
            for k in ("mean", "eigenvalues", "explained_variance_ratio"):
                d.pop(k)
        return jsonable(d)

    def to_json(self, indent: int | None = 2, arrays: bool = True) -> str:
        return json.dumps(self.to_dict(arrays=arrays), indent=indent)

    def table(self) -> str:
        """A readable two-column table of the scalar statistics."""

        def val(name: str, text: str) -> str:
            reason = self.invalid.get(name)
            return f"invalid: {reason}" if reason else text

        eff = self.effective_dim
        eff_s = "nan" if isinstance(eff, float) and not math.isfinite(eff) else f"{eff}"
        rows = [
            ("rows (N)", f"{self.n:,}"),
            ("dimension (d)", f"{self.dim:,}"),
            (f"effective_dim (eps={self.eps:g})", val("effective_dim", eff_s)),
        ]
        rows += [
            (k, val(k, _f(getattr(self, k))))
            for k in (
                "participation_ratio",
                "isoscore",
                "stable_rank",
                "pc1_share",
                "effective_rank",
                "total_variance",
                "avg_cosine",
                "avg_cosine_centered",
                "partition_isotropy",
                "log_partition_isotropy",
                "partition_isotropy_centered",
                "log_partition_isotropy_centered",
            )
        ]
        rows.append(("zero-norm rows skipped", f"{self.n_zero_norm}"))
        if self.n_massive is not None:
            share = self.massive_variance_share
            tail = "" if share is None else f" ({_pct(share)} of the centred variance)"
            state = "excluded" if self.massive_excluded else "kept"
            rows.append(("massive rows", f"{self.n_massive}{tail}, {state}"))
        w = max(len(r[0]) for r in rows)
        lines = [f"{k:<{w}}  {v}" for k, v in rows]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _pct(v: float) -> str:
    return "nan" if not math.isfinite(v) else f"{100 * v:.2f}%"


def _f(v: float | None) -> str:
    if v is None:
        return "—"
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else str(v)
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.6e}"
    return f"{v:.6f}"
