"""The collectives a layout adds to a step, each against a hand derivation from the hardware YAML (Hockney:
t = latency + bytes / (bandwidth x achievable_fraction) per message), the layer counts of the model and the bytes
of the tensors that cross the links. No number here comes from a second implementation of the same rule.

Hardware fields used (hardware/h200.yaml, the same on h100.yaml): NVLink 4 450 GB/s per direction x 0.79,
3.33 us per message; ConnectX-7 NDR400 400 Gb/s = 50 GB/s x 0.86, 2.8 us; DeepEP low-latency call 26 us;
8 chips per node; DeepEP's throughput kernels hold 20 of the 132 SMs. ``test_link_fields_are_the_ones_derived_with`` pins them, so a YAML change fails there first
and names the field.
"""
from __future__ import annotations

from dataclasses import replace
from math import ceil, comb, fsum, log2

import pytest

from archsim.cost.collectives import price_collective, price_ep_exchange
from archsim.graph.expert_load import uniform_load
from archsim.graph.precision import precision_from_names
from archsim.mapping.layer_comm import LayerComm, dispatch_dtype, ep_exchange_mode, layer_comm, moe_exchange
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.phases import price_phase

BF16 = precision_from_names("bf16")
FP8 = precision_from_names("fp8")
REL = 1e-9

# --- the hand formulas (docs/parallelism.md, "Collectives") -------------------------------------------------


def hockney(link, nbytes: float) -> float:
    """One message of ``nbytes`` over ``link``: latency + (bytes + n_half) / (bandwidth x fraction)."""
    return link.latency_s + (nbytes + link.half_bandwidth_bytes) / (link.bandwidth_bytes_per_s
                                                                     * link.achievable_fraction)


def ring_all_reduce(link, m: float, p: int) -> float:
    """Ring: 2(p - 1) steps, each one message of m / p."""
    return 2 * (p - 1) * hockney(link, m / p)


def tree_all_reduce(link, m: float, p: int) -> float:
    """Recursive halving / doubling: 2 ceil(log2 p) steps moving 2 (p - 1) / p x m in all, evenly."""
    steps = 2 * ceil(log2(p))
    return steps * hockney(link, 2 * (p - 1) / p * m / steps)


def all_reduce_in_node(hw, m: float, p: int) -> float:
    """The cheaper of ring and tree on NVLink (a group inside one node)."""
    return min(ring_all_reduce(hw.node.scale_up, m, p), tree_all_reduce(hw.node.scale_up, m, p))


def ring_all_gather(link, m: float, p: int) -> float:
    """Ring all-gather (or reduce-scatter) of an m-byte buffer: p - 1 steps of m / p."""
    return (p - 1) * hockney(link, m / p)


def test_link_fields_are_the_ones_derived_with(h200, h100):
    for hw in (h200, h100):
        up, out = hw.node.scale_up, hw.node.scale_out
        assert (up.bandwidth_bytes_per_s, up.achievable_fraction, up.latency_s, up.half_bandwidth_bytes) == (
            450e9, 0.79, 3.33e-6, 0.0)
        assert (out.bandwidth_bytes_per_s, out.achievable_fraction, out.latency_s, out.half_bandwidth_bytes) == (
            50e9, 0.86, 2.8e-6, 0.0)
        assert hw.node.chips_per_node == 8 and hw.node.ep_low_latency_call_s == 26e-6
        assert hw.node.ep_throughput_sms == 20 and hw.sm_count == 132


def test_all_reduce_ring_and_tree_over_nvlink_in_numbers(h200):
    """One 1 MiB all-reduce over 8 H200 on NVLink, worked out: ring 14 steps of 131,072 B, each 3.33 us + 131,072 /
    (450e9 x 0.79 = 355.5e9 B/s) = 3.33 + 0.368698 us: 51.78 us; tree 6 steps of 2 x 7/8 x 1 MiB / 6 = 305,834.67 B,
    each 3.33 + 0.860294 us: 25.14 us. The collective takes the cheaper (tree)."""
    m = 2 ** 20
    ring = 14 * (3.33e-6 + 131072 / 355.5e9)
    tree = 6 * (3.33e-6 + (2 * 7 / 8 * m / 6) / 355.5e9)
    assert ring == pytest.approx(51.7818e-6, rel=1e-5) and tree == pytest.approx(25.1418e-6, rel=1e-5)
    assert price_collective("all_reduce", m, 8, h200, algorithm="ring").time_s == pytest.approx(ring, rel=REL)
    assert price_collective("all_reduce", m, 8, h200, algorithm="tree").time_s == pytest.approx(tree, rel=REL)
    assert price_collective("all_reduce", m, 8, h200).time_s == pytest.approx(tree, rel=REL)
    # the same helpers as the tests below use
    assert ring_all_reduce(h200.node.scale_up, m, 8) == pytest.approx(ring, rel=REL)
    assert tree_all_reduce(h200.node.scale_up, m, 8) == pytest.approx(tree, rel=REL)


# --- the attention TP all-reduces of a layer -----------------------------------------------------------------


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_tp_all_reduce_of_every_llama_layer(llama, h200, tp):
    """Llama-3.1-405B decode, attention TP on one node, 8 sequences: each of the 126 layers all-reduces its 8 tokens'
    hidden vectors (8 x 16384 x 2 B = 262,144 B) twice (after o_proj and after down_proj), nothing else moves."""
    b = price_phase(llama, h200, Parallelism(tp=tp, micro_batches=1), BF16, phase="decode", batch=8, length=1024)
    one = all_reduce_in_node(h200, 8 * 16384 * 2, tp)
    assert len(b.layer_comm) == 126
    for c in b.layer_comm:
        assert c.tp_all_reduce_s == pytest.approx(2 * one, rel=REL)
        assert c.ep_dispatch_s == c.ep_combine_s == c.cp_kv_exchange_s == 0.0
    assert b.comm_by_kind["tp_all_reduce"] == pytest.approx(126 * 2 * one, rel=REL)
    assert b.communication_s == pytest.approx(126 * 2 * one, rel=REL)
    # one micro-batch: nothing hides it
    assert b.exposed_s == pytest.approx(b.communication_s, rel=REL)
    assert b.time_s == pytest.approx(b.compute_s + 126 * 2 * one, rel=REL)


def test_tp_all_reduce_per_micro_batch_of_a_prefill(llama, h200):
    """Prefill of 8 prompts of 1024 tokens in 2 micro-batches, TP8: a micro-batch holds 4 x 1024 tokens, so each
    all-reduce moves 4096 x 16384 x 2 B, twice per layer per micro-batch, 126 layers."""
    b = price_phase(llama, h200, Parallelism(tp=8, micro_batches=2), BF16, phase="prefill", batch=8, length=1024,
                    overlap=False)
    assert b.micro_batches == 2 and b.tokens_per_micro_batch == 4096
    one = all_reduce_in_node(h200, 4096 * 16384 * 2, 8)
    assert b.comm_by_kind["tp_all_reduce"] == pytest.approx(2 * 126 * 2 * one, rel=REL)
    # overlap off: every second of it is exposed
    assert b.exposed_s == pytest.approx(2 * 126 * 2 * one, rel=REL)


def test_context_parallel_splits_the_all_reduce_and_exchanges_kv(llama, h200):
    """Prefill of one 8192-token prompt with TP4 x CP2 (8 chips, one node): each chip holds 4096 tokens, so its TP
    all-reduces move 4096 x 16384 x 2 B; the ring attention passes every chip's K/V of the layer around the CP group:
    the bytes of an all-gather of 8192 tokens x (2 x 8 kv heads x 128 x 2 B) / 4 (GQA heads split over TP) over 2
    chips, one step of half of it."""
    b = price_phase(llama, h200, Parallelism(tp=4, cp=2, micro_batches=1), BF16, phase="prefill", batch=1,
                    length=8192)
    ar = all_reduce_in_node(h200, 4096 * 16384 * 2, 4)
    kv = ring_all_gather(h200.node.scale_up, 8192 * (2 * 8 * 128 * 2) / 4, 2)
    for c in b.layer_comm:
        assert c.tp_all_reduce_s == pytest.approx(2 * ar, rel=REL)
        assert c.cp_kv_exchange_s == pytest.approx(kv, rel=REL)
    assert b.comm_by_kind["cp_kv_exchange"] == pytest.approx(126 * kv, rel=REL)
    assert b.communication_s == pytest.approx(126 * (2 * ar + kv), rel=REL)
    # a decode step exchanges no K/V (each chip attends to its own share of the cache: not modelled as traffic)
    d = price_phase(llama, h200, Parallelism(tp=4, cp=2, micro_batches=1), BF16, phase="decode", batch=2,
                    length=8192)
    assert d.comm_by_kind["cp_kv_exchange"] == 0.0


def test_mla_kv_exchange_is_the_latent_not_split_by_tp(dsv3, h200):
    """DeepSeek-V3 prefill, TP2 x CP2: the MLA latent + rope key (512 + 64 values, BF16 here) is replicated over the
    TP group, so the K/V all-gather is 4096 tokens x 1152 B, not divided by TP."""
    par = Parallelism(tp=2, cp=2, moe_tp=2, ep=2, micro_batches=1)
    c = layer_comm(dsv3, h200, par, FP8, 0, tokens=4096, group_tokens=4096, busiest_copies=0.0, phase="prefill",
                   ep_mode=None)
    assert c.cp_kv_exchange_s == pytest.approx(ring_all_gather(h200.node.scale_up, 4096 * 1152, 2), rel=REL)
    assert c.tp_all_reduce_s == pytest.approx(2 * all_reduce_in_node(h200, 4096 * 7168 * 2 / 2, 2), rel=REL)


# --- how tokens meet experts ---------------------------------------------------------------------------------


def test_moe_exchange_rule(dsv3, llama):
    assert moe_exchange(llama, Parallelism(tp=8)) == "none"
    assert moe_exchange(dsv3, Parallelism(dp=8)) == "none"                       # one chip per MoE group
    assert moe_exchange(dsv3, Parallelism(tp=8, moe_tp=8)) == "replicated"
    assert moe_exchange(dsv3, Parallelism(tp=8, ep=8)) == "replicated"
    assert moe_exchange(dsv3, Parallelism(tp=4, cp=2, moe_tp=4)) == "gather"      # CP: the group holds 2 replicas'
    assert moe_exchange(dsv3, Parallelism(dp=8, moe_tp=8)) == "gather"
    assert moe_exchange(dsv3, Parallelism(dp=8, ep=8)) == "deepep"
    assert moe_exchange(dsv3, Parallelism(tp=2, dp=4, moe_tp=2, ep=4)) == "deepep"
    assert dispatch_dtype(FP8).name == "fp8" and dispatch_dtype(BF16).name == "bf16"


def test_replicated_moe_adds_no_exchange(dsv3, h200):
    """Attention TP8 with EP8 (or MoE-TP8) inside the TP group: a MoE layer only all-reduces, 2 x 32 tokens."""
    for par in (Parallelism(tp=8, ep=8), Parallelism(tp=8, moe_tp=8)):
        c = layer_comm(dsv3, h200, par, FP8, 10, tokens=32, group_tokens=32, busiest_copies=70.0, phase="decode",
                       ep_mode=None)
        assert c.tp_all_reduce_s == pytest.approx(2 * all_reduce_in_node(h200, 32 * 7168 * 2, 8), rel=REL)
        assert c.ep_dispatch_s == c.ep_combine_s == c.cp_kv_exchange_s == 0.0


def test_gather_moe_all_gathers_and_reduce_scatters_the_group_tokens(dsv3, h200):
    """Attention DP8 with MoE-TP8: the group gathers its 8 replicas' 4 tokens each (32 x 7168 x 2 B) before the
    experts and reduce-scatters the outputs after: two ring passes of 7 steps of 1/8 of it. A dense layer does
    neither."""
    par = Parallelism(dp=8, moe_tp=8)
    c = layer_comm(dsv3, h200, par, FP8, 10, tokens=4, group_tokens=32, busiest_copies=0.0, phase="decode",
                   ep_mode=None)
    one = ring_all_gather(h200.node.scale_up, 32 * 7168 * 2, 8)
    assert c.ep_dispatch_s == pytest.approx(one, rel=REL) and c.ep_combine_s == pytest.approx(one, rel=REL)
    assert c.tp_all_reduce_s == 0.0 and c.total_s == pytest.approx(2 * one, rel=REL)
    assert layer_comm(dsv3, h200, par, FP8, 2, tokens=4, group_tokens=32, busiest_copies=0.0, phase="decode",
                      ep_mode=None) == LayerComm()


FP8_TOKEN = 7168 + 7168 // 128 * 4   # FP8 values + one float32 scale per 128: 7392 B (DeepEP's dispatch)
BF16_TOKEN = 7168 * 2                # the combine returns BF16


def test_deepep_low_latency_in_one_node(dsv3, h200):
    """Attention DP8 x EP8 on one H200 node, decode: every (token, expert) copy goes to its chip over NVLink (no
    off-node share), plus the 26 us call. The busiest rank moves max(own tokens, received copies / k) tokens' worth:
    here 5 own, 70 received copies / 8 = 8.75."""
    par = Parallelism(dp=8, ep=8)
    c = layer_comm(dsv3, h200, par, FP8, 10, tokens=5, group_tokens=40, busiest_copies=70.0, phase="decode",
                   ep_mode=None)
    up = h200.node.scale_up
    t = 70.0 / 8
    assert c.ep_dispatch_s == pytest.approx(26e-6 + hockney(up, t * 8 * FP8_TOKEN), rel=REL)
    assert c.ep_combine_s == pytest.approx(26e-6 + hockney(up, t * 8 * BF16_TOKEN), rel=REL)
    assert c.tp_all_reduce_s == 0.0
    # the rank's own tokens when they outnumber what it receives
    c2 = layer_comm(dsv3, h200, par, FP8, 10, tokens=12, group_tokens=96, busiest_copies=16.0, phase="decode",
                    ep_mode=None)
    assert c2.ep_dispatch_s == pytest.approx(26e-6 + hockney(up, 12 * 8 * FP8_TOKEN), rel=REL)
    # BF16 experts dispatch BF16
    c3 = layer_comm(dsv3, h200, par, BF16, 10, tokens=12, group_tokens=96, busiest_copies=16.0, phase="decode",
                    ep_mode=None)
    assert c3.ep_dispatch_s == pytest.approx(26e-6 + hockney(up, 12 * 8 * BF16_TOKEN), rel=REL)


def test_deepep_low_latency_across_nodes(dsv3, h200):
    """DP32 x EP32 over 4 nodes: a copy stays on its node with probability 8/32; the off-node 3/4 of the k copies go
    over InfiniBand, the rest over NVLink, the two in parallel (the slower sets the time)."""
    par = Parallelism(dp=32, ep=32)
    c = layer_comm(dsv3, h200, par, FP8, 10, tokens=16, group_tokens=512, busiest_copies=100.0, phase="decode",
                   ep_mode=None)
    t = 16.0  # own 16 > 100 / 8
    out = hockney(h200.node.scale_out, t * 8 * FP8_TOKEN * 0.75)
    up = hockney(h200.node.scale_up, t * 8 * FP8_TOKEN * 0.25)
    assert out > up
    assert c.ep_dispatch_s == pytest.approx(26e-6 + out, rel=REL)
    assert c.ep_combine_s == pytest.approx(26e-6 + hockney(h200.node.scale_out, t * 8 * BF16_TOKEN * 0.75), rel=REL)


def test_deepep_throughput_prefill_across_nodes(dsv3, h200):
    """Prefill over DP16 x EP16 (2 nodes): throughput kernels. A token crosses to each distinct remote node once.
    DeepSeek-V3 routes to 4 of 8 expert groups; 2 nodes hold 4 groups each. P(node 0 hit) = sum over h groups of
    node 0 selected (hypergeometric C(4,h) C(4,4-h) / C(8,4)) of P(some of the 8 picks among the 4h x 32 experts of
    node 0 out of 128 selectable) = 1 - C(128 - 32h, 8) / C(128, 8). Expected remote nodes = 2 P(hit) x 1/2. Then
    each landing chip forwards over NVLink to the other destination chips of its node: min(E[distinct chips of 16],
    8) x (1 - 1/8) copies. The legs overlap; each phase takes the slower."""
    par = Parallelism(dp=16, ep=16)
    tokens = 1024
    c = layer_comm(dsv3, h200, par, FP8, 10, tokens=tokens, group_tokens=16 * tokens, busiest_copies=8 * tokens,
                   phase="prefill", ep_mode=None)
    p_hit = sum(comb(4, h) * comb(4, 4 - h) / comb(8, 4) * (1 - comb(128 - 32 * h, 8) / comb(128, 8))
                for h in range(5))
    remote = 2 * p_hit * 0.5
    # distinct chips of 16 hit by 8 distinct experts of 256 (16 per chip): 16 x (1 - C(240, 8) / C(256, 8))
    chips = min(16 * (1 - comb(240, 8) / comb(256, 8)), 8.0)
    for got, per_copy in ((c.ep_dispatch_s, FP8_TOKEN), (c.ep_combine_s, BF16_TOKEN)):
        out = hockney(h200.node.scale_out, tokens * per_copy * remote)
        up = hockney(h200.node.scale_up, tokens * per_copy * chips * (1 - 1 / 8))
        assert got == pytest.approx(max(out, up), rel=REL)
    assert ep_exchange_mode(dsv3, par, "prefill") == "throughput"
    # DeepEP's throughput kernels hold 20 of the 132 SMs while they run; the low-latency ones none
    assert c.ep_sm_fraction == 20 / 132
    d = layer_comm(dsv3, h200, par, FP8, 10, tokens=8, group_tokens=128, busiest_copies=64.0, phase="decode",
                   ep_mode=None)
    assert d.ep_sm_fraction == 0.0


def test_moe_tp_times_ep_sends_each_copy_to_the_moe_tp_chips(dsv3, h200):
    """MoE-TP2 x EP4 over attention TP2 x DP4: an expert's width is split over 2 chips, so a copy goes to both: the
    exchange is priced as k x moe_tp = 16 picks of 256 x 2 column-slices over the 8-chip group; a chip sends its share
    of its replica's tokens (tokens / tp)."""
    par = Parallelism(tp=2, dp=4, moe_tp=2, ep=4)
    c = layer_comm(dsv3, h200, par, FP8, 10, tokens=20, group_tokens=80, busiest_copies=64.0, phase="decode",
                   ep_mode=None)
    t = max(20 / 2, 64.0 / 8)  # own 10 tokens vs 64 copies / k
    up = h200.node.scale_up
    assert c.ep_dispatch_s == pytest.approx(26e-6 + hockney(up, t * 16 * FP8_TOKEN), rel=REL)
    assert c.ep_combine_s == pytest.approx(26e-6 + hockney(up, t * 16 * BF16_TOKEN), rel=REL)
    assert c.tp_all_reduce_s == pytest.approx(2 * all_reduce_in_node(h200, 20 * 7168 * 2, 2), rel=REL)
    x = price_ep_exchange(tokens=t, hidden=7168, topk=16, n_experts=512, ep=8, hw=h200,
                          dispatch_dtype=dispatch_dtype(FP8), combine_dtype=FP8.activations, n_group=8, topk_group=4,
                          mode="low_latency")
    assert c.ep_dispatch_s == pytest.approx(x.dispatch.time_s, rel=REL)


def test_explicit_ep_mode_overrides_the_phase_default(dsv3, h200):
    par = Parallelism(dp=16, ep=16)
    kw = dict(tokens=64, group_tokens=1024, busiest_copies=512.0)
    ll = layer_comm(dsv3, h200, par, FP8, 10, phase="prefill", ep_mode="low_latency", **kw)
    ll_decode = layer_comm(dsv3, h200, par, FP8, 10, phase="decode", ep_mode=None, **kw)
    tp = layer_comm(dsv3, h200, par, FP8, 10, phase="decode", ep_mode="throughput", **kw)
    tp_prefill = layer_comm(dsv3, h200, par, FP8, 10, phase="prefill", ep_mode=None, **kw)
    assert ll == ll_decode and tp == tp_prefill and ll != tp
    # the low-latency call carries its 26 us fixed cost
    assert ll.ep_dispatch_s > 26e-6


# --- the busiest EP rank in a step -------------------------------------------------------------------------------


def _binomial_expected_max(n: int, p: float, ranks: int) -> float:
    """E[max of ``ranks`` iid Binomial(n, p)] = sum_x (1 - F(x)^ranks), F summed term by term."""
    total, cdf = 0.0, 0.0
    for x in range(n + 1):
        cdf += comb(n, x) * p ** x * (1 - p) ** (n - x)
        total += 1 - min(cdf, 1.0) ** ranks
        if 1 - cdf < 1e-15:
            break
    return total


def test_decode_step_exchange_uses_the_expected_max_rank(dsv3, h200):
    """DeepSeek-V3 decode on one node, DP8 x EP8, 64 sequences (8 a replica), one micro-batch. The MoE group routes
    64 tokens; each rank holds 32 experts, each picked by a token with probability 8/256 = 1/32; the model takes the
    64 x 32 (token, slot) picks as independent, so a rank receives Binomial(2048, 1/32) copies and the busiest of 8
    independent ranks E[max] of them. 8 own tokens < E[max] / 8, so each of the 58 MoE layers dispatches
    E[max] / 8 tokens' worth x 8 copies (FP8) and combines them (BF16); the 3 dense layers move nothing."""
    b = price_phase(dsv3, h200, Parallelism(dp=8, ep=8, micro_batches=1), FP8, phase="decode", batch=64,
                    length=2048)
    emax = _binomial_expected_max(2048, 1 / 32, 8)
    assert 64 < emax < 90  # above the mean (64) rank
    t = max(8.0, emax / 8)
    up = h200.node.scale_up
    dispatch = 26e-6 + hockney(up, t * 8 * FP8_TOKEN)
    combine = 26e-6 + hockney(up, t * 8 * BF16_TOKEN)
    assert b.comm_by_kind["ep_dispatch"] == pytest.approx(58 * dispatch, rel=1e-6)
    assert b.comm_by_kind["ep_combine"] == pytest.approx(58 * combine, rel=1e-6)
    assert b.comm_by_kind["tp_all_reduce"] == 0.0 and b.comm_by_kind["pp_send"] == 0.0
    assert [c.total_s == 0.0 for c in b.layer_comm[:4]] == [True, True, True, False]
    assert b.communication_s == pytest.approx(58 * (dispatch + combine), rel=1e-6)


def _normal_expected_max(mean: float, var: float, ranks: int, points: int = 40001) -> float:
    """E[max of ``ranks`` iid N(mean, var)] over x >= 0: integral of 1 - Phi((x - mean) / sd)^ranks (Simpson)."""
    from math import erf, sqrt
    sd = sqrt(var)
    top = mean + 12 * sd
    h = top / (points - 1)
    total = 0.0
    for i in range(points):
        x = i * h
        f = 1 - (0.5 * (1 + erf((x - mean) / (sd * sqrt(2))))) ** ranks
        total += f * (1 if i in (0, points - 1) else 4 if i % 2 else 2)
    return total * h / 3


def test_ep_exchange_with_two_micro_batches_halves_the_tokens(dsv3, h200):
    """Prefill of 16 prompts x 512 tokens on DP8 x EP8 in 2 micro-batches: a replica's micro-batch is 1 prompt =
    512 tokens, so the group routes 8 x 512 = 4096 tokens per micro-batch. A rank's 32 slots (q = 1/32 each) receive
    a sum of 4096 x 32 Bernoulli(1/32) copies, beyond the exact range: normal with mean 4096 and variance
    4096 x 32 x (1/32)(31/32); the busiest of 8 ranks E[max] of that (~4186), so the rank moves E[max] / 8 tokens'
    worth (> its own 512). Throughput kernels in one node: NVLink only, to min(E[distinct chips], 8) x 7/8 other
    chips of the node, each copy once."""
    b = price_phase(dsv3, h200, Parallelism(dp=8, ep=8, micro_batches=2), FP8, phase="prefill", batch=16,
                    length=512, overlap=False)
    assert b.micro_batches == 2 and b.tokens_per_micro_batch == 512
    emax = _normal_expected_max(4096.0, 4096 * 32 * (1 / 32) * (31 / 32), 8)
    assert 4150 < emax < 4220
    t = max(512.0, emax / 8)
    chips = min(8 * (1 - comb(224, 8) / comb(256, 8)), 8.0)
    up = h200.node.scale_up
    dispatch = hockney(up, t * FP8_TOKEN * chips * 7 / 8)
    combine = hockney(up, t * BF16_TOKEN * chips * 7 / 8)
    moe = [c for c in b.layer_comm if c.ep_dispatch_s]
    assert len(moe) == 58
    # the model's E[max] integrates the normal law on a 4001-point grid: agreement to 1e-5
    assert moe[0].ep_dispatch_s == pytest.approx(dispatch, rel=1e-5)
    assert moe[0].ep_combine_s == pytest.approx(combine, rel=1e-5)
    assert b.comm_by_kind["ep_dispatch"] == pytest.approx(2 * 58 * dispatch, rel=1e-5)
    assert b.comm_by_kind["ep_combine"] == pytest.approx(2 * 58 * combine, rel=1e-5)


# --- pipeline sends and the bubble -------------------------------------------------------------------------------


def test_pipeline_send_bytes_and_count_per_micro_batch(llama, h200):
    """Llama decode, TP8 x PP4 (32 chips, 4 nodes): between stages the 8 tokens' hidden vectors (8 x 16384 x 2 B)
    cross a node boundary, one InfiniBand message per micro-batch; with 4 micro-batches of 2 sequences each,
    a send is 2 x 16384 x 2 B and the step sends 4 of them."""
    b1 = price_phase(llama, h200, Parallelism(tp=8, pp=4, micro_batches=1), BF16, phase="decode", batch=8,
                     length=1024)
    send1 = hockney(h200.node.scale_out, 8 * 16384 * 2)
    assert b1.pp_send_s == pytest.approx(send1, rel=REL)
    assert b1.comm_by_kind["pp_send"] == pytest.approx(send1, rel=REL)
    b4 = price_phase(llama, h200, Parallelism(tp=8, pp=4, micro_batches=4), BF16, phase="decode", batch=8,
                     length=1024, overlap=False)
    send4 = hockney(h200.node.scale_out, 2 * 16384 * 2)
    assert b4.micro_batches == 4 and b4.pp_send_s == pytest.approx(send4, rel=REL)
    assert b4.comm_by_kind["pp_send"] == pytest.approx(4 * send4, rel=REL)
    # inside one node (TP2 x PP4 = 8 chips) the send goes over NVLink
    b8 = price_phase(llama, h200, Parallelism(tp=2, pp=4, micro_batches=1), BF16, phase="decode", batch=8,
                     length=1024)
    assert b8.pp_send_s == pytest.approx(hockney(h200.node.scale_up, 8 * 16384 * 2), rel=REL)
    # no pipeline, no send
    assert price_phase(llama, h200, Parallelism(tp=8, micro_batches=1), BF16, phase="decode", batch=8,
                       length=1024).pp_send_s == 0.0


def test_bubble_without_overlap_pays_compute_and_communication(llama, h200):
    """TP8 x PP4, one micro-batch: the stage pace is its compute plus its collectives (32 layers on the worst stage,
    2 all-reduces each) plus the send; the fill and drain idle (pp - 1) paces."""
    b = price_phase(llama, h200, Parallelism(tp=8, pp=4, micro_batches=1), BF16, phase="decode", batch=8,
                    length=1024)
    ar = all_reduce_in_node(h200, 8 * 16384 * 2, 8)
    send = hockney(h200.node.scale_out, 8 * 16384 * 2)
    stage_layers = [32, 32, 31, 31]  # 126 = 4 x 31 + 2: the first two stages take one more
    assert len(b.layer_comm) == stage_layers[b.worst_stage]
    comm = stage_layers[b.worst_stage] * 2 * ar
    assert b.communication_s == pytest.approx(comm + send, rel=REL)
    assert b.compute_s == pytest.approx(max(b.stage_compute_s), rel=REL)
    assert b.bubble_s == pytest.approx(3 * (b.compute_s + comm + send), rel=REL)
    assert b.exposed_s == pytest.approx(comm + send, rel=REL)
    # the same with two micro-batches and overlap switched off: the pace is one micro-batch's
    b2 = price_phase(llama, h200, Parallelism(tp=8, pp=4, micro_batches=2), BF16, phase="decode", batch=8,
                     length=1024, overlap=False)
    ar2 = all_reduce_in_node(h200, 4 * 16384 * 2, 8)
    send2 = hockney(h200.node.scale_out, 4 * 16384 * 2)
    comm2 = stage_layers[b2.worst_stage] * 2 * ar2
    assert b2.bubble_s == pytest.approx(3 * (b2.compute_s / 2 + comm2 + send2), rel=REL)
    assert b2.exposed_s == pytest.approx(2 * (comm2 + send2), rel=REL)


def test_bubble_with_overlap_takes_the_slower_stream(llama, h200):
    """TP8 x PP4 with two overlapped micro-batches: a stage's pace is max(compute, communication) of one
    micro-batch (compute from the breakdown, communication by hand). Both cases here are compute-bound; the
    communication-bound branch is the next test."""
    for phase, batch, length in (("prefill", 8, 1024), ("decode", 2, 1024)):
        b = price_phase(llama, h200, Parallelism(tp=8, pp=4, micro_batches=2), BF16, phase=phase, batch=batch,
                        length=length)
        tokens = b.tokens_per_micro_batch
        ar = all_reduce_in_node(h200, tokens * 16384 * 2, 8)
        send = hockney(h200.node.scale_out, tokens * 16384 * 2)
        comm = len(b.layer_comm) * 2 * ar + send
        assert b.communication_s == pytest.approx(2 * comm, rel=REL)
        assert b.compute_s / 2 > comm
        assert b.bubble_s == pytest.approx(3 * b.compute_s / 2, rel=REL)


def _synthetic_comm_bound(llama):
    """A 4-layer Llama with a narrow FFN: its decode compute is small next to its all-reduces."""
    return replace(llama, num_hidden_layers=4, intermediate_size=1024, vocab_size=1024)


def test_overlapped_bubble_when_communication_is_the_slower(llama, h200):
    model = _synthetic_comm_bound(llama)
    b = price_phase(model, h200, Parallelism(tp=8, pp=2, micro_batches=2), BF16, phase="prefill", batch=2,
                    length=16384)
    tokens = b.tokens_per_micro_batch
    assert tokens == 16384
    ar = all_reduce_in_node(h200, tokens * 16384 * 2, 8)
    send = hockney(h200.node.scale_out, tokens * 16384 * 2)  # TP8 x PP2 = 16 chips: two nodes
    comm = 2 * 2 * ar + send  # 2 layers on a stage
    assert comm > b.compute_s / 2  # the case this test is about
    assert b.bubble_s == pytest.approx(1 * comm, rel=REL)


# --- the worst stage -------------------------------------------------------------------------------------------


def _stage_split(layers: int, pp: int) -> list[range]:
    """As even as possible, the first ``layers % pp`` stages one layer more."""
    base, extra = divmod(layers, pp)
    out, start = [], 0
    for s in range(pp):
        n = base + (1 if s < extra else 0)
        out.append(range(start, start + n))
        start += n
    return out


@pytest.mark.parametrize("pp", [2, 3, 4, 8])
def test_dsv3_stages_of_61_layers_and_the_worst(dsv3, h200, pp):
    """DeepSeek-V3's 61 layers over pp stages (pp=4: 16 + 15 + 15 + 15; 3 dense layers on stage 0). A stage's
    compute is the sum of its layers' times (from the pp = 1 step of the same forward), the embedding on the first,
    the head on the last; the step runs at the worst stage's pace and its collectives are that stage's."""
    from archsim.mapping.phase_graph import by_layer_key
    kw = dict(phase="decode", batch=32, length=2048)
    whole = price_phase(dsv3, h200, Parallelism(dp=8, ep=8, micro_batches=1), FP8, **kw)
    layer_s = whole.layer_compute_s
    assert len(layer_s) == 61
    keyed = by_layer_key(dsv3, whole.graph_cost.time_s_by_layer)
    embed, head = keyed["embed"], keyed["head"]
    assert fsum(layer_s) + embed + head == pytest.approx(whole.compute_s, rel=1e-9)
    b = price_phase(dsv3, h200, Parallelism(dp=8, ep=8, pp=pp, micro_batches=1), FP8, **kw)
    stages = _stage_split(61, pp)
    want = [fsum(layer_s[i] for i in r) + (embed if s == 0 else 0.0) + (head if s == pp - 1 else 0.0)
            for s, r in enumerate(stages)]
    assert b.stage_compute_s == pytest.approx(want, rel=1e-9)
    worst = max(range(pp), key=lambda s: want[s])
    assert b.worst_stage == worst
    assert b.compute_s == pytest.approx(want[worst], rel=1e-9)
    assert b.layer_compute_s == pytest.approx([layer_s[i] for i in stages[worst]], rel=1e-9)
    moe_on_worst = sum(1 for i in stages[worst] if i >= 3)
    per_moe = next(c.total_s for c in whole.layer_comm if c.total_s)
    # the pipeline's EP group spans the same 8 chips of a stage: its layers move the same as without a pipeline
    assert b.communication_s - b.comm_by_kind["pp_send"] == pytest.approx(moe_on_worst * per_moe, rel=1e-6)


def test_worst_stage_is_the_last_when_the_head_dominates(llama, h200):
    """A 61-layer Llama with a vocabulary 64 x larger: the head (vocab / tp x 16384 BF16 weights read at decode)
    outweighs a layer, so 15 layers + head (stage 3) is slower than 16 layers + embedding (stage 0)."""
    from archsim.mapping.phase_graph import by_layer_key
    model = replace(llama, num_hidden_layers=61, vocab_size=128256 * 64)
    whole = price_phase(model, h200, Parallelism(tp=8, micro_batches=1), BF16, phase="decode", batch=4, length=512)
    keyed = by_layer_key(model, whole.graph_cost.time_s_by_layer)
    t = whole.layer_compute_s[0]
    assert whole.layer_compute_s == pytest.approx([t] * 61, rel=1e-12)  # identical dense layers
    b = price_phase(model, h200, Parallelism(tp=8, pp=4, micro_batches=1), BF16, phase="decode", batch=4, length=512)
    want = [16 * t + keyed["embed"], 15 * t, 15 * t, 15 * t + keyed["head"]]
    assert b.stage_compute_s == pytest.approx(want, rel=1e-9)
    assert want[3] > want[0] and b.worst_stage == 3
    assert b.compute_s == pytest.approx(want[3], rel=1e-9)
    ar = all_reduce_in_node(h200, 4 * 16384 * 2, 8)
    assert len(b.layer_comm) == 15
    assert b.comm_by_kind["tp_all_reduce"] == pytest.approx(15 * 2 * ar, rel=REL)


# --- groups strided by tp cross nodes (found by these tests; fixed with price_collective(stride=)) -----------


def test_cp_exchange_across_nodes_when_tp_fills_the_node(llama, h200):
    """Llama prefill of one 8192-token prompt on TP8 x CP2 = 16 chips. The TP all-reduce is priced on the 8
    consecutive chips of a node, so the two CP ranks of a chip sit on different nodes: the ring passes 8192 tokens x
    (2 x 8 x 128 x 2 B) / 8 = 4 MiB of K/V per layer, one step of half of it over InfiniBand: 2.8 us + 2 MiB /
    (50e9 x 0.86) = 51.6 us (on NVLink it would be 9.2 us)."""
    c = layer_comm(llama, h200, Parallelism(tp=8, cp=2), BF16, 0, tokens=8192, group_tokens=8192,
                   busiest_copies=0.0, phase="prefill", ep_mode=None)
    assert c.cp_kv_exchange_s == pytest.approx(ring_all_gather(h200.node.scale_out, 8192 * 512, 2), rel=REL)
