"""Tiny DeepSeek-family model (MLA, dense first layers, shared + routed experts, group-limited
routing, optional MTP depth) with seeded random weights: full forward and KV-cached decoding.
A config without ``kv_lora_rank`` gives the dense GQA (Llama) family on the same code path.

The config is any object with Hugging Face field names (a workload's model section scaled down,
a SimpleNamespace, ...). Op names follow checkpoint parameter paths (``layers.3.self_attn.q_a_proj``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping

import numpy as np

from archsim.dtypes import DType
from archsim.kernels.activations import residual_add
from archsim.kernels.attention import naive_attention
from archsim.kernels.counting import Counter, Site
from archsim.kernels.gqa import KVCache, gqa
from archsim.kernels.gemm import linear
from archsim.kernels.mla import MLACache, MLADims, mla
from archsim.kernels.moe import mlp, moe
from archsim.kernels.mtp import mtp_head
from archsim.kernels.norm import rmsnorm
from archsim.kernels.rope import rope_inv_freq, rope_tables, softmax_scale
from archsim.routing import uses_correction_bias

Form = Literal["expanded", "absorbed"]


def _field(cfg: object, name: str, default: object = None) -> object:
    return getattr(cfg, name, default) if not isinstance(cfg, Mapping) else cfg.get(name, default)


class _Cfg:
    """Attribute view over a mapping or an object with HF field names."""

    def __init__(self, cfg: object):
        self._cfg = cfg

    def __getattr__(self, name: str) -> object:
        return _field(self._cfg, name)


def is_moe_layer(cfg: object, i: int) -> bool:
    """Layer i is MoE iff i >= first_k_dense_replace and i % moe_layer_freq == 0 (DeepSeek-V3), and
    (i + 1) % decoder_sparse_step == 0 and i not in mlp_only_layers (Qwen3-MoE): ModelConfig.is_moe_layer's rule
    for any object with those field names (absent fields take their no-op defaults)."""
    c = _Cfg(cfg)
    return (bool(c.n_routed_experts) and i >= (c.first_k_dense_replace or 0) and i % (c.moe_layer_freq or 1) == 0
            and (i + 1) % (c.decoder_sparse_step or 1) == 0 and i not in (c.mlp_only_layers or ()))


def layer_window(cfg: object, i: int) -> int | None:
    """The sliding window of layer i (``sliding_window`` where ``layer_types[i]`` is sliding_attention, gpt-oss),
    None for full attention: ModelConfig.attention_window's rule for any object with those field names."""
    c = _Cfg(cfg)
    kinds = c.layer_types or ()
    return c.sliding_window if i < len(kinds) and kinds[i] == "sliding_attention" else None


@dataclass(kw_only=True)
class DecodeState:
    """KV caches per layer (compressed latent + rope key) and the next position."""

    caches: list[MLACache | KVCache | None]
    position: int = 0
    expert_counts: list[dict[int, np.ndarray]] = field(default_factory=list)


class TinyDeepSeek:
    """A DeepSeek-V3 / Kimi K2 architecture at small sizes with seeded random weights."""

    def __init__(self, cfg: object, *, seed: int = 0, dtype: type = np.float64):
        self.cfg = _Cfg(cfg)
        self.dtype = dtype
        c = self.cfg
        self.kind = "mla" if c.kv_lora_rank else "gqa"
        self.dims = MLADims.of(self.cfg) if self.kind == "mla" else None
        self.head_dim = c.head_dim or c.hidden_size // c.num_attention_heads  # GQA head width (HF default)
        self.kv_heads = c.num_key_value_heads or c.num_attention_heads
        self.eps = float(c.rms_norm_eps)
        scaling = rope_scaling_dict(c.rope_scaling)
        qk, rot = (c.qk_nope_head_dim + c.qk_rope_head_dim, c.qk_rope_head_dim) if self.kind == "mla" else \
            (self.head_dim, self.head_dim)
        self.scale = softmax_scale(qk, scaling)
        self.inv_freq, self.rope_amplitude = rope_inv_freq(rot, float(c.rope_theta), scaling)
        self.weights = init_weights(self.cfg, np.random.default_rng(seed), dtype)
        self.use_bias = uses_correction_bias(c.topk_method)
        moe_layers = [i for i in range(self.n_layers_total) if is_moe_layer(self.cfg, i)]
        self.bias = {i: self.weights[f"layers.{i}.mlp.gate.e_score_correction_bias"] if self.use_bias else None
                     for i in moe_layers}

    @property
    def n_layers_total(self) -> int:
        """Main layers plus MTP depths (the MTP layer is stored as layers.{num_hidden_layers})."""
        return int(self.cfg.num_hidden_layers) + int(self.cfg.num_nextn_predict_layers or 0)

    # -- forward -------------------------------------------------------------------------------
    def forward(self, tokens: np.ndarray, *, form: Form = "absorbed", attend: Callable = naive_attention,
                counter: Counter | None = None, roles: Mapping[str, DType] | None = None,
                state: DecodeState | None = None, last_only: bool = False) -> tuple[np.ndarray, DecodeState]:
        """Logits [b, s, V] for tokens [b, s] continuing ``state`` (None: a fresh prompt).

        Passing the returned state back with one new token per sequence is incremental decoding.
        ``last_only`` computes the head for the last position only ([b, 1, V]), as generation does.
        """
        tokens = np.asarray(tokens)
        b, s = tokens.shape
        if state is None:
            state = DecodeState(caches=[None] * self.n_layers_total)
        site = _SiteMaker(counter, roles)
        h = self.hidden(tokens, state, form=form, attend=attend, site=site)  # [b, s, hidden]
        x = rmsnorm(h, self.weights["norm"], self.eps, site=site("norm"))   # [b, s, hidden]
        if last_only:
            x = x[:, -1:]                                                     # [b, 1, hidden]
        logits = linear(x, self.weights["lm_head"], site=site("lm_head"))   # [b, s or 1, V]
        state.position += s
        return logits, state

    def hidden(self, tokens: np.ndarray, state: DecodeState, *, form: Form, attend: Callable,
               site: "_SiteMaker") -> np.ndarray:
        """Last hidden state [b, s, hidden] before the final norm; updates the caches."""
        h = self.embed(tokens, site)                                          # [b, s, hidden]
        cos, sin = self.rope(state.position, tokens.shape[1])                 # [s, d_r/2] each
        counts: dict[int, np.ndarray] = {}
        for i in range(self.cfg.num_hidden_layers):
            h, state.caches[i], c = self.layer(i, h, cos, sin, state.caches[i], form=form, attend=attend, site=site)
            if c is not None:
                counts[i] = c
        state.expert_counts.append(counts)
        return h

    def embed(self, tokens: np.ndarray, site: "_SiteMaker") -> np.ndarray:
        """Embedding rows of ``tokens`` [b, s] -> [b, s, hidden]."""
        return embedding(self.weights["embed_tokens"], tokens, site=site("embed_tokens"))

    def rope(self, start: int, s: int) -> tuple[np.ndarray, np.ndarray]:
        cos, sin = rope_tables(np.arange(start, start + s), self.inv_freq, self.rope_amplitude)  # [s, d_r/2]
        return cos.astype(self.dtype), sin.astype(self.dtype)

    def layer(self, i: int, h: np.ndarray, cos: np.ndarray, sin: np.ndarray, cache: MLACache | None, *,
              form: Form, attend: Callable, site: "_SiteMaker"):
        """One decoder block: (h, cache, expert counts or None)."""
        w = self.weights
        p = f"layers.{i}"
        x = rmsnorm(h, w[f"{p}.input_layernorm"], self.eps, site=site(f"{p}.input_layernorm"))  # [b, s, hidden]
        if self.kind == "mla":
            a, cache = mla(x, _prefixed(w, f"{p}.self_attn."), self.dims, cos, sin, eps=self.eps, scale=self.scale,
                           form=form, cache=cache, attend=attend, site=site(f"{p}.self_attn"))  # [b, s, hidden]
        else:
            a, cache = gqa(x, _prefixed(w, f"{p}.self_attn."), heads=self.cfg.num_attention_heads,
                           kv_heads=self.kv_heads, head_dim=self.head_dim, cos=cos, sin=sin, scale=self.scale,
                           cache=cache, attend=attend, eps=self.eps, window=layer_window(self.cfg, i),
                           site=site(f"{p}.self_attn"))                                          # [b, s, hidden]
        h = residual_add(h, a, site=site(f"{p}.residual_attn"))                                # [b, s, hidden]
        x = rmsnorm(h, w[f"{p}.post_attention_layernorm"], self.eps,
                    site=site(f"{p}.post_attention_layernorm"))                                # [b, s, hidden]
        counts = None
        if is_moe_layer(self.cfg, i):
            mw = {"gate": w[f"{p}.mlp.gate.weight"], "gate_bias": w.get(f"{p}.mlp.gate.bias"),
                  "experts": _prefixed(w, f"{p}.mlp.experts."),
                  "shared_experts": _prefixed(w, f"{p}.mlp.shared_experts.") or None}
            f, counts = moe(x, mw, self.cfg, bias=self.bias[i], site=site(f"{p}.mlp"))         # [b, s, hidden]
        else:
            f = mlp(x, _prefixed(w, f"{p}.mlp."), site=site(f"{p}.mlp"))                       # [b, s, hidden]
        h = residual_add(h, f, site=site(f"{p}.residual_mlp"))                                 # [b, s, hidden]
        return h, cache, counts

    # -- MTP -----------------------------------------------------------------------------------
    def mtp_logits(self, tokens: np.ndarray, *, form: Form = "absorbed", counter: Counter | None = None,
                   roles: Mapping[str, DType] | None = None) -> np.ndarray:
        """MTP depth 1: logits [b, s-1, V] predicting token i+2 from h_i and token i+1."""
        if not self.cfg.num_nextn_predict_layers:
            raise ValueError("config has num_nextn_predict_layers = 0: no MTP head")
        tokens = np.asarray(tokens)
        site = _SiteMaker(counter, roles)
        state = DecodeState(caches=[None] * self.n_layers_total)
        h = self.hidden(tokens, state, form=form, attend=naive_attention, site=site)    # [b, s, hidden]
        j = self.cfg.num_hidden_layers
        emb = self.embed(tokens[:, 1:], site)                                           # [b, s-1, hidden]
        cos, sin = self.rope(0, tokens.shape[1] - 1)                                    # [s-1, d_r/2]

        def block(x: np.ndarray) -> np.ndarray:
            return self.layer(j, x, cos, sin, None, form=form, attend=naive_attention, site=site)[0]

        w = _prefixed(self.weights, f"layers.{j}.")
        return mtp_head(h[:, :-1], emb, w, eps=self.eps, block=block, lm_head=self.weights["lm_head"],
                        site=site(f"layers.{j}"))


def embedding(table: np.ndarray, tokens: np.ndarray, *, site: Site | None = None) -> np.ndarray:
    """Row gather ``table[tokens]`` (table [V, hidden]): 0 FLOPs, reads the touched rows."""
    if site is not None:
        n = tokens.size
        site.record(kind="embedding", flops=0, reads=[("weight", (n, table.shape[1]), "weight")],
                    writes=[("y", (n, table.shape[1]), "activation")], tokens=n)
    return table[tokens]                                                      # [b, s, hidden]


def rope_scaling_dict(scaling: object) -> dict | None:
    """A config's rope_scaling (mapping, dataclass or None) as a plain dict without unset fields."""
    if scaling is None:
        return None
    if dataclasses.is_dataclass(scaling):
        scaling = dataclasses.asdict(scaling)
    return {k: v for k, v in dict(scaling).items() if v is not None}


class _SiteMaker:
    """Makes a Site per op name when counting, None otherwise."""

    def __init__(self, counter: Counter | None, roles: Mapping[str, DType] | None):
        self.counter, self.roles = counter, dict(roles or {})

    def __call__(self, name: str) -> Site | None:
        return None if self.counter is None else self.counter.site(name, roles=self.roles)


def _prefixed(w: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """Sub-dict of the entries under ``prefix`` with the prefix (and a trailing ``.weight``) removed."""
    out = {}
    for key, value in w.items():
        if key.startswith(prefix):
            rest = key[len(prefix):]
            out[rest[:-len(".weight")] if rest.endswith(".weight") else rest] = value
    return out


def init_weights(cfg: _Cfg, rng: np.random.Generator, dtype: type) -> dict[str, np.ndarray]:
    """Seeded random weights keyed by checkpoint-like names; matrices scaled by 1/sqrt(fan_in)."""
    w: dict[str, np.ndarray] = {}
    hid, h = cfg.hidden_size, cfg.num_attention_heads
    dn, dr, dv, r = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim, cfg.kv_lora_rank
    hd, kvh = cfg.head_dim or hid // h, cfg.num_key_value_heads or h

    def mat(name: str, out: int, inp: int, lead: tuple[int, ...] = ()) -> None:
        w[name] = (rng.standard_normal(lead + (out, inp)) / np.sqrt(inp)).astype(dtype)

    def norm(name: str, d: int) -> None:
        w[name] = (1 + 0.1 * rng.standard_normal(d)).astype(dtype)

    w["embed_tokens"] = rng.standard_normal((cfg.vocab_size, hid)).astype(dtype)
    n_layers = cfg.num_hidden_layers + (cfg.num_nextn_predict_layers or 0)
    for i in range(n_layers):
        p = f"layers.{i}"
        norm(f"{p}.input_layernorm", hid)
        norm(f"{p}.post_attention_layernorm", hid)
        a = f"{p}.self_attn"
        if not r:  # GQA
            mat(f"{a}.q_proj.weight", h * hd, hid)
            mat(f"{a}.k_proj.weight", kvh * hd, hid)
            mat(f"{a}.v_proj.weight", kvh * hd, hid)
            mat(f"{a}.o_proj.weight", hid, h * hd)
            biased = ("q_proj", "k_proj", "v_proj") if cfg.qkv_bias or cfg.attention_bias else ()
            for proj in biased + (("o_proj",) if cfg.attention_bias else ()):
                w[f"{a}.{proj}.bias"] = (0.1 * rng.standard_normal(w[f"{a}.{proj}.weight"].shape[0])).astype(dtype)
            if cfg.use_qk_norm:  # Qwen3: one RMSNorm weight of head_dim for q, one for k
                norm(f"{a}.q_norm", hd)
                norm(f"{a}.k_norm", hd)
            if cfg.attention_sinks:  # gpt-oss: one softmax logit per query head
                w[f"{a}.sinks"] = (0.5 * rng.standard_normal(h)).astype(dtype)
        elif cfg.q_lora_rank:
            mat(f"{a}.q_a_proj.weight", cfg.q_lora_rank, hid)
            norm(f"{a}.q_a_layernorm", cfg.q_lora_rank)
            mat(f"{a}.q_b_proj.weight", h * (dn + dr), cfg.q_lora_rank)
        else:
            mat(f"{a}.q_proj.weight", h * (dn + dr), hid)
        if r:
            mat(f"{a}.kv_a_proj_with_mqa.weight", r + dr, hid)
            norm(f"{a}.kv_a_layernorm", r)
            mat(f"{a}.kv_b_proj.weight", h * (dn + dv), r)
            mat(f"{a}.o_proj.weight", hid, h * dv)
        if is_moe_layer(cfg, i):
            e, inter = cfg.n_routed_experts, cfg.moe_intermediate_size
            mat(f"{p}.mlp.gate.weight", e, hid)
            if uses_correction_bias(cfg.topk_method):  # a parameter only under noaux_tc routing
                w[f"{p}.mlp.gate.e_score_correction_bias"] = (0.01 * rng.standard_normal(e)).astype(dtype)
            if cfg.router_bias:  # gpt-oss: the router Linear's bias
                w[f"{p}.mlp.gate.bias"] = (0.1 * rng.standard_normal(e)).astype(dtype)
            mat(f"{p}.mlp.experts.gate_up_proj", 2 * inter, hid, (e,))  # gate rows, then up rows
            mat(f"{p}.mlp.experts.down_proj", hid, inter, (e,))
            if cfg.expert_bias:  # gpt-oss: gate_up_proj_bias [E, 2I], down_proj_bias [E, h]
                w[f"{p}.mlp.experts.gate_up_proj_bias"] = (0.1 * rng.standard_normal((e, 2 * inter))).astype(dtype)
                w[f"{p}.mlp.experts.down_proj_bias"] = (0.1 * rng.standard_normal((e, hid))).astype(dtype)
            if cfg.n_shared_experts:
                width = cfg.n_shared_experts * inter
                for proj, (o, i_) in {"gate_proj": (width, hid), "up_proj": (width, hid),
                                      "down_proj": (hid, width)}.items():
                    mat(f"{p}.mlp.shared_experts.{proj}.weight", o, i_)
        else:
            inter = cfg.intermediate_size
            for proj, (o, i_) in {"gate_proj": (inter, hid), "up_proj": (inter, hid),
                                  "down_proj": (hid, inter)}.items():
                mat(f"{p}.mlp.{proj}.weight", o, i_)
        if i >= cfg.num_hidden_layers:  # MTP depth: its own norms and eh_proj, lm_head shared
            norm(f"{p}.enorm", hid)
            norm(f"{p}.hnorm", hid)
            mat(f"{p}.eh_proj.weight", hid, 2 * hid)
            norm(f"{p}.shared_head.norm", hid)
    norm("norm", hid)
    if cfg.tie_word_embeddings:  # the head is the embedding matrix (one tensor in the checkpoint)
        w["lm_head"] = w["embed_tokens"]
    else:
        mat("lm_head", cfg.vocab_size, hid)
    return w
