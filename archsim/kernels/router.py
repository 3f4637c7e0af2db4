"""MoE routers: DeepSeek's group-limited top-k for each HF ``topk_method``, softmax top-k with the
Switch/GShard aux loss, and DeepSeek's auxiliary-loss-free bias update.

``moe_router`` follows the config's ``topk_method`` as the published modeling code does:

* ``greedy`` and ``group_limited_greedy``: DeepSeek-V2 ``MoEGate.forward`` (HF modeling_deepseek.py, copied
  in kvcache-ai/ktransformers ktransformers/models/modeling_deepseek.py) [V]. A group's score is its
  single highest expert score (``scores.view(n, n_group, -1).max(dim=-1)``); the weights are the chosen
  scores, either normalised to sum 1 (``top_k > 1 and norm_topk_prob``) *or* times routed_scaling_factor,
  never both (the ``else`` branch of "norm gate to sum 1").
* ``noaux_tc``: DeepSeek-V3 ``MoEGate.forward`` (HF modeling_deepseek.py, copied in kvcache-ai/ktransformers
  ktransformers/models/modeling_deepseek_v3.py) [V]. Selection on scores + e_score_correction_bias; a
  group's score is the sum of its top-2 biased scores; the weights are the *unbiased* scores of the
  chosen experts, normalised when ``top_k > 1 and norm_topk_prob``, then always times
  routed_scaling_factor ("must multiply the scaling factor").
* ``None`` (not declared): deepseek-ai/DeepSeek-V3 inference/model.py ``Gate.forward`` without a bias [V]:
  ``group_scores = scores.amax(dim=-1)`` when n_group > 1 (as group_limited_greedy), plain top-k
  otherwise; weights normalised as configured, then scaled (as noaux_tc).

Scores are sigmoid or softmax of the logits per ``scoring_func``, independent of the method (inference/
model.py applies either with either group rule; the HF V2 MoEGate implements softmax, the V3 one sigmoid).
Experts of dropped groups are masked with -inf (inference/model.py) rather than HF's 0.0, which a
negative biased score could lose to; config validation keeps k <= topk_group * experts per group.

The rules themselves (methods, group score, normalise/scale, correction bias, FLOPs) live in
``archsim.routing``, which config and graph import too.
"""
from __future__ import annotations

import numpy as np

from archsim.kernels.activations import sigmoid
from archsim.kernels.counting import Site
from archsim.routing import (SCORING_FUNCS, TOPK_SOFTMAX, group_rule, router_flops, uses_correction_bias,
                             weight_rule)

# Added to the sum of the chosen weights before dividing (both HF MoEGates: ``+ 1e-20``) [V]
NORM_EPS = 1e-20


def topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries along the last axis, largest first (ties: lower index first)."""
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]              # [..., k]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)                          # [T, E]
    p = np.exp(z)                                                             # [T, E]
    return p / p.sum(axis=-1, keepdims=True)                                  # [T, E]


def moe_router(logits: np.ndarray, bias: np.ndarray | None, *, top_k: int, topk_method: str | None,
               scoring_func: str = "sigmoid", n_group: int = 1, topk_group: int = 1,
               norm_topk_prob: bool = True, routed_scaling_factor: float | None = 1.0,
               site: Site | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(weights [T, k], expert indices [T, k]) from router logits [T, E], per ``topk_method`` (module doc).

    ``bias`` (e_score_correction_bias [E]) exists only under noaux_tc; it steers selection, not weights.
    ``routed_scaling_factor`` None is the Mixtral / Qwen3-MoE router (transformers MixtralSparseMoeBlock,
    Qwen3MoeSparseMoeBlock): softmax, top-k, divided by their sum when norm_topk_prob (at any k), no scaling.
    """
    scaled = routed_scaling_factor is not None
    if scoring_func not in SCORING_FUNCS:
        raise ValueError(f"scoring_func must be one of {SCORING_FUNCS}, got {scoring_func!r}")
    if scoring_func == TOPK_SOFTMAX:
        return _topk_softmax(logits, top_k=top_k, site=site)
    rule = group_rule(topk_method, n_group)
    if bias is not None and not uses_correction_bias(topk_method):
        raise ValueError(f"e_score_correction_bias is a noaux_tc parameter, topk_method is {topk_method!r}")
    t, e = logits.shape
    scores = sigmoid(logits) if scoring_func == "sigmoid" else _softmax(logits)  # [T, E] unbiased
    choice = scores + bias if bias is not None else scores                   # [T, E] selection only
    if rule is not None:
        grouped = choice.reshape(t, n_group, e // n_group)                   # [T, G, E/G]
        if rule == "top2_sum":
            group_scores = np.sort(grouped, axis=-1)[..., -2:].sum(axis=-1)  # [T, G]
        else:
            group_scores = grouped.max(axis=-1)                               # [T, G]
        keep = topk_indices(group_scores, topk_group)                        # [T, topk_group]
        mask = np.zeros((t, n_group), dtype=bool)                             # [T, G]
        np.put_along_axis(mask, keep, True, axis=1)
        choice = np.where(np.repeat(mask, e // n_group, axis=1), choice, -np.inf)  # [T, E]
    idx = topk_indices(choice, top_k)                                         # [T, k]
    weights = np.take_along_axis(scores, idx, axis=1)                        # [T, k]
    normalise, scale = weight_rule(topk_method, top_k, norm_topk_prob, scaled=scaled)
    if normalise:
        eps = NORM_EPS if scaled else 0.0  # the Mixtral / Qwen3-MoE blocks divide by the plain sum
        weights = weights / (weights.sum(axis=1, keepdims=True) + eps)      # [T, k]
    if scale:
        weights = weights * routed_scaling_factor                             # [T, k]
    if site is not None:
        flops = router_flops(tokens=t, experts=e, top_k=top_k, topk_method=topk_method,
                             scoring_func=scoring_func, n_group=n_group, norm_topk_prob=norm_topk_prob,
                             bias=bias is not None, scaled=scaled)
        reads = [("logits", logits.shape, "activation")]
        if bias is not None:
            reads.append(("e_score_correction_bias", bias.shape, "weight"))
        site.record(kind="router", flops=flops, reads=reads,
                    writes=[("topk_weight", weights.shape, "output"), ("topk_idx", idx.shape, "output")],
                    tokens=t, experts=e, top_k=top_k, n_group=n_group, topk_group=topk_group)
    return weights, idx


def _topk_softmax(logits: np.ndarray, *, top_k: int, site: Site | None) -> tuple[np.ndarray, np.ndarray]:
    """gpt-oss (transformers GptOssTopKRouter): the top-k logits, then a softmax over those k (the weights
    softmax -> top-k -> renormalise gives, at 5 FLOPs per chosen logit instead of per expert)."""
    t, e = logits.shape
    idx = topk_indices(logits, top_k)                                         # [T, k]
    weights = _softmax(np.take_along_axis(logits, idx, axis=1))              # [T, k]
    if site is not None:
        site.record(kind="router", flops=router_flops(tokens=t, experts=e, top_k=top_k, topk_method=None,
                                                      scoring_func=TOPK_SOFTMAX, n_group=1, norm_topk_prob=False,
                                                      bias=False, scaled=False),
                    reads=[("logits", logits.shape, "activation")],
                    writes=[("topk_weight", weights.shape, "output"), ("topk_idx", idx.shape, "output")],
                    tokens=t, experts=e, top_k=top_k, n_group=1, topk_group=1)
    return weights, idx


def softmax_router(logits: np.ndarray, *, top_k: int,
                   site: Site | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights [T, k], indices [T, k], probs [T, E]): softmax over experts, top-k of the probs
    (Switch/GShard; weights are the chosen probabilities, not renormalised)."""
    t, e = logits.shape
    probs = _softmax(logits)                                                  # [T, E]
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
