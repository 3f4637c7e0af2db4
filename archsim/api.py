"""``estimate(workload, hardware, **overrides) -> Report``: the whole flow, as a cost model for other tools.

YAML -> validated records -> a layout on devices (mapping) -> per-device phase graphs priced by the cost
model -> a Report. ``archsim run`` prints the same Report.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import replace
from math import ceil


from archsim.config.hardware import Hardware, load_hardware
from archsim.config.workload import AUTO, ExpertLoadSpec, Scenario, Workload, check_scenario, load_workload
from archsim.cost.phase import TERA, PhaseCost
from archsim.errors import ConfigError
from archsim.graph.expert_load import ExpertLoad, load_from_spec
from archsim.graph.params import count_params, kv_bytes_per_token
from archsim.graph.precision import Precision, scenario_precision
from archsim.mapping.capacity import max_batch, max_context
from archsim.mapping.parallel import LayoutPlan, plan_layout
from archsim.report.summary import (DecodeSummary, DeploymentSummary, EnergySummary, MemorySummary, ModelSummary,
                                    OpSummary, PrefillSummary, Report, ScenarioSummary)

SCENARIO_OVERRIDES = ("devices", "batch", "prompt_len", "output_len", "weights", "expert_weights", "kv_cache",
                      "activations", "mtp")
# expert_load: "uniform", "zipf:S", or an archsim.graph.expert_load.ExpertLoad (e.g. measured at small scale)
LAYOUT_OVERRIDES = ("tp", "ep", "pp", "dp", "attn_dp", "micro_batches")
OPTION_OVERRIDES = ("attention", "expert_load")


def estimate(workload: str | os.PathLike | Workload, hardware: str | os.PathLike | Hardware,
             **overrides) -> Report:
    """Project ``workload`` on ``hardware``.

    ``overrides`` replace scenario fields: devices (int or "auto"), batch (sequences per step across the
    deployment), prompt_len, output_len, weights, kv_cache, activations, mtp; layout degrees tp, ep, pp, dp,
    attn_dp, micro_batches (int or "auto"); attention ("flash" or "naive"); expert_load ("uniform", "zipf:S" or
    an ExpertLoad, e.g. ``small_run.projected_expert_load(run_small(...))``). Unknown names and bad values
    raise ConfigError.
    """
    wl = workload if isinstance(workload, Workload) else load_workload(workload)
    hw = hardware if isinstance(hardware, Hardware) else load_hardware(hardware)
    scenario, layout_kw, attention = _apply_overrides(wl.scenario, overrides, wl.model)
    precision = scenario_precision(scenario)
    load = _expert_load(wl.model, scenario, overrides.get("expert_load"))
    plan = plan_layout(wl.model, hw, devices=scenario.devices, batch=scenario.batch,
                       prompt_len=scenario.prompt_len, output_len=scenario.output_len, precision=precision,
                       mtp=scenario.mtp, expert_load=load, attention=attention, **layout_kw)
    return _report(wl, hw, scenario, precision, plan, attention, auto=scenario.devices == AUTO)


def _apply_overrides(sc: Scenario, overrides: dict, model) -> tuple[Scenario, dict, str]:
    known = SCENARIO_OVERRIDES + LAYOUT_OVERRIDES + OPTION_OVERRIDES
    for key in overrides:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f" (one of {', '.join(known)})"
            raise ConfigError(None, f"estimate(**overrides).{key}", f"a known override{hint}", key)
    fields = {k: overrides[k] for k in SCENARIO_OVERRIDES if k in overrides}
    for key in ("batch", "prompt_len", "output_len"):
        if key in fields and not _positive_int(fields[key]):
            raise ConfigError(None, key, "a positive integer", fields[key])
    if "devices" in fields and fields["devices"] != AUTO and not _positive_int(fields["devices"]):
        raise ConfigError(None, "devices", "a positive integer or 'auto'", fields["devices"])
    if "mtp" in fields and not isinstance(fields["mtp"], bool):
        raise ConfigError(None, "mtp", "true or false", fields["mtp"])
    scenario = replace(sc, **fields)
    check_scenario(scenario, model, None, "")
    base = sc.parallelism
    layout = {k: getattr(base, k, AUTO) for k in ("tp", "ep", "pp", "dp")}
    for key in LAYOUT_OVERRIDES:
        if key in overrides:
            if overrides[key] != AUTO and not _positive_int(overrides[key]):
                raise ConfigError(None, key, "a positive integer or 'auto'", overrides[key])
            layout[key] = overrides[key]
    layout = {k: (None if v == AUTO else v) for k, v in layout.items()}
    attention = overrides.get("attention", "flash")
    if attention not in ("flash", "naive"):
        raise ConfigError(None, "attention", "'flash' or 'naive'", attention)
    return scenario, layout, attention


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _report(wl: Workload, hw: Hardware, sc: Scenario, precision: Precision, plan: LayoutPlan, attention: str,
            *, auto: bool) -> Report:
    model = wl.model
    counts = count_params(model, mtp=sc.mtp)
    par = plan.parallelism
    model_summary = ModelSummary(
        name=wl.name, architecture=_architecture(model), total_params=counts.total, active_params=counts.active,
        kv_bytes_per_token=kv_bytes_per_token(model, precision.kv_cache), layers=model.num_hidden_layers,
        max_context=model.max_position_embeddings, mtp_params=counts.mtp)
    scenario = ScenarioSummary(prompt_len=sc.prompt_len, output_len=sc.output_len, batch=sc.batch,
                               weights=sc.weights, kv_cache=sc.kv_cache, activations=sc.activations)
    deployment = DeploymentSummary(devices=par.devices, hardware=hw.name, auto=auto,
                                   layout={**par.to_dict(), "label": par.label()})
    mem = plan.memory
    context = sc.prompt_len + sc.output_len
    act_per_seq = mem.activations_bytes / ceil(sc.batch / par.dp)
    memory = MemorySummary(per_device_bytes=mem.total_bytes, capacity_bytes=mem.capacity_bytes,
                           weights_bytes=mem.weights_bytes, kv_cache_bytes=mem.kv_cache_bytes,
                           activations_bytes=mem.activations_bytes, fits=mem.fits,
                           needs=None if mem.fits else _needs(wl, hw, sc, precision, plan),
                           max_batch_at_context=max_batch(model, hw, par, precision, context=context,
                                                          activation_bytes_per_seq=act_per_seq),
                           max_context_at_batch=max_context(model, hw, par, precision, batch=sc.batch,
                                                            activation_bytes_per_seq=act_per_seq))
    if not plan.fits or plan.prefill is None or plan.decode is None:
        return Report(workload=wl.name, model=model_summary, scenario=scenario, deployment=deployment,
                      memory=memory, prefill=None, decode=None, energy=None)
    pre_cost, dec_cost = plan.prefill.graph_cost, plan.decode.graph_cost
    prefill_tokens = sc.batch * sc.prompt_len
    pre = _phase(PrefillSummary, plan.prefill, pre_cost, hw, par.devices,
                 latency_s=plan.prefill.time_s, tokens_per_s=prefill_tokens / plan.prefill.time_s,
                 tokens_per_s_per_device=prefill_tokens / plan.prefill.time_s / par.devices)
    dec = _phase(DecodeSummary, plan.decode, dec_cost, hw, par.devices,
                 tpot_s=plan.decode.time_s, tokens_per_s=sc.batch / plan.decode.time_s,
                 tokens_per_s_per_device=sc.batch / plan.decode.time_s / par.devices, context=context)
    # deployment totals: every device's own dynamic energy, plus static power on every device for the step
    pre_j, dec_j = (b.deployment_dynamic_energy_j + par.devices * hw.static_power_w * b.time_s
                    for b in (plan.prefill, plan.decode))
    energy = EnergySummary(
        joules_per_token=dec_j / sc.batch,
        prefill_joules_per_token=pre_j / prefill_tokens,
        tops_per_watt=(plan.prefill.deployment_flops + plan.decode.deployment_flops) / (pre_j + dec_j) / TERA)
    return Report(workload=wl.name, model=model_summary, scenario=scenario, deployment=deployment, memory=memory,
                  prefill=pre, decode=dec, energy=energy)


def _expert_load(model, sc: Scenario, override) -> ExpertLoad | None:
    """The routing distribution: an override ("uniform", "zipf:S" or an ExpertLoad), else the scenario's."""
    if not model.is_moe:
        return None
    if isinstance(override, ExpertLoad):
        return override
    spec = sc.expert_load
    if isinstance(override, str):
        kind, _, value = override.partition(":")
        try:
            spec = ExpertLoadSpec(kind=kind, zipf_s=float(value) if value else None)
        except ValueError:
            raise ConfigError(None, "expert_load", "'uniform' or 'zipf:S' with a number S", override) from None
        if kind not in ("uniform", "zipf") or (kind == "zipf") != bool(value):
            raise ConfigError(None, "expert_load", "'uniform' or 'zipf:S' with a number S", override)
    elif override is not None:
        raise ConfigError(None, "expert_load", "'uniform', 'zipf:S' or an ExpertLoad", override)
    return load_from_spec(spec, model.n_routed_experts, model.num_experts_per_tok)


def _architecture(model) -> str:
    attention = "MLA" if model.attention_kind == "mla" else "GQA"
    if model.is_moe:
        return (f"{attention} + MoE ({model.n_routed_experts} routed, {model.n_shared_experts} shared, "
                f"top-{model.num_experts_per_tok})")
    return f"{attention} + dense SwiGLU"


def _phase(cls, breakdown, cost: PhaseCost, hw: Hardware, devices: int, **fields):
    """The step on the bottleneck device: its own FLOPs, main-memory bytes and dynamic energy (its pipeline
    stage's layers, 1/cp of each micro-batch, ``micro_batches`` times; mapping/phases.py), plus its static
    power over the whole step time.
    """
    time_s = breakdown.time_s
    flops = breakdown.flops_per_device
    main = hw.main_memory.name
    hbm = breakdown.main_memory_bytes_per_device
    energy = breakdown.dynamic_energy_j_per_device + hw.static_power_w * time_s
    peak = hw.engine_for("matrix").peak_flop_per_s.get(cost.mfu_dtype, 0.0)
    heaviest = tuple(
        OpSummary(name=n, kind=cost.ops[n].kind, time_s=cost.ops[n].time_s, share=cost.ops[n].time_s / cost.time_s,
                  bound=cost.ops[n].bound, flops=cost.ops[n].flops,
                  hbm_bytes=cost.ops[n].bytes_by_level[main])
        for n in cost.heaviest)
    return cls(time_s=time_s, flops=flops, hbm_bytes=hbm, bound=_bound(breakdown, cost),
               time_s_by_bound=dict(cost.time_s_by_bound), mfu=flops / (time_s * peak) if peak else 0.0,
               hbm_bandwidth_utilisation=hbm / (time_s * hw.main_memory.bandwidth_bytes_per_s),
               energy_j=energy, tops_per_watt=flops / energy / TERA if energy else 0.0, heaviest_ops=heaviest,
               communication_s=breakdown.communication_s, exposed_communication_s=breakdown.exposed_s, **fields)


def _bound(breakdown, cost: PhaseCost) -> str:
    """The phase's binding resource: communication when exposed communication outweighs every compute
    bound, else the bound that accounts for most op time."""
    if breakdown.exposed_s > max(cost.time_s_by_bound.values(), default=0.0) * breakdown.micro_batches:
        return "communication"
    return cost.bound


def _needs(wl: Workload, hw: Hardware, sc: Scenario, precision: Precision, plan: LayoutPlan) -> str:
    mem = plan.memory
    text = (f"{mem.total_bytes / 1e9:.1f} GB per device on {plan.parallelism.devices} x {hw.name} "
            f"(capacity {mem.capacity_bytes / 1e9:.1f} GB)")
    try:
        auto = plan_layout(wl.model, hw, devices=AUTO, batch=sc.batch, prompt_len=sc.prompt_len,
                           output_len=sc.output_len, precision=precision, mtp=sc.mtp)
    except ConfigError:
        return text + "; no deployment of up to the largest searched size fits"
    if auto.fits:
        return text + f"; the smallest that fits is {auto.parallelism.devices} devices ({auto.parallelism.label()})"
    return text + "; no searched deployment fits"
