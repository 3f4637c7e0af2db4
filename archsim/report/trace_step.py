"""The projected full-scale step as a timeline: the ops of one prefill step and one decode step on the bottleneck
device of each pool, laid out the way mapping/phase_model.py prices them, for the trace writer (report/trace.py).

What the layout takes from the priced step (a PhaseBreakdown and its PhaseModel), forward by forward:
- **compute stream**: the ops of one micro-batch of the forward's busiest graph, each for its priced time (the
  per-op prices x 1/cp), one instance per op the bottleneck pipeline stage runs (a compact graph's representative
  op expanded to every layer it stands for, in full-graph order), once per micro-batch;
- **communication stream**: each decoder layer's collectives (by kind for the step's first forward, whose
  per-layer split the breakdown keeps; as one event for later forward shapes) after the layer's compute of that
  micro-batch, and the pipeline send after the stage's work;
- the overlap model: with two-micro-batch overlap a layer of one micro-batch exposes ``max(comm - compute,
  f x comm)`` (``phase_model._exposed``; f the share of SMs the exchange holds) as a gap on the compute stream
  after its compute, so the other micro-batch's compute runs beside its communication; without overlap the
  compute stream waits for each layer's collectives. The pipeline bubble (fill and drain of the bottleneck
  stage, one lump) closes the forward's GPU work on the compute stream;
- **host stream**: the stack's host time per iteration (each forward is one iteration): beside the GPU work when
  the stack overlaps the two (the forward then lasts max(GPU, host)), after it otherwise.
A forward shape that runs n times is drawn once in full, then as one event lasting the other n - 1 (a fractional
weight below one, from the chunked-prefill pricing, as one event of that weight). A ``step`` thread holds one event
lasting the priced step, ``PhaseBreakdown.time_s``; the compute and host streams end exactly there.

The communication stream keeps its dependencies (a collective starts after the compute it carries), so when the
collectives outweigh the compute beside them (communication-bound overlap) the last micro-batch's collectives of
the last layer have no compute left to hide behind, and the stream runs past the priced end by at most one
micro-batch's layer compute: the model hides every micro-batch's collectives, this tail included.
``otherData.steps[].communication_overhang_s`` reports it; without it the span, end minus start, equals
``time_s`` (tests/report/test_trace_step.py tests both).
"""
from __future__ import annotations

from math import fsum
from typing import TYPE_CHECKING

from archsim.report.trace import Span, trace_document

if TYPE_CHECKING:
    from archsim.config.model import ModelConfig
    from archsim.mapping.layer_comm import LayerComm
    from archsim.mapping.phase_model import ForwardModel, PhaseModel
    from archsim.mapping.phases import PhaseBreakdown
    from archsim.mapping.resolve import Resolved

STREAMS = ("step", "compute", "communication", "host")
# LayerComm fields in the order the layer meets them: the K/V exchange before attention, the attention TP
# all-reduce, the MoE dispatch before the experts and the combine after them
COMM_FIELDS = ("cp_kv_exchange_s", "tp_all_reduce_s", "ep_dispatch_s", "ep_combine_s")


def deployment_trace(resolved: "Resolved") -> dict:
    """The trace of a priced deployment (``api.plan``): one process per pool and phase (its bottleneck device),
    each step starting at 0; ``otherData.steps`` lists each process's priced step time."""
    dep = resolved.deployment
    spans: list[Span] = []
    steps = []
    for pool, priced in zip(dep.pools, resolved.plan.pools):
        par = priced.parallelism
        for phase in ("prefill", "decode"):
            bd = getattr(priced, phase)
            if bd is None:
                continue
            process = (f"{pool.role} pool, {phase} step: {par.devices} x {dep.hardware.name} {par.label()} "
                       f"(bottleneck device: stage {bd.worst_stage}, busiest replica and EP rank)")
            drawn = step_spans(bd, dep.model, process=process)
            priced_parts = {"time_s": bd.time_s, "compute_s": bd.compute_s, "exposed_communication_s": bd.exposed_s,
                            "bubble_s": bd.bubble_s, "host_s": bd.host_s, "forwards": bd.forwards,
                            "micro_batches": bd.micro_batches}
            spans.append(Span(process=process, thread="step", name=f"{phase} step", cat="step", start_s=0.0,
                              dur_s=bd.time_s, args=priced_parts))
            spans.extend(drawn)
            overhang = max(0.0, max(s.end_s for s in drawn) - bd.time_s)
            steps.append({"pid": len(steps) + 1, "process": process, "phase": phase, **priced_parts,
                          "communication_overhang_s": overhang})
    return trace_document(spans, thread_order=STREAMS,
                          other={"workload": resolved.workload.name, "hardware": dep.hardware.name, "steps": steps})


def step_spans(bd: "PhaseBreakdown", model: "ModelConfig", *, process: str) -> list[Span]:
    """One priced step (module docstring) as spans starting at 0 on ``process``."""
    if bd.model is None:
        raise ValueError("the breakdown keeps no PhaseModel to lay out")
    pm: PhaseModel = bd.model
    spans: list[Span] = []
    t = 0.0
    for index, fwd in enumerate(pm.forwards):
        label = f"forward {index}" if len(pm.forwards) > 1 else "forward"
        drawn, end = _forward(fwd, pm, model, bd.worst_stage, bd.layer_comm if index == 0 else None,
                              process=process, t0=t, label=label)
        one = end - t
        if fwd.count >= 1:
            spans.extend(drawn)
            t = end
            rest = fwd.count - 1
        else:
            rest = fwd.count
        if rest > 0:
            spans.append(Span(process=process, thread="compute", name=f"{label} x {rest:g} more", cat="repeat",
                              start_s=t, dur_s=rest * one,
                              args={"forwards": rest, "forward_s": one, "note": "the same forward shape again"}))
            t += rest * one
    return spans


def _forward(fwd: "ForwardModel", pm: "PhaseModel", model: "ModelConfig", worst: int,
             layer_comm: "tuple[LayerComm, ...] | None", *, process: str, t0: float, label: str):
    """One forward's spans and its end (module docstring)."""
    from archsim.mapping.device_memory import stage_layers

    term = fwd.terms[0]  # the busiest replica's graph: the only term timed on the bottleneck device
    wc, scale = term.cost.work_cost, term.time_scale
    times = wc.time_s
    stage = list(stage_layers(model, fwd.pp)[worst])
    split = dict(zip(stage, layer_comm)) if layer_comm is not None and len(layer_comm) == len(stage) else {}
    # phases._price_forward lists the layer kinds (dense, MoE) in the order the stage first meets them
    kind_keys = list(dict.fromkeys(model.is_moe_layer(layer) for layer in stage))
    kinds = dict(zip(kind_keys, fwd.kinds))
    per_layer = {key: float(times[k.rows].sum() * scale) for key, k in kinds.items()}
    spans: list[Span] = []
    mb = fwd.mb

    def op_spans(ops, m: int, t: float) -> float:
        for name, row, layer in ops:
            dur = float(times[row]) * scale
            op = term.cost.op_list[row]
            spans.append(Span(process=process, thread="compute", name=name, cat=op.kind, start_s=t, dur_s=dur,
                              args={"micro_batch": m, "layer": layer, "bound": wc.bound_labels[wc.bound_index[row]],
                                    "forward": label}))
            t += dur
        return t

    def comm_spans(names_durs, m: int, start: float, layer) -> float:
        for name, dur in names_durs:
            spans.append(Span(process=process, thread="communication", name=name, cat="collective", start_s=start,
                              dur_s=dur, args={"micro_batch": m, "layer": layer, "forward": label}))
            start += dur
        return start

    t, comm_free = t0, t0
    for layer, ops in _blocks(_device_ops(term, set(stage))):
        if layer is None:  # embedding, final norm and head, MTP modules: no collectives of a layer
            for m in range(mb):
                t = op_spans(ops, m, t)
            continue
        k = kinds[model.is_moe_layer(layer)]
        exposed = max(k.comm_s - per_layer[model.is_moe_layer(layer)], k.sm_fraction * k.comm_s)
        parts = ([(f"layers.{layer}.{f[:-2]}", getattr(split[layer], f)) for f in COMM_FIELDS
                  if getattr(split[layer], f) > 0] if layer in split else
                 ([(f"layers.{layer}.collectives", k.comm_s)] if k.comm_s > 0 else []))
        for m in range(mb):
            t = op_spans(ops, m, t)
            if parts:
                comm_free = comm_spans(parts, m, max(t, comm_free), layer)
            if fwd.overlapped:
                t += exposed          # exposed communication: a gap on the compute stream
            elif parts:
                t = comm_free         # the compute stream waits for the layer's collectives
    if fwd.pp_send_s > 0:
        if fwd.overlapped:  # the send hides behind the stage's compute outside its layers (phase_model._exposed)
            layers = fsum(k.layers * per_layer[key] for key, k in kinds.items())
            gap = mb * max(0.0, fwd.pp_send_s - (_compute_s(term) - layers))
            start = max(comm_free, t + gap - mb * fwd.pp_send_s)
            t += gap
        else:
            start = max(t, comm_free)
            t = start + mb * fwd.pp_send_s
        for m in range(mb):
            start = comm_spans([("pp_send", fwd.pp_send_s)], m, start, None)
    if fwd.pp > 1:
        compute = _compute_s(term)
        comm = fwd.comm_mb_s + fwd.pp_send_s
        bubble = (fwd.pp - 1) * (max(compute, comm) if fwd.overlapped else compute + comm)
        spans.append(Span(process=process, thread="compute", name="pipeline bubble", cat="idle", start_s=t,
                          dur_s=bubble, args={"stages": fwd.pp, "note": "fill and drain of the bottleneck stage"}))
        t += bubble
    gpu = t - t0
    host = pm.host
    if host is not None and host.iteration_s > 0:
        start = t0 if host.overlapped else t
        spans.append(Span(process=process, thread="host", name="host iteration", cat="host", start_s=start,
                          dur_s=host.iteration_s, args={"overlapped": host.overlapped, "forward": label}))
        t = t0 + max(gpu, host.iteration_s) if host.overlapped else t + host.iteration_s
    return spans, t


def _compute_s(term) -> float:
    """One micro-batch's compute on the bottleneck device, summed as phase_model._weighted sums it."""
    times = term.cost.work_cost.time_s
    return fsum([float(times[r]) for r, c in enumerate(term.time_count) for _ in range(int(c))]) * term.time_scale


def _device_ops(term, stage: set) -> list[tuple[str, int, int | None]]:
    """(full-graph name, op row, decoder layer or None) of every op instance the bottleneck stage runs, in
    full-graph order: ``term.time_count`` instances of each row (phases._stage_count), a compact graph's
    representative op standing for each member layer on the stage."""
    from archsim.mapping.phase_graph import layer_of_op

    cost = term.cost
    reps = cost.repeats
    out = []
    for row, op in enumerate(cost.op_list):
        count = int(term.time_count[row])
        if count <= 0:
            continue
        key = layer_of_op(op.name)
        index = reps.full_index.get(op.name, row) if reps is not None else row
        if reps is not None and isinstance(key, int) and op.layer in reps.members:
            found = [(name, i, m) for (name, i), m in zip(reps.instances(op.name, op.layer), reps.members[op.layer])
                     if m in stage]
        else:
            found = [(op.name, index, key if isinstance(key, int) and key in stage else None)]
        if len(found) != count:  # keep the priced count whatever the naming says
            found = (found * count)[:count]
        out.extend((i, row, name, layer) for name, i, layer in found)
    out.sort(key=lambda x: (x[0], x[1]))
    return [(name, row, layer) for _, row, name, layer in out]


def _blocks(ops: list[tuple[str, int, int | None]]) -> list[tuple[int | None, list]]:
    """Consecutive op instances grouped by decoder layer (None: outside the decoder layers)."""
    blocks: list[tuple[int | None, list]] = []
    for op in ops:
        if blocks and blocks[-1][0] == op[2]:
            blocks[-1][1].append(op)
        else:
            blocks.append((op[2], [op]))
    return blocks
