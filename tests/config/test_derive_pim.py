"""PIM derivations (archsim/config/derive_pim.py): balance, peak, capacity share, op coverage, mode switch."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim.config import derive_pim as pim
from archsim.config.hardware import hardware_from_dict, load_hardware
from archsim.errors import ConfigError

HW = Path(__file__).resolve().parents[2] / "hardware"


def test_aquabolt_xl_balance_is_about_one_flop_per_byte():
    """1.2 TFLOPS over 4 x (1024 pins x 2.4 Gb/s = 307.2 GB/s) = 0.977 FLOP/byte; the PCU geometry agrees: 128 PCUs
    x 16 FP16 lanes x 2 FLOP x 300 MHz = 1.229 TFLOPS over 128 x 16 x 2 B x 300 MHz = 1.229 TB/s = 1 FLOP/byte.
    SK hynix AiM (1 TFLOPS per chip, ISSCC 2022) is designed to the same balance."""
    balance = pim.flop_per_byte(1.2e12, 1024 * 2.4e9 / 8, 4)
    assert balance == pytest.approx(1.2e12 / (4 * 307.2e9))
    assert balance == pytest.approx(0.977, abs=1e-3)
    pcu_peak, pcu_bw = 128 * 16 * 2 * 300e6, 128 * 16 * 2 * 300e6
    assert pcu_peak / pcu_bw == pytest.approx(balance, rel=0.03)


def test_peak_follows_the_internal_bandwidth():
    """On H100 HBM3: 4 x 3.35 TB/s = 13.4 TB/s in place, 0.977 x 13.4 = 13.1 TFLOPS; the old file's 6.0 TFLOPS
    (5 x 1.2 TFLOPS per HBM2 cube) over the same 13.4 TB/s was 0.45 FLOP/byte, unlike any published design."""
    internal = pim.internal_bandwidth(3.35e12, 4)
    assert internal == pytest.approx(13.4e12)
    assert pim.peak_flop_per_s(1.2e12 / (4 * 307.2e9), internal) == pytest.approx(13.086e12, rel=1e-4)
    assert 6.0e12 / internal == pytest.approx(0.448, abs=1e-3)


def test_capacity_share_and_coverage_and_mode_switch():
    assert pim.capacity_fraction(6e9, 8e9) == 0.75
    assert pim.covered_kinds(["add", "mul", "mac", "mad"]) == ("gemm", "grouped_gemm")  # no exp: no attention
    assert pim.covered_kinds(["mac", "exp"]) == ("gemm", "grouped_gemm", "attention")
    assert pim.covered_kinds(["add", "mul"]) == ()
    assert pim.mode_switch_s(8, 48.5e-9) == pytest.approx(388e-9)


def test_achievable_fraction_from_samsungs_gemv_simulation():
    """PIMSimulator (commit b464dde, 64 pseudo-channels = 4 Aquabolt-XL stacks of 16, 8 PIM blocks each, HBM2 tCCDL
    4 cycles) times its GEMV benchmark at 13,166 cycles for 4096 x 4096 and 51,905 for 8192 x 8192 (run with the
    repository's GemvPIMBenchTest). Peak: 512 blocks x 16 FP16 lanes / 4 cycles = 2048 MACs per cycle, so the
    marginal fraction is (67,108,864 - 16,777,216) / 2048 / 38,739 = 24,576 / 38,739 = 0.6344; each call alone sits
    at 8192 / 13,166 = 0.622 and 32,768 / 51,905 = 0.631 (its fixed cost, mode switches included, ~250 cycles).
    Both shipped PIM chips carry it (rounded to 0.634)."""
    peak = pim.macs_per_cycle(64 * 8, 16, 4)
    assert peak == 2048
    fraction = pim.gemv_achievable_fraction(4096 * 4096, 13166, 8192 * 8192, 51905, peak)
    assert fraction == pytest.approx(24576 / 38739)
    assert 8192 / 13166 < fraction < 1
    for chip in ("h100_hbm_pim", "mi100_hbm2_pim"):
        assert load_hardware(HW / f"{chip}.yaml").pim.achievable_fraction == pytest.approx(fraction, abs=5e-4)
    with pytest.raises(ValueError):
        pim.gemv_achievable_fraction(8192 * 8192, 51905, 4096 * 4096, 13166, peak)


def test_shipped_pim_chip():
    chip = load_hardware(HW / "h100_hbm_pim.yaml")
    h100 = load_hardware(HW / "h100.yaml")
    assert chip.memory["hbm"].capacity_bytes == pytest.approx(0.75 * h100.memory["hbm"].capacity_bytes)
    assert chip.pim.peak_flop_per_s["fp16"] == pytest.approx(1.2e12 / (4 * 307.2e9) * 4 * 3.35e12)
    assert chip.pim.functions == ("add", "mul", "mac", "mad") and "attention" not in chip.pim.kinds


def test_bad_pim_design_names_its_field():
    data = yaml.safe_load((HW / "h100_hbm_pim.yaml").read_text())
    data["pim"]["design"]["colour"] = 1
    with pytest.raises(ConfigError, match="pim.design.colour"):
        hardware_from_dict(data, "p.yaml")
    data = yaml.safe_load((HW / "h100_hbm_pim.yaml").read_text())
    data["pim"]["mode_switch_row_writes"] = -1
    with pytest.raises(ConfigError, match="pim.mode_switch_row_writes"):
        hardware_from_dict(data, "p.yaml")
