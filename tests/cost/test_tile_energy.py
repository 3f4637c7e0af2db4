"""A tiled GEMM's energy uses the bytes its time uses (docs/fidelity.md "GEMM operand bytes").

On a chip with a GEMM tile menu the time charges the picked tile's L2 operand panels (gemm.TileCandidates,
TMA multicast sharing the A reads); the L2 level's bytes (and so its energy) are those panels plus the output, the
shared-memory level's every CTA's panels plus the output. The tile is picked at pricing time, so a sweep of rates
re-tiles and re-prices the energy point by point, identically in the scalar path (opcost.price_work_item) and the array
path (work.price_work). Chips without a tile menu keep gemm.sram_tile_traffic's bytes.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from archsim.config.hardware import load_hardware
from tests.cost.fixtures import price_op
from archsim.cost.phase import graph_ops, price_graph
from archsim.fidelity.tdp_energy import gemm_graph
from archsim.cost.rates import ChipRates
from archsim.cost.traffic import Geometry, op_work
from archsim.cost.work import extract_work, hardware_arrays, price_work
from archsim.dtypes import FP8
from archsim.graph.op import Op, Operand

ROOT = Path(__file__).resolve().parents[2]
REL = 1e-9


@lru_cache(maxsize=None)
def chip(name: str):
    return load_hardware(ROOT / "hardware" / f"{name}.yaml")


def gemm_op(m: int, n: int, k: int, dtype: str = "fp8") -> Op:
    return graph_ops(gemm_graph(dtype, m, n, k))[0]


def grouped_op(groups: int, m: int, n: int, k: int) -> Op:
    a = Operand(name="x", shape=(groups * m, k), dtype=FP8, role="activation", nbytes=groups * m * k)
    w = Operand(name="w", shape=(groups, n, k), dtype=FP8, role="weight", nbytes=groups * n * k)
    y = Operand(name="y", shape=(groups * m, n), dtype=FP8, role="output", nbytes=groups * m * n)
    return Op(name="g", kind="grouped_gemm", engine="matrix", compute_dtype=FP8, flops=2 * groups * m * n * k,
              reads=(a, w), writes=(y,), attrs={"groups": groups, "n": n, "k": k, "tokens_per_expert": (m,) * groups,
                                                "distinct_experts": groups, "tokens_total": groups * m, "tokens_max": m,
                                                "row_layout": "masked"})


def with_fp8_peak(hw, peak: float):
    tensor = hw.compute["tensor"]
    return dataclasses.replace(hw, compute={**hw.compute, "tensor": dataclasses.replace(
        tensor, peak_flop_per_s={**tensor.peak_flop_per_s, "fp8": peak})})


@pytest.mark.parametrize("op", [gemm_op(512, 2112, 7168), gemm_op(4096, 4096, 7168), grouped_op(4, 256, 4096, 7168)],
                         ids=["gemm_small_m", "gemm_large", "grouped_masked"])
def test_time_and_energy_charge_the_same_l2_bytes(op):
    hw = chip("h100")
    cost = price_op(op, hw)
    l2 = cost.bytes_by_level["l2"]
    # the L2 time term is the operand panels over the operand feed; the L2 bytes are those panels plus the output
    panels = cost.memory_s_by_level["l2"] * ChipRates.of(hw).gemm_operand_bytes_per_s
    assert l2 == pytest.approx(panels + op.bytes_written, rel=REL)
    assert cost.energy_j_by["memory:l2"] == pytest.approx(l2 * 8 * hw.memory["l2"].energy_j_per_bit, rel=REL)
    # every CTA stages its own panels in shared memory: at least the L2 reads (equal without multicast)
    assert cost.bytes_by_level["shared"] >= l2 * (1 - REL)
    # main memory is the traffic model's, as before
    assert cost.bytes_by_level["hbm"] == pytest.approx(op_work(op, Geometry.of(hw)).bytes_by_level["hbm"], rel=REL)
    phase = price_graph([op], hw)
    assert phase.bytes_by_level == pytest.approx(cost.bytes_by_level, rel=REL)
    assert phase.dynamic_energy_j == pytest.approx(cost.energy_j, rel=REL)


@pytest.mark.parametrize("op", [gemm_op(512, 2112, 7168), grouped_op(4, 256, 4096, 7168)], ids=["gemm", "grouped"])
def test_a_sweep_re_tiles_the_energy_as_the_scalar_path_does(op):
    hw = chip("h100")
    work = extract_work([op], hw)
    base = hardware_arrays(hw, work)
    peaks = np.geomspace(1e14, 1e17, 13)
    swept = price_work(work, dataclasses.replace(base, peak_flop_per_s=peaks[:, None]))
    l2 = work.level_names.index("l2")
    assert len(np.unique(swept.bytes[:, 0, l2])) > 1  # the pick (and so the L2 bytes) moves with the rate
    for i, peak in enumerate(peaks):
        single = price_op(op, with_fp8_peak(hw, peak))
        assert single.time_s == pytest.approx(swept.time_s[i, 0], rel=REL)
        assert single.energy_j == pytest.approx(swept.energy_j[i, 0], rel=REL)
        for j, name in enumerate(work.level_names):
            assert single.bytes_by_level[name] == pytest.approx(swept.bytes[i, 0, j], rel=REL), (peak, name)
            assert single.energy_j_by[f"memory:{name}"] == pytest.approx(swept.memory_j[i, 0, j], rel=REL)


@pytest.mark.parametrize("name, dtype", [("a100", "bf16"), ("mi300x", "fp8"), ("b200", "fp8")])
def test_chips_without_a_tile_menu_keep_the_sram_tile_bytes(name, dtype):
    hw = chip(name)
    assert hw.kernel is None or not hw.kernel.has_tiles
    op = gemm_op(2048, 7168, 2048, dtype)
    work = op_work(op, Geometry.of(hw))
    assert not work.tiled
    assert price_op(op, hw).bytes_by_level == pytest.approx(work.bytes_by_level, rel=REL)
    assert price_graph([op], hw).bytes_by_level == pytest.approx(work.bytes_by_level, rel=REL)
