"""Bytes a tiled GEMM (and a grouped expert GEMM) moves across L2, shared memory and HBM.

Tiling rule (output-stationary). Each SM computes one T x T output tile at a time: its FP32
accumulator lives in the register file, and k-slabs of A (T x bk) and B (bk x T) stream through
shared memory double-buffered (one slab in use, the next loading). So
- T is the largest power of two with ``T^2 * 4 bytes <= registers per SM`` (FP32 accumulator), and
- bk the largest power of two with ``2 stages * 2 operands * T * bk * e <= M`` (M = shared memory
  per SM, e = compute element bytes); T is halved until bk >= 1.
Without a register level, T is the largest power of two with ``4 * T^2 * e <= M`` (bk = T).
For H100 (256 KiB registers, 228 KiB SMEM per SM, BF16) this gives T = 256, bk = 128: the 128x256
class of tiles Hopper GEMM libraries use. Only T shapes traffic; bk is reported for inspection.

Traffic. With the tile grid ceil(m/T) x ceil(n/T), every output tile reads its A row-panel and its B
column-panel once, so the bytes leaving L2 towards the SMs (and staged through shared memory) are
``A*ceil(n/T) + B*ceil(m/T) + C``. HBM sees a re-read only when L2 cannot hold it. Tiles are
rasterised in bands (CUTLASS-style swizzle): a band of row panels of A stays in L2 while every
column panel of B streams past it, so A is read from HBM once and B once per band. The band holds
``G = floor((L2 - one B panel) / one A panel)`` row panels (at least 1), so B is read
``ceil(panels_m / G)`` times; a B that fits L2 whole is read once. The kernel takes the better of the
two raster orders (banding A or banding B). HBM bytes are therefore never below the compulsory
A + B + C, and a decode GEMM (m <= T, one row panel) moves exactly the compulsory bytes: it is
bandwidth-bound on weights.

Which bytes are used where (``cost/traffic.py``): the HBM bytes (banding) price every GEMM. The L2 and
shared-memory bytes of this SRAM tile price only GEMMs without a tile menu (a chip without ``kernel:`` tile
fields, a dtype its matrix engine lacks, an op placed on another engine); a GEMM on a chip with a tile menu
takes its L2 and shared-memory bytes from the tile its time picks (``traffic.picked_level_bytes``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from archsim.dtypes import FP32


def _pow2_floor(x: float) -> int:
    """Largest power of two <= x (0 when x < 1)."""
    n = int(x)
    return 0 if n < 1 else 1 << (n.bit_length() - 1)


def gemm_tile(sram_bytes: float, elem_bytes: float, register_bytes: float | None = None) -> int:
    """Output tile edge T of the tiling rule in this module's docstring."""
    return gemm_tiles(sram_bytes, elem_bytes, register_bytes)[0]


@lru_cache(maxsize=256)
def gemm_tiles(sram_bytes: float, elem_bytes: float, register_bytes: float | None = None) -> tuple[int, int]:
    """(T, bk): output tile edge and k-slab depth of the tiling rule in this module's docstring."""
    if not register_bytes:
        tile = max(1, _pow2_floor(math.isqrt(max(0, int(sram_bytes // (4 * elem_bytes))))))
        return tile, tile
    tile = max(1, _pow2_floor(math.isqrt(int(register_bytes // FP32.bytes))))
    while True:
        depth = _pow2_floor(sram_bytes / (4 * tile * elem_bytes))
        if depth >= 1 or tile == 1:
            return tile, max(1, depth)
        tile //= 2


@dataclass(frozen=True, kw_only=True)
class TiledTraffic:
    """Bytes crossing each level: ``hbm`` (off chip), ``l2`` (L2 to SMs), ``shared`` (staged in SMEM)."""

    hbm: float
    l2: float
    shared: float
    hbm_read: float = 0.0     # of ``hbm``: the operand reads (a GEMM's main loop); 0 when not split
    hbm_written: float = 0.0  # of ``hbm``: the output store (a GEMM's epilogue)


def _rereads(panels_other: int, total: float, panel_banded: float, panel_streamed: float, l2_bytes: float) -> int:
    """HBM reads of the streamed operand when the other operand's panels are banded in L2."""
    if total <= l2_bytes:
        return 1
    band = max(1, int((l2_bytes - panel_streamed) // panel_banded)) if panel_banded > 0 else panels_other
    return math.ceil(panels_other / band)


def gemm_traffic(*, m: float, n: int, a_bytes: float, b_bytes: float, c_bytes: float, tile: int,
                 l2_bytes: float) -> TiledTraffic:
    """Traffic of C[m,n] = A[m,k] B[k,n] under the tiling rule of this module's docstring."""
    panels_m = math.ceil(m / tile)  # row panels of A: B is re-read once per row panel
    panels_n = math.ceil(n / tile)  # column panels of B: A is re-read once per column panel
    to_sms = a_bytes * panels_n + b_bytes * panels_m + c_bytes
    panel_a, panel_b = a_bytes / panels_m, b_bytes / panels_n
    band_a = a_bytes + b_bytes * _rereads(panels_m, b_bytes, panel_a, panel_b, l2_bytes)
    band_b = b_bytes + a_bytes * _rereads(panels_n, a_bytes, panel_b, panel_a, l2_bytes)
    read = min(band_a, band_b)
    return TiledTraffic(hbm=c_bytes + read, l2=to_sms, shared=to_sms, hbm_read=read, hbm_written=c_bytes)


def grouped_gemm_traffic(*, distinct_experts: float, tokens_total: float, n: int, a_bytes: float,
                         w_bytes: float, c_bytes: float, tile: int, l2_bytes: float) -> TiledTraffic:
    """Traffic of a grouped expert GEMM: each touched expert is one GEMM over its tokens.

    ``w_bytes`` are the weights of the distinct experts touched (the graph's expected value),
    ``a_bytes``/``c_bytes`` the routed tokens in and out. An expert's weights are re-read once per
    row panel of its tokens, taken at the mean load m = tokens_total / distinct_experts; the tokens
    are re-read once per column panel of the expert's weights. L2 banding applies per expert exactly
    as in ``gemm_traffic`` (each expert is an independent GEMM of the mean shape).
    """
    if distinct_experts <= 0 or tokens_total <= 0:
        return TiledTraffic(hbm=a_bytes + w_bytes + c_bytes, l2=a_bytes + w_bytes + c_bytes,
                            shared=a_bytes + w_bytes + c_bytes, hbm_read=a_bytes + w_bytes, hbm_written=c_bytes)
    panels_m = math.ceil(tokens_total / distinct_experts / tile)
    panels_n = math.ceil(n / tile)
    to_sms = a_bytes * panels_n + w_bytes * panels_m + c_bytes
    expert = w_bytes / distinct_experts
    panel_a, panel_w = a_bytes / distinct_experts / panels_m, expert / panels_n
    band_a = a_bytes + w_bytes * _rereads(panels_m, expert, panel_a, panel_w, l2_bytes)
    band_w = w_bytes + a_bytes * _rereads(panels_n, a_bytes / distinct_experts, panel_w, panel_a, l2_bytes)
    read = min(band_a, band_w)
    return TiledTraffic(hbm=c_bytes + read, l2=to_sms, shared=to_sms, hbm_read=read, hbm_written=c_bytes)
