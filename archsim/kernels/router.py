"""MoE routers: DeepSeek sigmoid group-limited top-k, softmax top-k with the Switch/GShard aux loss,
and DeepSeek's auxiliary-loss-free bias update.

Semantics of the sigmoid router follow DeepSeek-V3 inference/model.py ``Gate.forward``: the
correction bias is added for *selection* only; the returned weights are the unbiased sigmoid scores
of the chosen experts, normalised to sum 1 (``norm_topk_prob``) and times ``routed_scaling_factor``.
"""
from __future__ import annotations

import numpy as np

from archsim.kernels.activations import sigmoid
from archsim.kernels.counting import Site


def topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries along the last axis, largest first (ties: lower index first)."""
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]              # [..., k]


def sigmoid_router(logits: np.ndarray, bias: np.ndarray | None, *, top_k: int, n_group: int = 1,
                   topk_group: int = 1, norm_topk_prob: bool = True, routed_scaling_factor: float = 1.0,
                   site: Site | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(weights [T, k], expert indices [T, k]) from router logits [T, E].

    Group-limited: with n_group > 1 a group's score is the sum of its top-2 biased scores; only the
    topk_group best groups stay eligible (DeepSeek-V3 ``noaux_tc``).
    """
    t, e = logits.shape
    scores = sigmoid(logits)                                                  # [T, E] unbiased
    biased = scores + bias if bias is not None else scores                   # [T, E] selection only
    if n_group > 1:
        grouped = biased.reshape(t, n_group, e // n_group)                   # [T, G, E/G]
        top2 = np.sort(grouped, axis=-1)[..., -2:]                           # [T, G, 2]
        group_scores = top2.sum(axis=-1)                                      # [T, G]
        keep = topk_indices(group_scores, topk_group)                        # [T, topk_group]
        mask = np.zeros((t, n_group), dtype=bool)                             # [T, G]
        np.put_along_axis(mask, keep, True, axis=1)
        biased = np.where(np.repeat(mask, e // n_group, axis=1), biased, -np.inf)  # [T, E]
    idx = topk_indices(biased, top_k)                                         # [T, k]
    weights = np.take_along_axis(scores, idx, axis=1)                        # [T, k]
    if norm_topk_prob:
        weights = weights / weights.sum(axis=1, keepdims=True)                # [T, k]
    weights = weights * routed_scaling_factor                                 # [T, k]
    if site is not None:
        flops = 4 * t * e + (t * n_group if n_group > 1 else 0) + (3 if norm_topk_prob else 1) * top_k * t
        reads = [("logits", logits.shape, "activation")]
        if bias is not None:
            reads.append(("e_score_correction_bias", bias.shape, "weight"))
        site.record(kind="router", flops=flops, reads=reads,
                    writes=[("topk_weight", weights.shape, "output"), ("topk_idx", idx.shape, "output")],
                    tokens=t, experts=e, top_k=top_k, n_group=n_group, topk_group=topk_group)
    return weights, idx


def softmax_router(logits: np.ndarray, *, top_k: int,
                   site: Site | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights [T, k], indices [T, k], probs [T, E]): softmax over experts, top-k of the probs
    (Switch/GShard; weights are the chosen probabilities, not renormalised)."""
    t, e = logits.shape
    z = logits - logits.max(axis=1, keepdims=True)                           # [T, E]
    p = np.exp(z)                                                             # [T, E]
    probs = p / p.sum(axis=1, keepdims=True)                                  # [T, E]
    idx = topk_indices(probs, top_k)                                          # [T, k]
    weights = np.take_along_axis(probs, idx, axis=1)                          # [T, k]
    if site is not None:
        site.record(kind="router", flops=5 * t * e, reads=[("logits", logits.shape, "activation")],
                    writes=[("topk_weight", weights.shape, "output"), ("topk_idx", idx.shape, "output")],
                    tokens=t, experts=e, top_k=top_k)
    return weights, idx, probs


def expert_counts(indices: np.ndarray, n_experts: int) -> np.ndarray:
    """Tokens routed to each expert (each of a token's k choices counts once)."""
    return np.bincount(indices.ravel(), minlength=n_experts)                  # [E]


def switch_aux_loss(probs: np.ndarray, indices: np.ndarray, *, alpha: float = 1.0) -> float:
    """alpha * E * sum_i f_i * P_i (Fedus et al. 2021, eq. 4; top-k as in GShard).

    f_i: fraction of the T*k assignments sent to expert i; P_i: mean router probability of expert i.
    Equals alpha when either f or P is uniform, and alpha*E*sum q_i^2 >= alpha when f = P = q.
    """
    t, e = probs.shape
    f = expert_counts(indices, e) / indices.size                              # [E]
    p_mean = probs.mean(axis=0)                                               # [E]
    return float(alpha * e * np.dot(f, p_mean))


def aux_free_bias_update(bias: np.ndarray, load: np.ndarray, gamma: float) -> np.ndarray:
    """DeepSeek-V3's auxiliary-loss-free balancing: b_i += gamma * sign(mean load - load_i)."""
    load = np.asarray(load, dtype=np.float64)                                 # [E]
    return bias + gamma * np.sign(load.mean() - load)                         # [E]
