"""Decode graph: absorbed MLA over the latent cache, distinct experts read, MTP verification tokens."""
import pytest
from helpers_graph import model

from archsim.dtypes import BF16
from archsim.errors import ConfigError
from archsim.graph.build import build_decode
from archsim.graph.expert_load import uniform_load, zipf_load
from archsim.graph.params import count_params
from archsim.graph.precision import precision_from_names

FP8 = precision_from_names("fp8")


def test_absorbed_mla_attention_reads_the_latent_cache():
    B, L = 32, 4096
    g = build_decode(model("deepseek_v3"), batch=B, context=L, precision=FP8)
    op = g.nodes["layers.10.self_attn.attn_core"]["op"]
    a = op.attrs
    assert (a["heads_q"], a["heads_kv"], a["d_qk"], a["d_v"], a["form"]) == (128, 1, 576, 512, "mla_absorbed")
    # one query per sequence sees all L keys: L pairs per head; FLOPs per pair 2*576 + 5 + 2*512
    assert op.flops == B * 128 * L * (2 * 576 + 5 + 2 * 512)
    cache = next(o for o in op.reads if o.role == "cache")
    assert cache.nbytes == B * L * (512 + 64) * 2              # bf16 latent + rope key per token
    write = g.nodes["layers.10.self_attn.kv_cache_update"]["op"].writes[0]
    assert write.nbytes == B * 576 * 2                          # the new token's entry
    assert "layers.10.self_attn.kv_b_proj" not in g
    # absorbed projections: W_UK on q_nope (128 -> 512 per head), W_UV on the output (512 -> 128)
    qa = g.nodes["layers.10.self_attn.q_absorb"]["op"]
    assert qa.flops == 2 * B * 128 * 128 * 512 and qa.attrs["groups"] == 128
    oa = g.nodes["layers.10.self_attn.o_absorb"]["op"]
    assert oa.flops == 2 * B * 128 * 512 * 128
    # together they hold exactly kv_b_proj's parameters
    assert qa.params + oa.params == 512 * 128 * (128 + 128)


def test_decode_params_sum_to_model_total():
    m = model("kimi_k2")
    g = build_decode(m, batch=4, context=64, precision=FP8)
    assert sum(d["op"].params for _, d in g.nodes(data=True)) == count_params(m).total


@pytest.mark.parametrize("B", [1, 4, 64, 100_000])
def test_distinct_experts_follow_the_uniform_formula(B):
    E, k = 256, 8
    g = build_decode(model("deepseek_v3"), batch=B, context=128, precision=FP8)
    op = g.nodes["layers.3.mlp.experts.gate_up"]["op"]
    expected = E * (1 - (1 - k / E) ** B)
    assert op.attrs["distinct_experts"] == pytest.approx(expected, rel=1e-12)
    per_expert = FP8.weights.storage_bytes((2 * 2048, 7168))   # one expert's gate+up, with scales
    w = next(o for o in op.reads if o.role == "weight")
    assert w.nbytes == pytest.approx(expected * per_expert, rel=1e-12)
    if B == 1:
        assert op.attrs["distinct_experts"] == pytest.approx(k)      # one token touches k experts
    if B == 100_000:
        assert op.attrs["distinct_experts"] == pytest.approx(E)      # a huge batch touches all


def test_zipf_load_concentrates_tokens_and_touches_fewer_experts():
    m = model("deepseek_v3")
    B = 64
    uni = build_decode(m, batch=B, context=128, precision=FP8).nodes["layers.3.mlp.experts.down"]["op"]
    zl = zipf_load(256, 8, 1.2)
    zipf = build_decode(m, batch=B, context=128, precision=FP8, expert_load=zl).nodes["layers.3.mlp.experts.down"]["op"]
    assert zipf.attrs["tokens_total"] == pytest.approx(uni.attrs["tokens_total"]) == B * 8
    assert zipf.attrs["tokens_max"] > uni.attrs["tokens_max"] == pytest.approx(B * 8 / 256)
    assert zipf.attrs["distinct_experts"] < uni.attrs["distinct_experts"]
    assert zipf.flops == pytest.approx(uni.flops)               # same total work, different spread


def test_mtp_decode_verifies_one_draft_per_sequence():
    m = model("deepseek_v3")
    g = build_decode(m, batch=8, context=1000, precision=FP8, mtp=True)
    assert g.graph["q_len"] == 2 and g.graph["tokens"] == 16
    a = g.nodes["layers.0.self_attn.attn_core"]["op"]
    # queries at positions 998 and 999 see 999 and 1000 keys
    assert a.attrs["pairs_per_head"] == 999 + 1000
    assert "mtp.0.self_attn.attn_core" in g
    with pytest.raises(ConfigError):
        build_decode(model("kimi_k2"), batch=1, context=10, precision=FP8, mtp=True)


def test_gqa_decode_reads_k_and_v_of_each_kv_head():
    B, L = 4, 2048
    g = build_decode(model("llama3_405b"), batch=B, context=L, precision=precision_from_names("bf16"))
    op = g.nodes["layers.7.self_attn.attn_core"]["op"]
    cache = next(o for o in op.reads if o.role == "cache")
    assert cache.nbytes == B * L * 2 * 8 * 128 * 2
    assert op.flops == B * 128 * L * (2 * 128 + 5 + 2 * 128)


def test_bad_arguments_are_config_errors():
    m = model("deepseek_v3")
    with pytest.raises(ConfigError, match="context"):
        build_decode(m, batch=1, context=0, precision=FP8)
    with pytest.raises(ConfigError, match="batch"):
        build_decode(m, batch=0, context=10, precision=FP8)
    with pytest.raises(ConfigError, match="expert_load"):
        build_decode(m, batch=1, context=10, precision=FP8, expert_load=uniform_load(8, 2))


def test_absorbed_weights_keep_the_checkpoint_layout_for_block_scales():
    # W_UK lives inside kv_b_proj as [nope=128, kv_lora=512] per head; MXFP4 blocks of 32 run along
    # the stored input dim (512): 128 rows * 16 blocks * 1 B scale + 128*512/2 B of 4-bit values.
    g = build_decode(model("deepseek_v3"), batch=1, context=8, precision=precision_from_names("fp4"))
    w = next(o for o in g.nodes["layers.3.self_attn.q_absorb"]["op"].reads if o.role == "weight")
    assert w.shape == (128, 128, 512)
    assert w.nbytes == 128 * (128 * 512 / 2 + 128 * 16 * 1)


def test_deepseek_v3_decode_flops_equal_hand_derivation():
    B, L = 32, 4096
    T, h, H, E, k, V = B, 7168, 128, 256, 8, 129280
    qr, c, nope, r, v, I, mi = 1536, 512, 128, 64, 128, 18432, 2048
    attn = (4 * T * h + 2 * T * qr * h + 4 * T * qr + 2 * T * H * (nope + r) * qr   # norm, q_a, q_a_norm, q_b
            + 2 * T * (c + r) * h + 4 * T * c                                      # kv_a, kv_a_norm
            + 3 * r * T * H + 3 * r * T                                            # rope q, rope k
            + 2 * T * H * nope * c                                                 # q_absorb (W_UK)
            + B * H * L * (2 * (c + r) + 5 + 2 * c)                                # attention over the latent
            + 2 * T * H * c * v                                                    # o_absorb (W_UV)
            + 2 * T * H * v * h + 2 * T * h + 4 * T * h)                           # o_proj, residuals, post norm
    dense = 3 * 2 * T * h * I + 5 * T * I
    moe = (2 * T * h * E + 4 * T * E + T * 8 + 3 * k * T                           # gate, router (n_group 8)
           + 3 * 2 * T * h * mi + 5 * T * mi                                       # shared expert
           + 2 * T * k * 2 * mi * h + 5 * T * k * mi + 2 * T * k * mi * h          # routed experts
           + 2 * k * h * T)                                                        # combine
    head = 4 * T * h + 2 * T * V * h                                               # norm, lm_head (every new token)
    g = build_decode(model("deepseek_v3"), batch=B, context=L, precision=FP8)
    total = sum(d["op"].flops for _, d in g.nodes(data=True))
    # 32*8/256 = 1 token per expert: the expectation sums exactly
    assert total == 3 * (attn + dense) + 58 * (attn + moe) + head
