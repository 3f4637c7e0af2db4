"""Work of one training micro-batch over the whole model, by named term (forward, Dgrad, Wgrad, backward of
attention and element-wise ops, FP8 casts, recomputation, full-position logits), priced on one device."""
from __future__ import annotations

from dataclasses import dataclass, fields

from archsim.config.hardware import Hardware
from archsim.cost.kernel_model import grouped_gemm_time
from archsim.cost.rates import ChipRates
from archsim.cost.phase import PhaseCost
from archsim.dtypes import BF16, BITS_PER_BYTE, FP8, FP8_BLOCK128, FP32
from archsim.errors import ConfigError

# FlashAttention-2 backward runs 5 matmuls against the forward's 2 (Dao 2023, §3.1.2): 2.5x the work.
ATTENTION_BACKWARD_RATIO = 2.5
# the K/V gradient assembly of expanded MLA: two copies and one head-sum (key_value_gradient_bytes)
KEY_VALUE_GRADIENT_KERNELS = 3
# FlashAttention's backward launches three kernels: preprocess, the main kernel, postprocess (hopper/flash_bwd_*)
ATTENTION_BACKWARD_KERNELS = 3
GEMM_KINDS = ("gemm", "grouped_gemm")
# gradient-buffer bytes per element -> the format a Wgrad GEMM accumulating into it writes
_GRADIENT_DTYPES = {4.0: "fp32", 2.0: "bf16"}
# DSV3-TR §3.3.2: activations quantised per 1x128 tile (one float32 scale each) for Fprop/Dgrad; Wgrad
# needs the transposed operands, i.e. 128x1 tiles along the token dimension (DSV3-TR §3.5.2).
ACTIVATION_TILE = FP8.with_block((1, 128), scale_bits=32)
TRANSPOSED_TILE = FP8.with_block((128, 1), scale_bits=32)
# DSV3-TR §3.3.3's E5M6 format: 1 sign, 5 exponent and 6 mantissa bits
E5M6_BITS = 1 + 5 + 6
# Ops of the inference graph that training does not run: no KV cache is written.
INFERENCE_ONLY = ("kv_cache_update",)
HEAD_SUFFIXES = ("lm_head", "shared_head.head")
# Memory-bound ops that selective recomputation re-runs instead of keeping their outputs.
STREAMING_KINDS = ("norm", "elementwise", "swiglu", "rope", "residual", "softmax")


@dataclass(frozen=True, kw_only=True)
class MicroBatchWork:
    """Seconds of one micro-batch on one device's full chip, by term, summed over the ops (times their
    count) of a block of the model. ``forward_s`` includes GEMMs priced by the kernel model and logits at
    every position; ``wgrad_s`` is zero for a frozen base (LoRA)."""

    forward_s: float
    fp8_cast_forward_s: float
    dgrad_s: float
    wgrad_s: float
    attention_backward_s: float
    elementwise_backward_s: float
    fp8_cast_backward_s: float
    recompute_s: float
    # already inside the terms above: heads and loss at every position, less the last-position head
    logits_s: float
    # expanded MLA: assembling contiguous K from k_nope and the broadcast rope key (``key_assembly_bytes``),
    # in the forward and again when the recomputed kv_b_proj rebuilds it in backward
    key_assembly_forward_s: float = 0.0
    key_assembly_recompute_s: float = 0.0
    # its gradient: dk_nope and dv copied into kv_b_proj's output gradient, dk_pe summed over the heads
    # (``key_value_gradient_bytes``)
    key_assembly_backward_s: float = 0.0

    @property
    def f_s(self) -> float:
        """Forward chunk compute."""
        return self.forward_s + self.fp8_cast_forward_s + self.key_assembly_forward_s

    @property
    def b_s(self) -> float:
        """Backward chunk compute, weight gradients included."""
        return (self.dgrad_s + self.wgrad_s + self.attention_backward_s + self.elementwise_backward_s
                + self.fp8_cast_backward_s + self.recompute_s + self.key_assembly_recompute_s
                + self.key_assembly_backward_s)

    @property
    def w_s(self) -> float:
        """Weight-gradient part of the backward (what DualPipe / zero-bubble schedules can defer)."""
        return self.wgrad_s

    def scaled(self, factor: float) -> "MicroBatchWork":
        """Every term multiplied by ``factor``."""
        return MicroBatchWork(**{f.name: getattr(self, f.name) * factor for f in fields(self)})

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _check_projections(graph, names: tuple[str, ...]) -> None:
    """Every projection named for recomputation must be a GEMM of the model (a typo is an error, not a no-op)."""
    gemms = [n for n in graph.nodes if graph.nodes[n]["op"].kind in GEMM_KINDS]
    for name in names:
        if not any(g.endswith(name) for g in gemms):
            known = sorted({g.rsplit(".", 1)[-1] for g in gemms})
            raise ConfigError(None, "training.recompute_projections", f"projection names of the model ({', '.join(known)})",
                              name)


def micro_batch_work(graph, cost: PhaseCost, hw: Hardware, *, count, tokens: int, topk: int, hidden: int,
                     recompute: str, recompute_projections: tuple[str, ...], frozen: bool,
                     gradient_bytes: float = 0.0, fp8_activation_cache: bool = False,
                     attention_output_format: str = "bf16") -> MicroBatchWork:
    """Price every training term of one micro-batch from its forward graph ``graph`` (priced as ``cost``);
    ``count(op)`` says how many times the priced block runs each op (0 leaves it out).

    GEMMs (forward, Dgrad with K = N of the forward, Wgrad with K = tokens) are priced by the shape-aware
    kernel model; the heads at every one of the ``tokens`` positions, with the cross-entropy's passes over
    the logits. Attention backward does 2.5x the forward's FLOPs at
    ``hw.kernel.attention_backward_fraction`` of its rate, plus its pre- and post-processing passes
    (``attention_backward_pass_bytes``) at the HBM rate. Element-wise backward moves 2 x (forward reads)
    + forward writes bytes (saved inputs and dy read, dx written). Each FP8 GEMM casts its activation
    input per 1x128 tile (forward), its output gradient (Dgrad) and both operands transposed (Wgrad); a
    dispatched expert input is cast once per token before dispatch (``topk`` copies share it); for Dgrad the
    FP8 weight is transposed (``_weight_transpose_bytes``).
    Training runs the tensor cores for minutes on end, so a GEMM's matrix and L2-feed terms run at the clock
    the chip sustains under that load (``kernel.clock_under_load`` over ``kernel.clock_boost``; the GEMM rates
    come from short benchmarks at the boost clock); an FP8 Wgrad runs at ``kernel.wgrad_fraction`` of the
    kernel model's rate (the library's weight-gradient kernels). ``gradient_bytes`` > 0: each Wgrad GEMM
    accumulates into the weight's gradient buffer in that format (DeepSeek-V3: FP32, DSV3-TR §3.3; the
    ``_acc`` kernels of its profile): it writes the gradient in that format and reads the running sum first.
    Recompute: ``selective`` re-runs norms, activation functions, RoPE and the GEMMs named in
    ``recompute_projections``; ``full`` the whole forward. ``fp8_activation_cache``: a recomputed SwiGLU
    first turns its FP8-cached inputs back into BF16 (``_dequantise_bytes``, counted with the FP8 casts).
    ``attention_output_format`` ``e5m6``: the attention output is cast to E5M6 in the forward and back to
    BF16 for the attention backward (``special_format_cast_bytes``, counted with the FP8 casts).
    Expanded MLA attention (``mla_expanded``) takes K contiguous: a copy kernel assembles it from k_nope and
    the broadcast rope key (``key_assembly_bytes``) in the forward, and again in backward when ``kv_b_proj``
    is recomputed (``recompute_projections``, or ``full``); its backward assembles the gradient of kv_b_proj's
    output from dK and dV (``key_value_gradient_bytes``, three kernels).
    Every kernel these terms add (GEMMs, casts, copies, the attention backward's three) also pays
    ``kernel_gap_s``.
    """
    _check_projections(graph, recompute_projections)
    kernel = hw.kernel
    attention_rate = kernel.attention_backward_fraction if kernel and kernel.attention_backward_fraction else 1.0
    hbm_rate = ChipRates.of(hw).main_bytes_per_s
    t = dict.fromkeys((f.name for f in fields(MicroBatchWork)), 0.0)
    for name in graph.nodes:
        op = graph.nodes[name]["op"]
        if op.kind == "collective" or name.endswith(INFERENCE_ONLY):
            continue
        n = count(op)
        if not n:
            continue
        if op.kind in GEMM_KINDS:
            terms = _gemm_terms(op, hw, tokens=tokens, topk=topk, hidden=hidden, hbm_rate=hbm_rate,
                                frozen=frozen, gradient_bytes=gradient_bytes)
            for key, value in terms.items():
                t[key] += n * value
            if recompute == "selective" and name.endswith(recompute_projections):
                t["recompute_s"] += n * (terms["forward_s"] + terms["fp8_cast_forward_s"])
            continue
        fwd = cost.ops[name].time_s
        t["forward_s"] += n * fwd
        if op.kind == "attention":
            t["attention_backward_s"] += n * (ATTENTION_BACKWARD_RATIO * fwd / attention_rate
                                              + attention_backward_pass_bytes(op) / hbm_rate
                                              + ATTENTION_BACKWARD_KERNELS * kernel_gap_s(hw))
            if attention_output_format == "e5m6":
                cast = n * (special_format_cast_bytes(op) / hbm_rate + kernel_gap_s(hw))
                t["fp8_cast_forward_s"] += cast
                t["fp8_cast_backward_s"] += cast
            assembly = key_assembly_bytes(graph, name)
            if assembly:
                copy = n * (assembly / hbm_rate + kernel_gap_s(hw))
                t["key_assembly_forward_s"] += copy
                rebuilt = recompute == "full" or (recompute == "selective" and any(
                    p.endswith("kv_b_proj") for p in recompute_projections))
                t["key_assembly_recompute_s"] += copy if rebuilt else 0.0
                t["key_assembly_backward_s"] += n * (key_value_gradient_bytes(graph, name) / hbm_rate
                                                     + KEY_VALUE_GRADIENT_KERNELS * kernel_gap_s(hw))
        else:
            t["elementwise_backward_s"] += n * fwd * _backward_bytes_ratio(op)
        if recompute == "selective" and op.kind in STREAMING_KINDS:
            t["recompute_s"] += n * fwd
            if fp8_activation_cache and str(op.attrs.get("function", "")).startswith("swiglu"):
                t["fp8_cast_backward_s"] += n * (_dequantise_bytes(op) / hbm_rate + kernel_gap_s(hw))
    if recompute == "full":
        t["recompute_s"] = t["forward_s"] + t["fp8_cast_forward_s"]  # the K assembly: key_assembly_recompute_s
    return MicroBatchWork(**t)


def special_format_cast_bytes(op) -> float:
    """HBM bytes of one pass between BF16 and E5M6 over attention op ``op``'s output, one float32 scale per 1x128
    tile (DSV3-TR §3.3.3: the inputs of the Linear after attention are kept in "a customized E5M6 data format";
    DeepSeek's profile: ``per_token_cast_to_fp8_with_fp8_special_fmt`` in each layer's forward, 169-194 us, and
    ``per_token_cast_back_special_fmt_impl`` in its backward, 136-142 us). The forward cast reads BF16 and writes
    E5M6 with the scales; the cast back reads those and writes BF16: the same bytes. ASSUMPTION: E5M6 stored in
    its 12 bits (1 sign, 5 exponent, 6 mantissa); the report does not give the storage (a 16-bit container
    would add a quarter of the E5M6 bytes)."""
    elements = sum(o.nbytes for o in op.writes) / op.compute_dtype.bytes
    scales = elements / (ACTIVATION_TILE.block[0] * ACTIVATION_TILE.block[1]) * ACTIVATION_TILE.scale_bits
    return (elements * (BF16.bits + E5M6_BITS) + scales) / BITS_PER_BYTE


def _key_value_operands(graph, name: str):
    """(k, v, rope dims) of expanded MLA attention op ``name``: its fresh K and V operands and the rope width of
    the ``rope_k`` op beside it; None for any other attention."""
    op = graph.nodes[name]["op"]
    prefix = name[: -len("attn_core")] if name.endswith("attn_core") else None
    if op.attrs.get("form") != "mla_expanded" or prefix is None or prefix + "rope_k" not in graph.nodes:
        return None
    reads = {o.name: o for o in op.reads}
    if "k" not in reads or "v" not in reads:
        return None
    return reads["k"], reads["v"], graph.nodes[prefix + "rope_k"]["op"].attrs["rot_dims"]


def _key_parts_bytes(k, rope: int) -> tuple[float, float, float]:
    """Bytes of expanded MLA's K [keys, heads, nope + rope] by part: its nope part, its rope part over all heads, and
    the one rope vector per key that every head shares (what the assembly reads and the gradient sums into)."""
    keys, heads, d_qk = k.shape
    element = k.nbytes / (keys * heads * d_qk)
    return k.nbytes * (d_qk - rope) / d_qk, k.nbytes * rope / d_qk, keys * rope * element


def key_value_gradient_bytes(graph, name: str) -> float:
    """HBM bytes of the backward of expanded MLA's K assembly and K/V split (the reference model's
    ``k_nope, v = torch.split(kv, ...)``, ``k = torch.cat([k_nope, k_pe.expand(...)])``, DeepSeek-V3
    inference/model.py, naive MLA): autograd copies dk_nope (strided in dK) and dV into kv_b_proj's output
    gradient, one copy each (read and write each), and sums dK's rope part over the heads into dk_pe (read
    it, write one rope vector per key). DeepSeek's profile: a ``reduce_kernel`` (29 us) and two
    ``_copy_tensor_kernel`` (89-99 us each) per layer after the attention backward. 0 for other attention."""
    operands = _key_value_operands(graph, name)
    if operands is None:
        return 0.0
    k, v, rope = operands
    nope, rope_per_head, shared_rope = _key_parts_bytes(k, rope)
    return 2 * nope + 2 * v.nbytes + rope_per_head + shared_rope


def key_assembly_bytes(graph, name: str) -> float:
    """HBM bytes of assembling expanded MLA's contiguous K [keys, heads, nope + rope] for attention op ``name``:
    read k_nope (strided in kv_b_proj's output), read the one rope key per token that every head shares, write
    K. DeepSeek-V3's reference model (github.com/deepseek-ai/DeepSeek-V3 inference/model.py, ``attn_impl ==
    "naive"``) does ``k = torch.cat([k_nope, k_pe.expand(-1, -1, n_local_heads, -1)], dim=-1)``; DeepSeek's
    training profile has one ``_copy_tensor_kernel`` per layer in the forward (106 us for 336 MB, this size).
    Q needs no copy: q_b_proj's output already holds [q_nope | q_pe] per head (the trace's other forward
    copy, a direct_copy_kernel of 84 us, is too short for Q's 402 MB at HBM speed). The reference's default
    prefill (``attn_impl = "absorb"``) scores q_nope and q_pe separately and builds no K, so inference graphs
    get no copy; training only. 0 for any other attention
    (no ``mla_expanded`` form, or no ``rope_k`` op beside it)."""
    operands = _key_value_operands(graph, name)
    if operands is None:
        return 0.0
    k, _, rope = operands
    nope, _, shared_rope = _key_parts_bytes(k, rope)
    return nope + shared_rope + k.nbytes


def attention_backward_pass_bytes(op) -> float:
    """HBM bytes of the two memory-bound kernels around a FlashAttention backward (Dao-AILab/flash-attention
    hopper/flash_bwd_preprocess_kernel.h and flash_bwd_postprocess_kernel.h; ``FlashAttnBwdPreprocess`` and
    ``FlashAttnBwdPostprocessConvertdQ`` in DeepSeek's profile): the preprocess reads O and dO (BF16, d_v per
    query row and head), reads the log-sum-exp and writes dPsum (FP32 each) and clears the FP32 dQ
    accumulator (d_qk); the postprocess reads that accumulator and writes dQ in BF16."""
    a = op.attrs
    rows = a["batch"] * a["q_len"] * a["heads_q"]
    bf16, fp32 = BF16.bits / BITS_PER_BYTE, FP32.bits / BITS_PER_BYTE
    pre = rows * (2 * a["d_v"] * bf16 + 2 * fp32 + a["d_qk"] * fp32)
    post = rows * a["d_qk"] * (fp32 + bf16)
    return pre + post


def _dequantise_bytes(op) -> float:
    """HBM bytes of turning a SwiGLU's FP8-cached inputs (gate and up, one float32 scale per 1x128 tile) back
    into BF16 before its recomputation: DSV3-TR §3.3.3 caches the SwiGLU inputs in FP8 and recomputes the
    output in backward (the ``cast_back`` kernels before the SwiGLU backward in DeepSeek's profile)."""
    elements = sum(o.nbytes for o in op.reads if o.role == "activation") / op.compute_dtype.bytes
    scales = elements / (ACTIVATION_TILE.block[0] * ACTIVATION_TILE.block[1]) * ACTIVATION_TILE.scale_bits
    return elements * (FP8.bits + BF16.bits) / BITS_PER_BYTE + scales / BITS_PER_BYTE


def _backward_bytes_ratio(op) -> float:
    reads = sum(o.nbytes for o in op.reads if o.role == "activation")
    writes = sum(o.nbytes for o in op.writes)
    return (2 * reads + writes) / (reads + writes) if reads + writes > 0 else 1.0


def kernel_gap_s(hw: Hardware) -> float:
    """GPU time between two back-to-back kernels of a stream whose launches are queued ahead (the CPU runs
    ahead of a training step): the per-kernel cost of graph-replayed work, ``kernel_launch_graph`` (else
    ``kernel_launch``). DeepSeek's training trace shows 2.0 us between back-to-back kernels of its compute
    stream (871 gaps under 5 us, 1.74 ms). Added to each kernel the training terms launch beyond the forward
    graph's ops (those carry the launch floor of the cost model): GEMMs, FP8 casts, the attention backward.
    Callers scale a micro-batch's terms by the SMs compute keeps, which stretches the gap by the same factor
    (132 / 112 on DeepSeek's H800 recipe: 2.5 us instead of 2.1; an approximation of 0.4 us a kernel)."""
    return hw.graph_launch_s


def sustained_gemm_s(estimate, clock_ratio: float) -> float:
    """A kernel-model GEMM estimate at a sustained clock ``clock_ratio`` (<= 1) of the one it was priced at:
    the MMA and the L2 -> shared-memory operand feed (core clock domain) slow down, HBM does not; ramp and
    epilogue are kept (``cost.gemm``: ramp + max(main-loop terms) + epilogue)."""
    p = estimate.parts
    if clock_ratio == 1.0 or "compute_s" not in p:
        return estimate.time_s
    loop = max(p["compute_s"] / clock_ratio, p.get("l2_operand_s", 0.0) / clock_ratio, p.get("memory_s", 0.0),
               p.get("panel_stream_s", 0.0))
    return p.get("ramp_s", 0.0) + loop + p.get("epilogue_s", 0.0)


def _gemm_terms(op, hw, *, tokens, topk, hidden, hbm_rate, frozen, gradient_bytes=0.0) -> dict:
    """Forward, Dgrad, Wgrad and FP8-cast seconds of one (grouped) GEMM op."""
    a = op.attrs
    dtype = op.compute_dtype if op.compute_dtype.bits == 8 else BF16
    head = op.name.endswith(HEAD_SUFFIXES)
    if op.kind == "grouped_gemm":
        groups, m = int(a["groups"]), int(round(a["tokens_max"]))
        rows = float(a["tokens_total"])
    else:
        groups, m = 1, (tokens if head else int(a["m"]))
        rows = float(m)
    n, k = int(a["n"]), int(a["k"])

    clock = hw.kernel.clock_ratio if hw.kernel is not None else 1.0

    def time(mm, nn, kk, out_dtype="bf16"):
        return sustained_gemm_s(grouped_gemm_time(hw, groups=groups, m=max(1, mm), n=nn, k=kk, dtype=dtype.name,
                                                  out_dtype=out_dtype), clock)

    gap = kernel_gap_s(hw)
    wgrad = 0.0
    if not frozen:
        accumulate = _GRADIENT_DTYPES.get(gradient_bytes)
        wgrad = time(n, k, max(1, m), accumulate or "bf16")
        if accumulate:
            wgrad += groups * n * k * gradient_bytes / hbm_rate  # the running sum read before the write
        # the library's FP8 Wgrad kernels against the kernel model (kernel.wgrad_fraction, DeepGEMM's table;
        # measured for FP8 only, so a BF16 Wgrad keeps the kernel model's rate)
        fraction = 1.0
        if dtype.bits == 8 and hw.kernel is not None and hw.kernel.wgrad_fraction:
            fraction = hw.kernel.wgrad_fraction
        wgrad = wgrad / fraction + gap
    out = {"forward_s": time(m, n, k) + gap, "dgrad_s": time(m, k, n) + gap, "wgrad_s": wgrad}
    if head:
        last = time(int(a["m"]), n, k)  # what inference prices: the last position only
        # cross-entropy over the logits: the loss reads them once; its backward reads them again and
        # writes their gradient (three passes over tokens x vocabulary values, in the head's BF16)
        logits_bytes = m * n * BF16.bits / BITS_PER_BYTE
        out["forward_s"] += logits_bytes / hbm_rate
        out["elementwise_backward_s"] = 2 * logits_bytes / hbm_rate
        out["logits_s"] = out["forward_s"] + out["dgrad_s"] + out["wgrad_s"] + out["elementwise_backward_s"] - last
    if dtype.bits == 8:
        # a dispatched expert input (K = hidden) is cast before dispatch; a combined output's gradient
        # (N = hidden) is cast before the backward dispatch: once per token, not per routed copy
        x_rows = rows / topk if op.kind == "grouped_gemm" and k == hidden else rows
        dy_rows = rows / topk if op.kind == "grouped_gemm" and n == hidden else rows
        fwd = _cast_bytes(x_rows, k, BF16.bits / BITS_PER_BYTE, ACTIVATION_TILE)
        bwd = _cast_bytes(dy_rows, n, BF16.bits / BITS_PER_BYTE, ACTIVATION_TILE)
        # DeepGEMM "requires the LHS scaling factor to be TMA-aligned and transposed" (README): the scales of
        # the forward's and the Dgrad's LHS are transposed by a kernel of their own (read and write them)
        fwd += 2 * _scale_bytes(x_rows, k, ACTIVATION_TILE)
        bwd += 2 * _scale_bytes(dy_rows, n, ACTIVATION_TILE)
        if not frozen:
            bwd += _cast_bytes(rows, k, FP8.bits / BITS_PER_BYTE, TRANSPOSED_TILE) \
                + _cast_bytes(rows, n, BF16.bits / BITS_PER_BYTE, TRANSPOSED_TILE)
        # Dgrad multiplies by the weight's transpose; DeepGEMM "only supports the NT format" (README), so each
        # micro-batch transposes the FP8 weight and its 128x128 block scales (a kernel of its own)
        bwd += _weight_transpose_bytes(groups * n * k)
        out["fp8_cast_forward_s"] = fwd / hbm_rate + 2 * gap
        out["fp8_cast_backward_s"] = bwd / hbm_rate + (3 if frozen else 5) * gap
    return out


def _weight_transpose_bytes(elements: float) -> float:
    """HBM bytes of transposing an FP8 weight with one float32 scale per 128x128 block: read and write each."""
    per_block = FP8_BLOCK128.block[0] * FP8_BLOCK128.block[1]
    return 2 * elements * (FP8.bits + FP8_BLOCK128.scale_bits / per_block) / BITS_PER_BYTE


def _scale_bytes(rows: float, cols: int, tile) -> float:
    """Bytes of the scales of a rows x cols tensor quantised per ``tile`` (one scale per tile)."""
    return rows * cols / (tile.block[0] * tile.block[1]) * tile.scale_bits / BITS_PER_BYTE


def _cast_bytes(rows: float, cols: int, source_bytes: float, tile) -> float:
    """HBM bytes of one quantisation pass: read the source, write FP8 values and one scale per tile."""
    return rows * cols * (source_bytes + tile.bits / BITS_PER_BYTE) + _scale_bytes(rows, cols, tile)


def op_block(op, small_layers: int):
    """Which block of the model an op belongs to: its (representative) decoder layer index, "embed",
    "head" (final norm and LM head) or "mtp" (the multi-token-prediction module with its head)."""
    if op.name.startswith("mtp."):
        return "mtp"
    if op.layer is not None and op.layer < small_layers:
        return op.layer
    return "embed" if op.name.startswith("embed_tokens") else "head"


def op_segment(name: str) -> str:
    """Which part of its block an op belongs to for the F&B schedule (``archsim.mapping.overlap``):
    ``shared`` (shared experts), ``post`` (after the expert combine: the weighted sum, the MLP residual,
    an MTP module's head), ``mlp`` (routed experts or a dense MLP, between dispatch and combine) or
    ``pre`` (norms, attention, the router: before the dispatch)."""
    if ".mlp.shared_experts." in name:
        return "shared"
    if name.endswith(("mlp.combine", "residual_mlp") + HEAD_SUFFIXES) or ".shared_head." in name:
        return "post"
    if ".mlp." in name and not name.endswith(("mlp.gate", "mlp.router")):
        return "mlp"
    return "pre"


def min_max_partition(loads: list[float], parts: int) -> list[range]:
    """Split ``loads`` (in order) into ``parts`` contiguous, non-empty ranges minimising the largest sum
    (exact dynamic programme; ``parts`` is at most ``len(loads)``)."""
    n = len(loads)
    prefix = [0.0]
    for x in loads:
        prefix.append(prefix[-1] + x)
    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(parts + 1)]
    cut = [[0] * (n + 1) for _ in range(parts + 1)]
    best[0][0] = 0.0
    for j in range(1, parts + 1):
        for i in range(j, n - (parts - j) + 1):
            for s in range(j - 1, i):
                v = max(best[j - 1][s], prefix[i] - prefix[s])
                if v < best[j][i]:
                    best[j][i], cut[j][i] = v, s
    bounds, i = [], n
    for j in range(parts, 0, -1):
        s = cut[j][i]
        bounds.append(range(s, i))
        i = s
    return bounds[::-1]
