"""Isotropy tracked during fine-tuning: a ``transformers.TrainerCallback`` and a
plain-PyTorch tracker for custom loops.

Every ``every`` optimiser steps (and before the first and after the last) the
tracker runs a **fixed probe set** of contexts through the model (inference
mode, no gradient), takes the hidden states of the tracked layers (layer 0 =
embedding output, layer L = output of block L, the last = the final-norm
output the LM head multiplies — :func:`isofast.capture`'s convention, which
is also what ``output_hidden_states`` returns), and measures each layer with
the study's suite :func:`isofast.study.isotropy.layer_suite`, i.e. under the
study's validity rules (docs/validity.md): massive rows (Sun et al. 2024)
counted and excluded, **equal N** at every step (fixed once from the probe's
row count, ``rows = (1 − row_margin) × rows``), N ≥ d floors, clustered
isotropy with its cluster floor, isotropic-Gaussian nulls. The layer that
feeds the head also gets :func:`isofast.head.head_diagnostics` (log-Z spread,
norm/variance share along the shift direction u*). All statistics come from
the Rust kernels; nothing is recomputed here.

u* = argmin ‖W u − 1‖ costs a streaming QR of the V×d head (≈ 40 s for
SmolLM2), so it is computed once, for the head at the start of tracking
(kept on disk under ``cache`` keyed by a hash of W), and the shares along it
are shares along the *pre-adaptation* u*; the log-Z statistics always use the
current head.

Output: a tidy table with columns ``step``, ``layer``, ``statistic``,
``value`` (``tracking.csv`` and ``tracking.parquet``), the notes and skip
reasons per (step, layer) in ``tracking.json``, and one figure per statistic
(value by step, one line per layer) with :meth:`IsotropyTracker.plot`.

Use with the Hugging Face Trainer::

    from isofast.adapt import IsotropyCallback
    cb = IsotropyCallback(probe_contexts, tokenizer=tok, every=25, out="run/")
    Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb]).train()
    cb.tracker.table()            # pandas DataFrame (step, layer, statistic, value)

or in a custom loop::

    tr = IsotropyTracker(probe_contexts, tokenizer=tok, every=25)
    tr.measure(model, step=0)
    for step in range(1, steps + 1):
        ...; optimizer.step()
        tr.maybe_measure(model, step)
    tr.write("run/")
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:  # the callback is a TrainerCallback where transformers is installed
    from transformers import TrainerCallback as _CallbackBase
except ImportError:  # pragma: no cover - the torch extra is missing
    _CallbackBase = object

__all__ = ["HEAD_STATISTICS", "IsotropyCallback", "IsotropyTracker", "default_layers", "tracking_config"]

#: head diagnostics tracked on the layer that feeds the head.
HEAD_STATISTICS = (
    "log_z_std",
    "log_z_rel_std",
    "log_z_range",
    "z_cv",
    "shift_norm_share_mean",
    "shift_norm_share_max",
    "shift_variance_share",
    "mean_context_shift_share",
)


def tracking_config(**overrides):
    """The :class:`isofast.study.config.IsotropyConfig` the tracker uses by
    default: the study's validity rules, with a smaller k range (2..8) and
    two null draws, so a measurement stays within the ≤ 10 % budget."""
    from isofast.study.config import IsotropyConfig

    kw: dict = {"k_max": 8, "null_reps": 2, "pca_points": 2, "spectrum": 0}
    kw.update(overrides)
    return IsotropyConfig(**kw)


def default_layers(n_layers: int, k: int = 5) -> list[int]:
    """``k`` evenly spaced layers 0..n_layers, always with the first and last."""
    if n_layers + 1 <= k:
        return list(range(n_layers + 1))
    return sorted({round(i * n_layers / (k - 1)) for i in range(k)})


def _model_layers(model) -> int:
    from isofast.adapt.regularizers import num_layers

    return num_layers(model)


class IsotropyTracker:
    """Per-layer isotropy of a fixed probe set, every ``every`` steps (module docstring).

    Parameters
    ----------
    probe : the probe contexts (a list of 1-D series, or windows × values).
    tokenizer : the model's tokenizer (one token per digit; checked).
    every : measure when ``step % every == 0`` (and at the first/last step).
    layers : ``"auto"`` (:func:`default_layers`) or a list of layer indices.
    config : an :class:`~isofast.study.config.IsotropyConfig` (default
        :func:`tracking_config`); ``rows="auto"`` plans N from the probe.
    head : add the head diagnostics on the last layer.
    cache : folder for the shift direction u* (default: isofast's cache root).
    serializer : the LLMTime layout (as in forecasting).
    seed : seeds the row subsampling (equal N) and clustering.
    """

    def __init__(
        self,
        probe: Any,
        *,
        tokenizer: Any,
        every: int = 25,
        layers: Any = "auto",
        config=None,
        head: bool = True,
        cache: Any = None,
        serializer: Any = "llmtime",
        seed: int = 0,
    ):
        from isofast.adapt.data import check_tokenizer, encode_probe

        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"track every must be a positive int, got {every!r}")
        self.every = every
        self.serializer = check_tokenizer(tokenizer, serializer)
        if isinstance(probe, np.ndarray) and probe.ndim == 1:
            probe = [probe]
        contexts = [np.asarray(c, np.float64).reshape(-1) for c in probe]
        if not contexts:
            raise ValueError("the probe set is empty")
        self.probe_ids = encode_probe(tokenizer, contexts, serializer=self.serializer)
        self.layers_spec = layers
        self.config = config if config is not None else tracking_config()
        self.head = bool(head)
        self.cache = Path(cache) if cache is not None else None
        self.seed = int(seed)
        self.rows: list[dict] = []
        self.notes: dict[str, list] = {}
        self.seconds = 0.0
        self.n_measurements = 0
        self._layers: list[int] | None = None
        self._n_rows: int | None = None
        self._shift = None
        self._last_step: int | None = None

    # ------------------------------------------------------------ planning
    @property
    def n_probe_rows(self) -> int:
        return sum(len(i) for i in self.probe_ids)

    def _plan(self, model) -> None:
        if self._layers is not None:
            return
        n = _model_layers(model)
        if self.layers_spec == "auto":
            layers = default_layers(n)
        else:
            layers = sorted({int(v) for v in self.layers_spec})
            bad = [v for v in layers if not 0 <= v <= n]
            if bad:
                raise ValueError(f"tracked layers {bad} are out of range: this model has layers 0..{n}")
        d = int(getattr(model.config, "hidden_size", 0) or getattr(model.config, "n_embd", 0))
        rows = self.config.rows
        avail = self.n_probe_rows
        # equal N at every step: isofast.study.plan's rule, applied to the one probe "cell"
        N = math.floor((1.0 - self.config.row_margin) * avail) if rows == "auto" else int(rows)
        if N > avail:
            raise ValueError(f"tracking rows = {N} but the probe set has only {avail} token rows")
        if self.config.floors and N < d:
            raise ValueError(
                f"the probe set gives N = {N} rows per layer (of {avail} tokens), below d = {d}: spectral "
                "statistics need N ≥ d. Add probe contexts or lengthen them"
            )
        self._layers, self._n_rows, self._n_model_layers = layers, N, n

    @property
    def layers(self) -> list[int] | None:
        return self._layers

    @property
    def n_rows(self) -> int | None:
        return self._n_rows

    # ---------------------------------------------------------- head (u*)
    def _head_weights(self, model):
        from isofast.head import lm_head_weights

        return lm_head_weights(model)

    def _shift_direction(self, W: np.ndarray):
        import isofast.head as H

        if self._shift is not None:
            return self._shift
        key = hashlib.sha256(np.ascontiguousarray(W).tobytes()).hexdigest()[:16] + f"-{W.shape[0]}x{W.shape[1]}"
        root = self.cache
        if root is None:
            from isofast.models import cache_root

            root = cache_root() / "adapt"
        path = root / f"shift-{key}.npz"
        if path.is_file():
            z = np.load(path)
            sd = H.ShiftDirection(
                u=z["u"], residual=float(z["residual"]), gram=z["gram"], ones_proj=z["ones_proj"], rank=int(z["rank"])
            )
        else:
            sd = H.shift_direction(W)
            try:
                root.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp.npz")
                np.savez(
                    tmp,
                    u=sd.u,
                    residual=np.array(sd.residual),
                    gram=sd.gram,
                    ones_proj=sd.ones_proj,
                    rank=np.array(sd.rank),
                )
                tmp.replace(path)
            except OSError:  # a read-only cache only costs the recomputation
                pass
        self._shift = sd
        return sd

    # ------------------------------------------------------------ measuring
    @staticmethod
    def _keep_kw(model) -> dict:
        """Ask for the last position's logits only where the model allows it
        (the probe needs hidden states, not a V-wide head product per token)."""
        import inspect

        try:
            base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft passes kwargs on
            params = inspect.signature(base.forward).parameters
        except (TypeError, ValueError):  # pragma: no cover
            return {}
        for k in ("logits_to_keep", "num_logits_to_keep"):
            if k in params:
                return {k: 1}
        return {}

    def _hidden(self, model) -> tuple[dict, dict]:
        """Rows of every tracked layer over the probe set, and their window ids."""
        import torch

        dev = next(model.parameters()).device
        rows: dict = {L: [] for L in self._layers}
        wins: dict = {L: [] for L in self._layers}
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for w, ids in enumerate(self.probe_ids):
                    t = torch.as_tensor(ids, device=dev)[None]
                    out = model(input_ids=t, output_hidden_states=True, use_cache=False, **self._keep_kw(model))
                    hs = out.hidden_states
                    for L in self._layers:
                        rows[L].append(hs[L][0].float().cpu().numpy())
                        wins[L].append(np.full(len(ids), w, np.int64))
        finally:
            if was_training:
                model.train()
        return ({L: np.concatenate(v) for L, v in rows.items()}, {L: np.concatenate(v) for L, v in wins.items()})

    def measure(self, model, step: int, *, extra: dict | None = None) -> list[dict]:
        """Measure every tracked layer now; returns the new table rows."""
        from isofast.study.isotropy import layer_suite

        t0 = time.perf_counter()
        self._plan(model)
        X, wins = self._hidden(model)
        new: list[dict] = []
        last = self._n_model_layers
        for L in self._layers:
            head = None
            if self.head and L == last:

                def head(Xs):
                    import isofast.head as H

                    W, b = self._head_weights(model)
                    sd = self._shift_direction(W)
                    rep = H.head_diagnostics(W, Xs.astype(np.float32), b, isotropy=False, head_isotropy=False, shift=sd)
                    return rep.to_dict(), rep.shift_cosine, rep.log_z

            seed = self.seed * 1_000_003 + L  # the same rows at every step (equal N, same subsample)
            res = layer_suite(X[L], self.config, seed, n_rows=self._n_rows, windows=wins[L], head=head)
            for k, v in res["stats"].items():
                new.append({"step": int(step), "layer": int(L), "statistic": k, "value": float(v)})
            if res.get("head"):
                for k in HEAD_STATISTICS:
                    v = res["head"].get(k)
                    new.append(
                        {
                            "step": int(step),
                            "layer": int(L),
                            "statistic": f"head_{k}",
                            "value": float("nan") if v is None else float(v),
                        }
                    )
            notes = list(res.get("notes", []))
            if res.get("skip_reason"):
                notes.insert(0, "skipped: " + res["skip_reason"])
            if notes:
                self.notes[f"{step}/{L}"] = notes
        for k, v in (extra or {}).items():
            new.append({"step": int(step), "layer": -1, "statistic": k, "value": float(v)})
        self.rows.extend(new)
        self.seconds += time.perf_counter() - t0
        self.n_measurements += 1
        self._last_step = int(step)
        return new

    def due(self, step: int) -> bool:
        return step % self.every == 0 and step != self._last_step

    def maybe_measure(self, model, step: int, **kw) -> bool:
        """Measure when ``step`` is a multiple of ``every``; True when it did."""
        if self.due(step):
            self.measure(model, step, **kw)
            return True
        return False

    def finish(self, model, step: int) -> None:
        """Measure the final step unless it was just measured."""
        if step != self._last_step:
            self.measure(model, step)

    # --------------------------------------------------------------- output
    def table(self):
        """The tidy table: one row per (step, layer, statistic)."""
        import pandas as pd

        df = pd.DataFrame(self.rows, columns=["step", "layer", "statistic", "value"])
        return df.astype({"step": "int64", "layer": "int64", "statistic": "string", "value": "float64"})

    def value(self, statistic: str, layer: int, step: int) -> float:
        for r in self.rows:
            if r["statistic"] == statistic and r["layer"] == layer and r["step"] == step:
                return r["value"]
        raise KeyError(f"no {statistic!r} at layer {layer}, step {step}")

    def write(self, out: Any, *, plots: bool = True) -> dict:
        """``tracking.csv``, ``tracking.parquet``, ``tracking.json`` (+ figures) in ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        df = self.table()
        files = {"csv": str(out / "tracking.csv")}
        df.to_csv(out / "tracking.csv", index=False)
        try:
            df.to_parquet(out / "tracking.parquet", index=False)
            files["parquet"] = str(out / "tracking.parquet")
        except ImportError:  # pragma: no cover - pyarrow is in the io extra
            pass
        meta = {
            "layers": self._layers,
            "n_rows": self._n_rows,
            "n_probe_rows": self.n_probe_rows,
            "n_probe_windows": len(self.probe_ids),
            "every": self.every,
            "seconds": self.seconds,
            "n_measurements": self.n_measurements,
            "config": dict(self.config.__dict__),
            "notes": self.notes,
        }
        (out / "tracking.json").write_text(json.dumps(meta, indent=2, default=str))
        files["json"] = str(out / "tracking.json")
        if plots:
            files["figures"] = self.plot(out / "figures")
        return files

    def plot(self, figdir: Any, statistics: Sequence[str] | None = None) -> list[str]:
        """One PNG per statistic: value by step, one line per layer."""
        from isofast.adapt.report import plot_tracking

        return plot_tracking(self.table(), Path(figdir), statistics=statistics)


class IsotropyCallback(_CallbackBase):
    """A ``transformers.TrainerCallback`` that runs an :class:`IsotropyTracker`.

    Measures at the start of training, every ``every`` global steps and at
    the end; with ``out`` it writes the table and figures when training ends.
    Other arguments as :class:`IsotropyTracker` (or pass ``tracker=``).
    """

    def __init__(self, probe: Any = None, *, tokenizer: Any = None, out: Any = None, tracker=None, **kw):
        if tracker is None:
            if probe is None or tokenizer is None:
                raise TypeError("IsotropyCallback needs probe and tokenizer (or tracker=)")
            tracker = IsotropyTracker(probe, tokenizer=tokenizer, **kw)
        self.tracker = tracker
        self.out = out

    def on_train_begin(self, args, state, control, model=None, **kw):
        self.tracker.measure(model, int(state.global_step))

    def on_step_end(self, args, state, control, model=None, **kw):
        self.tracker.maybe_measure(model, int(state.global_step))

    def on_train_end(self, args, state, control, model=None, **kw):
        self.tracker.finish(model, int(state.global_step))
        if self.out is not None:
            self.tracker.write(self.out)
