"""One self-contained HTML page per result (``archsim report``, ``serve --html``, ``sweep --html``): the numbers as
tables and the charts as inline SVG (report/svg.py), with no script, stylesheet or font fetched from anywhere, so
the page opens offline."""
from __future__ import annotations

import math
from html import escape
from typing import Mapping, Sequence

from archsim.report import svg
from archsim.units import format_quantity

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 2px 10px; text-align: left; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
svg text { font-size: 11px; fill: #222; } svg .title { font-size: 13px; font-weight: 600; }
svg .axis { stroke: #222; } svg .grid { stroke: #e4e4e4; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; } footer { color: #777; margin-top: 3em; font-size: 0.85em; }
"""


def page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """The page: a title and (heading, HTML) sections."""
    body = "".join(f"<h2>{escape(h)}</h2>{content}" for h, content in sections)
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{body}"
            "<footer>archsim: every figure is computed by the model from the YAML inputs; see the docs for their "
            "sources.</footer></body></html>\n")


def table(rows: Sequence[Sequence[object]], header: Sequence[str] = ()) -> str:
    """An HTML table; numbers right-aligned."""
    head = "<tr>" + "".join(f"<th>{escape(str(h))}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f'<td class="num">{"-" if not math.isfinite(value) else format(value, ".4g")}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value:,}</td>'
    return f"<td>{escape(str(value))}</td>"


# -- run ------------------------------------------------------------------------------------------------------------

def _kv_rows(m, kv_format: str) -> list[tuple[str, str]]:
    """With sliding-window layers (gpt-oss), what one sequence's KV holds at the scenario's context (run's text rows,
    report.table.kv_sequence_rows), which the memory bar's KV total alone does not explain; none otherwise."""
    if not m.sliding_layers:
        return []
    import dataclasses

    from archsim.report.table import kv_sequence_rows
    rows = kv_sequence_rows(dataclasses.asdict(m), m.layers, kv_format)
    return rows[:1] + [("KV cache, " + k.strip(), v) for k, v in rows[1:]]  # the text's indented parts, named


def run_page(report, resolved) -> str:
    """A projection (``estimate``'s Report and the Resolved deployment behind it): model, deployment, memory, the
    time and energy of each phase, the roofline of each phase's ops and the heaviest ops."""
    m, s, d, mem = report.model, report.scenario, report.deployment, report.memory
    sections = [("Model and deployment", table([
        ("model", f"{m.name} ({m.architecture})"),
        ("parameters (total / active)", f"{m.total_params:,} / {m.active_params:,}"),
        *_kv_rows(m, s.kv_cache),
        ("scenario", f"batch {s.batch}, prompt {s.prompt_len:,}, output {s.output_len:,}, weights {s.weights}"),
        ("deployment", f"{d.devices} x {d.hardware}" + (", disaggregated" if d.disaggregated else "")),
        *[(f"{p['role']} pool", f"{p['instances']} x {p['devices_per_instance']} devices: {p['layout']['label']}")
          for p in d.pools],
        ("stack", "archsim's reference kernels" if d.stack is None else f"{d.stack['name']} {d.stack['version']}"),
    ])), ("Memory per device", _memory(mem))]
    plan = resolved.plan
    breakdowns = [(name, b) for name, b in (("prefill", plan.prefill), ("decode", plan.decode)) if b is not None]
    if breakdowns:
        sections.append(("Step time", _step_bars(breakdowns) + table(_phase_rows(report), ("phase", "figure",
                                                                                         "value"))))
        charts = [_roofline(name, b.graph_cost, resolved.deployment.hardware) for name, b in breakdowns]
        sections.append(("Roofline (one micro-batch of each phase's first forward)",
                         f'<div class="charts">{"".join(charts)}</div>'))
        sections.append(("Timeline of the projected step (bottleneck device; archsim run --trace writes it for "
                         "Perfetto)", _timelines(resolved)))
        sections.append(("Heaviest ops", "".join(_heaviest(name, ph) for name, ph in
                                                 (("prefill", report.prefill), ("decode", report.decode)) if ph)))
    else:
        sections.append(("Not priced", f"<p>{escape(str(mem.needs))}</p>"))
    return page(f"{report.workload} on {d.hardware}", sections)


def _memory(mem) -> str:
    parts = [("weights", mem.weights_bytes / 1e9), ("KV cache", mem.kv_cache_bytes / 1e9),
             ("activations", mem.activations_bytes / 1e9)]
    bar = svg.stacked_bar([("busiest device", parts)], title="Memory per device (GB); the line is the capacity",
                          unit="GB", total=mem.capacity_bytes / 1e9)
    return bar + table([("total / capacity", f"{format_quantity(mem.per_device_bytes, 'bytes')} / "
                                             f"{format_quantity(mem.capacity_bytes, 'bytes')}"),
                        ("fits", "yes" if mem.fits else f"no: {mem.needs}")])


def _step_bars(breakdowns) -> str:
    rows = []
    for name, b in breakdowns:
        rows.append((name, [("compute", b.compute_s * 1e3), ("exposed communication", b.exposed_s * 1e3),
                            ("pipeline bubble", b.bubble_s * 1e3), ("host (stack)", b.host_s * 1e3)]))
    return svg.stacked_bar(rows, title="Step time by part (ms)", unit="ms")


def _phase_rows(report) -> list[tuple]:
    rows = []
    if report.prefill:
        p = report.prefill
        rows += [("prefill", "latency", format_quantity(p.latency_s, "time_s")),
                 ("prefill", "tokens/s per device", p.tokens_per_s_per_device), ("prefill", "bound", p.bound),
                 ("prefill", "energy per device", format_quantity(p.energy_j, "energy_j"))]
    if report.decode:
        dec = report.decode
        rows += [("decode", "time per output token", format_quantity(dec.tpot_s, "time_s")),
                 ("decode", "tokens/s per device", dec.tokens_per_s_per_device), ("decode", "bound", dec.bound),
                 ("decode", "energy per device", format_quantity(dec.energy_j, "energy_j"))]
    if report.energy:
        rows += [("both", "energy per output token", format_quantity(report.energy.joules_per_token, "energy_j")),
                 ("both", "TOPS/W", report.energy.tops_per_watt)]
    return rows


def roofline_points(cost, hw) -> tuple[dict[str, tuple[list[float], list[float]]], float, float]:
    """Per op kind, the ops' (arithmetic intensity FLOP/B of main memory, achieved FLOP/s), and the chip's matrix
    peak and main-memory bandwidth (the roof)."""
    main = hw.main_memory.name
    groups: dict[str, tuple[list[float], list[float]]] = {}
    for name in cost.ops:
        op = cost.ops[name]
        nbytes = op.bytes_by_level.get(main, 0.0)
        if op.flops <= 0 or nbytes <= 0 or op.time_s <= 0:
            continue
        xs, ys = groups.setdefault(op.kind, ([], []))
        xs.append(op.flops / nbytes)
        ys.append(op.flops / op.time_s)
    peak = hw.engine_for("matrix").peak_flop_per_s.get(cost.mfu_dtype, 0.0)
    return groups, peak, hw.main_memory.bandwidth_bytes_per_s


def _roofline(name: str, cost, hw) -> str:
    groups, peak, bandwidth = roofline_points(cost, hw)
    xs = [v for g in groups.values() for v in g[0]] or [1.0]
    lo, hi = min(xs + [peak / bandwidth]) / 2, max(xs + [peak / bandwidth]) * 2
    roof = ([lo, peak / bandwidth, hi], [bandwidth * lo, peak, peak])
    return svg.scatter_chart([(kind, gx, gy) for kind, (gx, gy) in sorted(groups.items())], lines=[roof],
                             title=f"{name}: ops against the roof ({cost.mfu_dtype} peak, main memory)",
                             x_label="arithmetic intensity (FLOP per byte of main memory)",
                             y_label="achieved FLOP/s")


def _timelines(resolved) -> str:
    """One Gantt chart per traced step (report/trace_step.py): its lanes (step, compute, communication, host)."""
    from archsim.report.trace_step import deployment_trace

    events = deployment_trace(resolved)["traceEvents"]
    names = {(e["pid"], e.get("tid", 0)): e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] in ("process_name", "thread_name")}
    lanes: dict[int, dict[int, list]] = {}
    for e in events:
        if e["ph"] == "X":
            lanes.setdefault(e["pid"], {}).setdefault(e["tid"], []).append(
                (e["ts"] / 1e3, e["dur"] / 1e3, e["name"]))  # the trace's microseconds as ms
    charts = []
    for pid, threads in sorted(lanes.items()):
        title = names.get((pid, 0), f"process {pid}").split(":")[0]
        charts.append(svg.timeline([(names.get((pid, tid), str(tid)), bars) for tid, bars in sorted(threads.items())],
                                   title=title))
    return f'<div class="charts">{"".join(charts)}</div>'


def _heaviest(name: str, phase) -> str:
    from archsim.report.table import group_layers

    rows = [(f"{op.share:.1%}", format_quantity(op.time_s, "time_s"), op.bound,
             label + (f" ({count} layers, each)" if count > 1 else ""))
            for label, op, count in group_layers(phase.heaviest_ops)]
    return f"<h3>{escape(name)}</h3>" + table(rows, ("share", "time", "bound", "op"))


# -- serve ----------------------------------------------------------------------------------------------------------

def serve_page(summary: Mapping, recorder, title: str) -> str:
    """A serving simulation: the benchmark-tool metrics, the latency percentiles and the time series (batch,
    queue, KV occupancy, board power) of every replica."""
    b = summary.get("benchmark", {})
    stats = ("mean", "median", "std", "p90", "p99")
    metrics = [(name, *(b.get(f"{q}_{name}_ms", float("nan")) for q in stats)) for name in ("ttft", "tpot", "itl",
                                                                                              "e2el")]
    overview = [(k, b[k]) for k in ("completed", "failed", "request_throughput", "output_throughput",
                                    "total_token_throughput") if k in b]
    t = list(recorder.series_t)
    step = max(1, len(t) // 2000)  # at most ~2,000 points per series
    series = [("batch (sequences)", recorder.series_batch), ("queue (requests)", recorder.series_queue),
              ("KV occupancy (fraction)", recorder.series_kv),
              ("board power of the iterating replica (W, all its GPUs)", recorder.series_power_w)]
    charts = [svg.line_chart([(label, t[::step], list(values)[::step])], title=label, x_label="time (s)",
                             y_label=label) for label, values in series]
    sections = [("Benchmark results (vllm bench serve names)", table(overview, ("metric", "value"))),
                ("Latencies (ms)", table(metrics, ("metric", *stats))),
                ("Over time", f'<div class="charts">{"".join(charts)}</div>')]
    breakdown = summary.get("ttft_breakdown_s")
    if breakdown:
        sections.append(("TTFT by part (mean)", svg.stacked_bar(
            [("mean TTFT", [(k, v * 1e3) for k, v in breakdown.items() if math.isfinite(v)])],
            title="mean TTFT by part (ms)", unit="ms")))
    return page(title, sections)


# -- sweep ----------------------------------------------------------------------------------------------------------

def sweep_page(rows: Sequence[Mapping], paths: Mapping[str, str], metrics: Sequence[str], title: str) -> str:
    """A sweep: each metric against each swept field (``paths``: field -> its unit dimension, for the ticks), and
    the Pareto front (decode tokens/s against J/token)."""
    charts = []
    for path, dimension in paths.items():
        for metric in metrics:
            pts = sorted((r[path], r[metric]) for r in rows if r.get(metric) is not None)
            if pts:
                charts.append(svg.line_chart([(metric, [p[0] for p in pts], [p[1] for p in pts])],
                                             title=f"{metric} against {path}", x_label=path, y_label=metric,
                                             x_format=lambda v, d=dimension: format_quantity(v, d)))
    fits = [r for r in rows if r.get("decode.tokens_per_s") is not None and r.get("energy.joules_per_token")]
    front = [r for r in fits if r.get("pareto")]
    rest = [r for r in fits if not r.get("pareto")]
    pareto = svg.scatter_chart(
        [(name, [r["energy.joules_per_token"] for r in group], [r["decode.tokens_per_s"] for r in group])
         for name, group in (("Pareto front", front), ("other points", rest)) if group],
        title="decode tokens/s against J per output token", x_label="J per output token",
        y_label="decode tokens/s", log_x=False, log_y=False)
    head = list(paths) + list(metrics) + ["pareto"]
    return page(title, [("Metrics against the swept fields", f'<div class="charts">{"".join(charts)}</div>'),
                        ("Pareto front", pareto),
                        ("Points", table([[r.get(c) for c in head] for r in rows[:200]], head))])
