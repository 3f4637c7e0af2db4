"""GEMM reference kernels: dense ``x @ w.T`` and per-head batched products (2*m*n*k FLOPs)."""
from __future__ import annotations

import numpy as np

from archsim.kernels.counting import Site


def linear(x: np.ndarray, w: np.ndarray, *, bias: np.ndarray | None = None, cached_rows: int = 0,
           site: Site | None = None) -> np.ndarray:
    """y = x @ w.T (+ bias) with ``w`` in checkpoint layout [out_features, in_features]; x is [..., k].

    2*m*n*k FLOPs, plus m*n for the bias add. ``cached_rows`` of x's rows were read from the KV cache (e.g.
    cached latents that kv_b_proj expands again in a prefill chunk); they are reported as a ``kv_cache`` operand.
    """
    n, k = w.shape
    m = x.size // k
    y = x @ w.T                                                   # [..., n]
    if bias is not None:
        y = y + bias                                              # [..., n]
    if site is not None:
        xs = [("x", (m - cached_rows, k), "activation")]
        if cached_rows:
            xs.append(("kv_cache", (cached_rows, k), "cache"))
        ws = [("weight", w.shape, "weight")] + ([("bias", bias.shape, "weight")] if bias is not None else [])
        site.record(kind="gemm", flops=2 * m * n * k + (m * n if bias is not None else 0), reads=xs + ws,
                    writes=[("y", (m, n), "activation")], m=m, n=n, k=k)
    return y


def per_head(x: np.ndarray, w: np.ndarray, *, transpose: bool = False, site: Site | None = None) -> np.ndarray:
    """y[..., h, :] = x[..., h, :] @ w[h] (or @ w[h].T with ``transpose``): x [..., H, k] -> [..., H, n].

    One GEMM per head (MLA's weight absorption): a grouped GEMM of H groups of [m, k] x [k, n].
    ``w`` is given in its storage layout ([H, k, n], or [H, n, k] with ``transpose``), which is the
    layout its block scales are counted in.
    """
    heads = w.shape[0]
    k, n = (w.shape[2], w.shape[1]) if transpose else (w.shape[1], w.shape[2])
    m = x.size // (heads * k)
    y = np.einsum("...hk,hnk->...hn" if transpose else "...hk,hkn->...hn", x, w)   # [..., H, n]
    if site is not None:
        site.record(kind="grouped_gemm", flops=2 * heads * m * n * k,
                    reads=[("x", (heads * m, k), "activation"), ("weight", w.shape, "weight")],
                    writes=[("y", (heads * m, n), "activation")], groups=heads, n=n, k=k,
                    tokens_total=heads * m, tokens_max=m)
    return y
