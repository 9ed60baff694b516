"""Measured error of ``analyze(X, precision="fast")`` against float64 numpy
references (and against ``precision="exact"``) on the adversarial set of
issue 19, next to the documented bound γ_{b+2}.

    python benches/fast_precision_errors.py [--n 20000] [--d 256] [--json FILE]

Cases (float32 inputs): random anisotropic with an offset, a common offset of
1e4 with a spread of 1e-2, massive activations (every 200th row has one
coordinate of 2e3), and N < d. The reference is plain float64 numpy: np.cov
eigenvalues, the dense cosine identity, np.linalg.eigh of XᵀX and of the
covariance for the partition functions (tests/reference.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import reference as ref  # noqa: E402

import isofast  # noqa: E402
from isofast import _core  # noqa: E402

SCALARS = (
    "total_variance",
    "participation_ratio",
    "isoscore",
    "stable_rank",
    "pc1_share",
    "effective_rank",
    "avg_cosine",
    "avg_cosine_centered",
    "log_partition_isotropy",
    "log_partition_isotropy_centered",
)


def cases(n: int, d: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    mass = rng.normal(size=(n, d))
    mass[::200, 3] = 2e3
    return {
        "random + offset": (rng.normal(size=(n, d)) * np.geomspace(3, 0.05, d)) @ Q.T + 2.0,
        "offset 1e4, spread 1e-2": 1e4 + 1e-2 * rng.normal(size=(n, d)),
        "massive activations": mass,
        "N < d": rng.normal(size=(d // 2, d)) + 1.0,
    }


def reference(X: np.ndarray) -> dict:
    r = ref.spectral(X)
    r["total_variance"] = float(r["eigenvalues"].sum())
    r["avg_cosine"] = ref.avg_cosine_dense(X)
    r["avg_cosine_centered"] = ref.avg_cosine_dense(X, center=True)
    r["log_partition_isotropy"] = ref.log_partition_isotropy(X)
    r["log_partition_isotropy_centered"] = ref.log_partition_isotropy(X, center=True)
    return r


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    b = _core.fast_tile_rows(a.d) + 2
    u = 2.0**-24
    gamma = b * u / (1 - b * u)
    print(f"d = {a.d}: fast tile b = {b - 2} rows, bound γ_(b+2) = {gamma:.3e} (eigenvalues: |Δλ_k| ≤ γ·Σλ)")
    out = {"n": a.n, "d": a.d, "gamma": gamma, "cases": {}}
    for name, X64 in cases(a.n, a.d).items():
        X = X64.astype(np.float32)
        Xr = X.astype(np.float64)  # the float32 data, exactly, as the reference's input
        want = reference(Xr)
        row = {}
        for prec in ("exact", "fast"):
            rep = isofast.analyze(X, precision=prec)
            T = want["total_variance"]
            e = {
                "eigenvalues_max_abs_over_sum": float(np.max(np.abs(rep.eigenvalues - want["eigenvalues"])) / T),
                "evr_max_abs": float(np.max(np.abs(rep.explained_variance_ratio - want["explained_variance_ratio"]))),
                "effective_dim": (int(rep.effective_dim), int(want["effective_dim"])),
            }
            for k in SCALARS:
                e[k] = rel(getattr(rep, k), want[k])
            row[prec] = e
        out["cases"][name] = row
        print(f"\n{name} (N = {X.shape[0]}, d = {a.d})")
        print(f"  {'statistic':34s} {'exact rel.err':>14s} {'fast rel.err':>14s}")
        for k in row["fast"]:
            x, y = row["exact"][k], row["fast"][k]
            fmt = (lambda v: f"{v!s:>14s}") if isinstance(y, tuple) else (lambda v: f"{v:14.2e}")
            print(f"  {k:34s} {fmt(x)} {fmt(y)}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
