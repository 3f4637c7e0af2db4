"""``archsim plan WORKLOAD --hw HW --devices N``: search layouts, rank them, print the best and the Pareto front."""
from __future__ import annotations

import argparse
import json
import sys

from archsim.cli._common import (add_format_arg, add_set_arg, inputs, non_negative_int, positive_int, progress_bar,
                                time_arg, write_csv)
from archsim.dtypes import WEIGHT_FORMATS, format_choices
from archsim.errors import ConfigError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("plan", help="search parallel layouts on N devices: best plan and Pareto front")
    p.add_argument("workload", help="a shipped workload name (e.g. deepseek_v3) or a workload YAML path")
    p.add_argument("--hw", required=True, help="a shipped hardware name (e.g. h800) or a hardware YAML path")
    p.add_argument("--devices", type=positive_int, required=True, help="number of devices")
    p.add_argument("--mode", choices=("inference", "train"), default="inference")
    p.add_argument("--objective", choices=("throughput", "latency", "cost"), default="throughput")
    p.add_argument("--slo-tpot", type=time_arg("--slo-tpot", positive=True),
                   help="inference: time per output token limit, e.g. 50ms (a bare number is seconds)")
    p.add_argument("--slo-ttft", type=time_arg("--slo-ttft", positive=True),
                   help="inference: time to first token limit, e.g. 2s, 2 or 2000ms")
    p.add_argument("--prompt-len", type=positive_int, help="inference prompt tokens (default: the workload's)")
    p.add_argument("--output-len", type=positive_int, help="inference output tokens (default: the workload's)")
    p.add_argument("--batch", type=positive_int, action="append",
                   help="global batch size to try (repeatable; default 1..256 sequences per replica)")
    p.add_argument("--weights", help=f"inference weight format: {format_choices(WEIGHT_FORMATS)} (default: the "
                                     "workload's)")
    p.add_argument("--expert-weights", help=f"inference: the routed experts' format: {format_choices(WEIGHT_FORMATS)} "
                                            "(default: as --weights)")
    p.add_argument("--prefill-chunk", type=non_negative_int,
                   help="inference: tokens per prefill forward of one attention replica (default 8192; 0: one)")
    p.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false", default=None,
                   help="inference: launch decode kernels from the CPU (default: CUDA graphs)")
    p.add_argument("--stack", help="inference: serving stack (sglang, vllm, trtllm, deepseek or a stack YAML): its "
                                   "kernels, host time and defaults price every candidate (docs/stacks.md)")
    p.add_argument("--seq-len", type=positive_int, default=4096, help="train: sequence length")
    p.add_argument("--global-batch", type=positive_int, help="train: sequences per step (default 4 per device)")
    p.add_argument("--precision", choices=("bf16", "fp8"), default="bf16", help="train: precision recipe")
    p.add_argument("--top", type=positive_int, default=20, help="plans listed (default 20)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_format_arg(p, "layout of the top plans (--top), with its rank and whether it is on the Pareto front")
    add_set_arg(p)
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from archsim.config.hardware import load_hardware
    from archsim.config.workload import load_workload
    from archsim.config.deployment import DeploymentSpec, PoolSpec
    from archsim.mapping.plan import search_inference, search_training
    from archsim.mapping.resolve import resolve_deployment

    workload, hw = inputs(load_workload(args.workload), load_hardware(args.hw), args.settings)
    sc = workload.scenario
    progress = progress_bar("searching", "layouts", not args.no_progress and sys.stderr.isatty())
    if args.mode == "train":
        if args.slo_tpot is not None or args.slo_ttft is not None:
            raise ConfigError(None, "--slo-tpot/--slo-ttft", "SLOs only with --mode inference", "train")
        result = search_training(workload.model, hw, devices=args.devices, seq_len=args.seq_len,
                                 global_batch=args.global_batch or 4 * args.devices, precision=args.precision,
                                 objective=args.objective, progress=progress)
    else:
        tpot, ttft = args.slo_tpot, args.slo_ttft  # seconds (cli/_common.time_arg), None when not given
        # the deployment every candidate keeps (formats, lengths, expert load, chunk, CUDA graphs): the one
        # estimate() resolves for this workload, each candidate then replacing its layout and batch
        options = {k: v for k, v in (("weights", args.weights), ("expert_weights", args.expert_weights),
                                     ("prompt_len", args.prompt_len), ("output_len", args.output_len),
                                     ("prefill_chunk", args.prefill_chunk), ("cuda_graphs", args.cuda_graphs),
                                     ("stack", args.stack))
                   if v is not None}
        base = resolve_deployment(workload, hw, deployment=DeploymentSpec(pools=(PoolSpec(role="both"),)),
                                  **options).deployment
        result = search_inference(workload.model, hw, devices=args.devices, prompt_len=base.prompt_len,
                                  output_len=base.output_len, precision=base.precision, objective=args.objective,
                                  slo_tpot_s=tpot, slo_ttft_s=ttft, batches=args.batch, mtp=sc.mtp,
                                  progress=progress, deployment=base)
    out = {"workload": workload.name, "hardware": hw.name, "devices": args.devices, "mode": args.mode,
           **result.to_dict(limit=args.top)}
    if args.format == "json":
        print(json.dumps(out))
        return 0
    if args.format == "csv":
        rows = plan_rows(out)
        write_csv(rows, plan_columns(rows))
        return 0
    print(f"{workload.name} on {args.devices} x {hw.name}, {args.mode}, objective {args.objective}: "
          f"{result.searched} layouts searched, {len(result.plans)} feasible")
    if result.best is None:
        print("  no layout fits (or meets the SLOs)")
        return 0
    for title, rows in (("best", [result.best]), ("Pareto front", result.pareto), ("top plans", result.plans[:args.top])):
        print(f"{title}:")
        for r in rows:
            print("  " + _row(r.to_dict(), args.mode))
    return 0


def _row(d: dict, mode: str) -> str:
    label = f"{d['layout']['label']:<34}"
    if mode == "train":
        return (f"{label} {d['schedule']:<9} step {d['step_time_s']:.3f} s  MFU {d['mfu'] * 100:5.1f}%  "
                f"{d['gpu_hours_per_trillion_tokens']:.4g} GPU-h/T")
    return (f"{label} batch {d['batch']:<6} TPOT {d['tpot_s'] * 1e3:8.2f} ms  TTFT {d['ttft_s']:8.3f} s  "
            f"{d['tokens_per_s_per_device']:9.1f} tok/s/dev  ${d['usd_per_million_tokens']:.3g}/Mtok")


LAYOUT_COLUMNS = ("tp", "attn_dp", "moe_tp", "moe_ep", "pp", "micro_batches", "redundant_experts", "zero_stage")


def plan_rows(out: dict) -> list[dict]:
    """plan --format csv: one row per listed plan (``out["plans"]``, best first): rank, the layout's label and degrees,
    then the plan's own scalar fields (inference: batch, ttft_s, tpot_s, tokens/s, $/Mtoken, memory; train: step
    time, MFU, GPU-hours); ``pareto`` says whether the plan is on the listed Pareto front."""
    front = out.get("pareto", [])
    rows = []
    for rank, p in enumerate(out.get("plans", []), 1):
        layout = p["layout"]
        row = {"rank": rank, "workload": out["workload"], "hardware": out["hardware"], "devices": out["devices"],
               "mode": out["mode"], "layout": layout["label"], **{k: layout.get(k) for k in LAYOUT_COLUMNS}}
        row.update({k: v for k, v in p.items() if k != "layout" and not isinstance(v, (dict, list))})
        row["pareto"] = p in front  # the same plan record (layout and batch)
        rows.append(row)
    return rows


def plan_columns(rows: list[dict]) -> list[str]:
    """The CSV header: every key of the rows in first-seen order (inference and train plans carry different
    metrics); with no plan, the identifying columns alone."""
    cols = ["rank", "workload", "hardware", "devices", "mode", "layout", *LAYOUT_COLUMNS]
    for row in rows:
        cols += [k for k in row if k not in cols]
    return cols
