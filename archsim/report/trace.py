"""The one Chrome trace writer (opens in Perfetto and chrome://tracing) for every timeline archsim draws: the tiny
model's executed graph (``run --small``), the projected full-scale step (``run``, report/trace_step.py), a training
pipeline step (``train``) and a serving run's iterations (``serve``).

Format: Google's "Trace Event Format" document (https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU),
JSON Object Format: ``{"traceEvents": [...], "displayTimeUnit": ..., "otherData": {...}}``. Each interval is a
complete event (``"ph": "X"``, with ``ts`` and ``dur`` in microseconds, the format's unit); ``pid`` and ``tid``
are numbers (the format's viewers group tracks by them; a string tid is not a thread), and metadata events
(``"ph": "M"``: ``process_name``, ``thread_name``, ``process_sort_index``, ``thread_sort_index``) name them.
Callers describe intervals as ``Span`` records with process and thread *names*; ``trace_document`` numbers them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from archsim.errors import ConfigError

if TYPE_CHECKING:
    from archsim.serving.metrics import Recorder
    from archsim.sim.executor import Timeline

MICROSECONDS_PER_SECOND = 1e6  # the format's timestamps and durations are in microseconds


@dataclass(frozen=True, kw_only=True)
class Span:
    """One interval of one stream (``thread``) of one device or replica (``process``), in seconds."""

    process: str
    thread: str
    name: str
    start_s: float
    dur_s: float
    cat: str = ""
    args: Mapping = field(default_factory=dict)

    @property
    def end_s(self) -> float:
        return self.start_s + self.dur_s


def trace_document(spans: Iterable[Span], *, thread_order: Sequence[str] = (), other: Mapping | None = None,
                   display_unit: str = "ns", pids: Mapping[str, int] | None = None) -> dict:
    """The trace of ``spans``: processes numbered 1.. in order of first appearance (or as ``pids`` gives them),
    each process's threads numbered 1.. by ``thread_order`` (names listed there first, in that order), then by
    first appearance. Metadata events come first, then the complete events in time order. ``other`` goes to
    ``otherData``."""
    spans = list(spans)
    given = dict(pids or {})
    pid_of: dict[str, int] = {}
    threads: dict[str, list[str]] = {}
    for s in spans:
        if not s.dur_s >= 0 or not s.start_s == s.start_s:
            raise ValueError(f"span {s.name!r}: a negative or NaN duration ({s.dur_s}) or start ({s.start_s})")
        pid_of.setdefault(s.process, given.get(s.process, len(pid_of) + 1))
        names = threads.setdefault(s.process, [])
        if s.thread not in names:
            names.append(s.thread)
    rank = {name: i for i, name in enumerate(thread_order)}
    tids: dict[tuple[str, str], int] = {}
    events: list[dict] = []
    for process, pid in pid_of.items():
        events.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": process}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": pid}})
        ordered = sorted(threads[process], key=lambda t: (rank.get(t, len(rank)), threads[process].index(t)))
        for tid, thread in enumerate(ordered, start=1):
            tids[(process, thread)] = tid
            events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": thread}})
            events.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                           "args": {"sort_index": tid}})
    # longer first at equal start, so a viewer nests the shorter event inside the longer one
    for s in sorted(spans, key=lambda s: (s.start_s, -s.dur_s)):
        event = {"name": s.name, "cat": s.cat or s.thread, "ph": "X", "pid": pid_of[s.process],
                 "tid": tids[(s.process, s.thread)], "ts": s.start_s * MICROSECONDS_PER_SECOND,
                 "dur": s.dur_s * MICROSECONDS_PER_SECOND}
        if s.args:
            event["args"] = dict(s.args)
        events.append(event)
    doc = {"traceEvents": events, "displayTimeUnit": display_unit}
    if other:
        doc["otherData"] = dict(other)
    return doc


def write_trace(doc: Mapping, path: str | os.PathLike) -> None:
    """Write a trace document as JSON; an unwritable path is a ConfigError naming ``--trace``."""
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, allow_nan=False)
    except OSError as err:
        raise ConfigError(None, "--trace", "a writable file path", f"{os.fspath(path)} ({err.strerror})") from None


# -- the tiny model's executed graph (run --small) ---------------------------------------------------------------

def chrome_trace(timeline: "Timeline", *, name: str = "archsim") -> dict:
    """The executor Timeline as a trace: one process, one thread per resource (sorted by name), one complete
    event per op; ``otherData`` carries the makespan and the serial sum."""
    spans = [Span(process=name, thread=e.resource, name=e.name, cat=e.kind, start_s=e.start_s,
                  dur_s=e.end_s - e.start_s, args={"layer": e.layer, "resource": e.resource})
             for e in timeline.events]
    return trace_document(spans, thread_order=sorted(timeline.resources),
                          other={"makespan_s": timeline.makespan_s, "serial_s": timeline.serial_s})


def write_chrome_trace(timeline: "Timeline", path: str | os.PathLike, *, name: str = "archsim") -> None:
    """Write ``chrome_trace(timeline)`` to ``path`` as JSON."""
    write_trace(chrome_trace(timeline, name=name), path)


# -- a simulated training step (train) ----------------------------------------------------------------------------

def pipeline_trace(events: Iterable[tuple], *, name: str = "pipeline", time_s: float | None = None) -> dict:
    """A simulated step's events ``(device, track, op, start_s, end_s)`` (sim/step.py StepResult and
    PipelineResult) as a trace: one process per device (pipeline rank), one thread per track."""
    events = sorted(events, key=lambda e: (e[0], e[3]))
    spans = [Span(process=f"{name} rank {device}", thread=str(track), name=str(op), start_s=start, dur_s=end - start)
             for device, track, op, start, end in events]
    return trace_document(spans, thread_order=("compute", "link"), pids={f"{name} rank {e[0]}": e[0] for e in events},
                          other={} if time_s is None else {"step_time_s": time_s})


# -- a serving run (serve) ----------------------------------------------------------------------------------------

# sim/serve.py numbers the decode pool's replicas from this offset in a disaggregated run
DECODE_REPLICA_BASE = 1000


def serve_trace(rec: "Recorder", *, name: str = "serve") -> dict:
    """A serving run's iterations as a trace: one process per replica, one complete event per iteration (its
    batch size and tokens as args). ``Recorder.series_t`` holds each iteration's end; its duration is
    ``series_iteration_s``."""
    spans = []
    disaggregated = any(r >= DECODE_REPLICA_BASE for r in rec.series_replica)
    for i, (end, replica) in enumerate(zip(rec.series_t, rec.series_replica)):
        dur = rec.series_iteration_s[i]
        prefill, decode = rec.series_prefill_tokens[i], rec.series_decode_tokens[i]
        label = "prefill + decode" if prefill and decode else "prefill" if prefill else "decode"
        pool = ("decode replica" if replica >= DECODE_REPLICA_BASE else
                "prefill replica" if disaggregated else "replica")
        index = replica - DECODE_REPLICA_BASE if replica >= DECODE_REPLICA_BASE else replica
        spans.append(Span(process=f"{name} {pool} {index}", thread="iterations", name=label, cat="iteration",
                          start_s=end - dur, dur_s=dur,
                          args={"batch": rec.series_batch[i], "tokens": prefill + decode, "prefill_tokens": prefill,
                                "decode_tokens": decode, "queued": rec.series_queue[i]}))
    order = sorted({s.process for s in spans}, key=lambda p: (" decode " in p, int(p.rsplit(" ", 1)[1])))
    rank = {process: i for i, process in enumerate(order)}
    spans.sort(key=lambda s: rank[s.process])
    return trace_document(spans, other={"iterations": len(spans)})
