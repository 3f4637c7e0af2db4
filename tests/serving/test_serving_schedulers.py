"""Batching policies as state machines, stepped by hand: exact iteration counts, chunks, blocks, preemptions."""
from __future__ import annotations

import numpy as np
import pytest

from archsim.serving.continuous import ContinuousScheduler
from archsim.serving.iteration import IterationBatch, RooflineIteration, chunk_pairs
from archsim.serving.kvcache import PagedKVCache
from archsim.serving.request_level import RequestLevelScheduler
from archsim.serving.requests import Request
from archsim.serving.sequence import Seq, Speculative


def req(i, prompt, output, arrival=0.0, cached=0):
    return Seq(Request(id=i, arrival_s=arrival, prompt_tokens=prompt, output_tokens=output, cached_tokens=cached))


def drain(sched, now=0.0, dt=1.0, limit=10_000):
    """Step until idle; returns the list of plans (each iteration takes dt)."""
    plans = []
    while (plan := sched.next_plan(now)) is not None and len(plans) < limit:
        now += dt
        sched.complete(plan, now)
        plans.append(plan)
    return plans


def test_kv_blocks_round_up():
    kv = PagedKVCache(num_blocks=10, block_tokens=16)
    assert [kv.blocks_for(t) for t in (1, 16, 17, 32, 33)] == [1, 1, 2, 2, 3]
    kv.allocate(10)
    with pytest.raises(RuntimeError):
        kv.allocate(1)
    kv.release(10)
    assert kv.used == 0 and kv.peak_used == 10


def test_chunk_pairs_matches_causal_count():
    # prefill of N tokens: N(N+1)/2 pairs; two chunks of it sum to the same
    assert chunk_pairs(0, 10) == 55
    assert chunk_pairs(0, 6) + chunk_pairs(6, 4) == 55


def test_continuous_single_request_iterations():
    # one prefill iteration emits token 1, then output-1 = 4 decode iterations
    sched = ContinuousScheduler(kv=PagedKVCache(num_blocks=100, block_tokens=16), max_seqs=8, token_budget=4096)
    seq = req(0, prompt=40, output=5)
    assert sched.add(seq, 0.0)
    plans = drain(sched)
    assert len(plans) == 5
    assert plans[0].work == IterationBatch(prefill_tokens=40, prefill_pairs=40 * 41 // 2, prefill_seqs=1)
    # decode contexts 40, 41, 42, 43 (the last generated token's KV is written by the step)
    assert [p.work.decode_context_tokens for p in plans[1:]] == [40, 41, 42, 43]
    assert seq.first_token_s == 1.0 and seq.finish_s == 5.0 and seq.generated == 5
    assert sched.kv.used == 0


def test_prefix_cache_hits_skip_compute_but_hold_blocks():
    sched = ContinuousScheduler(kv=PagedKVCache(num_blocks=100, block_tokens=16), max_seqs=8, token_budget=4096)
    seq = req(0, prompt=40, output=2, cached=30)
    sched.add(seq, 0.0)
    plan = sched.next_plan(0.0)
    assert plan.work.prefill_tokens == 10 and plan.work.prefill_pairs == chunk_pairs(30, 10)
    assert sched.kv.used == 3  # ceil(40 / 16)


def test_chunked_prefill_splits_prompt_by_budget():
    # budget 256, prompt 1000: chunks 256, 256, 256, 232 -> the first token after 4 iterations
    sched = ContinuousScheduler(kv=PagedKVCache(num_blocks=100, block_tokens=16), max_seqs=8, token_budget=256,
                                chunked=True)
    seq = req(0, prompt=1000, output=3)
    sched.add(seq, 0.0)
    plans = drain(sched)
    assert [p.work.prefill_tokens for p in plans] == [256, 256, 256, 232, 0, 0]
    assert sum(p.work.prefill_pairs for p in plans[:4]) == 1000 * 1001 // 2
    assert seq.first_token_s == 4.0 and seq.finish_s == 6.0


def test_chunked_mixes_decodes_first():
    sched = ContinuousScheduler(kv=PagedKVCache(num_blocks=1000, block_tokens=16), max_seqs=8, token_budget=100,
                                chunked=True)
    a, b = req(0, prompt=50, output=10), req(1, prompt=500, output=10)
    sched.add(a, 0.0)
    sched.complete(sched.next_plan(0.0), 1.0)  # a prefilled
    sched.add(b, 1.0)
    plan = sched.next_plan(1.0)
    # a decodes (1 token), b gets the other 99 tokens of the budget
    assert plan.decode == 1 and plan.work.decode_context_tokens == 50 and plan.prefill == [(b, 99)]


def test_unchunked_prefill_is_prioritised_over_decode():
    sched = ContinuousScheduler(kv=PagedKVCache(num_blocks=1000, block_tokens=16), max_seqs=8, token_budget=4096)
    a, b = req(0, prompt=50, output=10), req(1, prompt=500, output=10)
    sched.add(a, 0.0)
    sched.complete(sched.next_plan(0.0), 1.0)
    sched.add(b, 1.0)
    plan = sched.next_plan(1.0)
    assert plan.decode == 0 and plan.prefill == [(b, 500)]


@pytest.mark.parametrize("mode", ["recompute", "swap"])
def test_too_small_cache_preempts_and_everything_finishes(mode):
    # 8 blocks of 16 tokens = 128 tokens; 4 requests of 16 + 48 tokens each need 4 blocks at the end,
    # 16 in total, so the cache must preempt; each fits alone (4 <= 8) so none is rejected
    sched = ContinuousScheduler(kv=PagedKVCache(num_blocks=8, block_tokens=16), max_seqs=8, token_budget=4096,
                                preemption=mode, kv_bytes_per_token=100.0)
    seqs = [req(i, prompt=16, output=48) for i in range(4)]
    assert all(sched.add(s, 0.0) for s in seqs)
    drain(sched)
    assert all(s.finish_s is not None and s.generated == 48 for s in seqs)
    preempted = sched.preempted_swap if mode == "swap" else sched.preempted_recompute
    assert preempted > 0 and preempted == sum(s.preemptions for s in seqs)
    assert sched.kv.used == 0 and sched.kv.peak_used <= 8
    if mode == "swap":  # swapped blocks come back; nothing is recomputed
        assert sched.swap_bytes_total > 0 and sched.recomputed_tokens == 0
    else:
        assert sched.recomputed_tokens > 0


def test_request_that_can_never_fit_is_rejected():
    sched = ContinuousScheduler(kv=PagedKVCache(num_blocks=2, block_tokens=16), max_seqs=8, token_budget=4096)
    assert not sched.add(req(0, prompt=30, output=3), 0.0)  # 33 tokens need 3 blocks > 2


def test_static_waits_to_fill_or_times_out_and_pads():
    sched = RequestLevelScheduler(kv=PagedKVCache(num_blocks=1000, block_tokens=16), max_seqs=3, timeout_s=5.0)
    a, b = req(0, prompt=10, output=2, arrival=0.0), req(1, prompt=30, output=4, arrival=1.0)
    sched.add(a, 0.0)
    sched.add(b, 1.0)
    assert sched.next_plan(1.0) is None and sched.wake_at() == 5.0
    plans = drain(sched, now=5.0)
    # padded to the longest prompt (30) and run until the longest output (4 tokens: 1 prefill + 3 decodes)
    assert plans[0].work.prefill_tokens == 2 * 30
    assert [p.work.decode_seqs for p in plans[1:]] == [2, 2, 2]
    assert a.finish_s == 7.0 and b.finish_s == 9.0


def test_dynamic_sizes_batch_by_token_budget():
    # prompt tokens within the budget: 90-token prompts, budget 250 -> 2 per batch
    sched = RequestLevelScheduler(kv=PagedKVCache(num_blocks=1000, block_tokens=16), max_seqs=10,
                                  token_budget=250, padded=False)
    seqs = [req(i, prompt=90, output=10) for i in range(4)]
    for s in seqs:
        sched.add(s, 0.0)
    plan = sched.next_plan(0.0)
    assert len(plan.prefill) == 2 and plan.work.prefill_tokens == 180
    # and full contexts within the KV cache: 10 blocks of 16 hold one 100-token context (7 blocks) ...
    small = RequestLevelScheduler(kv=PagedKVCache(num_blocks=10, block_tokens=16), max_seqs=10,
                                  token_budget=10_000, padded=False)
    for s in [req(i, prompt=90, output=10) for i in range(3)]:
        small.add(s, 0.0)
    assert len(small.next_plan(0.0).prefill) == 1  # ... but not two (14 blocks > 10)


def test_speculative_decoding_with_full_acceptance_halves_steps():
    # k = 1 draft always accepted: each decode step emits 2 tokens; output 9 = 1 (prefill) + 4 steps x 2
    spec = Speculative(draft_tokens=1, acceptance_rate=1.0)
    sched = ContinuousScheduler(kv=PagedKVCache(num_blocks=100, block_tokens=16), max_seqs=8, token_budget=4096,
                                speculative=spec)
    seq = req(0, prompt=20, output=9)
    sched.add(seq, 0.0)
    plans = drain(sched)
    assert len(plans) == 5 and plans[1].work.decode_tokens == 2 and seq.generated == 9


def test_speculative_acceptance_mean():
    spec = Speculative(draft_tokens=2, acceptance_rate=0.8)
    accepted = spec.accepted(np.random.default_rng(0), 200_000)
    # E[1 + accepted] = 1 + 0.8 + 0.64 = 2.44; standard error ~ 0.0017
    assert abs(1 + accepted.mean() - spec.mean_tokens_per_step) < 0.01 and spec.mean_tokens_per_step == pytest.approx(2.44)


def test_roofline_iteration_is_the_max_of_compute_and_memory():
    m = RooflineIteration(flops_per_token=1e9, attention_flops_per_pair=0.0, weight_bytes=1e9,
                          kv_bytes_per_token=0.0, flop_per_s=1e12, bytes_per_s=1e12)
    # 1 token: compute 1 ms, memory 1 ms; 1000 tokens: compute 1 s dominates
    assert m.iteration(IterationBatch(decode_seqs=1, decode_tokens=1)).time_s == pytest.approx(1e-3)
    assert m.iteration(IterationBatch(prefill_tokens=1000)).time_s == pytest.approx(1.0)


def test_chunk_limit_caps_each_sequence_not_the_iteration():
    # budget 300 shared by two prompts of 250 with at most 100 per sequence per iteration:
    # iteration 1: a 100, b 100; iteration 2: a 100, b 100; iteration 3: a 50, b 50 (both first tokens)
    sched = ContinuousScheduler(kv=PagedKVCache(num_blocks=100, block_tokens=16), max_seqs=8, token_budget=300,
                                chunked=True, chunk_limit=100)
    a, b = req(0, prompt=250, output=2), req(1, prompt=250, output=2)
    sched.add(a, 0.0)
    sched.add(b, 0.0)
    plans = drain(sched)
    assert [[c for _, c in p.prefill] for p in plans[:3]] == [[100, 100], [100, 100], [50, 50]]
    assert a.first_token_s == b.first_token_s == 3.0
