"""Place each op of a phase on the engine that runs it best (by time or by energy) on a heterogeneous
chip: electronic tensor/vector engines, photonic engines, processing-in-memory units.

The candidates and their prices are the cost model's (``cost/engines.py``, ``cost/opcost.py``
``price_candidates``): the default engine, every other matrix or photonic engine that accepts the op, and the PIM
units (weights/KV read in place at the internal bandwidth, activations over the memory's external interface).
By time, the choice is the cost model's own rule (``opcost.fastest``): the one every command prices with
(``cost/phase.price_graph``), so ``place --objective time`` and ``estimate()`` agree op by op. By energy, an op
goes to the candidate with the least dynamic energy plus the static power burnt while it runs (a slow low-power
engine pays for its time); ties keep the default engine.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Mapping

from archsim.config.hardware import Hardware
from archsim.cost.opcost import OpCost, fastest, price_candidates, price_on_pim
from archsim.cost.phase import graph_ops
from archsim.cost.rates import ChipRates
from archsim.cost.traffic import Geometry, op_work
from archsim.graph.op import Op
from archsim.sim.executor import SERIAL_RESOURCE, Slot, resource_of, schedule
from archsim.units import format_quantity

Objective = Literal["time", "energy"]


@dataclass(frozen=True, kw_only=True)
class Choice:
    """One engine's price for an op."""

    engine: str
    time_s: float
    energy_j: float
    bound: str


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Where one op runs, what the alternatives cost and why this one was chosen."""

    op: str
    engine: str
    time_s: float
    energy_j: float
    bound: str
    reason: str
    alternatives: Mapping[str, Choice]


@dataclass(frozen=True, kw_only=True)
class PlacedPhase:
    """A phase priced under a placement: serial time, energy (static power included), per-op choices."""

    placements: Mapping[str, Placement]
    time_s: float
    dynamic_energy_j: float
    energy_j: float
    time_s_by_engine: Mapping[str, float]
    objective: str
    default_time_s: float = 0.0    # every op on its default engine (no placement): serial time
    default_energy_j: float = 0.0  # and energy, static power included


def pim_cost(op: Op, hw: Hardware) -> Choice | None:
    """Price ``op`` on the chip's PIM units (``opcost.price_on_pim``), or None if they cannot run it."""
    cost = price_on_pim(op, op_work(op, Geometry.of(hw)), hw)
    return None if cost is None else _as_choice(cost)


def _as_choice(cost: OpCost) -> Choice:
    return Choice(engine=cost.engine, time_s=cost.time_s, energy_j=cost.energy_j, bound=cost.bound)


def place_op(op: Op, hw: Hardware, *, objective: Objective = "time", attention: str = "flash",
             geometry: Geometry | None = None, rates: ChipRates | None = None) -> Placement:
    """Choose the engine for one op (module docstring); the default engine wins ties."""
    geom = geometry or Geometry.of(hw)
    costs = price_candidates(op, op_work(op, geom, attention=attention), hw, rates=rates)
    choices = {name: _as_choice(cost) for name, cost in costs.items()}
    default = next(iter(choices.values()))
    if objective == "time":
        best = choices[fastest(costs).engine]
    else:
        static_w = hw.busy_power_w
        best = min(choices.values(), key=lambda c: c.energy_j + static_w * c.time_s)  # the default first: wins ties
    return Placement(op=op.name, engine=best.engine, time_s=best.time_s, energy_j=best.energy_j, bound=best.bound,
                     reason=_reason(best, default, objective), alternatives=choices)


def _reason(best: Choice, default: Choice, objective: str) -> str:
    if best.engine == default.engine:
        return f"default engine {best.engine} is best by {objective} ({best.bound})"
    if objective == "time":
        gain = default.time_s / best.time_s if best.time_s > 0 else float("inf")
        return (f"{best.engine} {gain:.2f}x faster than {default.engine} ({best.bound} "
                f"{format_quantity(best.time_s, 'time_s')} vs {default.bound} {format_quantity(default.time_s, 'time_s')})")
    gain = default.energy_j / best.energy_j if best.energy_j > 0 else float("inf")
    return (f"{best.engine} uses {gain:.2f}x less energy than {default.engine} "
            f"({format_quantity(best.energy_j, 'energy_j')} vs {format_quantity(default.energy_j, 'energy_j')})")


def place_graph(graph, hw: Hardware, *, objective: Objective = "time", attention: str = "flash",
                cuda_graph: bool = False) -> PlacedPhase:
    """Place every op of a phase graph (or iterable of ops) and total the phase. ``cuda_graph``: the step is
    replayed from a CUDA graph (each kernel's launch floor ``hw.graph_launch_s``, as ``price_graph`` takes it)."""
    ops: Iterable[Op] = graph_ops(graph)
    geom, rates = Geometry.of(hw), ChipRates.of(hw, cuda_graph=cuda_graph)
    placements = {op.name: place_op(op, hw, objective=objective, attention=attention, geometry=geom, rates=rates)
                  for op in ops}
    time_s = sum(p.time_s for p in placements.values())
    dynamic = sum(p.energy_j for p in placements.values())
    by_engine: dict[str, float] = {}
    for p in placements.values():
        by_engine[p.engine] = by_engine.get(p.engine, 0.0) + p.time_s
    defaults = [next(iter(p.alternatives.values())) for p in placements.values()]
    default_time = sum(c.time_s for c in defaults)
    return PlacedPhase(placements=placements, time_s=time_s, dynamic_energy_j=dynamic,
                       energy_j=dynamic + hw.busy_power_w * time_s, time_s_by_engine=by_engine,
                       objective=objective, default_time_s=default_time,
                       default_energy_j=sum(c.energy_j for c in defaults) + hw.busy_power_w * default_time)


def placement_slots(graph, hw: Hardware, placed: PlacedPhase, *, overlap: bool = True) -> dict:
    """Simulator slots for a placed phase: each op holds the resource that binds it on its engine.

    GPU/photonic ops follow ``sim.executor.resource_of`` on their placed engine and bound (compute-bound:
    the engine; memory-bound: that memory's channel; launch-bound: the engine). A PIM op holds ``pim``: the
    PIM units work inside the memory beside the xPU (NeuPIMs-style concurrent operation; an optimistic
    overlap, as the executor's).
    """
    out = {}
    for name in graph:
        p = placed.placements[name]
        if not overlap:
            resource = SERIAL_RESOURCE
        elif p.engine == "pim":
            resource = "pim"
        else:
            resource = resource_of(graph.nodes[name]["op"], p, hw)
        out[name] = Slot(resource=resource, time_s=p.time_s)
    return out


def simulate_placement(graph, hw: Hardware, *, objective: Objective = "time", overlap: bool = True,
                       attention: str = "flash", cuda_graph: bool = False):
    """Place a phase graph and execute it in the discrete-event simulator (``sim.executor.schedule``)."""
    placed = place_graph(graph, hw, objective=objective, attention=attention, cuda_graph=cuda_graph)
    return placed, schedule(graph, placement_slots(graph, hw, placed, overlap=overlap))
