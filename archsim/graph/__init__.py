"""Operator graphs: Op descriptions (op.py), the phase-graph builder (build.py) for MLA/MoE and GQA
models at any scale, exact parameter counts (params.py), expert-load distributions
(expert_load.py), formats and shards (precision.py) and the --small rule (small.py)."""
from archsim.graph.build import build_decode, build_prefill
from archsim.graph.expert_load import ExpertLoad, measured_load, uniform_load, zipf_load
from archsim.graph.params import ParamCounts, count_params, kv_bytes_per_token
from archsim.graph.precision import Precision, Shard, precision_from_names, scenario_precision
from archsim.graph.small import small_variant

__all__ = ["build_decode", "build_prefill", "ExpertLoad", "measured_load", "uniform_load", "zipf_load",
           "ParamCounts", "count_params", "kv_bytes_per_token", "Precision", "Shard", "precision_from_names",
           "scenario_precision", "small_variant"]
