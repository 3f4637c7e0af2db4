"""DualPipe's forward-and-backward (F&B) block as an exact two-stream list schedule.

DeepSeek-V3 overlaps the forward of one micro-batch with the backward of another on one device: a compute
stream runs attention, MLP and their backward parts while a communication stream runs the expert-parallel
dispatch and combine (DSV3-TR §3.2.1, Figure 4: compute ``MLP(B) MLP(W) MLP(F) ATTN(B) ATTN(W) ATTN(F)``,
communication ``DISPATCH(F) DISPATCH(B) COMBINE(F) COMBINE(B)``). Every transfer depends on the compute
before it and feeds the compute after it, so the pair's span is max(compute, communication) only when one
stream is much longer than the other; when they are comparable the dependencies leave gaps. This module
builds the pair's tasks with their dependencies, in Figure 4's per-stream order, and places each task at
the earliest time its stream is free and its inputs are done (fixed-order list scheduling: exact for the
given orders). Pure Python; ``archsim.mapping.training`` takes the span as the F&B time."""
from __future__ import annotations

import heapq
from dataclasses import dataclass

from archsim.errors import ConfigError

SEGMENTS = ("pre", "shared", "mlp", "post")


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
    sum, residual, an MTP module's head). ``dispatch_s`` / ``combine_s``: the forward transfers after
    ``pre`` and after ``mlp``; backward mirrors them (the combine's backward sends the output gradient to
    the experts before the MLP's backward, the dispatch's backward returns the input gradient before the
    attention's backward)."""

    pre: Seg = Seg()
    shared: Seg = Seg()
    mlp: Seg = Seg()
    post: Seg = Seg()
    dispatch_s: float = 0.0
    combine_s: float = 0.0

    @property
    def compute_s(self) -> float:
        """Forward plus backward compute of the block."""
        return sum(s.f + s.b + s.w for s in (self.pre, self.shared, self.mlp, self.post))

    @property
    def comm_s(self) -> float:
        """Forward plus backward communication of the block."""
        return 2 * (self.dispatch_s + self.combine_s)


@dataclass(frozen=True)
class Task:
    """One kernel: its name, stream (``compute`` or ``comm``), seconds and the tasks whose output it needs."""

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


def fb_tasks(forward: list[BlockTimes], backward: list[BlockTimes], carry_s: float = 0.0) -> list[Task]:
    """The tasks of one F&B block: the forward of the blocks ``forward`` (first to last) and the backward of
    the blocks ``backward`` (last to first), paired step by step as in DSV3-TR Figure 4. Step c pairs the
    forward of block c with the backward of block n_b - 1 - c. Compute order per step: MLP input-gradient,
    shared-expert backward, MLP and shared weight gradients, shared-expert and MLP forward, attention
    input-gradient, the next backward block's post part, attention weight gradient, forward post part, the
    next forward block's attention. Communication order per step: forward dispatch, backward dispatch,
    forward combine, the next backward block's combine-backward. ``carry_s``: communication with no
    dependency inside the block, run when the stream is idle (the pipeline sends of the previous F&B block's
    outputs, which DualPipe overlaps with the next block: DSV3-TR Figure 4's PP slot)."""
    nf, nb = len(forward), len(backward)
    task: dict[str, Task] = {}
    compute: list[str] = []
    comm: list[str] = []

    def add(name, stream, duration, deps, order):
        task[name] = Task(name, stream, duration, tuple(d for d in deps if d))
        order.append(name)

    def fw(k, part):
        return f"F{k}.{part}" if 0 <= k < nf else None

    def bw(j, part):
        return f"B{j}.{part}" if 0 <= j < nb else None

    def add_bpost(j):
        if 0 <= j < nb:
            blk = backward[j]
            add(f"B{j}.post", "compute", blk.post.b, [bw(j + 1, "pre")], compute)
            add(f"B{j}.comb", "comm", blk.combine_s, [f"B{j}.post"], [])

    def add_fpre(k):
        if 0 <= k < nf:
            add(f"F{k}.pre", "compute", forward[k].pre.f, [fw(k - 1, "post")], compute)

    # prologue: the last backward block's post part and its combine-backward, the first forward attention
    add_bpost(nb - 1)
    comm.append(f"B{nb - 1}.comb") if nb else None
    add_fpre(0)
    for c in range(max(nf, nb)):
        k, j = c, nb - 1 - c
        f = forward[k] if k < nf else None
        b = backward[j] if j >= 0 else None
        if f:
            add(f"F{k}.disp", "comm", f.dispatch_s, [f"F{k}.pre"], comm)
        if b:
            add(f"B{j}.mlp", "compute", b.mlp.b, [f"B{j}.comb"], compute)
            add(f"B{j}.shared", "compute", b.shared.b, [f"B{j}.post"], compute)
            add(f"B{j}.mlp_w", "compute", b.mlp.w, [f"B{j}.comb"], compute)
            add(f"B{j}.shared_w", "compute", b.shared.w, [f"B{j}.post"], compute)
            add(f"B{j}.disp", "comm", b.dispatch_s, [f"B{j}.mlp"], comm)
        if f:
            add(f"F{k}.shared", "compute", f.shared.f, [f"F{k}.pre"], compute)
            add(f"F{k}.mlp", "compute", f.mlp.f, [f"F{k}.disp"], compute)
            add(f"F{k}.comb", "comm", f.combine_s, [f"F{k}.mlp"], comm)
        if b:
            add(f"B{j}.pre", "compute", b.pre.b, [f"B{j}.disp", f"B{j}.shared"], compute)
            add_bpost(j - 1)
            if j - 1 >= 0:
                comm.append(f"B{j - 1}.comb")
            add(f"B{j}.pre_w", "compute", b.pre.w, [f"B{j}.pre"], compute)
            add(f"B{j}.post_w", "compute", b.post.w, [f"B{j}.post"], compute)
        if f:
            add(f"F{k}.post", "compute", f.post.f, [f"F{k}.comb", f"F{k}.shared"], compute)
            add_fpre(k + 1)
    ordered = [task[n] for n in compute] + [task[n] for n in comm]
    if carry_s > 0:
        ordered.append(Task("PP.carry", "comm", carry_s))  # last in the fixed order: fills the tail
    return ordered


def critical_path_schedule(tasks: list[Task]) -> dict[str, tuple[float, float]]:
    """(start, end) of every task under non-delay list scheduling by critical path: whenever a stream is
    free, it starts the ready task (every dependency ended) with the longest path of durations from its
    start to the end of the graph (ties: the order given). Needs no stream order, so it adapts to blocks of
    different shapes (a dense layer paired with a MoE layer) where Figure 4's fixed order leaves transfers
    with no compute to hide under."""
    by = {t.name: t for t in tasks}
    if len(by) != len(tasks):
        raise ConfigError(None, "schedule", "unique task names", [t.name for t in tasks])
    users: dict[str, list[str]] = {t.name: [] for t in tasks}
    for t in tasks:
        for d in t.deps:
            if d not in by:
                raise ConfigError(None, f"schedule.{t.name}", "known dependencies", d)
            users[d].append(t.name)
    # longest path from each task's start to the end of the graph, over a topological order (Kahn)
    indegree = {t.name: len(t.deps) for t in tasks}
    order = [t.name for t in tasks if not t.deps]
    for name in order:
        for u in users[name]:
            indegree[u] -= 1
            if indegree[u] == 0:
                order.append(u)
    if len(order) < len(tasks):
        raise ConfigError(None, "schedule", "an acyclic task graph", sorted(set(by) - set(order))[:4])
    level: dict[str, float] = {}
    for name in reversed(order):
        level[name] = by[name].duration_s + max((level[u] for u in users[name]), default=0.0)

    rank = {t.name: i for i, t in enumerate(tasks)}
    waiting = {t.name: len(t.deps) for t in tasks}
    ready_at = dict.fromkeys(by, 0.0)
    heaps: dict[str, list] = {"compute": [], "comm": []}
    finishing: list = []  # (end, rank, name) of running tasks
    done: dict[str, tuple[float, float]] = {}

    def release(first: str) -> None:
        """``first`` has ended: its users whose inputs are now all done become ready (zero-length ones end
        at once and release theirs)."""
        stack = [first]
        while stack:
            name = stack.pop()
            for u in users[name]:
                ready_at[u] = max(ready_at[u], done[name][1])
                waiting[u] -= 1
                if waiting[u] == 0:
                    if by[u].duration_s == 0:
                        done[u] = (ready_at[u], ready_at[u])
                        stack.append(u)
                    else:
                        heapq.heappush(heaps[by[u].stream], (-level[u], rank[u], u))

    for t in tasks:
        if not t.deps:
            if t.duration_s == 0:
                done[t.name] = (0.0, 0.0)
                release(t.name)
            else:
                heapq.heappush(heaps[t.stream], (-level[t.name], rank[t.name], t.name))
    free = {"compute": 0.0, "comm": 0.0}
    now = 0.0
    while True:
        for stream in ("compute", "comm"):
            if free[stream] <= now and heaps[stream]:
                _, r, name = heapq.heappop(heaps[stream])
                done[name] = (now, now + by[name].duration_s)
                free[stream] = done[name][1]
                heapq.heappush(finishing, (done[name][1], r, name))
        if not finishing:
            break
        now = finishing[0][0]
        while finishing and finishing[0][0] <= now:
            release(heapq.heappop(finishing)[2])
    return done


def fb_span(forward: list[BlockTimes], backward: list[BlockTimes], carry_s: float = 0.0) -> float:
    """Seconds of one F&B block (see ``fb_tasks``): the shorter of two feasible two-stream schedules, the
    fixed per-stream order of DSV3-TR Figure 4 (``list_schedule``) and the critical-path list schedule
    (``critical_path_schedule``). At least max(compute, communication), at most their sum; ``carry_s`` as
    in ``fb_tasks``."""
    if not forward and not backward:
        return carry_s
    tasks = fb_tasks(forward, backward, carry_s)
    spans = [max(end for _, end in sched(tasks).values()) for sched in (list_schedule, critical_path_schedule)]
    return min(spans)
