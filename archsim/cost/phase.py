"""Price a whole phase graph (prefill or decode step) on one chip: per-op costs and phase totals.

Ops run one after another (time is the serial sum; overlap between ops is the simulator's job).
A compact graph (``graph.graph["repeats"]``, graph/build.py) prices each representative layer once and
weights it by the layers it stands for. Totals are correctly rounded sums (``math.fsum``) over every op
instance, so they do not depend on order and a compact graph's totals equal the full graph's bit for bit.
Energy adds busy power (idle, plus photonic lasers and tuning, plus the active baseline of a chip running kernels:
``Hardware.busy_power_w``) over the phase time to the ops' dynamic energy. The work is priced through
the array path (``cost/work.py``), so a phase and a 10,000-point sweep share one implementation, including the
placement rule: on a heterogeneous chip each op runs on its fastest engine (``cost/engines.py``) and
``OpCost.engine`` names it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping

import numpy as np

from archsim.config.hardware import Hardware
from archsim.cost.opcost import OpCost
from archsim.cost.work import GraphWork, Libraries, WorkCost, extract_work, hardware_arrays, price_work
from archsim.graph.dag import OpGraph, is_graph, topological_order
from archsim.graph.op import Op

TERA = 1e12  # SI prefix: TOPS/W = 1e12 FLOP/s per W


@dataclass(frozen=True, kw_only=True)
class PhaseCost:
    """Totals of a phase and the cost of each op (keyed by op name, in graph order)."""

    ops: Mapping[str, OpCost]
    time_s: float
    flops: float
    bytes_by_level: Mapping[str, float]
    dynamic_energy_j: float
    idle_energy_j: float
    energy_j: float
    time_s_by_bound: Mapping[str, float]
    bound: str
    mfu: float
    mfu_dtype: str
    hbm_bandwidth_utilisation: float
    tops_per_w: float
    heaviest: tuple[str, ...]
    time_s_by_layer: Mapping[int | str, float] = field(default_factory=dict)  # Op.layer, else op name
    # the same keys: FLOPs, dynamic energy and main-memory bytes of each layer, so that a pipeline stage's
    # device can be charged its own work (mapping/phases.py)
    flops_by_layer: Mapping[int | str, float] = field(default_factory=dict)
    dynamic_energy_j_by_layer: Mapping[int | str, float] = field(default_factory=dict)
    main_bytes_by_layer: Mapping[int | str, float] = field(default_factory=dict)
    # the arrays behind the totals (ops in graph order, their work and per-op prices), for callers that weight
    # ops themselves (mapping/phases.py: the bottleneck stage, the deployment totals; sweeps re-price them)
    op_list: tuple[Op, ...] = field(default=(), compare=False, repr=False)
    repeats: object = field(default=None, compare=False, repr=False)  # graph/build.py LayerRepeats of a compact graph
    work: GraphWork | None = field(default=None, compare=False, repr=False)
    work_cost: WorkCost | None = field(default=None, compare=False, repr=False)


def graph_ops(graph: OpGraph | Iterable[Op]) -> list[Op]:
    """Ops of a phase graph (an OpGraph, or a networkx.DiGraph) in topological order (or of a plain iterable of
    ops, as given)."""
    if is_graph(graph):
        if graph.graph.get("build_order"):  # GraphBuilder: node order is already topological
            return [data["op"] for data in graph.nodes.values()]
        return [graph.nodes[name]["op"] for name in topological_order(graph)]
    return list(graph)


def price_graph(graph: OpGraph | Iterable[Op], hw: Hardware, *, attention: str = "flash",
                heaviest: int = 10, cuda_graph: bool = False, libraries: Libraries = ()) -> PhaseCost:
    """Price every op of ``graph`` on ``hw`` and sum the phase (see the module docstring). ``cuda_graph``: the
    step is replayed from a CUDA graph, so each kernel's launch floor is ``hw.graph_launch_s`` instead of
    ``kernel_launch``. ``libraries``: the kernel library factors per op kind (``cost.work.extract_work``)."""
    ops = graph_ops(graph)
    repeats = graph.graph.get("repeats") if is_graph(graph) else None
    work = extract_work(ops, hw, attention=attention, libraries=libraries)
    if repeats is not None:
        work = replace(work, count=np.array([repeats.count(op.layer) for op in ops], dtype=float))
    cost = price_work(work, graph_arrays(hw, work, cuda_graph=cuda_graph))
    return _phase_cost(ops, work, cost, hw, heaviest, repeats)


@dataclass(frozen=True, kw_only=True)
class PricedOps:
    """Ops priced without the phase totals: the ops, their work arrays and per-op prices (``price_ops``)."""

    op_list: tuple[Op, ...]
    work: GraphWork
    work_cost: WorkCost
    repeats: object = None


def price_ops(ops: Iterable[Op], hw: Hardware, *, attention: str = "flash", cuda_graph: bool = False,
              libraries: Libraries = ()) -> PricedOps:
    """The per-op arrays ``price_graph`` builds its totals from, for callers that weight ops themselves."""
    ops = graph_ops(ops)
    work = extract_work(ops, hw, attention=attention, libraries=libraries)
    return PricedOps(op_list=tuple(ops), work=work, work_cost=price_work(work, graph_arrays(hw, work,
                                                                                           cuda_graph=cuda_graph)))


def graph_arrays(hw: Hardware, work: GraphWork, *, cuda_graph: bool = False):
    """The chip's rate arrays for ``work`` (``cost/work.py``), with the CUDA-graph launch floor when the step is
    replayed from a graph: the one place ``price_graph`` and a sweep's base point get them."""
    arrays = hardware_arrays(hw, work)
    if cuda_graph:
        arrays = replace(arrays, kernel_launch_s=np.asarray(hw.graph_launch_s, dtype=float))
    return arrays


class OpCosts(Mapping[str, OpCost]):
    """Per-op costs keyed by op name, built on first access (a phase has ~1,500 ops; most callers
    read the totals and a few heavy ops)."""

    def __init__(self, ops: list[Op], work: GraphWork, cost: WorkCost, hw: Hardware, repeats=None):
        self._ops, self._work, self._cost, self._hw, self._repeats = ops, work, cost, hw, repeats
        self._index = {op.name: i for i, op in enumerate(ops)}
        self._cache: dict[str, OpCost] = {}

    def __len__(self) -> int:
        return len(self._ops) if self._repeats is None else self._repeats.full_size

    def __iter__(self):
        if self._repeats is None:
            return iter(self._index)
        return (name for _, name in sorted((index, name) for op in self._ops
                                           for name, index in self._repeats.instances(op.name, op.layer)))

    def __getitem__(self, name: str) -> OpCost:
        if name not in self._cache:
            rep = name if self._repeats is None else self._repeats.representative(name)
            self._cache[name] = self._build(self._index[rep], name)
        return self._cache[name]

    def _build(self, i: int, name: str) -> OpCost:
        op, work, cost, hw = self._ops[i], self._work, self._cost, self._hw
        levels = work.level_names
        nbytes = cost.bytes[i].tolist()
        t = float(cost.time_s[i])
        energy_by = {"compute": float(cost.compute_j[i]),
                     **{f"memory:{name}": float(v) for name, v in zip(levels, cost.memory_j[i])},
                     "network": float(cost.network_j[i])}
        main_bytes = nbytes[levels.index(hw.main_memory.name)]
        return OpCost(
            name=name, kind=op.kind, engine=_engine(op, work, cost, i),
            flops=float(op.flops), compute_s=float(cost.compute_s[i]), bytes_by_level=dict(zip(levels, nbytes)),
            memory_s_by_level=dict(zip(levels, cost.memory_s[i].tolist())),
            network_bytes=float(work.network_bytes[i]), network_s=float(cost.network_s[i]),
            launch_s=float(cost.launch_s[i]), time_s=t, bound=cost.bound_labels[cost.bound_index[i]],
            energy_j=float(cost.energy_j[i]), energy_j_by=energy_by,
            achieved_flop_per_s=op.flops / t if t > 0 else 0.0,
            bandwidth_utilisation=main_bytes / t / hw.main_memory.bandwidth_bytes_per_s if t > 0 else 0.0)


def _engine(op: Op, work: GraphWork, cost: WorkCost, i: int) -> str:
    """The engine row ``i`` runs on: the one placement chose (``WorkCost.engine_choice``), else its default
    engine (its rate key's), or the op's own engine label for an op without FLOPs."""
    if cost.engine_choice is not None and cost.engine_choice[i] > 0:
        return cost.engine_labels[cost.engine_choice[i]]
    return work.rate_keys[work.rate_index[i]][0] if op.flops > 0 else op.engine


def _fsum(values: np.ndarray, count: np.ndarray) -> float:
    """Correctly rounded sum of ``values`` with each entry taken ``count`` times (order-free)."""
    return math.fsum(np.repeat(values, count.astype(np.int64)).tolist())


def _instances(ops: list[Op], count: np.ndarray, repeats) -> tuple[np.ndarray, np.ndarray]:
    """(row, full-graph index) of every op instance; a plain graph's instances are its rows."""
    if repeats is None:
        index = np.arange(len(ops))
        return index, index
    rows = np.repeat(np.arange(len(ops)), count.astype(np.int64))
    if not ops:
        return rows, rows
    offsets = {rep: np.array(repeats.offsets(rep), dtype=np.int64) for rep in repeats.members}
    single = np.zeros(1, dtype=np.int64)
    first = np.array([repeats.full_index[op.name] for op in ops], dtype=np.int64)
    return rows, first[rows] + np.concatenate([offsets.get(op.layer, single) for op in ops])


def _heaviest(ops: list[Op], work: GraphWork, cost: WorkCost, repeats, limit: int) -> tuple[str, ...]:
    """Names of the ``limit`` slowest op instances; ties keep the full graph's build order."""
    rows, index = _instances(ops, work.count, repeats)
    order = np.lexsort((index, -cost.time_s[rows]))[:limit]
    if repeats is None:
        return tuple(ops[rows[j]].name for j in order)
    return tuple(repeats.name_at(ops[rows[j]].name, ops[rows[j]].layer, int(index[j])) for j in order)


def _by_layer(ops: list[Op], values: np.ndarray, repeats) -> dict[int | str, float]:
    """Summed per-op ``values`` per decoder layer (``Op.layer``); ops outside layers keyed by their name."""
    groups: dict[int | str, list[float]] = {}
    for op, t in zip(ops, values.tolist()):
        groups.setdefault(op.name if op.layer is None else op.layer, []).append(t)
    out = {key: math.fsum(v) for key, v in groups.items()}
    if repeats is not None:
        for rep, members in repeats.members.items():
            for layer in members:
                out[layer] = out[rep]
    return out


def _phase_cost(ops: list[Op], work: GraphWork, cost: WorkCost, hw: Hardware, heaviest: int,
                repeats=None) -> PhaseCost:
    count = work.count
    time_s = _fsum(cost.time_s, count)
    flops = _fsum(work.flops, count)
    dynamic = _fsum(cost.energy_j, count)
    idle = hw.busy_power_w * time_s  # every op second is a busy second
    by_bound = {}
    for b, label in enumerate(cost.bound_labels):
        t = _fsum(cost.time_s[cost.bound_index == b], count[cost.bound_index == b])
        if t > 0:
            by_bound[label] = t
    mfu, mfu_dtype = 0.0, ""
    if work.rate_keys and time_s > 0:
        flops_by_key = [_fsum(work.flops[work.rate_index == k], count[work.rate_index == k])
                        for k in range(len(work.rate_keys))]
        engine, mfu_dtype = work.rate_keys[int(np.argmax(flops_by_key))]
        mfu = flops / (time_s * hw.compute[engine].peak_flop_per_s[mfu_dtype])
    bytes_by_level = {name: _fsum(cost.bytes[:, j], count) for j, name in enumerate(work.level_names)}
    main_bytes = bytes_by_level[hw.main_memory.name]
    energy = dynamic + idle
    return PhaseCost(
        ops=OpCosts(ops, work, cost, hw, repeats), time_s=time_s, flops=flops,
        bytes_by_level=bytes_by_level,
        dynamic_energy_j=dynamic, idle_energy_j=idle, energy_j=energy, time_s_by_bound=by_bound,
        bound=max(by_bound, key=by_bound.get) if by_bound else "none", mfu=mfu, mfu_dtype=mfu_dtype,
        hbm_bandwidth_utilisation=main_bytes / (time_s * hw.main_memory.bandwidth_bytes_per_s) if time_s > 0 else 0.0,
        tops_per_w=flops / energy / TERA if energy > 0 else 0.0,
        heaviest=_heaviest(ops, work, cost, repeats, heaviest), time_s_by_layer=_by_layer(ops, cost.time_s, repeats),
        flops_by_layer=_by_layer(ops, np.asarray(work.flops, dtype=float), repeats),
        dynamic_energy_j_by_layer=_by_layer(ops, cost.energy_j, repeats),
        main_bytes_by_layer=_by_layer(ops, work.bytes[:, work.level_names.index(hw.main_memory.name)], repeats),
        op_list=tuple(ops), work=work, work_cost=cost, repeats=repeats)
