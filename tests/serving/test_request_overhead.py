"""The fixed per-request overhead (HTTP handling, tokenisation) of ``simulate(request_overhead_s=...)``: a request
reaches the scheduler that long after its arrival, and TTFT counts from the arrival.

The iteration model is a closed-form roofline with round test numbers: 1e9 FLOPs per token at 1e12 FLOP/s, so a
1000-token prompt prefills in 1.0 s (memory: 1e9 B of weights + 1e8 B of KV at 1e12 B/s = 1.1 ms, not the bound).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from archsim.errors import ConfigError
from archsim.serving.arrivals import Poisson
from archsim.serving.config import ReplicaSpec, SchedulerSpec
from archsim.serving.iteration import RooflineIteration
from archsim.serving.lengths import Uniform
from archsim.serving.requests import LengthSampler, Request, generate
from archsim.sim.serve import simulate

MODEL = RooflineIteration(flops_per_token=1e9, attention_flops_per_pair=0.0, weight_bytes=1e9,
                          kv_bytes_per_token=1e5, flop_per_s=1e12, bytes_per_s=1e12)
REPLICA = ReplicaSpec(devices=1, kv_capacity_tokens=200_000, kv_bytes_per_token=1e5, peak_flop_per_s=1e12,
                      peak_bytes_per_s=1e12)


def _run(reqs, overhead, replicas=1, duration=10.0):
    return simulate(scheduler=SchedulerSpec(), replica=REPLICA, model=MODEL, duration_s=duration, requests=reqs,
                    request_overhead_s=overhead, replicas=replicas)


def test_a_single_request_pays_the_overhead_before_its_prefill():
    # arrival 3.0, overhead 0.1: enters the scheduler at 3.1, prefills 1000 tokens in 1.0 s, first token at 4.1
    sim = _run([Request(id=0, arrival_s=3.0, prompt_tokens=1000, output_tokens=1)], overhead=0.1)
    seq = sim.recorder.requests[0]
    assert seq.enqueued_s == pytest.approx(3.1, abs=1e-12)
    assert seq.first_token_s == pytest.approx(4.1, abs=1e-12)
    assert sim.summary["ttft_s"]["mean"] == pytest.approx(0.1 + 1.0, abs=1e-12)
    assert sim.summary["ttft_breakdown_s"]["overhead"] == pytest.approx(0.1, abs=1e-12)
    assert sim.summary["ttft_breakdown_s"]["prefill"] == pytest.approx(1.0, abs=1e-12)


def test_a_constant_overhead_shifts_every_request_by_itself():
    # adding the same delay to every arrival of an open loop replays the same schedule that much later, so under
    # any load (here ~0.8 prompts/s of ~1 s prefills, with queueing) each request's first token and finish move
    # by exactly the overhead, and TTFT and end-to-end latency grow by it
    reqs = generate(arrival=Poisson(rate_per_s=0.8), duration_s=60.0, seed=3,
                    lengths=LengthSampler(prompt=Uniform(low=200, high=1800), output=Uniform(low=2, high=40)))
    base, late = _run(reqs, 0.0, duration=60.0), _run(reqs, 0.25, duration=60.0)
    a = sorted(base.recorder.requests, key=lambda s: s.req.id)
    b = sorted(late.recorder.requests, key=lambda s: s.req.id)
    assert len(a) == len(b) == len(reqs) > 30
    assert max(s.ttft_parts()[1] for s in a) > 0.5  # the trace does queue
    np.testing.assert_allclose([y.first_token_s - x.first_token_s for x, y in zip(a, b)], 0.25, atol=1e-9)
    np.testing.assert_allclose([y.finish_s - x.finish_s for x, y in zip(a, b)], 0.25, atol=1e-9)
    assert late.summary["ttft_s"]["mean"] == pytest.approx(base.summary["ttft_s"]["mean"] + 0.25, abs=1e-9)
    assert late.summary["tpot_s"]["mean"] == pytest.approx(base.summary["tpot_s"]["mean"], abs=1e-9)


def test_routing_happens_when_the_request_reaches_the_scheduler():
    # two replicas, least-loaded routing, four requests at t = 0 with an overhead: each is routed at 0.5 s
    # against the load of that moment, so they spread 2 + 2 (not all four to the replica that was empty on arrival)
    reqs = [Request(id=i, arrival_s=0.0, prompt_tokens=1000, output_tokens=2) for i in range(4)]
    sim = _run(reqs, overhead=0.5, replicas=2)
    assert sorted(np.bincount([s.replica for s in sim.recorder.requests])) == [2, 2]


def test_a_request_that_can_never_fit_is_rejected_on_arrival():
    # 200,000 KV tokens per replica: a 300,000-token prompt never fits, overhead or not
    sim = _run([Request(id=0, arrival_s=1.0, prompt_tokens=300_000, output_tokens=2),
                Request(id=1, arrival_s=1.0, prompt_tokens=1000, output_tokens=1)], overhead=0.2)
    assert [s.req.id for s in sim.recorder.rejected] == [0]
    assert [s.req.id for s in sim.recorder.requests] == [1]
    assert sim.recorder.rejected[0].enqueued_s is None


@pytest.mark.parametrize("value", [-0.1, math.nan, math.inf, True, "0.1"])
def test_bad_overhead_is_a_config_error(value):
    with pytest.raises(ConfigError, match="request_overhead_s: expected a finite time >= 0 s"):
        _run([Request(id=0, arrival_s=0.0, prompt_tokens=10, output_tokens=1)], overhead=value)
