"""Invariants of the serving simulation over random small workloads (hypothesis): nothing is lost, every
token is produced exactly once, time runs forward, and every KV block comes back (sliding-window layouts too)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.serving.config import DisaggSpec, ReplicaSpec, SchedulerSpec
from archsim.serving.iteration import RooflineIteration
from archsim.serving.kvcache import FULL_ATTENTION, KvLayout
from archsim.serving.requests import Request
from archsim.serving.sequence import Speculative
from archsim.sim.serve import simulate

# test parameters (a 1B-parameter model on a 1e14 FLOP/s, 1e12 B/s device), not claims about hardware
MODEL = RooflineIteration(flops_per_token=2e9, attention_flops_per_pair=1e5, weight_bytes=2e9,
                          kv_bytes_per_token=1e4, flop_per_s=1e14, bytes_per_s=1e12, fixed_s=1e-4)

requests_st = st.lists(st.tuples(st.floats(0, 5), st.integers(1, 400), st.integers(1, 60), st.floats(0, 0.9)),
                       min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(rows=requests_st,
       kind=st.sampled_from(["static", "dynamic", "continuous", "chunked", "disagg"]),
       preemption=st.sampled_from(["recompute", "swap"]),
       kv_tokens=st.integers(64, 3000), block=st.sampled_from([1, 16, 32]),
       budget=st.integers(16, 1024), max_seqs=st.integers(1, 16), replicas=st.integers(1, 3),
       spec=st.sampled_from([None, Speculative(draft_tokens=2, acceptance_rate=0.7)]),
       layout=st.sampled_from([FULL_ATTENTION, KvLayout(groups=((None, 1), (8, 1))),
                               KvLayout(groups=((None, 1), (64, 3)))]))
def test_nothing_lost_and_blocks_returned(rows, kind, preemption, kv_tokens, block, budget, max_seqs, replicas, spec,
                                          layout):
    reqs = sorted((Request(id=i, arrival_s=t, prompt_tokens=p, output_tokens=o, cached_tokens=int(p * h) if p > 1 else 0)
                   for i, (t, p, o, h) in enumerate(rows)), key=lambda r: r.arrival_s)
    reqs = [Request(id=i, arrival_s=r.arrival_s, prompt_tokens=r.prompt_tokens, output_tokens=r.output_tokens,
                    cached_tokens=min(r.cached_tokens, r.prompt_tokens - 1)) for i, r in enumerate(reqs)]
    replica = ReplicaSpec(devices=1, kv_capacity_tokens=kv_tokens, kv_bytes_per_token=1e4, peak_flop_per_s=1e14,
                          peak_bytes_per_s=1e12, kv_layout=layout)
    sched = SchedulerSpec(kind=kind, max_seqs=max_seqs, token_budget=budget, timeout_s=0.05, block_tokens=block,
                          preemption=preemption, speculative=spec)
    disagg = DisaggSpec(prefill_replicas=replicas, decode_replicas=2, link_bandwidth_bytes_per_s=1e10,
                        link_latency_s=1e-5) if kind == "disagg" else None
    sim = simulate(scheduler=sched, replica=replica, model=MODEL, duration_s=6.0, requests=reqs,
                   replicas=replicas, disagg=disagg)
    done, rejected = sim.recorder.requests, sim.recorder.rejected
    assert sorted(s.req.id for s in done + rejected) == [r.id for r in reqs]
    for s in done:
        assert s.generated == s.req.output_tokens
        assert s.req.arrival_s <= s.first_token_s <= s.finish_s
    for s in rejected:  # only what can never fit is rejected (a sliding layer holds its window only)
        assert layout.blocks(s.req.prompt_tokens + s.req.output_tokens, block) > kv_tokens * layout.units // block
    for scheduler in sim.schedulers:
        assert scheduler.kv.used == 0 and scheduler.kv.peak_used <= scheduler.kv.num_blocks
    assert sim.summary["requests"]["completed"] == len(done)
