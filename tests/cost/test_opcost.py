"""Per-op roofline pricing: hand-derived times, bounds and energy on an H100-like record."""
import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

from archsim.dtypes import BITS_PER_BYTE, BF16, FP32
from archsim.errors import ConfigError
from tests.cost.fixtures import attention_op, gemm_op, grouped_op, h100_like, norm_op, price_op


def test_compute_bound_gemm_time_is_flops_over_rate():
    hw = h100_like()
    op = gemm_op("big", 8192, 8192, 8192)  # FP8 weights -> FP8 tensor-core rate
    cost = price_op(op, hw)
    tensor = hw.compute["tensor"]
    expected = 2 * 8192 ** 3 / (tensor.peak_flop_per_s["fp8"] * tensor.achievable_fraction)
    assert cost.bound == "compute"
    assert cost.compute_s == pytest.approx(expected, rel=1e-12)
    assert cost.time_s == cost.compute_s


def test_decode_gemv_is_hbm_bound_on_weights():
    hw = h100_like()
    op = gemm_op("gemv", 1, 7168, 7168)
    cost = price_op(op, hw)
    hbm = hw.memory["hbm"]
    # compulsory bytes: x (7168 BF16) + W (7168*7168 FP8) + y (7168 BF16)
    nbytes = 7168 * 2 + 7168 * 7168 + 7168 * 2
    assert cost.bytes_by_level["hbm"] == nbytes
    assert cost.bound == "memory:hbm"
    assert cost.time_s == pytest.approx(nbytes / (hbm.bandwidth_bytes_per_s * hbm.achievable_fraction)
                                        + hbm.latency_s, rel=1e-12)
    assert cost.bandwidth_utilisation == pytest.approx(nbytes / cost.time_s / hbm.bandwidth_bytes_per_s)


def test_tiny_norm_is_launch_bound():
    hw = h100_like()
    cost = price_op(norm_op("norm", 1, 7168), hw)
    assert cost.bound == "launch" and cost.time_s == hw.kernel_launch_s
    # BF16 elementwise work runs on the FP32 CUDA cores (narrowest wider dtype the engine lists)
    vector = hw.compute["cuda"]
    assert cost.engine == "cuda"
    assert cost.compute_s == pytest.approx(4 * 7168 / (vector.peak_flop_per_s["fp32"] * vector.achievable_fraction))


def test_energy_is_flops_plus_bits_moved():
    hw = h100_like()
    op = gemm_op("g", 512, 1024, 2048)
    cost = price_op(op, hw)
    expected = op.flops * hw.compute["tensor"].energy_j_per_flop["fp8"]
    expected += sum(cost.bytes_by_level[n] * BITS_PER_BYTE * hw.memory[n].energy_j_per_bit for n in hw.memory)
    assert cost.energy_j > 0
    assert cost.energy_j == pytest.approx(expected, rel=1e-12)
    assert cost.energy_j == pytest.approx(sum(cost.energy_j_by.values()), rel=1e-12)


def test_attention_naive_moves_more_than_flash():
    hw = h100_like()
    op = attention_op("attn", batch=1, q_len=2048, kv_len=2048, heads_q=16, heads_kv=16, d_qk=128, d_v=128,
                      causal=True)
    flash, naive = price_op(op, hw, attention="flash"), price_op(op, hw, attention="naive")
    assert naive.bytes_by_level["hbm"] > 4 * flash.bytes_by_level["hbm"]
    assert naive.time_s > flash.time_s
    assert naive.flops == flash.flops


def test_flash_kv_fitting_l2_reads_each_stream_once():
    hw = h100_like()
    op = attention_op("attn", batch=2, q_len=1, kv_len=4096, heads_q=64, heads_kv=1, d_qk=576, d_v=512,
                      causal=True)
    # K+V of one (sequence, kv head) = 4096 * (576+512) * 2 B = 8.9 MB <= 50 MB L2:
    # HBM = batch * heads_kv * (q_len*g + kv_len) * (d_qk + d_v) * e
    expected = 2 * 1 * (64 + 4096) * (576 + 512) * 2
    assert price_op(op, hw).bytes_by_level["hbm"] == expected


def test_grouped_gemm_weights_of_touched_experts_and_busiest_bound():
    hw = h100_like()
    balanced = grouped_op("e", tokens_per_expert=(4.0,) * 64 + (0.0,) * 320, n=4096, k=7168)
    skewed = grouped_op("e", tokens_per_expert=(256.0,) + (0.0,) * 383, n=4096, k=7168)
    b, s = price_op(balanced, hw), price_op(skewed, hw)
    assert b.flops == s.flops == 2 * 256 * 4096 * 7168
    # 64 touched experts of 7168*4096 FP8 bytes each, read once (m = 4 tokens per expert <= tile)
    assert b.bytes_by_level["hbm"] == pytest.approx(64 * 7168 * 4096 + 256 * 7168 * 2 + 256 * 4096 * 2)
    # one expert with all 256 tokens: ceil(256/256) * ceil(4096/256) = 16 tiles on 132 SMs
    tensor = hw.compute["tensor"]
    busiest = 2 * 256 * 4096 * 7168 / (16 / 132)
    assert s.compute_s == pytest.approx(busiest / (tensor.peak_flop_per_s["fp8"] * tensor.achievable_fraction))


def test_missing_dtype_is_config_error():
    hw = h100_like()
    op = dataclasses.replace(gemm_op("g", 8, 8, 8), compute_dtype=FP32, engine="matrix")
    narrow = dataclasses.replace(hw, compute={**hw.compute, "tensor": dataclasses.replace(
        hw.compute["tensor"], peak_flop_per_s={"bf16": 1e15})})
    with pytest.raises(ConfigError, match="compute.tensor.peak"):
        price_op(op, narrow)
    with pytest.raises(ConfigError, match="attention"):
        price_op(gemm_op("g", 8, 8, 8), hw, attention="paged")


OPS = [gemm_op("a", 1, 7168, 7168), gemm_op("b", 4096, 7168, 2048), norm_op("n", 64, 7168),
       attention_op("c", batch=4, q_len=1, kv_len=8192, heads_q=64, heads_kv=1, d_qk=576, d_v=512, causal=True),
       attention_op("p", batch=1, q_len=1024, kv_len=1024, heads_q=8, heads_kv=8, d_qk=128, d_v=128, causal=True),
       grouped_op("e", tokens_per_expert=(3.0,) * 40 + (0.0,) * 344, n=4096, k=7168)]


@settings(max_examples=40, deadline=None)
@given(op_index=st.integers(0, len(OPS) - 1), bw=st.floats(1e11, 1e14), factor=st.floats(1.0, 8.0),
       attention=st.sampled_from(["flash", "naive"]))
def test_more_bandwidth_or_compute_never_slower(op_index, bw, factor, attention):
    op = OPS[op_index]
    slow = price_op(op, h100_like(hbm_bandwidth=bw), attention=attention)
    fast = price_op(op, h100_like(hbm_bandwidth=bw * factor), attention=attention)
    assert fast.time_s <= slow.time_s
    more_flops = price_op(op, h100_like(hbm_bandwidth=bw, fp8_peak=1978.9e12 * factor), attention=attention)
    assert more_flops.time_s <= slow.time_s


def test_memory_power_limit_caps_bandwidth():
    hw = h100_like()
    hbm = hw.memory["hbm"]
    # 50 W over 3.9 pJ/bit sustains 50 / (8 * 3.9e-12) = 1.6 TB/s, below the 3.0 TB/s achievable
    capped = dataclasses.replace(hw, memory={**hw.memory, "hbm": dataclasses.replace(hbm, power_limit_w=50.0)})
    op = gemm_op("gemv", 1, 7168, 7168)
    nbytes = price_op(op, hw).bytes_by_level["hbm"]
    cost = price_op(op, capped)
    assert cost.memory_s_by_level["hbm"] == pytest.approx(nbytes / (50.0 / (8 * hbm.energy_j_per_bit)) + hbm.latency_s)
    # a generous cap changes nothing
    loose = dataclasses.replace(hw, memory={**hw.memory, "hbm": dataclasses.replace(hbm, power_limit_w=1e6)})
    assert price_op(op, loose).time_s == price_op(op, hw).time_s


def test_thermal_clock_fraction_slows_compute_and_on_chip_levels_only():
    hw = h100_like()
    half = dataclasses.replace(hw, compute_clock_fraction=0.5)
    big = gemm_op("big", 8192, 8192, 8192)
    assert price_op(big, half).compute_s == pytest.approx(2 * price_op(big, hw).compute_s)
    base, slow = price_op(big, hw).memory_s_by_level, price_op(big, half).memory_s_by_level
    l2 = hw.memory["l2"]
    assert slow["l2"] - l2.latency_s == pytest.approx(2 * (base["l2"] - l2.latency_s))
    assert slow["hbm"] == base["hbm"]  # main memory keeps its own clock


def test_array_path_with_whatif_fields():
    from archsim.cost.work import extract_work, hardware_arrays, price_work
    hw = h100_like()
    hbm = dataclasses.replace(hw.memory["hbm"], power_limit_w=60.0)
    chip = dataclasses.replace(hw, compute_clock_fraction=0.7, memory={**hw.memory, "hbm": hbm})
    work = extract_work(OPS, chip)
    cost = price_work(work, hardware_arrays(chip, work))
    for i, op in enumerate(OPS):
        assert cost.time_s[i] == pytest.approx(price_op(op, chip).time_s, rel=1e-12)
