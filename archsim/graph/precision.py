"""Number formats of a phase graph (Precision) and the per-device slice it describes (Shard)."""
from __future__ import annotations

from dataclasses import dataclass

from archsim.dtypes import BF16, PLAIN_FORMATS, WEIGHT_FORMATS, DType
from archsim.errors import ConfigError

# The formats a scenario may name (WEIGHT_FORMATS for weights, PLAIN_FORMATS for activations and the KV cache)
# are defined, with their sources, in archsim/dtypes.py: the one list the workload loader and the CLI help read.

# Formats whose GEMMs run on the low-precision tensor path (weights and activations both
# quantized, DeepSeek-V3 TR 3.3 FP8 training/inference); int4 is weight-only (dequantized to
# the activation dtype before the MMA).
LOW_PRECISION_COMPUTE = frozenset({"fp8", "fp4"})


@dataclass(frozen=True, kw_only=True)
class Precision:
    """Storage formats. ``weights`` applies to the quantized linear layers (attention and FFN
    projections, shared experts), ``expert_weights`` to the routed experts (default: ``weights``; Kimi K2's
    INT4 checkpoints quantize the routed experts only); embedding, lm_head, router gate and norm vectors stay
    in the activation dtype, as in DeepSeek-V3's inference code (ParallelEmbedding, head and Gate use the
    default dtype; only Linear layers are fp8). Matmul compute dtype is the weights dtype for
    fp8/fp4 GEMMs, the activation dtype otherwise (int4 and mxfp4 are weight-only)."""

    weights: DType
    activations: DType = BF16
    kv_cache: DType = BF16
    expert_weights: DType | None = None

    @property
    def routed_expert_weights(self) -> DType:
        """The routed experts' storage format."""
        return self.expert_weights or self.weights

    @property
    def gemm_compute(self) -> DType:
        return self._compute(self.weights)

    @property
    def expert_gemm_compute(self) -> DType:
        """Compute dtype of the routed experts' GEMMs."""
        return self._compute(self.routed_expert_weights)

    def _compute(self, weights: DType) -> DType:
        return weights if weights.name in LOW_PRECISION_COMPUTE else self.activations


def precision_from_names(weights: str = "fp8", activations: str = "bf16", kv_cache: str = "bf16",
                         expert_weights: str | None = None) -> Precision:
    """Precision from scenario names (ConfigError on an unknown name); ``expert_weights`` None: as ``weights``."""
    for key, name in (("weights", weights), ("expert_weights", expert_weights)):
        if name is not None and name not in WEIGHT_FORMATS:
            raise ConfigError(None, f"scenario.{key}", f"one of {sorted(WEIGHT_FORMATS)}", name)
    for key, name in (("activations", activations), ("kv_cache", kv_cache)):
        if name not in PLAIN_FORMATS:
            raise ConfigError(None, f"scenario.{key}", f"one of {sorted(PLAIN_FORMATS)}", name)
    experts = None if expert_weights is None or expert_weights == weights else WEIGHT_FORMATS[expert_weights]
    return Precision(weights=WEIGHT_FORMATS[weights], activations=PLAIN_FORMATS[activations],
                     kv_cache=PLAIN_FORMATS[kv_cache], expert_weights=experts)


def scenario_precision(scenario) -> Precision:
    """The Precision a workload scenario names (its weights, expert_weights, activations and kv_cache)."""
    return precision_from_names(scenario.weights, scenario.activations, scenario.kv_cache,
                                getattr(scenario, "expert_weights", None))


@dataclass(frozen=True, kw_only=True)
class Shard:
    """The per-device slice a graph describes: attention heads, dense/shared FFN width and vocab
    split ``tp`` ways; routed experts split ``ep`` ways (this device holds experts
    [0, n_routed_experts/ep), or ``slots`` expert slots when the mapping places them), each expert's FFN
    width split ``moe_tp`` ways."""

    tp: int = 1
    ep: int = 1
    moe_tp: int = 1
