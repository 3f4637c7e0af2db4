"""``archsim roofline WORKLOAD --hw HW --out roofline.png``: every op of a phase on the chip's roofline."""
from __future__ import annotations

import argparse
import json

from archsim.cli._common import add_format_arg, add_phase_graph_args, write_csv

# roofline --format csv: one row per op of the phase graph, as placed on the chart
POINT_COLUMNS = ("label", "kind", "intensity_flop_per_byte", "flop_per_s", "time_s", "bound")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("roofline", help="place each op of a phase on the chip's roofline (PNG needs matplotlib)")
    add_phase_graph_args(p)
    p.add_argument("--out", help="PNG path for the chart")
    add_format_arg(p, "op (arithmetic intensity, achieved FLOP/s, time, bound)")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from archsim.cli._common import scenario_phase_graph
    from archsim.whatif.memory_wall import phase_wall, roofline_points

    w, hw, batch, graph = scenario_phase_graph(args)
    points, peak, bandwidth = roofline_points(graph, hw)
    wall = phase_wall(graph, hw)
    if args.out:
        from archsim.report.plots import roofline_chart
        roofline_chart(points, peak_flop_per_s=peak, bandwidth_bytes_per_s=bandwidth,
                       title=f"{w.name} {args.phase} (batch {batch}) on {hw.name}", path=args.out)
    summary = {"workload": w.name, "hardware": hw.name, "phase": args.phase, "batch": batch,
               "peak_flop_per_s": peak, "bandwidth_bytes_per_s": bandwidth,
               "ridge_point": peak / bandwidth, "arithmetic_intensity": wall.arithmetic_intensity,
               "bound": wall.bound, "compute_bound_bandwidth_bytes_per_s": wall.compute_bound_bandwidth_bytes_per_s,
               "note": wall.note, "ops": points, "chart": args.out}
    if args.format == "json":
        print(json.dumps(summary))
        return 0
    if args.format == "csv":
        write_csv(({**p, "intensity_flop_per_byte": p["intensity"]} for p in points), POINT_COLUMNS)
        return 0
    print(f"{w.name} {args.phase} batch {batch} on {hw.name}")
    print(f"  ridge point {peak / bandwidth:.1f} FLOP/B (achievable), phase intensity "
          f"{wall.arithmetic_intensity:.1f} FLOP/B: {wall.note}")
    heavy = sorted(points, key=lambda p: -p["time_s"])[:10]
    for p in heavy:
        print(f"  {p['label']:48s} {p['intensity']:10.2f} FLOP/B {p['flop_per_s'] / 1e12:10.2f} TFLOP/s  {p['bound']}")
    if args.out:
        print(f"  chart: {args.out}")
    return 0
