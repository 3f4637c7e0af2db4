"""Flash (tiled) attention equals naive attention; its counted HBM bytes follow docs/counting.md."""
from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.dtypes import BF16
from archsim.kernels.attention import causal_pairs, naive_attention
from archsim.kernels.counting import Counter
from archsim.kernels.flash import flash_attention, flash_tiles

F64_TOL = 1e-10
# float32: 24-bit mantissa; softmax sums of <= a few hundred terms of O(1) values agree to ~1e-6
# relative between the two summation orders, so 1e-5 absolute on O(1) outputs is a safe bound.
F32_TOL = 1e-5


def _qkv(rng, b, n_q, n_kv, hq, hkv, d_qk, d_v, dtype=np.float64):
    q = rng.standard_normal((b, n_q, hq, d_qk)).astype(dtype)
    k = rng.standard_normal((b, n_kv, hkv, d_qk)).astype(dtype)
    v = rng.standard_normal((b, n_kv, hkv, d_v)).astype(dtype)
    return q, k, v


# (name, heads_q, heads_kv, d_qk, d_v): MHA, GQA, MQA, and MLA absorbed (heads_kv = 1,
# d_qk = kv_lora_rank + rope dim, d_v = kv_lora_rank, at tiny size 32 + 8 and 32)
LAYOUTS = [("mha", 4, 4, 16, 16), ("gqa", 8, 2, 16, 12), ("mqa", 6, 1, 8, 8), ("mla_absorbed", 4, 1, 40, 32)]


@pytest.mark.parametrize("name,hq,hkv,d_qk,d_v", LAYOUTS)
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n_q,n_kv", [(13, 13), (1, 17), (5, 23), (31, 31)])
@pytest.mark.parametrize("tiles", [(1, 1), (3, 5), (7, 4), (16, 64)])
def test_flash_equals_naive_float64(name, hq, hkv, d_qk, d_v, causal, n_q, n_kv, tiles):
    rng = np.random.default_rng(zlib.crc32(f"{name}-{n_q}-{n_kv}".encode()))  # deterministic per case
    q, k, v = _qkv(rng, 2, n_q, n_kv, hq, hkv, d_qk, d_v)
    ref = naive_attention(q, k, v, scale=d_qk ** -0.5, causal=causal)
    out = flash_attention(q, k, v, scale=d_qk ** -0.5, causal=causal, tiles=tiles, elem_bytes=BF16.bytes)
    assert np.max(np.abs(out - ref)) <= F64_TOL


@pytest.mark.parametrize("name,hq,hkv,d_qk,d_v", LAYOUTS)
def test_flash_equals_naive_float32(name, hq, hkv, d_qk, d_v):
    rng = np.random.default_rng(7)
    q, k, v = _qkv(rng, 1, 19, 29, hq, hkv, d_qk, d_v, np.float32)
    ref = naive_attention(q, k, v, scale=d_qk ** -0.5, causal=True)
    out = flash_attention(q, k, v, scale=d_qk ** -0.5, causal=True, tiles=(5, 6), elem_bytes=BF16.bytes)
    assert out.dtype == np.float32
    assert np.max(np.abs(out - ref)) <= F32_TOL


def test_causal_with_prefix_matches_per_query_softmax():
    # query i at absolute position n_kv - n_q + i sees keys 0..that position: check one row by hand
    rng = np.random.default_rng(3)
    q, k, v = _qkv(rng, 1, 3, 7, 1, 1, 4, 4)
    out = naive_attention(q, k, v, scale=0.5, causal=True)
    p = 7 - 3 + 1  # second query sits at absolute position 5, so it sees keys 0..5
    s = 0.5 * k[0, : p + 1, 0] @ q[0, 1, 0]
    w = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    assert np.allclose(out[0, 1, 0], w @ v[0, : p + 1, 0], atol=1e-12)
    assert causal_pairs(3, 7) == 5 + 6 + 7


def test_tiles_from_sram_follow_flash_algorithm_1():
    # B_c = floor(M / (4 d e)); M = 228 KiB (an H100 SM's shared memory), d = 128, e = 2 bytes:
    # 233472 / 1024 = 228 keys per tile, B_r = min(228, 128) = 128
    assert flash_tiles(228 * 1024, 128, 2) == (128, 228)
    assert flash_tiles(10, 128, 2) == (1, 1)  # never zero


def _counted(kind, q, k, v, causal, sram, e=BF16):
    c = Counter()
    site = c.site("attn", roles={"activation": e, "cache": e})
    if kind == "flash":
        flash_attention(q, k, v, scale=1.0, causal=causal, sram_bytes=sram, site=site)
    else:
        naive_attention(q, k, v, scale=1.0, causal=causal, site=site)
    (rec,) = c.records
    return rec


def test_flash_traffic_by_hand_small_case():
    # one sequence, MHA with 1 head, d = 4, e = 2 bytes, M = 64 bytes -> B_c = floor(64 / 32) = 2,
    # B_r = min(2, 4) = 2. n_q = n_kv = 5 causal: query tiles rows {0,1}, {2,3}, {4}.
    # tile {0,1}: p_max 1 -> key tile 0 (2 keys); {2,3}: p_max 3 -> key tiles 0,1 (4 keys);
    # {4}: p_max 4 -> key tiles 0,1,2 (2+2+1 = 5 keys). Keys read = 11, each (4 + 4) * 2 bytes.
    # Q read 5*4*2 = 40, O written 5*4*2 = 40.
    rng = np.random.default_rng(0)
    q, k, v = _qkv(rng, 1, 5, 5, 1, 1, 4, 4)
    rec = _counted("flash", q, k, v, True, 64)
    assert rec.hbm_read_bytes == 40 + 11 * 8 * 2
    assert rec.hbm_write_bytes == 40
    # non-causal: every query tile reads all 5 keys: 3 tiles * 5 keys
    rec = _counted("flash", q, k, v, False, 64)
    assert rec.hbm_read_bytes == 40 + 15 * 8 * 2


@pytest.mark.parametrize("b,n_q,n_kv,hq,hkv,d_qk,d_v", [
    (1, 37, 37, 4, 4, 16, 16), (2, 1, 53, 8, 2, 16, 16), (1, 9, 40, 6, 1, 40, 32), (2, 64, 64, 4, 2, 8, 12)])
@pytest.mark.parametrize("sram", [512, 2000, 8192])
@pytest.mark.parametrize("causal", [True, False])
def test_flash_traffic_equals_cost_model(b, n_q, n_kv, hq, hkv, d_qk, d_v, sram, causal):
    traffic = pytest.importorskip("archsim.cost.attention_traffic")
    rng = np.random.default_rng(1)
    q, k, v = _qkv(rng, b, n_q, n_kv, hq, hkv, d_qk, d_v)
    rec = _counted("flash", q, k, v, causal, sram)
    expect = traffic.flash_hbm_bytes(batch=b, q_len=n_q, kv_len=n_kv, heads_q=hq, heads_kv=hkv, d_qk=d_qk,
                                     d_v=d_v, elem_bytes=BF16.bytes, sram_bytes=sram, causal=causal)
    assert rec.hbm_read_bytes + rec.hbm_write_bytes == expect
    rec = _counted("naive", q, k, v, causal, sram)
    expect = traffic.naive_hbm_bytes(batch=b, q_len=n_q, kv_len=n_kv, heads_q=hq, heads_kv=hkv, d_qk=d_qk,
                                     d_v=d_v, elem_bytes=BF16.bytes, sram_bytes=sram, causal=causal)
    assert rec.hbm_read_bytes + rec.hbm_write_bytes == expect


@pytest.mark.parametrize("n_q,n_kv,hq,sram", [(1, 53, 8, 2000), (2, 40, 4, 512), (3, 17, 16, 8192)])
@pytest.mark.parametrize("causal", [True, False])
def test_flash_shared_kv_traffic_equals_cost_model(n_q, n_kv, hq, sram, causal):
    # MLA absorbed: one latent kv head; V = the first d_v columns of K, read once with K
    traffic = pytest.importorskip("archsim.cost.attention_traffic")
    rng = np.random.default_rng(3)
    d_qk, d_v = 40, 32
    q, k, _ = _qkv(rng, 2, n_q, n_kv, hq, 1, d_qk, d_v)
    v = k[..., :d_v]
    counter = Counter()
    out = flash_attention(q, k, v, scale=0.1, causal=causal, sram_bytes=sram, elem_bytes=BF16.bytes,
                          shared_kv=True, site=counter.site("attn", roles={"activation": BF16, "cache": BF16}))
    np.testing.assert_allclose(out, naive_attention(q, k, v, scale=0.1, causal=causal), atol=F64_TOL)
    rec = counter.records[-1]
    expect = traffic.flash_hbm_bytes(batch=2, q_len=n_q, kv_len=n_kv, heads_q=hq, heads_kv=1, d_qk=d_qk,
                                     d_v=d_v, elem_bytes=BF16.bytes, sram_bytes=sram, causal=causal, shared_kv=True)
    assert rec.hbm_read_bytes + rec.hbm_write_bytes == expect
    separate = traffic.flash_hbm_bytes(batch=2, q_len=n_q, kv_len=n_kv, heads_q=hq, heads_kv=1, d_qk=d_qk,
                                       d_v=d_v, elem_bytes=BF16.bytes, sram_bytes=sram, causal=causal)
    assert expect < separate
    with pytest.raises(ValueError):
        flash_attention(q, k, k[..., 1:d_v + 1], scale=0.1, causal=causal, sram_bytes=sram,
                        elem_bytes=BF16.bytes, shared_kv=True)


def test_naive_traffic_grows_with_n_squared_and_flash_writes_only_o():
    rng = np.random.default_rng(2)
    d, e, sram = 8, BF16.bytes, 4096
    naive, flash_w = {}, {}
    for n in (16, 32, 64):
        q, k, v = _qkv(rng, 1, n, n, 1, 1, d, d)
        naive[n] = _counted("naive", q, k, v, True, sram)
        flash_w[n] = _counted("flash", q, k, v, True, sram).hbm_write_bytes
    # naive: T(n) = (3 n d + 4 n^2 + n d) e, so T(2n) - 2 T(n) = 4 e (4 - 2) n^2 = 8 e n^2 (the
    # linear terms cancel): a pure n^2 term that doubles twice when n doubles
    t = {n: r.hbm_read_bytes + r.hbm_write_bytes for n, r in naive.items()}
    assert t[32] - 2 * t[16] == 8 * e * 16 ** 2
    assert t[64] - 2 * t[32] == 8 * e * 32 ** 2
    assert naive[64].hbm_write_bytes == (2 * 64 * 64 + 64 * d) * e  # S and P written
    # flash writes exactly O: n * d * e, linear in n
    assert all(flash_w[n] == n * d * e for n in flash_w)


def test_flops_count_unmasked_pairs_only():
    rng = np.random.default_rng(4)
    q, k, v = _qkv(rng, 2, 6, 10, 4, 2, 8, 6)
    c = Counter()
    naive_attention(q, k, v, scale=1.0, causal=True, site=c.site("a"))
    flash_attention(q, k, v, scale=1.0, causal=True, tiles=(2, 3), elem_bytes=2, site=c.site("f"))
    # pairs per head: queries at positions 4..9 see 5..10 keys = 45; per pair 2*8 + 5 + 2*6 = 33
    assert [r.flops for r in c.records] == [2 * 4 * 45 * 33] * 2


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 2), n_q=st.integers(1, 12), prefix=st.integers(0, 9), hkv=st.integers(1, 3),
       g=st.integers(1, 3), d_qk=st.integers(1, 9), d_v=st.integers(1, 9), b_r=st.integers(1, 8),
       b_c=st.integers(1, 8), causal=st.booleans(), seed=st.integers(0, 2**16))
def test_flash_equals_naive_property(b, n_q, prefix, hkv, g, d_qk, d_v, b_r, b_c, causal, seed):
    # any shape, any tile sizes, any cached prefix: same output; and the FLOPs counted are equal
    rng = np.random.default_rng(seed)
    q, k, v = _qkv(rng, b, n_q, n_q + prefix, hkv * g, hkv, d_qk, d_v)
    c = Counter()
    ref = naive_attention(q, k, v, scale=0.3, causal=causal, site=c.site("n"))
    out = flash_attention(q, k, v, scale=0.3, causal=causal, tiles=(b_r, b_c), elem_bytes=2, site=c.site("f"))
    assert np.max(np.abs(out - ref)) <= F64_TOL
    assert c.records[0].flops == c.records[1].flops


def test_decode_caches_start_then_grow_along_the_sequence():
    """KVCache and MLACache share one create-or-append rule (kernels.attention.SequenceCache)."""
    from archsim.kernels.gqa import KVCache
    from archsim.kernels.mla import MLACache
    rng = np.random.default_rng(0)
    k, v = rng.standard_normal((2, 3, 1, 4)), rng.standard_normal((2, 3, 1, 4))
    cache = KVCache.extend(None, k, v)
    assert cache.k is k and cache.v is v
    same = KVCache.extend(cache, k[:, :1], v[:, :1])
    assert same is cache and cache.k.shape == (2, 4, 1, 4) and np.array_equal(cache.v[:, 3], v[:, 0])
    latent, k_pe = rng.standard_normal((1, 2, 8)), rng.standard_normal((1, 2, 4))
    m = MLACache.extend(MLACache.extend(None, latent, k_pe), latent, k_pe)
    assert m.latent.shape == (1, 4, 8) and m.k_pe.shape == (1, 4, 4)
    with pytest.raises(ValueError):  # one array per field
        KVCache.extend(cache, k)
