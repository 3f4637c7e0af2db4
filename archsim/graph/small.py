"""The ``--small`` rule: derive a tiny model of the same architecture from a full model config."""
from __future__ import annotations

from dataclasses import replace

from archsim.config.model import ModelConfig, validate_model

# The rule's sizes (mathematical choices, not hardware figures): small enough for numpy float64
# forward passes in milliseconds, large enough that every dimension is distinct (catches a
# transposed weight) and the routing has real choices.
HIDDEN = 64
VOCAB = 256
DENSE_WIDTH = 2 * HIDDEN         # dense FFN wider than an expert, as in the full models
EXPERT_WIDTH = HIDDEN // 4
MLA_HEADS = 4
GQA_HEADS = 8
MLA_DIMS = {"q_lora_rank": 32, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8}
GQA_HEAD_DIM = 8
EXPERT_DIVISOR = 16              # DeepSeek-V3 256 -> 16 experts, Kimi K2 384 -> 24
EXPERTS_MIN, EXPERTS_MAX = 8, 32
TOPK_DIVISOR = 4                 # 8 active -> 2
SLIDING_WINDOW = 8               # below the --small prompt (33 tokens), so the window masks and skips tiles
MOE_LAYERS = 2
MAX_LAYERS = 4


def small_variant(model: ModelConfig) -> ModelConfig:
    """A tiny ModelConfig with the architecture of ``model`` (pure function).

    Rule:
    - width: hidden 64, vocab 256, dense FFN 128, expert FFN 16;
    - attention: MLA stays MLA (4 heads; q_lora_rank 32 if the full model has one, else none;
      kv_lora_rank 16, nope/rope/v head dims 8/4/8); GQA keeps its kind: MHA stays MHA, MQA stays
      MQA, other GQA gets 8 query heads over 2 kv heads, head_dim 8;
    - depth: dense first layers become 1 if the full model has any (else 0), followed by
      enough layers for 2 MoE layers under the same moe_layer_freq and decoder_sparse_step, at most 4
      layers in all; mlp_only_layers (Qwen3-MoE) become the one layer after the dense first ones if the
      full model has any; a dense model gets 2 layers; MTP depth is min(full, 1);
    - experts: n_routed_experts = full / 16 clamped to [8, 32] (DeepSeek-V3 16, Kimi K2 24),
      num_experts_per_tok = max(1, full / 4); shared experts kept; group-limited routing kept when
      the full model has it: n_group = full / 2 (8 -> 4), topk_group = full / 2 (4 -> 2), so the
      same fraction of groups is eligible; no grouping stays no grouping;
    - routing function (sigmoid/softmax, noaux_tc bias, norm_topk_prob, routed_scaling_factor),
      RoPE (theta, scaling), norm eps, activation and tied embeddings are copied unchanged;
    - sliding-window layers (gpt-oss): layer_types are the full model's first layers' types, the window
      min(full, 8) so that the tiny prompt runs past it; sinks and biases are kept;
      the checkpoint quantization_config is dropped (the tiny model runs in float).
    """
    fields: dict = {"hidden_size": HIDDEN, "vocab_size": VOCAB, "intermediate_size": DENSE_WIDTH,
                    "quantization_config": None, "num_nextn_predict_layers": min(model.num_nextn_predict_layers, 1),
                    "model_type": f"{model.model_type or 'model'}_small"}
    fields.update(_attention(model))
    fields.update(_depth_and_experts(model))
    if model.layer_types:
        layers = fields.get("num_hidden_layers", model.num_hidden_layers)
        fields["layer_types"] = model.layer_types[:layers]
        if model.sliding_window:
            fields["sliding_window"] = min(model.sliding_window, SLIDING_WINDOW)
    small = replace(model, **fields)
    validate_model(small, None, "small")
    return small


def _attention(m: ModelConfig) -> dict:
    if m.attention_kind == "mla":
        dims = dict(MLA_DIMS)
        if not m.q_lora_rank:
            dims["q_lora_rank"] = None
        return {"num_attention_heads": MLA_HEADS, "num_key_value_heads": MLA_HEADS, "head_dim": None, **dims}
    if m.kv_heads == m.num_attention_heads:
        kv = GQA_HEADS
    elif m.kv_heads == 1:
        kv = 1
    else:
        kv = 2
    return {"num_attention_heads": GQA_HEADS, "num_key_value_heads": kv, "head_dim": GQA_HEAD_DIM}


def _depth_and_experts(m: ModelConfig) -> dict:
    if not m.is_moe:
        return {"num_hidden_layers": 2}
    dense = min(m.first_k_dense_replace, 1)
    mlp_only = (dense,) if m.mlp_only_layers else ()
    layers, moe = dense, 0
    while moe < MOE_LAYERS and layers < MAX_LAYERS:
        moe += (layers % m.moe_layer_freq == 0 and (layers + 1) % m.decoder_sparse_step == 0
                and layers not in mlp_only)
        layers += 1
    n_group = max(1, m.n_group // 2)
    topk_group = max(1, m.topk_group // 2) if m.n_group > 1 else 1
    experts = min(max(m.n_routed_experts // EXPERT_DIVISOR, EXPERTS_MIN), EXPERTS_MAX)
    experts -= experts % n_group                     # whole groups
    k = max(1, m.num_experts_per_tok // TOPK_DIVISOR)
    k = min(k, topk_group * (experts // n_group))    # reachable within the eligible groups
    return {"num_hidden_layers": layers, "first_k_dense_replace": dense, "mlp_only_layers": mlp_only,
            "n_routed_experts": experts,
            "num_experts_per_tok": k, "n_group": n_group, "topk_group": topk_group,
            "moe_intermediate_size": EXPERT_WIDTH}
