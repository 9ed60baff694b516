"""End to end: fine-tune the real bundled SmolLM2-135M for a few steps on a real series.

LoRA, 2 steps of one window, isotropy tracked on two layers (the head layer with
its diagnostics), NMSE before/after, the adapted model saved, reloaded and used
to forecast. Minutes on 2 shared cores (most of it the forward passes).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")


@pytest.mark.slow
def test_smollm2_adapt_end_to_end(tmp_path):
    import pandas as pd
    from isofast.adapt.run import adapt
    from isofast.forecast import forecast
    from isofast.models import load_model

    out = tmp_path / "run"
    s = adapt(
        "smollm2",
        "airpassengers",
        out=out,
        steps=2,
        lora=True,
        batch_size=1,
        track_every=2,
        track_layers=[15, 30],
        context=64,
        horizon=4,
        n_test=3,
        probe_windows=3,
        n_samples=1,
        threads=2,
        device="cpu",
        log=lambda _: None,
    )
    assert np.isfinite(s["nmse_before"]) and np.isfinite(s["nmse_after"])
    assert s["nmse_before"] != s["nmse_after"] or s["nll_before"] != s["nll_after"]  # the weights changed
    assert s["finetune"]["trainable_params"] < 0.05 * s["finetune"]["total_params"]
    df = pd.read_csv(out / "tracking.csv")
    assert sorted(df.step.unique()) == [0, 2] and sorted(df.layer.unique()) == [15, 30]
    iso = df[(df.statistic == "isoscore")]
    assert len(iso) == 4 and iso.value.between(0, 1).all()
    n = df[df.statistic == "n_rows"].value.unique()
    assert n.size == 1 and n[0] >= 576  # N ≥ d for SmolLM2's d = 576, equal at both steps
    assert df[(df.statistic == "head_log_z_std") & (df.layer == 30)].value.notna().all()
    assert json.loads((out / "summary.json").read_text())["nmse_after"] == s["nmse_after"]
    back = load_model(out / "model", device="cpu")
    assert back.num_layers == 30
    r = forecast(back, [np.arange(40.0) % 7], 3, n_samples=1, seed=0)
    assert np.isfinite(r.median).all()
