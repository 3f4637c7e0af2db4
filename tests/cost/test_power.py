"""The clock and power cap on an op's price (archsim/cost/power.py), by hand."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from archsim.config.hardware import load_hardware
from archsim.cost.power import boost_flop_energy_ratio, capped, capped_time_s

HW = Path(__file__).resolve().parents[2] / "hardware"
TDP, STATIC = 700.0, 80.3  # headroom 619.7 W


def test_below_the_cap_the_op_runs_at_boost():
    # 1 ms, 0.1 J of FLOPs (capped clock), 0.2 J of bytes, r = 1.31: 0.131 + 0.2 = 0.331 J in 1 ms = 331 W + static
    t, e = capped(1e-3, 0.1, 0.2, 1.31, TDP, STATIC)
    assert (t, e) == (1e-3, pytest.approx(0.331))


def test_between_boost_and_cap_the_clock_settles_where_the_board_draws_tdp():
    # 1 ms, 0.5 J FLOPs, 0.1 J bytes: at boost 0.755 J (> 0.6197 J allowed), at the capped clock 0.6 J (< allowed):
    # the op draws exactly TDP over its time, unstretched
    t, e = capped(1e-3, 0.5, 0.1, 1.31, TDP, STATIC)
    assert t == 1e-3 and e == pytest.approx(0.6197)


def test_above_the_cap_even_at_the_capped_clock_the_op_stretches():
    # 1 ms, 0.8 J FLOPs, 0.2 J bytes: 1.0 J at the capped clock > 0.6197 J: time = 1.0 / 619.7 W = 1.6137 ms
    t, e = capped(1e-3, 0.8, 0.2, 1.31, TDP, STATIC)
    assert e == pytest.approx(1.0) and t == pytest.approx(1.0 / 619.7)
    assert capped_time_s(1e-3, 1.0, TDP, STATIC) == pytest.approx(t)


def test_energy_never_exceeds_tdp_over_the_time_and_arrays_broadcast():
    compute = np.array([0.0, 0.1, 0.5, 0.8, 3.0])
    t, e = capped(np.full(5, 1e-3), compute, 0.2, 1.31, TDP, STATIC)
    assert np.all(e / t <= TDP - STATIC + 1e-9)
    assert np.all(e >= compute + 0.2 - 1e-15)  # never below the capped clock's energy
    # a chip with no headroom (static = TDP) keeps its time and runs at boost
    t0, e0 = capped(1e-3, 0.5, 0.1, 1.31, 100.0, 100.0)
    assert (t0, e0) == (1e-3, pytest.approx(0.755))


def test_boost_ratio_from_the_kernel_clocks():
    # hardware/h100.yaml: clock_boost 1830 MHz, clock_under_load 1600 MHz (FlashMLA deep dive): (1830/1600)^2
    assert boost_flop_energy_ratio(load_hardware(HW / "h100.yaml")) == pytest.approx((1830 / 1600) ** 2)
    # the calibrated H200 sustained 1485 MHz at its cap
    assert boost_flop_energy_ratio(load_hardware(HW / "h200.calibrated.yaml")) == pytest.approx((1830 / 1485) ** 2)
    # no clocks given (B200): no correction
    assert boost_flop_energy_ratio(load_hardware(HW / "b200.yaml")) == 1.0
