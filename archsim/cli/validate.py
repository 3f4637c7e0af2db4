"""``archsim validate [--format table|json|csv|markdown]``: every published case through the model; predicted vs measured,
error, and per-category median / max absolute error (fractions in JSON)."""
from __future__ import annotations

import argparse
import json

from archsim.cli._common import add_format_arg, write_csv

# validate --format csv: one row per case, values in SI units (the unit column), error = predicted / measured - 1
CASE_COLUMNS = ("id", "file", "category", "kernel", "metric", "unit", "measured", "predicted", "error", "abs_error",
                "calibrates", "skipped", "source")


def add_parser(sub) -> None:  # noqa: ANN001 - argparse subparsers
    p = sub.add_parser("validate", help="compare the model with published measurements (validation/*.yaml)")
    p.add_argument("--dir", default=None, help="directory of validation YAML files (default: validation/)")
    add_format_arg(p, "case (measured and predicted in SI units, the unit column names them)", extra=("markdown",),
                   note="; markdown: the README summary table")
    p.add_argument("--trace", default=None,
                   help="a Chrome / Perfetto / PyTorch-profiler trace (.json or .json.gz) of a training chunk pair: "
                        "its kernels by op and stream beside the model's (docs/training_trace.md); a CSV row is an "
                        "op, a pass or a stream")
    p.add_argument("--workload", default=None,
                   help="with --trace: the workload whose published training recipe (training: section) the trace "
                        "ran, a shipped name or a YAML path (e.g. deepseek_v3); without it, the trace alone")
    p.add_argument("--hw", default="h800", help="with --trace: the hardware the trace ran on (default h800)")
    p.add_argument("--moe-layers", type=int, default=4,
                   help="with --trace: MoE layers per chunk in the trace (default 4: DeepSeek's profile-data)")
    p.set_defaults(handler=run)


def _value(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    scale = {"time_us": (1e-6, "us"), "tflops": (1e12, "TFLOPS"), "gb_per_s": (1e9, "GB/s")}
    factor, unit = scale.get(metric, (1.0, ""))
    return f"{value / factor:.4g} {unit}".strip()


def summary_markdown(report: dict) -> str:
    """The README table: one row per category with n, median and max absolute error and the bound."""
    lines = ["| category | cases | median abs error | max abs error | held-out cases | held-out median | "
             "bound (median) |", "|---|---|---|---|---|---|---|"]
    pct = lambda v: "-" if v is None else format(v, ".1%")  # noqa: E731
    for name, c in report["categories"].items():
        bound = c["bound_median_abs_error"]
        cases = f"{c['n']}" + (f" ({c['skipped']} skipped)" if c["skipped"] else "")
        lines.append(f"| {name} | {cases} | {pct(c['median_abs_error'])} | {pct(c['max_abs_error'])} | "
                     f"{c['n_held_out']} | {pct(c['median_abs_error_held_out'])} | "
                     f"{'-' if bound is None else format(bound, '.0%')} |")
    return "\n".join(lines)


def stack_markdown(report: dict) -> str:
    """The end-to-end categories by the serving stack each case measured."""
    lines = ["| category | stack | cases | median abs error |", "|---|---|---|---|"]
    for cat, stacks in report.get("by_stack", {}).items():
        for stack, c in stacks.items():
            lines.append(f"| {cat} | {stack} | {c['n']} | {c['median_abs_error']:.1%} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.trace is not None:
        return _run_trace(args)
    from archsim.fidelity.cases import VALIDATION_DIR
    from archsim.fidelity.validate import run_validation

    report = run_validation(directory=args.dir or VALIDATION_DIR)
    if args.format == "json":
        print(json.dumps(report))
        return 0
    if args.format == "csv":
        write_csv(report["cases"], CASE_COLUMNS)
        return 0
    if args.format == "markdown":
        print(summary_markdown(report))
        return 0
    print(f"{'case':42} {'metric':10} {'measured':>14} {'predicted':>14} {'error':>8}")
    for c in report["cases"]:
        mark = "*" if c["calibrates"] else " "
        error = "skipped" if c["error"] is None else f"{c['error']:+.1%}"
        print(f"{c['id'][:41]:42}{mark}{c['metric']:10} {_value(c['metric'], c['measured']):>14} "
              f"{_value(c['metric'], c['predicted']):>14} {error:>8}")
    print("(* the case sets a hardware field: a consistency check, not held out)")
    print()
    print(summary_markdown(report))
    print()
    print(stack_markdown(report))
    skipped = [c for c in report["cases"] if c["skipped"]]
    for c in skipped:
        print(f"skipped {c['id']}: {c['skipped']}")
    return 0


TRACE_COLUMNS = ("table", "name", "count", "measured_s", "modelled_s", "ratio")


def _run_trace(args: argparse.Namespace) -> int:
    """``--trace FILE``: the trace's kernels by op, pass and stream beside the model's chunk pair."""
    from archsim.config.hardware import load_hardware
    from archsim.config.workload import load_workload
    from archsim.errors import ConfigError
    from archsim.fidelity.profile_trace import read_trace
    from archsim.fidelity.trace_compare import compare_trace, markdown, published_recipe, to_dict, trace_markdown

    if args.moe_layers < 1:
        raise ConfigError(None, "--moe-layers", "a positive integer", args.moe_layers)
    summary = read_trace(args.trace)
    if args.workload is None:  # the trace alone: its kernels by op and stream
        if args.format == "json":
            print(json.dumps(summary.to_dict()))
        elif args.format == "csv":
            write_csv([{"table": "ops", "name": op, "count": summary.op_count[op], "measured_s": summary.op_busy_s(op)}
                       for op in summary.op_s] + [{"table": "streams", "name": s, "count": t.count,
                                                   "measured_s": t.busy_s} for s, t in summary.streams.items()],
                      TRACE_COLUMNS)
        else:
            print(trace_markdown(summary))
        return 0
    workload, hw = load_workload(args.workload), load_hardware(args.hw)
    par, setup = published_recipe(workload)
    result = compare_trace(summary, workload.model, hw, par, setup, moe_layers=args.moe_layers)
    if args.format == "json":
        print(json.dumps(to_dict(result)))
    elif args.format == "csv":
        data = to_dict(result)
        write_csv([{"table": table, **row} for table in ("streams", "ops", "passes") for row in data[table]],
                  TRACE_COLUMNS)
    else:
        print(markdown(result))
    return 0
