"""Energy per FLOP calibrated to the power cap (hardware/*.yaml energy_per_flop, [D] comments).

Under dense tensor work the GPU sits at its power cap (FlashMLA deep dive, deepseek-ai/FlashMLA
docs/20250422-new-kernel-deep-dive.md: H800 throttles to ~1600 MHz [V]), so each YAML derives
e = (TDP - idle - P_move) / R on the 8192^3 GEMM an H200 was measured on at its cap (REFERENCE_SHAPE), R and P_move
being the cost model's own achieved FLOP rate and traffic power for the GEMM, rounded down to 0.01 pJ; a GEMM that
moves more bytes per FLOP is held at TDP by the power cap (cost/power.py), which stretches its time. The
derivation lives in archsim/fidelity/tdp_energy.py (``archsim calibrate --backend torch`` re-derives the
calibrated file's figures with it); these tests check the YAML figures against it and the resulting average power.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest

from archsim.config.hardware import load_hardware
from archsim.cost.phase import price_graph
from archsim.fidelity.tdp_energy import (DERIVED_DTYPES, REFERENCE_SHAPE, SHAPES, binding_derivation, derivation, derived_energy_per_flop,
                                     gemm_graph, round_down)

HW_DIR = Path(__file__).resolve().parents[2] / "hardware"
# h200.calibrated: the H200 at the rates `archsim calibrate --backend torch` measured (tensor 0.803 of peak vs
# the base file's 0.78), its energy per FLOP re-derived at those rates
SHIPPED = ("h100", "h800", "h200", "b200", "a100", "mi300x", "h200.calibrated")
WHATIF = ("h100_3d_dram", "h100_hbm_pim")
# the YAML figures other than bf16/fp8 follow the same cap at their own peak (tdp_energy module docstring), except
# b200's tf32, which its YAML derives directly at 1100 x 0.93 TFLOPS with the bf16 traffic power
NOT_BY_PEAK = {("b200", "tf32")}
# Tolerances below TDP. The reference shape: rounding down by < 0.01 pJ at up to ~2.1e15 FLOP/s costs < 21 W,
# i.e. < 3% of a 700-1000 W TDP. The other large GEMMs either move more bytes per FLOP (capped at TDP) or fewer
# (at most the traffic-power spread between the shapes below it, plus the rounding): within 15%.
BINDING_BELOW_TDP = 0.03
ANY_BELOW_TDP = 0.15


@lru_cache(maxsize=None)
def chip(name: str):
    return load_hardware(HW_DIR / f"{name}.yaml")


def gemm(weights: str, m: int = 8192, n: int = 8192, k: int = 8192):
    return gemm_graph(weights, m, n, k)


def cases(names):
    """(chip, weights) pairs whose GEMM runs in that precision on the chip's matrix engine."""
    out = []
    for name in names:
        peaks = chip(name).engine_for("matrix").peak_flop_per_s
        out += [(name, w) for w in DERIVED_DTYPES if w in peaks]
    return out


def average_power_w(graph, hw) -> float:
    phase = price_graph(graph, hw)
    return phase.energy_j / phase.time_s


@pytest.mark.parametrize("name, weights", cases(SHIPPED))
def test_yaml_figure_is_the_derivation_rounded_down(name, weights):
    hw = chip(name)
    reference = derivation(hw, weights, REFERENCE_SHAPE).energy_j_per_flop
    assert binding_derivation(hw, weights).energy_j_per_flop == reference
    assert hw.engine_for("matrix").energy_j_per_flop[weights] == pytest.approx(round_down(reference), abs=1e-21)


@pytest.mark.parametrize("name", SHIPPED)
def test_other_matrix_dtypes_follow_the_cap_at_their_peak(name):
    hw = chip(name)
    yaml = hw.engine_for("matrix").energy_j_per_flop
    derived = derived_energy_per_flop(hw)
    assert set(derived) == set(yaml)
    for dtype, d in derived.items():
        if (name, dtype) not in NOT_BY_PEAK:
            assert yaml[dtype] == pytest.approx(d.energy_j_per_flop, abs=1e-21), (dtype, d.how)


def test_rounding_is_down_to_a_hundredth_of_a_pj():
    assert round_down(0.6866e-12) == pytest.approx(0.68e-12, abs=1e-21)
    assert round_down(0.68e-12 * 2) == pytest.approx(1.36e-12, abs=1e-21)  # not 1.35 from float noise


@pytest.mark.parametrize("name, weights", cases(SHIPPED))
def test_large_gemms_draw_close_to_tdp_and_never_more(name, weights):
    hw = chip(name)
    watts = [average_power_w(gemm(weights, *shape), hw) for shape in SHAPES]
    assert max(watts) <= hw.power.tdp_w * (1 + 1e-9), watts
    assert average_power_w(gemm(weights, *REFERENCE_SHAPE), hw) >= hw.power.tdp_w * (1 - BINDING_BELOW_TDP), watts
    assert min(watts) >= hw.power.tdp_w * (1 - ANY_BELOW_TDP), watts


def test_h100_bf16_arithmetic_as_written_in_the_yaml():
    # hardware/h100.yaml: bf16 = (700 - 105.4 - 88.5 W) / 725.0 TFLOPS = 0.6980 pJ on 8192 x 8192 x 8192, where
    # 105.4 W is the busy power: 80.3 W idle + 25.1 W active baseline (power.active_baseline)
    hw = chip("h100")
    assert hw.busy_power_w == pytest.approx(80.3 + 25.1)
    d = derivation(hw, "bf16", (8192, 8192, 8192))
    got = (round(d.energy_j_per_flop * 1e12, 4), round(d.flop_per_s / 1e12, 1), round(d.move_w, 1))
    assert got == (0.698, 725.0, 88.5)
    assert (700 - 105.4 - d.move_w) / d.flop_per_s == pytest.approx(d.energy_j_per_flop, rel=1e-9)
    assert d.arithmetic() == "(700 - 105.4 - 88.5 W) / 725.0 TFLOPS achieved on 8192 x 8192 x 8192 = 0.6980 pJ"
    # the old AttAcc figure (0.16 pJ/FLOP) left the 8192^3 GEMM at ~242 W; now it is within 3% of 700 W
    assert average_power_w(gemm("bf16"), chip("h100")) > 0.97 * 700


def test_the_long_k_gemm_is_held_at_tdp_by_the_cap():
    # hardware/h100.yaml, BF16 8192 x 8192 x 32768: its operand stream from HBM costs ~385 W at the uncapped rate
    # (15.00 + 0.30 pJ/bit end to end, archsim/fidelity/stream_energy.py), so 0.69 pJ/FLOP x 739 TFLOPS + 385 W +
    # 105.4 W busy power (80.3 W idle + 25.1 W active baseline) would be ~1000 W; the cap stretches the GEMM until
    # it draws 700 W: time x (uncapped - busy) / (700 - busy), the baseline counted toward the cap
    hw = chip("h100")
    assert hw.busy_power_w == pytest.approx(80.3 + 25.1)
    d = derivation(hw, "bf16", (8192, 8192, 32768))
    uncapped_w = hw.busy_power_w + d.move_w + 0.69e-12 * d.flop_per_s
    assert uncapped_w > 950
    phase = price_graph(gemm("bf16", 8192, 8192, 32768), hw)
    assert phase.energy_j / phase.time_s == pytest.approx(700, rel=1e-6)
    uncapped_s = 2 * 8192 * 8192 * 32768 / d.flop_per_s
    assert phase.time_s == pytest.approx(uncapped_s * (uncapped_w - hw.busy_power_w) / (700 - hw.busy_power_w),
                                         rel=1e-3)


@pytest.mark.parametrize("name", ("h100", "h800", "h200", "h200.calibrated"))
def test_fp8_is_about_half_of_bf16_on_hopper(name):
    # same power cap at twice the rate: e_fp8 ~= e_bf16 / 2 (the traffic power differs a little)
    e = chip(name).engine_for("matrix").energy_j_per_flop
    assert e["fp8"] == pytest.approx(e["bf16"] / 2, rel=0.05)
    assert e["fp16"] == e["bf16"] and e["int8"] == e["fp8"]


@pytest.mark.parametrize("name, weights", cases(WHATIF))
def test_whatif_copies_h100_and_stays_within_tdp(name, weights):
    hw = chip(name)
    assert dict(hw.engine_for("matrix").energy_j_per_flop) == dict(chip("h100").engine_for("matrix").energy_j_per_flop)
    assert all(average_power_w(gemm(weights, *shape), hw) <= hw.power.tdp_w * (1 + 1e-9) for shape in SHAPES)
