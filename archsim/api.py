"""``estimate(workload, hardware, **overrides) -> Report``: the whole flow, as a cost model for other tools.

YAML -> validated records -> a Deployment (pools with resolved layouts, mapping/resolve.py) -> per-device phase
graphs priced by the cost model -> a Report (report/metrics.py). ``archsim run`` prints the same Report.
"""
from __future__ import annotations

import os

from archsim.config.hardware import Hardware, load_hardware
from archsim.config.workload import Workload, load_workload
from archsim.mapping.resolve import (LAYOUT_OVERRIDES, OPTION_OVERRIDES, SCENARIO_OVERRIDES, Resolved,
                                     resolve_deployment)
from archsim.report.metrics import report_of
from archsim.report.summary import Report

__all__ = ["estimate", "plan", "SCENARIO_OVERRIDES", "LAYOUT_OVERRIDES", "OPTION_OVERRIDES"]


def plan(workload: str | os.PathLike | Workload, hardware: str | os.PathLike | Hardware, **overrides) -> Resolved:
    """The workload's Deployment on ``hardware`` with its pools priced (what ``estimate`` reports)."""
    wl = workload if isinstance(workload, Workload) else load_workload(workload)
    hw = hardware if isinstance(hardware, Hardware) else load_hardware(hardware)
    return resolve_deployment(wl, hw, **overrides)


def estimate(workload: str | os.PathLike | Workload, hardware: str | os.PathLike | Hardware,
             **overrides) -> Report:
    """Project ``workload`` on ``hardware``.

    ``overrides`` replace scenario fields: devices (int or "auto"), batch (sequences in one step of one instance),
    prompt_len, output_len, weights, expert_weights, kv_cache, activations, mtp; layout degrees tp (attention TP),
    attn_dp (alias dp), moe_tp, moe_ep (alias ep), pp, cp, micro_batches (int or "auto"; auto: chosen per phase by
    price), redundant_experts; options attention ("flash" or "naive"), expert_load ("uniform", "zipf:S" or an
    ExpertLoad, e.g. ``small_run.projected_expert_load(run_small(...))``), phase ("both", "prefill" or "decode"),
    prefill_chunk (tokens per prefill forward, 0: none), cuda_graphs (bool), ep_mode ("throughput" /
    "low_latency"), deployment (a YAML file with a ``deployment:`` section of pools, e.g. a disaggregated xPyD),
    stack (a serving stack: "sglang", "vllm", "trtllm", "deepseek", a stack YAML or a Stack; docs/stacks.md).
    Unknown names and bad values raise ConfigError.
    """
    return report_of(plan(workload, hardware, **overrides), overrides)
