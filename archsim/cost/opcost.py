"""Op x OpWork x Hardware -> OpCost: the roofline price of one op (time per resource, the binding one, energy).

Each resource's time is its work over its rate (``cost/rates.py``); a memory level adds its latency when the op
touches it; the op takes the longest (``bound`` names it, ``cost/bound.py``); on a wafer-scale chip (hardware
``mesh:``) an op's all-reduces across the core mesh are its network time (``cost/mesh.py``). A tiled GEMM takes
``gemm.gemm_time`` instead (or its launch, if longer). Dynamic energy = FLOPs x energy per FLOP + bytes per level
x energy per bit (+ network); idle power is a phase's (``cost/phase.py``). An op that would draw more than TDP
runs capped: its time stretches until it does not (``cost/power.py``). ``cost/work.py`` is the array form.

Placement: an op runs on the engine with the least time among its default engine and the chip's alternatives
(``cost/engines.py``: another matrix or photonic engine, the PIM units); ties keep the default engine, then the
earlier candidate. ``price_candidates`` prices every candidate, ``fastest`` picks, ``price_work_item`` returns the
pick; ``cost/work.py`` applies the same rule per op row and per sweep point.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from archsim.config.hardware import ComputeEngine, Hardware
from archsim.cost import bound as bounds
from archsim.cost import engines, gemm, mesh
from archsim.cost.collectives import price_collective
from archsim.cost.power import boost_flop_energy_ratio, capped, capped_time_s
from archsim.cost.rates import ChipRates, engine_dtype_name
from archsim.cost.traffic import OpWork
from archsim.dtypes import BITS_PER_BYTE
from archsim.errors import ConfigError
from archsim.graph.op import Op


@dataclass(frozen=True, kw_only=True)
class OpCost:
    """The price of one op. Breakdowns are dicts keyed by level / resource name."""

    name: str
    kind: str
    engine: str
    flops: float
    compute_s: float
    bytes_by_level: Mapping[str, float]
    memory_s_by_level: Mapping[str, float]
    network_bytes: float
    network_s: float
    launch_s: float
    time_s: float
    bound: str
    energy_j: float
    energy_j_by: Mapping[str, float]
    achieved_flop_per_s: float
    bandwidth_utilisation: float


def rate_key(hw: Hardware, op: Op) -> tuple[str, str] | None:
    """(engine name, dtype name) whose peak prices ``op``'s FLOPs; None for an op without FLOPs.

    Matrix ops run on the first matrix engine (a photonic engine on a chip without one), everything
    else with FLOPs on the first vector engine.
    An engine without the op's dtype runs it in the narrowest wider format it lists (e.g. BF16
    elementwise work on FP32 CUDA cores, FP8 weights upcast to BF16 on an A100).
    """
    if op.flops <= 0:
        return None
    kind = "matrix" if op.engine == "matrix" else "vector"
    try:
        engine = hw.engine_for(kind)
    except KeyError:
        raise ConfigError(hw.source_file, "compute", f"a {kind} engine for op {op.name}", None) from None
    return engine.name, _engine_dtype(hw, engine, op)


def _engine_dtype(hw: Hardware, engine: ComputeEngine, op: Op) -> str:
    name = engine_dtype_name(engine.peak_flop_per_s, op.compute_dtype)
    if name is None:
        raise ConfigError(hw.source_file, f"compute.{engine.name}.peak",
                          f"a peak for {op.compute_dtype.name} or a wider dtype (op {op.name})",
                          sorted(engine.peak_flop_per_s))
    return name


def energy_per_flop(hw: Hardware, key: tuple[str, str]) -> float:
    """Energy per FLOP of engine ``key[0]`` in dtype ``key[1]`` (ConfigError if the YAML lacks it)."""
    engine = hw.compute[key[0]]
    try:
        return engine.energy_j_per_flop[key[1]]
    except KeyError:
        raise ConfigError(hw.source_file, f"compute.{key[0]}.energy_per_flop.{key[1]}",
                          "an energy per FLOP for every dtype the engine runs",
                          sorted(engine.energy_j_per_flop)) from None


def collective_cost(op: Op, hw: Hardware) -> tuple[float, float]:
    """(time_s, energy_j) of a collective op, from its attrs ``op``, ``bytes``, ``group`` (and
    optional ``algorithm``); an op on a group of one chip moves nothing."""
    a = op.attrs
    group = int(a.get("group", 1))
    nbytes = float(a.get("bytes", op.bytes))
    if group <= 1 or nbytes <= 0:
        return 0.0, 0.0
    cost = price_collective(str(a["op"]), nbytes, group, hw, algorithm=str(a.get("algorithm", "auto")))
    return cost.time_s, cost.energy_j


def price_work_item(op: Op, work: OpWork, hw: Hardware, *, key: tuple[str, str] | None = None,
                    rates: ChipRates | None = None) -> OpCost:
    """Price an op whose work on ``hw``'s geometry is already known, on the engine the placement rule picks: the
    fastest of its candidates (``price_candidates``, ``fastest``). ``key`` (engine, dtype) prices it on that engine
    instead (``price_on_engine``)."""
    rates = rates or ChipRates.of(hw)
    if key is not None:
        return price_on_engine(op, work, hw, key=key, rates=rates)
    if not engines.has_alternatives(hw):
        return price_on_engine(op, work, hw, rates=rates)
    return fastest(price_candidates(op, work, hw, rates=rates))


def price_candidates(op: Op, work: OpWork, hw: Hardware, *, rates: ChipRates | None = None) -> dict[str, OpCost]:
    """The op priced on every engine that can run it, keyed by engine name: its default engine first, then the
    chip's other matrix or photonic engines that accept it (``engines.other_engine_keys``), then the PIM units
    (``price_on_pim``), in that order (the tie-break order of ``fastest``)."""
    rates = rates or ChipRates.of(hw)
    default = price_on_engine(op, work, hw, rates=rates)
    out = {default.engine: default}
    for key in engines.other_engine_keys(op, hw, rate_key(hw, op)):
        if key[0] not in out:
            out[key[0]] = price_on_engine(op, work, hw, key=key, rates=rates)
    pim = price_on_pim(op, work, hw, rates=rates)
    if pim is not None:
        out[pim.engine] = pim
    return out


def fastest(costs: Mapping[str, OpCost]) -> OpCost:
    """The candidate with the least time; ties keep the earliest (the default engine comes first)."""
    return min(costs.values(), key=lambda c: c.time_s)


def price_on_engine(op: Op, work: OpWork, hw: Hardware, *, key: tuple[str, str] | None = None,
                    rates: ChipRates | None = None) -> OpCost:
    """Price an op on one compute engine: its default one, or ``key`` (engine, dtype) when given (placement on a
    second engine). A tiled GEMM's candidates describe the kernel on its default engine, so an op moved to another
    engine is priced by that engine's roofline (with ``work.bytes_by_level``, the SRAM-tile bytes). An attention
    op's FLOPs run at attention's MMA rate (``ChipRates.attention_rate_ratio`` of the engine's rate)."""
    rates = rates or ChipRates.of(hw)
    default_key = rate_key(hw, op)
    key = key if key is not None and op.flops > 0 else default_key
    compute_s = 0.0
    compute_j = 0.0
    rate = 0.0
    if key is not None:
        rate = rates.flop_per_s(*key)
        scale = rates.attention_rate_ratio if op.kind == "attention" else 1.0
        compute_s = work.time_flops / scale / rate + engines.reprogram_s(op, hw.compute[key[0]])
        compute_j = op.flops * energy_per_flop(hw, key)
    main = rates.main
    memory_s = {name: (0.0 if work.bytes_by_level[name] <= 0 else
                       work.bytes_by_level[name] / rates.level_bytes_per_s[name] + level.latency_s)
                for name, level in hw.memory.items()}
    network_s, network_j = collective_cost(op, hw) if op.kind == "collective" else mesh.op_mesh_cost(op, hw)
    launch_s = work.launches * rates.launch_s
    candidates = [(bounds.COMPUTE, compute_s)]
    candidates += [(bounds.memory(name), memory_s[name]) for name in reversed(tuple(hw.memory))]
    candidates += [(bounds.NETWORK, network_s), (bounds.LAUNCH, launch_s)]
    bound, time_s = max(candidates, key=lambda c: c[1])  # first maximum wins ties
    level_bytes = dict(work.bytes_by_level)
    if work.gemm is not None and key == default_key:
        t = gemm.gemm_time(work.gemm, gemm.GemmRates.of(rates, rate))
        compute_s, kernel_s = float(t.mma_s), float(t.time_s)
        operand_level = gemm.operand_level(tuple(hw.memory))
        memory_s = dict.fromkeys(memory_s, 0.0)
        memory_s[main] = float(t.hbm_s + t.epilogue_s)
        memory_s[operand_level] += float(t.l2_operand_s)
        labels = gemm.bound_labels(main, operand_level)
        bound, time_s = (bounds.LAUNCH, launch_s) if launch_s > kernel_s else (labels[int(t.bound)], kernel_s)
        l2_level, shared_level = gemm.tile_levels(tuple(hw.memory))
        l2_bytes, shared_bytes = gemm.level_bytes(work.gemm, t.pick)
        if l2_level is not None:
            level_bytes[l2_level] = float(l2_bytes)
        if shared_level is not None:
            level_bytes[shared_level] = float(shared_bytes)
    energy = {bounds.COMPUTE: compute_j}
    energy.update({bounds.memory(name): level_bytes[name] * BITS_PER_BYTE * hw.memory[name].energy_j_per_bit
                   for name in hw.memory})
    energy[bounds.NETWORK] = network_j
    # the clock and power cap (cost/power.py): below the cap at boost, where a FLOP costs more; else at TDP
    other_j = sum(v for k, v in energy.items() if k != bounds.COMPUTE)
    ratio = boost_flop_energy_ratio(hw) if key == default_key else 1.0  # another engine: not the GPU clock
    time_s, total_j = capped(time_s, energy[bounds.COMPUTE], other_j, ratio, hw.power.tdp_w, hw.busy_power_w)
    energy[bounds.COMPUTE] = total_j - other_j
    main_bytes = level_bytes[main]
    return OpCost(
        name=op.name, kind=op.kind, engine=key[0] if key else op.engine, flops=float(op.flops),
        compute_s=compute_s, bytes_by_level=level_bytes, memory_s_by_level=memory_s,
        network_bytes=work.network_bytes, network_s=network_s, launch_s=launch_s, time_s=time_s,
        bound=bound, energy_j=sum(energy.values()), energy_j_by=energy,
        achieved_flop_per_s=op.flops / time_s if time_s > 0 else 0.0,
        bandwidth_utilisation=main_bytes / time_s / hw.main_memory.bandwidth_bytes_per_s if time_s > 0 else 0.0,
    )


def price_on_pim(op: Op, work: OpWork, hw: Hardware, *, rates: ChipRates | None = None) -> OpCost | None:
    """Price ``op`` on the chip's PIM units, or None if they cannot run it (``engines.pim_dtype``).

    Weights and KV-cache operands are read in place at the internal bandwidth (energy: internal pJ/bit); the other
    operands (activations in, results out) cross the memory's external interface at its sustained rate and energy
    (``engines.pim_operand_bytes``). Time is the largest of compute (``pim:compute``: FLOPs at the PIM peak x
    fraction x thermal clock), in-place reads (``pim:internal``), the interface (``memory:<level>``) and launch,
    the first on ties, plus the mode switch into and out of PIM mode (``pim.mode_switch_s``). Bytes per level: the interface's bytes at the PIM's level, none elsewhere; the in-place
    reads' energy is charged to that level (``memory:<level>``) with the interface's."""
    dtype = engines.pim_dtype(op, hw)
    if dtype is None:
        return None
    rates = rates or ChipRates.of(hw)
    pim = hw.pim
    level = hw.memory[pim.level]
    inside, outside = engines.pim_operand_bytes(op)
    compute_s = op.flops / rates.pim_flop_per_s(dtype)
    internal_s = inside / rates.pim_internal_bytes_per_s + level.latency_s if inside > 0 else 0.0
    external_s = outside / rates.level_bytes_per_s[level.name] + level.latency_s if outside > 0 else 0.0
    launch_s = work.launches * rates.launch_s
    candidates = [(bounds.PIM_COMPUTE, compute_s), (bounds.PIM_INTERNAL, internal_s),
                  (bounds.memory(level.name), external_s), (bounds.LAUNCH, launch_s)]
    bound, time_s = max(candidates, key=lambda c: c[1])  # first maximum wins ties
    time_s += pim.mode_switch_s  # entering and leaving PIM mode, serial with the op (config/derive_pim.py)
    level_bytes = dict.fromkeys(hw.memory, 0.0)
    level_bytes[level.name] = outside
    memory_s = dict.fromkeys(hw.memory, 0.0)
    memory_s[level.name] = external_s
    energy = {bounds.COMPUTE: op.flops * pim.energy_j_per_flop[dtype]}
    energy.update({bounds.memory(name): 0.0 for name in hw.memory})
    energy[bounds.memory(level.name)] = (inside * BITS_PER_BYTE * pim.internal_energy_j_per_bit
                                         + outside * BITS_PER_BYTE * level.energy_j_per_bit)
    energy[bounds.NETWORK] = 0.0
    time_s = capped_time_s(time_s, sum(energy.values()), hw.power.tdp_w, hw.busy_power_w)  # cost/power.py
    return OpCost(
        name=op.name, kind=op.kind, engine=engines.PIM_ENGINE, flops=float(op.flops), compute_s=compute_s,
        bytes_by_level=level_bytes, memory_s_by_level=memory_s, network_bytes=work.network_bytes, network_s=0.0,
        launch_s=launch_s, time_s=time_s, bound=bound, energy_j=sum(energy.values()), energy_j_by=energy,
        achieved_flop_per_s=op.flops / time_s if time_s > 0 else 0.0,
        bandwidth_utilisation=(level_bytes[rates.main] / time_s / hw.main_memory.bandwidth_bytes_per_s
                               if time_s > 0 else 0.0))
