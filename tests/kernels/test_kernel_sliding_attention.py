"""Sliding-window attention and attention sinks (gpt-oss) in the numpy kernels: naive and flash equal a
brute-force softmax over exactly the visible keys (plus the sink logit); FLOPs are the hand count; the flash
kernel's HBM traffic equals the cost model's formula; and the tiny gpt-oss executes node by node with counts
equal to the graph's (prefill, a chunk after a cached prefix past the window, decode past the window)."""
from __future__ import annotations

import functools
import os
import warnings

import numpy as np
import pytest

from archsim.config.hf import UnmodelledFieldsWarning, workload_from_hf_config
from archsim.cost.attention_traffic import flash_hbm_bytes
from archsim.execute import counts_match, execute, execute_decode, execute_prefill, prepare
from archsim.graph.precision import precision_from_names
from archsim.graph.small import small_variant
from archsim.kernels.attention import naive_attention
from archsim.kernels.counting import Counter
from archsim.kernels.flash import flash_attention

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRECISION = precision_from_names("bf16", "bf16", "bf16", expert_weights="mxfp4")


def brute(q, k, v, scale, window, sinks):
    """softmax over keys max(0, p - W + 1) .. p of each query (and the head's sink logit), written out."""
    b, n_q, hq, _ = q.shape
    n_kv, hkv = k.shape[1], k.shape[2]
    out = np.zeros((b, n_q, hq, v.shape[-1]))
    for bi in range(b):
        for h in range(hq):
            kh = h // (hq // hkv)
            for i in range(n_q):
                p = n_kv - n_q + i
                keys = [j for j in range(n_kv) if j <= p and (window is None or j > p - window)]
                logits = [q[bi, i, h] @ k[bi, j, kh] * scale for j in keys] + ([sinks[h]] if sinks is not None else [])
                e = np.exp(np.array(logits) - max(logits))
                e /= e.sum()
                out[bi, i, h] = sum(e[t] * v[bi, j, kh] for t, j in enumerate(keys))
    return out


# (batch, n_q, n_kv, heads_q, heads_kv, d, window, flash tiles (B_r, B_c))
CASES = [(2, 33, 33, 8, 2, 8, 8, (3, 5)),      # prefill longer than the window, partial tiles
         (1, 1, 40, 4, 2, 8, 8, (4, 4)),       # decode: one query, 40 keys, window 8
         (2, 5, 30, 4, 4, 8, 7, (2, 3)),       # a chunk of 5 after 25 cached keys
         (1, 9, 50, 8, 2, 8, 6, (8, 16))]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("with_sinks", [False, True])
def test_kernels_equal_the_brute_force_softmax(case, with_sinks):
    b, n_q, n_kv, hq, hkv, d, window, tiles = case
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal(s) for s in ((b, n_q, hq, d), (b, n_kv, hkv, d), (b, n_kv, hkv, d)))
    sinks = rng.standard_normal(hq) if with_sinks else None
    want = brute(q, k, v, 0.3, window, sinks)
    counters = Counter(), Counter()
    got_naive = naive_attention(q, k, v, scale=0.3, causal=True, window=window, sinks=sinks,
                                site=counters[0].site("a"))
    got_flash = flash_attention(q, k, v, scale=0.3, causal=True, window=window, sinks=sinks, tiles=tiles,
                                elem_bytes=2, site=counters[1].site("a"))
    assert np.abs(got_naive - want).max() < 1e-12 and np.abs(got_flash - want).max() < 1e-12
    # FLOPs: (2d + 5 + 2d) per attended pair, pairs = sum over queries of min(p + 1, W); 3 per (query, head)
    # for the sink
    pairs = sum(min(p + 1, window) for p in range(n_kv - n_q, n_kv))
    flops = b * hq * (pairs * (4 * d + 5) + (3 * n_q if with_sinks else 0))
    assert counters[0].records[0].flops == counters[1].records[0].flops == flops
    # compulsory reads: the keys the window reaches, min(n_kv, W + n_q - 1) per sequence (+ the sinks)
    keys = min(n_kv, window + n_q - 1)
    reads = {o.name: o.shape for o in counters[1].records[0].reads}
    assert reads["k"] == (b, keys, hkv, d) and (reads.get("sinks") == (hq,)) == with_sinks


@pytest.mark.parametrize("case", CASES)
def test_flash_traffic_is_the_cost_formula_by_hand(case):
    """Per (sequence, kv head) and query tile, the key tiles from the one holding the first row's first visible key
    to the one holding the last row's position are read whole; Q read and O written once."""
    b, n_q, n_kv, hq, hkv, d, window, (b_r, b_c) = case
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal(s) for s in ((b, n_q, hq, d), (b, n_kv, hkv, d), (b, n_kv, hkv, d)))
    counter = Counter()
    flash_attention(q, k, v, scale=0.3, causal=True, window=window, tiles=(b_r, b_c), elem_bytes=2,
                    site=counter.site("a"))
    r = counter.records[0]
    g = hq // hkv
    key_rows = 0
    for r0 in range(0, n_q * g, b_r):
        p_min, p_max = n_kv - n_q + r0 // g, n_kv - n_q + (min(r0 + b_r, n_q * g) - 1) // g
        lo, hi = max(0, p_min - window + 1) // b_c * b_c, min(n_kv, (p_max // b_c + 1) * b_c)
        key_rows += hi - lo
    by_hand = b * hkv * (n_q * g * d * 2 + key_rows * 2 * d) * 2
    assert r.hbm_read_bytes + r.hbm_write_bytes == by_hand
    # the cost model's formula, at an SRAM size that gives these tiles when they are square enough to come from it
    sram = 4 * d * 2 * b_c
    if min(b_c, d) == b_r:
        assert flash_hbm_bytes(batch=b, q_len=n_q, kv_len=n_kv, heads_q=hq, heads_kv=hkv, d_qk=d, d_v=d,
                               elem_bytes=2, sram_bytes=sram, causal=True, window=window) == by_hand


def test_window_skips_tiles_full_attention_does_not():
    """At 64 keys, window 8 and 4-key tiles the decode query (position 63) reads keys 56..63: tiles 14 and 15,
    not all 16."""
    kw = dict(batch=1, q_len=1, kv_len=64, heads_q=1, heads_kv=1, d_qk=8, d_v=8, elem_bytes=2,
              sram_bytes=4 * 8 * 2 * 4, causal=True)   # B_c = M / (4*d*e) = 4 keys
    # a window that starts mid-tile reads that whole tile: window 6 at position 63 starts at key 58, tile 14
    assert flash_hbm_bytes(**kw, window=6) == flash_hbm_bytes(**kw, window=8)
    assert flash_hbm_bytes(**kw, window=9) == (8 + 8 + 12 * 16) * 2        # key 55: tiles 13..15
    assert flash_hbm_bytes(**kw) == (8 + 8 + 64 * 16) * 2                    # Q, O, every key tile
    assert flash_hbm_bytes(**kw, window=8) == (8 + 8 + 8 * 16) * 2


def tiny_gpt_oss():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmodelledFieldsWarning)
        full = workload_from_hf_config(os.path.join(ROOT, "tests", "data", "hf_configs", "gpt-oss-20b")).model
    return small_variant(full)


def test_tiny_gpt_oss_keeps_the_architecture():
    m = tiny_gpt_oss()
    assert m.layer_types == ("sliding_attention", "full_attention") and m.sliding_window == 8
    assert m.attention_sinks and m.router_bias and m.expert_bias and m.swiglu_limit == 7.0


@pytest.mark.parametrize("attend", ["naive", "flash"])
@pytest.mark.parametrize("batch,length", [(1, 5), (2, 20)])
def test_tiny_gpt_oss_counts_match_graph(attend, batch, length):
    m = tiny_gpt_oss()
    fn = naive_attention if attend == "naive" else functools.partial(flash_attention, tiles=(4, 4), elem_bytes=2)
    for ex in (execute_prefill(m, batch=batch, prompt_len=length, precision=PRECISION, attend=fn),
               execute_decode(m, batch=batch, context=length, precision=PRECISION, attend=fn)):
        assert ex.mismatches() == [] and counts_match(ex)
        assert ex.counter.total_flops == sum(op.flops for op in ex.ops.values())
        assert ex.reference_error <= 1e-10   # node by node = the model's own forward


def test_tiny_gpt_oss_chunk_after_a_prefix_past_the_window():
    m = tiny_gpt_oss()
    ex = execute(prepare(m, phase="prefill", batch=2, length=6, past_len=14, precision=PRECISION))
    assert ex.mismatches() == [] and counts_match(ex)
    sliding, full = ex.ops["layers.0.self_attn.attn_core"], ex.ops["layers.1.self_attn.attn_core"]
    # the sliding layer reads the last W - 1 = 7 cached keys (positions 7..13), the full layer all 14
    cache = {o.name: o.shape for o in sliding.reads}["kv_cache"]
    assert cache[:2] == (2, 7) and {o.name: o.shape for o in full.reads}["kv_cache"][:2] == (2, 14)
    H, d = m.num_attention_heads, m.gqa_head_dim
    pairs = sum(min(p + 1, 8) for p in range(14, 20))
    assert sliding.flops == 2 * H * (pairs * (4 * d + 5) + 3 * 6)


def test_tiny_gpt_oss_ops_by_hand():
    m = tiny_gpt_oss()
    ex = execute_decode(m, batch=2, context=20, precision=PRECISION)
    ops, T, h, E, I = ex.ops, 2, m.hidden_size, m.n_routed_experts, m.moe_intermediate_size
    # router gate with its bias: 2*T*E*h + T*E FLOPs, E*h + E parameters
    assert ops["layers.0.mlp.gate"].flops == 2 * T * E * h + T * E and ops["layers.0.mlp.gate"].params == E * h + E
    # the clamped SwiGLU: 7 FLOPs per element of the k*T routed rows
    assert ops["layers.0.mlp.experts.act"].flops == 7 * m.num_experts_per_tok * T * I
    # expert gate_up with its bias: 2*rows*2I*h + rows*2I; parameters E*(2I*h + 2I)
    rows = m.num_experts_per_tok * T
    gu = ops["layers.0.mlp.experts.gate_up"]
    assert gu.flops == 2 * rows * 2 * I * h + rows * 2 * I and gu.params == E * (2 * I * h + 2 * I)
    # decode at context 20: the sliding layer's query reads its 8 keys from the cache, the full layer's all 20
    reads = {layer: {o.name: o.shape for o in ops[f"layers.{layer}.self_attn.attn_core"].reads} for layer in (0, 1)}
    assert reads[0]["kv_cache"][:2] == (2, 8) and reads[1]["kv_cache"][:2] == (2, 20)
    assert ops["layers.0.self_attn.attn_core"].params == m.num_attention_heads   # the sinks
