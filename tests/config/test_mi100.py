"""hardware/mi100.yaml and its Aquabolt-XL HBM2-PIM variant (the published Samsung/AMD PIM system): the datasheet
figures as read, and the PIM figures derive_pim.py derives from the HBM2 interface (hand arithmetic)."""
from __future__ import annotations

from pathlib import Path

import pytest

from archsim.config.hardware import load_hardware
from archsim.whatif.memory_wall import is_projection

HW = Path(__file__).resolve().parents[2] / "hardware"


@pytest.fixture(scope="module")
def mi100():
    return load_hardware(HW / "mi100.yaml")


@pytest.fixture(scope="module")
def pim_mi100():
    return load_hardware(HW / "mi100_hbm2_pim.yaml")


def test_mi100_datasheet_figures(mi100):
    """AMD's spec table: 184.6 FP16 / 92.3 BF16 TFLOPS matrix, 23.1 FP32; 4,096 HBM2 pins at 2.4 Gb/s = 1228.8 GB/s
    (AMD quotes 1.23 TB/s); 32 GB; 300 W; 3 Infinity Fabric links, 276 GB/s both ways = 138 GB/s per direction."""
    matrix = mi100.engine_for("matrix")
    assert matrix.peak_flop_per_s["fp16"] == pytest.approx(184.6e12)
    assert matrix.peak_flop_per_s["bf16"] == pytest.approx(92.3e12)
    assert mi100.main_memory.bandwidth_bytes_per_s == pytest.approx(4096 * 2.4e9 / 8)
    assert mi100.main_memory.capacity_bytes == pytest.approx(32e9)
    assert mi100.power.tdp_w == 300.0 and mi100.sm_count == 120
    assert mi100.node.scale_up.bandwidth_bytes_per_s == pytest.approx(276e9 / 2)
    # FP32 vector peak = 7,680 lanes x 2 FLOP x 1.502 GHz (the spec table's 23.1 TFLOPS)
    assert mi100.engine_for("vector").peak_flop_per_s["fp32"] == pytest.approx(7680 * 2 * 1.502e9, rel=2e-3)
    assert not is_projection(mi100)


def test_pim_variant_derives_from_the_hbm2_interface(mi100, pim_mi100):
    """Aquabolt-XL in the HBM2 it was built for: internal = 4 x 1228.8 GB/s = 4.9152 TB/s; peak = 1.2 TFLOPS /
    (4 x 307.2 GB/s) x 4.9152 TB/s = 4.8 TFLOPS (exactly 4 cubes x 1.2 TFLOPS, as the MI100's pins run at
    Aquabolt's 2.4 Gb/s); capacity 32 GB x 6 / 8 = 24 GB (4 x 6 GB cubes); mode switch 8 x 47 ns = 376 ns."""
    pim = pim_mi100.pim
    assert pim.internal_bandwidth_bytes_per_s == pytest.approx(4 * 1228.8e9)
    assert pim.peak_flop_per_s == pytest.approx({"fp16": 4 * 1.2e12})
    assert pim_mi100.main_memory.capacity_bytes == pytest.approx(4 * 6e9)
    assert pim.kinds == ("gemm", "grouped_gemm")
    assert pim.mode_switch_s == pytest.approx(376e-9)
    assert is_projection(pim_mi100)


def test_pim_variant_is_the_mi100_outside_the_pim_section(mi100, pim_mi100):
    assert pim_mi100.compute == mi100.compute and pim_mi100.node == mi100.node and pim_mi100.power == mi100.power
    assert pim_mi100.kernel == mi100.kernel
    hbm, plain = pim_mi100.main_memory, mi100.main_memory
    assert hbm.bandwidth_bytes_per_s == plain.bandwidth_bytes_per_s
    assert hbm.achievable_fraction == plain.achievable_fraction
    assert {k: v for k, v in pim_mi100.memory.items() if k != "hbm"} == {
        k: v for k, v in mi100.memory.items() if k != "hbm"}


def test_gemv_library_fractions_are_the_measured_mi100_times(mi100):
    """hipBLASLt issue 1321 on an MI100: an FP32 16192 x 16192 matrix-vector product moves 16192^2 x 4 + 2 x 16192
    x 4 B; as a GEMM call with m = 1 it took 2185.5 us, as rocBLAS's GEMV 1164.72 us. Over the reference rate
    (1228.8 GB/s x 0.81) that is 0.482 and 0.905; the reference fraction itself is kokkos-kernels' MI100 DGEMV:
    10k x 10k doubles at 2.48e11 FLOP/s = 800 MB in 0.806 ms = 0.807 of the peak."""
    moved = 16192 * 16192 * 4 + 2 * 16192 * 4
    reference = mi100.main_memory.bandwidth_bytes_per_s * mi100.main_memory.achievable_fraction
    libs = mi100.kernel.libraries
    assert libs["gemm_m1"].bandwidth_fraction == pytest.approx(moved / 2185.5e-6 / reference, abs=1e-3)
    assert libs["rocblas_gemv"].bandwidth_fraction == pytest.approx(moved / 1164.72e-6 / reference, abs=1e-3)
    dgemv = 1e4 * 1e4 * 8 / (2 * 1e4 * 1e4 / 2.48e11)
    assert mi100.main_memory.achievable_fraction == pytest.approx(dgemv / 1228.8e9, abs=0.005)


def test_matrix_energy_is_the_tdp_derivation(mi100):
    """The [D] energy per FLOP is archsim/fidelity/tdp_energy.py's rule on this chip, as for every shipped GPU:
    bf16 (300 - 34.4 - P_move) / R rounded down to 0.01 pJ; fp16 and int8 at twice the rate, half of it."""
    from archsim.fidelity.tdp_energy import derived_energy_per_flop

    derived = derived_energy_per_flop(mi100)
    matrix = mi100.engine_for("matrix")
    for dtype in ("bf16", "fp16", "int8"):
        assert matrix.energy_j_per_flop[dtype] == pytest.approx(derived[dtype].energy_j_per_flop, abs=1e-15)
    assert matrix.energy_j_per_flop["fp16"] == pytest.approx(matrix.energy_j_per_flop["bf16"] / 2, abs=0.01e-12)
