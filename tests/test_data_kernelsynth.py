"""KernelSynth: kernels match scikit-learn's, samples have the analytic covariance,
seeds reproduce."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# The package attribute ``isofast.data.kernelsynth`` is the function; the
# module's private helpers are imported by name from the module path.
from isofast.data.kernelsynth import (
    PRESETS,
    RBF,
    ConstantKernel,
    DotProduct,
    ExpSineSquared,
    Product,
    RationalQuadratic,
    Sum,
    WhiteKernel,
    _factorize,
    factor,
    kernel_bank,
    kernel_matrix,
    kernelsynth,
    preset,
    synthetic_set,
)


def _sklearn_equivalent(k):
    sk = pytest.importorskip("sklearn.gaussian_process.kernels")
    if isinstance(k, DotProduct):
        return sk.DotProduct(sigma_0=k.sigma_0)
    if isinstance(k, RBF):
        return sk.RBF(length_scale=k.length_scale)
    if isinstance(k, RationalQuadratic):
        return sk.RationalQuadratic(length_scale=k.length_scale, alpha=k.alpha)
    if isinstance(k, ExpSineSquared):
        return sk.ExpSineSquared(length_scale=k.length_scale, periodicity=k.periodicity)
    if isinstance(k, WhiteKernel):
        return sk.WhiteKernel(noise_level=k.noise_level)
    if isinstance(k, ConstantKernel):
        return sk.ConstantKernel(constant_value=k.constant_value)
    raise AssertionError(k)


def test_bank_matches_sklearn_parameterisation():
    # Chronos sampled with scikit-learn kernels; ours must be the same functions.
    L = 97
    x = np.linspace(0, 1, L)
    bank = kernel_bank(L)
    assert len(bank) == 33  # Chronos' KERNEL_BANK size
    for name, k in bank.items():
        ref = _sklearn_equivalent(k)(x[:, None])
        np.testing.assert_allclose(k(x), ref, rtol=1e-12, atol=1e-14, err_msg=name)
        # the Toeplitz grid path gives the same matrix
        np.testing.assert_allclose(kernel_matrix(k, L), ref, rtol=1e-10, atol=1e-13, err_msg=name)


def test_compositions_are_elementwise_and_match_sklearn():
    sk = pytest.importorskip("sklearn.gaussian_process.kernels")
    x = np.linspace(0, 1, 50)
    k = (RBF(0.1) + WhiteKernel(0.5)) * ExpSineSquared(1.0, 0.2) + DotProduct(1.0) * 2.0
    ref = (sk.RBF(0.1) + sk.WhiteKernel(0.5)) * sk.ExpSineSquared(1.0, 0.2) + sk.DotProduct(1.0) * sk.ConstantKernel(
        2.0
    )
    np.testing.assert_allclose(k(x), ref(x[:, None]), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(kernel_matrix(k, 50), ref(x[:, None]), rtol=1e-10, atol=1e-13)
    assert not k.low_rank and (DotProduct(1.0) * ConstantKernel(3.0)).low_rank


def test_preset_parameters_documented():
    L = 1024
    assert preset("Seasonality_0.25H", L) == ExpSineSquared(1.0, 96 / L)
    assert preset("Seasonality_0.5W", L) == ExpSineSquared(1.0, 336 / L)
    assert preset("DotProduct_0") == DotProduct(0.0)
    assert preset("RBF_0.1") == RBF(0.1)
    assert preset("RationalQuadratic_10") == RationalQuadratic(1.0, 10.0)
    assert preset("WhiteKernel_0.1") == WhiteKernel(0.1)
    assert len(PRESETS) == 10 and all(preset(p) is not None for p in PRESETS)
    with pytest.raises(KeyError, match="RBF_0.1"):  # message lists known names
        preset("RBF_42")


@pytest.mark.parametrize("name", PRESETS)
def test_empirical_covariance_matches_kernel(name):
    """S = X^T X / n (zero mean known) against K, entry by entry.

    For a Gaussian vector, Var(x_i x_j) = K_ij^2 + K_ii K_jj, so
    z_ij = (S_ij - K_ij) / sqrt((K_ij^2 + K_ii K_jj) / n) is ~N(0, 1). The
    threshold is the Bonferroni bound for a family-wise false-alarm rate of
    1e-4 over the L(L+1)/2 distinct entries (t ~ 5.6); the fixed seed makes
    the outcome deterministic.
    """
    from scipy.stats import norm

    L, n = 64, 4000
    X = kernelsynth(n, L, kernel=name, seed=123)
    K = kernel_matrix(name, L)
    S = X.T @ X / n
    d = np.diag(K)
    var = (K**2 + np.outer(d, d)) / n
    floor = 1e-24 * max(d.max(), 1.0) ** 2  # DotProduct_0 has K_00 = 0 exactly
    z = (S - K) / np.sqrt(np.maximum(var, floor))
    iu = np.triu_indices(L)
    t = norm.isf(1e-4 / (2 * iu[0].size))
    assert np.abs(z[iu]).max() < t, (name, np.abs(z[iu]).max(), t)
    if name.startswith("WhiteKernel"):
        # independent entries: the mean of z^2 is 1 within a few percent
        off = np.triu_indices(L, 1)
        assert abs(np.mean(z[off] ** 2) - 1.0) < 0.15

    # Smooth kernels make the entries above nearly one random variable, so the
    # entrywise test has little power (RationalQuadratic_1 vs _10 would pass).
    # Whitened test: on the eigenvectors u_k of K with lambda_k > 1e-3 lambda_max
    # (so the 1e-6 jitter moves W by < 1e-3), y_k = u_k^T x / sqrt(lambda_k) are
    # i.i.d. N(0, 1), so W = Y^T Y / n has sqrt(n) W_kl ~ N(0, 1) off the
    # diagonal and sqrt(n / 2) (W_kk - 1) ~ N(0, 1) on it.
    w, U = np.linalg.eigh(K)
    keep = w > 1e-3 * w.max()
    Y = (X @ U[:, keep]) / np.sqrt(w[keep])
    W = Y.T @ Y / n
    r = W.shape[0]
    zw = np.sqrt(n) * (W - np.eye(r))
    zw[np.diag_indices(r)] /= np.sqrt(2.0)
    iw = np.triu_indices(r)
    tw = norm.isf(1e-4 / (2 * iw[0].size))
    assert np.abs(zw[iw]).max() < tw, (name, np.abs(zw[iw]).max(), tw)


def test_covariance_test_has_power():
    # The same statistic rejects a near miss: RationalQuadratic alpha 1 vs 10.
    from scipy.stats import norm

    L, n = 64, 4000
    X = kernelsynth(n, L, kernel="RationalQuadratic_1", seed=123)
    K = kernel_matrix("RationalQuadratic_10", L)
    w, U = np.linalg.eigh(K)
    keep = w > 1e-3 * w.max()
    Y = (X @ U[:, keep]) / np.sqrt(w[keep])
    W = Y.T @ Y / n
    r = W.shape[0]
    zw = np.sqrt(n) * (W - np.eye(r))
    zw[np.diag_indices(r)] /= np.sqrt(2.0)
    assert np.abs(zw).max() > 2 * norm.isf(1e-4 / (r * (r + 1)))


def test_random_composition_covariance():
    # A fixed composite kernel through the same sampler.
    k = (RBF(0.3) + WhiteKernel(0.2)) * ExpSineSquared(1.0, 0.25) + DotProduct(0.5)
    L, n = 32, 4000
    X = kernelsynth(n, L, kernel=k, seed=7)
    K = kernel_matrix(k, L)
    d = np.diag(K)
    z = (X.T @ X / n - K) / np.sqrt((K**2 + np.outer(d, d)) / n)
    assert np.abs(z).max() < 5.6


def test_low_rank_kernels_use_exact_root():
    f = factor("DotProduct_0", 128)
    assert f.method == "eigh" and f.jitter == 0.0
    X = kernelsynth(20, 128, kernel="DotProduct_0", seed=1)
    # x x' has rank 1: every sample is a line through the origin, exactly
    x = np.linspace(0, 1, 128)
    slopes = X[:, -1]
    np.testing.assert_allclose(X, np.outer(slopes, x), atol=1e-10)
    g = factor("RBF_1", 128)
    assert g.method == "cholesky" and 0 < g.jitter <= 1e-4 * 1.0
    assert factor("RBF_1", 128) is g  # cached


def test_seeds_reproduce_and_differ():
    a = kernelsynth(8, 256, kernel="RBF_0.1", seed=5)
    b = kernelsynth(8, 256, kernel="RBF_0.1", seed=5)
    c = kernelsynth(8, 256, kernel="RBF_0.1", seed=6)
    assert a.dtype == np.float64 and a.shape == (8, 256)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    r1, k1 = kernelsynth(6, 128, seed=11, return_kernels=True)
    r2, k2 = kernelsynth(6, 128, seed=11, return_kernels=True)
    np.testing.assert_array_equal(r1, r2)
    assert k1 == k2 and len(k1) == 6
    assert not np.allclose(r1, kernelsynth(6, 128, seed=12))


def test_prefix_property_and_max_kernels():
    # the first m series do not depend on how many are drawn
    np.testing.assert_array_equal(kernelsynth(3, 64, seed=2), kernelsynth(7, 64, seed=2)[:3])

    def leaves(k):
        if isinstance(k, (Sum, Product)):
            return leaves(k.k1) + leaves(k.k2)
        return [k]

    _, kernels = kernelsynth(40, 64, max_kernels=2, seed=3, return_kernels=True)
    bank = set(kernel_bank(64).values())
    counts = [len(leaves(k)) for k in kernels]
    assert set(counts) == {1, 2}
    assert all(leaf in bank for k in kernels for leaf in leaves(k))
    _, single = kernelsynth(10, 64, max_kernels=1, seed=3, return_kernels=True)
    assert all(k in bank for k in single)


def test_synthetic_set_is_order_independent():
    full = synthetic_set(n_per_kernel=5, length=128, seed=0)
    assert list(full) == list(PRESETS)
    assert all(v.shape == (5, 128) for v in full.values())
    alone = synthetic_set(["RBF_1"], n_per_kernel=5, length=128, seed=0)
    np.testing.assert_array_equal(alone["RBF_1"], full["RBF_1"])
    other = synthetic_set(["RBF_1"], n_per_kernel=5, length=128, seed=1)
    assert not np.allclose(other["RBF_1"], full["RBF_1"])
    custom = synthetic_set({"mine": RBF(0.5)}, n_per_kernel=2, length=16)
    assert custom["mine"].shape == (2, 16)


def test_bad_arguments():
    with pytest.raises(ValueError):
        kernelsynth(-1)
    with pytest.raises(TypeError):
        kernelsynth(2.5)
    with pytest.raises(ValueError):
        kernelsynth(2, 0)
    with pytest.raises(ValueError):
        kernelsynth(2, 16, max_kernels=0)
    with pytest.raises(ValueError, match="method"):
        kernelsynth(2, 16, kernel="RBF_1", method="svd")
    with pytest.raises(TypeError):
        kernelsynth(2, 16, kernel=3)
    with pytest.raises(ValueError):
        RBF(0.0)
    with pytest.raises(TypeError):
        RBF(1.0) + "a"


@settings(max_examples=25, deadline=None)
@given(
    ls=st.floats(0.05, 5.0),
    alpha=st.floats(0.1, 10.0),
    period=st.floats(0.02, 2.0),
    L=st.integers(2, 40),
)
def test_gram_matrices_are_psd_and_factor_reproduces_them(ls, alpha, period, L):
    k = RBF(ls) * ExpSineSquared(1.0, period) + RationalQuadratic(ls, alpha)
    K = kernel_matrix(k, L)
    np.testing.assert_allclose(K, K.T, atol=1e-14)
    assert np.linalg.eigvalsh(K).min() > -1e-10 * np.abs(K).max()
    f = _factorize(k, K, L, "auto")
    np.testing.assert_allclose(f.matrix @ f.matrix.T, K + f.jitter * np.eye(L), atol=1e-9)
