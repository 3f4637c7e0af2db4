"""HBM bytes of attention under the flash (tiled) and naive models of docs/counting.md.

These functions implement the "Attention traffic model" section of docs/counting.md exactly; the
tiled numpy kernel in ``archsim/kernels`` counts its bytes by the same rule, and a test compares them.
Notation follows that document: e = element bytes, M = SRAM (shared memory per SM) bytes,
d = max(d_qk, d_v), g = heads_q / heads_kv.
"""
from __future__ import annotations

import numpy as np

from archsim.attention_window import keys_read


def flash_tiles(sram_bytes: float, d_qk: int, d_v: int, elem_bytes: float,
                shared_kv: bool = False) -> tuple[int, int]:
    """Tile sizes (block_q, block_kv) = (B_r, B_c) of FlashAttention Algorithm 1.

    ``B_c = max(1, floor(M / (4*d*e)))`` keys per tile (Q, K, V and O tiles of width d must fit in M)
    and ``B_r = max(1, min(B_c, d))`` rows per query tile. ``shared_kv``: V is the first d_v columns of K
    (MLA's latent in absorbed form), so d = d_qk.
    """
    d = d_qk if shared_kv else max(d_qk, d_v)
    block_kv = max(1, int(sram_bytes // (4 * d * elem_bytes)))
    block_q = max(1, min(block_kv, d))
    return block_q, block_kv


def _keys_read_per_query_tile(*, q_len: int, kv_len: int, group: int, block_q: int, block_kv: int,
                              causal: bool, window: int | None = None) -> int:
    """Sum over query tiles of the number of key rows each tile reads (one sequence, one kv head).

    Query-tile rows are (position, head) pairs packed GQA-style: row r is query position r // group,
    at absolute position kv_len - q_len + r // group. Causal: key tile j is read iff its first key
    index j*B_c <= the largest absolute query position in the tile, so the tile reads the keys of
    tiles 0..floor(p_max / B_c), i.e. min(kv_len, (floor(p_max / B_c) + 1) * B_c) keys. A sliding
    ``window`` W (causal) also skips the tiles wholly before the smallest query position's first key
    p_min - W + 1: the tile reads tiles floor(max(0, p_min - W + 1) / B_c) .. floor(p_max / B_c).
    """
    rows = q_len * group
    n_tiles = -(-rows // block_q)
    if not causal:
        return n_tiles * kv_len
    starts = np.arange(n_tiles, dtype=np.int64) * block_q
    last_row = np.minimum(starts + block_q, rows) - 1
    p_max = (kv_len - q_len) + last_row // group
    keys = np.minimum(kv_len, (p_max // block_kv + 1) * block_kv)
    if window is not None:
        p_min = (kv_len - q_len) + starts // group
        keys = keys - (np.maximum(0, p_min - window + 1) // block_kv) * block_kv
    return int(keys.sum())


def flash_hbm_bytes(*, batch: int, q_len: int, kv_len: int, heads_q: int, heads_kv: int, d_qk: int,
                    d_v: int, elem_bytes: float, sram_bytes: float, causal: bool, shared_kv: bool = False,
                    window: int | None = None) -> float:
    """HBM bytes of FlashAttention-2 (GQA-packed) per docs/counting.md (``window``: a sliding-window layer's
    key tiles, see ``_keys_read_per_query_tile``; key indices are absolute, tiles aligned at key 0).

    Per (sequence, kv head): Q read once (n_q*g*d_qk*e), O written once (n_q*g*d_v*e), and every
    key tile a query tile needs read in full, K and V separately ((d_qk + d_v)*e per key row), or once
    (d_qk*e per key row) with ``shared_kv``, when V is the first d_v columns of K (MLA's latent in absorbed
    form: one tile load serves both products, as FlashMLA does).
    """
    group = heads_q // heads_kv
    block_q, block_kv = flash_tiles(sram_bytes, d_qk, d_v, elem_bytes, shared_kv)
    keys = _keys_read_per_query_tile(q_len=q_len, kv_len=kv_len, group=group, block_q=block_q,
                                     block_kv=block_kv, causal=causal, window=window)
    key_row = d_qk if shared_kv else d_qk + d_v
    per_head = (q_len * group * d_qk + q_len * group * d_v + keys * key_row) * elem_bytes
    return float(batch * heads_kv * per_head)


def naive_hbm_bytes(*, batch: int, q_len: int, kv_len: int, heads_q: int, heads_kv: int, d_qk: int,
                    d_v: int, elem_bytes: float, sram_bytes: float = 0.0, causal: bool = False,
                    window: int | None = None) -> float:
    """HBM bytes of unfused attention per docs/counting.md.

    Per (sequence, query head): read Q, K, V once, write S (n_q*n_kv), read S for the softmax,
    write P, read P for PV, write O. The full score matrix is materialised even when causal, and
    SRAM size plays no part (``sram_bytes`` and ``causal`` are accepted for a uniform signature). With a
    sliding ``window`` the keys are those the window reaches (n_kv = keys_read: min(kv_len, W + n_q - 1)).
    """
    del sram_bytes, causal, heads_kv
    kv_len = keys_read(q_len, kv_len, window)
    per_head = (q_len * d_qk + kv_len * d_qk + kv_len * d_v + 4 * q_len * kv_len + q_len * d_v) * elem_bytes
    return float(batch * heads_q * per_head)
