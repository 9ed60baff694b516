"""KernelSynth: synthetic series drawn from Gaussian-process priors.

After Chronos (Ansari et al. 2024, "Chronos: Learning the Language of Time
Series", Sec. 4.2 and Algorithm 2). A series of length ``L`` is one draw

    y ~ N(0, K),   K_ij = k(x_i, x_j),   x = linspace(0, 1, L),

from a zero-mean GP prior whose covariance ``k`` is either one kernel of a
fixed bank or a random composition of up to ``max_kernels`` of them by ``+``
and ``*`` (both preserve positive semi-definiteness).

Kernels (numpy, same parameterisation as scikit-learn, which Chronos used;
``d = x - x'``):

=====================  =========================================================
``DotProduct(s0)``     ``s0**2 + x*x'``                (linear trend; rank <= 2)
``RBF(l)``             ``exp(-d**2 / (2 l**2))``
``RationalQuadratic``  ``(1 + d**2 / (2 alpha l**2)) ** -alpha``
``ExpSineSquared``     ``exp(-2 sin(pi |d| / p)**2 / l**2)``   (seasonality)
``WhiteKernel(s)``     ``s * [x == x']``  (``s * I`` on the grid)
``ConstantKernel(c)``  ``c``                           (level; rank 1)
=====================  =========================================================

Seasonality periods
-------------------
Chronos ties the periodicity of ``ExpSineSquared`` to common sampling
frequencies: a cycle of ``P`` points is ``periodicity = P / L`` on the unit
interval (Chronos fixed ``L = 1024``; for another ``length`` we keep ``P / length``
so the cycle keeps ``P`` points; strictly ``P (L - 1) / L`` points, since the
grid step is ``1 / (L - 1)``, exactly as in Chronos). :data:`SEASONALITY_PERIODS` holds the bank,
label -> points per cycle (Chronos' order; its duplicates kept on purpose, as
they weight the random draws the same way):

=========  ======  ============================================================
label      P       meaning (sampling step -> cycle)
=========  ======  ============================================================
H          24      hourly -> daily
0.5H       48      30 min -> daily
0.25H      96      15 min -> daily
W          168     hourly -> weekly
0.5W       336     30 min -> weekly
0.25W      672     15 min -> weekly
D7         7       daily -> weekly
D14        14      daily -> fortnightly
D30        30      daily -> monthly
D60        60      daily -> two months
D365       365     daily -> yearly
D730       730     daily -> two years
W4         4       weekly -> monthly
W26        26      weekly -> half-yearly
W52        52      weekly -> yearly
M4         4       monthly -> four months
M6         6       monthly -> half-yearly
M12        12      monthly -> yearly
Q4         4       quarterly -> yearly
Q40        40      quarterly -> decade
Y10        10      yearly -> decade
=========  ======  ============================================================

Chronos comments its first six entries "H, 0.5H, 0.25H, H, 0.5H, 0.25H" (24,
48, 96, then the same times 7). We read the number as the *sampling step in
hours* and the letter as the cycle, renaming the weekly triple ``W, 0.5W,
0.25W`` so that every label is unique.

The reference study's ten presets (:data:`PRESETS`)
----------------------------------------------------
The study (Shelim et al. 2025) names its single-kernel sets but its generator
is not public; these are our reconstructions, with scikit-learn defaults
(``length_scale = 1``) wherever the name does not say otherwise:

========================  =====================================================
``DotProduct_0``          ``DotProduct(sigma_0=0)``: ``x x'``, lines through 0
``DotProduct_1``          ``DotProduct(sigma_0=1)``: ``1 + x x'``
``Seasonality_0.5W``      ``ExpSineSquared(length_scale=1, periodicity=336/L)``:
                          a weekly cycle sampled every 30 min (3.05 cycles in
                          1024 points). Alternative reading, not used: a
                          twice-weekly step with a yearly cycle (104 points).
``Seasonality_0.25H``     ``ExpSineSquared(length_scale=1, periodicity=96/L)``:
                          a daily cycle sampled every 15 min (Chronos' entry
                          labelled ``0.25H``; 10.7 cycles in 1024 points)
``RationalQuadratic_1``   ``RationalQuadratic(length_scale=1, alpha=1)``
``RationalQuadratic_10``  ``RationalQuadratic(length_scale=1, alpha=10)``
``RBF_0.1``               ``RBF(length_scale=0.1)``
``RBF_1``                 ``RBF(length_scale=1)``
``WhiteKernel_1``         ``WhiteKernel(noise_level=1)``: i.i.d. N(0, 1)
``WhiteKernel_0.1``       ``WhiteKernel(noise_level=0.1)``: i.i.d. N(0, 0.1)
========================  =====================================================

Sampling
--------
For each (kernel, L) one factor ``A`` with ``A A^T ~= K`` is computed and
cached (:func:`factor`); ``n`` series are then ``Z A^T`` for ``Z`` an
``n x L`` standard-normal matrix: one GEMM instead of ``n`` SVDs
(``sklearn.gaussian_process.GaussianProcessRegressor.sample_y`` calls
``numpy.random.multivariate_normal``, which takes an SVD of ``K`` every call).

``method="auto"`` picks:

* ``"eigh"`` for kernels that are low-rank by construction (``DotProduct``,
  ``ConstantKernel`` and sums/products made only of them):
  ``A = U diag(sqrt(lambda))`` with eigenvalues below ``L eps lambda_max`` set
  to 0 (rounding noise) is exact for a singular PSD matrix,
  whereas a jittered Cholesky would add spurious white noise to a line.
* ``"cholesky"`` otherwise: ``chol(K + j I)`` with jitter
  ``j = 1e-6 * mean(diag K)``, escalated x10 up to ``1e-4 * mean(diag K)``
  if the factorisation fails; if it still fails we fall back to ``"eigh"``.
  The jitter is far below the sampling error of any realistic use (it changes
  each variance by 1e-6 relative; at most 1e-4 after escalation, which
  ``KernelFactor.jitter`` records).

Gram matrices of stationary kernels (all but ``DotProduct``) on the uniform
grid are Toeplitz: they are evaluated on the ``L`` lags, composed there (sums
and products of stationary kernels stay stationary) and expanded once.

Random compositions follow Chronos' Algorithm 2: draw ``j ~ U{1..max_kernels}``
kernels from the bank with replacement, fold them left to right with an
operator drawn uniformly from ``{+, *}``.
"""

from __future__ import annotations

import contextlib
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "Kernel",
    "DotProduct",
    "RBF",
    "RationalQuadratic",
    "ExpSineSquared",
    "WhiteKernel",
    "ConstantKernel",
    "Sum",
    "Product",
    "SEASONALITY_PERIODS",
    "PRESETS",
    "preset",
    "kernel_bank",
    "kernel_matrix",
    "KernelFactor",
    "factor",
    "clear_cache",
    "kernelsynth",
    "synthetic_set",
    "random_kernel",
]

SeedLike = int | np.random.SeedSequence | None


# --------------------------------------------------------------------------- kernels


def _as_1d(x: np.ndarray | Sequence[float]) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:  # scikit-learn's (n, 1) layout
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"kernel inputs must be 1-D (time points), got shape {arr.shape}")
    return arr


class Kernel:
    """A covariance function on 1-D inputs; ``k1 + k2`` and ``k1 * k2`` compose.

    Subclasses are frozen dataclasses, so kernels are hashable and compare by
    value: that is what keys the factor cache.
    """

    #: True when every Gram matrix has rank bounded independently of its size.
    low_rank: bool = False

    def __call__(self, x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        """Gram matrix ``K[i, j] = k(x_i, y_j)`` (``y = x`` when omitted)."""
        x = _as_1d(x)
        y_ = x if y is None else _as_1d(y)
        return self._gram(x, y_, y is None)

    def _gram(self, x: np.ndarray, y: np.ndarray, same: bool) -> np.ndarray:
        # Stationary kernels define ``_profile(r)``, k as a function of |x - x'|.
        return self._profile(np.abs(np.subtract.outer(x, y)))

    def _profile(self, r: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} defines no Gram matrix")

    def _grid(self, length: int) -> _GridGram:
        """Gram matrix on ``linspace(0, 1, length)``, Toeplitz-compressed when stationary."""
        if type(self)._profile is not Kernel._profile:
            step = 1.0 / (length - 1) if length > 1 else 0.0
            return _GridGram(lags=self._profile(np.arange(length) * step))
        return _GridGram(full=self(np.linspace(0.0, 1.0, length)))

    def __add__(self, other: object) -> Kernel:
        return Sum(self, _as_kernel(other))

    def __radd__(self, other: object) -> Kernel:
        return Sum(_as_kernel(other), self)

    def __mul__(self, other: object) -> Kernel:
        return Product(self, _as_kernel(other))

    def __rmul__(self, other: object) -> Kernel:
        return Product(_as_kernel(other), self)


def _as_kernel(obj: object) -> Kernel:
    if isinstance(obj, Kernel):
        return obj
    if isinstance(obj, (int, float, np.floating, np.integer)) and not isinstance(obj, bool):
        return ConstantKernel(float(obj))
    raise TypeError(f"cannot combine a kernel with {type(obj).__name__}")


@dataclass(frozen=True)
class DotProduct(Kernel):
    """``k(x, x') = sigma_0**2 + x x'`` (a GP over straight lines)."""

    sigma_0: float = 1.0
    low_rank = True

    def _gram(self, x, y, same):
        return self.sigma_0**2 + np.multiply.outer(x, y)


@dataclass(frozen=True)
class RBF(Kernel):
    """``k = exp(-d**2 / (2 l**2))`` (squared exponential)."""

    length_scale: float = 1.0

    def __post_init__(self):
        if not self.length_scale > 0:
            raise ValueError(f"length_scale must be > 0, got {self.length_scale}")

    def _profile(self, r):
        return np.exp(-0.5 * (r / self.length_scale) ** 2)


@dataclass(frozen=True)
class RationalQuadratic(Kernel):
    """``k = (1 + d**2 / (2 alpha l**2)) ** -alpha`` (scale mixture of RBFs)."""

    length_scale: float = 1.0
    alpha: float = 1.0

    def __post_init__(self):
        if not (self.length_scale > 0 and self.alpha > 0):
            raise ValueError(f"length_scale and alpha must be > 0, got {self.length_scale}, {self.alpha}")

    def _profile(self, r):
        return (1.0 + r**2 / (2.0 * self.alpha * self.length_scale**2)) ** (-self.alpha)


@dataclass(frozen=True)
class ExpSineSquared(Kernel):
    """``k = exp(-2 sin(pi |d| / periodicity)**2 / length_scale**2)`` (periodic)."""

    length_scale: float = 1.0
    periodicity: float = 1.0

    def __post_init__(self):
        if not (self.length_scale > 0 and self.periodicity > 0):
            raise ValueError(f"length_scale and periodicity must be > 0, got {self.length_scale}, {self.periodicity}")

    def _profile(self, r):
        s = np.sin(np.pi * r / self.periodicity)
        return np.exp(-2.0 * (s / self.length_scale) ** 2)


@dataclass(frozen=True)
class WhiteKernel(Kernel):
    """``k = noise_level`` on the diagonal of ``K(x)``, 0 elsewhere.

    As in scikit-learn, ``K(x, y)`` with an explicit ``y`` is all zeros: white
    noise is a property of one sample, not of coinciding coordinates.
    """

    noise_level: float = 1.0

    def __post_init__(self):
        if not self.noise_level >= 0:
            raise ValueError(f"noise_level must be >= 0, got {self.noise_level}")

    def _gram(self, x, y, same):
        if same:
            return self.noise_level * np.eye(x.shape[0])
        return np.zeros((x.shape[0], y.shape[0]))

    def _grid(self, length):
        lags = np.zeros(length)
        lags[:1] = self.noise_level
        return _GridGram(lags=lags)


@dataclass(frozen=True)
class ConstantKernel(Kernel):
    """``k = constant_value`` (a random level; rank 1)."""

    constant_value: float = 1.0
    low_rank = True

    def __post_init__(self):
        if not self.constant_value >= 0:
            raise ValueError(f"constant_value must be >= 0, got {self.constant_value}")

    def _gram(self, x, y, same):
        return np.full((x.shape[0], y.shape[0]), float(self.constant_value))

    def _profile(self, r):
        return np.full(np.shape(r), float(self.constant_value))


@dataclass(frozen=True)
class Sum(Kernel):
    """``k1 + k2``."""

    k1: Kernel
    k2: Kernel

    @property
    def low_rank(self) -> bool:  # type: ignore[override]
        return self.k1.low_rank and self.k2.low_rank

    def _gram(self, x, y, same):
        return self.k1._gram(x, y, same) + self.k2._gram(x, y, same)

    def _grid(self, length):
        return self.k1._grid(length).combine(self.k2._grid(length), np.add)


@dataclass(frozen=True)
class Product(Kernel):
    """``k1 * k2`` (elementwise: the Schur product of PSD matrices is PSD)."""

    k1: Kernel
    k2: Kernel

    @property
    def low_rank(self) -> bool:  # type: ignore[override]
        return self.k1.low_rank and self.k2.low_rank

    def _gram(self, x, y, same):
        return self.k1._gram(x, y, same) * self.k2._gram(x, y, same)

    def _grid(self, length):
        return self.k1._grid(length).combine(self.k2._grid(length), np.multiply)


@dataclass
class _GridGram:
    """A Gram matrix on the uniform grid: ``lags`` (first row of a symmetric
    Toeplitz matrix, for stationary kernels) or an explicit ``full`` matrix.

    Sums and products of stationary kernels stay stationary, so compositions
    are evaluated on L lags and materialised once (O(L) transcendental calls
    instead of O(L^2))."""

    lags: np.ndarray | None = None
    full: np.ndarray | None = None

    def matrix(self) -> np.ndarray:
        if self.full is not None:
            return self.full
        import scipy.linalg

        return scipy.linalg.toeplitz(self.lags)

    def combine(self, other: _GridGram, op) -> _GridGram:
        if self.lags is not None and other.lags is not None:
            return _GridGram(lags=op(self.lags, other.lags))
        return _GridGram(full=op(self.matrix(), other.matrix()))


# --------------------------------------------------------------------------- banks

#: Points per seasonal cycle, by label (see the module docstring's table).
SEASONALITY_PERIODS: dict[str, int] = {
    "H": 24,
    "0.5H": 48,
    "0.25H": 96,
    "W": 24 * 7,
    "0.5W": 48 * 7,
    "0.25W": 96 * 7,
    "D7": 7,
    "D14": 14,
    "D30": 30,
    "D60": 60,
    "D365": 365,
    "D730": 730,
    "W4": 4,
    "W26": 26,
    "W52": 52,
    "M4": 4,
    "M6": 6,
    "M12": 12,
    "Q4": 4,
    "Q40": 40,
    "Y10": 10,
}

#: The reference study's ten single-kernel sets, in its order.
PRESETS: tuple[str, ...] = (
    "DotProduct_0",
    "DotProduct_1",
    "Seasonality_0.5W",
    "Seasonality_0.25H",
    "RationalQuadratic_1",
    "RationalQuadratic_10",
    "RBF_0.1",
    "RBF_1",
    "WhiteKernel_1",
    "WhiteKernel_0.1",
)


def _check_length(length: int) -> int:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)):
        raise TypeError(f"length must be an int, got {type(length).__name__}")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    return int(length)


def kernel_bank(length: int = 1024) -> dict[str, Kernel]:
    """Chronos' 33-kernel bank, by name, with periods for series of ``length``.

    Names: ``Seasonality_<label>`` for :data:`SEASONALITY_PERIODS`,
    ``DotProduct_{0,1,10}``, ``RBF_{0.1,1,10}``, ``RationalQuadratic_{0.1,1,10}``,
    ``WhiteKernel_{0.1,1}``, ``ConstantKernel``. Duplicated periods (4 points
    under W4, M4 and Q4) are kept, as in Chronos, so random draws weigh them alike.
    """
    length = _check_length(length)
    bank: dict[str, Kernel] = {
        f"Seasonality_{label}": ExpSineSquared(1.0, p / length) for label, p in SEASONALITY_PERIODS.items()
    }
    for s in (0.0, 1.0, 10.0):
        bank[f"DotProduct_{s:g}"] = DotProduct(sigma_0=s)
    for ls in (0.1, 1.0, 10.0):
        bank[f"RBF_{ls:g}"] = RBF(length_scale=ls)
    for a in (0.1, 1.0, 10.0):
        bank[f"RationalQuadratic_{a:g}"] = RationalQuadratic(length_scale=1.0, alpha=a)
    for nl in (0.1, 1.0):
        bank[f"WhiteKernel_{nl:g}"] = WhiteKernel(noise_level=nl)
    bank["ConstantKernel"] = ConstantKernel(1.0)
    return bank


def preset(name: str, length: int = 1024) -> Kernel:
    """The kernel behind a named single-kernel set (any :func:`kernel_bank` name).

    Raises ``KeyError`` listing the known names.
    """
    bank = kernel_bank(length)
    try:
        return bank[name]
    except KeyError:
        raise KeyError(f"unknown kernel preset {name!r}; known: {', '.join(bank)}") from None


def _resolve(kernel: Kernel | str, length: int) -> Kernel:
    if isinstance(kernel, Kernel):
        return kernel
    if isinstance(kernel, str):
        return preset(kernel, length)
    raise TypeError(f"kernel must be a Kernel or a preset name, got {type(kernel).__name__}")


def kernel_matrix(kernel: Kernel | str, x: np.ndarray | Sequence[float] | int) -> np.ndarray:
    """Gram matrix of ``kernel`` at the points ``x``.

    ``x`` may be an int ``L``, meaning the KernelSynth grid ``linspace(0, 1, L)``;
    a preset name is then resolved for that length (for explicit points its
    periods assume ``L = len(x)``).
    """
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        length = _check_length(int(x))
        return _resolve(kernel, length)._grid(length).matrix()
    pts = _as_1d(x)
    return _resolve(kernel, max(len(pts), 1))(pts)


# --------------------------------------------------------------------------- factors


@dataclass(frozen=True)
class KernelFactor:
    """A square root ``A`` of the Gram matrix on the KernelSynth grid: ``A A^T = K + jitter I``."""

    kernel: Kernel
    length: int
    matrix: np.ndarray
    method: str  # "cholesky" or "eigh"
    jitter: float  # absolute jitter added to the diagonal (0 for eigh)

    def to_dict(self) -> dict:
        return {
            "kernel": repr(self.kernel),
            "length": self.length,
            "method": self.method,
            "jitter": self.jitter,
        }


_CACHE_BYTES = 128 * 2**20  # bounded LRU: 16 factors at L = 1024
_cache: OrderedDict[tuple, KernelFactor] = OrderedDict()
_cache_bytes = 0
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Drop every cached factor."""
    global _cache_bytes
    with _cache_lock:
        _cache.clear()
        _cache_bytes = 0


def _single_thread_blas():
    # OpenBLAS's threaded potrf/syevd gain nothing at n ~ 1000 on few cores,
    # and lose 10-80x when the cores are oversubscribed (measured on the 2-core
    # dev box during a parallel build: Cholesky 1024 took 17 ms on one thread,
    # 60-1400 ms on two). threadpoolctl is optional (it comes with scikit-learn).
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - depends on the environment
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _factorize(kernel: Kernel, K: np.ndarray, length: int, method: str) -> KernelFactor:
    with _single_thread_blas():
        return _factorize_impl(kernel, K, length, method)


def _factorize_impl(kernel: Kernel, K: np.ndarray, length: int, method: str) -> KernelFactor:
    import scipy.linalg

    if method == "auto":
        method = "eigh" if kernel.low_rank else "cholesky"
    if method == "cholesky":
        scale = float(np.mean(np.diag(K))) if K.size else 1.0
        scale = scale if scale > 0 else 1.0
        eye_idx = np.diag_indices_from(K)
        for rel in (1e-6, 1e-5, 1e-4):
            Kj = K.copy()  # kept intact for a retry with more jitter
            Kj[eye_idx] += rel * scale
            try:
                A = scipy.linalg.cholesky(Kj, lower=True, overwrite_a=True, check_finite=False)
            except np.linalg.LinAlgError:
                continue
            return KernelFactor(kernel, length, A, "cholesky", rel * scale)
        method = "eigh"  # every jitter failed: fall back to the exact PSD root
    if method == "eigh":
        w, U = np.linalg.eigh(K)
        # Eigenvalues below L * eps * lambda_max are rounding noise of a singular
        # PSD matrix (either sign); their square roots (~1e-7 relative) would
        # add spurious directions, so they are zeroed.
        tol = K.shape[0] * np.finfo(np.float64).eps * max(float(w[-1]) if w.size else 0.0, 0.0)
        A = U * np.sqrt(np.where(w > tol, w, 0.0))
        return KernelFactor(kernel, length, A, "eigh", 0.0)
    raise ValueError(f"method must be 'auto', 'cholesky' or 'eigh', got {method!r}")


def factor(kernel: Kernel | str, length: int = 1024, method: str = "auto") -> KernelFactor:
    """Square root of ``kernel``'s Gram matrix on ``linspace(0, 1, length)``.

    Kept in a process-wide LRU cache of at most 128 MiB of factors (16 at
    ``L = 1024``; :func:`clear_cache` empties it), keyed by the kernel's value,
    ``length`` and ``method``.
    """
    global _cache_bytes
    length = _check_length(length)
    kern = _resolve(kernel, length)
    key = (kern, length, method)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    K = kern._grid(length).matrix()
    if not np.all(np.isfinite(K)):
        raise ValueError(f"kernel {kern!r} gives a non-finite Gram matrix at length {length}")
    out = _factorize(kern, K, length, method)
    with _cache_lock:
        if key not in _cache and out.matrix.nbytes <= _CACHE_BYTES:
            _cache[key] = out
            _cache_bytes += out.matrix.nbytes
            while _cache_bytes > _CACHE_BYTES:
                _, old = _cache.popitem(last=False)
                _cache_bytes -= old.matrix.nbytes
    return out


# --------------------------------------------------------------------------- sampling


def _seed_sequence(seed: SeedLike) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
        return np.random.SeedSequence(seed)
    raise TypeError(f"seed must be an int, a SeedSequence or None, got {type(seed).__name__}")


def random_kernel(rng: np.random.Generator, bank: Sequence[Kernel], max_kernels: int = 5) -> Kernel:
    """One Chronos composition: ``j ~ U{1..max_kernels}`` bank kernels drawn with
    replacement, folded left to right with ``+`` or ``*`` (each with prob. 1/2)."""
    j = int(rng.integers(1, max_kernels + 1))
    idx = rng.integers(0, len(bank), size=j)
    ops = rng.integers(0, 2, size=j - 1)
    k = bank[int(idx[0])]
    for i, op in zip(idx[1:], ops):
        k = Sum(k, bank[int(i)]) if op == 0 else Product(k, bank[int(i)])
    return k


def kernelsynth(
    n_series: int,
    length: int = 1024,
    *,
    kernel: Kernel | str | None = None,
    max_kernels: int = 5,
    seed: SeedLike = 0,
    method: str = "auto",
    return_kernels: bool = False,
) -> np.ndarray | tuple[np.ndarray, list[Kernel]]:
    """Draw ``n_series`` KernelSynth series of ``length`` points (float64, ``(n, L)``).

    ``kernel=None`` draws a fresh random composition for every series (Chronos'
    Algorithm 2, bank :func:`kernel_bank`); a preset name or a :class:`Kernel`
    samples that one GP prior. The same ``seed`` gives the same array; the
    first ``m`` rows of a draw equal a draw of ``m`` series with that seed.

    Structure and Gaussian noise come from two independent streams spawned
    from ``seed``; series ``i`` is ``A_i z_i`` with ``z_i`` row ``i`` of one
    ``(n, L)`` standard-normal draw. ``return_kernels=True`` also returns the
    kernel of every row (``(X, kernels)``).

    ``method``: ``"auto"`` (eigh for low-rank kernels, jittered Cholesky
    otherwise), ``"cholesky"`` or ``"eigh"``; see the module docstring.
    """
    if isinstance(n_series, bool) or not isinstance(n_series, (int, np.integer)):
        raise TypeError(f"n_series must be an int, got {type(n_series).__name__}")
    if n_series < 0:
        raise ValueError(f"n_series must be >= 0, got {n_series}")
    length = _check_length(length)
    if isinstance(max_kernels, bool) or not isinstance(max_kernels, (int, np.integer)):
        raise TypeError("max_kernels must be an int")
    if max_kernels < 1:
        raise ValueError(f"max_kernels must be >= 1, got {max_kernels}")
    if method not in ("auto", "cholesky", "eigh"):
        raise ValueError(f"method must be 'auto', 'cholesky' or 'eigh', got {method!r}")
    struct_ss, noise_ss = _seed_sequence(seed).spawn(2)
    noise = np.random.default_rng(noise_ss)

    if kernel is not None:
        f = factor(kernel, length, method)
        Z = noise.standard_normal((int(n_series), length))
        X = Z @ f.matrix.T
        return (X, [f.kernel] * int(n_series)) if return_kernels else X

    struct = np.random.default_rng(struct_ss)
    bank = list(kernel_bank(length).values())
    kernels = [random_kernel(struct, bank, max_kernels) for _ in range(int(n_series))]
    Z = noise.standard_normal((int(n_series), length))
    out = np.empty_like(Z)
    groups: dict[Kernel, list[int]] = {}
    for i, k in enumerate(kernels):
        groups.setdefault(k, []).append(i)
    # Random compositions rarely repeat across calls: factor each distinct one
    # once for this call (rows sharing it are grouped) without filling the cache.
    for k, rows in groups.items():
        A = _factorize(k, k._grid(length).matrix(), length, method).matrix
        out[rows] = Z[rows] @ A.T
    return (out, kernels) if return_kernels else out


def _name_seed(seed: SeedLike, name: str) -> np.random.SeedSequence:
    # A per-name stream: a kernel's series do not depend on which other kernels
    # are requested, or in what order.
    base = _seed_sequence(seed)
    return np.random.SeedSequence(entropy=base.entropy, spawn_key=tuple(base.spawn_key) + (zlib.crc32(name.encode()),))


def synthetic_set(
    kernels: Sequence[str] | Mapping[str, Kernel] = PRESETS,
    n_per_kernel: int = 1000,
    length: int = 1024,
    seed: SeedLike = 0,
    *,
    method: str = "auto",
) -> dict[str, np.ndarray]:
    """The study's single-kernel synthetic set: ``{name: (n_per_kernel, length)}``.

    ``kernels`` is a sequence of preset names (default: the ten of
    :data:`PRESETS`) or a mapping ``name -> Kernel``. Each name gets its own
    random stream derived from ``(seed, name)``.
    """
    items: list[tuple[str, Kernel | str]]
    if isinstance(kernels, Mapping):
        items = list(kernels.items())
    elif isinstance(kernels, str):
        items = [(kernels, kernels)]
    else:
        items = [(k, k) if isinstance(k, str) else (repr(k), k) for k in kernels]
    return {
        name: kernelsynth(n_per_kernel, length, kernel=k, seed=_name_seed(seed, name), method=method)
        for name, k in items
    }
