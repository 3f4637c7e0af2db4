"""``archsim list hardware|workloads|stacks``: the shipped names the other commands accept, one line each (the name
to type, what it is, a key figure), from the data folders archsim.paths.data_dir finds."""
from __future__ import annotations

import argparse
import json

from archsim.cli._common import add_format_arg, write_csv

KINDS = ("hardware", "workloads", "stacks")
# list --format csv: the line's three parts, then the kind's figures (SI units; a broken file has them empty)
CSV_COLUMNS = {"hardware": ("year", "peak_dtype", "peak_flop_per_s", "memory_bytes", "memory_bytes_per_s"),
               "workloads": ("total_params", "active_params", "layers"),
               "stacks": ("chunked_prefill", "kv_memory_fraction")}


def add_parser(sub) -> None:  # noqa: ANN001 - argparse subparsers
    p = sub.add_parser("list", help="list the shipped hardware, workloads or stacks (the names --hw, WORKLOAD and "
                                    "--stack accept)")
    p.add_argument("kind", choices=KINDS, help="what to list: hardware, workloads or stacks")
    add_format_arg(p, "name (json: a list of objects)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from archsim.config.shipped import shipped_names
    from archsim.errors import ConfigError

    describe = {"hardware": _hardware, "workloads": _workload, "stacks": _stack}[args.kind]
    rows, failed = [], False
    for name in shipped_names(args.kind):
        try:
            rows.append({"name": name, **describe(name)})
        except ConfigError as err:  # a broken file in the user's own folder ($ARCHSIM_HOME): say so, list the rest
            rows.append({"name": name, "title": "does not load", "summary": str(err)})
            failed = True
    if args.format == "json":
        print(json.dumps(rows, indent=2, allow_nan=False))
    elif args.format == "csv":
        write_csv([_flat(r) for r in rows], ("name", "title", "summary", *CSV_COLUMNS[args.kind]))
    elif not rows:
        from archsim.paths import data_dir

        print(f"no {args.kind} files in {data_dir(args.kind)}")
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            print(f"{r['name']:<{width}}  {r['title']}: {r['summary']}")
    return 2 if failed else 0


def _flat(row: dict) -> dict:
    """A row with its one-entry ``peak_flop_per_s`` mapping (dtype -> FLOP/s) split into two columns."""
    peak = row.get("peak_flop_per_s")
    if not isinstance(peak, dict):
        return row
    (dtype, value), = peak.items()
    return {**row, "peak_dtype": dtype, "peak_flop_per_s": value}


def _hardware(name: str) -> dict:
    """Chip name and year; dense BF16 (else the fastest dtype) matrix peak; main memory size and bandwidth."""
    from archsim.config.hardware import load_hardware
    from archsim.units import format_quantity

    hw = load_hardware(name)
    peaks = hw.engine_for("matrix").peak_flop_per_s
    dtype = "bf16" if "bf16" in peaks else max(peaks, key=peaks.get)
    mem = hw.main_memory
    summary = (f"{format_quantity(peaks[dtype], 'flop_per_s')} {dtype} dense, {format_quantity(mem.capacity_bytes, 'bytes')} "
               f"{mem.name} at {format_quantity(mem.bandwidth_bytes_per_s, 'bytes_per_s')}, "
               f"{hw.node.chips_per_node} per node")
    return {"title": f"{hw.name} ({hw.year})", "summary": summary, "year": hw.year,
            "peak_flop_per_s": {dtype: peaks[dtype]}, "memory_bytes": mem.capacity_bytes,
            "memory_bytes_per_s": mem.bandwidth_bytes_per_s}


def _workload(name: str) -> dict:
    """The YAML's description; total and active parameters, layers and the architecture (report.metrics)."""
    from archsim.config.workload import load_workload
    from archsim.graph.params import count_params
    from archsim.report.metrics import architecture
    from archsim.report.table import _count  # the run report's count format (1.03T), so the two lines agree

    w = load_workload(name)
    counts = count_params(w.model)
    summary = (f"{_count(counts.total)} params ({_count(counts.active)} active), {w.model.num_hidden_layers} "
               f"layers, {architecture(w.model)}")
    return {"title": w.description or w.name, "summary": summary, "total_params": counts.total,
            "active_params": counts.active, "layers": w.model.num_hidden_layers}


def _stack(name: str) -> dict:
    """Stack name and version; its chunked-prefill budget and KV memory fraction."""
    from archsim.config.stack import load_stack

    s = load_stack(name)
    graphs = f"CUDA graphs up to batch {s.cuda_graph_max_batch}" if s.cuda_graph_max_batch else "no CUDA graphs"
    summary = f"chunked prefill {s.chunked_prefill} tokens, KV memory fraction {s.kv_memory_fraction:.3g}, {graphs}"
    return {"title": f"{s.name} {s.version}", "summary": summary, "chunked_prefill": s.chunked_prefill,
            "kv_memory_fraction": s.kv_memory_fraction}
