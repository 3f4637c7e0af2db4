"""GPU microbenchmarks with PyTorch, as ONE self-contained script (torch + stdlib only), to run on a CUDA
machine in well under 10 minutes:

    python -m archsim.fidelity.microbench_torch --out h200.raw.json              # one GPU
    torchrun --nproc-per-node 8 -m archsim.fidelity.microbench_torch --out raw.json   # + NCCL collectives

It measures GEMM (BF16, and FP8 through torch._scaled_mm where the GPU supports it), attention
(scaled_dot_product_attention: causal prefill and decode), device memory copy bandwidth over sizes
(for the ramp/bandwidth fit), the SM clock while GEMMs run (nvidia-smi, if present) and, when launched
with several ranks, NCCL all-reduce / all-gather / all-to-all over sizes. L2 is flushed between timed
calls (a 256 MiB write, as DeepGEMM's benchmark does), so every kernel starts with cold caches.
``archsim calibrate --backend torch --raw FILE`` fits the hardware fields from the JSON it writes.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

GEMM_SHAPES = [  # (m, n, k): DeepGEMM's table shapes plus large squares
    (64, 2112, 7168), (64, 7168, 2048), (128, 4096, 7168), (128, 24576, 1536), (4096, 2112, 7168),
    (4096, 7168, 16384), (4096, 4096, 7168), (4096, 7168, 2048), (8192, 8192, 8192)]
ATTENTION_SHAPES = [  # (batch, heads, q_len, kv_len, head_dim, causal)
    (1, 64, 4096, 4096, 128, True), (4, 32, 2048, 2048, 128, True), (128, 16, 1, 8192, 128, False),
    (64, 64, 1, 4096, 128, False)]
COPY_SIZES = [2 ** e for e in range(20, 32, 1)]  # 1 MiB .. 2 GiB
COLLECTIVE_SIZES = [2 ** e for e in range(16, 31, 2)]  # 64 KiB .. 1 GiB
FLUSH_BYTES = 256 * 2 ** 20


def _timer(torch, fn, *, reps: int = 10, flush=None) -> float:
    """Median seconds per call from CUDA events, L2 flushed before each call."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        if flush is not None:
            flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return times[len(times) // 2]


def _sm_clock_under_load_mhz(torch) -> float | None:
    """SM clock read by nvidia-smi while a queue of large BF16 GEMMs is running (about a second of work)."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)             # [8192, 8192]
    for _ in range(400):
        a @ a
    clock = _sm_clock_mhz()
    torch.cuda.synchronize()
    return clock


def _sm_clock_mhz() -> float | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return float(out.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def bench_gemm(torch, flush) -> list[dict]:
    rows = []
    fp8 = getattr(torch, "float8_e4m3fn", None)
    for m, n, k in GEMM_SHAPES:
        a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)          # [m, k]
        b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)          # [n, k]
        t = _timer(torch, lambda: a @ b.T, flush=flush)
        rows.append({"dtype": "bf16", "m": m, "n": n, "k": k, "time_s": t, "flops": 2.0 * m * n * k,
                     "bytes": 2.0 * (m * k + n * k + m * n)})
        if fp8 is not None and hasattr(torch, "_scaled_mm"):
            try:
                a8, b8 = a.to(fp8), b.to(fp8)
                one = torch.ones((), device="cuda")
                t8 = _timer(torch, lambda: torch._scaled_mm(a8, b8.T, scale_a=one, scale_b=one,
                                                            out_dtype=torch.bfloat16), flush=flush)
                rows.append({"dtype": "fp8", "m": m, "n": n, "k": k, "time_s": t8, "flops": 2.0 * m * n * k,
                             "bytes": float(m * k + n * k + 2 * m * n)})
            except (RuntimeError, TypeError) as err:  # unsupported on this GPU / torch version
                rows.append({"dtype": "fp8", "m": m, "n": n, "k": k, "skipped": str(err)[:200]})
    return rows


def bench_attention(torch, flush) -> list[dict]:
    import torch.nn.functional as F

    rows = []
    for b, h, q_len, kv_len, d, causal in ATTENTION_SHAPES:
        q = torch.randn(b, h, q_len, d, device="cuda", dtype=torch.bfloat16)     # [b, h, q, d]
        k = torch.randn(b, h, kv_len, d, device="cuda", dtype=torch.bfloat16)    # [b, h, kv, d]
        v = torch.randn_like(k)                                                  # [b, h, kv, d]
        t = _timer(torch, lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal), flush=flush)
        pairs = q_len * kv_len - (q_len * (q_len - 1) // 2 if causal else 0)
        rows.append({"batch": b, "heads": h, "q_len": q_len, "kv_len": kv_len, "head_dim": d, "causal": causal,
                     "time_s": t, "mma_flops": 4.0 * b * h * pairs * d,
                     "bytes": 2.0 * b * h * (2 * q_len * d + 2 * kv_len * d)})
    return rows


def bench_copy(torch) -> list[dict]:
    rows = []
    for size in COPY_SIZES:
        src = torch.empty(size, dtype=torch.uint8, device="cuda")                # [size]
        dst = torch.empty_like(src)
        t = _timer(torch, lambda: dst.copy_(src))
        rows.append({"size_bytes": size, "bytes": 2.0 * size, "time_s": t})
    return rows


def bench_collectives(torch) -> list[dict]:
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return []
    world, rows = dist.get_world_size(), []
    for size in COLLECTIVE_SIZES:
        x = torch.empty(size // 2, dtype=torch.bfloat16, device="cuda")          # [size/2] = size bytes
        out = torch.empty(size // 2 * world, dtype=torch.bfloat16, device="cuda")
        ops = {"all_reduce": lambda: dist.all_reduce(x),
               "all_gather": lambda: dist.all_gather_into_tensor(out, x),
               "all_to_all": lambda: dist.all_to_all_single(torch.empty_like(x), x)}
        for name, fn in ops.items():
            dist.barrier()
            rows.append({"op": name, "bytes": float(size), "devices": world, "time_s": _timer(torch, fn, reps=5)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="-", help="output JSON path ('-' = stdout)")
    args = parser.parse_args(argv)
    import os

    try:
        import torch
    except ImportError:
        print("microbench_torch: PyTorch is not installed (pip install 'archsim[torch]')", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("microbench_torch: no CUDA device", file=sys.stderr)
        return 2
    if "RANK" in os.environ:
        import torch.distributed as dist

        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))  # before NCCL binds a device
        dist.init_process_group("nccl")
    props = torch.cuda.get_device_properties(0)
    flush = torch.empty(FLUSH_BYTES, dtype=torch.uint8, device="cuda")
    started = time.time()
    result = {"device": props.name, "sm_count": props.multi_processor_count, "memory_bytes": props.total_memory,
              "torch": torch.__version__, "cuda": torch.version.cuda, "copy": bench_copy(torch)}
    result["gemm"] = bench_gemm(torch, flush)
    result["sm_clock_mhz_after_gemm"] = _sm_clock_under_load_mhz(torch)
    result["attention"] = bench_attention(torch, flush)
    result["collectives"] = bench_collectives(torch)
    result["elapsed_s"] = time.time() - started
    rank = int(os.environ.get("RANK", 0))
    if rank == 0:
        text = json.dumps(result, indent=1)
        if args.out == "-":
            print(text)
        else:
            with open(args.out, "w", encoding="utf-8") as fh:
                fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
