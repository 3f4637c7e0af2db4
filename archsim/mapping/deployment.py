"""The Deployment record: what one projection is about (model, chip, formats, pools of devices with their layouts,
the requests' lengths and batch, how steps run), and its pricing, pool by pool.

An aggregated deployment is one pool that runs both phases; a disaggregated one (xPyD) is a prefill pool and a
decode pool, each with its own layout, devices and instance count. Pricing a deployment prices the busiest device
of each pool for the tokens it really holds (mapping/phases.py), with memory for the phases the pool runs: a
decode pool holds decode activations only, a prefill pool the activations of one chunk forward.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from archsim.config.hardware import Hardware
from archsim.config.model import ModelConfig
from archsim.config.stack import HostOverhead, Stack
from archsim.errors import ConfigError
from archsim.graph.expert_load import ExpertLoad
from archsim.graph.precision import Precision
from archsim.mapping.device_memory import MemoryBreakdown, memory_per_device
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.phases import PhaseBreakdown, price_phase

ROLES = ("both", "prefill", "decode")
PHASES = ("both", "prefill", "decode")
# Tokens per prefill forward of one attention replica: SGLang's chunked_prefill_size on GPUs of up to 160 GB
# (sgl-project/sglang python/sglang/srt/server_args.py, _handle_gpu_memory_settings: 8192 below 160 GB, 16384
# above) and vLLM V1's max_num_batched_tokens for its API server on >= 70 GiB GPUs (vllm-project/vllm
# vllm/engine/arg_utils.py, EngineArgs.get_batch_defaults: 8192).
DEFAULT_PREFILL_CHUNK = 8192


@dataclass(frozen=True, kw_only=True)
class Pool:
    """Devices that run ``role`` ("both", "prefill" or "decode"): ``instances`` copies of one instance laid out as
    ``layout``. ``batch``: sequences in one step of one instance (None: the deployment's batch)."""

    role: str
    layout: Parallelism
    instances: int = 1
    batch: int | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(None, "pool.role", " or ".join(ROLES), self.role)
        for name in ("instances", "batch"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(None, f"pool.{name}", "a positive integer", value)

    @property
    def devices(self) -> int:
        """Devices of the whole pool (every instance)."""
        return self.layout.devices * self.instances

    def runs(self, phase: str) -> bool:
        return self.role in ("both", phase)


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """One projection's subject (design: model x hardware x stack x deployment).

    ``batch`` is the sequences of one step of one instance; ``prompt_len`` / ``output_len`` the requests' lengths;
    ``phase`` what is priced ("decode": a decode-only pool, no prefill activations; KV for ``batch`` sequences at
    prompt + output context); ``prefill_chunk`` the tokens of one prefill forward per attention replica (None: one
    forward); ``cuda_graphs``: decode steps replayed from CUDA graphs; ``ep_mode``: the DeepEP kernels (None:
    throughput for prefill, low_latency for decode); ``expert_load``: the routing distribution (None: uniform);
    ``stack``: the serving stack whose kernels, DeepEP modes and host time price the steps (None: archsim's
    reference kernels, no host time; config/stack.py); ``cuda_graph_max_batch``: the largest decode batch per
    replica captured as a CUDA graph (None: every batch; the stack's default unless the deployment sets graphs).
    """

    model: ModelConfig
    hardware: Hardware
    precision: Precision
    pools: tuple[Pool, ...]
    batch: int
    prompt_len: int
    output_len: int
    mtp: bool = False
    tokens_per_step: float = 1.0  # mean tokens a decode step emits (MTP drafts accepted; config.workload.Scenario)
    phase: str = "both"
    prefill_chunk: int | None = DEFAULT_PREFILL_CHUNK
    expert_load: ExpertLoad | None = None
    attention: str = "flash"
    ep_mode: str | None = None
    cuda_graphs: bool = True
    overlap: bool = True
    stack: Stack | None = None
    cuda_graph_max_batch: int | None = None

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ConfigError(None, "phase", " or ".join(PHASES), self.phase)
        roles = sorted(p.role for p in self.pools)
        if roles not in (["both"], ["decode", "prefill"], ["prefill"], ["decode"]):
            raise ConfigError(None, "deployment.pools", "one pool for both phases, or a prefill and a decode pool",
                              roles)
        for phase in ("prefill", "decode"):
            if self.prices(phase) and not any(p.runs(phase) for p in self.pools):
                raise ConfigError(None, "deployment.pools", f"a pool that runs {phase} (phase {self.phase!r})",
                                  roles)

    @property
    def disaggregated(self) -> bool:
        return len(self.pools) == 2

    @property
    def devices(self) -> int:
        return sum(p.devices for p in self.pools)

    @property
    def context(self) -> int:
        return self.prompt_len + self.output_len

    def prices(self, phase: str) -> bool:
        """Whether ``phase`` is priced."""
        return self.phase in ("both", phase)

    def pool(self, phase: str) -> Pool | None:
        """The pool that runs ``phase``, if any."""
        return next((p for p in self.pools if p.runs(phase)), None)

    def step_options(self, phase: str, *, host: bool = True) -> dict:
        """``price_phase`` keywords of a ``phase`` step under this deployment's options: the one place
        ``price_pool`` and the serving cost model (serving/cost_model.py) take them from. ``host`` False: the
        stack's host time is left out (a caller that adds it per iteration itself)."""
        stack = self.stack
        if stack is not None and not host:
            stack = replace(stack, host=HostOverhead())
        return dict(mtp=self.mtp and phase == "decode", overlap=self.overlap, ep_mode=self.ep_mode,
                    expert_load=self.expert_load, attention=self.attention, cuda_graph=self.cuda_graphs, stack=stack,
                    graph_max_batch=self.cuda_graph_max_batch)

    def with_layout(self, layout: Parallelism, role: str | None = None) -> "Deployment":
        """The same deployment with one pool's layout replaced (the only pool, or the one of ``role``): how plan
        search and sweeps try candidates without forgetting a field."""
        pools = tuple(replace(p, layout=layout) if role in (None, p.role) else p for p in self.pools)
        return replace(self, pools=pools)


@dataclass(frozen=True, kw_only=True)
class LayoutPlan:
    """One pool priced: its layout, the memory of its busiest device and, when it fits, its priced phases.

    ``prefill`` prices one prefill step of ``batch`` prompts (in chunk forwards); ``decode`` one step at the
    end-of-generation context (prompt + output), i.e. the TPOT of the slowest step. A phase the pool does not run
    (or the deployment does not price) is None. A pool that does not fit has ``fits = False`` and no phases.
    ``request_overhead_s``: the stack's fixed time per request before it is scheduled (part of TTFT);
    ``tokens_per_step``: mean tokens a decode step emits per sequence (speculative MTP drafts accepted).
    """

    parallelism: Parallelism
    memory: MemoryBreakdown
    prefill: PhaseBreakdown | None
    decode: PhaseBreakdown | None
    batch: int
    prompt_len: int
    output_len: int
    role: str = "both"
    instances: int = 1
    request_overhead_s: float = 0.0
    tokens_per_step: float = 1.0

    @property
    def fits(self) -> bool:
        return self.memory.fits

    @property
    def ttft_s(self) -> float | None:
        """The request overhead plus the prefill step of the pool's batch (every prompt starts together)."""
        return self.request_overhead_s + self.prefill.time_s if self.prefill else None

    @property
    def tpot_s(self) -> float | None:
        """Time per output token: the decode step over the tokens it emits per sequence."""
        return self.decode.time_s / self.tokens_per_step if self.decode else None

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Generated tokens per second of one instance (``tokens_per_step`` per sequence per step)."""
        return self.batch * self.tokens_per_step / self.decode.time_s if self.decode else None

    def to_dict(self) -> dict:
        out = {"role": self.role, "instances": self.instances,
               "layout": {**self.parallelism.to_dict(), "label": self.parallelism.label()},
               "memory": self.memory.to_dict(), "fits": self.fits, "batch": self.batch}
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


@dataclass(frozen=True, kw_only=True)
class DeploymentPlan:
    """Every pool of a deployment priced (in the deployment's pool order)."""

    deployment: Deployment
    pools: tuple[LayoutPlan, ...]

    @property
    def fits(self) -> bool:
        return all(p.fits for p in self.pools)

    def pool(self, phase: str) -> LayoutPlan | None:
        """The priced pool that runs ``phase``."""
        return next((p for p in self.pools if p.role in ("both", phase)), None)

    @property
    def prefill(self) -> PhaseBreakdown | None:
        pool = self.pool("prefill")
        return pool.prefill if pool else None

    @property
    def decode(self) -> PhaseBreakdown | None:
        pool = self.pool("decode")
        return pool.decode if pool else None


def price_deployment(dep: Deployment, cache: dict | None = None) -> DeploymentPlan:
    """Every pool of ``dep``: its memory and, when it fits, the phases it runs (``cache``: one model, hardware and
    precision; see ``price_pool``)."""
    cache = {} if cache is None else cache
    return DeploymentPlan(deployment=dep, pools=tuple(price_pool(dep, pool, cache) for pool in dep.pools))


def price_pool(dep: Deployment, pool: Pool, cache: dict | None = None) -> LayoutPlan:
    """One pool: the memory of its busiest device for the phases it runs and, when that fits, those phases priced
    (the activations then re-checked). ``cache`` keeps priced graphs and weight bytes across calls for one model,
    hardware and precision (a plan search prices each distinct device graph once)."""
    model, hw, par = dep.model, dep.hardware, pool.layout
    batch = pool.batch or dep.batch
    runs = [ph for ph in ("prefill", "decode") if pool.runs(ph) and dep.prices(ph)]
    # KV held: a pool that decodes holds every sequence at its end-of-generation context; a prefill pool its prompts
    context = dep.context if "decode" in runs or pool.role != "prefill" else dep.prompt_len
    mem = pool_memory(dep, par, batch=batch, context=context, cache=cache)
    priced: dict[str, PhaseBreakdown | None] = {"prefill": None, "decode": None}
    if mem.fits:
        for phase in runs:
            priced[phase] = price_phase(
                model, hw, par, dep.precision, phase=phase, batch=batch,
                length=dep.prompt_len if phase == "prefill" else dep.context, cache=cache,
                prefill_chunk=dep.prefill_chunk, **dep.step_options(phase))
        act = max((b.activation_peak_bytes for b in priced.values() if b is not None), default=0.0)
        mem = pool_memory(dep, par, batch=batch, context=context, activations=act, cache=cache)
        if not mem.fits:
            priced = {"prefill": None, "decode": None}
    return LayoutPlan(parallelism=par, memory=mem, prefill=priced["prefill"], decode=priced["decode"], batch=batch,
                      prompt_len=dep.prompt_len, output_len=dep.output_len, role=pool.role, instances=pool.instances,
                      request_overhead_s=dep.stack.host.request_s if dep.stack is not None else 0.0,
                      tokens_per_step=dep.tokens_per_step if dep.mtp else 1.0)


def pool_memory(dep: Deployment, par: Parallelism, *, batch: int, context: int, activations: float = 0.0,
                cache: dict | None = None) -> MemoryBreakdown:
    """Weights, KV cache (``batch`` sequences at ``context``) and ``activations`` on the busiest device of ``par``."""
    return memory_per_device(dep.model, par, dep.precision, capacity_bytes=dep.hardware.main_memory.capacity_bytes,
                             batch=batch, context=context, mtp=dep.mtp, activation_bytes_per_stage=activations,
                             cache=cache)
