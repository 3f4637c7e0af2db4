"""The HBM level's energy per bit, fitted on the gpu-roofline power sweeps (archsim/fidelity/stream_energy.py,
validation/gpu_roofline_*_power.csv, copied from github.com/te42kyfo/gpu-benches gpu-roofline/)."""
from __future__ import annotations

from pathlib import Path

import pytest

from archsim.config.hardware import load_hardware
from archsim.cost.phase import price_graph
from archsim.fidelity.stream_energy import fit, hbm_energy_per_bit, load_sweep, rounded
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


@pytest.mark.parametrize("chip, sweep, idle", [("h100", "h200", 80.3), ("h800", "h200", 80.3), ("h200", "h200", 80.3),
                                               ("h200.calibrated", "h200", 80.3), ("b200", "h200", 80.3),
                                               ("mi300x", "h200", 80.3), ("a100", "a100_40gb", 45.9)])
def test_yaml_hbm_energy_is_the_fit_less_the_l2_level(chip, sweep, idle):
    hw = load_hardware(HW / f"{chip}.yaml")
    expected = rounded(hbm_energy_per_bit(fit(sweep, idle), hw.memory["l2"].energy_j_per_bit))
    assert hw.memory["hbm"].energy_j_per_bit == pytest.approx(expected, abs=1e-18)


def test_a_streamed_byte_costs_the_fitted_energy_end_to_end():
    # a norm streams its operands once through HBM and L2 (cost/traffic.py): (15.64 + 0.30) pJ/bit x 8 = 127.52 pJ/B
    hw = load_hardware(HW / "h200.yaml")
    op = norm_op("n", 65536, 8192)
    phase = price_graph([op], hw)
    assert phase.dynamic_energy_j / op.bytes == pytest.approx(127.52e-12, rel=0.01)
