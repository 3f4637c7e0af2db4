"""One device's phase (prefill or decode step) under a Parallelism: its sharded graph priced by the cost
model, the collectives the layout adds (TP all-reduce, EP dispatch/combine, PP send/recv), and the split
into compute, communication and exposed communication."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from math import ceil, fsum
from typing import Mapping

from archsim.config.hardware import Hardware
from archsim.config.model import ModelConfig
from archsim.cost.collectives import price_collective, price_ep_exchange
from archsim.errors import ConfigError
from archsim.cost.phase import PhaseCost, price_graph
from archsim.graph.build import build_decode, build_prefill
from archsim.graph.expert_load import ExpertLoad
from archsim.graph.op import expert_layout
from archsim.graph.params import kv_elements_per_token_per_layer
from archsim.graph.precision import Precision, Shard
from archsim.mapping.device_memory import stage_layers
from archsim.mapping.parallelism import Parallelism


@dataclass(frozen=True, kw_only=True)
class LayerComm:
    """Communication of one layer for one micro-batch on one device, by kind (seconds)."""

    tp_all_reduce_s: float = 0.0
    ep_dispatch_s: float = 0.0
    ep_combine_s: float = 0.0
    cp_kv_exchange_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.tp_all_reduce_s + self.ep_dispatch_s + self.ep_combine_s + self.cp_kv_exchange_s


@dataclass(frozen=True, kw_only=True)
class PhaseBreakdown:
    """One step of a phase on the bottleneck device.

    ``compute_s`` and ``communication_s`` are the step's totals over its micro-batches; ``exposed_s`` is
    the communication not hidden behind compute; ``bubble_s`` the pipeline fill/drain idle time.
    ``time_s = compute_s + exposed_s + bubble_s``. ``stage_compute_s`` lists each stage's compute for
    one micro-batch (the simulator uses it); ``layer_compute_s`` / ``layer_comm`` are per layer of the
    bottleneck stage, one micro-batch.
    """

    phase: str
    micro_batches: int
    tokens_per_micro_batch: int
    compute_s: float
    communication_s: float
    exposed_s: float
    bubble_s: float
    comm_by_kind: Mapping[str, float]
    stage_compute_s: tuple[float, ...]
    layer_compute_s: tuple[float, ...] = ()
    layer_comm: tuple[LayerComm, ...] = ()
    pp_send_s: float = 0.0
    activation_peak_bytes: float = 0.0
    # One device's own work over the step: a device of pipeline stage s runs that stage's layers (the
    # embedding on the first, the head and MTP on the last) for 1/cp of each micro-batch's tokens. The
    # *_per_device figures are the bottleneck stage's device (``worst_stage``), the one whose time this is.
    flops_per_device: float = 0.0
    main_memory_bytes_per_device: float = 0.0
    dynamic_energy_j_per_device: float = 0.0
    worst_stage: int = 0
    stage_dynamic_energy_j: tuple[float, ...] = ()   # one device of each stage, per step
    # the step's totals over every device (each stage's per-device work times its tp*cp*dp devices); equal
    # to the priced graph's totals times micro_batches * tp * dp
    deployment_flops: float = 0.0
    deployment_dynamic_energy_j: float = 0.0
    # the priced graph of one micro-batch (flash attention), kept so callers need not price it again
    graph_cost: PhaseCost | None = field(default=None, compare=False, repr=False)

    @property
    def time_s(self) -> float:
        return self.compute_s + self.exposed_s + self.bubble_s

    def to_dict(self) -> dict:
        return {"time_s": self.time_s, "compute_s": self.compute_s, "communication_s": self.communication_s,
                "exposed_communication_s": self.exposed_s, "bubble_s": self.bubble_s,
                "micro_batches": self.micro_batches, "tokens_per_micro_batch": self.tokens_per_micro_batch,
                "communication_by_kind_s": dict(self.comm_by_kind)}


EP_MODES = ("throughput", "low_latency")


def ep_exchange_mode(model: ModelConfig, ep: int, phase: str, ep_mode: str | None = None) -> str | None:
    """The EP dispatch/combine kernels of a ``phase`` step's MoE layers: ``ep_mode`` when given, else
    throughput (DeepEP normal kernels) for prefill and low_latency (DeepEP low-latency kernels) for decode;
    None when there is no EP exchange (a dense model, or ``ep`` = 1). The one rule behind both the
    exchange ``_layer_comm`` prices and the expert GEMM layout ``device_phase_graph`` builds."""
    if ep_mode is not None and ep_mode not in EP_MODES:
        raise ConfigError(None, "ep.mode", " or ".join(EP_MODES), ep_mode)
    if not model.is_moe or ep <= 1:
        return None
    return ep_mode or ("throughput" if phase == "prefill" else "low_latency")


def device_phase_graph(model: ModelConfig, phase: str, batch: int, length: int, precision: Precision, tp: int,
                       ep: int, routed_tokens: float | None, mtp: bool, compact: bool = False,
                       expert_load: ExpertLoad | None = None, ep_mode: str | None = None):
    """One device's operator graph of one ``phase`` step ("prefill": ``length`` = prompt length, else
    decode over a ``length``-token context) for ``batch`` sequences, sharded ``tp`` ways (and ``ep`` ways
    for a MoE model; a dense model ignores ``ep``). ``routed_tokens``: tokens the device's EP group
    routes; ``compact``: one decoder layer per kind, weighted (graph/build.py); the routed experts' GEMMs
    are laid out for the phase's EP exchange (``ep_exchange_mode``, ``expert_layout``). The graph
    price_phase prices; whatif.sweep builds the same one to keep per-op arrays."""
    shard = Shard(tp=tp, ep=ep if model.is_moe else 1)
    layout = expert_layout(ep_exchange_mode(model, shard.ep, phase, ep_mode))
    if phase == "prefill":
        return build_prefill(model, batch=batch, prompt_len=length, precision=precision, shard=shard, mtp=mtp,
                             routed_tokens=routed_tokens, compact=compact, expert_load=expert_load,
                             expert_layout=layout)
    return build_decode(model, batch=batch, context=length, precision=precision, shard=shard, mtp=mtp,
                        routed_tokens=routed_tokens, compact=compact, expert_load=expert_load,
                        expert_layout=layout)


def representative_model(model: ModelConfig) -> tuple[ModelConfig, dict[bool, int]] | None:
    """A copy of ``model`` with one dense and/or one MoE layer (all decoder layers of a kind are
    identical ops), and which of its layers stands for each kind; None when layers do not follow
    the simple dense-then-MoE pattern."""
    if model.moe_layer_freq != 1:
        return None
    kinds = sorted({model.is_moe_layer(i) for i in range(model.num_hidden_layers)})
    dense_first = min(model.first_k_dense_replace, 1) if model.is_moe else 0
    small = replace(model, num_hidden_layers=len(kinds), first_k_dense_replace=dense_first)
    return small, {kind: i for i, kind in enumerate(kinds)}


def _priced(model, hw, phase, batch, length, precision, tp, ep, routed, mtp, cache, expert_load=None,
            attention="flash", ep_mode=None):
    """(compute seconds per layer key, graph FLOPs, activation peak bytes, the graph's PhaseCost) of one
    device's graph for one micro-batch (api.py reuses the PhaseCost for energy, MFU and heaviest ops).

    The graph is compact (graph/build.py: one decoder layer per kind, weighted by the layers it stands
    for); its per-layer times and totals equal the full graph's bit for bit (tests/cost/test_fast_path.py).
    ``cache`` (a dict owned by the caller, e.g. one plan search) avoids re-pricing the same shard."""
    key = (phase, batch, length, tp, ep, routed, mtp, expert_load, attention, ep_mode)
    if cache is not None and key in cache:
        return cache[key]
    graph = device_phase_graph(model, phase, batch, length, precision, tp, ep, routed, mtp, compact=True,
                               expert_load=expert_load, ep_mode=ep_mode)
    cost = price_graph(graph, hw, attention=attention)
    layer_s = by_layer_key(model, cost.time_s_by_layer)
    peak = max((sum(o.nbytes for o in (*op.reads, *op.writes) if o.role in ("activation", "output"))
                for op in (graph.nodes[n]["op"] for n in graph.nodes)), default=0.0)
    out = (layer_s, cost.flops, peak, cost)
    if cache is not None:
        cache[key] = out
    return out


def by_layer_key(model: ModelConfig, by_layer: Mapping) -> dict:
    """A PhaseCost ``*_by_layer`` mapping regrouped by decoder layer index, "embed" and "head" (summed)."""
    groups: dict = {}
    for k, v in by_layer.items():
        groups.setdefault(_layer_key(model, k), []).append(v)
    return {k: fsum(v) for k, v in groups.items()}


def stage_totals(per_key: Mapping, stages: list, pp: int) -> list[float]:
    """Sum of ``per_key`` (by_layer_key's keys) over each pipeline stage's layers; the embedding counts on
    the first stage, the head on the last."""
    out = []
    for s, layers in enumerate(stages):
        t = sum(per_key.get(layer, 0.0) for layer in layers)
        if s == 0:
            t += per_key.get("embed", 0.0)
        if s == pp - 1:
            t += per_key.get("head", 0.0)
        out.append(t)
    return out


def _layer_key(model: ModelConfig, key):
    """PhaseCost.time_s_by_layer key (Op.layer, or the op name outside layers) -> decoder layer index,
    "embed" or "head" (final norm, LM head and the MTP modules)."""
    if isinstance(key, int):
        return key if key < model.num_hidden_layers else "head"
    return layer_of_op(key)


def price_phase(model: ModelConfig, hw: Hardware, par: Parallelism, precision: Precision, *, phase: str,
                batch: int, length: int, mtp: bool = False, overlap: bool = True,
                ep_mode: str | None = None, cache: dict | None = None,
                expert_load: ExpertLoad | None = None, attention: str = "flash") -> PhaseBreakdown:
    """Price one ``phase`` step for ``batch`` sequences across the deployment.

    ``length`` is the prompt length (prefill) or the context (decode). Each attention replica (``tp``
    chips) takes ``batch / dp`` sequences, split into ``micro_batches``; with ``cp`` a prefill's tokens
    are split ``cp`` ways. EP groups of ``ep`` chips see the tokens of ``ep / tp`` replicas.
    With ``overlap`` and two or more micro-batches the communication of one micro-batch hides behind
    the compute of another (DeepSeek's two-micro-batch overlap): exposed = max(0, comm - compute).
    EP mode: throughput kernels for prefill, low-latency kernels for decode unless ``ep_mode`` says
    (``ep_exchange_mode``); the routed experts' GEMMs run in the layout that mode's dispatch hands them
    (masked after low-latency, contiguous otherwise: ``expert_layout``).
    """
    seqs = ceil(batch / par.dp)
    mb = min(par.micro_batches, seqs)
    b_mb = ceil(seqs / mb)
    q_len = length if phase == "prefill" else 1 + (model.num_nextn_predict_layers if mtp else 0)
    tokens_mb = b_mb * q_len
    # the EP group sees the tokens of ep / tp replicas; dividing the whole graph by cp below then leaves
    # each chip its share of the expert work
    routed = tokens_mb * max(par.ep, par.tp) / par.tp if model.is_moe else None
    # cp splits a prefill's tokens (and their attention work) evenly over cp chips
    raw, _, act_peak, graph_cost = _priced(model, hw, phase, b_mb, length, precision, par.tp, par.ep, routed,
                                           mtp, cache, expert_load, attention, ep_mode)
    layer_s = {k: v / par.cp for k, v in raw.items()}
    stages = stage_layers(model, par.pp)
    stage_s = stage_totals(layer_s, stages, par.pp)
    worst = max(range(par.pp), key=lambda s: stage_s[s])
    # each device's own work over the step (per micro-batch stage sums, 1/cp of the tokens, mb times)
    per_step = mb / par.cp
    stage_flops, stage_dyn, stage_bytes = (
        [v * per_step for v in stage_totals(by_layer_key(model, by_layer), stages, par.pp)]
        for by_layer in (graph_cost.flops_by_layer, graph_cost.dynamic_energy_j_by_layer,
                         graph_cost.main_bytes_by_layer))
    by_kind: dict = {}  # every layer of a kind (dense / MoE) communicates the same
    comms = []
    for layer in stages[worst]:
        kind = model.is_moe_layer(layer)
        if kind not in by_kind:
            by_kind[kind] = _layer_comm(model, hw, par, precision, layer, tokens_mb, phase, ep_mode)
        comms.append(by_kind[kind])
    comm_mb = sum(c.total_s for c in comms)
    act_bytes = tokens_mb * model.hidden_size * precision.activations.bytes / par.cp
    pp_send = price_collective("p2p", act_bytes, par.devices, hw).time_s if par.pp > 1 else 0.0
    compute_mb = stage_s[worst]
    compute = compute_mb * mb
    comm = (comm_mb + pp_send) * mb
    if overlap and mb >= 2:
        exposed = max(0.0, comm - compute)
    else:
        exposed = comm
    bubble = (par.pp - 1) * (compute_mb + (comm_mb + pp_send) if not (overlap and mb >= 2)
                             else max(compute_mb, comm_mb + pp_send))
    comm_kinds = {"tp_all_reduce": mb * sum(c.tp_all_reduce_s for c in comms),
                  "ep_dispatch": mb * sum(c.ep_dispatch_s for c in comms),
                  "ep_combine": mb * sum(c.ep_combine_s for c in comms),
                  "cp_kv_exchange": mb * sum(c.cp_kv_exchange_s for c in comms), "pp_send": mb * pp_send}
    return PhaseBreakdown(phase=phase, micro_batches=mb, tokens_per_micro_batch=tokens_mb, compute_s=compute,
                          communication_s=comm, exposed_s=exposed, bubble_s=bubble, comm_by_kind=comm_kinds,
                          stage_compute_s=tuple(stage_s),
                          layer_compute_s=tuple(layer_s.get(layer, 0.0) for layer in stages[worst]),
                          layer_comm=tuple(comms), pp_send_s=pp_send, activation_peak_bytes=act_peak / par.cp,
                          flops_per_device=stage_flops[worst], main_memory_bytes_per_device=stage_bytes[worst],
                          dynamic_energy_j_per_device=stage_dyn[worst], worst_stage=worst,
                          stage_dynamic_energy_j=tuple(stage_dyn),
                          deployment_flops=fsum(stage_flops) * par.stage_devices,
                          deployment_dynamic_energy_j=fsum(stage_dyn) * par.stage_devices,
                          graph_cost=graph_cost)


def layer_of_op(name: str) -> int | str:
    """Decoder layer index of an op name (``layers.3.mlp.gate`` -> 3); the embedding -> "embed"; the head,
    final norm and MTP modules -> "head" (they sit on the last pipeline stage)."""
    if name.startswith("layers."):
        return int(name.split(".", 2)[1])
    if name.startswith("embed_tokens"):
        return "embed"
    return "head"


def _layer_comm(model: ModelConfig, hw: Hardware, par: Parallelism, precision: Precision, layer: int,
                tokens: int, phase: str, ep_mode: str | None) -> LayerComm:
    """Collectives of one layer for one micro-batch of ``tokens`` tokens of one attention replica."""
    act = precision.activations
    ar_bytes = tokens * model.hidden_size * act.bytes / par.cp
    tp_ar = 0.0
    if par.tp > 1:
        one = price_collective("all_reduce", ar_bytes, par.tp, hw).time_s
        # after o_proj, and after the dense (or shared-expert) down_proj
        tp_ar = 2 * one
    cp_kv = 0.0
    if par.cp > 1 and phase == "prefill":
        # ring attention: every chip's K/V (MLA: the latent + rope key) visits the other cp - 1 chips,
        # the bytes of an all-gather of the layer's whole K/V over the cp group
        per_token = kv_elements_per_token_per_layer(model) * precision.kv_cache.bytes
        if model.attention_kind != "mla":
            per_token /= par.tp
        cp_kv = price_collective("all_gather", tokens * per_token, par.cp, hw).time_s
    mode = ep_exchange_mode(model, par.ep, phase, ep_mode)
    if mode is None or not model.is_moe_layer(layer):
        return LayerComm(tp_all_reduce_s=tp_ar, cp_kv_exchange_s=cp_kv)
    x = price_ep_exchange(tokens=tokens / par.tp / par.cp, hidden=model.hidden_size,
                          topk=model.num_experts_per_tok, n_experts=model.n_routed_experts, ep=par.ep, hw=hw,
                          dispatch_dtype=_dispatch_dtype(precision), combine_dtype=act, n_group=model.n_group,
                          topk_group=model.topk_group, mode=mode)
    return LayerComm(tp_all_reduce_s=tp_ar, ep_dispatch_s=x.dispatch.time_s, ep_combine_s=x.combine.time_s,
                     cp_kv_exchange_s=cp_kv)


def _dispatch_dtype(precision: Precision):
    """FP8 dispatch with 1x128 scales when the expert GEMMs run in FP8 (DeepEP, DSV3-TR §3.3), else the
    activation format."""
    w = precision.routed_expert_weights
    if w.name == "fp8":
        return w
    return precision.activations
