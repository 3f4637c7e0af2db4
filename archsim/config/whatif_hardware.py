"""What-if hardware sections of a hardware YAML: photonic engines, processing-in-memory and a wafer-scale core mesh.

Optional parts of ``archsim/config/hardware.py``. Derived rates of a photonic engine are
computed here, in tested Python, from its physical fields (no derived numbers in YAML):
- peak = 2 FLOP/MAC x crossbar_rows x crossbar_cols x wavelengths x cores x modulation_rate: a
  DOTA-style crossbar of rows x cols dot-product units, each summing ``wavelengths`` products per
  cycle (Zhu et al., "Lightening-Transformer: A Dynamically-operated Optically-interconnected Photonic
  Transformer Accelerator", HPCA 2024, arXiv 2305.19533; DOTA-L core counts in the authors' simulator,
  github.com/zhuhanqing/Lightening-Transformer hardware_simulator/params/device_params/Dota_L_8bit.yaml);
- conversions per cycle and core: both operands are modulated every cycle, one DAC conversion per
  operand element, ``(rows + cols) x wavelengths``, and one ADC conversion per dot-product output,
  ``rows x cols``; dynamic energy per FLOP = conversion energy per cycle / FLOPs per cycle;
- laser and static (tuning, control) power burn whether the array is busy or not: they add to the
  chip's static power (``static_power_w``), not to the energy per FLOP;
- a wafer-scale chip's 2D mesh of cores (``mesh:``, ``MeshSpec``): its size, per-core SRAM and SIMD width, clock,
  per-hop latency and link width, and the off-wafer weight-streaming bandwidth; ``archsim/cost/mesh.py`` prices
  the mesh traffic of each op from them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from archsim.config.yaml_io import Section
from archsim.dtypes import BY_NAME
from archsim.errors import ConfigError

FLOP_PER_MAC = 2


@dataclass(frozen=True, kw_only=True)
class PhotonicSpec:
    """The optical MAC array, converters, lasers and analog quality of a photonic engine."""

    crossbar_rows: int
    crossbar_cols: int
    wavelengths: int
    cores: int
    modulation_rate_hz: float
    dac_energy_j: float          # per conversion
    adc_energy_j: float          # per conversion
    laser_power_w: float         # electrical (wall-plug) power of the lasers
    static_power_w: float        # tuning and control, independent of load
    effective_bits: float        # analog precision of one MAC result
    noise_std: float             # output noise, relative to the output's full scale
    accepts: tuple[str, ...]     # op compute dtypes it takes (converted to effective_bits by the DACs)
    kinds: tuple[str, ...]       # op kinds it runs (nonlinear ops stay electronic)

    @property
    def macs_per_cycle(self) -> int:
        return self.crossbar_rows * self.crossbar_cols * self.wavelengths * self.cores

    @property
    def peak_flop_per_s(self) -> float:
        return FLOP_PER_MAC * self.macs_per_cycle * self.modulation_rate_hz

    @property
    def energy_j_per_flop(self) -> float:
        per_core = ((self.crossbar_rows + self.crossbar_cols) * self.wavelengths * self.dac_energy_j
                    + self.crossbar_rows * self.crossbar_cols * self.adc_energy_j)
        return per_core * self.cores / (FLOP_PER_MAC * self.macs_per_cycle)

    @property
    def always_on_w(self) -> float:
        return self.laser_power_w + self.static_power_w


@dataclass(frozen=True, kw_only=True)
class PimSpec:
    """Compute units inside a memory level (bank-level PIM): they read weights and KV in place at the
    internal bandwidth; the op's activations still cross the external interface."""

    level: str                                  # the memory level it sits in (e.g. hbm)
    kinds: tuple[str, ...]                      # op kinds it runs (e.g. gemm, attention)
    peak_flop_per_s: Mapping[str, float]        # per dtype (the dtypes it supports)
    achievable_fraction: float
    energy_j_per_flop: Mapping[str, float]
    internal_bandwidth_bytes_per_s: float
    internal_energy_j_per_bit: float


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
    spec = PhotonicSpec(
        crossbar_rows=sec.int("crossbar_rows", minimum=1), crossbar_cols=sec.int("crossbar_cols", minimum=1),
        wavelengths=sec.int("wavelengths", minimum=1), cores=sec.int("cores", minimum=1),
        modulation_rate_hz=sec.quantity("modulation_rate", "frequency_hz"),
        dac_energy_j=sec.quantity("dac_energy", "energy_j"), adc_energy_j=sec.quantity("adc_energy", "energy_j"),
        laser_power_w=sec.quantity("laser_power", "power_w"), static_power_w=sec.quantity("static_power", "power_w"),
        effective_bits=sec.number("effective_bits", minimum=1, maximum=32),
        noise_std=sec.number("noise_std", minimum=0, maximum=1),
        accepts=_names(sec, "accepts", tuple(BY_NAME)), kinds=_names(sec, "kinds", OP_KINDS))
    return spec


def pim_from_section(sec: Section, levels: tuple[str, ...], per_dtype) -> PimSpec:
    """Parse the top-level ``pim:`` section. ``per_dtype(section, dimension)`` parses dtype maps."""
    level = sec.str("level", choices=levels)
    peak = per_dtype(sec.section("peak"), "flop_per_s")
    if not peak:
        raise ConfigError(sec.file, sec.child_path("peak"), "at least one dtype peak", "an empty mapping")
    return PimSpec(
        level=level, kinds=_names(sec, "kinds", OP_KINDS), peak_flop_per_s=peak,
        achievable_fraction=sec.quantity("achievable_fraction", "fraction"),
        energy_j_per_flop=per_dtype(sec.section("energy_per_flop"), "energy_j_per_flop"),
        internal_bandwidth_bytes_per_s=sec.quantity("internal_bandwidth", "bytes_per_s"),
        internal_energy_j_per_bit=sec.quantity("internal_energy_per_bit", "energy_j_per_bit"))


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
