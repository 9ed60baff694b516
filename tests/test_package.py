"""Package surface: public names, stubs, and a numpy-only import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import isofast


def test_import_needs_numpy_only():
    code = "import sys, isofast; isofast.analyze; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_public_names_of_the_design_contract():
    for name in (
        "analyze",
        "isoscore",
        "avg_cosine",
        "partition_isotropy",
        "effective_dim",
        "all_but_the_top",
        "self_similarity",
        "Moments",
        "cluster_isotropy",
        "log_partition_head",
        "IsotropyReport",
    ):
        assert callable(getattr(isofast, name)), name
    assert "cluster_isotropy" in dir(isofast)


def test_stub_and_marker_ship_with_the_package():
    pkg = Path(isofast.__file__).parent
    assert (pkg / "py.typed").exists()
    stub = (pkg / "_core.pyi").read_text()
    from isofast import _core

    public = [n for n in dir(_core) if not n.startswith("_")]
    missing = [n for n in public if f"def {n}(" not in stub and f"class {n}" not in stub]
    assert not missing, f"_core.pyi lacks {missing}"


def test_capture_and_forecast_are_callable_modules():
    import isofast.capture as capture_module
    import isofast.forecast as forecast_module

    assert isofast.capture is capture_module and callable(isofast.capture)
    assert isofast.forecast is forecast_module and callable(isofast.forecast)
    assert isofast.capture.__call__.__doc__ == capture_module.capture.__doc__
