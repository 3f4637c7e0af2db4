"""Op constructors with exact FLOPs (docs/counting.md) and compulsory operand bytes, plus the graph they go into."""
from __future__ import annotations

import math
from functools import lru_cache
from archsim.attention_window import SINK_FLOPS_PER_ROW, attended_pairs, keys_read
from archsim.dtypes import FP32, DType
from archsim.graph.dag import OpGraph
from archsim.graph.op import GemmAttrs, GroupedGemmAttrs, Op, Operand, row_layout
from archsim.graph.precision import Precision
from archsim.routing import router_flops

# Router output indices are 32-bit integers (torch.topk returns int64 in HF; DeepSeek's inference
# kernels use int32); the bytes matter, the name documents what they are.
INT32 = DType(name="int32", bits=32)


def _rows(rows: float) -> int:
    """Row count for an operand's shape; an expected (fractional) count is rounded up, while the
    operand's ``nbytes`` keeps the exact expectation."""
    return math.ceil(rows)


@lru_cache(maxsize=4096)
def operand(name: str, shape: tuple[int, ...], dtype: DType, role: str, scale: float = 1.0) -> Operand:
    """An operand whose traffic is ``scale`` times its full storage (scale < 1: expected partial read).

    Cached: operands are immutable and every layer of a model repeats the same shapes."""
    return Operand(name=name, shape=tuple(shape), dtype=dtype, role=role,
                   nbytes=dtype.storage_bytes(tuple(shape)) * scale)


class GraphBuilder:
    """Accumulates ops (nodes keyed by name, attribute ``op``) and data-dependency edges."""

    def __init__(self, precision: Precision) -> None:
        self.p = precision
        self._nodes: list[tuple[str, dict]] = []
        self._edges: list[tuple[str, str]] = []

    def __len__(self) -> int:
        """Ops added so far."""
        return len(self._nodes)

    def add(self, op: Op, deps: tuple[str, ...] | list[str]) -> str:
        self._nodes.append((op.name, {"op": op}))
        self._edges.extend((dep, op.name) for dep in deps)
        return op.name

    def graph(self) -> OpGraph:
        """The OpGraph of everything added so far (nodes first: an edge to an op never added is an error)."""
        g = OpGraph()
        g.add_nodes_from(self._nodes)
        if g.number_of_nodes() != len(self._nodes):
            raise ValueError("duplicate op name in graph builder")
        g.add_edges_from(self._edges)
        g.graph["build_order"] = True  # every op was added after its deps: node order is topological
        return g

    # -- activations and weights -------------------------------------------------------------
    def act(self, name: str, shape: tuple[int, ...], role: str = "activation", scale: float = 1.0) -> Operand:
        return operand(name, shape, self.p.activations, role, scale)

    def weight(self, shape: tuple[int, ...], quantized: bool, scale: float = 1.0) -> Operand:
        dtype = self.p.weights if quantized else self.p.activations
        return operand("weight", shape, dtype, "weight", scale)

    # -- op kinds ------------------------------------------------------------------------------
    def gemm(self, name: str, *, m: int, n: int, k: int, layer: int | None, deps, split: str,
             quantized: bool = True, shared_weight: bool = False, cached_rows: int = 0, bias: bool = False) -> str:
        """``y[m,n] = x[m,k] @ W[n,k]^T (+ b[n])``: 2*m*n*k FLOPs (+ m*n for the bias add), weight stored
        [out, in] as in the checkpoint; a bias vector stays in the activation dtype (unquantized, as the
        checkpoints' ``*.bias`` tensors).

        The last ``cached_rows`` rows of x are read from the KV cache (KV dtype), e.g. the cached
        latent that kv_b_proj expands again in a prefill chunk with a prefix."""
        compute = self.p.gemm_compute if quantized else self.p.activations
        x = (self.act("x", (m - cached_rows, k)),)
        if cached_rows:
            x += (operand("kv_cache", (cached_rows, k), self.p.kv_cache, "cache"),)
        w = (self.weight((n, k), quantized),)
        if bias:
            w += (operand("bias", (n,), self.p.activations, "weight"),)
        params = 0 if shared_weight else n * k + (n if bias else 0)
        op = Op(name=name, kind="gemm", engine="matrix", compute_dtype=compute,
                flops=2 * m * n * k + (m * n if bias else 0), reads=x + w,
                writes=(self.act("y", (m, n), "output"),), params=params, layer=layer,
                attrs=GemmAttrs(m=m, n=n, k=k, split=split))
        return self.add(op, deps)

    def grouped_gemm(self, name: str, *, tokens_per_group: tuple[float, ...], n: int, k: int,
                     distinct: float, layer: int | None, deps, split: str, quantized: bool = True,
                     params: int | None = None, stored: tuple[int, int] | None = None,
                     layout: str = "contiguous", routed_experts: bool = False, bias: bool = False) -> str:
        """Per-group weights ``W_g[n,k]``; group g multiplies its ``m_g`` rows: sum 2*m_g*n*k FLOPs.

        Weight traffic is ``distinct`` groups' weights (the expected number of groups with work).
        ``stored`` is a group's weight shape in the checkpoint when it is not [n, k] (block scales
        follow the stored layout). ``layout`` (attr ``row_layout``, an ExpertRowLayout) is how the rows are laid
        out for the kernel: ``contiguous`` (the groups' rows concatenated) or ``masked`` (a [groups, max rows, k]
        buffer with a per-group row count); the cost layer prices each as DeepGEMM's kernel of that name.
        ``routed_experts``: the groups are routed experts, stored in ``precision.routed_expert_weights``.
        ``bias``: each group adds its bias [n] (gpt-oss experts): + n FLOPs per row, the ``distinct`` groups'
        bias vectors read in the activation dtype (unquantized, as the checkpoint's ``*_bias`` tensors)."""
        groups = len(tokens_per_group)
        total = sum(tokens_per_group)
        if not quantized:
            wdtype, compute = self.p.activations, self.p.activations
        elif routed_experts:
            wdtype, compute = self.p.routed_expert_weights, self.p.expert_gemm_compute
        else:
            wdtype, compute = self.p.weights, self.p.gemm_compute
        stored = stored or (n, k)
        per_group = wdtype.storage_bytes(stored)
        w = Operand(name="weight", shape=(groups, *stored), dtype=wdtype, role="weight", nbytes=per_group * distinct)
        rows = _rows(total)
        x = Operand(name="x", shape=(rows, k), dtype=self.p.activations, role="activation",
                    nbytes=total * k * self.p.activations.bytes)
        y = Operand(name="y", shape=(rows, n), dtype=self.p.activations, role="output",
                    nbytes=total * n * self.p.activations.bytes)
        reads: tuple[Operand, ...] = (x, w)
        if bias:
            reads += (Operand(name="bias", shape=(groups, n), dtype=self.p.activations, role="weight",
                              nbytes=n * self.p.activations.bytes * distinct),)
        op = Op(name=name, kind="grouped_gemm", engine="matrix", compute_dtype=compute,
                flops=2 * total * n * k + (total * n if bias else 0), reads=reads, writes=(y,),
                params=(groups * n * k + (groups * n if bias else 0)) if params is None else params, layer=layer,
                attrs=GroupedGemmAttrs(n=n, k=k, tokens_per_expert=tuple(tokens_per_group), distinct_experts=distinct,
                                       row_layout=row_layout(layout, f"{name}.layout"), split=split))
        return self.add(op, deps)

    def norm(self, name: str, *, rows: int, width: int, layer: int | None, deps, split: str = "replicated") -> str:
        """RMSNorm: 4*rows*width FLOPs; weight vector of ``width`` in the activation dtype."""
        op = Op(name=name, kind="norm", engine="vector", compute_dtype=self.p.activations,
                flops=4 * rows * width,
                reads=(self.act("x", (rows, width)), self.weight((width,), quantized=False)),
                writes=(self.act("y", (rows, width), "output"),), params=width, layer=layer,
                attrs={"rows": rows, "width": width, "split": split})
        return self.add(op, deps)

    def swiglu(self, name: str, *, rows: float, width: int, layer: int | None, deps, split: str,
               clamped: bool = False) -> str:
        """``silu(g) * u`` on rows x width elements: 5 FLOPs each; ``clamped`` (gpt-oss): clamp g and u (0 FLOPs,
        comparisons), ``(u + 1) * g * sigmoid(alpha * g)``: 7 FLOPs each (alpha*g, sigmoid 3, *g, u+1, *)."""
        n = rows * width
        b = self.p.activations.bytes
        shape = (_rows(rows), width)
        op = Op(name=name, kind="elementwise", engine="vector", compute_dtype=self.p.activations,
                flops=(7 if clamped else 5) * n,
                reads=(Operand(name="gate", shape=shape, dtype=self.p.activations, role="activation", nbytes=n * b),
                       Operand(name="up", shape=shape, dtype=self.p.activations, role="activation", nbytes=n * b)),
                writes=(Operand(name="y", shape=shape, dtype=self.p.activations, role="output", nbytes=n * b),),
                layer=layer, attrs={"rows": rows, "width": width, "function": "swiglu_clamped" if clamped else "swiglu",
                                    "split": split})
        return self.add(op, deps)

    def residual(self, name: str, *, rows: int, width: int, layer: int | None, deps) -> str:
        """Residual add of two [rows, width] tensors: rows*width FLOPs."""
        op = Op(name=name, kind="elementwise", engine="vector", compute_dtype=self.p.activations,
                flops=rows * width,
                reads=(self.act("residual", (rows, width)), self.act("x", (rows, width))),
                writes=(self.act("y", (rows, width), "output"),), layer=layer,
                attrs={"rows": rows, "width": width, "function": "add", "split": "replicated"})
        return self.add(op, deps)

    def rope(self, name: str, *, vectors: int, rot_dims: int, layer: int | None, deps, split: str) -> str:
        """RoPE on ``vectors`` vectors with ``rot_dims`` rotated dims: 3*rot_dims FLOPs each."""
        op = Op(name=name, kind="rope", engine="vector", compute_dtype=self.p.activations,
                flops=3 * rot_dims * vectors,
                reads=(self.act("x", (vectors, rot_dims)),),
                writes=(self.act("y", (vectors, rot_dims), "output"),), layer=layer,
                attrs={"vectors": vectors, "rot_dims": rot_dims, "split": split})
        return self.add(op, deps)

    def cache_write(self, name: str, *, rows: int, width: int, layer: int | None, deps, split: str) -> str:
        """Store ``rows`` new KV-cache entries of ``width`` elements in the KV dtype (0 FLOPs)."""
        op = Op(name=name, kind="elementwise", engine="memory", compute_dtype=self.p.activations, flops=0,
                reads=(self.act("kv_new", (rows, width)),),
                writes=(operand("kv_cache", (rows, width), self.p.kv_cache, "cache"),), layer=layer,
                attrs={"rows": rows, "width": width, "function": "kv_cache_write", "split": split})
        return self.add(op, deps)

    def attention(self, name: str, *, batch: int, q_len: int, kv_len: int, heads_q: int, heads_kv: int,
                  d_qk: int, d_v: int, form: str, cached: int, layer: int | None, deps, split: str,
                  extra_reads: tuple[Operand, ...] = (), window: int | None = None, sinks: bool = False) -> str:
        """Causal attention core; queries sit at positions kv_len-q_len .. kv_len-1.

        Attended pairs per (sequence, head) = sum_{p=kv_len-q_len}^{kv_len-1} (p+1)
        = q_len*kv_len - q_len*(q_len-1)/2, or sum min(p+1, window) for a sliding-window layer
        (archsim.attention_window); FLOPs per pair 2*d_qk + 5 + 2*d_v, plus SINK_FLOPS_PER_ROW per (query, head)
        with ``sinks`` (one learned logit per query head, a parameter read in the activation dtype).
        Keys read per sequence: kv_len, or the window's keys_read (min(kv_len, window + q_len - 1)). The
        first ``cached`` of them come from the KV cache (KV dtype), the rest arrive as fresh activations.
        MLA absorbed form (heads_kv=1, K = V = latent) reads the cached latent+rope once per token; the
        expanded form reads materialised K/V activations.
        """
        pairs = attended_pairs(q_len, kv_len, window)
        flops = batch * heads_q * pairs * (2 * d_qk + 5 + 2 * d_v)
        if sinks:
            flops += batch * heads_q * q_len * SINK_FLOPS_PER_ROW
        rows = batch * q_len
        fresh = keys_read(q_len, kv_len, window) - cached
        q = self.act("q", (rows, heads_q, d_qk))
        kv: tuple[Operand, ...] = ()
        if form == "mla_absorbed":
            kv = (operand("kv_cache", (batch, cached, d_qk), self.p.kv_cache, "cache"),)
        elif cached:
            kv = (operand("kv_cache", (batch, cached, heads_kv, d_qk + d_v), self.p.kv_cache, "cache"),)
        if fresh and form != "mla_absorbed":
            kv += (self.act("k", (batch * fresh, heads_kv, d_qk)), self.act("v", (batch * fresh, heads_kv, d_v)))
        if sinks:
            extra_reads = tuple(extra_reads) + (operand("sinks", (heads_q,), self.p.activations, "weight"),)
        op = Op(name=name, kind="attention", engine="matrix", compute_dtype=self.p.activations, flops=flops,
                reads=(q,) + kv + tuple(extra_reads), writes=(self.act("o", (rows, heads_q, d_v), "output"),),
                layer=layer, params=heads_q if sinks else 0,
                attrs={"batch": batch, "q_len": q_len, "kv_len": kv_len, "heads_q": heads_q,
                       "heads_kv": heads_kv, "d_qk": d_qk, "d_v": d_v, "causal": True, "form": form,
                       "pairs_per_head": pairs, "cached_len": cached, "split": split, "window": window,
                       "sinks": sinks})
        return self.add(op, deps)

    def embedding(self, name: str, *, rows: int, width: int, vocab_local: int, tp: int, deps,
                  shared_weight: bool = False) -> str:
        """Row gather: 0 FLOPs; reads the touched rows (expected 1/tp of them live on this device)."""
        op = Op(name=name, kind="embedding", engine="memory", compute_dtype=self.p.activations, flops=0,
                reads=(self.weight((rows, width), quantized=False, scale=1.0 / tp),),
                writes=(self.act("y", (rows, width), "output"),),
                params=0 if shared_weight else vocab_local * width,
                attrs={"rows": rows, "width": width, "vocab_local": vocab_local,
                       "split": "tp"})
        return self.add(op, deps)

    def router(self, name: str, *, tokens: int, experts: int, k: int, n_group: int, norm_topk: bool,
               scoring: str, bias: bool, layer: int, deps, topk_method: str | None, scaled: bool = True) -> str:
        """Scores, correction bias, group-limited top-k, normalise and scale per topk_method: FLOPs from
        archsim.routing.router_flops (docs/counting.md), the rule the executed router records too, which
        the executed tiny model checks node by node."""
        flops = router_flops(tokens=tokens, experts=experts, top_k=k, topk_method=topk_method,
                             scoring_func=scoring, n_group=n_group, norm_topk_prob=norm_topk, bias=bias,
                             scaled=scaled)
        reads = [self.act("logits", (tokens, experts))]
        if bias:
            reads.append(operand("e_score_correction_bias", (experts,), FP32, "weight"))
        op = Op(name=name, kind="router", engine="vector", compute_dtype=FP32, flops=flops,
                reads=tuple(reads),
                writes=(operand("topk_weight", (tokens, k), FP32, "output"),
                        operand("topk_idx", (tokens, k), INT32, "output")),
                params=experts if bias else 0, layer=layer,
                attrs={"tokens": tokens, "experts": experts, "k": k, "n_group": n_group,
                       "scoring": scoring, "split": "replicated"})
        return self.add(op, deps)

    def combine(self, name: str, *, tokens: int, k: int, width: int, shared: bool, layer: int, deps) -> str:
        """Weight each of the k expert outputs and accumulate (onto the shared-expert output when there
        is one, else onto zeros): 2*k*width FLOPs per token."""
        reads = (self.act("expert_out", (tokens * k, width)), operand("topk_weight", (tokens, k), FP32, "activation"))
        if shared:
            reads += (self.act("shared_out", (tokens, width)),)
        op = Op(name=name, kind="elementwise", engine="vector", compute_dtype=self.p.activations,
                flops=2 * k * width * tokens, reads=reads, writes=(self.act("y", (tokens, width), "output"),),
                layer=layer, attrs={"tokens": tokens, "k": k, "width": width, "function": "moe_combine",
                                    "split": "replicated"})
        return self.add(op, deps)
