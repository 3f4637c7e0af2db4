"""archsim: a hardware simulator and performance model for frontier LLMs.

The package root is a facade: ``archsim.estimate`` and ``archsim.kernel_time`` are loaded on first use,
so ``import archsim`` stays light and the layers below never depend on the front doors.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"estimate": "archsim.api", "Report": "archsim.report.summary", "ConfigError": "archsim.errors",
            "kernel_time": "archsim.kernel_api"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name == "__version__":  # from the package metadata on first use (archsim.version), not a second literal
        return importlib.import_module("archsim.version").version()
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'archsim' has no attribute {name!r}")
