"""Speculative decoding (MTP / draft models) with a conditional acceptance rate per draft position.

Draft i is accepted with probability p_i given drafts 1..i-1 were, so a step emits X = 1 + (leading accepted drafts)
tokens, with P(X >= 1 + j) = c_j = p_1 ... p_j and E[X] = 1 + c_1 + ... + c_K. A streaming client sees one chunk
per step, so inter-token latency (one value per chunk, as vLLM's benchmark client records it) is the step time,
while TPOT (time after the first token / tokens after it) is the step time / E[X].
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from archsim.errors import ConfigError
from archsim.serving.config import ReplicaSpec, SchedulerSpec
from archsim.serving.continuous import ContinuousScheduler
from archsim.serving.iteration import RooflineIteration
from archsim.serving.kvcache import PagedKVCache
from archsim.serving.requests import Request
from archsim.serving.sequence import Seq, Speculative
from archsim.sim.serve import simulate
from archsim.sim.serve_deploy import _speculative

RATES = (0.9, 0.8, 0.5)


def _distribution(rates):
    """P(X = 1 + j) for j = 0..K from the chain probabilities c_j (c_0 = 1, c_{K+1} = 0)."""
    c = [1.0]
    for p in rates:
        c.append(c[-1] * p)
    c.append(0.0)
    return [c[j] - c[j + 1] for j in range(len(rates) + 1)]


def test_mean_tokens_per_step_by_hand():
    # 1 + 0.9 + 0.9 x 0.8 + 0.9 x 0.8 x 0.5 = 1 + 0.9 + 0.72 + 0.36 = 2.98
    assert Speculative(draft_tokens=3, acceptance_rate=RATES).mean_tokens_per_step == pytest.approx(2.98, abs=1e-12)
    # one rate for all drafts: 1 + 0.8 + 0.64 + 0.512 = 2.952, the same as the tuple (0.8, 0.8, 0.8)
    single = Speculative(draft_tokens=3, acceptance_rate=0.8)
    assert single.mean_tokens_per_step == pytest.approx(2.952, abs=1e-12)
    assert single.rates == (0.8, 0.8, 0.8)
    # a zero rate stops the chain: drafts after it never count, 1 + 0.9 + 0 = 1.9
    assert Speculative(draft_tokens=3, acceptance_rate=(0.9, 0.0, 1.0)).mean_tokens_per_step == pytest.approx(1.9)


def test_the_single_rate_draws_equal_the_repeated_tuple():
    a = Speculative(draft_tokens=3, acceptance_rate=0.7).accepted(np.random.default_rng(4), 1000)
    b = Speculative(draft_tokens=3, acceptance_rate=(0.7, 0.7, 0.7)).accepted(np.random.default_rng(4), 1000)
    assert np.array_equal(a, b) and 0 < a.mean() < 3


def test_accepted_drafts_follow_the_chain_distribution():
    # 400,000 draws: each P(X = x) within 5 standard errors sqrt(q (1 - q) / n) <= 0.0008 x 5 of the hand value
    # [0.1, 0.18, 0.36, 0.36]
    n = 400_000
    spec = Speculative(draft_tokens=3, acceptance_rate=RATES)
    counts = np.bincount(spec.accepted(np.random.default_rng(11), n), minlength=4) / n
    expected = _distribution(RATES)
    assert expected == pytest.approx([0.1, 0.18, 0.36, 0.36])
    for got, q in zip(counts, expected):
        assert abs(got - q) < 5 * math.sqrt(q * (1 - q) / n)


def test_a_seeded_scheduler_emits_the_formula_mean_per_step():
    # 8 sequences of 20,001 output tokens decode 20,000 tokens each in steps of X tokens, X as above
    # E[X] = 2.98; E[X^2] = 0.1 x 1 + 0.18 x 4 + 0.36 x 9 + 0.36 x 16 = 9.82; sd = sqrt(9.82 - 2.98^2) = 0.969
    # n ~ 160,000 / 2.98 ~ 53,700 steps: standard error 0.969 / sqrt(n) ~ 0.0042; tolerance 5 standard errors plus
    # the truncated last step of each sequence (at most 8 steps lose at most 3 tokens: 24 / n ~ 0.0005)
    spec = Speculative(draft_tokens=3, acceptance_rate=RATES)
    sched = ContinuousScheduler(kv=PagedKVCache(num_blocks=20_000, block_tokens=16), max_seqs=8,
                                token_budget=8192, speculative=spec, rng=np.random.default_rng(2024))
    seqs = [Seq(Request(id=i, arrival_s=0.0, prompt_tokens=100, output_tokens=20_001)) for i in range(8)]
    for seq in seqs:
        sched.add(seq, 0.0)
    steps, now = 0, 0.0
    while (plan := sched.next_plan(now)) is not None:
        now += 1.0
        steps += plan.decode if isinstance(plan.decode, int) else 0
        sched.complete(plan, now)
    assert all(s.generated == 20_001 for s in seqs)
    mean = 8 * 20_000 / steps
    ex = sum((1 + j) * q for j, q in enumerate(_distribution(RATES)))
    ex2 = sum((1 + j) ** 2 * q for j, q in enumerate(_distribution(RATES)))
    assert ex == pytest.approx(2.98) and ex2 == pytest.approx(9.82)
    assert abs(mean - ex) < 5 * math.sqrt(ex2 - ex ** 2) / math.sqrt(steps) + 24 / steps


def test_itl_is_one_gap_per_step_and_tpot_divides_it():
    # every draft accepted (K = 3, p = 1): each decode step emits 4 tokens at once. The decode step is bound by the
    # 1e11 B of weights at 1e12 B/s = 0.1 s. Output 1 + 4 x 50 = 201 tokens: 50 steps after the prefill's token.
    # TPOT = 50 x 0.1 s / 200 = 0.025 s; ITL = one 0.1 s gap per step, 50 of them (the histogram's bins are 1.2 %
    # wide, so its percentiles are within 1.2 % of 0.1 s)
    model = RooflineIteration(flops_per_token=1e9, attention_flops_per_pair=0.0, weight_bytes=1e11,
                              kv_bytes_per_token=0.0, flop_per_s=1e12, bytes_per_s=1e12)
    replica = ReplicaSpec(devices=1, kv_capacity_tokens=100_000, kv_bytes_per_token=1e5, peak_flop_per_s=1e12,
                          peak_bytes_per_s=1e12)
    sched = SchedulerSpec(speculative=Speculative(draft_tokens=3, acceptance_rate=1.0))
    s = simulate(scheduler=sched, replica=replica, model=model, duration_s=1.0,
                 requests=[Request(id=0, arrival_s=0.0, prompt_tokens=50, output_tokens=201)]).summary
    assert s["tpot_s"]["mean"] == pytest.approx(0.025, rel=1e-12)
    assert s["itl_s"]["count"] == 50
    assert s["itl_s"]["p50"] == pytest.approx(0.1, rel=0.012) and s["itl_s"]["p99"] == pytest.approx(0.1, rel=0.012)


def test_a_seeded_simulation_tpot_matches_the_formula():
    # one request of 30,001 tokens, decode steps of exactly 0.1 s (weights-bound as above): TPOT = steps x 0.1 s /
    # 30,000, so 0.1 / TPOT is the mean tokens per step; ~10,070 steps give a standard error 0.969 / sqrt(10,070)
    # ~ 0.0097; tolerance 5 standard errors
    model = RooflineIteration(flops_per_token=1e9, attention_flops_per_pair=0.0, weight_bytes=1e11,
                              kv_bytes_per_token=0.0, flop_per_s=1e12, bytes_per_s=1e12)
    replica = ReplicaSpec(devices=1, kv_capacity_tokens=100_000, kv_bytes_per_token=1e5, peak_flop_per_s=1e12,
                          peak_bytes_per_s=1e12)
    spec = Speculative(draft_tokens=3, acceptance_rate=RATES)
    s = simulate(scheduler=SchedulerSpec(speculative=spec), replica=replica, model=model, duration_s=1.0, seed=9,
                 requests=[Request(id=0, arrival_s=0.0, prompt_tokens=50, output_tokens=30_001)]).summary
    per_step = 0.1 / s["tpot_s"]["mean"]
    steps = 30_000 / per_step
    assert abs(per_step - spec.mean_tokens_per_step) < 5 * math.sqrt(9.82 - 2.98 ** 2) / math.sqrt(steps)


@pytest.mark.parametrize("k,p,field", [(0, 0.5, "draft_tokens"), (2.5, 0.5, "draft_tokens"),
                                       (2, 1.5, "acceptance_rate"), (2, (0.5,), "acceptance_rate"),
                                       (2, (0.5, -0.1), "acceptance_rate"), (2, math.nan, "acceptance_rate"),
                                       (2, "0.5", "acceptance_rate"), (1, True, "acceptance_rate")])
def test_bad_speculative_records_are_config_errors(k, p, field):
    with pytest.raises(ConfigError, match=f"speculative.{field}: expected"):
        Speculative(draft_tokens=k, acceptance_rate=p)


def test_a_scheduler_spec_wants_a_speculative_record():
    with pytest.raises(ConfigError, match="scheduler.speculative: expected a Speculative"):
        SchedulerSpec(speculative="2:0.8")


def test_cli_speculative_forms():
    assert _speculative("1:0.85") == Speculative(draft_tokens=1, acceptance_rate=0.85)
    assert _speculative("3:0.9,0.8,0.5").rates == RATES
    assert _speculative(None) is None
    for text, fragment in (("3:0.9,0.8", "expected one rate P or K=3 rates P1,...,P3"),
                           ("3:0.9,x,0.5", "expected K:P or K:P1,...,PK"),
                           ("2:0.9,1.5", "expected K >= 1 and 0 <= P <= 1"),
                           ("0:0.5", "expected K >= 1 and 0 <= P <= 1")):
        with pytest.raises(ConfigError, match=f"--speculative: {re.escape(fragment)}"):
            _speculative(text)
