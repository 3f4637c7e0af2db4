"""What-if hardware sections of a hardware YAML: photonic engines, processing-in-memory and a wafer-scale core mesh.

Optional parts of ``archsim/config/hardware.py``; derived values are computed in tested Python, never written in
YAML:
- a photonic engine (``PhotonicSpec``): peak, laser power from a link budget, converter, modulator, detector and
  TIA power with DOTA's sharing, bit-sliced passes for formats wider than the converters, effective bits, the
  reprogramming time of a weight-stationary engine (``config/derive_photonic.py``); lasers, tuning and
  detector/TIA bias burn whether the array is busy or not and add to the chip's static power
  (``static_power_w``), not to the energy per FLOP;
- processing-in-memory units (``PimSpec``): peak from the internal bandwidth and a published design's FLOP per
  byte, capacity share, op coverage from the units' functions, mode-switch time (``config/derive_pim.py``);
- DRAM stacks bonded on the logic die (``MemoryStack``, ``StackThermal``): the main memory's capacity, bandwidth
  and energy per bit from the stacks' interface, and the power the die sustains at the stack's junction limit,
  which caps the chip's power (``config/derive_dram3d.py``);
- a wafer-scale chip's 2D mesh of cores (``mesh:``, ``MeshSpec``): its size, per-core SRAM and SIMD width, clock,
  per-hop latency and link width, and the off-wafer weight-streaming bandwidth; ``archsim/cost/mesh.py`` prices
  the mesh traffic of each op from them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

from archsim.config import derive_photonic as photonic
from archsim.config import derive_dram3d as dram3d
from archsim.config import derive_pim as pim
from archsim.config.yaml_io import Section
from archsim.dtypes import BY_NAME
from archsim.errors import ConfigError

FLOP_PER_MAC = 2


@dataclass(frozen=True, kw_only=True)
class PhotonicSpec:
    """The optical MAC array, its devices and its precision (derivations: ``config/derive_photonic.py``)."""

    array: photonic.Array
    optics: photonic.Optics
    devices: photonic.Devices
    native_bits: int             # operand bits one pass resolves (the DACs' and ADCs' resolution)
    adc_enob: float              # effective bits of the ADC at its rate
    input_sharing: bool          # column operands modulated once and shared by the tiles
    adc_sharing: bool            # the cores of a tile share one ADC and TIA array
    noise_std: float             # output noise, relative to the output's full scale
    accepts: tuple[str, ...]     # op compute dtypes it takes (wider than native_bits: bit-sliced passes)
    kinds: tuple[str, ...]       # op kinds it runs (nonlinear ops stay electronic)
    weight_stationary: bool = False  # weights stay programmed between cycles (rings, MZI mesh), unlike DOTA's
    reprogram_time_s: float = 0.0    # settling time of one weight load (weight-stationary engines)

    def reprogram_s(self, weight_elements: float) -> float:
        """Time to load an op's ``weight_elements`` weights (0 unless weight-stationary)."""
        if not self.weight_stationary:
            return 0.0
        return photonic.reprogram_s(weight_elements, self.array, self.reprogram_time_s)

    @property
    def wavelengths(self) -> int:
        return self.array.wavelengths

    @property
    def macs_per_cycle(self) -> int:
        return self.array.macs_per_cycle

    @property
    def peak_flop_per_s(self) -> float:
        """One-pass (native-width) peak."""
        return self.array.peak_flop_per_s

    @property
    def power(self) -> photonic.PowerBreakdown:
        return photonic.power_breakdown(self.array, self.optics, self.devices, bits=self.native_bits,
                                        input_sharing=self.input_sharing, adc_sharing=self.adc_sharing)

    @property
    def energy_j_per_flop(self) -> float:
        """One-pass dynamic energy per FLOP: DAC, ADC and modulator power at the full rate over the peak."""
        return self.power.dynamic_w / self.peak_flop_per_s

    @property
    def always_on_w(self) -> float:
        """Laser, tuning, detector and TIA power: drawn whether the array is busy or not."""
        return self.power.always_on_w

    @property
    def effective_bits(self) -> float:
        return photonic.effective_bits(self.native_bits, self.adc_enob)

    def passes(self, dtype: str) -> int:
        """Bit-sliced passes one product of ``dtype`` operands takes (1 up to ``native_bits``)."""
        return photonic.passes(BY_NAME[dtype].bits, self.native_bits)

    def peak_by_dtype(self) -> dict[str, float]:
        """Peak FLOP/s per accepted dtype: the one-pass peak over its passes."""
        return {d: self.peak_flop_per_s / self.passes(d) for d in self.accepts}

    def energy_by_dtype(self) -> dict[str, float]:
        """Dynamic energy per FLOP per accepted dtype: every pass converts and modulates again."""
        return {d: self.energy_j_per_flop * self.passes(d) for d in self.accepts}


@dataclass(frozen=True, kw_only=True)
class PimSpec:
    """Compute units inside a memory level (bank-level PIM): they read weights and KV in place at the
    internal bandwidth; the op's activations still cross the external interface. Peak, internal bandwidth,
    op kinds and capacity share derive from a published design (``config/derive_pim.py``, ``pim_from_section``)."""

    level: str                                  # the memory level it sits in (e.g. hbm)
    kinds: tuple[str, ...]                      # op kinds it runs (derived from ``functions``)
    peak_flop_per_s: Mapping[str, float]        # per dtype (the dtypes it supports)
    achievable_fraction: float
    energy_j_per_flop: Mapping[str, float]
    internal_bandwidth_bytes_per_s: float
    internal_energy_j_per_bit: float
    functions: tuple[str, ...] = ()             # what one unit computes (add, mul, mac, mad, exp, ...)
    capacity_fraction: float = 1.0              # share of the level's plain capacity a PIM stack keeps
    mode_switch_s: float = 0.0                  # entering and leaving PIM mode, once per op


def _names(sec: Section, key: str, known: tuple[str, ...] | None) -> tuple[str, ...]:
    items = sec.list(key)
    if not items or not all(isinstance(i, str) for i in items):
        raise ConfigError(sec.file, sec.child_path(key), "a non-empty list of names", items)
    if known is not None:
        for i, item in enumerate(items):
            if item not in known:
                raise ConfigError(sec.file, sec.item_path(key, i), f"one of {', '.join(known)}", item)
    return tuple(items)


OP_KINDS = ("gemm", "grouped_gemm", "attention", "norm", "rope", "elementwise", "router", "embedding",
            "softmax", "topk", "combine")


def photonic_from_section(sec: Section) -> PhotonicSpec:
    """Parse an engine's ``photonic:`` section (strict; unknown keys are reported by finish())."""
    array = photonic.Array(
        rows=sec.int("crossbar_rows", minimum=1), cols=sec.int("crossbar_cols", minimum=1),
        wavelengths=sec.int("wavelengths", minimum=1), tiles=sec.int("tiles", minimum=1),
        cores_per_tile=sec.int("cores_per_tile", minimum=1),
        rate_hz=sec.quantity("modulation_rate", "frequency_hz"))
    optics = photonic.Optics(
        modulator_loss_db=sec.number("modulator_loss_db", minimum=0, maximum=60),
        router_loss_db=sec.number("router_loss_db", minimum=0, maximum=60),
        routers_per_modulator=sec.int("routers_per_modulator", minimum=0),
        y_branch_loss_db=sec.number("y_branch_loss_db", minimum=0, maximum=60),
        phase_shifter_loss_db=sec.number("phase_shifter_loss_db", minimum=0, maximum=60),
        coupler_loss_db=sec.number("coupler_loss_db", minimum=0, maximum=60),
        detector_sensitivity_dbm=sec.number("detector_sensitivity_dbm", minimum=-100, maximum=30),
        laser_wall_plug_efficiency=sec.quantity("laser_wall_plug_efficiency", "fraction"))
    devices = photonic.Devices(
        dac_energy_j=sec.quantity("dac_energy", "energy_j"), adc_energy_j=sec.quantity("adc_energy", "energy_j"),
        modulator_energy_j_per_bit=sec.quantity("modulator_energy_per_bit", "energy_j_per_bit"),
        modulator_static_w=sec.quantity("modulator_static_power", "power_w"),
        router_static_w=sec.quantity("router_static_power", "power_w"),
        detector_w=sec.quantity("detector_power", "power_w"), tia_w=sec.quantity("tia_power", "power_w"))
    # DOTA-style engines modulate both operands every cycle; a weight-stationary one (MZI mesh, thermally tuned
    # rings) settles for reprogram_time at every weight load (derive_photonic.reprogram_s)
    stationary = sec.bool("weight_stationary")
    reprogram = sec.quantity("reprogram_time", "time_s") if stationary else 0.0
    if stationary and reprogram <= 0:
        raise ConfigError(sec.file, sec.child_path("reprogram_time"),
                          "a positive settling time per weight load (weight_stationary: true)", reprogram)
    return PhotonicSpec(
        weight_stationary=stationary, reprogram_time_s=reprogram,
        array=array, optics=optics, devices=devices,
        native_bits=sec.int("native_bits", minimum=1, maximum=16),
        adc_enob=sec.number("adc_enob", minimum=1, maximum=32),
        input_sharing=sec.bool("input_sharing"), adc_sharing=sec.bool("adc_sharing"),
        noise_std=sec.number("noise_std", minimum=0, maximum=1),
        accepts=_names(sec, "accepts", tuple(BY_NAME)), kinds=_names(sec, "kinds", OP_KINDS))


def pim_from_section(sec: Section, memory: Section, per_dtype) -> PimSpec:
    """Parse the top-level ``pim:`` section and derive the units' rates in the memory level they sit in
    (``memory``: the chip's ``memory:`` section). ``per_dtype(section, dimension)`` parses dtype maps."""
    level = sec.str("level", choices=tuple(memory.keys()))
    external = memory.section(level).quantity("bandwidth", "bytes_per_s")
    design = sec.section("design")
    ratio = design.number("bandwidth_ratio", minimum=1)
    balance = pim.flop_per_byte(design.quantity("peak", "flop_per_s"),
                                design.quantity("external_bandwidth", "bytes_per_s"), ratio)
    plain = design.quantity("plain_capacity", "bytes")
    keeps = pim.capacity_fraction(design.quantity("capacity", "bytes"), plain)
    if keeps > 1:
        raise ConfigError(sec.file, design.child_path("capacity"), f"at most plain_capacity ({plain:.4g} B)",
                          design.raw("capacity"))
    design.finish()
    internal = pim.internal_bandwidth(external, ratio)
    dtypes = _names(sec, "dtypes", tuple(BY_NAME))
    functions = _names(sec, "functions", pim.FUNCTIONS)
    switch = pim.mode_switch_s(sec.int("mode_switch_row_writes", minimum=0), sec.quantity("row_cycle", "time_s"))
    energy = per_dtype(sec.section("energy_per_flop"), "energy_j_per_flop")
    for dtype in dtypes:
        if dtype not in energy:
            raise ConfigError(sec.file, sec.child_path("energy_per_flop"), f"an energy per FLOP for {dtype}",
                              sorted(energy))
    return PimSpec(
        level=level, kinds=pim.covered_kinds(functions), functions=functions,
        peak_flop_per_s=dict.fromkeys(dtypes, pim.peak_flop_per_s(balance, internal)),
        achievable_fraction=sec.quantity("achievable_fraction", "fraction"), energy_j_per_flop=energy,
        internal_bandwidth_bytes_per_s=internal,
        internal_energy_j_per_bit=sec.quantity("internal_energy_per_bit", "energy_j_per_bit"),
        capacity_fraction=keeps, mode_switch_s=switch)


def with_pim_capacity(hw):
    """``hw`` with its PIM level's capacity cut to the share a PIM stack keeps (``PimSpec.capacity_fraction``); the
    YAML ``capacity`` is the plain stacks'."""
    if hw.pim is None or hw.pim.capacity_fraction == 1.0:
        return hw
    level = hw.memory[hw.pim.level]
    memory = dict(hw.memory)
    memory[level.name] = dataclasses.replace(level, capacity_bytes=level.capacity_bytes * hw.pim.capacity_fraction)
    return dataclasses.replace(hw, memory=memory)


@dataclass(frozen=True, kw_only=True)
class MeshSpec:
    """A 2D mesh of small cores, each with its own SRAM and router (a wafer-scale chip). ``op_side``: cores per side
    of the square sub-mesh one op is spread over; the rates derive in ``archsim/cost/mesh.py``."""

    cores_x: int                       # cores per row of the whole mesh
    cores_y: int                       # rows of cores
    op_side: int                       # side of the square sub-mesh one op (one GEMV) is mapped over
    core_memory_bytes: float           # SRAM per core
    simd_fp16_macs_per_cycle: int      # FP16 multiply-accumulates one core issues per cycle
    clock_hz: float
    hop_cycles: float                  # cycles for a word to cross one router-to-router hop
    link_bytes_per_cycle: float        # bytes one link carries per cycle and direction
    hop_energy_j_per_bit: float        # energy to move one bit across one hop
    weight_stream_bytes_per_s: float   # weights streamed onto the wafer from off-wafer memory (MemoryX)

    @property
    def cores(self) -> int:
        return self.cores_x * self.cores_y


def mesh_from_section(sec: Section) -> MeshSpec:
    """Parse the top-level ``mesh:`` section (strict; unknown keys are reported by finish())."""
    spec = MeshSpec(
        cores_x=sec.int("cores_x", minimum=1), cores_y=sec.int("cores_y", minimum=1),
        op_side=sec.int("op_side", minimum=1),
        core_memory_bytes=sec.quantity("core_memory", "bytes"),
        simd_fp16_macs_per_cycle=sec.int("simd_fp16_macs_per_cycle", minimum=1),
        clock_hz=sec.quantity("clock", "frequency_hz"),
        hop_cycles=sec.number("hop_cycles", minimum=0),
        link_bytes_per_cycle=sec.number("link_bytes_per_cycle", minimum=0),
        hop_energy_j_per_bit=sec.quantity("hop_energy_per_bit", "energy_j_per_bit"),
        weight_stream_bytes_per_s=sec.quantity("weight_stream_bandwidth", "bytes_per_s"))
    if spec.link_bytes_per_cycle <= 0:
        raise ConfigError(sec.file, sec.child_path("link_bytes_per_cycle"), "a positive number of bytes per cycle",
                          spec.link_bytes_per_cycle)
    if spec.op_side > min(spec.cores_x, spec.cores_y):
        raise ConfigError(sec.file, sec.child_path("op_side"),
                          f"at most the mesh's shorter side ({min(spec.cores_x, spec.cores_y)} cores)", spec.op_side)
    return spec


@dataclass(frozen=True, kw_only=True)
class MemoryStack:
    """DRAM stacks bonded on the logic die (top-level ``memory_stack:``): the main memory level's capacity,
    bandwidth and energy per bit derive from it (``config/derive_dram3d.py``)."""

    stacks: int
    dies_per_stack: int
    die_capacity_bytes: float
    interface_bits: int
    pin_rate_bytes_per_s: float          # per data pin
    stack_energy_j_per_bit: float        # the same stack's access energy on an interposer (2.5D)
    interposer_io_j_per_bit: float       # the interposer I/O hop that bonding on logic removes
    host_path_j_per_bit: float           # the logic die's part of a streamed byte's energy (controller to SMs)

    def level_fields(self) -> dict[str, float]:
        """The main memory level's derived fields, keyed by their YAML names."""
        return {"capacity": dram3d.stack_capacity_bytes(self.stacks, self.dies_per_stack, self.die_capacity_bytes),
                "bandwidth": dram3d.stack_bandwidth_bytes_per_s(self.stacks, self.interface_bits,
                                                                self.pin_rate_bytes_per_s),
                "energy_per_bit": dram3d.on_logic_energy_j_per_bit(self.stack_energy_j_per_bit,
                                                                   self.interposer_io_j_per_bit,
                                                                   self.host_path_j_per_bit)}


def memory_stack_from_section(sec: Section) -> MemoryStack:
    """Parse the top-level ``memory_stack:`` section (strict)."""
    stack = MemoryStack(
        stacks=sec.int("stacks", minimum=1), dies_per_stack=sec.int("dies_per_stack", minimum=1),
        die_capacity_bytes=sec.quantity("die_capacity", "bytes"), interface_bits=sec.int("interface_bits", minimum=1),
        pin_rate_bytes_per_s=sec.quantity("pin_rate", "bytes_per_s"),
        stack_energy_j_per_bit=sec.quantity("stack_energy_per_bit", "energy_j_per_bit"),
        interposer_io_j_per_bit=sec.quantity("interposer_io_energy_per_bit", "energy_j_per_bit"),
        host_path_j_per_bit=sec.quantity("host_path_energy_per_bit", "energy_j_per_bit"))
    if stack.interposer_io_j_per_bit >= stack.stack_energy_j_per_bit:
        raise ConfigError(sec.file, sec.child_path("interposer_io_energy_per_bit"),
                          "less than stack_energy_per_bit (a part of the stack's access energy)",
                          sec.raw("interposer_io_energy_per_bit"))
    return stack


@dataclass(frozen=True, kw_only=True)
class StackThermal:
    """The thermal limit of memory stacked on the logic die (``thermal:`` with a published simulation's figures):
    the power the die sustains at the stack's junction limit (``config/derive_dram3d.py``)."""

    reference_power_w: float    # the power at which the simulation's die reached peak_c
    peak_c: float               # its peak temperature without mitigation
    junction_limit_c: float     # the DRAM dies' limit
    ambient_c: float            # the coolant / ambient reference
    board_tdp_w: float | None = None  # the board TDP the sustainable power replaced as the cap (set on load)

    @property
    def sustainable_power_w(self) -> float:
        return dram3d.sustainable_power_w(self.reference_power_w, self.peak_c, self.junction_limit_c, self.ambient_c)

    def temperature_c(self, power_w: float) -> float:
        return dram3d.temperature_c(power_w, self.reference_power_w, self.peak_c, self.ambient_c)


def thermal_from_section(sec: Section) -> StackThermal:
    """Parse a ``thermal:`` section that describes the stack's thermal model (not a fixed clock fraction)."""
    spec = StackThermal(reference_power_w=sec.quantity("reference_power", "power_w"),
                        peak_c=sec.number("unmitigated_peak_c", minimum=-273.15, maximum=1000),
                        junction_limit_c=sec.number("junction_limit_c", minimum=-273.15, maximum=1000),
                        ambient_c=sec.number("ambient_c", minimum=-273.15, maximum=1000))
    if not spec.ambient_c < spec.junction_limit_c < spec.peak_c:
        raise ConfigError(sec.file, sec.child_path("junction_limit_c"),
                          f"between ambient_c ({spec.ambient_c:g}) and unmitigated_peak_c ({spec.peak_c:g})",
                          spec.junction_limit_c)
    if spec.reference_power_w <= 0:
        raise ConfigError(sec.file, sec.child_path("reference_power"), "a positive power", spec.reference_power_w)
    return spec


def with_thermal_cap(hw):
    """``hw`` whose power cap (``power.tdp_w``, the cap of ``cost/power.py``) is the board TDP or, lower, the power
    its stacked die sustains at the junction limit (``hw.thermal``)."""
    if hw.thermal is None or hw.thermal.sustainable_power_w >= hw.power.tdp_w:
        return hw
    cap = hw.thermal.sustainable_power_w
    if cap <= hw.busy_power_w:
        # the stack could not shed even the power the chip draws while running kernels at no load: no op would run
        # inside the cap (cost/power.py would price them uncapped), so the thermal model is infeasible as written
        raise ConfigError(hw.source_file, "thermal",
                          f"a sustainable power ({cap:.1f} W at the junction limit) above the chip's busy power "
                          f"({hw.busy_power_w:.1f} W: idle, always-on and active baseline)", f"{cap:.1f} W")
    return dataclasses.replace(hw, power=dataclasses.replace(hw.power, tdp_w=cap),
                               thermal=dataclasses.replace(hw.thermal, board_tdp_w=hw.power.tdp_w))
