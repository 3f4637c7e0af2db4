"""Mixture-of-experts block: router gate, grouped routed experts (SwiGLU), shared experts, combine.

Expert weights are stacked per projection in checkpoint layout: gate_up [E, 2I, h] (the checkpoint's
gate_proj rows then up_proj rows), down [E, h, I];
shared experts are one SwiGLU MLP of width n_shared_experts * moe_intermediate_size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from archsim.kernels.activations import swiglu, swiglu_clamped
from archsim.kernels.counting import Site, sub_site
from archsim.kernels.gemm import linear
from archsim.kernels.router import expert_counts, moe_router


def mlp(x: np.ndarray, w: Mapping[str, np.ndarray], *, site: Site | None = None) -> np.ndarray:
    """down(silu(gate(x)) * up(x)) with weights ``gate_proj``, ``up_proj``, ``down_proj``."""
    g = linear(x, w["gate_proj"], site=sub_site(site, "gate_proj"))             # [..., I]
    u = linear(x, w["up_proj"], site=sub_site(site, "up_proj"))                 # [..., I]
    a = swiglu(g, u, site=sub_site(site, "act"))                                # [..., I]
    return linear(a, w["down_proj"], site=sub_site(site, "down_proj"))           # [..., h]


def _grouped(xs: list[np.ndarray], w: np.ndarray, used: np.ndarray, site: Site | None,
             bias: np.ndarray | None = None) -> list[np.ndarray]:
    """One GEMM per expert with tokens: xs[g] [m_g, k] @ w[g].T (+ bias[g]) -> [m_g, n]; counted as grouped_gemm
    (a bias [E, n], gpt-oss: + n FLOPs per row, the used experts' bias rows read)."""
    ys = [x @ w[g].T for g, x in zip(used, xs)]                              # [m_g, n] each
    if bias is not None:
        ys = [y + bias[g] for g, y in zip(used, ys)]                          # [m_g, n] each
    if site is not None:
        _, n, k = w.shape
        ms = [x.shape[0] for x in xs]
        total = sum(ms)
        extra = [("bias", (len(used), n), "weight")] if bias is not None else []
        site.record(kind="grouped_gemm", flops=sum(2 * m * n * k for m in ms) + (total * n if bias is not None else 0),
                    reads=[("x", (total, k), "activation"), ("weight", (len(used), n, k), "weight")] + extra,
                    writes=[("y", (total, n), "activation")],
                    groups=len(used), n=n, k=k, tokens_total=total, tokens_max=max(ms, default=0))
    return ys


@dataclass(frozen=True, kw_only=True)
class Dispatch:
    """Which tokens go to which expert: counts [E], experts with tokens, and per expert the
    (token index, slot) pairs that chose it."""

    counts: np.ndarray
    used: np.ndarray
    rows: tuple[tuple[np.ndarray, np.ndarray], ...]


def dispatch(indices: np.ndarray, n_experts: int) -> Dispatch:
    """Group the router's choices [T, k] by expert (a permutation: 0 FLOPs, not recorded)."""
    counts = expert_counts(indices, n_experts)                                # [E]
    used = np.flatnonzero(counts)                                             # [G] experts with tokens
    return Dispatch(counts=counts, used=used, rows=tuple(np.nonzero(indices == g) for g in used))


def experts_gate_up(x: np.ndarray, d: Dispatch, w_gate_up: np.ndarray, *, bias: np.ndarray | None = None,
                    site: Site | None = None) -> list[np.ndarray]:
    """Fused gate+up grouped GEMM: per used expert [m_g, h] @ [2I, h].T (+ bias [2I]) -> [m_g, 2I]."""
    return _grouped([x[tok] for tok, _ in d.rows], w_gate_up, d.used, site, bias)


def experts_act(gate_up: list[np.ndarray], *, clamp: tuple[float, float] | None = None,
                site: Site | None = None) -> list[np.ndarray]:
    """SwiGLU on each expert's [m_g, 2I] (gate half, up half) -> [m_g, I]; ``clamp`` (limit, alpha): gpt-oss's
    clamped variant (``swiglu_clamped``, 7 FLOPs per element instead of 5)."""
    inter = gate_up[0].shape[1] // 2 if gate_up else 0
    if clamp is None:
        acts = [swiglu(gu[:, :inter], gu[:, inter:]) for gu in gate_up]       # [m_g, I] each
    else:
        acts = [swiglu_clamped(gu[:, :inter], gu[:, inter:], limit=clamp[0], alpha=clamp[1])
                for gu in gate_up]                                            # [m_g, I] each
    if site is not None:
        routed = sum(a.shape[0] for a in acts)
        site.record(kind="elementwise", flops=(5 if clamp is None else 7) * routed * inter,
                    reads=[("gate", (routed, inter), "activation"), ("up", (routed, inter), "activation")],
                    writes=[("y", (routed, inter), "activation")], elements=routed * inter)
    return acts


def experts_down(acts: list[np.ndarray], d: Dispatch, w_down: np.ndarray, *, bias: np.ndarray | None = None,
                 site: Site | None = None) -> list[np.ndarray]:
    """Down grouped GEMM: per used expert [m_g, I] @ [h, I].T (+ bias [h]) -> [m_g, h]."""
    return _grouped(acts, w_down, d.used, site, bias)


def combine(outs: list[np.ndarray], d: Dispatch, weights: np.ndarray, shared: np.ndarray | None, *,
            hidden: int, site: Site | None = None) -> np.ndarray:
    """shared + sum over a token's k experts of weight * expert output: 2*k*h*T FLOPs.

    ``shared`` is the shared-expert output [T, h], or None (accumulate onto zeros, no operand).
    """
    t, k = weights.shape
    y = np.zeros((t, hidden), dtype=np.result_type(weights, *outs)) if shared is None else shared.copy()  # [T, h]
    for (tok, slot), o in zip(d.rows, outs):
        y[tok] += weights[tok, slot][:, None] * o                             # [m_g, h] accumulate
    if site is not None:
        reads = [("expert_out", (t * k, hidden), "activation"), ("topk_weight", weights.shape, "activation")]
        if shared is not None:
            reads.append(("shared_out", (t, hidden), "activation"))
        site.record(kind="elementwise", flops=2 * k * hidden * t, reads=reads,
                    writes=[("y", (t, hidden), "activation")], tokens=t, top_k=k, hidden=hidden)
    return y


def routed_experts(x: np.ndarray, indices: np.ndarray, weights: np.ndarray, w: Mapping[str, np.ndarray],
                   base: np.ndarray | None, *, site: Site | None = None, combine_site: Site | None = None,
                   clamp: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """base + sum_k weights[t, k] * expert_{indices[t, k]}(x[t]); returns (y [T, h], counts [E]).

    x [T, h]; w holds stacked ``gate_up_proj`` [E, 2I, h] (gate rows then up rows, one fused GEMM as
    inference kernels run it) and ``down_proj`` [E, h, I]; ``base`` is the shared-expert output (or
    None). Only experts that received tokens run, and only their weights count as read. Optional
    ``gate_up_proj_bias`` [E, 2I] and ``down_proj_bias`` [E, h] (gpt-oss) and ``clamp`` (its clamped SwiGLU).
    """
    d = dispatch(indices, w["gate_up_proj"].shape[0])
    gus = experts_gate_up(x, d, w["gate_up_proj"], bias=w.get("gate_up_proj_bias"),
                          site=sub_site(site, "gate_up"))                                    # [m_g, 2I] each
    acts = experts_act(gus, clamp=clamp, site=sub_site(site, "act"))                          # [m_g, I] each
    outs = experts_down(acts, d, w["down_proj"], bias=w.get("down_proj_bias"),
                        site=sub_site(site, "down"))                                         # [m_g, h] each
    y = combine(outs, d, weights, base, hidden=x.shape[1], site=combine_site)        # [T, h]
    return y, d.counts


def moe(x: np.ndarray, w: Mapping[str, object], cfg: object, *, bias: np.ndarray | None = None,
        site: Site | None = None) -> tuple[np.ndarray, np.ndarray]:
    """DeepSeek-V3 MoE over x [..., h]: shared experts + routed experts; returns (y, counts [E]).

    ``w`` holds ``gate`` (router weight [E, h]), ``experts`` (stacked dict) and ``shared_experts``
    (MLP dict or absent). ``bias`` is e_score_correction_bias (selection only). ``cfg`` supplies the
    HF fields num_experts_per_tok, topk_method, scoring_func (absent: sigmoid), n_group, topk_group,
    norm_topk_prob, routed_scaling_factor (archsim.kernels.router.moe_router).
    """
    shape = x.shape
    xt = x.reshape(-1, shape[-1])                                            # [T, h]
    logits = linear(xt, w["gate"], bias=w.get("gate_bias"), site=sub_site(site, "gate"))  # [T, E]
    weights, idx = moe_router(
        logits, bias, top_k=cfg.num_experts_per_tok, topk_method=getattr(cfg, "topk_method", None),
        scoring_func=getattr(cfg, "scoring_func", None) or "sigmoid", n_group=getattr(cfg, "n_group", 1) or 1,
        topk_group=getattr(cfg, "topk_group", 1) or 1, norm_topk_prob=bool(cfg.norm_topk_prob),
        routed_scaling_factor=_scaling(cfg), site=sub_site(site, "router"))  # [T, k] x2
    if w.get("shared_experts") is not None:
        base = mlp(xt, w["shared_experts"], site=sub_site(site, "shared_experts"))  # [T, h]
    else:
        base = None
    y, counts = routed_experts(xt, idx, weights, w["experts"], base, site=sub_site(site, "experts"),
                               combine_site=sub_site(site, "combine"), clamp=swiglu_clamp(cfg))  # [T, h]
    return y.reshape(shape), counts


def swiglu_clamp(cfg: object) -> tuple[float, float] | None:
    """(swiglu_limit, swiglu_alpha) of a gpt-oss config, None for the plain SwiGLU."""
    limit = getattr(cfg, "swiglu_limit", None)
    return None if limit is None else (float(limit), float(getattr(cfg, "swiglu_alpha")))


def _scaling(cfg: object) -> float | None:
    """The config's routed_scaling_factor as a float; None (the softmax-top-k router, no scaling) stays None."""
    factor = getattr(cfg, "routed_scaling_factor", 1.0)
    return None if factor is None else float(factor)
