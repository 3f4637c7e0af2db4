"""Place each op of a phase on the engine that runs it best (by time or by energy) on a heterogeneous
chip: electronic tensor/vector engines, photonic engines, processing-in-memory units.

Candidates for an op:
- the default engine of the cost model (``cost/opcost.rate_key``);
- every other engine of the chip that can run it: matrix-kind ops (gemm, grouped_gemm, attention) on
  another matrix engine, or on a photonic engine whose ``kinds`` and ``accepts`` include the op's kind
  and compute dtype (priced like any engine: its derived peak, fraction and energy per FLOP, same
  memory traffic, since a photonic core is fed from the same SRAM/HBM);
- the chip's PIM units if the op's kind and compute dtype are supported (``pim_cost``).
Data movement between engines: every op reads its inputs from and writes its outputs to memory in
this model, so an op that runs on another engine pays exactly those transfers on the path that engine
has to memory: a PIM op reads its weights/KV inside the memory at the internal bandwidth and moves its
activations over the external interface; a photonic op moves its operands like the tensor cores do,
and pays its DAC/ADC conversions in its energy per FLOP.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Mapping

from archsim.config.hardware import Hardware
from archsim.cost.opcost import OpCost, price_work_item, rate_key
from archsim.cost.phase import graph_ops
from archsim.cost.rates import level_bytes_per_s
from archsim.cost.traffic import Geometry, op_work
from archsim.dtypes import BITS_PER_BYTE
from archsim.graph.op import Op
from archsim.sim.executor import SERIAL_RESOURCE, Slot, resource_of, schedule

Objective = Literal["time", "energy"]
MATRIX_KINDS = ("gemm", "grouped_gemm", "attention")


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


def pim_cost(op: Op, hw: Hardware) -> Choice | None:
    """Price ``op`` on the chip's PIM units, or None if they cannot run it.

    Weights and KV-cache operands are read in place at the internal bandwidth (energy: internal pJ/bit);
    the other operands (activations in, results out) cross the memory's external interface at its
    sustained rate and energy. Time is the largest of compute, internal, external and launch.
    """
    pim = hw.pim
    dtype = op.compute_dtype.name
    if pim is None or op.kind not in pim.kinds or dtype not in pim.peak_flop_per_s:
        return None
    level = hw.memory[pim.level]
    inside = sum(o.nbytes for o in op.reads if o.role in ("weight", "cache"))
    outside = op.bytes - inside
    candidates = {
        "pim:compute": op.flops / (pim.peak_flop_per_s[dtype] * pim.achievable_fraction * hw.compute_clock_fraction),
        "pim:internal": inside / (pim.internal_bandwidth_bytes_per_s * pim.achievable_fraction)
        + (level.latency_s if inside > 0 else 0.0),
        f"memory:{level.name}": outside / level_bytes_per_s(level) + (level.latency_s if outside > 0 else 0.0),
        "launch": hw.kernel_launch_s,
    }
    bound = max(candidates, key=candidates.get)
    energy = (op.flops * pim.energy_j_per_flop[dtype] + inside * BITS_PER_BYTE * pim.internal_energy_j_per_bit
              + outside * BITS_PER_BYTE * level.energy_j_per_bit)
    return Choice(engine="pim", time_s=candidates[bound], energy_j=energy, bound=bound)


def _engine_keys(op: Op, hw: Hardware) -> list[tuple[str, str]]:
    """(engine, dtype) pairs of the chip's engines that can run ``op`` besides its default one."""
    if op.flops <= 0 or op.kind not in MATRIX_KINDS:
        return []
    keys = []
    for engine in hw.compute.values():
        if engine.kind == "matrix":
            wider = [d for d in engine.peak_flop_per_s if d == op.compute_dtype.name]
            if wider:
                keys.append((engine.name, wider[0]))
        elif engine.kind == "photonic" and engine.photonic is not None:
            spec = engine.photonic
            if op.kind in spec.kinds and op.compute_dtype.name in spec.accepts:
                keys.append((engine.name, op.compute_dtype.name))
    return keys


def _as_choice(cost: OpCost, engine: str) -> Choice:
    return Choice(engine=engine, time_s=cost.time_s, energy_j=cost.energy_j, bound=cost.bound)


def place_op(op: Op, hw: Hardware, *, objective: Objective = "time", attention: str = "flash",
             geometry: Geometry | None = None) -> Placement:
    """Choose the engine for one op; the default engine wins ties."""
    geom = geometry or Geometry.of(hw)
    work = op_work(op, geom, attention=attention)
    default = price_work_item(op, work, hw)
    default_key = rate_key(hw, op)
    choices = {default.engine: _as_choice(default, default.engine)}
    for key in _engine_keys(op, hw):
        if key != default_key and key[0] not in choices:
            choices[key[0]] = _as_choice(price_work_item(op, work, hw, key=key), key[0])
    pim = pim_cost(op, hw)
    if pim is not None:
        choices["pim"] = pim
    # energy counts the static power burnt while the op runs, so a slow low-power engine pays for its time
    static_w = hw.static_power_w
    metric = (lambda c: c.time_s) if objective == "time" else (lambda c: c.energy_j + static_w * c.time_s)
    best = min(choices.values(), key=metric)  # dict order: the default engine first, so it wins ties
    return Placement(op=op.name, engine=best.engine, time_s=best.time_s, energy_j=best.energy_j, bound=best.bound,
                     reason=_reason(best, choices[default.engine], objective), alternatives=choices)


def _reason(best: Choice, default: Choice, objective: str) -> str:
    if best.engine == default.engine:
        return f"default engine {best.engine} is best by {objective} ({best.bound})"
    if objective == "time":
        gain = default.time_s / best.time_s if best.time_s > 0 else float("inf")
        return (f"{best.engine} {gain:.2f}x faster than {default.engine} "
                f"({best.bound} {best.time_s:.3g} s vs {default.bound} {default.time_s:.3g} s)")
    gain = default.energy_j / best.energy_j if best.energy_j > 0 else float("inf")
    return f"{best.engine} uses {gain:.2f}x less energy than {default.engine} ({best.energy_j:.3g} J vs {default.energy_j:.3g} J)"


def place_graph(graph, hw: Hardware, *, objective: Objective = "time", attention: str = "flash") -> PlacedPhase:
    """Place every op of a phase graph (or iterable of ops) and total the phase."""
    ops: Iterable[Op] = graph_ops(graph)
    geom = Geometry.of(hw)
    placements = {op.name: place_op(op, hw, objective=objective, attention=attention, geometry=geom) for op in ops}
    time_s = sum(p.time_s for p in placements.values())
    dynamic = sum(p.energy_j for p in placements.values())
    by_engine: dict[str, float] = {}
    for p in placements.values():
        by_engine[p.engine] = by_engine.get(p.engine, 0.0) + p.time_s
    return PlacedPhase(placements=placements, time_s=time_s, dynamic_energy_j=dynamic,
                       energy_j=dynamic + hw.static_power_w * time_s, time_s_by_engine=by_engine,
                       objective=objective)


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
                       attention: str = "flash"):
    """Place a phase graph and execute it in the discrete-event simulator (``sim.executor.schedule``)."""
    placed = place_graph(graph, hw, objective=objective, attention=attention)
    return placed, schedule(graph, placement_slots(graph, hw, placed, overlap=overlap))
