"""Validated hardware description: a chip (compute engines, memory levels, launch, power, price)
and the node it sits in (scale-up and scale-out links). All values are SI floats.

The YAML layout mirrors these records one to one, so a sweep path such as
``memory.hbm.bandwidth`` names both the YAML field and the record attribute.
Loading (strict, unit-checked) lives in ``load_hardware`` below.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True, kw_only=True)
class ComputeEngine:
    """A class of execution units, e.g. ``tensor`` (matrix) or ``vector`` (CUDA cores).

    ``peak_flop_per_s`` maps dtype name -> dense peak. ``achievable_fraction`` is the measured
    fraction of peak that well-tuned kernels reach (a named hardware field, not a fudge).
    ``energy_j_per_flop`` maps dtype name -> dynamic energy per FLOP.
    """

    name: str
    kind: str  # "matrix" or "vector" (issue 6 adds "photonic", "pim")
    peak_flop_per_s: Mapping[str, float]
    achievable_fraction: float
    energy_j_per_flop: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class MemoryLevel:
    """One level of the memory hierarchy. ``capacity_bytes`` is the chip total
    (per-SM levels: per_unit_bytes x units). ``bandwidth_bytes_per_s`` is the chip aggregate."""

    name: str  # "registers", "shared", "l2", "hbm"
    capacity_bytes: float
    bandwidth_bytes_per_s: float
    latency_s: float
    energy_j_per_bit: float
    achievable_fraction: float
    per_unit_bytes: float | None = None
    units: int | None = None


@dataclass(frozen=True, kw_only=True)
class Link:
    """A link class as seen by one chip: bandwidth per direction per chip."""

    name: str
    bandwidth_bytes_per_s: float
    latency_s: float
    energy_j_per_bit: float
    achievable_fraction: float


@dataclass(frozen=True, kw_only=True)
class Power:
    tdp_w: float
    idle_w: float


@dataclass(frozen=True, kw_only=True)
class Node:
    chips_per_node: int
    scale_up: Link
    scale_out: Link


@dataclass(frozen=True, kw_only=True)
class Hardware:
    """A chip in its node. ``memory`` is ordered innermost (registers) to outermost (hbm)."""

    name: str
    year: int
    compute: Mapping[str, ComputeEngine]
    memory: Mapping[str, MemoryLevel]
    sm_count: int
    kernel_launch_s: float
    power: Power
    price_usd_per_hour: float
    node: Node
    source_file: str = "<memory>"

    def engine_for(self, kind: str) -> ComputeEngine:
        """The first engine of ``kind`` ("matrix" / "vector")."""
        for engine in self.compute.values():
            if engine.kind == kind:
                return engine
        raise KeyError(f"{self.name} has no {kind} engine")

    @property
    def main_memory(self) -> MemoryLevel:
        """The outermost level (HBM or its what-if replacement)."""
        return list(self.memory.values())[-1]
