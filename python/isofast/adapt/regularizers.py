"""Differentiable isotropy penalties on one layer's hidden states (torch).

These are *training* losses: the statistics isofast reports (tracking, the
experiment) always come from the Rust kernels (:func:`isofast.isoscore`,
:func:`isofast.log_partition_head`); the tests check that the torch values
equal them.

IsoScore* (Rudman & Eickhoff 2024, "Stable Anisotropic Regularization",
ICLR; I-STAR)
    For the rows H (n×d) of a batch with covariance Σ_H and a shrinkage
    covariance Σ_S (e.g. of a larger sample, held fixed),
    Σ_ζ = (1 − ζ) Σ_H + ζ Σ_S and, with λ the eigenvalues of Σ_ζ,

        IsoScore*(H) = (PR − 1) / (d − 1),   PR = (Σλ)² / Σλ² = tr(Σ_ζ)² / ‖Σ_ζ‖_F²

    which is IsoScore (Rudman et al. 2022) of Σ_ζ — for ζ = 0 exactly
    :func:`isofast.isoscore` of H. The trace/Frobenius form needs no
    eigendecomposition, so its gradient is smooth even with repeated
    eigenvalues. The penalty is ``1 − IsoScore*`` ∈ [0, 1].

var(log Z) (the paper's constant-partition-function condition; Arora et al. 2016)
    log Z(c) = logsumexp_w(⟨v_w, c⟩ + b_w) for each row c, under the LM
    head (W, b); the penalty is the unbiased variance of log Z over the
    batch's rows. On the layer that feeds the head, c is the final-norm
    output the head multiplies (the logits of the forward pass are reused:
    no extra V×d product); on an earlier layer c = final_norm(h) ("logit
    lens"), for architectures whose final norm isofast can find.

Sign convention (I-STAR): the training loss is ``lm_loss + weight · penalty``;
``weight > 0`` pushes towards **more** isotropy (IsoScore* up, log Z more
constant), ``weight < 0`` towards **less**. ``weight = 0`` adds nothing to the
loss (the penalty is still computed, detached, for the loss curve), so
training is bitwise equal to training without a regulariser (tested).

Rows: the value tokens of the batch (positions whose label is scored, so
padding and the first token — BOS, often a massive row — never enter).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = [
    "KINDS",
    "Regularizer",
    "isoscore_star",
    "log_partition",
    "log_partition_variance",
]

KINDS = ("isoscore", "logz")


def _covariance(H):
    """Sample covariance (ddof = 1) of the rows of H, float64."""
    X = H.double()
    Xc = X - X.mean(0, keepdim=True)
    return Xc.T @ Xc / max(X.shape[0] - 1, 1)


def isoscore_star(H, *, zeta: float = 0.0, shrinkage=None):
    """IsoScore* of the rows of ``H`` (n×d torch tensor; module docstring).

    ``zeta`` ∈ [0, 1] and ``shrinkage`` (d×d Σ_S, required when ζ > 0) are
    I-STAR's shrinkage; ζ = 0 gives IsoScore. Returns a float64 scalar tensor
    (NaN when the covariance is zero: no spread to be isotropic about).
    """
    import torch

    if H.ndim != 2:
        raise ValueError(f"isoscore_star: H must be n×d, got shape {tuple(H.shape)}")
    n, d = H.shape
    if n < 2 or d < 2:
        raise ValueError(f"isoscore_star: need ≥ 2 rows and ≥ 2 columns, got {n}×{d}")
    if not 0.0 <= zeta <= 1.0:
        raise ValueError(f"isoscore_star: zeta must be in [0, 1], got {zeta}")
    C = _covariance(H)
    if zeta > 0:
        if shrinkage is None:
            raise ValueError("isoscore_star: zeta > 0 needs a shrinkage covariance")
        S = torch.as_tensor(shrinkage, dtype=torch.float64, device=C.device)
        if S.shape != (d, d):
            raise ValueError(f"isoscore_star: shrinkage must be {d}×{d}, got {tuple(S.shape)}")
        C = (1.0 - zeta) * C + zeta * S
    tr = torch.diagonal(C).sum()
    fro2 = (C * C).sum()
    pr = tr * tr / fro2
    return (pr - 1.0) / (d - 1)


def log_partition(C, W, b=None):
    """log Z(c) = logsumexp(C Wᵀ + b) per row (torch; float32 logits, float64 result)."""
    import torch

    z = C.float() @ W.float().T
    if b is not None:
        z = z + b.float()
    return torch.logsumexp(z, dim=-1).double()


def log_partition_variance(log_z):
    """Unbiased variance of log Z over rows."""
    if log_z.numel() < 2:
        raise ValueError("var(log Z) needs ≥ 2 rows")
    return log_z.double().var(unbiased=True)


def _final_norm(model):
    """The final norm module of a causal LM (for the logit lens), or None."""
    m = model
    if hasattr(m, "get_base_model"):
        m = m.get_base_model()
    for path in ("model.norm", "transformer.ln_f", "gpt_neox.final_layer_norm", "model.decoder.final_layer_norm"):
        obj = m
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    return None


def num_layers(model) -> int:
    c = model.config
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        v = getattr(c, key, None)
        if isinstance(v, int):
            return v
    raise ValueError("cannot tell the number of layers from the model config")


@dataclass
class Regularizer:
    """``weight · penalty`` on the hidden states of ``layer`` (module docstring).

    ``layer`` follows isofast's capture convention: 0 = embedding output,
    L = output of block L, the last (= number of blocks) the final-norm
    output that the head multiplies.
    """

    kind: str
    weight: float
    layer: int
    zeta: float = 0.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"regularize must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.layer, int) or isinstance(self.layer, bool):
            raise TypeError(f"regularizer layer must be an int, got {self.layer!r}")
        if not math.isfinite(float(self.weight)):
            raise ValueError(f"regularizer weight must be finite, got {self.weight}")
        if not 0.0 <= self.zeta <= 1.0:
            raise ValueError(f"regularizer zeta must be in [0, 1], got {self.zeta}")

    def check(self, model) -> None:
        """Refuse a layer the model does not have (or cannot lens through)."""
        n = num_layers(model)
        if not 0 <= self.layer <= n:
            raise ValueError(f"regularizer layer {self.layer} is out of range: this model has layers 0..{n}")
        if self.kind == "logz" and self.layer < n and _final_norm(model) is None:
            raise ValueError(
                f"logz on layer {self.layer} < {n} needs the model's final norm (logit lens), "
                f"which isofast cannot find in {type(model).__name__}; use layer {n}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    def penalty(self, model, hidden_states, logits, rows_mask, shrinkage=None):
        """The penalty (float64 scalar tensor) for one forward pass.

        ``hidden_states``: the model's tuple (embedding output first);
        ``logits``: B×T×V of the same pass; ``rows_mask``: B×T bool, the rows
        that enter (value tokens).
        """
        H = hidden_states[self.layer][rows_mask]
        if self.kind == "isoscore":
            return 1.0 - isoscore_star(H, zeta=self.zeta, shrinkage=shrinkage)
        n = len(hidden_states) - 1
        if self.layer == n:
            import torch

            lz = torch.logsumexp(logits[rows_mask].float(), dim=-1).double()
        else:
            head = model.get_output_embeddings()
            b = getattr(head, "bias", None)
            lz = log_partition(_final_norm(model)(H), head.weight, b)
        return log_partition_variance(lz)
