"""MLA absorbed == expanded, incremental decode == full forward, MTP head, on the tiny DeepSeek model."""
from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest

from archsim.dtypes import BF16, FP8_BLOCK128
from archsim.kernels.counting import Counter
from archsim.kernels.flash import flash_attention
from archsim.kernels.mla import MLADims, mla
from archsim.kernels.tiny import TinyDeepSeek

YARN_DSV3 = dict(type="yarn", factor=40, beta_fast=32, beta_slow=1, mscale=1.0, mscale_all_dim=1.0,
                 original_max_position_embeddings=4096)


def tiny_cfg(**over):
    """DeepSeek-V3's shape at small size: MLA, 1 dense layer, 16 experts in 4 groups (keep 2), 1 shared."""
    base = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, q_lora_rank=32, kv_lora_rank=32,
                qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, intermediate_size=96,
                moe_intermediate_size=24, n_routed_experts=16, n_shared_experts=1, num_experts_per_tok=4,
                first_k_dense_replace=1, moe_layer_freq=1, n_group=4, topk_group=2, norm_topk_prob=True,
                routed_scaling_factor=2.5, vocab_size=97, rope_theta=10000.0, rope_scaling=YARN_DSV3,
                rms_norm_eps=1e-6, num_nextn_predict_layers=1)
    base.update(over)
    return SimpleNamespace(**base)


KIMI_LIKE = dict(n_group=1, topk_group=1, first_k_dense_replace=1, routed_scaling_factor=2.827, rope_theta=50000.0,
                 num_nextn_predict_layers=0, rope_scaling=dict(YARN_DSV3, factor=32.0, beta_fast=1.0))
FAMILIES = {"deepseek_v3": {}, "kimi_k2": KIMI_LIKE, "no_q_lora": dict(q_lora_rank=None)}


def _tokens(b=2, s=9, vocab=97, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, (b, s))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_absorbed_equals_expanded_mla(family):
    cfg = tiny_cfg(**FAMILIES[family])
    model = TinyDeepSeek(cfg, seed=1)
    rng = np.random.default_rng(2)
    w = {k[len("layers.0.self_attn."):].removesuffix(".weight"): v
         for k, v in model.weights.items() if k.startswith("layers.0.self_attn.")}
    x = rng.standard_normal((2, 11, cfg.hidden_size))
    cos, sin = model.rope(0, 11)
    kw = dict(eps=1e-6, scale=model.scale)
    a, _ = mla(x, w, MLADims.of(cfg), cos, sin, form="absorbed", **kw)
    e, _ = mla(x, w, MLADims.of(cfg), cos, sin, form="expanded", **kw)
    assert np.max(np.abs(a - e)) <= 1e-10
    logits_a, _ = model.forward(_tokens(), form="absorbed")
    logits_e, _ = model.forward(_tokens(), form="expanded")
    assert np.max(np.abs(logits_a - logits_e)) <= 1e-10


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("form", ["absorbed", "expanded"])
def test_incremental_decode_equals_full_forward(family, form):
    model = TinyDeepSeek(tiny_cfg(**FAMILIES[family]), seed=3)
    toks = _tokens(s=12)
    full, _ = model.forward(toks, form=form)
    # prefill 8 tokens, then decode the remaining 4 one at a time from the compressed cache
    out, state = model.forward(toks[:, :8], form=form)
    assert np.max(np.abs(out - full[:, :8])) <= 1e-10
    for i in range(8, 12):
        step, state = model.forward(toks[:, i:i + 1], form=form, state=state)
        assert np.max(np.abs(step[:, 0] - full[:, i])) <= 1e-10
    assert state.caches[0].latent.shape == (2, 12, 32)   # [b, L, kv_lora_rank]: the cache is compressed
    assert state.caches[0].k_pe.shape == (2, 12, 8)      # [b, L, qk_rope_head_dim]


def test_flash_inside_model_and_float32():
    cfg = tiny_cfg()
    toks = _tokens(s=10)
    ref, _ = TinyDeepSeek(cfg, seed=4).forward(toks)
    flash = functools.partial(flash_attention, tiles=(4, 3), elem_bytes=BF16.bytes)
    out, _ = TinyDeepSeek(cfg, seed=4).forward(toks, attend=flash)
    assert np.max(np.abs(out - ref)) <= 1e-10
    # float32 weights and activations: logits are O(1..10); errors accumulate over 3 layers of
    # float32 GEMMs with k <= 96, ~1e-6 relative each, so 1e-4 absolute is a safe documented bound (measured 1.8e-6)
    out32, _ = TinyDeepSeek(cfg, seed=4, dtype=np.float32).forward(toks)
    assert out32.dtype == np.float32
    assert np.max(np.abs(out32 - ref)) <= 1e-4


def test_routing_counts_and_group_limit_in_model():
    cfg = tiny_cfg()
    model = TinyDeepSeek(cfg, seed=5)
    _, state = model.forward(_tokens(s=16))
    (counts,) = state.expert_counts
    assert sorted(counts) == [1, 2]                         # layers 1, 2 are MoE (first_k_dense_replace = 1)
    for c in counts.values():
        assert c.sum() == 2 * 16 * cfg.num_experts_per_tok  # every token picks k experts


def test_mtp_head_shapes_and_depends_on_next_token():
    model = TinyDeepSeek(tiny_cfg(), seed=6)
    toks = _tokens(s=7)
    logits = model.mtp_logits(toks)
    assert logits.shape == (2, 6, 97)
    changed = toks.copy()
    changed[:, 3] = (changed[:, 3] + 1) % 97
    other = model.mtp_logits(changed)
    # position 2 sees token 3 as its "next token" embedding; positions 0, 1 see neither
    assert np.allclose(logits[:, :2], other[:, :2], atol=1e-12)
    assert not np.allclose(logits[:, 2], other[:, 2])
    with pytest.raises(ValueError):
        TinyDeepSeek(tiny_cfg(**KIMI_LIKE)).mtp_logits(toks)


def test_counted_forward_flops_and_bytes_are_exact_for_one_gemm_and_norm():
    cfg = tiny_cfg()
    model = TinyDeepSeek(cfg, seed=7)
    c = Counter()
    model.forward(_tokens(b=1, s=5), counter=c, roles={"activation": BF16, "weight": FP8_BLOCK128, "cache": BF16})
    recs = c.by_name()
    (q_a,) = recs["layers.0.self_attn.q_a_proj"]
    # [5, 64] x [64, 32]: 2 * 5 * 32 * 64 FLOPs; fp8 weight 32*64 bytes + one fp32 scale (1 block)
    assert q_a.flops == 2 * 5 * 32 * 64
    assert {o.name: o.nbytes for o in q_a.reads} == {"x": 5 * 64 * 2, "weight": 32 * 64 + 4}
    (norm,) = recs["layers.0.input_layernorm"]
    assert norm.flops == 4 * 5 * 64
    (attn,) = recs["layers.0.self_attn.attn_core"]
    # absorbed MLA: 4 heads, d_qk = 32 + 8, d_v = 32, causal prefill of 5 -> 15 pairs per head
    assert attn.flops == 4 * 15 * (2 * 40 + 5 + 2 * 32)
    assert dict(attn.attrs)["heads_kv"] == 1
    # a second counter is independent
    c2 = Counter()
    assert c2.records == [] and len(c.records) > 0


def gqa_cfg(**over):
    """Llama-style dense GQA at small size: 8 query heads over 2 kv heads, head_dim 8, llama3 RoPE."""
    base = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2, head_dim=8,
                intermediate_size=128, vocab_size=97, rope_theta=500000.0, rms_norm_eps=1e-5,
                rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                  original_max_position_embeddings=8192))
    base.update(over)
    return SimpleNamespace(**base)


@pytest.mark.parametrize("kv_heads", [8, 2, 1])  # MHA, GQA, MQA
def test_gqa_family_decode_equals_forward_and_flash(kv_heads):
    model = TinyDeepSeek(gqa_cfg(num_key_value_heads=kv_heads), seed=8)
    assert model.kind == "gqa"
    toks = _tokens(s=10)
    full, _ = model.forward(toks)
    _, state = model.forward(toks[:, :7])
    for i in range(7, 10):
        step, state = model.forward(toks[:, i:i + 1], state=state)
        assert np.max(np.abs(step[:, 0] - full[:, i])) <= 1e-10
    assert state.caches[0].k.shape == (2, 10, kv_heads, 8)   # [b, L, H_kv, d]
    flash = functools.partial(flash_attention, tiles=(3, 4), elem_bytes=BF16.bytes)
    out, _ = model.forward(toks, attend=flash)
    assert np.max(np.abs(out - full)) <= 1e-10
