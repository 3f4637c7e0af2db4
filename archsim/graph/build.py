"""Phase graphs (prefill, decode) of a decoder-only model: one builder for the DeepSeek-V3 family
(MLA + MoE: DeepSeek-V3, Kimi K2) and dense GQA models (Llama), at any scale.

Op names follow checkpoint parameter paths (``layers.3.self_attn.q_b_proj``). Conventions:
- Prefill processes ``batch*prompt_len`` tokens, after ``past_len`` cached tokens per sequence
  (0 by default; > 0 for a prefill chunk or a cached prefix); MLA runs in the expanded form
  (kv_b_proj materialises K_nope and V for every attended token, cached prefix included). Logits are computed for the last position
  of each sequence only (that is all generation needs), so ``lm_head`` has m = batch.
- Decode processes ``q_len`` new tokens per sequence at ``context`` (new tokens included); MLA runs in
  the weight-absorbed form (W_UK folded onto q_nope, W_UV onto the attention output) over the cached
  latent. With ``mtp`` the main model verifies the drafts: q_len = 1 + num_nextn_predict_layers,
  and the MTP module runs on the same tokens.
- Every layer writes its new tokens' K/V (MLA: latent + rope key) to the cache.
- Routed-expert work follows an ExpertLoad (uniform by default) over ``routed_tokens`` tokens
  (default: the tokens of this graph); weight bytes are those of the expected distinct experts.
- ``expert_layout`` is the row layout of the routed experts' grouped GEMMs (attr ``layout``): ``contiguous``
  (default; the layout DeepEP's normal dispatch hands DeepGEMM's contiguous kernel) or ``masked`` (the
  [local experts, max tokens, hidden] buffer DeepEP's low-latency dispatch hands DeepGEMM's masked kernel).
  The graph knows no EP kernels: the mapping layer picks it from the phase's EP mode (mapping/phases.py).
- ``compact=True`` builds only the first decoder layer of each kind (dense / MoE): the one layer-dependent
  choice a decoder layer makes. ``graph.graph["repeats"]`` (LayerRepeats) says which layers each one
  stands for; the cost model weights its ops by that count, so totals equal the full graph's.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Mapping

from archsim.attention_window import first_key
from archsim.config.model import ModelConfig
from archsim.errors import ConfigError
from archsim.graph.expert_load import ExpertLoad, RankWork, uniform_load
from archsim.graph.op import EXPERT_LAYOUTS
from archsim.graph.dag import OpGraph
from archsim.graph.ops import GraphBuilder, operand
from archsim.graph.precision import Precision, Shard


@dataclass(kw_only=True)
class _Step:
    """What one graph processes: ``tokens = batch * q_len`` new tokens attending ``kv_len`` keys."""

    phase: str
    batch: int
    q_len: int
    kv_len: int
    shard: Shard
    load: ExpertLoad | None
    routed_tokens: float
    expert_layout: str = "contiguous"
    rank_work: RankWork | None = None

    @property
    def tokens(self) -> int:
        return self.batch * self.q_len

    @property
    def past(self) -> int:
        """Keys per sequence already in the cache before this step's tokens."""
        return self.kv_len - self.q_len

    @cached_property
    def routing(self) -> tuple[tuple[float, ...], float]:
        """(expected tokens per local expert slot, expected slots with work): same for every MoE layer. The
        mapping layer's ``rank_work`` when given (the busiest EP rank), else this device's share of the load
        (experts [0, E/ep) taking ``routed_tokens``)."""
        if self.rank_work is not None:
            return self.rank_work.tokens_per_slot, self.rank_work.distinct
        local = range(self.load.experts // self.shard.ep)
        return (self.load.tokens_per_expert(self.routed_tokens, local),
                self.load.distinct_experts(self.routed_tokens, local))


def build_prefill(model: ModelConfig, *, batch: int, prompt_len: int, precision: Precision,
                  shard: Shard = Shard(), mtp: bool = False, expert_load: ExpertLoad | None = None,
                  routed_tokens: float | None = None, past_len: int = 0, compact: bool = False,
                  expert_layout: str = "contiguous", rank_work: RankWork | None = None) -> OpGraph:
    """Graph of one prefill of ``batch`` prompts of ``prompt_len`` tokens on one device's slice
    (``compact``: one layer per kind, see the module docstring).

    ``past_len`` > 0 describes a prefill chunk (or a prompt after a cached prefix): each sequence
    already has ``past_len`` tokens in the KV cache, which the new tokens attend."""
    _positive("batch", batch)
    _positive("prompt_len", prompt_len)
    if isinstance(past_len, bool) or not isinstance(past_len, int) or past_len < 0:
        raise ConfigError(None, "past_len", "a non-negative integer", past_len)
    return _build(model, precision, mtp, "prefill", batch, prompt_len, past_len + prompt_len, shard, expert_load,
                  routed_tokens, {"prompt_len": prompt_len, "past_len": past_len}, compact=compact,
                  expert_layout=expert_layout, rank_work=rank_work)


def build_decode(model: ModelConfig, *, batch: int, context: int, precision: Precision,
                 shard: Shard = Shard(), mtp: bool = False, expert_load: ExpertLoad | None = None,
                 routed_tokens: float | None = None, compact: bool = False,
                 expert_layout: str = "contiguous", rank_work: RankWork | None = None) -> OpGraph:
    """Graph of one decode step of ``batch`` sequences at ``context`` tokens (new ones included;
    ``compact``: one layer per kind, see the module docstring)."""
    _positive("batch", batch)
    q_len = 1 + (model.num_nextn_predict_layers if mtp else 0)
    if context < q_len:
        raise ConfigError(None, "context", f"an integer >= {q_len} (the new tokens are included)", context)
    return _build(model, precision, mtp, "decode", batch, q_len, context, shard, expert_load,
                  routed_tokens, {"context": context}, compact=compact, expert_layout=expert_layout,
                  rank_work=rank_work)


def _positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(None, name, "a positive integer", value)



def _build(model, precision, mtp, phase, batch, q_len, kv_len, shard, load, routed_tokens, extra,
           compact=False, expert_layout="contiguous", rank_work=None) -> OpGraph:
    check_shard(model, shard)
    if expert_layout not in EXPERT_LAYOUTS:
        raise ConfigError(None, "expert_layout", " or ".join(EXPERT_LAYOUTS), expert_layout)
    if mtp and not model.num_nextn_predict_layers:
        raise ConfigError(None, "scenario.mtp", "false (the model has num_nextn_predict_layers = 0)", mtp)
    if model.is_moe:
        if rank_work is None and model.n_routed_experts % shard.ep:
            raise ConfigError(None, "shard.ep", f"a divisor of n_routed_experts={model.n_routed_experts} (or the "
                              "mapping's expert slots)", shard.ep)
        load = load or uniform_load(model.n_routed_experts, model.num_experts_per_tok)
        if load.experts != model.n_routed_experts or load.k != model.num_experts_per_tok:
            raise ConfigError(None, "expert_load", f"{model.n_routed_experts} experts with k="
                              f"{model.num_experts_per_tok}", f"{load.experts} experts, k={load.k}")
    step = _Step(phase=phase, batch=batch, q_len=q_len, kv_len=kv_len, shard=shard, load=load,
                 routed_tokens=batch * q_len if routed_tokens is None else routed_tokens,
                 expert_layout=expert_layout, rank_work=rank_work if model.is_moe else None)
    b = GraphBuilder(precision)
    T, h, tp = step.tokens, model.hidden_size, shard.tp
    x = b.embedding("embed_tokens", rows=T, width=h, vocab_local=model.vocab_size // tp, tp=tp, deps=())
    x, layers = _layers(b, model, step, x, compact)
    last_hidden = x
    x = b.norm("norm", rows=T, width=h, layer=None, deps=[x])
    rows = batch if phase == "prefill" else T
    b.gemm("lm_head", m=rows, n=model.vocab_size // tp, k=h, layer=None, deps=[x],
           split="tp", quantized=False, shared_weight=model.tie_word_embeddings)
    if mtp:
        _mtp(b, model, step, last_hidden, rows)
    g = b.graph()
    g.graph.update({"phase": phase, "tokens": T, "batch": batch, "q_len": q_len, "kv_len": kv_len,
                    "model": model.model_type or "model", "mtp": mtp, "tp": shard.tp, "ep": shard.ep,
                    "moe_tp": shard.moe_tp,
                    "precision": precision, "expert_layout": expert_layout, **extra})
    if compact:
        g.graph["repeats"] = layers.repeats(g)
    return g


@dataclass(frozen=True, kw_only=True)
class LayerRepeats:
    """How a compact graph stands for the full one.

    ``members[r]`` lists the layers that representative layer ``r`` stands for (``r`` first);
    ``full_index[name]`` is each compact op's index in the full graph's build order (a topological
    order), so per-instance orderings (e.g. ties among the heaviest ops) match the full graph.
    """

    members: Mapping[int, tuple[int, ...]]
    base: Mapping[int, int]          # layer -> full-graph index of its first op
    full_index: Mapping[str, int]
    full_size: int

    def count(self, layer: int | None) -> int:
        """How many layers an op of ``layer`` stands for (1 outside the repeated layers)."""
        return len(self.members.get(layer, (None,)))

    def instances(self, name: str, layer: int | None) -> list[tuple[str, int]]:
        """(full-graph name, full-graph index) of every op the compact op ``name`` stands for."""
        index = self.full_index[name]
        if layer not in self.members:
            return [(name, index)]
        rest = name[len(f"layers.{layer}."):]
        return [(f"layers.{m}.{rest}", index + self.base[m] - self.base[layer]) for m in self.members[layer]]

    def offsets(self, layer: int) -> tuple[int, ...]:
        """Full-graph index of each member's op minus its representative's (0 first)."""
        return tuple(self.base[m] - self.base[layer] for m in self.members[layer])

    def name_at(self, name: str, layer: int | None, index: int) -> str:
        """Full-graph name of the instance of compact op ``name`` at full-graph ``index``."""
        if layer not in self.members:
            return name
        member = self._layer_at[self.base[layer] + index - self.full_index[name]]
        return f"layers.{member}.{name[len(f'layers.{layer}.'):]}"

    @cached_property
    def _layer_at(self) -> dict[int, int]:
        """Layer whose first op sits at a full-graph index."""
        return {start: layer for layer, start in self.base.items()}

    def representative(self, name: str) -> str:
        """The compact op that the full-graph op ``name`` is an instance of (``name`` if it is one)."""
        if not name.startswith("layers."):
            return name
        layer, rest = name[len("layers."):].split(".", 1)
        for rep, members in self.members.items():
            if int(layer) in members:
                return f"layers.{rep}.{rest}"
        return name


@dataclass(kw_only=True)
class _Layers:
    """Bookkeeping of ``_layers``: representatives, their members and where every layer starts."""

    members: dict[int, list[int]]
    base: dict[int, int]
    start: dict[int, int]    # representative -> builder index of its first op
    skipped: int             # ops of the full graph not built

    def repeats(self, g: OpGraph) -> LayerRepeats:
        first = min(self.start.values(), default=0)
        full_index = {}
        for i, (name, data) in enumerate(g.nodes(data=True)):
            layer = data["op"].layer
            if layer in self.members:
                full_index[name] = self.base[layer] + i - self.start[layer]
            else:
                full_index[name] = i if i < first else i + self.skipped
        return LayerRepeats(members={r: tuple(m) for r, m in self.members.items()}, base=dict(self.base),
                            full_index=full_index, full_size=g.number_of_nodes() + self.skipped)


def _layers(b: GraphBuilder, model: ModelConfig, step: _Step, x: str, compact: bool) -> tuple[str, _Layers]:
    """The decoder layers in order; with ``compact`` only the first layer of each kind is built."""
    rep_of: dict[tuple[bool, int | None], int] = {}
    info = _Layers(members={}, base={}, start={}, skipped=0)
    size: dict[int, int] = {}
    for layer in range(model.num_hidden_layers):
        kind = (model.is_moe_layer(layer), model.attention_window(layer))  # the per-layer choices _decoder_layer makes
        info.base[layer] = len(b) + info.skipped
        rep = rep_of.get(kind) if compact else None
        if rep is not None:
            info.members[rep].append(layer)
            info.skipped += size[rep]
            continue
        rep_of[kind] = layer
        info.members[layer], info.start[layer] = [layer], len(b)
        x = _decoder_layer(b, model, step, f"layers.{layer}.", layer, x)
        size[layer] = len(b) - info.start[layer]
    return x, info


def check_shard(model: ModelConfig, shard: Shard) -> None:
    """ConfigError unless ``shard`` splits the model evenly (tp divides the heads, vocabulary and FFN widths; ep
    the routed experts): the check every graph build makes, for callers that want it before pricing."""
    def divides(n: int, what: str, field: str) -> None:
        if n % getattr(shard, field):
            raise ConfigError(None, f"shard.{field}", f"a divisor of {what}={n}", getattr(shard, field))
    _positive("shard.tp", shard.tp)
    _positive("shard.ep", shard.ep)
    _positive("shard.moe_tp", shard.moe_tp)
    divides(model.num_attention_heads, "num_attention_heads", "tp")
    divides(model.vocab_size, "vocab_size", "tp")
    divides(model.intermediate_size, "intermediate_size", "tp")
    if model.attention_kind == "gqa":
        divides(model.kv_heads, "num_key_value_heads", "tp")
    if model.is_moe:
        divides(model.moe_intermediate_size * (model.n_shared_experts or 0), "shared expert width", "tp")
        divides(model.moe_intermediate_size, "moe_intermediate_size", "moe_tp")


def _decoder_layer(b: GraphBuilder, m: ModelConfig, st: _Step, p: str, layer: int, x_in: str) -> str:
    T, h = st.tokens, m.hidden_size
    ln = b.norm(p + "input_layernorm", rows=T, width=h, layer=layer, deps=[x_in])
    attn = (_mla if m.attention_kind == "mla" else _gqa)(b, m, st, p + "self_attn.", layer, ln)
    r1 = b.residual(p + "residual_attn", rows=T, width=h, layer=layer, deps=[x_in, attn])
    ln2 = b.norm(p + "post_attention_layernorm", rows=T, width=h, layer=layer, deps=[r1])
    mlp = (_moe if m.is_moe_layer(layer) else _dense)(b, m, st, p + "mlp.", layer, ln2)
    return b.residual(p + "residual_mlp", rows=T, width=h, layer=layer, deps=[r1, mlp])


def _mla(b: GraphBuilder, m: ModelConfig, st: _Step, p: str, layer: int, x: str) -> str:
    """Multi-head latent attention (DeepSeek-V2/V3). Heads split tp ways; the low-rank down
    projections, their norms, the shared rope key and the latent cache are replicated per TP rank."""
    T, h, H = st.tokens, m.hidden_size, m.num_attention_heads // st.shard.tp
    nope, rope, dv, c = m.qk_nope_head_dim, m.qk_rope_head_dim, m.v_head_dim, m.kv_lora_rank
    if m.q_lora_rank:
        qa = b.gemm(p + "q_a_proj", m=T, n=m.q_lora_rank, k=h, layer=layer, deps=[x], split="replicated")
        qa = b.norm(p + "q_a_layernorm", rows=T, width=m.q_lora_rank, layer=layer, deps=[qa])
        q = b.gemm(p + "q_b_proj", m=T, n=H * (nope + rope), k=m.q_lora_rank, layer=layer, deps=[qa], split="tp")
    else:
        q = b.gemm(p + "q_proj", m=T, n=H * (nope + rope), k=h, layer=layer, deps=[x], split="tp")
    kva = b.gemm(p + "kv_a_proj_with_mqa", m=T, n=c + rope, k=h, layer=layer, deps=[x], split="replicated")
    kvn = b.norm(p + "kv_a_layernorm", rows=T, width=c, layer=layer, deps=[kva])
    q_rope = b.rope(p + "rope_q", vectors=T * H, rot_dims=rope, layer=layer, deps=[q], split="tp")
    k_rope = b.rope(p + "rope_k", vectors=T, rot_dims=rope, layer=layer, deps=[kva], split="replicated")
    cache = b.cache_write(p + "kv_cache_update", rows=T, width=c + rope, layer=layer, deps=[kvn, k_rope],
                          split="replicated")
    if st.phase == "prefill":
        # expanded form: kv_b_proj expands the new tokens' latents and, after a cached prefix, the
        # cached latents again; the prefix's rope keys are read from the cache by the attention.
        past = st.batch * st.past
        kvb = b.gemm(p + "kv_b_proj", m=T + past, n=H * (nope + dv), k=c, layer=layer, deps=[kvn], split="tp",
                     cached_rows=past)
        extra = (operand("k_rope_cache", (past, rope), b.p.kv_cache, "cache"),) if past else ()
        attn = b.attention(p + "attn_core", batch=st.batch, q_len=st.q_len, kv_len=st.kv_len, heads_q=H,
                           heads_kv=H, d_qk=nope + rope, d_v=dv, form="mla_expanded", cached=0,
                           layer=layer, deps=[q, q_rope, kvb, k_rope], split="tp", extra_reads=extra)
    else:
        # kv_b_proj = [W_UK; W_UV] per head; absorbed decode applies each half as a per-head GEMM.
        # W_UK is stored [nope, kv_lora] per head inside kv_b_proj, although q_nope @ W_UK has n = kv_lora
        qk = b.grouped_gemm(p + "q_absorb", tokens_per_group=(T,) * H, n=c, k=nope, distinct=H,
                            layer=layer, deps=[q], split="tp", stored=(nope, c))
        attn = b.attention(p + "attn_core", batch=st.batch, q_len=st.q_len, kv_len=st.kv_len, heads_q=H,
                           heads_kv=1, d_qk=c + rope, d_v=c, form="mla_absorbed", cached=st.kv_len,
                           layer=layer, deps=[qk, q_rope, cache], split="tp")
        attn = b.grouped_gemm(p + "o_absorb", tokens_per_group=(T,) * H, n=dv, k=c, distinct=H,
                              layer=layer, deps=[attn], split="tp")
    return b.gemm(p + "o_proj", m=T, n=h, k=H * dv, layer=layer, deps=[attn], split="tp")


def _gqa(b: GraphBuilder, m: ModelConfig, st: _Step, p: str, layer: int, x: str) -> str:
    """Grouped-query attention (Llama, Qwen2.5, Qwen3, Mixtral): q/k/v/o projections (q/k/v biased with
    ``qkv_bias`` or ``attention_bias``, o_proj too with ``attention_bias``), Qwen3's per-head q_norm/k_norm
    RMSNorms before RoPE (``use_qk_norm``), RoPE on the full head, KV cache per kv head."""
    T, h, tp, d = st.tokens, m.hidden_size, st.shard.tp, m.gqa_head_dim
    H, KV = m.num_attention_heads // tp, m.kv_heads // tp
    qkv_bias = m.qkv_bias or m.attention_bias
    q = b.gemm(p + "q_proj", m=T, n=H * d, k=h, layer=layer, deps=[x], split="tp", bias=qkv_bias)
    k = b.gemm(p + "k_proj", m=T, n=KV * d, k=h, layer=layer, deps=[x], split="tp", bias=qkv_bias)
    v = b.gemm(p + "v_proj", m=T, n=KV * d, k=h, layer=layer, deps=[x], split="tp", bias=qkv_bias)
    if m.use_qk_norm:  # one weight of head_dim shared by all heads (Qwen3RMSNorm(head_dim)), replicated per TP rank
        q = b.norm(p + "q_norm", rows=T * H, width=d, layer=layer, deps=[q])
        k = b.norm(p + "k_norm", rows=T * KV, width=d, layer=layer, deps=[k])
    qr = b.rope(p + "rope_q", vectors=T * H, rot_dims=d, layer=layer, deps=[q], split="tp")
    kr = b.rope(p + "rope_k", vectors=T * KV, rot_dims=d, layer=layer, deps=[k], split="tp")
    cache = b.cache_write(p + "kv_cache_update", rows=T, width=2 * KV * d, layer=layer, deps=[kr, v], split="tp")
    # decode reads every key it attends (the new ones included) from the cache; prefill reads the new keys
    # as activations and only a cached prefix from the cache; a sliding-window layer (gpt-oss) reads the
    # keys of its window only (archsim.attention_window)
    decode, window = st.phase == "decode", m.attention_window(layer)
    first = first_key(st.q_len, st.kv_len, window)
    attn = b.attention(p + "attn_core", batch=st.batch, q_len=st.q_len, kv_len=st.kv_len, heads_q=H,
                       heads_kv=KV, d_qk=d, d_v=d, form="gqa",
                       cached=st.kv_len - first if decode else max(0, st.past - first),
                       layer=layer, deps=[qr, cache] if decode else [qr, kr, v], split="tp", window=window,
                       sinks=m.attention_sinks)
    # row-parallel o_proj: every TP rank holds its bias [h]; the graph is rank 0's, which adds it
    return b.gemm(p + "o_proj", m=T, n=h, k=H * d, layer=layer, deps=[attn], split="tp", bias=m.attention_bias)


def _swiglu_mlp(b: GraphBuilder, T: int, h: int, width: int, p: str, layer: int, x: str) -> str:
    g = b.gemm(p + "gate_proj", m=T, n=width, k=h, layer=layer, deps=[x], split="tp")
    u = b.gemm(p + "up_proj", m=T, n=width, k=h, layer=layer, deps=[x], split="tp")
    a = b.swiglu(p + "act", rows=T, width=width, layer=layer, deps=[g, u], split="tp")
    return b.gemm(p + "down_proj", m=T, n=h, k=width, layer=layer, deps=[a], split="tp")


def _dense(b: GraphBuilder, m: ModelConfig, st: _Step, p: str, layer: int, x: str) -> str:
    return _swiglu_mlp(b, st.tokens, m.hidden_size, m.intermediate_size // st.shard.tp, p, layer, x)


def _moe(b: GraphBuilder, m: ModelConfig, st: _Step, p: str, layer: int, x: str) -> str:
    """Router GEMM + router, shared experts (width moe_intermediate_size * n_shared_experts, split tp),
    routed experts as grouped GEMMs over this device's E/ep experts (in ``st.expert_layout``), and the
    weighted combine."""
    T, h, E, k, mi = st.tokens, m.hidden_size, m.n_routed_experts, m.num_experts_per_tok, m.moe_intermediate_size
    gate = b.gemm(p + "gate", m=T, n=E, k=h, layer=layer, deps=[x], split="replicated", quantized=False,
                  bias=m.router_bias)
    router = b.router(p + "router", tokens=T, experts=E, k=k, n_group=m.n_group, norm_topk=m.norm_topk_prob,
                      scoring=m.scoring_func, bias=m.has_correction_bias, layer=layer, deps=[gate],
                      topk_method=m.topk_method, scaled=m.routed_scaling_factor is not None)
    deps = [router]
    if m.n_shared_experts:
        width = mi * m.n_shared_experts // st.shard.tp
        deps.append(_swiglu_mlp(b, T, h, width, p + "shared_experts.", layer, x))
    tokens, distinct = st.routing
    down = _routed_experts(b, m, st.shard, tokens, distinct, st.expert_layout, p, layer, [x, router])
    return b.combine(p + "combine", tokens=T, k=k, width=h, shared=bool(m.n_shared_experts), layer=layer,
                     deps=deps + [down])


def _routed_experts(b: GraphBuilder, m: ModelConfig, shard: Shard, tokens: tuple[float, ...], distinct: float,
                    layout: str, p: str, layer: int, deps) -> str:
    """The routed experts of one MoE layer on one device: grouped gate/up, SwiGLU, grouped down over its local
    expert slots, each expert's FFN width split ``moe_tp`` ways (MoE-TP)."""
    h, width = m.hidden_size, m.moe_intermediate_size // shard.moe_tp
    gu = b.grouped_gemm(p + "experts.gate_up", tokens_per_group=tokens, n=2 * width, k=h, distinct=distinct,
                        layer=layer, deps=deps, split="ep", layout=layout, routed_experts=True, bias=m.expert_bias)
    act = b.swiglu(p + "experts.act", rows=sum(tokens), width=width, layer=layer, deps=[gu], split="ep",
                   clamped=m.swiglu_limit is not None)
    return b.grouped_gemm(p + "experts.down", tokens_per_group=tokens, n=h, k=width, distinct=distinct,
                          layer=layer, deps=[act], split="ep", layout=layout, routed_experts=True,
                          bias=m.expert_bias)


def routed_expert_ops(model: ModelConfig, precision: Precision, shard: Shard, work: RankWork,
                      expert_layout: str = "contiguous") -> OpGraph:
    """The routed-expert ops of one MoE layer for a device doing ``work`` (the same ops a phase graph holds for
    it): what the mapping layer prices for EP ranks whose work differs from the graph's device."""
    b = GraphBuilder(precision)
    layer = next(i for i in range(model.num_hidden_layers) if model.is_moe_layer(i))
    _routed_experts(b, model, shard, work.tokens_per_slot, work.distinct, expert_layout, f"layers.{layer}.mlp.",
                    layer, ())
    return b.graph()


def _mtp(b: GraphBuilder, m: ModelConfig, st: _Step, hidden: str, rows: int) -> None:
    """DeepSeek-V3 multi-token prediction modules (TR 2.2): embedding and head shared with the main
    model (params 0 here); enorm, hnorm, eh_proj [h, 2h] (a plain bf16 Linear in vLLM's
    deepseek_mtp.py, so unquantized), one decoder layer, shared_head.norm."""
    T, h, tp = st.tokens, m.hidden_size, st.shard.tp
    for depth in range(m.num_nextn_predict_layers):
        p, layer = f"mtp.{depth}.", m.num_hidden_layers + depth
        emb = b.embedding(p + "embed_tokens", rows=T, width=h, vocab_local=m.vocab_size // tp, tp=tp, deps=(),
                          shared_weight=True)
        en = b.norm(p + "enorm", rows=T, width=h, layer=layer, deps=[emb])
        hn = b.norm(p + "hnorm", rows=T, width=h, layer=layer, deps=[hidden])
        eh = b.gemm(p + "eh_proj", m=T, n=h, k=2 * h, layer=layer, deps=[en, hn], split="replicated",
                    quantized=False)
        hidden = _decoder_layer(b, m, st, p, layer, eh)
        x = b.norm(p + "shared_head.norm", rows=T, width=h, layer=layer, deps=[hidden])
        b.gemm(p + "shared_head.head", m=rows, n=m.vocab_size // tp, k=h, layer=layer, deps=[x], split="tp",
               quantized=False, shared_weight=True)
