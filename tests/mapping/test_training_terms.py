"""The named terms of a training micro-batch (archsim/mapping/training_work.py) and the stage split,
each against an exact derivation, plus DeepSeek's profiled DualPipe chunk pair."""
from dataclasses import replace

import pytest

from archsim.cost.kernel_model import gemm_time, grouped_gemm_time
from archsim.cost.phase import price_graph
from archsim.errors import ConfigError
from archsim.graph.build import build_prefill
from archsim.graph.precision import Shard, precision_from_names
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.phases import representative_model
from archsim.mapping.training import TrainingSetup, estimate_training, moe_chunk_pair
from archsim.mapping.training_work import (ACTIVATION_TILE, _cast_bytes, micro_batch_work, min_max_partition,
                                           op_block, sustained_gemm_s)

DSV3_LAYOUT = Parallelism(tp=1, ep=64, pp=16, dp=128, micro_batches=120, zero_stage=1)
DSV3_SETUP = TrainingSetup(seq_len=4096, global_batch=15360, precision="fp8", recompute="selective",
                           schedule="dualpipe", comm_sms=20, mtp=True, fp8_activation_cache=True,
                           recompute_projections=("q_b_proj", "kv_b_proj"),
                           attention_output_format="e5m6")
TOKENS = 4096  # one 4K sequence per micro-batch: 15360 / 128 replicas / 120 micro-batches
# hardware/h800.yaml: 1600 MHz sustained under tensor load (FlashMLA deep dive) of the 1830 MHz boost clock
CLOCK = 1600 / 1830
GAP = 2.1e-6  # hardware/h800.yaml kernel_launch_graph: GPU time between back-to-back kernels
WGRAD = 0.93  # hardware/h800.yaml kernel.wgrad_fraction: DeepGEMM's Wgrad kernels over the kernel model


def _sustained(est):
    """Hand form of sustained_gemm_s: ramp + max(MMA / clock, L2 feed / clock, HBM, panel) + epilogue."""
    p = est.parts
    return p["ramp_s"] + max(p["compute_s"] / CLOCK, p["l2_operand_s"] / CLOCK, p["memory_s"],
                             p["panel_stream_s"]) + p["epilogue_s"]


@pytest.fixture(scope="module")
def moe_graph(dsv3, h800):
    """The representative DSV3 graph of one micro-batch on one EP64 device (layer 0 dense, 1 MoE, MTP)."""
    small, _ = representative_model(dsv3)
    g = build_prefill(small, batch=1, prompt_len=TOKENS, precision=precision_from_names("fp8"),
                      shard=Shard(tp=1, ep=64), mtp=True, routed_tokens=TOKENS * 64)
    return g, price_graph(g, h800), small.num_hidden_layers


def _work(moe_graph, h800, block, **kw):
    g, cost, n = moe_graph
    args = dict(tokens=TOKENS, topk=8, hidden=7168, recompute="none", recompute_projections=(), frozen=False)
    args.update(kw)
    return micro_batch_work(g, cost, h800, count=lambda op: 1 if op_block(op, n) == block else 0, **args)


def test_fp8_cast_bytes_per_tile():
    # 4096 x 7168 BF16 activations -> FP8: read 2 B, write 1 B per element, one float32 scale per 1x128 tile
    assert _cast_bytes(4096, 7168, 2.0, ACTIVATION_TILE) == 4096 * 7168 * 3 + 4096 * (7168 // 128) * 4


def test_dgrad_and_wgrad_use_their_own_shapes(moe_graph, h800):
    """Only the q_b_proj block: forward [4096 x 1536] x [1536 -> 24576]; Dgrad M=4096, N=1536, K=24576;
    Wgrad M=24576, N=1536, K=4096 (tokens); all FP8 on the kernel model."""
    g, cost, n = moe_graph
    only = {"layers.1.self_attn.q_b_proj"}
    w = micro_batch_work(g, cost, h800, count=lambda op: 1 if op.name in only else 0, tokens=TOKENS, topk=8,
                         hidden=7168, recompute="none", recompute_projections=(), frozen=False)
    assert h800.kernel.clock_ratio == pytest.approx(CLOCK) and h800.graph_launch_s == pytest.approx(GAP)
    # each GEMM kernel also pays the gap before the next kernel of the stream
    assert w.forward_s == pytest.approx(_sustained(gemm_time(h800, m=4096, n=24576, k=1536)) + GAP)
    assert w.dgrad_s == pytest.approx(_sustained(gemm_time(h800, m=4096, n=1536, k=24576)) + GAP)
    assert w.wgrad_s == pytest.approx(_sustained(gemm_time(h800, m=24576, n=1536, k=4096)) / WGRAD + GAP)
    # the clock slows a compute-bound GEMM by 1830 / 1600 in its main loop only
    est = gemm_time(h800, m=4096, n=24576, k=1536)
    assert est.bound == "compute"
    assert sustained_gemm_s(est, CLOCK) == pytest.approx(
        est.parts["ramp_s"] + est.parts["compute_s"] / CLOCK + est.parts["epilogue_s"])
    assert sustained_gemm_s(est, 1.0) == est.time_s
    # casts: x (4096 x 1536) forward; dy (4096 x 24576) for Dgrad; x^T re-quantised from FP8 and dy^T for Wgrad
    hbm = h800.main_memory.bandwidth_bytes_per_s * h800.main_memory.achievable_fraction
    # the LHS scales (x's forward, dy's for Dgrad) are transposed by a kernel of their own (DeepGEMM wants them
    # TMA-aligned and transposed): read and write 4 B per 128 elements
    assert w.fp8_cast_forward_s == pytest.approx((4096 * 1536 * 3 + 3 * 4096 * 12 * 4) / hbm + 2 * GAP)
    bwd = (4096 * 24576 * 3 + 3 * 4096 * 192 * 4) + (4096 * 1536 * 2 + 4096 * 1536 / 128 * 4) \
        + (4096 * 24576 * 3 + 4096 * 24576 / 128 * 4)
    # and the FP8 weight (24576 x 1536, one float32 scale per 128 x 128 block) transposed for Dgrad: DeepGEMM
    # takes only the NT layout; read and write 1 B per element + 4 B per 16384 elements
    weight_t = 2 * (24576 * 1536 + 24576 * 1536 / 16384 * 4)
    assert w.fp8_cast_backward_s == pytest.approx((bwd + weight_t) / hbm + 5 * GAP)  # five cast kernels
    frozen = micro_batch_work(g, cost, h800, count=lambda op: 1 if op.name in only else 0, tokens=TOKENS, topk=8,
                              hidden=7168, recompute="none", recompute_projections=(), frozen=True)
    assert frozen.wgrad_s == 0.0 and frozen.dgrad_s == w.dgrad_s


def test_expert_wgrad_has_k_equal_to_tokens_per_expert(moe_graph, h800):
    """EP64: 4096 x 64 tokens x top-8 over 256 experts = 8192 tokens per expert, 4 experts per device.
    Down projection forward [8192 x 2048] -> 7168; Wgrad per expert M=7168, N=2048, K=8192."""
    g, cost, n = moe_graph
    only = {"layers.1.mlp.experts.down"}
    w = micro_batch_work(g, cost, h800, count=lambda op: 1 if op.name in only else 0, tokens=TOKENS, topk=8,
                         hidden=7168, recompute="none", recompute_projections=(), frozen=False)
    assert w.forward_s == pytest.approx(_sustained(grouped_gemm_time(h800, groups=4, m=8192, n=7168, k=2048)) + GAP)
    assert w.wgrad_s == pytest.approx(
        _sustained(grouped_gemm_time(h800, groups=4, m=7168, n=2048, k=8192)) / WGRAD + GAP)
    # accumulating into FP32 gradients (the FP8 recipe, DSV3-TR §3.3): the Wgrad writes FP32 and first reads
    # the running sum, 4 B per weight: 4 experts x 7168 x 2048
    acc = micro_batch_work(g, cost, h800, count=lambda op: 1 if op.name in only else 0, tokens=TOKENS, topk=8,
                           hidden=7168, recompute="none", recompute_projections=(), frozen=False, gradient_bytes=4.0)
    assert acc.wgrad_s == pytest.approx(
        (_sustained(grouped_gemm_time(h800, groups=4, m=7168, n=2048, k=8192, out_dtype="fp32"))
         + 4 * 7168 * 2048 * 4 / (h800.main_memory.bandwidth_bytes_per_s * h800.main_memory.achievable_fraction))
        / WGRAD + GAP)
    assert acc.forward_s == w.forward_s and acc.dgrad_s == w.dgrad_s
    # the output gradient (N = hidden) is cast once per token before the backward dispatch: 4096 rows, not
    # 32768 routed copies
    hbm = h800.main_memory.bandwidth_bytes_per_s * h800.main_memory.achievable_fraction
    dgrad_cast = (4096 * 7168 * 3 + 3 * 4096 * 56 * 4) / hbm  # with its scales transposed
    wgrad_casts = (32768 * 2048 * 2 + 32768 * 2048 / 128 * 4 + 32768 * 7168 * 3 + 32768 * 7168 / 128 * 4) / hbm
    weight_t = 2 * 4 * (7168 * 2048 + 7168 * 2048 / 16384 * 4) / hbm  # 4 experts' FP8 weights transposed
    assert w.fp8_cast_backward_s == pytest.approx(dgrad_cast + wgrad_casts + weight_t + 5 * GAP)


def test_attention_and_elementwise_backward(moe_graph, h800):
    g, cost, n = moe_graph
    attn = {"layers.1.self_attn.attn_core"}
    w = micro_batch_work(g, cost, h800, count=lambda op: 1 if op.name in attn else 0, tokens=TOKENS, topk=8,
                         hidden=7168, recompute="none", recompute_projections=(), frozen=False)
    # FlashAttention-2: backward = 2.5 x forward FLOPs, at 0.85 of the forward's rate on H800 (h800.yaml); plus
    # FlashAttention's pre-/post-processing passes, 4096 query rows x 128 heads (MLA: d_qk 192, d_v 128):
    # preprocess reads O and dO (2 x 128 x 2 B), LSE and dPsum (2 x 4 B), clears the FP32 dQ accumulator
    # (192 x 4 B); postprocess reads it (192 x 4 B) and writes dQ (192 x 2 B)
    assert h800.kernel.attention_backward_fraction == 0.85
    rows = 4096 * 128
    passes = rows * (2 * 128 * 2 + 2 * 4 + 192 * 4) + rows * 192 * (4 + 2)
    hbm = h800.main_memory.bandwidth_bytes_per_s * h800.main_memory.achievable_fraction
    assert w.attention_backward_s == pytest.approx(
        2.5 / 0.85 * cost.ops["layers.1.self_attn.attn_core"].time_s + passes / hbm + 3 * GAP)  # 3 kernels
    norm = {"layers.1.input_layernorm"}
    w = micro_batch_work(g, cost, h800, count=lambda op: 1 if op.name in norm else 0, tokens=TOKENS, topk=8,
                         hidden=7168, recompute="none", recompute_projections=(), frozen=False)
    # RMSNorm forward reads x and writes y (equal sizes); backward reads x and dy and writes dx: 3 / 2
    assert w.elementwise_backward_s == pytest.approx(1.5 * cost.ops["layers.1.input_layernorm"].time_s)


def test_logits_at_every_position(moe_graph, h800):
    """Training computes the head at all 4096 positions (inference prefill: the last one): BF16 GEMM
    [4096 x 7168] -> 129280, forward + Dgrad + Wgrad and the loss's passes over the logits, minus the
    one-position forward inference prices."""
    w = _work(moe_graph, h800, "head")
    full = (_sustained(gemm_time(h800, m=4096, n=129280, k=7168, dtype="bf16"))
            + _sustained(gemm_time(h800, m=4096, n=7168, k=129280, dtype="bf16"))
            + _sustained(gemm_time(h800, m=129280, n=7168, k=4096, dtype="bf16")) + 3 * GAP)
    last = _sustained(gemm_time(h800, m=1, n=129280, k=7168, dtype="bf16"))
    # cross-entropy: forward reads the BF16 logits, backward reads them and writes their gradient
    loss = 3 * 4096 * 129280 * 2 / (h800.main_memory.bandwidth_bytes_per_s * h800.main_memory.achievable_fraction)
    assert w.logits_s == pytest.approx(full + loss - last)
    assert w.fp8_cast_forward_s == 0.0  # the head stays in BF16 (DSV3-TR §3.3.1)


def test_recompute_adds_named_projections(moe_graph, h800):
    plain = _work(moe_graph, h800, 1, recompute="selective")
    mla = _work(moe_graph, h800, 1, recompute="selective", recompute_projections=("q_b_proj", "kv_b_proj"))
    extra = sum(_sustained(gemm_time(h800, m=4096, n=nn, k=kk)) + 3 * GAP  # the GEMM, its input's cast and
                for nn, kk in ((24576, 1536), (32768, 512)))                 # the cast's scale transpose
    casts = (4096 * 1536 * 3 + 3 * 4096 * 12 * 4 + 4096 * 512 * 3 + 3 * 4096 * 4 * 4) / (
        h800.main_memory.bandwidth_bytes_per_s * h800.main_memory.achievable_fraction)
    assert mla.recompute_s - plain.recompute_s == pytest.approx(extra + casts)
    full = _work(moe_graph, h800, 1, recompute="full")
    # full recomputation re-runs the whole forward, the K assembly copy with it
    assert full.recompute_s + full.key_assembly_recompute_s == pytest.approx(full.f_s)
    assert full.key_assembly_recompute_s == full.key_assembly_forward_s > 0
    with pytest.raises(ConfigError, match="recompute_projections"):
        TrainingSetup(seq_len=8, global_batch=1, recompute_projections=["q_b_proj"])


def test_min_max_partition_is_exact():
    assert [list(r) for r in min_max_partition([3, 1, 1, 1, 3], 3)] == [[0], [1, 2, 3], [4]]
    assert [list(r) for r in min_max_partition([1, 1, 1, 1], 4)] == [[0], [1], [2], [3]]
    # 7 equal loads on 3 stages: the heaviest holds 3
    assert max(len(r) for r in min_max_partition([1.0] * 7, 3)) == 3


def test_dsv3_stages_and_terms(dsv3, h800):
    e = estimate_training(dsv3, h800, DSV3_LAYOUT, DSV3_SETUP)
    terms = e.breakdown["terms_per_micro_batch"]
    # every term is positive for the FP8 recipe
    assert all(v > 0 for v in terms.values())
    # DualPipe's heaviest rank holds the first stage and the last (head + MTP) stage
    assert "mtp" in e.breakdown["stage_layers"] and "layer 0" in e.breakdown["stage_layers"]
    # reserving 20 of 132 SMs for communication slows compute by 132 / 112
    free = estimate_training(dsv3, h800, DSV3_LAYOUT, replace(DSV3_SETUP, comm_sms=0))
    assert e.breakdown["backward_compute_per_micro_batch"] == pytest.approx(
        free.breakdown["backward_compute_per_micro_batch"] * 132 / 112)


def test_chunk_pair_against_deepseek_profile(dsv3, h800):
    """deepseek-ai/profile-data train.json (validation/deepseek_profile_train.json.gz): a DualPipe forward+backward
    chunk pair of 4 MoE layers (EP64, 4K sequence) spans 128.5 ms with the compute stream busy 118.2 ms; DeepEP
    internode dispatch takes 3.1-4.6 ms and combine 5.8-6.5 ms per call. The model's pair: compute 112 ms (5%
    below the measured busy time; per op: docs/training_trace.md), EP calls 2.2 ms / 4.4 ms (below the measured
    ranges). Documented bounds: compute between 0.86x and 0.95x the measured busy time; each EP call below its
    measured range."""
    pair = moe_chunk_pair(dsv3, h800, DSV3_LAYOUT, DSV3_SETUP, moe_layers=4)
    assert 0.86 <= pair["compute_s"] / 118.2e-3 <= 0.95, pair["compute_s"]
    assert pair["dispatch_s"] < 3.1e-3 and pair["combine_s"] < 5.8e-3
    # the span is the two-stream schedule (tests/mapping/test_training_overlap.py): the model's transfers
    # (53 ms) hide under its compute except where a dependency waits
    assert max(pair["compute_s"], pair["communication_s"]) - 1e-12 <= pair["span_s"]
    assert pair["span_s"] <= 1.02 * pair["compute_s"]


def test_chunk_pair_ops_add_up_to_its_streams(dsv3, h800):
    """The per-op split of the chunk pair (archsim/mapping/training_ops.py, set beside DeepSeek's trace by
    docs/training_trace.md) re-divides the same seconds: compute ops sum to the pair's compute, dispatch and
    combine to its communication; each MoE layer's expert GEMMs are 2 forward + 2 Dgrad grouped GEMMs, and
    Wgrad appears only in the wgrad pass."""
    pair = moe_chunk_pair(dsv3, h800, DSV3_LAYOUT, DSV3_SETUP, moe_layers=4)
    ops = pair["ops"]
    comm = sum(v for (op, _), v in ops.items() if op in ("notify", "dispatch", "combine", "collective"))
    assert comm == pytest.approx(pair["communication_s"])
    assert sum(ops.values()) - comm == pytest.approx(pair["compute_s"])
    # EP calls: 4 layers x (forward + backward) of one call each
    assert ops[("dispatch", "forward")] == pytest.approx(4 * pair["dispatch_s"])
    assert ops[("combine", "backward")] == pytest.approx(4 * pair["combine_s"])
    assert {p for (op, p) in ops if op == "wgrad_gemm"} == {"wgrad"}
    assert all(p != "wgrad" for (op, p) in ops if op != "wgrad_gemm")
    one = moe_chunk_pair(dsv3, h800, DSV3_LAYOUT, DSV3_SETUP, moe_layers=1)["ops"]
    assert ops[("expert_gemm", "forward")] == pytest.approx(4 * one[("expert_gemm", "forward")])


def test_fp8_cached_swiglu_inputs_are_dequantised_before_recompute(moe_graph, h800):
    """DSV3-TR §3.3.3 caches the MoE SwiGLU inputs in FP8 and recomputes the output in backward: the routed
    experts' act (32768 routed rows x 2048, gate and up) first reads 2 x 32768 x 2048 FP8 values and their
    1x128-tile float32 scales and writes them in BF16: 3 B per element + 4 B per 128 elements."""
    g, cost, n = moe_graph
    only = {"layers.1.mlp.experts.act"}
    kw = dict(tokens=TOKENS, topk=8, hidden=7168, recompute="selective", recompute_projections=(), frozen=False)
    plain = micro_batch_work(g, cost, h800, count=lambda op: 1 if op.name in only else 0, **kw)
    cached = micro_batch_work(g, cost, h800, count=lambda op: 1 if op.name in only else 0, fp8_activation_cache=True,
                              **kw)
    elements = 2 * 32768 * 2048
    hbm = h800.main_memory.bandwidth_bytes_per_s * h800.main_memory.achievable_fraction
    assert cached.fp8_cast_backward_s - plain.fp8_cast_backward_s == pytest.approx(
        (elements * 3 + elements / 128 * 4) / hbm + GAP)
    assert cached.recompute_s == plain.recompute_s
    # without recomputation the SwiGLU output is kept: nothing to dequantise
    kept = micro_batch_work(g, cost, h800, count=lambda op: 1 if op.name in only else 0, fp8_activation_cache=True,
                            **{**kw, "recompute": "none"})
    assert kept.fp8_cast_backward_s == 0.0


def test_expanded_mla_key_assembly_is_a_copy_in_forward_and_recompute(moe_graph, h800):
    """Expanded MLA takes K contiguous, [4096 keys, 128 heads, 192]: a copy reads k_nope (4096 x 128 x 128 BF16,
    strided in kv_b_proj's output) and the one rope key per token (4096 x 64), and writes K (4096 x 128 x 192):
    134,217,728 + 524,288 + 201,326,592 = 336,068,608 B (DeepSeek-V3 inference/model.py, naive MLA:
    torch.cat([k_nope, k_pe.expand(...)]); DeepSeek's profile: one _copy_tensor_kernel per layer in the forward,
    106 us). Recomputing kv_b_proj in backward (DSV3-TR §3.2.3) rebuilds K: a second copy."""
    from archsim.mapping.training_work import key_assembly_bytes
    g, cost, n = moe_graph
    name = "layers.1.self_attn.attn_core"
    assert key_assembly_bytes(g, name) == 4096 * 128 * 128 * 2 + 4096 * 64 * 2 + 4096 * 128 * 192 * 2 == 336068608
    assert key_assembly_bytes(g, "layers.1.self_attn.o_proj") == 0.0  # not an attention op
    kw = dict(tokens=TOKENS, topk=8, hidden=7168, frozen=False)
    hbm = h800.main_memory.bandwidth_bytes_per_s * h800.main_memory.achievable_fraction
    w = micro_batch_work(g, cost, h800, count=lambda op: 1 if op.name == name else 0, recompute="selective",
                         recompute_projections=("q_b_proj", "kv_b_proj"), **kw)
    assert w.key_assembly_forward_s == pytest.approx(336068608 / hbm + GAP)
    assert w.key_assembly_recompute_s == w.key_assembly_forward_s
    # backward: autograd copies dk_nope and dV into kv_b_proj's output gradient (read + write 4096 x 128 x 128
    # BF16 each) and sums dK's rope part over the 128 heads (read 4096 x 128 x 64, write 4096 x 64):
    # 2 x 134,217,728 + 2 x 134,217,728 + 67,108,864 + 524,288 = 604,504,064 B in three kernels (the trace's
    # two _copy_tensor_kernel and one reduce_kernel after each attention backward)
    from archsim.mapping.training_work import key_value_gradient_bytes
    assert key_value_gradient_bytes(g, name) == 4 * 4096 * 128 * 128 * 2 + 4096 * 128 * 64 * 2 + 4096 * 64 * 2 \
        == 604504064
    assert w.key_assembly_backward_s == pytest.approx(604504064 / hbm + 3 * GAP)
    assert w.b_s == pytest.approx(w.attention_backward_s + w.elementwise_backward_s + w.recompute_s
                                  + w.key_assembly_recompute_s + w.key_assembly_backward_s)
    assert w.f_s == pytest.approx(w.forward_s + w.key_assembly_forward_s)
    kept = micro_batch_work(g, cost, h800, count=lambda op: 1 if op.name == name else 0, recompute="selective",
                            recompute_projections=("q_b_proj",), **kw)
    assert kept.key_assembly_recompute_s == 0.0 and kept.key_assembly_forward_s == w.key_assembly_forward_s


def test_inference_prefill_has_no_key_assembly(dsv3, h800):
    """The reference's default prefill (attn_impl = "absorb") builds no contiguous K: the inference graph has no
    copy op and its price is unchanged by the training term."""
    small, _ = representative_model(dsv3)
    g = build_prefill(small, batch=1, prompt_len=TOKENS, precision=precision_from_names("fp8"))
    assert not any("assembl" in name or "copy" in name for name in g.nodes)


def test_e5m6_attention_output_cast_and_cast_back(moe_graph, h800):
    """DSV3-TR §3.3.3 keeps the attention output (the input of o_proj) in E5M6 (12 bits) for the attention
    backward: the forward casts 4096 rows x 128 heads x 128 = 67,108,864 BF16 values to E5M6 with one float32
    scale per 1x128 tile, the backward casts them back: 67,108,864 x (2 + 1.5) B + 524,288 x 4 B = 236,978,176 B
    each way, one kernel each."""
    from archsim.mapping.training_work import special_format_cast_bytes
    g, cost, n = moe_graph
    name = "layers.1.self_attn.attn_core"
    elements = 4096 * 128 * 128
    assert special_format_cast_bytes(g.nodes[name]["op"]) == elements * 3.5 + elements / 128 * 4 == 236978176
    kw = dict(count=lambda op: 1 if op.name == name else 0, tokens=TOKENS, topk=8, hidden=7168, recompute="none",
              recompute_projections=(), frozen=False)
    plain = micro_batch_work(g, cost, h800, **kw)
    e5m6 = micro_batch_work(g, cost, h800, attention_output_format="e5m6", **kw)
    hbm = h800.main_memory.bandwidth_bytes_per_s * h800.main_memory.achievable_fraction
    assert plain.fp8_cast_forward_s == plain.fp8_cast_backward_s == 0.0
    assert e5m6.fp8_cast_forward_s == pytest.approx(236978176 / hbm + GAP)
    assert e5m6.fp8_cast_backward_s == e5m6.fp8_cast_forward_s
    with pytest.raises(ConfigError, match="attention_output_format"):
        TrainingSetup(seq_len=8, global_batch=1, attention_output_format="e4m3")


def test_dsv3_recipe_caches_the_attention_output_in_e5m6():
    """workloads/deepseek_v3.yaml's published recipe names the E5M6 cache, and the trace comparison reads it."""
    from archsim.config.workload import load_workload
    from archsim.fidelity.trace_compare import published_recipe
    from pathlib import Path
    w = load_workload(Path(__file__).resolve().parents[2] / "workloads" / "deepseek_v3.yaml")
    _, setup = published_recipe(w)
    assert setup.attention_output_format == "e5m6"


def test_deepep_notify_kernels_at_link_latency(dsv3, h800):
    """DeepEP's normal-mode notify kernels (DeepEP csrc/kernels/internode.cu): notify_dispatch has 4 RDMA and 3
    NVLink messages on its critical path, cached_notify 2 and 2. At ISCA25 Table 5's 64-byte latencies
    (hardware/h800.yaml: IB 2.8 us, NVLink 3.33 us): 4 x 2.8 + 3 x 3.33 = 21.19 us and 2 x 2.8 + 2 x 3.33 =
    12.26 us. EP64 spans 8 nodes; an EP8 group in one node sends nothing over RDMA. The chunk pair's notify
    ops: per MoE layer notify_dispatch + cached_notify forward, two cached_notify backward."""
    from archsim.mapping.training import ep_notify_s
    assert ep_notify_s(h800, dsv3, DSV3_LAYOUT) == pytest.approx((21.19e-6, 12.26e-6))
    assert ep_notify_s(h800, dsv3, replace(DSV3_LAYOUT, ep=8, dp=128)) == pytest.approx((9.99e-6, 6.66e-6))
    assert ep_notify_s(h800, dsv3, replace(DSV3_LAYOUT, ep=1)) == (0.0, 0.0)  # no DeepEP exchange
    ops = moe_chunk_pair(dsv3, h800, DSV3_LAYOUT, DSV3_SETUP, moe_layers=4)["ops"]
    assert ops[("notify", "forward")] == pytest.approx(4 * (21.19e-6 + 12.26e-6))
    assert ops[("notify", "backward")] == pytest.approx(4 * 2 * 12.26e-6)


# DeepGEMM pull request #95 (H800): weight-gradient GEMMs with FP32 accumulation, (groups, M, N, K, TFLOPS); the
# dense rows from its description [V], the k-grouped rows as DeepGEMM issue #107 quotes its table [S]
DEEPGEMM_WGRAD_H800 = ((1, 7168, 2112, 4096, 920), (1, 1536, 24576, 4096, 986), (1, 512, 32768, 4096, 878),
                       (1, 16384, 7168, 4096, 994), (1, 7168, 4096, 4096, 942), (1, 2048, 7168, 4096, 920),
                       (1, 7168, 2112, 8192, 1052), (1, 1536, 24576, 8192, 1092), (1, 512, 32768, 8192, 1014),
                       (4, 7168, 4096, 4096, 939), (4, 2048, 7168, 4096, 900), (4, 7168, 4096, 8192, 1044),
                       (4, 2048, 7168, 8192, 1033), (8, 7168, 4096, 4096, 942))


def test_wgrad_fraction_is_deepgemms_table_over_the_kernel_model(h800):
    """kernel.wgrad_fraction (hardware/h800.yaml) is the geometric mean of DeepGEMM's published Wgrad TFLOPS over
    the kernel model's for the same shapes, the model's Wgrad priced as training prices it (FP32 output, plus the
    running sum read at the HBM rate), at the benchmark's boost clock: 0.929 -> 0.93. Then a Wgrad term is the
    kernel model's time over that fraction, plus the kernel gap."""
    import math
    hbm = h800.main_memory.bandwidth_bytes_per_s * h800.main_memory.achievable_fraction
    ratios = []
    for g, m, n, k, tflops in DEEPGEMM_WGRAD_H800:
        t = grouped_gemm_time(h800, groups=g, m=m, n=n, k=k, dtype="fp8", out_dtype="fp32").time_s + g * m * n * 4 / hbm
        ratios.append(tflops * 1e12 / (2 * g * m * n * k / t))
    mean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    assert h800.kernel.wgrad_fraction == round(mean, 2) == 0.93
    assert all(0.8 < r < 1.05 for r in ratios)  # one library-wide figure: no row far from it


def test_wgrad_term_runs_at_the_wgrad_fraction(moe_graph, h800):
    g, cost, n = moe_graph
    name = "layers.1.mlp.experts.gate_up"
    kw = dict(count=lambda op: 1 if op.name == name else 0, tokens=TOKENS, topk=8, hidden=7168, recompute="none",
              recompute_projections=(), frozen=False, gradient_bytes=4.0)
    plain = replace(h800, kernel=replace(h800.kernel, wgrad_fraction=None))
    w = micro_batch_work(g, cost, h800, **kw)
    w1 = micro_batch_work(g, cost, plain, **kw)
    assert w.wgrad_s - GAP == pytest.approx((w1.wgrad_s - GAP) / WGRAD)
    assert w.forward_s == w1.forward_s and w.dgrad_s == w1.dgrad_s
