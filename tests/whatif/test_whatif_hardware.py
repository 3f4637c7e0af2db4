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
    assert dram.compute_clock_fraction == 0.5 and dram.main_memory.bandwidth_bytes_per_s == 14.4e12
    pim = load_hardware(HW / "h100_hbm_pim.yaml").pim
    assert pim.level == "hbm" and set(pim.kinds) == {"attention", "gemm"}
    assert pim.internal_bandwidth_bytes_per_s == 13.4e12
    wse = load_hardware(HW / "cerebras_wse3.yaml")
    assert len(wse.memory) == 1 and wse.main_memory.capacity_bytes == 44e9


def test_power_limit_parses():
    data = _data("h100.yaml")
    data["memory"]["hbm"]["power_limit"] = "96 W"
    assert hardware_from_dict(data, "x.yaml").main_memory.power_limit_w == 96.0


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d["compute"]["photonic"]["photonic"].update(colour=1), "compute.photonic.photonic.colour"),
    (lambda d: d["compute"]["photonic"]["photonic"].update(accepts=["fp9"]), "compute.photonic.photonic.accepts[0]"),
    (lambda d: d["compute"]["photonic"]["photonic"].update(effective_bits=0), "effective_bits"),
    (lambda d: d["compute"]["photonic"]["photonic"].pop("adc_energy"), "adc_energy"),
])
def test_bad_photonic_sections(edit, fragment):
    data = _data("photonic_dota_l.yaml")
    edit(data)
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        hardware_from_dict(data, "p.yaml")


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d["pim"].update(level="dram"), "pim.level"),
    (lambda d: d["pim"].update(kinds=["softmax_of_doom"]), r"pim.kinds\[0\]"),
    (lambda d: d["pim"].update(internal_bandwidth="4 GHz"), "pim.internal_bandwidth"),
    (lambda d: d.update(thermal={"compute_clock_fraction": 1.5}), "thermal.compute_clock_fraction"),
])
def test_bad_pim_and_thermal(edit, fragment):
    data = _data("h100_hbm_pim.yaml")
    edit(data)
    with pytest.raises(ConfigError, match=fragment):
        hardware_from_dict(data, "p.yaml")
