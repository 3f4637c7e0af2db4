"""One GEMM model: the graph path (cost/traffic.py op_work + cost/work.py / cost/opcost.py pricing) prices a
gemm or grouped_gemm op with the kernel model's time (cost/kernel_model.py grouped_gemm_time, validated by
``archsim validate``), because both call efficiency.tile_gemm and efficiency.tiled_time_terms.

The ops here carry the kernel model's bytes: inputs in the GEMM dtype, output in BF16, no block scales. (A
GraphBuilder GEMM with FP8 weights reads its activations in BF16 and its weights with 128x128 block scales, so
its memory-bound time is longer by those bytes; ``test_graph_builder_gemm_differs_only_by_its_bytes``.) The
graph's extras are kept: launch time (4 us, below every case here), L2 banding re-reads (they only add bytes
beyond the compulsory ones, binding in none of these cases), the busiest-expert bound (equal experts here).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from archsim.config.hardware import load_hardware
from archsim.cost.kernel_model import grouped_gemm_time
from archsim.cost.opcost import price_op
from archsim.cost.phase import price_graph
from archsim.cost.traffic import Geometry, op_work
from archsim.dtypes import BF16, BY_NAME
from archsim.graph.op import Op, Operand
from archsim.graph.ops import GraphBuilder
from archsim.graph.precision import precision_from_names

ROOT = Path(__file__).resolve().parents[2]
REL = 1e-9


@lru_cache(maxsize=None)
def chip(name: str):
    return load_hardware(ROOT / "hardware" / f"{name}.yaml")


def _cases(file: str, every: int = 1):
    doc = yaml.safe_load((ROOT / "validation" / file).read_text())
    cases = [c for c in doc["cases"] if c["kernel"] in ("gemm", "grouped_gemm")]
    return [(doc["hardware"], c) for c in cases[::every]]


# every DeepGEMM H800 row, and every 7th H200 torch row (bf16 and fp8, M = 1 .. 8192)
CASES = _cases("deepgemm_h800.yaml") + _cases("h200_torch.yaml", every=7)


def kernel_op(case) -> Op:
    """The GEMM of a validation case as a graph op with the kernel model's operand bytes."""
    s, dt = case["shape"], BY_NAME[case["dtype"]]
    groups, m, n, k = s.get("groups", 1), s["m"], s["n"], s["k"]
    a = Operand(name="x", shape=(groups * m, k), dtype=dt, role="activation", nbytes=groups * dt.storage_bytes((m, k)))
    w = Operand(name="weight", shape=(groups, n, k), dtype=dt, role="weight",
                nbytes=groups * dt.storage_bytes((k, n)))
    y = Operand(name="y", shape=(groups * m, n), dtype=BF16, role="output", nbytes=groups * BF16.storage_bytes((m, n)))
    if case["kernel"] == "gemm":
        return Op(name="g", kind="gemm", engine="matrix", compute_dtype=dt, flops=2 * m * n * k, reads=(a, w),
                  writes=(y,), attrs={"m": m, "n": n, "k": k})
    return Op(name="g", kind="grouped_gemm", engine="matrix", compute_dtype=dt, flops=2 * groups * m * n * k,
              reads=(a, w), writes=(y,),
              attrs={"groups": groups, "n": n, "k": k, "tokens_per_expert": (m,) * groups, "distinct_experts": groups,
                     "tokens_total": groups * m, "tokens_max": m, "layout": s.get("layout", "contiguous")})


def kernel_estimate(hw, case):
    s = case["shape"]
    return grouped_gemm_time(hw, groups=s.get("groups", 1), m=s["m"], n=s["n"], k=s["k"], dtype=case["dtype"],
                             layout=s.get("layout", "contiguous"))


BOUND = {"compute": "compute", "memory": "memory:hbm", "l2": "memory:l2"}


@pytest.mark.parametrize("hw_name, case", CASES, ids=[c["id"] for _, c in CASES])
def test_graph_prices_a_gemm_as_the_kernel_model_does(hw_name, case):
    hw = chip(hw_name)
    op = kernel_op(case)
    expected = kernel_estimate(hw, case)
    assert expected.time_s > hw.kernel_launch_s  # so the graph's launch term is not the binding one
    phase = price_graph([op], hw)
    assert phase.time_s == pytest.approx(expected.time_s, rel=REL)
    cost = phase.ops["g"]
    assert cost.bound == BOUND[expected.bound]
    # the scalar path (placement, price_op) agrees with the array path
    single = price_op(op, hw)
    assert single.time_s == pytest.approx(expected.time_s, rel=REL)
    assert single.bound == cost.bound
    # energy still sees the traffic model's per-level bytes (L2 and shared memory carry the tiles' panels)
    work = op_work(op, Geometry.of(hw))
    assert cost.bytes_by_level == pytest.approx(work.bytes_by_level)
    assert work.bytes_by_level["l2"] > 0


def test_every_term_of_the_kernel_model_binds_somewhere():
    """The cases above exercise compute-, memory- and L2-operand-bound GEMMs, so each term is compared."""
    bounds = {kernel_estimate(chip(h), c).bound for h, c in CASES}
    assert bounds == {"compute", "memory", "l2"}


def test_graph_builder_gemm_differs_only_by_its_bytes():
    """A GraphBuilder FP8 GEMM (BF16 activations, block-scaled weights) is the kernel model's GEMM with more
    bytes: compute-bound it takes the same time, memory-bound it is slower by the extra bytes' streaming time."""
    hw = chip("h800")
    for m, n, k, bound in ((4096, 7168, 16384, "compute"), (64, 2112, 7168, "memory:hbm")):
        b = GraphBuilder(precision_from_names(weights="fp8"))
        b.gemm("g", m=m, n=n, k=k, layer=0, deps=[], split="replicated")
        graph_cost = price_graph(b.graph(), hw).ops["g"]
        kernel = grouped_gemm_time(hw, groups=1, m=m, n=n, k=k, dtype="fp8")
        assert graph_cost.bound == bound
        if bound == "compute":
            assert graph_cost.time_s == pytest.approx(kernel.time_s, rel=REL)
        else:
            bw = hw.main_memory.bandwidth_bytes_per_s * hw.main_memory.achievable_fraction
            extra = graph_cost.bytes_by_level["hbm"] - kernel.bytes
            assert extra > 0
            assert graph_cost.time_s == pytest.approx(kernel.time_s + extra / bw, rel=1e-6)


def test_chip_without_tile_menu_keeps_the_roofline():
    """No kernel fields (MI300X): the op is priced by the plain roofline (max of the resource times)."""
    hw = chip("mi300x")
    assert hw.kernel is None or not hw.kernel.has_tiles
    case = {"kernel": "gemm", "dtype": "bf16", "shape": {"m": 4096, "n": 4096, "k": 4096}}
    cost = price_op(kernel_op(case), hw)
    parts = [cost.compute_s, cost.launch_s, *cost.memory_s_by_level.values()]
    assert cost.time_s == max(parts)
