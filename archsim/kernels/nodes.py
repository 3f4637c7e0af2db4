"""Run the tiny model one operator-graph node at a time, by node name, in any dependency order.

``NodeRunner.run(name)`` executes the kernel of graph node ``name`` (names as archsim.graph.build
makes them: ``layers.3.self_attn.q_b_proj``) on the values its predecessors produced, so a scheduler
(e.g. the discrete-event executor's ``on_op`` callback) can drive real execution. The phase fixes
the MLA form as the graph does: prefill expanded (no prior cache), decode absorbed over the cache.
Results equal ``TinyDeepSeek.forward`` (checked in tests).

MTP nodes (``mtp.0.*``, built with ``mtp=True``) run the MTP depth stored as layer
``num_hidden_layers + D``; at depth D position i combines the previous depth's hidden state with the
embedding of token i + D + 1. ``next_tokens`` [b, s + depths - 1] holds the tokens after the step's
first one (in serving they are the main model's and the drafts' sampled outputs).
"""
from __future__ import annotations

from typing import Callable, Literal

import numpy as np

from archsim.attention_window import first_key, keys_read
from archsim.kernels.activations import residual_add, swiglu
from archsim.kernels.attention import cache_operand, naive_attention, record_cache_write
from archsim.kernels.counting import Counter, Site
from archsim.kernels.gemm import linear, per_head
from archsim.kernels.gqa import KVCache
from archsim.kernels.mla import MLACache
from archsim.kernels.moe import combine, dispatch, experts_act, experts_down, experts_gate_up, swiglu_clamp
from archsim.kernels.norm import rmsnorm
from archsim.kernels.rope import apply_rope
from archsim.kernels.router import moe_router
from archsim.kernels.tiny import DecodeState, TinyDeepSeek, embedding, is_moe_layer, layer_window


class NodeRunner:
    """Executes graph nodes of one phase step of ``model`` on ``tokens`` [b, s]."""

    def __init__(self, model: TinyDeepSeek, tokens: np.ndarray, *, phase: Literal["prefill", "decode"],
                 state: DecodeState | None = None, attend: Callable = naive_attention,
                 counter: Counter | None = None, next_tokens: np.ndarray | None = None):
        self.m, self.tokens, self.phase, self.attend, self.counter = model, np.asarray(tokens), phase, attend, counter
        self.next_tokens = None if next_tokens is None else np.asarray(next_tokens)
        self.b, self.s = self.tokens.shape
        self.layers = model.cfg.num_hidden_layers
        self.state = state or DecodeState(caches=[None] * model.n_layers_total)
        self.past = self.state.position  # tokens already cached per sequence (a prefill chunk's prefix)
        self.cos, self.sin = model.rope(self.state.position, self.s)             # [s, d_r/2] each
        self.env: dict[str, object] = {}
        self.expert_counts: dict[int, np.ndarray] = {}

    # -- public ----------------------------------------------------------------------------------
    def run(self, name: str) -> None:
        """Execute node ``name``; its graph predecessors must have run."""
        top = {"embed_tokens": self._embed_tokens, "norm": self._norm_final, "lm_head": self._lm_head}
        if name in top:
            self.env[name] = top[name]()
            return
        parts = name.split(".", 2)
        if parts[0] not in ("layers", "mtp") or len(parts) < 3 or not parts[1].isdigit():
            raise KeyError(f"no kernel for graph node {name!r}")
        layer, key, prefix = int(parts[1]), parts[2], f"{parts[0]}.{parts[1]}."
        if parts[0] == "mtp":
            layer += self.layers  # the MTP depth's decoder layer is stored after the main layers
            if key in self._MTP:
                self.env[name] = getattr(self, self._MTP[key])(prefix)
                return
        self.env[name] = self._handler(layer, key)(layer, prefix)

    def finish(self) -> tuple[np.ndarray, DecodeState]:
        """(logits, state) after every node ran; advances the state's position like ``forward``."""
        self.state.position += self.s
        self.state.expert_counts.append(dict(self.expert_counts))
        return self.env["lm_head"], self.state

    # -- helpers -----------------------------------------------------------------------------------
    def _site(self, name: str) -> Site | None:
        return None if self.counter is None else self.counter.site(name)

    def _w(self, key: str) -> np.ndarray:
        """Weight by graph name; ``mtp.D.`` names map to the stored layer ``num_hidden_layers + D``."""
        if key.startswith("mtp."):
            depth, rest = key[len("mtp."):].split(".", 1)
            key = f"layers.{self.layers + int(depth)}.{rest}"
        return self.m.weights[key]

    def _hidden_in(self, layer: int) -> np.ndarray:
        if layer >= self.layers:
            return self.env[f"mtp.{layer - self.layers}.eh_proj"]
        return self.env["embed_tokens"] if layer == 0 else self.env[f"layers.{layer - 1}.residual_mlp"]

    # -- MTP depth ---------------------------------------------------------------------------------
    _MTP = {"embed_tokens": "_mtp_embed", "enorm": "_mtp_enorm", "hnorm": "_mtp_hnorm", "eh_proj": "_mtp_eh_proj",
            "shared_head.norm": "_mtp_head_norm", "shared_head.head": "_mtp_head"}

    def _mtp_embed(self, p: str) -> np.ndarray:
        if self.next_tokens is None:
            raise ValueError("MTP nodes need next_tokens (the token after each position)")
        depth = int(p.split(".")[1])
        return self._embed(self.next_tokens[:, depth:depth + self.s], p + "embed_tokens")  # [b, s, hidden]

    def _mtp_enorm(self, p: str) -> np.ndarray:
        return self._norm(p + "enorm", self.env[p + "embed_tokens"], p + "enorm")

    def _mtp_hnorm(self, p: str) -> np.ndarray:
        depth = int(p.split(".")[1])
        h = self.env[f"layers.{self.layers - 1}.residual_mlp" if depth == 0 else f"mtp.{depth - 1}.residual_mlp"]
        return self._norm(p + "hnorm", h, p + "hnorm")

    def _mtp_eh_proj(self, p: str) -> np.ndarray:
        x = np.concatenate([self.env[p + "enorm"], self.env[p + "hnorm"]], axis=-1)  # [b, s, 2*hidden]
        return self._lin(p + "eh_proj", x)                                        # [b, s, hidden]

    def _mtp_head_norm(self, p: str) -> np.ndarray:
        return self._norm(p + "shared_head.norm", self.env[p + "residual_mlp"], p + "shared_head.norm")

    def _mtp_head(self, p: str) -> np.ndarray:
        x = self.env[p + "shared_head.norm"]                                      # [b, s, hidden]
        if self.phase == "prefill":
            x = x[:, -1:]                                                         # [b, 1, hidden]
        return linear(x, self._w("lm_head"), site=self._site(p + "shared_head.head"))  # [b, s or 1, V]

    def _handler(self, layer: int, key: str):
        if self.m.kind == "gqa" and key in self._GQA:
            sub = key[len("self_attn."):]
            return lambda i, p: self._gqa_node(i, p, sub)
        table = {
            "input_layernorm": lambda i, p: self._norm(p + key, self._hidden_in(i), p + "input_layernorm"),
            "self_attn.q_a_proj": lambda i, p: self._lin(p + key, self.env[p + "input_layernorm"]),
            "self_attn.q_a_layernorm": lambda i, p: self._norm(p + key, self.env[p + "self_attn.q_a_proj"],
                                                               p + key),
            "self_attn.q_b_proj": lambda i, p: self._q(p + key, self.env[p + "self_attn.q_a_layernorm"]),
            "self_attn.q_proj": lambda i, p: self._q(p + key, self.env[p + "input_layernorm"]),
            "self_attn.kv_a_proj_with_mqa": lambda i, p: self._lin(p + key, self.env[p + "input_layernorm"]),
            "self_attn.kv_a_layernorm": lambda i, p: self._norm(
                p + key, self.env[p + "self_attn.kv_a_proj_with_mqa"][..., :self.m.dims.kv_lora_rank], p + key),
            "self_attn.rope_q": self._rope_q,
            "self_attn.rope_k": self._rope_k,
            "self_attn.kv_cache_update": self._cache_update,
            "self_attn.kv_b_proj": self._kv_b_proj,
            "self_attn.q_absorb": self._q_absorb,
            "self_attn.attn_core": self._attn_core,
            "self_attn.o_absorb": self._o_absorb,
            "self_attn.o_proj": self._o_proj,
            "residual_attn": lambda i, p: residual_add(self._hidden_in(i), self.env[p + "self_attn.o_proj"],
                                                       site=self._site(p + key)),
            "post_attention_layernorm": lambda i, p: self._norm(p + key, self.env[p + "residual_attn"], p + key),
            "residual_mlp": lambda i, p: residual_add(self.env[p + "residual_attn"], self._mlp_out(i, p),
                                                      site=self._site(p + key)),
        }
        if key in table:
            return table[key]
        for mlp in ("mlp.", "mlp.shared_experts."):
            proj = key[len(mlp):]
            if key.startswith(mlp) and proj in ("gate_proj", "up_proj", "act", "down_proj"):
                return lambda i, p: self._ffn(p + mlp, proj)
        moe = {"mlp.gate": self._gate, "mlp.router": self._router, "mlp.experts.gate_up": self._gate_up,
               "mlp.experts.act": self._experts_act, "mlp.experts.down": self._experts_down,
               "mlp.combine": self._combine}
        if key in moe:
            return moe[key]
        raise KeyError(f"no kernel for graph node 'layers.{layer}.{key}'")

    _GQA = frozenset({"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.q_norm",
                      "self_attn.k_norm", "self_attn.rope_q", "self_attn.rope_k", "self_attn.kv_cache_update",
                      "self_attn.attn_core"})

    # -- GQA (dense Llama family) ------------------------------------------------------------------
    def _gqa_node(self, i: int, p: str, key: str):
        m = self.m
        if key in ("q_proj", "k_proj", "v_proj"):
            heads = m.cfg.num_attention_heads if key == "q_proj" else m.kv_heads
            y = self._lin(p + "self_attn." + key, self.env[p + "input_layernorm"])              # [b, s, heads*d]
            return y.reshape(self.b, self.s, heads, m.head_dim)                                  # [b, s, heads, d]
        if key in ("q_norm", "k_norm"):  # Qwen3: RMSNorm of each head, before RoPE
            x = self.env[p + ("self_attn.q_proj" if key == "q_norm" else "self_attn.k_proj")]       # [b, s, heads, d]
            return self._norm(p + "self_attn." + key, x, p + "self_attn." + key)
        if key in ("rope_q", "rope_k"):
            src = ("q_norm" if key == "rope_q" else "k_norm") if m.cfg.use_qk_norm else \
                ("q_proj" if key == "rope_q" else "k_proj")
            x = self.env[p + "self_attn." + src]                                                 # [b, s, heads, d]
            return apply_rope(x, self.cos[:, None, :], self.sin[:, None, :], site=self._site(p + "self_attn." + key))
        if key == "kv_cache_update":
            k, v = self.env[p + "self_attn.rope_k"], self.env[p + "self_attn.v_proj"]
            record_cache_write(self._site(p + "self_attn.kv_cache_update"), self.b * self.s, 2 * m.kv_heads * m.head_dim)
            cache = self.state.caches[i] = KVCache.extend(self.state.caches[i], k, v)
            return cache
        site = self._site(p + "self_attn.attn_core")
        q = self.env[p + "self_attn.rope_q"]                                                     # [b, s, H, d]
        window, sinks = layer_window(m.cfg, i), self._optional(p + "self_attn.sinks")
        # gpt-oss's arguments go only where they are used: any attend callable keeps working for the others
        extra = {} if window is None and sinks is None else {"window": window, "sinks": sinks}
        if self.phase == "prefill":  # this step's K/V fresh, a cached prefix's from the cache
            k, v = self.env[p + "self_attn.rope_k"], self.env[p + "self_attn.v_proj"]        # [b, s, H_kv, d]
            operands = None
            if self.past:
                cache = self.state.caches[i]
                k = np.concatenate([cache.k[:, :self.past], k], axis=1)                     # [b, L, H_kv, d]
                v = np.concatenate([cache.v[:, :self.past], v], axis=1)                     # [b, L, H_kv, d]
                # a sliding window reads only the prefix keys it reaches
                cached = self.past - first_key(self.s, self.past + self.s, window)
                operands = cache_operand((self.b, cached, m.kv_heads, 2 * m.head_dim)) + [
                    ("k", (self.b * self.s, m.kv_heads, m.head_dim), "activation"),
                    ("v", (self.b * self.s, m.kv_heads, m.head_dim), "activation")]
            return self.attend(q, k, v, scale=m.scale, causal=True, site=site, kv_operands=operands, **extra)
        cache = self.env[p + "self_attn.kv_cache_update"]
        n_kv = keys_read(self.s, cache.k.shape[1], window)  # a sliding window reads its last keys only
        return self.attend(q, cache.k, cache.v, scale=m.scale, causal=True, site=site,
                           kv_operands=cache_operand((self.b, n_kv, m.kv_heads, 2 * m.head_dim)),
                           **extra)                                                              # [b, s, H, d]

    # -- node kernels ------------------------------------------------------------------------------
    def _embed_tokens(self) -> np.ndarray:
        return self._embed(self.tokens, "embed_tokens")

    def _embed(self, tokens: np.ndarray, name: str) -> np.ndarray:
        return embedding(self._w("embed_tokens"), tokens, site=self._site(name))  # [b, s, hidden]

    def _norm(self, name: str, x: np.ndarray, weight_key: str) -> np.ndarray:
        return rmsnorm(x, self._w(weight_key), self.m.eps, site=self._site(name))

    def _lin(self, name: str, x: np.ndarray) -> np.ndarray:
        bias = self._w(name + ".bias") if self._has(name + ".bias") else None
        return linear(x, self._w(name + ".weight"), bias=bias, site=self._site(name))

    def _has(self, key: str) -> bool:
        if key.startswith("mtp."):
            depth, rest = key[len("mtp."):].split(".", 1)
            key = f"layers.{self.layers + int(depth)}.{rest}"
        return key in self.m.weights

    def _q(self, name: str, x: np.ndarray) -> np.ndarray:
        d = self.m.dims
        q = self._lin(name, x)                                                  # [b, s, H*(dn+dr)]
        return q.reshape(self.b, self.s, d.num_attention_heads, d.qk_nope_head_dim + d.qk_rope_head_dim)

    def _q_node(self, p: str) -> np.ndarray:
        key = p + ("self_attn.q_b_proj" if self.m.dims.q_lora_rank else "self_attn.q_proj")
        return self.env[key]                                                    # [b, s, H, dn+dr]

    def _rope_q(self, i: int, p: str) -> np.ndarray:
        q_pe = self._q_node(p)[..., self.m.dims.qk_nope_head_dim:]              # [b, s, H, dr]
        return apply_rope(q_pe, self.cos[:, None, :], self.sin[:, None, :], site=self._site(p + "self_attn.rope_q"))

    def _rope_k(self, i: int, p: str) -> np.ndarray:
        k_pe = self.env[p + "self_attn.kv_a_proj_with_mqa"][..., self.m.dims.kv_lora_rank:]   # [b, s, dr]
        return apply_rope(k_pe, self.cos, self.sin, site=self._site(p + "self_attn.rope_k"))

    def _cache_update(self, i: int, p: str) -> MLACache:
        latent, k_pe = self.env[p + "self_attn.kv_a_layernorm"], self.env[p + "self_attn.rope_k"]
        record_cache_write(self._site(p + "self_attn.kv_cache_update"), self.b * self.s, latent.shape[-1] + k_pe.shape[-1])
        cache = self.state.caches[i] = MLACache.extend(self.state.caches[i], latent, k_pe)
        return cache

    def _wkv_b(self, p: str) -> np.ndarray:
        d = self.m.dims
        return self._w(p + "self_attn.kv_b_proj.weight").reshape(
            d.num_attention_heads, d.qk_nope_head_dim + d.v_head_dim, d.kv_lora_rank)   # [H, dn+dv, r]

    def _kv_b_proj(self, i: int, p: str) -> np.ndarray:
        """Expand the latents: the cached prefix's (read from the cache) and this step's."""
        latent = self.env[p + "self_attn.kv_a_layernorm"]                            # [b, s, r]
        if self.past:
            latent = np.concatenate([self.state.caches[i].latent[:, :self.past], latent], axis=1)  # [b, L, r]
        return linear(latent, self._w(p + "self_attn.kv_b_proj.weight"), cached_rows=self.b * self.past,
                      site=self._site(p + "self_attn.kv_b_proj"))                  # [b, L, H*(dn+dv)]

    def _q_absorb(self, i: int, p: str) -> np.ndarray:
        dn = self.m.dims.qk_nope_head_dim
        return per_head(self._q_node(p)[..., :dn], self._wkv_b(p)[:, :dn, :],
                        site=self._site(p + "self_attn.q_absorb"))                # [b, s, H, r]

    def _attn_core(self, i: int, p: str) -> np.ndarray:
        d, site = self.m.dims, self._site(p + "self_attn.attn_core")
        q_pe = self.env[p + "self_attn.rope_q"]                                 # [b, s, H, dr]
        if self.phase == "prefill":  # expanded over the cached prefix (re-expanded) and this step's keys
            n_kv, h = self.past + self.s, d.num_attention_heads
            kv = self.env[p + "self_attn.kv_b_proj"].reshape(self.b, n_kv, h, d.qk_nope_head_dim + d.v_head_dim)
            k_pe = self.env[p + "self_attn.rope_k"]                                 # [b, s, dr]
            if self.past:
                k_pe = np.concatenate([self.state.caches[i].k_pe[:, :self.past], k_pe], axis=1)  # [b, L, dr]
            k_pe = np.broadcast_to(k_pe[:, :, None, :], (self.b, n_kv, h, d.qk_rope_head_dim))  # [b, L, H, dr]
            k = np.concatenate([kv[..., :d.qk_nope_head_dim], k_pe], axis=-1)     # [b, L, H, dn+dr]
            v = kv[..., d.qk_nope_head_dim:]                                       # [b, L, H, dv]
            q = np.concatenate([self._q_node(p)[..., :d.qk_nope_head_dim], q_pe], axis=-1)   # [b, s, H, dn+dr]
            operands = None
            if self.past:  # K and V come expanded from kv_b_proj; the prefix's rope keys from the cache
                operands = [("k", k.shape, "activation"), ("v", v.shape, "activation"),
                            ("k_rope_cache", (self.b * self.past, d.qk_rope_head_dim), "cache")]
            return self.attend(q, k, v, scale=self.m.scale, causal=True, site=site, kv_operands=operands)
        cache = self.env[p + "self_attn.kv_cache_update"]
        q = np.concatenate([self.env[p + "self_attn.q_absorb"], q_pe], axis=-1)  # [b, s, H, r+dr]
        k = np.concatenate([cache.latent, cache.k_pe], axis=-1)[:, :, None, :]   # [b, L, 1, r+dr]
        return self.attend(q, k, cache.latent[:, :, None, :], scale=self.m.scale, causal=True, site=site,
                           kv_operands=cache_operand(k.shape[:2] + (k.shape[3],)), shared_kv=True)  # [b, s, H, r]

    def _o_absorb(self, i: int, p: str) -> np.ndarray:
        dn = self.m.dims.qk_nope_head_dim
        return per_head(self.env[p + "self_attn.attn_core"], self._wkv_b(p)[:, dn:, :], transpose=True,
                        site=self._site(p + "self_attn.o_absorb"))                # [b, s, H, dv]

    def _o_proj(self, i: int, p: str) -> np.ndarray:
        absorbed = self.m.kind == "mla" and self.phase == "decode"
        src = p + ("self_attn.o_absorb" if absorbed else "self_attn.attn_core")
        o = self.env[src]                                                       # [b, s, H, dv]
        return self._lin(p + "self_attn.o_proj", o.reshape(self.b, self.s, -1))  # [b, s, hidden]

    def _ffn(self, prefix: str, proj: str) -> np.ndarray:
        x = self.env[prefix.split("mlp.")[0] + "post_attention_layernorm"]
        x = x.reshape(-1, x.shape[-1])                                         # [T, hidden]
        if proj in ("gate_proj", "up_proj"):
            return self._lin(prefix + proj, x)                                  # [T, I]
        if proj == "act":
            return swiglu(self.env[prefix + "gate_proj"], self.env[prefix + "up_proj"], site=self._site(prefix + "act"))
        return self._lin(prefix + "down_proj", self.env[prefix + "act"])        # [T, hidden]

    def _mlp_out(self, i: int, p: str) -> np.ndarray:
        out = self.env[p + ("mlp.combine" if is_moe_layer(self.m.cfg, i) else "mlp.down_proj")]
        return out.reshape(self.b, self.s, -1)                                  # [b, s, hidden]

    def _gate(self, i: int, p: str) -> np.ndarray:
        x = self.env[p + "post_attention_layernorm"]
        return self._lin(p + "mlp.gate", x.reshape(-1, x.shape[-1]))            # [T, E]

    def _router(self, i: int, p: str):
        c = self.m.cfg
        weights, idx = moe_router(
            self.env[p + "mlp.gate"], self.m.bias[i], top_k=c.num_experts_per_tok, topk_method=c.topk_method,
            scoring_func=c.scoring_func or "sigmoid", n_group=c.n_group or 1,
            topk_group=c.topk_group or 1, norm_topk_prob=bool(c.norm_topk_prob),
            routed_scaling_factor=None if c.routed_scaling_factor is None else float(c.routed_scaling_factor),
            site=self._site(p + "mlp.router"))
        d = dispatch(idx, c.n_routed_experts)
        self.expert_counts[i] = d.counts
        return weights, d

    def _gate_up(self, i: int, p: str) -> list[np.ndarray]:
        x = self.env[p + "post_attention_layernorm"]
        _, d = self.env[p + "mlp.router"]
        return experts_gate_up(x.reshape(-1, x.shape[-1]), d, self._w(p + "mlp.experts.gate_up_proj"),
                               bias=self._optional(p + "mlp.experts.gate_up_proj_bias"),
                               site=self._site(p + "mlp.experts.gate_up"))

    def _experts_act(self, i: int, p: str) -> list[np.ndarray]:
        return experts_act(self.env[p + "mlp.experts.gate_up"], clamp=swiglu_clamp(self.m.cfg),
                           site=self._site(p + "mlp.experts.act"))

    def _experts_down(self, i: int, p: str) -> list[np.ndarray]:
        _, d = self.env[p + "mlp.router"]
        return experts_down(self.env[p + "mlp.experts.act"], d, self._w(p + "mlp.experts.down_proj"),
                            bias=self._optional(p + "mlp.experts.down_proj_bias"),
                            site=self._site(p + "mlp.experts.down"))

    def _optional(self, key: str) -> np.ndarray | None:
        """An optional tensor (gpt-oss's sinks and expert biases), None when the model has none."""
        return self._w(key) if self._has(key) else None

    def _combine(self, i: int, p: str) -> np.ndarray:
        weights, d = self.env[p + "mlp.router"]
        shared = self.env.get(p + "mlp.shared_experts.down_proj")
        return combine(self.env[p + "mlp.experts.down"], d, weights, shared, hidden=self.m.cfg.hidden_size,
                       site=self._site(p + "mlp.combine"))                      # [T, hidden]

    def _norm_final(self) -> np.ndarray:
        last = f"layers.{self.m.cfg.num_hidden_layers - 1}.residual_mlp"
        return rmsnorm(self.env[last], self._w("norm"), self.m.eps, site=self._site("norm"))

    def _lm_head(self) -> np.ndarray:
        x = self.env["norm"]                                                    # [b, s, hidden]
        if self.phase == "prefill":
            x = x[:, -1:]                                                       # [b, 1, hidden] last position
        return linear(x, self._w("lm_head"), site=self._site("lm_head"))        # [b, s or 1, V]
