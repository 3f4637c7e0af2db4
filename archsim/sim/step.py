"""A training or inference step as discrete events (simpy) on per-device compute and link resources:
two micro-batches overlapping compute with EP communication, and pipeline schedules (1F1B,
interleaved 1F1B, DualPipe-style bidirectional) with their bubbles; Chrome-trace timelines per device."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import simpy

from archsim.errors import ConfigError

US_PER_S = 1e6  # Chrome trace timestamps are microseconds


@dataclass(frozen=True, kw_only=True)
class LayerTimes:
    """One layer of one micro-batch on one device: attention (+ dense or shared parts) compute, the EP
    dispatch, the expert compute and the EP combine (seconds)."""

    attention_s: float
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


# --- pipeline schedules ----------------------------------------------------------------------------

Kind = Literal["F", "B", "W", "FB"]


@dataclass(frozen=True, kw_only=True)
class PipeOp:
    """One compute block of a pipeline schedule on one rank.

    ``kind``: F (forward of a chunk), B (backward; ``split`` = input gradient only, its weight gradient
    runs later as a W), W, or FB (a forward of ``chunk`` overlapped with the backward of ``chunk_b``,
    DualPipe's F&B block). Micro-batches of a chunk are processed in order, so the op's position among
    the rank's ops of the same kind and chunk identifies its micro-batch.
    """

    kind: Kind
    chunk: int
    chunk_b: int = -1
    split: bool = False


@dataclass(frozen=True, kw_only=True)
class ChunkTimes:
    """Per-chunk compute times on every rank: forward, full backward (input + weight gradients),
    weight-gradient part, and the overlapped forward-and-backward block; p2p transfer between ranks."""

    f_s: float
    b_s: float
    w_s: float = 0.0
    fb_s: float | None = None
    p2p_s: float = 0.0

    @property
    def fb(self) -> float:
        return self.f_s + self.b_s if self.fb_s is None else self.fb_s


def one_f_one_b(pp: int, micro_batches: int) -> list[list[PipeOp]]:
    """Non-interleaved 1F1B (PipeDream-Flush): stage s warms up with pp - s - 1 forwards, alternates
    one forward and one backward, then drains the remaining backwards. Chunk = the rank's stage."""
    _check_pipe(pp, micro_batches)
    out = []
    for s in range(pp):
        warm = min(pp - s - 1, micro_batches)
        ops = [PipeOp(kind="F", chunk=0) for _ in range(warm)]
        for _ in range(micro_batches - warm):
            ops += [PipeOp(kind="F", chunk=0), PipeOp(kind="B", chunk=0)]
        ops += [PipeOp(kind="B", chunk=0) for _ in range(warm)]
        out.append(ops)
    return out


def interleaved_1f1b(pp: int, micro_batches: int, chunks: int) -> list[list[PipeOp]]:
    """Interleaved 1F1B (Narayanan et al. 2021): each rank holds ``chunks`` model chunks (virtual stages
    chunk*pp + rank); forwards visit chunks in groups of pp micro-batches, backwards in reverse chunk
    order; warm-up is (pp - rank - 1) * 2 + (chunks - 1) * pp forwards. Needs micro_batches % pp == 0."""
    _check_pipe(pp, micro_batches)
    if chunks < 1 or micro_batches % pp:
        raise ConfigError(None, "micro_batches", f"a multiple of pp={pp} for the interleaved schedule", micro_batches)
    total = micro_batches * chunks

    def f_chunk(k: int) -> int:
        return (k // pp) % chunks

    def b_chunk(k: int) -> int:
        return chunks - 1 - (k // pp) % chunks

    out = []
    for r in range(pp):
        warm = min((pp - r - 1) * 2 + (chunks - 1) * pp, total)
        ops = [PipeOp(kind="F", chunk=f_chunk(k)) for k in range(warm)]
        fk, bk = warm, 0
        while fk < total:
            ops.append(PipeOp(kind="F", chunk=f_chunk(fk)))
            ops.append(PipeOp(kind="B", chunk=b_chunk(bk)))
            fk, bk = fk + 1, bk + 1
        ops += [PipeOp(kind="B", chunk=b_chunk(k)) for k in range(bk, total)]
        out.append(ops)
    return out


def dualpipe(pp: int, micro_batches: int) -> list[list[PipeOp]]:
    """DualPipe-style bidirectional schedule (DeepSeek-V3 TR §3.2.1; phase structure of
    deepseek-ai/DualPipe): rank r holds stage r of a forward-direction pipeline (chunk 0) and stage
    pp-1-r of a reverse-direction one (chunk 1); half the micro-batches enter from each end. Phases per
    rank, h = min(r, pp-1-r), "own" = the direction in which the rank is in the first half:
    F own x 2(pp/2-h-1); (F own, F other) x (h+1); (B other split, W, F other) x (pp/2-h-1);
    (F&B, F&B) x (M/2 - pp + h + 1); (B other, F&B) x (pp/2-h-1); (B other, B own) x (h+1), the later half
    split; (W, B own split) x (pp/2-h-1); W x (h+1). Needs even pp and micro_batches >= 2 pp, even."""
    _check_pipe(pp, micro_batches)
    if pp % 2 or micro_batches % 2 or micro_batches < 2 * pp:
        raise ConfigError(None, "micro_batches", f"an even count >= 2*pp = {2 * pp} with even pp for DualPipe",
                          micro_batches)
    half, out = pp // 2, []
    for r in range(pp):
        h = min(r, pp - 1 - r)
        own, other = (0, 1) if r < half else (1, 0)
        ops: list[PipeOp] = []
        ops += [PipeOp(kind="F", chunk=own) for _ in range(2 * (half - h - 1))]
        for _ in range(h + 1):
            ops += [PipeOp(kind="F", chunk=own), PipeOp(kind="F", chunk=other)]
        for _ in range(half - h - 1):
            ops += [PipeOp(kind="B", chunk=other, split=True), PipeOp(kind="W", chunk=other),
                    PipeOp(kind="F", chunk=other)]
        for _ in range(micro_batches // 2 - pp + h + 1):
            ops += [PipeOp(kind="FB", chunk=own, chunk_b=other), PipeOp(kind="FB", chunk=other, chunk_b=own)]
        for _ in range(half - h - 1):
            ops += [PipeOp(kind="B", chunk=other), PipeOp(kind="FB", chunk=other, chunk_b=own)]
        split = False
        for i in range(h + 1):
            if i == (h + 1) // 2 and h % 2 == 1:
                split = True
            ops.append(PipeOp(kind="B", chunk=other, split=split))
            if i == (h + 1) // 2 and h % 2 == 0:
                split = True
            ops.append(PipeOp(kind="B", chunk=own, split=split))
        for _ in range(half - h - 1):
            ops += [PipeOp(kind="W", chunk=own), PipeOp(kind="B", chunk=own, split=True)]
        ops += [PipeOp(kind="W", chunk=own) for _ in range(h + 1)]
        out.append(ops)
    return out


def _check_pipe(pp: int, micro_batches: int) -> None:
    for name, v in (("pp", pp), ("micro_batches", micro_batches)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(None, f"parallelism.{name}", "a positive integer", v)


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
            if delay:
                yield env.timeout(delay)
            ev(key).succeed()
            if False:  # pragma: no cover - makes this a generator even with no delay
                yield
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


def dualpipe_bubble_formula(pp: int, times: ChunkTimes) -> float:
    """DualPipe's bubble per the DeepSeek-V3 TR Table 2: (PP/2 - 1)(F&B + B - 3W)."""
    return (pp / 2 - 1) * (times.fb + times.b_s - 3 * times.w_s)


def one_f_one_b_bubble_formula(pp: int, times: ChunkTimes) -> float:
    """1F1B's bubble (DeepSeek-V3 TR Table 2): (PP - 1)(F + B)."""
    return (pp - 1) * (times.f_s + times.b_s)
