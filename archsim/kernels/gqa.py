"""Grouped-query attention block (Llama-style MHA / GQA / MQA) with a per-kv-head KV cache.

Weights in checkpoint layout ([out, in]): ``q_proj`` [H*d, hidden], ``k_proj`` / ``v_proj``
[H_kv*d, hidden], ``o_proj`` [hidden, H*d]. RoPE rotates the whole head (interleaved pairs, as the
rest of these kernels; the pairing convention does not change results' invariants or counts).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from archsim.attention_window import keys_read
from archsim.kernels.attention import SequenceCache, cache_operand, naive_attention, record_cache_write
from archsim.kernels.counting import Site, sub_site
from archsim.kernels.gemm import linear
from archsim.kernels.norm import rmsnorm
from archsim.kernels.rope import apply_rope


@dataclass(kw_only=True)
class KVCache(SequenceCache):
    """Rotated keys and values per kv head: k, v [b, L, H_kv, d]."""

    k: np.ndarray
    v: np.ndarray


def gqa(x: np.ndarray, w: Mapping[str, np.ndarray], *, heads: int, kv_heads: int, head_dim: int,
        cos: np.ndarray, sin: np.ndarray, scale: float, cache: KVCache | None = None,
        attend: Callable = naive_attention, eps: float | None = None, window: int | None = None,
        site: Site | None = None) -> tuple[np.ndarray, KVCache]:
    """Attention block over x [b, s, hidden]; with ``cache`` the queries also attend the cached prefix.

    Optional entries of ``w``: ``{q,k,v,o}_proj.bias`` (Qwen2 biases q/k/v, ``attention_bias`` all four),
    ``q_norm`` / ``k_norm`` [d] (Qwen3: RMSNorm of each head before RoPE, with ``eps``) and ``sinks`` [H]
    (gpt-oss: one softmax logit per head). ``window``: a sliding-window layer attends the last ``window`` keys;
    the cache keeps every key (the kernels read only the window's), as the graph counts reads."""
    b, s, _ = x.shape
    q = linear(x, w["q_proj"], bias=w.get("q_proj.bias"),
               site=sub_site(site, "q_proj")).reshape(b, s, heads, head_dim)                       # [b, s, H, d]
    k = linear(x, w["k_proj"], bias=w.get("k_proj.bias"),
               site=sub_site(site, "k_proj")).reshape(b, s, kv_heads, head_dim)                    # [b, s, H_kv, d]
    v = linear(x, w["v_proj"], bias=w.get("v_proj.bias"),
               site=sub_site(site, "v_proj")).reshape(b, s, kv_heads, head_dim)                    # [b, s, H_kv, d]
    if "q_norm" in w:
        q = rmsnorm(q, w["q_norm"], eps, site=sub_site(site, "q_norm"))                             # [b, s, H, d]
        k = rmsnorm(k, w["k_norm"], eps, site=sub_site(site, "k_norm"))                             # [b, s, H_kv, d]
    q = apply_rope(q, cos[:, None, :], sin[:, None, :], site=sub_site(site, "rope_q"))              # [b, s, H, d]
    k = apply_rope(k, cos[:, None, :], sin[:, None, :], site=sub_site(site, "rope_k"))              # [b, s, H_kv, d]
    record_cache_write(sub_site(site, "kv_cache_update"), b * s, 2 * kv_heads * head_dim)
    from_cache = cache is not None
    cache = KVCache.extend(cache, k, v)
    n_kv = cache.k.shape[1]
    operands = cache_operand((b, keys_read(s, n_kv, window), kv_heads, 2 * head_dim)) if from_cache else None
    # gpt-oss's arguments go only where they are used: any attend callable keeps working for the others
    extra = {} if window is None and "sinks" not in w else {"window": window, "sinks": w.get("sinks")}
    o = attend(q, cache.k, cache.v, scale=scale, causal=True, kv_operands=operands,
               site=sub_site(site, "attn_core"), **extra)                                        # [b, s, H, d]
    out = linear(o.reshape(b, s, heads * head_dim), w["o_proj"], bias=w.get("o_proj.bias"),
                 site=sub_site(site, "o_proj"))                                                      # [b, s, hidden]
    return out, cache
