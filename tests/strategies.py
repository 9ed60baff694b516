"""Hypothesis strategies of adversarial inputs (issue 17): extreme
magnitudes, zero and denormal rows, d = 0/1, N = 0/1/2, odd strides,
Fortran order, non-native byte order, float32/float64."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

#: per-row scale factors: far beyond the range where Σx² is representable
SCALES = [1.0, 1e-300, 1e-200, 1e-160, 1e150, 1e160, 1e200, 1e300, 0.0]
DENORMAL = 5e-324


@st.composite
def adversarial_arrays(
    draw,
    min_rows: int = 0,
    max_rows: int = 9,
    min_cols: int = 0,
    max_cols: int = 5,
    extremes: bool = True,
    float32: bool = True,
):
    """An (N, d) float array and the exact float64 values it holds.

    Returns ``(X, X64)``: ``X`` is the array handed to isofast (any layout,
    dtype and byte order), ``X64`` a C-contiguous native float64 copy of the
    same numbers for references.
    """
    n = draw(st.integers(min_rows, max_rows))
    d = draw(st.integers(min_cols, max_cols))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, d))
    if extremes:
        scales = np.array(draw(st.lists(st.sampled_from(SCALES), min_size=n, max_size=n)), dtype=np.float64)
        base = base * scales[:, None] if n else base
        if n and draw(st.booleans()):  # a denormal row
            i = draw(st.integers(0, n - 1))
            base[i] = np.where(rng.random(d) < 0.5, DENORMAL, -DENORMAL) * rng.integers(1, 5, size=d)
    dtype = np.float64
    if float32 and draw(st.booleans()) and not extremes:
        dtype = np.float32
    X64 = base.astype(dtype).astype(np.float64)
    layout = draw(st.sampled_from(["C", "F", "strided", "reversed", "big-endian"]))
    X = X64.astype(dtype)
    if layout == "F":
        X = np.asfortranarray(X)
    elif layout == "strided":
        big = np.zeros((2 * n, 3 * d + 1), dtype=dtype)
        big[::2, 1::3] = X
        X = big[::2, 1::3]
    elif layout == "reversed":
        X = X[::-1][::-1] if n else X
        X = np.ascontiguousarray(X[::-1])[::-1]
    elif layout == "big-endian":
        X = X.astype(np.dtype(dtype).newbyteorder(">"))
    return X, X64
