"""FlashAttention-2-style tiled attention with online softmax, counting its HBM<->SRAM bytes.

Work is split per (sequence, kv head); the query tile packs the g = H_q/H_kv query heads that share
the kv head (rows are (position, head) pairs, row r at query position r // g). Tile sizes follow
FlashAttention Algorithm 1 from an SRAM budget. The traffic counted is exactly the "Attention traffic
model" of docs/counting.md, which the cost model also implements.
"""
from __future__ import annotations

import math

import numpy as np

from archsim.attention_window import first_key
from archsim.kernels.attention import KVOperands, _record
from archsim.kernels.counting import Site


def flash_tiles(sram_bytes: float, d: int, elem_bytes: float) -> tuple[int, int]:
    """(B_r, B_c) = (max(1, min(B_c, d)), max(1, floor(M / (4*d*e)))) with d = max(d_qk, d_v)."""
    b_c = max(1, math.floor(sram_bytes / (4 * d * elem_bytes)))
    return max(1, min(b_c, d)), b_c


def flash_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, *, scale: float, causal: bool,
                    sram_bytes: float | None = None, elem_bytes: float | None = None,
                    tiles: tuple[int, int] | None = None, kv_operands: KVOperands | None = None,
                    shared_kv: bool = False, window: int | None = None, sinks: np.ndarray | None = None,
                    site: Site | None = None) -> np.ndarray:
    """Same result as ``naive_attention``; tiles from (sram_bytes, elem_bytes) unless ``tiles`` is given.

    q [b, n_q, H_q, d_qk], k [b, n_kv, H_kv, d_qk], v [b, n_kv, H_kv, d_v] -> [b, n_q, H_q, d_v].
    ``elem_bytes`` defaults to the site's declared dtype of q (the activation / KV dtype).
    ``kv_operands`` only changes how the compulsory operands are reported (see ``naive_attention``);
    the HBM traffic counts K and V tiles as separate streams, as docs/counting.md specifies, unless
    ``shared_kv``: V is the first d_v columns of K (MLA's latent in absorbed form), so one K tile load
    serves both products and the tile width is d_qk. ``window`` (causal): a sliding-window layer; key tiles
    wholly before a query tile's first visible key are skipped (key indices absolute, tiles aligned at key 0,
    as ``archsim.cost.attention_traffic`` counts them). ``sinks`` [H_q]: each row's online softmax starts from
    its head's sink logit (running max = sink, sum = 1, no value), which is the sink column of the naive
    kernel; the sink vector is a compulsory operand, not tile traffic.
    """
    b, n_q, hq, d_qk = q.shape
    _, n_kv, hkv, d_v = v.shape
    g = hq // hkv
    if shared_kv and not np.array_equal(v, k[..., :d_v]):
        raise ValueError("shared_kv needs v equal to the first d_v columns of k")
    if tiles is None:
        if elem_bytes is None:
            if site is None:
                raise ValueError("flash_attention needs tiles, or sram_bytes with elem_bytes or a site")
            elem_bytes = site.dtype("q", "activation").bytes
        if sram_bytes is None:
            raise ValueError("flash_attention needs sram_bytes or explicit tiles")
        tiles = flash_tiles(sram_bytes, d_qk if shared_kv else max(d_qk, d_v), elem_bytes)
    b_r, b_c = tiles
    e = elem_bytes if elem_bytes is not None else (site.dtype("q", "activation").bytes if site else 0.0)
    out = np.empty((b, n_q, hq, d_v), dtype=np.result_type(q, k, v))        # [b, n_q, H_q, d_v]
    moved_elems = [0, 0]  # [read, write] elements between HBM and SRAM
    for bi in range(b):
        for h in range(hkv):
            rows = q[bi, :, h * g:(h + 1) * g, :].reshape(n_q * g, d_qk)     # [n_q*g, d_qk], row = pos*g + head
            sink = None if sinks is None else sinks[h * g:(h + 1) * g]             # [g]
            o = _one_head_group(rows, k[bi, :, h, :], v[bi, :, h, :], g=g, n_q=n_q, scale=scale,
                                causal=causal, b_r=b_r, b_c=b_c, moved=moved_elems, shared_kv=shared_kv,
                                window=window, sink=sink)
            out[bi, :, h * g:(h + 1) * g, :] = o.reshape(n_q, g, d_v)        # [n_q, g, d_v]
    if site is not None:
        first = first_key(n_q, n_kv, window) if causal else 0
        _record(site, q, k[:, first:], v[:, first:], out, causal=causal, kernel="flash", kv_operands=kv_operands,
                traffic=(moved_elems[0] * e, moved_elems[1] * e), block_rows=b_r, block_cols=b_c,
                shared_kv=shared_kv, window=window, sinks=sinks, kv_len=n_kv)
    return out


def _one_head_group(qr: np.ndarray, kh: np.ndarray, vh: np.ndarray, *, g: int, n_q: int, scale: float,
                    causal: bool, b_r: int, b_c: int, moved: list[int], shared_kv: bool = False,
                    window: int | None = None, sink: np.ndarray | None = None) -> np.ndarray:
    """Tiled pass for one (sequence, kv head): qr [n_q*g, d_qk], kh [n_kv, d_qk], vh [n_kv, d_v];
    ``sink`` [g]: the sink logit of each of the group's heads (row r is head r % g)."""
    n_rows, d_qk = qr.shape
    n_kv, d_v = vh.shape
    first_pos = n_kv - n_q
    out = np.empty((n_rows, d_v), dtype=np.result_type(qr, vh))             # [n_rows, d_v]
    for r0 in range(0, n_rows, b_r):
        r1 = min(r0 + b_r, n_rows)
        q_t = qr[r0:r1]                                                       # [rows, d_qk] load Q tile
        moved[0] += q_t.size
        pos = first_pos + np.arange(r0, r1) // g                              # [rows] absolute positions
        if sink is None:
            m = np.full(r1 - r0, -np.inf)                                     # [rows] running max
            l = np.zeros(r1 - r0)                                             # [rows] running sum
        else:  # the sink logit is the first "key": max = sink, sum = exp(0) = 1, no value row
            m = sink[np.arange(r0, r1) % g].astype(float)                     # [rows]
            l = np.ones(r1 - r0)                                              # [rows]
        acc = np.zeros((r1 - r0, d_v), dtype=out.dtype)                      # [rows, d_v]
        start = 0
        if causal and window is not None:  # tiles wholly before the first row's first visible key
            start = (max(0, int(pos[0]) - window + 1) // b_c) * b_c
        for c0 in range(start, n_kv, b_c):
            if causal and c0 > pos[-1]:
                break  # this and later key tiles are fully masked for every row of the tile
            c1 = min(c0 + b_c, n_kv)
            k_t, v_t = kh[c0:c1], vh[c0:c1]                                   # [cols, d_qk], [cols, d_v]
            moved[0] += k_t.size if shared_kv else k_t.size + v_t.size  # shared: V is inside the K tile
            s = (q_t @ k_t.T) * scale                                         # [rows, cols]
            if causal:
                cols = np.arange(c0, c1)[None, :]                             # [1, cols]
                visible = cols <= pos[:, None]                                # [rows, cols]
                if window is not None:
                    visible &= cols > pos[:, None] - window
                s = np.where(visible, s, -np.inf)                             # [rows, cols]
            m_new = np.maximum(m, s.max(axis=1))                             # [rows]
            # a row with no visible key yet keeps max -inf: shift by 0 there (exp(-inf) = 0, no NaN)
            shift = np.where(np.isfinite(m_new), m_new, 0.0)                  # [rows]
            p = np.exp(s - shift[:, None])                                    # [rows, cols]
            alpha = np.exp(m - shift)                                         # [rows] rescale old state
            l = alpha * l + p.sum(axis=1)                                     # [rows]
            acc = alpha[:, None] * acc + p @ v_t                              # [rows, d_v]
            m = m_new
        out[r0:r1] = acc / l[:, None]                                         # [rows, d_v] write O tile
        moved[1] += (r1 - r0) * d_v
    return out
