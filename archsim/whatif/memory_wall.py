"""The memory wall per (phase, hardware): arithmetic intensity against the ridge point, the bandwidth at
which the phase turns compute-bound, and growth of compute vs memory vs interconnect
across the shipped hardware files.

Definitions (all from the cost model, ``cost/``):
- arithmetic intensity = phase FLOPs / main-memory bytes (the bytes the traffic models move, not just
  the compulsory ones);
- ridge point = achievable peak FLOP/s of the dtype carrying most FLOPs / sustained main-memory bytes/s
  (``cost.rates.level_bytes_per_s``: achievable bandwidth, capped by a power limit where the YAML sets one);
  a phase below the ridge cannot be compute-bound on that chip;
- compute-bound bandwidth = the smallest main-memory bandwidth at which compute-bound ops take more of
  the phase time than any other resource (found on the array path by a log grid then bisection);
  None when another resource (launch, L2, network) dominates first;
- growth per two years = exp(2 * slope) of a least-squares line through log(value) against year.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from archsim.config.hardware import Hardware
from archsim.cost.rates import level_bytes_per_s
from archsim.cost.phase import graph_ops, price_graph
from archsim.cost.work import GraphWork, HardwareArrays, extract_work, hardware_arrays, price_work

GRID_DECADES = 4       # the search spans 1e-1 .. 1e3 x the chip's bandwidth
GRID_POINTS = 161
BISECTION_STEPS = 40


@dataclass(frozen=True, kw_only=True)
class PhaseWall:
    """Where one phase sits against one chip's memory wall."""

    hardware: str
    flops: float
    main_memory_bytes: float
    arithmetic_intensity: float     # FLOP per byte of main memory
    ridge_point: float              # FLOP per byte at which the achievable roofs meet
    bound: str
    time_s: float
    bandwidth_bytes_per_s: float
    compute_bound_bandwidth_bytes_per_s: float | None
    note: str


def _compute_roof(hw: Hardware, engine: str, dtype: str) -> float:
    """Achievable FLOP/s of ``engine`` in ``dtype``: peak x achievable fraction x thermal clock fraction,
    as the cost model prices compute."""
    eng = hw.compute[engine]
    return eng.peak_flop_per_s[dtype] * eng.achievable_fraction * hw.compute_clock_fraction


def _main_index(work: GraphWork, hw: Hardware) -> int:
    return work.level_names.index(hw.main_memory.name)


def _compute_share_wins(work: GraphWork, hwa: HardwareArrays) -> np.ndarray:
    """Per sweep point: True where compute-bound ops take the largest share of phase time."""
    cost = price_work(work, hwa)
    labels = cost.bound_labels
    shares = np.stack([(cost.time_s * work.count * (cost.bound_index == j)).sum(axis=-1)
                       for j in range(len(labels))], axis=-1)
    return np.argmax(shares, axis=-1) == labels.index("compute")


def _with_main_bandwidth(base: HardwareArrays, main: int, bandwidths: np.ndarray) -> HardwareArrays:
    bw = np.repeat(base.bandwidth_bytes_per_s[None, :], len(bandwidths), axis=0)
    bw[:, main] = bandwidths
    stacked = {f.name: np.repeat(np.asarray(getattr(base, f.name))[None, ...], len(bandwidths), axis=0)
               for f in dataclasses.fields(HardwareArrays)}
    stacked["bandwidth_bytes_per_s"] = bw
    return HardwareArrays(**stacked)


def compute_bound_bandwidth(work: GraphWork, hw: Hardware) -> float | None:
    """Smallest main-memory bandwidth at which the phase is compute-bound (see module docstring)."""
    base = hardware_arrays(hw, work)
    main = _main_index(work, hw)
    bw0 = hw.main_memory.bandwidth_bytes_per_s
    grid = bw0 * np.logspace(-1, GRID_DECADES - 1, GRID_POINTS)
    wins = _compute_share_wins(work, _with_main_bandwidth(base, main, grid))
    if not wins.any():
        return None
    first = int(np.argmax(wins))
    if first == 0:
        return float(grid[0])  # compute-bound already at the bottom of the search range
    lo, hi = float(grid[first - 1]), float(grid[first])
    for _ in range(BISECTION_STEPS):
        mid = math.sqrt(lo * hi)
        if _compute_share_wins(work, _with_main_bandwidth(base, main, np.array([mid])))[0]:
            hi = mid
        else:
            lo = mid
    return hi


def phase_wall(graph, hw: Hardware, *, attention: str = "flash") -> PhaseWall:
    """The memory-wall figures of one phase graph on one chip."""
    ops = graph_ops(graph)
    phase = price_graph(ops, hw, attention=attention)
    work = extract_work(ops, hw, attention=attention)
    main_bytes = phase.bytes_by_level[hw.main_memory.name]
    intensity = phase.flops / main_bytes if main_bytes > 0 else math.inf
    ridge = math.nan
    if phase.mfu_dtype:
        engine = next(e for e, d in work.rate_keys if d == phase.mfu_dtype)
        ridge = _compute_roof(hw, engine, phase.mfu_dtype) / level_bytes_per_s(hw.main_memory)
    needed = compute_bound_bandwidth(work.compress(), hw)
    if phase.bound == "compute":
        note = "compute-bound at the chip's bandwidth"
    elif needed is None:
        note = f"{phase.bound}-bound; more bandwidth alone never makes it compute-bound"
    else:
        note = f"{phase.bound}-bound; compute-bound from {needed / hw.main_memory.bandwidth_bytes_per_s:.2f}x bandwidth"
    return PhaseWall(hardware=hw.name, flops=phase.flops, main_memory_bytes=main_bytes, arithmetic_intensity=intensity,
                     ridge_point=ridge, bound=phase.bound, time_s=phase.time_s,
                     bandwidth_bytes_per_s=hw.main_memory.bandwidth_bytes_per_s,
                     compute_bound_bandwidth_bytes_per_s=needed, note=note)


def roofline_points(graph, hw: Hardware, *, attention: str = "flash") -> tuple[list[dict], float, float]:
    """Each op with FLOPs as a roofline point (intensity against main memory, achieved FLOP/s, bound),
    and the chip's achievable compute roof (dtype carrying most FLOPs) and main-memory slope."""
    ops = graph_ops(graph)
    phase = price_graph(ops, hw, attention=attention)
    main = hw.main_memory
    points = []
    for name, cost in phase.ops.items():
        if cost.flops <= 0 or cost.time_s <= 0:
            continue
        nbytes = cost.bytes_by_level[main.name]
        points.append({"label": name, "kind": cost.kind, "intensity": cost.flops / nbytes if nbytes else math.inf,
                       "flop_per_s": cost.achieved_flop_per_s, "bound": cost.bound, "time_s": cost.time_s})
    engine = hw.engine_for("matrix")
    dtype = phase.mfu_dtype if phase.mfu_dtype in engine.peak_flop_per_s else max(
        engine.peak_flop_per_s, key=engine.peak_flop_per_s.get)
    return points, _compute_roof(hw, engine.name, dtype), level_bytes_per_s(main)


@dataclass(frozen=True, kw_only=True)
class HistoryPoint:
    """One chip's headline rates for the memory-wall chart."""

    name: str
    year: int
    peak_flop_per_s: float          # dense BF16 (FP16 if no BF16) matrix peak
    memory_bandwidth_bytes_per_s: float
    memory_capacity_bytes: float
    interconnect_bytes_per_s: float  # scale-up, per direction


def is_projection(hw: Hardware) -> bool:
    """What-if hardware (PIM, photonic, memory stacked on logic, thermally derated) stays out of the history trend."""
    return (hw.pim is not None or hw.compute_clock_fraction != 1.0 or hw.memory_stack is not None
            or hw.thermal is not None or any(e.kind == "photonic" for e in hw.compute.values()))


def history_point(hw: Hardware) -> HistoryPoint:
    """Headline rates of one chip (dense BF16 matrix peak, else FP16, else the largest)."""
    engine = hw.engine_for("matrix")
    peak = engine.peak_flop_per_s.get("bf16", engine.peak_flop_per_s.get("fp16", max(engine.peak_flop_per_s.values())))
    return HistoryPoint(name=hw.name, year=hw.year, peak_flop_per_s=peak,
                        memory_bandwidth_bytes_per_s=hw.main_memory.bandwidth_bytes_per_s,
                        memory_capacity_bytes=hw.main_memory.capacity_bytes,
                        interconnect_bytes_per_s=hw.node.scale_up.bandwidth_bytes_per_s)


def growth_per_two_years(years: Sequence[float], values: Sequence[float]) -> float:
    """exp(2 * slope) of the least-squares fit of log(value) on year (needs two distinct years)."""
    y = np.asarray(years, float)
    if len(set(y.tolist())) < 2:
        return math.nan
    slope = np.polyfit(y, np.log(np.asarray(values, float)), 1)[0]
    return float(math.exp(2 * slope))


def in_trend(hw: Hardware) -> bool:
    """Chips whose main memory sits off-chip below a cache hierarchy enter the growth fit; a chip whose
    only memory level is on-chip SRAM (wafer-scale) is a different class: plotted, not fitted."""
    return not is_projection(hw) and len(hw.memory) > 1


def _one_per_product(points: Iterable[HistoryPoint]) -> list[HistoryPoint]:
    """The points with the same year and the same four headline rates counted once: two files of one product
    (hardware/h200.yaml and its calibrated copy h200.calibrated.yaml) are one chip of the history, not two."""
    seen, out = set(), []
    for p in points:
        key = (p.year, p.peak_flop_per_s, p.memory_bandwidth_bytes_per_s, p.memory_capacity_bytes,
               p.interconnect_bytes_per_s)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def history(chips: Iterable[Hardware]) -> tuple[list[HistoryPoint], dict[str, float]]:
    """History points of the non-projection chips (sorted by year) and the growth per two years of each
    rate, fitted over the ``in_trend`` chips, one point per product (``_one_per_product``)."""
    chips = [hw for hw in chips if not is_projection(hw)]
    points = sorted((history_point(hw) for hw in chips), key=lambda p: (p.year, p.name))
    fitted = _one_per_product(history_point(hw) for hw in chips if in_trend(hw))
    years = [p.year for p in fitted]
    growth = {
        "peak_flop_per_s": growth_per_two_years(years, [p.peak_flop_per_s for p in fitted]),
        "memory_bandwidth_bytes_per_s": growth_per_two_years(years, [p.memory_bandwidth_bytes_per_s for p in fitted]),
        "memory_capacity_bytes": growth_per_two_years(years, [p.memory_capacity_bytes for p in fitted]),
        "interconnect_bytes_per_s": growth_per_two_years(years, [p.interconnect_bytes_per_s for p in fitted]),
    }
    return points, growth
