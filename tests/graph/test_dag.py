"""OpGraph (archsim/graph/dag.py): the phase graphs' own container and topological order, checked by hand on small
graphs and against networkx on the built ones."""
from __future__ import annotations

import networkx as nx
import pytest
from helpers_graph import model

from archsim.cost.phase import graph_ops, price_graph
from archsim.graph.build import build_decode, build_prefill
from archsim.graph.dag import GraphCycleError, OpGraph, is_graph, topological_order
from archsim.graph.precision import precision_from_names

FP8 = precision_from_names("fp8", "bf16", "bf16")


def _graph(nodes, edges) -> OpGraph:
    g = OpGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    return g


def test_diamond_orders_generation_by_generation():
    # a -> b, a -> c, b -> d, c -> d; e alone. Generations: {a, e} (no inputs, node order), {b, c} (a done), {d}.
    g = _graph("abcde", [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
    assert g.topological_order() == ["a", "e", "b", "c", "d"]
    assert list(g.predecessors("d")) == ["b", "c"] and list(g.successors("a")) == ["b", "c"]
    assert (g.in_degree("d"), g.out_degree("a"), g.in_degree("e")) == (2, 2, 0)


def test_an_edge_added_twice_is_one_edge():
    g = _graph("xy", [("x", "y"), ("x", "y")])
    assert g.number_of_edges() == 1 and g.edges == [("x", "y")]


def test_an_edge_to_a_missing_node_is_an_error_naming_it():
    g = _graph("x", [])
    with pytest.raises(ValueError, match="'typo' is not a node"):
        g.add_edge("x", "typo")
    assert g.number_of_nodes() == 1  # nothing invented


def test_a_cycle_has_no_order():
    g = _graph("pqr", [("p", "q"), ("q", "r"), ("r", "q")])
    with pytest.raises(GraphCycleError, match="cycle"):
        g.topological_order()


def test_node_view_reads_like_networkx():
    g = OpGraph()
    g.add_node("a", op=1)
    g.add_nodes_from([("b", {"op": 2}), "c"])
    g.add_node("c", op=3)  # a second add updates the attributes
    assert list(g.nodes) == list(g) == ["a", "b", "c"] and len(g.nodes) == len(g) == 3
    assert list(g.nodes(data=True)) == [("a", {"op": 1}), ("b", {"op": 2}), ("c", {"op": 3})]
    assert [d["op"] for d in g.nodes.values()] == [1, 2, 3] and g.nodes["b"]["op"] == 2
    assert "a" in g and "z" not in g and ["unhashable"] not in g


@pytest.mark.parametrize("mtp", [False, True])
def test_order_and_structure_equal_networkx_on_built_graphs(mtp):
    """The full DeepSeek-V3 decode graph (with the MTP module: two roots) against networkx's copy of it."""
    g = build_decode(model("deepseek_v3"), batch=4, context=64, precision=FP8, mtp=mtp)
    ref = g.to_networkx()
    assert g.topological_order() == list(nx.topological_sort(ref))
    assert (g.number_of_nodes(), g.number_of_edges()) == (ref.number_of_nodes(), ref.number_of_edges())
    assert g.edges == list(ref.edges) and ref.graph == g.graph
    assert topological_order(ref) == topological_order(g)


def test_is_graph_tells_graphs_from_op_lists():
    g = build_prefill(model("llama3_405b"), batch=1, prompt_len=8, precision=precision_from_names("bf16"))
    ops = graph_ops(g)
    assert is_graph(g) and is_graph(g.to_networkx()) and not is_graph(ops) and not is_graph(tuple(ops))


def test_pricing_an_opgraph_equals_pricing_its_networkx_copy(h100):
    """The same numbers whichever container holds the ops, in build order or in topological order."""
    g = build_decode(model("kimi_k2"), batch=8, context=1024, precision=FP8)
    ref = g.to_networkx()
    del g.graph["build_order"], ref.graph["build_order"]  # both take the topological-sort path
    ours, theirs = price_graph(g, h100), price_graph(ref, h100)
    assert ours.time_s == theirs.time_s and ours.energy_j == theirs.energy_j and ours.flops == theirs.flops
    assert [op.name for op in ours.op_list] == list(nx.topological_sort(ref))
