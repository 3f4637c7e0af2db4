"""Phase totals: serial time, idle energy, MFU, bandwidth utilisation, TOPS/W, heaviest ops."""
import pytest

from tests.cost.fixtures import price_op
from archsim.cost.phase import price_graph
from tests.cost.fixtures import gemm_op, h100_like, norm_op


def test_phase_totals_by_hand():
    hw = h100_like()
    ops = [norm_op("norm", 1, 7168), gemm_op("gemv", 1, 7168, 7168), gemm_op("big", 8192, 8192, 8192)]
    refs = [price_op(op, hw) for op in ops]
    phase = price_graph(ops, hw, heaviest=2)
    time_s = sum(r.time_s for r in refs)
    dynamic = sum(r.energy_j for r in refs)
    assert phase.time_s == pytest.approx(time_s, rel=1e-12)
    assert phase.flops == sum(op.flops for op in ops)
    assert phase.energy_j == pytest.approx(dynamic + hw.power.idle_w * time_s, rel=1e-12)
    # MFU against the FP8 peak: FP8 GEMMs carry most FLOPs
    assert phase.mfu_dtype == "fp8"
    assert phase.mfu == pytest.approx(phase.flops / (time_s * hw.compute["tensor"].peak_flop_per_s["fp8"]))
    assert 0 < phase.mfu < 1
    hbm_bytes = sum(r.bytes_by_level["hbm"] for r in refs)
    assert phase.bytes_by_level["hbm"] == pytest.approx(hbm_bytes)
    assert phase.hbm_bandwidth_utilisation == pytest.approx(hbm_bytes / time_s / 3.35e12)
    assert phase.tops_per_w == pytest.approx(phase.flops / phase.energy_j / 1e12)
    assert phase.heaviest == ("big", "gemv")
    assert phase.bound == "compute"
    assert sum(phase.time_s_by_bound.values()) == pytest.approx(time_s)


def test_decode_like_phase_is_memory_bound():
    hw = h100_like()
    ops = [gemm_op(f"l{i}.w", 1, 7168, 7168) for i in range(10)]
    phase = price_graph(ops, hw)
    assert phase.bound == "memory:hbm"
    assert phase.mfu < 0.01
    assert 0.5 < phase.hbm_bandwidth_utilisation <= 1
