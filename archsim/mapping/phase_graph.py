"""One device's operator graph of a phase step under a layout, priced once per shape: the graph ``price_phase``
times, and the per-layer / per-stage regrouping of its costs."""
from __future__ import annotations

from dataclasses import dataclass, replace
from math import fsum
from typing import Mapping

from archsim.config.hardware import Hardware
from archsim.config.model import ModelConfig
from archsim.cost.phase import PhaseCost, PricedOps, price_graph, price_ops
from archsim.cost.work import Libraries
from archsim.graph.build import build_decode, build_prefill, routed_expert_ops
from archsim.graph.expert_load import ExpertLoad, RankWork
from archsim.graph.op import expert_layout
from archsim.graph.precision import Precision, Shard


@dataclass(frozen=True, kw_only=True)
class Forward:
    """One forward pass of one attention replica: ``seqs`` sequences of ``new_tokens`` new tokens after ``past``
    cached ones. ``decode``: a decode step (absorbed MLA over the cache); else a prefill (chunk)."""

    decode: bool
    seqs: int
    new_tokens: int
    past: int = 0

    @property
    def tokens(self) -> int:
        return self.seqs * self.new_tokens


def device_phase_graph(model: ModelConfig, phase: str, batch: int, length: int, precision: Precision, tp: int,
                       ep: int, routed_tokens: float | None, mtp: bool, compact: bool = False,
                       expert_load: ExpertLoad | None = None, ep_mode: str | None = None, *,
                       moe_tp: int = 1, rank_work: RankWork | None = None, past: int = 0,
                       row_layout: str | None = None):
    """One device's operator graph of one ``phase`` step ("prefill": ``length`` new tokens per sequence after
    ``past`` cached ones, else decode over a ``length``-token context) for ``batch`` sequences, sharded ``tp`` ways
    (and ``moe_tp`` x ``ep`` ways for a MoE model). ``rank_work``: the routed work of this device's expert slots
    (mapping/experts.py), else ``routed_tokens`` over its E/ep experts; ``compact``: one decoder layer per kind,
    weighted (graph/build.py). The routed experts' rows are laid out as ``row_layout`` (default: as after a
    DeepEP exchange of ``ep_mode``, which defaults to throughput for prefill and low_latency for decode,
    ``graph.op.expert_layout``; contiguous without EP)."""
    shard = Shard(tp=tp, ep=ep if model.is_moe else 1, moe_tp=moe_tp if model.is_moe else 1)
    mode = (ep_mode or ("throughput" if phase == "prefill" else "low_latency")) if model.is_moe and ep > 1 else None
    layout = row_layout or expert_layout(mode)
    if phase == "prefill":
        return build_prefill(model, batch=batch, prompt_len=length, precision=precision, shard=shard, mtp=mtp,
                             routed_tokens=routed_tokens, compact=compact, expert_load=expert_load,
                             expert_layout=layout, rank_work=rank_work, past_len=past)
    return build_decode(model, batch=batch, context=length, precision=precision, shard=shard, mtp=mtp,
                        routed_tokens=routed_tokens, compact=compact, expert_load=expert_load,
                        expert_layout=layout, rank_work=rank_work)


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


@dataclass(frozen=True, kw_only=True)
class PricedGraph:
    """A priced device graph: compute seconds per layer key (``by_layer_key``), FLOPs, the activation peak of
    one op's live tensors, and the graph's PhaseCost (api.py reuses it for energy, MFU and heaviest ops)."""

    layer_s: Mapping
    flops: float
    activation_peak_bytes: float
    cost: PhaseCost


def priced_graph(model: ModelConfig, hw: Hardware, fwd: Forward, precision: Precision, shard: Shard, *,
                 mtp: bool, rank_work: RankWork | None, row_layout: str, attention: str, cuda_graph: bool,
                 cache: dict | None, libraries: Libraries = ()) -> PricedGraph:
    """The compact device graph of forward ``fwd`` priced on ``hw``: per-layer times and totals equal the full
    graph's bit for bit (tests/cost/test_fast_path.py). ``cache`` (owned by the caller, e.g. one plan search)
    avoids pricing the same shape twice."""
    key = ("graph", fwd, shard, mtp, rank_work, row_layout, attention, cuda_graph, libraries)
    if cache is not None and key in cache:
        return cache[key]
    if fwd.decode:
        graph = build_decode(model, batch=fwd.seqs, context=fwd.past + fwd.new_tokens, precision=precision,
                             shard=shard, mtp=mtp, compact=True, expert_layout=row_layout, rank_work=rank_work)
    else:
        graph = build_prefill(model, batch=fwd.seqs, prompt_len=fwd.new_tokens, precision=precision, shard=shard,
                              past_len=fwd.past, compact=True, expert_layout=row_layout, rank_work=rank_work)
    cost = price_graph(graph, hw, attention=attention, cuda_graph=cuda_graph, libraries=libraries)
    peak = max((sum(o.nbytes for o in (*op.reads, *op.writes) if o.role in ("activation", "output"))
                for op in (graph.nodes[n]["op"] for n in graph.nodes)), default=0.0)
    out = PricedGraph(layer_s=by_layer_key(model, cost.time_s_by_layer), flops=cost.flops,
                      activation_peak_bytes=peak, cost=cost)
    if cache is not None:
        cache[key] = out
    return out


def routed_cost(model: ModelConfig, hw: Hardware, precision: Precision, shard: Shard, work: RankWork, *,
                row_layout: str, attention: str, cache: dict | None, libraries: Libraries = ()) -> PricedOps:
    """The routed-expert ops of one MoE layer for a device doing ``work``, priced (the work of EP ranks other than
    the graph's device enters the deployment totals through it)."""
    key = ("routed", shard, work, row_layout, attention, libraries)
    if cache is not None and key in cache:
        return cache[key]
    cost = price_ops(routed_expert_ops(model, precision, shard, work, row_layout), hw, attention=attention,
                     libraries=libraries)
    if cache is not None:
        cache[key] = cost
    return cost


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


def layer_of_op(name: str) -> int | str:
    """Decoder layer index of an op name (``layers.3.mlp.gate`` -> 3); the embedding -> "embed"; the head,
    final norm and MTP modules -> "head" (they sit on the last pipeline stage)."""
    if name.startswith("layers."):
        return int(name.split(".", 2)[1])
    if name.startswith("embed_tokens"):
        return "embed"
    return "head"
