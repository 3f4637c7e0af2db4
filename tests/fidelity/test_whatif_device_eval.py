"""The whatif category's device cases (fidelity/whatif_device_eval.py, validation/whatif_devices_public.yaml)."""
import dataclasses
from pathlib import Path

import pytest

from archsim.config.hardware import load_hardware
from archsim.errors import ConfigError
from archsim.fidelity import whatif_device_eval as dev
from archsim.fidelity.cases import load_case_file
from archsim.fidelity.validate import evaluate

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "validation" / "whatif_devices_public.yaml"


@pytest.fixture(scope="module")
def cases():
    return {c.id: c for c in load_case_file(CASES).cases}


def test_case_file(cases):
    assert set(cases) == {"aquabolt_xl_gemv_gpu", "aquabolt_xl_gemv_fpga", "imec_3d_hbm_on_gpu_halved_clock"}
    assert {c.category for c in cases.values()} == {"whatif"}
    assert {c.metric for c in cases.values()} == {"speedup", "throughput_loss"}
    assert cases["imec_3d_hbm_on_gpu_halved_clock"].hardware == "h100_3d_dram"
    assert all(c.source for c in cases.values())


def test_pim_gemv_speedup_by_hand(cases):
    """8192 x 8192 FP16 on the H100 + HBM3-PIM: the PIM takes max(134.2 MFLOP / 13.086 TFLOPS = 10.26 us,
    134.2 MB / 13.4 TB/s + 328 ns = 10.34 us, launch 4 us) + 388 ns of mode switch = 10.73 us; the tensor cores
    stream the 134.2 MB at 3.35 TB/s x 0.896, at least 44.7 us: a speedup of about 4.2-4.4 (not Samsung's 8.9 or 2.8,
    whose hosts archsim does not describe)."""
    hw = load_hardware("h100_hbm_pim")
    case = dataclasses.replace(cases["aquabolt_xl_gemv_gpu"], shape={"rows": 8192, "cols": 8192})
    speedup, detail = dev.pim_gemv_speedup(case, hw)
    weights = 8192 * 8192 * 2
    pim = max(2 * 8192 * 8192 / (1.2e12 / (4 * 307.2e9) * 4 * 3.35e12), weights / 13.4e12 + 328e-9, 4e-6) + 388e-9
    assert detail["pim_s"] == pytest.approx(pim, rel=1e-9)
    assert detail["host_s"] >= weights / (3.35e12 * 0.896)
    assert speedup == pytest.approx(detail["host_s"] / detail["pim_s"]) and 4.0 < speedup < 4.6


def test_cases_on_unmodelled_hosts_are_skipped_with_archsims_figure(cases):
    hw = load_hardware("h100_hbm_pim")
    for name in ("aquabolt_xl_gemv_gpu", "aquabolt_xl_gemv_fpga"):
        result = evaluate(cases[name], hw)
        assert result.predicted is None and "not published" in result.skipped and "x (" in result.skipped


def test_pim_case_needs_a_pim_dtype(cases):
    case = dataclasses.replace(cases["aquabolt_xl_gemv_gpu"], dtype="fp8", shape={"rows": 64, "cols": 64})
    with pytest.raises(ConfigError, match="dtype"):
        dev.pim_gemv_speedup(case, load_hardware("h100_hbm_pim"))
    with pytest.raises(ConfigError, match="pim"):
        dev.pim_gemv_speedup(cases["aquabolt_xl_gemv_gpu"], load_hardware("h100"))


def test_halved_clock_training_cost(cases):
    """At the board's 700 W (not the stack's 420 W thermal cap) the full clock and half of it: a loss between 0 and
    the 50% of a fully compute-bound step; at 100% of the clock nothing is lost."""
    hw = load_hardware("h100_3d_dram")
    board = dev._at_board_power(hw)
    assert board.power.tdp_w == 700.0 and board.thermal is None and hw.power.tdp_w < 700.0
    case = cases["imec_3d_hbm_on_gpu_halved_clock"]
    loss, detail = dev.clock_training_loss(case, hw)
    assert 0.0 < loss <= 0.5
    assert loss == pytest.approx(1 - detail["tokens_per_s_reduced"] / detail["tokens_per_s_full"])
    same = dataclasses.replace(case, shape={**case.shape, "clock_percent": 100})
    assert dev.clock_training_loss(same, hw)[0] == pytest.approx(0.0, abs=1e-12)
