"""Number formats of a phase graph (Precision) and the per-device slice it describes (Shard)."""
from __future__ import annotations

from dataclasses import dataclass

from archsim.dtypes import BF16, FP16, FP32, FP4, FP8, FP8_BLOCK128, INT4, MXFP4, DType
from archsim.errors import ConfigError

# Weight formats a scenario may name. Block scales are stored with the weights:
# - fp8: e4m3 with one float32 scale per 128x128 block (deepseek-ai/DeepSeek-V3 README_WEIGHTS.md).
# - fp4: OCP MX FP4 (MXFP4): 32 consecutive elements share one 8-bit E8M0 scale
#   (source: OCP Microscaling Formats (MX) v1.0 spec, block size 32, scale E8M0).
# - mxfp4: the same MXFP4 storage (4-bit E2M1, one E8M0 scale per 32 weights: 4.25 bits per weight) as a
#   weight-only format: dequantized to the activation dtype before the MMA, as gpt-oss's MoE experts run on
#   Hopper (NVIDIA/TensorRT-LLM examples/models/core/gpt_oss/README.md, "MoE Support Matrix": Hopper bf16
#   activations x mxfp4 weights; Blackwell mxfp8 activations, which this format prices at bf16);
#   ``fp4`` is the W4A4 path on FP4 tensor cores
# - int4: symmetric groups of 32 along the input dim with a bf16 scale (moonshotai/Kimi-K2-Thinking
#   config.json quantization_config, as quoted by third-party copies: compressed-tensors "pack-quantized",
#   int4 symmetric, group_size 32, on the routed experts; attention and shared experts stay BF16; the bf16
#   scale width is an assumption, not read in the config).
WEIGHT_FORMATS: dict[str, DType] = {
    "fp8": FP8_BLOCK128,
    "bf16": BF16,
    "fp16": FP16,
    "fp4": FP4.with_block((32,), scale_bits=8),
    "int4": INT4.with_block((32,), scale_bits=16),
    "mxfp4": MXFP4,
}
# Activation / KV-cache formats. An fp8 KV cache is plain e4m3 bytes: FlashMLA's FP8 layout adds four
# float32 scales and keeps the 64 rope dims in BF16 (656 B per token per layer instead of 576;
# deepseek-ai/FlashMLA README.md [V]), which is not modelled here.
PLAIN_FORMATS: dict[str, DType] = {"bf16": BF16, "fp16": FP16, "fp32": FP32, "fp8": FP8}
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
