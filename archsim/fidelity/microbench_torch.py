"""GPU microbenchmarks with PyTorch, as ONE self-contained script (torch + stdlib only; Triton optional), to run
on a CUDA machine in well under 10 minutes:

    python -m archsim.fidelity.microbench_torch --out h200.raw.json              # one GPU
    torchrun --nproc-per-node 8 -m archsim.fidelity.microbench_torch --out raw.json   # + NCCL collectives
    python -m archsim.fidelity.microbench_torch --dry-run                        # the plan only, no torch needed

It measures GEMM (BF16 through torch.matmul, and FP8 through torch._scaled_mm where the GPU supports it) over a
small-M sweep, attention (scaled_dot_product_attention with the flash backend: causal prefill and GQA decode),
device memory copy bandwidth over sizes, copy bandwidth against the number of CTAs (a Triton streaming copy,
when Triton is present), the SM clock while GEMMs run for a few seconds (nvidia-smi, if present) and, when launched with several
ranks, NCCL all-reduce / all-gather / all-to-all over sizes.

Timing (``time_s``): a CUDA graph of N back-to-back calls replayed between ONE CUDA-event pair, the calls
rotating among enough distinct operand copies that the L2 cannot hold them (every call reads its weights from
HBM, as a layer of a real model does); per-call time = replay time / N, median of several replays. This has no
per-call timer floor and no CPU launch gap. Two further numbers are kept for comparison: ``time_event_s``, the
old method (one call between an event pair after a 256 MiB L2 flush, median of 10), which carries the
event/launch floor (~10-20 us on the first H200 run), and ``time_eager_s`` (the same N calls launched eagerly,
which adds the CPU launch gap when kernels are shorter than a launch). Each GEMM/attention row also lists the
kernels one cold call launches (torch.profiler, CUPTI), with their device durations: cuBLAS names carry the
tile shape and any split-K / stream-K reduction.
``archsim calibrate --backend torch --raw FILE`` fits the hardware fields from the JSON it writes.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time

import importlib.util
import os

GEMM_SMALL_M = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
GEMM_NK = ((2112, 7168), (7168, 2048), (4096, 7168), (24576, 1536), (7168, 16384))  # DeepSeek-V3 (N, K)
GEMM_LARGE = ((4096, 8192, 8192), (8192, 8192, 8192))  # (m, n, k)
GEMM_SHAPES = [(m, n, k) for n, k in GEMM_NK for m in GEMM_SMALL_M] + list(GEMM_LARGE)
EVENT_COMPARE_SHAPES = set(GEMM_SHAPES)  # the old single-call timing is kept for every GEMM (cheap)
# attention: (batch, q_heads, kv_heads, q_len, kv_len, head_dim, causal); head_dim 128, BF16
ATTENTION_SHAPES = [
    (1, 32, 32, 1024, 1024, 128, True), (1, 32, 32, 4096, 4096, 128, True), (1, 32, 32, 16384, 16384, 128, True),
    (4, 32, 32, 4096, 4096, 128, True), (2, 64, 64, 8192, 8192, 128, True), (1, 128, 128, 4096, 4096, 128, True),
    (4, 128, 128, 2048, 2048, 128, True), (2, 64, 8, 8192, 8192, 128, True),
    (1, 32, 8, 1, 1024, 128, False), (1, 32, 8, 1, 32768, 128, False), (8, 32, 8, 1, 8192, 128, False),
    (32, 32, 8, 1, 4096, 128, False), (64, 64, 8, 1, 8192, 128, False), (128, 32, 8, 1, 2048, 128, False),
    (128, 32, 8, 1, 16384, 128, False), (16, 128, 128, 1, 4096, 128, False), (4, 64, 64, 1, 32768, 128, False)]
# DeepSeek-V3 pre-training GEMMs of one 4K-token micro-batch per GPU (DSV3-TR sec. 3.2: EP64, TP1; 256 routed
# experts / 64 GPUs = 4 per GPU, each seeing 4096 x 64 x 8 / 256 = 8192 routed tokens on average); (m, n, k):
# forward (fprop), input gradient (dgrad: k = the forward n) and weight gradient (wgrad: k = tokens).
TRAINING_GEMM_SHAPES = [
    (8192, 4096, 7168), (8192, 7168, 2048),    # expert gate+up and down, fprop
    (8192, 7168, 4096), (8192, 2048, 7168),    # the same, dgrad
    (4096, 7168, 8192), (7168, 2048, 8192),    # the same, wgrad (k = routed tokens)
    (4096, 24576, 1536), (4096, 32768, 512),   # MLA q_b_proj, kv_b_proj fprop (4096 tokens)
    (4096, 7168, 16384), (7168, 16384, 4096),  # o_proj fprop and wgrad
    (4096, 1536, 7168), (1536, 7168, 4096)]    # q_a_proj fprop and wgrad
# attention forward + backward, causal BF16 (batch, heads, seq, head_dim): 128 heads x 4K as in DSV3 training
# (FA2 takes one head_dim for q, k and v, so 128, not MLA's 192/128), and two smaller-head shapes
TRAINING_ATTENTION_SHAPES = [(1, 128, 4096, 128), (4, 32, 4096, 128), (1, 32, 16384, 128)]
COPY_SIZES = [2 ** e for e in range(20, 32, 1)]  # 1 MiB .. 2 GiB
CTA_PROGRAMS = (1, 2, 4, 8, 16, 33, 66, 132, 264, 396, 528, 1056)  # Triton copy grid sizes (H200: 132 SMs)
CTA_BLOCKS = (1024, 4096)  # fp32 elements per load/store step of one program (4 KiB, 16 KiB)
CTA_CHUNK_BYTES = 4 * 2 ** 20  # bytes each program streams (read once, written once)
COLLECTIVE_SIZES = [2 ** e for e in range(16, 31, 2)]  # 64 KiB .. 1 GiB
FLUSH_BYTES = 256 * 2 ** 20
COLD_BYTES = 240 * 2 ** 20  # operand bytes rotated through per graph: 4x the 60 MB L2 torch reports on H200
MAX_COPIES = 64
TARGET_REPLAY_S = 2e-3  # one graph replay runs about this long
MIN_CALLS, MAX_CALLS = 4, 256


def operand_copies(bytes_per_call: float, *, cold_bytes: float = COLD_BYTES, cap: int = MAX_COPIES) -> int:
    """Distinct operand sets to rotate among so that their total exceeds ``cold_bytes`` (L2 cannot hold them)."""
    if bytes_per_call <= 0:
        return 1
    return max(1, min(cap, math.ceil(cold_bytes / bytes_per_call)))


def calls_per_replay(estimate_s: float, copies: int) -> int:
    """Calls captured in one graph: about TARGET_REPLAY_S of work, at least one pass over every operand copy
    (up to MAX_CALLS) and at least MIN_CALLS."""
    n = int(TARGET_REPLAY_S / estimate_s) if estimate_s > 0 else MAX_CALLS
    return max(MIN_CALLS, min(MAX_CALLS, max(n, copies)))


_NVJET = re.compile(r"nvjet_\w*?_(\d+)x(\d+)_(\d+)x(\d+)_(\d+)x(\d+)")
_TILESIZE = re.compile(r"tilesize(\d+)x(\d+)x(\d+)")
_TILE_GENERIC = re.compile(r"(?<![0-9x])(\d{2,3})x(\d{2,3})(?:x(\d{2,3}))?(?![0-9x])")


def describe_kernel(name: str) -> dict:
    """What a cuBLAS / cuBLASLt / flash kernel name says about its tiling: ``tile`` [M, N(, K)] where the name
    carries it, and ``split_k`` True when the kernel is a split-K / stream-K partial or its reduction."""
    low = name.lower()
    info: dict = {}
    m = _TILESIZE.search(low)
    if m:
        info["tile"] = [int(g) for g in m.groups()]
    else:
        m = _NVJET.search(low)
        if m:
            info["tile"] = [int(m.group(1)), int(m.group(2)), int(m.group(3))]
            info["cluster"] = [int(m.group(5)), int(m.group(6))]
        else:
            m = _TILE_GENERIC.search(low)
            if m:
                info["tile"] = [int(g) for g in m.groups() if g]
    if re.search(r"split_?k|splitk|stream_?k|streamk|segment_k_on|reduce", low) and "segment_k_off" not in low:
        info["split_k"] = True
    return info


def plan() -> dict:
    """What one run measures, without torch: used by ``--dry-run`` and the tests."""
    gemm = []
    for m, n, k in GEMM_SHAPES:
        for dtype, size in (("bf16", 2), ("fp8", 1)):
            per_call = size * (m * k + n * k) + 2 * m * n
            gemm.append({"dtype": dtype, "m": m, "n": n, "k": k, "copies": operand_copies(per_call)})
    attention = []
    for b, hq, hkv, q_len, kv_len, d, causal in ATTENTION_SHAPES:
        per_call = 2 * b * d * (2 * hq * q_len + 2 * hkv * kv_len)
        attention.append({"batch": b, "heads": hq, "kv_heads": hkv, "q_len": q_len, "kv_len": kv_len,
                          "head_dim": d, "causal": causal, "copies": operand_copies(per_call)})
    return {"gemm": gemm, "attention": attention, "copy_sizes": COPY_SIZES,
            "cta_programs": list(CTA_PROGRAMS), "cta_blocks": list(CTA_BLOCKS),
            "triton": importlib.util.find_spec("triton") is not None}


def _timer(torch, fn, *, reps: int = 10, flush=None) -> float:
    """Median seconds per call from CUDA events around ONE call, L2 flushed before each call (the old method:
    carries the event/launch floor)."""
    fn()
    torch.cuda.synchronize()
    return _events_time(torch, fn, reps, before=flush.zero_ if flush is not None else None)


def _events_time(torch, run, reps: int, before=None) -> float:
    """Median seconds of ``run()`` between one event pair; ``before()`` (an L2 flush) runs outside the pair."""
    times = []
    for _ in range(reps):
        if before is not None:
            before()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return times[len(times) // 2]


def _batched(torch, calls, n: int, *, reps: int = 5) -> dict:
    """Per-call seconds of ``n`` back-to-back calls rotating over ``calls`` (one callable per operand copy):
    CUDA graph replay (``time_s``) and eager launches (``time_eager_s``), each between one event pair."""
    out: dict = {"calls_per_replay": n, "operand_copies": len(calls)}

    def eager():
        for i in range(n):
            calls[i % len(calls)]()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the graph (cuBLAS workspaces, autotuning)
        for fn in calls:
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    out["time_eager_s"] = _events_time(torch, eager, 3) / n
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            eager()
        graph.replay()
        torch.cuda.synchronize()
        out["time_s"] = _events_time(torch, graph.replay, reps) / n
        out["timing"] = "cuda_graph"
        del graph
    except Exception as err:  # noqa: BLE001 - capture unsupported: fall back to the eager batch
        torch.cuda.synchronize()
        out["time_s"] = out["time_eager_s"]
        out["timing"] = "eager_batch"
        out["graph_error"] = str(err)[:200]
    return out


def _kernels(torch, fn, flush) -> list[dict]:
    """Name and device duration of every kernel one cold call of ``fn`` launches (torch.profiler / CUPTI)."""
    try:
        from torch.profiler import ProfilerActivity, profile

        if flush is not None:
            flush.zero_()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        rows = []
        for ev in prof.events():
            if "cuda" not in str(getattr(ev, "device_type", "")).lower():
                continue
            name = ev.name
            if name.startswith(("cuda", "Memcpy", "Memset")) or name.startswith("aten::"):
                continue
            rows.append({"name": name[:300], "time_s": ev.time_range.elapsed_us() / 1e6, **describe_kernel(name)})
        return rows
    except Exception as err:  # noqa: BLE001 - profiler unavailable: the timings stand without names
        return [{"error": str(err)[:200]}]


def _sm_clock_under_load(torch, seconds: float = 4.0) -> dict:
    """SM clock while large BF16 GEMMs run back to back for about ``seconds``: nvidia-smi sampled every
    ~0.2 s from a thread, median of the samples after the first second (the clock starts at its maximum and
    drops to the power cap's level within ~1 s: a single read at the start of the queue, the first run's
    method, saw 1980 MHz where the sustained clock was ~1485 MHz). Also the sustained GEMM rate."""
    import threading

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)             # [8192, 8192]
    a @ a
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    a @ a
    end.record()
    torch.cuda.synchronize()
    calls = max(10, int(seconds / max(start.elapsed_time(end) / 1e3, 1e-6)))
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample():
        t0 = time.time()
        while not done.is_set():
            mhz = _sm_clock_mhz()
            if mhz is not None:
                samples.append((time.time() - t0, mhz))
            time.sleep(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start.record()
    for _ in range(calls):
        a @ a
    end.record()
    torch.cuda.synchronize()
    done.set()
    thread.join(timeout=15)
    elapsed = start.elapsed_time(end) / 1e3
    late = sorted(mhz for t, mhz in samples if t >= 1.0)
    return {"sm_mhz_sustained": late[len(late) // 2] if late else None, "samples": samples,
            "sustained_bf16_flop_per_s": calls * 2.0 * 8192 ** 3 / elapsed, "seconds": elapsed}


def _sm_clock_mhz() -> float | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return float(out.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _nvidia_smi() -> dict:
    fields = ("name,driver_version,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,power.limit,power.draw,"
              "temperature.gpu,pstate")
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader", "-i", "0"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return dict(zip(fields.split(","), (v.strip() for v in out.strip().split(","))))
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}


def _gemm_calls(torch, dtype: str, m: int, n: int, k: int, copies: int):
    """One zero-argument callable per operand copy (A [m, k] and B [n, k] distinct per copy)."""
    a = [torch.randn(m, k, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]    # [m, k] each
    b = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]    # [n, k] each
    if dtype == "bf16":
        return [(lambda x=x, w=w: x @ w.T) for x, w in zip(a, b)]
    fp8 = torch.float8_e4m3fn
    a8, b8 = [x.to(fp8) for x in a], [w.to(fp8) for w in b]
    del a, b
    one = torch.ones((), device="cuda")
    return [(lambda x=x, w=w: torch._scaled_mm(x, w.T, scale_a=one, scale_b=one, out_dtype=torch.bfloat16))
            for x, w in zip(a8, b8)]


def bench_gemm(torch, flush, deadline: float, shapes=None) -> list[dict]:
    rows = []
    has_fp8 = getattr(torch, "float8_e4m3fn", None) is not None and hasattr(torch, "_scaled_mm")
    for m, n, k in (GEMM_SHAPES if shapes is None else shapes):
        for dtype, size in (("bf16", 2), ("fp8", 1)):
            row = {"dtype": dtype, "m": m, "n": n, "k": k, "flops": 2.0 * m * n * k,
                   "bytes": float(size * (m * k + n * k) + 2 * m * n)}
            if dtype == "fp8" and not has_fp8:
                rows.append({**row, "skipped": "no float8 / _scaled_mm in this torch"})
                continue
            if time.time() > deadline:
                rows.append({**row, "skipped": "time budget"})
                continue
            m_run = m
            try:
                for attempt in (m, 16):
                    m_run = max(attempt, m)
                    copies = operand_copies(size * (m_run * k + n * k) + 2 * m_run * n)
                    try:
                        calls = _gemm_calls(torch, dtype, m_run, n, k, copies)
                        t_event = _timer(torch, calls[0], flush=flush)
                        break
                    except RuntimeError as err:  # FP8 cuBLASLt needs dims divisible by 16: pad M as a server would
                        if dtype != "fp8" or m_run >= 16:
                            raise
                        row["pad_reason"] = str(err)[:160]
                if m_run != m:
                    row["m_run"] = m_run
                row["time_event_s"] = t_event
                row.update(_batched(torch, calls, calls_per_replay(t_event, copies)))
                row["kernels"] = _kernels(torch, calls[0], flush)
            except Exception as err:  # noqa: BLE001 - keep the rest of the run
                row["skipped"] = f"{type(err).__name__}: {str(err)[:200]}"
            finally:
                calls = None
                torch.cuda.empty_cache()
            rows.append(row)
    return rows


def _sdpa_backends(torch):
    """(name, context manager factory) pairs, flash first."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return [(name, (lambda b=getattr(SDPBackend, name): sdpa_kernel(b)))
                for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")
                if hasattr(SDPBackend, name)]
    except ImportError:
        import contextlib

        return [("DEFAULT", contextlib.nullcontext)]


def bench_attention(torch, flush, deadline: float) -> list[dict]:
    import torch.nn.functional as F

    rows = []
    backends = _sdpa_backends(torch)
    for b, hq, hkv, q_len, kv_len, d, causal in ATTENTION_SHAPES:
        pairs = q_len * kv_len - (q_len * (q_len - 1) // 2 if causal else 0)
        row = {"batch": b, "heads": hq, "kv_heads": hkv, "q_len": q_len, "kv_len": kv_len, "head_dim": d,
               "causal": causal, "dtype": "bf16", "mma_flops": 4.0 * b * hq * pairs * d,
               "bytes": 2.0 * b * d * (2 * hq * q_len + 2 * hkv * kv_len)}
        if time.time() > deadline:
            rows.append({**row, "skipped": "time budget"})
            continue
        copies = operand_copies(row["bytes"])
        try:
            qs = [torch.randn(b, hq, q_len, d, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]
            ks = [torch.randn(b, hkv, kv_len, d, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]
            vs = [torch.randn(b, hkv, kv_len, d, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]
            gqa = {"enable_gqa": True} if hkv != hq else {}
            errors = []
            for name, ctx in backends:
                def call(q, k, v, ctx=ctx):
                    with ctx():
                        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, **gqa)
                calls = [(lambda q=q, k=k, v=v, call=call: call(q, k, v)) for q, k, v in zip(qs, ks, vs)]
                try:
                    t_event = _timer(torch, calls[0], flush=flush)
                except RuntimeError as err:
                    errors.append(f"{name}: {str(err)[:120]}")
                    continue
                row["backend"] = name
                row["time_event_s"] = t_event
                row.update(_batched(torch, calls, calls_per_replay(t_event, copies)))
                row["kernels"] = _kernels(torch, calls[0], flush)
                break
            if errors:
                row["backend_errors"] = errors
            if "time_s" not in row:
                row["skipped"] = "no SDPA backend ran"
        except Exception as err:  # noqa: BLE001
            row["skipped"] = f"{type(err).__name__}: {str(err)[:200]}"
        finally:
            qs = ks = vs = calls = None
            torch.cuda.empty_cache()
        rows.append(row)
    return rows


def bench_attention_backward(torch, deadline: float) -> list[dict]:
    """Causal BF16 SDPA forward alone and forward + backward (``torch.autograd.grad`` of q, k, v), each as the
    median of eager batches between one event pair; ``backward_s`` is their difference."""
    import torch.nn.functional as F

    rows = []
    for b, h, seq, d in TRAINING_ATTENTION_SHAPES:
        pairs = seq * (seq + 1) // 2
        row = {"batch": b, "heads": h, "seq": seq, "head_dim": d, "causal": True, "dtype": "bf16",
               "forward_mma_flops": 4.0 * b * h * pairs * d, "backward_mma_flops": 10.0 * b * h * pairs * d}
        if time.time() > deadline:
            rows.append({**row, "skipped": "time budget"})
            continue
        try:
            q, k, v = (torch.randn(b, h, seq, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                       for _ in range(3))
            dout = torch.randn(b, h, seq, d, device="cuda", dtype=torch.bfloat16)

            def forward():
                with torch.no_grad():
                    F.scaled_dot_product_attention(q, k, v, is_causal=True)

            def forward_backward():
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                torch.autograd.grad(out, (q, k, v), dout)

            for fn in (forward, forward_backward):
                fn()
            torch.cuda.synchronize()
            n = 8
            row["forward_s"] = _events_time(torch, lambda: [forward() for _ in range(n)], 5) / n
            row["forward_backward_s"] = _events_time(torch, lambda: [forward_backward() for _ in range(n)], 5) / n
            row["backward_s"] = row["forward_backward_s"] - row["forward_s"]
            row["kernels"] = _kernels(torch, forward_backward, None)
        except Exception as err:  # noqa: BLE001
            row["skipped"] = f"{type(err).__name__}: {str(err)[:200]}"
        finally:
            q = k = v = dout = None
            torch.cuda.empty_cache()
        rows.append(row)
    return rows


def bench_copy(torch) -> list[dict]:
    """Device copies over sizes: ``time_s`` batched over rotating buffers (HBM-bound at every size),
    ``time_event_s`` the old single-call method (L2-warm for sizes the L2 holds)."""
    rows = []
    for size in COPY_SIZES:
        copies = operand_copies(2 * size, cap=256)
        src = [torch.empty(size, dtype=torch.uint8, device="cuda") for _ in range(copies)]    # [size] each
        dst = [torch.empty_like(s) for s in src]
        calls = [(lambda s=s, d=d: d.copy_(s)) for s, d in zip(src, dst)]
        row = {"size_bytes": size, "bytes": 2.0 * size, "time_event_s": _timer(torch, calls[0])}
        row.update(_batched(torch, calls, calls_per_replay(row["time_event_s"], copies)))
        rows.append(row)
        src = dst = calls = None
        torch.cuda.empty_cache()
    return rows


def _triton():
    """The Triton module, imported on first use (heavy; shipped with CUDA builds of PyTorch), or None when it is
    absent or broken: that only disables the CTA-count benchmark."""
    try:
        import triton
    except Exception:  # noqa: BLE001
        return None
    return triton


def bench_cta_bandwidth(torch, flush, deadline: float) -> list[dict]:
    """Copy bandwidth against the number of programs (CTAs): each streams CTA_CHUNK_BYTES, so the per-CTA rate
    at low counts is bytes in flight / memory latency, and the curve saturates at the HBM rate."""
    triton = _triton()
    if triton is None:
        return [{"skipped": "triton not importable"}]
    # loaded from the sibling file, so the script also runs standalone on a machine without archsim installed
    spec = importlib.util.spec_from_file_location("_triton_copy", os.path.join(os.path.dirname(__file__),
                                                                              "_triton_copy.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stream_copy_kernel = module.stream_copy_kernel
    rows = []
    chunk = CTA_CHUNK_BYTES // 4
    most = max(CTA_PROGRAMS)
    try:
        src = torch.ones(most * chunk, dtype=torch.float32, device="cuda")                 # [programs * chunk]
        dst = torch.empty_like(src)
    except Exception as err:  # noqa: BLE001
        return [{"skipped": f"allocation: {str(err)[:200]}"}]
    for block in CTA_BLOCKS:
        for programs in CTA_PROGRAMS:
            if time.time() > deadline:
                rows.append({"programs": programs, "block": block, "skipped": "time budget"})
                continue
            try:
                def launch(p=programs, blk=block):
                    stream_copy_kernel[(p,)](src, dst, chunk, BLOCK=blk, num_warps=4)

                launch()
                torch.cuda.synchronize()
                t = _timer(torch, launch, reps=5, flush=flush)
                rows.append({"programs": programs, "block": block, "block_bytes": 4 * block, "num_warps": 4,
                             "chunk_bytes": CTA_CHUNK_BYTES, "bytes": 2.0 * programs * CTA_CHUNK_BYTES,
                             "time_s": t, "timing": "event_single_call_l2_flushed"})
            except Exception as err:  # noqa: BLE001
                rows.append({"programs": programs, "block": block, "skipped": f"{type(err).__name__}: "
                             f"{str(err)[:200]}"})
    src = dst = None
    torch.cuda.empty_cache()
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


def _write(result: dict, out: str) -> None:
    text = json.dumps(result, indent=1)
    if out == "-":
        print(text)
    else:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="-", help="output JSON path ('-' = stdout)")
    parser.add_argument("--budget-s", type=float, default=360.0,
                        help="seconds after which remaining cases are skipped (the JSON is still written)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be measured; needs no torch")
    parser.add_argument("--only", default="copy,gemm,training,attention,cta,clock,collectives",
                        help="comma-separated sections to run")
    args = parser.parse_args(argv)
    if args.dry_run:
        print(json.dumps(plan(), indent=1))
        return 0
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
    only = set(args.only.split(","))
    rank = int(os.environ.get("RANK", 0))
    props = torch.cuda.get_device_properties(0)
    flush = torch.empty(FLUSH_BYTES, dtype=torch.uint8, device="cuda")
    started = time.time()
    deadline = started + args.budget_s
    result = {"device": props.name, "sm_count": props.multi_processor_count, "memory_bytes": props.total_memory,
              "l2_bytes": getattr(props, "L2_cache_size", None), "torch": torch.__version__,
              "cuda": torch.version.cuda, "libraries": _library_versions(),
              "triton": getattr(_triton(), "__version__", None),
              "nvidia_smi_start": _nvidia_smi(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "timing": __doc__.split("Timing (``time_s``): ", 1)[1].split("\n\n")[0].replace("\n", " "),
              "copy": [], "gemm": []}

    def section(key, fn):
        if key.split("_")[0] not in only:
            return
        t0 = time.time()
        try:
            result[key] = fn()
        except Exception as err:  # noqa: BLE001 - one broken section must not lose the others
            result[key + "_error"] = f"{type(err).__name__}: {str(err)[:300]}"
        result.setdefault("section_s", {})[key] = time.time() - t0
        print(f"microbench_torch: {key} done in {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
        if rank == 0 and args.out != "-":
            result["elapsed_s"] = time.time() - started
            _write(result, args.out)

    section("gemm", lambda: bench_gemm(torch, flush, deadline))
    section("training_gemm", lambda: bench_gemm(torch, flush, deadline, TRAINING_GEMM_SHAPES))
    section("training_attention", lambda: bench_attention_backward(torch, deadline))
    section("copy", lambda: bench_copy(torch))
    section("attention", lambda: bench_attention(torch, flush, deadline))
    section("cta_bandwidth", lambda: bench_cta_bandwidth(torch, flush, deadline))
    section("clock", lambda: {**_sm_clock_under_load(torch), "nvidia_smi": _nvidia_smi()})
    if isinstance(result.get("clock"), dict):
        result["sm_clock_mhz_after_gemm"] = result["clock"]["sm_mhz_sustained"]
    section("collectives", lambda: bench_collectives(torch))
    result["elapsed_s"] = time.time() - started
    if rank == 0:
        _write(result, args.out)
    return 0


def _library_versions() -> dict:
    """Versions of the pip-installed CUDA libraries (cuBLAS chooses the GEMM kernels), where present."""
    from importlib import metadata

    found = {}
    for name in ("nvidia-cublas", "nvidia-cublas-cu12", "nvidia-cublas-cu13", "nvidia-cudnn-cu13",
                 "nvidia-cudnn-cu12", "triton"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


if __name__ == "__main__":
    sys.exit(main())
