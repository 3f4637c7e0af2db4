"""Kernel shape x Hardware -> KernelEstimate: one GEMM, grouped GEMM, MoE layer, attention call, elementwise kernel
or collective on one chip, with its bound, parts and achieved rates (the unit of validation, docs/fidelity.md).

``kernel_time(kernel, hw, **shape)`` dispatches to the ``*_time`` functions; ``hw`` is a record or a hardware
name/path. GEMMs are ``cost/gemm.py``'s (the graph's own function), rates ``cost/rates.py``'s.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Mapping

from archsim.config.hardware import Hardware, resolve_hardware
from archsim.cost.attention_traffic import flash_hbm_bytes
from archsim.cost import bound as bounds
from archsim.cost import mesh
from archsim.cost.gemm import (GemmRates, GemmShape, bound_labels as gemm_bound_labels, gemm_time as price_gemm,
                               operand_level, tile_candidates, untiled_candidates)
from archsim.cost.geometry import Geometry
from archsim.cost.rates import ChipRates
from archsim.dtypes import BF16, BY_NAME, DType
from archsim.errors import ConfigError
from archsim.graph.expert_load import uniform_load
from archsim.graph.op import expert_layout, row_layout as expert_row_layout

KINDS = ("gemm", "grouped_gemm", "moe", "attention", "collective")


@dataclass(frozen=True, kw_only=True)
class KernelEstimate:
    """One kernel's predicted time and what bound it. ``parts`` holds the named time components."""

    kind: str
    hardware: str
    time_s: float
    bound: str
    flops: float
    bytes: float
    parts: Mapping[str, float] = field(default_factory=dict)
    detail: Mapping[str, object] = field(default_factory=dict)

    @property
    def achieved_flop_per_s(self) -> float:
        return self.flops / self.time_s if self.time_s > 0 else 0.0

    @property
    def achieved_bytes_per_s(self) -> float:
        return self.bytes / self.time_s if self.time_s > 0 else 0.0

    def to_dict(self) -> dict:
        """The stable JSON form (``time_s`` first)."""
        return {"time_s": self.time_s, "kind": self.kind, "hardware": self.hardware, "bound": self.bound,
                "flops": self.flops, "bytes": self.bytes, "achieved_flop_per_s": self.achieved_flop_per_s,
                "achieved_bytes_per_s": self.achieved_bytes_per_s, "parts": dict(self.parts),
                "detail": dict(self.detail)}


def _dtype(name: str | DType, path: str) -> DType:
    if isinstance(name, DType):
        return name
    if name not in BY_NAME:
        raise ConfigError(None, path, f"one of {', '.join(sorted(BY_NAME))}", name)
    return BY_NAME[name]


def _positive_int(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(None, path, "an integer >= 1", value)
    return value


@dataclass(frozen=True, kw_only=True)
class KernelTime:
    """A kernel's time split into its named parts; ``bound`` names the resource that set it (cost/bound.py)."""

    time_s: float
    bound: str
    ramp_s: float
    compute_s: float
    memory_s: float
    operand_s: float = 0.0


def overlapped_kernel_time(rates: ChipRates, *, compute_s: float, bytes_moved: float,
                           l2_bytes: float = 0.0) -> KernelTime:
    """Time of a kernel that overlaps all its traffic with its compute (attention, elementwise):
    ``ramp + max(compute, bytes / main rate, l2_bytes / L2 rate)`` (``l2_bytes``: re-reads served by L2)."""
    main, l2 = rates.main_bytes_per_s, rates.l2_bytes_per_s
    if main <= 0 or l2 <= 0:
        raise ConfigError(None, "memory.bandwidth", "positive bandwidths", (main, l2))
    memory_s = bytes_moved / main
    l2_s = l2_bytes / l2
    bound, longest = max(((bounds.COMPUTE, compute_s), (bounds.memory(rates.main), memory_s),
                          (bounds.memory("l2"), l2_s)), key=lambda c: c[1])
    return KernelTime(time_s=rates.ramp_s + longest, bound=bound, ramp_s=rates.ramp_s, compute_s=compute_s,
                      memory_s=memory_s, operand_s=l2_s)


def grouped_gemm_time(hw: Hardware | str, *, groups: int, m: int, n: int, k: int, dtype: str | DType = "fp8",
                      out_dtype: str | DType = "bf16", row_layout: str = "contiguous") -> KernelEstimate:
    """``groups`` independent GEMMs C_g[m,n] = A_g[m,k] B_g[k,n] in one kernel (MoE experts, each
    with m tokens), priced by ``gemm.gemm_time`` as a benchmark runs them (every operand read once).

    ``row_layout`` is how the groups' rows are laid out (an ExpertRowLayout, docs/fidelity.md): ``contiguous``
    (prefill/training: the groups' rows concatenated, each group a whole number of tiles; the kernel's config
    sees one GEMM of groups*m rows) or ``masked`` (decode: a [groups, m, k] buffer, m valid rows per group; the
    config sees ``groups`` GEMMs of m rows, so with several groups the kernel runs without TMA multicast). With
    one group both are the dense GEMM. A chip without a tile menu takes its FLOPs and compulsory bytes.
    """
    hw = resolve_hardware(hw)
    groups, m, n, k = (_positive_int(v, p) for v, p in ((groups, "groups"), (m, "m"), (n, "n"), (k, "k")))
    layout = expert_row_layout(row_layout, "row_layout")
    dt, out = _dtype(dtype, "dtype"), _dtype(out_dtype, "out_dtype")
    shape = GemmShape.benchmark(groups=groups, m=m, n=n, k=k, dtype=dt, out_dtype=out, row_layout=layout)
    return _gemm_estimate(hw, shape, kind="grouped_gemm" if groups > 1 else "gemm")


def _gemm_estimate(hw: Hardware, shape: GemmShape, *, kind: str) -> KernelEstimate:
    """``gemm.gemm_time`` of ``shape`` on ``hw`` (its tile candidates, or its FLOPs and compulsory bytes on a chip
    without a tile menu), with the picked tile in ``detail``; on a wafer-scale chip (hardware ``mesh:``) the GEMM
    also waits on the all-reduce of its output across the core mesh (``cost/mesh.py``, part ``mesh_s``), as the
    graph's GEMMs do."""
    rates = ChipRates.of(hw)
    mma_rate = rates.matrix_flop_per_s(shape.mma_dtype.name)
    cands = tile_candidates(shape, Geometry.of(hw)) or untiled_candidates(shape)
    t = price_gemm(cands, GemmRates.of(rates, mma_rate))
    labels = gemm_bound_labels(rates.main, operand_level(tuple(hw.memory)))
    detail: dict[str, object] = {"row_layout": shape.row_layout.value}
    if cands.configs:
        tile = cands.configs[int(t.pick)]
        useful = shape.rows_total * shape.n  # output elements
        detail.update({"block_m": tile.block_m, "block_n": tile.block_n, "tiles": tile.tiles, "waves": tile.waves,
                       "multicast": tile.multicast,
                       "quantisation_efficiency": useful / (tile.padded_elements_per_sm * hw.sm_count)})
    parts = {"ramp_s": float(t.ramp_s), "compute_s": float(t.mma_s), "memory_s": float(t.hbm_s),
             "l2_operand_s": float(t.l2_operand_s), "panel_stream_s": float(t.panel_stream_s),
             "epilogue_s": float(t.epilogue_s)}
    time_s, bound = float(t.time_s), labels[int(t.bound)]
    if hw.mesh is not None:  # the op's network time, taken with its roofline as cost/opcost.py takes it
        parts["mesh_s"], _ = mesh.allreduces_cost(mesh.MeshRates.of(hw.mesh), shape.c_bytes, mesh.ALLREDUCES[kind])
        time_s, bound = max((time_s, bound), (parts["mesh_s"], bounds.NETWORK), key=lambda c: c[0])
    return KernelEstimate(kind=kind, hardware=hw.name, time_s=time_s, bound=bound, flops=shape.flops,
                          bytes=float(cands.hbm_read_bytes + cands.hbm_write_bytes), parts=parts, detail=detail)


def gemm_time(hw: Hardware | str, *, m: int, n: int, k: int, dtype: str | DType = "fp8",
              out_dtype: str | DType = "bf16") -> KernelEstimate:
    """One GEMM C[m,n] = A[m,k] B[k,n] (inputs in ``dtype``, output in ``out_dtype``)."""
    return grouped_gemm_time(hw, groups=1, m=m, n=n, k=k, dtype=dtype, out_dtype=out_dtype)


def attended_pairs(*, q_len: int, kv_len: int, causal: bool) -> int:
    """Unmasked (query, key) pairs of one sequence and head (docs/counting.md): queries sit at absolute
    positions kv_len - q_len .. kv_len - 1."""
    if not causal:
        return q_len * kv_len
    return q_len * kv_len - q_len * (q_len - 1) // 2


def attention_time(hw: Hardware | str, *, kind: str, phase: str, heads: int, batch: int, context: int,
                   q_len: int | None = None, kv_dtype: str | DType = "bf16", heads_kv: int | None = None,
                   head_dim: int | None = None, kv_lora_rank: int | None = None,
                   rope_dim: int | None = None, q_tile: int | None = None, kv_tile: int | None = None,
                   mma_peak_fraction: float | None = None) -> KernelEstimate:
    """One attention call: ``kind`` mla | gqa | mha, ``phase`` prefill (q_len = context, causal) or decode
    (q_len new tokens, default 1, attending to ``context`` keys).

    MLA runs in absorbed form: one latent KV head of width kv_lora_rank + rope_dim read once (FlashMLA),
    d_v = kv_lora_rank. GQA/MHA use ``heads_kv`` heads of ``head_dim`` and the flash traffic model of
    docs/counting.md. MMA FLOPs run at the throttled tensor peak times ``attention_mma_fraction``; the
    softmax's 5 FLOPs per pair and head run on the vector engine, overlapped.

    A specific kernel can be described by three optional properties of its code (not of the chip):
    ``q_tile`` x ``kv_tile``, the query rows and keys of one MMA tile (the MMA work is then that of whole
    tiles: a decode step's few query rows are padded up to ``q_tile``, and at q_len 1 a GQA group's heads
    share one tile, as FlashAttention-2 packs them), and ``mma_peak_fraction``, the fraction of the nominal
    dense tensor peak its MMA instructions sustain (replacing clock ratio x ``attention_mma_fraction``, which
    describe a Hopper-native wgmma kernel such as FlashMLA or FlashAttention-3). Every peak here is taken at
    the chip's thermal ``compute_clock_fraction`` (1 on shipped chips).
    """
    hw = resolve_hardware(hw)
    if kind not in ("mla", "gqa", "mha"):
        raise ConfigError(None, "attention.kind", "mla, gqa or mha", kind)
    if phase not in ("prefill", "decode"):
        raise ConfigError(None, "attention.phase", "prefill or decode", phase)
    heads, batch, context = (_positive_int(v, p) for v, p in ((heads, "heads"), (batch, "batch"),
                                                               (context, "context")))
    q = context if phase == "prefill" else _positive_int(q_len if q_len is not None else 1, "q_len")
    if q > context:
        raise ConfigError(None, "q_len", f"at most context ({context})", q)
    kv = _dtype(kv_dtype, "kv_dtype")
    act = BF16
    if kind == "mla":
        if kv_lora_rank is None or rope_dim is None:
            raise ConfigError(None, "attention", "kv_lora_rank and rope_dim for MLA", (kv_lora_rank, rope_dim))
        kv_lora_rank, rope_dim = _positive_int(kv_lora_rank, "kv_lora_rank"), _positive_int(rope_dim, "rope_dim")
        d_qk, d_v, n_kv = kv_lora_rank + rope_dim, kv_lora_rank, 1
        kv_bytes = batch * kv.storage_bytes((context, d_qk))
        io_bytes = batch * q * heads * (d_qk + d_v) * act.bytes
        total_bytes = kv_bytes + io_bytes
        l2_bytes = 0.0
    else:
        if head_dim is None:
            raise ConfigError(None, "attention.head_dim", "a head dimension for GQA/MHA", None)
        n_kv = heads if kind == "mha" else _positive_int(heads_kv, "heads_kv")
        if heads % n_kv:
            raise ConfigError(None, "heads_kv", f"a divisor of heads ({heads})", n_kv)
        d_qk = d_v = _positive_int(head_dim, "head_dim")
        flash_bytes = flash_hbm_bytes(batch=batch, q_len=q, kv_len=context, heads_q=heads, heads_kv=n_kv,
                                      d_qk=d_qk, d_v=d_v, elem_bytes=kv.bytes,
                                      sram_bytes=Geometry.of(hw).sram_per_sm_bytes, causal=True)
        total_bytes, l2_bytes = _attention_l2_capture(hw, flash_bytes=flash_bytes, batch=batch, q=q,
                                                      context=context, heads=heads, n_kv=n_kv, d_qk=d_qk,
                                                      d_v=d_v, kv=kv, act=act)
    pairs = batch * heads * attended_pairs(q_len=q, kv_len=context, causal=True)
    mma_flops = 2.0 * pairs * (d_qk + d_v)
    executed_pairs = pairs
    if kv_tile is not None and q_tile is None:  # a key tile alone would be silently ignored
        raise ConfigError(None, "kv_tile", "q_tile given with it (the MMA tile is q_tile x kv_tile)", kv_tile)
    if q_tile is not None:
        executed_pairs = _tiled_pairs(batch=batch, heads=heads, n_kv=n_kv, q=q, context=context,
                                      q_tile=_positive_int(q_tile, "q_tile"),
                                      kv_tile=_positive_int(kv_tile if kv_tile is not None else 1, "kv_tile"))
    executed_mma_flops = 2.0 * executed_pairs * (d_qk + d_v)
    softmax_flops = 5.0 * pairs  # docs/counting.md: scale, max-subtract, exp, accumulate, normalise
    compute_dtype = kv if kv.name in ("bf16", "fp16") else BF16  # FP8 KV is dequantised to BF16 (FlashMLA)
    if mma_peak_fraction is not None and not 0.0 < float(mma_peak_fraction) <= 1.0:
        raise ConfigError(None, "mma_peak_fraction", "a fraction in (0, 1]", mma_peak_fraction)
    rates = ChipRates.of(hw)
    rate = rates.attention_flop_per_s(compute_dtype.name,
                                      None if mma_peak_fraction is None else float(mma_peak_fraction))
    vector = rates.vector_flop_per_s()
    compute_s = max(executed_mma_flops / rate, softmax_flops / vector if vector > 0 else 0.0)
    t = overlapped_kernel_time(rates, compute_s=compute_s, bytes_moved=total_bytes, l2_bytes=l2_bytes)
    parts = {"ramp_s": t.ramp_s, "compute_s": t.compute_s, "memory_s": t.memory_s, "l2_s": t.operand_s}
    time_s, bound = t.time_s, t.bound
    if hw.mesh is not None:  # a wafer-scale chip: the two all-reduces of the output, as the graph's attention pays
        out_bytes = batch * q * heads * act.storage_bytes((d_v,))
        parts["mesh_s"], _ = mesh.allreduces_cost(mesh.MeshRates.of(hw.mesh), out_bytes, mesh.ALLREDUCES["attention"])
        time_s, bound = max((time_s, bound), (parts["mesh_s"], bounds.NETWORK), key=lambda c: c[0])
    return KernelEstimate(kind="attention", hardware=hw.name, time_s=time_s, bound=bound,
                          flops=mma_flops + softmax_flops, bytes=total_bytes, parts=parts,
                          detail={"kind": kind, "phase": phase, "q_len": q, "heads_kv": n_kv, "d_qk": d_qk,
                                  "d_v": d_v, "mma_flops": mma_flops, "pairs": pairs,
                                  "executed_mma_flops": executed_mma_flops})


def _tiled_pairs(*, batch: int, heads: int, n_kv: int, q: int, context: int, q_tile: int, kv_tile: int) -> int:
    """(query, key) pairs a tiled flash kernel multiplies, causal: whole q_tile x kv_tile tiles, each query
    tile running up to the keys its last row attends. At q_len 1 the heads of a GQA group are the rows of
    one tile (FlashAttention-2's packing; all sit at the last position), otherwise each head's q rows are."""
    packed = q == 1 and heads > n_kv
    units, rows = (batch * n_kv, heads // n_kv) if packed else (batch * heads, q)
    total = 0
    for start in range(0, rows, q_tile):
        last_keys = context if packed else context - q + min(start + q_tile, rows)
        total += q_tile * -(-last_keys // kv_tile) * kv_tile
    return units * total


def _attention_l2_capture(hw: Hardware, *, flash_bytes: float, batch: int, q: int, context: int, heads: int,
                          n_kv: int, d_qk: int, d_v: int, kv: DType, act: DType) -> tuple[float, float]:
    """(HBM bytes, L2 bytes) of flash attention. Its K/V tiles are re-read once per query tile
    (docs/counting.md); when the K/V of the (sequence, kv head) units running at once fit in L2 (at most
    one unit per SM), the re-reads hit L2 and HBM sees only the compulsory Q, K, V and O bytes."""
    compulsory = batch * (q * heads * (d_qk + d_v) * act.bytes + context * n_kv * (d_qk + d_v) * kv.bytes)
    l2 = hw.memory.get("l2")
    in_flight = min(batch * n_kv, hw.sm_count) * context * (d_qk + d_v) * kv.bytes
    if l2 is None or l2 is hw.main_memory or in_flight > l2.capacity_bytes:
        return max(flash_bytes, compulsory), 0.0
    return compulsory, flash_bytes


def elementwise_time(hw: Hardware | str, *, nbytes: float, flops: float = 0.0,
                     dtype: str | DType = "fp32") -> KernelEstimate:
    """An elementwise kernel touching ``nbytes`` once and doing ``flops`` on the vector engine:
    ``ramp + max(flops / vector rate, bytes / bandwidth)``."""
    hw = resolve_hardware(hw)
    if not nbytes >= 0 or not flops >= 0:
        raise ConfigError(None, "elementwise", "bytes and FLOPs >= 0", (nbytes, flops))
    dt = _dtype(dtype, "dtype")
    rates = ChipRates.of(hw)
    rate = rates.vector_flop_per_s(dt.name)
    if flops > 0 and rate <= 0:
        raise ConfigError(hw.source_file, "compute", "a vector engine for elementwise FLOPs", None)
    t = overlapped_kernel_time(rates, compute_s=flops / rate if flops > 0 else 0.0, bytes_moved=nbytes)
    return KernelEstimate(kind="elementwise", hardware=hw.name, time_s=t.time_s, bound=t.bound, flops=float(flops),
                          bytes=float(nbytes), parts={"ramp_s": t.ramp_s, "compute_s": t.compute_s,
                                                      "memory_s": t.memory_s})


def collective_time(hw: Hardware | str, *, op: str, nbytes: float, devices: int) -> KernelEstimate:
    """A collective of ``nbytes`` per chip over ``devices`` chips (``cost/collectives.py``)."""
    from archsim.cost.collectives import OPS, price_collective

    hw = resolve_hardware(hw)
    name = op.replace("-", "_")
    if name not in OPS:
        raise ConfigError(None, "collective.op", f"one of {', '.join(o.replace('_', '-') for o in OPS)}", op)
    cost = price_collective(name, float(nbytes), _positive_int(devices, "devices"), hw)
    moved = cost.scale_up_bytes + cost.scale_out_bytes
    return KernelEstimate(kind="collective", hardware=hw.name, time_s=cost.time_s, bound="network", flops=0.0,
                          bytes=moved, parts={"latency_s": cost.latency_s, "transfer_s": cost.transfer_s},
                          detail={"op": name, "algorithm": cost.algorithm, "steps": cost.steps,
                                  "scale_up_bytes": cost.scale_up_bytes, "scale_out_bytes": cost.scale_out_bytes})


def moe_time(hw: Hardware | str, *, tokens: int, hidden: int, inter: int, topk: int, experts: int, ep: int,
             dtype: str | DType = "fp8", combine_dtype: str | DType = "bf16", n_group: int = 1,
             topk_group: int = 1, mode: str = "throughput") -> KernelEstimate:
    """One MoE layer's routed experts on one chip of an EP group: dispatch, grouped up-projection
    (gate and up, n = 2*inter), SwiGLU, grouped down-projection, combine, run one after another.

    Each chip holds ``tokens`` tokens, so the group routes tokens*ep tokens, each to ``topk`` of ``experts``
    experts (uniform routing: the graph path's rule, ``expert_load.uniform_load``). This chip's experts/ep experts
    receive tokens*topk routed rows in expectation, spread over the local experts that get any: the expected
    number ``distinct_experts``, whose weights alone the GEMMs read (few tokens touch few experts).
    In ``low_latency`` mode the expert GEMMs use the masked layout (DeepEP's low-latency dispatch writes a
    [local experts, max tokens, hidden] buffer that DeepGEMM's masked kernel reads, DeepGEMM README), else
    the contiguous one.
    """
    from archsim.cost.collectives import price_ep_exchange

    hw = resolve_hardware(hw)
    tokens, hidden, inter, topk, experts, ep = (
        _positive_int(v, p) for v, p in ((tokens, "tokens"), (hidden, "hidden"), (inter, "inter"),
                                         (topk, "topk"), (experts, "experts"), (ep, "ep")))
    n_group, topk_group = _positive_int(n_group, "n_group"), _positive_int(topk_group, "topk_group")
    if experts % ep:
        raise ConfigError(None, "ep", f"a divisor of experts ({experts})", ep)
    if topk > experts:
        raise ConfigError(None, "topk", f"at most experts ({experts})", topk)
    dt, comb = _dtype(dtype, "dtype"), _dtype(combine_dtype, "combine_dtype")
    local = range(experts // ep)  # this chip's experts
    load = uniform_load(experts, topk)
    routed = tokens * ep  # the EP group's tokens
    distinct = load.distinct_experts(routed, local)
    rows = math.fsum(load.tokens_per_expert(routed, local))  # routed rows landing on this chip: tokens * topk
    exchange = price_ep_exchange(tokens=tokens, hidden=hidden, topk=topk, n_experts=experts, ep=ep, hw=hw,
                                 dispatch_dtype=dt, combine_dtype=comb, n_group=n_group, topk_group=topk_group,
                                 mode=mode)
    layout = expert_layout(mode)
    shape = dict(rows_total=rows, groups_touched=distinct, dtype=dt, out_dtype=BF16, row_layout=layout)
    up = _gemm_estimate(hw, GemmShape.routed(n=2 * inter, k=hidden, **shape), kind="grouped_gemm")
    down = _gemm_estimate(hw, GemmShape.routed(n=hidden, k=inter, **shape), kind="grouped_gemm")
    act_elems = rows * inter
    swiglu_bytes = rows * 2 * inter * BF16.bytes + act_elems * dt.bytes
    rates = ChipRates.of(hw)
    vector = rates.vector_flop_per_s()
    if vector <= 0:
        raise ConfigError(hw.source_file, "compute", "a vector engine for the SwiGLU between the expert GEMMs", None)
    # docs/counting.md: SwiGLU is 5 FLOPs per element
    swiglu = overlapped_kernel_time(rates, compute_s=5.0 * act_elems / vector, bytes_moved=swiglu_bytes)
    parts = {"dispatch_s": exchange.dispatch.time_s, "up_s": up.time_s, "swiglu_s": swiglu.time_s,
             "down_s": down.time_s, "combine_s": exchange.combine.time_s}
    dominant = max(parts, key=parts.get).removesuffix("_s")
    bound = {"dispatch": bounds.NETWORK, "combine": bounds.NETWORK, "up": up.bound, "down": down.bound,
             "swiglu": swiglu.bound}[dominant]
    return KernelEstimate(kind="moe", hardware=hw.name, time_s=sum(parts.values()), bound=bound,
                          flops=up.flops + down.flops + 5.0 * act_elems,
                          bytes=up.bytes + down.bytes + swiglu_bytes, parts=parts,
                          detail={"dominant_part": dominant, "local_experts": len(local), "distinct_experts": distinct,
                                  "tokens_per_expert": rows / distinct, "routed_rows": rows,
                                  "dispatch_bytes": exchange.dispatch.bytes, "combine_bytes": exchange.combine.bytes})


def kernel_time(kernel: str, hw: Hardware | str, **shape) -> KernelEstimate:
    """Predict one kernel: ``kernel`` is gemm, grouped_gemm, moe, attention or collective; ``shape``
    the keyword arguments of the matching ``*_time`` function."""
    functions = {"gemm": gemm_time, "grouped_gemm": grouped_gemm_time, "moe": moe_time,
                 "attention": attention_time, "collective": collective_time}
    if kernel.replace("-", "_") not in functions:
        raise ConfigError(None, "kernel", f"one of {', '.join(KINDS)}", kernel)
    function = functions[kernel.replace("-", "_")]
    try:  # a wrong keyword is a user error, reported before anything runs
        inspect.signature(function).bind(hw, **shape)
    except TypeError as err:
        raise ConfigError(None, f"kernel.{kernel}", "the shape keywords of its *_time function", str(err)) from None
    return function(hw, **shape)
