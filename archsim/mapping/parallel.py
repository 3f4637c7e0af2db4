"""Lay a model out on many devices: resolve a Parallelism (explicit or ``auto``), check it fits, and price
prefill and decode per device with the collectives it adds. ``plan_layout`` is the entry point used by
``archsim run`` and the plan search."""
from __future__ import annotations

from dataclasses import dataclass
from math import ceil, gcd
from typing import Iterator

from archsim.config.hardware import Hardware
from archsim.config.model import ModelConfig
from archsim.errors import ConfigError
from archsim.graph.precision import Precision
from archsim.mapping.device_memory import MemoryBreakdown, memory_per_device
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.phases import PhaseBreakdown, price_phase

__all__ = ["Parallelism", "LayoutPlan", "plan_layout", "resolve_parallelism", "candidate_device_counts"]

AUTO = "auto"


@dataclass(frozen=True, kw_only=True)
class LayoutPlan:
    """A resolved layout with its memory and, when it fits, its priced phases.

    A layout that does not fit is reported with ``fits = False`` and no phase prices.
    ``prefill`` prices one step of ``batch`` prompts; ``decode`` one step at the end-of-generation
    context (prompt + output), i.e. the TPOT of the slowest step.
    """

    parallelism: Parallelism
    memory: MemoryBreakdown
    prefill: PhaseBreakdown | None
    decode: PhaseBreakdown | None
    batch: int
    prompt_len: int
    output_len: int

    @property
    def fits(self) -> bool:
        return self.memory.fits

    @property
    def ttft_s(self) -> float | None:
        return self.prefill.time_s if self.prefill else None

    @property
    def tpot_s(self) -> float | None:
        return self.decode.time_s if self.decode else None

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Generated tokens per second across the deployment (one per sequence per step)."""
        return self.batch / self.decode.time_s if self.decode else None

    def to_dict(self) -> dict:
        out = {"layout": {**self.parallelism.to_dict(), "label": self.parallelism.label()},
               "memory": self.memory.to_dict(), "fits": self.fits}
        if not self.fits:
            out["reason"] = (f"needs {self.memory.total_bytes / 1e9:.1f} GB per device on stage "
                             f"{self.memory.stage}, capacity {self.memory.capacity_bytes / 1e9:.1f} GB")
            return out
        out["phases"] = {name: p.to_dict() for name, p in (("prefill", self.prefill), ("decode", self.decode)) if p}
        out["ttft_s"], out["tpot_s"] = self.ttft_s, self.tpot_s
        out["decode_tokens_per_s"] = self.decode_tokens_per_s
        out["decode_tokens_per_s_per_device"] = (self.decode_tokens_per_s / self.parallelism.devices
                                                 if self.decode else None)
        return out


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
        return 1  # DeepSeek deploys attention-DP + MoE-EP with TP1 (DSV3 profile-data, published.md §2.3)
    best = 1
    for t in divisors(min(devices, hw.node.chips_per_node)):
        if devices % t == 0 and model.num_attention_heads % t == 0 and model.kv_heads % t == 0 \
                and model.vocab_size % t == 0 and model.intermediate_size % t == 0:
            best = t
    return best


def auto_ep(model: ModelConfig, tp: int, stage: int) -> int:
    """EP for a stage of ``stage`` chips: the largest divisor of the stage and the routed experts that is a
    multiple of ``tp`` (1 for dense models)."""
    if not model.is_moe:
        return 1
    # divisors of the stage that divide the experts are the divisors of their gcd (at most E candidates)
    ok = [e for e in divisors(gcd(stage, model.n_routed_experts)) if e % tp == 0]
    return max(ok) if ok else 1


def resolve_parallelism(model: ModelConfig, hw: Hardware, devices: int, *, batch: int, precision: Precision,
                        context: int, tp=None, ep=None, pp=None, dp=None, attn_dp=None, cp=None,
                        micro_batches=None, redundant_experts: int = 0, zero_stage: int = 1,
                        cache: dict | None = None) -> Parallelism:
    """Fill the ``auto`` (None) degrees of a layout on ``devices`` chips (``cache``: see memory_per_device).

    Rules: TP = 1 for MoE models (attention-DP), else the largest in-node divisor of the heads;
    CP = 1; PP = the smallest divisor of devices/(tp*cp) whose worst stage fits in memory (1 if none
    fits, so the report says it does not fit); DP (alias ``attn_dp``) = the rest; EP = the largest
    divisor of the stage's chips that is a multiple of TP and divides the routed experts; two
    micro-batches when each replica has two or more sequences (DeepSeek's overlap), raised to PP
    with a pipeline.
    """
    if dp is not None and attn_dp is not None and dp != attn_dp:
        raise ConfigError(None, "parallelism.attn_dp", f"equal to dp ({dp}) when both are given", attn_dp)
    tp, ep, pp, dp = _as_opt("tp", tp), _as_opt("ep", ep), _as_opt("pp", pp), _as_opt("dp", dp if dp is not None
                                                                                        else attn_dp)
    cp, mbs = _as_opt("cp", cp) or 1, _as_opt("micro_batches", micro_batches)
    tp = tp or auto_tp(model, hw, devices)
    if devices % (tp * cp):
        raise ConfigError(None, "parallelism.tp", f"tp*cp dividing devices ({devices})", tp * cp)
    rest = devices // (tp * cp)
    if pp is None and dp is not None:
        if rest % dp:
            raise ConfigError(None, "parallelism.dp", f"a divisor of devices/(tp*cp) = {rest}", dp)
        pp = rest // dp
    if pp is None:
        pp = _auto_pp(model, hw, precision, tp, cp, rest, ep, batch, context, redundant_experts, cache)
    if rest % pp:
        raise ConfigError(None, "parallelism.pp", f"a divisor of devices/(tp*cp) = {rest}", pp)
    dp = dp or rest // pp
    if tp * cp * dp * pp != devices:
        raise ConfigError(None, "parallelism", f"tp*cp*dp*pp = devices ({devices})",
                          f"tp={tp} cp={cp} dp={dp} pp={pp}")
    ep = ep or auto_ep(model, tp, tp * cp * dp)
    if model.is_moe and model.n_routed_experts % ep:
        raise ConfigError(None, "parallelism.ep", f"a divisor of n_routed_experts ({model.n_routed_experts})", ep)
    if mbs is None:
        seqs = ceil(batch / dp)
        mbs = max(min(2, seqs), min(pp, seqs)) if (ep > 1 or pp > 1) else 1
    return Parallelism(tp=tp, ep=ep, pp=pp, dp=dp, cp=cp, micro_batches=mbs,
                       redundant_experts=redundant_experts, zero_stage=zero_stage)


def _auto_pp(model, hw, precision, tp, cp, rest, ep, batch, context, redundant, cache=None) -> int:
    for pp in divisors(rest, model.num_hidden_layers):
        dp = rest // pp
        e = ep or auto_ep(model, tp, tp * cp * dp)
        if e > 1 and ((tp * cp * dp) % e or e % tp):  # the rule Parallelism enforces; ep = 1 is always valid
            continue
        par = Parallelism(tp=tp, ep=e, pp=pp, dp=dp, cp=cp, redundant_experts=redundant)
        mem = memory_per_device(model, par, precision, capacity_bytes=hw.main_memory.capacity_bytes,
                                batch=batch, context=context, cache=cache)
        if mem.fits:
            return pp
    return 1


def plan_layout(model: ModelConfig, hw: Hardware, *, devices, batch: int, prompt_len: int, output_len: int,
                precision: Precision, tp=None, ep=None, pp=None, dp=None, attn_dp=None, cp=None,
                micro_batches=None, redundant_experts: int = 0, mtp: bool = False, overlap: bool = True,
                cache: dict | None = None, expert_load=None, attention: str = "flash") -> LayoutPlan:
    """Resolve, check and price a layout. ``devices`` may be an int or ``"auto"`` (the smallest count
    from ``candidate_device_counts`` whose auto layout fits). Degrees left ``None``/``"auto"`` are
    chosen by ``resolve_parallelism``. ``batch`` counts sequences in one step across the deployment.
    ``expert_load`` (an ``archsim.graph.expert_load.ExpertLoad``; uniform when None) spreads routed tokens
    over experts; ``attention`` selects the flash or naive attention traffic model.
    ``cache`` (for one model, hardware and precision) keeps priced shards and weight bytes; without one,
    a fresh dict is shared by the candidates of this call."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(None, "batch", "a positive integer", batch)
    cache = {} if cache is None else cache
    context = prompt_len + output_len
    kw = dict(batch=batch, precision=precision, context=context, tp=tp, ep=ep, pp=pp, dp=dp, attn_dp=attn_dp,
              cp=cp, micro_batches=micro_batches, redundant_experts=redundant_experts)
    if devices is None or devices == AUTO:
        plan = None
        for n in candidate_device_counts(hw):
            try:
                par = resolve_parallelism(model, hw, n, cache=cache, **kw)
            except ConfigError:
                continue
            plan = _plan(model, hw, par, precision, batch, prompt_len, output_len, mtp, overlap, cache,
                         expert_load=expert_load, attention=attention)
            if plan.fits:
                return plan
        if plan is None:
            raise ConfigError(None, "devices", "a device count whose layout is valid for the given degrees", devices)
        return plan
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ConfigError(None, "devices", "a positive integer or 'auto'", devices)
    par = resolve_parallelism(model, hw, devices, cache=cache, **kw)
    return _plan(model, hw, par, precision, batch, prompt_len, output_len, mtp, overlap, cache,
                 expert_load=expert_load, attention=attention)


def _plan(model, hw, par, precision, batch, prompt_len, output_len, mtp, overlap, cache, *,
          expert_load=None, attention: str = "flash") -> LayoutPlan:
    """Memory of ``par`` and, when it fits, its priced prefill and decode (activations then re-checked)."""
    context = prompt_len + output_len
    mem = memory_per_device(model, par, precision, capacity_bytes=hw.main_memory.capacity_bytes, batch=batch,
                            context=context, mtp=mtp, cache=cache)
    prefill = decode = None
    if mem.fits:
        prefill = price_phase(model, hw, par, precision, phase="prefill", batch=batch, length=prompt_len, mtp=False,
                              overlap=overlap, cache=cache, expert_load=expert_load, attention=attention)
        decode = price_phase(model, hw, par, precision, phase="decode", batch=batch, length=context, mtp=mtp,
                             overlap=overlap, cache=cache, expert_load=expert_load, attention=attention)
        act = max(prefill.activation_peak_bytes, decode.activation_peak_bytes)
        mem = memory_per_device(model, par, precision, capacity_bytes=hw.main_memory.capacity_bytes, batch=batch,
                                context=context, mtp=mtp, activation_bytes_per_stage=act, cache=cache)
        if not mem.fits:
            prefill = decode = None
    return LayoutPlan(parallelism=par, memory=mem, prefill=prefill, decode=decode, batch=batch,
                      prompt_len=prompt_len, output_len=output_len)
