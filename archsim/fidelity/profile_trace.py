"""Read a GPU profiler trace (Chrome / Perfetto JSON, as the PyTorch profiler writes it) and group its kernels
by op and by stream: what a measured step spent, to set beside what the model prices (docs/training_trace.md).

Kernel names go to ops by the rules of ``KERNEL_RULES`` (one table, first match wins); a kernel no rule
matches goes to ``other`` and is listed by name, so a user's own trace is read too and shows what the table
misses. Where the trace has CPU annotations around the launches (``user_annotation`` events such as
DeepSeek's ``mlp(F)``, ``attn(B)``, ``mlp(W)``), each kernel also gets its pass: ``forward``, ``backward`` or
``wgrad`` (found through the launch's ``correlation`` id), which splits an op such as the expert GEMM into
fprop and dgrad.
"""
from __future__ import annotations

import gzip
import json
import re
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

from archsim.errors import ConfigError

# (op, pattern searched in the kernel name, case-insensitive); the first match wins, so the specific rules
# come before the general ones. Names are those of DeepSeek's training stack (profile-data train.json:
# DeepEP ``dpsk::ep``, the FP8 grouped GEMMs ``dpsk::grouped_gemm``, FlashAttention-3 ``flash::``) and of
# common PyTorch, cuBLAS, CUTLASS, FlashAttention and NCCL kernels.
KERNEL_RULES: tuple[tuple[str, str], ...] = (
    ("notify", r"notify|get_dispatch_layout"),
    ("dispatch", r"ep::.*dispatch|deep_ep.*dispatch|moe_dispatch"),
    ("combine", r"ep::.*combine|deep_ep.*combine|moe_combine"),
    ("collective", r"nccl|all_?reduce|all_?gather|reduce_?scatter|alltoall"),
    ("attention_backward", r"flashattnbwd|flash_bwd|attn_bwd|fmha.*bwd|mha_bwd"),
    ("attention_forward", r"compute_attn|flashattnfwd|flash_fwd|attn_fwd|fmha|mha_fwd|flash_attn"),
    # helpers that live in a GEMM library's namespace: operand transposes and TMA descriptor set-up
    ("fp8_cast", r"gemm::cuda::utils::transpose"),
    ("elementwise", r"fill_tensormaps"),
    ("wgrad_gemm", r"dptp128c_acc|k_grouped|wgrad"),
    ("expert_gemm", r"m_grouped|moe_gemm|grouped_mm"),
    ("dense_gemm", r"gemm|xmma|cutlass|nvjet|cublas|matmul"),
    # token <-> expert-layout permutation and the weighted un-permute of the experts' outputs
    ("permute", r"expand_to_fused|reduce_fused|permute|scatter|index_select|moe_align"),
    # an activation fused with the FP8 cast of its output counts as the activation
    ("activation", r"swiglu|silu|gelu|act_and_mul"),
    ("fp8_cast", r"cast|transpose|quant|fp8"),
    ("norm", r"layer_?norm|rms_?norm|ln_fwd|ln_bwd"),
    ("rope", r"rotary|rope"),
    ("routing", r"topk|expert_count|count_expert|fused_mapping|unique_group|aux_fi|softmax"),
    ("elementwise", r"elementwise|copy|fill|reduce_kernel|distribution|memset|memcpy"),
)
OPS = tuple(dict.fromkeys(op for op, _ in KERNEL_RULES)) + ("other",)
COMMUNICATION_OPS = ("notify", "dispatch", "combine", "collective")
_COMPILED = tuple((op, re.compile(pattern, re.IGNORECASE)) for op, pattern in KERNEL_RULES)
# an annotation's pass from its name: DeepSeek's ``mlp(F)``, ``attn(B)``, ``mlp(W)``; ``backward`` in a name
PASSES = (("wgrad", re.compile(r"\(W\)|wgrad|weight_grad")), ("backward", re.compile(r"\(B\)|backward|bwd", re.I)),
          ("forward", re.compile(r"\(F\)|forward|fwd", re.I)))
US = 1e-6  # Chrome trace timestamps and durations are microseconds


@dataclass(frozen=True, kw_only=True)
class Kernel:
    """One GPU kernel of a trace: its name, stream, start and duration (seconds), op and pass."""

    name: str
    stream: str
    start_s: float
    dur_s: float
    op: str
    pass_: str = ""

    @property
    def end_s(self) -> float:
        return self.start_s + self.dur_s


@dataclass(frozen=True, kw_only=True)
class StreamTime:
    """A stream's kernels: count, busy seconds (the union of their intervals) and span (first start to last
    end)."""

    count: int
    busy_s: float
    span_s: float


@dataclass(frozen=True, kw_only=True)
class TraceSummary:
    """Kernels grouped: seconds and count per op, per (op, pass), per (op, stream); per-stream busy time and
    span; the names that went to ``other``."""

    kernels: tuple[Kernel, ...]
    op_s: dict
    op_count: dict
    op_pass_s: dict
    op_stream_s: dict
    streams: dict
    unknown: tuple[str, ...] = field(default=())

    @property
    def span_s(self) -> float:
        """First kernel start to last kernel end, over every stream."""
        if not self.kernels:
            return 0.0
        return max(k.end_s for k in self.kernels) - min(k.start_s for k in self.kernels)

    def op_pass_busy_s(self, op: str, pass_: str) -> float:
        """``op_busy_s`` restricted to the kernels of one pass."""
        return _union([(k.start_s, k.end_s) for k in self.kernels if k.op == op and k.pass_ == pass_])

    def op_busy_s(self, op: str) -> float:
        """Seconds at least one kernel of ``op`` runs, on any stream: equal to ``op_s[op]`` unless the op's
        kernels overlap (two streams sharing the same SMs, as DeepSeek's expert Wgrad GEMMs on streams 7 and
        23, each slowed by the other: their wall time, not the sum of their durations, is the op's time)."""
        return _union([(k.start_s, k.end_s) for k in self.kernels if k.op == op])

    def busy_s(self, streams) -> float:
        """Seconds at least one kernel of ``streams`` runs (the union over those streams)."""
        return _union([(k.start_s, k.end_s) for k in self.kernels if k.stream in set(streams)])

    def communication_streams(self) -> tuple[str, ...]:
        """Streams whose kernel time is mostly communication ops (dispatch, combine, notify, collectives)."""
        out = []
        for s in self.streams:
            comm = sum(v for (op, st), v in self.op_stream_s.items() if st == s and op in COMMUNICATION_OPS)
            total = sum(v for (_, st), v in self.op_stream_s.items() if st == s)
            if total and comm > total / 2:
                out.append(s)
        return tuple(out)

    def to_dict(self) -> dict:
        return {"span_s": self.span_s,
                "ops": {op: {"time_s": self.op_s[op], "busy_s": self.op_busy_s(op), "count": self.op_count[op]}
                        for op in self.op_s},
                "op_pass_s": {f"{op}/{p or '-'}": v for (op, p), v in self.op_pass_s.items()},
                "streams": {s: {"count": t.count, "busy_s": t.busy_s, "span_s": t.span_s}
                            for s, t in self.streams.items()},
                "unknown": list(self.unknown)}


def classify(name: str) -> str:
    """The op of a kernel name by ``KERNEL_RULES`` (``other`` when no rule matches)."""
    for op, pattern in _COMPILED:
        if pattern.search(name):
            return op
    return "other"


def load_events(path) -> list[dict]:
    """The ``traceEvents`` of a Chrome / Perfetto JSON trace (``.json`` or ``.json.gz``; an object with
    ``traceEvents`` or a bare list of events)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(str(p), None, "a readable trace file (Chrome / Perfetto JSON)", exc.strerror) from None
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        data = json.loads(raw)
    except (OSError, ValueError, EOFError) as exc:
        raise ConfigError(str(p), None, "Chrome / Perfetto trace JSON (optionally gzipped)",
                          str(exc).splitlines()[0][:80]) from None
    events = data.get("traceEvents") if isinstance(data, dict) else data
    if not isinstance(events, list):
        raise ConfigError(str(p), "traceEvents", "a list of trace events", type(events).__name__)
    return events


def read_kernels(path) -> list[Kernel]:
    """Every GPU kernel of the trace at ``path`` (complete events of category ``kernel``), sorted by start
    (seconds from the first kernel's start), with its op (``classify``) and, where CPU annotations surround
    its launch, its pass."""
    events = load_events(path)
    raw = [e for e in events if isinstance(e, dict) and e.get("ph") == "X" and e.get("cat") == "kernel"]
    if not raw:
        raise ConfigError(str(path), "traceEvents", "GPU kernel events (ph 'X', cat 'kernel', as the PyTorch "
                          "profiler writes with CUDA activities)", "none")
    passes = _launch_passes(events)
    # times from the first kernel's start: absolute profiler timestamps (~1.7e15 us) lose sub-microsecond
    # precision once in seconds
    t0 = min((float(e["ts"]) for e in raw if isinstance(e.get("ts"), (int, float))), default=0.0)
    out = []
    for i, e in enumerate(raw):
        try:
            start, dur, name = float(e["ts"]), float(e["dur"]), str(e["name"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(str(path), f"traceEvents[kernel {i}]", "name, ts and dur",
                              {k: e.get(k) for k in ("name", "ts", "dur")}) from None
        if not (dur >= 0 and start == start):
            raise ConfigError(str(path), f"traceEvents[kernel {i}].dur", "a non-negative duration", dur)
        args = e.get("args") if isinstance(e.get("args"), dict) else {}
        stream = str(args.get("stream", e.get("tid", "?")))
        out.append(Kernel(name=name, stream=stream, start_s=(start - t0) * US, dur_s=dur * US, op=classify(name),
                          pass_=passes.get(args.get("correlation"), "")))
    return sorted(out, key=lambda k: k.start_s)


def summarize(kernels) -> TraceSummary:
    """Group ``kernels`` by op, (op, pass), (op, stream) and stream."""
    kernels = tuple(kernels)
    op_s, op_count, op_pass_s, op_stream_s, by_stream = {}, {}, {}, {}, {}
    for k in kernels:
        op_s[k.op] = op_s.get(k.op, 0.0) + k.dur_s
        op_count[k.op] = op_count.get(k.op, 0) + 1
        op_pass_s[(k.op, k.pass_)] = op_pass_s.get((k.op, k.pass_), 0.0) + k.dur_s
        op_stream_s[(k.op, k.stream)] = op_stream_s.get((k.op, k.stream), 0.0) + k.dur_s
        by_stream.setdefault(k.stream, []).append(k)
    streams = {s: StreamTime(count=len(ks), busy_s=_union([(k.start_s, k.end_s) for k in ks]),
                             span_s=max(k.end_s for k in ks) - min(k.start_s for k in ks))
               for s, ks in sorted(by_stream.items(), key=lambda kv: -sum(k.dur_s for k in kv[1]))}
    unknown = tuple(sorted({k.name for k in kernels if k.op == "other"}))
    return TraceSummary(kernels=kernels, op_s=op_s, op_count=op_count, op_pass_s=op_pass_s,
                        op_stream_s=op_stream_s, streams=streams, unknown=unknown)


def read_trace(path) -> TraceSummary:
    """``summarize(read_kernels(path))``."""
    return summarize(read_kernels(path))


def _union(intervals) -> float:
    """Total length of the union of ``(start, end)`` intervals."""
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total


def _launch_passes(events) -> dict:
    """correlation id -> pass of the innermost CPU annotation whose interval holds the kernel's launch (the
    ``cuda_runtime`` / ``cuda_driver`` event with that correlation). Annotations are matched by time on any
    thread: autograd launches backward kernels from its own thread while the annotation is on the main one."""
    notes = []
    for e in events:
        if isinstance(e, dict) and e.get("ph") == "X" and e.get("cat") == "user_annotation":
            kind = next((p for p, rx in PASSES if rx.search(str(e.get("name", "")))), None)
            if kind and isinstance(e.get("ts"), (int, float)) and isinstance(e.get("dur"), (int, float)):
                notes.append((float(e["ts"]), float(e["ts"]) + float(e["dur"]), kind))
    if not notes:
        return {}
    notes.sort()
    starts = [n[0] for n in notes]
    out = {}
    for e in events:
        if not (isinstance(e, dict) and e.get("cat") in ("cuda_runtime", "cuda_driver")):
            continue
        corr = (e.get("args") or {}).get("correlation") if isinstance(e.get("args"), dict) else None
        ts = e.get("ts")
        if corr is None or not isinstance(ts, (int, float)):
            continue
        # the innermost: of the annotations open at ts, the one that started last
        i = bisect_right(starts, ts) - 1
        while i >= 0:
            s, end, kind = notes[i]
            if s <= ts <= end:
                out[corr] = kind
                break
            i -= 1
    return out
