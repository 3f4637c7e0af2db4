"""``estimate(workload, hardware, **overrides) -> Report``: the whole flow, as a cost model for other tools.

YAML -> validated records -> a Deployment (pools with resolved layouts, mapping/resolve.py) -> per-device phase
graphs priced by the cost model -> a Report (report/metrics.py). ``archsim run`` prints the same Report.
"""
from __future__ import annotations

import os

from archsim.config.deployment import DeploymentSpec, PoolSpec
from archsim.config.hardware import Hardware, load_hardware
from archsim.config.workload import Workload, load_workload
from archsim.errors import ConfigError
from archsim.mapping.capacity import max_batch, max_context
from archsim.mapping.resolve import (LAYOUT_OVERRIDES, OPTION_OVERRIDES, SCENARIO_OVERRIDES, Resolved,
                                     resolve_deployment)
from archsim.report.metrics import report_of

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
    "low_latency"), deployment (a YAML file with a ``deployment:`` section of pools, e.g. a disaggregated xPyD).
    Unknown names and bad values raise ConfigError.
    """
    resolved = plan(workload, hardware, **overrides)
    return report_of(resolved, needs=lambda: _needs(resolved, overrides),
                     capacity=lambda par, context, act: (max_batch(resolved.workload.model,
                                                                   resolved.deployment.hardware, par,
                                                                   resolved.deployment.precision, context=context,
                                                                   activation_bytes_per_seq=act),
                                                         max_context(resolved.workload.model,
                                                                     resolved.deployment.hardware, par,
                                                                     resolved.deployment.precision,
                                                                     batch=resolved.scenario.batch,
                                                                     activation_bytes_per_seq=act)))


def _needs(resolved: Resolved, overrides: dict) -> str:
    """What a deployment that does not fit needs: its bytes, and the smallest auto layout that fits for the phase
    asked (same batch, lengths and formats)."""
    bad = next(p for p in resolved.plan.pools if not p.fits)
    mem, hw = bad.memory, resolved.deployment.hardware
    text = (f"{mem.total_bytes / 1e9:.1f} GB per device on {bad.parallelism.devices} x {hw.name} "
            f"(capacity {mem.capacity_bytes / 1e9:.1f} GB)")
    keep = {k: v for k, v in overrides.items() if k in ("batch", "prompt_len", "output_len", "weights",
                                                         "expert_weights", "kv_cache", "activations", "mtp",
                                                         "expert_load", "prefill_chunk", "attention")}
    phase = resolved.deployment.phase if bad.role == "both" else bad.role
    one_pool = DeploymentSpec(pools=(PoolSpec(role="both"),))
    try:
        auto = resolve_deployment(resolved.workload, hw, devices="auto", phase=phase, deployment=one_pool, **keep)
    except ConfigError:
        return text + "; no deployment of up to the largest searched size fits"
    pool = auto.plan.pools[0]
    if pool.fits:
        return text + (f"; the smallest that fits{'' if phase == 'both' else ' for ' + phase} is "
                       f"{pool.parallelism.devices} devices ({pool.parallelism.label()})")
    return text + "; no searched deployment fits"
