"""One (grouped) GEMM from op to time: Op -> GemmShape -> TileCandidates (x Geometry) -> GemmTime (x rates).

``gemm_time`` broadcasts candidates against rates, so one op (cost/opcost.py), a graph or a sweep (cost/work.py)
and the kernel API (cost/kernel_model.py) all price a GEMM with it; ``level_bytes`` gives the L2 and shared-memory
bytes at the tile it picks. docs/cost-model.md walks the path; docs/fidelity.md derives each effect.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from archsim.cost import bound
from archsim.cost.geometry import Geometry
from archsim.cost.rates import ChipRates, engine_dtype_name
from archsim.dtypes import BITS_PER_BYTE, FP32, DType
from archsim.errors import ConfigError
from archsim.graph.op import ExpertRowLayout, Op

GEMM_KINDS = ("gemm", "grouped_gemm")
MAIN_LOOP_TERMS = ("mma", "hbm", "l2")  # what bounds the main loop, in tie-break order: GemmTime.bound indexes this


# -- the shape: built once from an Op (or by the kernel API) ---------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class GemmShape:
    """A (grouped) GEMM as pricing sees it: ``groups_touched`` GEMMs of [rows, k] x [k, n] in one kernel, whose
    tiles share the waves. A dense GEMM is one group."""

    rows_total: float            # rows over all groups (an expectation; tiles count whole rows)
    groups_touched: float        # expected groups with rows, whose weights B holds (1 for a dense GEMM)
    busiest_group_rows: float    # rows of the busiest group, whose GEMM alone bounds the kernel; 0: none (dense)
    n: int
    k: int
    row_layout: ExpertRowLayout
    mma_dtype: DType             # the format the MMA runs in (the op's compute dtype)
    a_elem_bytes: float          # bytes per A element staged on chip (the MMA's format)
    b_elem_bytes: float          # bytes per B element staged on chip (``b_elem_bytes``: weight-only formats packed)
    a_bytes: float               # main-memory bytes of A (activations), B (the touched groups' weights) and C
    b_bytes: float
    c_bytes: float
    flops: float                 # useful FLOPs
    # operands that overflow L2 are re-read from main memory once per band (graph ops); False: every operand is
    # read once (the kernel API, which prices the benchmarks' compulsory bytes)
    l2_banding: bool = True

    @property
    def groups(self) -> int:
        """GEMMs whose tiles the kernel runs: the touched groups, rounded (at least one)."""
        return max(1, round(self.groups_touched))

    @property
    def rows_per_group(self) -> float:
        """Mean rows of a touched group (0 when none is touched)."""
        return self.rows_total / self.groups_touched if self.groups_touched > 0 else 0.0

    @staticmethod
    def of(op: Op) -> "GemmShape":
        """The shape of a ``gemm`` or ``grouped_gemm`` op: its typed attrs and operand bytes (weights and KV-cache
        reads are the B operand, other reads A, writes C). On chip A is in the compute dtype (an FP8 GEMM's
        activations are quantised to it); so is B, unless its weight is stored narrower (``b_elem_bytes``)."""
        a = op.attrs
        b_bytes = sum(o.nbytes for o in op.reads if o.role in ("weight", "cache"))
        a_bytes = sum(o.nbytes for o in op.reads if o.role not in ("weight", "cache"))
        weight = next((o.dtype for o in op.reads if o.role == "weight"), op.compute_dtype)
        common = dict(n=a.n, k=a.k, mma_dtype=op.compute_dtype, a_elem_bytes=op.compute_dtype.bytes,
                      b_elem_bytes=b_elem_bytes(weight, op.compute_dtype), a_bytes=a_bytes, b_bytes=b_bytes,
                      c_bytes=op.bytes_written, flops=float(op.flops))
        if op.kind == "gemm":
            return GemmShape(rows_total=a.m, groups_touched=1.0, busiest_group_rows=0.0,
                             row_layout=ExpertRowLayout.CONTIGUOUS, **common)
        return GemmShape(rows_total=a.tokens_total, groups_touched=a.distinct_experts,
                         busiest_group_rows=a.tokens_max, row_layout=a.row_layout, **common)

    @staticmethod
    def benchmark(*, groups: int, m: int, n: int, k: int, dtype: DType, out_dtype: DType,
                  row_layout: ExpertRowLayout) -> "GemmShape":
        """``groups`` equal GEMMs of m x n x k as a benchmark runs them (inputs in ``dtype``, output in
        ``out_dtype``, every operand read once): the kernel API's shape."""
        return GemmShape(rows_total=float(groups * m), groups_touched=float(groups), busiest_group_rows=float(m),
                         n=n, k=k, row_layout=row_layout, mma_dtype=dtype, a_elem_bytes=dtype.bytes,
                         b_elem_bytes=dtype.bytes, a_bytes=groups * dtype.storage_bytes((m, k)),
                         b_bytes=groups * dtype.storage_bytes((k, n)), c_bytes=groups * out_dtype.storage_bytes((m, n)),
                         flops=2.0 * groups * m * n * k, l2_banding=False)

    @staticmethod
    def routed(*, rows_total: float, groups_touched: float, n: int, k: int, dtype: DType, out_dtype: DType,
               row_layout: ExpertRowLayout) -> "GemmShape":
        """Routed experts' grouped GEMM as the kernel API prices it: ``rows_total`` routed rows (an expectation)
        spread evenly over ``groups_touched`` experts (the expected experts with rows, whose weights it reads),
        inputs in ``dtype``, output in ``out_dtype``, every operand read once."""
        rows = rows_total / groups_touched if groups_touched > 0 else 0.0
        return GemmShape(rows_total=rows_total, groups_touched=groups_touched, busiest_group_rows=rows, n=n, k=k,
                         row_layout=row_layout, mma_dtype=dtype, a_elem_bytes=dtype.bytes, b_elem_bytes=dtype.bytes,
                         a_bytes=rows_total * k * dtype.bytes, b_bytes=groups_touched * dtype.storage_bytes((k, n)),
                         c_bytes=rows_total * n * out_dtype.bytes, flops=2.0 * rows_total * n * k, l2_banding=False)


def b_elem_bytes(weight: DType, compute: DType) -> float:
    """Bytes per B (weight) element staged on chip. A weight-only format, stored narrower than the MMA's (INT4 with
    group scales under a BF16 MMA: Marlin, Machete, TRT-LLM W4A16), streams its packed elements and their scales
    through shared memory and dequantises in registers: its storage bytes per element, scales included. Otherwise
    B is staged in the MMA's format (an FP8 GEMM's 128 x 128 block scales are a separate, negligible stream)."""
    if weight.bits >= compute.bits:
        return compute.bytes
    scales = weight.scale_bits / BITS_PER_BYTE / math.prod(weight.block) if weight.block and weight.scale_bits else 0.0
    return weight.bytes + scales


# -- main-memory traffic: the SRAM tile and L2 banding --------------------------------------------------------

def _pow2_floor(x: float) -> int:
    """Largest power of two <= x (0 when x < 1)."""
    n = int(x)
    return 0 if n < 1 else 1 << (n.bit_length() - 1)


@lru_cache(maxsize=256)
def l2_banding_tile(sram_bytes: float, elem_bytes: float, register_bytes: float | None = None) -> int:
    """Output tile edge T by which a GEMM's operands are banded in L2 (output-stationary tiling): the FP32
    accumulator of a T x T tile fills the registers (``T^2 x 4 B <= registers per SM``) while double-buffered
    k-slabs of A and B fit shared memory (``2 x 2 x T x bk x e <= SRAM``, bk >= 1; T halves until one fits).
    Without a register level, ``4 x T^2 x e <= SRAM``. H100, BF16: T = 256."""
    if not register_bytes:
        return max(1, _pow2_floor(math.isqrt(max(0, int(sram_bytes // (4 * elem_bytes))))))
    tile = max(1, _pow2_floor(math.isqrt(int(register_bytes // FP32.bytes))))
    while tile > 1 and _pow2_floor(sram_bytes / (4 * tile * elem_bytes)) < 1:
        tile //= 2
    return tile


@dataclass(frozen=True, kw_only=True)
class GemmTraffic:
    """Bytes a GEMM moves under the SRAM-tile rule: main-memory reads and writes, L2 -> SMs, shared memory."""

    hbm_read: float
    hbm_write: float
    l2: float
    shared: float


def _rereads(panels_other: int, total: float, panel_banded: float, panel_streamed: float, l2_bytes: float) -> int:
    """Main-memory reads of the streamed operand while the other operand's panels are banded in L2."""
    if total <= l2_bytes:
        return 1
    band = max(1, int((l2_bytes - panel_streamed) // panel_banded)) if panel_banded > 0 else panels_other
    return math.ceil(panels_other / band)


def sram_tile_traffic(shape: GemmShape, geom: Geometry) -> GemmTraffic:
    """``banded_traffic`` of ``shape`` at ``geom``'s ``l2_banding_tile``; a shape without L2 banding (the kernel
    API's) reads every operand from main memory once. Main memory prices every GEMM; L2 and shared memory only
    those without tile candidates."""
    tile = l2_banding_tile(geom.sram_per_sm_bytes, shape.mma_dtype.bytes, geom.register_per_sm_bytes)
    moved = banded_traffic(rows=shape.rows_total, groups=shape.groups_touched, n=shape.n, a_bytes=shape.a_bytes,
                           b_bytes=shape.b_bytes, c_bytes=shape.c_bytes, tile=tile, l2_bytes=geom.l2_bytes)
    if shape.l2_banding:
        return moved
    return GemmTraffic(hbm_read=shape.a_bytes + shape.b_bytes, hbm_write=shape.c_bytes, l2=moved.l2,
                       shared=moved.shared)


def banded_traffic(*, rows: float, groups: float, n: int, a_bytes: float, b_bytes: float, c_bytes: float,
                   tile: int, l2_bytes: float) -> GemmTraffic:
    """Traffic of ``groups`` GEMMs (``b_bytes``: all their weights) over ``rows`` rows in all, each at the mean
    rows, tiled T x T: every output tile reads its A row panel and B column panel from L2 once (``l2`` = ``shared``
    = A x ceil(n/T) + B x ceil(rows per group/T) + C). Tiles are rasterised in bands: a band of A's row panels
    stays in L2 while B's column panels stream past it (G = (L2 - one B panel) / one A panel panels per band), so
    main memory reads A once and B once per band, or the converse (the better order). An operand that fits L2 is
    read once and a decode GEMM (one row panel) moves its compulsory bytes."""
    if groups <= 0 or rows <= 0:
        return GemmTraffic(hbm_read=a_bytes + b_bytes, hbm_write=c_bytes, l2=a_bytes + b_bytes + c_bytes,
                           shared=a_bytes + b_bytes + c_bytes)
    panels_m = math.ceil(rows / groups / tile)
    panels_n = math.ceil(n / tile)
    to_sms = a_bytes * panels_n + b_bytes * panels_m + c_bytes
    expert = b_bytes / groups
    panel_a, panel_b = a_bytes / groups / panels_m, expert / panels_n
    band_a = a_bytes + b_bytes * _rereads(panels_m, expert, panel_a, panel_b, l2_bytes)
    band_b = b_bytes + a_bytes * _rereads(panels_n, a_bytes / groups, panel_b, panel_a, l2_bytes)
    return GemmTraffic(hbm_read=min(band_a, band_b), hbm_write=c_bytes, l2=to_sms, shared=to_sms)


# -- tile configurations and candidates: shape x geometry, never rates ----------------------------------------

@dataclass(frozen=True, kw_only=True)
class TileConfig:
    """One output tiling of a (grouped) GEMM: the tile, how many there are, the waves over the SMs, and how many
    CTAs share one TMA load of an A panel."""

    block_m: int
    block_n: int
    tiles: int
    waves: int
    last_wave_tiles: int
    multicast: int = 1

    @property
    def padded_elements_per_sm(self) -> int:
        """Output elements one SM computes over all waves, partial tiles and idle SMs counted in full."""
        return self.waves * self.block_m * self.block_n


def tile_configs(*, groups: int, m: int, n: int, sm_count: int, block_m_options: tuple[int, ...],
                 block_n_options: tuple[int, ...], max_tile_elements: int) -> list[TileConfig]:
    """Every tiling of the menu whose accumulator fits (block_m x block_n <= max_tile_elements), in menu order:
    ``groups x ceil(m / block_m) x ceil(n / block_n)`` tiles in waves of ``sm_count``. A partial wave or edge tile
    costs a full tile's time. A menu with none is a ConfigError."""
    return [TileConfig(block_m=bm, block_n=bn, tiles=tiles, waves=waves, last_wave_tiles=last)
            for bm, bn, tiles, waves, last in _tilings(groups, m, n, sm_count, block_m_options, block_n_options,
                                                       max_tile_elements)]


def _tilings(groups: int, m: int, n: int, sm_count: int, block_m_options: tuple[int, ...],
             block_n_options: tuple[int, ...], max_tile_elements: int) -> list[tuple[int, int, int, int, int]]:
    """``tile_configs`` as plain (block_m, block_n, tiles, waves, last_wave_tiles) tuples: the candidate search
    builds a TileConfig only for the candidates it keeps (a menu has ~50 tilings, a phase ~30 GEMM shapes)."""
    if m < 1 or n < 1 or groups < 1 or sm_count < 1:
        raise ConfigError(None, "gemm.shape", "m, n, groups and sm_count >= 1", (m, n, groups, sm_count))
    out = []
    for bm in block_m_options:
        for bn in block_n_options:
            if bm * bn > max_tile_elements:
                continue
            tiles = groups * math.ceil(m / bm) * math.ceil(n / bn)
            waves = math.ceil(tiles / sm_count)
            out.append((bm, bn, tiles, waves, tiles - (waves - 1) * sm_count))
    if not out:
        raise ConfigError(None, "kernel.gemm_block", f"a tile of at most {max_tile_elements} outputs",
                          (block_m_options, block_n_options))
    return out


def tma_multicast(*, width: int, n: int, block_n: int, config_groups: int) -> int:
    """How many CTAs share one TMA load of an A panel (block_m x k): ``width`` when the library's rule allows it,
    else 1. Rule (DeepGEMM ``get_best_configs``, docs/fidelity.md): the CTAs of a cluster take adjacent n-blocks
    of the same m-block, so n must be a multiple of ``width x block_n``; and the kernel's config must see one
    group (``config_groups``): a dense or contiguous-layout GEMM, not a masked grouped GEMM of several groups."""
    if width < 1:
        raise ConfigError(None, "kernel.gemm_multicast", "an integer >= 1", width)
    if width > 1 and config_groups == 1 and n % (width * block_n) == 0:
        return width
    return 1


@dataclass(frozen=True, kw_only=True)
class TileCandidates:
    """The tiles a tuned library may run a GEMM with, each priced in rate-free terms; arrays (..., C) over the C
    candidates (a graph stacks its GEMMs along the leading axis, padding with inf), scalars (...) per GEMM."""

    configs: tuple[TileConfig, ...]   # per candidate (empty when stacked)
    mma_flops: np.ndarray             # wave-quantised MMA work, FLOPs-equivalent
    l2_operand_bytes: np.ndarray      # operand panels all tiles stream from L2 (one A read per multicast group)
    smem_bytes: np.ndarray            # operand panels every CTA stages in shared memory (multicast shares no fill)
    panel_stream_bytes: np.ndarray    # the distinct weight panels the busiest SM streams from main memory
    hbm_read_bytes: np.ndarray        # main-loop reads from main memory (sram_tile_traffic)
    hbm_write_bytes: np.ndarray       # the epilogue's output store
    floor_flops: np.ndarray           # least MMA work at any tile (``floor_flops``)


@lru_cache(maxsize=65536)
def _candidates(groups: int, m: int, n: int, k: int, a_elem: float, b_elem: float, sm_count: int,
                block_m: tuple[int, ...], block_n: tuple[int, ...], max_elements: int, multicast: int,
                config_groups: int) -> tuple[tuple[TileConfig, ...], np.ndarray]:
    """(configs, terms[C, 4]) of ``tile_candidates``, memoised: every layer repeats the same shapes. Candidates
    are in the library's tie-break order (fewest waves, fullest last wave, wider block_n, then menu order), less
    those that can never be the first of least main-loop time at any positive rates: an earlier one no worse on
    MMA work, L2 operand bytes and panel stream bytes, or a later one strictly better on all three."""
    tilings, rows = [], []
    for bm, bn, tiles, waves, last in _tilings(groups, m, n, sm_count, block_m, block_n, max_elements):
        width = tma_multicast(width=multicast, n=n, block_n=bn, config_groups=config_groups)
        mma = float(waves * bm * bn) * sm_count * 2 * k  # TileConfig.padded_elements_per_sm x SMs x 2 k
        # a partial m-block counts block_m rows: real memory for a grouped GEMM (contiguous: each group padded to
        # whole tiles; masked: allocated at the largest group), an overstatement for a dense one, whose rows past m
        # TMA zero-fills (docs/fidelity.md "GEMM operand bytes")
        l2 = float(tiles) * (bm / width * a_elem + bn * b_elem) * k
        smem = float(tiles) * (bm * a_elem + bn * b_elem) * k
        # the groups x ceil(n / block_n) distinct weight panels (k x min(block_n, n)) spread over the SMs; the other
        # m-blocks re-read them from L2. Per full panel on the busiest SM, so monotone in n and k, not in m
        panel = math.ceil(groups * math.ceil(n / bn) / sm_count) * min(bn, n) * k * b_elem
        tilings.append((bm, bn, tiles, waves, last, width))
        rows.append((mma, l2, smem, panel))
    # stable: menu order on ties
    order = sorted(range(len(tilings)), key=lambda i: (tilings[i][3], -tilings[i][4], -tilings[i][1]))
    tilings = [tilings[i] for i in order]
    terms = np.array([rows[i] for i in order])
    scored = terms[:, [0, 1, 3]]
    no_worse = np.all(scored[:, None, :] <= scored[None, :, :], axis=2)     # [j, i]: j no worse than i
    better = np.all(scored[:, None, :] < scored[None, :, :], axis=2)        # [j, i]: j strictly better than i
    index = np.arange(len(tilings))
    earlier, later = index[:, None] < index[None, :], index[:, None] > index[None, :]
    keep = ~np.any((no_worse & earlier) | (better & later), axis=0)
    kept = tuple(TileConfig(block_m=bm, block_n=bn, tiles=tiles, waves=waves, last_wave_tiles=last, multicast=width)
                 for (bm, bn, tiles, waves, last, width), k_ in zip(tilings, keep) if k_)
    out = terms[keep]
    out.setflags(write=False)
    return kept, out


def tile_candidates(shape: GemmShape, geom: Geometry, traffic: GemmTraffic | None = None) -> TileCandidates | None:
    """The candidates of ``shape`` on ``geom``'s tile menu; None without a menu, for an empty GEMM, or when the
    matrix engine lists neither the MMA dtype nor a wider one. ``traffic`` (default ``sram_tile_traffic``) gives
    the main-memory bytes."""
    rows = shape.rows_per_group
    if not geom.has_tile_menu or rows <= 0 or shape.n <= 0 or shape.k <= 0:
        return None
    if engine_dtype_name(geom.matrix_dtypes, shape.mma_dtype) is None:
        return None
    groups = shape.groups
    masked = shape.row_layout is ExpertRowLayout.MASKED
    configs, terms = _candidates(groups, math.ceil(rows), shape.n, shape.k, shape.a_elem_bytes, shape.b_elem_bytes,
                                 geom.sm_count, geom.gemm_block_m, geom.gemm_block_n, geom.gemm_max_tile_elements,
                                 geom.gemm_multicast, groups if masked else 1)
    traffic = traffic or sram_tile_traffic(shape, geom)
    return TileCandidates(configs=configs, mma_flops=terms[:, 0], l2_operand_bytes=terms[:, 1],
                          smem_bytes=terms[:, 2], panel_stream_bytes=terms[:, 3],
                          hbm_read_bytes=np.asarray(traffic.hbm_read), hbm_write_bytes=np.asarray(traffic.hbm_write),
                          floor_flops=np.asarray(floor_flops(shape, geom)))


def untiled_candidates(shape: GemmShape) -> TileCandidates:
    """One pseudo-candidate for a chip without a tile menu, as the kernel API prices it: the GEMM's own FLOPs,
    its compulsory bytes, no operand feed or panel term (graph ops on such chips take the roofline instead)."""
    zero = np.zeros(1)
    return TileCandidates(configs=(), mma_flops=np.array([shape.flops]), l2_operand_bytes=zero, smem_bytes=zero,
                          panel_stream_bytes=zero, hbm_read_bytes=np.asarray(shape.a_bytes + shape.b_bytes),
                          hbm_write_bytes=np.asarray(shape.c_bytes), floor_flops=np.asarray(shape.flops))


def stack_candidates(cands: list[TileCandidates | None]) -> tuple[np.ndarray, TileCandidates]:
    """(mask of the GEMMs with candidates, their candidates stacked (n, C); n = len(cands)). Padding is never
    picked: its MMA work and L2 bytes are inf (its panel bytes 0, so that no cap's inf rate makes them NaN)."""
    n = len(cands)
    width = max((len(c.mma_flops) for c in cands if c is not None), default=0)
    arrays = {name: np.full((n, width), np.inf) for name in ("mma_flops", "l2_operand_bytes", "smem_bytes")}
    arrays["panel_stream_bytes"] = np.zeros((n, width))
    scalars = {name: np.zeros(n) for name in ("hbm_read_bytes", "hbm_write_bytes", "floor_flops")}
    for i, c in enumerate(cands):
        if c is None:
            continue
        for name, array in arrays.items():
            values = getattr(c, name)
            array[i, :len(values)] = values
        for name, array in scalars.items():
            array[i] = getattr(c, name)
    mask = np.array([c is not None for c in cands], dtype=bool)
    return mask, TileCandidates(configs=(), **arrays, **scalars)


def take_rows(cands: TileCandidates, rows) -> TileCandidates:
    """The candidates of the GEMMs at ``rows`` (an index array or mask over the leading axis)."""
    return TileCandidates(configs=(), **{name: getattr(cands, name)[rows] for name in
                                         ("mma_flops", "l2_operand_bytes", "smem_bytes", "panel_stream_bytes",
                                          "hbm_read_bytes", "hbm_write_bytes", "floor_flops")})


# -- FLOPs floors ----------------------------------------------------------------------------------------------

@lru_cache(maxsize=65536)
def _least_padded(groups: int, m: int, n: int, sm_count: int, block_m: tuple[int, ...], block_n: tuple[int, ...],
                  max_elements: int) -> int:
    return min(t.padded_elements_per_sm for t in tile_configs(
        groups=groups, m=m, n=n, sm_count=sm_count, block_m_options=block_m, block_n_options=block_n,
        max_tile_elements=max_elements))


def least_mma_flops(geom: Geometry, *, groups: int, rows: float, n: int, k: int) -> float:
    """Least wave-quantised MMA work (FLOPs-equivalent) of ``groups`` GEMMs of ``rows`` rows (rounded up) over the
    whole tile menu: a floor no picked tile beats, at any rates; 0 without a menu or for an empty GEMM. Monotone
    in rows (more rows never mean fewer tiles of any shape)."""
    if not geom.has_tile_menu or rows <= 0 or n <= 0 or k <= 0:
        return 0.0
    padded = _least_padded(groups, math.ceil(rows), n, geom.sm_count, geom.gemm_block_m, geom.gemm_block_n,
                           geom.gemm_max_tile_elements)
    return float(padded) * geom.sm_count * 2 * k


def floor_flops(shape: GemmShape, geom: Geometry) -> float:
    """Least MMA work (FLOPs-equivalent) the GEMM can take: its useful FLOPs, and no less than its busiest group's
    GEMM alone (an imbalanced grouped GEMM cannot finish before it). With a tile menu that group is wave-quantised
    at the menu's least-work tile; without one no SM finishes before its largest tile, min(rows, T) x min(n, T) x k
    on every SM (T: ``l2_banding_tile``). Both are monotone in the busiest group's rows."""
    busiest = shape.busiest_group_rows
    if busiest <= 0:
        return shape.flops
    if geom.has_tile_menu:
        return max(shape.flops, least_mma_flops(geom, groups=1, rows=busiest, n=shape.n, k=shape.k))
    tile = l2_banding_tile(geom.sram_per_sm_bytes, shape.mma_dtype.bytes, geom.register_per_sm_bytes)
    largest_tile = 2.0 * min(busiest, tile) * min(shape.n, tile) * shape.k * geom.sm_count
    return max(shape.flops, max(2.0 * busiest * shape.n * shape.k, largest_tile))


def untiled_time_flops(shape: GemmShape, geom: Geometry) -> float:
    """FLOPs-equivalent of a GEMM priced by the roofline (no candidates): ``floor_flops``, and no less than the
    least wave-quantised work where the chip has a tile menu that cannot run this GEMM's dtype."""
    return max(floor_flops(shape, geom),
               least_mma_flops(geom, groups=shape.groups, rows=shape.rows_per_group, n=shape.n, k=shape.k))


# -- time: candidates x rates ----------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class GemmRates:
    """The rates a tiled GEMM's time uses, each a float or an array broadcasting against the candidates' leading
    axes (ops x sweep points)."""

    mma_flop_per_s: object            # the MMA rate of the GEMM's dtype (achievable fraction, thermal clock)
    main_bytes_per_s: object          # main memory, power-capped
    operand_bytes_per_s: object       # the L2 -> shared-memory operand feed
    panel_stream_bytes_per_s: object  # one SM's main-memory loads (inf: no cap)
    ramp_s: object

    @staticmethod
    def of(rates: ChipRates, mma_flop_per_s: float) -> "GemmRates":
        """One chip's GEMM rates around the MMA rate of the GEMM's dtype."""
        return GemmRates(mma_flop_per_s=mma_flop_per_s, main_bytes_per_s=rates.main_bytes_per_s,
                         operand_bytes_per_s=rates.gemm_operand_bytes_per_s,
                         panel_stream_bytes_per_s=rates.sm_stream_bytes_per_s, ramp_s=rates.ramp_s)


@dataclass(frozen=True, kw_only=True)
class GemmTime:
    """A tiled GEMM's time and its parts; ``bound`` indexes ``MAIN_LOOP_TERMS``, ``pick`` the candidates."""

    time_s: np.ndarray
    bound: np.ndarray
    pick: np.ndarray
    ramp_s: np.ndarray
    mma_s: np.ndarray
    hbm_s: np.ndarray            # main-loop reads: max(reads / main rate, panel streaming)
    l2_operand_s: np.ndarray
    panel_stream_s: np.ndarray   # the picked tile's panel streaming at one SM's rate (0 without a cap)
    epilogue_s: np.ndarray


def _at(values: np.ndarray, pick: np.ndarray) -> np.ndarray:
    shape = pick.shape + (values.shape[-1],)
    return np.take_along_axis(np.broadcast_to(values, shape), pick[..., None], axis=-1)[..., 0]


def gemm_time(cands: TileCandidates, rates: GemmRates) -> GemmTime:
    """``ramp + max(MMA, main-memory reads, L2 operand feed) + epilogue`` at the candidate an autotuned library
    runs: the first of least main loop, max(MMA, L2 operand panels / feed, weight panels / one SM's stream rate).
    MMA is the picked tile's wave-quantised work (no less than ``floor_flops``) at the MMA rate; the reads are
    ``hbm_read_bytes`` at the main rate, no faster than the picked tile's panel streaming; the epilogue stores C
    after the main loop. Ties bind in ``MAIN_LOOP_TERMS`` order. Every term is monotone in the GEMM's size for
    each candidate, so the least is too. Broadcasts: candidates (..., C) against rates (...)."""
    mma_rate = np.asarray(rates.mma_flop_per_s, dtype=float)
    operand_rate = np.asarray(rates.operand_bytes_per_s, dtype=float)
    main_rate = np.asarray(rates.main_bytes_per_s, dtype=float)
    panel_s = np.divide(cands.panel_stream_bytes, np.asarray(rates.panel_stream_bytes_per_s, dtype=float)[..., None])
    main_loop = np.maximum(np.maximum(np.divide(cands.mma_flops, mma_rate[..., None]),
                                      np.divide(cands.l2_operand_bytes, operand_rate[..., None])), panel_s)
    pick = np.argmin(main_loop, axis=-1)
    stream_s = _at(panel_s, pick)
    mma_s = np.maximum(cands.floor_flops, _at(cands.mma_flops, pick)) / mma_rate
    hbm_s = np.maximum(np.divide(cands.hbm_read_bytes, main_rate), stream_s)
    l2_s = np.divide(_at(cands.l2_operand_bytes, pick), operand_rate)
    epilogue_s = np.divide(cands.hbm_write_bytes, main_rate)
    terms = np.stack(np.broadcast_arrays(mma_s, hbm_s, l2_s), axis=-1)
    bound = np.argmax(terms, axis=-1)  # the first maximum binds
    ramp = np.asarray(rates.ramp_s, dtype=float)
    return GemmTime(time_s=ramp + np.max(terms, axis=-1) + epilogue_s, bound=bound, pick=pick, ramp_s=ramp,
                    mma_s=mma_s, hbm_s=hbm_s, l2_operand_s=l2_s, panel_stream_s=stream_s, epilogue_s=epilogue_s)


def level_bytes(cands: TileCandidates, pick: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L2, shared-memory) bytes at the picked tile: the operand panels it streams from L2 (or stages in shared
    memory) plus the output it writes. The bytes that set the time are the bytes that cost energy."""
    return (_at(cands.l2_operand_bytes, pick) + cands.hbm_write_bytes,
            _at(cands.smem_bytes, pick) + cands.hbm_write_bytes)


def tile_levels(level_names: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(L2 level, shared-memory level) whose bytes the picked tile sets: each name when the chip has that level and
    it is not its main memory (the last level), else None."""
    main = level_names[-1]
    return (("l2" if "l2" in level_names and main != "l2" else None),
            ("shared" if "shared" in level_names and main != "shared" else None))


def operand_level(level_names: tuple[str, ...]) -> str:
    """The level whose time the L2 operand feed is: ``l2``, or main memory on a chip without a separate L2."""
    return tile_levels(level_names)[0] or level_names[-1]


def bound_labels(main: str, operand: str) -> tuple[str, str, str]:
    """``MAIN_LOOP_TERMS`` in the bound vocabulary: compute, the main memory, the operand feed's level."""
    return (bound.COMPUTE, bound.memory(main), bound.memory(operand))
