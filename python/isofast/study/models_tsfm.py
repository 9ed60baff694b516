"""Pretrained time-series foundation models in the study (kind ``"tsfm"``).

``[[models]] kind = "tsfm"`` with ``model = "FAMILY:PATH"`` (or a bare
folder whose config.json names the family) studies a real Chronos,
Chronos-Bolt, Chronos-2, TimesFM, PatchTST, Moirai or MOMENT checkpoint
through :mod:`isofast.tsfm`: no training, the weights hash of the folder in
every cache key.

Layers: the captured stack's ``residual`` layers 0..n (:mod:`isofast.tsfm.base`
numbering), named ``<stack>.<L>``. Rows: one per token of that stack
(``positions = "all"``: every patch, bin or special token the stack reads;
``"values"``: only tokens that read values), window-major.

Forecasts: families that sample (Chronos-T5, Moirai 1.x) give their sample
paths. Quantile families (Chronos-Bolt, Chronos-2, TimesFM, Moirai 2.0)
give a quantile grid; the study uses ``n_samples`` equally spaced levels
(k − ½)/n (k = 1..n) as stand-in sample paths, which is the standard
quantile discretisation of the predictive distribution (its median is the
0.5 quantile for odd n; CRPS from them approximates the quantile-grid CRPS).
The stand-in is recorded in each forecast's notes. Point forecasts (PatchTST,
MOMENT) give one path.

One pass (``joint_capture``): when a cell's forecast and capture are both
missing, ``forecast(…, capture=folder)`` captures the study layers in the
forecast's own first pass of the captured stack
(:meth:`~isofast.tsfm.base.TSFMAdapter.forecast_with_capture`: the pass the
separate capture records, per family in docs/models.md) and writes the entry
:meth:`embed_cached` reads (``L<i>.npy`` files, then ``complete.json`` with
their digests), so the cache layout is the two-pass route's. Families whose
forecast does not run that pass (MOMENT; Chronos-2 and Moirai 1.x beyond one
output patch) run the separate prefill inside the same call, unless the
option ``future_tokens`` is the number of future tokens the forecast at the
study's horizon appends: then capture records those rows, in the forecast's
pass (docs/models.md, "Future tokens").

Head diagnostics: Chronos-T5's softmax head reads the decoder's state while
the study captures the encoder (the context), so the study reports no head
columns for TSFMs; ``isofast head --model chronos:DIR`` runs them on the
decoder's first-step inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from isofast.study.adapters import ForecastOutput, LayerSpec, StudyModel, select_layers


class TSFMModel(StudyModel):
    """A TSFM checkpoint through its :class:`~isofast.tsfm.base.TSFMAdapter`."""

    kind = "tsfm"
    # Chronos-T5's softmax head reads the *decoder*; the study captures the
    # encoder (the context), so its head diagnostics run in ``isofast head``.
    has_head = False
    joint_capture = True  # forecast(…, capture=folder) also writes the capture entry

    def __init__(self, cfg, **kw):
        super().__init__(cfg, **kw)
        self.o = cfg.options
        self.spec = cfg.path or cfg.model
        self.ad = None
        self._hash = None
        self.last_fold = None  # info of the last one-pass forecast (tests, benches)

    # identification ---------------------------------------------------
    def _ms(self):
        from isofast.tsfm import parse_spec

        return parse_spec(self.spec)

    def weights_key(self, split=None) -> str:
        from isofast.tsfm.base import hash_folder_weights

        if self._hash is None:
            self._hash = hash_folder_weights(self._ms().path)
        return self._hash

    def prepared_hash(self, split=None) -> str:
        return self.weights_key()

    @property
    def weights_hash(self) -> str:
        return self.weights_key()

    def prepare(self, split=None) -> None:
        if self.ad is None:
            from isofast.tsfm import load_tsfm

            dev = None if self.o["device"] == "auto" else self.o["device"]
            k = int(self.o.get("future_tokens", 0))  # 0: the family's default
            self.ad = load_tsfm(self.spec, device=dev, future_tokens=k or None)

    def describe(self) -> dict:
        self.prepare()
        return {"name": self.name, "kind": self.kind, "options": self.o, "model": self.ad.describe()}

    # layers and rows ----------------------------------------------------
    @property
    def layers(self) -> list[LayerSpec]:
        self.prepare()
        n = self.ad.n_layers
        keep = select_layers(self.cfg.layers, n + 1, self.name)
        st = self.ad.stack.name
        return [LayerSpec(i, f"{st}.{i}", st, i / n) for i in keep]

    def dims(self) -> dict[int, int]:
        self.prepare()
        return {L.index: self.ad.d_model for L in self.layers}

    def _keep(self, length: int) -> np.ndarray:
        from isofast.serializers.base import DIGIT

        t = self.ad.serializer.tokens(int(length))
        return np.ones(len(t), bool) if self.o["positions"] == "all" else t.role == DIGIT

    def rows_per_window(self, contexts, split) -> dict[int, np.ndarray]:
        self.prepare()
        counts = np.array([int(self._keep(np.asarray(c).size).sum()) for c in contexts], np.int64)
        return {L.index: counts for L in self.layers}

    # work -------------------------------------------------------------
    def _kept(self, emb) -> np.ndarray:
        """The rows ``positions`` keeps: every token, or those that read values."""
        if self.o["positions"] == "all":
            return np.ones(emb.role.size, bool)
        from isofast.serializers.base import DIGIT

        return emb.role == DIGIT

    def embed(self, contexts, *, folder=None, aux=None) -> dict[int, np.ndarray]:
        self.prepare()
        idx = [L.index for L in self.layers]
        emb = self.ad.embed(
            [np.asarray(c, np.float64) for c in contexts],
            layers=idx,
            sites=("residual",),
            batch_size=int(self.o["batch_size"]),
        )
        keep = self._kept(emb)
        return {L: emb.arrays[("residual", L)][keep] for L in idx}

    def forecast(self, contexts, horizon, *, n_samples=20, seed=0, capture=None) -> ForecastOutput:
        """Sample paths (module docstring). With ``capture`` (a folder) and no
        complete entry there, the forecast's own pass also captures every study
        layer, written as :meth:`embed_cached` writes it (files, then the
        marker ``complete.json`` last, atomically)."""
        self.prepare()
        n = max(1, int(n_samples))
        levels = (np.arange(n) + 0.5) / n
        ctx = [np.asarray(c, np.float64) for c in contexts]
        kw = {"n_samples": n, "seed": int(seed), "quantile_levels": levels.tolist()}
        folder = None if capture is None else Path(capture)
        if folder is not None and not (folder / "complete.json").is_file():
            idx = [L.index for L in self.layers]
            fc, emb, info = self.ad.forecast_with_capture(
                ctx, int(horizon), layers=idx, sites=("residual",), batch_size=int(self.o["batch_size"]), **kw
            )
            self.last_fold = info
            keep = self._kept(emb)
            rows = {L: emb.arrays[("residual", L)][keep] for L in idx}
            from isofast.store import write_json

            files = self.store_embeddings(folder, rows)
            doc = {"layers": idx, "rows": {str(k): int(v.shape[0]) for k, v in rows.items()}, "files": files}
            write_json(folder / "complete.json", doc)  # the marker embed_cached writes, last
        else:
            fc = self.ad.forecast(ctx, int(horizon), **kw)
        return self._output(fc, n, levels)

    def _output(self, fc, n: int, levels: np.ndarray) -> ForecastOutput:
        if fc.samples is not None:
            return ForecastOutput(np.asarray(fc.samples, np.float64), notes=(f"{self.ad.family}: sample paths",))
        q = np.asarray(fc.quantiles, np.float64)
        point_only = bool(np.all(q == q[:1]))  # PatchTST's MSE head, MOMENT: every level repeats the point
        if q.shape[0] == levels.size and n > 1 and not point_only:
            samples = np.moveaxis(q, 0, 1)  # (S, Q, H)
            return ForecastOutput(
                np.sort(samples, axis=1),
                notes=(f"{self.ad.family}: {n} quantile levels (k−½)/{n} stand in for sample paths",),
            )
        return ForecastOutput(
            np.asarray(fc.point, np.float64)[:, None, :], notes=(f"{self.ad.family}: point forecast only",)
        )

    def hook_point(self, layer: int):
        self.prepare()
        st = self.ad.stack
        n = st.n_layers
        if not 0 <= layer <= n:
            raise ValueError(f"{self.name}: layers 0..{n}, got {layer}")
        if layer < n:
            return st.blocks[layer], "pre"
        if st.final_norm is not None:
            return st.final_norm, "post"
        return st.blocks[-1], "post"

    def release(self) -> None:
        self.ad = None
