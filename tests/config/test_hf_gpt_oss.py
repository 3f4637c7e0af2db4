"""gpt-oss config.json as a workload: every modelled field read from the transcribed public files, exact parameter
counts by hand derivation equal to OpenAI's model card (Table 1 of "gpt-oss-120b & gpt-oss-20b Model Card",
arXiv:2508.10925: 116.83B / 5.13B active, 20.91B / 3.61B; MLP, attention and embedding rows; checkpoint sizes
60.8 / 12.8 GiB), and the MXFP4 expert format."""
from __future__ import annotations

import os

import pytest

from archsim.config.hf import UnmodelledFieldsWarning, workload_from_hf_config
from archsim.config.model import SLIDING
from archsim.graph.build import build_decode
from archsim.graph.params import count_params
from archsim.graph.precision import WEIGHT_FORMATS, precision_from_names, scenario_precision
from tests.config.hf_fixtures import CONFIGS, load, raw

# name -> (layers, experts, model card Table 1: total, active, MLP, attention, embed + unembed in B; checkpoint GiB)
CARD = {"gpt-oss-120b": (36, 128, 116.83, 5.13, 114.71, 0.96, 1.16, 60.8),
        "gpt-oss-20b": (24, 32, 20.91, 3.61, 19.12, 0.64, 1.16, 12.8)}


def billions(n: int, digits: int = 2) -> float:
    return round(n / 1e9, digits)


@pytest.mark.parametrize("name", sorted(CARD))
def test_fields_are_the_files(name):
    r, m = raw(name), load(name).model
    assert (m.hidden_size, m.num_hidden_layers, m.vocab_size) == (r["hidden_size"], r["num_hidden_layers"],
                                                                   r["vocab_size"])
    assert (m.num_attention_heads, m.num_key_value_heads, m.head_dim) == (r["num_attention_heads"],
                                                                           r["num_key_value_heads"], r["head_dim"])
    assert (m.n_routed_experts, m.num_experts_per_tok, m.moe_intermediate_size) == (
        r["num_local_experts"], r["num_experts_per_tok"], r["intermediate_size"])
    assert m.sliding_window == r["sliding_window"] and list(m.layer_types) == r["layer_types"]
    assert m.swiglu_limit == r["swiglu_limit"] and m.swiglu_alpha == 1.702  # GptOssExperts.alpha, no config key
    assert m.attention_bias is r["attention_bias"] is True and m.tie_word_embeddings is r["tie_word_embeddings"]
    assert m.attention_sinks and m.router_bias and m.expert_bias and not m.use_qk_norm
    assert m.rope_scaling.rope_type == "yarn" and m.rope_scaling.factor == r["rope_scaling"]["factor"]
    assert m.rope_scaling.original_max_position_embeddings == r["initial_context_length"]
    # the router: top-k of the logits, softmax over those k (no renormalising, scaling or groups)
    assert m.scoring_func == "topk_softmax" and not m.norm_topk_prob and m.routed_scaling_factor is None
    assert m.n_group == 1 and m.topk_method is None
    # every other layer attends a window: the even layers (layer_types starts with sliding_attention)
    windows = [m.attention_window(i) for i in range(m.num_hidden_layers)]
    assert windows == [r["sliding_window"] if i % 2 == 0 else None for i in range(m.num_hidden_layers)]
    assert m.sliding_layers_in(0, m.num_hidden_layers) == m.num_hidden_layers // 2
    assert all(m.is_moe_layer(i) for i in range(m.num_hidden_layers))


@pytest.mark.parametrize("name", sorted(CARD))
def test_mxfp4_experts_bf16_rest(name):
    s = load(name).scenario
    assert (s.weights, s.expert_weights) == ("bf16", "mxfp4")
    p = scenario_precision(s)
    mx = p.routed_expert_weights
    # MXFP4: 4-bit elements, one 8-bit E8M0 scale per 32 (OCP MX v1.0): 4.25 bits per weight on gate_up [2I, h]
    assert mx is WEIGHT_FORMATS["mxfp4"] and mx.storage_bytes((5760, 2880)) * 8 / (5760 * 2880) == 4.25
    # weight-only: the expert GEMMs compute in bf16 (the activations), as int4's do; fp4 is the W4A4 format
    assert p.expert_gemm_compute.name == "bf16" and p.gemm_compute.name == "bf16"
    assert mx.storage_bytes((2880, 2880)) == WEIGHT_FORMATS["fp4"].storage_bytes((2880, 2880))


def per_layer(E: int) -> tuple[int, int, int]:
    """(attention, MLP, MLP active) parameters of one gpt-oss layer, each with its RMSNorm (the model card's rows).

    Attention: q [64*64, 2880] + bias, k and v [8*64, 2880] + biases, o [2880, 64*64] + bias, 64 sinks.
    MLP: router [E, 2880] + bias [E]; per expert gate_up [2*2880, 2880] + bias [5760], down [2880, 2880] + bias."""
    h, d, H, KV, I = 2880, 64, 64, 8, 2880
    attention = h * H * d + H * d + 2 * (h * KV * d + KV * d) + H * d * h + h + H + h
    expert = h * 2 * I + 2 * I + I * h + h
    router = E * h + E
    return attention, router + E * expert + h, router + 4 * expert + h


@pytest.mark.parametrize("name", sorted(CARD))
def test_exact_counts_are_the_model_card(name):
    L, E, total_b, active_b, mlp_b, attn_b, embed_b, _ = CARD[name]
    V, h = 201088, 2880
    attention, mlp, mlp_active = per_layer(E)
    embed = 2 * V * h                                # embedding and unembedding (untied)
    total = embed + h + L * (attention + mlp)        # + the final norm
    active = embed + h + L * (attention + mlp_active)
    c = count_params(load(name).model)
    assert (c.total, c.active) == (total, active)
    # Table 1 rows, to their two decimals: "Unembedding parameters are counted towards active, but not embeddings"
    assert billions(total) == total_b and billions(c.active - c.embedding) == active_b
    assert (billions(L * mlp), billions(L * attention), billions(embed)) == (mlp_b, attn_b, embed_b)
    assert c.router_per_layer == E * h + E and c.routed_expert == 3 * h * 2880 + 2 * 2880 + h


def test_exact_totals():
    assert count_params(load("gpt-oss-120b").model).total == 116_829_156_672
    assert count_params(load("gpt-oss-20b").model).total == 20_914_757_184


@pytest.mark.parametrize("name", sorted(CARD))
def test_checkpoint_size_is_the_model_card(name):
    """MXFP4 expert weights (not their biases) at 4.25 bits, everything else bf16: the card's GiB to 0.1."""
    L, E, *_, gib = CARD[name]
    w = load(name)
    precision = scenario_precision(w.scenario)
    c = count_params(w.model)
    fp4 = precision.routed_expert_weights
    experts = L * E * (fp4.storage_bytes((2 * 2880, 2880)) + fp4.storage_bytes((2880, 2880)))
    expert_weights = L * E * 3 * 2880 * 2880
    size = experts + (c.total - expert_weights) * precision.activations.bytes
    assert round(size / 2**30, 1) == gib
    # the deployment's weight bytes on one device (archsim.mapping.weights: biases unquantized) are these bytes
    from archsim.mapping.weights import model_elements, stage_weight_bytes
    m = w.model
    held = stage_weight_bytes(m, precision, tp=1, ep=1, layers=range(m.num_hidden_layers), first=True, last=True)
    assert sum(held.values()) == size and model_elements(m) == c.total


@pytest.mark.parametrize("name", sorted(CARD))
def test_graph_parameters_are_the_count(name):
    m = load(name).model
    for compact in (False, True):
        g = build_decode(m, batch=1, context=300, precision=precision_from_names("bf16", expert_weights="mxfp4"),
                         compact=compact)
        ops = [d["op"] for _, d in g.nodes(data=True)]
        if not compact:
            assert sum(op.params for op in ops) == count_params(m).total
        attn = {op.layer: op for op in ops if op.kind == "attention"}
        assert attn[0].attrs["window"] == m.sliding_window and attn[1].attrs["window"] is None
        assert all(op.attrs["sinks"] and op.params == m.num_attention_heads for op in attn.values())
    # compact: one layer per (MoE, window) kind, standing for every layer of that kind
    reps = g.graph["repeats"]
    assert {r: len(members) for r, members in reps.members.items()} == {0: m.num_hidden_layers // 2,
                                                                        1: m.num_hidden_layers // 2}
    assert all(m.layer_types[i] == SLIDING for i in reps.members[0])


def test_unmodelled_fields_are_one_warning():
    with pytest.warns(UnmodelledFieldsWarning) as rec:
        workload_from_hf_config(os.path.join(CONFIGS, "gpt-oss-120b"))
    assert len(rec) == 1
    listed = str(rec[0].message).split("(ignored): ")[1].split(", ")
    assert listed == ["attention_dropout", "output_router_logits", "router_aux_loss_coef"]
