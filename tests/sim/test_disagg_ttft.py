"""TTFT of disaggregated (prefill/decode pools) serving as a streaming client measures it.

The first token reaches the user from the decode pool, when the decode replica admits the request into its running
batch (SGLang's PD disaggregation, sgl-project/sglang python/sglang/srt/disaggregation/decode.py), so TTFT =
request overhead + prefill queueing + prefill + waiting for the KV link + the transfer + waiting for a decode slot.

The iteration models are closed-form rooflines with round test numbers (inputs of the test, not claims about any
product), so every time below is derived by hand:
- prefill model: 1e9 FLOPs per token at 1e12 FLOP/s, so a P-token prefill takes P ms of compute, against
  1e9 B of weights + 1e5 B per token at 1e12 B/s (1.1 ms for 1000 tokens): compute-bound, P x 1 ms.
- decode model: 1e11 B of weights at 1e12 B/s = 0.1 s per iteration, compute 1 ms per token: every decode
  iteration of up to 100 tokens takes exactly 0.1 s.
- KV link: 1000 prompt tokens x 1e5 B = 1e8 B at 1e9 B/s = 0.1 s, plus 0.01 s latency: 0.11 s per transfer.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from archsim.errors import ConfigError
from archsim.serving.config import DisaggSpec, ReplicaSpec, SchedulerSpec
from archsim.serving.iteration import RooflineIteration
from archsim.serving.requests import Request
from archsim.serving.sequence import TTFT_PARTS
from archsim.sim.serve import simulate

KV_BYTES_PER_TOKEN = 1e5
PREFILL = RooflineIteration(flops_per_token=1e9, attention_flops_per_pair=0.0, weight_bytes=1e9,
                            kv_bytes_per_token=KV_BYTES_PER_TOKEN, flop_per_s=1e12, bytes_per_s=1e12)
DECODE = RooflineIteration(flops_per_token=1e9, attention_flops_per_pair=0.0, weight_bytes=1e11,
                           kv_bytes_per_token=0.0, flop_per_s=1e12, bytes_per_s=1e12)
REPLICA = ReplicaSpec(devices=1, kv_capacity_tokens=1_000_000, kv_bytes_per_token=KV_BYTES_PER_TOKEN,
                      peak_flop_per_s=1e12, peak_bytes_per_s=1e12)
LINK = DisaggSpec(prefill_replicas=1, decode_replicas=1, link_bandwidth_bytes_per_s=1e9, link_latency_s=0.01)
PROMPT = 1000
PREFILL_S = PROMPT * 1e9 / 1e12                                       # 1.0 s
TRANSFER_S = LINK.link_latency_s + PROMPT * KV_BYTES_PER_TOKEN / LINK.link_bandwidth_bytes_per_s  # 0.11 s
DECODE_STEP_S = 1e11 / 1e12                                           # 0.1 s


def _run(reqs, *, prefill=SchedulerSpec(), decode=SchedulerSpec(), overhead=0.0, link=LINK):
    return simulate(scheduler=prefill, decode_scheduler=decode, replica=REPLICA, model=PREFILL,
                    decode_model=DECODE, duration_s=10.0, requests=reqs, disagg=link, request_overhead_s=overhead)


def _req(i, arrival=0.0, output=3):
    return Request(id=i, arrival_s=arrival, prompt_tokens=PROMPT, output_tokens=output)


def test_a_single_request_waits_for_prefill_transfer_and_overhead():
    overhead = 0.05
    sim = _run([_req(0, arrival=2.0, output=3)], overhead=overhead)
    seq = sim.recorder.requests[0]
    # TTFT = overhead 0.05 + queue 0 + prefill 1.0 + link wait 0 + transfer 0.11 + slot wait 0 = 1.16 s; the first
    # decode iteration adds nothing: the token sampled by prefill is streamed on admission, before that iteration
    ttft = overhead + PREFILL_S + TRANSFER_S
    assert ttft == pytest.approx(1.16)
    assert seq.first_token_s - seq.req.arrival_s == pytest.approx(ttft, rel=1e-12)
    assert seq.ttft_parts() == pytest.approx((overhead, 0.0, PREFILL_S, 0.0, TRANSFER_S, 0.0), abs=1e-12)
    # tokens 2 and 3 come from two decode iterations of 0.1 s: TPOT is the decode side's gap, not prefill's
    assert seq.finish_s - seq.first_token_s == pytest.approx(2 * DECODE_STEP_S, rel=1e-12)
    s = sim.summary
    assert s["ttft_s"]["mean"] == pytest.approx(ttft, rel=1e-12)
    assert s["tpot_s"]["mean"] == pytest.approx(DECODE_STEP_S, rel=1e-12)
    assert s["ttft_breakdown_s"] == pytest.approx(dict(zip(TTFT_PARTS, seq.ttft_parts())), abs=1e-12)


def test_link_queueing_prefill_queueing_and_slot_wait_by_hand():
    # three requests at t = 0, a prefill budget of two prompts, one decode slot, 3 output tokens each
    #   prefill: A and B in one iteration (2000 tokens: 2.0 s), done at 2.0; C waits for it (queue 2.0), 1.0 s -> 3.0
    #   link (one transfer at a time): A 2.0 -> 2.11; B waits 0.11 s, 2.11 -> 2.22; C 3.0 -> 3.11
    #   decode: A admitted at 2.11 (first token), 2 iterations -> done 2.31; B's KV is there at 2.22 but the one
    #           slot frees at 2.31 (slot wait 0.09); B done 2.51; C arrives at 3.11 to an idle replica
    sim = _run([_req(0), _req(1), _req(2)], prefill=SchedulerSpec(token_budget=2 * PROMPT),
               decode=SchedulerSpec(max_seqs=1))
    by_id = {s.req.id: s for s in sim.recorder.requests}
    expected = {0: (0.0, 0.0, 2.0, 0.0, 0.11, 0.0),
                1: (0.0, 0.0, 2.0, 0.11, 0.11, 0.09),
                2: (0.0, 2.0, 1.0, 0.0, 0.11, 0.0)}
    for i, parts in expected.items():
        assert by_id[i].ttft_parts() == pytest.approx(parts, abs=1e-12), i
        assert by_id[i].first_token_s == pytest.approx(sum(parts), abs=1e-12), i
    breakdown = sim.summary["ttft_breakdown_s"]
    assert breakdown["slot_wait"] == pytest.approx(0.09 / 3, abs=1e-12)
    assert breakdown["link_wait"] == pytest.approx(0.11 / 3, abs=1e-12)
    assert breakdown["queue"] == pytest.approx(2.0 / 3, abs=1e-12)
    assert sum(breakdown.values()) == pytest.approx(sim.summary["ttft_s"]["mean"], rel=1e-12)


def test_ttft_grows_with_concurrency_through_queueing_transfer_and_slots():
    # 64 simultaneous requests against one: the default prefill budget (8192) takes 8 prompts per 8 s iteration,
    # the link moves one KV per 0.11 s and 8 decode slots each hold a request for 20 x 0.1 s
    burst = [_req(i, output=21) for i in range(64)]
    one = _run([_req(0, output=21)]).summary
    many = _run(burst, decode=SchedulerSpec(max_seqs=8)).summary
    assert one["ttft_s"]["p50"] == pytest.approx(PREFILL_S + TRANSFER_S, rel=1e-12)
    assert many["ttft_s"]["p50"] > 3 * one["ttft_s"]["p50"]
    b1, b64 = one["ttft_breakdown_s"], many["ttft_breakdown_s"]
    # alone, nothing waits; in the burst each of prefill queueing, link queueing and decode-slot wait is present
    assert b1["queue"] == b1["link_wait"] == b1["slot_wait"] == 0.0
    assert b64["queue"] > 1.0 and b64["link_wait"] > 0.0 and b64["slot_wait"] > 0.0
    # a batch of 8 prompts prefills in 8 s, 8x the single prompt, which is the rest of the growth
    assert b64["prefill"] == pytest.approx(8 * PREFILL_S, rel=1e-12)
    assert sum(b64.values()) == pytest.approx(many["ttft_s"]["mean"], rel=1e-12)
    # the transfer itself does not depend on load: same bytes, same link
    assert b64["transfer"] == pytest.approx(TRANSFER_S, rel=1e-12)


def test_aggregated_serving_has_no_transfer_parts():
    sim = simulate(scheduler=SchedulerSpec(), replica=REPLICA, model=PREFILL, duration_s=10.0,
                   requests=[_req(0, output=3)])
    # one replica: prefill 1.0 s gives the first token; no link, no decode pool
    assert sim.summary["ttft_breakdown_s"] == pytest.approx(
        {"overhead": 0.0, "queue": 0.0, "prefill": PREFILL_S, "link_wait": 0.0, "transfer": 0.0, "slot_wait": 0.0},
        abs=1e-12)


@pytest.mark.parametrize("field,value", [("prefill_replicas", 0), ("decode_replicas", 1.5),
                                         ("link_bandwidth_bytes_per_s", 0.0),
                                         ("link_bandwidth_bytes_per_s", math.nan),
                                         ("link_latency_s", -1.0), ("link_latency_s", math.inf),
                                         ("link_latency_s", "0.01")])
def test_bad_disagg_spec_is_a_config_error(field, value):
    kw = {**LINK.__dict__, field: value}
    with pytest.raises(ConfigError, match=f"disagg.{field}: expected"):
        DisaggSpec(**kw)


def test_single_output_token_requests_finish_on_the_prefill_pool():
    # a one-token request needs no decode pool: its token is the prefill's, at 1.0 s, and no KV moves
    sim = _run([_req(0, output=1)])
    seq = sim.recorder.requests[0]
    assert seq.first_token_s == seq.finish_s == pytest.approx(PREFILL_S, rel=1e-12)
    assert sim.summary["requests"]["kv_transfers"] == 0
    assert np.isnan(sim.summary["tpot_s"]["mean"])


@pytest.mark.parametrize("kind", ["static", "dynamic", "continuous", "chunked", "disagg"])
def test_the_parts_of_every_ttft_are_non_negative_and_add_up(kind):
    # a loaded Poisson trace with a small KV cache (preemptions happen in the continuous kinds): whatever the policy,
    # each request's parts are waits or work (>= 0) and telescope to its TTFT
    from archsim.serving.arrivals import Poisson
    from archsim.serving.lengths import Uniform
    from archsim.serving.requests import LengthSampler, generate

    reqs = generate(arrival=Poisson(rate_per_s=2.0), duration_s=30.0, seed=5,
                    lengths=LengthSampler(prompt=Uniform(low=100, high=900), output=Uniform(low=1, high=60)))
    small = ReplicaSpec(**{**REPLICA.__dict__, "kv_capacity_tokens": 6_000})
    sched = SchedulerSpec(kind=kind, max_seqs=16, token_budget=2048)
    sim = simulate(scheduler=sched, replica=small, model=PREFILL, decode_model=DECODE if kind == "disagg" else None,
                   duration_s=30.0, requests=reqs, request_overhead_s=0.02,
                   disagg=LINK if kind == "disagg" else None)
    done = sim.recorder.requests
    assert len(done) == len(reqs) > 40
    if kind in ("continuous", "chunked"):
        assert sim.summary["requests"]["preemptions_recompute"] > 0
    parts = np.array([s.ttft_parts() for s in done])
    ttft = np.array([s.first_token_s - s.req.arrival_s for s in done])
    assert (parts >= -1e-12).all()
    np.testing.assert_allclose(parts.sum(axis=1), ttft, rtol=0, atol=1e-9)
    np.testing.assert_allclose(parts[:, 0], 0.02, atol=1e-12)


def test_a_request_the_decode_pool_refuses_frees_its_client_slot():
    # the decode replica holds 500 tokens of KV, less than one 1000-token prompt: every handed-off request is refused
    # there; with a client cap of 1, the second prompt is sent only if the first one's refusal frees the slot
    small = ReplicaSpec(**{**REPLICA.__dict__, "kv_capacity_tokens": 500})
    sim = simulate(scheduler=SchedulerSpec(), replica=REPLICA, model=PREFILL, decode_replica=small,
                   decode_model=DECODE, duration_s=10.0, requests=[_req(0), _req(1)], disagg=LINK,
                   max_concurrency=1)
    assert len(sim.recorder.rejected) == 2 and not sim.recorder.requests
    # the second prompt went out when the first was refused: after its prefill (1.0 s) and transfer (0.11 s)
    second = max(sim.recorder.rejected, key=lambda s: s.req.id)
    assert second.req.arrival_s == pytest.approx(PREFILL_S + TRANSFER_S, rel=1e-12)


def test_transfer_sends_what_a_sliding_window_layer_holds():
    """gpt-oss-like layout (half the layers attend the last 128 keys): a 1000-token prompt's KV is 1000 tokens in
    the full half and 128 in the sliding half, (1000 + 128) / 2 x 1e5 B = 5.64e7 B, 0.0564 s on the 1e9 B/s link
    (+ 0.01 s latency) instead of 0.11 s."""
    from archsim.serving.kvcache import KvLayout

    windowed = ReplicaSpec(**{**REPLICA.__dict__, "kv_layout": KvLayout(groups=((None, 1), (128, 1)))})
    sim = simulate(scheduler=SchedulerSpec(), decode_scheduler=SchedulerSpec(), replica=windowed, model=PREFILL,
                   decode_model=DECODE, duration_s=10.0, requests=[_req(0)], disagg=LINK)
    seq = sim.recorder.requests[0]
    nbytes = (PROMPT + 128) / 2 * KV_BYTES_PER_TOKEN
    assert sim.recorder.transfer_bytes == nbytes == 5.64e7
    assert seq.ttft_parts()[4] == pytest.approx(LINK.link_latency_s + nbytes / 1e9, rel=1e-12)
