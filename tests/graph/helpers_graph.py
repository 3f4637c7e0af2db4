"""Shared loaders for the graph tests: the shipped workloads and a tiny DeepSeek-family config."""
from __future__ import annotations

import os

from archsim.config.model import model_from_dict
from archsim.config.workload import load_workload

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def workload(name: str):
    return load_workload(os.path.join(ROOT, "workloads", f"{name}.yaml"))


def model(name: str):
    return workload(name).model


TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8,
            intermediate_size=128, moe_intermediate_size=16, n_routed_experts=8, n_shared_experts=1,
            num_experts_per_tok=2, first_k_dense_replace=1, moe_layer_freq=1, n_group=4, topk_group=2,
            topk_method="noaux_tc", scoring_func="sigmoid", norm_topk_prob=True,
            routed_scaling_factor=2.5, vocab_size=256, num_nextn_predict_layers=1,
            model_type="tiny_deepseek")


def tiny():
    return model_from_dict(TINY, "<tiny>", "model")
