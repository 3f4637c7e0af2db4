"""Resolve a layout on N devices (explicit degrees, or ``auto`` ones chosen by rule) and price it as a one-pool
deployment: ``resolve_parallelism`` and ``plan_layout``; ``smallest_fitting`` searches the device count."""
from __future__ import annotations

from math import gcd
from typing import Iterator

from archsim.config.hardware import Hardware
from archsim.config.model import ModelConfig
from archsim.errors import ConfigError
from archsim.graph.precision import Precision
from archsim.mapping.deployment import (DEFAULT_PREFILL_CHUNK, Deployment, LayoutPlan, Pool, price_pool)
from archsim.mapping.device_memory import memory_per_device
from archsim.mapping.parallelism import Parallelism, check_expert_slots

__all__ = ["Parallelism", "LayoutPlan", "plan_layout", "resolve_parallelism", "candidate_device_counts",
           "smallest_fitting", "divisors", "auto_tp", "auto_ep"]

AUTO = "auto"


def _as_opt(name: str, value) -> int | None:
    if value is None or value == AUTO:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(None, f"parallelism.{name}", "a positive integer or 'auto'", value)
    return value


def divisors(n: int, limit: int | None = None) -> Iterator[int]:
    """Divisors of ``n`` up to ``limit`` (default ``n``), ascending, lazily: the searches below stop early
    or bound ``limit`` by a small model dimension, so 10^15 devices never means 10^15 trials."""
    top = n if limit is None else min(n, limit)
    return (d for d in range(1, top + 1) if n % d == 0)


def candidate_device_counts(hw: Hardware, limit: int = 4096) -> list[int]:
    """Device counts tried for ``devices=auto``: powers of two inside a node, then whole nodes."""
    per_node = hw.node.chips_per_node
    small = [d for d in (1, 2, 4, 8, 16, 32, 64) if d < per_node]
    return small + list(range(per_node, limit + 1, per_node))


def auto_tp(model: ModelConfig, hw: Hardware, devices: int) -> int:
    """TP for ``devices`` chips: 1 for MoE models (EP carries the experts), else the largest divisor of
    the devices inside a node that divides the heads, kv heads, vocabulary and FFN width."""
    if model.is_moe:
        return 1  # DeepSeek deploys attention-DP + MoE-EP with TP1 (DSV3-TR 3.4; profile-data README)
    best = 1
    for t in divisors(min(devices, hw.node.chips_per_node)):
        if devices % t == 0 and model.num_attention_heads % t == 0 and model.kv_heads % t == 0 \
                and model.vocab_size % t == 0 and model.intermediate_size % t == 0:
            best = t
    return best


def auto_ep(model: ModelConfig, tp: int, stage: int, *, moe_tp: int = 1, redundant: int = 0) -> int:
    """EP for a stage of ``stage`` chips: the largest ep with ``moe_tp * ep`` a multiple of ``tp`` dividing the stage
    and ``ep`` dividing the expert slots (``n_routed_experts + redundant``); 1 for dense models."""
    if not model.is_moe:
        return 1
    slots = model.n_routed_experts + redundant
    # ep divides the stage / moe_tp and the slots: a divisor of their gcd (at most slots candidates)
    ok = [e for e in divisors(gcd(stage // moe_tp, slots)) if (e * moe_tp) % tp == 0 and stage % (e * moe_tp) == 0]
    return max(ok) if ok else 1


def resolve_parallelism(model: ModelConfig, hw: Hardware, devices: int, *, batch: int, precision: Precision,
                        context: int, tp=None, ep=None, pp=None, dp=None, attn_dp=None, cp=None, moe_tp=None,
                        micro_batches=None, redundant_experts: int = 0, zero_stage: int = 1,
                        cache: dict | None = None) -> Parallelism:
    """Fill the ``auto`` (None) degrees of a layout on ``devices`` chips (``cache``: see memory_per_device).

    Rules: TP = 1 for MoE models (attention-DP), else the largest in-node divisor of the heads; CP = 1; MoE-TP = 1;
    PP = the smallest divisor of devices/(tp*cp) whose worst stage fits in memory (1 if none fits, so the report
    says it does not fit); DP (alias ``attn_dp``) = the rest; EP = the largest that fills the stage's MoE groups
    (``auto_ep``); micro-batches: None, chosen per phase by price (mapping/phases.py).
    """
    if dp is not None and attn_dp is not None and dp != attn_dp:
        raise ConfigError(None, "parallelism.attn_dp", f"equal to dp ({dp}) when both are given", attn_dp)
    tp, ep, pp, dp = _as_opt("tp", tp), _as_opt("ep", ep), _as_opt("pp", pp), _as_opt("dp", dp if dp is not None
                                                                                        else attn_dp)
    cp, mbs = _as_opt("cp", cp) or 1, _as_opt("micro_batches", micro_batches)
    moe_tp = _as_opt("moe_tp", moe_tp) or 1
    tp = tp or auto_tp(model, hw, devices)
    if devices % (tp * cp):
        raise ConfigError(None, "parallelism.tp", f"tp*cp dividing devices ({devices})", tp * cp)
    rest = devices // (tp * cp)
    if pp is None and dp is not None:
        if rest % dp:
            raise ConfigError(None, "parallelism.dp", f"a divisor of devices/(tp*cp) = {rest}", dp)
        pp = rest // dp
    if pp is None:
        pp = _auto_pp(model, hw, precision, tp, cp, rest, ep, moe_tp, batch, context, redundant_experts, cache)
    if rest % pp:
        raise ConfigError(None, "parallelism.pp", f"a divisor of devices/(tp*cp) = {rest}", pp)
    dp = dp or rest // pp
    if tp * cp * dp * pp != devices:
        raise ConfigError(None, "parallelism", f"tp*cp*dp*pp = devices ({devices})",
                          f"tp={tp} cp={cp} dp={dp} pp={pp}")
    ep = ep or auto_ep(model, tp, tp * cp * dp, moe_tp=moe_tp, redundant=redundant_experts)
    par = Parallelism(tp=tp, ep=ep, pp=pp, dp=dp, cp=cp, moe_tp=moe_tp, micro_batches=mbs,
                      redundant_experts=redundant_experts, zero_stage=zero_stage)
    if model.is_moe:
        check_expert_slots(par, model.n_routed_experts)
    return par


def _auto_pp(model, hw, precision, tp, cp, rest, ep, moe_tp, batch, context, redundant, cache=None) -> int:
    for pp in divisors(rest, model.num_hidden_layers):
        dp = rest // pp
        stage = tp * cp * dp
        e = ep or auto_ep(model, tp, stage, moe_tp=moe_tp, redundant=redundant)
        group = e * moe_tp
        if group > 1 and (stage % group or group % tp):  # the rule Parallelism enforces
            continue
        par = Parallelism(tp=tp, ep=e, pp=pp, dp=dp, cp=cp, moe_tp=moe_tp, redundant_experts=redundant)
        mem = memory_per_device(model, par, precision, capacity_bytes=hw.main_memory.capacity_bytes,
                                batch=batch, context=context, cache=cache)
        if mem.fits:
            return pp
    return 1


def one_pool(model: ModelConfig, hw: Hardware, par: Parallelism, precision: Precision, *, batch: int,
             prompt_len: int, output_len: int, mtp: bool = False, overlap: bool = True, expert_load=None,
             attention: str = "flash", phase: str = "both", prefill_chunk: int | None = DEFAULT_PREFILL_CHUNK,
             cuda_graphs: bool = True, ep_mode: str | None = None) -> Deployment:
    """An aggregated (one-pool) deployment of ``par``."""
    role = "both" if phase == "both" else phase
    return Deployment(model=model, hardware=hw, precision=precision, pools=(Pool(role=role, layout=par),),
                      batch=batch, prompt_len=prompt_len, output_len=output_len, mtp=mtp, phase=phase,
                      prefill_chunk=prefill_chunk, expert_load=expert_load, attention=attention, ep_mode=ep_mode,
                      cuda_graphs=cuda_graphs, overlap=overlap)


def plan_layout(model: ModelConfig, hw: Hardware, *, devices, batch: int, prompt_len: int, output_len: int,
                precision: Precision, tp=None, ep=None, pp=None, dp=None, attn_dp=None, cp=None, moe_tp=None,
                micro_batches=None, redundant_experts: int = 0, mtp: bool = False, overlap: bool = True,
                cache: dict | None = None, expert_load=None, attention: str = "flash", phase: str = "both",
                prefill_chunk: int | None = DEFAULT_PREFILL_CHUNK, cuda_graphs: bool = True,
                ep_mode: str | None = None) -> LayoutPlan:
    """Resolve, check and price a one-pool layout. ``devices`` may be an int or ``"auto"`` (the smallest count
    from ``candidate_device_counts`` whose auto layout fits). Degrees left ``None``/``"auto"`` are chosen by
    ``resolve_parallelism``. ``batch`` counts sequences in one step across the instance. ``expert_load`` (an
    ``archsim.graph.expert_load.ExpertLoad``; uniform when None) spreads routed tokens over experts;
    ``attention`` selects the flash or naive attention traffic model; ``phase``, ``prefill_chunk``,
    ``cuda_graphs`` and ``ep_mode`` as ``Deployment`` has them. ``cache`` (for one model, hardware and precision)
    keeps priced graphs and weight bytes; without one, a fresh dict is shared by the candidates of this call."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(None, "batch", "a positive integer", batch)
    cache = {} if cache is None else cache
    degrees = dict(tp=tp, ep=ep, pp=pp, dp=dp, attn_dp=attn_dp, cp=cp, moe_tp=moe_tp, micro_batches=micro_batches,
                   redundant_experts=redundant_experts)
    options = dict(batch=batch, prompt_len=prompt_len, output_len=output_len, mtp=mtp, overlap=overlap,
                   expert_load=expert_load, attention=attention, phase=phase, prefill_chunk=prefill_chunk,
                   cuda_graphs=cuda_graphs, ep_mode=ep_mode)

    def priced(n: int) -> LayoutPlan:
        par = resolve_parallelism(model, hw, n, batch=batch, precision=precision, context=prompt_len + output_len,
                                  cache=cache, **degrees)
        dep = one_pool(model, hw, par, precision, **options)
        return price_pool(dep, dep.pools[0], cache)

    if devices is None or devices == AUTO:
        return smallest_fitting(hw, priced)
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ConfigError(None, "devices", "a positive integer or 'auto'", devices)
    return priced(devices)


def smallest_fitting(hw: Hardware, priced) -> LayoutPlan:
    """The first of ``candidate_device_counts`` whose ``priced(n)`` fits (else the last valid one, not fitting)."""
    plan = None
    for n in candidate_device_counts(hw):
        try:
            plan = priced(n)
        except ConfigError:
            continue
        if plan.fits:
            return plan
    if plan is None:
        raise ConfigError(None, "devices", "a device count whose layout is valid for the given degrees", AUTO)
    return plan
