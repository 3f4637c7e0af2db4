"""From a workload, a chip and overrides to a priced Deployment, once: the one place the scenario, the layout flags
and a ``deployment:`` section become pools with resolved layouts (``estimate()``, ``run``, ``serve``, ``plan`` and
``sweep`` all start here)."""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, replace

from archsim.config.deployment import DeploymentSpec, PoolSpec, load_deployment
from archsim.config.hardware import Hardware
from archsim.config.stack import Stack, resolve_stack
from archsim.config.workload import AUTO, ExpertLoadSpec, Scenario, Workload, check_acceptance, check_scenario
from archsim.errors import ConfigError
from archsim.graph.expert_load import ExpertLoad, load_from_spec
from archsim.graph.precision import scenario_precision
from archsim.mapping.deployment import (DEFAULT_PREFILL_CHUNK, PHASES, Deployment, DeploymentPlan, LayoutPlan,
                                        Pool, price_deployment, price_pool)
from archsim.mapping.parallel import resolve_parallelism, smallest_fitting
from archsim.mapping.parallelism import Parallelism

SCENARIO_OVERRIDES = ("devices", "batch", "prompt_len", "output_len", "weights", "expert_weights", "kv_cache",
                      "activations", "mtp", "mtp_acceptance")
# attention TP / DP / CP, MoE TP x EP (``ep`` is ``moe_ep``'s alias, ``dp`` ``attn_dp``'s), PP, EPLB slots
LAYOUT_OVERRIDES = ("tp", "attn_dp", "dp", "moe_tp", "moe_ep", "ep", "pp", "cp", "micro_batches",
                    "redundant_experts")
# expert_load: "uniform", "zipf:S", or an archsim.graph.expert_load.ExpertLoad (e.g. measured at small scale);
# deployment: a YAML file with a top-level ``deployment:`` (config/deployment.py) or a DeploymentSpec
# stack: a name under stacks/ (``sglang``), a stack YAML path or an archsim.config.stack.Stack
OPTION_OVERRIDES = ("attention", "expert_load", "phase", "prefill_chunk", "cuda_graphs", "ep_mode", "deployment",
                    "stack")


@dataclass(frozen=True, kw_only=True)
class Resolved:
    """A deployment with its priced pools; ``auto``: some pool's device count was searched."""

    workload: Workload
    scenario: Scenario
    deployment: Deployment
    plan: DeploymentPlan
    auto: bool


def resolve_deployment(wl: Workload, hw: Hardware, *, cache: dict | None = None, **overrides) -> Resolved:
    """The workload's deployment on ``hw`` with ``overrides`` applied (names: ``SCENARIO_OVERRIDES``,
    ``LAYOUT_OVERRIDES``, ``OPTION_OVERRIDES``), auto degrees and device counts resolved, every pool priced.
    ``cache`` (for one workload, chip and formats) keeps priced graphs and weight bytes across calls, e.g. a
    search resolving many device counts. Unknown names and bad values raise ConfigError."""
    _check_names(overrides)
    scenario = _scenario(wl, overrides)
    spec = _spec(wl, overrides)
    stack = resolve_stack(overrides.get("stack"))
    if stack is not None:
        stack.on(hw)  # the chip's family and libraries checked before any pricing
    base = Deployment(model=wl.model, hardware=hw, precision=scenario_precision(scenario),
                      pools=tuple(Pool(role=p.role, layout=_placeholder()) for p in spec.pools),
                      batch=scenario.batch, prompt_len=scenario.prompt_len, output_len=scenario.output_len,
                      mtp=scenario.mtp, tokens_per_step=scenario.tokens_per_decode_step, phase=_phase(overrides), prefill_chunk=_chunk(overrides, spec, stack),
                      expert_load=_expert_load(wl.model, scenario, overrides.get("expert_load")),
                      attention=_attention(overrides), ep_mode=overrides.get("ep_mode", spec.ep_mode),
                      cuda_graphs=_cuda_graphs(overrides, spec), stack=stack,
                      cuda_graph_max_batch=_graph_max_batch(overrides, spec, stack))
    cache = {} if cache is None else cache
    pools, plans, auto = [], [], False
    for pool_spec in spec.pools:
        plan = _pool_plan(base, pool_spec, cache)
        auto = auto or pool_spec.devices is None
        pools.append(Pool(role=pool_spec.role, layout=plan.parallelism, instances=pool_spec.instances,
                          batch=pool_spec.batch))
        plans.append(plan)
    dep = replace(base, pools=tuple(pools))
    return Resolved(workload=wl, scenario=scenario, deployment=dep,
                    plan=DeploymentPlan(deployment=dep, pools=tuple(plans)), auto=auto)


def _placeholder() -> Parallelism:
    """A pool's layout before it is resolved."""
    return Parallelism()


def _pool_plan(base: Deployment, spec: PoolSpec, cache: dict) -> LayoutPlan:
    """Resolve one pool's layout (searching its device count when ``auto``) and price it."""
    batch = spec.batch or base.batch
    degrees = dict(tp=spec.tp, dp=spec.attn_dp, moe_tp=spec.moe_tp, ep=spec.moe_ep, pp=spec.pp, cp=spec.cp,
                   micro_batches=spec.micro_batches, redundant_experts=spec.redundant_experts)

    def priced(n: int) -> LayoutPlan:
        par = resolve_parallelism(base.model, base.hardware, n, batch=batch, precision=base.precision,
                                  context=base.context, cache=cache, **degrees)
        pool = Pool(role=spec.role, layout=par, instances=spec.instances, batch=spec.batch)
        return price_pool(replace(base, pools=(pool,) if spec.role == "both" else _pair(base, pool)), pool, cache)

    if spec.devices is None:
        return smallest_fitting(base.hardware, priced)
    return priced(spec.devices)


def _pair(base: Deployment, pool: Pool) -> tuple[Pool, ...]:
    """``pool`` with a placeholder for the other role, so a one-sided pool validates as part of a pair."""
    other = "decode" if pool.role == "prefill" else "prefill"
    return tuple(sorted((pool, Pool(role=other, layout=pool.layout)), key=lambda p: p.role != "prefill"))


def _check_names(overrides: dict) -> None:
    known = SCENARIO_OVERRIDES + LAYOUT_OVERRIDES + OPTION_OVERRIDES
    for key in overrides:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f" (one of {', '.join(known)})"
            raise ConfigError(None, f"estimate(**overrides).{key}", f"a known override{hint}", key)


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _scenario(wl: Workload, overrides: dict) -> Scenario:
    fields = {k: overrides[k] for k in SCENARIO_OVERRIDES if k in overrides}
    for key in ("batch", "prompt_len", "output_len"):
        if key in fields and not _positive_int(fields[key]):
            raise ConfigError(None, key, "a positive integer", fields[key])
    if "devices" in fields and fields["devices"] != AUTO and not _positive_int(fields["devices"]):
        raise ConfigError(None, "devices", "a positive integer or 'auto'", fields["devices"])
    if "mtp" in fields and not isinstance(fields["mtp"], bool):
        raise ConfigError(None, "mtp", "true or false", fields["mtp"])
    if "mtp_acceptance" in fields:
        fields["mtp_acceptance"] = check_acceptance(fields["mtp_acceptance"], wl.model, None, "mtp_acceptance")
        fields.setdefault("mtp", True)  # stating the drafts' acceptance turns them on
    scenario = replace(wl.scenario, **fields)
    check_scenario(scenario, wl.model, None, "")
    scenario_precision(scenario)  # formats checked now, with their field names
    return scenario


def _layout_overrides(overrides: dict) -> dict:
    """The layout flags as PoolSpec fields (aliases merged; 'auto' as None)."""
    out: dict = {}
    for key in LAYOUT_OVERRIDES:
        if key not in overrides:
            continue
        value = overrides[key]
        if key == "redundant_experts":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(None, key, "an integer >= 0", value)
        elif value != AUTO and not _positive_int(value):
            raise ConfigError(None, key, "a positive integer or 'auto'", value)
        field = {"ep": "moe_ep", "dp": "attn_dp"}.get(key, key)
        value = None if value == AUTO else value
        if field in out and out[field] != value:
            raise ConfigError(None, key, f"equal to {field} ({out[field]}) when both are given", value)
        out[field] = value
    return out


def written_spec(wl: Workload, overrides: dict) -> DeploymentSpec | None:
    """The deployment as written: the ``deployment`` override's file (or spec), else the workload's
    ``deployment:`` section; None when the scenario alone describes it (layout flags not applied)."""
    given = overrides.get("deployment")
    if isinstance(given, (str, os.PathLike)):
        return load_deployment(given)
    if isinstance(given, DeploymentSpec) or given is None:
        return given or wl.deployment
    raise ConfigError(None, "deployment", "a deployment YAML path or a DeploymentSpec", type(given).__name__)


def _spec(wl: Workload, overrides: dict) -> DeploymentSpec:
    """The deployment spec: as written (``written_spec``), else one pool from the scenario's devices and
    parallelism; layout flags then apply to a one-pool spec."""
    spec = written_spec(wl, overrides)
    layout = _layout_overrides(overrides)
    if spec is None:
        sc = wl.scenario
        scenario_degrees = {"tp": sc.parallelism.tp, "moe_ep": sc.parallelism.ep, "attn_dp": sc.parallelism.dp,
                            "pp": sc.parallelism.pp}
        base = {k: (None if v == AUTO else v) for k, v in scenario_degrees.items()}
        devices = overrides.get("devices", sc.devices)
        pool = PoolSpec(role="both", devices=None if devices == AUTO else devices, **{**base, **layout})
        return DeploymentSpec(pools=(pool,))
    if layout or "devices" in overrides:
        if len(spec.pools) != 1:
            raise ConfigError(None, "deployment", "layout flags only with a one-pool deployment (a disaggregated "
                              "deployment sets each pool's layout in its file)", sorted(layout))
        pool = spec.pools[0]
        devices = overrides.get("devices", pool.devices if pool.devices is not None else AUTO)
        pool = replace(pool, devices=None if devices == AUTO else devices, **layout)
        spec = replace(spec, pools=(pool,))
    return spec


def _phase(overrides: dict) -> str:
    phase = overrides.get("phase", "both")
    if phase not in PHASES:
        raise ConfigError(None, "phase", " or ".join(PHASES), phase)
    return phase


def _chunk(overrides: dict, spec: DeploymentSpec, stack: Stack | None) -> int | None:
    """Tokens per prefill forward: the override, else the spec's, else the stack's default, else archsim's; 0
    means no chunking."""
    value = overrides.get("prefill_chunk", spec.prefill_chunk)
    if value is None:
        return stack.chunked_prefill if stack is not None else DEFAULT_PREFILL_CHUNK
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(None, "prefill_chunk", "a number of tokens >= 0 (0: one forward)", value)
    return value or None


def _cuda_graphs(overrides: dict, spec: DeploymentSpec) -> bool:
    value = overrides.get("cuda_graphs", spec.cuda_graphs)
    if value is None:
        return True
    if not isinstance(value, bool):
        raise ConfigError(None, "cuda_graphs", "true or false", value)
    return value


def _graph_max_batch(overrides: dict, spec: DeploymentSpec, stack: Stack | None) -> int | None:
    """The largest decode batch per replica replayed as a CUDA graph: the stack's default capture sizes, unless the
    deployment sets CUDA graphs itself (a recipe that turns graphs on captures its own batch sizes)."""
    if stack is None or overrides.get("cuda_graphs", spec.cuda_graphs) is not None:
        return None
    return stack.cuda_graph_max_batch


def _attention(overrides: dict) -> str:
    attention = overrides.get("attention", "flash")
    if attention not in ("flash", "naive"):
        raise ConfigError(None, "attention", "'flash' or 'naive'", attention)
    return attention


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


def what_fits(resolved: Resolved, overrides: dict) -> str:
    """What a deployment that does not fit needs: its bytes, and the smallest auto layout that fits for the phase
    asked (same batch, lengths, formats and options)."""
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
        auto = resolve_deployment(resolved.workload, hw, devices=AUTO, phase=phase, deployment=one_pool, **keep)
    except ConfigError:
        return text + "; no deployment of up to the largest searched size fits"
    pool = auto.plan.pools[0]
    if pool.fits:
        return text + (f"; the smallest that fits{'' if phase == 'both' else ' for ' + phase} is "
                       f"{pool.parallelism.devices} devices ({pool.parallelism.label()})")
    return text + "; no searched deployment fits"
