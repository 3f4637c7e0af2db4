"""The floors under a GEMM's MMA work (archsim/cost/gemm.py): ``least_mma_flops``, the least wave-quantised work of
the whole tile menu, which no tile the library picks at any rates beats; and ``floor_flops``, the busiest group's
GEMM alone, a valid lower bound monotone in its rows."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.config.hardware import load_hardware
from archsim.cost import gemm
from archsim.cost.geometry import Geometry
from archsim.dtypes import FP8
from tests.cost.fixtures import gemm_shape, least_padded_tile

HW_DIR = Path(__file__).resolve().parents[2] / "hardware"


@lru_cache(maxsize=None)
def geometry(name: str) -> Geometry:
    return Geometry.of(load_hardware(HW_DIR / f"{name}.yaml"))


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 6000), n=st.integers(1, 8000), k=st.integers(1, 8000), groups=st.integers(1, 4),
       compute=st.floats(1e13, 3e15), operand=st.floats(1e12, 3e14))
def test_least_work_is_the_whole_menus_and_no_pick_beats_it(m, n, k, groups, compute, operand) -> None:
    geom = geometry("h200")
    least = gemm.least_mma_flops(geom, groups=groups, rows=m, n=n, k=k)
    tile = least_padded_tile(m=m, n=n, groups=groups, sm_count=geom.sm_count, block_m_options=geom.gemm_block_m,
                             block_n_options=geom.gemm_block_n, max_tile_elements=geom.gemm_max_tile_elements)
    assert least == float(tile.padded_elements_per_sm) * geom.sm_count * 2 * k
    # the tile the library runs at these rates (multicast, the per-SM stream and all) does at least this much
    cands = gemm.tile_candidates(gemm_shape(m=m, n=n, k=k, groups=groups), geom)
    pick = gemm.gemm_time(cands, gemm.GemmRates(mma_flop_per_s=compute, main_bytes_per_s=4e12,
                                                operand_bytes_per_s=operand, panel_stream_bytes_per_s=47e9,
                                                ramp_s=0.0)).pick
    assert cands.mma_flops[int(pick)] >= least


def test_least_work_is_zero_without_work_or_menu() -> None:
    assert gemm.least_mma_flops(geometry("h200"), groups=1, rows=0, n=64, k=64) == 0.0
    assert gemm.least_mma_flops(geometry("mi300x"), groups=1, rows=64, n=64, k=64) == 0.0


def busiest(name: str, tokens: float, n: int, k: int) -> float:
    """The busiest group's bound alone: a shape of no useful FLOPs whose busiest group has ``tokens`` rows."""
    shape = gemm.GemmShape(rows_total=tokens, groups_touched=1.0, busiest_group_rows=tokens, n=n, k=k,
                           row_layout=gemm.ExpertRowLayout.CONTIGUOUS, mma_dtype=FP8, a_elem_bytes=1.0,
                           b_elem_bytes=1.0, a_bytes=0.0, b_bytes=0.0, c_bytes=0.0, flops=0.0)
    return gemm.floor_flops(shape, geometry(name))


def test_without_a_tile_menu_the_largest_tile_binds():
    # MI300X has no tile menu. One token, n = 2048, k = 7168: no SM finishes before its largest tile,
    # 1 x min(2048, T) x 7168 MACs, so the bound is that tile's FLOPs times the SM count.
    geom = geometry("mi300x")
    assert not geom.has_tile_menu
    tile = gemm.l2_banding_tile(geom.sram_per_sm_bytes, 1.0, geom.register_per_sm_bytes)
    assert busiest("mi300x", 1, 2048, 7168) == 2.0 * 1 * min(2048, tile) * 7168 * geom.sm_count
    # a huge expert: the chip's own rate binds, 2 m n k
    assert busiest("mi300x", 1e6, 2048, 7168) == 2.0 * 1e6 * 2048 * 7168


def test_a_dense_gemm_has_no_busiest_group():
    # busiest_group_rows 0: the floor is the GEMM's own FLOPs, even where a largest-tile bound would exceed them
    shape = gemm_shape(m=1, n=2048, k=7168, busiest=0)
    assert gemm.floor_flops(shape, geometry("mi300x")) == shape.flops


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(["h100", "mi300x", "a100", "b200"]), tokens=st.integers(1, 4096),
       extra=st.integers(1, 512), n=st.integers(1, 20000), k=st.integers(1, 20000))
def test_more_tokens_never_lower_bound(name, tokens, extra, n, k):
    small, big = busiest(name, tokens, n, k), busiest(name, tokens + extra, n, k)
    assert big >= small * (1 - 1e-12)
    if name != "h100":  # chips without a tile menu: never below the expert's useful FLOPs
        assert small >= 2.0 * tokens * n * k * (1 - 1e-12)
    else:               # with one: the expert's wave-quantised work, at least its useful FLOPs
        assert small >= 2.0 * tokens * n * k * (1 - 1e-12) and small == pytest.approx(
            gemm.least_mma_flops(geometry(name), groups=1, rows=tokens, n=n, k=k))
