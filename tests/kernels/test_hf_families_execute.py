"""The tiny variants of the Hugging Face families (Qwen3-MoE: GQA + QK-norm + softmax top-k MoE; Mixtral; Qwen2.5
with q/k/v biases; Qwen3 with tied embeddings) execute node by node with measured counts equal to the graph's."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from archsim.config.hf import UnmodelledFieldsWarning, workload_from_hf_config
from archsim.execute import counts_match, execute_decode, execute_prefill
from archsim.graph.precision import precision_from_names
from archsim.graph.small import small_variant
from archsim.kernels.router import moe_router

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FP8 = precision_from_names("fp8", "bf16", "bf16")


def tiny(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmodelledFieldsWarning)
        return small_variant(workload_from_hf_config(os.path.join(ROOT, "tests", "data", "hf_configs", name)).model)


@pytest.mark.parametrize("name", ["Qwen3-30B-A3B", "Mixtral-8x7B-v0.1", "Qwen2.5-7B", "Qwen3-0.6B"])
@pytest.mark.parametrize("batch,length", [(1, 5), (2, 9)])
def test_hf_family_counts_match_graph(name, batch, length):
    model = tiny(name)
    for ex in (execute_prefill(model, batch=batch, prompt_len=length, precision=FP8),
               execute_decode(model, batch=batch, context=length, precision=FP8)):
        assert ex.mismatches() == [] and counts_match(ex)
        assert len(ex.checks) == ex.graph.number_of_nodes()
        assert ex.counter.total_flops == sum(op.flops for op in ex.ops.values())
        assert ex.reference_error <= 1e-10   # node by node = the model's own forward


def test_qwen3_moe_tiny_graph_has_the_family_ops():
    model = tiny("Qwen3-30B-A3B")
    assert model.use_qk_norm and model.routed_scaling_factor is None and not model.n_shared_experts
    ex = execute_decode(model, batch=2, context=6, precision=FP8)
    ops = ex.ops
    # q_norm: RMSNorm over head_dim on each of the T*H query heads: 4 * rows * d FLOPs, a [d] weight
    d, H, KV, T = model.gqa_head_dim, model.num_attention_heads, model.kv_heads, 2
    assert ops["layers.0.self_attn.q_norm"].flops == 4 * T * H * d and ops["layers.0.self_attn.q_norm"].params == d
    assert ops["layers.0.self_attn.k_norm"].flops == 4 * T * KV * d
    # softmax router without scaling: 5*T*E (softmax) + 2*k*T (normalise), no k*T scale
    E, k = model.n_routed_experts, model.num_experts_per_tok
    assert ops["layers.0.mlp.router"].flops == 5 * T * E + 2 * k * T
    assert "layers.0.mlp.shared_experts.gate_proj" not in ops


def test_qwen2_biases_are_in_graph_and_kernels():
    model = tiny("Qwen2.5-7B")
    ex = execute_prefill(model, batch=1, prompt_len=4, precision=FP8)
    q = ex.ops["layers.0.self_attn.q_proj"]
    n, k, m = model.num_attention_heads * model.gqa_head_dim, model.hidden_size, 4
    assert q.flops == 2 * m * n * k + m * n and q.params == n * k + n
    assert ex.ops["layers.0.self_attn.o_proj"].params == model.hidden_size * n   # o_proj has no bias in Qwen2
    assert counts_match(ex)


def test_softmax_topk_router_normalises_at_any_k_and_never_scales():
    # transformers MixtralSparseMoeBlock / Qwen3MoeSparseMoeBlock: softmax, top-k, w /= w.sum() if norm_topk_prob
    logits = np.random.default_rng(0).standard_normal((5, 8))
    w1, _ = moe_router(logits, None, top_k=1, topk_method=None, scoring_func="softmax", norm_topk_prob=True,
                       routed_scaling_factor=None)
    assert np.allclose(w1, 1.0)
    w2, idx = moe_router(logits, None, top_k=2, topk_method=None, scoring_func="softmax", norm_topk_prob=False,
                         routed_scaling_factor=None)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.allclose(w2, np.take_along_axis(p, idx, axis=1))
