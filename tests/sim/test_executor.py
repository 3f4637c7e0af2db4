"""Discrete-event execution: chains add up, independent ops on different resources overlap,
serial mode equals the cost model's serial sum on a full-scale graph."""
import os

import networkx as nx
import pytest

from archsim.config.workload import load_workload
from archsim.cost.phase import price_graph
from archsim.dtypes import BF16
from archsim.graph.build import build_decode, build_prefill
from archsim.graph.ops import GraphBuilder
from archsim.graph.precision import Precision, precision_from_names
from archsim.sim.executor import SERIAL_RESOURCE, Slot, execute_graph, schedule

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BF = Precision(weights=BF16)


def chain_graph():
    b = GraphBuilder(BF)
    a = b.norm("a", rows=4096, width=8192, layer=0, deps=[])
    g = b.gemm("g", m=4096, n=8192, k=8192, layer=0, deps=[a], split="replicated")
    b.residual("r", rows=4096, width=8192, layer=0, deps=[g])
    return b.graph()


def test_a_chain_takes_the_sum_of_its_priced_times(h100):
    g = chain_graph()
    costs = price_graph(g, h100)
    t = execute_graph(g, h100, costs=costs)
    assert t.makespan_s == pytest.approx(sum(c.time_s for c in costs.ops.values()), rel=1e-12)
    ev = {e.name: e for e in t.events}
    assert ev["a"].end_s <= ev["g"].start_s and ev["g"].end_s <= ev["r"].start_s   # dependencies hold


def test_independent_ops_on_different_resources_overlap(h100):
    b = GraphBuilder(BF)
    b.gemm("big_gemm", m=8192, n=8192, k=8192, layer=0, deps=[], split="replicated")   # compute-bound
    b.norm("wide_norm", rows=65536, width=8192, layer=0, deps=[])                       # memory-bound
    g = b.graph()
    costs = price_graph(g, h100)
    assert costs.ops["big_gemm"].bound == "compute" and costs.ops["wide_norm"].bound.startswith("memory")
    t = execute_graph(g, h100, costs=costs)
    times = [c.time_s for c in costs.ops.values()]
    assert t.makespan_s == pytest.approx(max(times), rel=1e-12)          # fully overlapped
    assert t.makespan_s < t.serial_s == pytest.approx(sum(times), rel=1e-12)
    assert len(t.resources) == 2
    serial = execute_graph(g, h100, costs=costs, overlap=False)
    assert serial.makespan_s == pytest.approx(sum(times), rel=1e-12) and serial.resources == (SERIAL_RESOURCE,)


def test_same_resource_serialises_and_on_op_sees_dependency_order():
    g = nx.DiGraph()
    b = GraphBuilder(BF)
    for name in ("x", "y", "z"):
        b.norm(name, rows=1, width=8, layer=0, deps=[])
    g = b.graph()
    g.add_edge("x", "z")
    slots = {"x": Slot(resource="r1", time_s=2.0), "y": Slot(resource="r1", time_s=3.0),
             "z": Slot(resource="r2", time_s=1.0)}
    seen = []
    t = schedule(g, slots, on_op=lambda op, s, e: seen.append((op.name, s, e)))
    # x and y share r1 (one after the other: 5 s); z waits only for x (2 s) and runs on r2
    assert t.makespan_s == 5.0 and t.busy_s == {"r1": 5.0, "r2": 1.0}
    assert seen.index(("x", 0.0, 2.0)) < seen.index(("z", 2.0, 3.0))


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_full_scale_serial_mode_equals_the_cost_model_sum(h100, phase):
    w = load_workload(os.path.join(ROOT, "workloads", "deepseek_v3.yaml"))
    prec = precision_from_names("fp8")
    g = (build_prefill(w.model, batch=1, prompt_len=1024, precision=prec) if phase == "prefill"
         else build_decode(w.model, batch=32, context=4096, precision=prec))
    costs = price_graph(g, h100)
    serial = execute_graph(g, h100, costs=costs, overlap=False)
    assert serial.makespan_s == pytest.approx(costs.time_s, rel=1e-9)
    overlapped = execute_graph(g, h100, costs=costs)
    # overlap never makes the step slower and never beats the busiest resource
    assert max(overlapped.busy_s.values()) <= overlapped.makespan_s * (1 + 1e-12)
    assert overlapped.makespan_s <= serial.makespan_s * (1 + 1e-12)
    assert len(overlapped.events) == g.number_of_nodes()


def test_compact_graph_is_refused():
    from archsim.errors import ConfigError
    g = chain_graph()
    g.graph["repeats"] = object()       # what build_decode(compact=True) attaches
    with pytest.raises(ConfigError, match="compact"):
        schedule(g, {n: Slot(resource="r", time_s=1.0) for n in g})
