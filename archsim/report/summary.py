"""The Report: the stable result of one projection, as frozen records and as JSON-ready dicts.

The JSON produced by ``Report.to_dict()`` is the interface planning tools consume; its keys are
documented in README.md ("JSON keys") and only ever gain new keys.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True, kw_only=True)
class ModelSummary:
    """The model: parameter counts, KV bytes per token, depth and context limit.

    ``kv_bytes_per_token`` counts a token in every layer, as full attention keeps it. What one sequence holds at the
    scenario's context ``kv_context`` (prompt + output) is ``kv_bytes_per_sequence`` = kv_context x
    ``kv_bytes_per_token_full_layers`` + ``kv_bytes_sliding_window``: a sliding-window layer (gpt-oss,
    ``sliding_layers`` of them) keeps at most ``sliding_window`` tokens (graph.params.kv_bytes_per_sequence); without
    sliding layers the window part is 0 and the sequence kv_context x kv_bytes_per_token."""

    name: str
    architecture: str
    total_params: int
    active_params: int
    kv_bytes_per_token: float
    layers: int
    max_context: int
    mtp_params: int = 0
    kv_context: int = 0
    kv_bytes_per_sequence: float = 0.0
    kv_bytes_per_token_full_layers: float = 0.0
    kv_bytes_sliding_window: float = 0.0
    sliding_layers: int = 0
    sliding_window: int | None = None


@dataclass(frozen=True, kw_only=True)
class ScenarioSummary:
    """The request shape and the number formats."""

    prompt_len: int
    output_len: int
    batch: int
    weights: str
    kv_cache: str
    activations: str


@dataclass(frozen=True, kw_only=True)
class DeploymentSummary:
    """Devices (every pool), hardware and the resolved layout of the decode pool, or the only pool (``auto``: a
    device count was searched); ``pools`` lists every pool (role, instances, devices, batch, layout, memory)."""

    devices: int
    hardware: str
    auto: bool
    layout: Mapping[str, Any]
    pools: tuple[Mapping[str, Any], ...] = ()
    disaggregated: bool = False
    phase: str = "both"
    prefill_chunk: int | None = None
    cuda_graphs: bool = True
    # the serving stack (config/stack.py): name, version, and the kernel library per op kind on this chip; None:
    # archsim's reference kernels and no host time
    stack: Mapping[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class MemorySummary:
    """Bytes per device on the most loaded device, whether they fit, and the capacity limits."""

    per_device_bytes: float
    capacity_bytes: float
    weights_bytes: float
    kv_cache_bytes: float
    activations_bytes: float
    fits: bool
    needs: str | None
    max_batch_at_context: int | None = None
    max_context_at_batch: int | None = None


@dataclass(frozen=True, kw_only=True)
class OpSummary:
    """One of a phase's heaviest ops: its time, share of the phase, bound, FLOPs, main-memory bytes and engine."""

    name: str
    kind: str
    time_s: float
    share: float
    bound: str
    flops: float
    hbm_bytes: float
    engine: str = ""  # the engine it ran on (placement's choice: tensor cores, a photonic engine, the PIM units)


@dataclass(frozen=True, kw_only=True)
class PhaseSummary:
    """One priced phase on one device (the deployment runs ``devices`` of these in parallel): the bottleneck
    pipeline stage's device, whose FLOPs, bytes and energy are its own work (EnergySummary sums every device)."""

    time_s: float
    flops: float
    hbm_bytes: float
    bound: str
    time_s_by_bound: Mapping[str, float]
    mfu: float
    hbm_bandwidth_utilisation: float
    energy_j: float
    tops_per_watt: float
    heaviest_ops: tuple[OpSummary, ...]
    avg_power_w: float = 0.0     # this device's board power over the step: energy_j / time_s
    communication_s: float = 0.0
    exposed_communication_s: float = 0.0
    host_s: float = 0.0          # the stack's host time per step the GPU waits for (config/stack.py)
    micro_batches: int = 1       # chosen per phase by price unless the layout fixes them
    forwards: int = 1            # forward passes of the step (prefill chunks)
    busy_replicas: int = 1       # attention-DP replicas holding sequences


@dataclass(frozen=True, kw_only=True)
class PrefillSummary(PhaseSummary):
    """The prefill step of the whole batch."""

    latency_s: float
    tokens_per_s: float
    tokens_per_s_per_device: float


@dataclass(frozen=True, kw_only=True)
class DecodeSummary(PhaseSummary):
    """One decode step at the end-of-generation context; ``tpot_s`` is the step over ``tokens_per_step`` (the mean
    tokens a step emits per sequence: 1, or more with accepted MTP drafts)."""

    tpot_s: float
    tokens_per_s: float
    tokens_per_s_per_device: float
    context: int
    tokens_per_step: float = 1.0


@dataclass(frozen=True, kw_only=True)
class EnergySummary:
    """Energy per generated and per prompt token across the deployment (None for a phase not priced), and TOPS/W;
    every figure is GPU board energy unless its name says node or wall. ``*_power_w_per_device``: a phase's board
    power averaged over the instance's devices. ``joules_per_token_node``: with the rest of each node's power
    (hardware ``power.host_per_node``); ``joules_per_token_wall``: that times the facility's PUE (``power.pue``);
    None when the hardware file does not give them (docs/energy.md)."""

    joules_per_token: float | None
    prefill_joules_per_token: float | None
    tops_per_watt: float
    prefill_power_w_per_device: float | None = None
    decode_power_w_per_device: float | None = None
    joules_per_token_node: float | None = None
    joules_per_token_wall: float | None = None


@dataclass(frozen=True, kw_only=True)
class SystemSummary:
    """The whole deployment in steady state (report/metrics.py system_summary): requests and tokens per second,
    and which pool or phase bounds them."""

    requests_per_s: float
    output_tokens_per_s: float
    output_tokens_per_s_per_device: float
    total_tokens_per_s_per_device: float
    bound: str


@dataclass(frozen=True, kw_only=True)
class Report:
    """Everything ``archsim run`` shows. ``prefill``/``decode``/``energy`` are None when the
    deployment does not fit (a layout that does not fit is reported, never priced); a phase not priced
    (``phase`` decode or prefill) is None too."""

    workload: str
    model: ModelSummary
    scenario: ScenarioSummary
    deployment: DeploymentSummary
    memory: MemorySummary
    prefill: PrefillSummary | None
    decode: DecodeSummary | None
    energy: EnergySummary | None
    system: SystemSummary | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict (floats finite; None where not applicable)."""
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "extra"}
        out.update(_plain(dict(self.extra)))
        return out

    def get(self, dotted: str) -> Any:
        """Value at a dotted JSON path, e.g. ``report.get("decode.tokens_per_s")``."""
        node: Any = self.to_dict()
        for part in dotted.split("."):
            node = node[part]
        return node


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"non-finite value {value!r} in a report")
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return _plain(value.item())
    return value
