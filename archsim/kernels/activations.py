"""SiLU and SwiGLU reference kernels (SwiGLU counted as 5 FLOPs per element, gpt-oss's clamped SwiGLU as 7,
docs/counting.md)."""
from __future__ import annotations

import numpy as np

from archsim.kernels.counting import Site


def silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x), computed stably for large |x|."""
    return x * sigmoid(x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow for large negative x."""
    e = np.exp(-np.abs(x))                                        # same shape as x
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def swiglu(gate: np.ndarray, up: np.ndarray, *, site: Site | None = None) -> np.ndarray:
    """silu(gate) * up, elementwise."""
    y = silu(gate) * up                                           # same shape as gate
    if site is not None:
        site.record(kind="elementwise", flops=5 * y.size,
                    reads=[("gate", gate.shape, "activation"), ("up", up.shape, "activation")],
                    writes=[("y", y.shape, "activation")], elements=y.size)
    return y


def swiglu_clamped(gate: np.ndarray, up: np.ndarray, *, limit: float, alpha: float,
                   site: Site | None = None) -> np.ndarray:
    """gpt-oss's gated activation (transformers GptOssExperts._apply_gate): gate clamped above at ``limit``,
    up clamped to [-limit, limit], then ``(up + 1) * gate * sigmoid(alpha * gate)``. FLOPs per element: alpha *
    gate 1, sigmoid 3, times gate 1, up + 1 1, product 1 = 7 (the clamps are comparisons, 0 FLOPs)."""
    g = np.minimum(gate, limit)                                   # same shape as gate
    u = np.clip(up, -limit, limit)                                # same shape as up
    y = (u + 1) * g * sigmoid(alpha * g)                          # same shape as gate
    if site is not None:
        site.record(kind="elementwise", flops=7 * y.size,
                    reads=[("gate", gate.shape, "activation"), ("up", up.shape, "activation")],
                    writes=[("y", y.shape, "activation")], elements=y.size)
    return y


def residual_add(x: np.ndarray, r: np.ndarray, *, site: Site | None = None) -> np.ndarray:
    """x + r (counted as n FLOPs)."""
    y = x + r                                                     # same shape as x
    if site is not None:
        site.record(kind="elementwise", flops=y.size,
                    reads=[("x", x.shape, "activation"), ("residual", r.shape, "activation")],
                    writes=[("y", y.shape, "activation")], elements=y.size)
    return y
