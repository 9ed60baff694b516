"""Shared pytest fixtures: tiny models, series and data used by several test files."""

# models (capture)
import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_models():
    """Tiny random models by architecture, built once per session (seed 0)."""
    pytest.importorskip("torch")
    from isofast.models import tiny_model

    cache: dict = {}

    def get(arch: str):
        if arch not in cache:
            cache[arch] = tiny_model(arch, seed=0)
        return cache[arch]

    return get


@pytest.fixture(scope="module")
def one_torch_thread():
    """Decoding is a chain of tiny GEMMs: one thread is fastest on a shared
    CI machine (see isofast.forecast._torch_threads). Restored after the module."""
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def short_series():
    """Three series of unequal length (unequal token counts in a batch)."""
    t = np.arange(40, dtype=float)
    return [
        10 + 3 * np.sin(t[:23] / 3),
        -2.5 + 0.1 * t[:40] + np.cos(t[:40]),
        np.array([0.0, 0.5, -1.25, 3.0, 2.0, 1.0, 0.0]),
    ]


# time-series foundation models (tests/test_tsfm_*.py)
@pytest.fixture(scope="session")
def co2():
    """The Mauna Loa CO2 series (statsmodels), gaps interpolated: a real
    series for the TSFM forecasts."""
    pytest.importorskip("statsmodels")
    import isofast

    s = isofast.data.load("co2", nan="interpolate")
    return np.asarray(s.values, np.float64)
