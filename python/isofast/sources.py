"""Opening files and folders of embeddings as streams for :func:`isofast.analyze`.

``open_source(PATH)`` understands a single ``.npy`` (memory-mapped, never
loaded whole), an ``.npz`` member, and a capture folder (``manifest.json``
written by :func:`isofast.capture`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

EXAMPLES = Path(__file__).resolve().parent / "examples"
EXAMPLE_LAYERS = (1, 15, 30)


def example_path(layer: int = 15) -> Path:
    """Bundled example: SmolLM2-135M residual stream on the airline series."""
    p = EXAMPLES / f"smollm2_airpassengers_layer{layer}.npy"
    if not p.exists():
        raise FileNotFoundError(f"no bundled example for layer {layer}; have {EXAMPLE_LAYERS}")
    return p


def load_example(layer: int = 15) -> np.ndarray:
    """The bundled example matrix (578 × 576, float16) for one layer."""
    return np.load(example_path(layer), mmap_mode="r")


def open_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise OSError(f"{path}: not a readable .npy file ({exc})") from exc
    return arr


def open_source(
    path: Any,
    *,
    layer: Optional[int] = None,
    site: str = "residual",
    key: Optional[str] = None,
    rows: Optional[slice] = None,
) -> Any:
    """Open ``path`` as something :func:`isofast.analyze` reads in tiles."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    if p.is_dir():
        if not (p / "manifest.json").exists():
            raise FileNotFoundError(f"{p}: a folder must be a capture (manifest.json missing)")
        from isofast.store import open_capture

        cap = open_capture(p)
        if layer is None:
            raise ValueError(f"{p} is a capture with layers {list(cap.layers)}: choose one with --layer")
        src = cap.layer(layer, site=site)
        if rows is not None:
            return src.to_numpy()[rows]
        return src
    suffix = p.suffix.lower()
    if suffix == ".npy":
        arr = open_npy(p)
    elif suffix == ".npz":
        z = np.load(p, allow_pickle=False)
        names = list(z.files)
        if key is None:
            if len(names) != 1:
                raise ValueError(f"{p} holds {names}: choose one with --key")
            key = names[0]
        if key not in names:
            raise KeyError(f"{p} has no member {key!r}; members: {names}")
        arr = z[key]
    else:
        raise ValueError(f"{p}: unsupported file type {suffix!r} (supported: .npy, .npz, capture folders)")
    if arr.ndim != 2:
        raise ValueError(f"{p}: expected a 2-D array of row vectors, got shape {arr.shape}")
    return arr[rows] if rows is not None else arr
