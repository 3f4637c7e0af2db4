"""Every trace archsim writes (run --small, run, train, serve) against the Trace Event Format (Google's "Trace Event
Format" document, JSON Object Format): ``check_trace`` is the schema, written here so the tests need no viewer."""
import json
import math

import pytest

from archsim.cli import main
from tests.conftest import REPO

# the events archsim writes: complete events and the metadata events that name processes and threads
METADATA = {"process_name": ("name", str), "thread_name": ("name", str), "process_sort_index": ("sort_index", int),
            "thread_sort_index": ("sort_index", int)}


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_trace(doc) -> dict:
    """Assert ``doc`` is a Trace Event Format JSON object: a ``traceEvents`` list of "X" events (name, numeric pid
    and tid, ts >= 0 and dur >= 0 in microseconds) and "M" events naming processes and threads; every pid and
    (pid, tid) an X event uses is named; the X events of one thread do not overlap unless one nests inside the
    other. Returns the X events by (pid, tid)."""
    doc = json.loads(json.dumps(doc, allow_nan=False))  # what a viewer reads: plain JSON, no NaN or infinity
    assert isinstance(doc, dict) and isinstance(doc["traceEvents"], list)
    assert set(doc) <= {"traceEvents", "displayTimeUnit", "otherData"}
    assert doc.get("displayTimeUnit", "ms") in ("ms", "ns")
    assert isinstance(doc.get("otherData", {}), dict)
    named_pids, named_threads, threads = set(), set(), {}
    for e in doc["traceEvents"]:
        assert isinstance(e, dict) and isinstance(e.get("name"), str), e
        assert _int(e.get("pid")) and _int(e.get("tid")), f"pid and tid must be numbers: {e}"
        assert isinstance(e.get("args", {}), dict), e
        if e["ph"] == "M":
            assert e["name"] in METADATA, e
            key, kind = METADATA[e["name"]]
            assert isinstance(e["args"][key], kind) and not isinstance(e["args"][key], bool), e
            if e["name"] == "process_name":
                named_pids.add(e["pid"])
            elif e["name"] == "thread_name":
                named_threads.add((e["pid"], e["tid"]))
        else:
            assert e["ph"] == "X", f"only complete and metadata events are written: {e}"
            assert _number(e["ts"]) and _number(e["dur"]) and e["ts"] >= 0 and e["dur"] >= 0, e
            assert isinstance(e.get("cat", ""), str), e
            threads.setdefault((e["pid"], e["tid"]), []).append(e)
    for (pid, tid), events in threads.items():
        assert pid in named_pids and (pid, tid) in named_threads, (pid, tid)
        open_ends: list[float] = []  # ends of the events enclosing the current one
        for e in sorted(events, key=lambda e: (e["ts"], -e["dur"])):
            end = e["ts"] + e["dur"]
            tol = 1e-9 * max(1.0, abs(end))  # microseconds: sums of float seconds differ in the last bits
            while open_ends and open_ends[-1] <= e["ts"] + tol:
                open_ends.pop()
            assert not open_ends or end <= open_ends[-1] + tol, f"overlaps without nesting on {(pid, tid)}: {e}"
            open_ends.append(end)
    return threads


def span_us(events) -> float:
    return max(e["ts"] + e["dur"] for e in events) - min(e["ts"] for e in events)


def test_checker_rejects_string_tids_and_overlap():
    named = [{"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "p"}},
             {"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": "t"}}]
    x = {"name": "a", "ph": "X", "pid": 1, "tid": 1, "ts": 0.0, "dur": 2.0}
    check_trace({"traceEvents": named + [x, {**x, "ts": 0.5, "dur": 1.0}]})  # nested: fine
    with pytest.raises(AssertionError):
        check_trace({"traceEvents": named + [x, {**x, "ts": 1.0, "dur": 2.0}]})
    with pytest.raises(AssertionError):
        check_trace({"traceEvents": named + [{**x, "tid": "compute"}]})
    with pytest.raises(AssertionError):
        check_trace({"traceEvents": named + [{**x, "dur": -1.0}]})


def test_run_trace_is_the_projected_step(tmp_path, capsys):
    from archsim.api import plan

    path = tmp_path / "run.json"
    wl, hw = str(REPO / "workloads/deepseek_v3.yaml"), str(REPO / "hardware/h800.yaml")
    assert main(["run", wl, "--hw", hw, "--batch", "256", "--trace", str(path), "--format", "json"]) == 0
    capsys.readouterr()
    doc = json.loads(path.read_text())
    threads = check_trace(doc)
    resolved = plan(wl, hw, batch=256)
    priced = [bd for p in resolved.plan.pools for bd in (p.prefill, p.decode) if bd is not None]
    steps = doc["otherData"]["steps"]
    assert [s["time_s"] for s in steps] == [bd.time_s for bd in priced] and len(steps) == 2
    for step, bd in zip(steps, priced):
        events = [e for (pid, _), es in threads.items() if pid == step["pid"] for e in es]
        assert span_us(events) / 1e6 == pytest.approx(bd.time_s, rel=1e-9)
        names = {e["name"] for e in events}
        # the compact graph is expanded: the last decoder layer's experts appear under their own name
        assert "layers.60.mlp.experts.gate_up" in names and "embed_tokens" in names


def test_run_small_trace_still_traces_the_tiny_model(tmp_path, capsys):
    path = tmp_path / "small.json"
    assert main(["run", str(REPO / "workloads/deepseek_v3.yaml"), "--hw", str(REPO / "hardware/h100.yaml"),
                 "--small", "--trace", str(path), "--format", "json"]) == 0
    capsys.readouterr()
    doc = json.loads(path.read_text())
    threads = check_trace(doc)
    assert len({pid for pid, _ in threads}) == 1 and doc["otherData"]["makespan_s"] > 0


def test_train_trace_has_numeric_tracks(tmp_path, capsys):
    path = tmp_path / "train.json"
    assert main(["train", str(REPO / "workloads/deepseek_v3.yaml"), "--hw", str(REPO / "hardware/h800.yaml"),
                 "--devices", "2048", "--pp", "16", "--ep", "64", "--micro-batches", "32", "--recompute", "full",
                 "--zero", "1", "--trace", str(path), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    doc = json.loads(path.read_text())
    threads = check_trace(doc)
    assert len({pid for pid, _ in threads}) == 16  # one process per pipeline rank
    if out["fits"]:
        events = [e for es in threads.values() for e in es]
        assert span_us(events) / 1e6 == pytest.approx(doc["otherData"]["step_time_s"], rel=1e-9)


def test_serve_trace_has_one_event_per_iteration(tmp_path, capsys):
    path = tmp_path / "serve.json"
    assert main(["serve", str(REPO / "workloads/deepseek_v3.yaml"), "--hw", str(REPO / "hardware/h800.yaml"),
                 "--rate", "4", "--duration", "5", "--replicas", "2", "--trace", str(path), "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    doc = json.loads(path.read_text())
    threads = check_trace(doc)
    events = [e for es in threads.values() for e in es]
    assert len(events) == summary["iterations"] == doc["otherData"]["iterations"]
    assert len({pid for pid, _ in threads}) == 2
    assert all(e["args"]["tokens"] == e["args"]["prefill_tokens"] + e["args"]["decode_tokens"] > 0
               and e["args"]["batch"] >= 1 for e in events)


def test_disaggregated_serve_trace_names_each_pool(tmp_path, capsys):
    path = tmp_path / "pd.json"
    assert main(["serve", str(REPO / "workloads/deepseek_v3.yaml"), "--hw", str(REPO / "hardware/h800.yaml"),
                 "--deployment", str(REPO / "deployments/deepseek_v3_h800_1p3d.yaml"), "--rate", "4",
                 "--duration", "3", "--trace", str(path), "--format", "json"]) == 0
    capsys.readouterr()
    doc = json.loads(path.read_text())
    check_trace(doc)
    processes = [e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "process_name"]
    # the deployment's one prefill instance and three decode instances (deployments/deepseek_v3_h800_1p3d.yaml)
    assert processes == ["serve prefill replica 0"] + [f"serve decode replica {i}" for i in range(3)]
