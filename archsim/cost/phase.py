"""Price a whole phase graph (prefill or decode step) on one chip: per-op costs and phase totals.

Ops run one after another (time is the serial sum; overlap between ops is the simulator's job).
Energy adds static power (idle, plus photonic lasers and tuning) over the phase time to the ops'
dynamic energy. The work is priced through
the array path (``cost/work.py``), so a phase and a 10,000-point sweep share one implementation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import networkx as nx
import numpy as np

from archsim.config.hardware import Hardware
from archsim.cost.opcost import OpCost
from archsim.cost.work import GraphWork, WorkCost, extract_work, hardware_arrays, price_work
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


def graph_ops(graph: nx.DiGraph | Iterable[Op]) -> list[Op]:
    """Ops of a phase graph in topological order (or of a plain iterable of ops, as given)."""
    if isinstance(graph, nx.DiGraph):
        return [graph.nodes[name]["op"] for name in nx.topological_sort(graph)]
    return list(graph)


def price_graph(graph: nx.DiGraph | Iterable[Op], hw: Hardware, *, attention: str = "flash",
                heaviest: int = 10) -> PhaseCost:
    """Price every op of ``graph`` on ``hw`` and sum the phase (see the module docstring)."""
    ops = graph_ops(graph)
    work = extract_work(ops, hw, attention=attention)
    cost = price_work(work, hardware_arrays(hw, work))
    return _phase_cost(ops, work, cost, hw, heaviest)


class OpCosts(Mapping[str, OpCost]):
    """Per-op costs keyed by op name, built on first access (a phase has ~1,500 ops; most callers
    read the totals and a few heavy ops)."""

    def __init__(self, ops: list[Op], work: GraphWork, cost: WorkCost, hw: Hardware):
        self._ops, self._work, self._cost, self._hw = ops, work, cost, hw
        self._index = {op.name: i for i, op in enumerate(ops)}
        self._cache: dict[str, OpCost] = {}

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self):
        return iter(self._index)

    def __getitem__(self, name: str) -> OpCost:
        if name not in self._cache:
            self._cache[name] = self._build(self._index[name])
        return self._cache[name]

    def _build(self, i: int) -> OpCost:
        op, work, cost, hw = self._ops[i], self._work, self._cost, self._hw
        levels = work.level_names
        nbytes = work.bytes[i].tolist()
        t = float(cost.time_s[i])
        energy_by = {"compute": float(cost.compute_j[i]),
                     **{f"memory:{name}": float(v) for name, v in zip(levels, cost.memory_j[i])},
                     "network": float(cost.network_j[i])}
        main_bytes = nbytes[levels.index(hw.main_memory.name)]
        return OpCost(
            name=op.name, kind=op.kind, engine=work.rate_keys[work.rate_index[i]][0] if op.flops > 0 else op.engine,
            flops=float(op.flops), compute_s=float(cost.compute_s[i]), bytes_by_level=dict(zip(levels, nbytes)),
            memory_s_by_level=dict(zip(levels, cost.memory_s[i].tolist())),
            network_bytes=float(work.network_bytes[i]), network_s=float(cost.network_s[i]),
            launch_s=float(cost.launch_s[i]), time_s=t, bound=cost.bound_labels[cost.bound_index[i]],
            energy_j=float(cost.energy_j[i]), energy_j_by=energy_by,
            achieved_flop_per_s=op.flops / t if t > 0 else 0.0,
            bandwidth_utilisation=main_bytes / t / hw.main_memory.bandwidth_bytes_per_s if t > 0 else 0.0)


def _phase_cost(ops: list[Op], work: GraphWork, cost: WorkCost, hw: Hardware, heaviest: int) -> PhaseCost:
    time_s = float(cost.total_time_s)
    flops = float(work.flops.sum())
    dynamic = float(cost.energy_j.sum())
    idle = hw.static_power_w * time_s
    per_bound = np.bincount(cost.bound_index, weights=cost.time_s, minlength=len(cost.bound_labels))
    by_bound = {label: float(t) for label, t in zip(cost.bound_labels, per_bound) if t > 0}
    flops_by_key = np.bincount(work.rate_index, weights=work.flops, minlength=len(work.rate_keys))
    mfu, mfu_dtype = 0.0, ""
    if work.rate_keys and time_s > 0:
        engine, mfu_dtype = work.rate_keys[int(np.argmax(flops_by_key))]
        mfu = flops / (time_s * hw.compute[engine].peak_flop_per_s[mfu_dtype])
    main = work.level_names.index(hw.main_memory.name)
    main_bytes = float(work.bytes[:, main].sum())
    order = np.argsort(-cost.time_s, kind="stable")[:heaviest]
    energy = dynamic + idle
    return PhaseCost(
        ops=OpCosts(ops, work, cost, hw), time_s=time_s, flops=flops,
        bytes_by_level={name: float(v) for name, v in zip(work.level_names, work.bytes.sum(axis=0))},
        dynamic_energy_j=dynamic, idle_energy_j=idle, energy_j=energy, time_s_by_bound=dict(by_bound),
        bound=max(by_bound, key=by_bound.get) if by_bound else "none", mfu=mfu, mfu_dtype=mfu_dtype,
        hbm_bandwidth_utilisation=main_bytes / (time_s * hw.main_memory.bandwidth_bytes_per_s) if time_s > 0 else 0.0,
        tops_per_w=flops / energy / TERA if energy > 0 else 0.0,
        heaviest=tuple(work.names[i] for i in order))
