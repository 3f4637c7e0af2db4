"""Prefill graph of the full models: FLOPs equal a hand derivation, params sum to the model total."""
import networkx as nx
import pytest
from helpers_graph import model

from archsim.dtypes import BF16, FP8_BLOCK128
from archsim.graph.build import build_prefill
from archsim.graph.params import count_params
from archsim.graph.precision import Precision, precision_from_names

FP8 = precision_from_names("fp8")


def flops(g):
    return sum(d["op"].flops for _, d in g.nodes(data=True))


def params(g):
    return sum(d["op"].params for _, d in g.nodes(data=True))


def deepseek_prefill_flops(T, N, h, H, E, k, dense_layers, moe_layers, V, batch, I=18432, mi=2048,
                           qr=1536, c=512, nope=128, r=64, v=128, n_group=8):
    """Hand derivation under docs/counting.md, one term per op (see names)."""
    attn = (4 * T * h                                  # input_layernorm
            + 2 * T * qr * h + 4 * T * qr              # q_a_proj, q_a_layernorm
            + 2 * T * H * (nope + r) * qr              # q_b_proj
            + 2 * T * (c + r) * h + 4 * T * c          # kv_a_proj_with_mqa, kv_a_layernorm
            + 3 * r * T * H + 3 * r * T                # rope_q (every head), rope_k (shared key)
            + 2 * T * H * (nope + v) * c               # kv_b_proj (expanded form)
            + H * (N * (N + 1) // 2) * (T // N) * (2 * (nope + r) + 5 + 2 * v)  # attn_core, causal pairs
            + 2 * T * H * v * h                        # o_proj
            + 2 * T * h                                # two residual adds
            + 4 * T * h)                               # post_attention_layernorm
    dense = 3 * 2 * T * h * I + 5 * T * I              # gate, up, down + SwiGLU
    moe = (2 * T * h * E                               # router GEMM
           + 4 * T * E + 3 * k * T                     # sigmoid+bias, normalise+scale
           + (T * n_group if n_group > 1 else 0)      # group scores (top-2 sum per group)
           + 3 * 2 * T * h * mi + 5 * T * mi           # shared expert (1 x 2048 wide)
           + 2 * T * k * (2 * mi) * h + 5 * T * k * mi + 2 * T * k * mi * h  # routed: every token to k experts
           + 2 * k * h * T)                            # combine
    head = 4 * T * h + 2 * batch * V * h               # final norm (all tokens), lm_head (last position)
    return dense_layers * (attn + dense) + moe_layers * (attn + moe) + head


def test_deepseek_v3_prefill_flops_equal_hand_derivation():
    N, batch = 4096, 1
    g = build_prefill(model("deepseek_v3"), batch=batch, prompt_len=N, precision=FP8)
    expected = deepseek_prefill_flops(N, N, 7168, 128, 256, 8, 3, 58, 129280, batch)
    # uniform routing puts exactly 4096*8/256 = 128 tokens on every expert, so the sum is exact
    assert flops(g) == expected
    assert g.graph["phase"] == "prefill" and g.graph["tokens"] == N


def test_kimi_k2_prefill_flops_equal_hand_derivation():
    N, batch = 2048, 2
    g = build_prefill(model("kimi_k2"), batch=batch, prompt_len=N, precision=FP8)
    # 2048*2*8/384 tokens per expert is not an integer: the float sum is exact to rounding
    expected = deepseek_prefill_flops(N * batch, N, 7168, 64, 384, 8, 1, 60, 163840, batch, n_group=1)
    assert flops(g) == pytest.approx(expected, rel=1e-12)


def test_llama_405b_prefill_flops_equal_hand_derivation():
    N, h, H, KV, d, I, V, L = 4096, 16384, 128, 8, 128, 53248, 128256, 126
    g = build_prefill(model("llama3_405b"), batch=1, prompt_len=N, precision=precision_from_names("bf16"))
    layer = (8 * N * h                                        # two RMSNorms
             + 2 * N * h * (H * d) + 2 * 2 * N * h * (KV * d)  # q, k, v projections
             + 3 * d * N * H + 3 * d * N * KV                  # RoPE on q and k heads (full head dim)
             + H * N * (N + 1) // 2 * (2 * d + 5 + 2 * d)      # attention core
             + 2 * N * (H * d) * h                             # o_proj
             + 2 * N * h                                       # residual adds
             + 3 * 2 * N * h * I + 5 * N * I)                  # SwiGLU MLP
    assert flops(g) == L * layer + 4 * N * h + 2 * V * h


@pytest.mark.parametrize("name", ["deepseek_v3", "kimi_k2", "llama3_405b"])
def test_prefill_params_sum_to_model_total(name):
    m = model(name)
    g = build_prefill(m, batch=1, prompt_len=16, precision=FP8 if m.is_moe else precision_from_names("bf16"))
    assert params(g) == count_params(m).total
    nxg = g.to_networkx()  # networkx's own algorithms check the container
    assert nx.is_directed_acyclic_graph(nxg) and nx.is_weakly_connected(nxg)


def test_mtp_params_add_the_unique_mtp_count():
    m = model("deepseek_v3")
    g = build_prefill(m, batch=1, prompt_len=16, precision=FP8, mtp=True)
    assert params(g) == count_params(m, mtp=True).total
    assert "mtp.0.eh_proj" in g and "mtp.0.mlp.experts.gate_up" in g and "mtp.0.shared_head.head" in g


def test_op_names_follow_checkpoint_paths_and_shared_width():
    g = build_prefill(model("deepseek_v3"), batch=1, prompt_len=8, precision=FP8)
    for name in ("embed_tokens", "layers.0.mlp.gate_proj", "layers.3.self_attn.q_a_proj",
                 "layers.3.self_attn.kv_a_proj_with_mqa", "layers.3.self_attn.kv_b_proj",
                 "layers.3.mlp.gate", "layers.3.mlp.router", "layers.3.mlp.experts.gate_up",
                 "layers.3.mlp.combine", "norm", "lm_head"):
        assert name in g, name
    assert "layers.3.mlp.gate_proj" not in g and "layers.2.mlp.router" not in g
    # shared expert width is moe_intermediate_size * n_shared_experts = 2048, not the dense 18432
    assert g.nodes["layers.3.mlp.shared_experts.up_proj"]["op"].attrs["n"] == 2048
    assert g.nodes["layers.0.mlp.up_proj"]["op"].attrs["n"] == 18432


def test_weight_bytes_include_fp8_block_scales():
    g = build_prefill(model("deepseek_v3"), batch=1, prompt_len=8, precision=FP8)
    op = g.nodes["layers.3.self_attn.q_b_proj"]["op"]
    w = next(o for o in op.reads if o.role == "weight")
    # [128*192, 1536] fp8 = 37,748,736 B + one fp32 scale per 128x128 block: 192*12 blocks * 4 B
    assert w.shape == (24576, 1536) and w.nbytes == 24576 * 1536 + 192 * 12 * 4
    assert op.compute_dtype == FP8_BLOCK128
    # lm_head and router gate are not quantized (bf16, DeepSeek inference code)
    assert g.nodes["lm_head"]["op"].compute_dtype == BF16
    assert next(o for o in g.nodes["layers.3.mlp.gate"]["op"].reads if o.role == "weight").dtype == BF16


def test_prefill_attention_is_expanded_mla_and_writes_latent_cache():
    g = build_prefill(model("deepseek_v3"), batch=2, prompt_len=100, precision=Precision(weights=BF16))
    a = g.nodes["layers.5.self_attn.attn_core"]["op"].attrs
    assert (a["heads_q"], a["heads_kv"], a["d_qk"], a["d_v"], a["form"]) == (128, 128, 192, 128, "mla_expanded")
    assert a["pairs_per_head"] == 100 * 101 // 2
    w = g.nodes["layers.5.self_attn.kv_cache_update"]["op"].writes[0]
    assert w.role == "cache" and w.nbytes == 200 * 576 * 2


def test_chunked_prefill_attends_every_pair_once():
    """Prefill of N tokens in chunks of C after past_len = 0, C, 2C...: the chunks' causal pairs add up
    to N(N+1)/2, and kv_b_proj re-expands the cached prefix latents (read from the cache)."""
    m, N, C, B = model("deepseek_v3"), 3000, 1000, 2
    pairs, cache_rows = 0, 0
    for past in range(0, N, C):
        g = build_prefill(m, batch=B, prompt_len=C, past_len=past, precision=FP8)
        a = g.nodes["layers.4.self_attn.attn_core"]["op"].attrs
        assert (a["q_len"], a["kv_len"]) == (C, past + C)
        pairs += a["pairs_per_head"]                     # C*(past+C) - C*(C-1)/2
        kvb = g.nodes["layers.4.self_attn.kv_b_proj"]["op"]
        assert kvb.attrs["m"] == B * (past + C)
        cache = [o for o in kvb.reads if o.role == "cache"]
        assert sum(o.nbytes for o in cache) == B * past * 512 * 2     # bf16 latent of the prefix
        cache_rows += B * past
    assert pairs == N * (N + 1) // 2
    assert cache_rows == B * (1000 + 2000)


def test_gqa_prefill_after_a_prefix_reads_the_prefix_from_the_cache():
    B, past, C = 2, 512, 256
    g = build_prefill(model("llama3_405b"), batch=B, prompt_len=C, past_len=past, precision=precision_from_names("bf16"))
    op = g.nodes["layers.0.self_attn.attn_core"]["op"]
    cache = next(o for o in op.reads if o.role == "cache")
    assert cache.nbytes == B * past * 2 * 8 * 128 * 2
    k = next(o for o in op.reads if o.name == "k")
    assert k.nbytes == B * C * 8 * 128 * 2                  # the new keys arrive as activations
    assert op.flops == B * 128 * (C * (past + C) - C * (C - 1) // 2) * (2 * 128 + 5 + 2 * 128)
