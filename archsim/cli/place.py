"""``archsim place WORKLOAD --hw HW``: where each op of a phase runs on a heterogeneous chip, and why."""
from __future__ import annotations

import argparse
import json

from archsim.cli._common import add_format_arg, add_phase_graph_args, write_csv

# place --format csv: one row per op of the phase graph, with the engine it was placed on and why
OP_COLUMNS = ("op", "engine", "time_s", "energy_j", "bound", "reason")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("place", help="place each op on the chip engine (tensor, photonic, PIM...) that runs it best")
    add_phase_graph_args(p, "a shipped hardware name or YAML path (e.g. h100_hbm_pim)")
    p.add_argument("--objective", choices=("time", "energy"), default="time")
    p.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                   help="launch decode kernels one by one (default: a decode step is replayed from a CUDA graph, "
                        "as run prices it)")
    add_format_arg(p, "op (its engine, time_s, energy_j, bound and the reason)")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from archsim.cli._common import scenario_phase_graph
    from archsim.whatif.placement import place_graph

    w, hw, batch, graph = scenario_phase_graph(args)
    placed = place_graph(graph, hw, objective=args.objective, cuda_graph=args.cuda_graphs and args.phase == "decode")
    moved = [p for p in placed.placements.values() if p.reason.split()[0] != "default"]
    summary = {"workload": w.name, "hardware": hw.name, "phase": args.phase, "batch": batch,
               "objective": args.objective, "time_s": placed.time_s, "default_time_s": placed.default_time_s,
               "energy_j": placed.energy_j, "default_energy_j": placed.default_energy_j,
               "time_s_by_engine": placed.time_s_by_engine,
               "ops": [{"op": p.op, "engine": p.engine, "time_s": p.time_s, "energy_j": p.energy_j, "bound": p.bound,
                        "reason": p.reason} for p in placed.placements.values()]}
    if args.format == "json":
        print(json.dumps(summary))
        return 0
    if args.format == "csv":
        write_csv(summary["ops"], OP_COLUMNS)
        return 0
    print(f"{w.name} {args.phase} batch {batch} on {hw.name}, placed by {args.objective}")
    print(f"  step {placed.time_s * 1e3:.3f} ms (default engines {placed.default_time_s * 1e3:.3f} ms), "
          f"energy {placed.energy_j:.4g} J (default {placed.default_energy_j:.4g} J)")
    print("  time by engine: " + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in placed.time_s_by_engine.items()))
    print(f"  {len(moved)} of {len(placed.placements)} ops moved off their default engine")
    for p in moved[:15]:
        print(f"    {p.op:48s} -> {p.engine:10s} {p.reason}")
    if len(moved) > 15:
        print(f"    ... {len(moved) - 15} more (use --format json)")
    return 0
