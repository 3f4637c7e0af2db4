"""RMSNorm reference kernel (counted: 4*r*d FLOPs, docs/counting.md)."""
from __future__ import annotations

import numpy as np

from archsim.kernels.counting import Site


def rmsnorm(x: np.ndarray, weight: np.ndarray, eps: float, *, site: Site | None = None) -> np.ndarray:
    """y = x / sqrt(mean(x^2) + eps) * weight over the last axis."""
    d = x.shape[-1]
    rows = x.size // d
    ms = np.mean(x * x, axis=-1, keepdims=True)                  # [..., 1]
    y = x / np.sqrt(ms + eps) * weight                            # [..., d]
    if site is not None:
        site.record(kind="norm", flops=4 * rows * d,
                    reads=[("x", x.shape, "activation"), ("weight", weight.shape, "weight")],
                    writes=[("y", y.shape, "activation")], rows=rows, d=d)
    return y
