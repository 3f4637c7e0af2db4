"""Discrete-event execution of a phase graph on one chip (simpy): ops start when their inputs are
done and hold the resource that binds them for their priced time.

Resource model: each op holds exactly one resource, the one that binds its roofline price
(``OpCost.bound``): a compute-bound op holds its compute engine (e.g. the tensor or vector engine),
a memory-bound op the channel of that memory level (e.g. ``hbm``), a network-bound op the ``link``,
a launch-bound op the engine it runs on. Ops bound by different resources overlap; the lighter use
an op makes of its other resources is not reserved (an optimistic overlap, stated here). With
``overlap=False`` every op holds one ``chip`` resource, so the makespan is the cost model's serial sum.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

import simpy

from archsim.config.hardware import Hardware
from archsim.cost.opcost import OpCost
from archsim.cost.phase import PhaseCost, price_graph
from archsim.errors import ConfigError
from archsim.graph.dag import topological_order
from archsim.graph.op import Op

if TYPE_CHECKING:
    from archsim.graph.dag import OpGraph

SERIAL_RESOURCE = "chip"
NETWORK_RESOURCE = "link"

OnOp = Callable[[Op, float, float], None]


@dataclass(frozen=True, kw_only=True)
class Slot:
    """Where and for how long one op runs."""

    resource: str
    time_s: float


@dataclass(frozen=True, kw_only=True)
class OpEvent:
    """One op's interval on the timeline."""

    name: str
    kind: str
    layer: int | None
    resource: str
    start_s: float
    end_s: float


@dataclass(frozen=True, kw_only=True)
class Timeline:
    """Events in completion order, the makespan, the serial sum and busy time per resource."""

    events: tuple[OpEvent, ...]
    makespan_s: float
    serial_s: float
    busy_s: Mapping[str, float]

    @property
    def resources(self) -> tuple[str, ...]:
        return tuple(self.busy_s)

    def utilisation(self, resource: str) -> float:
        """Fraction of the makespan ``resource`` is held."""
        return self.busy_s[resource] / self.makespan_s if self.makespan_s > 0 else 0.0


def resource_of(op: Op, cost: OpCost, hw: Hardware) -> str:
    """The resource that binds ``op`` (see the module docstring); ``cost`` needs only ``bound`` and ``engine``."""
    if cost.bound == "compute":
        return cost.engine
    if cost.bound.startswith("memory:"):
        return cost.bound[len("memory:"):]
    if cost.bound == "network":
        return NETWORK_RESOURCE
    if op.flops > 0:                      # launch-bound: the engine it would run on
        return cost.engine
    return hw.main_memory.name


def slots_from_costs(graph: OpGraph, costs: PhaseCost, hw: Hardware, *, overlap: bool = True) -> dict[str, Slot]:
    """Each op's resource and priced time."""
    out = {}
    for name, data in graph.nodes(data=True):
        cost = costs.ops[name]
        resource = resource_of(data["op"], cost, hw) if overlap else SERIAL_RESOURCE
        out[name] = Slot(resource=resource, time_s=cost.time_s)
    return out


def execute_graph(graph: OpGraph, hw: Hardware, *, costs: PhaseCost | None = None, overlap: bool = True,
                  on_op: OnOp | None = None, attention: str = "flash") -> Timeline:
    """Price ``graph`` on ``hw`` (unless ``costs`` is given) and run it as a discrete-event simulation."""
    costs = costs if costs is not None else price_graph(graph, hw, attention=attention)
    return schedule(graph, slots_from_costs(graph, costs, hw, overlap=overlap), on_op=on_op)


def schedule(graph: OpGraph, slots: Mapping[str, Slot], *, on_op: OnOp | None = None) -> Timeline:
    """Run every op of ``graph`` once its predecessors finished, holding ``slots[name].resource``
    (capacity 1, first come first served) for ``slots[name].time_s``.

    ``on_op(op, start_s, end_s)`` is called when an op completes; completion order respects the
    graph's dependencies, so a caller may execute the real kernel there.
    """
    if graph.graph.get("repeats") is not None:
        raise ConfigError(None, "graph", "a full phase graph (build with compact=False): the executor runs "
                          "every layer's ops", "a compact graph")
    env = simpy.Environment()
    resources = {s.resource: simpy.Resource(env, capacity=1) for s in slots.values()}
    done = {name: env.event() for name in graph}
    events: list[OpEvent] = []
    busy = {r: 0.0 for r in resources}

    def run(name: str):
        preds = [done[p] for p in graph.predecessors(name)]
        if preds:
            yield simpy.AllOf(env, preds)
        slot = slots[name]
        with resources[slot.resource].request() as req:
            yield req
            start = env.now
            yield env.timeout(slot.time_s)
            end = env.now
        op = graph.nodes[name]["op"]
        events.append(OpEvent(name=name, kind=op.kind, layer=op.layer, resource=slot.resource,
                              start_s=start, end_s=end))
        busy[slot.resource] += end - start
        if on_op is not None:
            on_op(op, start, end)
        done[name].succeed()

    for name in topological_order(graph):
        env.process(run(name))
    env.run()
    if len(events) != graph.number_of_nodes():
        raise RuntimeError("executor finished with ops not run (cycle or missing dependency)")
    return Timeline(events=tuple(events), makespan_s=env.now,
                    serial_s=sum(slots[n].time_s for n in graph), busy_s=busy)
