"""Operator graphs: Op descriptions (op.py), the phase-graph builder (build.py) for MLA/MoE and GQA
models at any scale, its DAG container (dag.py), exact parameter counts (params.py), expert-load distributions
(expert_load.py), formats and shards (precision.py) and the --small rule (small.py).

The names below are loaded on first use, so importing one submodule (``archsim.graph.op``) does not import the
others (cold start: a process imports only what it uses)."""
from __future__ import annotations

import importlib

_EXPORTS = {"build_decode": "build", "build_prefill": "build",
            "ExpertLoad": "expert_load", "measured_load": "expert_load", "uniform_load": "expert_load",
            "zipf_load": "expert_load",
            "ParamCounts": "params", "count_params": "params", "kv_bytes_per_token": "params",
            "Precision": "precision", "Shard": "precision", "precision_from_names": "precision",
            "scenario_precision": "precision",
            "small_variant": "small"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
