"""How a step is assembled from priced graphs: which forwards a step runs (chunked prefill), how sequences spread over
replicas, which micro-batch count the price picks, how much communication two-micro-batch overlap leaves exposed
layer by layer, and the expert placement and busiest-rank expectation that set a MoE layer's pace. Every expected
value is derived here: counts by hand, expectations by brute-force enumeration of the model's own assumptions
(itertools), and times from the per-layer compute and communication the breakdown reports."""
from __future__ import annotations

import itertools
from dataclasses import replace
from math import ceil, comb, fsum

import pytest

from archsim.graph.expert_load import ExpertLoad, uniform_load, zipf_load
from archsim.graph.precision import Shard, precision_from_names
from archsim.mapping.experts import (busiest_rank_work, expected_max, mean_rank_work, place_experts)
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.phase_graph import Forward, by_layer_key, priced_graph
from archsim.mapping.phases import phase_forwards, price_phase, replica_sequences

BF16 = precision_from_names("bf16")
FP8 = precision_from_names("fp8")
REL = 1e-9


# --- forwards of a step ----------------------------------------------------------------------------------------


def test_decode_is_one_forward():
    assert phase_forwards("decode", 5, 3000, 2, 8192) == [
        (Forward(decode=True, seqs=5, new_tokens=2, past=2998), 1.0)]


def test_prefill_without_chunk_or_within_one_chunk_is_one_forward():
    assert phase_forwards("prefill", 4, 1000, 1000, None) == [(Forward(decode=False, seqs=4, new_tokens=1000), 1.0)]
    assert phase_forwards("prefill", 8, 1024, 1024, 8192) == [(Forward(decode=False, seqs=8, new_tokens=1024), 1.0)]


def test_prefill_packs_whole_prompts_per_chunk():
    """Prompts of 3000 tokens, 8192 a chunk: 2 whole prompts per forward. 10 prompts: 5 forwards of 2; 11: and one
    of 1."""
    assert phase_forwards("prefill", 10, 3000, 3000, 8192) == [(Forward(decode=False, seqs=2, new_tokens=3000), 5.0)]
    assert phase_forwards("prefill", 11, 3000, 3000, 8192) == [
        (Forward(decode=False, seqs=2, new_tokens=3000), 5.0), (Forward(decode=False, seqs=1, new_tokens=3000), 1.0)]
    # a chunk of exactly one prompt
    assert phase_forwards("prefill", 3, 4096, 4096, 4096) == [(Forward(decode=False, seqs=1, new_tokens=4096), 3.0)]


def test_long_prompt_in_pieces_after_its_prefix():
    """A 20,000-token prompt in 8192-token pieces: 2 full pieces (after 0 and 8192 cached tokens) and a 3616-token
    tail after 16,384. The full pieces are priced as the first and last, half the count each (their cost is linear in
    the prefix): 3 prompts give 3 + 3 full pieces and 3 tails."""
    out = phase_forwards("prefill", 3, 20000, 20000, 8192)
    assert out == [(Forward(decode=False, seqs=1, new_tokens=8192), 3.0),
                   (Forward(decode=False, seqs=1, new_tokens=8192, past=8192), 3.0),
                   (Forward(decode=False, seqs=1, new_tokens=3616, past=16384), 3.0)]
    # 4 full pieces and no tail: the first (past 0) and the last (past 3 x 8192) twice each per prompt
    assert phase_forwards("prefill", 1, 32768, 32768, 8192) == [
        (Forward(decode=False, seqs=1, new_tokens=8192), 2.0),
        (Forward(decode=False, seqs=1, new_tokens=8192, past=24576), 2.0)]
    assert sum(n for _, n in phase_forwards("prefill", 5, 32768 + 1, 1, 8192)) == 5 * 4 + 5


def _forward_time(model, hw, fwd, tp):
    return priced_graph(model, hw, fwd, BF16, Shard(tp=tp), mtp=False, rank_work=None, row_layout="contiguous",
                        attention="flash", cuda_graph=False, cache=None).cost.time_s


def test_chunked_prefill_step_is_the_sum_of_its_forwards(llama, h200):
    """A 4-layer Llama, TP8, 3 prompts of 20,000 tokens, 8192 a chunk: the step's compute is 3 x (first piece +
    second piece + tail), each forward's device graph priced alone; 9 forwards; each forward's collectives are its
    own tokens' (2 all-reduces per layer of 8192 or 3616 tokens)."""
    model = replace(llama, num_hidden_layers=4)
    b = price_phase(model, h200, Parallelism(tp=8, micro_batches=1), BF16, phase="prefill", batch=3, length=20000,
                    prefill_chunk=8192)
    pieces = [Forward(decode=False, seqs=1, new_tokens=8192), Forward(decode=False, seqs=1, new_tokens=8192,
                                                                       past=8192),
              Forward(decode=False, seqs=1, new_tokens=3616, past=16384)]
    times = [_forward_time(model, h200, f, 8) for f in pieces]
    assert times[1] > times[0]  # the second piece attends to a longer prefix
    assert b.forwards == 9
    assert b.compute_s == pytest.approx(3 * fsum(times), rel=REL)
    ar_8192 = b.layer_comm[0].tp_all_reduce_s  # the first forward's, per layer
    assert b.comm_by_kind["tp_all_reduce"] > 3 * 2 * 4 * ar_8192  # the tails' add to two full pieces' worth
    # without chunking: one forward of 3 x 20,000 tokens
    whole = price_phase(model, h200, Parallelism(tp=8, micro_batches=1), BF16, phase="prefill", batch=3,
                        length=20000)
    assert whole.forwards == 1
    assert whole.compute_s == pytest.approx(_forward_time(model, h200, Forward(decode=False, seqs=3,
                                                                                new_tokens=20000), 8), rel=REL)


def test_pieces_priced_as_first_and_last_are_close_to_every_piece(llama, h200):
    """4 pieces of 8192 tokens: the step prices 2 x (piece after 0) + 2 x (piece after 24,576); the exact sum over
    the prefixes 0, 8192, 16384, 24576 differs only by how far the kernel time is from linear in the prefix."""
    model = replace(llama, num_hidden_layers=4)
    b = price_phase(model, h200, Parallelism(tp=8, micro_batches=1), BF16, phase="prefill", batch=1, length=32768,
                    prefill_chunk=8192)
    exact = fsum(_forward_time(model, h200, Forward(decode=False, seqs=1, new_tokens=8192, past=p), 8)
                 for p in (0, 8192, 16384, 24576))
    two = 2 * (_forward_time(model, h200, Forward(decode=False, seqs=1, new_tokens=8192), 8)
               + _forward_time(model, h200, Forward(decode=False, seqs=1, new_tokens=8192, past=24576), 8))
    assert b.forwards == 4 and b.compute_s == pytest.approx(two, rel=REL)
    assert two == pytest.approx(exact, rel=0.02)


# --- replicas and micro-batches ----------------------------------------------------------------------------------


def test_replica_sequences_round_robin():
    assert replica_sequences(10, 4) == ((3, 2), (2, 2))
    assert replica_sequences(8, 4) == ((2, 4),)
    assert replica_sequences(3, 8) == ((1, 3), (0, 5))
    assert replica_sequences(1, 1) == ((1, 1),)


def test_busiest_replica_sets_the_tokens(dsv3, h200):
    """10 sequences over DP4: the busiest replica holds 3, so a decode micro-batch of it has 3 tokens (1 with 3
    micro-batches); 2 of the 4 replicas are the busy kind. 3 sequences over DP8: 3 busy replicas."""
    b = price_phase(dsv3, h200, Parallelism(dp=4, ep=4, micro_batches=1), FP8, phase="decode", batch=10, length=512)
    assert b.tokens_per_micro_batch == 3 and b.busy_replicas == 4
    b3 = price_phase(dsv3, h200, Parallelism(dp=4, ep=4, micro_batches=3), FP8, phase="decode", batch=10, length=512)
    assert b3.micro_batches == 3 and b3.tokens_per_micro_batch == 1
    assert price_phase(dsv3, h200, Parallelism(dp=8, ep=8, micro_batches=1), FP8, phase="decode", batch=3,
                       length=512).busy_replicas == 3
    # micro-batches never exceed the busiest replica's sequences
    assert price_phase(dsv3, h200, Parallelism(dp=4, ep=4, micro_batches=8), FP8, phase="decode", batch=10,
                       length=512).micro_batches == 3


@pytest.mark.parametrize("batch, pp, candidates", [(8, 1, (1, 2)), (8, 4, (1, 2, 4)), (3, 4, (1, 2, 3)),
                                                   (1, 4, (1,))])
def test_micro_batches_chosen_by_price(llama, h200, batch, pp, candidates):
    """Auto micro-batches: 1, 2 and (with a pipeline) pp, each capped at the busiest replica's sequences; the
    cheapest step wins."""
    model = replace(llama, num_hidden_layers=8)
    kw = dict(phase="prefill", batch=batch, length=2048)
    fixed = {m: price_phase(model, h200, Parallelism(tp=8, pp=pp, micro_batches=m), BF16, **kw) for m in candidates}
    auto = price_phase(model, h200, Parallelism(tp=8, pp=pp, micro_batches=None), BF16, **kw)
    best = min(candidates, key=lambda m: fixed[m].time_s)
    assert auto.micro_batches == best
    assert auto.time_s == pytest.approx(fixed[best].time_s, rel=REL)
    assert all(auto.time_s <= fixed[m].time_s for m in candidates)
    # a count that is not a candidate is never chosen: 3 micro-batches of 8 (not 1, 2 or pp)
    if batch >= 3 and 3 not in candidates:
        assert auto.micro_batches != 3


def test_micro_batch_choice_prefers_overlap_when_communication_dominates(llama, h200):
    """A 4-layer Llama with a narrow FFN on TP8 x PP4: the all-reduces outweigh the compute, so two overlapped
    micro-batches (or four) beat one, and the price picks more than one."""
    model = replace(llama, num_hidden_layers=4, intermediate_size=1024, vocab_size=1024)
    kw = dict(phase="prefill", batch=8, length=4096)
    one = price_phase(model, h200, Parallelism(tp=8, pp=4, micro_batches=1), BF16, **kw)
    auto = price_phase(model, h200, Parallelism(tp=8, pp=4, micro_batches=None), BF16, **kw)
    assert one.communication_s > one.compute_s
    assert auto.micro_batches > 1 and auto.time_s < one.time_s


# --- two-micro-batch overlap, layer by layer ------------------------------------------------------------------


def _embed_head(model, b):
    keyed = by_layer_key(model, b.graph_cost.time_s_by_layer)
    return keyed.get("embed", 0.0), keyed.get("head", 0.0)


def _small_moe(dsv3):
    """DeepSeek-V3 with 6 layers (3 dense, 3 MoE), 16 attention heads and 256-wide experts: at 2048 tokens a
    micro-batch, a MoE layer's DeepEP exchange over two nodes outlasts its compute, a dense layer has no exchange."""
    return replace(dsv3, num_hidden_layers=6, moe_intermediate_size=256, num_attention_heads=16)


def test_overlap_exposes_each_layers_excess_per_micro_batch(dsv3, h200):
    """Prefill of 32 prompts x 2048 tokens on DP16 x EP16 (2 nodes), 2 overlapped micro-batches (one prompt each a
    replica): a layer's collectives hide behind the other micro-batch's compute of the same layer. DeepEP's
    throughput kernels hold 20 of the 132 SMs (hardware/h200.yaml node.ep_throughput_sms; DSV3-TR 3.2.2), so the
    compute beside them runs on the rest: a MoE layer exposes max(comm - compute, 20/132 x comm) per micro-batch.
    The 3 dense layers have nothing to hide, and their spare compute does not hide a MoE layer's exchange (the
    whole step's max(0, comm - compute) would be 0)."""
    assert (h200.node.ep_throughput_sms, h200.sm_count) == (20, 132)
    f = 20 / 132
    model = _small_moe(dsv3)
    par = Parallelism(dp=16, ep=16, micro_batches=2)
    b = price_phase(model, h200, par, FP8, phase="prefill", batch=32, length=2048)
    assert b.micro_batches == 2 and len(b.layer_compute_s) == len(b.layer_comm) == 6
    assert [c.ep_sm_fraction for c in b.layer_comm] == [0.0] * 3 + [f] * 3
    excess = [max(0.0, c.total_s - t, f * c.total_s) if c.ep_dispatch_s else max(0.0, c.total_s - t)
              for c, t in zip(b.layer_comm, b.layer_compute_s)]
    assert [e > 0 for e in excess] == [False] * 3 + [True] * 3
    # here the exchange outlasts the compute: comm - compute is the larger
    assert all(c.total_s - t > f * c.total_s for c, t in zip(b.layer_comm[3:], b.layer_compute_s[3:]))
    embed, head = _embed_head(model, b)
    assert fsum(b.layer_compute_s) + embed + head == pytest.approx(b.compute_s / 2, rel=REL)
    assert b.exposed_s == pytest.approx(2 * fsum(excess), rel=1e-9)
    assert b.communication_s == pytest.approx(2 * fsum(c.total_s for c in b.layer_comm), rel=1e-9)
    assert b.communication_s < b.compute_s and b.exposed_s > 0
    assert b.time_s == pytest.approx(b.compute_s + b.exposed_s, rel=REL)
    # switched off: all of it
    off = price_phase(model, h200, par, FP8, phase="prefill", batch=32, length=2048, overlap=False)
    assert off.exposed_s == pytest.approx(off.communication_s, rel=REL)
    # one micro-batch: nothing to overlap with
    one = price_phase(model, h200, replace(par, micro_batches=1), FP8, phase="prefill", batch=32, length=2048)
    assert one.exposed_s == pytest.approx(one.communication_s, rel=REL)


def test_overlap_of_a_compute_bound_exchange_exposes_the_sm_share(dsv3, h200):
    """The full DeepSeek-V3 on the same layout: a MoE layer's compute outlasts its exchange, yet the 20 SMs the
    throughput kernels hold slow the compute beside them: each MoE layer exposes 20/132 x comm per micro-batch. A
    low-latency exchange (decode kernels) holds no SM: a decode step whose layers outlast their exchange exposes
    nothing."""
    f = 20 / 132
    b = price_phase(dsv3, h200, Parallelism(dp=16, ep=16, micro_batches=2), FP8, phase="prefill", batch=32,
                    length=2048)
    moe = [(c, t) for c, t in zip(b.layer_comm, b.layer_compute_s) if c.ep_dispatch_s]
    assert len(moe) == 58 and all(t > c.total_s for c, t in moe)
    assert b.exposed_s == pytest.approx(2 * fsum(f * c.total_s for c, _ in moe), rel=1e-9)
    d = price_phase(dsv3, h200, Parallelism(dp=8, ep=8, micro_batches=2), FP8, phase="decode", batch=64,
                    length=2048)
    assert all(c.ep_sm_fraction == 0.0 for c in d.layer_comm)
    assert all(t > c.total_s for c, t in zip(d.layer_comm, d.layer_compute_s))
    assert d.exposed_s == 0.0 and d.communication_s > 0


def test_overlap_exposes_the_pipeline_send_past_the_embedding(dsv3, h200):
    """The same on PP2 (16 chips a stage, 32 in all: the send crosses nodes): the worst stage holds the 3 dense
    layers and the embedding; the send of one micro-batch (2048 tokens x 7168 x 2 B over InfiniBand) hides behind
    the other's embedding only: exposed 2 x (send - embedding)."""
    model = _small_moe(dsv3)
    b = price_phase(model, h200, Parallelism(dp=16, ep=16, pp=2, micro_batches=2), FP8, phase="prefill", batch=32,
                    length=2048)
    assert b.worst_stage == 0 and all(c.total_s == 0.0 for c in b.layer_comm)
    out = h200.node.scale_out
    send = out.latency_s + 2048 * 7168 * 2 / (out.bandwidth_bytes_per_s * out.achievable_fraction)
    assert b.pp_send_s == pytest.approx(send, rel=REL)
    embed, _ = _embed_head(model, b)
    assert send > embed
    assert b.exposed_s == pytest.approx(2 * (send - embed), rel=1e-9)
    assert b.communication_s == pytest.approx(2 * send, rel=REL)
    # the bubble paces at max(compute, comm + send) of a micro-batch
    assert b.bubble_s == pytest.approx(max(b.compute_s / 2, send), rel=REL)


def test_overlap_hides_the_pipeline_send_behind_embedding_or_head(llama, h200):
    """Llama TP8 x PP2, decode of 4 sequences in 2 overlapped micro-batches: a layer exposes max(0, all-reduces -
    compute) (nothing: weight reads take longer); the send of one micro-batch hides behind the compute outside the
    layers (embedding on stage 0, head on stage 1) of the other: exposed max(0, send - that) per micro-batch."""
    b = price_phase(llama, h200, Parallelism(tp=8, pp=2, micro_batches=2), BF16, phase="decode", batch=4,
                    length=1024)
    embed, head = _embed_head(llama, b)
    rest = embed if b.worst_stage == 0 else head
    excess = fsum(max(0.0, c.total_s - t) for c, t in zip(b.layer_comm, b.layer_compute_s))
    assert b.exposed_s == pytest.approx(2 * excess + 2 * max(0.0, b.pp_send_s - rest), rel=1e-9)
    assert b.compute_s / 2 == pytest.approx(fsum(b.layer_compute_s) + rest, rel=REL)


def test_overlap_exposure_of_a_communication_bound_pipeline(llama, h200):
    """A narrow 4-layer Llama (16 heads, FFN 1024) where the all-reduces outlast the layers' compute: exposed = 2 x sum over the stage's
    layers of (comm - compute) plus 2 x max(0, send - embedding or head)."""
    model = replace(llama, num_hidden_layers=4, intermediate_size=1024, vocab_size=1024, num_attention_heads=16)
    b = price_phase(model, h200, Parallelism(tp=8, pp=2, micro_batches=2), BF16, phase="prefill", batch=2,
                    length=16384)
    embed, head = _embed_head(model, b)
    rest = embed if b.worst_stage == 0 else head
    per_layer = [c.total_s - t for c, t in zip(b.layer_comm, b.layer_compute_s)]
    assert all(x > 0 for x in per_layer)
    assert b.exposed_s == pytest.approx(2 * fsum(per_layer) + 2 * max(0.0, b.pp_send_s - rest), rel=1e-9)


# --- expert placement (EPLB) ---------------------------------------------------------------------------------


def test_placement_without_redundancy_is_contiguous():
    p = place_experts(uniform_load(8, 2), 4)
    assert p.expert_of_slot == tuple(range(8)) and p.rank_of_slot == (0, 0, 1, 1, 2, 2, 3, 3)
    assert p.replicas == (1,) * 8 and p.slots_per_rank == 2


def test_eplb_replicates_the_heaviest_per_replica_and_packs_heaviest_first():
    """Loads 0.4, 0.3, 0.2, 0.1 (k = 1), 2 redundant slots over 2 ranks (3 slots each). Replication: expert 0
    (0.4) gets a second replica (0.2 each), then expert 1 (0.3 > 0.2) (0.15 each). Replicas heaviest first: e0 0.2,
    e0 0.2, e2 0.2, e1 0.15, e1 0.15, e3 0.1; each to the least-loaded rank with a free slot (ties: lower rank):
    e0 -> r0 (0.2), e0 -> r1 (0.2), e2 -> r0 (0.4), e1 -> r1 (0.35), e1 -> r1 (0.5, full), e3 -> r0 (0.5)."""
    load = ExpertLoad(kind="measured", probs=(0.4, 0.3, 0.2, 0.1), k=1)
    p = place_experts(load, 2, 2)
    assert p.replicas == (2, 2, 1, 1)
    assert p.expert_of_slot == (0, 0, 2, 1, 1, 3)
    assert p.rank_of_slot == (0, 1, 0, 1, 1, 0)
    q = p.slot_probs(load)
    assert q.tolist() == pytest.approx([0.2, 0.2, 0.2, 0.15, 0.15, 0.1])
    assert [float(x.sum()) for x in p.by_rank(q)] == pytest.approx([0.5, 0.5])


def test_eplb_relieves_a_zipf_hot_expert():
    """Zipf(1.2) over 16 experts (k = 2), 4 ranks, 4 redundant slots (5 per rank): the hottest expert is replicated,
    its replicas split its load, and the busiest rank's expected load drops against no redundancy."""
    load = zipf_load(16, 2, 1.2)
    plain = place_experts(load, 4)
    eplb = place_experts(load, 4, 4)
    assert eplb.replicas[0] >= 2 and sum(eplb.replicas) == 20
    assert len(eplb.expert_of_slot) == 20 and all(eplb.rank_of_slot.count(r) == 5 for r in range(4))
    top_plain = max(float(x.sum()) for x in plain.by_rank(plain.slot_probs(load)))
    top_eplb = max(float(x.sum()) for x in eplb.by_rank(eplb.slot_probs(load)))
    assert top_eplb < top_plain
    # every replica carries p_e / replicas_e; the slots carry all the load
    assert float(eplb.slot_probs(load).sum()) == pytest.approx(2.0, rel=REL)


# --- the busiest EP rank: brute force over the model's assumptions --------------------------------------------


def _brute_force_busiest(q_by_rank, tokens):
    """E[max_r X_r] and E[max_r D_r] where every (token, slot) pick is an independent Bernoulli(q_s) and ranks are
    independent (the model's assumptions, mapping/experts.py): enumerate each rank's outcomes, then combine the
    ranks' laws exactly."""
    laws_x, laws_d = [], []
    for q in q_by_rank:
        px, pd = {}, {}
        cells = [(t, s) for t in range(tokens) for s in range(len(q))]
        for hits in itertools.product((0, 1), repeat=len(cells)):
            pr = 1.0
            for (t, s), h in zip(cells, hits):
                pr *= q[s] if h else 1 - q[s]
            x = sum(hits)
            d = sum(1 for s in range(len(q)) if any(h for (t, s2), h in zip(cells, hits) if s2 == s))
            px[x] = px.get(x, 0.0) + pr
            pd[d] = pd.get(d, 0.0) + pr
        laws_x.append(px)
        laws_d.append(pd)

    def emax(laws):
        total = 0.0
        for combo in itertools.product(*[list(law.items()) for law in laws]):
            pr = 1.0
            for _, p in combo:
                pr *= p
            total += pr * max(v for v, _ in combo)
        return total

    return emax(laws_x), emax(laws_d)


def test_busiest_rank_by_brute_force_uniform():
    """4 experts, k = 1 (p = 1/4 each), 2 ranks of 2, 3 tokens: 2^6 outcomes per rank."""
    load = uniform_load(4, 1)
    p = place_experts(load, 2)
    x, d = _brute_force_busiest([[0.25, 0.25], [0.25, 0.25]], 3)
    w = busiest_rank_work(load, p, 3)
    assert w.tokens == pytest.approx(x, rel=1e-9) and w.distinct == pytest.approx(d, rel=1e-9)
    assert w.tokens > 3 * 0.5  # the mean rank gets 1.5 copies
    m = mean_rank_work(load, p, 3)
    assert m.tokens == pytest.approx(1.5, rel=REL)
    assert m.distinct == pytest.approx(2 * (1 - 0.75 ** 3) * 2 / 2, rel=REL)


def test_busiest_rank_by_brute_force_skewed_with_replicas():
    """Loads 0.4, 0.3, 0.2, 0.1 with 2 redundant slots on 2 ranks (placement above): rank 0 holds slots of
    0.2, 0.2, 0.1, rank 1 of 0.2, 0.15, 0.15; 2 tokens: 2^6 outcomes each."""
    load = ExpertLoad(kind="measured", probs=(0.4, 0.3, 0.2, 0.1), k=1)
    p = place_experts(load, 2, 2)
    x, d = _brute_force_busiest([[0.2, 0.2, 0.1], [0.2, 0.15, 0.15]], 2)
    w = busiest_rank_work(load, p, 2)
    assert w.tokens == pytest.approx(x, rel=1e-9) and w.distinct == pytest.approx(d, rel=1e-9)
    assert len(w.tokens_per_slot) == 3


def test_busiest_rank_slots_and_hottest_slot():
    """The busiest rank's slot tokens sum to E[max_r X_r]; its hottest slot is at least the group's E[max_s] over
    single slots (here 8 identical slots of q = 1/8 for 4 tokens: E[max of 8 iid Binomial(4, 1/8)])."""
    load = uniform_load(8, 1)
    p = place_experts(load, 2)
    w = busiest_rank_work(load, p, 4)
    cdf = [sum(comb(4, j) * (1 / 8) ** j * (7 / 8) ** (4 - j) for j in range(x + 1)) for x in range(5)]
    hottest = sum(1 - cdf[x] ** 8 for x in range(5))
    assert max(w.tokens_per_slot) == pytest.approx(hottest, rel=1e-9)
    # a rank: 4 x 4 Bernoulli(1/8) picks, Binomial(16, 1/8); the busier of 2 ranks
    cdf_r = [sum(comb(16, j) * (1 / 8) ** j * (7 / 8) ** (16 - j) for j in range(x + 1)) for x in range(17)]
    assert w.tokens == pytest.approx(sum(1 - c ** 2 for c in cdf_r), rel=1e-9)
    assert busiest_rank_work(load, p, 0).tokens == 0.0


def test_expected_max_exact_laws():
    """E[max] of independent counts: two fair coins give 3/4; a die against a constant 3.5 is not a count, so take
    a die (1..6) against a coin (0/1): E[max] = E[die] = 3.5 (the die always wins)."""
    coin = ("exact", [0.5, 0.5])
    assert expected_max([coin, coin]) == pytest.approx(0.75, rel=REL)
    assert expected_max([coin], [2]) == pytest.approx(0.75, rel=REL)
    die = ("exact", [0.0] + [1 / 6] * 6)
    assert expected_max([die, coin]) == pytest.approx(3.5, rel=REL)
    # max of 3 dice: sum over x of 1 - (x/6)^3
    assert expected_max([die], [3]) == pytest.approx(sum(1 - (x / 6) ** 3 for x in range(6)), rel=REL)
    # a normal law of sd 0 is its mean
    assert expected_max([("normal", 5.0, 0.0)]) == pytest.approx(5.0, rel=1e-3)
