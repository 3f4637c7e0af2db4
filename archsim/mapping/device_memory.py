"""Memory per device after sharding: weights, KV cache, activations and, for training, gradients and
optimizer states with ZeRO stages. Counts come from ``archsim.graph.params`` (exact parameter counts)."""
from __future__ import annotations

from dataclasses import dataclass, field
from math import ceil, prod
from typing import Mapping

from archsim.config.model import ModelConfig
from archsim.dtypes import BITS_PER_BYTE, DType
from archsim.attention_window import cached_keys
from archsim.graph.params import ParamCounts, attention_params, count_params, kv_elements_per_token_per_layer
from archsim.graph.precision import Precision
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.weights import stage_weight_bytes


def bytes_per_param(dtype: DType) -> float:
    """Storage bytes per element including block scales (block padding ignored: it is < 0.1% for
    DeepSeek-V3's 128-multiple shapes)."""
    scale = dtype.scale_bits / BITS_PER_BYTE / prod(dtype.block) if dtype.block and dtype.scale_bits else 0.0
    return dtype.bytes + scale


@dataclass(frozen=True, kw_only=True)
class TrainingBytes:
    """Bytes per parameter held for training: the compute copy of the weights, gradients and
    optimizer states (master weights + moments). ZeRO shards them over the parameter's replicas."""

    weights: float
    gradients: float
    optimizer: float
    weight_copies: int = 1  # DualPipe keeps two copies of parameters (DSV3-TR §3.2.1)


@dataclass(frozen=True, kw_only=True)
class MemoryBreakdown:
    """Bytes on the most loaded device (the worst pipeline stage) and the capacity it must fit in."""

    weights_bytes: float
    kv_cache_bytes: float
    activations_bytes: float
    gradients_bytes: float
    optimizer_bytes: float
    capacity_bytes: float
    stage: int
    by_category: Mapping[str, float] = field(default_factory=dict)

    @property
    def total_bytes(self) -> float:
        return (self.weights_bytes + self.kv_cache_bytes + self.activations_bytes + self.gradients_bytes
                + self.optimizer_bytes)

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.capacity_bytes

    def to_dict(self) -> dict:
        return {"per_device_bytes": self.total_bytes, "weights_bytes": self.weights_bytes,
                "kv_cache_bytes": self.kv_cache_bytes, "activations_bytes": self.activations_bytes,
                "gradients_bytes": self.gradients_bytes, "optimizer_bytes": self.optimizer_bytes,
                "capacity_bytes": self.capacity_bytes, "fits": self.fits, "worst_stage": self.stage,
                "params_by_category": dict(self.by_category)}


def stage_layers(model: ModelConfig, pp: int) -> list[range]:
    """Layers of each pipeline stage: as even as possible, earlier stages take the remainder."""
    return [stage_range(model, pp, s) for s in range(pp)]


def stage_range(model: ModelConfig, pp: int, stage: int) -> range:
    """Layers of pipeline stage ``stage`` of ``pp`` (the entry of ``stage_layers``, in O(1))."""
    base, extra = divmod(model.num_hidden_layers, pp)
    start = stage * base + min(stage, extra)
    return range(start, start + base + (1 if stage < extra else 0))


def stage_params(model: ModelConfig, par: Parallelism, stage: int, *, mtp: bool = False,
                 counts: ParamCounts | None = None) -> dict[str, float]:
    """Parameters one device of ``stage`` holds, by category (fractional where a split is uneven).

    Attention: MLA's down projections (q_a, kv_a) and their norms are replicated over TP ranks, the
    rest split ``tp`` ways; GQA is fully split. Dense FFN and shared experts split ``tp`` ways; routed
    experts ``(E + redundant) / ep`` slots per device, each split ``moe_tp`` ways; router and layer norms
    replicated; embedding on the
    first stage, head (and MTP) on the last, both split ``tp`` ways.
    """
    m, tp = model, par.tp
    counts = counts or count_params(model)
    h = m.hidden_size
    out = {"attention": 0.0, "dense_mlp": 0.0, "shared_experts": 0.0, "routed_experts": 0.0,
           "router": 0.0, "norms": 0.0, "embedding": 0.0, "lm_head": 0.0, "mtp": 0.0}
    replicated = 0
    if m.attention_kind == "mla":
        replicated = h * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank
        if m.q_lora_rank:
            replicated += h * m.q_lora_rank + m.q_lora_rank
    attn = replicated + (attention_params(m) - replicated) / tp
    layers = stage_range(model, par.pp, stage)
    moe = m.moe_layers_in(layers.start, layers.stop)  # per-layer terms times layer counts: no loop over depth
    out["attention"] += len(layers) * attn
    out["norms"] += len(layers) * 2 * h
    if moe:
        out["shared_experts"] += moe * counts.shared_experts_per_layer / tp
        out["routed_experts"] += (moe * (m.n_routed_experts + par.redundant_experts) / par.ep * counts.routed_expert
                                  / par.moe_tp)
        out["router"] += moe * counts.router_per_layer
    if len(layers) - moe:
        out["dense_mlp"] += (len(layers) - moe) * counts.dense_mlp_per_layer / tp
    if stage == 0:
        out["embedding"] = counts.embedding / tp
    if stage == par.pp - 1:
        out["lm_head"] = counts.lm_head / tp
        out["norms"] += h
        if mtp:
            out["mtp"] = counts.mtp / tp  # approximation: MTP layer sharded like the head
    return out


QUANTIZED = ("attention", "dense_mlp", "shared_experts", "routed_experts", "mtp")


def weight_bytes(params: Mapping[str, float], precision: Precision) -> float:
    """Bytes of a parameter split: linear layers in the weights format (routed experts in theirs; block scales
    included), embedding, head, router and norms in the activation format (as DeepSeek-V3's inference code)."""
    q, a = bytes_per_param(precision.weights), bytes_per_param(precision.activations)
    routed = bytes_per_param(precision.routed_expert_weights)
    return sum(v * (routed if k == "routed_experts" else q if k in QUANTIZED else a) for k, v in params.items())


def kv_cache_bytes(model: ModelConfig, par: Parallelism, precision: Precision, *, batch: int, context: int,
                   stage: int) -> float:
    """KV cache of one device: its replica's sequences (batch / dp), its share of the context (/ cp),
    its stage's layers. MLA's latent is replicated over TP ranks; GQA's kv heads split ``tp`` ways."""
    seqs = ceil(batch / par.dp)
    layers = stage_range(model, par.pp, stage)
    per_token_layer = kv_elements_per_token_per_layer(model) * precision.kv_cache.bytes
    if model.attention_kind != "mla":
        per_token_layer /= par.tp
    tokens = ceil(context / par.cp)
    if not model.layer_types:
        return seqs * tokens * len(layers) * per_token_layer
    # a sliding-window layer (gpt-oss) caches at most its window's keys (archsim.attention_window.cached_keys)
    return seqs * per_token_layer * sum(cached_keys(tokens, model.attention_window(i)) for i in layers)


def memory_per_device(model: ModelConfig, par: Parallelism, precision: Precision, *, capacity_bytes: float,
                      batch: int = 0, context: int = 0, activation_bytes_per_stage: float = 0.0,
                      training: TrainingBytes | None = None, mtp: bool = False,
                      cache: dict | None = None) -> MemoryBreakdown:
    """Memory of the most loaded device. ``activation_bytes_per_stage`` is supplied by the caller
    (it depends on the phase graph and, in training, on the pipeline schedule and recomputation).

    Training: every parameter carries ``weights * weight_copies`` bytes of compute copy, ``gradients``
    and ``optimizer`` bytes; ZeRO-1 divides the optimizer bytes by the parameter's data-parallel
    replicas (``dp`` for dense parts, ``expert_dp`` for routed experts), ZeRO-2 also the gradients,
    ZeRO-3 also the weights. ``cache`` (a dict owned by the caller for one model and precision, e.g. a
    plan search) keeps the weight bytes of each (tp, ep, pp, stage) slice.
    """
    worst = None
    if cache is not None and ("counts",) not in cache:
        cache[("counts",)] = count_params(model)
    counts = cache[("counts",)] if cache is not None else count_params(model)
    for stage in _distinct_stages(model, par.pp, cache):
        params = stage_params(model, par, stage, mtp=mtp, counts=counts)
        if training is None:
            key = ("weights", par.tp, par.ep, par.moe_tp, par.pp, stage, par.redundant_experts, mtp)
            if cache is None or key not in cache:
                w = _inference_weight_bytes(model, par, precision, stage, params, mtp)
                if cache is not None:
                    cache[key] = w
            w, g, o = (cache[key] if cache is not None else w), 0.0, 0.0
        else:
            w, g, o = _training_state(params, par, training)
        kv = kv_cache_bytes(model, par, precision, batch=batch, context=context, stage=stage) if batch else 0.0
        mb = MemoryBreakdown(weights_bytes=w, kv_cache_bytes=kv, activations_bytes=activation_bytes_per_stage,
                             gradients_bytes=g, optimizer_bytes=o, capacity_bytes=capacity_bytes, stage=stage,
                             by_category=params)
        if worst is None or mb.total_bytes > worst.total_bytes:
            worst = mb
    return worst


def _distinct_stages(model: ModelConfig, pp: int, cache: dict | None) -> list[int]:
    """One stage per distinct (layers, MoE layers, first, last) signature, the earliest of each: stages that
    share a signature hold the same bytes, so pricing these finds the same worst stage with O(1) work each
    instead of O(pp) (a deep model in a plan search tries hundreds of stages per layout)."""
    key = ("distinct_stages", pp)
    if cache is not None and key in cache:
        return cache[key]
    seen: dict[tuple, int] = {}
    for stage in range(pp):
        layers = stage_range(model, pp, stage)
        signature = (len(layers), model.moe_layers_in(layers.start, layers.stop), stage == 0, stage == pp - 1)
        seen.setdefault(signature, stage)
    out = list(seen.values())
    if cache is not None:
        cache[key] = out
    return out


def _inference_weight_bytes(model: ModelConfig, par: Parallelism, precision: Precision, stage: int,
                            params: Mapping[str, float], mtp: bool) -> float:
    """Exact bytes of the stage's matrices in their storage formats (block scales and padding included);
    the MTP module, when present, is priced per parameter."""
    exact = stage_weight_bytes(model, precision, tp=par.tp, ep=par.ep, layers=stage_range(model, par.pp, stage),
                               first=stage == 0, last=stage == par.pp - 1,
                               redundant_experts=par.redundant_experts, moe_tp=par.moe_tp)
    return sum(exact.values()) + weight_bytes({"mtp": params.get("mtp", 0.0)}, precision)


def _training_state(params: Mapping[str, float], par: Parallelism, tb: TrainingBytes) -> tuple[float, float, float]:
    w = g = o = 0.0
    for category, n in params.items():
        replicas = par.expert_dp if category == "routed_experts" else par.dp * par.cp
        replicas = max(1, replicas)
        o += n * tb.optimizer / (replicas if par.zero_stage >= 1 else 1)
        g += n * tb.gradients / (replicas if par.zero_stage >= 2 else 1)
        w += n * tb.weights * tb.weight_copies / (replicas if par.zero_stage >= 3 else 1)
    return w, g, o
