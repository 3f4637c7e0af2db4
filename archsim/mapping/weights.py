"""Exact weight bytes per device: the checkpoint's matrices (shape [out, in]) in their storage formats,
so block scales are exact, padded blocks included (DeepSeek-V3 README_WEIGHTS.md).

Linear layers use ``precision.weights`` (routed experts ``precision.routed_expert_weights``); embedding, lm_head, router and norm vectors stay in the activation
dtype (as in DeepSeek-V3's inference code, see archsim/graph/precision.py). Splits follow DeepSeek-V3's
inference TP: q_b/kv_b/q/k/v and gate/up are column-parallel (output dim / tp), o_proj and down_proj
row-parallel (input dim / tp), the MLA down-projections q_a/kv_a, norms and router replicated, embedding
and lm_head split by vocabulary; routed experts (plus redundant copies) split ``ep`` ways.
"""
from __future__ import annotations

import math

from archsim.config.model import ModelConfig
from archsim.dtypes import DType
from archsim.graph.precision import Precision

# (component, shape [out, in] or [n], quantized?, tp split dim or None)
Matrix = tuple[str, tuple[int, ...], bool, int | None]


def _attention_matrices(m: ModelConfig) -> list[Matrix]:
    h, H = m.hidden_size, m.num_attention_heads
    if m.attention_kind == "gqa":
        d, kv = m.gqa_head_dim, m.kv_heads
        out = [("attention", (H * d, h), True, 0), ("attention", (kv * d, h), True, 0),
               ("attention", (kv * d, h), True, 0), ("attention", (h, H * d), True, 1)]
        # unquantized vectors: q/k/v biases (column-parallel), o_proj's bias (on every rank), gpt-oss's sinks
        if m.qkv_bias or m.attention_bias:
            out += [("attention", (H * d,), False, 0), ("attention", (kv * d,), False, 0),
                    ("attention", (kv * d,), False, 0)]
        if m.attention_bias:
            out.append(("attention", (h,), False, None))
        if m.attention_sinks:
            out.append(("attention", (H,), False, 0))
        return out
    qk = m.qk_head_dim
    out: list[Matrix] = []
    if m.q_lora_rank:
        out += [("attention", (m.q_lora_rank, h), True, None), ("attention", (m.q_lora_rank,), False, None),
                ("attention", (H * qk, m.q_lora_rank), True, 0)]
    else:
        out += [("attention", (H * qk, h), True, 0)]
    out += [("attention", (m.kv_lora_rank + m.qk_rope_head_dim, h), True, None),
            ("attention", (m.kv_lora_rank,), False, None),
            ("attention", (H * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank), True, 0),
            ("attention", (h, H * m.v_head_dim), True, 1)]
    return out


def _ffn_matrices(m: ModelConfig, layer: int) -> tuple[list[Matrix], int]:
    """Matrices of the layer's FFN (routed experts excluded) and its routed-expert count."""
    h = m.hidden_size
    if not m.is_moe_layer(layer):
        width = m.intermediate_size
        return [("dense_mlp", (width, h), True, 0)] * 2 + [("dense_mlp", (h, width), True, 1)], 0
    out: list[Matrix] = [("router", (m.n_routed_experts, h), False, None)]
    if m.has_correction_bias or m.router_bias:
        out.append(("router", (m.n_routed_experts,), False, None))
    width = (m.n_shared_experts or 0) * m.moe_intermediate_size
    if width:
        out += [("shared_experts", (width, h), True, 0)] * 2 + [("shared_experts", (h, width), True, 1)]
    return out, m.n_routed_experts


def _shard_shape(shape: tuple[int, ...], split: int | None, tp: int) -> tuple[int, ...]:
    if split is None or tp == 1:
        return shape
    dims = list(shape)
    dims[split] = math.ceil(dims[split] / tp)
    return tuple(dims)


def _bytes(shape: tuple[int, ...], quantized: bool, precision: Precision) -> float:
    dtype: DType = precision.weights if quantized else precision.activations
    return dtype.storage_bytes(shape)


def layer_weight_bytes(m: ModelConfig, layer: int, precision: Precision, *, tp: int = 1,
                       ep: int = 1, redundant_experts: int = 0, moe_tp: int = 1) -> dict[str, float]:
    """Bytes of decoder layer ``layer`` on one device, by component: the routed experts' slots
    ((E + redundant) / ep of them) each split ``moe_tp`` ways (gate/up by output rows, down by input columns)."""
    h = m.hidden_size
    out: dict[str, float] = {"norms": 2 * _bytes((h,), False, precision)}
    ffn, experts = _ffn_matrices(m, layer)
    for comp, shape, quant, split in _attention_matrices(m) + ffn:
        out[comp] = out.get(comp, 0.0) + _bytes(_shard_shape(shape, split, tp), quant, precision)
    if experts:
        e = m.moe_intermediate_size
        fmt = precision.routed_expert_weights
        e = math.ceil(e / moe_tp)
        one = 2 * fmt.storage_bytes((e, h)) + fmt.storage_bytes((h, e))
        if m.expert_bias:  # gpt-oss: gate_up [2e] and down [h] biases, unquantized (the checkpoint's *_bias)
            one += _bytes((2 * e,), False, precision) + _bytes((h,), False, precision)
        out["routed_experts"] = math.ceil((experts + redundant_experts) / ep) * one
    return out


def model_elements(m: ModelConfig) -> int:
    """Parameter count of the enumerated matrices (tests check it equals count_params().total)."""
    total = 2 * m.vocab_size * m.hidden_size if not m.tie_word_embeddings else m.vocab_size * m.hidden_size
    total += m.hidden_size
    for layer in range(m.num_hidden_layers):
        ffn, experts = _ffn_matrices(m, layer)
        total += 2 * m.hidden_size + sum(math.prod(s) for _, s, _, _ in _attention_matrices(m) + ffn)
        total += experts * (3 * m.hidden_size * (m.moe_intermediate_size or 0)
                            + (2 * m.moe_intermediate_size + m.hidden_size if m.expert_bias else 0))
    return total


def _first_layer(m: ModelConfig, layers: range, is_moe: bool) -> int:
    """A layer of ``layers`` of the given kind (MoE layers are >= first_k_dense_replace, every moe_layer_freq-th)."""
    if not is_moe and not m.is_moe:
        return layers.start
    return next(i for i in layers if m.is_moe_layer(i) == is_moe)


def stage_weight_bytes(m: ModelConfig, precision: Precision, *, tp: int, ep: int, layers: range, first: bool,
                       last: bool, redundant_experts: int = 0, moe_tp: int = 1) -> dict[str, float]:
    """Bytes one device of a pipeline stage holds, by component (embedding on the first stage, final norm
    and lm_head on the last)."""
    out: dict[str, float] = {}
    # a layer's bytes depend only on whether it is MoE: price one of each kind and multiply by its count,
    # so the work does not grow with the depth
    moe = m.moe_layers_in(layers.start, layers.stop) if layers.step == 1 else sum(map(m.is_moe_layer, layers))
    for is_moe, count in ((True, moe), (False, len(layers) - moe)):
        if count == 0:
            continue
        example = _first_layer(m, layers, is_moe)
        for comp, value in layer_weight_bytes(m, example, precision, tp=tp, ep=ep,
                                              redundant_experts=redundant_experts, moe_tp=moe_tp).items():
            out[comp] = out.get(comp, 0.0) + count * value
    vocab = _bytes((math.ceil(m.vocab_size / tp), m.hidden_size), False, precision)
    if first:
        out["embedding"] = vocab
    if last:
        out["lm_head"] = 0.0 if m.tie_word_embeddings and first else vocab
        out["norms"] = out.get("norms", 0.0) + _bytes((m.hidden_size,), False, precision)
    return out
