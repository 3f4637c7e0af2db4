"""Bytes on a device and the training step's combination, against hand derivations: KV cache under TP, CP, DP and
PP for GQA and MLA; parameters per stage; ZeRO sharding of gradients and optimizer states; the optimizer step's
HBM traffic; the DP gradient sync; pipeline schedules (busy time, bubble and p2p crossings).

Parameter counts are written out from the model's config.json fields (workloads/*.yaml); link and HBM rates from
hardware/h200.yaml (NVLink 450 GB/s x 0.79, 3.33 us; HBM 4.8 TB/s x 0.896)."""
from __future__ import annotations

from dataclasses import replace
from math import ceil

import pytest

from archsim.graph.precision import precision_from_names
from archsim.mapping.device_memory import (TrainingBytes, kv_cache_bytes, memory_per_device, stage_layers,
                                           stage_params)
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.pipeline import ChunkTimes, dualpipe, one_f_one_b, pipeline_step, rank_busy_s
from archsim.mapping.training import TrainingSetup, estimate_training, in_flight_micro_batches, training_bytes

BF16 = precision_from_names("bf16")
FP8 = precision_from_names("fp8")
FP8_KV = precision_from_names("fp8", kv_cache="fp8")
REL = 1e-12

# Llama-3.1-405B (workloads/llama3_405b.yaml): h = 16384, 128 heads of 128, 8 KV heads, FFN 53248, vocab 128256
H, HEADS, KV_HEADS, D, FFN, VOCAB = 16384, 128, 8, 128, 53248, 128256
LLAMA_ATTENTION = H * HEADS * D + 2 * H * KV_HEADS * D + HEADS * D * H   # q, k, v, o: 570,425,344
LLAMA_MLP = 3 * H * FFN                                                   # gate, up, down: 2,617,245,696
LLAMA_EMBED = VOCAB * H                                                   # 2,101,346,304 (head the same)


def hockney(link, nbytes: float) -> float:
    return link.latency_s + (nbytes + link.half_bandwidth_bytes) / (link.bandwidth_bytes_per_s
                                                                     * link.achievable_fraction)


def hbm_rate(hw) -> float:
    """Sustained main-memory bytes/s: bandwidth x achievable fraction (4.8e12 x 0.896 on the H200)."""
    return hw.main_memory.bandwidth_bytes_per_s * hw.main_memory.achievable_fraction


def test_llama_counts(llama):
    assert LLAMA_ATTENTION == 570_425_344 and LLAMA_MLP == 2_617_245_696 and LLAMA_EMBED == 2_101_346_304
    assert (llama.hidden_size, llama.num_attention_heads, llama.kv_heads, llama.gqa_head_dim,
            llama.intermediate_size, llama.vocab_size) == (H, HEADS, KV_HEADS, D, FFN, VOCAB)


# --- KV cache ------------------------------------------------------------------------------------------------


def test_gqa_kv_cache_split_over_tp_cp_dp_and_pp(llama):
    """GQA: K and V of 8 heads x 128 x 2 B = 4096 B per token per layer, split over TP. 17 sequences over DP2: the
    busier replica holds ceil(17 / 2) = 9; CP2 over a 4097-token context: ceil(4097 / 2) = 2049 tokens each; PP4 of
    126 layers: 32, 32, 31, 31."""
    par = Parallelism(tp=8, cp=2, dp=2, pp=4)
    per_token_layer = 2 * KV_HEADS * D * 2 / 8
    assert per_token_layer == 512
    for stage, layers in enumerate((32, 32, 31, 31)):
        got = kv_cache_bytes(llama, par, BF16, batch=17, context=4097, stage=stage)
        assert got == 9 * 2049 * layers * 512
    # CP is what divides the context: without it each chip holds the whole 4097 tokens
    assert kv_cache_bytes(llama, replace(par, cp=1), BF16, batch=17, context=4097, stage=0) == 9 * 4097 * 32 * 512
    # TP divides the GQA heads: TP4 holds twice TP8's
    assert kv_cache_bytes(llama, replace(par, tp=4), BF16, batch=17, context=4097, stage=0) == 9 * 2049 * 32 * 1024
    # DP: all 17 on one replica
    assert kv_cache_bytes(llama, replace(par, dp=1), BF16, batch=17, context=4097, stage=0) == 17 * 2049 * 32 * 512


def test_mla_kv_cache_replicated_over_tp_split_over_cp(dsv3):
    """MLA caches the latent + rope key, 512 + 64 = 576 values per token per layer (BF16: 1152 B, FP8: 576 B),
    the same on every TP rank; CP splits the context. DeepSeek-V3's 61 layers over PP2: 31 + 30."""
    for tp in (1, 2, 8):
        par = Parallelism(tp=tp, cp=4, dp=3, pp=2, moe_tp=tp)
        assert kv_cache_bytes(dsv3, par, BF16, batch=7, context=10001, stage=0) == 3 * 2501 * 31 * 1152
        assert kv_cache_bytes(dsv3, par, FP8_KV, batch=7, context=10001, stage=1) == 3 * 2501 * 30 * 576
    assert kv_cache_bytes(dsv3, Parallelism(), BF16, batch=1, context=1, stage=0) == 61 * 1152


def test_memory_reports_the_worst_stage_kv(llama):
    """The device memory carries the KV of the stage it reports (stage 0 or 1 hold 32 layers)."""
    par = Parallelism(tp=8, cp=2, dp=2, pp=4)
    mem = memory_per_device(llama, par, BF16, capacity_bytes=1e15, batch=17, context=4097)
    assert mem.kv_cache_bytes == 9 * 2049 * 32 * 512
    assert mem.total_bytes == mem.weights_bytes + mem.kv_cache_bytes


# --- parameters per stage --------------------------------------------------------------------------------------


def test_stage_params_of_a_dense_model(llama):
    """Llama over TP8 x PP4: stage 0 holds 32 layers and the embedding, stage 3 31 layers, the head and the final
    norm; attention, MLP, embedding and head split 8 ways, norms replicated."""
    par = Parallelism(tp=8, pp=4)
    first = stage_params(llama, par, 0)
    assert first["attention"] == 32 * LLAMA_ATTENTION / 8
    assert first["dense_mlp"] == 32 * LLAMA_MLP / 8
    assert first["norms"] == 32 * 2 * H
    assert first["embedding"] == LLAMA_EMBED / 8 and first["lm_head"] == 0.0
    last = stage_params(llama, par, 3)
    assert last["attention"] == 31 * LLAMA_ATTENTION / 8 and last["embedding"] == 0.0
    assert last["lm_head"] == LLAMA_EMBED / 8 and last["norms"] == 31 * 2 * H + H
    assert sum(sum(stage_params(llama, Parallelism(pp=4), s).values()) for s in range(4)) == (
        126 * (LLAMA_ATTENTION + LLAMA_MLP + 2 * H) + 2 * LLAMA_EMBED + H)


def test_stage_params_of_a_moe_model(dsv3):
    """DeepSeek-V3 on TP2 x DP4 with MoE-TP2 x EP4 and 32 redundant slots, PP2 (31 + 30 layers; layers 0-2 dense).
    MLA: q_a (7168 x 1536), kv_a (7168 x 576) and their norms replicated over TP, q_b, kv_b and o split; routed
    experts: (256 + 32) / 4 = 72 slots of 3 x 7168 x 2048, each split over MoE-TP2; shared expert split over TP;
    router 256 x 7168 (+ its 256 correction biases) replicated."""
    par = Parallelism(tp=2, dp=4, moe_tp=2, ep=4, pp=2, redundant_experts=32)
    h = 7168
    replicated = h * (512 + 64) + 512 + h * 1536 + 1536
    split = 1536 * 128 * 192 + 512 * 128 * (128 + 128) + 128 * 128 * h
    p = stage_params(dsv3, par, 0)
    assert p["attention"] == pytest.approx(31 * (replicated + split / 2), rel=REL)
    assert p["routed_experts"] == pytest.approx(28 * 72 * 3 * h * 2048 / 2, rel=REL)
    assert p["shared_experts"] == pytest.approx(28 * 3 * h * 2048 / 2, rel=REL)
    assert p["dense_mlp"] == pytest.approx(3 * 3 * h * 18432 / 2, rel=REL)
    assert p["router"] == 28 * (256 * h + 256)  # gate weight and e_score_correction_bias (noaux_tc routing)
    assert p["norms"] == 31 * 2 * h
    assert p["embedding"] == 129280 * h / 2
    q = stage_params(dsv3, par, 1)
    assert q["routed_experts"] == pytest.approx(30 * 72 * 3 * h * 2048 / 2, rel=REL)
    assert q["dense_mlp"] == 0.0 and q["lm_head"] == 129280 * h / 2 and q["norms"] == 30 * 2 * h + h


# --- training states and ZeRO -------------------------------------------------------------------------------


def test_training_bytes_per_parameter():
    """BF16 mixed precision: 2 (weights) + 2 (gradients) + 12 (FP32 master + two FP32 moments); FP8 recipe: 2 + 4
    + (4 + 2 x 2); Muon keeps one moment; DualPipe two weight copies."""
    b = training_bytes(TrainingSetup(seq_len=8, global_batch=1))
    assert (b.weights, b.gradients, b.optimizer, b.weight_copies) == (2.0, 2.0, 12.0, 1)
    f = training_bytes(TrainingSetup(seq_len=8, global_batch=1, precision="fp8"))
    assert (f.weights, f.gradients, f.optimizer) == (2.0, 4.0, 8.0)
    assert training_bytes(TrainingSetup(seq_len=8, global_batch=1, optimizer="muon")).optimizer == 8.0
    assert training_bytes(TrainingSetup(seq_len=8, global_batch=1, precision="fp8", optimizer="muon")).optimizer == 6.0
    assert training_bytes(TrainingSetup(seq_len=8, global_batch=1, schedule="dualpipe")).weight_copies == 2


@pytest.mark.parametrize("zero", [0, 1, 2, 3])
def test_zero_shards_dense_and_expert_states_over_their_replicas(dsv3, zero):
    """DeepSeek-V3 on TP1 x DP16 with EP8 (2 MoE groups: each expert has 2 replicas) and PP4. ZeRO-1 divides the
    optimizer bytes by the parameter's replicas (16 for dense parts, expert_dp = 16 / 8 = 2 for routed experts),
    ZeRO-2 also the gradients, ZeRO-3 also the weights."""
    par = Parallelism(dp=16, ep=8, pp=4, zero_stage=zero)
    assert par.expert_dp == 2
    tb = TrainingBytes(weights=2.0, gradients=4.0, optimizer=8.0, weight_copies=2)
    mem = memory_per_device(dsv3, par, FP8, capacity_bytes=1e15, training=tb)
    p = stage_params(dsv3, par, mem.stage)
    routed = p["routed_experts"]
    dense = sum(p.values()) - routed
    assert routed > 0 and dense > 0

    def shard(n, replicas, stage):
        return n / replicas if zero >= stage else n

    assert mem.optimizer_bytes == pytest.approx(8 * (shard(dense, 16, 1) + shard(routed, 2, 1)), rel=REL)
    assert mem.gradients_bytes == pytest.approx(4 * (shard(dense, 16, 2) + shard(routed, 2, 2)), rel=REL)
    assert mem.weights_bytes == pytest.approx(2 * 2 * (shard(dense, 16, 3) + shard(routed, 2, 3)), rel=REL)


def test_zero_counts_context_parallel_ranks_as_replicas(llama):
    """CP ranks hold the same parameters: a dense parameter's replicas are dp x cp."""
    par = Parallelism(tp=8, cp=2, dp=2, pp=4, zero_stage=2)
    tb = TrainingBytes(weights=2.0, gradients=2.0, optimizer=12.0)
    mem = memory_per_device(llama, par, BF16, capacity_bytes=1e15, training=tb)
    n = sum(stage_params(llama, par, mem.stage).values())
    assert mem.optimizer_bytes == pytest.approx(12 * n / 4, rel=REL)
    assert mem.gradients_bytes == pytest.approx(2 * n / 4, rel=REL)
    assert mem.weights_bytes == pytest.approx(2 * n, rel=REL)


# --- the optimizer step and the DP sync -------------------------------------------------------------------------


def _small_llama(llama):
    return replace(llama, num_hidden_layers=4)


SMALL_LLAMA_PARAMS = 4 * (LLAMA_ATTENTION + LLAMA_MLP + 2 * H) + 2 * LLAMA_EMBED + H


@pytest.mark.parametrize("zero", [0, 1, 2])
def test_optimizer_step_reads_and_writes_every_state_of_its_shard(llama, h200, zero):
    """A 4-layer Llama on TP1 x DP2, BF16 AdamW: 16,953,524,224 parameters on each device. ZeRO >= 1 gives each
    replica half of them to update; the update reads and writes (x 2) the shard's 12 B of master weights and
    moments, 2 B of gradients and 2 B of weights at the sustained HBM rate. Memory: weights and gradients whole
    (ZeRO-2 halves the gradients), optimizer states halved (ZeRO >= 1)."""
    model = _small_llama(llama)
    par = Parallelism(dp=2, micro_batches=2, zero_stage=zero)
    est = estimate_training(model, h200, par, TrainingSetup(seq_len=1024, global_batch=4))
    n = SMALL_LLAMA_PARAMS
    assert n == 16_953_524_224
    shard = n / 2 if zero >= 1 else n
    assert est.breakdown["optimizer"] == pytest.approx(2 * shard * (12 + 2 + 2) / (4.8e12 * 0.896), rel=REL)
    assert hbm_rate(h200) == 4.8e12 * 0.896
    assert est.memory.weights_bytes == 2 * n
    assert est.memory.gradients_bytes == (2 * n / 2 if zero >= 2 else 2 * n)
    assert est.memory.optimizer_bytes == (12 * n / 2 if zero >= 1 else 12 * n)
    # the gradients reduce-scattered and the weights all-gathered over the 2 replicas (NVLink, one ring step of
    # half the buffer each)
    up = h200.node.scale_up
    assert est.breakdown["dp_gradient_sync"] == pytest.approx(2 * hockney(up, 2 * n / 2), rel=1e-9)
    # no pipeline: two micro-batches overlap forward and backward in F&B blocks, m x F&B
    assert est.breakdown["pipeline"] == pytest.approx(2 * est.breakdown["fb_block_per_micro_batch"], rel=REL)
    assert est.step_time_s == pytest.approx(est.breakdown["pipeline"] + est.breakdown["dp_gradient_sync"]
                                            + est.breakdown["optimizer"], rel=REL)


def test_single_micro_batch_without_pipeline_is_serial(llama, h200):
    model = _small_llama(llama)
    est = estimate_training(model, h200, Parallelism(tp=8, micro_batches=1), TrainingSetup(seq_len=1024,
                                                                                         global_batch=1))
    b = est.breakdown
    f = b["forward_compute_per_micro_batch"] + b["forward_communication_per_micro_batch"]
    bwd = b["backward_compute_per_micro_batch"] + b["forward_communication_per_micro_batch"]
    assert b["pipeline"] == pytest.approx(f + bwd, rel=REL)
    assert b["dp_gradient_sync"] == 0.0  # one replica
    # TP8 on one 1024-token sequence: 4 layers x 2 all-reduces of 1024 x 16384 x 2 B, forward (and again backward)
    ar = _tree_all_reduce(h200.node.scale_up, 1024 * 16384 * 2, 8)
    assert b["forward_communication_per_micro_batch"] == pytest.approx(4 * 2 * ar, rel=1e-9)


def test_one_f_one_b_pipeline_pays_the_p2p_crossings(llama, h200):
    """4-layer Llama, TP4 x PP2 (8 chips), 4 micro-batches of one 1024-token sequence. The stages' pace F = forward
    compute + communication, B = backward compute + communication; 1F1B's first rank is busy 4 (F + B) and idles
    (PP - 1)(F + B); the fill and drain cross the stage boundary 2 (PP - 1) times, each a p2p of one micro-batch's
    activations (1024 x 16384 x 2 B over NVLink)."""
    model = _small_llama(llama)
    est = estimate_training(model, h200, Parallelism(tp=4, pp=2, micro_batches=4),
                            TrainingSetup(seq_len=1024, global_batch=4))
    b = est.breakdown
    comm = b["forward_communication_per_micro_batch"]
    f = b["forward_compute_per_micro_batch"] + comm
    bwd = b["backward_compute_per_micro_batch"] + comm
    p2p = hockney(h200.node.scale_up, 1024 * 16384 * 2)
    assert b["bubble"] == pytest.approx((2 - 1) * (f + bwd) + 2 * (2 - 1) * p2p, rel=1e-9)
    assert b["pipeline"] == pytest.approx(4 * (f + bwd) + b["bubble"], rel=1e-9)
    # the stage that sets the pace holds 2 decoder layers: 2 x 2 all-reduces of 1024 x 16384 x 2 B over TP4
    ar = _tree_all_reduce(h200.node.scale_up, 1024 * 16384 * 2, 4)
    assert comm == pytest.approx(2 * 2 * ar, rel=1e-9)


def _tree_all_reduce(link, m: float, p: int) -> float:
    steps = 2 * ceil(__import__("math").log2(p))
    return steps * hockney(link, 2 * (p - 1) / p * m / steps)


def test_dualpipe_middle_rank_and_bubble(llama, h200):
    """DualPipe on PP4 with 8 micro-batches: rank 1 (a middle rank) runs 4 F, 4 F&B, 2 B, 2 split B (input gradient
    only) and 2 W: 4 F + 4 FB + 4 B in all; the bubble is (PP/2 - 1)(F&B + B - 3W) plus 2 (PP - 1) p2p sends of a
    512-token micro-batch (512 x 16384 x 2 B; TP2 x PP4 = 8 chips: NVLink)."""
    model = _small_llama(llama)
    est = estimate_training(model, h200, Parallelism(tp=2, pp=4, micro_batches=8),
                            TrainingSetup(seq_len=512, global_batch=8, schedule="dualpipe"))
    b = est.breakdown
    comm = b["forward_communication_per_micro_batch"]
    f = b["forward_compute_per_micro_batch"] + comm
    bwd = b["backward_compute_per_micro_batch"] + comm
    w = b["terms_per_micro_batch"]["wgrad_s"]
    fb = b["fb_block_per_micro_batch"]
    p2p = hockney(h200.node.scale_up, 512 * 16384 * 2)
    bubble = (4 / 2 - 1) * (fb + bwd - 3 * w) + 2 * 3 * p2p
    assert b["bubble"] == pytest.approx(bubble, rel=1e-9)
    assert b["pipeline"] == pytest.approx(4 * f + 4 * fb + 4 * bwd + bubble, rel=1e-9)


# --- pipeline schedules in numbers ------------------------------------------------------------------------------


def test_pipeline_step_in_numbers():
    """F = 1, B = 2 (W = 0.5 of it), F&B = 2.5, p2p = 0.1 s. 1F1B on PP4 x 8: rank 0 busy 8 x 3 = 24, bubble
    3 x 3 + 6 x 0.1 = 9.6. Interleaved on 2 chunks (times per chunk given): rank 0 busy 2 x 8 x 3 = 48, bubble
    3 x 3 + 0.6. DualPipe PP4 x 8: rank 1 busy 4 + 4 x 2.5 + 4 x 2 = 22, bubble (2 - 1)(2.5 + 2 - 1.5) + 0.6 = 3.6."""
    t = ChunkTimes(f_s=1.0, b_s=2.0, w_s=0.5, fb_s=2.5, p2p_s=0.1)
    assert pipeline_step("1f1b", 4, 8, t) == pytest.approx((24 + 9.6, 9.6), rel=REL)
    assert pipeline_step("interleaved", 4, 8, t, chunks=2) == pytest.approx((48 + 9.6, 9.6), rel=REL)
    assert pipeline_step("dualpipe", 4, 8, t) == pytest.approx((22 + 3.6, 3.6), rel=REL)
    # without F&B overlap given, F&B = F + B
    assert ChunkTimes(f_s=1.0, b_s=2.0).fb == 3.0
    # the p2p term alone: 2 (PP - 1) crossings
    z = ChunkTimes(f_s=0.0, b_s=0.0, p2p_s=1.0)
    assert pipeline_step("1f1b", 6, 6, z) == pytest.approx((10.0, 10.0), rel=REL)


def test_schedules_count_their_ops():
    """1F1B: every rank runs each micro-batch's F and B once, stage s warms up with pp - s - 1 forwards.
    DualPipe: every rank runs M forwards and M backwards over its two chunks (an F&B block counts one of each)."""
    sched = one_f_one_b(4, 6)
    for s, ops in enumerate(sched):
        assert [o.kind for o in ops].count("F") == 6 and [o.kind for o in ops].count("B") == 6
        warm = 0
        while ops[warm].kind == "F":
            warm += 1
        assert warm == min(4 - s - 1, 6) + 1  # the warm-up and the first steady-state forward
    for r, ops in enumerate(dualpipe(4, 8)):
        kinds = [o.kind for o in ops]
        assert kinds.count("F") + kinds.count("FB") == 8
        assert kinds.count("B") + kinds.count("FB") == 8
        # every split backward's weight gradient runs as a W
        assert kinds.count("W") == sum(1 for o in ops if o.kind == "B" and o.split)
    t = ChunkTimes(f_s=1.0, b_s=2.0, w_s=0.5, fb_s=2.5)
    assert rank_busy_s(dualpipe(4, 8)[1], t) == pytest.approx(22.0, rel=REL)
    assert rank_busy_s(one_f_one_b(4, 8)[0], t) == pytest.approx(24.0, rel=REL)


def test_in_flight_micro_batches():
    """1F1B holds PP micro-batches' activations on the first stage; interleaved PP (1 + (PP - 1) / (PP v)); DualPipe
    PP + 1; never more than the micro-batches, and 1 without a pipeline."""
    s = TrainingSetup(seq_len=8, global_batch=64)
    assert in_flight_micro_batches(s, 8, 64) == 8 and in_flight_micro_batches(s, 8, 5) == 5
    assert in_flight_micro_batches(replace(s, schedule="dualpipe"), 8, 64) == 9
    assert in_flight_micro_batches(replace(s, schedule="interleaved", virtual_chunks=2), 8, 64) == pytest.approx(
        8 * (1 + 7 / 16), rel=REL)
    assert in_flight_micro_batches(s, 1, 64) == 1


# --- groups strided by tp cross nodes (found by these tests; fixed with price_collective(stride=)) -----------


def test_dp_sync_crosses_nodes_when_tp_fills_the_node(llama, h200):
    """A 4-layer Llama on TP8 x DP2 (16 chips): each rank holds n / 8 of the tensor-split parameters (norms whole);
    its 2-replica reduce-scatter of 2 B gradients and all-gather of 2 B weights are one step of half the buffer
    each, over InfiniBand (2.8 us + bytes / (50e9 x 0.86))."""
    model = _small_llama(llama)
    est = estimate_training(model, h200, Parallelism(tp=8, dp=2, micro_batches=1),
                            TrainingSetup(seq_len=1024, global_batch=2))
    n = sum(stage_params(model, Parallelism(tp=8, dp=2), 0).values())
    out = h200.node.scale_out
    assert est.breakdown["dp_gradient_sync"] == pytest.approx(2 * hockney(out, 2 * n / 2), rel=1e-9)
