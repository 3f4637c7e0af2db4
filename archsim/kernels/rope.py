"""Rotary position embedding: inverse frequencies for each scaling variant, tables, and the rotation.

Pairs are interleaved (x[2i], x[2i+1]) as in DeepSeek-V3's inference/model.py (``view_as_complex``
on the last axis). YaRN follows that file's ``precompute_freqs_cis`` (floor/ceil correction range,
ramp over dim/2 entries, ``freqs/factor*(1-smooth) + freqs*smooth``) and the Hugging Face
DeepSeek-V3 config semantics for ``mscale`` / ``mscale_all_dim``.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from archsim.kernels.counting import Site


def inv_freq_standard(dim: int, theta: float) -> np.ndarray:
    """theta_i = base^(-2i/dim), i = 0 .. dim/2-1 (RoFormer)."""
    return 1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)    # [dim/2]


def inv_freq_linear(dim: int, theta: float, factor: float) -> np.ndarray:
    """Linear position interpolation (Chen et al. 2023): positions divided by ``factor``."""
    return inv_freq_standard(dim, theta) / factor                            # [dim/2]


def inv_freq_ntk(dim: int, theta: float, factor: float) -> np.ndarray:
    """NTK-aware scaling: base' = base * factor^(dim/(dim-2)) (bloc97, 2023)."""
    return inv_freq_standard(dim, theta * factor ** (dim / (dim - 2)))      # [dim/2]


def yarn_correction_dim(num_rotations: float, dim: int, theta: float, original_max_pos: int) -> float:
    """Dimension index whose wavelength completes ``num_rotations`` turns over the original context."""
    return dim * math.log(original_max_pos / (num_rotations * 2 * math.pi)) / (2 * math.log(theta))


def yarn_correction_range(beta_fast: float, beta_slow: float, dim: int, theta: float,
                          original_max_pos: int) -> tuple[int, int]:
    """(low, high) = (floor(dim(beta_fast)), ceil(dim(beta_slow))) clamped to [0, dim-1]."""
    low = math.floor(yarn_correction_dim(beta_fast, dim, theta, original_max_pos))
    high = math.ceil(yarn_correction_dim(beta_slow, dim, theta, original_max_pos))
    return max(low, 0), min(high, dim - 1)


def yarn_ramp(low: float, high: float, size: int) -> np.ndarray:
    """clamp((i - low) / (high - low), 0, 1) for i < size; high is nudged by 1e-3 when equal."""
    if low == high:
        high += 0.001  # avoids 0/0, exactly as the reference does
    return np.clip((np.arange(size, dtype=np.float64) - low) / (high - low), 0.0, 1.0)   # [size]


def inv_freq_yarn(dim: int, theta: float, *, factor: float, beta_fast: float, beta_slow: float,
                  original_max_position_embeddings: int) -> np.ndarray:
    """YaRN (Peng et al. 2023) as DeepSeek-V3 computes it: interpolate low frequencies only."""
    freqs = inv_freq_standard(dim, theta)                                    # [dim/2]
    low, high = yarn_correction_range(beta_fast, beta_slow, dim, theta, original_max_position_embeddings)
    smooth = 1 - yarn_ramp(low, high, dim // 2)                              # [dim/2], 1 = keep
    return freqs / factor * (1 - smooth) + freqs * smooth                    # [dim/2]


def inv_freq_llama3(dim: int, theta: float, *, factor: float, low_freq_factor: float, high_freq_factor: float,
                    original_max_position_embeddings: int) -> np.ndarray:
    """Llama 3.1 scaling (HF ``_compute_llama3_parameters``): wavelengths shorter than
    original/high_freq_factor keep their frequency, longer than original/low_freq_factor are divided by
    ``factor``, and the band between interpolates with smooth = (original/wavelen - low) / (high - low)."""
    freqs = inv_freq_standard(dim, theta)                                    # [dim/2]
    wavelen = 2 * math.pi / freqs                                            # [dim/2]
    low_wavelen = original_max_position_embeddings / low_freq_factor
    high_wavelen = original_max_position_embeddings / high_freq_factor
    smooth = (original_max_position_embeddings / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    mid = (1 - smooth) * freqs / factor + smooth * freqs                      # [dim/2]
    return np.where(wavelen < high_wavelen, freqs, np.where(wavelen > low_wavelen, freqs / factor, mid))


def yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    """0.1 * mscale * ln(factor) + 1 for factor > 1, else 1 (YaRN attention temperature)."""
    return 0.1 * mscale * math.log(factor) + 1.0 if factor > 1 else 1.0


def softmax_scale(qk_head_dim: int, rope_scaling: Mapping[str, object] | None = None) -> float:
    """1/sqrt(d_qk), times mscale(factor, mscale_all_dim)^2 under YaRN (DeepSeek-V3 model.py)."""
    scale = qk_head_dim ** -0.5
    if rope_scaling and rope_scaling.get("type", rope_scaling.get("rope_type")) == "yarn":
        m = yarn_mscale(float(rope_scaling["factor"]), float(rope_scaling.get("mscale_all_dim", 0.0)))
        scale *= m * m
    return scale


def rope_inv_freq(dim: int, theta: float, rope_scaling: Mapping[str, object] | None) -> tuple[np.ndarray, float]:
    """Inverse frequencies and the cos/sin amplitude for a HF ``rope_scaling`` entry (or None).

    The amplitude is mscale(factor, mscale) / mscale(factor, mscale_all_dim) under YaRN (HF
    DeepseekV3YarnRotaryEmbedding), 1 otherwise; it is 1 for DeepSeek-V3 and Kimi K2.
    """
    if not rope_scaling:
        return inv_freq_standard(dim, theta), 1.0
    kind = rope_scaling.get("type", rope_scaling.get("rope_type"))
    factor = float(rope_scaling["factor"])
    if kind == "linear":
        return inv_freq_linear(dim, theta, factor), 1.0
    if kind == "ntk":
        return inv_freq_ntk(dim, theta, factor), 1.0
    if kind == "yarn":
        # Defaults beta_fast=32, beta_slow=1, mscale=1, mscale_all_dim=0 are those of HF
        # DeepseekV3YarnRotaryEmbedding (source: transformers modeling_deepseek_v3).
        inv = inv_freq_yarn(dim, theta, factor=factor, beta_fast=float(rope_scaling.get("beta_fast", 32)),
                            beta_slow=float(rope_scaling.get("beta_slow", 1)),
                            original_max_position_embeddings=int(rope_scaling["original_max_position_embeddings"]))
        amp = yarn_mscale(factor, float(rope_scaling.get("mscale", 1.0))) / \
            yarn_mscale(factor, float(rope_scaling.get("mscale_all_dim", 0.0)))
        return inv, amp
    if kind == "llama3":
        return inv_freq_llama3(dim, theta, factor=factor, low_freq_factor=float(rope_scaling["low_freq_factor"]),
                               high_freq_factor=float(rope_scaling["high_freq_factor"]),
                               original_max_position_embeddings=int(rope_scaling["original_max_position_embeddings"])), 1.0
    raise ValueError(f"unknown rope_scaling type {kind!r}; known: linear, ntk, yarn, llama3")


def inv_freq_lambda(dim: int, theta: float, lam: float) -> np.ndarray:
    """Frequency-scaled variant theta'_i = theta_i * lam^(i/d), i indexing the dim/2 pairs, d = dim/2."""
    half = dim // 2
    return inv_freq_standard(dim, theta) * lam ** (np.arange(half, dtype=np.float64) / half)  # [dim/2]


def decayed_positions(positions: np.ndarray, start: float, slope: float) -> np.ndarray:
    """Optional linear decay for far positions: beyond ``start`` a position advances at ``slope`` (< 1).

    p' = p for p <= start, start + slope*(p - start) after, so far tokens rotate more slowly.
    """
    p = np.asarray(positions, dtype=np.float64)                              # [n]
    return np.where(p <= start, p, start + slope * (p - start))             # [n]


def rope_tables(positions: np.ndarray, inv_freq: np.ndarray, amplitude: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin tables [n, dim/2] for the given (possibly fractional) positions."""
    angles = np.outer(np.asarray(positions, dtype=np.float64), inv_freq)    # [n, dim/2]
    return amplitude * np.cos(angles), amplitude * np.sin(angles)          # [n, dim/2] each


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, *, site: Site | None = None) -> np.ndarray:
    """Rotate interleaved pairs of x [..., n, (H,) d] by position; cos/sin are [n, d/2].

    ``cos``/``sin`` broadcast against x's pair axis; for x [b, n, H, d] pass tables shaped [n, 1, d/2].
    Counted as 3*d FLOPs per rotated vector (per pair: 4 multiplies + 2 adds).
    """
    x0, x1 = x[..., 0::2], x[..., 1::2]                                      # [..., d/2] each
    y = np.empty(np.broadcast_shapes(x.shape), dtype=np.result_type(x, cos))  # [..., d]
    y[..., 0::2] = x0 * cos - x1 * sin
    y[..., 1::2] = x0 * sin + x1 * cos
    if site is not None:
        d = x.shape[-1]
        vectors = x.size // d
        site.record(kind="rope", flops=3 * d * vectors, reads=[("x", x.shape, "activation")],
                    writes=[("y", y.shape, "activation")], vectors=vectors, d=d)
    return y
