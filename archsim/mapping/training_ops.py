"""The training model's time of one block, op by op, in the vocabulary of a profiler trace's kernel groups
(``archsim.fidelity.profile_trace``: expert GEMMs, weight-gradient GEMMs, FP8 casts, norms, ...), split by pass
(forward, backward, wgrad): what the model says each group of kernels should take, to set beside what a
trace measured."""
from __future__ import annotations

from archsim.mapping.training_work import micro_batch_work, op_block

# (graph op kind or name suffix) -> trace op of its forward, backward and recomputation kernels; GEMMs are
# handled by kind below (their Wgrad and FP8 casts have trace ops of their own)
_STREAMING = {"norm": "norm", "rope": "rope", "router": "routing", "attention": None}
_NAMED = (("mlp.combine", "permute"), (".act", "activation"), ("residual_attn", "elementwise"),
          ("residual_mlp", "elementwise"))


def trace_op(op) -> str:
    """The profiler-trace op (``profile_trace.OPS``) of a graph op's forward kernel."""
    if op.kind == "grouped_gemm":
        return "expert_gemm"
    if op.kind == "gemm":
        return "dense_gemm"
    if op.kind == "attention":
        return "attention_forward"
    if op.kind in _STREAMING:
        return _STREAMING[op.kind]
    for suffix, name in _NAMED:
        if op.name.endswith(suffix):
            return name
    return "elementwise"


def block_op_times(graph, cost, hw, *, block, small_layers: int, sm_share: float, **work_kw) -> dict:
    """Seconds of one micro-batch of ``block`` (a representative layer index, ``op_block``) by (trace op,
    pass), on the SMs compute keeps (``sm_share`` of the chip, as ``micro_batch_work`` is scaled in
    ``archsim.mapping.training``). ``work_kw`` are ``micro_batch_work``'s keyword arguments."""
    out: dict = {}

    def add(op: str, pass_: str, seconds: float) -> None:
        if seconds:
            out[(op, pass_)] = out.get((op, pass_), 0.0) + seconds

    for name in graph.nodes:
        op = graph.nodes[name]["op"]
        if op.kind == "collective" or op_block(op, small_layers) != block:
            continue
        w = micro_batch_work(graph, cost, hw, count=lambda o, name=name: 1 if o.name == name else 0,
                             **work_kw).scaled(1.0 / sm_share)
        kind = trace_op(op)
        if op.kind in ("gemm", "grouped_gemm"):
            add(kind, "forward", w.forward_s)
            add(kind, "backward", w.dgrad_s + w.recompute_s)
            add("wgrad_gemm", "wgrad", w.wgrad_s)
            add("fp8_cast", "forward", w.fp8_cast_forward_s)
            add("fp8_cast", "backward", w.fp8_cast_backward_s)
            add("elementwise", "backward", w.elementwise_backward_s)
        elif op.kind == "attention":
            add(kind, "forward", w.forward_s)
            add("attention_backward", "backward", w.attention_backward_s + w.recompute_s)
            add("fp8_cast", "forward", w.fp8_cast_forward_s)  # the E5M6 cast of its output and its cast back
            add("fp8_cast", "backward", w.fp8_cast_backward_s)
            # the K assembly is a copy kernel: the trace's element-wise op (profile_trace rule "copy")
            add("elementwise", "forward", w.key_assembly_forward_s)
            add("elementwise", "backward", w.key_assembly_recompute_s + w.key_assembly_backward_s)
        else:
            add(kind, "forward", w.forward_s)
            add(kind, "backward", w.elementwise_backward_s + w.recompute_s)
            add("fp8_cast", "backward", w.fp8_cast_backward_s)  # an FP8-cached input turned back into BF16
    return out
