"""Energy per FLOP calibrated to the power cap (hardware/*.yaml energy_per_flop, [D] comments).

Under dense tensor work the GPU sits at its power cap (FlashMLA deep dive, deepseek-ai/FlashMLA
docs/20250422-new-kernel-deep-dive.md: H800 throttles to ~1600 MHz [V]), so each YAML derives
e = (TDP - idle - P_move) / R at large compute-bound GEMMs, R and P_move being the cost model's own achieved FLOP rate and traffic
power for the GEMM, taking the least e over the four SHAPES (so none exceeds TDP) rounded down to 0.01 pJ. The
derivation lives in archsim/fidelity/tdp_energy.py (``archsim calibrate --backend torch`` re-derives the
calibrated file's figures with it); these tests check the YAML figures against it and the resulting average power.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest

from archsim.config.hardware import load_hardware
from archsim.cost.phase import price_graph
from archsim.fidelity.tdp_energy import (DERIVED_DTYPES, SHAPES, binding_derivation, derivation, derived_energy_per_flop,
                                     gemm_graph, round_down)

HW_DIR = Path(__file__).resolve().parents[2] / "hardware"
# h200.calibrated: the H200 at the rates `archsim calibrate --backend torch` measured (tensor 0.803 of peak vs
# the base file's 0.78), its energy per FLOP re-derived at those rates
SHIPPED = ("h100", "h800", "h200", "b200", "a100", "mi300x", "h200.calibrated")
WHATIF = ("h100_3d_dram", "h100_hbm_pim")
# the YAML figures other than bf16/fp8 follow the same cap at their own peak (tdp_energy module docstring), except
# b200's tf32, which its YAML derives directly at 1100 x 0.93 TFLOPS with the bf16 traffic power
NOT_BY_PEAK = {("b200", "tf32")}
# Tolerances below TDP. The binding shape: rounding down by < 0.01 pJ at up to ~2.1e15 FLOP/s costs < 21 W,
# i.e. < 3% of a 700-1000 W TDP. The other shapes move fewer bytes per FLOP than the binding one, so they
# draw less: at most the traffic-power spread between the shapes (H200 BF16: 119.9 - 40.1 = 80 W, 11% of
# 700 W) plus the rounding, so within 15%.
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
    least = min(derivation(hw, weights, shape).energy_j_per_flop for shape in SHAPES)
    assert binding_derivation(hw, weights).energy_j_per_flop == least
    assert hw.engine_for("matrix").energy_j_per_flop[weights] == pytest.approx(round_down(least), abs=1e-21)


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
    assert max(watts) >= hw.power.tdp_w * (1 - BINDING_BELOW_TDP), watts
    assert min(watts) >= hw.power.tdp_w * (1 - ANY_BELOW_TDP), watts


def test_h100_bf16_arithmetic_as_written_in_the_yaml():
    # hardware/h100.yaml: bf16 = (700 - 80.3 - 111.2 W) / 739.2 TFLOPS = 0.6879 pJ on 8192 x 8192 x 32768
    d = derivation(chip("h100"), "bf16", (8192, 8192, 32768))
    got = (round(d.energy_j_per_flop * 1e12, 4), round(d.flop_per_s / 1e12, 1), round(d.move_w, 1))
    assert got == (0.6879, 739.2, 111.2)
    assert d.arithmetic() == "(700 - 80.3 - 111.2 W) / 739.2 TFLOPS achieved on 8192 x 8192 x 32768 = 0.6879 pJ"
    # the old AttAcc figure (0.16 pJ/FLOP) left the 8192^3 GEMM at ~242 W; now it is within 15% of 700 W
    assert average_power_w(gemm("bf16"), chip("h100")) > 0.85 * 700


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
    assert all(average_power_w(gemm(weights, *shape), hw) <= hw.power.tdp_w for shape in SHAPES)
