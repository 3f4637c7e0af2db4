"""Chrome trace JSON (opens in Perfetto / chrome://tracing) of an executor Timeline: one track per resource."""
from __future__ import annotations

import json
import os

from archsim.sim.executor import Timeline

MICROSECONDS_PER_SECOND = 1e6  # Chrome trace timestamps are in microseconds
PID = 1


def chrome_trace(timeline: Timeline, *, name: str = "archsim") -> dict:
    """``{"traceEvents": [...], "displayTimeUnit": "ns"}``: metadata naming the process and one
    thread (tid) per resource, then one complete event ("ph": "X") per op."""
    tids = {resource: i + 1 for i, resource in enumerate(sorted(timeline.resources))}
    events: list[dict] = [{"name": "process_name", "ph": "M", "pid": PID, "tid": 0, "args": {"name": name}}]
    for resource, tid in tids.items():
        events.append({"name": "thread_name", "ph": "M", "pid": PID, "tid": tid, "args": {"name": resource}})
        events.append({"name": "thread_sort_index", "ph": "M", "pid": PID, "tid": tid, "args": {"sort_index": tid}})
    for e in sorted(timeline.events, key=lambda e: (e.start_s, e.name)):
        events.append({
            "name": e.name, "cat": e.kind, "ph": "X", "pid": PID, "tid": tids[e.resource],
            "ts": e.start_s * MICROSECONDS_PER_SECOND,
            "dur": (e.end_s - e.start_s) * MICROSECONDS_PER_SECOND,
            "args": {"layer": e.layer, "resource": e.resource},
        })
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"makespan_s": timeline.makespan_s, "serial_s": timeline.serial_s}}


def write_chrome_trace(timeline: Timeline, path: str | os.PathLike, *, name: str = "archsim") -> None:
    """Write ``chrome_trace(timeline)`` to ``path`` as JSON."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(chrome_trace(timeline, name=name), fh)
