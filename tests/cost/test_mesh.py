"""cost/mesh.py: an op's all-reduces across a wafer-scale core mesh, by hand, and their hook into both pricing paths."""
import dataclasses

import pytest

from archsim.config.hardware import load_hardware
from archsim.config.whatif_hardware import MeshSpec
from archsim.cost import mesh
from archsim.cost.geometry import Geometry
from archsim.cost.opcost import price_work_item
from archsim.cost.phase import price_graph
from archsim.cost.traffic import op_work
from archsim.dtypes import BF16
from archsim.graph.ops import GraphBuilder
from archsim.graph.precision import Precision

# a mesh whose numbers are easy to follow by hand (test parameters, not a chip)
SPEC = MeshSpec(cores_x=12, cores_y=10, op_side=10, core_memory_bytes=48 * 2 ** 10, simd_fp16_macs_per_cycle=8,
                clock_hz=1.0e9, hop_cycles=2.0, link_bytes_per_cycle=4.0, hop_energy_j_per_bit=0.1e-12,
                weight_stream_bytes_per_s=100e9)


def _ops():
    """A decode-sized GEMV (1 x 4096 @ 4096 x 1024), an RMSNorm of one 4096-wide row and an elementwise add."""
    b = GraphBuilder(Precision(weights=BF16))
    b.gemm("proj", m=1, n=1024, k=4096, layer=0, deps=[], split="tp")
    b.norm("norm", rows=1, width=4096, layer=0, deps=["proj"])
    b.residual("add", rows=1, width=4096, layer=0, deps=["norm"])
    g = b.graph()
    return {name: g.nodes[name]["op"] for name in g.nodes}


def test_rates_by_hand():
    assert mesh.hop_s(SPEC) == pytest.approx(2e-9)               # 2 cycles / 1 GHz
    assert mesh.link_bytes_per_s(SPEC) == pytest.approx(4e9)     # 4 B/cycle x 1 GHz
    assert mesh.dense_fp16_peak_flop_per_s(SPEC, 120) == pytest.approx(120 * 8 * 2 * 1e9)
    assert mesh.mesh_memory_bytes(SPEC) == 120 * 48 * 1024
    assert mesh.fabric_bytes_per_s(SPEC) == pytest.approx(120 * 4 * 2 * 4e9)


def test_gemm_allreduce_by_hand():
    """One all-reduce of the 1 x 1024 BF16 output over lines of 10 cores: 2 passes of 10 // 2 = 5 hops (2 ns each)
    plus 2048 B / 10 lines = 204.8 B per line at 4 GB/s; energy 2 passes x 2048 B x 9 hops x 8 bit x 0.1 pJ."""
    op = _ops()["proj"]
    t, e = mesh.op_mesh_cost_at(op, mesh.MeshRates.of(SPEC))
    assert t == pytest.approx(2 * (5 * 2e-9 + 204.8 / 4e9))
    assert e == pytest.approx(2 * 2048 * 9 * 8 * 0.1e-12)


def test_norm_reduces_one_partial_sum_per_row_and_elementwise_ops_stay_local():
    ops = _ops()
    rates = mesh.MeshRates.of(SPEC)
    t, _ = mesh.op_mesh_cost_at(ops["norm"], rates)
    assert t == pytest.approx(2 * (5 * 2e-9 + 2 / 10 / 4e9))  # one BF16 sum of squares for the one row
    assert mesh.op_mesh_cost_at(ops["add"], rates) == (0.0, 0.0)


def test_attention_pays_two_allreduces():
    b = GraphBuilder(Precision(weights=BF16))
    b.attention("attn", batch=1, q_len=1, kv_len=100, heads_q=8, heads_kv=2, d_qk=64, d_v=64, form="gqa", cached=100,
                layer=0, deps=[], split="tp")
    op = b.graph().nodes["attn"]["op"]
    out = 8 * 64 * 2  # 1 row x 8 heads x 64 x BF16
    t, _ = mesh.op_mesh_cost_at(op, mesh.MeshRates.of(SPEC))
    assert t == pytest.approx(2 * 2 * (5 * 2e-9 + out / 10 / 4e9))


def test_weight_streaming_by_hand():
    assert mesh.weight_stream_s(50e9, 44e9, SPEC) == pytest.approx(6e9 / 100e9)
    assert mesh.weight_stream_s(40e9, 44e9, SPEC) == 0.0


def test_chip_without_mesh_pays_nothing(h100):
    assert all(mesh.op_mesh_cost(op, h100) == (0.0, 0.0) for op in _ops().values())


@pytest.fixture(scope="module")
def wse():
    return load_hardware("cerebras_wse3")


def test_mesh_time_is_the_network_time_in_both_pricing_paths(wse):
    """The scalar path (opcost) and the array path (phase, via cost/work.py) give each op the same network time,
    and it is the mesh all-reduce."""
    ops = list(_ops().values())
    phase = price_graph(ops, wse)
    geom = Geometry.of(wse)
    for op in ops:
        scalar = price_work_item(op, op_work(op, geom), wse)
        expected, _ = mesh.op_mesh_cost(op, wse)
        assert scalar.network_s == pytest.approx(expected)
        assert phase.ops[op.name].network_s == pytest.approx(expected)
        assert phase.ops[op.name].time_s == pytest.approx(scalar.time_s)
    assert phase.ops["proj"].bound == "network"  # a decode GEMV on the wafer waits on its all-reduce


@pytest.mark.parametrize("field, factor", [("hop_cycles", 2.0), ("link_bytes_per_cycle", 0.5), ("op_side", 0.5)])
def test_a_slower_or_longer_mesh_is_never_faster(wse, field, factor):
    """Doubling the hop latency or halving the link width never shortens an op; a smaller square (shorter lines)
    shortens a decode GEMV's all-reduce (its latency term dominates its payload term)."""
    op = _ops()["proj"]
    base, _ = mesh.op_mesh_cost(op, wse)
    value = getattr(wse.mesh, field) * factor
    new_mesh = dataclasses.replace(wse.mesh, **{field: type(getattr(wse.mesh, field))(value)})
    changed = dataclasses.replace(wse, mesh=new_mesh)
    t, _ = mesh.op_mesh_cost(op, changed)
    assert (t < base) if field == "op_side" else (t > base)


def test_archsim_kernel_prices_a_gemm_as_the_graph_does(wse):
    """`archsim kernel gemm` (cost/kernel_model.py) on the wafer: the same mesh all-reduce as the graph's op, and the
    same time (both are mesh-bound at one row); on an H100 it has no mesh part."""
    from archsim.cost.kernel_model import gemm_time

    op = _ops()["proj"]
    est = gemm_time(wse, m=1, n=1024, k=4096, dtype="bf16")
    expected, _ = mesh.op_mesh_cost(op, wse)
    assert est.parts["mesh_s"] == pytest.approx(expected)
    assert est.bound == "network" and est.time_s == pytest.approx(price_graph([op], wse).ops["proj"].time_s)
    assert "mesh_s" not in gemm_time("h100", m=1, n=1024, k=4096, dtype="bf16").parts


def test_archsim_kernel_prices_decode_attention_as_the_graph_does(wse):
    """`archsim kernel attention` on the wafer: the graph's attention op's two all-reduces of its output (1 row x 8
    heads x 64 BF16 values), and its time."""
    from archsim.cost.kernel_model import attention_time

    b = GraphBuilder(Precision(weights=BF16))
    b.attention("attn", batch=1, q_len=1, kv_len=100, heads_q=8, heads_kv=2, d_qk=64, d_v=64, form="gqa", cached=100,
                layer=0, deps=[], split="tp")
    op = b.graph().nodes["attn"]["op"]
    est = attention_time(wse, kind="gqa", phase="decode", heads=8, heads_kv=2, head_dim=64, batch=1, context=100)
    expected, _ = mesh.op_mesh_cost(op, wse)
    assert est.parts["mesh_s"] == pytest.approx(expected)
    assert est.bound == "network" and est.time_s == pytest.approx(price_graph([op], wse).ops["attn"].time_s)
