"""``archsim run WORKLOAD --hw HW``: project one workload on one kind of hardware and print the report."""
from __future__ import annotations

import argparse
import sys

from archsim.cli._common import (WORKLOAD_HELP, add_deployment_args, add_format_arg, add_set_arg, deployment_overrides,
                                inputs, positive_int, print_json, write_csv)
from archsim.dtypes import PLAIN_FORMATS, WEIGHT_FORMATS, format_choices
from archsim.errors import ConfigError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("run", help="project a workload on hardware (prefill, decode, memory, energy)")
    p.add_argument("workload", help=WORKLOAD_HELP)
    p.add_argument("--hw", required=True, help="hardware: a shipped name (e.g. h100) or a YAML path")
    add_deployment_args(p)
    p.add_argument("--batch", type=positive_int, help="sequences in one step of one instance")
    p.add_argument("--prompt-len", type=positive_int, help="prompt tokens per sequence")
    p.add_argument("--output-len", type=positive_int, help="output tokens per sequence")
    p.add_argument("--weights", help=f"weight format: {format_choices(WEIGHT_FORMATS)} (fp8: 128x128 block scales; "
                                     "mxfp4: weight-only, computed in the activation format)")
    p.add_argument("--expert-weights", help=f"routed experts' format: {format_choices(WEIGHT_FORMATS)} (default: as "
                                            "--weights), e.g. int4 for Kimi K2's native checkpoints (INT4 experts, "
                                            "BF16 elsewhere), mxfp4 for gpt-oss's")
    p.add_argument("--kv-cache", help=f"KV-cache format: {format_choices(PLAIN_FORMATS)}")
    p.add_argument("--attention", choices=("flash", "naive"), help="attention kernel traffic model (default flash)")
    p.add_argument("--mtp", action="store_true", default=None, help="include the MTP module (DeepSeek-V3)")
    p.add_argument("--mtp-acceptance", type=_rates,
                   help="P1[,P2...]: acceptance rate of each MTP draft position (implies --mtp): a decode step then "
                        "emits 1 + P1 + P1 P2 + ... tokens (DeepSeek-V3 report 5.4.3: 85-90%% for the second token)")
    p.add_argument("--expert-load", help="routing distribution over experts: uniform | zipf:S | measured "
                                         "(the tiny model's measured routing carried to full scale; implies --small)")
    p.add_argument("--small", action="store_true", help="also run the tiny variant on the real numpy kernels")
    p.add_argument("--trace", help="write the projected prefill and decode steps (per pool, per stream) as Chrome "
                                   "trace JSON to this file (with --small: the tiny model's executed timeline)")
    add_format_arg(p, "priced phase (prefill, decode); --small's tiny run is in table and json only")
    add_set_arg(p)
    p.set_defaults(handler=run)
    return p


OVERRIDE_FLAGS = ("batch", "prompt_len", "output_len", "weights", "expert_weights", "kv_cache", "attention", "mtp",
                  "mtp_acceptance", "expert_load")


def _rates(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated fractions in [0, 1]."""
    try:
        rates = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fractions like 0.85 or 0.9,0.7, got {text!r}") from None
    if not all(0 <= p <= 1 for p in rates):
        raise argparse.ArgumentTypeError(f"expected fractions in [0, 1], got {text!r}")
    return rates


def run(args: argparse.Namespace) -> int:
    from archsim.api import estimate

    measured = args.expert_load == "measured"
    overrides = {k: getattr(args, k) for k in OVERRIDE_FLAGS if getattr(args, k) is not None}
    overrides.update(deployment_overrides(args))
    small = None
    if args.small or measured:
        from archsim.small_run import format_small, projected_expert_load, run_small

        small = run_small(args.workload, args.hw, trace_path=args.trace)
        if measured:
            overrides["expert_load"] = projected_expert_load(small) or "uniform"
    if args.settings and small is not None:
        raise ConfigError(None, "--set", "no --set with --small (the tiny model is the workload's own)", args.settings)
    workload, hw = inputs(args.workload, args.hw, args.settings)
    report = estimate(workload, hw, **overrides)
    if args.trace and small is None:
        from archsim.api import plan
        from archsim.report.trace import write_trace
        from archsim.report.trace_step import deployment_trace
        write_trace(deployment_trace(plan(workload, hw, **overrides)), args.trace)
    data = report.to_dict()
    if small is not None:
        data["small"] = small
    if args.format == "json":
        print_json(data, indent=2)
    elif args.format == "csv":
        write_csv(phase_rows(data), PHASE_COLUMNS)
    else:
        from archsim.report.table import format_report  # only the table needs it (cold start of --format json)

        sys.stdout.write(format_report(report))
        if small is not None:
            sys.stdout.write("\n" + format_small(small))
    return 0


# run --format csv: one row per priced phase; time_s is the phase's step (prefill latency, decode TPOT)
PHASE_COLUMNS = ("workload", "hardware", "devices", "layout", "batch", "prompt_len", "output_len", "phase",
                 "instance_devices", "fits",
                 "per_device_bytes", "time_s", "tokens_per_s", "tokens_per_s_per_device", "energy_j_per_token",
                 "bound", "flops", "hbm_bytes", "mfu", "hbm_bandwidth_utilisation", "energy_j_per_device", "tops_per_watt",
                 "communication_s", "exposed_communication_s", "host_s", "micro_batches", "forwards")


def phase_rows(data: dict) -> list[dict]:
    """The report's phases as CSV records (``PHASE_COLUMNS``); a deployment that does not fit gives one row per
    phase it would price, with the memory columns filled and the metrics empty."""
    dep, sc, mem = data["deployment"], data["scenario"], data["memory"]
    energy = data.get("energy") or {}
    per_token = {"prefill": energy.get("prefill_joules_per_token"), "decode": energy.get("joules_per_token")}
    common = {"workload": data["workload"], "hardware": dep["hardware"], "devices": dep["devices"],
              "layout": dep["layout"]["label"], "batch": sc["batch"], "prompt_len": sc["prompt_len"],
              "output_len": sc["output_len"], "fits": mem["fits"], "per_device_bytes": mem["per_device_bytes"]}
    phases = [p for p in ("prefill", "decode") if data.get(p) is not None]
    if not phases:  # not priced: the phases the deployment asked for
        phases = ["prefill", "decode"] if dep["phase"] == "both" else [dep["phase"]]
        return [{**common, "phase": p} for p in phases]
    rows = []
    for p in phases:
        d = data[p]
        rows.append({**common, **_pool_columns(dep, p), **{k: v for k, v in d.items() if k in PHASE_COLUMNS},
                     "phase": p, "energy_j_per_device": d["energy_j"], "energy_j_per_token": per_token[p]})
    return rows


def _pool_columns(dep: dict, phase: str) -> dict:
    """The layout, batch and devices of one instance of the pool that runs ``phase`` (a disaggregated deployment
    runs prefill and decode on different pools; otherwise one pool runs both)."""
    pool = next((q for q in dep["pools"] if q["role"] in (phase, "both")), None)
    if pool is None:
        return {}
    return {"layout": pool["layout"]["label"], "batch": pool["batch"], "instance_devices": pool["devices_per_instance"]}
