"""Records describing a serving deployment (replicas, scheduler, disaggregation, SLOs) and the scheduler factory."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from archsim.errors import ConfigError
from archsim.serving.continuous import ContinuousScheduler
from archsim.serving.kvcache import FULL_ATTENTION, KvLayout, PagedKVCache
from archsim.serving.request_level import DEFAULT_BATCH_TIMEOUT_S, RequestLevelScheduler
from archsim.serving.sequence import Speculative

SCHEDULERS = ("static", "dynamic", "continuous", "chunked", "disagg")


@dataclass(frozen=True, kw_only=True)
class ReplicaSpec:
    """One model replica: its devices, KV capacity and the peaks, power and price used by the metrics.

    ``kv_capacity_tokens`` = (HBM capacity - weights per device) x devices / KV bytes per token (a token in every
    layer); ``kv_layout`` says how much of it a sequence holds when some layers attend a sliding window (gpt-oss:
    the last ``sliding_window`` tokens in those), and ``kv_bytes_per_token`` is one token in every layer, so a
    sequence's bytes are ``kv_layout.sequence_bytes(tokens, kv_bytes_per_token)``.
    Peaks are replica totals (per-device peak x devices).
    """

    devices: int
    kv_capacity_tokens: int
    kv_bytes_per_token: float
    peak_flop_per_s: float
    peak_bytes_per_s: float
    idle_w: float = 0.0
    price_usd_per_hour: float = 0.0
    kv_layout: KvLayout = FULL_ATTENTION

    def kv_sequence_bytes(self, tokens: int) -> float:
        """KV bytes of one sequence at ``tokens`` tokens (every layer's share, sliding windows capped)."""
        return self.kv_layout.sequence_bytes(tokens, self.kv_bytes_per_token)


# Scheduler defaults, one place for SchedulerSpec, sim.serve_deploy.ServeOptions and `archsim serve` (policy
# defaults under vLLM's knob names; that they equal vLLM's own defaults is UNVERIFIED here, except the block:
# vLLM's default block_size is 16, docs/serving.md [S]).
DEFAULT_MAX_SEQS = 256        # sequences per iteration (vLLM max_num_seqs)
DEFAULT_TOKEN_BUDGET = 8192   # tokens per iteration (vLLM max_num_batched_tokens)
DEFAULT_BLOCK_TOKENS = 16     # KV-cache block, tokens (vLLM block_size)
# DEFAULT_BATCH_TIMEOUT_S (0.1 s, static batching's longest wait to fill) is defined with the static scheduler in
# serving/request_level.py, which this module imports (so it cannot import from here), and re-exported here.


@dataclass(frozen=True, kw_only=True)
class SchedulerSpec:
    """Batching policy and its knobs (vLLM names where they exist: max_num_seqs, max_num_batched_tokens)."""

    kind: str = "continuous"
    max_seqs: int = DEFAULT_MAX_SEQS
    token_budget: int = DEFAULT_TOKEN_BUDGET
    timeout_s: float = DEFAULT_BATCH_TIMEOUT_S
    block_tokens: int = DEFAULT_BLOCK_TOKENS
    preemption: str = "recompute"
    speculative: Speculative | None = None
    chunk_limit: int | None = None  # largest prefill chunk of one sequence (default: token_budget)

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULERS:
            raise ConfigError(None, "scheduler", f"one of {', '.join(SCHEDULERS)}", self.kind)
        # Speculative checks its own draft count and rates when it is built
        if self.speculative is not None and not isinstance(self.speculative, Speculative):
            raise ConfigError(None, "scheduler.speculative", "a Speculative(draft_tokens=K, acceptance_rate=P or "
                              "(P1, ..., PK)) record", self.speculative)


@dataclass(frozen=True, kw_only=True)
class DisaggSpec:
    """Prefill/decode disaggregation: pool sizes (replicas) and the KV-transfer link between pools."""

    prefill_replicas: int
    decode_replicas: int
    link_bandwidth_bytes_per_s: float
    link_latency_s: float

    def __post_init__(self) -> None:
        for name in ("prefill_replicas", "decode_replicas"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(None, f"disagg.{name}", "an integer >= 1", value)
        bandwidth, latency = self.link_bandwidth_bytes_per_s, self.link_latency_s
        if not (_is_number(bandwidth) and 0 < bandwidth <= math.inf):  # nan fails the comparison
            raise ConfigError(None, "disagg.link_bandwidth_bytes_per_s", "a bandwidth > 0 B/s", bandwidth)
        if not (_is_number(latency) and 0 <= latency < math.inf):
            raise ConfigError(None, "disagg.link_latency_s", "a finite time >= 0 s", latency)


def _is_number(value) -> bool:
    """A real number (a bool is not one)."""
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


@dataclass(frozen=True, kw_only=True)
class Slo:
    """Service-level objectives for goodput: a request is good if both are met."""

    ttft_s: float = float("inf")
    tpot_s: float = float("inf")


def make_scheduler(spec: SchedulerSpec, replica: ReplicaSpec, rng: np.random.Generator, *, role: str = "both"):
    """A fresh scheduler state machine (with its own KV cache) for one replica. The cache has the capacity's
    tokens in every layer unit of the replica's KV layout (one unit without sliding windows)."""
    blocks = replica.kv_capacity_tokens * replica.kv_layout.units // spec.block_tokens
    if blocks < 1:
        raise ConfigError(None, "replica.kv_capacity_tokens", f"room for at least one {spec.block_tokens}-token block",
                          replica.kv_capacity_tokens)
    kv = PagedKVCache(num_blocks=blocks, block_tokens=spec.block_tokens, layout=replica.kv_layout)
    if spec.kind in ("static", "dynamic"):
        return RequestLevelScheduler(kv=kv, max_seqs=spec.max_seqs, timeout_s=spec.timeout_s,
                                     token_budget=spec.token_budget if spec.kind == "dynamic" else None,
                                     padded=spec.kind == "static", speculative=spec.speculative, rng=rng)
    return ContinuousScheduler(kv=kv, max_seqs=spec.max_seqs, token_budget=spec.token_budget,
                               chunked=spec.kind == "chunked", preemption=spec.preemption,
                               kv_bytes_per_token=replica.kv_bytes_per_token, speculative=spec.speculative,
                               rng=rng, role=role, chunk_limit=spec.chunk_limit)
