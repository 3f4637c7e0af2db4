"""The board's clock and power cap on one op's price (time and energy).

A GPU runs an op at its boost clock unless the op would then draw more than the board's TDP; then it lowers the
clock until it does not. Energy per FLOP depends on the clock through the voltage (E = C V^2 per switching event;
ASSUMPTION: V proportional to f near the top of the DVFS curve, so energy per FLOP scales with f^2). The hardware
files give the matrix engines' energy per FLOP at the clock a compute-bound GEMM holds at the cap
(``kernel.clock_under_load``; fidelity/tdp_energy.py derives it there), so at the boost clock (``kernel.clock_boost``)
a FLOP costs ``(clock_boost / clock_under_load)^2`` of it (``boost_flop_energy_ratio``; 1 without the two clocks).
Bytes cost the same at either clock (their energy per bit was measured at boost: fidelity/stream_energy.py).

``busy`` is the power under every op whatever it does: idle, always-on (photonic) and the active baseline
(``Hardware.busy_power_w``), so the baseline counts toward the cap. For an op that takes ``t`` with FLOP energy ``E_c`` (at the capped clock) and byte and network energy ``E_m``:

    E_boost = r E_c + E_m,   E_cap = E_c + E_m,   allowed = (TDP - busy) t
    energy  = min(E_boost, max(allowed, E_cap))   # at boost; else the clock that draws exactly TDP; else capped
    time    = max(t, E_cap / (TDP - busy))      # even at the capped clock too much: the op stretches

Hopper holds its cap this way under dense tensor work: the FlashMLA deep dive (github.com/deepseek-ai/FlashMLA
docs/20250422-new-kernel-deep-dive.md) sees the H800 throttle to ~1600 MHz, and an H200 measured for archsim held
1440-1545 MHz at 700 W on back-to-back 8192^3 BF16 GEMMs (validation/h200_torch_clock_20261128.json). Used by
``cost/opcost.py`` (one op) and ``cost/work.py`` (arrays).
"""
from __future__ import annotations

import numpy as np

from archsim.config.hardware import Hardware


def boost_flop_energy_ratio(hw: Hardware) -> float:
    """Energy per FLOP at the boost clock over the figure at the capped clock: (clock_boost / clock_under_load)^2."""
    k = hw.kernel
    if k is None or k.clock_boost_hz is None or k.clock_under_load_hz is None:
        return 1.0
    return (k.clock_boost_hz / k.clock_under_load_hz) ** 2


def capped(time_s, compute_j, other_j, boost_ratio, tdp_w, static_w):
    """(time_s, energy_j) of ops under the clock and power cap (module docstring); element-wise over floats or
    broadcastable arrays. A chip whose static power reaches its TDP (no headroom) runs at boost, unstretched."""
    headroom = np.asarray(tdp_w, dtype=float) - np.asarray(static_w, dtype=float)
    at_cap = compute_j + other_j
    at_boost = compute_j * boost_ratio + other_j
    room = headroom > 0
    allowed = np.where(room, headroom * np.asarray(time_s, dtype=float), np.inf)
    energy = np.minimum(at_boost, np.maximum(allowed, at_cap))
    floor = np.divide(at_cap, headroom, out=np.zeros(np.broadcast_shapes(np.shape(at_cap), headroom.shape)),
                      where=room)
    time = np.maximum(time_s, floor)
    if np.ndim(time) == 0 and np.ndim(energy) == 0:
        return float(time), float(energy)
    return time, energy


def capped_time_s(time_s, dynamic_j, tdp_w, static_w):
    """The stretched time alone, for callers with the op's energy at the capped clock (``capped`` with r = 1)."""
    return capped(time_s, dynamic_j, 0.0, 1.0, tdp_w, static_w)[0]
