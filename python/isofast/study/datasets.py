"""Test and training windows of a study dataset, and the perturbed test inputs.

Splits (time-ordered, so no target is ever seen in training)
------------------------------------------------------------
* ``registry`` / ``csv`` (one long series of length L): the test windows are
  the last ``n_test`` windows with non-overlapping targets, starts
  ``t_k = L − C − H − k·H`` (k = 0..n_test−1). Training windows (for models
  trained per dataset, i.e. PatchTST) slide with stride 1 over
  ``x[: t_min + C]``, the part before the first test target, so training
  targets never overlap a test target (test *contexts* may overlap training
  data, as in any rolling-origin evaluation). Missing values are filled by
  linear interpolation (``nan="interpolate"``).
* ``kernelsynth``: ``n_test + n_train_series`` series of the named preset
  are drawn (seeded); the first ``n_test`` give one test window each, at the
  series start (``mode="first"``, as the reference study: context
  ``x[:C]``, target ``x[C:C+H]``); the rest give sliding training windows
  (stride ``max(1, H // 2)``).

Perturbations act on the test **contexts** only (targets untouched):
``noise`` is the study's ``noised_input a`` (:func:`isofast.data.add_noise`),
``shorten`` its "harder" setting (:func:`isofast.data.shorten_context`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from isofast.study.config import DatasetConfig, PerturbationConfig, stable_hash


@dataclass
class DatasetSplit:
    """Test windows (what the cells forecast) and training windows of one dataset."""

    name: str
    config: DatasetConfig
    test_context: np.ndarray  # (n_test, C)
    test_target: np.ndarray  # (n_test, H)
    train_context: np.ndarray  # (n_train, C)
    train_target: np.ndarray  # (n_train, H)
    history: np.ndarray  # in-sample series before each test target, for MASE (n_test, ≥ C)
    key: str = ""

    @property
    def context(self) -> int:
        return int(self.test_context.shape[1])

    @property
    def horizon(self) -> int:
        return int(self.test_target.shape[1])

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "context": self.context,
            "horizon": self.horizon,
            "n_test": int(self.test_context.shape[0]),
            "n_train": int(self.train_context.shape[0]),
            "key": self.key,
        }


def array_digest(*arrays: np.ndarray) -> str:
    """sha256 (16 hex digits) over shapes and float64 bytes of ``arrays``."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a, dtype=np.float64)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _series(cfg: DatasetConfig) -> np.ndarray:
    if cfg.source == "registry":
        from isofast.data import load

        s = load(cfg.name, nan="interpolate", column=cfg.column or None)
        return np.asarray(s.values, dtype=np.float64)
    from isofast.data import read_csv

    out = read_csv(cfg.path, column=cfg.column or None, nan="interpolate")
    if len(out) != 1:
        raise ValueError(f"dataset {cfg.name!r}: {cfg.path} has {len(out)} columns; name one with column =")
    return np.asarray(out[0].values, dtype=np.float64)


def _sliding(values: np.ndarray, C: int, H: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    W = C + H
    if values.shape[-1] < W:
        return np.empty((0, C)), np.empty((0, H))
    starts = np.arange(0, values.shape[-1] - W + 1, stride)
    idx = starts[:, None] + np.arange(W)[None, :]
    win = values[idx]
    return win[:, :C].copy(), win[:, C:].copy()


def load_split(cfg: DatasetConfig, seed: int = 0) -> DatasetSplit:
    """Build the test/training windows of one dataset (module docstring)."""
    C, H, n = cfg.context, cfg.horizon, cfg.n_test
    if cfg.source == "kernelsynth":
        from isofast.data import synthetic_set

        X = synthetic_set([cfg.kernel], n_per_kernel=n + cfg.n_train_series, length=cfg.length, seed=seed)[cfg.kernel]
        test_c, test_t = X[:n, :C].copy(), X[:n, C : C + H].copy()
        hist = test_c.copy()
        tr_c, tr_t = [], []
        for row in X[n:]:
            c, t = _sliding(row, C, H, max(1, H // 2))
            tr_c.append(c)
            tr_t.append(t)
        train_c = np.concatenate(tr_c) if tr_c else np.empty((0, C))
        train_t = np.concatenate(tr_t) if tr_t else np.empty((0, H))
    else:
        x = _series(cfg)
        L = x.size
        starts = [L - C - H - k * H for k in range(n)]
        if starts[-1] < 0:
            fit = (L - C - H) // H + 1
            raise ValueError(
                f"dataset {cfg.name!r}: {L} points hold at most {max(fit, 0)} test windows of "
                f"context {C} + horizon {H} with non-overlapping targets, not n_test={n}"
            )
        starts = starts[::-1]  # chronological
        test_c = np.stack([x[s : s + C] for s in starts])
        test_t = np.stack([x[s + C : s + C + H] for s in starts])
        hist = test_c.copy()
        train_c, train_t = _sliding(x[: starts[0] + C], C, H, 1)
    # The config and seed determine the data; the array digest guards against a
    # changed dataset package or generator under the same config.
    key = stable_hash(cfg.key(), seed, array_digest(test_c, test_t, train_c, train_t))
    return DatasetSplit(cfg.name, cfg, test_c, test_t, train_c, train_t, hist, key)


@dataclass
class CellInputs:
    """The (perturbed) test contexts of one (dataset, perturbation) and the targets."""

    dataset: str
    perturbation: str
    contexts: np.ndarray  # (n, C') after the perturbation
    targets: np.ndarray  # (n, H), never perturbed
    history: np.ndarray  # clean contexts, for scale-free metrics (MASE)
    key: str


def perturb(split: DatasetSplit, p: PerturbationConfig, seed: int = 0) -> CellInputs:
    """Apply perturbation ``p`` to the test contexts of ``split``."""
    from isofast.data import add_noise, shorten_context

    ctx = split.test_context
    if p.kind == "noise":
        # one seed per (dataset, perturbation): the noise of two cells differs
        s = int(stable_hash(seed, split.name, p.name, n=8), 16)
        ctx = add_noise(ctx, p.level, seed=s)
    elif p.kind == "shorten":
        ctx = shorten_context(ctx, p.fraction)
    key = stable_hash(split.key, p.key(), seed)
    return CellInputs(split.name, p.name, np.asarray(ctx, np.float64), split.test_target, split.history, key)


def take_windows(inputs: CellInputs, n: int) -> CellInputs:
    """The first ``n`` windows of ``inputs`` (``n = 0``: all of them)."""
    if n <= 0 or n >= inputs.contexts.shape[0]:
        return inputs
    return CellInputs(
        inputs.dataset,
        inputs.perturbation,
        inputs.contexts[:n],
        inputs.targets[:n],
        inputs.history[:n],
        stable_hash(inputs.key, "windows", n),
    )
