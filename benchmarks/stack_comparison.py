"""One deployment under each shipped serving stack: the kernel library per op kind each stack picks, its host
time, and what ``archsim run`` projects for it (the table in docs/serving.md, "Stacks").

DeepSeek-V3 (FP8) on one 8 x H200 node, attention TP8 with MoE TP8 (the dstack / vLLM / SGLang single-node
recipe), 3200-token prompts, 800-token outputs, at batch 4 and 64. Run: python benchmarks/stack_comparison.py
"""
from __future__ import annotations

from archsim.api import estimate
from archsim.config.hardware import resolve_hardware
from archsim.config.stack import resolve_stack, stack_names
from archsim.errors import ConfigError

LAYOUT = dict(devices=8, tp=8, moe_tp=8, prompt_len=3200, output_len=800)
BATCHES = (4, 64)
HARDWARE = "h200"


def rows() -> list[dict]:
    """One row per (stack, batch): the stack's choices and the projection."""
    hw = resolve_hardware(HARDWARE)
    out = []
    for name in [None, *stack_names()]:
        stack = resolve_stack(name)
        try:
            chosen = stack.on(hw) if stack is not None else None
        except ConfigError as err:
            out.append({"stack": name, "skipped": str(err)})
            continue
        for batch in BATCHES:
            r = estimate("workloads/deepseek_v3.yaml", hw, batch=batch, stack=name, **LAYOUT)
            out.append({"stack": name or "(reference kernels)", "version": stack.version if stack else "",
                        "libraries": dict(chosen.libraries) if chosen else {}, "batch": batch,
                        "host_ms": stack.host.iteration_s * 1e3 if stack else 0.0,
                        "overlapped": stack.host.overlapped if stack else False,
                        "request_ms": stack.host.request_s * 1e3 if stack else 0.0,
                        "tpot_ms": r.decode.tpot_s * 1e3, "prefill_ms": r.prefill.latency_s * 1e3,
                        "tok_s_gpu": r.decode.tokens_per_s_per_device})
    return out


def main() -> None:
    print("| stack | batch | dense GEMM | MoE GEMM | attention prefill / decode | host per iteration | "
          "per request | TPOT | prefill (batch) | decode tok/s/GPU |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows():
        if "skipped" in row:
            print(f"| {row['stack']} | | skipped: {row['skipped']} |||||||")
            continue
        libs = row["libraries"]
        attn = f"{libs.get('attention_prefill', 'ref')} / {libs.get('attention_decode', 'ref')}"
        host = f"{row['host_ms']:.2f} ms{' (overlapped)' if row['overlapped'] else ''}"
        print(f"| {row['stack']} {row['version']} | {row['batch']} | {libs.get('dense_gemm', 'ref')} | "
              f"{libs.get('moe_gemm', 'ref')} | {attn} | {host} | {row['request_ms']:.1f} ms | "
              f"{row['tpot_ms']:.2f} ms | {row['prefill_ms']:.0f} ms | {row['tok_s_gpu']:.1f} |")


if __name__ == "__main__":
    main()
