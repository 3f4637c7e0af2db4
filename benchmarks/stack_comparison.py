"""One deployment under each shipped serving stack: the kernel library per op kind each stack picks, its host
time, and what ``archsim run`` projects for it (the table in docs/serving.md, "Stacks").

DeepSeek-V3 (FP8) on one 8 x H200 node, attention TP8 with MoE TP8 (the dstack / vLLM / SGLang single-node
recipe), 3200-token prompts, 800-token outputs, at batch 4 and 64; then ``archsim serve`` of the same deployment
under a benchmark client (64 prompts, at most 16 in flight, all sent at once), its metrics named as
``vllm bench serve`` names them. Run: python benchmarks/stack_comparison.py
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


def serve_rows() -> list[dict]:
    """``archsim serve`` of the deployment under each stack that runs on the chip."""
    from archsim.sim.serve_deploy import ServeOptions, run_deployment

    out = []
    for name in [None, *stack_names()]:
        opts = ServeOptions(workload="workloads/deepseek_v3.yaml", hw=f"hardware/{HARDWARE}.yaml", devices=8, tp=8,
                            moe_tp=8, stack=name, num_prompts=64, max_concurrency=16, rate=float("inf"),
                            prompt_len=str(LAYOUT["prompt_len"]), output_len=str(LAYOUT["output_len"]))
        result, meta = run_deployment(opts)
        b = result.summary["benchmark"]
        out.append({"stack": name or "(reference kernels)", "scheduler": meta["scheduler"], **b})
    return out


def main_serve() -> None:
    print()
    print("| stack | scheduler | mean TTFT | median TTFT | p99 TTFT | median TPOT | median ITL | output tok/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in serve_rows():
        print(f"| {r['stack']} | {r['scheduler']} | {r['mean_ttft_ms']:.0f} ms | {r['median_ttft_ms']:.0f} ms | "
              f"{r['p99_ttft_ms']:.0f} ms | {r['median_tpot_ms']:.2f} ms | {r['median_itl_ms']:.2f} ms | "
              f"{r['output_throughput']:.0f} |")


if __name__ == "__main__":
    main()
    main_serve()
