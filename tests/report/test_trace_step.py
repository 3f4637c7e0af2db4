"""The projected step's trace (report/trace_step.py) against the priced step it draws: each process spans exactly
``PhaseBreakdown.time_s`` (communication-bound overlap: plus the reported overhang of the last collectives, at most
one micro-batch's layer compute), its op events add up to the compute, its collectives to the communication, and
the idle time on the compute stream is the exposed communication plus the host time the GPU waits for."""
from math import fsum

import pytest

from archsim.api import plan
from archsim.report.trace_step import deployment_trace
from tests.conftest import REPO
from tests.report.test_trace_format import check_trace, span_us

US = 1e6  # trace times are microseconds

CASES = {
    # two-micro-batch overlap of DeepEP exchanges, decode and chunked prefill
    "overlap": ("deepseek_v3", "h800", dict(batch=512, micro_batches=2)),
    # a stack: kernel libraries and host time per iteration, overlapped with the GPU (SGLang) or not (vLLM)
    "host_overlapped": ("deepseek_v3", "h800", dict(batch=512, stack="sglang")),
    "host_serial": ("deepseek_v3", "h800", dict(batch=512, stack="vllm")),
    # a pipeline: bubble and pipeline sends, with and without overlap
    "pipeline_overlap": ("deepseek_v3", "h800", dict(batch=512, devices=64, pp=4, micro_batches=4)),
    "pipeline_serial": ("llama3_405b", "h100", dict(batch=64, pp=2, micro_batches=1, prompt_len=3000)),
    # context parallel K/V exchange and the MTP module in decode
    "cp_mtp": ("deepseek_v3", "h800", dict(batch=256, cp=2, micro_batches=2, mtp=True)),
    # a disaggregated deployment: a prefill pool and a decode pool
    "disaggregated": ("deepseek_v3", "h800", dict(deployment=str(REPO / "deployments/deepseek_v3_h800_1p3d.yaml"))),
    # one long prompt in chunks: pieces priced with weights 1.5 and 0.5 (mapping/phases.phase_forwards)
    "chunks_1.5": ("kimi_k2", "h100", dict(batch=1, prompt_len=25000)),
    "chunks_0.5": ("kimi_k2", "h100", dict(batch=1, prompt_len=10000)),
    # two micro-batches of a small prefill: the EP exchanges outweigh the compute beside them
    "comm_bound": ("deepseek_v3", "h800", dict(batch=32, micro_batches=2)),
}


def _traced(case):
    wl, hw, overrides = CASES[case]
    resolved = plan(REPO / f"workloads/{wl}.yaml", REPO / f"hardware/{hw}.yaml", **overrides)
    doc = deployment_trace(resolved)
    threads = check_trace(doc)
    priced = [bd for p in resolved.plan.pools for bd in (p.prefill, p.decode) if bd is not None]
    return doc, threads, priced


def _by_thread(doc, threads, pid):
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
    return {names[key]: es for key, es in threads.items() if key[0] == pid}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_step_spans_its_priced_time(case):
    doc, threads, priced = _traced(case)
    steps = doc["otherData"]["steps"]
    assert len(steps) == len(priced) >= 1
    for step, bd in zip(steps, priced):
        by = _by_thread(doc, threads, step["pid"])
        events = sum(by.values(), [])
        assert min(e["ts"] for e in events) == 0.0
        (whole,) = by["step"]
        assert whole["dur"] / US == pytest.approx(bd.time_s, rel=1e-15) and step["time_s"] == bd.time_s
        for stream in ("compute", "host"):  # the streams the priced time is made of end exactly there
            if stream in by:
                assert max(e["ts"] + e["dur"] for e in by[stream]) / US <= bd.time_s * (1 + 1e-9)
        assert max(e["ts"] + e["dur"] for e in by["compute"] + by.get("host", [])) / US == pytest.approx(
            bd.time_s, rel=1e-9)
        overhang = step["communication_overhang_s"]
        assert span_us(events) / US == pytest.approx(bd.time_s + overhang, rel=1e-9)
        if case != "comm_bound":
            assert overhang <= 1e-9 * bd.time_s
        elif bd.phase == "prefill":
            # at most one micro-batch's compute of one layer (what the model hides behind nothing)
            per_layer: dict = {}
            for e in by["compute"]:
                if e["cat"] not in ("idle", "repeat") and e["args"]["layer"] is not None:
                    key = (e["args"]["forward"], e["args"]["layer"], e["args"]["micro_batch"])
                    per_layer[key] = per_layer.get(key, 0.0) + e["dur"] / US
            assert 0 < overhang <= max(per_layer.values())


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_forward_steps_add_up_stream_by_stream(case):
    doc, threads, priced = _traced(case)
    checked = 0
    for step, bd in zip(doc["otherData"]["steps"], priced):
        if bd.model.forwards[0].count != 1 or len(bd.model.forwards) != 1:
            continue  # repeated forwards are drawn once and then as one event: checked by the span alone
        checked += 1
        by = _by_thread(doc, threads, step["pid"])
        ops = [e for e in by["compute"] if e["cat"] not in ("idle", "repeat")]
        bubble = fsum(e["dur"] for e in by["compute"] if e["cat"] == "idle") / US
        assert fsum(e["dur"] for e in ops) / US == pytest.approx(bd.compute_s, rel=1e-9)
        assert bubble == pytest.approx(bd.bubble_s, rel=1e-9, abs=1e-15)
        comm = fsum(e["dur"] for e in by.get("communication", [])) / US
        assert comm == pytest.approx(bd.communication_s, rel=1e-9, abs=1e-15)
        idle = bd.time_s - fsum(e["dur"] for e in by["compute"]) / US
        assert idle == pytest.approx(bd.exposed_s + bd.host_s, rel=1e-9, abs=1e-12 * bd.time_s)
        host = bd.model.host
        assert ("host" in by) == (host is not None and host.iteration_s > 0)
    assert checked >= 1 or case.startswith("chunks")


def test_overlapped_communication_runs_beside_the_other_micro_batch():
    doc, threads, priced = _traced("overlap")
    decode = doc["otherData"]["steps"][1]
    assert priced[1].micro_batches == 2 and priced[1].model.forwards[0].overlapped
    by = _by_thread(doc, threads, decode["pid"])
    compute, comm = by["compute"], by["communication"]
    comm_mb = {e["args"]["micro_batch"] for e in comm}
    assert comm_mb == {0, 1}
    # a dispatch of micro-batch 0 overlaps micro-batch 1's compute in time
    hidden = [c for c in comm if c["args"]["micro_batch"] == 0 and any(
        o["args"]["micro_batch"] == 1 and o["ts"] < c["ts"] + c["dur"] and c["ts"] < o["ts"] + o["dur"]
        for o in compute if o["args"]["layer"] == c["args"]["layer"])]
    assert hidden


def test_repeated_and_fractional_forwards_are_one_event_each():
    for case, weight in (("chunks_1.5", 0.5), ("chunks_0.5", 0.5)):
        doc, threads, priced = _traced(case)
        prefill = priced[0]
        assert sorted(f.count for f in prefill.model.forwards).count(weight if case == "chunks_0.5" else 1.5) == 2
        repeats = [e for es in threads.values() for e in es if e["cat"] == "repeat"]
        assert len(repeats) == 2 and all(e["args"]["forwards"] == weight for e in repeats)


@pytest.mark.parametrize("overlapped", [True, False])
def test_host_time_longer_than_the_gpu_work(overlapped):
    """A host iteration longer than the GPU's work: overlapped, the step lasts the host time (the GPU waits);
    serial, GPU plus host."""
    from dataclasses import replace

    from archsim.config.stack import HostOverhead
    from archsim.report.trace_step import step_spans

    _, _, priced = _traced("overlap")
    decode = priced[1]
    model = replace(decode.model, host=HostOverhead(iteration_s=10 * decode.time_s, overlapped=overlapped))
    spans = step_spans(replace(decode, model=model), _model("overlap"), process="p")
    end = max(s.end_s for s in spans)
    assert end == pytest.approx(float(model.evaluate().time_s), rel=1e-9)
    assert end == pytest.approx(10 * decode.time_s + (0 if overlapped else decode.time_s), rel=1e-9)
    host = [s for s in spans if s.thread == "host"]
    assert len(host) == 1 and host[0].start_s == (0.0 if overlapped else pytest.approx(decode.time_s, rel=1e-9))


def _model(case):
    from archsim.config.workload import load_workload

    return load_workload(REPO / f"workloads/{CASES[case][0]}.yaml").model
