"""Null values of the isotropy statistics: what an isotropic Gaussian scores.

Every isotropy statistic is biased at finite N (IsoScore of an isotropic
Gaussian, d = 256: 0.33 at N = 128, 0.66 at N = 512, 0.89 at N = 2048), so a
raw value says little until it is compared with the value the *same
estimator* gives on truly isotropic data of the same shape.
:func:`null_statistics` returns that null: the statistics, as computed by
:func:`isofast.analyze` itself, of N(0, scale²·I_d) with n rows.

Closed form where exact: ``avg_cosine`` = 0 (x ↦ −x symmetry of each row
makes E cos(x_i, x_j) = 0). Everything else is a seeded simulation
(``numpy.random.default_rng(seed)``, ``reps`` draws, averaged; ``std`` is the
standard deviation over draws). Default ``reps = clip(⌈2·10⁶/(n·d)⌉, 4, 32)``
keeps n·d·reps ≈ 2·10⁶ values (≥ 4 draws for large layers, ≤ 32 for tiny
ones).

Scale. Translation- and scale-invariant statistics (all but the two log
partition isotropies) depend only on (n, d) and are cached in-process by
(n, d, reps, seed). log I depends on the scale: pass the layer's
``scale = sqrt(total_variance / d)`` so the null has the layer's spread. The
eigenvectors of each draw are kept (cached) and log Z(±c) of the scaled draw
is evaluated with the Rust :func:`isofast.log_partition` kernel as
log Σ exp⟨x_i, s·c⟩ — no eigendecomposition is redone per scale (the draw
itself is regenerated from its seed, O(n·d)).
The raw (uncentred) log I also depends on the layer's mean while the null
is zero-mean: for layers with a large common offset compare the centred one.

Relations (:data:`NULL_RELATION`, :func:`relative_to_null`): scale
statistics (IsoScore, participation ratio, effective dim/rank, stable rank,
pc1_share) are compared as value/null; cosines and log partition
isotropies, which live on an additive scale, as value − null.

References: Marchenko & Pastur (1967) for the large-N, d limit of the
participation ratio, d/(1 + d/N); Rudman et al. (2022) IsoScore; Mu &
Viswanath (2018) partition isotropy.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from isofast import _core
from isofast.report import jsonable

__all__ = ["NULL_RELATION", "NULL_STATISTICS", "NullStatistics", "default_reps", "null_statistics", "relative_to_null"]

NULL_STATISTICS = (
    "avg_cosine",
    "avg_cosine_centered",
    "isoscore",
    "participation_ratio",
    "effective_dim",
    "effective_rank",
    "stable_rank",
    "pc1_share",
    "log_partition_isotropy",
    "log_partition_isotropy_centered",
)

NULL_RELATION: dict = {
    "avg_cosine": "difference",
    "avg_cosine_centered": "difference",
    "isoscore": "ratio",
    "participation_ratio": "ratio",
    "effective_dim": "ratio",
    "effective_rank": "ratio",
    "stable_rank": "ratio",
    "pc1_share": "ratio",
    "log_partition_isotropy": "difference",
    "log_partition_isotropy_centered": "difference",
}

_SCALE_FREE = tuple(s for s in NULL_STATISTICS if not s.startswith("log_partition"))
_SCALED = ("log_partition_isotropy", "log_partition_isotropy_centered")


@dataclass
class NullStatistics:
    """Null values of :data:`NULL_STATISTICS` for N(0, scale²·I_d), n rows.

    ``mean[s]`` / ``std[s]``: average and standard deviation over ``reps``
    seeded draws (std 0 for closed forms); ``method[s]``: "closed form" or
    "simulation"."""

    n: int
    d: int
    scale: float
    reps: int
    seed: int
    mean: dict = field(default_factory=dict)
    std: dict = field(default_factory=dict)
    method: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return jsonable(
            {
                "n": self.n,
                "d": self.d,
                "scale": self.scale,
                "reps": self.reps,
                "seed": self.seed,
                "mean": self.mean,
                "std": self.std,
                "method": self.method,
            }
        )


def _int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        if isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and float(v).is_integer():
            v = int(v)
        else:
            raise ValueError(f"{name} must be an integer ≥ {lo}, got {v!r}")
    if int(v) < lo:
        raise ValueError(f"{name} must be an integer ≥ {lo}, got {v!r}")
    return int(v)


def default_reps(n: int, d: int) -> int:
    """clip(⌈2·10⁶/(n·d)⌉, 4, 32)."""
    return int(min(32, max(4, math.ceil(2e6 / (n * d)))))


def _draws(n: int, d: int, reps: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(reps):
        yield rng.standard_normal((n, d))


@lru_cache(maxsize=64)
def _scale_free(n: int, d: int, reps: int, seed: int) -> tuple[tuple[tuple[str, float, float], ...], tuple]:
    """Scale-free statistics (mean, std over draws) and, per draw, what the
    scaled log partition needs: (mean μ, raw directions W, centred directions
    U) of the draw (read-only arrays)."""
    from isofast.analysis import analyze

    vals = {s: [] for s in _SCALE_FREE if s != "avg_cosine"}
    dirs = []
    for G in _draws(n, d, reps, seed):
        rep = analyze(G, partition=False)
        for s, v in vals.items():
            v.append(float(getattr(rep, s)))
        m = _core.Moments(d)
        m.update(G)
        _, U, _, W = m.directions()
        mu = m.mean
        for a in (mu, U, W):
            a.setflags(write=False)
        dirs.append((mu, W, U))
    stats = tuple((s, float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0) for s, v in vals.items())
    return stats, tuple(dirs)


def _log_iso(logz: np.ndarray) -> float:
    return float(logz.min() - logz.max())


@lru_cache(maxsize=256)
def _scaled(n: int, d: int, reps: int, seed: int, scale: float) -> tuple[tuple[str, float, float], ...]:
    _, dirs = _scale_free(n, d, reps, seed)
    raw, cen = [], []
    for G, (mu, W, U) in zip(_draws(n, d, reps, seed), dirs):
        # ⟨s·x, c⟩ = ⟨x, s·c⟩: scale the directions, not the draw.
        C = np.ascontiguousarray(np.concatenate([W, -W, U, -U], axis=1) * scale)
        z = _core.log_partition(G, C, None, None)
        # Centred rows: ⟨s(x − μ), ±u⟩ = ⟨x, ±s·u⟩ ∓ s⟨μ, u⟩.
        shift = scale * (mu @ U)
        zc = z[2 * d :] - np.concatenate([shift, -shift])
        raw.append(_log_iso(z[: 2 * d]))
        cen.append(_log_iso(zc))
    out = []
    for s, v in zip(_SCALED, (raw, cen)):
        out.append((s, float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0))
    return tuple(out)


def null_statistics(n: int, d: int, *, scale: float = 1.0, reps: int | None = None, seed: int = 0) -> NullStatistics:
    """The value of each statistic of :data:`NULL_STATISTICS` for an isotropic
    Gaussian N(0, scale²·I_d) with ``n`` rows, as computed by
    :func:`isofast.analyze` (same estimator, same finite-N bias).

    ``scale``: per-coordinate standard deviation (use sqrt(total_variance/d)
    of the layer compared); only the log partition isotropies depend on it.
    ``reps``: number of seeded draws (default :func:`default_reps`).
    Results are cached in-process. See the module docstring for the method.
    """
    n = _int("n", n, 2)
    d = _int("d", d, 1)
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")  # noqa: TRY004 (one error type for bad values)
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    reps = default_reps(n, d) if reps is None else _int("reps", reps, 1)
    seed = _int("seed", seed, 0)
    if d < 2:
        raise ValueError(f"d must be an integer ≥ 2 (isotropy statistics need 2 dimensions), got {d}")
    stats, _ = _scale_free(n, d, reps, seed)
    res = NullStatistics(n=n, d=d, scale=scale, reps=reps, seed=seed)
    res.mean["avg_cosine"], res.std["avg_cosine"], res.method["avg_cosine"] = 0.0, 0.0, "closed form"
    for s, m, sd in stats + _scaled(n, d, reps, seed, scale):
        res.mean[s], res.std[s], res.method[s] = m, sd, "simulation"
    res.mean = {s: res.mean[s] for s in NULL_STATISTICS}
    res.std = {s: res.std[s] for s in NULL_STATISTICS}
    res.method = {s: res.method[s] for s in NULL_STATISTICS}
    return res


def relative_to_null(stat: str, value: Any, null: float | NullStatistics) -> float:
    """``value / null`` for scale statistics, ``value − null`` for cosines and
    log partition isotropies (:data:`NULL_RELATION`). ``null`` is a number or
    a :class:`NullStatistics` (its ``mean[stat]``). NaN when undefined: a
    missing or non-finite value or null, or a null of 0 for a ratio."""
    if stat not in NULL_RELATION:
        raise ValueError(f"stat must be one of {', '.join(NULL_STATISTICS)}; got {stat!r}")
    if isinstance(null, NullStatistics):
        null = null.mean[stat]
    try:
        v = float(value) if value is not None else math.nan
        z = float(null) if null is not None else math.nan
    except (TypeError, ValueError):
        raise TypeError(f"value and null must be numbers, got {value!r} and {null!r}") from None
    if not (math.isfinite(v) and math.isfinite(z)):
        return math.nan
    if NULL_RELATION[stat] == "ratio":
        return v / z if z != 0 else math.nan
    return v - z
