"""DRAM stacks bonded on a logic die (3D memory-on-logic): the main memory's size, bandwidth and energy per bit from
the stacks' interface, and the power the stacked die can dissipate at its temperature limit.

- Capacity = stacks x dies per stack x die capacity; bandwidth = stacks x interface bits x pin rate (a JEDEC-style
  stack keeps its interface when bonded on logic instead of an interposer).
- Energy per bit = the 2.5D stack's access energy minus its silicon-interposer I/O hop, which bonding the stack on
  the logic die removes (the in-stack TSVs and the array stay), plus the logic die's own path of a streamed byte.
- Thermal: stacking memory on the logic die raises the thermal resistance from the die to the coolant. A published
  simulation gives the die's peak temperature at a reference power without mitigation; with the rise over ambient
  proportional to power (one thermal resistance), the power that keeps the stack at its junction limit is
  reference power x (limit - ambient) / (peak - ambient). The chip holds its full clock while a phase draws less;
  above it, the clock falls until the draw is that power (the power cap of ``cost/power.py``), so a memory-bound
  decode keeps the full clock while compute-bound prefill and training slow down.
"""
from __future__ import annotations

import math


def stack_capacity_bytes(stacks: int, dies_per_stack: int, die_capacity_bytes: float) -> float:
    """DRAM capacity of the stacks."""
    return stacks * dies_per_stack * die_capacity_bytes


def stack_bandwidth_bytes_per_s(stacks: int, interface_bits: int, pin_rate_bytes_per_s: float) -> float:
    """Interface bandwidth of the stacks: data pins x per-pin rate (``pin_rate`` in bytes/s per pin)."""
    return stacks * interface_bits * pin_rate_bytes_per_s


def on_logic_energy_j_per_bit(stack_energy_j_per_bit: float, interposer_io_j_per_bit: float,
                              host_path_j_per_bit: float = 0.0) -> float:
    """Energy per bit streamed from a stack bonded on the logic die: the 2.5D stack's access energy without its
    interposer I/O hop, plus the logic die's own path (controller, crossbar, SMs), which stacking does not change."""
    return stack_energy_j_per_bit - interposer_io_j_per_bit + host_path_j_per_bit


def sustainable_power_w(reference_power_w: float, peak_c: float, limit_c: float, ambient_c: float) -> float:
    """The power at which the die reaches ``limit_c``, given that it reaches ``peak_c`` at ``reference_power_w``
    (temperature rise over ``ambient_c`` proportional to power)."""
    return reference_power_w * (limit_c - ambient_c) / (peak_c - ambient_c)


def temperature_c(power_w: float, reference_power_w: float, peak_c: float, ambient_c: float) -> float:
    """The die's peak temperature at ``power_w`` under the same linear thermal model."""
    return ambient_c + (peak_c - ambient_c) * power_w / reference_power_w


def held_clock_fraction(phase_power_w: float, static_w: float, sustainable_w: float) -> float:
    """The clock fraction a compute-bound phase that draws ``phase_power_w`` at full clock holds under the
    sustainable power (dynamic power proportional to clock, static power fixed); 1 when it draws no more."""
    if phase_power_w <= sustainable_w:
        return 1.0
    return max(0.0, (sustainable_w - static_w) / (phase_power_w - static_w))


def reference_power_floor_w(idle_w: float, clock_fraction: float, peak_c: float, bound_c: float,
                            ambient_c: float) -> float:
    """The least reference power consistent with a published check that the die stays below ``bound_c`` at
    ``clock_fraction`` of its clock (dynamic power proportional to clock, idle fixed, the linear model above): at
    reference power P the die draws idle + f (P - idle), so ambient + (peak - ambient) (idle + f (P - idle)) / P
    < bound needs P > (peak - ambient) idle (1 - f) / ((bound - ambient) - f (peak - ambient)). imec's halved clock
    "below 100 C" thereby bounds the unpublished power of its 141.7 C map from below. Infinite when no power
    satisfies the check."""
    margin = (bound_c - ambient_c) - clock_fraction * (peak_c - ambient_c)
    if margin <= 0:
        return math.inf
    return (peak_c - ambient_c) * idle_w * (1.0 - clock_fraction) / margin
