"""One GEMM's pricing (archsim/cost/gemm.py): tile configurations, candidates, the time and the bytes at the pick.
Every expected value is derived in the test from the inputs."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.cost import gemm
from archsim.dtypes import BF16, FP8
from archsim.errors import ConfigError
from archsim.graph.op import ExpertRowLayout
from tests.cost.fixtures import gemm_shape, least_padded_tile, tile_geometry

# DeepGEMM's tile menu (get_best_configs): block_m 64/128/256, block_n 16..128 step 8 plus 144, 160;
# a 256-row tile only with block_n <= 128, i.e. at most 256*128 = 32768 accumulator elements.
BLOCK_M = (64, 128, 256)
BLOCK_N = tuple(range(16, 129, 8)) + (144, 160)
MAX_TILE = 256 * 128


def rates(*, mma=1.5e15, main=3e12, operand=6e12, panel=np.inf, ramp=0.0) -> gemm.GemmRates:
    return gemm.GemmRates(mma_flop_per_s=mma, main_bytes_per_s=main, operand_bytes_per_s=operand,
                          panel_stream_bytes_per_s=panel, ramp_s=ramp)


def test_tile_choice_h800_large_gemm_with_deepgemm_wave_rule() -> None:
    # DeepGEMM's own ranking (fewest waves first) is reproduced by scoring tiles by their waves.
    # m=4096, n=7168 on 132 SMs. 256x128: 16 * 56 = 896 tiles, ceil(896/132) = 7 waves, last 896 - 6*132 = 104.
    # 6 waves would need <= 792 tiles: 16 * ceil(7168/bn) <= 792 needs bn >= 146.3, not allowed with bm=256;
    # 128x160 gives 32 * 45 = 1440 tiles (11 waves). Among 7-wave tilings only bn=128 (56 columns) exists.
    tile = least_padded_tile(m=4096, n=7168, groups=1, sm_count=132, block_m_options=BLOCK_M, block_n_options=BLOCK_N,
                             max_tile_elements=MAX_TILE, score=lambda t: t.waves)
    assert (tile.block_m, tile.block_n, tile.tiles, tile.waves, tile.last_wave_tiles) == (256, 128, 896, 7, 104)


def test_least_padded_work_is_not_fewest_waves() -> None:
    # m=300, n=128 on 2 SMs. 256x128: ceil(300/256) = 2 tiles, 1 wave, 256*128 = 32768 outputs per SM.
    # 64x128: ceil(300/64) = 5 tiles, 3 waves, 3 * 64*128 = 24576 per SM: the least MMA time takes 64 rows.
    tile = least_padded_tile(m=300, n=128, groups=1, sm_count=2, block_m_options=(64, 256), block_n_options=(128,),
                             max_tile_elements=256 * 128)
    assert (tile.block_m, tile.tiles, tile.waves, tile.padded_elements_per_sm) == (64, 5, 3, 24576)


def test_partial_waves_and_tiles_and_shared_waves_of_groups() -> None:
    # 384 x 128 outputs in 128 x 128 tiles on 4 SMs: 3 tiles, 1 wave, padded 4 x 128 x 128 per wave
    (tile,) = gemm.tile_configs(groups=1, m=384, n=128, sm_count=4, block_m_options=(128,), block_n_options=(128,),
                                max_tile_elements=128 * 128)
    assert (tile.tiles, tile.waves, tile.last_wave_tiles, tile.padded_elements_per_sm) == (3, 1, 3, 128 * 128)
    geom = tile_geometry(block_m=(128,), block_n=(128,), max_tile_elements=128 * 128, sm_count=4)
    cands = gemm.tile_candidates(gemm_shape(m=384, n=128, k=64), geom)
    assert cands.mma_flops[0] == 1 * 4 * 128 * 128 * 2 * 64  # a wave of 4 SMs, each one full tile of depth 64
    # a partial edge tile: m = 100 still costs a full 128-row tile; 8 groups of one tile each share 2 waves
    assert gemm.tile_configs(groups=1, m=100, n=128, sm_count=1, block_m_options=(128,), block_n_options=(128,),
                             max_tile_elements=128 * 128)[0].padded_elements_per_sm == 128 * 128
    (grouped,) = gemm.tile_configs(groups=8, m=128, n=128, sm_count=4, block_m_options=(128,), block_n_options=(128,),
                                   max_tile_elements=128 * 128)
    assert (grouped.tiles, grouped.waves, grouped.last_wave_tiles) == (8, 2, 4)


def test_no_legal_tile_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="tile"):
        gemm.tile_configs(groups=1, m=64, n=64, sm_count=1, block_m_options=(128,), block_n_options=(128,),
                          max_tile_elements=64 * 64)
    with pytest.raises(ConfigError):
        gemm.tile_configs(groups=1, m=0, n=64, sm_count=1, block_m_options=(64,), block_n_options=(64,),
                          max_tile_elements=4096)


def test_multicast_rule_and_the_operand_bytes_it_shares() -> None:
    # DeepGEMM's rule: two CTAs of adjacent n-blocks share the A panel when n is a multiple of 2 * block_n
    # and the config sees one group
    assert gemm.tma_multicast(width=2, n=4096, block_n=128, config_groups=1) == 2
    assert gemm.tma_multicast(width=2, n=4096 + 64, block_n=128, config_groups=1) == 1   # odd n-block pair
    assert gemm.tma_multicast(width=2, n=4096, block_n=128, config_groups=4) == 1        # masked, 4 groups
    assert gemm.tma_multicast(width=1, n=4096, block_n=128, config_groups=1) == 1
    with pytest.raises(ConfigError, match="gemm_multicast"):
        gemm.tma_multicast(width=0, n=4096, block_n=128, config_groups=1)
    # m = 1280, n = 256 in 256 x 128 tiles: 5 x 2 = 10 tiles over k = 1024, FP8 (1 B): each tile's L2 reads are
    # (256 / 2 + 128) x 1024 with the A panel read once per CTA pair, but every CTA stages (256 + 128) x 1024
    geom = tile_geometry(block_m=(256,), block_n=(128,), max_tile_elements=MAX_TILE, multicast=2)
    cands = gemm.tile_candidates(gemm_shape(m=1280, n=256, k=1024), geom)
    assert cands.configs[0].multicast == 2 and cands.configs[0].tiles == 10
    assert cands.l2_operand_bytes[0] == 10 * 256 * 1024
    assert cands.smem_bytes[0] == 10 * 384 * 1024
    # masked with 4 groups: one config per group, no multicast
    masked = gemm.tile_candidates(gemm_shape(m=1280, n=256, k=1024, groups=4, row_layout=ExpertRowLayout.MASKED), geom)
    assert masked.configs[0].multicast == 1 and masked.l2_operand_bytes[0] == 40 * 384 * 1024


def test_gemm_time_parts() -> None:
    # one candidate: MMA 10 us at 1e15 FLOP/s; reads 3e6 B at 1e12 = 3 us; L2 panels 2e7 B at 1e12 = 20 us (binds);
    # output 1e6 B = 1 us after the main loop; ramp 2 us -> 2 + 20 + 1 = 23 us
    one = lambda **kw: gemm.TileCandidates(configs=(), mma_flops=np.array([1e10]), l2_operand_bytes=np.array([2e7]),
                                           smem_bytes=np.array([2e7]), panel_stream_bytes=np.array([0.0]),
                                           hbm_read_bytes=np.asarray(3e6), hbm_write_bytes=np.asarray(1e6),
                                           floor_flops=np.asarray(kw.get("floor", 0.0)))
    t = gemm.gemm_time(one(), rates(mma=1e15, main=1e12, operand=1e12, ramp=2e-6))
    assert t.time_s == pytest.approx(23e-6) and gemm.MAIN_LOOP_TERMS[int(t.bound)] == "l2"
    assert (t.mma_s, t.hbm_s, t.epilogue_s) == (pytest.approx(10e-6), pytest.approx(3e-6), pytest.approx(1e-6))
    # a faster operand feed: MMA binds, 2 + 10 + 1 us
    t = gemm.gemm_time(one(), rates(mma=1e15, main=1e12, operand=1e13, ramp=2e-6))
    assert t.time_s == pytest.approx(13e-6) and gemm.MAIN_LOOP_TERMS[int(t.bound)] == "mma"
    # the floor (a busiest expert of 15 us) lifts the MMA term above the tile's own work
    t = gemm.gemm_time(one(floor=1.5e10), rates(mma=1e15, main=1e12, operand=1e13, ramp=2e-6))
    assert t.mma_s == pytest.approx(15e-6) and t.time_s == pytest.approx(18e-6)


def test_the_pick_is_the_least_main_loop_and_bytes_follow_it() -> None:
    # two candidates: (MMA 1e10, L2 4e7) and (MMA 2e10, L2 1e7) at 1e15 FLOP/s and 2e12 B/s: main loops
    # max(10, 20) = 20 us and max(20, 5) = 20 us tie -> the first; a faster feed (8e12) makes them 10 vs 20 us
    cands = gemm.TileCandidates(configs=(), mma_flops=np.array([1e10, 2e10]), l2_operand_bytes=np.array([4e7, 1e7]),
                                smem_bytes=np.array([5e7, 2e7]), panel_stream_bytes=np.zeros(2),
                                hbm_read_bytes=np.asarray(1e6), hbm_write_bytes=np.asarray(3e5),
                                floor_flops=np.asarray(0.0))
    assert int(gemm.gemm_time(cands, rates(mma=1e15, operand=2e12)).pick) == 0
    # a slower feed (1e12): 40 vs 20 us -> the second, and its bytes are the level bytes (plus the output)
    t = gemm.gemm_time(cands, rates(mma=1e15, operand=1e12))
    assert int(t.pick) == 1
    l2, smem = gemm.level_bytes(cands, t.pick)
    assert (float(l2), float(smem)) == (1e7 + 3e5, 2e7 + 3e5)
    # broadcast over a sweep of feeds: each point picks its own
    swept = gemm.gemm_time(cands, rates(mma=1e15, operand=np.array([1e12, 2e12, 8e12])))
    assert swept.pick.tolist() == [1, 0, 0]


def test_panel_stream_is_the_busiest_sms_share_of_the_distinct_weight_panels() -> None:
    geom = tile_geometry(block_m=(64,), block_n=(48,), max_tile_elements=MAX_TILE, sm_count=132)
    rate = 46e9

    def panel_s(m, n, k, groups=1, dtype=BF16):
        cands = gemm.tile_candidates(gemm_shape(m=m, n=n, k=k, groups=groups, dtype=dtype), geom)
        return float(cands.panel_stream_bytes[0]) / rate

    # 44 tiles of 64 x 48 on 132 SMs: one wave; each CTA streams its 48-column panel of k = 7168 BF16 elements
    # (688,128 B); for an n that the tiles divide evenly this is the weight bytes over (44 CTAs x 46 GB/s)
    t = panel_s(1, 44 * 48, 7168)
    assert t == pytest.approx(48 * 7168 * 2 / rate) == pytest.approx(44 * 48 * 7168 * 2 / (44 * rate))
    assert panel_s(1, 20, 100, dtype=FP8) == pytest.approx(20 * 100 / rate)  # n narrower than the tile
    assert panel_s(1, 133 * 48, 7168) == pytest.approx(2 * t)                # 133 panels: two on the busiest SM
    assert panel_s(3 * 64, 44 * 48, 7168) == pytest.approx(t)                # other m-blocks re-read from L2
    assert panel_s(1000 * 64, 44 * 48, 7168) == pytest.approx(t)
    assert panel_s(64, 44 * 48, 7168, groups=4) == pytest.approx(2 * t)      # 176 distinct panels of 4 groups


def test_per_sm_stream_caps_the_read_term_only_when_slower_than_the_chip() -> None:
    cands = gemm.TileCandidates(configs=(), mma_flops=np.array([1e9]), l2_operand_bytes=np.array([0.0]),
                                smem_bytes=np.array([0.0]), panel_stream_bytes=np.array([9e4]),
                                hbm_read_bytes=np.asarray(4e6), hbm_write_bytes=np.asarray(1e6),
                                floor_flops=np.asarray(0.0))
    base = dict(mma=1e15, main=1e12, ramp=2e-6)
    chip = gemm.gemm_time(cands, rates(**base))
    assert chip.hbm_s == pytest.approx(4e-6) and chip.panel_stream_s == 0.0   # no cap: inf rate
    capped = gemm.gemm_time(cands, rates(**base, panel=1e10))                 # 9e4 B at 1e10 B/s = 9 us
    assert capped.hbm_s == pytest.approx(9e-6) and gemm.MAIN_LOOP_TERMS[int(capped.bound)] == "hbm"
    assert capped.time_s == pytest.approx(2e-6 + 9e-6 + 1e-6)
    assert gemm.gemm_time(cands, rates(**base, panel=3e10)).time_s == pytest.approx(chip.time_s)  # 3 us < 4 us


def test_l2_banding_tile_by_hand() -> None:
    kib = 1024
    # registers 256 KiB: T^2 * 4 <= 262144 -> T = 256; a k-slab of depth >= 1 fits 228 KiB at both widths
    assert gemm.l2_banding_tile(228 * kib, 2, 256 * kib) == gemm.l2_banding_tile(228 * kib, 1, 256 * kib) == 256
    # without registers: 4 * T^2 * 2 <= 233472 -> T <= 170 -> 128
    assert gemm.l2_banding_tile(228 * kib, 2) == 128
    # registers for T = 256 but SRAM for no k-slab of a 256 tile (4 * 256 * 2 > 1 KiB): halve until one fits
    assert gemm.l2_banding_tile(1 * kib, 2, 256 * kib) == 128


def test_decode_gemm_moves_compulsory_bytes():
    m, n, k = 1, 7168, 7168
    a, b, c = m * k * 2, n * k * 1, m * n * 2
    t = gemm.banded_traffic(rows=m, groups=1, n=n, a_bytes=a, b_bytes=b, c_bytes=c, tile=256, l2_bytes=50e6)
    assert t.hbm_read + t.hbm_write == a + b + c
    # L2 -> SMs: A re-read once per column panel (ceil(7168/256) = 28), B once per row panel (1)
    assert t.l2 == a * 28 + b + c


def test_large_gemm_banding_by_hand():
    m = n = k = 8192
    a, b, c = m * k * 2, k * n * 1, m * n * 2   # BF16 A, FP8 B, BF16 C
    l2 = 50e6
    panels = 8192 // 256                           # 32 panels each way
    panel_a, panel_b = a / panels, b / panels      # 4 MiB and 2 MiB
    band_a = int((l2 - panel_b) // panel_a)        # A row panels kept in L2 while B streams
    band_b = int((l2 - panel_a) // panel_b)
    order_a = a + b * math.ceil(panels / band_a)
    order_b = b + a * math.ceil(panels / band_b)
    t = gemm.banded_traffic(rows=m, groups=1, n=n, a_bytes=a, b_bytes=b, c_bytes=c, tile=256, l2_bytes=l2)
    assert t.hbm_read == min(order_a, order_b) and t.hbm_write == c
    assert t.hbm_read + t.hbm_write > a + b + c  # neither operand fits the 50 MB L2
    # an operand that fits L2 is read once
    fits = gemm.banded_traffic(rows=4096, groups=1, n=4096, a_bytes=8e6, b_bytes=8e6, c_bytes=8e6, tile=256,
                               l2_bytes=50e6)
    assert fits.hbm_read + fits.hbm_write == 24e6


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 20000), n=st.integers(1, 20000), groups=st.integers(1, 8), sms=st.integers(1, 200))
def test_more_sms_never_need_more_padded_work(m: int, n: int, groups: int, sms: int) -> None:
    # per tile, waves = ceil(tiles / sms) cannot grow with sms, so neither can the least padded work
    kwargs = dict(m=m, n=n, groups=groups, block_m_options=BLOCK_M, block_n_options=BLOCK_N,
                  max_tile_elements=MAX_TILE)
    few = least_padded_tile(sm_count=sms, **kwargs)
    many = least_padded_tile(sm_count=sms + 1, **kwargs)
    assert many.padded_elements_per_sm <= few.padded_elements_per_sm
    assert few.waves == math.ceil(few.tiles / sms)


@settings(max_examples=80, deadline=None)
@given(m=st.integers(1, 5000), extra=st.integers(1, 600), n=st.integers(1, 8000), groups=st.integers(1, 16),
       sms=st.sampled_from([1, 4, 78, 132]))
def test_more_rows_never_less_padded_work(m: int, extra: int, n: int, groups: int, sms: int) -> None:
    # for each tile, tiles = groups * ceil(m/bm) * ceil(n/bn) cannot shrink as m grows, so its waves and
    # padded work cannot either; the least over the menu is therefore monotone in m
    kwargs = dict(n=n, groups=groups, sm_count=sms, block_m_options=BLOCK_M, block_n_options=BLOCK_N,
                  max_tile_elements=MAX_TILE)
    assert (least_padded_tile(m=m + extra, **kwargs).padded_elements_per_sm
            >= least_padded_tile(m=m, **kwargs).padded_elements_per_sm)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 5000), extra=st.integers(1, 3000), n=st.integers(1, 9000), groups=st.integers(1, 8))
def test_panel_stream_bytes_never_fall_with_more_work(m: int, extra: int, n: int, groups: int) -> None:
    """At any one menu tile, a bigger GEMM (more rows, columns or groups) never streams fewer panel bytes."""
    geom = tile_geometry(block_m=BLOCK_M, block_n=BLOCK_N, max_tile_elements=MAX_TILE, multicast=2)

    def by_tile(m_, n_, g_):
        c = gemm.tile_candidates(gemm_shape(m=m_, n=n_, k=512, groups=g_, dtype=BF16), geom)
        return {(t.block_m, t.block_n): b for t, b in zip(c.configs, c.panel_stream_bytes)}
    small = by_tile(m, n, groups)
    for bigger in (by_tile(m + extra, n, groups), by_tile(m, n + extra, groups), by_tile(m, n, groups + 1)):
        for key in small.keys() & bigger.keys():
            assert bigger[key] >= small[key]


@settings(max_examples=80, deadline=None)
@given(m=st.integers(1, 3000), n=st.integers(1, 9000), k=st.integers(1, 8192), dm=st.integers(0, 300),
       dn=st.integers(0, 300), dk=st.integers(0, 300), groups=st.integers(1, 8),
       bw=st.floats(1e11, 1e13), factor=st.floats(1.0, 8.0))
def test_gemm_time_is_monotone_in_size_and_bandwidth(m, n, k, dm, dn, dk, groups, bw, factor) -> None:
    # each candidate's terms grow with m, n and k (panels counted per full panel on the busiest SM, not bytes over
    # the tile count, which would drop when a partial tile adds a CTA), so the least main loop does too; more
    # main-memory bandwidth never slows a GEMM
    geom = tile_geometry(block_m=BLOCK_M, block_n=BLOCK_N, max_tile_elements=MAX_TILE)
    r = rates(mma=1.5e15, main=bw, operand=6e12, panel=47e9, ramp=2e-6)

    def time(mm, nn, kk, rr=r):
        return float(gemm.gemm_time(gemm.tile_candidates(gemm_shape(m=mm, n=nn, k=kk, groups=groups), geom), rr).time_s)
    assert time(m + dm, n + dn, k + dk) >= time(m, n, k) * (1 - 1e-12)
    assert time(m, n, k, rates(mma=1.5e15, main=bw * factor, operand=6e12, panel=47e9, ramp=2e-6)) <= time(m, n, k)
