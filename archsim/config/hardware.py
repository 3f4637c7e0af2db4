"""Validated hardware description: a chip (compute engines, memory levels, launch, power, price)
and the node it sits in (scale-up and scale-out links). All values are SI floats.

The YAML layout mirrors these records one to one, so a sweep path such as
``memory.hbm.bandwidth`` names both the YAML field and the record attribute.
Loading (strict, unit-checked) lives in ``load_hardware`` below.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from archsim.config.whatif_hardware import (MeshSpec, PhotonicSpec, PimSpec, mesh_from_section, photonic_from_section,
                                            pim_from_section, with_pim_capacity,
                                            MemoryStack, StackThermal, memory_stack_from_section,
                                            thermal_from_section, with_thermal_cap)
from archsim.config.kernel_fields import KernelFields, parse_kernel_fields
from archsim.config.shipped import resolve_file, shipped_names
from archsim.config.yaml_io import Section, did_you_mean, load_yaml
from archsim.dtypes import BY_NAME
from archsim.errors import ConfigError
from archsim.paths import data_dir

HARDWARE_DIR = data_dir("hardware")  # the shipped hardware files, resolved once at import (archsim.paths)


@dataclass(frozen=True, kw_only=True)
class ComputeEngine:
    """A class of execution units, e.g. ``tensor`` (matrix) or ``vector`` (CUDA cores).

    ``peak_flop_per_s`` maps dtype name -> dense peak. ``achievable_fraction`` is the measured
    fraction of peak that well-tuned kernels reach (a named hardware field, not a fudge).
    ``energy_j_per_flop`` maps dtype name -> dynamic energy per FLOP.
    """

    name: str
    kind: str  # "matrix" or "vector", or a what-if kind: "photonic", "pim"
    peak_flop_per_s: Mapping[str, float]
    achievable_fraction: float
    energy_j_per_flop: Mapping[str, float] = field(default_factory=dict)
    photonic: PhotonicSpec | None = None  # kind "photonic": peak and energy derive from it


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
    power_limit_w: float | None = None  # thermal/power cap on this level's traffic (3D stacks)


@dataclass(frozen=True, kw_only=True)
class Link:
    """A link class as seen by one chip: bandwidth per direction per chip.

    ``half_bandwidth_bytes`` (optional YAML ``half_bandwidth_message``) is Hockney's n_1/2: the message
    size at which the link reaches half its achievable bandwidth; 0 (the default) means no small-message
    penalty beyond ``latency_s`` (archsim/cost/collectives.py)."""

    name: str
    bandwidth_bytes_per_s: float
    latency_s: float
    energy_j_per_bit: float
    achievable_fraction: float
    half_bandwidth_bytes: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Power:
    """Board power: thermal design power (the cap) and idle draw. On a chip whose memory is stacked on the logic die
    (``thermal:`` model) the cap is the lower power the stack sustains at its junction limit (``with_thermal_cap``)."""

    tdp_w: float
    idle_w: float
    # optional: board power above idle while the GPU runs kernels (clocks up, SMs occupied), whatever they move or
    # compute; charged over the device's busy time, not per byte (docs/energy.md "Active baseline"); 0 by default
    active_baseline_w: float = 0.0
    # optional: the rest of a node's power (CPUs, NICs, switches, fans) and the facility's power usage
    # effectiveness, so energy can be reported per GPU, per node or at the wall (docs/energy.md)
    host_per_node_w: float | None = None
    pue: float | None = None


@dataclass(frozen=True, kw_only=True)
class Node:
    """Chips per node and their links. ``ep_low_latency_call_s`` (optional YAML ``ep_low_latency_call``) is
    the fixed cost of one low-latency EP dispatch or combine call (DeepEP's decode kernels); 0 by default.
    ``ep_throughput_sms`` (optional YAML) is the SMs the throughput-mode EP kernels hold while they run (DeepEP's
    normal kernels move data with SMs; its low-latency kernels hold none), which compute overlapped with them
    loses; 0 by default."""

    chips_per_node: int
    scale_up: Link
    scale_out: Link
    ep_low_latency_call_s: float = 0.0
    ep_throughput_sms: int = 0


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
    clock_hz: float | None = None  # boost clock, for per-cycle derivations; optional
    kernel: KernelFields | None = None  # kernel-efficiency fields (docs/fidelity.md); optional
    pim: PimSpec | None = None  # compute inside a memory level (what-if hardware); optional
    mesh: MeshSpec | None = None  # a wafer-scale 2D core mesh whose fabric each op crosses (cost/mesh.py); optional
    compute_clock_fraction: float = 1.0  # a fixed thermal derate of all compute clocks; optional
    # the thermal model of memory stacked on the logic die: the power it sustains caps the chip's (power.tdp_w)
    thermal: StackThermal | None = None
    memory_stack: MemoryStack | None = None  # the DRAM stacks the main memory level derives from; optional
    # per-kernel cost when a step is replayed from a CUDA graph (no CPU launch per kernel); None: kernel_launch
    kernel_launch_graph_s: float | None = None
    # the chip family a software stack keys its kernel choices by (stacks/*.yaml ``kernels:``); optional
    family: str | None = None

    @property
    def graph_launch_s(self) -> float:
        """Per-kernel floor of a graph-replayed step (``kernel_launch_graph``, else ``kernel_launch``)."""
        return self.kernel_launch_s if self.kernel_launch_graph_s is None else self.kernel_launch_graph_s

    @property
    def static_power_w(self) -> float:
        """Power drawn whatever the load: idle power plus photonic lasers and tuning."""
        return self.power.idle_w + sum(e.photonic.always_on_w for e in self.compute.values() if e.photonic)

    @property
    def busy_power_w(self) -> float:
        """Power drawn whatever the load while the device runs kernels: static power plus the active baseline."""
        return self.static_power_w + self.power.active_baseline_w

    def engine_for(self, kind: str) -> ComputeEngine:
        """The first engine of ``kind`` ("matrix" / "vector"); on a chip without an electronic matrix
        engine, "matrix" means its photonic engine."""
        for engine in self.compute.values():
            if engine.kind == kind:
                return engine
        if kind == "matrix":
            return self.engine_for("photonic")
        raise KeyError(f"{self.name} has no {kind} engine")

    @property
    def main_memory(self) -> MemoryLevel:
        """The outermost level (HBM or its what-if replacement)."""
        return list(self.memory.values())[-1]


# --------------------------------------------------------------------------------------------------
# Loading: strict, unit-checked, every error names file and field path.

ENGINE_KINDS = ("matrix", "vector")  # plus "photonic", parsed by its own branch in _engine
_LEVEL_FIELDS = "per_unit and units for a per-SM level, or capacity for a chip-wide level"


def load_hardware(path: str | os.PathLike) -> Hardware:
    """Load and validate a hardware YAML file (layout: see ``hardware/h100.yaml``), given by path or by a shipped
    name (``h100``: ``hardware/h100.yaml``, archsim.config.shipped)."""
    file = resolve_file(path, "hardware", "hw", "hardware YAML")
    return hardware_from_dict(load_yaml(file), file)


def hardware_names() -> list[str]:
    """The shipped hardware names (``hardware/*.yaml`` stems), e.g. ``h100``, ``h200.calibrated``."""
    return shipped_names("hardware")


def resolve_hardware(hw: "Hardware | str | os.PathLike") -> Hardware:
    """A Hardware record from a record, a YAML path, or a name under hardware/ (e.g. ``h800``)."""
    return hw if isinstance(hw, Hardware) else load_hardware(hw)


def hardware_from_dict(data: Mapping, file: str = "<memory>") -> Hardware:
    """Build a Hardware from an already-parsed mapping (e.g. after sweep overrides); strict like the loader."""
    root = Section(data, file)
    stack_sec = root.optional_section("memory_stack")
    stack = None if stack_sec is None else memory_stack_from_section(stack_sec)
    hardware = Hardware(
        name=root.str("name"),
        year=root.int("year", minimum=1940),
        sm_count=root.int("sm_count", minimum=1),
        clock_hz=root.quantity("clock", "frequency_hz", default=None),
        kernel_launch_s=root.quantity("kernel_launch", "time_s"),
        kernel_launch_graph_s=root.quantity("kernel_launch_graph", "time_s", default=None),
        compute=_engines(root.section("compute")),
        memory=_levels(root.section("memory"), None if stack is None else stack.level_fields()),
        memory_stack=stack,
        power=_power(root.section("power")),
        price_usd_per_hour=root.quantity("price", "usd_per_hour"),
        node=_node(root.section("node")),
        kernel=_kernel(root),
        family=root.str("family", default=None),
        source_file=file,
        **_whatif(root),
    )
    root.finish()
    return with_thermal_cap(with_pim_capacity(hardware))


def _kernel(root: Section) -> KernelFields | None:
    """The optional ``kernel:`` section (clocks, GEMM tile menu, attention fraction, ramp)."""
    section = root.optional_section("kernel")
    return None if section is None else parse_kernel_fields(section)


def _whatif(root: Section) -> dict:
    """Optional what-if sections: ``pim``, ``mesh`` and ``thermal.compute_clock_fraction``."""
    out: dict = {}
    mesh = root.optional_section("mesh")
    if mesh is not None:
        out["mesh"] = mesh_from_section(mesh)
    pim = root.optional_section("pim")
    if pim is not None:
        memory = Section(root.raw("memory"), root.file, "memory")  # read-only view; _levels checks its keys
        out["pim"] = pim_from_section(pim, memory, _per_dtype)
    thermal = root.optional_section("thermal")
    if thermal is not None and thermal.has("compute_clock_fraction"):
        out["compute_clock_fraction"] = thermal.quantity("compute_clock_fraction", "fraction")
    elif thermal is not None:  # a stacked die's thermal model: its sustainable power caps the chip's
        out["thermal"] = thermal_from_section(thermal)
    return out


def _engines(sec: Section) -> dict[str, ComputeEngine]:
    engines = {name: _engine(sec.section(name), name) for name in sec.keys()}
    if not engines:
        raise ConfigError(sec.file, sec.path, "at least one compute engine", "an empty mapping")
    if not any(e.kind in ("matrix", "photonic") for e in engines.values()):
        raise ConfigError(sec.file, sec.path, "at least one engine with kind: matrix (or photonic)",
                          sorted(e.kind for e in engines.values()))
    return engines


def _engine(sec: Section, name: str) -> ComputeEngine:
    if sec.has("kind") and sec.raw("kind") == "photonic":
        spec = photonic_from_section(sec.section("photonic"))
        return ComputeEngine(name=name, kind=sec.str("kind"), photonic=spec,
                             peak_flop_per_s=spec.peak_by_dtype(),
                             achievable_fraction=sec.quantity("achievable_fraction", "fraction"),
                             energy_j_per_flop=spec.energy_by_dtype())
    peak = _per_dtype(sec.section("peak"), "flop_per_s")
    if not peak:
        raise ConfigError(sec.file, sec.child_path("peak"), "at least one dtype peak like 'bf16: 989.4 TFLOPS'",
                          "an empty mapping")
    energy = _per_dtype(sec.section("energy_per_flop", default={}), "energy_j_per_flop")
    return ComputeEngine(
        name=name,
        kind=sec.str("kind", choices=ENGINE_KINDS),
        peak_flop_per_s=peak,
        achievable_fraction=sec.quantity("achievable_fraction", "fraction"),
        energy_j_per_flop=energy,
    )


def _per_dtype(sec: Section, dimension: str) -> dict[str, float]:
    """A mapping dtype name -> quantity; keys must be known dtypes (archsim.dtypes.BY_NAME)."""
    values = {}
    for key in sec.keys():
        if key not in BY_NAME:
            raise ConfigError(sec.file, sec.child_path(key),
                              f"a dtype name, one of {', '.join(BY_NAME)}{did_you_mean(key, BY_NAME)}", key)
        values[key] = sec.quantity(key, dimension)
    return values


def _levels(sec: Section, derived_main: Mapping[str, float] | None = None) -> dict[str, MemoryLevel]:
    """The memory levels; ``derived_main``: the main (last) level's fields that derive from ``memory_stack:``."""
    names = sec.keys()
    main = next((n for n in reversed(names) if isinstance(sec.raw(n), Mapping)), None)
    levels = {name: _level(sec.section(name), name, derived_main if name == main else None) for name in names}
    if not levels:
        raise ConfigError(sec.file, sec.path, "at least one memory level (innermost first, main memory last)",
                          "an empty mapping")
    *inner, (main_name, main) = levels.items()
    if main.per_unit_bytes is not None:
        raise ConfigError(sec.file, sec.child_path(main_name),
                          "the last level to be main memory with a chip-wide 'capacity', not per_unit/units", None)
    for name, level in inner:
        if level.capacity_bytes > main.capacity_bytes:
            raise ConfigError(sec.file, sec.child_path(name),
                              f"a capacity no larger than main memory '{main_name}' "
                              f"({main.capacity_bytes:.4g} B); levels are ordered innermost first",
                              level.capacity_bytes)
    return levels


def _level(sec: Section, name: str, from_stack: Mapping[str, float] | None = None) -> MemoryLevel:
    from_stack = from_stack or {}
    for key in from_stack:
        if sec.has(key):
            raise ConfigError(sec.file, sec.child_path(key), "no value: it derives from memory_stack", sec.raw(key))
    per_unit = sec.quantity("per_unit", "bytes", default=None)
    units = sec.int("units", minimum=1, default=None)
    capacity = from_stack.get("capacity", sec.quantity("capacity", "bytes", default=None))
    if (per_unit is None) != (units is None):
        raise ConfigError(sec.file, sec.path, _LEVEL_FIELDS, "only one of per_unit and units")
    if per_unit is not None:
        derived = per_unit * units
        if capacity is not None and capacity != derived:
            raise ConfigError(sec.file, sec.child_path("capacity"),
                              f"per_unit x units = {derived:.0f} B (or omit capacity)", capacity)
        capacity = derived
    if capacity is None:
        raise ConfigError(sec.file, sec.path, f"key 'capacity' ({_LEVEL_FIELDS})", None)
    return MemoryLevel(
        name=name,
        capacity_bytes=capacity,
        bandwidth_bytes_per_s=from_stack.get("bandwidth") or sec.quantity("bandwidth", "bytes_per_s"),
        latency_s=sec.quantity("latency", "time_s"),
        energy_j_per_bit=from_stack.get("energy_per_bit") or sec.quantity("energy_per_bit", "energy_j_per_bit"),
        achievable_fraction=sec.quantity("achievable_fraction", "fraction"),
        per_unit_bytes=per_unit,
        units=units,
        power_limit_w=sec.quantity("power_limit", "power_w", default=None),
    )


def _power(sec: Section) -> Power:
    tdp = sec.quantity("tdp", "power_w")
    if tdp <= 0:
        raise ConfigError(sec.file, sec.child_path("tdp"), "a positive power like '700 W'", tdp)
    idle = sec.quantity("idle", "power_w")
    if idle > tdp:
        raise ConfigError(sec.file, sec.child_path("idle"), f"idle power no larger than tdp ({tdp:g} W)", idle)
    active = sec.quantity("active_baseline", "power_w", default=0.0)
    if active < 0 or idle + active > tdp:
        raise ConfigError(sec.file, sec.child_path("active_baseline"),
                          f"a power >= 0 W with idle + active_baseline no larger than tdp ({tdp:g} W)", active)
    return Power(tdp_w=tdp, idle_w=idle, active_baseline_w=active,
                 host_per_node_w=sec.quantity("host_per_node", "power_w", default=None),
                 pue=sec.number("pue", minimum=1.0, maximum=10.0, default=None))


def _node(sec: Section) -> Node:
    return Node(
        chips_per_node=sec.quantity("chips", "count"),
        scale_up=_link(sec.section("scale_up")),
        scale_out=_link(sec.section("scale_out")),
        ep_low_latency_call_s=sec.quantity("ep_low_latency_call", "time_s", default=0.0),
        ep_throughput_sms=sec.int("ep_throughput_sms", minimum=0, default=0),
    )


def _link(sec: Section) -> Link:
    return Link(
        name=sec.str("name"),
        bandwidth_bytes_per_s=sec.quantity("bandwidth", "bytes_per_s"),
        latency_s=sec.quantity("latency", "time_s"),
        energy_j_per_bit=sec.quantity("energy_per_bit", "energy_j_per_bit"),
        achievable_fraction=sec.quantity("achievable_fraction", "fraction"),
        half_bandwidth_bytes=sec.quantity("half_bandwidth_message", "bytes", default=0.0),
    )
