"""``archsim graph WORKLOAD``: build one phase graph and print its size, parameters, FLOPs and bytes."""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

from archsim.cli._common import add_format_arg, positive_int, write_csv

# graph --format csv: one row per op of the phase graph
OP_COLUMNS = ("name", "kind", "flops", "params", "read_bytes", "write_bytes")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("graph", help="build a workload's prefill or decode operator graph and summarise it")
    p.add_argument("workload", help="a shipped workload name (e.g. deepseek_v3) or a workload YAML path")
    p.add_argument("--phase", choices=("prefill", "decode"), default="prefill")
    p.add_argument("--batch", type=positive_int, help="sequences (default: the scenario's batch)")
    p.add_argument("--length", type=positive_int,
                   help="prompt tokens (prefill) or context incl. the new token (decode); default from the scenario")
    p.add_argument("--tp", type=positive_int, default=1, help="tensor-parallel slice the graph describes")
    p.add_argument("--ep", type=positive_int, default=1, help="expert-parallel slice the graph describes")
    p.add_argument("--mtp", action="store_true", help="include the MTP module")
    p.add_argument("--small", action="store_true", help="the --small variant of the model (graph/small.py rule)")
    p.add_argument("--top", type=int, default=5, help="list the N ops with the most FLOPs")
    add_format_arg(p, "op of the graph (kind, FLOPs, parameters, bytes read and written)")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from archsim.config.workload import load_workload
    from archsim.graph import (Shard, build_decode, build_prefill, count_params, kv_bytes_per_token,
                               scenario_precision, small_variant)
    from archsim.graph.expert_load import load_from_spec
    from archsim.graph.params import kv_sequence_parts

    if args.top < 1:
        from archsim.errors import ConfigError
        raise ConfigError(None, "--top", "a positive number of ops", args.top)
    w = load_workload(args.workload)
    model = small_variant(w.model) if args.small else w.model
    sc = w.scenario
    precision = scenario_precision(sc)
    batch = args.batch or sc.batch
    mtp = args.mtp or sc.mtp
    load = load_from_spec(sc.expert_load, model.n_routed_experts, model.num_experts_per_tok) if model.is_moe else None
    shard = Shard(tp=args.tp, ep=args.ep)
    if args.phase == "prefill":
        g = build_prefill(model, batch=batch, prompt_len=args.length or sc.prompt_len, precision=precision,
                          shard=shard, mtp=mtp, expert_load=load)
    else:
        g = build_decode(model, batch=batch, context=args.length or sc.prompt_len + sc.output_len,
                         precision=precision, shard=shard, mtp=mtp, expert_load=load)
    if args.format == "csv":
        write_csv(op_rows(g), OP_COLUMNS)
        return 0
    data = summarise(g, w.name + ("_small" if args.small else ""), args.top)
    counts = count_params(model, mtp=mtp)
    data.update({"model_total_params": counts.total, "model_active_params": counts.active,
                 "kv_bytes_per_token": kv_bytes_per_token(model, precision.kv_cache),
                 # one sequence's KV at the graph's kv_len (sliding-window layers keep their window), run's keys
                 **kv_sequence_parts(model, g.graph["kv_len"], precision.kv_cache), "layers": model.num_hidden_layers,
                 "kv_dtype": precision.kv_cache.name})
    if args.format == "json":
        json.dump(data, sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(_table(data))
    return 0


def summarise(g, name: str, top: int) -> dict:
    """Totals of a phase graph: ops, params, FLOPs by kind, bytes by operand role, heaviest ops."""
    flops_by_kind: dict[str, float] = defaultdict(float)
    bytes_by_role: dict[str, float] = defaultdict(float)
    params = 0
    ops = [d["op"] for _, d in g.nodes(data=True)]
    for op in ops:
        flops_by_kind[op.kind] += op.flops
        params += op.params
        for o in op.reads + op.writes:
            bytes_by_role[o.role] += o.nbytes
    heaviest = sorted(ops, key=lambda op: -op.flops)[:max(top, 0)]
    meta = {k: g.graph[k] for k in ("phase", "batch", "tokens", "q_len", "kv_len", "tp", "ep", "mtp")}
    return {"workload": name, **meta, "ops": len(ops), "edges": g.number_of_edges(), "params": params,
            "flops": sum(flops_by_kind.values()), "flops_by_kind": dict(flops_by_kind),
            "bytes_by_role": dict(bytes_by_role),
            "heaviest": [{"name": op.name, "kind": op.kind, "flops": op.flops} for op in heaviest]}


def op_rows(g) -> list[dict]:
    """Every op of the graph, in graph order, as a CSV record (``OP_COLUMNS``)."""
    return [{"name": op.name, "kind": op.kind, "flops": op.flops, "params": op.params,
             "read_bytes": sum(o.nbytes for o in op.reads), "write_bytes": sum(o.nbytes for o in op.writes)}
            for op in (d["op"] for _, d in g.nodes(data=True))]


def _table(d: dict) -> str:
    lines = [f"{d['workload']}: {d['phase']} graph, batch {d['batch']}, {d['tokens']} new tokens, "
             f"kv_len {d['kv_len']}, tp {d['tp']}, ep {d['ep']}{', mtp' if d['mtp'] else ''}",
             f"  ops {d['ops']}, edges {d['edges']}, params on this slice {d['params']:,} "
             f"(model total {d['model_total_params']:,}, active {d['model_active_params']:,})",
             f"  FLOPs {d['flops']:.4g}; {_kv_text(d)}"]
    lines += [f"    {kind:<14} {f:.4g} FLOPs" for kind, f in sorted(d["flops_by_kind"].items(), key=lambda x: -x[1])]
    lines += [f"  bytes ({role}) {b:.4g}" for role, b in sorted(d["bytes_by_role"].items())]
    lines += ["  heaviest ops:"] + [f"    {h['name']:<40} {h['flops']:.4g}" for h in d["heaviest"]]
    return "\n".join(lines) + "\n"


def _kv_text(d: dict) -> str:
    """KV bytes per token; with sliding-window layers (gpt-oss), what one sequence holds at kv_len instead (the
    per-token figure counts every layer as full): report.table.kv_sequence_rows' figures on one line."""
    if not d["sliding_layers"]:
        return f"KV bytes/token {d['kv_bytes_per_token']:,.0f}"
    from archsim.report.table import kv_sequence_rows

    (_, whole), (_, full), (_, window) = kv_sequence_rows(d, d["layers"], d["kv_dtype"])
    return f"KV bytes/sequence {whole}: full-attention layers {full} + sliding-window layers {window}"
