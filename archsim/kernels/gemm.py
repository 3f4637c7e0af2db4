"""GEMM reference kernels: dense ``x @ w.T`` and per-head batched products (2*m*n*k FLOPs)."""
from __future__ import annotations

import numpy as np

from archsim.kernels.counting import Site


def linear(x: np.ndarray, w: np.ndarray, *, site: Site | None = None) -> np.ndarray:
    """y = x @ w.T with ``w`` in checkpoint layout [out_features, in_features]; x is [..., k]."""
    n, k = w.shape
    m = x.size // k
    y = x @ w.T                                                   # [..., n]
    if site is not None:
        site.record(kind="gemm", flops=2 * m * n * k,
                    reads=[("x", (m, k), "activation"), ("weight", w.shape, "weight")],
                    writes=[("y", (m, n), "activation")], m=m, n=n, k=k)
    return y


def per_head(x: np.ndarray, w: np.ndarray, *, site: Site | None = None) -> np.ndarray:
    """y[..., h, :] = x[..., h, :] @ w[h]: x [..., H, k], w [H, k, n] -> [..., H, n].

    One GEMM per head (MLA's weight absorption): a grouped GEMM of H groups of [m, k] x [k, n].
    """
    heads, k, n = w.shape
    m = x.size // (heads * k)
    y = np.einsum("...hk,hkn->...hn", x, w)                       # [..., H, n]
    if site is not None:
        site.record(kind="grouped_gemm", flops=2 * heads * m * n * k,
                    reads=[("x", (heads * m, k), "activation"), ("weight", w.shape, "weight")],
                    writes=[("y", (heads * m, n), "activation")], groups=heads, n=n, k=k,
                    tokens_total=heads * m, tokens_max=m)
    return y
