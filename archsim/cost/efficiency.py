"""Named efficiency models: why a kernel reaches less than the roofline, each effect a pure function of
hardware fields (SM count, clocks, tile shapes, ramp time) and the kernel's shape.

Effects modelled (docs/fidelity.md gives the derivations and the validation against published kernels):
- **clock under load**: tensor peaks are quoted at the boost clock; under sustained MMA load the chip
  throttles, so the sustained peak is ``peak * clock_under_load / clock_boost``. Attention applies it
  (its ``attention_mma_fraction`` is measured against the throttled peak); a GEMM's fraction below is
  measured against the quoted peak and already contains it;
- **main-loop fraction**: the fraction of the peak a full tile's steady main loop issues (MMA pipeline
  bubbles, scale promotion, throttling): the matrix engine's ``achievable_fraction``;
- **wave quantisation and partial tiles**: a GEMM is cut into block_m x block_n output tiles that run
  in waves of ``sm_count``; a partial last wave or a partial edge tile costs a full tile's time. The
  tile is the one of the library's menu with the least modelled time (an autotuned library runs the
  fastest config per shape), which keeps time monotone in the GEMM's size;
- **small-M GEMMs are bandwidth-bound**: their time is the compulsory bytes over achievable bandwidth;
- **operand feed from L2**: every tile streams its A and B panels from L2, so small tiles can be bound
  by L2 bandwidth rather than by MMA or HBM; TMA multicast lets the CTAs of a cluster share one read of
  the A panel, where the library's rule allows it (``tma_multicast``); a partial m-block counts full
  tiles' rows (``tile_operand_bytes`` says where that overstates the reads);
- **per-SM streaming**: one SM's loads sustain only ``sm_stream_bandwidth`` from main memory, so the
  distinct weight (B) panels, k x block_n each, spread over the SMs, stream no faster than that: a GEMM
  of few tiles cannot reach the chip's bandwidth (``panel_stream_time``);
- **output epilogue**: the output tile is stored after the main loop, not overlapped with it;
- **kernel ramp**: a fixed time per kernel (first loads in flight before the first MMA, the last
  store's drain), measured as the intercept of time against bytes for memory-bound kernels.
Collectives' latency term and size-dependent bus efficiency live in ``cost/collectives.py``
(Hockney's n_half on each link).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import ceil
from typing import Callable, Iterable

import numpy as np

from archsim.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class TileChoice:
    """The output tiling of a (grouped) GEMM: tile shape, tile count and waves over the SMs."""

    block_m: int
    block_n: int
    tiles: int
    waves: int
    last_wave_tiles: int

    @property
    def padded_elements_per_sm(self) -> int:
        """Output elements one SM computes over all waves, partial tiles and idle SMs counted in full."""
        return self.waves * self.block_m * self.block_n


def choose_gemm_tile(*, m: int, n: int, groups: int, sm_count: int, block_m_options: Iterable[int],
                     block_n_options: Iterable[int], max_tile_elements: int,
                     score: Callable[[TileChoice], float] | None = None) -> TileChoice:
    """The menu tile of least ``score`` for ``groups`` GEMMs of m x n outputs on ``sm_count`` SMs: a helper
    for a tile without rates (tests build tiles with it). The tile a tuned library runs, the one the models
    price, is ``tile_gemm``'s (``gemm_tile_menu`` + ``pick_tiling``); the rate-free busiest-expert floor is
    the least wave-quantised work over that menu (``cost/traffic.py`` ``quantised_flops``), which equals
    this function's default pick.

    Rule: among tiles of at most ``max_tile_elements`` outputs (the accumulator must fit in registers),
    take the one with the least ``score`` (the caller's modelled main-loop time; by default the padded
    outputs per SM, ``waves * block_m * block_n``, which the MMA time is proportional to); on a tie the
    fewest waves, then the fullest last wave, then the larger block_n (fewer, wider tiles re-read A less).
    Each tile's score is monotone in m (more rows never mean fewer tiles), so the minimum over the menu
    is monotone too: a bigger GEMM never gets a faster tiling. (DeepGEMM's own ``get_best_configs``
    ranks by waves first; that rule is not monotone: a DeepSeek-V3 o_absorb at m = 179 padded more
    work than at m = 257.)
    """
    if m < 1 or n < 1 or groups < 1 or sm_count < 1:
        raise ConfigError(None, "gemm.shape", "m, n, groups and sm_count >= 1", (m, n, groups, sm_count))
    score = score or (lambda tile: float(tile.padded_elements_per_sm))
    tiles = _menu_tiles(groups=groups, m=m, n=n, sm_count=sm_count, block_m_options=tuple(block_m_options),
                        block_n_options=tuple(block_n_options), max_tile_elements=max_tile_elements)
    return min(tiles, key=lambda t: (score(t), t.waves, -t.last_wave_tiles, -t.block_n))  # first minimum wins


def _menu_tiles(*, groups: int, m: int, n: int, sm_count: int, block_m_options: tuple[int, ...],
                block_n_options: tuple[int, ...], max_tile_elements: int) -> list[TileChoice]:
    """Every tiling of the menu whose accumulator fits (block_m x block_n <= max_tile_elements), in menu
    order; a menu with none is a ConfigError."""
    out = []
    for bm in block_m_options:
        for bn in block_n_options:
            if bm * bn > max_tile_elements:
                continue
            tiles = groups * ceil(m / bm) * ceil(n / bn)
            waves = ceil(tiles / sm_count)
            out.append(TileChoice(block_m=bm, block_n=bn, tiles=tiles, waves=waves,
                                  last_wave_tiles=tiles - (waves - 1) * sm_count))
    if not out:
        raise ConfigError(None, "kernel.gemm_block", f"a tile of at most {max_tile_elements} outputs",
                          (block_m_options, block_n_options))
    return out


def wave_quantised_flops(*, tile: TileChoice, k: int, sm_count: int) -> float:
    """FLOPs-equivalent of a tiled GEMM's compute time: every SM runs ``waves`` full tiles of depth k,
    so the chip is busy for waves * sm_count * 2 * block_m * block_n * k FLOPs' worth of MMA time."""
    return float(tile.padded_elements_per_sm) * sm_count * 2 * k


def quantisation_efficiency(*, m: int, n: int, groups: int, tile: TileChoice, sm_count: int) -> float:
    """Useful outputs over padded outputs: 1 for a perfectly divided GEMM, lower with a partial wave or
    partial edge tiles."""
    return groups * m * n / (tile.padded_elements_per_sm * sm_count)


@dataclass(frozen=True, kw_only=True)
class KernelTime:
    """A kernel's time split into its named parts; ``bound`` names the part that set the main loop."""

    time_s: float
    bound: str
    ramp_s: float
    compute_s: float
    memory_s: float
    epilogue_s: float
    operand_s: float = 0.0
    stream_s: float = 0.0


def panel_stream_time(*, tile: TileChoice, n: int, k: int, elem_bytes: float,
                      sm_stream_bytes_per_s: float | None, groups: int, sm_count: int) -> float:
    """Least time the tiles take to stream their weight (B) panels from main memory when one SM's loads
    sustain only ``sm_stream_bytes_per_s``: the ``groups x ceil(n / block_n)`` distinct panels (k x block_n,
    or k x n when n is narrower than the tile) are spread over the ``sm_count`` SMs, the busiest SM streaming
    ``ceil(distinct / sm_count)`` of them, so ``ceil(distinct / sm_count) x min(block_n, n) x k x elem_bytes /
    rate``. The other m-blocks' tiles re-read the same panels from L2 (the operand feed, ``tile_operand_bytes``),
    not from main memory.

    For one m-block (m <= block_m) and one wave of equal tiles this is the compulsory weight bytes over (tiles x
    the per-SM rate), i.e. main memory at min(chip, active CTAs x per-SM rate) for a GEMM whose few tiles cannot
    occupy the chip. It is counted per full panel (the busiest SM), not as bytes over the tile count, which
    would drop each time a partial tile adds a CTA: so it is monotone in n and k (and does not depend on m).
    0 when the chip has no per-SM rate (``kernel.sm_stream_bandwidth`` absent)."""
    if sm_stream_bytes_per_s is None:
        return 0.0
    if not sm_stream_bytes_per_s > 0:
        raise ConfigError(None, "kernel.sm_stream_bandwidth", "a positive bandwidth", sm_stream_bytes_per_s)
    if groups < 1 or sm_count < 1:
        raise ConfigError(None, "gemm.shape", "groups and sm_count >= 1", (groups, sm_count))
    panels_per_sm = ceil(groups * ceil(n / tile.block_n) / sm_count)
    return panels_per_sm * min(tile.block_n, n) * k * elem_bytes / sm_stream_bytes_per_s


def tiled_kernel_time(*, compute_s: float, input_bytes: float, output_bytes: float, bandwidth_bytes_per_s: float,
                      ramp_s: float, operand_bytes: float = 0.0,
                      operand_bandwidth_bytes_per_s: float = float("inf"), stream_s: float = 0.0) -> KernelTime:
    """Time of a tiled kernel whose main loop overlaps MMA with operand loads and then stores its output.

    ``time = ramp + max(compute, max(inputs / bw, stream), operands / l2_bw) + outputs / bw``: the main loop
    is bound by the slowest of MMA, compulsory input streaming from main memory (no faster than the chip's
    bandwidth, nor than ``stream_s``, the tiles' weight panels at one SM's streaming rate,
    ``panel_stream_time``), and the operand panels every tile streams from L2 (``operand_bytes``); the
    output store (epilogue) follows it.
    """
    if bandwidth_bytes_per_s <= 0 or operand_bandwidth_bytes_per_s <= 0:
        raise ConfigError(None, "memory.bandwidth", "positive bandwidths",
                          (bandwidth_bytes_per_s, operand_bandwidth_bytes_per_s))
    t = tiled_time_terms(compute_s=compute_s, input_bytes=input_bytes, output_bytes=output_bytes,
                         bandwidth_bytes_per_s=bandwidth_bytes_per_s, ramp_s=ramp_s, operand_bytes=operand_bytes,
                         operand_bandwidth_bytes_per_s=operand_bandwidth_bytes_per_s, stream_s=stream_s)
    return KernelTime(time_s=float(t.time_s), bound=TILED_BOUNDS[int(t.bound_index)], ramp_s=ramp_s,
                      compute_s=compute_s, memory_s=float(t.memory_s), epilogue_s=float(t.epilogue_s),
                      operand_s=float(t.operand_s), stream_s=stream_s)


TILED_BOUNDS = ("compute", "memory", "l2")  # the main-loop terms of a tiled kernel, in tie-break order


@dataclass(frozen=True, kw_only=True)
class TiledTerms:
    """The terms of ``tiled_time_terms``, scalars or numpy arrays of one shape; ``bound_index`` indexes
    ``TILED_BOUNDS``."""

    time_s: np.ndarray
    bound_index: np.ndarray
    memory_s: np.ndarray
    operand_s: np.ndarray
    epilogue_s: np.ndarray


def tiled_time_terms(*, compute_s, input_bytes, output_bytes, bandwidth_bytes_per_s, ramp_s, operand_bytes=0.0,
                     operand_bandwidth_bytes_per_s=float("inf"), stream_s=0.0) -> TiledTerms:
    """The one implementation of a tiled GEMM's time, element-wise over numpy arrays (a graph's ops and a
    sweep's hardware points broadcast together) or on plain floats (``tiled_kernel_time``, the kernel model):
    ``ramp + max(compute, max(inputs / bw, stream), operands / operand_bw) + outputs / bw``, the first maximum
    binding (compute, then memory, then the L2 operand feed); ``stream_s`` is the weight panels' time at one
    SM's streaming rate (``panel_stream_time``, 0 without one). Bandwidths must be positive (callers check)."""
    memory_s = np.maximum(np.divide(input_bytes, bandwidth_bytes_per_s), stream_s)
    operand_s = np.divide(operand_bytes, operand_bandwidth_bytes_per_s)
    epilogue_s = np.divide(output_bytes, bandwidth_bytes_per_s)
    compute_s, memory_s, operand_s = np.broadcast_arrays(compute_s, memory_s, operand_s)
    stacked = np.stack((compute_s, memory_s, operand_s), axis=-1)
    bound_index = np.argmax(stacked, axis=-1)  # first maximum wins ties
    main = np.max(stacked, axis=-1)
    return TiledTerms(time_s=ramp_s + main + epilogue_s, bound_index=bound_index, memory_s=memory_s,
                      operand_s=operand_s, epilogue_s=epilogue_s)


@dataclass(frozen=True, kw_only=True)
class GemmTiling:
    """How a tuned library runs a (grouped) GEMM: its tile, the TMA multicast of the A panel, the
    wave-quantised FLOPs-equivalent of its MMA time, the bytes its tiles stream from L2 and the time its
    weight panels take at one SM's streaming rate (``panel_stream_time``; 0 without one)."""

    tile: TileChoice
    multicast: int
    time_flops: float
    operand_bytes: float
    stream_s: float = 0.0


def tile_gemm(*, groups: int, m: int, n: int, k: int, elem_bytes: float, sm_count: int,
              block_m_options: Iterable[int], block_n_options: Iterable[int], max_tile_elements: int,
              multicast_width: int, config_groups: int, compute_rate: float,
              operand_bandwidth_bytes_per_s: float, sm_stream_bytes_per_s: float | None = None) -> GemmTiling:
    """The tiling of ``groups`` GEMMs of m x n x k (``elem_bytes`` per input element) that the kernel model
    and the graph's pricing share: the menu tile with the least main-loop time, max(wave-quantised MMA at
    ``compute_rate``, tile operand panels at ``operand_bandwidth_bytes_per_s`` with TMA multicast where
    ``tma_multicast`` allows it for ``config_groups``, weight panels at ``sm_stream_bytes_per_s`` per SM when
    given), as an autotuned library picks its fastest config. Each term is monotone in m, n and k for every
    menu tile, so the least is too (and so is the kernel's time, whose other terms do not depend on the tile).
    It is the ``gemm_tile_menu`` entry ``pick_tiling`` picks: the rule the graph's array pricing applies."""
    menu = gemm_tile_menu(groups=groups, m=m, n=n, k=k, elem_bytes=elem_bytes, sm_count=sm_count,
                          block_m_options=block_m_options, block_n_options=block_n_options,
                          max_tile_elements=max_tile_elements, multicast_width=multicast_width,
                          config_groups=config_groups, sm_stream_bytes_per_s=sm_stream_bytes_per_s)
    pick = pick_tiling(np.array([e.time_flops for e in menu]), np.array([e.operand_bytes for e in menu]),
                       np.array([e.stream_s for e in menu]), compute_rate, operand_bandwidth_bytes_per_s)
    return menu[int(pick)]


def tma_multicast(*, width: int, n: int, block_n: int, config_groups: int) -> int:
    """How many CTAs share one TMA load of an A panel (block_m x k): ``width`` when the library's rule
    allows it, else 1. Rule (DeepGEMM ``get_best_configs``, docs/fidelity.md): the two CTAs of a cluster
    take adjacent n-blocks of the same m-block, so n must be a multiple of ``width * block_n``; and the
    kernel's config must see one group (``config_groups``): a dense or contiguous-layout GEMM, not a
    masked grouped GEMM of several groups."""
    if width < 1:
        raise ConfigError(None, "kernel.gemm_multicast", "an integer >= 1", width)
    if width > 1 and config_groups == 1 and n % (width * block_n) == 0:
        return width
    return 1


def tile_operand_bytes(*, tile: TileChoice, k: int, elem_bytes: float, multicast: int = 1) -> float:
    """Bytes all tiles stream from L2 into shared memory: each tile reads its A panel (block_m x k) and its
    B panel (k x block_n); with TMA multicast ``multicast`` CTAs share one read of the A panel.

    A partial m-block counts block_m rows. For a grouped GEMM those rows are real memory (contiguous layout:
    each group padded to whole tiles; masked layout: each group allocated at the largest group's rows). For a
    dense GEMM TMA zero-fills the rows past m without reading them, so this overstates a decode GEMM's L2
    reads; counting the real rows was tried and makes H200 small-m GEMMs predict faster still (docs/fidelity.md,
    "GEMM operand bytes"), so it waits for the per-CTA load latency of narrow tiles to be modelled."""
    if multicast < 1:
        raise ConfigError(None, "kernel.gemm_multicast", "an integer >= 1", multicast)
    return float(tile.tiles) * (tile.block_m / multicast + tile.block_n) * k * elem_bytes


def streaming_kernel_time(*, compute_s: float, bytes_moved: float, bandwidth_bytes_per_s: float,
                          ramp_s: float, l2_bytes: float = 0.0,
                          l2_bandwidth_bytes_per_s: float = float("inf")) -> KernelTime:
    """Time of a kernel that overlaps all its traffic with its compute (attention, elementwise):
    ``ramp + max(compute, bytes / bw, l2_bytes / l2_bw)`` (``l2_bytes``: re-reads served by L2)."""
    if bandwidth_bytes_per_s <= 0 or l2_bandwidth_bytes_per_s <= 0:
        raise ConfigError(None, "memory.bandwidth", "positive bandwidths",
                          (bandwidth_bytes_per_s, l2_bandwidth_bytes_per_s))
    memory_s = bytes_moved / bandwidth_bytes_per_s
    l2_s = l2_bytes / l2_bandwidth_bytes_per_s
    bound, main = max((("compute", compute_s), ("memory", memory_s), ("l2", l2_s)), key=lambda c: c[1])
    return KernelTime(time_s=ramp_s + main, bound=bound, ramp_s=ramp_s, compute_s=compute_s,
                      memory_s=memory_s, epilogue_s=0.0, operand_s=l2_s)


def gemm_tile_menu(*, groups: int, m: int, n: int, k: int, elem_bytes: float, sm_count: int,
                   block_m_options: Iterable[int], block_n_options: Iterable[int], max_tile_elements: int,
                   multicast_width: int, config_groups: int,
                   sm_stream_bytes_per_s: float | None = None) -> tuple[GemmTiling, ...]:
    """Every tiling ``tile_gemm`` chooses from, as ``GemmTiling`` entries in ``choose_gemm_tile``'s tie-break
    order (fewest waves, fullest last wave, larger block_n, then menu order), less those that can never be
    the first of least main-loop time at any positive rates (an earlier entry no worse on MMA FLOPs, operand
    bytes and panel streaming time, or a later one better on all three). The tile ``tile_gemm`` picks is
    then the first entry of least ``main_loop_s`` (``pick_tiling``), which the graph's array pricing
    evaluates at every hardware point of a sweep."""
    if m < 1 or n < 1 or groups < 1 or sm_count < 1:
        raise ConfigError(None, "gemm.shape", "m, n, groups and sm_count >= 1", (m, n, groups, sm_count))
    # memoised: projections, sweeps and serving grids price the same GEMM shapes over and over
    return _gemm_tile_menu(groups, m, n, k, elem_bytes, sm_count, tuple(block_m_options), tuple(block_n_options),
                           max_tile_elements, multicast_width, config_groups, sm_stream_bytes_per_s)


@lru_cache(maxsize=65536)
def _gemm_tile_menu(groups: int, m: int, n: int, k: int, elem_bytes: float, sm_count: int,
                    block_m_options: tuple[int, ...], block_n_options: tuple[int, ...], max_tile_elements: int,
                    multicast_width: int, config_groups: int,
                    sm_stream_bytes_per_s: float | None) -> tuple[GemmTiling, ...]:
    entries = []
    for tile in _menu_tiles(groups=groups, m=m, n=n, sm_count=sm_count, block_m_options=block_m_options,
                            block_n_options=block_n_options, max_tile_elements=max_tile_elements):
        width = tma_multicast(width=multicast_width, n=n, block_n=tile.block_n, config_groups=config_groups)
        entries.append(GemmTiling(
            tile=tile, multicast=width, time_flops=wave_quantised_flops(tile=tile, k=k, sm_count=sm_count),
            operand_bytes=tile_operand_bytes(tile=tile, k=k, elem_bytes=elem_bytes, multicast=width),
            stream_s=panel_stream_time(tile=tile, n=n, k=k, elem_bytes=elem_bytes, groups=groups,
                                       sm_count=sm_count, sm_stream_bytes_per_s=sm_stream_bytes_per_s)))
    entries.sort(key=lambda e: (e.tile.waves, -e.tile.last_wave_tiles, -e.tile.block_n))  # stable: menu order

    # terms[i] = (MMA FLOPs, operand bytes, panel streaming s); entry i can never be first of least time when
    # an earlier entry is no worse on all three or a later one strictly better on all three (pairwise, numpy)
    terms = np.array([(e.time_flops, e.operand_bytes, e.stream_s) for e in entries])
    no_worse = np.all(terms[:, None, :] <= terms[None, :, :], axis=2)     # [j, i]: j no worse than i
    better = np.all(terms[:, None, :] < terms[None, :, :], axis=2)        # [j, i]: j strictly better than i
    order = np.arange(len(entries))
    earlier, later = order[:, None] < order[None, :], order[:, None] > order[None, :]
    never_first = np.any((no_worse & earlier) | (better & later), axis=0)
    return tuple(e for e, dropped in zip(entries, never_first) if not dropped)


def main_loop_s(time_flops, operand_bytes, stream_s, compute_rate, operand_bandwidth_bytes_per_s):
    """The tile-dependent part of ``tiled_time_terms``, element-wise over numpy arrays: max(wave-quantised
    MMA, L2 operand panels, weight panels at one SM's streaming rate), ``tile_gemm``'s score."""
    return np.maximum(np.maximum(np.divide(time_flops, compute_rate),
                                 np.divide(operand_bytes, operand_bandwidth_bytes_per_s)), stream_s)


def pick_tiling(time_flops, operand_bytes, stream_s, compute_rate, operand_bandwidth_bytes_per_s):
    """Index along the last axis of the ``gemm_tile_menu`` entry an autotuned library runs: the first of least
    ``main_loop_s``. Arrays broadcast, so a graph's GEMMs and a sweep's hardware points pick at once."""
    return np.argmin(main_loop_s(time_flops, operand_bytes, stream_s, compute_rate, operand_bandwidth_bytes_per_s),
                     axis=-1)
