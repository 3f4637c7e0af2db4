"""Photonic power and precision derivations (archsim/config/derive_photonic.py), checked by hand against the
Lightening-Transformer simulator's model of DOTA-L (github.com/zhuhanqing/Lightening-Transformer,
hardware_simulator/hardware/photonic_crossbar.py and entry_area_power_profile.py)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from archsim.config import derive_photonic as ph
from archsim.config.hardware import load_hardware

HW = Path(__file__).resolve().parents[2] / "hardware"

DOTA_L = ph.Array(rows=12, cols=12, wavelengths=12, tiles=8, cores_per_tile=2, rate_hz=5e9)
LT_OPTICS = ph.Optics(modulator_loss_db=1.2, router_loss_db=0.93, routers_per_modulator=2, y_branch_loss_db=0.1,
                      phase_shifter_loss_db=0.33, coupler_loss_db=0.33, detector_sensitivity_dbm=-25,
                      laser_wall_plug_efficiency=0.2)
LT_DEVICES = ph.Devices(dac_energy_j=3.57e-12, adc_energy_j=1.48e-12, modulator_energy_j_per_bit=0.45e-12,
                        modulator_static_w=0.0, router_static_w=0.275e-3, detector_w=1.1e-3, tia_w=3e-3)


def test_path_loss_by_hand():
    # modulation: MZM 1.2 + 2 routers x 0.93 + ceil(log2 12) = 4 Y-branches x 0.1; computation: 0.1 + 0.33 + 0.33
    assert ph.path_loss_db(DOTA_L, LT_OPTICS) == pytest.approx(1.2 + 1.86 + 0.4 + 0.76)


def test_laser_link_budget_by_hand():
    """-25 dBm + 4.22 dB + 10 log10(144) = 0.804 dBm = 1.2036 mW per core, x 2^8 levels / 0.2 wall-plug = 1.541 W,
    x 16 cores = 24.65 W: about 20x the 1.22 W the file carried before, as the issue's link budget says (~25 W)."""
    dbm = -25 + 4.22 + 10 * math.log10(144)
    per_core = 1e-3 * 10 ** (dbm / 10) * 256 / 0.2
    assert ph.laser_power_w(DOTA_L, LT_OPTICS, bits=8) == pytest.approx(16 * per_core)
    assert ph.laser_power_w(DOTA_L, LT_OPTICS, bits=8) == pytest.approx(24.65, abs=0.01)
    # each extra bit of resolution doubles the light the detectors need
    assert ph.laser_power_w(DOTA_L, LT_OPTICS, bits=9) == pytest.approx(2 * ph.laser_power_w(DOTA_L, LT_OPTICS, bits=8))


def test_converter_counts_with_and_without_sharing():
    # rows of 16 cores + columns of 2 core slots shared by the 8 tiles; without sharing every core has its own
    assert ph.modulators(DOTA_L, input_sharing=True) == 12 * 12 * 16 + 12 * 12 * 2 == 2592
    assert ph.modulators(DOTA_L, input_sharing=False) == (12 + 12) * 12 * 16 == 4608
    assert ph.adcs(DOTA_L, adc_sharing=True) == 12 * 12 * 8 == 1152
    assert ph.adcs(DOTA_L, adc_sharing=False) == 12 * 12 * 16
    assert ph.detectors(DOTA_L) == 2 * 12 * 12 * 16


def test_power_split_matches_the_authors_simulator_total():
    """At 5 GHz: DACs 2592 x 3.57 pJ x 5 GHz = 46.27 W, ADCs 1152 x 1.48 pJ x 5 GHz = 8.52 W, modulators
    2592 x 0.45 pJ x 5 GHz = 5.83 W, router tuning 2592 x 2 x 0.275 mW = 1.43 W, detectors 4608 x 1.1 mW = 5.07 W,
    TIAs 1152 x 3 mW = 3.46 W, laser 24.65 W: 95.2 W, within 1% of the LT total of ~95.9 W (which adds 0.7 W of
    buffers and adders that archsim prices in its memory levels)."""
    p = ph.power_breakdown(DOTA_L, LT_OPTICS, LT_DEVICES, bits=8, input_sharing=True, adc_sharing=True)
    assert p.dac_w == pytest.approx(2592 * 3.57e-12 * 5e9)
    assert p.adc_w == pytest.approx(1152 * 1.48e-12 * 5e9)
    assert p.modulator_w == pytest.approx(2592 * 0.45e-12 * 5e9)
    assert p.tuning_w == pytest.approx(2592 * 2 * 0.275e-3)
    assert p.detector_w == pytest.approx(4608 * 1.1e-3) and p.tia_w == pytest.approx(1152 * 3e-3)
    assert p.total_w == pytest.approx(95.2, abs=0.1)
    assert p.always_on_w == pytest.approx(p.laser_w + p.tuning_w + p.detector_w + p.tia_w)
    # the laser, not the tuning, dominates what burns at idle (the file used to say 1.22 W laser + 5.53 W tuning)
    assert p.laser_w > 10 * p.tuning_w


def test_bit_sliced_passes_and_effective_bits():
    assert ph.passes(8, 8) == 1 and ph.passes(4, 8) == 1
    assert ph.passes(16, 8) == 4 and ph.passes(32, 8) == 16 and ph.passes(12, 8) == 4
    assert ph.effective_bits(8, 6.5) == 6.5 and ph.effective_bits(4, 6.5) == 4


def test_shipped_dota_l_rates_follow_from_the_derivation():
    chip = load_hardware(HW / "photonic_dota_l.yaml")
    engine, spec = chip.compute["photonic"], chip.compute["photonic"].photonic
    peak = 2 * 12 * 12 * 12 * 16 * 5e9
    assert engine.peak_flop_per_s == {"fp8": peak, "int8": peak, "bf16": peak / 4, "fp16": peak / 4}
    dynamic = 2592 * (3.57e-12 + 0.45e-12) * 5e9 + 1152 * 1.48e-12 * 5e9
    assert engine.energy_j_per_flop["fp8"] == pytest.approx(dynamic / peak)
    assert engine.energy_j_per_flop["bf16"] == pytest.approx(4 * dynamic / peak)
    assert chip.static_power_w == pytest.approx(chip.power.idle_w + spec.power.always_on_w)
    assert spec.effective_bits == 6.5


def test_weight_stationary_reprogramming_by_hand():
    # DOTA-L geometry held weight-stationary: one 12 x 12 column operand per core, 16 cores = 2304 weights per load
    assert ph.weights_held(DOTA_L) == 12 * 12 * 16 == 2304
    assert ph.reprogram_s(2304, DOTA_L, 2e-6) == pytest.approx(2e-6)
    assert ph.reprogram_s(2305, DOTA_L, 2e-6) == pytest.approx(4e-6)
    assert ph.reprogram_s(0, DOTA_L, 2e-6) == 0.0


def test_weight_stationary_yaml_needs_and_takes_a_reprogram_time():
    import yaml
    from archsim.config.hardware import hardware_from_dict

    data = yaml.safe_load((HW / "photonic_dota_l.yaml").read_text())
    data["compute"]["photonic"]["photonic"].update(weight_stationary=True, reprogram_time="2 us")
    spec = hardware_from_dict(data, "p.yaml").compute["photonic"].photonic
    assert spec.weight_stationary and spec.reprogram_time_s == pytest.approx(2e-6)
    assert spec.reprogram_s(4608) == pytest.approx(2 * 2e-6)
