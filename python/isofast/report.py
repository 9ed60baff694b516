"""Result types of the global isotropy analysis."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np


def jsonable(v: Any) -> Any:
    """numpy → plain Python; non-finite floats → None (valid JSON)."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@dataclass
class IsotropyReport:
    """Every global statistic of design.md §3 for one N×d matrix.

    Spectral statistics use the covariance C = X_cᵀX_c/(N−1) with eigenvalues
    λ₁ ≥ … ≥ λ_d ≥ 0. Two-pass fields (centred cosine, partition isotropy) are
    ``None`` when they were not computed (one-pass :class:`isofast.Moments`).
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
    avg_cosine_centered: Optional[float] = None
    n_zero_norm_centered: Optional[int] = None
    partition_isotropy: Optional[float] = None
    log_partition_isotropy: Optional[float] = None
    partition_isotropy_centered: Optional[float] = None
    log_partition_isotropy_centered: Optional[float] = None
    notes: list = field(default_factory=list)

    def to_dict(self, arrays: bool = True) -> dict:
        """JSON-safe dict. ``arrays=False`` drops ``mean`` and the spectra."""
        d = asdict(self)
        if not arrays:
            for k in ("mean", "eigenvalues", "explained_variance_ratio"):
                d.pop(k)
        return jsonable(d)

    def to_json(self, indent: Optional[int] = 2, arrays: bool = True) -> str:
        return json.dumps(self.to_dict(arrays=arrays), indent=indent)

    def table(self) -> str:
        """A readable two-column table of the scalar statistics."""
        rows = [
            ("rows (N)", f"{self.n:,}"),
            ("dimension (d)", f"{self.dim:,}"),
            (f"effective_dim (eps={self.eps:g})", f"{self.effective_dim}"),
            ("participation_ratio", _f(self.participation_ratio)),
            ("isoscore", _f(self.isoscore)),
            ("stable_rank", _f(self.stable_rank)),
            ("pc1_share", _f(self.pc1_share)),
            ("effective_rank", _f(self.effective_rank)),
            ("total_variance", _f(self.total_variance)),
            ("avg_cosine", _f(self.avg_cosine)),
            ("avg_cosine_centered", _f(self.avg_cosine_centered)),
            ("partition_isotropy", _f(self.partition_isotropy)),
            ("log_partition_isotropy", _f(self.log_partition_isotropy)),
            ("partition_isotropy_centered", _f(self.partition_isotropy_centered)),
            ("log_partition_isotropy_centered", _f(self.log_partition_isotropy_centered)),
            ("zero-norm rows skipped", f"{self.n_zero_norm}"),
        ]
        w = max(len(r[0]) for r in rows)
        lines = [f"{k:<{w}}  {v}" for k, v in rows]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _f(v: Optional[float]) -> str:
    if v is None:
        return "—"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.6e}"
    return f"{v:.6f}"
