"""The array pricing path equals the per-op path, and broadcasts over a sweep axis."""
import dataclasses

import networkx as nx
import numpy as np
import pytest

from archsim.cost.phase import price_graph
from archsim.cost.work import extract_work, hardware_arrays, price_work, stack_hardware
from archsim.graph.op import Op, Operand
from archsim.dtypes import BF16
from tests.cost.fixtures import attention_op, gemm_op, grouped_op, h100_like, norm_op, price_op


def _ops():
    ops = [norm_op("l0.norm", 64, 7168), gemm_op("l0.q", 64, 1536, 7168), gemm_op("l0.big", 4096, 7168, 2048),
           attention_op("l0.attn", batch=64, q_len=1, kv_len=8192, heads_q=64, heads_kv=1, d_qk=576, d_v=512,
                        causal=True),
           grouped_op("l0.experts", tokens_per_expert=(2.0,) * 200 + (0.0,) * 184, n=4096, k=7168),
           Op(name="l0.a2a", kind="collective", engine="network", compute_dtype=BF16, flops=0,
              reads=(Operand.of("x", (64, 7168), BF16, "activation"),), writes=(),
              attrs={"op": "all_to_all", "bytes": 64 * 7168 * 2, "group": 8})]
    return ops


@pytest.mark.parametrize("attention", ["flash", "naive"])
def test_array_path_equals_per_op_path(attention):
    hw = h100_like()
    ops = _ops()
    work = extract_work(ops, hw, attention=attention)
    cost = price_work(work, hardware_arrays(hw, work))
    for i, op in enumerate(ops):
        ref = price_op(op, hw, attention=attention)
        assert cost.time_s[i] == pytest.approx(ref.time_s, rel=1e-12)
        assert cost.compute_s[i] == pytest.approx(ref.compute_s, rel=1e-12, abs=0)
        assert cost.energy_j[i] == pytest.approx(ref.energy_j, rel=1e-12)
        assert cost.bound_labels[cost.bound_index[i]] == ref.bound
        for j, level in enumerate(work.level_names):
            assert cost.memory_s[i, j] == pytest.approx(ref.memory_s_by_level[level], rel=1e-12)
    phase = price_graph(ops, hw, attention=attention)
    for op in ops:
        ref = price_op(op, hw, attention=attention)
        got = phase.ops[op.name]
        assert (got.time_s, got.bound) == (pytest.approx(ref.time_s, rel=1e-12), ref.bound)
        assert got.energy_j == pytest.approx(ref.energy_j, rel=1e-12)
        assert got.network_bytes == ref.network_bytes


def test_sweep_axis_equals_points():
    ops = _ops()
    chips = [h100_like(hbm_bandwidth=bw) for bw in (1e12, 3.35e12, 8e12)]
    work = extract_work(ops, chips[0])
    swept = price_work(work, stack_hardware([hardware_arrays(hw, work) for hw in chips]))
    assert swept.time_s.shape == (3, len(ops))
    for s, hw in enumerate(chips):
        single = price_work(work, hardware_arrays(hw, work))
        np.testing.assert_allclose(swept.time_s[s], single.time_s, rtol=1e-12)
        np.testing.assert_allclose(swept.total_energy_j[s], single.total_energy_j, rtol=1e-12)
    # more bandwidth never increases the phase time
    assert np.all(np.diff(swept.total_time_s) <= 0)


def test_single_field_sweep_by_replacing_an_array():
    hw = h100_like()
    ops = _ops()
    work = extract_work(ops, hw)
    base = hardware_arrays(hw, work)
    bws = np.linspace(1e12, 1e13, 50)
    bw = np.repeat(base.bandwidth_bytes_per_s[None, :], len(bws), axis=0)
    bw[:, work.level_names.index("hbm")] = bws
    swept = price_work(work, dataclasses.replace(base, bandwidth_bytes_per_s=bw))
    assert swept.total_time_s.shape == (50,)
    assert np.all(np.diff(swept.total_time_s) <= 0)


def test_compress_preserves_totals():
    hw = h100_like()
    layers = [op for i in range(5) for op in (dataclasses.replace(o, name=f"l{i}.{o.name}") for o in _ops())]
    work = extract_work(layers, hw)
    small = work.compress()
    assert len(small.names) == len(_ops())
    assert small.count.sum() == len(layers)
    full, comp = (price_work(w, hardware_arrays(hw, w)) for w in (work, small))
    assert comp.total_time_s == pytest.approx(full.total_time_s, rel=1e-12)
    assert comp.total_energy_j == pytest.approx(full.total_energy_j, rel=1e-12)


def test_price_graph_accepts_a_phase_graph():
    hw = h100_like()
    g = nx.DiGraph()
    ops = _ops()
    for op in ops:
        g.add_node(op.name, op=op)
    for a, b in zip(ops, ops[1:]):
        g.add_edge(a.name, b.name)
    phase = price_graph(g, hw)
    assert list(phase.ops) == [op.name for op in ops]


def test_collective_priced_by_collectives_module():
    from archsim.cost.collectives import price_collective
    hw = h100_like()
    op = _ops()[-1]
    expected = price_collective("all_to_all", 64 * 7168 * 2, 8, hw)
    cost = price_op(op, hw)
    assert cost.bound == "network"
    assert cost.network_s == expected.time_s > 0
    assert cost.energy_j_by["network"] == expected.energy_j
    # a group of one chip moves nothing: the op costs one launch
    lone = dataclasses.replace(op, attrs={**op.attrs, "group": 1})
    assert price_op(lone, hw).time_s == hw.kernel_launch_s
