"""Counted execution at small scale: the operator graph's nodes run as numpy kernels on the tiny
model, in a topological order of the graph (or the order a scheduler picks), and the counts measured
are compared node by node with the graph that the full-scale projection uses.

One builder, two scales: the graph comes from ``archsim.graph.build`` (build_prefill / build_decode)
for the *same* tiny ModelConfig the kernels execute. Each op's storage dtypes are declared from the
graph (weights fp8 with block scales, activations bf16, router outputs fp32/int32), while shapes,
FLOPs and token counts are measured from what the kernels actually executed. Routed-expert nodes are
compared against a graph built with that layer's *measured* expert load, since the builder takes one
ExpertLoad per build and every MoE layer routes differently. Covered: prefill (also a chunk after a
cached prefix), decode, the MTP module, MLA and GQA families; unsharded graphs (tp = ep = 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Literal

import numpy as np

from archsim.config.model import ModelConfig
from archsim.graph.build import build_decode, build_prefill
from archsim.graph.expert_load import measured_load
from archsim.graph.dag import topological_order
from archsim.graph.op import Op
from archsim.graph.precision import Precision
from archsim.kernels.attention import naive_attention
from archsim.kernels.counting import Counter, Measured
from archsim.kernels.nodes import NodeRunner
from archsim.kernels.tiny import TinyDeepSeek

if TYPE_CHECKING:
    from archsim.graph.dag import OpGraph

Phase = Literal["prefill", "decode"]


@dataclass(frozen=True, kw_only=True)
class NodeCheck:
    """One graph node against what the kernels measured under the same name."""

    name: str
    graph_flops: float
    measured_flops: float | None
    graph_bytes: dict[str, float]
    measured_bytes: dict[str, float] | None

    @property
    def passed(self) -> bool:
        return self.measured_flops == self.graph_flops and self.measured_bytes == self.graph_bytes

    def describe(self) -> str:
        if self.measured_flops is None:
            return f"{self.name}: in the graph, not executed"
        if self.measured_flops != self.graph_flops:
            return f"{self.name}: FLOPs graph {self.graph_flops:g} != measured {self.measured_flops:g}"
        diff = {k: (self.graph_bytes.get(k), (self.measured_bytes or {}).get(k))
                for k in set(self.graph_bytes) | set(self.measured_bytes or {})
                if self.graph_bytes.get(k) != (self.measured_bytes or {}).get(k)}
        return f"{self.name}: bytes (graph, measured) differ: {diff}"


@dataclass(kw_only=True)
class Execution:
    """One counted phase run: graph, measured records, real outputs and routing."""

    phase: Phase
    graph: OpGraph
    ops: dict[str, Op]
    counter: Counter
    logits: np.ndarray
    expert_counts: dict[int, np.ndarray]
    checks: list[NodeCheck] = field(default_factory=list)
    extra_records: list[str] = field(default_factory=list)
    reference_error: float = 0.0  # max |node-by-node logits - the model's own forward| (MTP head included)

    @property
    def counts_match(self) -> bool:
        """Every graph node executed with equal FLOPs and bytes per operand, and nothing else ran."""
        return bool(self.checks) and all(c.passed for c in self.checks) and not self.extra_records

    def mismatches(self) -> list[str]:
        return [c.describe() for c in self.checks if not c.passed] + \
            [f"{n}: executed, not in the graph" for n in self.extra_records]


def operand_bytes(reads, writes) -> dict[str, float]:
    """{"read:NAME" / "write:NAME": bytes} for an op's or a record's operands."""
    out = {f"read:{o.name}": float(o.nbytes) for o in reads}
    out.update({f"write:{o.name}": float(o.nbytes) for o in writes})
    return out


def compare(ops: dict[str, Op], records: list[Measured]) -> tuple[list[NodeCheck], list[str]]:
    """Node-by-node comparison: FLOPs exactly, bytes per operand exactly (op names must be unique)."""
    by_name: dict[str, list[Measured]] = {}
    for r in records:
        by_name.setdefault(r.name, []).append(r)
    checks = []
    for name, op in ops.items():
        recs = by_name.get(name, [])
        measured = recs[0] if len(recs) == 1 else None
        checks.append(NodeCheck(
            name=name, graph_flops=float(op.flops),
            measured_flops=None if measured is None else measured.flops,
            graph_bytes=operand_bytes(op.reads, op.writes),
            measured_bytes=None if measured is None else operand_bytes(measured.reads, measured.writes)))
    extra = sorted(n for n in by_name if n not in ops)
    return checks, extra


def executed_in_topological_order(graph: OpGraph, records: list[Measured]) -> bool:
    """True when every executed node ran after all of its graph predecessors."""
    seen: set[str] = set()
    for r in records:
        if r.name in graph and any(p not in seen for p in graph.predecessors(r.name)):
            return False
        seen.add(r.name)
    return True


def _declared(ops: dict[str, Op]) -> dict[str, dict]:
    return {name: {o.name: o.dtype for o in op.reads + op.writes} for name, op in ops.items()}


def _graph_ops(graph: OpGraph) -> dict[str, Op]:
    return {n: d["op"] for n, d in graph.nodes(data=True)}


def _with_measured_experts(build: Callable[..., OpGraph], model: ModelConfig, counts: dict[int, np.ndarray],
                           ops: dict[str, Op]) -> dict[str, Op]:
    """Replace each MoE layer's routed-expert nodes by those of a graph built with its measured load."""
    out = dict(ops)
    for layer, c in counts.items():
        g = build(expert_load=measured_load([int(x) for x in c], model.num_experts_per_tok))
        main = layer < model.num_hidden_layers
        prefix = f"layers.{layer}.mlp.experts." if main else f"mtp.{layer - model.num_hidden_layers}.mlp.experts."
        out.update({n: op for n, op in _graph_ops(g).items() if n.startswith(prefix)})
    return out


@dataclass(kw_only=True)
class Step:
    """A prepared phase step: its graph, a NodeRunner holding the inputs, and the reference logits
    of ``TinyDeepSeek.forward`` (and ``mtp_logits``) for the same tokens, the model run end to end."""

    phase: Phase
    model: ModelConfig
    graph: OpGraph
    runner: NodeRunner
    counter: Counter
    reference: np.ndarray
    build: Callable[..., OpGraph]
    mtp_reference: np.ndarray | None = None


def prepare(model: ModelConfig, *, phase: Phase, batch: int, length: int, precision: Precision, seed: int = 0,
            attend: Callable = naive_attention, tiny: TinyDeepSeek | None = None, mtp: bool = False,
            past_len: int = 0) -> Step:
    """Graph + inputs for one step. Prefill: ``length`` prompt tokens after ``past_len`` cached ones (a
    chunk; the prefix is prefilled uncounted). Decode at context ``length``: the earlier tokens are
    prefilled (not counted), then the step's q_len tokens (1, or 1 + MTP depth with ``mtp``) are
    decoded. With ``mtp`` as many more random tokens as MTP depths play the tokens after the last."""
    tiny = tiny or TinyDeepSeek(model, seed=seed)
    rng = np.random.default_rng(seed)
    total = length + past_len if phase == "prefill" else length
    tokens = rng.integers(0, model.vocab_size, (batch, total))                  # [b, total]
    depths = model.num_nextn_predict_layers if mtp else 0
    ext = np.concatenate([tokens, rng.integers(0, model.vocab_size, (batch, depths))], axis=1) if mtp else None
    if phase == "prefill":
        def build(**kw):
            return build_prefill(model, batch=batch, prompt_len=length, precision=precision, mtp=mtp,
                                 past_len=past_len, **kw)
        start = past_len
        state = _prefix_state(tiny, model, tokens, ext, start, batch=batch, precision=precision, mtp=mtp)
        reference = tiny.forward(tokens, form="expanded", last_only=True)[0]
    elif phase == "decode":
        def build(**kw):
            return build_decode(model, batch=batch, context=length, precision=precision, mtp=mtp, **kw)
        start = length - (1 + (model.num_nextn_predict_layers if mtp else 0))
        state = _prefix_state(tiny, model, tokens, ext, start, batch=batch, precision=precision, mtp=mtp)
        reference = tiny.forward(tokens, form="absorbed")[0][:, start:]
    else:
        raise ValueError(f"phase must be 'prefill' or 'decode', got {phase!r}")
    graph = build()
    mtp_reference = None
    if mtp and depths == 1:  # TinyDeepSeek.mtp_logits is the depth-1 reference
        mtp_reference = tiny.mtp_logits(ext)[:, -1:] if phase == "prefill" else tiny.mtp_logits(ext)[:, start:]
    counter = Counter(declared=_declared(_graph_ops(graph)))
    runner = NodeRunner(tiny, tokens[:, start:], phase=phase, state=state, attend=attend, counter=counter,
                        next_tokens=None if ext is None else ext[:, start + 1:])
    return Step(phase=phase, model=model, graph=graph, runner=runner, counter=counter, reference=reference,
                build=build, mtp_reference=mtp_reference)


def _prefix_state(tiny: TinyDeepSeek, model: ModelConfig, tokens: np.ndarray, ext: np.ndarray | None, start: int,
                  *, batch: int, precision: Precision, mtp: bool):
    """Caches after the first ``start`` tokens (uncounted); with MTP its depth's cache is filled too,
    by running the prefill graph (MTP included) node by node."""
    if start == 0:
        return None
    if not mtp:
        return tiny.forward(tokens[:, :start], form="absorbed")[1]
    graph = build_prefill(model, batch=batch, prompt_len=start, precision=precision, mtp=True)
    depths = model.num_nextn_predict_layers
    runner = NodeRunner(tiny, tokens[:, :start], phase="prefill", next_tokens=ext[:, 1:start + depths])
    for name in topological_order(graph):
        runner.run(name)
    return runner.finish()[1]


def finish(step: Step) -> Execution:
    """Compare what ran with the graph (after every node ran, in whatever dependency order)."""
    logits, state = step.runner.finish()
    counts = state.expert_counts[-1]
    ops = _with_measured_experts(step.build, step.model, counts, _graph_ops(step.graph))
    checks, extra = compare(ops, step.counter.records)
    error = float(np.max(np.abs(logits - step.reference)))
    if step.mtp_reference is not None:
        mtp_logits = step.runner.env[f"mtp.{step.model.num_nextn_predict_layers - 1}.shared_head.head"]
        error = max(error, float(np.max(np.abs(mtp_logits - step.mtp_reference))))
    return Execution(phase=step.phase, graph=step.graph, ops=ops, counter=step.counter, logits=logits,
                     expert_counts=counts, checks=checks, extra_records=extra, reference_error=error)


def execute(step: Step) -> Execution:
    """Run every node of the step's graph in topological order, then compare."""
    for name in topological_order(step.graph):
        step.runner.run(name)
    return finish(step)


def execute_prefill(model: ModelConfig, *, batch: int, prompt_len: int, precision: Precision, seed: int = 0,
                    attend: Callable = naive_attention, tiny: TinyDeepSeek | None = None) -> Execution:
    """A counted prefill of ``batch`` random prompts (MLA expanded, head on the last position)."""
    return execute(prepare(model, phase="prefill", batch=batch, length=prompt_len, precision=precision,
                           seed=seed, attend=attend, tiny=tiny))


def execute_decode(model: ModelConfig, *, batch: int, context: int, precision: Precision, seed: int = 0,
                   attend: Callable = naive_attention, tiny: TinyDeepSeek | None = None) -> Execution:
    """Prefill ``context - 1`` tokens (not counted), then one counted decode step (MLA absorbed)."""
    return execute(prepare(model, phase="decode", batch=batch, length=context, precision=precision,
                           seed=seed, attend=attend, tiny=tiny))


def counts_match(execution: Execution) -> bool:
    """FLOPs and bytes per operand equal node by node, and execution respected the graph's order."""
    return execution.counts_match and executed_in_topological_order(execution.graph, execution.counter.records)
