"""One step of a phase (prefill or decode) on one instance of a layout: the busiest device's time, and the work
of every device.

A step is a list of forward passes of the busiest attention replica (``forwards``): a decode step is one; a prefill
is one per ``prefill_chunk`` token budget (prompts packed whole, or one long prompt in chunks after its cached
prefix). Each forward is split into micro-batches (two-batch overlap: one's communication hides behind the other's
compute), chosen per phase by price unless the layout fixes them. The busiest device holds the busiest replica's
sequences (``ceil(batch / dp)``, round robin) and the busiest EP rank's routed work (mapping/experts.py: the
expected maximum over the ranks, which the MoE layer's barrier waits for), plus the collectives of
mapping/layer_comm.py. Every other device's work enters the deployment totals (energy, FLOPs, bytes): busy
replicas their own sequences, idle ones none, each EP rank its mean routed work.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from math import ceil, fsum
from typing import Mapping

import numpy as np

from archsim.config.hardware import Hardware
from archsim.config.model import ModelConfig
from archsim.config.stack import Stack
from archsim.cost.collectives import price_collective
from archsim.cost.phase import PhaseCost
from archsim.cost.work import UNQUANTIZED_GEMM, Libraries
from archsim.errors import ConfigError
from archsim.graph.expert_load import ExpertLoad, RankWork, uniform_load
from archsim.graph.op import expert_layout
from archsim.graph.precision import Precision, Shard
from archsim.mapping.device_memory import stage_layers
from archsim.mapping.experts import busiest_rank_work, mean_rank_work, place_experts
from archsim.mapping.layer_comm import EP_MODES, LayerComm, ep_exchange_mode, layer_comm, moe_exchange
from archsim.mapping.parallelism import Parallelism, check_expert_slots
from archsim.mapping.phase_model import ForwardModel, GraphTerm, LayerKind, PhaseModel, PhaseTotals
from archsim.mapping.phase_graph import (Forward, PricedGraph, by_layer_key, device_phase_graph, layer_of_op,
                                         priced_graph, representative_model, routed_cost, stage_totals)

__all__ = ["PhaseBreakdown", "price_phase", "replica_sequences", "phase_forwards", "LayerComm", "EP_MODES",
           "PhaseModel", "GraphTerm",
           "ep_exchange_mode", "device_phase_graph", "representative_model", "by_layer_key", "stage_totals",
           "layer_of_op", "expert_layout"]


@dataclass(frozen=True, kw_only=True)
class PhaseBreakdown:
    """One step of a phase on the bottleneck device.

    ``compute_s`` and ``communication_s`` are the step's totals over its forwards and micro-batches; ``exposed_s``
    is the communication not hidden behind compute; ``bubble_s`` the pipeline fill/drain idle time.
    ``time_s = compute_s + exposed_s + bubble_s + host_s``. ``stage_compute_s`` lists each stage's compute for one
    micro-batch of the first forward (the simulator uses it); ``layer_compute_s`` / ``layer_comm`` are per layer
    of the bottleneck stage, one micro-batch of the first forward.
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
    forwards: int = 1
    busy_replicas: int = 1
    # One device's own work over the step: a device of pipeline stage s runs that stage's layers (the
    # embedding on the first, the head and MTP on the last) for 1/cp of each micro-batch's tokens. The
    # *_per_device figures are the bottleneck device's (busiest replica, busiest EP rank, ``worst_stage``).
    flops_per_device: float = 0.0
    main_memory_bytes_per_device: float = 0.0
    dynamic_energy_j_per_device: float = 0.0
    worst_stage: int = 0
    stage_dynamic_energy_j: tuple[float, ...] = ()   # one device of each stage, per step
    host_s: float = 0.0  # host time the GPU waits for (the stack's per-iteration overhead not hidden, PhaseModel)
    # the step's totals over every device of the instance: busy replicas' own work and every EP rank's mean
    # routed work
    deployment_flops: float = 0.0
    deployment_dynamic_energy_j: float = 0.0
    deployment_main_bytes: float = 0.0
    # the priced graph of one micro-batch of the first forward, kept so callers need not price it again
    graph_cost: PhaseCost | None = field(default=None, compare=False, repr=False)
    # the step as data (its graphs and weights), for re-pricing on swept hardware (whatif/sweep.py)
    model: "PhaseModel | None" = field(default=None, compare=False, repr=False)

    @property
    def time_s(self) -> float:
        return self.compute_s + self.exposed_s + self.bubble_s + self.host_s

    def to_dict(self) -> dict:
        return {"time_s": self.time_s, "compute_s": self.compute_s, "communication_s": self.communication_s,
                "exposed_communication_s": self.exposed_s, "bubble_s": self.bubble_s, "host_s": self.host_s,
                "micro_batches": self.micro_batches, "tokens_per_micro_batch": self.tokens_per_micro_batch,
                "forwards": self.forwards, "busy_replicas": self.busy_replicas,
                "communication_by_kind_s": dict(self.comm_by_kind)}


def replica_sequences(batch: int, dp: int) -> tuple[tuple[int, int], ...]:
    """(sequences, replicas) of the attention-DP replicas when ``batch`` sequences are spread round robin, busiest
    first: ``batch % dp`` replicas hold one more than the rest (counts, not a list: dp may be huge)."""
    low, extra = divmod(batch, dp)
    return tuple((s, n) for s, n in ((low + 1, extra), (low, dp - extra)) if n > 0)


def phase_forwards(phase: str, seqs: int, length: int, q_len: int, chunk: int | None,
                   past: int = 0) -> list[tuple[Forward, float]]:
    """(forward, count) of one replica's step over ``seqs`` sequences.

    Decode: one forward of ``q_len`` new tokens at a ``length``-token context. Prefill of ``length``-token prompts
    with a ``chunk`` token budget per forward (None: one forward): prompts packed whole, ``chunk // length`` per
    forward; a longer prompt in ``chunk``-token pieces, each after the pieces before it (cached prefix). A piece's
    cost is linear in its prefix (attention FLOPs and K/V bytes are; nothing else depends on it), so the pieces of
    one prompt are priced as the first and last full piece, half the count each, plus the tail. ``past``: tokens
    every prompt already has in the cache before it (a cached prefix, or earlier chunks), which it attends.
    """
    if past:
        return [(replace(fwd, past=fwd.past + past), n) for fwd, n in phase_forwards(phase, seqs, length, q_len,
                                                                                      chunk)]
    if phase == "decode":
        return [(Forward(decode=True, seqs=seqs, new_tokens=q_len, past=length - q_len), 1.0)]
    if chunk is None or seqs * length <= chunk:
        return [(Forward(decode=False, seqs=seqs, new_tokens=length), 1.0)]
    if length <= chunk:
        per = chunk // length
        out = [(Forward(decode=False, seqs=per, new_tokens=length), float(seqs // per))]
        if seqs % per:
            out.append((Forward(decode=False, seqs=seqs % per, new_tokens=length), 1.0))
        return out
    full, tail = divmod(length, chunk)
    out = [(Forward(decode=False, seqs=1, new_tokens=chunk), full * seqs / 2.0),
           (Forward(decode=False, seqs=1, new_tokens=chunk, past=(full - 1) * chunk), full * seqs / 2.0)]
    if tail:
        out.append((Forward(decode=False, seqs=1, new_tokens=tail, past=full * chunk), float(seqs)))
    return out


@dataclass(frozen=True, kw_only=True)
class _Context:
    """What every forward of one phase step shares."""

    model: ModelConfig
    hw: Hardware
    par: Parallelism
    precision: Precision
    phase: str
    seqs: tuple[tuple[int, int], ...]   # (sequences, replicas), busiest first
    mtp: bool
    overlap: bool
    ep_mode: str | None
    load: ExpertLoad | None
    attention: str
    cuda_graph: bool
    cache: dict | None
    libraries: Libraries = ()
    stack: Stack | None = None  # its all-reduce kernel choice (layer_comm)

    @property
    def shard(self) -> Shard:
        moe = self.model.is_moe
        return Shard(tp=self.par.tp, ep=self.par.ep if moe else 1, moe_tp=self.par.moe_tp if moe else 1)

    @property
    def row_layout(self) -> str:
        return expert_layout(ep_exchange_mode(self.model, self.par, self.phase, self.ep_mode))


@dataclass(frozen=True, kw_only=True)
class _ForwardCost:
    """One forward at one micro-batch count: its model, the critical graph and the per-layer detail."""

    model: ForwardModel
    tokens_mb: int
    comm_by_kind: dict
    stage_s: list
    worst: int
    layer_comms: tuple
    act_peak: float
    graph: PricedGraph


def price_phase(model: ModelConfig, hw: Hardware, par: Parallelism, precision: Precision, *, phase: str,
                batch: int, length: int, mtp: bool = False, overlap: bool = True,
                ep_mode: str | None = None, cache: dict | None = None,
                expert_load: ExpertLoad | None = None, attention: str = "flash",
                prefill_chunk: int | None = None, cuda_graph: bool = False, past: int = 0,
                stack: Stack | None = None, graph_max_batch: int | None = None) -> PhaseBreakdown:
    """Price one ``phase`` step for ``batch`` sequences on one instance of ``par`` (module docstring).

    ``length`` is the prompt length (prefill: new tokens, after ``past`` cached ones each) or the context
    (decode). ``prefill_chunk``: tokens per prefill
    forward of one attention replica (None: the whole prefill in one forward). ``cuda_graph``: decode steps are
    replayed from a CUDA graph (per-kernel launch floor ``hw.graph_launch_s``). With ``overlap`` and two or more
    micro-batches the communication of one micro-batch hides behind the compute of another (DeepSeek's
    two-micro-batch overlap), layer by layer: exposed = sum over layers of max(0, comm - compute) per micro-batch.
    EP mode: throughput kernels for prefill,
    low-latency kernels for decode unless ``ep_mode`` (else the stack) says (``ep_exchange_mode``).
    ``graph_max_batch``: the largest decode batch per replica replayed as a CUDA graph (a replica holding more runs
    eagerly; None: any). ``stack``: the serving stack (config/stack.py): its kernel library per op kind, its DeepEP
    mode per phase and its host time per iteration (PhaseModel); None: the reference kernels, no host time.
    """
    if phase not in ("prefill", "decode"):
        raise ConfigError(None, "phase", "prefill or decode", phase)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(None, "batch", "a positive integer", batch)
    if prefill_chunk is not None and (isinstance(prefill_chunk, bool) or not isinstance(prefill_chunk, int)
                                      or prefill_chunk < 1):
        raise ConfigError(None, "prefill_chunk", "a positive number of tokens", prefill_chunk)
    if ep_mode is not None and ep_mode not in EP_MODES:
        raise ConfigError(None, "ep.mode", " or ".join(EP_MODES), ep_mode)
    load = None
    if model.is_moe:
        check_expert_slots(par, model.n_routed_experts)
        load = expert_load or uniform_load(model.n_routed_experts, model.num_experts_per_tok)
    seqs = replica_sequences(batch, par.dp)
    if stack is not None:
        ep_mode = ep_mode or stack.ep_mode(hw, phase)
    if graph_max_batch is not None:  # a replica holding more than the captured sizes launches kernel by kernel
        cuda_graph = cuda_graph and seqs[0][0] <= graph_max_batch
    ctx = _Context(model=model, hw=hw, par=par, precision=precision, phase=phase,
                   seqs=seqs, mtp=mtp, overlap=overlap, ep_mode=ep_mode, load=load,
                   attention=attention, cuda_graph=cuda_graph and phase == "decode", cache=cache,
                   libraries=stack_libraries(stack, hw, phase), stack=stack)
    q_len = 1 + (model.num_nextn_predict_layers if mtp else 0) if phase == "decode" else length
    busiest = ctx.seqs[0][0]
    if isinstance(past, bool) or not isinstance(past, int) or past < 0 or (past and phase != "prefill"):
        raise ConfigError(None, "past", "a cached-token count >= 0 (prefill only)", past)
    forwards = phase_forwards(phase, busiest, length, q_len, prefill_chunk if phase == "prefill" else None, past)
    options = []
    for mb in _micro_batch_options(par, busiest):
        priced = [(_price_forward(ctx, fwd, mb, count), count) for fwd, count in forwards]
        model = PhaseModel(forwards=tuple(c.model for c, _ in priced),
                           main_level=priced[0][0].graph.cost.work.level_names.index(hw.main_memory.name),
                           host=stack.host if stack is not None else None)
        options.append((model.evaluate(), model, priced))
    totals, model, priced = min(options, key=lambda o: float(o[0].time_s))
    return _breakdown(ctx, totals, model, priced)


def stack_libraries(stack: Stack | None, hw: Hardware, phase: str) -> Libraries:
    """(op kind, MMA factor, bandwidth factor) of the libraries ``stack`` runs a ``phase`` step's GEMMs, grouped
    GEMMs and attention with on ``hw`` (cost.work.extract_work); () without a stack."""
    if stack is None:
        return ()
    eff = stack.library_efficiency(hw)
    kinds = (("gemm", "dense_gemm"), (UNQUANTIZED_GEMM, "dense_gemm_unquantized"), ("grouped_gemm", "moe_gemm"),
             ("attention", f"attention_{phase}"))
    return tuple((op_kind, *eff[kind]) for op_kind, kind in kinds if kind in eff)


def _micro_batch_options(par: Parallelism, seqs: int) -> list[int]:
    """The layout's micro-batches, or (None) the candidates priced: 1, 2 and, with a pipeline, pp."""
    if par.micro_batches is not None:
        return [min(par.micro_batches, seqs)]
    return sorted({min(m, seqs) for m in (1, 2, par.pp)})


def _group_tokens(ctx: _Context, fwd: Forward, mb: int) -> list[tuple[float, int]]:
    """(tokens, groups) of the MoE groups of a stage in one micro-batch of ``fwd``, busiest first. A group holds
    the tokens of ``moe_group / (tp * cp)`` consecutive replicas (each sending its share of this forward's
    sequences); a group inside one replica (replicated tokens, or CP spreading a replica over several groups)
    routes the replica's tokens, or the share of them its chips hold."""
    par = ctx.par

    def tokens(s: int) -> float:
        return float(ceil(min(s, fwd.seqs) / mb) * fwd.new_tokens)

    kinds = [(tokens(s), n) for s, n in ctx.seqs]
    if moe_exchange(ctx.model, par) in ("none", "replicated"):
        return kinds
    chips = par.tp * par.cp
    if par.moe_group < chips:
        per = chips // par.moe_group
        return [(t / per, n * per) for t, n in kinds]
    r = par.moe_group // chips
    (high, n_high), (low, _) = kinds[0], (kinds[-1] if len(kinds) > 1 else (0.0, 0))
    full, mixed = divmod(n_high, r)  # replicas 0..n_high-1 hold the extra sequence
    groups = par.dp // r
    out = [(high * r, full)] if full else []
    if mixed:
        out.append((high * mixed + low * (r - mixed), 1))
    rest = groups - full - (1 if mixed else 0)
    if rest:
        out.append((low * r, rest))
    return out


def _moe_layers(model: ModelConfig, mtp: bool) -> int:
    """MoE layers a phase graph holds (its MTP modules' layers included when they run)."""
    n = model.moe_layers_in(0, model.num_hidden_layers) if model.is_moe else 0
    if model.is_moe and mtp:
        n += sum(model.is_moe_layer(model.num_hidden_layers + d) for d in range(model.num_nextn_predict_layers))
    return n


def _price_forward(ctx: _Context, fwd: Forward, mb_wanted: int, count: float) -> _ForwardCost:
    model, par, hw = ctx.model, ctx.par, ctx.hw
    mb = max(1, min(mb_wanted, fwd.seqs))
    one = Forward(decode=fwd.decode, seqs=ceil(fwd.seqs / mb), new_tokens=fwd.new_tokens, past=fwd.past)
    groups = _group_tokens(ctx, fwd, mb)
    placement = (place_experts(ctx.load, par.ep, par.redundant_experts) if model.is_moe else None)
    # the graph's device: the busiest EP rank of the busiest group; with CP the graph is a replica's, / cp below
    work = busiest_rank_work(ctx.load, placement, groups[0][0] * par.cp) if model.is_moe else None
    mtp = ctx.mtp and fwd.decode
    graph = _graph(ctx, one, mtp, work)
    stages = stage_layers(model, par.pp)
    stage_s = stage_totals({k: v / par.cp for k, v in graph.layer_s.items()}, stages, par.pp)
    worst = max(range(par.pp), key=lambda s: stage_s[s])
    copies = work.tokens / par.cp if work is not None else 0.0
    by_kind: dict = {}  # every layer of a kind (dense / MoE) communicates the same
    comms = []
    for layer in stages[worst]:
        kind = model.is_moe_layer(layer)
        if kind not in by_kind:
            by_kind[kind] = layer_comm(model, hw, par, ctx.precision, layer, tokens=one.tokens,
                                       group_tokens=groups[0][0], busiest_copies=copies, phase=ctx.phase,
                                       ep_mode=ctx.ep_mode, stack=ctx.stack)
        comms.append(by_kind[kind])
    comm_mb = fsum(c.total_s for c in comms)
    act_bytes = one.tokens * model.hidden_size * ctx.precision.activations.bytes / par.cp
    pp_send = price_collective("p2p", act_bytes, par.devices, hw).time_s if par.pp > 1 else 0.0
    comm_kinds = {"tp_all_reduce": mb * fsum(c.tp_all_reduce_s for c in comms),
                  "ep_dispatch": mb * fsum(c.ep_dispatch_s for c in comms),
                  "ep_combine": mb * fsum(c.ep_combine_s for c in comms),
                  "cp_kv_exchange": mb * fsum(c.cp_kv_exchange_s for c in comms), "pp_send": mb * pp_send}
    terms = _terms(ctx, fwd, mb, graph, work, groups, placement, stages[worst], worst)
    kinds = tuple(LayerKind(rows=_kind_rows(model, graph.cost, kind),
                            layers=sum(1 for layer in stages[worst] if model.is_moe_layer(layer) == kind),
                            comm_s=comm.total_s, sm_fraction=comm.ep_sm_fraction) for kind, comm in by_kind.items())
    fm = ForwardModel(count=count, mb=mb, terms=terms, comm_mb_s=comm_mb, pp_send_s=pp_send, pp=par.pp,
                      overlapped=ctx.overlap and mb >= 2, kinds=kinds)
    return _ForwardCost(model=fm, tokens_mb=one.tokens, comm_by_kind=comm_kinds, stage_s=stage_s, worst=worst,
                        layer_comms=tuple(comms), act_peak=graph.activation_peak_bytes / par.cp, graph=graph)


def _graph(ctx: _Context, fwd: Forward, mtp: bool, work: RankWork | None) -> PricedGraph:
    return priced_graph(ctx.model, ctx.hw, fwd, ctx.precision, ctx.shard, mtp=mtp, rank_work=work,
                        row_layout=ctx.row_layout, attention=ctx.attention, cuda_graph=ctx.cuda_graph,
                        cache=ctx.cache, libraries=ctx.libraries)


def _terms(ctx: _Context, fwd: Forward, mb: int, graph: PricedGraph, work: RankWork | None,
           groups: list[tuple[float, int]], placement, worst_layers: range, worst: int) -> tuple[GraphTerm, ...]:
    """The forward's graphs with their weights (GraphTerm): the busiest replica's graph (time on the bottleneck
    device; its ops outside the routed experts on every replica that runs this forward whole), the graphs of
    replicas holding fewer sequences, and every MoE group's mean routed work on each of its chips."""
    model, par = ctx.model, ctx.par
    terms = []
    for seqs, replicas in _replica_kinds(ctx.seqs, fwd.seqs):
        priced = graph
        if seqs != fwd.seqs:  # a replica with fewer sequences than the busiest: its own graph
            other = Forward(decode=fwd.decode, seqs=ceil(seqs / mb), new_tokens=fwd.new_tokens, past=fwd.past)
            priced = _graph(ctx, other, ctx.mtp and fwd.decode, work)
        on_stage = _stage_count(model, priced.cost, worst_layers, worst, par.pp)
        outside = _outside_routed(priced.cost) * priced.cost.work.count
        # each of the replica's tp chips runs the graph's shard (its cp chips share one graph)
        terms.append(GraphTerm(cost=priced.cost, time_count=on_stage if priced is graph else 0 * on_stage,
                               time_scale=1.0 / par.cp, total_count=outside, total_scale=float(replicas * par.tp * mb),
                               cuda_graph=ctx.cuda_graph))
    moe_layers = _moe_layers(model, ctx.mtp and fwd.decode)
    if work is not None and moe_layers:
        for tokens, count in groups:
            if tokens <= 0:
                continue
            cost = routed_cost(model, ctx.hw, ctx.precision, ctx.shard, mean_rank_work(ctx.load, placement, tokens),
                               row_layout=ctx.row_layout, attention=ctx.attention, cache=ctx.cache,
                               libraries=ctx.libraries)
            ones = np.ones(len(cost.op_list))
            terms.append(GraphTerm(cost=cost, time_count=0 * ones, time_scale=0.0, total_count=ones,
                                   total_scale=float(count * par.moe_group * moe_layers * mb),
                                   cuda_graph=ctx.cuda_graph))
    return tuple(terms)


def _stage_count(model: ModelConfig, cost: PhaseCost, worst_layers: range, worst: int, pp: int) -> np.ndarray:
    """Per op row of a compact graph: its instances on pipeline stage ``worst`` (the layers it stands for in
    ``worst_layers``; the embedding on the first stage, the head and MTP modules on the last)."""
    inside = set(worst_layers)
    per_layer: dict = {}  # instances on the stage of each representative layer, counted once
    out = np.zeros(len(cost.op_list))
    for i, op in enumerate(cost.op_list):
        key = layer_of_op(op.name)
        if key == "embed":
            out[i] = 1.0 if worst == 0 else 0.0
        elif key == "head":
            out[i] = 1.0 if worst == pp - 1 else 0.0
        else:
            if op.layer not in per_layer:
                per_layer[op.layer] = float(len(inside.intersection(_members(cost, op))))
            out[i] = per_layer[op.layer]
    return out


def _kind_rows(model: ModelConfig, cost: PhaseCost, moe: bool) -> np.ndarray:
    """Rows of a compact graph's ops that make one decoder layer of the kind (its representative layer)."""
    layer = next((op.layer for op in cost.op_list if isinstance(op.layer, int) and op.layer < model.num_hidden_layers
                  and model.is_moe_layer(op.layer) == moe), None)
    return np.array([op.layer == layer and layer is not None and op.name.startswith("layers.")
                     for op in cost.op_list], dtype=bool)


def _members(cost: PhaseCost, op) -> tuple[int, ...]:
    """The decoder layers a compact graph's op row stands for (itself in a full graph)."""
    layer = op.layer
    reps = cost.repeats
    return reps.members[layer] if reps is not None and layer in reps.members else (layer,)


def _outside_routed(cost: PhaseCost) -> np.ndarray:
    """1 for op rows outside the routed experts, 0 for the routed experts' ops (priced per EP rank instead)."""
    return np.array([0.0 if ".mlp.experts." in op.name else 1.0 for op in cost.op_list])


def _replica_kinds(seqs: tuple[tuple[int, int], ...], forward_seqs: int) -> list[tuple[int, int]]:
    """(sequences in this forward, replicas) of the busy replicas: those with at least the forward's sequences
    run it whole, the rest what they hold."""
    kinds: dict[int, int] = {}
    for s, n in seqs:
        if s > 0:
            kinds[min(s, forward_seqs)] = kinds.get(min(s, forward_seqs), 0) + n
    return sorted(kinds.items(), reverse=True)


def _breakdown(ctx: _Context, totals: PhaseTotals, model: PhaseModel,
               priced: list[tuple[_ForwardCost, float]]) -> PhaseBreakdown:
    """The step: the model's totals, the first forward's per-layer detail."""
    first = priced[0][0]
    par = ctx.par
    kinds = {k: fsum(c.comm_by_kind[k] * n for c, n in priced) for k in first.comm_by_kind}
    stage_energy = tuple(fsum(v * n * c.model.mb / par.cp for c, n in priced
                              for v in [stage_totals(by_layer_key(ctx.model, c.graph.cost.dynamic_energy_j_by_layer),
                                                     stage_layers(ctx.model, par.pp), par.pp)[s]])
                         for s in range(par.pp))
    worst_layers = stage_layers(ctx.model, par.pp)[first.worst]
    return PhaseBreakdown(
        phase=ctx.phase, micro_batches=first.model.mb, tokens_per_micro_batch=first.tokens_mb,
        compute_s=float(totals.compute_s), communication_s=float(totals.communication_s),
        exposed_s=float(totals.exposed_s), bubble_s=float(totals.bubble_s), host_s=float(totals.host_s),
        comm_by_kind=kinds,
        stage_compute_s=tuple(first.stage_s),
        layer_compute_s=tuple(first.graph.layer_s.get(layer, 0.0) / par.cp for layer in worst_layers),
        layer_comm=first.layer_comms, pp_send_s=first.model.pp_send_s,
        activation_peak_bytes=max(c.act_peak for c, _ in priced), forwards=round(fsum(n for _, n in priced)),
        busy_replicas=sum(n for s, n in ctx.seqs if s > 0),
        flops_per_device=float(totals.device_flops), main_memory_bytes_per_device=float(totals.device_main_bytes),
        dynamic_energy_j_per_device=float(totals.device_dynamic_energy_j), worst_stage=first.worst,
        stage_dynamic_energy_j=stage_energy, deployment_flops=float(totals.deployment_flops),
        deployment_dynamic_energy_j=float(totals.deployment_dynamic_energy_j),
        deployment_main_bytes=float(totals.deployment_main_bytes), graph_cost=first.graph.cost, model=model)
