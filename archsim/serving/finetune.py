"""Fine-tuning memory: full fine-tuning with mixed-precision AdamW vs LoRA adapters on the attention projections.

Bytes per trained parameter follow ZeRO (Rajbhandari et al., SC'20, "ZeRO: Memory Optimizations Toward
Training Trillion Parameter Models", sec. 3.1): fp16/bf16 weights 2 + gradients 2 + Adam states 12 (fp32
master copy, momentum, variance) = 16 bytes. LoRA (Hu et al., ICLR'22) freezes the base weights (kept in
bf16, 2 bytes, no gradients or optimizer state) and trains rank-r matrices A [r, in] and B [out, r] beside a
weight [out, in]. Activations are excluded from both figures (they depend on batch, sequence and recompute).
"""
from __future__ import annotations

from dataclasses import dataclass

from archsim.config.model import ModelConfig
from archsim.graph.params import count_params

WEIGHT_BYTES = 2      # bf16 compute copy (ZeRO sec. 3.1)
GRADIENT_BYTES = 2    # bf16 gradients (ZeRO sec. 3.1)
ADAM_STATE_BYTES = 12  # fp32 master weights, momentum and variance: 3 x 4 bytes (ZeRO sec. 3.1)
FROZEN_BYTES = 2      # LoRA base weights in bf16


@dataclass(frozen=True, kw_only=True)
class FinetuneMemory:
    """Bytes for the whole model (divide by devices for a fully sharded per-device figure)."""

    full_bytes: float
    lora_bytes: float
    lora_params: int
    lora_rank: int


def attention_projection_shapes(m: ModelConfig) -> list[tuple[int, int]]:
    """(in, out) of each attention projection of one layer (checkpoint names in comments)."""
    h, H = m.hidden_size, m.num_attention_heads
    if m.attention_kind == "gqa":
        d = m.gqa_head_dim
        return [(h, H * d), (h, m.kv_heads * d), (h, m.kv_heads * d), (H * d, h)]  # q, k, v, o_proj
    qk = m.qk_nope_head_dim + m.qk_rope_head_dim
    q = [(h, m.q_lora_rank), (m.q_lora_rank, H * qk)] if m.q_lora_rank else [(h, H * qk)]  # q_a, q_b / q_proj
    return q + [(h, m.kv_lora_rank + m.qk_rope_head_dim),                 # kv_a_proj_with_mqa
                (m.kv_lora_rank, H * (m.qk_nope_head_dim + m.v_head_dim)),  # kv_b_proj
                (H * m.v_head_dim, h)]                                     # o_proj


def finetune_memory(model: ModelConfig, *, lora_rank: int) -> FinetuneMemory:
    """Full fine-tuning (16 bytes per parameter) vs LoRA of rank ``lora_rank`` on every attention projection."""
    total = count_params(model).total
    lora = lora_rank * sum(i + o for i, o in attention_projection_shapes(model)) * model.num_hidden_layers
    full = total * (WEIGHT_BYTES + GRADIENT_BYTES + ADAM_STATE_BYTES)
    lora_bytes = total * FROZEN_BYTES + lora * (WEIGHT_BYTES + GRADIENT_BYTES + ADAM_STATE_BYTES)
    return FinetuneMemory(full_bytes=full, lora_bytes=lora_bytes, lora_params=lora, lora_rank=lora_rank)
