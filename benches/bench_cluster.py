"""Clustered (local) isotropy: isofast vs the reference study's scikit-learn recipe.

Two parts, one run (``python benches/bench_cluster.py``):

* **reference** — 2,000 × 768 float32 anisotropic synthetic rows (8 clusters
  + four dominant directions + a common offset). isofast's
  ``reference_recipe`` against the study's recipe written with scikit-learn:
  centre, ``KMeans(n_clusters=k, random_state=42)`` with default settings for
  k = 2..16, ``silhouette_score`` for each, the 0.1 threshold, then a dense
  ``cosine_similarity`` matrix per re-centred cluster. Same rows for both.
  isofast is timed with ``spectra=False`` (exactly the recipe's outputs), with
  the default per-cluster spectra (partition isotropy and IsoScore per
  cluster on top), and with ``n_init=3``. Both sides run with all cores, then
  with one thread (scikit-learn limited through threadpoolctl), since a
  loaded machine punishes multi-threaded BLAS. Then the chosen k over several
  seeds / random states: with one k-means++ run per k it varies, for both.
  Times are medians of 3 (scikit-learn) and 7 (isofast) runs.
* **full** — 1,000,000 × 768 float32 rows in a memory-mapped ``.npy`` under
  ``benches/data/`` (written once, git-ignored): ``cluster_isotropy`` in full
  mode (fit on a 20,000-row sample, silhouette on 20,000 rows, every row
  assigned and the per-cluster statistics on all rows), first with
  ``spectra=False`` (the recipe's outputs), then with the per-cluster spectra
  (two more O(N·d²) passes: per-cluster co-moments and partition functions).
  Peak memory is the peak anonymous resident memory above the level at entry
  (the mapped input's file pages are not counted; see ``memwatch.py``). The
  file should be in the page cache (run twice if it was just evicted: a cold
  read of 2.9 GiB from this VM's disk alone takes far longer).

A third part repeats the reference comparison on 2,000 **real** LLM hidden
states (SmolLM2-135M-Instruct, layer 15, every token of a real series;
d = 576, the model's width), captured once with :func:`isofast.capture`.

Options: ``--only reference|real|full``, ``--rows N`` for the full part,
``--threads`` (default: all cores; applies to isofast and, through
threadpoolctl when installed, to scikit-learn's BLAS/OpenMP).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from memwatch import PeakMemory  # noqa: E402

from isofast.cluster import cluster_isotropy, reference_recipe  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def synth(n: int, d: int = 768, k: int = 8, seed: int = 0, out=None, chunk: int = 50_000) -> np.ndarray:
    """Anisotropic clustered rows: k Gaussian clusters (unit within-cluster
    noise), four shared dominant directions (std 10, 6, 4, 3) and a common
    offset of norm ~80 (as LLM hidden states have). float32, written in
    chunks into ``out`` when given (a memmap)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)).astype(np.float32) * 1.2
    dirs = np.linalg.qr(rng.normal(size=(d, 4)))[0].T.astype(np.float32)
    scales = np.array([10.0, 6.0, 4.0, 3.0], dtype=np.float32)
    offset = (rng.normal(size=d) * 80 / np.sqrt(d)).astype(np.float32)
    if out is None:
        out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        r = np.random.default_rng([seed, s])
        lab = r.integers(0, k, m)
        x = centres[lab] + r.standard_normal((m, d), dtype=np.float32)
        x += (r.standard_normal((m, 4), dtype=np.float32) * scales) @ dirs
        x += offset
        out[s : s + m] = x
    return out


def sklearn_recipe(X: np.ndarray):
    """The study's recipe (utils.cluster_embeddings + inter_cosine), scikit-learn."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.metrics.pairwise import cosine_similarity

    Y = X - X.mean(axis=0)
    sils, labels = [], []
    for k in range(2, 17):
        lab = KMeans(n_clusters=k, random_state=42).fit_predict(Y)
        sils.append(silhouette_score(Y, lab))
        labels.append(lab)
    b = int(np.argmax(sils))
    best_k, lab = (b + 2, labels[b]) if sils[b] >= 0.1 else (1, np.zeros(len(Y), dtype=int))
    cos = []
    for c in np.unique(lab):
        Z = Y[lab == c]
        Z = Z - Z.mean(axis=0)
        if len(Z) < 2:
            continue
        S = cosine_similarity(Z)
        cos.append((S.sum() - len(Z)) / (len(Z) * (len(Z) - 1)))
    return best_k, float(sils[b]), float(np.mean(cos))


def fmt_mib(b: int) -> str:
    return f"{b / 2**20:,.0f} MiB"


def _limits(n):
    """scikit-learn's BLAS/OpenMP thread limit (threadpoolctl), or a no-op."""
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(n)
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()


def real_hidden_states(n: int = 2000, layer: int = 15) -> np.ndarray:
    """``n`` real LLM hidden states: SmolLM2-135M-Instruct (the bundled real
    model), residual stream of ``layer`` at every token of the monthly
    sunspot series (pmdarima, LLMTime serialisation), captured once with
    :func:`isofast.capture` into ``benches/data/`` (git-ignored)."""
    from isofast.capture import capture
    from isofast.data import load
    from isofast.store import open_capture

    folder = os.path.join(DATA, f"smollm2_sunspots_monthly_layer{layer}")
    if not os.path.exists(os.path.join(folder, "manifest.json")):
        values = np.asarray(load("sunspots_monthly").values, dtype=np.float64)
        capture(
            "smollm2",
            [values[-600:]],
            layers=[layer],
            positions="all",
            out=folder,
            sites=("residual",),
            dtype="float32",
            context=600,
            window_mode="first",
            progress=False,
        )
    X = open_capture(folder).layer(layer, site="residual").to_numpy()
    if len(X) < n:
        raise SystemExit(f"the capture holds {len(X)} rows, fewer than {n}")
    return np.ascontiguousarray(X[:n], dtype=np.float32)


SK_REPEATS, ISO_REPEATS = 3, 7


def median_time(fn, repeats):
    """Median wall time of ``repeats`` calls and the last result: a single
    sub-second run is dominated by page faults and scheduler noise."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def part_reference(threads, n_seeds, real=False):
    if real:
        X = real_hidden_states()
        what = f"{X.shape[0]:,} x {X.shape[1]} float32 REAL SmolLM2-135M hidden states (layer 15, monthly sunspots)"
    else:
        X = synth(2000, seed=1)
        what = "2,000 x 768 float32 synthetic"
    reference_recipe(X[:200], n_threads=threads)  # warm-up: thread pool, code pages
    print(f"== reference mode: {what}, k = 2..16, threshold 0.1 ==")
    print(
        f"{'threads':<8}{'method':<46}{'seconds':>9}{'speed-up':>10}{'best k':>8}{'silhouette':>12}"
        f"{'inter-cluster cos':>19}{'peak mem':>11}"
    )
    for nt in [threads, 1] if threads != 1 else [1]:
        label = "all" if nt is None else str(nt)
        with _limits(nt) if nt is not None else _limits(os.cpu_count()):
            with PeakMemory() as pm:
                t_sk, (sk_k, sk_sil, sk_cos) = median_time(lambda: sklearn_recipe(X), SK_REPEATS)
        print(
            f"{label:<8}{'scikit-learn recipe (KMeans rs=42, dense cos)':<46}{t_sk:>9.3f}{'1.0x':>10}{sk_k:>8}"
            f"{sk_sil:>12.4f}{sk_cos:>19.6f}{fmt_mib(pm.extra_anon):>11}"
        )
        variants = [
            ("isofast reference_recipe (recipe outputs)", dict(spectra=False)),
            ("isofast reference_recipe + cluster spectra", dict(spectra=True)),
            ("isofast, n_init=3, recipe outputs", dict(spectra=False, n_init=3)),
        ]
        for name, kw in variants:
            with PeakMemory() as pm:
                t, r = median_time(
                    lambda: cluster_isotropy(X, sample_size=2000, seed=0, n_threads=nt, **kw), ISO_REPEATS
                )
            print(
                f"{'':<8}{name:<46}{t:>9.3f}{t_sk / t:>9.1f}x{r.best_k:>8}{r.silhouette:>12.4f}"
                f"{r.inter_cluster_cosine:>19.6f}{fmt_mib(pm.extra_anon):>11}"
            )
    if n_seeds:
        # With one k-means++ run per k (the recipe), the chosen k depends on the
        # seed, for scikit-learn's random_state as for isofast's seed.
        ks = [reference_recipe(X, seed=s, spectra=False, n_threads=threads).best_k for s in range(2 * n_seeds)]
        ks3 = [
            cluster_isotropy(X, sample_size=2000, n_init=3, seed=s, spectra=False, n_threads=threads).best_k
            for s in range(n_seeds)
        ]
        with _limits(1):
            sk = [sklearn_best_k(X, rs) for rs in [42] + list(range(n_seeds - 1))]
        print(
            f"best k by seed: isofast n_init=1 seeds 0..{2 * n_seeds - 1}: {ks}; isofast n_init=3 seeds "
            f"0..{n_seeds - 1}: {ks3}; scikit-learn random_state 42,0..{n_seeds - 2}: {sk}"
        )


def sklearn_best_k(X, rs):
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    Y = X - X.mean(axis=0)
    sil = {k: silhouette_score(Y, KMeans(n_clusters=k, random_state=rs).fit_predict(Y)) for k in range(2, 17)}
    k = max(sil, key=sil.get)
    return k if sil[k] >= 0.1 else 1


def part_full(threads, n_rows):
    os.makedirs(DATA, exist_ok=True)
    path = os.path.join(DATA, f"cluster_{n_rows}x768_f32.npy")
    if not os.path.exists(path):
        t0 = time.perf_counter()
        tmp = path + ".tmp"
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_rows, 768))
        synth(n_rows, seed=2, out=mm)
        mm.flush()
        del mm
        os.replace(tmp, path)
        print(f"(wrote {path} in {time.perf_counter() - t0:.1f} s)")
    X = np.load(path, mmap_mode="r")
    print(f"== full mode: {n_rows:,} x 768 float32 memmap ({X.nbytes / 2**30:.2f} GiB), k = 2..16 ==")
    out = []
    for spectra in (False, True):
        with PeakMemory() as pm:
            t0 = time.perf_counter()
            r = cluster_isotropy(X, n_threads=threads, spectra=spectra)
            t = time.perf_counter() - t0
        what = "+ per-cluster spectra" if spectra else "recipe outputs (spectra=False)"
        print(
            f"isofast cluster_isotropy(full), {what}: {t:.1f} s, best k {r.best_k}, "
            f"silhouette {r.silhouette:.4f}, inter-cluster cosine {r.inter_cluster_cosine:.6f}"
        )
        print(
            f"  fit rows {r.n_fit:,}, silhouette rows {r.n_silhouette:,}, labelled rows {len(r.labels):,}; "
            f"peak anonymous memory above entry {fmt_mib(pm.extra_anon)} "
            f"(peak RSS incl. mapped input pages {fmt_mib(pm.peak_rss)})"
        )
        print("  stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in r.timings.items()))
        out.append((t, pm.extra_anon))
    print("  cluster sizes:", [c["size"] for c in r.clusters])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["reference", "real", "full"])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=5, help="seed-stability runs of the reference part (0: skip)")
    a = ap.parse_args(argv)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load average "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}; numpy {np.__version__}"
    )
    if a.only in (None, "reference"):
        part_reference(a.threads, a.seeds)
    if a.only in (None, "reference", "real"):
        part_reference(a.threads, a.seeds, real=True)
    if a.only in (None, "full"):
        part_full(a.threads, a.rows)


if __name__ == "__main__":
    main()
