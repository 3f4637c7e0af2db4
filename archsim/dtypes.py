"""Number formats as value objects: bits per element and optional block scales.

Bytes always derive from bits, so a 4-bit type is 0.5 bytes, never 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

BITS_PER_BYTE = 8
MEMO_LIMIT = 4096  # shapes memoised per dtype (a bound on memory, not a physical quantity)


@dataclass(frozen=True, kw_only=True)
class DType:
    """A storage / compute format.

    ``block`` is the shape of the block that shares one scale (e.g. (128, 128) for DeepSeek-V3's
    FP8 weights, README_WEIGHTS.md) and ``scale_bits`` the width of that scale (float32 = 32).
    """

    name: str
    bits: int
    block: tuple[int, ...] | None = None
    scale_bits: int = 0

    @property
    def bytes(self) -> float:
        """Bytes per element, excluding block scales."""
        return self.bits / BITS_PER_BYTE

    @cached_property
    def _storage_memo(self) -> dict:
        """storage_bytes by shape (graph builders and weight counts ask for the same shapes per layer)."""
        return {}

    def storage_bytes(self, shape: tuple[int, ...]) -> float:
        """Exact bytes to store a tensor of ``shape``: elements plus one scale per (padded) block.

        Blocks cover the trailing dimensions; a partial block still stores a full scale
        (DeepSeek-V3 README_WEIGHTS.md: "blocks padded to 128").
        """
        memo = self._storage_memo
        try:
            return memo[shape]
        except (KeyError, TypeError):  # TypeError: an unhashable shape (a list) is computed, not memoised
            pass
        total = self._storage_bytes(shape)
        if isinstance(shape, tuple) and len(memo) < MEMO_LIMIT:
            memo[shape] = total
        return total

    def _storage_bytes(self, shape) -> float:
        elements = 1
        for dim in shape:
            elements *= dim
        total = elements * self.bits / BITS_PER_BYTE
        if self.block and self.scale_bits:
            blocks = 1
            lead = shape[: len(shape) - len(self.block)]
            for dim in lead:
                blocks *= dim
            for dim, blk in zip(shape[len(shape) - len(self.block):], self.block):
                blocks *= -(-dim // blk)
            total += blocks * self.scale_bits / BITS_PER_BYTE
        return total

    def with_block(self, block: tuple[int, ...], scale_bits: int = 32) -> "DType":
        return DType(name=self.name, bits=self.bits, block=block, scale_bits=scale_bits)


FP4 = DType(name="fp4", bits=4)
INT4 = DType(name="int4", bits=4)
FP8 = DType(name="fp8", bits=8)
INT8 = DType(name="int8", bits=8)
FP16 = DType(name="fp16", bits=16)
BF16 = DType(name="bf16", bits=16)
TF32 = DType(name="tf32", bits=32)  # stored as 32-bit words; tensor cores use 19 bits internally
FP32 = DType(name="fp32", bits=32)
FP64 = DType(name="fp64", bits=64)

# DeepSeek-V3 FP8 weights: e4m3 with one float32 scale per 128x128 block
# (source: deepseek-ai/DeepSeek-V3 README_WEIGHTS.md, quantization_config.weight_block_size).
FP8_BLOCK128 = FP8.with_block((128, 128), scale_bits=32)

# MXFP4 as a weight-only storage format: E2M1 elements, one E8M0 (8-bit) scale per 32 consecutive weights
# (OCP Microscaling Formats (MX) v1.0: block size 32, scale E8M0); 4.25 bits per weight
MXFP4 = DType(name="mxfp4", bits=4, block=(32,), scale_bits=8)

BY_NAME: dict[str, DType] = {d.name: d for d in (FP4, INT4, FP8, INT8, FP16, BF16, TF32, FP32, FP64)}

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


def format_choices(formats: dict[str, DType]) -> str:
    """The names of ``formats`` as a help text lists them: "fp8 | bf16 | ..." (table order)."""
    return " | ".join(formats)


def dtype(name: str) -> DType:
    """Look up a plain dtype by name (``KeyError`` lists the known names)."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown dtype {name!r}; known: {', '.join(sorted(BY_NAME))}") from None
