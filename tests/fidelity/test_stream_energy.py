"""The HBM level's energy per bit, fitted on the gpu-roofline power sweeps (archsim/fidelity/stream_energy.py,
validation/gpu_roofline_*_power.csv, copied from github.com/te42kyfo/gpu-benches gpu-roofline/)."""
from __future__ import annotations

from pathlib import Path

import pytest

from archsim.config.hardware import load_hardware
from archsim.cost.phase import price_graph
from archsim.fidelity.stream_energy import (ROUNDING_W, active_baseline_w, fit, fit_with_baseline, hbm_energy_per_bit,
                                           load_sweep, rounded)
from tests.cost.fixtures import norm_op

HW = Path(__file__).resolve().parents[2] / "hardware"


def test_h200_sweep_fit_by_hand():
    f = fit("h200", 80.3)
    assert f.points == 55
    assert f.j_per_byte == pytest.approx(127.5e-12, abs=0.05e-12)
    assert f.j_per_flop == pytest.approx(6.32e-12, abs=0.01e-12)
    assert f.rms_w < 5.0
    # the most memory-bound row: 3759 GB/s, 940 GFLOP/s, 572 W measured;
    # 80.3 + 127.5e-12 x 3759e9 + 6.32e-12 x 940e9 = 80.3 + 479.3 + 5.9 = 565.5 W
    rows = load_sweep("h200")
    bytes_s, flop_s, watts = rows[0]
    assert (bytes_s, flop_s, watts) == (3759e9, 940e9, 572.0)
    assert 80.3 + f.j_per_byte * bytes_s + f.j_per_flop * flop_s == pytest.approx(565.5, abs=0.5)
    # the most compute-bound row: 415 GB/s, 42442 GFLOP/s, 396 W; 80.3 + 52.9 + 268.2 = 401.4 W
    bytes_s, flop_s, watts = rows[-1]
    assert watts == 396.0
    assert 80.3 + f.j_per_byte * bytes_s + f.j_per_flop * flop_s == pytest.approx(401.4, abs=0.5)


def test_a100_sweep_agrees_with_the_h200_within_a_percent():
    a100, h200 = fit("a100_40gb", 45.9), fit("h200", 80.3)
    assert a100.points == 344
    assert a100.j_per_byte == pytest.approx(h200.j_per_byte, rel=0.01)


# chip -> (the sweep its figures come from, that sweep's chip's idle power): the H200's sweep for the GH100 chips and,
# as marked projections, B200/MI300X/MI100; the what-if chips that copy an electronic side copy its figures
FROM_SWEEP = {"h100": ("h200", 80.3), "h800": ("h200", 80.3), "h200": ("h200", 80.3), "h200.calibrated": ("h200", 80.3),
              "b200": ("h200", 80.3), "mi300x": ("h200", 80.3), "mi100": ("h200", 80.3),
              "mi100_hbm2_pim": ("h200", 80.3), "h100_hbm_pim": ("h200", 80.3), "photonic_dota_l": ("h200", 80.3),
              "a100": ("a100_40gb", 45.9)}


@pytest.mark.parametrize("chip", sorted(FROM_SWEEP))
def test_yaml_hbm_energy_is_the_three_term_fit_less_the_l2_level(chip):
    sweep, _ = FROM_SWEEP[chip]
    hw = load_hardware(HW / f"{chip}.yaml")
    expected = rounded(hbm_energy_per_bit(fit_with_baseline(sweep), hw.memory["l2"].energy_j_per_bit))
    assert hw.memory["hbm"].energy_j_per_bit == pytest.approx(expected, abs=1e-18)


@pytest.mark.parametrize("chip", sorted(FROM_SWEEP) + ["h100_3d_dram"])
def test_yaml_active_baseline_is_the_fit_constant_less_idle(chip):
    # H200: 105.43 - 80.3 = 25.1 W; A100: 66.46 - 45.9 = 20.6 W (rounded to 0.1 W)
    sweep, idle = FROM_SWEEP.get(chip, ("h200", 80.3))
    expected = round(active_baseline_w(fit_with_baseline(sweep), idle) / ROUNDING_W) * ROUNDING_W
    hw = load_hardware(HW / f"{chip}.yaml")
    assert hw.power.active_baseline_w == pytest.approx(expected, abs=1e-9)
    assert hw.power.active_baseline_w == pytest.approx({"h200": 25.1, "a100_40gb": 20.6}[sweep])


def test_a_streamed_byte_costs_the_fitted_energy_end_to_end():
    # a norm streams its operands once through HBM and L2 (cost/traffic.py): (15.00 + 0.30) pJ/bit x 8 = 122.4 pJ/B,
    # the three-term fit's e_byte
    hw = load_hardware(HW / "h200.yaml")
    op = norm_op("n", 65536, 8192)
    phase = price_graph([op], hw)
    assert phase.dynamic_energy_j / op.bytes == pytest.approx(122.4e-12, rel=0.01)
    assert phase.dynamic_energy_j / op.bytes == pytest.approx(fit_with_baseline("h200").j_per_byte, rel=0.01)


def test_three_term_fit_finds_an_active_baseline_of_about_25_w_on_the_h200():
    """The constant left free (docs/energy.md, "Active baseline"): 105.4 W, 25.1 W above the
    80.3 W idle and about 3.9 standard errors from it; the per-byte figure drops from 127.5 to 122.4 pJ/B."""
    f = fit_with_baseline("h200")
    assert f.base_w == pytest.approx(105.4, abs=0.1)
    assert f.base_se_w == pytest.approx(6.5, abs=0.1)
    assert (f.base_w - 80.3) / f.base_se_w > 3.5  # the data separate it from idle
    assert f.j_per_byte == pytest.approx(122.4e-12, abs=0.05e-12)
    assert f.j_per_flop == pytest.approx(5.81e-12, abs=0.01e-12)
    assert f.rms_w < fit("h200", 80.3).rms_w  # 3.9 W against 4.5 W
    # by hand on the most memory-bound row (3759 GB/s, 940 GFLOP/s, 572 W measured):
    # 105.4 + 122.4e-12 x 3759e9 + 5.81e-12 x 940e9 = 105.4 + 460.1 + 5.5 = 571.0 W
    bytes_s, flop_s, watts = load_sweep("h200")[0]
    assert f.base_w + f.j_per_byte * bytes_s + f.j_per_flop * flop_s == pytest.approx(571.0, abs=0.5)
    # the A100 sweep finds the same kind of term: 66.5 W, 20.6 W above its (assumed) 45.9 W idle
    a100 = fit_with_baseline("a100_40gb")
    assert a100.base_w - 45.9 == pytest.approx(20.6, abs=0.1)


def test_the_active_baseline_moves_memory_bound_power_by_under_30_w():
    """Decode streams 1-3 TB/s per GPU. Three-term minus two-term power at those rates (FLOPs negligible):
    (105.4 - 80.3) + (122.4 - 127.5) pJ/B x rate = 25.1 - 5.1 x rate[TB/s] W: 20.0 W at 1 TB/s, 9.8 W at 3 TB/s,
    far below the 69-141 W that archsim's H100 decode power lies under the 8B and 405B ML.ENERGY runs
    (docs/energy.md)."""
    two, three = fit("h200", 80.3), fit_with_baseline("h200")
    for tb_s, expected in ((1.0, 20.0), (3.0, 9.8)):
        rate = tb_s * 1e12
        delta = (three.base_w + three.j_per_byte * rate) - (two.idle_w + two.j_per_byte * rate)
        assert delta == pytest.approx(expected, abs=0.3)
        assert 0 < delta < 30
