"""Patching for patch-based models (GPT4TS / One-Fits-All, Zhou et al. 2023;
Time-LLM, Jin et al. 2024; PatchTST, Nie et al. 2023).

Encoding of a context x_1..x_L
------------------------------
1. Per-instance normalisation (RevIN without affine): μ = mean(x),
   σ = sqrt(var(x) + ε) with the biased variance and ε = 1e-5, z = (x − μ)/σ.
   This is what the GPT4TS and Time-LLM code computes
   (``torch.sqrt(torch.var(x, unbiased=False) + 1e-5)``); the papers' prose
   "std + 1e-5" differs from it only for near-constant series.
2. Replication padding at the end by ``stride`` values (``nn.ReplicationPad1d((0,
   stride))``), then patches of length P = 16 every S = 8 steps
   (``unfold(size=P, step=S)``): n = ⌊(L + S − P)/S⌋ + 1 patches. When even the
   padded series is shorter than one patch, it is replication-padded to P
   (one patch); the original would fail there.

Decoding is exact: value t is read from patch p = min(⌊t/S⌋, n − 1) at offset
t − p·S (always inside the patch), then x = z·σ + μ.

In a model, a (learned) Linear layer maps each patch to d_model; isofast's
capture uses a seeded random projection unless given one (see
:func:`isofast.capture.capture`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isofast._input import check_int
from isofast.errors import InputError, NumericalError
from isofast.serializers.base import DIGIT, NanPolicy, as_series


@dataclass
class PatchEncoding:
    patches: np.ndarray  # (n_patches, patch_len) float64, normalised
    mean: float
    std: float
    length: int
    roles: np.ndarray

    @property
    def n_values(self) -> int:
        return self.length

    def to_dict(self) -> dict:
        return {
            "patches": self.patches.tolist(),
            "mean": self.mean,
            "std": self.std,
            "length": self.length,
        }


@dataclass(frozen=True)
class PatchSerializer:
    patch_len: int = 16
    stride: int = 8
    eps: float = 1e-5
    normalize: bool = True

    name = "patch"

    def __post_init__(self) -> None:
        check_int(self.patch_len, "patch_len", minimum=1)
        check_int(self.stride, "stride", minimum=1)
        if not (np.isfinite(self.eps) and self.eps >= 0):
            raise InputError(f"eps must be a finite number ≥ 0, got {self.eps!r}")
        if self.patch_len < 1 or self.stride < 1:
            raise ValueError("patch_len and stride must be positive")
        if self.stride > self.patch_len:
            # gaps between patches would lose values: no exact decode
            raise ValueError(f"stride ({self.stride}) must not exceed patch_len ({self.patch_len})")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "patch_len": self.patch_len,
            "stride": self.stride,
            "eps": self.eps,
            "normalize": self.normalize,
        }

    def n_patches(self, length: int) -> int:
        return max((length + self.stride - self.patch_len) // self.stride + 1, 1)

    def encode(self, x, *, nan: NanPolicy = "interpolate") -> PatchEncoding:
        arr = as_series(x, nan=nan)
        c = float(np.abs(arr).max())
        if self.normalize and c > 1.0:
            # Same formulas on x/c (c = max |x|), so values near the float64
            # maximum do not overflow the mean, the variance or x − μ:
            # σ = c·√(var(x/c) + ε/c²), z = (x/c − μ/c)/(σ/c).
            y = arr / c
            mu_c = float(y.mean())
            # √(var + ε/c²) as a hypot: ε/c² underflows for c ≳ 1e154
            sd_c = float(np.hypot(np.sqrt(y.var()), np.sqrt(self.eps) / c))
            mu, sd = c * mu_c, c * sd_c
            z = (y - mu_c) / sd_c
        elif self.normalize:
            mu = float(arr.mean())
            sd = float(np.sqrt(arr.var() + self.eps))
            z = (arr - mu) / sd
        else:
            mu, sd = 0.0, 1.0
            z = arr.copy()
        n = self.n_patches(arr.size)
        need = max((n - 1) * self.stride + self.patch_len, arr.size + self.stride)
        padded = np.concatenate([z, np.full(need - arr.size, z[-1])])
        idx = np.arange(n)[:, None] * self.stride + np.arange(self.patch_len)[None, :]
        patches = padded[idx]
        return PatchEncoding(patches, mu, sd, int(arr.size), np.full(n, DIGIT, np.uint8))

    def decode(
        self, patches, mean: float | PatchEncoding = 0.0, std: float = 1.0, length: int | None = None
    ) -> np.ndarray:
        if isinstance(mean, PatchEncoding):
            enc = mean
            mean, std, length = enc.mean, enc.std, enc.length
        p = np.asarray(patches, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != self.patch_len:
            raise ValueError(f"patches must have shape (n, {self.patch_len}), got {p.shape}")
        n = p.shape[0]
        if n == 0:
            raise InputError("patches is empty: no patch to decode")
        length = check_int(length, "length", minimum=0, allow_none=True)
        if length is None:
            length = (n - 1) * self.stride + self.patch_len - self.stride
        t = np.arange(length)
        pi = np.minimum(t // self.stride, n - 1)
        off = t - pi * self.stride
        if (off >= self.patch_len).any():
            raise ValueError(f"{n} patches cannot hold {length} values")
        z = p[pi, off]
        with np.errstate(over="ignore", invalid="ignore"):
            x = z * std + mean
            bad = ~np.isfinite(x) & np.isfinite(z)
            if bad.any():  # z·σ alone overflows though z·σ + μ may not: half scale
                half = z[bad] * (0.5 * std) + 0.5 * mean
                x[bad] = 2.0 * half
                # An input at ±float64 max comes back a few ulps past it (the
                # rounding of z and σ): within that rounding it *is* ±max.
                top = np.finfo(np.float64).max
                near = np.isfinite(half) & (np.abs(half) <= 0.5 * top * (1.0 + 2.0**-48))
                fixed = x[bad]
                fixed[near & ~np.isfinite(fixed)] = np.copysign(top, half[near & ~np.isfinite(fixed)])
                x[bad] = fixed
        over = ~np.isfinite(x) & np.isfinite(z)
        if over.any():
            i = int(np.flatnonzero(over)[0])
            raise NumericalError(
                f"decoded value {i} (z {float(z[i]):g} × std {float(std):.6g} + mean {float(mean):.6g}) overflows "
                "float64"
            )
        return x
