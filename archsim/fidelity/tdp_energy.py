"""Energy per FLOP of a matrix engine derived from its power cap: the [D] ``energy_per_flop`` figures of
hardware/*.yaml, and what ``archsim calibrate --backend torch`` re-derives at the calibrated rates.

Under dense tensor work the GPU sits at its power cap (FlashMLA deep dive, deepseek-ai/FlashMLA
docs/20250422-new-kernel-deep-dive.md: H800 throttles to ~1600 MHz under load [V]; an H200 measured here
holds 1440-1545 MHz and ~690 W of its 700 W cap on back-to-back 8192^3 BF16 GEMMs,
validation/h200_torch_clock_20261128.json [M]), so that GEMM draws TDP and

    e = (TDP - busy power - P_move) / R

with R the FLOP rate the cost model achieves on it and P_move the traffic power it charges for it (the GEMM's
modelled power with every energy per FLOP set to zero, less busy power: static power plus the active baseline,
``Hardware.busy_power_w``). The figure is derived on
``REFERENCE_SHAPE``, the measured one, and rounded down to ``ROUNDING_J_PER_FLOP``. A GEMM that moves more bytes
per FLOP (``SHAPES`` has a long-k one whose operands overflow the L2) would then draw more than TDP: the power
cap (cost/power.py) stretches its time so that it draws TDP. It is derived for the GEMM dtypes
``DERIVED_DTYPES``; every other matrix dtype follows the same cap at its own peak: the derived dtype with the
nearest peak, scaled by that peak over its own (same peak: the same figure; fp4 at twice the fp8 rate: half;
tf32 at half the bf16 rate: twice).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from archsim.config.hardware import Hardware
from archsim.errors import ConfigError

# the GEMM measured at the cap (validation/h200_torch_clock_20261128.json): the derivation's shape
REFERENCE_SHAPE = (8192, 8192, 8192)
# large GEMMs (m, n, k) the tests check against the cap: square, DeepSeek-V3-like (16384 tokens x 7168 x 18432) and
# a long-k one whose operands overflow the L2 (it moves the most bytes per FLOP and is capped on the H-series)
SHAPES = (REFERENCE_SHAPE, (16384, 16384, 16384), (16384, 7168, 18432), (8192, 8192, 32768))
# the YAML figures are the derivation rounded down to 0.01 pJ (rounding down keeps every shape at or below TDP)
ROUNDING_J_PER_FLOP = 0.01e-12
# the dtypes priced directly as graph GEMMs; the others of a matrix engine are scaled from these by peak
DERIVED_DTYPES = ("bf16", "fp8")


@dataclass(frozen=True, kw_only=True)
class TdpDerivation:
    """e = (tdp_w - static_w - move_w) / flop_per_s on one GEMM shape (SI units); ``static_w`` is the busy power."""

    dtype: str
    shape: tuple[int, int, int]
    energy_j_per_flop: float  # not rounded
    flop_per_s: float
    move_w: float
    tdp_w: float
    static_w: float

    def arithmetic(self) -> str:
        m, n, k = self.shape
        return (f"({self.tdp_w:.4g} - {self.static_w:.4g} - {self.move_w:.1f} W) / {self.flop_per_s / 1e12:.1f} "
                f"TFLOPS achieved on {m} x {n} x {k} = {self.energy_j_per_flop * 1e12:.4f} pJ")


@dataclass(frozen=True, kw_only=True)
class DerivedEnergy:
    """One matrix dtype's energy per FLOP (J, rounded down to 0.01 pJ) and how it was obtained."""

    dtype: str
    energy_j_per_flop: float
    how: str


def gemm_graph(dtype: str, m: int, n: int, k: int):
    """A one-GEMM graph whose weights and activations are ``dtype`` (the GEMM runs in it)."""
    from archsim.graph.ops import GraphBuilder
    from archsim.graph.precision import precision_from_names

    b = GraphBuilder(precision_from_names(weights=dtype))
    b.gemm("g", m=m, n=n, k=k, layer=0, deps=[], split="replicated")
    return b.graph()


def without_flop_energy(hw: Hardware) -> Hardware:
    """``hw`` with every engine's energy per FLOP set to zero (what is left is busy and traffic power)."""
    compute = {name: dataclasses.replace(e, energy_j_per_flop=dict.fromkeys(e.energy_j_per_flop, 0.0))
               for name, e in hw.compute.items()}
    return dataclasses.replace(hw, compute=compute)


def derivation(hw: Hardware, dtype: str, shape: tuple[int, int, int]) -> TdpDerivation:
    """The TDP rule on one GEMM of ``shape`` in ``dtype`` priced on ``hw``."""
    from archsim.cost.phase import graph_ops, price_graph

    graph = gemm_graph(dtype, *shape)
    op = graph_ops(graph)[0]
    if op.compute_dtype.name != dtype:
        raise ConfigError(None, "energy_per_flop", f"a GEMM that runs in {dtype}", op.compute_dtype.name)
    bare = price_graph(graph, without_flop_energy(hw))
    rate = op.flops / bare.time_s
    move_w = bare.energy_j / bare.time_s - hw.busy_power_w
    energy = (hw.power.tdp_w - hw.busy_power_w - move_w) / rate
    return TdpDerivation(dtype=dtype, shape=tuple(shape), energy_j_per_flop=energy, flop_per_s=rate, move_w=move_w,
                         tdp_w=hw.power.tdp_w, static_w=hw.busy_power_w)


def binding_derivation(hw: Hardware, dtype: str, shape=REFERENCE_SHAPE) -> TdpDerivation:
    """The derivation on ``shape`` (default: the GEMM measured at the cap)."""
    return derivation(hw, dtype, shape)


def round_down(energy_j_per_flop: float) -> float:
    """Rounded down to ``ROUNDING_J_PER_FLOP`` (a 1e-6 step of slack absorbs float noise such as 0.68 x 2)."""
    return math.floor(energy_j_per_flop / ROUNDING_J_PER_FLOP + 1e-6) * ROUNDING_J_PER_FLOP


def derived_energy_per_flop(hw: Hardware) -> dict[str, DerivedEnergy]:
    """Every dtype of ``hw``'s matrix engine's energy map by the TDP rule (module docstring)."""
    engine = hw.engine_for("matrix")
    peaks = engine.peak_flop_per_s
    direct = {d: binding_derivation(hw, d) for d in DERIVED_DTYPES if d in peaks and d in engine.energy_j_per_flop}
    if not direct:
        raise ConfigError(None, "energy_per_flop", f"a matrix engine with a {' or '.join(DERIVED_DTYPES)} peak",
                          sorted(peaks))
    out = {d: DerivedEnergy(dtype=d, energy_j_per_flop=round_down(x.energy_j_per_flop),
                            how=f"{x.arithmetic()} (TDP rule on the GEMM measured at the cap)")
           for d, x in direct.items()}
    for dtype in engine.energy_j_per_flop:
        if dtype in out:
            continue
        if dtype not in peaks:
            raise ConfigError(None, f"energy_per_flop.{dtype}", "a dtype with a matrix peak", "no peak")
        ref = min(direct, key=lambda d: abs(math.log(peaks[d] / peaks[dtype])))
        ratio = peaks[ref] / peaks[dtype]
        value = round_down(out[ref].energy_j_per_flop * ratio)
        how = (f"as {ref} (same peak)" if ratio == 1.0 else
               f"{ref} x {peaks[ref] / 1e12:.5g} / {peaks[dtype] / 1e12:.5g} TFLOPS (same cap at this peak)")
        out[dtype] = DerivedEnergy(dtype=dtype, energy_j_per_flop=value, how=how)
    return out
