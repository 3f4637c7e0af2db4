"""The benchmark client (sim/client.py) inside the simulation: at most max_concurrency in flight, exactly
num_prompts sent, vLLM's send semantics, warm-up exclusion, the steady-state verdict and the ITL statistics.

Iteration models: a constant 10 ms per iteration (latencies become exact multiples) and the roofline test model of
tests/sim/test_serve_sim.py (an 8B dense model on a chip of 1e15 FLOP/s and 3e12 B/s; inputs of the test, not
claims about a product).
"""
from __future__ import annotations

import numpy as np
import pytest

from archsim.serving.config import SchedulerSpec
from archsim.serving.iteration import IterationBatch, IterationCost
from archsim.serving.lengths import Fixed, Uniform
from archsim.serving.metrics import peak_concurrency, request_table
from archsim.serving.requests import LengthSampler, Request, generate_prompts
from archsim.sim.serve import simulate
from tests.sim.test_serve_sim import MODEL, replica


class _Constant:
    """Every iteration takes 10 ms."""

    def iteration(self, batch: IterationBatch) -> IterationCost:
        return IterationCost(time_s=0.01, energy_j=0.0, flops=0.0, hbm_bytes=0.0)


def _prompts(n, rate=float("inf"), prompt=Uniform(low=100, high=1000), output=Uniform(low=20, high=200), seed=2,
             burstiness=1.0):
    return generate_prompts(num_prompts=n, lengths=LengthSampler(prompt=prompt, output=output), rate_per_s=rate,
                            burstiness=burstiness, seed=seed)


def _in_flight_over_time(table) -> np.ndarray:
    """Requests in flight just after each send and each completion (half-open [arrival, finish))."""
    times = np.unique(np.concatenate([table["arrival_s"], table["finish_s"]]))
    return np.array([int(np.sum((table["arrival_s"] <= t) & (table["finish_s"] > t))) for t in times])


@pytest.mark.parametrize("rate", [float("inf"), 40.0])
def test_max_concurrency_is_never_exceeded_and_every_prompt_is_sent(rate):
    sim = simulate(scheduler=SchedulerSpec(max_seqs=64), replica=replica(), model=MODEL, requests=_prompts(120, rate),
                   max_concurrency=6)
    s, table = sim.summary, request_table(sim.recorder)
    counts = _in_flight_over_time(table)
    assert counts.max() == 6 and s["benchmark"]["max_concurrent_requests"] == 6
    assert s["benchmark"]["completed"] + s["benchmark"]["failed"] == 120 == s["requests"]["completed"]
    # a request is sent at its intended time, or later exactly when a slot frees (a completion); never earlier
    intended = np.array([r.arrival_s for r in _prompts(120, rate)])[table["id"]]
    sent = table["arrival_s"]
    assert np.all(sent >= intended)
    assert np.all((sent == intended) | np.isin(sent, table["finish_s"]))
    assert np.sum(sent > intended) > 0  # the cap did hold some back


def test_infinite_rate_sends_the_first_c_at_once_then_one_per_completion():
    # C = 1 with prompt 100 and output 11 on a 10 ms model: each request is 1 prefill + 10 decodes = 0.11 s and
    # the next is sent as it ends: sends at 0, 0.11, 0.22, 0.33, 0.44; duration 0.55 s; 5 / 0.55 requests/s
    reqs = _prompts(5, prompt=Fixed(tokens=100), output=Fixed(tokens=11))
    sim = simulate(scheduler=SchedulerSpec(), replica=replica(), model=_Constant(), requests=reqs, max_concurrency=1)
    table, b = request_table(sim.recorder), sim.summary["benchmark"]
    assert table["arrival_s"] == pytest.approx([0.0, 0.11, 0.22, 0.33, 0.44])
    assert b["duration"] == pytest.approx(0.55)
    assert b["request_throughput"] == pytest.approx(5 / 0.55)
    assert b["mean_ttft_ms"] == pytest.approx(10.0) and b["mean_e2el_ms"] == pytest.approx(110.0)
    # every inter-token gap is one 10 ms decode step: the exact mean and std, the median within the histogram's 1.2 %
    assert b["mean_itl_ms"] == pytest.approx(10.0) and b["std_itl_ms"] == pytest.approx(0.0, abs=1e-6)
    assert b["median_itl_ms"] == pytest.approx(10.0, rel=0.012)
    # with C = 3 the first three go at t = 0 (what the tools do at rate inf), all prefilled in one iteration
    sim3 = simulate(scheduler=SchedulerSpec(), replica=replica(), model=_Constant(), requests=reqs, max_concurrency=3)
    arrivals = request_table(sim3.recorder)["arrival_s"]
    assert arrivals[:3] == pytest.approx([0.0, 0.0, 0.0]) and arrivals[3] == pytest.approx(0.11)


def test_a_finite_rate_below_the_cap_keeps_the_intended_send_times():
    # 2 requests/s of short requests never hold 50 slots: the client sends each at its scheduled time
    reqs = _prompts(40, rate=2.0, output=Uniform(low=5, high=10))
    sim = simulate(scheduler=SchedulerSpec(), replica=replica(), model=MODEL, requests=reqs, max_concurrency=50)
    assert request_table(sim.recorder)["arrival_s"] == pytest.approx([r.arrival_s for r in reqs])


def test_warmup_requests_are_left_out_of_the_statistics():
    reqs = _prompts(60, rate=20.0)
    sim = simulate(scheduler=SchedulerSpec(), replica=replica(), model=MODEL, requests=reqs, warmup_requests=15)
    s, table = sim.summary, request_table(sim.recorder)
    kept = table["id"] >= 15
    ttft = (table["first_token_s"] - table["arrival_s"])[kept]
    assert s["measurement"]["measured_requests"] == s["benchmark"]["completed"] == 60 - 15
    assert s["benchmark"]["total_output_tokens"] == sum(r.output_tokens for r in reqs[15:])
    assert s["ttft_s"]["mean"] == pytest.approx(ttft.mean())
    assert s["benchmark"]["mean_ttft_ms"] == pytest.approx(1e3 * ttft.mean())
    # the benchmark clock starts at the first measured send
    assert s["measurement"]["start_s"] == pytest.approx(reqs[15].arrival_s)
    assert s["benchmark"]["duration"] == pytest.approx(table["finish_s"][kept].max() - reqs[15].arrival_s)


def test_steady_state_verdicts():
    # C = 8 over 400 prompts: a closed system keeps 8 in flight, so Little's law and the halves agree
    steady = simulate(scheduler=SchedulerSpec(), replica=replica(), model=MODEL, requests=_prompts(400),
                      max_concurrency=8, warmup_requests=40).summary["measurement"]
    assert steady["steady_state"] is True, steady["steady_state_reason"]
    # 300 requests/s of up to 1,000-token prompts overload the replica (16 sequences per iteration complete about
    # 17 requests/s here): the queue grows
    # over the send window, so L (time average in the window) falls well short of lambda x W
    over = simulate(scheduler=SchedulerSpec(max_seqs=16), replica=replica(), model=MODEL,
                    requests=_prompts(400, rate=300.0)).summary["measurement"]
    assert over["steady_state"] is False and "Little's law" in over["steady_state_reason"]
    # everything sent at t = 0: no send window
    burst = simulate(scheduler=SchedulerSpec(), replica=replica(), model=MODEL,
                     requests=_prompts(40)).summary["measurement"]
    assert burst["steady_state"] is False and "no arrival window" in burst["steady_state_reason"]
    few = simulate(scheduler=SchedulerSpec(), replica=replica(), model=MODEL,
                   requests=_prompts(10, rate=5.0)).summary["measurement"]
    assert few["steady_state"] is False and "too few" in few["steady_state_reason"]


def test_rejected_prompts_count_as_failed_and_free_their_slot():
    # a 300,000-token cache cannot hold a 400,000-token prompt: rejected at once, its slot goes to the next one
    reqs = [Request(id=0, arrival_s=0.0, prompt_tokens=400_000, output_tokens=2),
            Request(id=1, arrival_s=0.0, prompt_tokens=100, output_tokens=2)]
    sim = simulate(scheduler=SchedulerSpec(), replica=replica(), model=_Constant(), requests=reqs, max_concurrency=1)
    b = sim.summary["benchmark"]
    assert (b["completed"], b["failed"]) == (1, 1)
    assert request_table(sim.recorder)["arrival_s"] == pytest.approx([0.0])


def test_peak_concurrency_sweep_by_hand():
    # [0, 2), [1, 3), [2, 4), [2, 5): at t = 2 one leaves as two arrive (departures first) -> 3; never 4
    arrival, finish = np.array([0.0, 1.0, 2.0, 2.0]), np.array([2.0, 3.0, 4.0, 5.0])
    assert peak_concurrency(arrival, finish) == 3
    assert peak_concurrency(np.array([]), np.array([])) == 0


def test_without_a_client_duration_or_closed_loop_needs_a_duration():
    from archsim.errors import ConfigError
    from archsim.serving.arrivals import ClosedLoop

    with pytest.raises(ConfigError, match="duration"):
        simulate(scheduler=SchedulerSpec(), replica=replica(), model=MODEL, closed_loop=ClosedLoop(users=2),
                 lengths=LengthSampler(prompt=Fixed(tokens=10), output=Fixed(tokens=2)))
    with pytest.raises(ConfigError, match="warmup_requests"):
        simulate(scheduler=SchedulerSpec(), replica=replica(), model=MODEL, requests=_prompts(3), warmup_requests=-1)

