"""simpy serving simulation: arrivals, a router, replicas iterating their scheduler, optional P/D pools."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import simpy

from archsim.errors import ConfigError
from archsim.serving.arrivals import ClosedLoop
from archsim.serving.config import DisaggSpec, ReplicaSpec, SchedulerSpec, Slo, make_scheduler
from archsim.serving.iteration import IterationModel
from archsim.serving.metrics import Recorder, summary
from archsim.serving.requests import MAX_REQUESTS, LengthSampler, Request, check_seed, streams
from archsim.serving.sequence import Seq
from archsim.sim.client import BenchmarkClient

ROUTERS = ("round_robin", "least_loaded")


@dataclass(frozen=True, kw_only=True)
class ServeResult:
    """The summary dict (see archsim.serving.metrics.summary), the raw recorder and the final scheduler states."""

    summary: dict
    recorder: Recorder
    schedulers: tuple = ()


class _Replica:
    """One replica's simpy process: form an iteration, wait its priced time, apply it; sleep when idle."""

    def __init__(self, env: simpy.Environment, index: int, scheduler, model: IterationModel, rec: Recorder,
                 on_finish: Callable[[Seq], None], on_handoff: Callable[["_Replica", Seq], None] | None = None):
        self.env, self.index, self.scheduler, self.model, self.rec = env, index, scheduler, model, rec
        self.on_finish, self.on_handoff = on_finish, on_handoff
        self.wakeup: simpy.Event | None = None
        env.process(self._loop())

    def poke(self) -> None:
        if self.wakeup is not None and not self.wakeup.triggered:
            self.wakeup.succeed()

    def _loop(self):
        env, sched, rec = self.env, self.scheduler, self.rec
        while True:
            plan = sched.next_plan(env.now)
            if plan is None:
                self.wakeup = env.event()
                wake = sched.wake_at()
                yield self.wakeup if wake is None else self.wakeup | env.timeout(max(0.0, wake - env.now))
                self.wakeup = None
                continue
            cost = self.model.iteration(plan.work)
            if not cost.time_s > 0:
                raise ConfigError(None, "iteration model", "a positive iteration time", cost.time_s)
            yield env.timeout(cost.time_s)
            for seq in sched.complete(plan, env.now):
                self.on_finish(seq)
            rec.iteration(self.index, env.now, plan, cost, sched)
            if sched.handoff:
                for seq in sched.handoff:
                    self.on_handoff(self, seq)
                sched.handoff.clear()


def simulate(*, scheduler: SchedulerSpec, replica: ReplicaSpec, model: IterationModel,
             duration_s: float | None = None, seed: int = 0, requests: list[Request] | None = None,
             closed_loop: ClosedLoop | None = None,
             lengths: LengthSampler | None = None, replicas: int = 1, router: str = "least_loaded",
             disagg: DisaggSpec | None = None, decode_model: IterationModel | None = None,
             decode_replica: ReplicaSpec | None = None, decode_scheduler: SchedulerSpec | None = None,
             slo: Slo = Slo(), progress: Callable[[float], None] | None = None,
             request_overhead_s: float = 0.0, max_concurrency: int | None = None,
             warmup_requests: int = 0) -> ServeResult:
    """Run one serving simulation to completion (every accepted request finishes).

    Open loop: pass ``requests`` (each sent at its ``arrival_s``); with ``max_concurrency`` a benchmark client
    (sim/client.py) sends them, at most that many in flight. Closed loop: pass ``closed_loop`` and ``lengths``;
    users stop sending at ``duration_s``. ``duration_s`` is the arrival window of the rates and Little's law; None
    (request lists only): the window over which the measured requests were sent. The first ``warmup_requests``
    requests (by id, the send order) are left out of the latency statistics and the ``benchmark`` section, and the
    inter-token gaps count from the moment the first measured request is sent (metrics.summary).

    With ``disagg``, ``disagg.prefill_replicas`` replicas (``replica``, ``scheduler``, priced by ``model``) prefill
    and hand each sequence's KV over the link to one of ``disagg.decode_replicas`` (``decode_replica``,
    ``decode_scheduler``, ``decode_model``; each defaults to the prefill pool's). Both pools
    run continuous batching; a request's first token reaches the user from the decode pool (see
    ContinuousScheduler._first_token_on_decode), so its TTFT holds prefill queueing, prefill, the wait for the link,
    the KV transfer and the wait for a decode slot.

    ``request_overhead_s``: fixed host time per request before it reaches a scheduler (HTTP handling,
    tokenisation); the request enters the scheduler that much after its arrival, and TTFT still counts from the
    arrival.
    """
    if router not in ROUTERS:
        raise ConfigError(None, "router", f"one of {', '.join(ROUTERS)}", router)
    if (requests is None) == (closed_loop is None):
        raise ConfigError(None, "workload", "either a request list or a closed loop", None)
    if replicas < 1 or (duration_s is None and closed_loop is not None) or (duration_s is not None
                                                                           and not duration_s > 0):
        raise ConfigError(None, "replicas/duration", "replicas >= 1 and duration > 0 (a closed loop needs one)",
                          (replicas, duration_s))
    if isinstance(warmup_requests, bool) or not isinstance(warmup_requests, int) or warmup_requests < 0:
        raise ConfigError(None, "warmup_requests", "an integer >= 0", warmup_requests)
    _check_overhead(request_overhead_s)
    env = simpy.Environment()
    rec = Recorder()
    spec_rngs = [np.random.default_rng(s) for s in np.random.SeedSequence([check_seed(seed), 1]).spawn(64)]
    done_events: dict[int, simpy.Event] = {}

    def finish(seq: Seq) -> None:
        rec.requests.append(seq)
        event = done_events.pop(seq.req.id, None)
        if event is not None:
            event.succeed()

    def reject_late(seq: Seq) -> None:
        """A request refused after it was accepted (no decode replica can hold it): its client slot or closed-loop
        user is freed, as when it completes."""
        rec.rejected.append(seq)
        event = done_events.pop(seq.req.id, None)
        if event is not None:
            event.succeed()

    front: list[_Replica]
    back: list[_Replica] = []
    specs: list[ReplicaSpec] = []
    if disagg is None:
        front = [_Replica(env, i, make_scheduler(scheduler, replica, spec_rngs[i % 64]), model, rec, finish)
                 for i in range(replicas)]
        specs = [replica] * replicas
    else:
        transfer_links = {}

        def handoff(src: _Replica, seq: Seq) -> None:
            env.process(_transfer(env, src, seq, transfer_links, disagg, replica, back, rec, reject_late))

        prefill = SchedulerSpec(**{**scheduler.__dict__, "kind": "continuous"})
        decode = SchedulerSpec(**{**(decode_scheduler or scheduler).__dict__, "kind": "continuous"})
        back_replica = decode_replica or replica
        front = [_Replica(env, i, make_scheduler(prefill, replica, spec_rngs[i % 64], role="prefill"), model, rec,
                          finish, handoff) for i in range(disagg.prefill_replicas)]
        back = [_Replica(env, 1000 + i, make_scheduler(decode, back_replica, spec_rngs[(i + 32) % 64],
                                                       role="decode"),
                         decode_model or model, rec, finish) for i in range(disagg.decode_replicas)]
        transfer_links.update({r.index: simpy.Resource(env, capacity=1) for r in front})
        specs = [replica] * disagg.prefill_replicas + [back_replica] * disagg.decode_replicas

    rr = itertools.count()

    def enter(seq: Seq) -> None:
        """Hand a request to a front replica's scheduler (its fit was checked on arrival)."""
        target = front[next(rr) % len(front)] if router == "round_robin" else _least_loaded(front)
        seq.replica = target.index
        target.scheduler.add(seq, env.now)
        target.poke()

    def submit(req: Request) -> Seq | None:
        """Accept a request on arrival (or reject one that can never fit a front replica, which all share one spec)
        and let it reach a scheduler after the fixed request overhead; routing happens then, so the router sees
        the load of that moment."""
        seq = Seq(req)
        if not front[0].scheduler.fits(seq):
            rec.rejected.append(seq)
            return None
        if request_overhead_s > 0:
            env.timeout(request_overhead_s).callbacks.append(lambda _event: enter(seq))
        else:
            enter(seq)
        return seq

    send = _measuring(submit, warmup_requests, lambda: rec.start_measuring([r.scheduler for r in front + back],
                                                                            env.now))
    client = None
    if requests is not None and max_concurrency is not None:
        client = BenchmarkClient(env, requests, max_concurrency=max_concurrency, submit=send,
                                 done_events=done_events, progress=progress)
        env.process(client.run())
    elif requests is not None:
        env.process(_open_loop(env, requests, send, progress))
    else:
        env.process(_closed_loop(env, closed_loop, lengths, duration_s, seed, send, done_events, progress))
    env.run()
    schedulers = [r.scheduler for r in front + back]
    result = summary(rec, replicas=specs, schedulers=schedulers, window_s=duration_s, slo=slo, end_s=env.now,
                     warmup_requests=warmup_requests, max_concurrency=max_concurrency,
                     unsent=len(requests) - client.sent if client is not None else 0)
    return ServeResult(summary=result, recorder=rec, schedulers=tuple(schedulers))


def _least_loaded(pool: list[_Replica]) -> _Replica:
    return min(pool, key=lambda r: r.scheduler.load)


def _measuring(submit: Callable[[Request], Seq | None], warmup_requests: int, start: Callable[[], None]):
    """``submit``, calling ``start`` just before request id ``warmup_requests`` (the first measured one) is sent."""
    if warmup_requests <= 0:
        return submit

    def send(req: Request) -> Seq | None:
        if req.id == warmup_requests:
            start()
        return submit(req)
    return send


def _open_loop(env, requests, submit, progress):
    for n, req in enumerate(requests):
        if req.arrival_s > env.now:
            yield env.timeout(req.arrival_s - env.now)
        submit(req)
        if progress is not None and n % 1000 == 0:
            progress(env.now)


def _closed_loop(env, loop: ClosedLoop, lengths: LengthSampler, duration_s, seed, submit, done_events, progress):
    rng = streams(seed)["lengths"]
    ids = itertools.count()

    def user():
        while env.now < duration_s:
            prompt, output, cached = lengths.draw(rng, 1)
            rid = next(ids)
            if rid >= MAX_REQUESTS:  # the up-front estimate (serve_deploy) is a bound; this is the guarantee
                raise ConfigError(None, "closed_loop", f"at most {MAX_REQUESTS:,} requests in a run", rid + 1)
            req = Request(id=rid, arrival_s=env.now, prompt_tokens=int(prompt[0]),
                          output_tokens=int(output[0]), cached_tokens=int(cached[0]))
            event = env.event()
            done_events[req.id] = event
            if submit(req) is None:
                done_events.pop(req.id)
            else:
                yield event
            if progress is not None:
                progress(env.now)
            if loop.think_time_s > 0:
                yield env.timeout(loop.think_time_s)
            elif not event.triggered:  # rejected with no think time: stop rather than spin at one instant
                return

    for _ in range(loop.users):
        env.process(user())
    yield env.timeout(0)


def _transfer(env, src: _Replica, seq: Seq, links: dict, disagg: DisaggSpec, replica: ReplicaSpec,
              pool: list[_Replica], rec: Recorder, reject: Callable[[Seq], None]):
    """Move one sequence's KV cache from a prefill replica to the least-loaded decode replica over the link.

    The prefill replica's link carries one transfer at a time (later ones queue: ``seq.link_start_s`` minus
    ``seq.prefilled_s`` is that wait); a transfer takes the link latency plus the prompt's KV bytes over its
    bandwidth (``replica.kv_sequence_bytes``: a sliding-window layer sends its window only). The prefill replica
    keeps the KV blocks until the copy is done. Simplifications: the transfer starts after the whole prompt is
    prefilled (SGLang can send chunk by chunk), and the decode replica's KV blocks are taken when it admits the
    request, not reserved before the transfer as SGLang's DecodePreallocQueue does (sgl-project/sglang
    python/sglang/srt/disaggregation/decode.py); both matter only under KV-capacity pressure.
    """
    nbytes = replica.kv_sequence_bytes(seq.kv_tokens)
    with links[src.index].request() as slot:
        yield slot
        seq.link_start_s = env.now
        yield env.timeout(disagg.link_latency_s + nbytes / disagg.link_bandwidth_bytes_per_s)
    seq.kv_arrived_s = env.now
    rec.transfers += 1
    rec.transfer_bytes += nbytes
    src.scheduler.release(seq)
    src.poke()
    target = _least_loaded(pool)
    seq.replica = target.index
    if not target.scheduler.add(seq, env.now):
        reject(seq)
        return
    target.poke()


def _check_overhead(value) -> float:
    """``value`` if it is a finite time >= 0 s, else a ConfigError naming request_overhead_s."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ConfigError(None, "request_overhead_s", "a finite time >= 0 s", value)
    return float(value)
