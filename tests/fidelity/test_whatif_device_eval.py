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
    assert set(cases) == {"aquabolt_xl_gemv_gpu", "pim_hbm_gemv_isca21", "aquabolt_xl_gemv_fpga",
                          "imec_3d_hbm_on_gpu_halved_clock"}
    assert {c.category for c in cases.values()} == {"whatif"}
    assert {c.metric for c in cases.values()} == {"speedup", "throughput_loss"}
    assert cases["imec_3d_hbm_on_gpu_halved_clock"].hardware == "h100_3d_dram"
    # the PIM cases run on the published system itself: an MI100 with Aquabolt-XL stacks
    assert {cases[n].hardware for n in ("aquabolt_xl_gemv_gpu", "pim_hbm_gemv_isca21", "aquabolt_xl_gemv_fpga")} == {
        "mi100_hbm2_pim"}
    assert all(c.source for c in cases.values())


def test_pim_gemv_speedup_by_hand(cases):
    """8192 x 8192 FP16 on the H100 + HBM3-PIM, the units at 0.634 of their peak (PIMSimulator's GEMV): the PIM
    takes max(134.2 MFLOP / (13.086 TFLOPS x 0.634) = 16.18 us, 134.2 MB / (13.4 TB/s x 0.634) + 328 ns = 16.13 us,
    launch 4 us) + 388 ns of mode switch = 16.57 us; the tensor cores stream the 134.2 MB at 3.35 TB/s x 0.896, at
    least 44.7 us: a speedup of about 2.7-2.9 (not Samsung's 8.9 or 2.8, whose hosts archsim does not describe)."""
    hw = load_hardware("h100_hbm_pim")
    case = dataclasses.replace(cases["aquabolt_xl_gemv_gpu"], shape={"rows": 8192, "cols": 8192})
    speedup, detail = dev.pim_gemv_speedup(case, hw)
    weights = 8192 * 8192 * 2
    frac = 0.634
    pim = max(2 * 8192 * 8192 / (1.2e12 / (4 * 307.2e9) * 4 * 3.35e12 * frac), weights / (13.4e12 * frac) + 328e-9,
              4e-6) + 388e-9
    assert detail["pim_s"] == pytest.approx(pim, rel=1e-9)
    assert detail["host_s"] >= weights / (3.35e12 * 0.896)
    assert speedup == pytest.approx(detail["host_s"] / detail["pim_s"]) and 2.6 < speedup < 3.0


def test_mi100_pim_gemv_speedup_by_hand(cases):
    """8192 x 8192 FP16 on the MI100 + Aquabolt-XL system, the units at 0.634 of their peak (Samsung's PIMSimulator
    GEMV, hardware/mi100_hbm2_pim.yaml): the PIM takes max(134.2 MFLOP / (4.8 TFLOPS x 0.634) = 44.10 us, 134.2 MB /
    (4 x 1228.8 GB/s x 0.634) + 399 ns = 43.48 us, launch 4 us) + 8 x 47 ns of mode switch = 44.48 us. The
    published baseline is a GEMM call with m = 1 (gemm_m1: 0.482 of the reference bandwidth), so the GPU streams the
    134.2 MB at 1228.8 GB/s x 0.81 x 0.482 = 479.7 GB/s, at least 279.7 us: about 6.3x, against the published 8.9x
    (IEEE Micro 2022) and 11.2x (ISCA 2021). Without the library (the generic model) it is about 3.0x."""
    hw = load_hardware("mi100_hbm2_pim")
    speedup, detail = dev.pim_gemv_speedup(cases["aquabolt_xl_gemv_gpu"], hw)
    weights = 8192 * 8192 * 2
    frac = 0.634
    pim = max(2 * 8192 * 8192 / (4.8e12 * frac), weights / (4 * 1228.8e9 * frac) + 399e-9, 4e-6) + 8 * 47e-9
    assert detail["pim_s"] == pytest.approx(pim, rel=1e-9) and detail["pim_bound"] == "pim:compute"
    assert detail["host_library"] == "gemm_m1" and detail["host_bound"] == "memory:hbm"
    assert weights / (1228.8e9 * 0.81 * 0.482) <= detail["host_s"] <= 1.01 * weights / (1228.8e9 * 0.81 * 0.482)
    assert speedup == pytest.approx(detail["host_s"] / detail["pim_s"]) and 6.1 < speedup < 6.5
    for name, published in (("aquabolt_xl_gemv_gpu", 8.9), ("pim_hbm_gemv_isca21", 11.2)):
        result = evaluate(cases[name], hw)
        assert result.skipped is None and result.predicted == pytest.approx(speedup)
        assert result.error == pytest.approx(speedup / published - 1)
    generic = dataclasses.replace(cases["aquabolt_xl_gemv_gpu"], shape={"rows": 8192, "cols": 8192})
    plain, plain_detail = dev.pim_gemv_speedup(generic, hw)
    assert plain_detail["pim_s"] == detail["pim_s"]  # the library scales the host only
    assert plain_detail["host_s"] == pytest.approx(detail["host_s"] * 0.482, rel=0.01) and 2.9 < plain < 3.2


def test_host_library_scales_the_host_engine_only(cases):
    hw = load_hardware("mi100_hbm2_pim")
    scaled = dev.with_library(cases["aquabolt_xl_gemv_gpu"], hw, "rocblas_gemv")
    assert scaled.main_memory.achievable_fraction == pytest.approx(0.81 * 0.905)
    assert scaled.pim == hw.pim and scaled.engine_for("matrix").achievable_fraction == pytest.approx(
        hw.engine_for("matrix").achievable_fraction)  # mma_fraction 1.0
    bad = dataclasses.replace(cases["aquabolt_xl_gemv_gpu"], shape={"rows": 64, "cols": 64, "host_library": "cublas"})
    with pytest.raises(ConfigError, match="host_library"):
        dev.pim_gemv_speedup(bad, hw)


def test_case_on_an_unmodelled_host_is_skipped_with_archsims_figure(cases):
    result = evaluate(cases["aquabolt_xl_gemv_fpga"], load_hardware("mi100_hbm2_pim"))
    assert result.predicted is None and "xilinx_alveo_u280" in result.skipped and "not published" in result.skipped
    assert "x (" in result.skipped


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
