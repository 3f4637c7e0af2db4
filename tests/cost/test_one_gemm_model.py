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

import dataclasses
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from archsim.config.hardware import load_hardware
from archsim.cost.kernel_model import grouped_gemm_time
from tests.cost.fixtures import price_op
from archsim.cost.phase import price_graph
from archsim.cost.traffic import Geometry, busiest_expert_flops, op_work
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
                     "tokens_total": groups * m, "tokens_max": m, "row_layout": s.get("layout", "contiguous")})


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
    # energy sees the bytes the time uses: L2 carries the kernel model's tile panels (the A panel read once per
    # multicast group) plus the output, shared memory every CTA's panels plus the output; HBM the traffic model's
    d, k, e = expected.detail, case["shape"]["k"], BY_NAME[case["dtype"]].bytes
    panels = d["tiles"] * k * e
    out = op.bytes_written
    assert cost.bytes_by_level["l2"] == pytest.approx(panels * (d["block_m"] / d["multicast"] + d["block_n"]) + out,
                                                      rel=REL)
    assert cost.bytes_by_level["shared"] == pytest.approx(panels * (d["block_m"] + d["block_n"]) + out, rel=REL)
    assert single.bytes_by_level == pytest.approx(cost.bytes_by_level, rel=REL)
    assert single.energy_j == pytest.approx(cost.energy_j, rel=REL)
    work = op_work(op, Geometry.of(hw))
    assert cost.bytes_by_level["hbm"] == pytest.approx(work.bytes_by_level["hbm"], rel=REL)
    l2_j = cost.bytes_by_level["l2"] * 8 * hw.memory["l2"].energy_j_per_bit
    assert cost.energy_j_by["memory:l2"] == pytest.approx(l2_j, rel=REL)


def _power_capped(hw, share: float):
    """``hw`` with its main memory's power limit set so that the cap allows ``share`` of its achievable rate."""
    main = hw.main_memory
    limit = share * main.bandwidth_bytes_per_s * main.achievable_fraction * 8 * main.energy_j_per_bit
    return dataclasses.replace(hw, memory={**hw.memory, main.name: dataclasses.replace(main, power_limit_w=limit)})


def test_derated_and_power_capped_chips_price_a_gemm_alike():
    """One GEMM model on a chip with a thermal clock derate (H100 + 3D DRAM, compute_clock_fraction 0.5) and
    with a power-capped main memory: the kernel model applies the graph's rates (engines and the L2 operand feed
    at the derated clock, traffic.level_rate's power cap), so both paths give the same time and bound."""
    derated = chip("h100_3d_dram")
    assert derated.compute_clock_fraction < 1.0
    capped = _power_capped(derated, 0.1)
    seen = set()
    for hw in (derated, capped):
        for _, case in CASES:
            expected = kernel_estimate(hw, case)
            cost = price_graph([kernel_op(case)], hw).ops["g"]
            assert cost.time_s == pytest.approx(expected.time_s, rel=REL), case["id"]
            assert cost.bound == BOUND[expected.bound], case["id"]
            seen.add(expected.bound)
    assert seen == {"compute", "memory", "l2"}  # the clock (compute, l2) and the cap (memory) all bind somewhere
    # the derate itself: a compute-bound GEMM's MMA time is at least its FLOPs at the derated clock ...
    tensor = derated.compute["tensor"]
    est = grouped_gemm_time(derated, groups=1, m=4096, n=4096, k=7168, dtype="fp8")
    floor = est.flops / (tensor.peak_flop_per_s["fp8"] * tensor.achievable_fraction * derated.compute_clock_fraction)
    assert est.bound == "compute" and est.parts["compute_s"] >= floor * (1 - 1e-12)
    # ... and a memory-bound one streams at most at the power cap
    main = capped.main_memory
    cap_rate = main.power_limit_w / (8 * main.energy_j_per_bit)
    small = grouped_gemm_time(capped, groups=1, m=1, n=4096, k=7168, dtype="fp8")
    reads = BY_NAME["fp8"].storage_bytes((1, 7168)) + BY_NAME["fp8"].storage_bytes((7168, 4096))
    assert small.bound == "memory" and small.parts["memory_s"] == pytest.approx(reads / cap_rate, rel=REL)


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


def test_a_sweep_re_tiles_as_the_kernel_model_does():
    """The array pricing picks each hardware point's tile: a sweep over the FP8 peak prices every point as the
    kernel model prices that chip (the tile depends on the MMA rate against the operand feed)."""
    import dataclasses

    import numpy as np

    from archsim.cost.work import extract_work, hardware_arrays, price_work, stack_hardware

    base = chip("h800")
    case = next(c for _, c in CASES if c["id"] == "masked_g4_m256_n4096_k7168")
    op = kernel_op(case)
    peaks = (0.25e15, 1978.9e12, 8e15)
    variants = []
    for peak in peaks:
        tensor = dataclasses.replace(base.compute["tensor"],
                                     peak_flop_per_s={**base.compute["tensor"].peak_flop_per_s, "fp8": peak})
        variants.append(dataclasses.replace(base, compute={**base.compute, "tensor": tensor}))
    work = extract_work([op], base)
    swept = price_work(work, stack_hardware([hardware_arrays(v, work) for v in variants]))
    expected = [kernel_estimate(v, case) for v in variants]
    assert swept.time_s[:, 0] == pytest.approx([e.time_s for e in expected], rel=REL)
    assert len({e.detail["block_n"] for e in expected}) > 1  # the points really run different tiles
    labels = [swept.bound_labels[i] for i in swept.bound_index[:, 0]]
    assert labels == [BOUND[e.bound] for e in expected]
    assert np.all(np.diff(swept.time_s[:, 0]) <= 0)  # a faster tensor engine never slows the GEMM


def test_busiest_expert_still_bounds_an_imbalanced_grouped_gemm():
    """The graph's extra over the kernel model: an imbalanced grouped GEMM's MMA time is at least its busiest
    expert's GEMM alone (traffic.busiest_expert_flops), and it takes no less than the even split."""
    hw = chip("h800")
    even = {"kernel": "grouped_gemm", "dtype": "fp8", "shape": {"groups": 4, "m": 256, "n": 4096, "k": 7168}}
    op = kernel_op(even)
    skewed = dataclasses_replace_attrs(op, tokens_per_expert=(1000.0, 8.0, 8.0, 8.0), tokens_max=1000.0)
    geom = Geometry.of(hw)
    busiest = busiest_expert_flops(geom, tokens_max=1000.0, n=4096, k=7168, tile=128)
    cost = price_op(skewed, hw)
    rate = hw.compute["tensor"].peak_flop_per_s["fp8"] * hw.compute["tensor"].achievable_fraction
    assert busiest > skewed.flops
    assert cost.compute_s >= busiest / rate * (1 - 1e-12)
    assert op_work(skewed, geom).time_flops == busiest  # the floor under the picked tile's FLOPs
    assert cost.time_s >= price_op(op, hw).time_s


def dataclasses_replace_attrs(op: Op, **attrs) -> Op:
    import dataclasses

    return dataclasses.replace(op, attrs={**op.attrs, **attrs})
