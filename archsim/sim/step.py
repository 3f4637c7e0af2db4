"""A training or inference step as discrete events (simpy) on per-device compute and link resources:
two micro-batches overlapping compute with EP communication, and pipeline schedules (1F1B,
interleaved 1F1B, DualPipe-style bidirectional) with their bubbles; Chrome-trace timelines per device."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import simpy

from archsim.errors import ConfigError
from archsim.mapping.pipeline import ChunkTimes, PipeOp

US_PER_S = 1e6  # Chrome trace timestamps are microseconds


@dataclass(frozen=True, kw_only=True)
class LayerTimes:
    """One layer of one micro-batch on one device: the context-parallel K/V gather attention waits for,
    attention (+ dense or shared parts) compute, the EP dispatch, the expert compute and the EP combine
    (seconds)."""

    attention_s: float
    gather_s: float = 0.0
    dispatch_s: float = 0.0
    experts_s: float = 0.0
    combine_s: float = 0.0


@dataclass(frozen=True, kw_only=True)
class StepResult:
    """Makespan, busy time per resource and the timeline of one simulated step."""

    time_s: float
    busy_s: dict
    events: list = field(default_factory=list)

    def idle_s(self, resource: str) -> float:
        return self.time_s - self.busy_s.get(resource, 0.0)

    def chrome_trace(self) -> dict:
        """``{"traceEvents": [...]}``: one process per device, one thread (track) per resource."""
        out, seen = [], set()
        for device, resource, name, start, end in self.events:
            if (device, resource) not in seen:
                seen.add((device, resource))
                out.append({"ph": "M", "name": "thread_name", "pid": device, "tid": resource,
                            "args": {"name": resource}})
            out.append({"ph": "X", "name": name, "pid": device, "tid": resource, "ts": start * US_PER_S,
                        "dur": (end - start) * US_PER_S, "cat": resource})
        return {"traceEvents": out, "displayTimeUnit": "ms"}


class _Recorder:
    def __init__(self, env: simpy.Environment) -> None:
        self.env, self.events, self.busy = env, [], {}

    def hold(self, resource: simpy.Resource, device: int, track: str, name: str, duration: float):
        """Process: acquire ``resource``, hold it ``duration`` seconds, record the interval."""
        with resource.request() as req:
            yield req
            start = self.env.now
            yield self.env.timeout(duration)
            self.events.append((device, track, name, start, self.env.now))
            self.busy[track] = self.busy.get(track, 0.0) + duration


def simulate_microbatch_overlap(layers: Sequence[LayerTimes], micro_batches: int = 2) -> StepResult:
    """Run ``micro_batches`` micro-batches through ``layers`` on one device with one compute stream and
    one communication stream (DeepSeek's overlap: while one micro-batch's tokens are dispatched or
    combined, the other computes). Each micro-batch is a chain attention -> dispatch -> experts ->
    combine per layer; the resources are FIFO, so the interleaving emerges from the events."""
    if isinstance(micro_batches, bool) or not isinstance(micro_batches, int) or micro_batches < 1:
        raise ConfigError(None, "micro_batches", "a positive integer", micro_batches)
    env = simpy.Environment()
    rec = _Recorder(env)
    compute, link = simpy.Resource(env, capacity=1), simpy.Resource(env, capacity=1)

    def micro_batch(mb: int):
        for i, lt in enumerate(layers):
            if lt.gather_s:
                yield env.process(rec.hold(link, 0, "link", f"mb{mb}.L{i}.kv_gather", lt.gather_s))
            yield env.process(rec.hold(compute, 0, "compute", f"mb{mb}.L{i}.attn", lt.attention_s))
            if lt.dispatch_s:
                yield env.process(rec.hold(link, 0, "link", f"mb{mb}.L{i}.dispatch", lt.dispatch_s))
            if lt.experts_s:
                yield env.process(rec.hold(compute, 0, "compute", f"mb{mb}.L{i}.experts", lt.experts_s))
            if lt.combine_s:
                yield env.process(rec.hold(link, 0, "link", f"mb{mb}.L{i}.combine", lt.combine_s))

    for mb in range(micro_batches):
        env.process(micro_batch(mb))
    env.run()
    return StepResult(time_s=env.now, busy_s=rec.busy, events=rec.events)


@dataclass(frozen=True, kw_only=True)
class PipelineResult:
    """A simulated pipeline step: makespan, per-rank busy and idle (bubble) time, timeline."""

    time_s: float
    busy_s: tuple[float, ...]
    events: list = field(default_factory=list)

    @property
    def bubble_s(self) -> tuple[float, ...]:
        return tuple(self.time_s - b for b in self.busy_s)

    def chrome_trace(self) -> dict:
        return StepResult(time_s=self.time_s, busy_s={}, events=self.events).chrome_trace()


def simulate_pipeline(schedule: Sequence[Sequence[PipeOp]], times: ChunkTimes, *, kind: str,
                      chunks: int = 1) -> PipelineResult:
    """Execute ``schedule`` (one op list per rank, from ``one_f_one_b`` / ``interleaved_1f1b`` /
    ``dualpipe``) as events. An F waits for the same micro-batch's F on the previous stage, a B for the
    next stage's B (the last stage for its own F); crossing ranks adds ``times.p2p_s``. Each rank runs
    its ops in order on one compute stream. ``kind`` names the schedule ("1f1b", "interleaved",
    "dualpipe"), which fixes how (rank, chunk) maps to pipeline stages."""
    if kind not in ("1f1b", "interleaved", "dualpipe"):
        raise ConfigError(None, "schedule", "1f1b, interleaved or dualpipe", kind)
    pp = len(schedule)
    env = simpy.Environment()
    done: dict = {}
    events: list = []
    busy = [0.0] * pp

    def ev(key):
        if key not in done:
            done[key] = env.event()
        return done[key]

    def locate(rank: int, chunk: int) -> tuple[int, int, int]:
        """(line, stage, stages in line) of a rank's chunk."""
        if kind == "dualpipe":
            return (chunk, rank if chunk == 0 else pp - 1 - rank, pp)
        if kind == "interleaved":
            return (0, chunk * pp + rank, pp * chunks)
        return (0, rank, pp)

    def finish(key, delay: float):
        def proc():
            yield env.timeout(delay)
            ev(key).succeed()
        env.process(proc())

    def rank_proc(rank: int):
        f_next: dict = {}
        b_next: dict = {}
        deferred = []
        for op in schedule[rank]:
            needs, outs, dur, label = [], [], 0.0, op.kind
            if op.kind in ("F", "FB"):
                line, s, n = locate(rank, op.chunk)
                m = f_next.get((line, s), 0)  # a stage sees its micro-batches in order
                f_next[(line, s)] = m + 1
                if s > 0:
                    needs.append(("F", line, s - 1, m))
                outs.append((("F", line, s, m), times.p2p_s if s < n - 1 else 0.0))
                label = f"F{line}.mb{m}"
            if op.kind in ("B", "FB"):
                line, s, n = locate(rank, op.chunk if op.kind == "B" else op.chunk_b)
                m = b_next.get((line, s), 0)
                b_next[(line, s)] = m + 1
                needs.append(("B", line, s + 1, m) if s < n - 1 else ("F", line, s, m))
                outs.append((("B", line, s, m), times.p2p_s if s > 0 else 0.0))
                if op.split:
                    deferred.append(m)
                label = (label + "+" if op.kind == "FB" else "") + f"B{line}.mb{m}"
            if op.kind == "F":
                dur = times.f_s
            elif op.kind == "B":
                dur = times.b_s - times.w_s if op.split else times.b_s
            elif op.kind == "W":
                dur, label = times.w_s, f"W.mb{deferred.pop(0) if deferred else '?'}"
            else:
                dur = times.fb
            for key in needs:
                yield ev(key)
            start = env.now
            yield env.timeout(dur)
            busy[rank] += dur
            events.append((rank, "compute", label, start, env.now))
            for key, delay in outs:
                finish(key, delay)

    for r in range(pp):
        env.process(rank_proc(r))
    env.run()
    return PipelineResult(time_s=env.now, busy_s=tuple(busy), events=events)


def layer_times_from_phase(phase) -> list[LayerTimes]:
    """The per-layer work of one micro-batch of a priced phase (``archsim.mapping.phases.PhaseBreakdown``
    of the bottleneck stage) as LayerTimes: the CP K/V exchange before the layer (attention needs the
    gathered K/V), the layer's compute as one block, then its EP dispatch plus TP all-reduce and its EP
    combine on the link (the phase keeps no finer split of the compute)."""
    out = []
    for compute_s, comm in zip(phase.layer_compute_s, phase.layer_comm):
        out.append(LayerTimes(gather_s=comm.cp_kv_exchange_s, attention_s=compute_s,
                              dispatch_s=comm.ep_dispatch_s + comm.tp_all_reduce_s, combine_s=comm.ep_combine_s))
    return out
