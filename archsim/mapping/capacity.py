"""Memory capacity per device: weights (with block scales) after TP/EP/PP sharding, KV cache,
activations, and the searches built on it (max batch, max context, smallest fitting layout).

Weights are enumerated as the checkpoint's matrices (shape [out, in]) so block scales are exact,
padded blocks included (DeepSeek-V3 README_WEIGHTS.md). Linear layers use ``precision.weights``;
embedding, lm_head, router and norm vectors stay in the activation dtype (as in DeepSeek-V3's
inference code, see archsim/graph/precision.py). Splits follow DeepSeek-V3's inference TP:
q_b/kv_b/q/k/v and gate/up are column-parallel (output dim / tp), o_proj and down_proj
row-parallel (input dim / tp), the MLA down-projections q_a/kv_a, norms and router replicated,
embedding and lm_head split by vocabulary; routed experts split ``ep`` ways.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

from archsim.config.hardware import Hardware
from archsim.config.model import ModelConfig
from archsim.dtypes import DType
from archsim.errors import ConfigError
from archsim.graph.params import kv_elements_per_token_per_layer
from archsim.graph.precision import Precision
from archsim.mapping.layout import Layout

# (component, shape [out, in] or [n], quantized?, tp split dim or None)
Matrix = tuple[str, tuple[int, ...], bool, int | None]


def _attention_matrices(m: ModelConfig) -> list[Matrix]:
    h, H = m.hidden_size, m.num_attention_heads
    if m.attention_kind == "gqa":
        d, kv = m.gqa_head_dim, m.kv_heads
        return [("attention", (H * d, h), True, 0), ("attention", (kv * d, h), True, 0),
                ("attention", (kv * d, h), True, 0), ("attention", (h, H * d), True, 1)]
    qk = m.qk_head_dim
    out: list[Matrix] = []
    if m.q_lora_rank:
        out += [("attention", (m.q_lora_rank, h), True, None), ("attention", (m.q_lora_rank,), False, None),
                ("attention", (H * qk, m.q_lora_rank), True, 0)]
    else:
        out += [("attention", (H * qk, h), True, 0)]
    out += [("attention", (m.kv_lora_rank + m.qk_rope_head_dim, h), True, None),
            ("attention", (m.kv_lora_rank,), False, None),
            ("attention", (H * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank), True, 0),
            ("attention", (h, H * m.v_head_dim), True, 1)]
    return out


def _ffn_matrices(m: ModelConfig, layer: int) -> tuple[list[Matrix], int]:
    """Matrices of the layer's FFN (routed experts excluded) and its routed-expert count."""
    h = m.hidden_size
    if not m.is_moe_layer(layer):
        width = m.intermediate_size
        return [("dense_mlp", (width, h), True, 0)] * 2 + [("dense_mlp", (h, width), True, 1)], 0
    out: list[Matrix] = [("router", (m.n_routed_experts, h), False, None)]
    if m.topk_method == "noaux_tc":
        out.append(("router", (m.n_routed_experts,), False, None))
    width = (m.n_shared_experts or 0) * m.moe_intermediate_size
    if width:
        out += [("shared_experts", (width, h), True, 0)] * 2 + [("shared_experts", (h, width), True, 1)]
    return out, m.n_routed_experts


def _shard_shape(shape: tuple[int, ...], split: int | None, tp: int) -> tuple[int, ...]:
    if split is None or tp == 1:
        return shape
    dims = list(shape)
    dims[split] = math.ceil(dims[split] / tp)
    return tuple(dims)


def _bytes(shape: tuple[int, ...], quantized: bool, precision: Precision) -> float:
    dtype: DType = precision.weights if quantized else precision.activations
    return dtype.storage_bytes(shape)


def layer_weight_bytes(m: ModelConfig, layer: int, precision: Precision, *, tp: int = 1,
                       ep: int = 1) -> dict[str, float]:
    """Bytes of decoder layer ``layer`` on one device, by component."""
    h = m.hidden_size
    out: dict[str, float] = {"norms": 2 * _bytes((h,), False, precision)}
    ffn, experts = _ffn_matrices(m, layer)
    for comp, shape, quant, split in _attention_matrices(m) + ffn:
        out[comp] = out.get(comp, 0.0) + _bytes(_shard_shape(shape, split, tp), quant, precision)
    if experts:
        e = m.moe_intermediate_size
        one = 2 * _bytes((e, h), True, precision) + _bytes((h, e), True, precision)
        out["routed_experts"] = math.ceil(experts / ep) * one
    return out


def model_elements(m: ModelConfig) -> int:
    """Parameter count of the enumerated matrices (tests check it equals count_params().total)."""
    total = 2 * m.vocab_size * m.hidden_size if not m.tie_word_embeddings else m.vocab_size * m.hidden_size
    total += m.hidden_size
    for layer in range(m.num_hidden_layers):
        ffn, experts = _ffn_matrices(m, layer)
        total += 2 * m.hidden_size + sum(math.prod(s) for _, s, _, _ in _attention_matrices(m) + ffn)
        total += experts * 3 * m.hidden_size * (m.moe_intermediate_size or 0)
    return total


def stage_layers(num_layers: int, pp: int) -> list[range]:
    """Consecutive layer ranges of the pp stages (the first stages take the remainder)."""
    base, extra = divmod(num_layers, pp)
    out, start = [], 0
    for s in range(pp):
        n = base + (1 if s < extra else 0)
        out.append(range(start, start + n))
        start += n
    return out


@dataclass(frozen=True, kw_only=True)
class MemoryBreakdown:
    """Bytes one device holds (the most loaded pipeline stage) against its capacity."""

    layout: Layout
    weights_bytes: float
    weights_by_component: Mapping[str, float]
    kv_cache_bytes: float
    activation_bytes: float
    total_bytes: float
    capacity_bytes: float
    fits: bool
    stage: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        """One line: totals, capacity and whether it fits."""
        gb = 1e9
        verdict = "fits" if self.fits else "does NOT fit"
        return (f"{self.layout.describe()}: weights {self.weights_bytes / gb:.1f} GB + KV "
                f"{self.kv_cache_bytes / gb:.1f} GB + activations {self.activation_bytes / gb:.2f} GB = "
                f"{self.total_bytes / gb:.1f} GB per device vs {self.capacity_bytes / gb:.1f} GB: {verdict}")


def _stage_weights(m: ModelConfig, precision: Precision, layout: Layout, stage: int,
                   layers: range) -> dict[str, float]:
    out: dict[str, float] = {}
    for layer in layers:
        for comp, value in layer_weight_bytes(m, layer, precision, tp=layout.tp, ep=layout.ep).items():
            out[comp] = out.get(comp, 0.0) + value
    vocab = _bytes((math.ceil(m.vocab_size / layout.tp), m.hidden_size), False, precision)
    if stage == 0:
        out["embedding"] = vocab
    if stage == layout.pp - 1:
        out["lm_head"] = 0.0 if m.tie_word_embeddings and layout.pp == 1 else vocab
        out["norms"] = out.get("norms", 0.0) + _bytes((m.hidden_size,), False, precision)
    return out


def kv_cache_bytes(m: ModelConfig, precision: Precision, *, batch: int, context: int, layout: Layout,
                   layers: int | None = None) -> float:
    """KV bytes on one device: its ceil(batch/dp) sequences x context tokens x its layers.

    GQA splits kv heads over tp (replicated when tp exceeds them); the MLA latent is shared by all
    heads, so every TP rank holds it whole.
    """
    layers = m.num_hidden_layers if layers is None else layers
    per_layer = kv_elements_per_token_per_layer(m) * precision.kv_cache.bytes
    if m.attention_kind == "gqa":
        per_layer *= math.ceil(m.kv_heads / layout.tp) / m.kv_heads
    return per_layer * layers * math.ceil(batch / layout.dp) * context


ActivationFn = Callable[[int, int], float]


def memory_per_device(model: ModelConfig, hw: Hardware, *, precision: Precision, batch: int, context: int,
                      layout: Layout, activation_bytes: ActivationFn | None = None) -> MemoryBreakdown:
    """Per-device memory of serving ``batch`` sequences at ``context`` tokens under ``layout``.

    ``activation_bytes(batch_per_device, context)`` gives the peak live activations of the largest
    phase (see ``graph_activation_bytes``); without it activations are reported as 0 and a note says so.
    The most loaded pipeline stage is reported.
    """
    if batch < 0 or context < 0:
        raise ConfigError(None, "scenario.batch" if batch < 0 else "scenario.context", "a non-negative integer",
                          batch if batch < 0 else context)
    best: MemoryBreakdown | None = None
    per_device_batch = math.ceil(batch / layout.dp)
    act = activation_bytes(per_device_batch, context) if activation_bytes and batch else 0.0
    notes = () if activation_bytes else ("activations not estimated",)
    for stage, layers in enumerate(stage_layers(model.num_hidden_layers, layout.pp)):
        weights = _stage_weights(model, precision, layout, stage, layers)
        kv = kv_cache_bytes(model, precision, batch=batch, context=context, layout=layout, layers=len(layers))
        w = sum(weights.values())
        total = w + kv + act
        cap = hw.main_memory.capacity_bytes
        cand = MemoryBreakdown(layout=layout, weights_bytes=w, weights_by_component=weights, kv_cache_bytes=kv,
                               activation_bytes=act, total_bytes=total, capacity_bytes=cap, fits=total <= cap,
                               stage=stage, notes=notes)
        if best is None or cand.total_bytes > best.total_bytes:
            best = cand
    return best


def graph_activation_bytes(graph) -> float:
    """Peak live activations of a phase graph: the largest activation/output bytes any one op reads
    and writes together (weights and KV cache excluded; they are counted separately)."""
    peak = 0.0
    for _, data in graph.nodes(data=True):
        op = data["op"]
        live = sum(o.nbytes for o in op.reads + op.writes if o.role in ("activation", "output"))
        peak = max(peak, live)
    return peak


def decode_activations(model: ModelConfig, precision: Precision, layout: Layout) -> ActivationFn:
    """Activation estimator from the per-device decode graph (teammate B's builder, built on demand)."""
    from archsim.graph.build import build_decode
    from archsim.graph.precision import Shard

    def estimate(batch: int, context: int) -> float:
        graph = build_decode(model, batch=batch, context=max(1, context), precision=precision,
                             shard=Shard(tp=layout.tp, ep=layout.ep))
        return graph_activation_bytes(graph)
    return estimate


def _largest(fits: Callable[[int], bool], low: int, high: int) -> int:
    """Largest n in [low, high] with fits(n), assuming fits is monotone decreasing; low - 1 if none."""
    if not fits(low):
        return low - 1
    if fits(high):
        return high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def max_batch(model: ModelConfig, hw: Hardware, *, precision: Precision, context: int, layout: Layout,
              activation_bytes: ActivationFn | None = None, limit: int = 2 ** 20) -> int:
    """Largest batch of ``context``-token sequences that fits on every device (0 if none)."""
    fits = lambda b: memory_per_device(model, hw, precision=precision, batch=b, context=context, layout=layout,
                                       activation_bytes=activation_bytes).fits
    return max(0, _largest(fits, 1, limit))


def max_context(model: ModelConfig, hw: Hardware, *, precision: Precision, batch: int, layout: Layout,
                activation_bytes: ActivationFn | None = None) -> int:
    """Largest context (tokens, capped at the model's max_position_embeddings) that fits; 0 if none."""
    cap = model.max_position_embeddings or 2 ** 30
    fits = lambda c: memory_per_device(model, hw, precision=precision, batch=batch, context=c, layout=layout,
                                       activation_bytes=activation_bytes).fits
    return max(0, _largest(fits, 1, cap))


def candidate_layouts(model: ModelConfig, hw: Hardware, *, max_devices: int) -> list[Layout]:
    """Device counts in search order (powers of two within a node, then whole nodes), one layout each:
    TP inside a node for attention/dense (at most the node size and the head count), DP over the
    rest, EP across all devices for MoE (the largest divisor of the device count <= experts)."""
    per_node = hw.node.chips_per_node
    counts = [1 << i for i in range(per_node.bit_length()) if 1 << i < per_node]
    counts += [per_node * k for k in range(1, max_devices // per_node + 1)]
    out = []
    for devices in counts:
        tp = math.gcd(devices, min(per_node, model.num_attention_heads))
        ep = 1
        if model.is_moe:
            ep = max(d for d in range(1, min(devices, model.n_routed_experts) + 1) if devices % d == 0)
        out.append(Layout(devices=devices, tp=tp, ep=ep, dp=devices // tp, pp=1))
    return out


def smallest_fitting_layout(model: ModelConfig, hw: Hardware, *, precision: Precision, batch: int, context: int,
                            activation_bytes: Callable[[Layout], ActivationFn] | None = None,
                            max_devices: int = 2 ** 16) -> MemoryBreakdown:
    """The fewest devices whose weights + KV (+ activations) fit, with its breakdown.

    ``activation_bytes(layout)`` returns an estimator for that layout (e.g. ``lambda l:
    decode_activations(model, precision, l)``). ConfigError if nothing up to ``max_devices`` fits.
    """
    for layout in candidate_layouts(model, hw, max_devices=max_devices):
        fn = activation_bytes(layout) if activation_bytes else None
        mem = memory_per_device(model, hw, precision=precision, batch=batch, context=context, layout=layout,
                                activation_bytes=fn)
        if mem.fits:
            return mem
    raise ConfigError(hw.source_file, "memory", f"a layout of at most {max_devices} devices that fits",
                      f"batch {batch} at context {context}")
