"""Microbenchmarks on this CPU with numpy: GEMMs, memory copies, elementwise streams, and the tiny model's
kernels (archsim/kernels at the shapes of graph/small.py). Pure measurement; fitting is calibrate.py's job."""
from __future__ import annotations

import os
import platform
import time
from typing import Callable

import numpy as np

from archsim.paths import data_dir

MIN_SAMPLE_S = 0.005  # each sample loops the call until it has run this long (timer resolution)
SAMPLES = 9           # the fastest of this many samples is reported


def time_call(fn: Callable[[], object], *, min_sample_s: float = MIN_SAMPLE_S, samples: int = SAMPLES) -> float:
    """Fastest seconds per call of ``fn`` over ``samples`` samples, each long enough to time reliably."""
    fn()  # warm up (page faults, BLAS thread start)
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_sample_s:
            break
        loops *= 2
    per_call = [elapsed / loops]
    for _ in range(samples - 1):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        per_call.append((time.perf_counter() - start) / loops)
    return min(per_call)  # the least-disturbed sample: other processes only ever add time


def host_info() -> dict:
    """What this machine is: CPU model, logical cores, clock, SIMD flags, memory, numpy's BLAS."""
    info = {"machine": platform.machine(), "cpu_model": platform.processor() or "unknown",
            "logical_cores": os.cpu_count() or 1, "cpu_mhz": None, "flags": [], "memory_bytes": None,
            "numpy": np.__version__}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name":
                    info["cpu_model"] = value
                elif key == "cpu MHz" and info["cpu_mhz"] is None:
                    info["cpu_mhz"] = float(value)
                elif key == "flags" and not info["flags"]:
                    info["flags"] = sorted(f for f in value.split() if f.startswith(("avx", "fma", "sse4", "amx")))
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    info["memory_bytes"] = int(line.split()[1]) * 1024  # /proc/meminfo reports KiB
    except OSError:
        pass
    return info


def bench_gemm(shapes: list[tuple[int, int, int]], dtype: str = "float64") -> list[dict]:
    """C[m,n] = A[m,k] @ B[k,n] per shape; FLOPs 2*m*n*k, compulsory bytes (A + B + C)."""
    rng = np.random.default_rng(0)
    rows = []
    for m, n, k in shapes:
        a = rng.standard_normal((m, k)).astype(dtype)   # [m, k]
        b = rng.standard_normal((k, n)).astype(dtype)   # [k, n]
        seconds = time_call(lambda: a @ b)               # allocates C[m, n], as the numpy kernels do
        rows.append({"kernel": "gemm", "m": m, "n": n, "k": k, "dtype": dtype, "time_s": seconds,
                     "flops": 2.0 * m * n * k, "bytes": float(a.nbytes + b.nbytes + m * n * a.itemsize)})
    return rows


def bench_copy(sizes_bytes: list[int]) -> list[dict]:
    """A fresh copy of an array of each size (allocating, as the numpy kernels' outputs do); bytes moved =
    read + write = 2 * size."""
    rows = []
    for size in sizes_bytes:
        src = np.ones(size // 8, dtype=np.float64)      # [size/8]
        seconds = time_call(src.copy)
        rows.append({"kernel": "copy", "size_bytes": float(src.nbytes), "time_s": seconds,
                     "bytes": 2.0 * src.nbytes, "flops": 0.0})
    return rows


def bench_add(sizes_bytes: list[int]) -> list[dict]:
    """a + b into a fresh array (one FLOP per element; reads a, b, writes the sum: 3 * size bytes)."""
    rows = []
    for size in sizes_bytes:
        a = np.ones(size // 8, dtype=np.float64)        # [size/8]
        b = np.ones_like(a)                             # [size/8]
        seconds = time_call(lambda: a + b)
        rows.append({"kernel": "add", "size_bytes": float(a.nbytes), "time_s": seconds,
                     "bytes": 3.0 * a.nbytes, "flops": float(a.size)})
    return rows


def tiny_model_kernels(tokens: tuple[int, ...] = (64, 256, 1024)) -> list[dict]:
    """Time the tiny DeepSeek-V3 model's GEMMs and residual adds (archsim/kernels) at its shapes
    (graph/small.py applied to workloads/deepseek_v3.yaml) for several token counts."""
    from archsim.kernels.activations import residual_add
    from archsim.kernels.gemm import linear

    shapes = tiny_linear_shapes()
    rng = np.random.default_rng(1)
    rows = []
    for t in tokens:
        for name, (n, k) in shapes.items():
            x = rng.standard_normal((t, k))             # [t, k]
            w = rng.standard_normal((n, k))             # [n, k] checkpoint layout
            seconds = time_call(lambda: linear(x, w))
            rows.append({"kernel": "gemm", "name": name, "m": t, "n": n, "k": k, "dtype": "float64",
                         "time_s": seconds, "flops": 2.0 * t * n * k,
                         "bytes": float(x.nbytes + w.nbytes + t * n * 8)})
        hidden = shapes["q_a_proj"][1]  # in_features of q_a_proj is the hidden size
        x = rng.standard_normal((t, hidden))            # [t, hidden]
        r = rng.standard_normal((t, hidden))            # [t, hidden]
        seconds = time_call(lambda: residual_add(x, r))
        rows.append({"kernel": "add", "name": "residual_add", "size_bytes": float(x.nbytes), "time_s": seconds,
                     "bytes": 3.0 * x.nbytes, "flops": float(x.size)})
    return rows


def tiny_linear_shapes() -> dict[str, tuple[int, int]]:
    """(out_features, in_features) of the tiny DeepSeek-V3 model's linear layers (graph/small.py rule)."""
    from archsim.config.model import model_from_dict
    from archsim.config.yaml_io import load_yaml
    from archsim.graph.small import small_variant

    path = data_dir("workloads") / "deepseek_v3.yaml"
    m = small_variant(model_from_dict(load_yaml(path)["model"], str(path), "model"))
    h, heads = m.hidden_size, m.num_attention_heads
    return {
        "q_a_proj": (m.q_lora_rank, h),
        "q_b_proj": (heads * (m.qk_nope_head_dim + m.qk_rope_head_dim), m.q_lora_rank),
        "kv_a_proj_with_mqa": (m.kv_lora_rank + m.qk_rope_head_dim, h),
        "o_proj": (h, heads * m.v_head_dim),
        "dense_gate_up": (2 * m.intermediate_size, h),
        "dense_down": (h, m.intermediate_size),
        "expert_gate_up": (2 * m.moe_intermediate_size, h),
        "expert_down": (h, m.moe_intermediate_size),
    }


def calibration_gemm_shapes() -> list[tuple[int, int, int]]:
    """A grid of GEMM shapes for fitting, disjoint from the tiny model's (n, k) widths (16..256) so the
    closed loop predicts held-out kernels."""
    return [(m, n, k) for m in (32, 128, 512) for n in (24, 96, 384) for k in (24, 96, 384)]


CALIBRATION_SIZES = [2 ** e for e in range(12, 23)]  # 4 KiB .. 4 MiB: the tiny kernels' working sets


def run_all() -> dict:
    """Every microbenchmark calibration needs, plus the tiny model's kernels (the held-out loop)."""
    return {"host": host_info(), "threads": {k: os.environ.get(k) for k in THREAD_VARIABLES},
            "copy": bench_copy(CALIBRATION_SIZES), "add": bench_add(CALIBRATION_SIZES),
            "gemm": bench_gemm(calibration_gemm_shapes()), "tiny_model": tiny_model_kernels()}


# numpy's BLAS threads are pinned to one so that timings do not depend on other processes' load
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


if __name__ == "__main__":  # run in a fresh process by calibrate.py, with the thread variables set
    import json
    import sys

    json.dump(run_all(), sys.stdout)
