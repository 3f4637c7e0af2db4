"""Pipeline schedules (1F1B, interleaved 1F1B, DualPipe-style) as per-rank op lists, their published bubble
formulas, and the step time they imply. Pure functions: ``archsim.sim.step`` executes the same schedules as
discrete events and its tests check that the analytic step time here equals the simulated one."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from archsim.errors import ConfigError

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


def dualpipe_bubble_formula(pp: int, times: ChunkTimes) -> float:
    """DualPipe's bubble per the DeepSeek-V3 TR Table 2: (PP/2 - 1)(F&B + B - 3W)."""
    return (pp / 2 - 1) * (times.fb + times.b_s - 3 * times.w_s)


def one_f_one_b_bubble_formula(pp: int, times: ChunkTimes) -> float:
    """1F1B's bubble (DeepSeek-V3 TR Table 2): (PP - 1)(F + B)."""
    return (pp - 1) * (times.f_s + times.b_s)


def rank_busy_s(ops: list[PipeOp], times: ChunkTimes) -> float:
    """Compute time of one rank's op list."""
    total = 0.0
    for op in ops:
        if op.kind == "F":
            total += times.f_s
        elif op.kind == "B":
            total += times.b_s - times.w_s if op.split else times.b_s
        elif op.kind == "W":
            total += times.w_s
        else:
            total += times.fb
    return total


def pipeline_step(kind: str, pp: int, micro_batches: int, times: ChunkTimes, chunks: int = 1) -> tuple[float, float]:
    """(makespan, largest per-rank bubble) of one pipelined step, analytically.

    1F1B and interleaved: every rank is busy for its ops and idles (PP - 1)(F + B) per chunk (the fill
    and drain); DualPipe: the middle ranks idle (PP/2 - 1)(F&B + B - 3W). Each crossing of a stage
    boundary during fill and drain adds ``p2p_s`` (2 (PP - 1) crossings); steady-state stalls from p2p
    latency are not included (the event simulation shows them).
    """
    if kind == "dualpipe":
        sched = dualpipe(pp, micro_batches)
        bubble = dualpipe_bubble_formula(pp, times)
        busy = rank_busy_s(sched[pp // 2 - 1], times)
    elif kind == "interleaved":
        sched = interleaved_1f1b(pp, micro_batches, chunks)
        bubble = one_f_one_b_bubble_formula(pp, times)
        busy = rank_busy_s(sched[0], times)
    elif kind == "1f1b":
        sched = one_f_one_b(pp, micro_batches)
        bubble = one_f_one_b_bubble_formula(pp, times)
        busy = rank_busy_s(sched[0], times)
    else:
        raise ConfigError(None, "schedule", "1f1b, interleaved or dualpipe", kind)
    bubble += 2 * (pp - 1) * times.p2p_s
    return busy + bubble, bubble
