"""Human-readable text rendering of a Report (what ``archsim run`` prints by default)."""
from __future__ import annotations

import dataclasses
import re
from typing import Mapping

from archsim.report.summary import PhaseSummary, Report
from archsim.units import format_quantity


def _count(n: float) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}"
    return f"{n:.0f}"


def _plural(n: int, word: str, ending: str) -> str:
    """``n word`` with the plural ending when n > 1."""
    return f"{n} {word}{ending if n > 1 else ''}"


def _rows(title: str, rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(k) for k, _ in rows)
    return [title] + [f"  {k.ljust(width)}  {v}" for k, v in rows] + [""]


def _phase_rows(p: PhaseSummary) -> list[tuple[str, str]]:
    rows = [
        ("bound", p.bound),
        ("MFU", f"{p.mfu:.1%}"),
        ("HBM bandwidth used", f"{p.hbm_bandwidth_utilisation:.1%}"),
        ("energy per device", format_quantity(p.energy_j, "energy_j")),
        ("average power per device (board)", format_quantity(p.avg_power_w, "power_w")),
        ("TOPS/W", f"{p.tops_per_watt:.3f}"),
    ]
    if p.host_s:
        rows.append(("host time (stack)", format_quantity(p.host_s, "time_s")))
    if p.communication_s:
        rows.append(("communication (exposed)", f"{format_quantity(p.communication_s, 'time_s')} "
                                                f"({format_quantity(p.exposed_communication_s, 'time_s')})"))
    return rows


_LAYER = re.compile(r"^layers\.(\d+)\.")


def group_layers(ops) -> list[tuple[str, object, int]]:
    """(name, first op, count) with the same op of consecutive layers at the same time and bound merged into one
    row named by the layer range: ``layers.3..7.mlp.experts.gate_up`` stands for five identical rows."""
    groups: list[list] = []  # [stem, first layer, last layer, first op, count]
    for op in ops:
        m = _LAYER.match(op.name)
        if m is None:
            groups.append([op.name, None, None, op, 1])
            continue
        layer, stem = int(m.group(1)), op.name[m.end():]
        last = groups[-1] if groups else None
        if (last and last[1] is not None and last[0] == stem and last[2] + 1 == layer
                and last[3].time_s == op.time_s and last[3].bound == op.bound):
            last[2], last[4] = layer, last[4] + 1
        else:
            groups.append([stem, layer, layer, op, 1])
    out = []
    for stem, first, last, op, count in groups:
        name = stem if first is None else (f"layers.{first}.{stem}" if first == last else
                                           f"layers.{first}..{last}.{stem}")
        out.append((name, op, count))
    return out


def _heaviest(p: PhaseSummary, label: str, limit: int = 5) -> list[str]:
    """The heaviest ops, the same op of consecutive layers on one row (its time and share are per layer)."""
    lines = [f"Heaviest {label} ops"]
    for name, op, count in group_layers(p.heaviest_ops)[:limit]:
        lines.append(f"  {op.share:6.1%}  {format_quantity(op.time_s, 'time_s'):>10}  {op.bound:<11} {name}"
                     f"{f' ({count} layers; time and share per layer)' if count > 1 else ''}")
    return lines + [""]


def _kv_rows(m, kv_format: str) -> list[tuple[str, str]]:
    """KV bytes per token; with sliding-window layers (gpt-oss), what one sequence holds at the scenario's context:
    a token per full-attention layer plus the sliding layers' window (a per-token figure would count every layer)."""
    if not m.sliding_layers:
        return [("KV cache per token", f"{m.kv_bytes_per_token:,.0f} B ({kv_format})")]
    return kv_sequence_rows(dataclasses.asdict(m), m.layers, kv_format)


def kv_sequence_rows(kv: Mapping, layers: int, kv_format: str) -> list[tuple[str, str]]:
    """What one sequence's KV holds, as rows: the bytes at ``kv['kv_context']`` tokens, the per-token part of the
    full-attention layers and the sliding layers' fixed window part (``kv`` has graph.params.kv_sequence_parts'
    keys; ``layers`` the main model's depth). Shared by run, compare, graph and the HTML report."""
    rows = [("KV cache per sequence", f"{kv['kv_bytes_per_sequence']:,.0f} B at {kv['kv_context']:,} tokens "
                                      f"({kv_format})"),
            ("  full-attention layers", f"{kv['kv_bytes_per_token_full_layers']:,.0f} B per token "
                                        f"({layers - kv['sliding_layers']} layers)")]
    if kv["sliding_layers"]:
        rows.append(("  sliding-window layers", f"{kv['kv_bytes_sliding_window']:,.0f} B ({kv['sliding_layers']} "
                                                f"layers, last {kv['sliding_window']:,} tokens)"))
    return rows


def format_report(r: Report) -> str:
    """The report as aligned text sections."""
    m, s, d, mem = r.model, r.scenario, r.deployment, r.memory
    out = _rows(f"Model: {m.name} ({m.architecture})", [
        ("parameters (total / active)", f"{_count(m.total_params)} / {_count(m.active_params)}"),
        *_kv_rows(m, s.kv_cache),
        ("layers, max context", f"{m.layers}, {m.max_context:,}"),
    ])
    deployment_rows = [("deployment", f"{d.devices} x {d.hardware}{' (auto)' if d.auto else ''}"
                                      f"{', disaggregated' if d.disaggregated else ''}")]
    for pool in d.pools:
        deployment_rows.append((f"{pool['role']} pool", f"{pool['instances']} x {pool['devices_per_instance']} "
                                                        f"devices, batch {pool['batch']}: {pool['layout']['label']}"))
    deployment_rows.append(("prefill chunk, CUDA graphs",
                            f"{d.prefill_chunk or 'none'} tokens, {'on' if d.cuda_graphs else 'off'} (decode)"))
    if d.stack is not None:
        st = d.stack
        libs = ", ".join(f"{kind} {lib}" for kind, lib in st["libraries"].items())
        deployment_rows.append(("stack", f"{st['name']} {st['version']} on {st['family']}: {libs}; host "
                                         f"{format_quantity(st['host_iteration_s'], 'time_s')} per iteration"
                                         f"{' (overlapped)' if st['host_overlapped'] else ''}"))
    out += _rows(f"Scenario: batch {s.batch}, prompt {s.prompt_len:,}, output {s.output_len:,}, "
                 f"weights {s.weights}", deployment_rows)
    mem_rows = [
        ("weights", format_quantity(mem.weights_bytes, "bytes")),
        ("KV cache", format_quantity(mem.kv_cache_bytes, "bytes")),
        ("activations", format_quantity(mem.activations_bytes, "bytes")),
        ("total / capacity", f"{format_quantity(mem.per_device_bytes, 'bytes')} / "
                             f"{format_quantity(mem.capacity_bytes, 'bytes')}"),
        ("fits", "yes" if mem.fits else f"NO: {mem.needs}"),
    ]
    if mem.max_batch_at_context is not None:
        mem_rows.append(("largest batch at this context", f"{mem.max_batch_at_context:,}"))
    if mem.max_context_at_batch is not None:
        mem_rows.append(("longest context at this batch", f"{mem.max_context_at_batch:,}"))
    out += _rows("Memory per device", mem_rows)
    if r.energy is None:
        out.append("Not priced: the deployment does not fit.")
        return "\n".join(out) + "\n"
    p, dec, e = r.prefill, r.decode, r.energy
    if p is not None:
        out += _rows(f"Prefill ({_plural(p.forwards, 'forward', 's')}, "
                     f"{_plural(p.micro_batches, 'micro-batch', 'es')})", [
            ("latency", format_quantity(p.latency_s, "time_s")),
            ("tokens/s (instance / device)", f"{p.tokens_per_s:,.0f} / {p.tokens_per_s_per_device:,.0f}"),
        ] + _phase_rows(p))
    if dec is not None:
        out += _rows(f"Decode (step at context {dec.context:,}, "
                     f"{_plural(dec.micro_batches, 'micro-batch', 'es')})", [
            ("time per output token", format_quantity(dec.tpot_s, "time_s")
             + (f" (step / {dec.tokens_per_step:.3g} tokens: MTP drafts accepted)" if dec.tokens_per_step != 1 else "")),
            ("tokens/s (instance / device)", f"{dec.tokens_per_s:,.1f} / {dec.tokens_per_s_per_device:,.1f}"),
        ] + _phase_rows(dec))
    energy_rows = [(label, format_quantity(value, "energy_j")) for label, value in
                   (("per output token (GPU boards)", e.joules_per_token),
                    ("per output token (node: + host power)", e.joules_per_token_node),
                    ("per output token (wall: node x PUE)", e.joules_per_token_wall),
                    ("per prompt token (GPU boards)", e.prefill_joules_per_token))
                   if value is not None]
    power_rows = [(label, format_quantity(value, "power_w")) for label, value in
                  (("prefill power per device (board, average)", e.prefill_power_w_per_device),
                   ("decode power per device (board, average)", e.decode_power_w_per_device))
                  if value is not None]
    out += _rows("Energy", energy_rows + power_rows + [("TOPS/W (phases priced)", f"{e.tops_per_watt:.3f}")])
    if r.system is not None:
        sy = r.system
        out += _rows(f"System (steady state, bound: {sy.bound})", [
            ("requests/s", f"{sy.requests_per_s:,.3f}"),
            ("output tokens/s (all / per device)", f"{sy.output_tokens_per_s:,.1f} / "
                                                   f"{sy.output_tokens_per_s_per_device:,.1f}"),
        ])
    if dec is not None:
        out += _heaviest(dec, "decode")
    if p is not None:
        out += _heaviest(p, "prefill")
    return "\n".join(out)
