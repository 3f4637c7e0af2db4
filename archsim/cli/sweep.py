"""``archsim sweep WORKLOAD --hw HW --set PATH=SPEC ...``: project a workload over many hardware variants and model
or scenario variants (``--set model.n_routed_experts=64..256:4``: each model point rebuilds the graph)."""
from __future__ import annotations

import argparse
import json

from archsim.cli._common import (WORKLOAD_HELP, add_deployment_args, add_format_arg, deployment_overrides,
                                progress_bar, write_csv)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("sweep", help="sweep hardware fields (grid, random, Latin hypercube) and model or scenario "
                                     "fields (grid), and tabulate metrics")
    p.add_argument("workload", help=WORKLOAD_HELP)
    p.add_argument("--hw", required=True, help="base hardware: a shipped name (e.g. h100) or a YAML path")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="PATH=SPEC",
                   help="a swept field, repeatable: a hardware YAML path (memory.hbm.bandwidth) with a..b:n (grid; "
                        "a..b:n:log), a..b (range for random/lhs) or v1,v2 (list); or a model field by its Hugging "
                        "Face name (model.n_routed_experts=64..256:4, model.num_experts_per_tok=2,4,8) or a scenario "
                        "field (scenario.batch=32,64), swept as a grid, each value rebuilding the graph, as is a "
                        "hardware field that is not an array field (node.scale_up.bandwidth=450GB/s,900GB/s); a "
                        "single value fixes the field")
    p.add_argument("--sample", choices=("grid", "random", "lhs"), default="grid")
    p.add_argument("--points", type=int, help="samples for --sample random/lhs")
    p.add_argument("--seed", type=int, default=0)
    add_deployment_args(p)
    p.add_argument("--batch", type=int, help="sequences per step of one instance (default from the workload)")
    p.add_argument("--out", help="write rows to this .csv or .json file")
    add_format_arg(p, "point (swept fields in SI units, then the metrics; as --out writes)")
    p.add_argument("--workers", type=int, help="local processes (default: CPU count)")
    p.add_argument("--chunk", type=int, default=5000, help="points per task")
    p.add_argument("--cluster", metavar="ADDRESS", help="run on a Dask distributed scheduler (optional extra)")
    p.add_argument("--plot", help="write a Pareto chart (PNG, needs matplotlib)")
    p.add_argument("--html", help="write the sweep as one self-contained HTML page (each metric against each swept "
                                  "field, the Pareto front, the points)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from archsim.config.hardware import resolve_hardware
    from archsim.config.overrides import check_hardware_path
    from archsim.errors import ConfigError
    from archsim.whatif.sweep import METRICS, SweepSpec, array_path, run_sweep
    from archsim.whatif.sweep_spec import is_model_path, model_points, parse_model_set, parse_set, sample

    _check_flags(args)
    hw = resolve_hardware(args.hw)
    # model and scenario fields, and hardware fields that are not array fields, rebuild the inputs per value
    rebuilt = ["=" in t and (is_model_path(t) or not array_path(t.split("=", 1)[0].strip(), hw)) for t in args.sets]
    for text, r in zip(args.sets, rebuilt):
        if r and not is_model_path(text):  # a misspelt array path gets its did-you-mean, not a grid-syntax error
            check_hardware_path(hw, text.split("=", 1)[0].strip())
    model_axes = [parse_model_set(t) for t, r in zip(args.sets, rebuilt) if r]
    axes = [parse_set(t) for t, r in zip(args.sets, rebuilt) if not r]
    if model_axes and not axes and args.sample != "grid":
        raise ConfigError(None, "--sample", "grid when only model, scenario or rebuilt hardware fields are swept "
                          "(they are always a grid; random and lhs sample the array hardware fields: "
                          "docs/whatif.md)", args.sample)
    columns = sample(axes, sampler=args.sample, points=args.points, seed=args.seed)
    overrides = sorted((k, str(v) if k == "deployment" else v) for k, v in deployment_overrides(args).items())
    if args.batch is not None:
        if args.batch < 1:
            raise ConfigError(None, "--batch", "a positive integer", args.batch)
        overrides.append(("batch", args.batch))
    specs = [SweepSpec(workload=args.workload, hardware=args.hw, overrides=tuple(overrides), settings=settings)
             for settings in model_points(model_axes)]
    _check_settings(specs)
    progress = None if args.quiet or args.format != "table" else progress_bar("sweep", "tasks")
    result = run_sweep(specs, columns, chunk=args.chunk, workers=args.workers, cluster=args.cluster,
                       progress=progress)
    paths = [a.path for a in model_axes] + [a.path for a in axes]
    n = len(next(iter(columns.values()))) if columns else 1
    shown = {a.path: dict(zip(a.texts, a.values)) for a in model_axes}  # each value as the rows show it
    point_values = [{path: shown[path][text] for path, _, text in (t.partition("=") for t in spec.settings)}
                    for spec in specs]
    rows = []
    for i in range(len(result["pareto"])):  # model point i // n, hardware point i % n
        row = dict(point_values[i // n])
        row.update({a.path: float(columns[a.path][i % n]) for a in axes})
        # a layout that does not fit has no phase metrics: None in JSON (NaN is not JSON), empty in CSV
        row.update({m: (None if result[m][i] != result[m][i] else float(result[m][i])) for m in METRICS})
        row["pareto"] = bool(result["pareto"][i])
        rows.append(row)
    header = [*paths, *METRICS, "pareto"]
    if args.out:
        _write(args.out, rows, header)
    if args.plot:
        from archsim.report.plots import pareto_chart
        pareto_chart(rows, args.plot)
    if args.html:
        from archsim.cli.report import write_html
        from archsim.report.html import sweep_page
        write_html(args.html, sweep_page(rows, _chart_dimensions(model_axes, axes), list(TABLE_METRICS),
                                         f"sweep of {args.workload} on {args.hw}"))
    if args.format == "json":
        print(json.dumps({"workload": args.workload, "hardware": args.hw, "sets": args.sets, "sample": args.sample,
                          "points": rows}))
    elif args.format == "csv":
        write_csv(rows, header)
    else:
        _table(rows, paths)
    return 0


def _check_settings(specs) -> None:
    """Apply every model point's settings to the loaded workload before pricing (cheap: no graph), so that a bad
    field or value is one ConfigError with the loaders' did-you-mean hint, raised here rather than in a worker."""
    import dataclasses

    from archsim.config.overrides import apply_settings, parse_setting
    from archsim.whatif.sweep import spec_inputs

    if specs[0].settings:
        workload, hw = spec_inputs(dataclasses.replace(specs[0], settings=()))
        for spec in specs:
            apply_settings(workload, hw, [parse_setting(t) for t in spec.settings])


def _dimension(path: str) -> str | None:
    """A swept field's unit dimension: a hardware field's by its path; None for model and scenario fields and
    hardware fields without one."""
    from archsim.errors import ConfigError
    from archsim.whatif.sweep_spec import dimension_of, is_model_path

    if is_model_path(path):
        return None
    try:
        return dimension_of(path)
    except ConfigError:
        return None


def _chart_dimensions(model_axes, axes) -> dict[str, str]:
    """Each swept field's unit dimension for the HTML charts' ticks; a model field as a count when its values are
    whole numbers (a model field with float or word values has no chart axis)."""
    from archsim.whatif.sweep_spec import dimension_of

    dims = {a.path: dimension_of(a.path) for a in axes}
    for a in model_axes:
        values = a.values
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            dim = _dimension(a.path) or ("count" if all(type(v) is int for v in values) else None)
            if dim is not None:
                dims[a.path] = dim
    return dims


def _check_flags(args: argparse.Namespace) -> None:
    """Integer flags that must be positive (seed: >= 0), checked for every sampler, not only where used."""
    from archsim.errors import ConfigError
    if args.seed < 0:
        raise ConfigError(None, "--seed", "an integer >= 0", args.seed)
    if args.points is not None and args.points < 1:
        raise ConfigError(None, "--points", "a positive number of samples", args.points)
    for flag, value in (("--workers", args.workers), ("--chunk", args.chunk)):
        if value is not None and value < 1:
            raise ConfigError(None, flag, "a positive integer", value)


def _write(path: str, rows: list[dict], header: list[str]) -> None:
    from archsim.errors import ConfigError
    try:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            if path.endswith(".json"):
                json.dump({"points": rows}, fh)
            else:
                write_csv(rows, header, fh)
    except OSError as err:
        raise ConfigError(None, "--out", "a writable file path", f"{path} ({err.strerror})") from None


# the table's metric columns and the unit each is printed in (units.format_quantity dimensions)
TABLE_METRICS = {"decode.tokens_per_s": None, "energy.joules_per_token": "energy_j",
                 "energy.decode_power_w_per_device": "power_w", "prefill.latency_s": "time_s"}


def _cell(value, dimension: str | None) -> str:
    """A table cell: a swept field or metric with its unit, as it would be written ("2 TB/s", "120 ms")."""
    from archsim.units import format_quantity

    if not isinstance(value, float) or value != value:
        return "-" if value is None or value != value else str(value)
    return format_quantity(value, dimension) if dimension else f"{value:.4g}"


def _table(rows: list[dict], paths: list[str], limit: int = 20) -> None:
    units = {**{p: _dimension(p) for p in paths}, **TABLE_METRICS}
    cols = [*paths, *TABLE_METRICS, "pareto"]
    print("  ".join(f"{c:>24s}" for c in cols))
    for row in rows[:limit]:
        print("  ".join(f"{_cell(row[c], units.get(c)):>24s}" for c in cols))
    if len(rows) > limit:
        print(f"... {len(rows) - limit} more points (use --out to keep them all)")
    front = sum(r["pareto"] for r in rows)
    print(f"{len(rows)} points, {front} on the Pareto front (decode tokens/s vs J/token vs $/Mtoken)")
