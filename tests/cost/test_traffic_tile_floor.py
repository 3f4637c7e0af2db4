"""The busiest-expert floor (archsim/cost/traffic.py quantised_flops) comes from the one tile menu
(efficiency.gemm_tile_menu): it is the least wave-quantised work over the menu, so no tile pick_tiling picks
at any rates beats it, and it equals the least-padded tile of the whole (unpruned) menu."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.config.hardware import load_hardware
from archsim.cost import efficiency as eff
from archsim.cost.traffic import Geometry, quantised_flops


@pytest.fixture(scope="module")
def geom() -> Geometry:
    return Geometry.of(load_hardware("hardware/h200.yaml"))


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 6000), n=st.integers(1, 8000), k=st.integers(1, 8000), groups=st.integers(1, 4),
       compute=st.floats(1e13, 3e15), operand=st.floats(1e12, 3e14))
def test_floor_is_the_least_work_of_the_menu_and_no_pick_beats_it(geom, m, n, k, groups, compute, operand) -> None:
    fields = geom.kernel
    floor = quantised_flops(geom, groups=groups, m=m, n=n, k=k)
    # the whole menu, unpruned, by least padded work per SM (the wave-quantised MMA time is proportional to it)
    tile = eff.choose_gemm_tile(m=m, n=n, groups=groups, sm_count=geom.sm_count, block_m_options=fields.gemm_block_m,
                                block_n_options=fields.gemm_block_n, max_tile_elements=fields.gemm_max_tile_elements)
    assert floor == eff.wave_quantised_flops(tile=tile, k=k, sm_count=geom.sm_count)
    # the tile the library runs at these rates (the grouped GEMM's own menu) does at least this much MMA work
    menu = eff.gemm_tile_menu(groups=groups, m=m, n=n, k=k, elem_bytes=2, sm_count=geom.sm_count,
                              block_m_options=fields.gemm_block_m, block_n_options=fields.gemm_block_n,
                              max_tile_elements=fields.gemm_max_tile_elements, multicast_width=fields.gemm_multicast,
                              config_groups=1, sm_stream_bytes_per_s=fields.sm_stream_bandwidth_bytes_per_s)
    pick = int(eff.pick_tiling(np.array([e.time_flops for e in menu]), np.array([e.operand_bytes for e in menu]),
                               np.array([e.stream_s for e in menu]), compute, operand))
    assert menu[pick].time_flops >= floor


def test_floor_is_zero_without_work_or_menu(geom) -> None:
    assert quantised_flops(geom, groups=1, m=0, n=64, k=64) == 0.0
    bare = Geometry(level_names=("hbm",), main="hbm", sram_per_sm_bytes=0.0, l2_bytes=0.0,
                    register_per_sm_bytes=None, sm_count=132)
    assert quantised_flops(bare, groups=1, m=64, n=64, k=64) == 0.0
