"""One GEMM model by construction: the graph's scalar path (cost/opcost.py), its array path (cost/work.py) and the
kernel API (cost/kernel_model.py) price a tiled GEMM with the one ``gemm.gemm_time``; no other module composes a
GEMM's time. What can still differ is the shape each builds (``GemmShape.of`` an op, ``GemmShape.benchmark`` for
the kernel API), so a few validation shapes check that an op carrying the kernel API's bytes prices the same.

The graph keeps what the kernel API leaves out: launch time, L2 banding re-reads (operands overflowing L2), the
busiest-expert floor (equal experts here) and the graph builder's own operand bytes.
"""
from __future__ import annotations

import ast
import dataclasses
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import yaml

from archsim.cost.power import capped_time_s
from archsim.config.hardware import load_hardware
from archsim.cost import gemm
from archsim.cost.geometry import Geometry
from archsim.cost.kernel_model import grouped_gemm_time
from archsim.cost.phase import price_graph
from archsim.cost.traffic import op_work
from archsim.dtypes import BF16, BY_NAME
from archsim.graph.op import Op, Operand
from archsim.graph.ops import GraphBuilder
from archsim.graph.precision import precision_from_names
from tests.cost.fixtures import price_op

ROOT = Path(__file__).resolve().parents[2]
COST = ROOT / "archsim" / "cost"
REL = 1e-12


def _calls(path: Path) -> set[str]:
    """Names called in a module (``f(...)`` and ``mod.f(...)``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            out.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return out


def test_every_path_prices_a_tiled_gemm_with_the_one_gemm_time():
    """opcost, work and kernel_model call gemm.gemm_time; outside gemm.py no module of cost/ picks a tile
    (np.argmin over candidates) or builds candidates itself."""
    assert "gemm_time" in _calls(COST / "opcost.py") and "gemm_time" in _calls(COST / "work.py")
    kernel = (COST / "kernel_model.py").read_text()
    assert "gemm_time as price_gemm" in kernel and "price_gemm" in _calls(COST / "kernel_model.py")
    for path in COST.glob("*.py"):
        if path.name != "gemm.py":
            assert "argmin" not in _calls(path), path.name
            assert "_candidates" not in _calls(path), path.name


@lru_cache(maxsize=None)
def chip(name: str):
    return load_hardware(ROOT / "hardware" / f"{name}.yaml")


def _cases(file: str, every: int = 1):
    doc = yaml.safe_load((ROOT / "validation" / file).read_text())
    cases = [c for c in doc["cases"] if c["kernel"] in ("gemm", "grouped_gemm")]
    return [(doc["hardware"], c) for c in cases[::every]]


# every DeepGEMM H800 row, and every 13th H200 torch row (bf16 and fp8, M = 1 .. 8192)
CASES = _cases("deepgemm_h800.yaml") + _cases("h200_torch.yaml", every=13)


def kernel_op(case) -> Op:
    """The GEMM of a validation case as a graph op with the kernel API's operand bytes."""
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
              attrs={"n": n, "k": k, "tokens_per_expert": (m,) * groups, "distinct_experts": groups,
                     "row_layout": s.get("layout", "contiguous")})


def kernel_estimate(hw, case):
    s = case["shape"]
    return grouped_gemm_time(hw, groups=s.get("groups", 1), m=s["m"], n=s["n"], k=s["k"], dtype=case["dtype"],
                             row_layout=s.get("layout", "contiguous"))


@pytest.mark.parametrize("hw_name, case", CASES, ids=[c["id"] for _, c in CASES])
def test_an_op_with_the_kernel_apis_bytes_prices_as_the_kernel_api(hw_name, case):
    hw = chip(hw_name)
    op = kernel_op(case)
    expected = kernel_estimate(hw, case)
    cost = price_graph([op], hw).ops["g"]
    work = op_work(op, Geometry.of(hw))
    if work.bytes_by_level["hbm"] == op.bytes:  # operands within L2: no banding re-reads, so the same time
        assert expected.time_s > hw.kernel_launch_s  # the graph's launch term does not bind
        # ... once the board's power cap is applied (cost/power.py; the kernel API prices time only): a
        # memory-bound FP8 GEMM streaming at ~3 TB/s with ~700 TFLOPS of MMA work draws about TDP
        assert cost.time_s == pytest.approx(capped_time_s(expected.time_s, cost.energy_j, hw.power.tdp_w,
                                                          hw.busy_power_w), rel=REL)
        assert cost.bound == expected.bound
    else:  # the graph re-reads an operand that overflows L2: never faster
        assert cost.time_s >= expected.time_s * (1 - REL)
    assert price_op(op, hw).time_s == pytest.approx(cost.time_s, rel=REL)
    # energy sees the bytes the time uses: L2 carries the picked tile's panels (the A panel read once per
    # multicast group) plus the output, shared memory every CTA's panels plus the output
    d, k, e = expected.detail, case["shape"]["k"], BY_NAME[case["dtype"]].bytes
    panels = d["tiles"] * k * e
    assert cost.bytes_by_level["l2"] == pytest.approx(panels * (d["block_m"] / d["multicast"] + d["block_n"])
                                                      + op.bytes_written, rel=REL)
    assert cost.bytes_by_level["shared"] == pytest.approx(panels * (d["block_m"] + d["block_n"]) + op.bytes_written,
                                                          rel=REL)


def _power_capped(hw, share: float):
    """``hw`` with its main memory's power limit set so that the cap allows ``share`` of its achievable rate."""
    main = hw.main_memory
    limit = share * main.bandwidth_bytes_per_s * main.achievable_fraction * 8 * main.energy_j_per_bit
    return dataclasses.replace(hw, memory={**hw.memory, main.name: dataclasses.replace(main, power_limit_w=limit)})


def test_derated_and_power_capped_chips_price_a_gemm_alike():
    """A thermal clock derate (H100 + 3D DRAM, compute_clock_fraction 0.5) and a power-capped main memory reach
    both paths through ChipRates; the clock (compute, l2) and the cap (memory) each bind somewhere."""
    # imec's halved clock as a fixed derate, at the board's 700 W cap (not the stack's thermal cap, which
    # archsim kernel does not apply)
    derated = dataclasses.replace(chip("h100_3d_dram"), compute_clock_fraction=0.5, power=chip("h100").power)
    seen = set()
    for hw in (derated, _power_capped(derated, 0.1)):
        for _, case in CASES[::3]:
            op = kernel_op(case)
            if op_work(op, Geometry.of(hw)).bytes_by_level["hbm"] != op.bytes:
                continue
            expected = kernel_estimate(hw, case)
            cost = price_graph([op], hw).ops["g"]
            assert cost.time_s == pytest.approx(expected.time_s, rel=REL), case["id"]
            assert cost.bound == expected.bound, case["id"]
            seen.add(expected.bound)
    assert seen == {"compute", "memory:hbm", "memory:l2"}
    # the derate itself: a compute-bound GEMM's MMA time is its tile work at the derated clock, at least its FLOPs
    tensor = derated.compute["tensor"]
    est = grouped_gemm_time(derated, groups=1, m=4096, n=4096, k=7168, dtype="fp8")
    floor = est.flops / (tensor.peak_flop_per_s["fp8"] * tensor.achievable_fraction * derated.compute_clock_fraction)
    assert est.bound == "compute" and est.parts["compute_s"] >= floor * (1 - 1e-12)
    # ... and a memory-bound one streams at most at the power cap
    capped = _power_capped(derated, 0.1)
    main = capped.main_memory
    small = grouped_gemm_time(capped, groups=1, m=1, n=4096, k=7168, dtype="fp8")
    reads = BY_NAME["fp8"].storage_bytes((1, 7168)) + BY_NAME["fp8"].storage_bytes((7168, 4096))
    assert small.bound == "memory:hbm" and small.parts["memory_s"] == pytest.approx(
        reads / (main.power_limit_w / (8 * main.energy_j_per_bit)), rel=REL)


def test_graph_builder_gemm_differs_only_by_its_bytes():
    """A GraphBuilder FP8 GEMM (BF16 activations, block-scaled weights) is the kernel API's GEMM with more
    bytes: compute-bound it takes the same time, memory-bound it is slower by the extra bytes' streaming time."""
    hw = chip("h800")
    for m, n, k, bound in ((4096, 7168, 16384, "compute"), (64, 2112, 7168, "memory:hbm")):
        b = GraphBuilder(precision_from_names(weights="fp8"))
        b.gemm("g", m=m, n=n, k=k, layer=0, deps=[], split="replicated")
        graph_cost = price_graph(b.graph(), hw).ops["g"]
        kernel = grouped_gemm_time(hw, groups=1, m=m, n=n, k=k, dtype="fp8")
        assert graph_cost.bound == bound
        def capped(s):  # the board's power cap (cost/power.py); the kernel API prices time only
            return capped_time_s(s, graph_cost.energy_j, hw.power.tdp_w, hw.busy_power_w)
        if bound == "compute":
            assert graph_cost.time_s == pytest.approx(capped(kernel.time_s), rel=REL)
        else:
            bw = hw.main_memory.bandwidth_bytes_per_s * hw.main_memory.achievable_fraction
            extra = graph_cost.bytes_by_level["hbm"] - kernel.bytes
            assert extra > 0
            assert graph_cost.time_s == pytest.approx(capped(kernel.time_s + extra / bw), rel=1e-6)


def test_chip_without_tile_menu_keeps_the_roofline():
    """No tile menu (MI300X): the op is priced by the plain roofline (max of the resource times)."""
    hw = chip("mi300x")
    assert not Geometry.of(hw).has_tile_menu
    case = {"kernel": "gemm", "dtype": "bf16", "shape": {"m": 4096, "n": 4096, "k": 4096}}
    cost = price_op(kernel_op(case), hw)
    assert cost.time_s == max([cost.compute_s, cost.launch_s, *cost.memory_s_by_level.values()])


def test_a_sweep_re_tiles_as_the_kernel_api_does():
    """The array pricing picks each hardware point's tile: a sweep over the FP8 peak prices every point as the
    kernel API prices that chip (the tile depends on the MMA rate against the operand feed)."""
    from archsim.cost.work import extract_work, hardware_arrays, price_work, stack_hardware

    base = chip("h800")
    case = next(c for _, c in CASES if c["id"] == "masked_g4_m256_n4096_k7168")
    op = kernel_op(case)
    variants = []
    for peak in (0.25e15, 1978.9e12, 8e15):
        tensor = dataclasses.replace(base.compute["tensor"],
                                     peak_flop_per_s={**base.compute["tensor"].peak_flop_per_s, "fp8": peak})
        variants.append(dataclasses.replace(base, compute={**base.compute, "tensor": tensor}))
    work = extract_work([op], base)
    swept = price_work(work, stack_hardware([hardware_arrays(v, work) for v in variants]))
    expected = [kernel_estimate(v, case) for v in variants]
    # held at the board's power cap where the kernel would draw more (cost/power.py; the kernel API prices time only;
    # idle plus the active baseline count toward the cap): at the two faster peaks this FP8 GEMM draws about TDP
    capped = [capped_time_s(e.time_s, swept.energy_j[i, 0], v.power.tdp_w, v.busy_power_w)
              for i, (e, v) in enumerate(zip(expected, variants))]
    assert swept.time_s[:, 0] == pytest.approx(capped, rel=REL)
    assert len({e.detail["block_n"] for e in expected}) > 1  # the points really run different tiles
    assert [swept.bound_labels[i] for i in swept.bound_index[:, 0]] == [e.bound for e in expected]
    assert np.all(np.diff(swept.time_s[:, 0]) <= 0)  # a faster tensor engine never slows the GEMM


def test_busiest_expert_still_bounds_an_imbalanced_grouped_gemm():
    """The graph's extra over the kernel API: an imbalanced grouped GEMM's MMA time is at least its busiest
    expert's GEMM alone (gemm.floor_flops), and it takes no less than the even split."""
    hw = chip("h800")
    even = {"kernel": "grouped_gemm", "dtype": "fp8", "shape": {"groups": 4, "m": 256, "n": 4096, "k": 7168}}
    op = kernel_op(even)
    skewed = dataclasses.replace(op, attrs={"n": 4096, "k": 7168, "tokens_per_expert": (1000.0, 8.0, 8.0, 8.0),
                                            "distinct_experts": 4})
    geom = Geometry.of(hw)
    busiest = gemm.least_mma_flops(geom, groups=1, rows=1000.0, n=4096, k=7168)
    cost = price_op(skewed, hw)
    rate = hw.compute["tensor"].peak_flop_per_s["fp8"] * hw.compute["tensor"].achievable_fraction
    assert busiest > skewed.flops
    assert cost.compute_s >= busiest / rate * (1 - 1e-12)
    assert op_work(skewed, geom).time_flops == busiest  # the floor under the picked tile's FLOPs
    assert cost.time_s >= price_op(op, hw).time_s
