"""Naive attention (MHA / GQA / MQA) materialising the score matrix, with causal mask and prefix offset.

Layout follows DeepSeek-V3's reference: q [b, n_q, H_q, d_qk], k [b, n_kv, H_kv, d_qk],
v [b, n_kv, H_kv, d_v] -> o [b, n_q, H_q, d_v]. Query i sits at absolute position n_kv - n_q + i.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Sequence

import numpy as np

from archsim.attention_window import SINK_FLOPS_PER_ROW, attended_pairs, first_key
from archsim.kernels.counting import Site


KVOperands = Sequence[tuple[str, tuple[int, ...], str]]


class SequenceCache:
    """Base of the per-layer decode caches (a dataclass's array fields [b, L, ...]): each step appends its
    new rows along the sequence axis (axis 1)."""

    def append(self, *parts: np.ndarray) -> None:
        """Append one step's rows, one array per field in field order."""
        for f, part in zip(fields(self), parts, strict=True):
            setattr(self, f.name, np.concatenate([getattr(self, f.name), part], axis=1))   # [b, L+s, ...]

    @classmethod
    def extend(cls, cache: SequenceCache | None, *parts: np.ndarray) -> SequenceCache:
        """``cache`` with ``parts`` appended, or a new cache holding them when ``cache`` is None."""
        if cache is None:
            return cls(**{f.name: part for f, part in zip(fields(cls), parts, strict=True)})
        cache.append(*parts)
        return cache


def cache_operand(shape: tuple[int, ...]) -> KVOperands:
    """K/V read as one ``kv_cache`` operand of ``shape`` (MLA absorbed: [b, L, r + d_r], the latent
    serving as both K and V; GQA decode: [b, L, H_kv, d_qk + d_v])."""
    return [("kv_cache", tuple(shape), "cache")]


def record_cache_write(site: Site | None, rows: int, width: int) -> None:
    """New tokens' K/V (MLA: latent + rope key) stored into the cache: 0 FLOPs, a copy into the KV dtype."""
    if site is not None:
        site.record(kind="elementwise", flops=0, reads=[("kv_new", (rows, width), "activation")],
                    writes=[("kv_cache", (rows, width), "cache")], rows=rows, width=width)


def causal_pairs(n_q: int, n_kv: int) -> int:
    """Unmasked (query, key) pairs per head: query at position p sees keys 0..p."""
    first = n_kv - n_q
    return sum(first + i + 1 for i in range(n_q))


def attention_flops(*, batch: int, n_q: int, n_kv: int, heads_q: int, d_qk: int, d_v: int, causal: bool,
                    window: int | None = None, sinks: bool = False) -> int:
    """(2*d_qk + 5 + 2*d_v) per attended pair per query head (docs/counting.md), pairs under a sliding
    ``window`` (archsim.attention_window), plus SINK_FLOPS_PER_ROW per (query, head) with ``sinks``."""
    if causal:
        pairs = causal_pairs(n_q, n_kv) if window is None else attended_pairs(n_q, n_kv, window)
    else:
        pairs = n_q * n_kv
    return batch * heads_q * (pairs * (2 * d_qk + 5 + 2 * d_v) + (n_q * SINK_FLOPS_PER_ROW if sinks else 0))


def causal_mask(n_q: int, n_kv: int, window: int | None = None) -> np.ndarray:
    """Boolean [n_q, n_kv], True where key j is visible to query i (j <= p = n_kv - n_q + i, and
    j > p - window with a sliding window)."""
    pos = np.arange(n_q)[:, None] + (n_kv - n_q)                             # [n_q, 1]
    keys = np.arange(n_kv)[None, :]                                           # [1, n_kv]
    visible = keys <= pos                                                     # [n_q, n_kv]
    if window is not None:
        visible &= keys > pos - window                                        # [n_q, n_kv]
    return visible


def naive_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, *, scale: float, causal: bool,
                    kv_operands: KVOperands | None = None, shared_kv: bool = False,
                    window: int | None = None, sinks: np.ndarray | None = None,
                    site: Site | None = None) -> np.ndarray:
    """softmax(scale * q k^T + mask) v; the query heads of a group share one kv head (GQA / MQA).

    ``kv_operands`` names the compulsory K/V reads when they differ from separate ``k`` and ``v``
    tensors, e.g. one ``kv_cache`` operand when K and V come from a cache (see ``cache_operand``).
    ``shared_kv`` (V inside K, MLA absorbed) is accepted for the flash kernel's signature: the naive model
    reads K and V as separate streams (docs/counting.md). ``window`` (causal): a sliding-window layer, only
    the keys the window reaches are read (archsim.attention_window). ``sinks`` [H_q]: one extra logit per head
    in the softmax with no value (gpt-oss), not scaled.
    """
    del shared_kv
    b, n_q, hq, d_qk = q.shape
    _, n_kv, hkv, d_v = v.shape
    if causal and window is not None:  # the keys before the window's first one are never read
        first = first_key(n_q, n_kv, window)
        k, v, n_kv = k[:, first:], v[:, first:], n_kv - first                # [b, n_kv', H_kv, d]
    g = hq // hkv
    qg = q.reshape(b, n_q, hkv, g, d_qk)                                      # [b, n_q, H_kv, g, d_qk]
    s = np.einsum("bqhgd,bkhd->bhgqk", qg, k) * scale                         # [b, H_kv, g, n_q, n_kv]
    if causal:
        s = np.where(causal_mask(n_q, n_kv, window), s, -np.inf)              # [b, H_kv, g, n_q, n_kv]
    if sinks is not None:  # the sink column joins the softmax and is dropped after it
        sink = np.broadcast_to(sinks.reshape(1, hkv, g, 1, 1), s.shape[:-1] + (1,))   # [b, H_kv, g, n_q, 1]
        s = np.concatenate([s, sink], axis=-1)                                # [b, H_kv, g, n_q, n_kv+1]
    s = s - s.max(axis=-1, keepdims=True)                                     # [b, H_kv, g, n_q, n_kv(+1)]
    p = np.exp(s)                                                             # [b, H_kv, g, n_q, n_kv(+1)]
    p = p / p.sum(axis=-1, keepdims=True)                                     # [b, H_kv, g, n_q, n_kv(+1)]
    if sinks is not None:
        p = p[..., :n_kv]                                                     # [b, H_kv, g, n_q, n_kv]
    o = np.einsum("bhgqk,bkhd->bqhgd", p, v).reshape(b, n_q, hq, d_v)         # [b, n_q, H_q, d_v]
    if site is not None:
        _record(site, q, k, v, o, causal=causal, kernel="naive", kv_operands=kv_operands,
                traffic=naive_traffic_bytes(batch=b, n_q=n_q, n_kv=n_kv, heads_q=hq, d_qk=d_qk, d_v=d_v,
                                            elem_bytes=site.dtype("q", "activation").bytes),
                window=window, sinks=sinks, kv_len=n_kv + (first if causal and window is not None else 0))
    return o


def naive_traffic_bytes(*, batch: int, n_q: int, n_kv: int, heads_q: int, d_qk: int, d_v: int,
                        elem_bytes: float) -> tuple[float, float]:
    """(read, write) HBM bytes of the naive kernel per docs/counting.md "Naive".

    Per (sequence, query head): read Q, K, V, S (softmax) and P (PV); write S, P and O.
    """
    per_read = n_q * d_qk + n_kv * d_qk + n_kv * d_v + 2 * n_q * n_kv
    per_write = 2 * n_q * n_kv + n_q * d_v
    scale = batch * heads_q * elem_bytes
    return per_read * scale, per_write * scale


def _record(site: Site, q, k, v, o, *, causal: bool, kernel: str, traffic: tuple[float, float],
            kv_operands: KVOperands | None = None, window: int | None = None, sinks: np.ndarray | None = None,
            kv_len: int | None = None, **extra: object) -> None:
    """One attention call's record. ``k``/``v`` are the keys read ([b, keys, H_kv, d]); ``kv_len`` the keys of
    the sequence (positions), when a sliding ``window`` read fewer; ``sinks`` adds its [H_q] weight read."""
    b, n_q, hq, d_qk = q.shape
    _, n_read, hkv, d_v = v.shape
    n_kv = n_read if kv_len is None else kv_len
    kv = list(kv_operands) if kv_operands is not None else [("k", k.shape, "cache"), ("v", v.shape, "cache")]
    if sinks is not None:
        kv.append(("sinks", sinks.shape, "weight"))
    site.record(kind="attention",
                flops=attention_flops(batch=b, n_q=n_q, n_kv=n_kv, heads_q=hq, d_qk=d_qk, d_v=d_v, causal=causal,
                                      window=window, sinks=sinks is not None),
                reads=[("q", q.shape, "activation")] + kv,
                writes=[("o", o.shape, "activation")], hbm_read_bytes=traffic[0], hbm_write_bytes=traffic[1],
                batch=b, q_len=n_q, kv_len=n_kv, heads_q=hq, heads_kv=hkv, d_qk=d_qk, d_v=d_v,
                causal=causal, kernel=kernel, window=window, **extra)
