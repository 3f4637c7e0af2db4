"""The sliding-window attention op at full scale (gpt-oss-120b): FLOPs and bytes by hand for prefill, a prefill
chunk after a long prefix and decode, the sinks' FLOPs and parameters, the KV cache a sliding layer holds, and the
pairs rule against a brute-force sum."""
from __future__ import annotations

import os
import warnings

import pytest

from archsim.attention_window import attended_pairs, cached_keys, first_key, keys_read
from archsim.config.hf import UnmodelledFieldsWarning, workload_from_hf_config
from archsim.graph.build import build_decode, build_prefill
from archsim.graph.params import kv_bytes_per_sequence, kv_bytes_per_token
from archsim.graph.precision import precision_from_names
from archsim.mapping.device_memory import kv_cache_bytes
from archsim.mapping.parallelism import Parallelism

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
P = precision_from_names("bf16", "bf16", "bf16", expert_weights="mxfp4")
H, KV, D, W = 64, 8, 64, 128          # gpt-oss: 64 query heads, 8 kv heads of 64, window 128
PAIR = 2 * D + 5 + 2 * D              # FLOPs per attended (query, key) pair per head (docs/counting.md)


@pytest.fixture(scope="module")
def model():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmodelledFieldsWarning)
        return workload_from_hf_config(os.path.join(ROOT, "tests", "data", "hf_configs", "gpt-oss-120b")).model


def attn(g, layer):
    return g.nodes[f"layers.{layer}.self_attn.attn_core"]["op"]


def reads(op):
    return {o.name: o for o in op.reads}


@pytest.mark.parametrize("q_len,kv_len,window", [(1, 1, 3), (1, 5, 3), (7, 7, 3), (4, 10, 3), (5, 5, 9),
                                                 (3, 200, 128), (4096, 4096, 128), (1, 1, None), (9, 20, None)])
def test_pairs_rule_is_the_sum(q_len, kv_len, window):
    want = sum(min(p + 1, window) if window else p + 1 for p in range(kv_len - q_len, kv_len))
    assert attended_pairs(q_len, kv_len, window) == want
    assert keys_read(q_len, kv_len, window) == kv_len - first_key(q_len, kv_len, window)


def test_prefill_by_hand(model):
    N, B = 4096, 2
    g = build_prefill(model, batch=B, prompt_len=N, precision=P)
    sliding, full = attn(g, 0), attn(g, 1)
    # sliding: positions 0..127 see p + 1 keys (128*129/2 pairs), the other 3968 see 128 each
    pairs = 128 * 129 // 2 + (N - 128) * 128
    assert sliding.attrs["pairs_per_head"] == pairs == 516_160
    assert sliding.flops == B * H * (pairs * PAIR + 3 * N)          # + 3 FLOPs per (query, head) for the sink
    assert full.flops == B * H * (N * (N + 1) // 2 * PAIR + 3 * N)
    # both read Q [B*N, H, D], the fresh K and V [B*N, KV, D] and the 64 sinks, bf16; write O
    for op in (sliding, full):
        r = reads(op)
        assert r["q"].nbytes == B * N * H * D * 2 and r["k"].nbytes == r["v"].nbytes == B * N * KV * D * 2
        assert r["sinks"].nbytes == H * 2 and op.params == H and "kv_cache" not in r


def test_prefill_chunk_after_a_prefix_reads_the_window_only(model):
    past, N, B = 10_000, 512, 1
    g = build_prefill(model, batch=B, prompt_len=N, past_len=past, precision=P)
    sliding, full = reads(attn(g, 0)), reads(attn(g, 1))
    # the chunk's first query (position 10000) reaches back to key 9873: 127 cached keys, K and V of 8 heads
    assert sliding["kv_cache"].nbytes == B * 127 * KV * 2 * D * 2
    assert full["kv_cache"].nbytes == B * past * KV * 2 * D * 2
    assert attn(g, 0).attrs["pairs_per_head"] == N * W             # every query sees a full window


def test_decode_by_hand(model):
    C, B = 5120, 4
    g = build_decode(model, batch=B, context=C, precision=P)
    sliding, full = attn(g, 0), attn(g, 1)
    assert sliding.flops == B * H * (W * PAIR + 3) and full.flops == B * H * (C * PAIR + 3)
    assert reads(sliding)["kv_cache"].nbytes == B * W * KV * 2 * D * 2      # the last 128 keys' K and V
    assert reads(full)["kv_cache"].nbytes == B * C * KV * 2 * D * 2


def test_kv_cache_of_sliding_layers_is_the_window(model):
    C, B = 5120, 3
    got = kv_cache_bytes(model, Parallelism(), P, batch=B, context=C, stage=0)
    per_token_layer = 2 * KV * D * 2                                   # K and V of 8 heads, bf16
    assert got == B * per_token_layer * (18 * C + 18 * W)               # 18 full layers, 18 sliding
    assert cached_keys(100, W) == 100 and cached_keys(C, W) == W and cached_keys(C, None) == C
    assert kv_bytes_per_sequence(model, C, P.kv_cache) * B == got
    assert kv_bytes_per_sequence(model, 100, P.kv_cache) == 100 * kv_bytes_per_token(model, P.kv_cache)
