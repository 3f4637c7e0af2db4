"""Whole phase graphs of the shipped models priced on the shipped H100: physical bounds hold."""
from pathlib import Path

import pytest

from archsim.config.workload import load_workload
from tests.cost.fixtures import price_op
from archsim.cost.phase import graph_ops, price_graph
from archsim.graph.build import build_decode, build_prefill
from archsim.graph.precision import precision_from_names

ROOT = Path(__file__).resolve().parents[2]
FP8 = precision_from_names("fp8")


@pytest.fixture(scope="module")
def kimi():
    return load_workload(ROOT / "workloads" / "kimi_k2.yaml").model


def test_kimi_decode_batch1_is_hbm_bound_and_above_the_bandwidth_floor(kimi, h100):
    graph = build_decode(kimi, batch=1, context=8192, precision=FP8)
    phase = price_graph(graph, h100)
    hbm = h100.main_memory
    floor = phase.bytes_by_level["hbm"] / (hbm.bandwidth_bytes_per_s * hbm.achievable_fraction)
    # every op takes at least its own HBM time, so the serial sum is at least the total HBM time
    assert phase.time_s >= floor
    assert phase.bound == "memory:hbm"
    assert phase.flops == pytest.approx(sum(op.flops for op in graph_ops(graph)), rel=1e-12)  # fractional expected FLOPs
    assert 0 < phase.mfu < 0.05
    assert phase.energy_j > phase.idle_energy_j > 0


def test_every_op_of_a_full_graph_agrees_with_per_op_pricing(kimi, h100):
    graph = build_decode(kimi, batch=64, context=8192, precision=FP8)
    phase = price_graph(graph, h100)
    for op in graph_ops(graph):
        ref = price_op(op, h100)
        got = phase.ops[op.name]
        assert got.time_s == pytest.approx(ref.time_s, rel=1e-12)
        assert got.bound == ref.bound
        assert got.energy_j == pytest.approx(ref.energy_j, rel=1e-12)


def test_prefill_naive_attention_is_slower_than_flash(kimi, h100):
    graph = build_prefill(kimi, batch=1, prompt_len=4096, precision=FP8)
    flash, naive = price_graph(graph, h100), price_graph(graph, h100, attention="naive")
    assert naive.time_s > flash.time_s
    assert naive.bytes_by_level["hbm"] > flash.bytes_by_level["hbm"]
    assert naive.flops == flash.flops
    assert 0 < flash.mfu < 1
