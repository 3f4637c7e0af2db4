"""Price a whole phase graph (prefill or decode step) on one chip: per-op costs and phase totals.

Ops run one after another (time is the serial sum; overlap between ops is the simulator's job).
Energy adds idle power over the phase time to the ops' dynamic energy. The work is priced through
the array path (``cost/work.py``), so a phase and a 10,000-point sweep share one implementation.
"""
from __future__ import annotations

from collections import defaultdict
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


def _op_costs(ops: list[Op], work: GraphWork, cost: WorkCost, hw: Hardware) -> dict[str, OpCost]:
    levels = work.level_names
    main = levels.index(hw.main_memory.name)
    peak_bw = hw.main_memory.bandwidth_bytes_per_s
    labels = cost.bound_labels
    out = {}
    rows = zip(ops, cost.time_s.tolist(), cost.compute_s.tolist(), cost.memory_s.tolist(), work.bytes.tolist(),
               cost.network_s.tolist(), cost.launch_s.tolist(), cost.bound_index.tolist(), cost.energy_j.tolist(),
               cost.compute_j.tolist(), cost.memory_j.tolist(), cost.network_j.tolist(), work.rate_index.tolist(),
               work.network_bytes.tolist())
    for op, t, c_s, m_s, nbytes, n_s, l_s, b, e, c_j, m_j, n_j, ri, net in rows:
        energy_by = {"compute": c_j, **{f"memory:{name}": v for name, v in zip(levels, m_j)}, "network": n_j}
        out[op.name] = OpCost(
            name=op.name, kind=op.kind, engine=work.rate_keys[ri][0] if op.flops > 0 else op.engine,
            flops=float(op.flops), compute_s=c_s, bytes_by_level=dict(zip(levels, nbytes)),
            memory_s_by_level=dict(zip(levels, m_s)), network_bytes=net, network_s=n_s, launch_s=l_s, time_s=t, bound=labels[b],
            energy_j=e, energy_j_by=energy_by, achieved_flop_per_s=op.flops / t if t > 0 else 0.0,
            bandwidth_utilisation=nbytes[main] / t / peak_bw if t > 0 else 0.0)
    return out


def _phase_cost(ops: list[Op], work: GraphWork, cost: WorkCost, hw: Hardware, heaviest: int) -> PhaseCost:
    time_s = float(cost.total_time_s)
    flops = float(work.flops.sum())
    dynamic = float(cost.energy_j.sum())
    idle = hw.power.idle_w * time_s
    by_bound: dict[str, float] = defaultdict(float)
    for b, t in zip(cost.bound_index.tolist(), cost.time_s.tolist()):
        by_bound[cost.bound_labels[b]] += t
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
        ops=_op_costs(ops, work, cost, hw), time_s=time_s, flops=flops,
        bytes_by_level={name: float(v) for name, v in zip(work.level_names, work.bytes.sum(axis=0))},
        dynamic_energy_j=dynamic, idle_energy_j=idle, energy_j=energy, time_s_by_bound=dict(by_bound),
        bound=max(by_bound, key=by_bound.get) if by_bound else "none", mfu=mfu, mfu_dtype=mfu_dtype,
        hbm_bandwidth_utilisation=main_bytes / (time_s * hw.main_memory.bandwidth_bytes_per_s) if time_s > 0 else 0.0,
        tops_per_w=flops / energy / TERA if energy > 0 else 0.0,
        heaviest=tuple(work.names[i] for i in order))
