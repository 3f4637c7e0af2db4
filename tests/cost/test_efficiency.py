"""Efficiency models (archsim/cost/efficiency.py): tile choice, wave quantisation, kernel time parts, fits.
Every expected value is derived in the test from the inputs."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.cost import efficiency as eff
from archsim.errors import ConfigError

# DeepGEMM's tile menu (get_best_configs): block_m 64/128/256, block_n 16..128 step 8 plus 144, 160;
# a 256-row tile only with block_n <= 128, i.e. at most 256*128 = 32768 accumulator elements.
BLOCK_M = (64, 128, 256)
BLOCK_N = tuple(range(16, 129, 8)) + (144, 160)
MAX_TILE = 256 * 128


def test_tile_choice_h800_large_gemm_with_deepgemm_wave_rule() -> None:
    # DeepGEMM's own ranking (fewest waves first) is reproduced by scoring tiles by their waves.
    # m=4096, n=7168 on 132 SMs. 256x128: 16 * 56 = 896 tiles, ceil(896/132) = 7 waves, last 896 - 6*132 = 104.
    # 6 waves would need <= 792 tiles: 16 * ceil(7168/bn) <= 792 needs bn >= 146.3, not allowed with bm=256;
    # 128x160 gives 32 * 45 = 1440 tiles (11 waves). Among 7-wave tilings only bn=128 (56 columns) exists.
    tile = eff.choose_gemm_tile(m=4096, n=7168, groups=1, sm_count=132, block_m_options=BLOCK_M,
                                block_n_options=BLOCK_N, max_tile_elements=MAX_TILE, score=lambda t: t.waves)
    assert (tile.block_m, tile.block_n, tile.tiles, tile.waves, tile.last_wave_tiles) == (256, 128, 896, 7, 104)


def test_default_rule_is_least_padded_work_not_fewest_waves() -> None:
    # m=300, n=128 on 2 SMs. 256x128: ceil(300/256) = 2 tiles, 1 wave, 256*128 = 32768 outputs per SM.
    # 64x128: ceil(300/64) = 5 tiles, 3 waves, 3 * 64*128 = 24576 per SM. Fewest waves would take 256 rows;
    # the least padded work (the least MMA time) takes 64.
    tile = eff.choose_gemm_tile(m=300, n=128, groups=1, sm_count=2, block_m_options=(64, 256),
                                block_n_options=(128,), max_tile_elements=256 * 128)
    assert (tile.block_m, tile.tiles, tile.waves, tile.padded_elements_per_sm) == (64, 5, 3, 24576)


def test_tile_choice_prefers_fullest_last_wave() -> None:
    # m=128, n=256, 4 SMs, block_m 128, block_n 64 or 128: 64 gives 4 tiles in 1 wave (last 4), 128 gives 2
    # tiles in 1 wave (last 2): same waves, fuller last wave wins -> 64.
    tile = eff.choose_gemm_tile(m=128, n=256, groups=1, sm_count=4, block_m_options=(128,),
                                block_n_options=(64, 128), max_tile_elements=128 * 128)
    assert (tile.block_n, tile.tiles, tile.waves, tile.last_wave_tiles) == (64, 4, 1, 4)


def test_partial_wave_and_partial_tile_quantisation() -> None:
    # 384 x 128 outputs in 128 x 128 tiles on 4 SMs: 3 tiles, 1 wave; padded work = 1 wave * 4 SMs * 128*128
    # outputs, useful = 384*128, efficiency = 49152 / 65536 = 0.75.
    tile = eff.choose_gemm_tile(m=384, n=128, groups=1, sm_count=4, block_m_options=(128,),
                                block_n_options=(128,), max_tile_elements=128 * 128)
    assert eff.quantisation_efficiency(m=384, n=128, groups=1, tile=tile, sm_count=4) == pytest.approx(0.75)
    assert eff.wave_quantised_flops(tile=tile, k=64, sm_count=4) == 4 * 128 * 128 * 2 * 64
    # a partial edge tile: m = 100 still costs a full 128-row tile
    edge = eff.choose_gemm_tile(m=100, n=128, groups=1, sm_count=1, block_m_options=(128,),
                                block_n_options=(128,), max_tile_elements=128 * 128)
    assert eff.quantisation_efficiency(m=100, n=128, groups=1, tile=edge, sm_count=1) == pytest.approx(100 / 128)


def test_groups_share_waves() -> None:
    # 8 groups of one 128x128 tile each on 4 SMs: 8 tiles -> 2 full waves, efficiency 1
    tile = eff.choose_gemm_tile(m=128, n=128, groups=8, sm_count=4, block_m_options=(128,),
                                block_n_options=(128,), max_tile_elements=128 * 128)
    assert (tile.tiles, tile.waves, tile.last_wave_tiles) == (8, 2, 4)
    assert eff.quantisation_efficiency(m=128, n=128, groups=8, tile=tile, sm_count=4) == 1.0


def test_no_legal_tile_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="tile"):
        eff.choose_gemm_tile(m=64, n=64, groups=1, sm_count=1, block_m_options=(128,), block_n_options=(128,),
                             max_tile_elements=64 * 64)
    with pytest.raises(ConfigError):
        eff.choose_gemm_tile(m=0, n=64, groups=1, sm_count=1, block_m_options=(64,), block_n_options=(64,),
                             max_tile_elements=4096)


def test_multicast_rule_and_shared_a_panel_reads() -> None:
    # DeepGEMM's rule: two CTAs of adjacent n-blocks share the A panel when n is a multiple of 2 * block_n
    # and the config sees one group
    assert eff.tma_multicast(width=2, n=4096, block_n=128, config_groups=1) == 2
    assert eff.tma_multicast(width=2, n=4096 + 64, block_n=128, config_groups=1) == 1   # odd n-block pair
    assert eff.tma_multicast(width=2, n=4096, block_n=128, config_groups=4) == 1        # masked, 4 groups
    assert eff.tma_multicast(width=1, n=4096, block_n=128, config_groups=1) == 1
    with pytest.raises(ConfigError, match="gemm_multicast"):
        eff.tma_multicast(width=0, n=4096, block_n=128, config_groups=1)
    # 10 tiles of 256 x 128 over k = 1024, 1-byte elements: (256 + 128) * 1024 per tile alone,
    # (256 / 2 + 128) * 1024 when the A panel is read once per pair
    tile = eff.TileChoice(block_m=256, block_n=128, tiles=10, waves=1, last_wave_tiles=10)
    assert eff.tile_operand_bytes(tile=tile, k=1024, elem_bytes=1) == 10 * 384 * 1024
    assert eff.tile_operand_bytes(tile=tile, k=1024, elem_bytes=1, multicast=2) == 10 * 256 * 1024
    with pytest.raises(ConfigError):
        eff.tile_operand_bytes(tile=tile, k=1024, elem_bytes=1, multicast=0)


def test_tiled_kernel_time_parts() -> None:
    # compute 10 us; inputs 3e6 B at 1e12 B/s = 3 us; operands 2e7 B at 1e12 = 20 us (L2-bound);
    # output 1e6 B = 1 us; ramp 2 us -> 2 + 20 + 1 = 23 us
    t = eff.tiled_kernel_time(compute_s=10e-6, input_bytes=3e6, output_bytes=1e6, bandwidth_bytes_per_s=1e12,
                              ramp_s=2e-6, operand_bytes=2e7, operand_bandwidth_bytes_per_s=1e12)
    assert t.time_s == pytest.approx(23e-6)
    assert t.bound == "l2"
    t2 = eff.tiled_kernel_time(compute_s=10e-6, input_bytes=3e6, output_bytes=1e6, bandwidth_bytes_per_s=1e12,
                               ramp_s=0.0)
    assert (t2.time_s, t2.bound) == (pytest.approx(11e-6), "compute")
    t3 = eff.streaming_kernel_time(compute_s=1e-6, bytes_moved=5e6, bandwidth_bytes_per_s=1e12, ramp_s=1e-6)
    assert (t3.time_s, t3.bound) == (pytest.approx(6e-6), "memory")


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 20000), n=st.integers(1, 20000), groups=st.integers(1, 8), sms=st.integers(1, 200))
def test_more_sms_never_need_more_padded_work(m: int, n: int, groups: int, sms: int) -> None:
    # per tile, waves = ceil(tiles / sms) cannot grow with sms, so neither can the least padded work
    kwargs = dict(m=m, n=n, groups=groups, block_m_options=BLOCK_M, block_n_options=BLOCK_N,
                  max_tile_elements=MAX_TILE)
    few = eff.choose_gemm_tile(sm_count=sms, **kwargs)
    many = eff.choose_gemm_tile(sm_count=sms + 1, **kwargs)
    assert many.padded_elements_per_sm <= few.padded_elements_per_sm
    assert few.waves == math.ceil(few.tiles / sms)
    assert 0 < eff.quantisation_efficiency(m=m, n=n, groups=groups, tile=few, sm_count=sms) <= 1


@settings(max_examples=80, deadline=None)
@given(m=st.integers(1, 5000), extra=st.integers(1, 600), n=st.integers(1, 8000), groups=st.integers(1, 16),
       sms=st.sampled_from([1, 4, 78, 132]))
def test_more_rows_never_less_padded_work(m: int, extra: int, n: int, groups: int, sms: int) -> None:
    # for each tile, tiles = groups * ceil(m/bm) * ceil(n/bn) cannot shrink as m grows, so its waves and
    # padded work cannot either; the least over the menu is therefore monotone in m
    kwargs = dict(n=n, groups=groups, sm_count=sms, block_m_options=BLOCK_M, block_n_options=BLOCK_N,
                  max_tile_elements=MAX_TILE)
    small = eff.choose_gemm_tile(m=m, **kwargs)
    big = eff.choose_gemm_tile(m=m + extra, **kwargs)
    assert big.padded_elements_per_sm >= small.padded_elements_per_sm


@settings(max_examples=60, deadline=None)
@given(compute=st.floats(0, 1e-2), inputs=st.floats(0, 1e9), outputs=st.floats(0, 1e9),
       bw=st.floats(1e9, 1e13), factor=st.floats(1.0, 10.0))
def test_more_bandwidth_never_slower(compute: float, inputs: float, outputs: float, bw: float,
                                     factor: float) -> None:
    slow = eff.tiled_kernel_time(compute_s=compute, input_bytes=inputs, output_bytes=outputs,
                                 bandwidth_bytes_per_s=bw, ramp_s=1e-6)
    fast = eff.tiled_kernel_time(compute_s=compute, input_bytes=inputs, output_bytes=outputs,
                                 bandwidth_bytes_per_s=bw * factor, ramp_s=1e-6)
    assert fast.time_s <= slow.time_s * (1 + 1e-12)


def test_panel_stream_time_is_the_busiest_sms_share_of_the_distinct_weight_panels() -> None:
    # 44 tiles of 64 x 48 on 132 SMs: one wave; each CTA streams its 48-column weight panel of k = 7168 BF16
    # elements (688,128 B) at 46 GB/s; for an n that the tiles divide evenly this is the compulsory weight
    # bytes over (44 CTAs x 46 GB/s), i.e. main memory at min(chip, active CTAs x per-SM rate)
    tile = eff.choose_gemm_tile(m=1, n=44 * 48, groups=1, sm_count=132, block_m_options=(64,),
                                block_n_options=(48,), max_tile_elements=MAX_TILE)
    assert (tile.tiles, tile.waves) == (44, 1)
    common = dict(groups=1, sm_count=132)
    t = eff.panel_stream_time(tile=tile, n=44 * 48, k=7168, elem_bytes=2, sm_stream_bytes_per_s=46e9, **common)
    assert t == pytest.approx(48 * 7168 * 2 / 46e9)
    assert t == pytest.approx(44 * 48 * 7168 * 2 / (44 * 46e9))
    # n narrower than the tile: the one CTA streams only the n columns there are
    narrow = eff.choose_gemm_tile(m=1, n=20, groups=1, sm_count=132, block_m_options=(64,), block_n_options=(48,),
                                  max_tile_elements=MAX_TILE)
    assert eff.panel_stream_time(tile=narrow, n=20, k=100, elem_bytes=1, sm_stream_bytes_per_s=1e9,
                                 **common) == pytest.approx(20 * 100 / 1e9)
    # 133 distinct panels on 132 SMs: the busiest SM streams two, one after the other
    two = eff.choose_gemm_tile(m=1, n=133 * 48, groups=1, sm_count=132, block_m_options=(64,),
                               block_n_options=(48,), max_tile_elements=MAX_TILE)
    assert two.waves == 2
    assert eff.panel_stream_time(tile=two, n=133 * 48, k=7168, elem_bytes=2, sm_stream_bytes_per_s=46e9,
                                 **common) == pytest.approx(2 * t)
    # three m-blocks of the 44 panels: 132 tiles, but the weight panels are read from main memory once (the
    # other m-blocks re-read them from L2), so the per-SM stream is that of one m-block
    tall = eff.choose_gemm_tile(m=3 * 64, n=44 * 48, groups=1, sm_count=132, block_m_options=(64,),
                                block_n_options=(48,), max_tile_elements=MAX_TILE)
    assert (tall.tiles, tall.waves) == (132, 1)
    assert eff.panel_stream_time(tile=tall, n=44 * 48, k=7168, elem_bytes=2, sm_stream_bytes_per_s=46e9,
                                 **common) == pytest.approx(t)
    # 1000 m-blocks: 44,000 tiles in 334 waves, still 44 distinct panels, one per SM at most
    huge = eff.choose_gemm_tile(m=1000 * 64, n=44 * 48, groups=1, sm_count=132, block_m_options=(64,),
                                block_n_options=(48,), max_tile_elements=MAX_TILE)
    assert huge.waves == 334
    assert eff.panel_stream_time(tile=huge, n=44 * 48, k=7168, elem_bytes=2, sm_stream_bytes_per_s=46e9,
                                 **common) == pytest.approx(t)
    # groups: each group has its own weights, 4 x 44 = 176 distinct panels on 132 SMs -> two on the busiest
    grouped = eff.choose_gemm_tile(m=64, n=44 * 48, groups=4, sm_count=132, block_m_options=(64,),
                                   block_n_options=(48,), max_tile_elements=MAX_TILE)
    assert eff.panel_stream_time(tile=grouped, n=44 * 48, k=7168, elem_bytes=2, sm_stream_bytes_per_s=46e9,
                                 groups=4, sm_count=132) == pytest.approx(2 * t)
    # no per-SM rate: no cap
    assert eff.panel_stream_time(tile=tile, n=2112, k=7168, elem_bytes=2, sm_stream_bytes_per_s=None,
                                 **common) == 0.0


@pytest.mark.parametrize("rate", [0.0, -1e9])
def test_panel_stream_time_rejects_a_non_positive_rate(rate: float) -> None:
    tile = eff.choose_gemm_tile(m=1, n=64, groups=1, sm_count=132, block_m_options=BLOCK_M,
                                block_n_options=BLOCK_N, max_tile_elements=MAX_TILE)
    with pytest.raises(ConfigError, match="sm_stream_bandwidth"):
        eff.panel_stream_time(tile=tile, n=64, k=64, elem_bytes=1, sm_stream_bytes_per_s=rate, groups=1,
                              sm_count=132)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 5000), extra=st.integers(1, 3000), n=st.integers(1, 9000), groups=st.integers(1, 8))
def test_panel_stream_time_never_falls_with_more_work(m: int, extra: int, n: int, groups: int) -> None:
    """The kernel model's menu entries: a bigger GEMM (more rows, columns or groups) never streams its
    weight panels faster at any one menu tile."""
    kwargs = dict(k=512, elem_bytes=2, sm_count=132, block_m_options=BLOCK_M, block_n_options=BLOCK_N,
                  max_tile_elements=MAX_TILE, multicast_width=2, config_groups=1, sm_stream_bytes_per_s=47e9)
    def by_tile(**shape):
        return {(e.tile.block_m, e.tile.block_n): e.stream_s
                for e in eff.gemm_tile_menu(**shape, **kwargs)}
    small = by_tile(m=m, n=n, groups=groups)
    for bigger in (by_tile(m=m + extra, n=n, groups=groups), by_tile(m=m, n=n + extra, groups=groups),
                   by_tile(m=m, n=n, groups=groups + 1)):
        for key in small.keys() & bigger.keys():
            assert bigger[key] >= small[key] * (1 - 1e-12)


def test_stream_time_caps_the_memory_term_only_when_slower_than_the_chip() -> None:
    base = dict(compute_s=1e-6, input_bytes=4e6, output_bytes=1e6, bandwidth_bytes_per_s=1e12, ramp_s=2e-6)
    chip = eff.tiled_kernel_time(**base)
    assert chip.memory_s == pytest.approx(4e-6) and chip.stream_s == 0.0
    capped = eff.tiled_kernel_time(**base, stream_s=9e-6)
    assert capped.memory_s == pytest.approx(9e-6) and capped.bound == "memory"
    assert capped.time_s == pytest.approx(2e-6 + 9e-6 + 1e-6)
    assert eff.tiled_kernel_time(**base, stream_s=3e-6).time_s == pytest.approx(chip.time_s)


@settings(max_examples=80, deadline=None)
@given(m=st.integers(1, 3000), n=st.integers(1, 9000), k=st.integers(1, 8192), dm=st.integers(0, 300),
       dn=st.integers(0, 300), dk=st.integers(0, 300), groups=st.integers(1, 8))
def test_tiling_with_per_sm_stream_is_monotone(m: int, n: int, k: int, dm: int, dn: int, dk: int,
                                               groups: int) -> None:
    # the tile is the menu's least max(MMA, L2 feed, weight panels at the per-SM rate); each term grows with
    # m, n and k for every tile (bytes over the tile count would not: a partial tile adds a CTA), so the
    # least does too
    kwargs = dict(groups=groups, elem_bytes=1, sm_count=132, block_m_options=BLOCK_M, block_n_options=BLOCK_N,
                  max_tile_elements=MAX_TILE, multicast_width=1, config_groups=1, compute_rate=1.5e15,
                  operand_bandwidth_bytes_per_s=6e12, sm_stream_bytes_per_s=47e9)

    def main_loop(mm: int, nn: int, kk: int) -> float:
        t = eff.tile_gemm(m=mm, n=nn, k=kk, **kwargs)
        return max(t.time_flops / 1.5e15, t.operand_bytes / 6e12, t.stream_s)

    assert main_loop(m + dm, n + dn, k + dk) >= main_loop(m, n, k) * (1 - 1e-12)
