"""Multi-head latent attention (DeepSeek-V2/V3, Kimi K2) in expanded and weight-absorbed forms.

Weights use the Hugging Face checkpoint names and layouts ([out, in]): ``q_a_proj``, ``q_a_layernorm``,
``q_b_proj`` (or ``q_proj`` when q_lora_rank is 0), ``kv_a_proj_with_mqa``, ``kv_a_layernorm``,
``kv_b_proj``, ``o_proj``. The KV cache holds the compressed latent (after kv_a_layernorm) and the
rotated rope key, as DeepSeek-V3's inference code does in its absorbed path; both forms read it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Mapping

import numpy as np

from archsim.kernels.attention import SequenceCache, cache_operand, naive_attention, record_cache_write
from archsim.kernels.counting import Site, sub_site
from archsim.kernels.gemm import linear, per_head
from archsim.kernels.norm import rmsnorm
from archsim.kernels.rope import apply_rope

Attend = Callable[..., np.ndarray]


@dataclass(frozen=True, kw_only=True)
class MLADims:
    """MLA sizes under their HF field names."""

    num_attention_heads: int
    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int

    @staticmethod
    def of(cfg: object) -> "MLADims":
        return MLADims(**{f: getattr(cfg, f) for f in MLADims.__dataclass_fields__})


@dataclass(kw_only=True)
class MLACache(SequenceCache):
    """Per-layer compressed cache: latent [b, L, kv_lora_rank] and rope key [b, L, qk_rope_head_dim]."""

    latent: np.ndarray
    k_pe: np.ndarray


def mla(x: np.ndarray, w: Mapping[str, np.ndarray], dims: MLADims, cos: np.ndarray, sin: np.ndarray, *,
        eps: float, scale: float, form: Literal["expanded", "absorbed"], cache: MLACache | None = None,
        attend: Attend = naive_attention, site: Site | None = None) -> tuple[np.ndarray, MLACache]:
    """MLA over x [b, s, hidden] at positions given by cos/sin [s, d_r/2]; returns (out, cache).

    With ``cache`` the new latent and rope key are appended and the queries attend over all of it
    (causal with the cached prefix). ``attend`` is ``naive_attention`` or a tiled kernel with the same
    signature (including ``kv_operands``). ``site`` is the attention block's prefix, e.g. ``layers.0.self_attn``.
    """
    b, s, _ = x.shape
    h, dn, dr = dims.num_attention_heads, dims.qk_nope_head_dim, dims.qk_rope_head_dim
    r, dv = dims.kv_lora_rank, dims.v_head_dim
    if dims.q_lora_rank:
        cq = linear(x, w["q_a_proj"], site=sub_site(site, "q_a_proj"))                        # [b, s, q_lora]
        cq = rmsnorm(cq, w["q_a_layernorm"], eps, site=sub_site(site, "q_a_layernorm"))       # [b, s, q_lora]
        q = linear(cq, w["q_b_proj"], site=sub_site(site, "q_b_proj"))                        # [b, s, H*(dn+dr)]
    else:
        q = linear(x, w["q_proj"], site=sub_site(site, "q_proj"))                             # [b, s, H*(dn+dr)]
    q = q.reshape(b, s, h, dn + dr)                                                        # [b, s, H, dn+dr]
    q_nope, q_pe = q[..., :dn], q[..., dn:]                                                # [b, s, H, dn], [b, s, H, dr]
    q_pe = apply_rope(q_pe, cos[:, None, :], sin[:, None, :], site=sub_site(site, "rope_q"))  # [b, s, H, dr]
    ckv = linear(x, w["kv_a_proj_with_mqa"], site=sub_site(site, "kv_a_proj_with_mqa"))       # [b, s, r+dr]
    latent = rmsnorm(ckv[..., :r], w["kv_a_layernorm"], eps, site=sub_site(site, "kv_a_layernorm"))  # [b, s, r]
    k_pe = apply_rope(ckv[..., r:], cos, sin, site=sub_site(site, "rope_k"))                  # [b, s, dr]
    record_cache_write(sub_site(site, "kv_cache_update"), b * s, r + dr)
    cache = MLACache.extend(cache, latent, k_pe)
    n_kv = cache.latent.shape[1]
    causal = True
    if form == "expanded":
        kv = linear(cache.latent, w["kv_b_proj"], site=sub_site(site, "kv_b_proj"))            # [b, L, H*(dn+dv)]
        kv = kv.reshape(b, n_kv, h, dn + dv)                                               # [b, L, H, dn+dv]
        k_rope = np.broadcast_to(cache.k_pe[:, :, None, :], (b, n_kv, h, dr))              # [b, L, H, dr]
        k = np.concatenate([kv[..., :dn], k_rope], axis=-1)                                # [b, L, H, dn+dr]
        qf = np.concatenate([q_nope, q_pe], axis=-1)                                       # [b, s, H, dn+dr]
        o = attend(qf, k, kv[..., dn:], scale=scale, causal=causal, site=sub_site(site, "attn_core"))  # [b, s, H, dv]
    elif form == "absorbed":
        wkv_b = w["kv_b_proj"].reshape(h, dn + dv, r)                                      # [H, dn+dv, r]
        q_abs = per_head(q_nope, wkv_b[:, :dn, :], site=sub_site(site, "q_absorb"))           # [b, s, H, r]
        qf = np.concatenate([q_abs, q_pe], axis=-1)                                        # [b, s, H, r+dr]
        k = np.concatenate([cache.latent, cache.k_pe], axis=-1)[:, :, None, :]             # [b, L, 1, r+dr]
        v = cache.latent[:, :, None, :]                                                    # [b, L, 1, r]
        o_lat = attend(qf, k, v, scale=scale, causal=causal, kv_operands=cache_operand((b, n_kv, r + dr)),
                       shared_kv=True, site=sub_site(site, "attn_core"))                                       # [b, s, H, r]
        o = per_head(o_lat, wkv_b[:, dn:, :], transpose=True, site=sub_site(site, "o_absorb"))  # [b, s, H, dv]
    else:
        raise ValueError(f"form must be 'expanded' or 'absorbed', got {form!r}")
    out = linear(o.reshape(b, s, h * dv), w["o_proj"], site=sub_site(site, "o_proj"))         # [b, s, hidden]
    return out, cache
