"""Exact parameter counts and KV-cache bytes per token, computed from the config (not from a graph)."""
from __future__ import annotations

from dataclasses import dataclass

from archsim.attention_window import cached_keys
from archsim.config.model import ModelConfig
from archsim.dtypes import DType


@dataclass(frozen=True, kw_only=True)
class ParamCounts:
    """Parameter counts (ints). ``total`` is the main model (no MTP unless counted with mtp=True);
    ``active`` is what one token touches: everything except the routed experts it does not pick
    (embedding included). ``mtp`` is the MTP modules' unique parameters (embedding and head shared)."""

    total: int
    active: int
    embedding: int
    lm_head: int
    attention_per_layer: int
    dense_mlp_per_layer: int
    moe_per_layer: int
    routed_expert: int
    shared_experts_per_layer: int
    router_per_layer: int
    norms: int
    mtp: int
    mtp_active: int


def attention_params(m: ModelConfig) -> int:
    """Attention projections + their internal norms and biases of one layer.

    GQA: q [H*d, h], k and v [KV*d, h], o [h, H*d]; q/k/v biases (H*d + 2*KV*d) with ``qkv_bias`` (Qwen2) or
    ``attention_bias`` (which adds the o_proj bias h too); Qwen3's q_norm and k_norm weights, d each; gpt-oss's
    sinks, one logit per query head (GptOssAttention.sinks [H])."""
    h, H = m.hidden_size, m.num_attention_heads
    if m.attention_kind == "gqa":
        d, kv = m.gqa_head_dim, m.kv_heads
        weights = h * H * d + 2 * h * kv * d + H * d * h
        biases = (H * d + 2 * kv * d if m.qkv_bias or m.attention_bias else 0) + (h if m.attention_bias else 0)
        return weights + biases + (2 * d if m.use_qk_norm else 0) + (H if m.attention_sinks else 0)
    qk = m.qk_nope_head_dim + m.qk_rope_head_dim
    if m.q_lora_rank:
        q = h * m.q_lora_rank + m.q_lora_rank + m.q_lora_rank * H * qk
    else:
        q = h * H * qk
    kv = h * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank \
        + m.kv_lora_rank * H * (m.qk_nope_head_dim + m.v_head_dim)
    return q + kv + H * m.v_head_dim * h


def _router_params(m: ModelConfig) -> int:
    """Router gate [E, h] plus the noaux_tc score-correction bias [E] or gpt-oss's router bias [E] of one MoE
    layer."""
    bias = m.n_routed_experts if m.has_correction_bias or m.router_bias else 0
    return m.n_routed_experts * m.hidden_size + bias


def routed_expert_params(m: ModelConfig) -> int:
    """One routed expert: gate, up [I, h] and down [h, I], plus gpt-oss's gate_up [2I] and down [h] biases."""
    mi, h = m.moe_intermediate_size, m.hidden_size
    return 3 * h * mi + (2 * mi + h if m.expert_bias else 0)


def _layer_params(m: ModelConfig, layer: int) -> tuple[int, int]:
    """(total, active) parameters of decoder layer ``layer``, both layer norms included."""
    h = m.hidden_size
    base = attention_params(m) + 2 * h
    if not m.is_moe_layer(layer):
        dense = 3 * h * m.intermediate_size
        return base + dense, base + dense
    expert = routed_expert_params(m)
    shared = (m.n_shared_experts or 0) * 3 * h * m.moe_intermediate_size
    router = _router_params(m)
    total = base + router + shared + m.n_routed_experts * expert
    active = base + router + shared + m.num_experts_per_tok * expert
    return total, active


_COUNTS: dict[tuple[int, bool], tuple[ModelConfig, ParamCounts]] = {}  # memo: id -> (the model itself, counts)


def count_params(model: ModelConfig, *, mtp: bool = False) -> ParamCounts:
    """Exact counts. With ``mtp`` the MTP modules' unique parameters are added to total and active.

    Memoised per model object (a frozen record, which the memo keeps alive so its id is not reused; not every
    ModelConfig hashes, its quantization_config is a mapping): a projection counts the same model many times."""
    key = (id(model), mtp)
    hit = _COUNTS.get(key)
    if hit is not None and hit[0] is model:
        return hit[1]
    counts = _count_params(model, mtp)
    if len(_COUNTS) >= 64:
        _COUNTS.clear()
    _COUNTS[key] = (model, counts)
    return counts


def _count_params(model: ModelConfig, mtp: bool) -> ParamCounts:
    m, h = model, model.hidden_size
    embedding = m.vocab_size * h
    lm_head = 0 if m.tie_word_embeddings else m.vocab_size * h
    layers = [_layer_params(m, i) for i in range(m.num_hidden_layers)]
    total = embedding + lm_head + h + sum(t for t, _ in layers)
    active = embedding + lm_head + h + sum(a for _, a in layers)
    mtp_total = mtp_active = 0
    for depth in range(m.num_nextn_predict_layers):
        t, a = _layer_params(m, m.num_hidden_layers + depth)
        extra = 3 * h + 2 * h * h  # enorm, hnorm, shared_head.norm; eh_proj [h, 2h]
        mtp_total += extra + t
        mtp_active += extra + a
    expert = routed_expert_params(m) if m.is_moe else 0
    moe_layer = next((i for i in range(m.num_hidden_layers) if m.is_moe_layer(i)), None)
    dense_layer = next((i for i in range(m.num_hidden_layers) if not m.is_moe_layer(i)), None)
    attn = attention_params(m)
    return ParamCounts(
        total=total + (mtp_total if mtp else 0),
        active=active + (mtp_active if mtp else 0),
        embedding=embedding, lm_head=lm_head, attention_per_layer=attn,
        dense_mlp_per_layer=3 * h * m.intermediate_size if dense_layer is not None else 0,
        moe_per_layer=_layer_params(m, moe_layer)[0] - attn - 2 * h if moe_layer is not None else 0,
        routed_expert=expert,
        shared_experts_per_layer=(m.n_shared_experts or 0) * 3 * h * (m.moe_intermediate_size or 0),
        router_per_layer=_router_params(m) if m.is_moe else 0,
        norms=h + 2 * h * m.num_hidden_layers,
        mtp=mtp_total, mtp_active=mtp_active)


def kv_elements_per_token_per_layer(model: ModelConfig) -> int:
    """MLA: latent + rope key (kv_lora_rank + qk_rope_head_dim); GQA: K and V of every kv head."""
    if model.attention_kind == "mla":
        return model.kv_lora_rank + model.qk_rope_head_dim
    return 2 * model.kv_heads * model.gqa_head_dim


def kv_bytes_per_token(model: ModelConfig, dtype: DType) -> float:
    """KV-cache bytes one token occupies across all layers of the main model (every layer counted: a
    sliding-window layer holds at most its window, see ``kv_bytes_per_sequence``)."""
    return model.num_hidden_layers * kv_elements_per_token_per_layer(model) * dtype.bytes


def kv_bytes_per_sequence(model: ModelConfig, context: int, dtype: DType) -> float:
    """KV-cache bytes of one sequence at ``context`` tokens across the main model's layers: a full-attention
    layer holds every token, a sliding-window layer (gpt-oss) at most its window (archsim.attention_window)."""
    per_layer = kv_elements_per_token_per_layer(model) * dtype.bytes
    if not model.layer_types:
        return model.num_hidden_layers * context * per_layer
    return per_layer * sum(cached_keys(context, model.attention_window(i)) for i in range(model.num_hidden_layers))


def kv_bytes_per_token_full_layers(model: ModelConfig, dtype: DType) -> float:
    """KV-cache bytes one token occupies in the main model's full-attention layers only (what grows with the
    context); ``kv_bytes_per_token`` without sliding-window layers."""
    full = model.num_hidden_layers - model.sliding_layers_in(0, model.num_hidden_layers)
    return full * kv_elements_per_token_per_layer(model) * dtype.bytes


def kv_sequence_parts(model: ModelConfig, context: int, dtype: DType) -> dict:
    """One sequence's KV at ``context`` tokens as the run report splits it (its JSON ``model`` keys):
    ``kv_bytes_per_sequence`` (``kv_bytes_per_sequence``'s rule) = context x ``kv_bytes_per_token_full_layers`` +
    ``kv_bytes_sliding_window`` (what the ``sliding_layers`` keep of the last ``sliding_window`` tokens; 0 and None
    without sliding layers)."""
    sliding = model.sliding_layers_in(0, model.num_hidden_layers)
    full_per_token = kv_bytes_per_token_full_layers(model, dtype)
    per_sequence = kv_bytes_per_sequence(model, context, dtype)
    return {"kv_context": context, "kv_bytes_per_sequence": per_sequence,
            "kv_bytes_per_token_full_layers": full_per_token,
            "kv_bytes_sliding_window": per_sequence - context * full_per_token, "sliding_layers": sliding,
            "sliding_window": model.sliding_window if sliding else None}
