"""The simpy serving simulation: Little's law, policy comparisons, preemption accounting, seeds, P/D pools.

The iteration model here is a roofline with stated test parameters (an 8B-parameter dense model with
GQA-style KV on a chip of 1e15 FLOP/s and 3e12 B/s achievable); they are inputs of the test, not claims
about any product. The properties checked hold for any such model.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from archsim.serving.arrivals import ClosedLoop, Poisson
from archsim.serving.config import DisaggSpec, ReplicaSpec, SchedulerSpec, Slo
from archsim.serving.iteration import IterationBatch, IterationCost, RooflineIteration
from archsim.serving.lengths import Fixed, Uniform
from archsim.serving.requests import LengthSampler, Request, generate
from archsim.serving.sequence import Speculative
from archsim.sim.serve import simulate

PARAMS = 8e9
KV_BYTES_PER_TOKEN = 2 * 32 * 8 * 128 * 2  # K and V, 32 layers, 8 kv heads, head dim 128, 2 bytes
MODEL = RooflineIteration(flops_per_token=2 * PARAMS, attention_flops_per_pair=32 * 32 * (2 * 128 + 5 + 2 * 128),
                          weight_bytes=2 * PARAMS, kv_bytes_per_token=KV_BYTES_PER_TOKEN, flop_per_s=1e15,
                          bytes_per_s=3e12, fixed_s=1e-3)


def replica(kv_tokens=300_000):
    return ReplicaSpec(devices=1, kv_capacity_tokens=kv_tokens, kv_bytes_per_token=KV_BYTES_PER_TOKEN,
                       peak_flop_per_s=1e15, peak_bytes_per_s=3e12, idle_w=100.0, price_usd_per_hour=2.0)


def requests(rate=10.0, duration=100.0, prompt=Uniform(low=100, high=1000), output=Uniform(low=50, high=300), seed=1):
    return generate(arrival=Poisson(rate_per_s=rate), lengths=LengthSampler(prompt=prompt, output=output),
                    duration_s=duration, seed=seed)


def run(reqs, kind="continuous", duration=100.0, kv_tokens=300_000, **kw):
    sched = SchedulerSpec(kind=kind, max_seqs=kw.pop("max_seqs", 64), token_budget=kw.pop("token_budget", 8192),
                          timeout_s=kw.pop("timeout_s", 0.5), preemption=kw.pop("preemption", "recompute"),
                          speculative=kw.pop("speculative", None))
    return simulate(scheduler=sched, replica=replica(kv_tokens), model=MODEL, duration_s=duration, requests=reqs,
                    **kw).summary


def test_littles_law_in_steady_state():
    # 10 req/s for 200 s with mean latency ~ 1.3 s: edge effects are ~ latency / window ~ 0.7 %
    s = run(requests(rate=10.0, duration=200.0), duration=200.0)
    little = s["little"]
    assert s["requests"]["completed"] == s["requests"]["total"] > 1800
    assert little["mean_in_system"] == pytest.approx(little["rate_times_latency"], rel=0.03)
    assert little["mean_in_system"] > 5  # a loaded system, not an empty one


def test_continuous_beats_static_on_the_same_trace():
    reqs = requests(rate=20.0, duration=100.0)
    static = run(reqs, "static")
    cont = run(reqs, "continuous")
    assert static["requests"]["completed"] == cont["requests"]["completed"] == len(reqs)
    assert cont["throughput"]["output_tokens_per_s"] > 1.2 * static["throughput"]["output_tokens_per_s"]
    assert cont["ttft_s"]["p99"] < 0.1 * static["ttft_s"]["p99"]


def test_chunked_prefill_lowers_p99_tpot_under_long_prompts():
    reqs = requests(rate=1.0, duration=200.0, prompt=Uniform(low=8000, high=16000), output=Uniform(low=100, high=300))
    cont = run(reqs, "continuous", duration=200.0)
    chunked = run(reqs, "chunked", duration=200.0, token_budget=512)
    assert chunked["tpot_s"]["p99"] < 0.8 * cont["tpot_s"]["p99"]
    assert chunked["itl_s"]["p99"] < cont["itl_s"]["p99"]


@pytest.mark.parametrize("mode", ["recompute", "swap"])
def test_small_kv_cache_preempts_and_loses_nothing(mode):
    reqs = requests(rate=20.0, duration=30.0)
    # two requests that can never fit in 20,000 tokens
    reqs += [Request(id=len(reqs) + i, arrival_s=1.0 + i, prompt_tokens=30_000, output_tokens=10) for i in range(2)]
    reqs.sort(key=lambda r: r.arrival_s)
    s = run(reqs, "continuous", duration=30.0, kv_tokens=20_000, preemption=mode)
    counted = s["requests"]["preemptions_swap" if mode == "swap" else "preemptions_recompute"]
    assert counted > 0
    assert s["requests"]["rejected"] == 2
    assert s["requests"]["completed"] + s["requests"]["rejected"] == len(reqs)
    assert s["kv_occupancy"]["peak"] <= 1.0


def test_same_seed_same_numbers():
    a = run(requests(seed=5, duration=30.0), duration=30.0, speculative=Speculative(draft_tokens=1, acceptance_rate=0.8))
    b = run(requests(seed=5, duration=30.0), duration=30.0, speculative=Speculative(draft_tokens=1, acceptance_rate=0.8))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_different_seeds_spread():
    # stated spread: over 5 seeds of a 1,000-request run, mean TPOT and output throughput vary by under 10 %
    # (max - min over mean), and the seeds really do change the numbers
    runs = [run(requests(seed=s)) for s in range(5)]
    for key in (("tpot_s", "mean"), ("throughput", "output_tokens_per_s")):
        values = np.array([r[key[0]][key[1]] for r in runs])
        spread = (values.max() - values.min()) / values.mean()
        assert 0 < spread < 0.10, (key, values)


def test_routers_spread_load_over_replicas():
    reqs = requests(rate=40.0, duration=20.0)
    for router in ("round_robin", "least_loaded"):
        sim = simulate(scheduler=SchedulerSpec(), replica=replica(), model=MODEL, duration_s=20.0, requests=reqs,
                       replicas=4, router=router)
        served = np.bincount([s.replica for s in sim.recorder.requests], minlength=4)
        assert served.sum() == len(reqs) and served.min() > 0.2 * len(reqs)
        assert sim.summary["devices"] == 4


def test_disaggregated_pools_transfer_every_multi_token_request():
    reqs = requests(rate=10.0, duration=50.0)
    link = DisaggSpec(prefill_replicas=1, decode_replicas=2, link_bandwidth_bytes_per_s=50e9, link_latency_s=1e-5)
    s = simulate(scheduler=SchedulerSpec(), replica=replica(), model=MODEL, duration_s=50.0, requests=reqs,
                 disagg=link).summary
    assert s["requests"]["completed"] == len(reqs)
    assert s["requests"]["kv_transfers"] == sum(r.output_tokens > 1 for r in reqs)
    # transferred bytes: each request's prompt KV plus the first token (KV of the prompt only: first token's is
    # written on the decode side)
    assert s["requests"]["kv_transfer_bytes"] == sum(r.prompt_tokens * KV_BYTES_PER_TOKEN for r in reqs
                                                     if r.output_tokens > 1)
    assert s["devices"] == 3


def test_closed_loop_keeps_at_most_n_users_in_flight():
    lengths = LengthSampler(prompt=Fixed(tokens=200), output=Fixed(tokens=50))
    sim = simulate(scheduler=SchedulerSpec(), replica=replica(), model=MODEL, duration_s=20.0,
                   closed_loop=ClosedLoop(users=8, think_time_s=0.1), lengths=lengths)
    s = sim.summary
    assert s["requests"]["completed"] > 8
    assert s["batch"]["max"] <= 8
    assert s["little"]["mean_in_system"] <= 8


def test_speculative_decoding_raises_throughput_at_low_load():
    reqs = requests(rate=2.0, duration=50.0)
    plain = run(reqs)
    spec = run(reqs, speculative=Speculative(draft_tokens=1, acceptance_rate=0.9))
    assert spec["tpot_s"]["mean"] < 0.75 * plain["tpot_s"]["mean"]


def test_cost_energy_and_goodput_fields():
    s = run(requests(rate=5.0, duration=20.0), duration=20.0, slo=Slo(ttft_s=0.5, tpot_s=0.05))
    out_tokens = s["throughput"]["output_tokens_per_s"] * s["duration_s"]
    # price: 2 $/h x 1 device x duration
    assert s["cost"]["usd"] == pytest.approx(2.0 * s["duration_s"] / 3600)
    assert s["cost"]["usd_per_million_output_tokens"] == pytest.approx(s["cost"]["usd"] / out_tokens * 1e6)
    assert 0 < s["goodput"]["requests"] <= s["requests"]["completed"]
    assert 0 < s["utilisation"]["mfu"] < 1 and 0 < s["utilisation"]["bandwidth"] < 1
    assert s["energy"]["total_j"] >= 100.0 * (s["duration_s"] * (1 - s["utilisation"]["busy_fraction"])) * 0.999


class _Constant:
    """Every iteration takes 10 ms: latencies become exact multiples."""

    def iteration(self, batch: IterationBatch) -> IterationCost:
        return IterationCost(time_s=0.01, energy_j=0.0, flops=0.0, hbm_bytes=0.0)


def test_exact_latencies_for_a_lone_request():
    # one request, prompt 100, output 11: 1 prefill iteration then 10 decodes of 10 ms each
    sim = simulate(scheduler=SchedulerSpec(), replica=replica(), model=_Constant(), duration_s=1.0,
                   requests=[Request(id=0, arrival_s=0.25, prompt_tokens=100, output_tokens=11)])
    s = sim.summary
    assert s["ttft_s"]["p50"] == pytest.approx(0.01)
    assert s["tpot_s"]["p50"] == pytest.approx(0.01)
    assert s["e2e_s"]["p50"] == pytest.approx(0.11)
    assert s["iterations"] == 11
