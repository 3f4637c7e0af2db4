"""3D memory-on-logic derivations (archsim/config/derive_dram3d.py): stack interface, energy, thermal power."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim.config import derive_dram3d as d3
from archsim.config.hardware import hardware_from_dict, load_hardware
from archsim.errors import ConfigError

HW = Path(__file__).resolve().parents[2] / "hardware"


def test_stack_interface_by_hand():
    # JEDEC HBM4: 2048 pins x 8 Gb/s = 2.048 TB/s per stack; imec's 4 stacks of 12 dies of 32 Gb
    assert d3.stack_bandwidth_bytes_per_s(4, 2048, 8e9 / 8) == pytest.approx(8.192e12)
    assert d3.stack_capacity_bytes(4, 12, 4e9) == pytest.approx(192e9)


def test_energy_drops_only_the_interposer_hop():
    # HBM4 2.32 pJ/bit on an interposer, less its 0.30 pJ/bit interposer I/O: 2.02 (no hybrid-bond credit taken),
    # plus the logic die's own path when the host's figure carries one (hardware/h100.yaml: 15.00 - 3.59 = 11.41 beyond the DRAM)
    assert d3.on_logic_energy_j_per_bit(2.32e-12, 0.30e-12) == pytest.approx(2.02e-12)
    assert d3.on_logic_energy_j_per_bit(2.32e-12, 0.30e-12, 11.41e-12) == pytest.approx(13.43e-12)


def test_thermal_power_and_imec_halved_clock_check():
    """imec: 141.7 C unmitigated (power taken as 700 W), DRAM limit 95 C, 25 C ambient: 700 x 70 / 116.7 = 419.9 W.
    At half clock (80.3 W static + half of the 619.7 W dynamic = 390 W) the model gives 90 C: imec's "below 100 C"."""
    cap = d3.sustainable_power_w(700.0, 141.7, 95.0, 25.0)
    assert cap == pytest.approx(700 * 70 / 116.7)
    half = 80.3 + 0.5 * (700 - 80.3)
    assert d3.temperature_c(half, 700.0, 141.7, 25.0) == pytest.approx(25 + 116.7 * half / 700)
    assert d3.temperature_c(half, 700.0, 141.7, 25.0) < 100
    assert d3.temperature_c(cap, 700.0, 141.7, 25.0) == pytest.approx(95.0)
    # the clock a compute-bound phase holds under that cap: (419.9 - 80.3) / (700 - 80.3) = 0.548, imec's "halved"
    assert d3.held_clock_fraction(700.0, 80.3, cap) == pytest.approx((cap - 80.3) / (700 - 80.3))
    assert d3.held_clock_fraction(300.0, 80.3, cap) == 1.0  # a memory-bound decode below the cap keeps its clock


def test_shipped_3d_chip_caps_its_power_not_its_clock():
    chip = load_hardware(HW / "h100_3d_dram.yaml")
    assert chip.compute_clock_fraction == 1.0
    assert chip.power.tdp_w == pytest.approx(chip.thermal.sustainable_power_w)
    assert chip.thermal.temperature_c(chip.power.tdp_w) == pytest.approx(95.0)


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d["memory"]["hbm"].update(bandwidth="14.4 TB/s"), "memory.hbm.bandwidth"),  # derived, not a field
    (lambda d: d["memory_stack"].update(interposer_io_energy_per_bit="3 pJ/bit"),
     "memory_stack.interposer_io_energy_per_bit"),
    (lambda d: d["memory_stack"].pop("pin_rate"), "pin_rate"),
    (lambda d: d["thermal"].update(junction_limit_c=150), "thermal.junction_limit_c"),
    (lambda d: d["thermal"].update(colour=1), "thermal.colour"),
    # 150 W x (95 - 25) / (141.7 - 25) = 90.0 W sustainable, below idle 80.3 + active baseline 25.1 = 105.4 W: no op
    # could run inside the cap, so the thermal model is refused rather than priced uncapped
    (lambda d: d["thermal"].update(reference_power="150 W"), r"thermal: expected a sustainable power \(90.0 W"),
])
def test_bad_stack_and_thermal_sections(edit, fragment):
    data = yaml.safe_load((HW / "h100_3d_dram.yaml").read_text())
    edit(data)
    with pytest.raises(ConfigError, match=fragment):
        hardware_from_dict(data, "d.yaml")
