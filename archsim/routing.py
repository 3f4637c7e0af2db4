"""The MoE routing rules, in one place: which ``topk_method`` values exist, which carry the score-correction
bias, how a group is scored, whether the chosen weights are normalised and scaled, and what the router
costs in FLOPs.

It sits at the bottom layer (next to units/dtypes/errors, docs/architecture.md) so that ``config`` (validation,
parameter count), ``graph`` (the router op's FLOPs) and ``kernels`` (the executed router and tiny model)
all import the same rules; tests/test_execute.py checks graph and executed model agree for every method.
Pure integer/boolean arithmetic, no numpy.

HF ``topk_method`` values [S]: DeepSeek-V2 modeling_deepseek.py ``MoEGate`` has ``"greedy"`` (top-k over all
experts) and ``"group_limited_greedy"`` (top-k within the topk_group best of n_group groups, a group scored
by its single best expert); DeepSeek-V3 adds ``"noaux_tc"`` (group-limited, selection on scores +
e_score_correction_bias, a group scored by the sum of its top-2 biased scores). ``None`` (key not declared,
as in Mixtral/Qwen-style configs): no correction bias; with n_group > 1 a group is scored by its best
expert and the topk_group best groups are kept, with n_group = 1 it is plain top-k over all experts
(deepseek-ai/DeepSeek-V3 inference/model.py ``Gate.forward`` without a bias: ``group_scores =
scores.amax(dim=-1)`` when ``n_groups > 1``) [V]. archsim.kernels.router documents the numerics.
"""
from __future__ import annotations

TOPK_METHODS = ("greedy", "group_limited_greedy", "noaux_tc")
# scoring_func values: sigmoid or softmax scores over all experts (DeepSeek, Mixtral, Qwen-MoE), or gpt-oss's
# top-k of the raw logits followed by a softmax over the k chosen ones (transformers GptOssTopKRouter), whose
# weights equal softmax -> top-k -> renormalise but whose FLOPs scale with k, not E
TOPK_SOFTMAX = "topk_softmax"
SCORING_FUNCS = ("sigmoid", "softmax", TOPK_SOFTMAX)


def check_topk_method(topk_method: str | None) -> None:
    """ValueError unless ``topk_method`` is None or one of TOPK_METHODS (config turns this into a ConfigError
    before any graph or kernel sees the value)."""
    if topk_method is not None and topk_method not in TOPK_METHODS:
        raise ValueError(f"topk_method must be None or one of {TOPK_METHODS}, got {topk_method!r}")


def uses_correction_bias(topk_method: str | None) -> bool:
    """The router's score-correction bias: a parameter [E] per MoE layer, added to the scores for expert
    selection, that exists only with DeepSeek-V3's ``noaux_tc`` routing (its MoEGate creates
    ``e_score_correction_bias`` only then). Graph, parameter count, weight bytes and the executed tiny model
    all ask this function."""
    return topk_method == "noaux_tc"


def group_rule(topk_method: str | None, n_group: int) -> str | None:
    """How a group is scored before the topk_group best are kept: "top2_sum" (noaux_tc), "max"
    (group_limited_greedy, or no method declared), None (greedy, or a single group: plain top-k)."""
    check_topk_method(topk_method)
    if topk_method == "greedy" or n_group <= 1:
        return None
    return "top2_sum" if topk_method == "noaux_tc" else "max"


def weight_rule(topk_method: str | None, top_k: int, norm_topk_prob: bool, *,
                scaled: bool = True) -> tuple[bool, bool]:
    """(normalise, scale): whether the chosen weights are divided by their sum and whether they are
    multiplied by routed_scaling_factor. The V2 MoEGate (greedy, group_limited_greedy) scales only
    when it does not normalise; the V3 one (noaux_tc) and inference/model.py (undeclared) always scale.
    No normalisation at k = 1 (both MoEGates: ``top_k > 1 and norm_topk_prob``).
    ``scaled=False`` (a model whose routed_scaling_factor is None) is the softmax-top-k router of transformers'
    MixtralSparseMoeBlock / Qwen3MoeSparseMoeBlock: normalised whenever norm_topk_prob is set, never scaled."""
    if not scaled:
        return bool(norm_topk_prob), False
    normalise = top_k > 1 and bool(norm_topk_prob)
    scale = topk_method in ("noaux_tc", None) or not normalise
    return normalise, scale


def router_flops(*, tokens: int, experts: int, top_k: int, topk_method: str | None, scoring_func: str,
                 n_group: int, norm_topk_prob: bool, bias: bool, scaled: bool = True) -> int:
    """docs/counting.md: sigmoid 3 or softmax 5 per score, + 1 per score for the correction bias,
    + 1 per group for a top-2 sum (a max is comparisons only), + 2k per token to normalise (sum with
    its epsilon, divide), + k per token to scale. ``topk_softmax`` (gpt-oss GptOssTopKRouter: top-k of the
    logits, then a softmax over those k) scores only the k chosen logits: 5 per chosen logit."""
    t, e = tokens, experts
    if scoring_func == TOPK_SOFTMAX:  # the softmax over k sums to 1: no normalising, no scaling step
        return 5 * t * top_k + (t * e if bias else 0)
    normalise, scale = weight_rule(topk_method, top_k, norm_topk_prob, scaled=scaled)
    return ((3 if scoring_func == "sigmoid" else 5) * t * e + (t * e if bias else 0)
            + (t * n_group if group_rule(topk_method, n_group) == "top2_sum" else 0)
            + (2 * top_k * t if normalise else 0) + (top_k * t if scale else 0))
