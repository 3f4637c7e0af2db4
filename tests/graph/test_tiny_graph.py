"""The same builder serves a tiny DeepSeek-family model (hidden 64, 2 layers, 8 experts)."""
import networkx as nx
import pytest
from helpers_graph import tiny

from archsim.graph.build import build_decode, build_prefill
from archsim.graph.params import count_params
from archsim.graph.precision import Precision
from archsim.dtypes import FP32


def test_tiny_prefill_counts_op_by_op():
    m = tiny()
    T = 2 * 5                      # batch 2, prompt 5
    g = build_prefill(m, batch=2, prompt_len=5, precision=Precision(weights=FP32, activations=FP32, kv_cache=FP32))
    assert nx.is_directed_acyclic_graph(g.to_networkx())
    op = lambda n: g.nodes[n]["op"]
    assert op("layers.0.mlp.gate_proj").flops == 2 * T * 128 * 64
    assert op("layers.1.mlp.experts.gate_up").flops == 2 * (T * 2) * (2 * 16) * 64   # T*k tokens
    assert op("layers.1.mlp.experts.gate_up").attrs["tokens_per_expert"] == (T * 2 / 8,) * 8
    assert op("layers.1.mlp.router").flops == 4 * T * 8 + T * 4 + 3 * 2 * T          # n_group = 4 > 1
    assert op("layers.1.self_attn.attn_core").flops == 2 * 4 * (5 * 6 // 2) * (2 * 12 + 5 + 2 * 8)
    assert op("layers.1.self_attn.q_b_proj").flops == 2 * T * 32 * 4 * 12
    assert op("layers.1.mlp.combine").flops == 2 * 2 * 64 * T
    assert op("lm_head").attrs["m"] == 2                                                # last position only
    assert sum(d["op"].params for _, d in g.nodes(data=True)) == count_params(m).total
    # fp32 activations: 4 bytes per element
    assert op("layers.0.input_layernorm").reads[0].nbytes == T * 64 * 4


def test_tiny_decode_with_mtp_builds_every_module():
    m = tiny()
    g = build_decode(m, batch=3, context=9, precision=Precision(weights=FP32, activations=FP32, kv_cache=FP32),
                     mtp=True)
    assert {"mtp.0.enorm", "mtp.0.hnorm", "mtp.0.eh_proj", "mtp.0.mlp.router", "mtp.0.shared_head.head"} <= set(g)
    assert sum(d["op"].params for _, d in g.nodes(data=True)) == count_params(m, mtp=True).total
    # topological order exists and starts from the two embeddings
    order = g.topological_order()
    assert order == list(nx.topological_sort(g.to_networkx()))  # networkx's order, node for node
    assert {n for n in g if g.in_degree(n) == 0} == {"embed_tokens", "mtp.0.embed_tokens"}
    assert order.index("norm") < order.index("lm_head")


def test_building_the_full_kimi_decode_graph_is_cheap():
    """Builder does per-op work only (61 layers ~ 1.5k ops); no timing assert, just a size check."""
    from helpers_graph import model
    g = build_decode(model("kimi_k2"), batch=64, context=4096,
                     precision=Precision(weights=FP32))
    assert 1400 < g.number_of_nodes() < 2000
