"""DualPipe's forward-and-backward (F&B) block as exact two-stream fixed-order schedules.

DeepSeek-V3 overlaps the forward of one micro-batch with the backward of another on one device: a compute
stream runs attention, MLP and their backward parts while a communication stream runs the expert-parallel
dispatch and combine (DSV3-TR §3.2.1, Figure 4: compute ``MLP(B) MLP(W) MLP(F) ATTN(B) ATTN(W) ATTN(F)``,
communication ``DISPATCH(F) DISPATCH(B) COMBINE(F) COMBINE(B)``). Every transfer depends on the compute
before it and feeds the compute after it, so the pair's span is max(compute, communication) only when one
stream is much longer than the other; when they are comparable the dependencies leave gaps. This module
builds the pair's tasks with their dependencies in a fixed per-stream order (Figure 4's, or one of a few
variants that depend only on the block counts) and places each task at the earliest time its stream is
free and its inputs are done (fixed-order list scheduling: exact for the given orders). The F&B time is
the shortest of these schedules; as each is a longest path, more time on any task never shortens it.
Pure Python; ``archsim.mapping.training`` takes the span as the F&B time."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from archsim.errors import ConfigError

SEGMENTS = ("pre", "shared", "mlp", "post")
# How many steps an F&B block's pairing may shift from Figure 4's (first blocks paired) or from the last
# blocks paired: a search budget, not a measured figure (ASSUMPTION: an implementation pairs the two chunks'
# blocks near one of those alignments; with 2 every alignment of DeepSeek-V3's PP16 ranks is tried).
ALIGNMENT_WINDOW = 2


@dataclass(frozen=True)
class Seg:
    """Compute seconds of one part of a block: forward, input gradient (backward without the weight
    gradient) and weight gradient."""

    f: float = 0.0
    b: float = 0.0
    w: float = 0.0


@dataclass(frozen=True, kw_only=True)
class BlockTimes:
    """One block (decoder layer, head, MTP module) of one micro-batch on one device.

    ``pre``: everything before the expert dispatch (norms, attention, router; a block without EP puts all
    its compute here or in ``mlp``); ``shared``: the shared experts (they need no dispatch); ``mlp``: the
    routed experts (or a dense MLP), between dispatch and combine; ``post``: after the combine (weighted
    sum, residual, an MTP module's head). ``gather_s``: the forward transfer before ``pre`` (context
    parallelism's K/V all-gather: attention needs every chip's K/V; the small K/V projection is counted
    in ``pre``, after it); backward returns the K/V gradients (reduce-scatter) after the attention's
    backward, before the block's input gradient goes on. ``dispatch_s`` / ``combine_s``: the forward
    transfers after ``pre`` and after ``mlp``; backward mirrors them (the combine's backward sends the
    output gradient to the experts before the MLP's backward, the dispatch's backward returns the input
    gradient before the attention's backward)."""

    pre: Seg = Seg()
    shared: Seg = Seg()
    mlp: Seg = Seg()
    post: Seg = Seg()
    gather_s: float = 0.0
    dispatch_s: float = 0.0
    combine_s: float = 0.0

    @property
    def compute_s(self) -> float:
        """Forward plus backward compute of the block."""
        return sum(s.f + s.b + s.w for s in (self.pre, self.shared, self.mlp, self.post))

    @property
    def comm_s(self) -> float:
        """Forward plus backward communication of the block."""
        return 2 * (self.gather_s + self.dispatch_s + self.combine_s)


class Task(NamedTuple):
    """One kernel: its name, stream (``compute`` or ``comm``), seconds and the tasks whose output it needs
    (a named tuple: schedules of long chunk pairs build thousands of them)."""

    name: str
    stream: str
    duration_s: float
    deps: tuple[str, ...] = ()


def list_schedule(tasks: list[Task]) -> dict[str, tuple[float, float]]:
    """(start, end) of every task. Tasks run on their stream in the order given; each starts when its
    stream is free and every dependency has ended. A zero-length task occupies no stream (it ends when its
    inputs are ready). A dependency that can never be met (unknown name, or a cycle with the stream
    orders) is a ConfigError."""
    names = {t.name for t in tasks}
    if len(names) != len(tasks):
        raise ConfigError(None, "schedule", "unique task names", [t.name for t in tasks])
    for t in tasks:
        if t.stream not in ("compute", "comm") or t.duration_s < 0 or not set(t.deps) <= names:
            raise ConfigError(None, f"schedule.{t.name}", "a compute/comm task, >= 0 s, known deps", t)
    by = {t.name: t for t in tasks}
    queues = {s: [t for t in tasks if t.stream == s and t.duration_s > 0] for s in ("compute", "comm")}
    free = {"compute": 0.0, "comm": 0.0}
    done: dict[str, tuple[float, float]] = {}
    heads = {"compute": 0, "comm": 0}

    def end_of(name: str, depth: int = 0) -> float | None:
        """End of a task if known; a zero-length task ends when its inputs do (resolved on demand)."""
        if name in done:
            return done[name][1]
        t = by[name]
        if t.duration_s > 0 or depth > len(tasks):
            return None
        ends = [end_of(d, depth + 1) for d in t.deps]
        if any(e is None for e in ends):
            return None
        done[name] = (max(ends, default=0.0),) * 2
        return done[name][1]

    progressed = True
    while progressed:
        progressed = False
        for stream, queue in queues.items():
            while heads[stream] < len(queue):
                t = queue[heads[stream]]
                ends = [end_of(d) for d in t.deps]
                if any(e is None for e in ends):
                    break
                start = max([free[stream]] + ends)
                done[t.name] = (start, start + t.duration_s)
                free[stream] = start + t.duration_s
                heads[stream] += 1
                progressed = True
    for t in tasks:
        end_of(t.name)
    if len(done) < len(tasks):
        waiting = sorted(t.name for t in tasks if t.name not in done)
        raise ConfigError(None, "schedule", "dependencies the stream orders can satisfy", waiting[:4])
    return done


class _StreamOrders:
    """Tasks added in their per-stream order (the order of ``add`` calls on each stream)."""

    def __init__(self) -> None:
        self.tasks: list[Task] = []

    def add(self, name: str, stream: str, duration_s: float, deps: tuple[str | None, ...] = ()) -> None:
        """Append a task on ``stream``; None dependencies (a block outside the F&B block) are dropped."""
        self.tasks.append(Task(name, stream, duration_s, tuple(d for d in deps if d is not None)))


def _block_at(step: int, start: int, count: int) -> int | None:
    """Position (0 = first run) of the block a sequence starting in step ``start`` runs in ``step``."""
    i = step - start
    return i if 0 <= i < count else None


def fb_tasks(forward: list[BlockTimes], backward: list[BlockTimes], *, lag: int = 0,
             shared_first: bool = False) -> list[Task]:
    """The tasks of one F&B block in one fixed per-stream order: the forward of the blocks ``forward`` (first
    to last) and the backward of the blocks ``backward`` (last to first), paired step by step as in DSV3-TR
    Figure 4. ``lag``: steps the backward starts after the forward (forward block k runs in step
    k + max(-lag, 0), backward block n_b - 1 - i in step i + max(lag, 0)); 0 pairs the first blocks of both
    (Figure 4), n_f - n_b the last ones.

    Compute order per step (Figure 4): MLP input-gradient, shared-expert backward, MLP and shared weight
    gradients, shared-expert and MLP forward, attention input-gradient, the next backward block's post part,
    attention and post weight gradients, forward post part, the next forward block's attention.
    ``shared_first``: the shared experts (forward, backward and weight gradient), which wait for no
    transfer, run before the routed-expert parts, and the attention and post weight gradients after the next
    forward block's attention. Communication order per step: forward dispatch, backward dispatch, forward
    combine, the backward K/V gradients, the next backward block's combine-backward, the next forward
    block's K/V gather."""
    nf, nb = len(forward), len(backward)
    f_start, b_start = max(-lag, 0), max(lag, 0)
    out = _StreamOrders()
    last_step = max(f_start + nf, b_start + nb) - 1
    for step in range(-1, last_step + 1):  # step -1: the prologue (the first blocks' leading parts)
        k = _block_at(step, f_start, nf)
        i = _block_at(step, b_start, nb)
        j = None if i is None else nb - 1 - i
        k_next = _block_at(step + 1, f_start, nf)
        i_next = _block_at(step + 1, b_start, nb)
        if k is not None:
            fb = forward[k]
            out.add(f"F{k}.disp", "comm", fb.dispatch_s, (f"F{k}.pre",))
        if j is not None:
            bb = backward[j]
            if shared_first:
                out.add(f"B{j}.shared", "compute", bb.shared.b, (f"B{j}.post",))
                if k is not None:
                    out.add(f"F{k}.shared", "compute", forward[k].shared.f, (f"F{k}.pre",))
                out.add(f"B{j}.shared_w", "compute", bb.shared.w, (f"B{j}.post",))
                out.add(f"B{j}.mlp", "compute", bb.mlp.b, (f"B{j}.comb",))
                out.add(f"B{j}.mlp_w", "compute", bb.mlp.w, (f"B{j}.comb",))
            else:
                out.add(f"B{j}.mlp", "compute", bb.mlp.b, (f"B{j}.comb",))
                out.add(f"B{j}.shared", "compute", bb.shared.b, (f"B{j}.post",))
                out.add(f"B{j}.mlp_w", "compute", bb.mlp.w, (f"B{j}.comb",))
                out.add(f"B{j}.shared_w", "compute", bb.shared.w, (f"B{j}.post",))
            out.add(f"B{j}.disp", "comm", bb.dispatch_s, (f"B{j}.mlp",))
        if k is not None:
            fb = forward[k]
            if not (shared_first and j is not None):
                out.add(f"F{k}.shared", "compute", fb.shared.f, (f"F{k}.pre",))
            out.add(f"F{k}.mlp", "compute", fb.mlp.f, (f"F{k}.disp",))
            out.add(f"F{k}.comb", "comm", fb.combine_s, (f"F{k}.mlp",))
        if j is not None:
            out.add(f"B{j}.pre", "compute", backward[j].pre.b, (f"B{j}.disp", f"B{j}.shared"))
            out.add(f"B{j}.gather", "comm", backward[j].gather_s, (f"B{j}.pre",))
        if i_next is not None:  # the next backward block's post part and combine-backward
            jn = nb - 1 - i_next
            upper = (f"B{jn + 1}.pre", f"B{jn + 1}.gather") if jn + 1 < nb else ()
            out.add(f"B{jn}.post", "compute", backward[jn].post.b, upper)
            out.add(f"B{jn}.comb", "comm", backward[jn].combine_s, (f"B{jn}.post",))
        if j is not None and not shared_first:
            _add_weight_gradients(out, j, backward[j])
        if k is not None:
            out.add(f"F{k}.post", "compute", forward[k].post.f, (f"F{k}.comb", f"F{k}.shared"))
        if k_next is not None:  # the next forward block's K/V gather and attention
            lower = f"F{k_next - 1}.post" if k_next else None
            out.add(f"F{k_next}.gather", "comm", forward[k_next].gather_s, (lower,))
            out.add(f"F{k_next}.pre", "compute", forward[k_next].pre.f, (lower, f"F{k_next}.gather"))
        if j is not None and shared_first:
            _add_weight_gradients(out, j, backward[j])
    return out.tasks


def _add_weight_gradients(out: _StreamOrders, j: int, block: BlockTimes) -> None:
    """The attention and post weight gradients of backward block ``j``."""
    out.add(f"B{j}.pre_w", "compute", block.pre.w, (f"B{j}.pre", f"B{j}.gather"))
    out.add(f"B{j}.post_w", "compute", block.post.w, (f"B{j}.post",))


def fb_orders(n_forward: int, n_backward: int) -> list[dict]:
    """The candidate stream orders of an F&B block of ``n_forward`` forward and ``n_backward`` backward
    blocks, as ``fb_tasks`` keyword arguments: the alignments of the two block sequences within
    ``ALIGNMENT_WINDOW`` steps of Figure 4's (lag 0, tried first) or of the last blocks paired (lag
    n_f - n_b) that pair at least one forward block with a backward one (they matter when the blocks
    differ, e.g. DualPipe's first rank pairs embedding + dense layers with head + MTP), each in Figure 4's
    step order and with the shared experts first. They depend on the block counts only, never on
    durations."""
    if n_forward and n_backward:
        near = {a + d for a in (0, n_forward - n_backward) for d in range(-ALIGNMENT_WINDOW, ALIGNMENT_WINDOW + 1)}
        lags = sorted((lag for lag in near if -n_backward < lag < n_forward), key=lambda lag: (abs(lag), lag))
    else:
        lags = [0]  # one side only: nothing to align
    return [{"lag": lag, "shared_first": first} for lag in lags for first in (False, True)]


def fixed_order_span(tasks: list[Task]) -> float:
    """The span of ``list_schedule(tasks)`` in one pass, for tasks listed in an order that is both
    topological and each stream's order (``fb_tasks`` emits them so): each task starts when its stream is
    free and its inputs are done; a zero-length task occupies no stream."""
    end: dict[str, float] = {}
    free = {"compute": 0.0, "comm": 0.0}
    for t in tasks:
        if t.stream not in free or not t.duration_s >= 0:  # NaN fails this too
            raise ConfigError(None, f"schedule.{t.name}", "a compute/comm task of >= 0 s", (t.stream, t.duration_s))
        start = free[t.stream] if t.duration_s > 0 else 0.0
        for d in t.deps:
            if d not in end:
                raise ConfigError(None, f"schedule.{t.name}", "its dependencies listed before it", d)
            start = max(start, end[d])
        end[t.name] = start + t.duration_s
        if t.duration_s > 0:
            free[t.stream] = end[t.name]
    return max(end.values(), default=0.0)


def fb_span(forward: list[BlockTimes], backward: list[BlockTimes], carry_s: float = 0.0) -> float:
    """Seconds of one F&B block: the shortest of the fixed-order schedules (``list_schedule``, evaluated
    by ``fixed_order_span``) of the candidate stream orders ``fb_orders`` (``fb_tasks`` builds each), or,
    if longer, the communication stream's total with ``carry_s``.

    ``carry_s``: communication with no dependency inside the block, the pipeline sends of the previous F&B
    block's outputs, which DualPipe overlaps with the next block (DSV3-TR Figure 4's PP slot). They fill
    the communication stream's idle time wherever it falls, delaying nothing (ASSUMPTION: sent in pieces
    at the lowest priority), so they lengthen the span only past the stream's busy time.

    A fixed-order schedule's span is the longest path through the dependencies and the stream orders, so it
    never shrinks when a task grows; the candidates depend on the block counts only, so neither does their
    minimum, nor the maximum with the stream total: more time on any task never shortens the span.
    (Greedy list scheduling, which lets the durations pick the order, can: Graham's anomalies.) The search
    stops once a span reaches the lower bound max(compute, communication), which no order beats (to
    rounding). At least that bound, at most compute + communication."""
    if not forward and not backward:
        return carry_s
    best = bound = float("inf")
    comm_s = 0.0
    for order in fb_orders(len(forward), len(backward)):
        tasks = fb_tasks(forward, backward, **order)
        if bound == float("inf"):
            comm_s = sum(t.duration_s for t in tasks if t.stream == "comm")
            bound = max(sum(t.duration_s for t in tasks if t.stream == "compute"), comm_s)
        best = min(best, fixed_order_span(tasks))
        if best <= bound * (1 + 1e-12):  # rounding: the bound and a span sum the same durations differently
            break
    return max(best, comm_s + carry_s)
