"""Calibration fits recover known laws from synthetic measurements; the written YAML loads strictly; the
real CPU closed loop (slow) predicts the tiny model's kernels within 25% median."""
from __future__ import annotations

import pytest
from fidelity_synthetic_raw import BANDWIDTH, MHZ, RAMP_S, RATE, synthetic_numpy_raw, synthetic_torch_raw

from archsim.config.hardware import load_hardware
from archsim.fidelity.calibrate import calibrate_numpy, fit_linear_terms, nominal_fp64_peak
from archsim.fidelity.calibrate_torch import calibrate_torch


def test_joint_fit_recovers_the_law() -> None:
    raw = synthetic_numpy_raw()
    ramp, bw, rate = fit_linear_terms(raw["copy"] + raw["gemm"])
    assert ramp == pytest.approx(RAMP_S, rel=1e-6)
    assert bw == pytest.approx(BANDWIDTH, rel=1e-6)
    assert rate == pytest.approx(RATE, rel=1e-6)


def test_nominal_peak_derivation() -> None:
    # AVX-512: 8 FP64 lanes x 2 FLOPs per FMA x 2 FMA units x 2600 MHz = 83.2 GFLOP/s per core
    peak, how = nominal_fp64_peak({"flags": ["avx2", "avx512f"], "cpu_mhz": MHZ})
    assert peak == pytest.approx(8 * 2 * 2 * 2600e6)
    assert "ASSUMPTION" in how


def test_calibrate_numpy_writes_a_loadable_file_and_predicts_the_loop(tmp_path) -> None:
    result = calibrate_numpy(tmp_path, raw=synthetic_numpy_raw())
    hw = load_hardware(result.hardware_yaml)
    assert hw.kernel.ramp_s == pytest.approx(RAMP_S, rel=1e-3)
    assert hw.main_memory.bandwidth_bytes_per_s == pytest.approx(BANDWIDTH, rel=1e-3)
    blas = hw.compute["blas"]
    assert blas.peak_flop_per_s["fp64"] * blas.achievable_fraction == pytest.approx(RATE, rel=1e-3)
    assert (tmp_path / "host_cpu.raw.json").exists()
    assert {f.path for f in result.fields} == {"kernel.ramp", "memory.cache.bandwidth",
                                               "compute.blas.achievable_fraction"}
    # the held-out kernels obey the same law, so the loop closes to rounding
    assert result.loop["max_abs_error"] < 0.01


def test_calibrate_torch_from_raw(tmp_path) -> None:
    result = calibrate_torch(tmp_path, raw=synthetic_torch_raw(), base="h200")
    hw = load_hardware(result.hardware_yaml)
    fields = {f.path: f.value for f in result.fields}
    # copy slope 4.0 TB/s over the nominal HBM bandwidth of hardware/h200.yaml
    assert hw.main_memory.bandwidth_bytes_per_s * hw.main_memory.achievable_fraction == pytest.approx(4.0e12, rel=1e-3)
    # the copy intercept is not a kernel ramp (see calibrate_torch._fit): the base file's ramp stays
    assert hw.kernel.ramp_s == load_hardware("hardware/h200.yaml").kernel.ramp_s
    assert "kernel.ramp" not in fields
    # every calibrated line carries its measurement; the base file's source comments survive
    text = open(result.hardware_yaml, encoding="utf-8").read()
    assert text.count("source: [M] measured on") == len(fields)
    assert "FlashMLA deep dive" in text
    # best GEMM: FP8 1500 TFLOPS / nominal FP8 peak
    tensor = hw.engine_for("matrix")
    assert tensor.peak_flop_per_s["fp8"] * tensor.achievable_fraction == pytest.approx(1500e12, rel=1e-3)
    assert hw.kernel.clock_under_load_hz == pytest.approx(1650e6)
    assert "kernel.clock_under_load" in fields


@pytest.mark.slow
def test_cpu_closed_loop_within_25_percent(tmp_path) -> None:
    """Measure this CPU, calibrate, then predict the tiny DeepSeek-V3 model's kernels (held out)."""
    result = calibrate_numpy(tmp_path)
    assert result.loop["median_abs_error"] <= 0.25, result.loop


def test_torch_script_exits_cleanly_without_a_gpu(capsys) -> None:
    from archsim.fidelity import microbench_torch

    try:
        import torch
        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    except ImportError:
        pass
    assert microbench_torch.main([]) == 2
    assert "microbench_torch:" in capsys.readouterr().err
