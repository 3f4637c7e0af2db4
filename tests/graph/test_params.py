"""Exact parameter counts and KV bytes per token, each derived by hand from the config."""
from helpers_graph import model

from archsim.dtypes import BF16
from archsim.graph.params import count_params, kv_bytes_per_token


def test_deepseek_v3_parameter_count_by_component():
    h, V, L, H = 7168, 129280, 61, 128
    embedding = V * h                                          # 926,679,040 (README: "0.9B for Embedding")
    lm_head = V * h                                            # untied: another 0.9B
    # MLA per layer: q_a [1536,h] + q_a_norm 1536 + q_b [128*192, 1536] + kv_a [576, h]
    # + kv_a_norm 512 + kv_b [128*(128+128), 512] + o [h, 128*128]
    attn = h * 1536 + 1536 + 1536 * H * 192 + h * 576 + 512 + 512 * H * 256 + H * 128 * h
    assert attn == 187_107_328                                 # [D] from the HF config: 187.1M
    norms = 2 * h                                              # input + post-attention RMSNorm
    dense = 3 * h * 18432                                      # gate, up, down
    expert = 3 * h * 2048                                      # 44,040,192 (44.04M) [D]
    router = 256 * h + 256                                     # gate weight + e_score_correction_bias
    moe_total = router + 1 * expert + 256 * expert
    moe_active = router + 1 * expert + 8 * expert
    total = embedding + lm_head + h + 3 * (attn + norms + dense) + 58 * (attn + norms + moe_total)
    active = embedding + lm_head + h + 3 * (attn + norms + dense) + 58 * (attn + norms + moe_active)
    c = count_params(model("deepseek_v3"))
    assert c.total == total == 671_026_419_200                 # [D] 671.03B (without MTP); TR: 671B
    assert c.active == active == 37_552_297_472                # [D] 37.55B incl. embedding; TR: 37B
    assert c.active - c.embedding == 36_625_618_432            # README_WEIGHTS' 36.7B ~ count w/o input embedding
    assert (c.embedding, c.lm_head, c.attention_per_layer, c.routed_expert) == (embedding, lm_head, attn, expert)
    # MTP unique: enorm + hnorm + shared_head.norm (3h) + eh_proj [h, 2h] + one MoE decoder layer
    mtp = 3 * h + 2 * h * h + attn + norms + moe_total
    assert c.mtp == mtp == 11_610_068_224                      # [D] 11.61B (README_WEIGHTS: 11.5B)
    assert count_params(model("deepseek_v3"), mtp=True).total == total + mtp


def test_kimi_k2_parameter_count_by_component():
    h, V, H = 7168, 163840, 64
    attn = h * 1536 + 1536 + 1536 * H * 192 + h * 576 + 512 + 512 * H * 256 + H * 128 * h
    assert attn == 101_124_096                                 # [D] from the K2 config: 101.1M
    expert = 3 * h * 2048
    router = 384 * h + 384
    dense = 3 * h * 18432
    base = 2 * V * h + h                                       # embedding, lm_head, final norm
    total = base + 1 * (attn + 2 * h + dense) + 60 * (attn + 2 * h + router + expert + 384 * expert)
    active = base + 1 * (attn + 2 * h + dense) + 60 * (attn + 2 * h + router + expert + 8 * expert)
    c = count_params(model("kimi_k2"))
    assert c.total == total and round(total / 1e9, 1) == 1026.4   # [D] 1026.4B; K2-TR: 1.04T
    assert c.active == active and round(active / 1e9, 2) == 32.86  # [D] 32.86B; K2-TR: 32.6B
    assert c.mtp == 0


def test_llama_405b_parameter_count():
    h, V, L = 16384, 128256, 126
    attn = h * 128 * 128 + 2 * h * 8 * 128 + 128 * 128 * h      # q, k, v, o (no biases)
    layer = attn + 3 * h * 53248 + 2 * h
    c = count_params(model("llama3_405b"))
    assert c.total == c.active == 2 * V * h + h + L * layer == 405_853_388_800


def test_kv_bytes_per_token_bf16():
    # MLA: 61 layers * (512 latent + 64 rope) * 2 B (ISCA25 Table 1: 70.272 KB)
    assert kv_bytes_per_token(model("deepseek_v3"), BF16) == 61 * 576 * 2 == 70_272
    assert kv_bytes_per_token(model("kimi_k2"), BF16) == 70_272
    # GQA: 126 layers * 2 (K,V) * 8 kv heads * 128 * 2 B (ISCA25 Table 1: 516.096 KB)
    assert kv_bytes_per_token(model("llama3_405b"), BF16) == 126 * 2 * 8 * 128 * 2 == 516_096
