"""Counted execution: the tiny model's measured counts equal the operator graph's, node by node."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from archsim.config.model import model_from_dict
from archsim.dtypes import FP8_BLOCK128
from archsim.execute import compare, counts_match, execute_decode, execute_prefill, executed_in_topological_order
from archsim.graph.precision import precision_from_names

YARN = dict(type="yarn", factor=40, beta_fast=32, beta_slow=1, mscale=1.0, mscale_all_dim=1.0,
            original_max_position_embeddings=4096)
TINY_DSV3 = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, q_lora_rank=32, kv_lora_rank=32,
                 qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, intermediate_size=96,
                 moe_intermediate_size=24, n_routed_experts=16, n_shared_experts=1, num_experts_per_tok=4,
                 first_k_dense_replace=1, moe_layer_freq=1, n_group=4, topk_group=2, topk_method="noaux_tc",
                 scoring_func="sigmoid", norm_topk_prob=True, routed_scaling_factor=2.5, vocab_size=128,
                 rope_theta=10000.0, rope_scaling=YARN, rms_norm_eps=1e-6, num_nextn_predict_layers=1)
TINY_K2 = dict(TINY_DSV3, n_group=1, topk_group=1, routed_scaling_factor=2.827, rope_theta=50000.0,
               rope_scaling=dict(YARN, factor=32.0, beta_fast=1.0, beta_slow=1.0), num_nextn_predict_layers=0)
FP8 = precision_from_names("fp8", "bf16", "bf16")


@pytest.mark.parametrize("cfg", [TINY_DSV3, TINY_K2], ids=["dsv3", "k2"])
@pytest.mark.parametrize("batch,length", [(1, 5), (2, 9)])
def test_prefill_and_decode_counts_match_graph(cfg, batch, length):
    model = model_from_dict(cfg)
    for ex in (execute_prefill(model, batch=batch, prompt_len=length, precision=FP8),
               execute_decode(model, batch=batch, context=length, precision=FP8)):
        assert ex.mismatches() == []
        assert counts_match(ex)
        assert len(ex.checks) == ex.graph.number_of_nodes()
        # every graph node's FLOPs were measured, so the totals agree too
        assert ex.counter.total_flops == sum(op.flops for op in ex.ops.values())


def test_checks_are_not_vacuous():
    model = model_from_dict(TINY_DSV3)
    ex = execute_decode(model, batch=2, context=6, precision=FP8)
    # the routed experts of layer 1 ran with measured token counts: 2 tokens x k=4 assignments
    gu = ex.ops["layers.1.mlp.experts.gate_up"]
    assert gu.attrs["tokens_total"] == 2 * 4
    used = int(np.count_nonzero(ex.expert_counts[1]))
    # weight bytes: used experts x [2*24, 64] fp8 + one fp32 scale per 128x128 block (1 block)
    rec = next(r for r in ex.counter.records if r.name == "layers.1.mlp.experts.gate_up")
    weight = next(o for o in rec.reads if o.name == "weight")
    assert weight.dtype == FP8_BLOCK128 and weight.nbytes == used * (48 * 64 + 4)
    # a wrong FLOP count or a wrong operand size in the graph is caught, as is an op the graph lacks
    ops = dict(ex.ops)
    op = ops["layers.0.self_attn.q_b_proj"]
    ops[op.name] = dataclasses.replace(op, flops=op.flops + 2)
    x = op.reads[0]
    ops["layers.0.self_attn.o_proj"] = dataclasses.replace(
        ops["layers.0.self_attn.o_proj"], reads=(dataclasses.replace(x, nbytes=x.nbytes + 1),) + op.reads[1:])
    del ops["layers.2.residual_mlp"]
    checks, extra = compare(ops, ex.counter.records)
    assert sorted(c.name for c in checks if not c.passed) == ["layers.0.self_attn.o_proj",
                                                               "layers.0.self_attn.q_b_proj"]
    assert extra == ["layers.2.residual_mlp"]


def test_execution_order_is_topological_and_checked():
    ex = execute_prefill(model_from_dict(TINY_DSV3), batch=1, prompt_len=4, precision=FP8)
    assert executed_in_topological_order(ex.graph, ex.counter.records)
    assert not executed_in_topological_order(ex.graph, list(reversed(ex.counter.records)))


def test_decode_logits_equal_full_forward_last_token():
    from archsim.kernels.tiny import TinyDeepSeek
    model = model_from_dict(TINY_DSV3)
    ex = execute_decode(model, batch=2, context=7, precision=FP8, seed=3)
    tokens = np.random.default_rng(3).integers(0, model.vocab_size, (2, 7))
    full, _ = TinyDeepSeek(model, seed=3).forward(tokens)
    assert np.max(np.abs(ex.logits[:, 0] - full[:, -1])) <= 1e-10


def test_node_by_node_logits_equal_model_forward():
    model = model_from_dict(TINY_K2)
    for ex in (execute_prefill(model, batch=2, prompt_len=6, precision=FP8),
               execute_decode(model, batch=2, context=6, precision=FP8)):
        assert ex.reference_error <= 1e-10


def test_any_dependency_order_gives_the_same_result():
    import networkx as nx

    from archsim.execute import finish, prepare
    model = model_from_dict(TINY_DSV3)
    a = prepare(model, phase="decode", batch=2, length=5, precision=FP8, seed=1)
    b = prepare(model, phase="decode", batch=2, length=5, precision=FP8, seed=1)
    order_a = list(nx.lexicographical_topological_sort(a.graph.to_networkx()))
    order_b = list(nx.lexicographical_topological_sort(b.graph.to_networkx(), key=lambda n: "".join(chr(255 - ord(c)) for c in n)))
    assert order_a != order_b
    for step, order in ((a, order_a), (b, order_b)):
        for name in order:
            step.runner.run(name)
    ea, eb = finish(a), finish(b)
    assert counts_match(ea) and counts_match(eb)
    assert np.array_equal(ea.logits, eb.logits)


def test_dense_gqa_family_counts_match():
    from archsim.config.workload import load_workload
    from archsim.graph.small import small_variant
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    model = small_variant(load_workload(os.path.join(root, "workloads", "llama3_405b.yaml")).model)
    bf16 = precision_from_names("bf16", "bf16", "bf16")
    for ex in (execute_prefill(model, batch=2, prompt_len=7, precision=bf16),
               execute_decode(model, batch=2, context=7, precision=bf16)):
        assert ex.mismatches() == [] and counts_match(ex)
        assert ex.reference_error <= 1e-10


@pytest.mark.parametrize("phase,length", [("prefill", 7), ("decode", 9), ("decode", 2)])
def test_mtp_graph_counts_match_and_mtp_logits_equal_model(phase, length):
    from archsim.execute import execute, prepare
    model = model_from_dict(TINY_DSV3)
    ex = execute(prepare(model, phase=phase, batch=2, length=length, precision=FP8, mtp=True))
    assert any(n.startswith("mtp.0.") for n in ex.ops)          # the MTP module's nodes were compared too
    assert ex.mismatches() == [] and counts_match(ex)
    # main logits and the MTP head's logits both equal the model's own forward / mtp_logits
    assert ex.reference_error <= 1e-10


@pytest.mark.parametrize("family", ["mla", "gqa", "mla_mtp"])
def test_prefill_chunk_after_cached_prefix_counts_match(family):
    # a prefill chunk of 5 tokens after 6 cached ones: kv_b_proj re-expands the cached latents (MLA),
    # the attention reads the prefix from the cache; logits equal one forward over all 11 tokens
    from archsim.config.workload import load_workload
    from archsim.execute import execute, prepare
    from archsim.graph.small import small_variant
    import os
    if family == "gqa":
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        model = small_variant(load_workload(os.path.join(root, "workloads", "llama3_405b.yaml")).model)
    else:
        model = model_from_dict(TINY_DSV3)
    ex = execute(prepare(model, phase="prefill", batch=2, length=5, past_len=6, precision=FP8,
                         mtp=family == "mla_mtp"))
    assert ex.mismatches() == [] and counts_match(ex)
    assert ex.reference_error <= 1e-10
    attn = ex.ops["layers.0.self_attn.attn_core"]
    assert attn.attrs["kv_len"] == 11 and attn.attrs["q_len"] == 5


def test_two_mtp_depths_counts_match():
    # depth D embeds token i + D + 1 and chains on depth D-1's hidden state; q_len = 3 in decode
    from archsim.execute import execute, prepare
    model = model_from_dict(dict(TINY_DSV3, num_nextn_predict_layers=2))
    for phase, length in (("prefill", 6), ("decode", 8)):
        ex = execute(prepare(model, phase=phase, batch=2, length=length, precision=FP8, mtp=True))
        assert any(n.startswith("mtp.1.") for n in ex.ops)
        assert ex.mismatches() == [] and counts_match(ex)
        assert ex.reference_error <= 1e-10   # main-model logits (the MTP reference covers depth 1 only)


def test_mla_without_q_lora_or_shared_experts_counts_match():
    # DeepSeek-V2-Lite-like variants: q_proj instead of q_a/q_b, and no shared expert (combine onto zeros)
    from archsim.execute import execute, prepare
    model = model_from_dict(dict(TINY_DSV3, q_lora_rank=None, n_shared_experts=None))
    for phase, length, past in (("prefill", 7, 0), ("prefill", 4, 3), ("decode", 9, 0)):
        ex = execute(prepare(model, phase=phase, batch=2, length=length, past_len=past, precision=FP8, mtp=True))
        assert "layers.0.self_attn.q_proj" in ex.ops and "layers.1.mlp.shared_experts.down_proj" not in ex.ops
        assert ex.mismatches() == [] and counts_match(ex) and ex.reference_error <= 1e-10


@pytest.mark.parametrize("method", [None, "greedy", "group_limited_greedy", "noaux_tc"])
def test_every_topk_method_counts_the_correction_bias_alike(method):
    """Graph and executed tiny model agree on the router for every accepted topk_method: the
    e_score_correction_bias [E] is read (and is a parameter) for noaux_tc only."""
    cfg = dict(TINY_DSV3, topk_method=method, **({"n_group": 1, "topk_group": 1} if method == "greedy" else {}))
    model = model_from_dict(cfg)
    for ex in (execute_prefill(model, batch=1, prompt_len=4, precision=FP8),
               execute_decode(model, batch=2, context=3, precision=FP8)):
        assert ex.mismatches() == []
        rec = next(r for r in ex.counter.records if r.name == "layers.1.mlp.router")
        read_bias = any(o.name == "e_score_correction_bias" for o in rec.reads)
        assert read_bias == (method == "noaux_tc")
        assert ex.ops["layers.1.mlp.router"].params == (16 if method == "noaux_tc" else 0)


@pytest.mark.parametrize("cfg,key", [(dict(TINY_DSV3, topk_method="aux_tc"), "topk_method"),
                                     (dict(TINY_DSV3, topk_method="greedy"), "topk_method")])
def test_unknown_or_inconsistent_topk_method_is_a_config_error(cfg, key):
    from archsim.errors import ConfigError
    with pytest.raises(ConfigError, match=key):
        model_from_dict(cfg)
