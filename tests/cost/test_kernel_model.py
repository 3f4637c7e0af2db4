"""Kernel-level pricing (archsim/cost/kernel_model.py): composition of the named effects, fallbacks,
invariants and input errors."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.config.hardware import load_hardware
from archsim.cost.rates import ChipRates
from archsim.cost.kernel_model import (attention_time, gemm_time, grouped_gemm_time, kernel_time, moe_time,
                                       elementwise_time, overlapped_kernel_time)
from archsim.errors import ConfigError
from archsim.kernel_api import kernel_time as api_kernel_time

HW_DIR = Path(__file__).resolve().parents[2] / "hardware"


@pytest.fixture(scope="module")
def h800():
    return load_hardware(HW_DIR / "h800.yaml")


def _with_hbm(hw, factor: float):
    hbm_name = list(hw.memory)[-1]
    memory = dict(hw.memory)
    memory[hbm_name] = dataclasses.replace(memory[hbm_name],
                                           bandwidth_bytes_per_s=memory[hbm_name].bandwidth_bytes_per_s * factor)
    return dataclasses.replace(hw, memory=memory)


def test_without_kernel_fields_gemm_is_the_roofline_plus_epilogue(h800) -> None:
    hw = dataclasses.replace(h800, kernel=None)
    tensor = hw.engine_for("matrix")
    bw = hw.main_memory.bandwidth_bytes_per_s * hw.main_memory.achievable_fraction
    m, n, k = 4096, 4096, 4096
    est = gemm_time(hw, m=m, n=n, k=k, dtype="fp8")
    expected = max(2 * m * n * k / (tensor.peak_flop_per_s["fp8"] * tensor.achievable_fraction),
                   (m * k + k * n) / bw) + m * n * 2 / bw
    assert est.time_s == pytest.approx(expected)
    assert est.detail == {"row_layout": "contiguous"}


def test_overlapped_kernel_time_is_ramp_plus_the_slowest_stream(h800) -> None:
    rates = ChipRates.of(h800)
    main, l2, ramp = rates.main_bytes_per_s, rates.l2_bytes_per_s, rates.ramp_s
    # compute 1 us and 2e7 B from HBM: ramp + the HBM stream, memory-bound; then L2 re-reads 20x longer bind
    t = overlapped_kernel_time(rates, compute_s=1e-6, bytes_moved=2e7)
    assert (t.time_s, t.bound) == (pytest.approx(ramp + 2e7 / main), "memory:hbm")
    t = overlapped_kernel_time(rates, compute_s=1e-6, bytes_moved=2e7, l2_bytes=20 * 2e7 * l2 / main)
    assert (t.time_s, t.bound, t.operand_s) == (pytest.approx(ramp + 20 * 2e7 / main), "memory:l2",
                                                pytest.approx(20 * 2e7 / main))
    assert overlapped_kernel_time(rates, compute_s=1.0, bytes_moved=2e7).bound == "compute"


def test_grouped_equals_dense_when_one_group(h800) -> None:
    assert grouped_gemm_time(h800, groups=1, m=128, n=4096, k=7168).time_s == \
        gemm_time(h800, m=128, n=4096, k=7168).time_s


def test_mla_decode_bytes_and_flops(h800) -> None:
    # batch 2, 16 heads, context 100, one new token: the latent (512 + 64) is read once per cached token
    # in BF16; Q (576 wide) read and O (512 wide) written per head; MMA FLOPs 2 * pairs * heads * (576 + 512)
    est = attention_time(h800, kind="mla", phase="decode", heads=16, batch=2, context=100, kv_lora_rank=512,
                         rope_dim=64)
    assert est.bytes == 2 * 100 * 576 * 2 + 2 * 1 * 16 * (576 + 512) * 2
    assert est.detail["mma_flops"] == 2 * (2 * 16 * 100) * (576 + 512)
    assert est.flops == est.detail["mma_flops"] + 5 * 2 * 16 * 100


def test_attention_rate_uses_throttled_clock_and_fraction(h800) -> None:
    # compute-bound MLA: MMA time = mma_flops / (bf16 peak * 1600/1830 * 0.80)
    est = attention_time(h800, kind="mla", phase="decode", heads=128, batch=128, context=8192, q_len=2,
                         kv_lora_rank=512, rope_dim=64)
    k = h800.kernel
    rate = h800.engine_for("matrix").peak_flop_per_s["bf16"] * k.clock_under_load_hz / k.clock_boost_hz \
        * k.attention_mma_fraction
    assert est.bound == "compute"
    assert est.parts["compute_s"] == pytest.approx(est.detail["mma_flops"] / rate)


def test_stream_and_moe_and_dispatch(h800) -> None:
    s = elementwise_time(h800, nbytes=3e9, flops=1e9)
    bw = h800.main_memory.bandwidth_bytes_per_s * h800.main_memory.achievable_fraction
    assert s.bound == "memory:hbm" and s.time_s == pytest.approx(h800.kernel.ramp_s + 3e9 / bw)
    moe = moe_time(h800, tokens=256, hidden=7168, inter=2048, topk=8, experts=256, ep=32)
    assert moe.time_s == pytest.approx(sum(moe.parts.values()))
    # 256 tokens x 32 chips x 8 copies over 256 experts = 256 tokens per expert, 8 local experts
    assert moe.detail["tokens_per_expert"] == 256 and moe.detail["local_experts"] == 8
    # low-latency (decode) dispatch feeds the masked grouped GEMM: up and down priced in that layout
    ll = moe_time(h800, tokens=256, hidden=7168, inter=2048, topk=8, experts=256, ep=32, mode="low_latency")
    masked_up = grouped_gemm_time(h800, groups=8, m=256, n=2 * 2048, k=7168, row_layout="masked")
    assert ll.parts["up_s"] == pytest.approx(masked_up.time_s)
    assert moe.parts["up_s"] == pytest.approx(grouped_gemm_time(h800, groups=8, m=256, n=4096, k=7168).time_s)
    assert api_kernel_time("gemm", h800, m=64, n=64, k=64).time_s == kernel_time("gemm", h800, m=64, n=64, k=64).time_s


@pytest.mark.parametrize("call, field", [
    (lambda hw: kernel_time("conv", hw), "kernel"),
    (lambda hw: kernel_time("gemm", hw, m=1, n=1), "kernel.gemm"),
    (lambda hw: kernel_time("gemm", hw, m=1, n=1, k=1, spin=3), "kernel.gemm"),
    (lambda hw: gemm_time(hw, m=1, n=1, k=1, dtype="fp3"), "dtype"),
    (lambda hw: attention_time(hw, kind="mla", phase="decode", heads=8, batch=1, context=4, q_len=5,
                               kv_lora_rank=8, rope_dim=2), "q_len"),
    (lambda hw: attention_time(hw, kind="gqa", phase="prefill", heads=6, batch=1, context=4, heads_kv=4,
                               head_dim=8), "heads_kv"),
    (lambda hw: moe_time(hw, tokens=1, hidden=8, inter=8, topk=2, experts=10, ep=4), "ep"),
    (lambda hw: elementwise_time(hw, nbytes=-1.0), "elementwise"),
    (lambda hw: grouped_gemm_time(hw, groups=2, m=8, n=8, k=8, row_layout="ragged"), "row_layout"),
])
def test_bad_input_is_a_config_error(h800, call, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        call(h800)
    assert field in str(err.value)


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 8192), n=st.integers(1, 16384), k=st.integers(1, 16384), factor=st.floats(1.0, 8.0))
def test_more_hbm_bandwidth_never_slower(h800, m: int, n: int, k: int, factor: float) -> None:
    slow = gemm_time(h800, m=m, n=n, k=k)
    fast = gemm_time(_with_hbm(h800, factor), m=m, n=n, k=k)
    assert fast.time_s <= slow.time_s * (1 + 1e-12)
    assert slow.time_s > 0 and slow.achieved_flop_per_s <= h800.engine_for("matrix").peak_flop_per_s["fp8"]


@pytest.mark.parametrize("heads, q_len, bound", [(16, 1, "memory:hbm"), (64, 1, "memory:hbm"), (32, 2, "memory:hbm"),
                                                 (128, 1, "compute"), (64, 2, "compute"), (128, 2, "compute")])
def test_mla_decode_turns_compute_bound_near_128_query_rows(h800, heads: int, q_len: int, bound: str) -> None:
    """FlashMLA deep dive (deepseek-ai/FlashMLA docs/20250422-new-kernel-deep-dive.md [V]): decode is
    compute-bound once h_q * s_q >= ~128. The model's ridge: per cached token it reads 576 * 2 B and does
    2 * h_q * s_q * (576 + 512) MMA FLOPs, i.e. 1.89 * h_q * s_q FLOP/B, against
    989.4 TFLOPS * 1600/1830 * 0.80 / (3.35 TB/s * 0.896) = 230 FLOP/B: compute-bound from h_q * s_q = 122."""
    est = attention_time(h800, kind="mla", phase="decode", heads=heads, batch=128, context=8192, q_len=q_len,
                         kv_lora_rank=512, rope_dim=64)
    assert est.bound == bound


def test_gqa_flash_rereads_hit_l2_when_the_kv_in_flight_fits(h800) -> None:
    # 1 sequence, 8 kv heads, 8192 keys, d 128, BF16: K+V = 8192 * 8 * 256 * 2 B = 33.5 MB <= 50 MB L2, so
    # HBM moves only Q, K, V, O (Q and O: 8192 * 64 * 128 * 2 B each) and the re-reads go to L2.
    est = attention_time(h800, kind="gqa", phase="prefill", heads=64, heads_kv=8, head_dim=128, batch=1,
                         context=8192)
    assert est.bytes == 8192 * 64 * 256 * 2 + 8192 * 8 * 256 * 2
    assert est.parts["l2_s"] > est.parts["memory_s"]
    # 64 sequences x 8 kv heads > 132 SMs: 132 units x 8192 x 256 x 2 B = 554 MB in flight, beyond L2:
    # the flash re-reads come from HBM
    big = attention_time(h800, kind="gqa", phase="prefill", heads=64, heads_kv=8, head_dim=128, batch=64,
                         context=8192)
    assert big.bytes > 64 * est.bytes and big.parts["l2_s"] == 0.0


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 4096), extra=st.integers(1, 512), n=st.integers(1, 16384), k=st.integers(1, 8192),
       groups=st.integers(1, 16))
def test_more_rows_never_take_less_time(h800, m: int, extra: int, n: int, k: int, groups: int) -> None:
    # the tile is the menu's least modelled main loop, max(padded MMA, L2 operand feed); both grow with m
    # for every tile, as do the compulsory input/output bytes, so the kernel time is monotone in m
    for layout in ("contiguous", "masked"):
        small = grouped_gemm_time(h800, groups=groups, m=m, n=n, k=k, row_layout=layout)
        big = grouped_gemm_time(h800, groups=groups, m=m + extra, n=n, k=k, row_layout=layout)
        assert big.time_s >= small.time_s * (1 - 1e-12)


def test_dsv3_o_absorb_counterexample_is_monotone(h800) -> None:
    # the shape that broke the old fewest-waves rule: 16 groups of m x 128 x 512 (BF16), m = 179 vs 257
    small = grouped_gemm_time(h800, groups=16, m=179, n=128, k=512, dtype="bf16")
    big = grouped_gemm_time(h800, groups=16, m=257, n=128, k=512, dtype="bf16")
    assert big.time_s >= small.time_s


def test_masked_layout_of_several_groups_runs_without_multicast(h800) -> None:
    """DeepGEMM's masked kernel computes its config for `groups` GEMMs, which rules out TMA multicast; the
    contiguous kernel's config sees one GEMM of all rows and multicasts the A panel when n allows it."""
    shape = dict(groups=4, m=256, n=4096, k=7168)
    masked = grouped_gemm_time(h800, row_layout="masked", **shape)
    contiguous = grouped_gemm_time(h800, row_layout="contiguous", **shape)
    assert masked.detail["multicast"] == 1 and contiguous.detail["multicast"] == 2
    assert masked.detail["row_layout"] == "masked"
    assert masked.time_s >= contiguous.time_s
    assert masked.flops == contiguous.flops and masked.bytes == contiguous.bytes
    # the masked 4 x 256 rows are bound by the operand feed: the A + B panels every tile reads from L2
    tiles, bm, bn = masked.detail["tiles"], masked.detail["block_m"], masked.detail["block_n"]
    assert masked.bound == "memory:l2"
    assert masked.parts["l2_operand_s"] == pytest.approx(
        tiles * (bm + bn) * 7168 / h800.kernel.gemm_operand_bandwidth_bytes_per_s)
    # one group: both layouts are the dense GEMM
    one = dict(groups=1, m=1024, n=4096, k=7168)
    assert grouped_gemm_time(h800, row_layout="masked", **one).time_s == gemm_time(h800, m=1024, n=4096, k=7168).time_s


def test_without_multicast_field_no_tile_shares_a_panel(h800) -> None:
    hw = dataclasses.replace(h800, kernel=dataclasses.replace(h800.kernel, gemm_multicast=1))
    est = grouped_gemm_time(hw, groups=4, m=8192, n=4096, k=7168)
    assert est.detail["multicast"] == 1
    assert est.time_s >= grouped_gemm_time(h800, groups=4, m=8192, n=4096, k=7168).time_s


def test_moe_without_a_vector_engine_is_a_config_error(h800) -> None:
    """The SwiGLU between the expert GEMMs needs a vector engine; without one the error names the field
    rather than pricing the SwiGLU at a stand-in rate."""
    hw = dataclasses.replace(h800, compute={k: e for k, e in h800.compute.items() if e.kind != "vector"})
    with pytest.raises(ConfigError, match="vector engine"):
        moe_time(hw, tokens=128, hidden=7168, inter=2048, topk=8, experts=256, ep=8)


@pytest.fixture(scope="module")
def h200():
    return load_hardware(HW_DIR / "h200.yaml")


def test_few_tile_gemm_streams_its_weight_panels_at_the_per_sm_rate(h200) -> None:
    """An M = 1 decode GEMM of DeepSeek-V3's 2112 x 7168 projection has too few tiles to pull the H200's full
    HBM bandwidth: its main loop is each CTA's weight panel at `kernel.sm_stream_bandwidth`, slower than the
    chip-wide compulsory stream, and without the field the same GEMM is the old, faster prediction."""
    rate = h200.kernel.sm_stream_bandwidth_bytes_per_s
    est = gemm_time(h200, m=1, n=2112, k=7168, dtype="bf16")
    bn, waves = est.detail["block_n"], est.detail["waves"]
    assert est.bound == "memory:hbm"
    assert est.parts["panel_stream_s"] == pytest.approx(waves * min(bn, 2112) * 7168 * 2 / rate)
    chip = h200.main_memory.bandwidth_bytes_per_s * h200.main_memory.achievable_fraction
    assert est.parts["memory_s"] == est.parts["panel_stream_s"] > (2112 * 7168 + 7168) * 2 / chip
    # as bandwidth: the tiles divide n evenly here, so the weight bytes move at active CTAs x per-SM rate
    assert est.detail["tiles"] < h200.sm_count and 2112 % bn == 0
    assert 2112 * 7168 * 2 / est.parts["memory_s"] == pytest.approx(est.detail["tiles"] * rate)
    uncapped = dataclasses.replace(h200, kernel=dataclasses.replace(h200.kernel, sm_stream_bandwidth_bytes_per_s=None))
    old = gemm_time(uncapped, m=1, n=2112, k=7168, dtype="bf16")
    assert old.parts["panel_stream_s"] == 0.0 and est.time_s > old.time_s


def test_large_gemm_is_not_capped_by_the_per_sm_stream(h200) -> None:
    # a full chip of big tiles: MMA binds, the per-SM stream changes nothing
    uncapped = dataclasses.replace(h200, kernel=dataclasses.replace(h200.kernel, sm_stream_bandwidth_bytes_per_s=None))
    for dtype in ("bf16", "fp8"):
        est = gemm_time(h200, m=4096, n=4096, k=7168, dtype=dtype)
        assert est.bound == "compute"
        assert est.time_s == gemm_time(uncapped, m=4096, n=4096, k=7168, dtype=dtype).time_s


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 2048), n=st.integers(1, 12288), k=st.integers(1, 8192), dm=st.integers(0, 256),
       dn=st.integers(0, 256), dk=st.integers(0, 256), groups=st.integers(1, 8),
       dtype=st.sampled_from(["bf16", "fp8"]))
def test_h200_gemm_time_is_monotone_with_the_per_sm_stream(h200, m, n, k, dm, dn, dk, groups, dtype) -> None:
    # bytes over min(tiles, SMs) x rate would drop when a partial tile adds a CTA; the per-tile weight panel
    # does not, so a bigger GEMM never takes less time
    for layout in ("contiguous", "masked"):
        small = grouped_gemm_time(h200, groups=groups, m=m, n=n, k=k, dtype=dtype, row_layout=layout)
        big = grouped_gemm_time(h200, groups=groups, m=m + dm, n=n + dn, k=k + dk, dtype=dtype, row_layout=layout)
        assert big.time_s >= small.time_s * (1 - 1e-12)


def test_attention_kv_tile_without_q_tile_is_a_config_error(h800) -> None:
    shape = dict(kind="gqa", phase="decode", heads=32, heads_kv=8, head_dim=128, batch=1, context=1024)
    with pytest.raises(ConfigError, match="kv_tile") as err:
        attention_time(h800, kv_tile=128, **shape)
    assert "\n" not in str(err.value)
    # with q_tile it is the tiled kernel's MMA work (decode pads the packed heads to whole tiles)
    tiled = attention_time(h800, q_tile=64, kv_tile=128, **shape)
    assert tiled.detail["executed_mma_flops"] > attention_time(h800, **shape).detail["executed_mma_flops"]


def test_moe_with_few_tokens_prices_only_the_experts_they_can_touch() -> None:
    """1 token per chip on EP8, 256 experts, top-8: the group routes 8 tokens, each expert with probability
    8/256 per token, so of the 32 local experts 32 (1 - (1 - 8/256)^8) = 7.18 are expected to get a row; only
    their weights are read, and the 8 routed rows (1 token x top-8, in expectation) are spread over them."""
    est = moe_time("h100", tokens=1, hidden=7168, inter=2048, topk=8, experts=256, ep=8, dtype="fp8")
    distinct = 32 * (1 - (1 - 8 / 256) ** 8)
    assert est.detail["local_experts"] == 32
    assert est.detail["distinct_experts"] == pytest.approx(distinct, rel=1e-12)
    assert est.detail["routed_rows"] == pytest.approx(8.0, rel=1e-12)
    assert est.detail["tokens_per_expert"] == pytest.approx(8.0 / distinct, rel=1e-12)
    # bytes: the touched experts' FP8 weights (up 7168 x 4096, down 2048 x 7168), the 8 rows in (FP8) and out (BF16)
    # of both GEMMs, and the SwiGLU's BF16 gate/up reads and FP8 write
    weights = distinct * (7168 * 4096 + 2048 * 7168)
    rows = 8 * (7168 + 4096 * 2) + 8 * (2048 + 7168 * 2) + 8 * (2 * 2048 * 2 + 2048)
    assert est.bytes == pytest.approx(weights + rows, rel=1e-12)
    assert est.bytes < 0.25 * 32 * (7168 * 4096 + 2048 * 7168)  # not all 32 local experts (1.41 GB)
    # many tokens touch every local expert: 4096 tokens x 8 chips -> all 32, 1024 rows each, as before
    many = moe_time("h100", tokens=4096, hidden=7168, inter=2048, topk=8, experts=256, ep=8, dtype="fp8")
    assert many.detail["distinct_experts"] == 32 and many.detail["tokens_per_expert"] == 1024
    up = grouped_gemm_time("h100", groups=32, m=1024, n=4096, k=7168, dtype="fp8")
    assert many.parts["up_s"] == pytest.approx(up.time_s, rel=1e-12)


def test_kernel_flops_by_hand(h800) -> None:
    """FLOPs the kernel API reports: a grouped GEMM 2 x groups x m x n x k; one MoE layer on one chip of EP8
    (64 tokens a chip, top-8 of 256 experts): its 64 x 8 = 512 routed rows through the up-projection (n = 2 x 2048,
    k = 7168), SwiGLU (5 FLOPs per element of 512 x 2048) and the down-projection (n = 7168, k = 2048)."""
    g = grouped_gemm_time(h800, groups=4, m=256, n=4096, k=7168, dtype="fp8")
    assert g.flops == 2.0 * 4 * 256 * 4096 * 7168
    moe = moe_time(h800, tokens=64, hidden=7168, inter=2048, topk=8, experts=256, ep=8, dtype="fp8")
    rows = 64 * 8
    assert moe.detail["routed_rows"] == pytest.approx(rows, rel=1e-12)
    expected = 2.0 * rows * (2 * 2048) * 7168 + 5.0 * rows * 2048 + 2.0 * rows * 7168 * 2048
    assert moe.flops == pytest.approx(expected, rel=1e-12)
