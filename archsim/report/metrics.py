"""Report metrics as pure functions of a priced deployment: the phase summaries (MFU, bandwidth used, energy, the
binding resource), energy per token over every device, the system throughput, and the Report that holds them."""
from __future__ import annotations

from typing import Callable

from archsim.config.hardware import Hardware
from archsim.cost.phase import TERA, PhaseCost
from archsim.graph.params import count_params, kv_bytes_per_token, kv_sequence_parts
from archsim.mapping.capacity import max_batch, max_context
from archsim.mapping.deployment import Deployment, DeploymentPlan, LayoutPlan
from archsim.mapping.phases import PhaseBreakdown
from archsim.mapping.resolve import Resolved, what_fits
from archsim.report.summary import (DecodeSummary, DeploymentSummary, EnergySummary, MemorySummary, ModelSummary,
                                    OpSummary, PrefillSummary, Report, ScenarioSummary, SystemSummary)


def report_of(resolved: Resolved, overrides: dict | None = None) -> Report:
    """The Report of a resolved deployment (mapping/resolve.py; ``overrides``: what resolved it, so a deployment
    that does not fit can say what would)."""
    wl, sc, dep, plan = resolved.workload, resolved.scenario, resolved.deployment, resolved.plan
    main = plan.pool("decode") or plan.pools[0]
    needs = lambda: what_fits(resolved, dict(overrides or {}))  # noqa: E731 - only called when needed

    def capacity(par, context: int, act: float) -> tuple[int, int]:
        # the pool's activation peak (one chunk forward, or the decode step) held whatever the batch: decode
        # activations grow with the batch, but are far smaller than the KV cache that bounds it
        return (max_batch(wl.model, dep.hardware, par, dep.precision, context=context, activation_bytes=act),
                max_context(wl.model, dep.hardware, par, dep.precision, batch=main.batch, activation_bytes=act))
    summary = dict(workload=wl.name, model=model_summary(wl.name, wl.model, dep, sc.mtp),
                   scenario=ScenarioSummary(prompt_len=sc.prompt_len, output_len=sc.output_len, batch=main.batch,
                                            weights=sc.weights, kv_cache=sc.kv_cache, activations=sc.activations),
                   deployment=deployment_summary(dep, plan, auto=resolved.auto),
                   memory=memory_summary(main, dep, needs if not plan.fits else None, capacity))
    if not plan.fits:
        return Report(**summary, prefill=None, decode=None, energy=None)
    pre_pool, dec_pool = plan.pool("prefill"), plan.pool("decode")
    pre = prefill_summary(pre_pool, dep.hardware) if pre_pool and pre_pool.prefill else None
    dec = decode_summary(dec_pool, dep.hardware) if dec_pool and dec_pool.decode else None
    return Report(**summary, prefill=pre, decode=dec, energy=energy_summary(plan, dep),
                  system=system_summary(plan, dep))


def model_summary(name: str, model, dep: Deployment, mtp: bool) -> ModelSummary:
    counts = count_params(model, mtp=mtp)
    return ModelSummary(name=name, architecture=architecture(model), total_params=counts.total,
                        active_params=counts.active, kv_bytes_per_token=kv_bytes_per_token(model, dep.precision.kv_cache),
                        layers=model.num_hidden_layers, max_context=model.max_position_embeddings, mtp_params=counts.mtp,
                        **_kv_per_sequence(model, dep))


def _kv_per_sequence(model, dep: Deployment) -> dict:
    """One sequence's KV at the deployment's context (prompt + output), split as graph.params.kv_sequence_parts."""
    return kv_sequence_parts(model, dep.context, dep.precision.kv_cache)


def architecture(model) -> str:
    attention = "MLA" if model.attention_kind == "mla" else "GQA"
    if model.is_moe:
        return (f"{attention} + MoE ({model.n_routed_experts} routed, {model.n_shared_experts or 0} shared, "
                f"top-{model.num_experts_per_tok})")
    return f"{attention} + dense SwiGLU"


def deployment_summary(dep: Deployment, plan: DeploymentPlan, *, auto: bool) -> DeploymentSummary:
    """Devices over every pool; ``layout`` the decode pool's (or the only pool's); ``pools`` each priced pool."""
    main = plan.pool("decode") or plan.pools[0]
    par = main.parallelism
    pools = tuple({"role": p.role, "instances": p.instances, "devices_per_instance": p.parallelism.devices,
                   "devices": p.parallelism.devices * p.instances, "batch": p.batch,
                   "layout": {**p.parallelism.to_dict(), "label": p.parallelism.label()},
                   "per_device_bytes": p.memory.total_bytes, "fits": p.fits} for p in plan.pools)
    return DeploymentSummary(devices=dep.devices, hardware=dep.hardware.name, auto=auto,
                             layout={**par.to_dict(), "label": par.label()}, pools=pools,
                             disaggregated=dep.disaggregated, phase=dep.phase,
                             prefill_chunk=dep.prefill_chunk, cuda_graphs=dep.cuda_graphs,
                             stack=_stack_summary(dep))


def _stack_summary(dep: Deployment) -> dict | None:
    """The stack's name, version, kernel libraries on the deployment's chip, DeepEP modes and host time."""
    stack = dep.stack
    if stack is None:
        return None
    chosen = stack.on(dep.hardware)
    return {"name": stack.name, "version": stack.version, "family": dep.hardware.family,
            "libraries": dict(chosen.libraries), "all_to_all": dict(chosen.all_to_all),
            "cuda_graph_max_batch": stack.cuda_graph_max_batch, "host_iteration_s": stack.host.iteration_s,
            "host_overlapped": stack.host.overlapped, "request_overhead_s": stack.host.request_s}


def memory_summary(pool: LayoutPlan, dep: Deployment, needs: Callable[[], str] | None,
                   capacity: Callable) -> MemorySummary:
    """The pool's busiest device; capacity limits at the pool's batch and context; ``needs`` (when some pool does
    not fit) says what it would take."""
    mem, par = pool.memory, pool.parallelism
    context = dep.context if pool.role != "prefill" else dep.prompt_len
    biggest, longest = capacity(par, context, mem.activations_bytes)
    return MemorySummary(per_device_bytes=mem.total_bytes, capacity_bytes=mem.capacity_bytes,
                         weights_bytes=mem.weights_bytes, kv_cache_bytes=mem.kv_cache_bytes,
                         activations_bytes=mem.activations_bytes, fits=mem.fits,
                         needs=needs() if needs is not None else None,
                         max_batch_at_context=biggest, max_context_at_batch=longest)


def prefill_summary(pool: LayoutPlan, hw: Hardware) -> PrefillSummary:
    """One instance's prefill step of its batch of prompts."""
    b = pool.prefill
    tokens = pool.batch * pool.prompt_len
    devices = pool.parallelism.devices
    return phase_summary(PrefillSummary, b, hw, latency_s=b.time_s, tokens_per_s=tokens / b.time_s,
                         tokens_per_s_per_device=tokens / b.time_s / devices)


def decode_summary(pool: LayoutPlan, hw: Hardware) -> DecodeSummary:
    """One instance's decode step at the end-of-generation context."""
    b = pool.decode
    devices = pool.parallelism.devices
    tokens = pool.batch * pool.tokens_per_step  # MTP: the accepted drafts' tokens too
    return phase_summary(DecodeSummary, b, hw, tpot_s=pool.tpot_s, tokens_per_s=tokens / b.time_s,
                         tokens_per_s_per_device=tokens / b.time_s / devices,
                         context=pool.prompt_len + pool.output_len, tokens_per_step=pool.tokens_per_step)


def phase_summary(cls, b: PhaseBreakdown, hw: Hardware, **fields):
    """The step on the bottleneck device: its own FLOPs, main-memory bytes and dynamic energy (its pipeline stage's
    layers, 1/cp of each micro-batch, for every forward; mapping/phases.py), plus its static power over the step and
    the active baseline over its busy time (``busy_time_s``)."""
    cost = b.graph_cost
    time_s = b.time_s
    main = hw.main_memory.name
    energy = b.dynamic_energy_j_per_device + static_energy_j(b, hw)
    peak = hw.engine_for("matrix").peak_flop_per_s.get(cost.mfu_dtype, 0.0)
    heaviest = tuple(
        OpSummary(name=n, kind=cost.ops[n].kind, time_s=cost.ops[n].time_s, share=cost.ops[n].time_s / cost.time_s,
                  bound=cost.ops[n].bound, flops=cost.ops[n].flops, hbm_bytes=cost.ops[n].bytes_by_level[main],
                  engine=cost.ops[n].engine)
        for n in cost.heaviest)
    flops, hbm = b.flops_per_device, b.main_memory_bytes_per_device
    return cls(time_s=time_s, flops=flops, hbm_bytes=hbm, bound=binding_resource(b, cost),
               time_s_by_bound=dict(cost.time_s_by_bound), mfu=flops / (time_s * peak) if peak else 0.0,
               hbm_bandwidth_utilisation=hbm / (time_s * hw.main_memory.bandwidth_bytes_per_s),
               energy_j=energy, tops_per_watt=flops / energy / TERA if energy else 0.0, heaviest_ops=heaviest,
               avg_power_w=energy / time_s if time_s > 0 else 0.0,
               communication_s=b.communication_s, exposed_communication_s=b.exposed_s, host_s=b.host_s,
               micro_batches=b.micro_batches, forwards=b.forwards, busy_replicas=b.busy_replicas, **fields)


def binding_resource(b: PhaseBreakdown, cost: PhaseCost) -> str:
    """The phase's binding resource: the host when the stack's host time the GPU waits for outweighs the rest of the
    step; communication when exposed communication outweighs every compute bound of the step; else the bound that
    accounts for most op time."""
    if b.host_s > b.time_s - b.host_s:
        return "host"
    if b.exposed_s > max(cost.time_s_by_bound.values(), default=0.0) * b.micro_batches * b.forwards:
        return "communication"
    return cost.bound


def phase_energy_j(b: PhaseBreakdown, pool: LayoutPlan, hw: Hardware) -> float:
    """A step's energy over one instance: every device's own dynamic energy plus static energy on every device."""
    return b.deployment_dynamic_energy_j + pool.parallelism.devices * static_energy_j(b, hw)


def busy_time_s(b: PhaseBreakdown) -> float:
    """The step's time with the device running kernels: all of it but the host time the GPU waits for."""
    return b.time_s - b.host_s


def static_energy_j(b: PhaseBreakdown, hw: Hardware) -> float:
    """One device's load-independent energy over the step: static power (idle plus always-on) over the whole step,
    the active baseline (``power.active_baseline``, docs/energy.md) over its busy time."""
    return hw.static_power_w * b.time_s + hw.power.active_baseline_w * busy_time_s(b)


def energy_summary(plan: DeploymentPlan, dep: Deployment) -> EnergySummary:
    """J per output token (decode pool), per prompt token (prefill pool) and TOPS/W over what was priced."""
    hw = dep.hardware
    pre_pool, dec_pool = plan.pool("prefill"), plan.pool("decode")
    pre = pre_pool.prefill if pre_pool else None
    dec = dec_pool.decode if dec_pool else None
    pre_j = phase_energy_j(pre, pre_pool, hw) if pre else 0.0
    dec_j = phase_energy_j(dec, dec_pool, hw) if dec else 0.0
    flops = (pre.deployment_flops if pre else 0.0) + (dec.deployment_flops if dec else 0.0)
    node_j = dec_j + host_energy_j(dec.time_s, dec_pool, hw) if dec and hw.power.host_per_node_w is not None else None
    return EnergySummary(joules_per_token=dec_j / dec_pool.batch if dec else None,
                         prefill_joules_per_token=pre_j / (pre_pool.batch * pre_pool.prompt_len) if pre else None,
                         tops_per_watt=flops / (pre_j + dec_j) / TERA if pre_j + dec_j > 0 else 0.0,
                         prefill_power_w_per_device=average_power_w(pre_j, pre, pre_pool) if pre else None,
                         decode_power_w_per_device=average_power_w(dec_j, dec, dec_pool) if dec else None,
                         joules_per_token_node=node_j / dec_pool.batch if node_j is not None else None,
                         joules_per_token_wall=(node_j * hw.power.pue / dec_pool.batch
                                                if node_j is not None and hw.power.pue is not None else None))


def average_power_w(energy_j: float, b: PhaseBreakdown, pool: LayoutPlan) -> float:
    """A phase's board power per device, averaged over the instance: its energy over devices x step time."""
    return energy_j / (pool.parallelism.devices * b.time_s) if b.time_s > 0 else 0.0


def host_energy_j(time_s: float, pool: LayoutPlan, hw: Hardware) -> float:
    """The rest of the instance's nodes (``power.host_per_node``: CPUs, NICs, switches, fans) over ``time_s``:
    the nodes its devices occupy, ceil(devices / chips per node)."""
    nodes = -(-pool.parallelism.devices // hw.node.chips_per_node)
    return hw.power.host_per_node_w * nodes * time_s


def system_summary(plan: DeploymentPlan, dep: Deployment) -> SystemSummary | None:
    """Requests and output tokens per second of the whole deployment in steady state, when both phases are priced.

    Aggregated: each instance prefills its batch of prompts, then decodes ``output_len`` steps (a static batch):
    instances x batch / (prefill latency + output_len x TPOT). Disaggregated: the prefill pool serves
    instances x batch / prefill latency requests/s, the decode pool instances x batch / (output_len x TPOT); the
    system runs at the smaller, which names the bound."""
    pre_pool, dec_pool = plan.pool("prefill"), plan.pool("decode")
    if not (pre_pool and dec_pool and pre_pool.prefill and dec_pool.decode):
        return None
    decode_s = dep.output_len * dec_pool.tpot_s
    if not dep.disaggregated:
        rate = dec_pool.instances * dec_pool.batch / (pre_pool.prefill.time_s + decode_s)
        bound = "prefill+decode"
    else:
        prefill_rate = pre_pool.instances * pre_pool.batch / pre_pool.prefill.time_s
        decode_rate = dec_pool.instances * dec_pool.batch / decode_s if decode_s > 0 else float("inf")
        rate, bound = min((prefill_rate, "prefill"), (decode_rate, "decode"))
    return SystemSummary(requests_per_s=rate, output_tokens_per_s=rate * dep.output_len,
                         output_tokens_per_s_per_device=rate * dep.output_len / dep.devices,
                         total_tokens_per_s_per_device=rate * (dep.prompt_len + dep.output_len) / dep.devices,
                         bound=bound)
