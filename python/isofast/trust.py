"""Per-context trust indicator: is *this* context's representation degenerate?

The study's cell-level answer relates a dataset's isotropy to its forecast
error. A practitioner holding one forecast needs the same question asked of
one context window. A window of an LLM reading LLMTime text has a few hundred
token rows, far fewer than the width d, so spectral statistics (IsoScore,
effective dimension, partition isotropy; they need N ≥ d) cannot be measured
per window. What can be measured on few rows (docs/validity.md, "Per-context
trust"):

``n_massive``
    rows of the window whose norm exceeds ``massive_ratio`` × the median row
    norm (:func:`isofast.massive_rows`; Sun et al. 2024's massive
    activations / attention sinks).
``massive_share``
    Σ_{massive} ‖x_i‖² / Σ_i ‖x_i‖² over the window's rows: how much of the
    window's squared norm the massive rows hold.
``avg_cosine``, ``avg_cosine_centered``
    mean pairwise cosine of the window's other rows, raw and centred at the
    window's mean (Ethayarajh 2019; Cai et al. 2021), exact through the
    unit-sum identity (:func:`isofast.avg_cosine`). Needs ≥ ``min_rows`` rows.
``shift_norm_share``
    mean over the window's rows of cos²(c, û*), û* the head's shift direction
    (argmin‖Wu − 1‖, :func:`isofast.head.shift_direction`): the share of each
    context's squared norm that the softmax cannot see (shift invariance).
    Only at the layer that enters a softmax head.
``log_z_std``
    standard deviation of log Z(c) over the window's rows under the head
    (constant-partition-function condition of Arora et al. 2016). Head layer only.

What each family can measure per window: LLMs (hundreds of tokens per window)
all of the above; Chronos-style encoders (one row per value) the cosines and
massive rows, their decoders (one row per forecast step, usually fewer than
``min_rows``) the massive rows and, at the last layer, the head statistics;
patch models (a handful of patches per window) only the massive rows.
Statistics below their row floor are NaN with the reason in ``reasons``.

:func:`trust` computes these for one or several contexts read by a causal
language model; the study (:mod:`isofast.study`) computes them for every test
window and correlates them with the window's own NMSE.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["WINDOW_STATISTICS", "TrustReport", "trust", "window_statistics"]

#: per-window statistics (module docstring), in report order.
WINDOW_STATISTICS = ("n_massive", "massive_share", "avg_cosine", "avg_cosine_centered", "shift_norm_share", "log_z_std")


def window_statistics(
    rows: Any, massive: Any, *, min_rows: int = 10, shift_cosine: Any = None, log_z: Any = None
) -> tuple[dict, dict]:
    """Per-window statistics of one window's rows (module docstring).

    ``rows`` (n, d) are the window's rows, ``massive`` a bool mask of the
    massive ones (decided by the caller, e.g. at the level of the whole layer);
    ``shift_cosine`` and ``log_z`` (n,) the head quantities of the rows when the
    layer enters a softmax head. Returns ``(values, reasons)``: every statistic
    of :data:`WINDOW_STATISTICS` (NaN where not measurable) and, for each NaN,
    why.
    """
    from isofast.analysis import avg_cosine, row_norms

    X = np.asarray(rows)
    m = np.asarray(massive, dtype=bool)
    if X.ndim != 2 or m.shape != (X.shape[0],):
        raise ValueError(f"rows must be (n, d) and massive a mask of n entries, got {X.shape} and {m.shape}")
    if min_rows < 2:
        raise ValueError(f"min_rows must be ≥ 2, got {min_rows}")
    nan = float("nan")
    out = dict.fromkeys(WINDOW_STATISTICS, nan)
    why: dict[str, str] = {}
    out["n_massive"] = float(m.sum())
    if X.shape[0]:
        sq = row_norms(X).astype(np.float64) ** 2
        tot = float(sq.sum())
        out["massive_share"] = float(sq[m].sum() / tot) if tot > 0 else 0.0
    keep = ~m
    n = int(keep.sum())
    if n >= min_rows:
        R = X[keep]
        for name, center in (("avg_cosine", False), ("avg_cosine_centered", True)):
            try:
                out[name] = float(avg_cosine(R, center=center))
            except (ValueError, ArithmeticError) as exc:
                why[name] = str(exc)
        for name, v in (("shift_norm_share", shift_cosine), ("log_z_std", log_z)):
            if v is None:
                why[name] = "the layer does not enter a softmax head"
                continue
            a = np.asarray(v, np.float64)[keep]
            out[name] = float(np.mean(a**2)) if name == "shift_norm_share" else float(np.std(a, ddof=1))
    else:
        for name in ("avg_cosine", "avg_cosine_centered", "shift_norm_share", "log_z_std"):
            why[name] = f"{n} rows besides the massive ones, fewer than min_rows = {min_rows}"
    for k, v in out.items():
        if not math.isfinite(v) and k not in why:
            why[k] = "undefined for these rows"
    return out, why


@dataclass
class TrustReport:
    """:func:`trust` of one or several contexts at one layer.

    ``windows`` holds one dict per context: ``n_rows`` and every statistic of
    :data:`WINDOW_STATISTICS`; ``reasons`` maps, per context, each NaN
    statistic to why it could not be measured; ``flags`` lists per context the
    warnings a reader should see (massive rows, rows below the floors).
    """

    model: str
    layer: int
    dim: int
    massive_ratio: float
    min_rows: int
    windows: list = field(default_factory=list)
    reasons: list = field(default_factory=list)
    flags: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        from isofast.report import jsonable

        return jsonable(asdict(self))

    def table(self) -> str:
        head = ["window", "n_rows"] + list(WINDOW_STATISTICS)
        lines = ["  ".join(f"{h:>19}" for h in head)]
        for i, w in enumerate(self.windows):
            cells = [str(i), str(w["n_rows"])] + [
                "—" if not math.isfinite(w[k]) else f"{w[k]:.4g}" for k in WINDOW_STATISTICS
            ]
            lines.append("  ".join(f"{c:>19}" for c in cells))
        for i, f in enumerate(self.flags):
            for s in f:
                lines.append(f"window {i}: {s}")
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - presentation
        return self.table()


def trust(
    model: Any,
    series: Any,
    *,
    layer: int | None = None,
    serializer: str = "llmtime",
    massive_ratio: float = 100.0,
    min_rows: int = 10,
    head: bool = True,
    device: str | None = None,
) -> TrustReport:
    """The per-context trust indicator of ``series`` read by a causal LM.

    ``model``: an :class:`isofast.models.LoadedModel`, a bundled name
    (``"smollm2"``, ``"tiny-llama"``) or a local folder; ``series``: one 1-D
    context or a list of them (each is one window). ``layer`` defaults to the
    layer that enters the LM head (after the final norm), where the head
    statistics exist. Every token of each context is captured
    (:func:`isofast.capture`, nothing written to disk), massive rows are
    detected per context with :func:`isofast.massive_rows`, and
    :func:`window_statistics` gives the rest.
    """
    import tempfile

    from isofast import models as M
    from isofast.capture import capture
    from isofast.massive import massive_rows
    from isofast.store import open_capture

    lm = model if isinstance(model, M.LoadedModel) else M.load_model(model, device=device)
    if isinstance(series, (list, tuple)) and series and not np.isscalar(series[0]):
        ctxs = [np.asarray(c, np.float64) for c in series]
    else:
        ctxs = [np.asarray(series, np.float64)]
    if not ctxs or any(c.ndim != 1 or c.size < 2 for c in ctxs):
        raise ValueError("series must be one 1-D context of ≥ 2 values or a list of them")
    L = lm.num_layers if layer is None else int(layer)
    if not 0 <= L <= lm.num_layers:
        raise ValueError(f"layer must be in 0..{lm.num_layers}, got {layer}")
    W = b = u = None
    if head and L == lm.num_layers:
        from isofast.head import lm_head_weights, shift_direction

        W, b = lm_head_weights(lm.model)
        u = shift_direction(W)
    with tempfile.TemporaryDirectory(prefix="isofast-trust-") as tmp:
        res = capture(
            lm,
            ctxs,
            serializer=serializer,
            layers=[L],
            positions="all",
            out=tmp,
            sites=("residual",),
            device=device,
            progress=False,
        )
        cap = open_capture(res.path)
        X = cap.layer(L, "residual").to_numpy(float32=True)
        win = np.asarray(cap.tokens()["window_id"], np.int64)
    rep = TrustReport(getattr(lm, "name", str(model)), L, int(X.shape[1]), float(massive_ratio), int(min_rows))
    for w in range(len(ctxs)):
        R = X[win == w]
        mr = massive_rows(R, ratio=massive_ratio)
        sc = lz = None
        if u is not None:
            from isofast.head import head_diagnostics

            h = head_diagnostics(W, R, b, isotropy=False, head_isotropy=False, shift=u)
            sc, lz = h.shift_cosine, h.log_z
        vals, why = window_statistics(R, mr.mask, min_rows=min_rows, shift_cosine=sc, log_z=lz)
        vals = {"n_rows": int(R.shape[0]), **vals}
        flags = []
        if mr.n_massive:
            flags.append(
                f"{mr.n_massive} massive row(s) (norm > {massive_ratio:g} × median) hold "
                f"{vals['massive_share']:.1%} of the squared norm"
            )
        if R.shape[0] < rep.dim:
            flags.append(f"{R.shape[0]} rows < d = {rep.dim}: spectral statistics are not measurable for one context")
        rep.windows.append(vals)
        rep.reasons.append(why)
        rep.flags.append(flags)
    return rep
