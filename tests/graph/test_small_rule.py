"""The --small rule keeps the architecture and lands in the documented size ranges."""
import pytest
from helpers_graph import model

from archsim.graph.build import build_decode, build_prefill
from archsim.graph.params import count_params
from archsim.graph.precision import Precision
from archsim.graph.small import small_variant
from archsim.dtypes import FP64


@pytest.mark.parametrize("name", ["deepseek_v3", "kimi_k2", "llama3_405b"])
def test_small_variant_keeps_the_architecture(name):
    full = model(name)
    s = small_variant(full)
    assert s.attention_kind == full.attention_kind and s.is_moe == full.is_moe
    assert 64 <= s.hidden_size <= 256 and 2 <= s.num_hidden_layers <= 4
    assert (s.first_k_dense_replace > 0) == (full.first_k_dense_replace > 0)
    assert bool(s.num_nextn_predict_layers) == bool(full.num_nextn_predict_layers)
    assert (s.rope_theta, s.rope_scaling, s.rms_norm_eps) == (full.rope_theta, full.rope_scaling, full.rms_norm_eps)
    if full.is_moe:
        assert 8 <= s.n_routed_experts <= 32
        assert s.n_shared_experts == full.n_shared_experts
        assert (s.n_group > 1) == (full.n_group > 1)
        assert (s.scoring_func, s.topk_method, s.norm_topk_prob, s.routed_scaling_factor) == \
            (full.scoring_func, full.topk_method, full.norm_topk_prob, full.routed_scaling_factor)
        assert s.moe_layers == 2 and s.num_hidden_layers - s.moe_layers == 1
    if full.attention_kind == "gqa":
        assert 1 < s.kv_heads < s.num_attention_heads      # GQA stays GQA (not MHA, not MQA)
    assert count_params(s).total < 1e6


def test_deepseek_v3_small_numbers():
    s = small_variant(model("deepseek_v3"))
    # 256/16 experts in 8/2 groups, top 4/2 groups, 8/4 active: same eligible fraction (half the groups)
    assert (s.n_routed_experts, s.n_group, s.topk_group, s.num_experts_per_tok) == (16, 4, 2, 2)
    assert (s.num_hidden_layers, s.first_k_dense_replace, s.num_nextn_predict_layers) == (3, 1, 1)
    k2 = small_variant(model("kimi_k2"))
    assert (k2.n_routed_experts, k2.n_group, k2.topk_group, k2.num_experts_per_tok) == (24, 1, 1, 2)


@pytest.mark.parametrize("name", ["deepseek_v3", "kimi_k2", "llama3_405b"])
def test_the_same_builder_builds_the_small_variant(name):
    s = small_variant(model(name))
    prec = Precision(weights=FP64, activations=FP64, kv_cache=FP64)
    mtp = bool(s.num_nextn_predict_layers)
    g = build_prefill(s, batch=2, prompt_len=7, precision=prec, mtp=mtp)
    assert sum(d["op"].params for _, d in g.nodes(data=True)) == count_params(s, mtp=mtp).total
    build_decode(s, batch=2, context=9, precision=prec, mtp=mtp)
