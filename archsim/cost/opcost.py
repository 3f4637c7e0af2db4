"""Roofline price of one op on one chip: time per resource, the binding one, energy, utilisation.

Times are work / rate of a named resource:
- compute: time-equivalent FLOPs / (engine peak[dtype] * engine achievable_fraction * the chip's
  thermal ``compute_clock_fraction``);
- memory level: bytes / rate + one level latency when the op touches the level at all (the first
  access is exposed; later ones are pipelined behind it). The rate is bandwidth * achievable_fraction
  (times ``compute_clock_fraction`` for on-chip levels, which run at the core clock), capped by the
  level's ``power_limit_w`` (if any) at power_limit / (8 * energy_per_bit);
- network (collective ops): ``cost/collectives.price_collective`` for the op's attrs (op, bytes,
  group, optional algorithm) on the chip's node and fabric;
- launch: kernel launches * ``kernel_launch_s``.
The op's time is the largest of these (perfect overlap within a kernel) and ``bound`` names it.
A tiled GEMM (``cost/traffic.py``: a chip with a GEMM tile menu) is priced as the kernel model prices it,
by ``efficiency.tiled_time_terms``: ``kernel.ramp`` + max(compute, main-memory reads / main rate, L2 operand
panels / operand feed) + output bytes / main rate (the epilogue), or the launch time if that is longer;
``bound`` names compute, the main memory or ``memory:l2`` (the operand feed); the ramp replaces the levels'
first-access latencies. Its L2 and shared-memory bytes (and so their energy) are those of the picked tile
(``traffic.picked_level_bytes``): the bytes that set the time are the bytes that cost energy.
Dynamic energy = FLOPs * energy_per_flop[dtype] + bytes * 8 * energy_per_bit per level (+ network);
idle power over time is added per phase (``cost/phase.py``), not per op.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from archsim.config.hardware import ComputeEngine, Hardware
from archsim.cost import efficiency as eff
from archsim.cost.collectives import price_collective
from archsim.cost.traffic import (Geometry, OpWork, engine_dtype_name, gemm_operand_rate, level_rate, op_work,
                                  picked_level_bytes)
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


def _level_time(nbytes: float, level, clock_fraction: float) -> float:
    if nbytes <= 0:
        return 0.0
    return nbytes / level_rate(level, clock_fraction) + level.latency_s


def price_work_item(op: Op, work: OpWork, hw: Hardware, *, key: tuple[str, str] | None = None) -> OpCost:
    """Price an op whose work on ``hw``'s geometry is already known; ``key`` (engine, dtype) overrides
    the engine that runs its FLOPs (placement on a second matrix engine). The tiled-GEMM terms (tile padding,
    ramp, operand feed: ``work.tiled``) describe the kernel on the op's default engine, so an op moved to another
    engine is priced by the plain roofline of that engine (and keeps ``work.bytes_by_level``, the SRAM-tile bytes of
    ``cost/gemm_traffic.py``, for its L2 and shared-memory energy)."""
    default_key = rate_key(hw, op)
    key = key if key is not None and op.flops > 0 else default_key
    compute_s = 0.0
    compute_j = 0.0
    if key is not None:
        engine = hw.compute[key[0]]
        rate = engine.peak_flop_per_s[key[1]] * engine.achievable_fraction * hw.compute_clock_fraction
        compute_s = work.time_flops / rate
        compute_j = op.flops * energy_per_flop(hw, key)
    main = hw.main_memory
    memory_s = {name: _level_time(work.bytes_by_level[name], level,
                                  1.0 if level is main else hw.compute_clock_fraction)
                for name, level in hw.memory.items()}
    network_s, network_j = collective_cost(op, hw) if op.kind == "collective" else (0.0, 0.0)
    launch_s = work.launches * hw.kernel_launch_s
    candidates = [("compute", compute_s)]
    candidates += [(f"memory:{name}", memory_s[name]) for name in reversed(tuple(hw.memory))]
    candidates += [("network", network_s), ("launch", launch_s)]
    bound, time_s = max(candidates, key=lambda c: c[1])  # first maximum wins ties
    level_bytes = work.bytes_by_level
    if work.tiled and key == default_key:
        operand_rate = gemm_operand_rate(hw)
        pick = int(eff.pick_tiling(np.array(work.tile_flops), np.array(work.tile_operand_bytes),
                                   np.array(work.tile_stream_s), rate, operand_rate))
        compute_s = max(work.time_flops, work.tile_flops[pick]) / rate
        terms = eff.tiled_time_terms(compute_s=compute_s, input_bytes=work.stream_bytes,
                                     output_bytes=work.epilogue_bytes, bandwidth_bytes_per_s=level_rate(main),
                                     ramp_s=hw.kernel.ramp_s, operand_bytes=work.tile_operand_bytes[pick],
                                     operand_bandwidth_bytes_per_s=operand_rate, stream_s=work.tile_stream_s[pick])
        kernel_s = float(terms.time_s)
        memory_s = dict.fromkeys(memory_s, 0.0)
        memory_s[main.name] = float(terms.memory_s + terms.epilogue_s)
        operand_level = "l2" if "l2" in memory_s and hw.memory["l2"] is not main else main.name
        memory_s[operand_level] += float(terms.operand_s)
        labels = ("compute", f"memory:{main.name}", f"memory:{operand_level}")
        bound, time_s = ("launch", launch_s) if launch_s > kernel_s else (labels[int(terms.bound_index)], kernel_s)
        level_bytes = picked_level_bytes(work, pick)
    energy = {"compute": compute_j}
    energy.update({f"memory:{name}": level_bytes[name] * BITS_PER_BYTE * hw.memory[name].energy_j_per_bit
                   for name in hw.memory})
    energy["network"] = network_j
    main_bytes = level_bytes[main.name]
    return OpCost(
        name=op.name, kind=op.kind, engine=key[0] if key else op.engine, flops=float(op.flops),
        compute_s=compute_s, bytes_by_level=dict(level_bytes), memory_s_by_level=memory_s,
        network_bytes=work.network_bytes, network_s=network_s, launch_s=launch_s, time_s=time_s,
        bound=bound, energy_j=sum(energy.values()), energy_j_by=energy,
        achieved_flop_per_s=op.flops / time_s if time_s > 0 else 0.0,
        bandwidth_utilisation=main_bytes / time_s / main.bandwidth_bytes_per_s if time_s > 0 else 0.0,
    )
