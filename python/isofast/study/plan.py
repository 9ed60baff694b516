"""The grid's plan, checked before anything runs: rows per (model, layer).

Every cell of one (model, layer) is measured on the same number of rows N
(docs/validity.md). N comes from ``rows`` (the model's, else ``[isotropy]``):

* an int: used as it is;
* ``"auto"``: ⌊(1 − ``row_margin``) · m⌋, m = the fewest rows any cell of
  that layer has (the margin leaves room for the massive rows removed per
  cell, which are only known after the forward pass).

Rows per cell are known before any forward pass
(:meth:`~isofast.study.adapters.StudyModel.rows_per_window`: tokens of the
LLMTime text, patches, Chronos ids, forecast steps). The plan refuses, with a
:class:`~isofast.study.config.ConfigError` that names the model, the layer
and the numbers:

* N < d with ``floors = true`` (spectral statistics need N ≥ d);
* an explicit N above the rows some cell has;
* a dataset whose windows do not fit its series.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from isofast.study.config import ConfigError


@dataclass
class LayerPlan:
    model: str
    layer: int
    name: str
    dim: int
    n_rows: int
    min_available: int
    min_cell: str
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def plan_rows(cfg, models: dict, splits: dict, cell_inputs) -> dict[str, dict[int, LayerPlan]]:
    """``{model name: {layer index: LayerPlan}}`` for the whole grid (module docstring).

    ``models`` maps names to built adapters, ``splits`` dataset names to
    splits, ``cell_inputs(model_cfg, split, perturbation)`` returns the cell's
    :class:`~isofast.study.datasets.CellInputs`.
    """
    plans: dict[str, dict[int, LayerPlan]] = {}
    iso = cfg.isotropy
    for mcfg in cfg.models:
        model = models.get(mcfg.name)
        if model is None:  # the model could not be built: its cells record why
            continue
        avail: dict[int, tuple[int, str]] = {}
        for d in cfg.datasets:
            split = splits[d.name]
            for p in cfg.perturbations:
                inputs = cell_inputs(mcfg, split, p)
                counts = model.rows_per_window(list(inputs.contexts), split)
                for L, c in counts.items():
                    tot = int(np.asarray(c).sum())
                    if L not in avail or tot < avail[L][0]:
                        avail[L] = (tot, f"{d.name} / {p.name}: {inputs.contexts.shape[0]} windows")
        dims = model.dims()
        rows = mcfg.rows if mcfg.rows is not None else iso.rows
        plans[mcfg.name] = {}
        for L in model.layers:
            m, where = avail[L.index]
            d = int(dims[L.index])
            n = int(math.floor((1.0 - iso.row_margin) * m)) if rows == "auto" else int(rows)
            lp = LayerPlan(mcfg.name, L.index, L.name, d, n, m, where)
            if rows != "auto" and n > m:
                raise ConfigError(
                    f"model {mcfg.name!r}, layer {L.name}: rows = {n} but cell {where} has only {m} rows; "
                    f"lower rows or add test windows (n_test / n_windows)"
                )
            if iso.floors and n < d:
                raise ConfigError(
                    f"model {mcfg.name!r}, layer {L.name}: N = {n} rows per cell "
                    f"({'auto: ' + format(1 - iso.row_margin, '.0%') + ' of ' if rows == 'auto' else ''}"
                    f"the fewest, {m}, in cell {where}) is below d = {d}; spectral statistics need N ≥ d. "
                    f"Add test windows (n_test / n_windows), lengthen the context, or drop the layer"
                )
            if n < 4:
                raise ConfigError(f"model {mcfg.name!r}, layer {L.name}: N = {n} rows per cell, need ≥ 4")
            plans[mcfg.name][L.index] = lp
    return plans
