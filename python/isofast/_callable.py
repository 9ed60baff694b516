"""Modules that are also functions.

``isofast.capture`` and ``isofast.forecast`` name both a module and its main
function. Importing a submodule rebinds the package attribute to the module,
so instead the module itself is made callable: ``isofast.capture(...)`` calls
the function, and ``isofast.capture.CaptureResult`` still reaches the module.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable


def make_module_callable(module_name: str, func: Callable) -> None:
    module = sys.modules[module_name]

    class CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return func(*args, **kwargs)

    CallableModule.__call__.__doc__ = func.__doc__
    CallableModule.__name__ = f"{module_name}.CallableModule"
    module.__class__ = CallableModule
