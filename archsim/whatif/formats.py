"""Number formats as quantize-dequantize functions on float64 arrays (for small-scale numerics).

- ``round_minifloat``: round to the nearest value of a float format with ``mantissa_bits`` explicit
  mantissa bits, normal exponents down to ``min_exponent`` (subnormals below it) and saturation at
  ``max_value`` (e4m3: 3, -6, 448; e2m1: 1, 0, 6; bf16: 7, -126, 3.39e38; fp16: 10, -14, 65504;
  OCP 8-bit float and MX specs, IEEE 754 / bfloat16).
- ``block_quantize``: FP8 e4m3 with one float scale per block (DeepSeek-V3: 128x128 weight blocks,
  1x128 per-token activation tiles; README_WEIGHTS.md / DSV3-TR sec.3.3), the scale mapping the block's
  absolute maximum onto the format's maximum.
- ``mx_quantize``: OCP Microscaling (MXFP4): 32 consecutive elements share a power-of-two (E8M0) scale
  2^(floor(log2 amax) - emax_element), emax_element = 2 for e2m1 (OCP MX v1.0).
- ``uniform_quantize``: symmetric fixed point with ``bits`` bits per row, scale = row absmax.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, kw_only=True)
class MiniFloat:
    """A small float format's parameters (see ``round_minifloat`` and the module docstring for the sources)."""

    name: str
    mantissa_bits: int
    min_exponent: int
    max_value: float
    max_exponent: int  # exponent of the largest normal value (for MX scales)


E4M3 = MiniFloat(name="e4m3", mantissa_bits=3, min_exponent=-6, max_value=448.0, max_exponent=8)
E2M1 = MiniFloat(name="e2m1", mantissa_bits=1, min_exponent=0, max_value=6.0, max_exponent=2)
BF16 = MiniFloat(name="bf16", mantissa_bits=7, min_exponent=-126, max_value=3.3895313892515355e38, max_exponent=127)
FP16 = MiniFloat(name="fp16", mantissa_bits=10, min_exponent=-14, max_value=65504.0, max_exponent=15)


def round_minifloat(x: np.ndarray, fmt: MiniFloat) -> np.ndarray:
    """Nearest representable value (ties to even via np.rint), saturating at ±max_value."""
    x = np.asarray(x, dtype=np.float64)
    mag = np.minimum(np.abs(x), fmt.max_value)
    with np.errstate(divide="ignore"):
        exp = np.floor(np.log2(np.where(mag > 0, mag, 1.0)))
    exp = np.maximum(exp, fmt.min_exponent)
    step = np.exp2(exp - fmt.mantissa_bits)
    return np.sign(x) * np.minimum(np.rint(mag / step) * step, fmt.max_value)


def _blocks_last2(x: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """View the last two axes as (R/rows, rows, C/cols, cols) blocks after zero padding."""
    *lead, r, c = x.shape
    pr, pc = -r % rows, -c % cols
    padded = np.pad(x, [(0, 0)] * len(lead) + [(0, pr), (0, pc)])
    shaped = padded.reshape(*lead, (r + pr) // rows, rows, (c + pc) // cols, cols)
    return shaped, (r, c)


def block_quantize(x: np.ndarray, fmt: MiniFloat, block: tuple[int, int]) -> np.ndarray:
    """Quantize-dequantize with one scale per ``block`` of the last two axes (absmax -> fmt.max_value)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        return block_quantize(x[None, :], fmt, block)[0]
    shaped, (r, c) = _blocks_last2(x, *block)
    amax = np.max(np.abs(shaped), axis=(-3, -1), keepdims=True)
    scale = np.where(amax > 0, amax / fmt.max_value, 1.0)
    q = round_minifloat(shaped / scale, fmt) * scale
    lead = x.shape[:-2]
    return q.reshape(*lead, shaped.shape[-4] * block[0], shaped.shape[-2] * block[1])[..., :r, :c]


def mx_quantize(x: np.ndarray, fmt: MiniFloat, block: int = 32) -> np.ndarray:
    """OCP MX quantize-dequantize along the last axis in blocks of ``block`` with power-of-two scales."""
    x = np.asarray(x, dtype=np.float64)
    *lead, k = x.shape
    pad = -k % block
    xb = np.pad(x, [(0, 0)] * len(lead) + [(0, pad)]).reshape(*lead, (k + pad) // block, block)
    amax = np.max(np.abs(xb), axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        shared = np.floor(np.log2(np.where(amax > 0, amax, 1.0))) - fmt.max_exponent
    scale = np.exp2(shared)
    q = round_minifloat(xb / scale, fmt) * scale
    return q.reshape(*lead, k + pad)[..., :k]


def uniform_quantize(x: np.ndarray, bits: float, axis: int = -1) -> np.ndarray:
    """Symmetric fixed point: 2^(bits-1) - 1 levels per sign, scale = absmax along ``axis``."""
    x = np.asarray(x, dtype=np.float64)
    levels = 2.0 ** (bits - 1) - 1
    amax = np.max(np.abs(x), axis=axis, keepdims=True)
    scale = np.where(amax > 0, amax / levels, 1.0)
    return np.rint(x / scale) * scale
