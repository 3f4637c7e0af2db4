"""Kernel-efficiency fields of a chip (the optional ``kernel:`` section of a hardware YAML): clocks,
the tile shapes its GEMM library chooses from, attention's MMA fraction and the per-kernel ramp time.

Each field is a physical quantity with a source in the YAML; ``archsim/cost/geometry.py`` (the tile menu) and
``archsim/cost/rates.py`` (clocks, feeds, ramp) read them, ``archsim/cost/gemm.py`` prices GEMMs with them, and
docs/fidelity.md derives them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from archsim.config.yaml_io import Section
from archsim.errors import ConfigError


# a library may beat the reference kernel the tile model describes, but not by more than half again: a larger
# ratio means the reference fields are wrong, not that the library is fast
LIBRARY_FRACTION_MAX = 1.5


@dataclass(frozen=True, kw_only=True)
class KernelLibrary:
    """One kernel library on one chip, relative to the reference kernel archsim's tile and attention models
    describe for that chip (GEMMs: DeepGEMM-class tiles; MLA decode: FlashMLA; docs/stacks.md).

    ``mma_fraction``: its sustained matrix rate over the reference's on the same compute-bound shapes;
    ``bandwidth_fraction``: its achieved main-memory bandwidth over the reference's on memory-bound shapes.
    """

    name: str
    mma_fraction: float = 1.0
    bandwidth_fraction: float = 1.0


@dataclass(frozen=True, kw_only=True)
class KernelFields:
    """Fields the kernel-level efficiency models need; every group is optional (a CPU has no tiles).

    ``clock_boost_hz``: the clock at which the datasheet peaks are quoted; ``clock_under_load_hz``: the
    clock sustained under heavy tensor-core load (throttling). ``attention_mma_fraction``: fraction of
    the throttled MMA peak a tuned attention kernel sustains (softmax interleaved with MMA).
    ``gemm_block_m`` / ``gemm_block_n``: output-tile edges the GEMM library chooses from;
    ``gemm_max_tile_elements``: the largest tile (accumulator registers). ``gemm_multicast``: CTAs of a
    cluster that share one TMA load of an A panel where the library allows it (1 = no multicast).
    ``gemm_operand_bandwidth_bytes_per_s``: the L2 -> shared-memory rate at which a GEMM's tiles stream
    their operand panels (None = the L2 level's achievable bandwidth). ``sm_stream_bandwidth_bytes_per_s``:
    the bytes/s one SM's loads sustain when streaming from main memory (one CTA's rate: a GEMM of few tiles,
    each streaming a weight panel, cannot reach the chip's bandwidth; None = no per-SM cap). ``ramp_s``: fixed
    time per kernel (first loads before the first MMA plus the final store's drain; on a CPU, the call overhead).
    ``attention_backward_fraction``: FLOP rate of the attention backward kernel over the forward's
    (training only; None = the same rate). ``wgrad_fraction``: the rate of the GEMM library's FP8
    weight-gradient kernels over what the fields above give the same shapes (training only; None = 1).
    ``libraries``: the kernel libraries a software stack can name for an op kind on this chip
    (``stacks/*.yaml``), each with its efficiency relative to the kernel the fields above describe
    (``KernelLibrary``).
    """

    ramp_s: float = 0.0
    clock_boost_hz: float | None = None
    clock_under_load_hz: float | None = None
    attention_mma_fraction: float | None = None
    gemm_block_m: tuple[int, ...] = ()
    gemm_block_n: tuple[int, ...] = ()
    gemm_max_tile_elements: int | None = None
    gemm_multicast: int = 1
    gemm_operand_bandwidth_bytes_per_s: float | None = None
    sm_stream_bandwidth_bytes_per_s: float | None = None
    attention_backward_fraction: float | None = None
    wgrad_fraction: float | None = None
    libraries: Mapping[str, "KernelLibrary"] = field(default_factory=dict)

    @property
    def clock_ratio(self) -> float:
        """Sustained over quoted clock (<= 1 when the chip throttles; 1 when no clocks are given)."""
        if self.clock_boost_hz is None or self.clock_under_load_hz is None:
            return 1.0
        return self.clock_under_load_hz / self.clock_boost_hz

    @property
    def has_tiles(self) -> bool:
        return bool(self.gemm_block_m and self.gemm_block_n and self.gemm_max_tile_elements)


def _int_list(section: Section, key: str) -> tuple[int, ...]:
    if not section.has(key):
        return ()
    values = section.list(key)
    out = []
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(section.file, section.item_path(key, index), "a positive integer", value)
        out.append(value)
    if not out:
        raise ConfigError(section.file, section.child_path(key), "a non-empty list of tile edges", values)
    return tuple(out)


def parse_kernel_fields(section: Section) -> KernelFields:
    """Read a ``kernel:`` section strictly (unknown keys are errors, quantities carry units)."""
    fields = KernelFields(
        ramp_s=section.quantity("ramp", "time_s", default=0.0),
        clock_boost_hz=section.quantity("clock_boost", "frequency_hz", default=None),
        clock_under_load_hz=section.quantity("clock_under_load", "frequency_hz", default=None),
        attention_mma_fraction=section.number("attention_mma_fraction", minimum=0.0, maximum=1.0, default=None),
        gemm_block_m=_int_list(section, "gemm_block_m"),
        gemm_block_n=_int_list(section, "gemm_block_n"),
        gemm_max_tile_elements=section.int("gemm_max_tile_elements", minimum=1, default=None),
        gemm_multicast=section.int("gemm_multicast", minimum=1, default=1),
        gemm_operand_bandwidth_bytes_per_s=section.quantity("gemm_operand_bandwidth", "bytes_per_s",
                                                            default=None),
        sm_stream_bandwidth_bytes_per_s=section.quantity("sm_stream_bandwidth", "bytes_per_s", default=None),
        attention_backward_fraction=section.number("attention_backward_fraction", minimum=0.0, maximum=1.0,
                                                   default=None),
        wgrad_fraction=section.number("wgrad_fraction", minimum=0.0, maximum=1.5, default=None),
        libraries=_libraries(section),
    )
    path = section.child_path
    if (fields.clock_boost_hz is None) != (fields.clock_under_load_hz is None):
        raise ConfigError(section.file, path("clock_under_load"), "clock_boost and clock_under_load together",
                          "only one of them")
    if fields.clock_boost_hz is not None and fields.clock_under_load_hz > fields.clock_boost_hz:
        raise ConfigError(section.file, path("clock_under_load"), "at most clock_boost", fields.clock_under_load_hz)
    if fields.gemm_operand_bandwidth_bytes_per_s is not None and not fields.gemm_operand_bandwidth_bytes_per_s > 0:
        raise ConfigError(section.file, path("gemm_operand_bandwidth"), "a positive bandwidth",
                          fields.gemm_operand_bandwidth_bytes_per_s)
    if fields.sm_stream_bandwidth_bytes_per_s is not None and not fields.sm_stream_bandwidth_bytes_per_s > 0:
        raise ConfigError(section.file, path("sm_stream_bandwidth"), "a positive bandwidth",
                          fields.sm_stream_bandwidth_bytes_per_s)
    if fields.attention_mma_fraction is not None and fields.attention_mma_fraction <= 0:
        raise ConfigError(section.file, path("attention_mma_fraction"), "a fraction in (0, 1]",
                          fields.attention_mma_fraction)
    if fields.attention_backward_fraction is not None and fields.attention_backward_fraction <= 0:
        raise ConfigError(section.file, path("attention_backward_fraction"), "a fraction in (0, 1]",
                          fields.attention_backward_fraction)
    if fields.wgrad_fraction is not None and fields.wgrad_fraction <= 0:
        raise ConfigError(section.file, path("wgrad_fraction"), "a fraction in (0, 1.5]", fields.wgrad_fraction)
    tiles = (bool(fields.gemm_block_m), bool(fields.gemm_block_n), fields.gemm_max_tile_elements is not None)
    if any(tiles) and not all(tiles):
        raise ConfigError(section.file, path("gemm_block_m"),
                          "gemm_block_m, gemm_block_n and gemm_max_tile_elements together", "only some of them")
    if all(tiles) and min(fields.gemm_block_m) * min(fields.gemm_block_n) > fields.gemm_max_tile_elements:
        raise ConfigError(section.file, path("gemm_max_tile_elements"), "room for at least the smallest tile",
                          fields.gemm_max_tile_elements)
    section.finish()
    return fields


def _libraries(section: Section) -> dict[str, KernelLibrary]:
    """The optional ``libraries:`` mapping: name -> {mma_fraction, bandwidth_fraction}, each in (0, 1.5]."""
    libs = section.optional_section("libraries")
    if libs is None:
        return {}
    out = {}
    for name in libs.keys():
        entry = libs.section(name)
        fractions = {}
        for key in ("mma_fraction", "bandwidth_fraction"):
            value = entry.number(key, minimum=0.0, maximum=LIBRARY_FRACTION_MAX, default=1.0)
            if not value > 0:
                raise ConfigError(entry.file, entry.child_path(key), f"a ratio in (0, {LIBRARY_FRACTION_MAX}]", value)
            fractions[key] = value
        entry.finish()
        out[name] = KernelLibrary(name=name, **fractions)
    return out
