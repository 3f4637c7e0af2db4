"""Chrome trace export: valid JSON, one track per resource, one complete event per op in microseconds."""
import json

from archsim.dtypes import BF16
from archsim.graph.ops import GraphBuilder
from archsim.graph.precision import Precision
from archsim.report.trace import chrome_trace, write_chrome_trace
from archsim.sim.executor import Slot, schedule


def timeline():
    b = GraphBuilder(Precision(weights=BF16))
    b.norm("a", rows=1, width=8, layer=0, deps=[])
    b.norm("b", rows=1, width=8, layer=0, deps=["a"])
    b.norm("c", rows=1, width=8, layer=1, deps=[])
    slots = {"a": Slot(resource="tensor", time_s=2e-6), "b": Slot(resource="hbm", time_s=3e-6),
             "c": Slot(resource="hbm", time_s=1e-6)}
    return schedule(b.graph(), slots)


def test_trace_has_one_track_per_resource_and_op_events(tmp_path):
    path = tmp_path / "t.json"
    write_chrome_trace(timeline(), path)
    data = json.loads(path.read_text())
    events = data["traceEvents"]
    threads = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert sorted(threads.values()) == ["hbm", "tensor"] and len(threads) == 2
    ops = {e["name"]: e for e in events if e["ph"] == "X"}
    assert set(ops) == {"a", "b", "c"}
    # a runs 0..2 us on tensor; c runs 0..1 us on hbm; b waits for a and for hbm: 2..5 us
    assert (ops["a"]["ts"], ops["a"]["dur"]) == (0.0, 2.0)
    assert ops["b"]["ts"] == 2.0 and abs(ops["b"]["dur"] - 3.0) < 1e-9
    assert threads[ops["b"]["tid"]] == "hbm" and ops["b"]["tid"] == ops["c"]["tid"] != ops["a"]["tid"]
    assert all(e["pid"] == 1 for e in events)


def test_trace_metadata_carries_makespan():
    t = timeline()
    data = chrome_trace(t, name="step")
    assert data["otherData"]["makespan_s"] == t.makespan_s
    assert data["traceEvents"][0] == {"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "step"}}
