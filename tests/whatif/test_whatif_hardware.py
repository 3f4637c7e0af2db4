"""What-if YAML sections load strictly: derived photonic rates, PIM, power limits; bad input names its path."""
from pathlib import Path

import pytest
import yaml

from archsim.config.hardware import hardware_from_dict, load_hardware
from archsim.errors import ConfigError

HW = Path(__file__).resolve().parents[2] / "hardware"


def _data(name):
    return yaml.safe_load((HW / name).read_text())


def test_shipped_whatif_files():
    dram = load_hardware(HW / "h100_3d_dram.yaml")
    # no fixed clock derate: the stacks' thermal limit caps the power instead (config/derive_dram3d.py)
    assert dram.compute_clock_fraction == 1.0 and dram.thermal is not None
    # 4 stacks x 2048 pins x 8 Gb/s; 4 x 12 dies x 4 GB; 2.32 - 0.30 + 11.41 pJ/bit (11.41: the H100's 15.00 less
    # the 3.59 pJ/bit DRAM access it contains)
    assert dram.main_memory.bandwidth_bytes_per_s == pytest.approx(4 * 2048 * 8e9 / 8)
    assert dram.main_memory.capacity_bytes == pytest.approx(4 * 12 * 4e9)
    assert dram.main_memory.energy_j_per_bit == pytest.approx((2.32 - 0.30 + 15.00 - 3.59) * 1e-12)
    # 700 W x (95 - 25) / (141.7 - 25): the power cap the stacked die sustains at the DRAM limit
    assert dram.power.tdp_w == pytest.approx(700 * 70 / 116.7)
    pim = load_hardware(HW / "h100_hbm_pim.yaml").pim
    assert pim.level == "hbm" and set(pim.kinds) == {"gemm", "grouped_gemm"}  # no exp: attention stays on the GPU
    assert pim.internal_bandwidth_bytes_per_s == pytest.approx(4 * 3.35e12)
    wse = load_hardware(HW / "cerebras_wse3.yaml")
    assert len(wse.memory) == 1 and wse.main_memory.capacity_bytes == 44e9


def test_3d_stack_energy_keeps_the_h100_gpu_side_path():
    """The 3D chip replaces the H100's DRAM, not its on-die path: its energy per bit is the H100's whole-path figure
    with the HBM DRAM access energy (FGDRAM's 3.59 pJ/bit) swapped for the on-logic stack's; if hardware/h100.yaml's
    figure changes, memory_stack.host_path_energy_per_bit must follow."""
    h100, dram = load_hardware(HW / "h100.yaml"), load_hardware(HW / "h100_3d_dram.yaml")
    stack = dram.memory_stack
    assert stack.host_path_j_per_bit + 3.59e-12 == pytest.approx(h100.main_memory.energy_j_per_bit)
    assert dram.main_memory.energy_j_per_bit < h100.main_memory.energy_j_per_bit


def test_pim_chip_is_the_h100_outside_its_pim_units():
    h100, pim = load_hardware(HW / "h100.yaml"), load_hardware(HW / "h100_hbm_pim.yaml")
    assert pim.main_memory.energy_j_per_bit == h100.main_memory.energy_j_per_bit
    assert pim.main_memory.capacity_bytes == pytest.approx(h100.main_memory.capacity_bytes * 6 / 8)


def test_power_limit_parses():
    data = _data("h100.yaml")
    data["memory"]["hbm"]["power_limit"] = "96 W"
    assert hardware_from_dict(data, "x.yaml").main_memory.power_limit_w == 96.0


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d["compute"]["photonic"]["photonic"].update(colour=1), "compute.photonic.photonic.colour"),
    (lambda d: d["compute"]["photonic"]["photonic"].update(accepts=["fp9"]), "compute.photonic.photonic.accepts[0]"),
    (lambda d: d["compute"]["photonic"]["photonic"].update(adc_enob=0), "adc_enob"),
    (lambda d: d["compute"]["photonic"]["photonic"].update(weight_stationary=True), "reprogram_time"),
    (lambda d: d["compute"]["photonic"]["photonic"].update(native_bits=0), "native_bits"),
    (lambda d: d["compute"]["photonic"]["photonic"].pop("adc_energy"), "adc_energy"),
])
def test_bad_photonic_sections(edit, fragment):
    data = _data("photonic_dota_l.yaml")
    edit(data)
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        hardware_from_dict(data, "p.yaml")


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d["pim"].update(level="dram"), "pim.level"),
    (lambda d: d["pim"].update(functions=["softmax_of_doom"]), r"pim.functions\[0\]"),
    (lambda d: d["pim"].update(kinds=["gemm"]), "pim.kinds"),  # derived from functions: not a YAML key
    (lambda d: d["pim"]["design"].update(bandwidth_ratio="4 GHz"), "pim.design.bandwidth_ratio"),
    (lambda d: d["pim"]["design"].update(capacity="9 GB"), "pim.design.capacity"),
    (lambda d: d["pim"].update(dtypes=["fp8"]), "pim.energy_per_flop"),
    (lambda d: d.update(thermal={"compute_clock_fraction": 1.5}), "thermal.compute_clock_fraction"),
])
def test_bad_pim_and_thermal(edit, fragment):
    data = _data("h100_hbm_pim.yaml")
    edit(data)
    with pytest.raises(ConfigError, match=fragment):
        hardware_from_dict(data, "p.yaml")
