"""The benchmark client as a simpy process: sends requests at their intended times, at most ``max_concurrency``
in flight (a new one goes when one completes), as ``vllm bench serve`` and ``sglang.bench_serving`` do."""
from __future__ import annotations

import dataclasses
from typing import Callable

import simpy

from archsim.errors import ConfigError
from archsim.serving.requests import Request


class BenchmarkClient:
    """Sends ``requests`` (sorted by intended send time ``arrival_s``) through ``submit``.

    Both tools hold a semaphore of ``max_concurrency`` slots around each request and start the request's clock
    once the slot is acquired (vllm-project/vllm, vllm/benchmarks/serve.py, ``limited_request_func``: the
    request's ``start_time`` is taken inside ``request_func``; sgl-project/sglang, python/sglang/bench_serving.py,
    ``limited_request_func``). So a request waiting for a slot is sent, and its TTFT starts, when a slot frees:
    its ``arrival_s`` becomes that time, and the wait is kept in ``queue_s`` (vLLM's ``client_queue_time``).
    The semaphore serves waiters in order (asyncio's is FIFO), so requests go out in id order.

    ``done_events`` is the simulation's id -> completion event map; a rejected request frees its slot at once.
    """

    def __init__(self, env: simpy.Environment, requests: list[Request], *, max_concurrency: int | None,
                 submit: Callable[[Request], object], done_events: dict,
                 progress: Callable[[float], None] | None = None):
        """``progress`` is called with the simulated time now and then, as the open loop calls it."""
        if max_concurrency is not None and (isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int)
                                            or max_concurrency < 1):
            raise ConfigError(None, "--max-concurrency", "an integer >= 1", max_concurrency)
        self.env, self.requests, self.limit = env, requests, max_concurrency
        self.submit, self.done_events, self.progress = submit, done_events, progress
        self.in_flight = 0
        self.peak_in_flight = 0
        self.sent = 0
        self.queue_s: list[float] = []
        self._slot: simpy.Event | None = None

    def _release(self, _event=None) -> None:
        """A request ended (or was rejected): free its slot and wake the sender if it waits for one."""
        self.in_flight -= 1
        if self._slot is not None and not self._slot.triggered:
            self._slot.succeed()

    def run(self):
        """The simpy process: wait for each request's time, then for a free slot, then send it."""
        env = self.env
        for req in self.requests:
            if req.arrival_s > env.now:
                yield env.timeout(req.arrival_s - env.now)
            while self.limit is not None and self.in_flight >= self.limit:
                self._slot = env.event()
                yield self._slot
                self._slot = None
            self.queue_s.append(env.now - req.arrival_s)
            sent = req if req.arrival_s == env.now else dataclasses.replace(req, arrival_s=env.now)
            self._send(sent)
        self._slot = None

    def _send(self, req: Request) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.sent += 1
        event = self.env.event()
        self.done_events[req.id] = event
        if self.submit(req) is None:
            self.done_events.pop(req.id, None)
            self._release()
        else:
            event.callbacks.append(self._release)
        if self.progress is not None and self.sent % 1000 == 1:
            self.progress(self.env.now)
