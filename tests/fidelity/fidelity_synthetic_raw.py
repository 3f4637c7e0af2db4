"""Synthetic microbenchmark JSON drawn from known laws, so the fits can be checked against the truth."""
from __future__ import annotations

RAMP_S = 2e-6          # the law's per-call time
BANDWIDTH = 50e9       # B/s
RATE = 30e9            # FLOP/s
MHZ = 2600.0


def synthetic_numpy_raw() -> dict:
    copies = [{"kernel": "copy", "size_bytes": float(s), "bytes": 2.0 * s, "flops": 0.0,
               "time_s": RAMP_S + 2.0 * s / BANDWIDTH} for s in (4096, 65536, 1 << 20, 4 << 20)]
    gemms = [{"kernel": "gemm", "m": m, "n": n, "k": k, "dtype": "float64", "flops": 2.0 * m * n * k,
              "bytes": 8.0 * (m * k + k * n + m * n),
              "time_s": RAMP_S + 2.0 * m * n * k / RATE + 8.0 * m * n / BANDWIDTH}
             for m in (32, 512) for n in (24, 384) for k in (24, 384)]
    # held-out kernels obeying the same law (GEMMs compute-bound, adds memory-bound at these sizes)
    tiny = [{"kernel": "gemm", "name": "x", "m": 256, "n": 64, "k": 128, "dtype": "float64",
             "flops": 2.0 * 256 * 64 * 128, "bytes": 8.0 * (256 * 128 + 64 * 128 + 256 * 64),
             "time_s": RAMP_S + 2.0 * 256 * 64 * 128 / RATE + 8.0 * 256 * 64 / BANDWIDTH},
            {"kernel": "add", "name": "residual_add", "size_bytes": 131072.0, "bytes": 3.0 * 131072,
             "flops": 16384.0, "time_s": RAMP_S + 3.0 * 131072 / BANDWIDTH}]
    return {"host": {"cpu_model": "synthetic", "logical_cores": 2, "cpu_mhz": MHZ, "flags": ["avx512f", "fma"],
                     "memory_bytes": 2 ** 34},
            "threads": {"OPENBLAS_NUM_THREADS": "1"}, "copy": copies, "add": [], "gemm": gemms, "tiny_model": tiny}


def synthetic_torch_raw() -> dict:
    """A GPU at 4.0 TB/s copy bandwidth (2 us intercept), 1500 TFLOPS FP8 / 700 TFLOPS BF16, 1650 MHz."""
    copies = [{"size_bytes": s, "bytes": 2.0 * s, "time_s": 2e-6 + 2.0 * s / 4.0e12} for s in (2 ** e for e in range(20, 31))]
    gemm = [{"dtype": "fp8", "m": 8192, "n": 8192, "k": 8192, "flops": 2.0 * 8192 ** 3, "time_s": 2.0 * 8192 ** 3 / 1500e12},
            {"dtype": "bf16", "m": 8192, "n": 8192, "k": 8192, "flops": 2.0 * 8192 ** 3, "time_s": 2.0 * 8192 ** 3 / 700e12},
            {"dtype": "fp8", "m": 64, "n": 2112, "k": 7168, "skipped": "not run"}]
    return {"device": "synthetic H200", "torch": "x", "copy": copies, "gemm": gemm, "sm_clock_mhz_after_gemm": 1650.0,
            "attention": [], "collectives": []}
