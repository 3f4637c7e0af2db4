"""Mixture-of-experts block: router gate, grouped routed experts (SwiGLU), shared experts, combine.

Expert weights are stacked per projection in checkpoint layout: gate_up [E, 2I, h] (the checkpoint's
gate_proj rows then up_proj rows), down [E, h, I];
shared experts are one SwiGLU MLP of width n_shared_experts * moe_intermediate_size.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from archsim.kernels.activations import swiglu
from archsim.kernels.counting import Site
from archsim.kernels.gemm import linear
from archsim.kernels.router import expert_counts, sigmoid_router


def _sub(site: Site | None, name: str) -> Site | None:
    return None if site is None else site.child(name)


def mlp(x: np.ndarray, w: Mapping[str, np.ndarray], *, site: Site | None = None) -> np.ndarray:
    """down(silu(gate(x)) * up(x)) with weights ``gate_proj``, ``up_proj``, ``down_proj``."""
    g = linear(x, w["gate_proj"], site=_sub(site, "gate_proj"))             # [..., I]
    u = linear(x, w["up_proj"], site=_sub(site, "up_proj"))                 # [..., I]
    a = swiglu(g, u, site=_sub(site, "act"))                                # [..., I]
    return linear(a, w["down_proj"], site=_sub(site, "down_proj"))           # [..., h]


def _grouped(xs: list[np.ndarray], w: np.ndarray, used: np.ndarray, site: Site | None) -> list[np.ndarray]:
    """One GEMM per expert with tokens: xs[g] [m_g, k] @ w[g].T -> [m_g, n]; counted as grouped_gemm."""
    ys = [x @ w[g].T for g, x in zip(used, xs)]                              # [m_g, n] each
    if site is not None:
        _, n, k = w.shape
        ms = [x.shape[0] for x in xs]
        total = sum(ms)
        site.record(kind="grouped_gemm", flops=sum(2 * m * n * k for m in ms),
                    reads=[("x", (total, k), "activation"), ("weight", (len(used), n, k), "weight")],
                    writes=[("y", (total, n), "activation")],
                    groups=len(used), n=n, k=k, tokens_total=total, tokens_max=max(ms, default=0))
    return ys


def routed_experts(x: np.ndarray, indices: np.ndarray, weights: np.ndarray, w: Mapping[str, np.ndarray],
                   base: np.ndarray | None, *, site: Site | None = None) -> tuple[np.ndarray, np.ndarray]:
    """base + sum_k weights[t, k] * expert_{indices[t, k]}(x[t]); returns (y [T, h], counts [E]).

    x [T, h]; w holds stacked ``gate_up_proj`` [E, 2I, h] (gate rows then up rows, one fused GEMM as
    inference kernels run it) and ``down_proj`` [E, h, I]; ``base`` is the shared-expert output (or
    None). Only experts that received tokens run, and only their weights count as read.
    """
    t, h = x.shape
    e, two_i, _ = w["gate_up_proj"].shape
    inter = two_i // 2
    counts = expert_counts(indices, e)                                        # [E]
    used = np.flatnonzero(counts)                                             # [G] experts with tokens
    rows = [np.nonzero(indices == g) for g in used]                           # (token idx, slot) per expert
    xs = [x[tok] for tok, _ in rows]                                          # [m_g, h] each
    gus = _grouped(xs, w["gate_up_proj"], used, _sub(site, "gate_up"))       # [m_g, 2I] each
    acts = [swiglu(gu[:, :inter], gu[:, inter:]) for gu in gus]               # [m_g, I] each
    routed = int(counts.sum())
    if site is not None:
        site.child("act").record(kind="elementwise", flops=5 * routed * inter,
                                 reads=[("gate", (routed, inter), "activation"), ("up", (routed, inter), "activation")],
                                 writes=[("y", (routed, inter), "activation")], elements=routed * inter)
    outs = _grouped(acts, w["down_proj"], used, _sub(site, "down"))          # [m_g, h] each
    y = np.zeros_like(x) if base is None else base.copy()                    # [T, h]
    for (tok, slot), o in zip(rows, outs):
        y[tok] += weights[tok, slot][:, None] * o                             # [m_g, h] accumulate
    return y, counts


def _record_combine(site: Site | None, t: int, k: int, h: int, shared: bool) -> None:
    """Weight each of the k expert outputs and accumulate onto the shared output: 2*k*h*T FLOPs."""
    if site is None:
        return
    reads = [("expert_out", (t * k, h), "activation"), ("topk_weight", (t, k), "activation")]
    if shared:
        reads.append(("shared_out", (t, h), "activation"))
    site.record(kind="elementwise", flops=2 * k * h * t, reads=reads, writes=[("y", (t, h), "activation")],
                tokens=t, top_k=k, hidden=h)


def moe(x: np.ndarray, w: Mapping[str, object], cfg: object, *, bias: np.ndarray | None = None,
        site: Site | None = None) -> tuple[np.ndarray, np.ndarray]:
    """DeepSeek-V3 MoE over x [..., h]: shared experts + routed experts; returns (y, counts [E]).

    ``w`` holds ``gate`` (router weight [E, h]), ``experts`` (stacked dict) and ``shared_experts``
    (MLP dict or absent). ``bias`` is e_score_correction_bias (selection only). ``cfg`` supplies the
    HF fields num_experts_per_tok, n_group, topk_group, norm_topk_prob, routed_scaling_factor.
    """
    shape = x.shape
    xt = x.reshape(-1, shape[-1])                                            # [T, h]
    logits = linear(xt, w["gate"], site=_sub(site, "gate"))                  # [T, E]
    weights, idx = sigmoid_router(
        logits, bias, top_k=cfg.num_experts_per_tok, n_group=getattr(cfg, "n_group", 1) or 1,
        topk_group=getattr(cfg, "topk_group", 1) or 1, norm_topk_prob=bool(cfg.norm_topk_prob),
        routed_scaling_factor=float(cfg.routed_scaling_factor), site=_sub(site, "router"))  # [T, k] x2
    if w.get("shared_experts") is not None:
        base = mlp(xt, w["shared_experts"], site=_sub(site, "shared_experts"))  # [T, h]
    else:
        base = None
    y, counts = routed_experts(xt, idx, weights, w["experts"], base, site=_sub(site, "experts"))  # [T, h]
    _record_combine(_sub(site, "combine"), xt.shape[0], idx.shape[1], xt.shape[1], base is not None)
    return y.reshape(shape), counts
