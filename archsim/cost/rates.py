"""Hardware -> rates: ``ChipRates.of(hw)`` is the only place a hardware field becomes a rate.

FLOP/s per (engine, dtype) = peak x achievable fraction x thermal clock; attention's MMA rate; bytes/s per
memory level = bandwidth x achievable fraction (x thermal clock on chip), capped by its power limit; the tiled
GEMM's L2 operand feed and per-SM panel stream; kernel ramp and launch; the rates of a memory level's
processing-in-memory units (``pim:``: peak x achievable fraction x thermal clock, internal bandwidth x achievable
fraction). Sizes live in ``cost/geometry.py``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from archsim.config.hardware import Hardware, MemoryLevel
from archsim.dtypes import BITS_PER_BYTE, BY_NAME, DType
from archsim.errors import ConfigError


def sustained_bytes_per_s(bandwidth_bytes_per_s, derate, power_limit_w, energy_j_per_bit):
    """bandwidth x derate, capped at the rate whose energy draws ``power_limit_w`` (inf: no cap; a level
    without an energy per bit is never capped). Element-wise over numpy arrays (a sweep's points) or floats."""
    energy = np.asarray(energy_j_per_bit, dtype=float)
    cap = np.where(energy > 0, np.divide(power_limit_w, BITS_PER_BYTE * np.maximum(energy, np.finfo(float).tiny)),
                   np.inf)
    return np.minimum(np.multiply(bandwidth_bytes_per_s, derate), cap)


def level_bytes_per_s(level: MemoryLevel, clock_fraction: float = 1.0) -> float:
    """Sustained bytes/s of one memory level: achievable bandwidth (at ``clock_fraction`` of the core clock for
    an on-chip level), capped by its power limit."""
    limit = np.inf if level.power_limit_w is None else level.power_limit_w
    return float(sustained_bytes_per_s(level.bandwidth_bytes_per_s, level.achievable_fraction * clock_fraction,
                                       limit, level.energy_j_per_bit))


@dataclass(frozen=True, kw_only=True)
class ChipRates:
    """Every rate of one chip, derated as pricing uses it (module docstring)."""

    peak_flop_per_s: Mapping[str, Mapping[str, float]]  # engine -> dtype -> quoted peak
    achievable_fraction: Mapping[str, float]             # engine -> fraction of the peak a tuned kernel sustains
    clock_fraction: float                                # thermal.compute_clock_fraction
    matrix_engine: str | None                            # the engine that runs matrix ops (hw.engine_for)
    vector_engine: str | None
    # attention's sustained fraction of the thermal-clock peak: clock under load / boost x attention_mma_fraction
    # (a tuned attention kernel against the throttled peak); None without those fields (the GEMM fraction)
    attention_mma_derate: float | None
    level_bytes_per_s: Mapping[str, float]               # memory level -> sustained bytes/s
    level_derate: Mapping[str, float]                    # level -> achievable fraction (x clock fraction on chip)
    main: str                                            # the outermost level (main memory)
    gemm_operand_field: float | None  # kernel.gemm_operand_bandwidth x clock; None: the L2 level's rate feeds tiles
    sm_stream_bytes_per_s: float      # one SM's main-memory loads (kernel.sm_stream_bandwidth); inf: no cap
    ramp_s: float                     # kernel.ramp, 0 without kernel fields
    launch_s: float                   # kernel_launch
    source_file: str
    # processing in memory (hardware ``pim:``); empty / 0 / None on a chip without PIM units
    pim_peak_flop_per_s: Mapping[str, float] = dataclasses.field(default_factory=dict)  # dtype -> quoted peak
    pim_fraction: float = 0.0                    # pim.achievable_fraction (compute and internal reads)
    pim_internal_bandwidth_bytes_per_s: float = 0.0  # pim.internal_bandwidth, as quoted
    pim_level: str | None = None                 # the memory level the units sit in

    @staticmethod
    def of(hw: Hardware, *, cuda_graph: bool = False) -> "ChipRates":
        """The rates of ``hw``; ``cuda_graph``: kernels replayed from a CUDA graph, whose launch floor is
        ``hw.graph_launch_s`` (``kernel_launch_graph``) instead of ``kernel_launch``."""
        clock = hw.compute_clock_fraction
        main = hw.main_memory
        fields = hw.kernel
        operand = None
        if fields is not None and fields.gemm_operand_bandwidth_bytes_per_s is not None:
            operand = fields.gemm_operand_bandwidth_bytes_per_s * clock  # the L2 -> SMEM feed runs at the core clock
        stream = None if fields is None else fields.sm_stream_bandwidth_bytes_per_s
        attention = None
        if fields is not None and fields.attention_mma_fraction is not None:
            attention = fields.clock_ratio * fields.attention_mma_fraction
        return ChipRates(
            peak_flop_per_s={name: dict(e.peak_flop_per_s) for name, e in hw.compute.items()},
            achievable_fraction={name: e.achievable_fraction for name, e in hw.compute.items()},
            clock_fraction=clock, matrix_engine=_engine(hw, "matrix"), vector_engine=_engine(hw, "vector"),
            attention_mma_derate=attention,
            level_bytes_per_s={name: level_bytes_per_s(lv, 1.0 if lv is main else clock)
                               for name, lv in hw.memory.items()},
            level_derate={name: lv.achievable_fraction * (1.0 if lv is main else clock)
                          for name, lv in hw.memory.items()},
            main=main.name, gemm_operand_field=operand,
            sm_stream_bytes_per_s=np.inf if stream is None else stream,
            ramp_s=fields.ramp_s if fields is not None else 0.0,
            launch_s=hw.graph_launch_s if cuda_graph else hw.kernel_launch_s,
            source_file=hw.source_file, **_pim_fields(hw))

    def compute_derate(self, engine: str) -> float:
        """The fraction of ``engine``'s quoted peak that pricing uses: achievable fraction x thermal clock."""
        return self.achievable_fraction[engine] * self.clock_fraction

    def flop_per_s(self, engine: str, dtype: str) -> float:
        """Sustained FLOP/s of ``engine`` in ``dtype`` (peak x achievable fraction x clock fraction)."""
        return self.peak_flop_per_s[engine][dtype] * self.compute_derate(engine)

    def matrix_flop_per_s(self, dtype: str) -> float:
        """Sustained GEMM FLOP/s of the matrix engine in ``dtype``; a ConfigError names a missing engine or peak."""
        return self.flop_per_s(self._matrix(dtype), dtype)

    def attention_flop_per_s(self, dtype: str, mma_peak_fraction: float | None = None) -> float:
        """Attention's sustained MMA FLOP/s in ``dtype``: the thermal-clock peak x ``mma_peak_fraction`` when a
        kernel names its own, else x ``attention_mma_derate``, else x the engine's GEMM achievable fraction."""
        engine = self._matrix(dtype)
        peak = self.peak_flop_per_s[engine][dtype] * self.clock_fraction
        if mma_peak_fraction is not None:
            return peak * mma_peak_fraction
        if self.attention_mma_derate is not None:
            return peak * self.attention_mma_derate
        return peak * self.achievable_fraction[engine]

    @property
    def attention_rate_ratio(self) -> float:
        """Attention's MMA rate over the matrix engine's GEMM rate, for the graph's attention ops (which are priced
        at the GEMM rate of their dtype times this); 1 without attention fields or a matrix engine."""
        if self.attention_mma_derate is None or self.matrix_engine is None:
            return 1.0
        gemm_fraction = self.achievable_fraction[self.matrix_engine]
        return self.attention_mma_derate / gemm_fraction if gemm_fraction > 0 else 1.0

    def vector_flop_per_s(self, dtype: str | None = None) -> float:
        """Sustained FLOP/s of the vector engine in ``dtype`` (its largest peak when it lists no such dtype or
        ``dtype`` is None); 0 without a vector engine."""
        if self.vector_engine is None:
            return 0.0
        peaks = self.peak_flop_per_s[self.vector_engine]
        peak = peaks.get(dtype, max(peaks.values())) if dtype is not None else max(peaks.values())
        return peak * self.compute_derate(self.vector_engine)

    @property
    def pim_compute_derate(self) -> float:
        """The fraction of the PIM units' quoted peak that pricing uses: achievable fraction x thermal clock."""
        return self.pim_fraction * self.clock_fraction

    def pim_flop_per_s(self, dtype: str) -> float:
        """Sustained FLOP/s of the PIM units in ``dtype`` (peak x achievable fraction x clock fraction)."""
        return self.pim_peak_flop_per_s[dtype] * self.pim_compute_derate

    @property
    def pim_internal_bytes_per_s(self) -> float:
        """Sustained in-place reads of the PIM units (internal bandwidth x achievable fraction)."""
        return self.pim_internal_bandwidth_bytes_per_s * self.pim_fraction

    @property
    def main_bytes_per_s(self) -> float:
        """Sustained main-memory bytes/s (off chip: not scaled by the core clock)."""
        return self.level_bytes_per_s[self.main]

    @property
    def l2_bytes_per_s(self) -> float:
        """Sustained L2 -> SM bytes/s; unbounded when the chip has no ``l2`` level apart from main memory."""
        if "l2" not in self.level_bytes_per_s or self.main == "l2":
            return np.inf
        return self.level_bytes_per_s["l2"]

    @property
    def gemm_operand_bytes_per_s(self) -> float:
        """Rate at which a tiled GEMM's tiles stream their operand panels from L2 into shared memory:
        ``kernel.gemm_operand_bandwidth`` (x clock), else the L2 level's sustained rate, else unbounded."""
        return self.l2_bytes_per_s if self.gemm_operand_field is None else self.gemm_operand_field

    def _matrix(self, dtype: str) -> str:
        if self.matrix_engine is None:
            raise ConfigError(self.source_file, "compute", "a matrix engine", None)
        if dtype not in self.peak_flop_per_s[self.matrix_engine]:
            raise ConfigError(self.source_file, f"compute.{self.matrix_engine}.peak", f"a peak for {dtype}",
                              sorted(self.peak_flop_per_s[self.matrix_engine]))
        return self.matrix_engine


def engine_dtype_name(peaks: Mapping[str, float] | tuple[str, ...], dtype: DType) -> str | None:
    """The dtype whose peak prices ``dtype`` on an engine with ``peaks`` (keyed by dtype name): its own, else the
    narrowest wider format the engine lists (e.g. FP8 weights upcast to BF16 on an A100); None if none is wider."""
    if dtype.name in peaks:
        return dtype.name
    wider = [d for d in peaks if d in BY_NAME and BY_NAME[d].bits >= dtype.bits]
    return min(wider, key=lambda d: BY_NAME[d].bits) if wider else None


def _pim_fields(hw: Hardware) -> dict:
    """``ChipRates``' PIM fields of ``hw`` (none without a ``pim:`` section)."""
    pim = hw.pim
    if pim is None:
        return {}
    return dict(pim_peak_flop_per_s=dict(pim.peak_flop_per_s), pim_fraction=pim.achievable_fraction,
                pim_internal_bandwidth_bytes_per_s=pim.internal_bandwidth_bytes_per_s, pim_level=pim.level)


def _engine(hw: Hardware, kind: str) -> str | None:
    try:
        return hw.engine_for(kind).name
    except KeyError:
        return None
