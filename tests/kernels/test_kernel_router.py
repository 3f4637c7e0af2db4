"""Routers: DeepSeek group-limited top-k per topk_method, Switch aux loss, auxiliary-loss-free balancing.

The group and weight rules are those of the published modeling code (archsim/kernels/router.py cites it):
DeepSeek-V2 MoEGate (greedy, group_limited_greedy): group score = max, normalise *or* scale;
DeepSeek-V3 MoEGate (noaux_tc): group score = sum of the top-2 biased scores, normalise then scale.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.kernels.counting import Counter
from archsim.kernels.router import aux_free_bias_update, expert_counts, moe_router, softmax_router, switch_aux_loss
from archsim.routing import router_flops

METHODS = [None, "greedy", "group_limited_greedy", "noaux_tc"]


def _logit(p):
    p = np.asarray(p, dtype=np.float64)
    return np.log(p / (1 - p))


def sigmoid_router(logits, bias, **kw):
    return moe_router(logits, bias, topk_method="noaux_tc", **kw)


def test_bias_selects_but_does_not_weight():
    scores = np.array([[0.9, 0.8, 0.1, 0.2]])
    bias = np.array([0.0, 0.0, 0.0, 1.0])  # pushes expert 3 into the top-2 for selection only
    w, idx = sigmoid_router(_logit(scores), bias, top_k=2, routed_scaling_factor=2.5)
    assert list(idx[0]) == [3, 0]
    # weights: unbiased scores 0.2 and 0.9 normalised to sum 1, times 2.5
    assert w[0] == pytest.approx([0.2 / 1.1 * 2.5, 0.9 / 1.1 * 2.5], rel=1e-12)
    w, idx = sigmoid_router(_logit(scores), bias, top_k=2, norm_topk_prob=False, routed_scaling_factor=2.5)
    assert w[0] == pytest.approx([0.2 * 2.5, 0.9 * 2.5], rel=1e-12)


# 4 groups of 2 experts. Top-2 sums 0.9001, 1.2, 1.11, 0.2 keep groups 1, 2; maxima 0.9, 0.6, 0.56, 0.1
# keep groups 0, 1. Expert 0 has the best single score: the max rule keeps its group, the top-2 rule drops it.
TWO_RULES = np.array([[0.9, 0.0001, 0.6, 0.6, 0.55, 0.56, 0.1, 0.1]])


def test_noaux_tc_scores_a_group_by_its_top2_sum():
    w, idx = moe_router(_logit(TWO_RULES), None, top_k=3, topk_method="noaux_tc", n_group=4, topk_group=2)
    assert sorted(idx[0]) == [2, 3, 5]
    assert w.sum() == pytest.approx(1.0, rel=1e-14)


@pytest.mark.parametrize("method", [None, "group_limited_greedy"])
def test_group_limited_greedy_scores_a_group_by_its_best_expert(method):
    w, idx = moe_router(_logit(TWO_RULES), None, top_k=3, topk_method=method, n_group=4, topk_group=2)
    assert sorted(idx[0]) == [0, 2, 3]
    # a third group kept would not change the pick (same top-3), one kept group limits it to group 0
    _, idx = moe_router(_logit(TWO_RULES), None, top_k=2, topk_method=method, n_group=4, topk_group=1)
    assert sorted(idx[0]) == [0, 1]


def test_greedy_ignores_groups():
    _, idx = moe_router(_logit(TWO_RULES), None, top_k=3, topk_method="greedy")
    assert sorted(idx[0]) == [0, 2, 3]
    _, idx = moe_router(_logit(TWO_RULES), None, top_k=4, topk_method="greedy")
    assert sorted(idx[0]) == [0, 2, 3, 5]          # 0.56 of group 2 beats 0.55


def test_weight_rules_per_method():
    s = np.array([[0.9, 0.8, 0.1, 0.2]])
    chosen = np.array([0.9, 0.8])
    for method in ("greedy", "group_limited_greedy"):
        # DeepSeek-V2 MoEGate: normalise (no scaling) ...
        w, _ = moe_router(_logit(s), None, top_k=2, topk_method=method, norm_topk_prob=True,
                          routed_scaling_factor=16.0)
        assert w[0] == pytest.approx(chosen / chosen.sum(), rel=1e-12)
        # ... or scale (no normalisation): DeepSeek-V2's own config (norm_topk_prob false, factor 16)
        w, _ = moe_router(_logit(s), None, top_k=2, topk_method=method, norm_topk_prob=False,
                          routed_scaling_factor=16.0)
        assert w[0] == pytest.approx(chosen * 16.0, rel=1e-12)
        # top_k = 1: no normalisation, so the scaling branch
        w, _ = moe_router(_logit(s), None, top_k=1, topk_method=method, norm_topk_prob=True,
                          routed_scaling_factor=16.0)
        assert w[0] == pytest.approx([0.9 * 16.0], rel=1e-12)
    for method in ("noaux_tc", None):
        # DeepSeek-V3 MoEGate: normalise, then always scale
        w, _ = moe_router(_logit(s), None, top_k=2, topk_method=method, norm_topk_prob=True,
                          routed_scaling_factor=2.5)
        assert w[0] == pytest.approx(chosen / chosen.sum() * 2.5, rel=1e-12)
        w, _ = moe_router(_logit(s), None, top_k=1, topk_method=method, norm_topk_prob=True,
                          routed_scaling_factor=2.5)
        assert w[0] == pytest.approx([0.9 * 2.5], rel=1e-12)   # k = 1: not normalised to 1


def test_softmax_scoring_weights_are_the_chosen_probabilities():
    # DeepSeek-V2 style: softmax scores, group_limited_greedy, no normalisation, factor 16
    logits = np.log(np.array([[4.0, 1.0, 2.0, 1.0, 1.0, 1.0]]))     # softmax = [4, 1, 2, 1, 1, 1] / 10
    w, idx = moe_router(logits, None, top_k=2, topk_method="group_limited_greedy", scoring_func="softmax",
                        n_group=3, topk_group=2, norm_topk_prob=False, routed_scaling_factor=16.0)
    # group maxima 0.4, 0.2, 0.1 keep groups 0 and 1: experts 0 (0.4) and 2 (0.2)
    assert list(idx[0]) == [0, 2]
    assert w[0] == pytest.approx([0.4 * 16, 0.2 * 16], rel=1e-12)


def _reference(scores, bias, method, k, n_group, topk_group, norm, rsf):
    """One token at a time, written from the published MoEGate code paths (not from moe_router)."""
    e = scores.shape[1]
    size = e // n_group
    out_w, out_i = [], []
    for s in scores:
        choice = s + (bias if bias is not None else 0.0)
        allowed = list(range(e))
        if method != "greedy" and n_group > 1:
            gs = []
            for g in range(n_group):
                members = sorted(choice[g * size:(g + 1) * size], reverse=True)
                gs.append(members[0] + members[1] if method == "noaux_tc" else members[0])
            kept = sorted(range(n_group), key=lambda g: (-gs[g], g))[:topk_group]
            allowed = [j for j in range(e) if j // size in kept]
        picked = sorted(allowed, key=lambda j: (-choice[j], j))[:k]
        w = np.array([s[j] for j in picked])
        if k > 1 and norm:
            w = w / (w.sum() + 1e-20)
            if method in ("noaux_tc", None):
                w = w * rsf
        else:
            w = w * rsf
        out_w.append(w)
        out_i.append(picked)
    return np.array(out_w), np.array(out_i)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), method=st.sampled_from(METHODS), norm=st.booleans(),
       k=st.integers(1, 4), grouping=st.sampled_from([(1, 1), (4, 2), (4, 1), (2, 1)]))
def test_router_equals_per_token_reference(seed, method, norm, k, grouping):
    rng = np.random.default_rng(seed)
    n_group, topk_group = (1, 1) if method == "greedy" else grouping
    e = 8
    k = min(k, topk_group * e // n_group)
    logits = rng.standard_normal((6, e)) * 2
    bias = rng.standard_normal(e) * 0.1 if method == "noaux_tc" else None
    w, idx = moe_router(logits, bias, top_k=k, topk_method=method, n_group=n_group, topk_group=topk_group,
                        norm_topk_prob=norm, routed_scaling_factor=2.5)
    ref_w, ref_i = _reference(1 / (1 + np.exp(-logits)), bias, method, k, n_group, topk_group, norm, 2.5)
    assert np.array_equal(idx, ref_i)
    assert np.max(np.abs(w - ref_w)) <= 1e-12


def test_bad_method_or_stray_bias_is_an_error():
    x = np.zeros((1, 4))
    with pytest.raises(ValueError, match="topk_method"):
        moe_router(x, None, top_k=2, topk_method="aux_tc")
    with pytest.raises(ValueError, match="noaux_tc"):
        moe_router(x, np.zeros(4), top_k=2, topk_method="group_limited_greedy")
    with pytest.raises(ValueError, match="scoring_func"):
        moe_router(x, None, top_k=2, topk_method=None, scoring_func="tanh")


def test_router_flops_follow_counting_doc():
    rng = np.random.default_rng(0)
    t, e, k, g = 5, 16, 4, 4
    c = Counter()
    moe_router(rng.standard_normal((t, e)), np.zeros(e), top_k=k, topk_method="noaux_tc", n_group=g, topk_group=2,
               site=c.site("r"))
    moe_router(rng.standard_normal((t, e)), np.zeros(e), top_k=k, topk_method="noaux_tc", norm_topk_prob=False,
               site=c.site("r1"))
    moe_router(rng.standard_normal((t, e)), None, top_k=k, topk_method="group_limited_greedy", n_group=g,
               topk_group=2, site=c.site("r2"))
    moe_router(rng.standard_normal((t, e)), None, top_k=k, topk_method="greedy", scoring_func="softmax",
               norm_topk_prob=False, site=c.site("r3"))
    softmax_router(rng.standard_normal((t, e)), top_k=k, site=c.site("s"))
    # sigmoid 3TE + bias TE + top-2 sums T*n_group + (sum, divide) 2kT + scale kT; no groups, no
    # normalisation; a max per group costs no FLOPs and the V2 rule does not scale what it normalises;
    # softmax 5TE + scale kT; Switch softmax 5TE
    assert [r.flops for r in c.records] == [4 * t * e + t * g + 3 * k * t, 4 * t * e + k * t,
                                            3 * t * e + 2 * k * t, 5 * t * e + k * t, 5 * t * e]
    assert router_flops(tokens=t, experts=e, top_k=1, topk_method="noaux_tc", scoring_func="sigmoid",
                        n_group=1, norm_topk_prob=True, bias=True) == 4 * t * e + t   # k = 1: scale only


def test_switch_aux_loss_is_alpha_at_uniform_routing():
    t, e, alpha = 64, 8, 0.01
    w, idx, probs = softmax_router(np.zeros((t, e)), top_k=2)
    assert switch_aux_loss(probs, idx, alpha=alpha) == pytest.approx(alpha, rel=1e-14)  # P uniform
    # f uniform (each expert gets T*k/E assignments), P anything -> still alpha
    idx = np.arange(t * 2).reshape(t, 2) % e
    probs = np.random.default_rng(1).dirichlet(np.ones(e), size=t)
    assert switch_aux_loss(probs, idx, alpha=alpha) == pytest.approx(alpha, rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=20), min_size=2, max_size=12))
def test_switch_aux_loss_minimum_at_uniform(counts):
    # f = P = q with q_i = counts_i / T: loss = E * sum q_i^2 >= 1 (Cauchy-Schwarz), equality iff uniform
    q = np.array(counts, dtype=np.float64) / sum(counts)
    e = len(counts)
    idx = np.repeat(np.arange(e), counts)[:, None]             # T tokens, top-1, f = q
    probs = np.tile(q, (idx.shape[0], 1))                       # every token's probs = q, so P = q
    loss = switch_aux_loss(probs, idx)
    assert loss == pytest.approx(e * np.sum(q * q), rel=1e-12)
    if len(set(counts)) == 1:
        assert loss == pytest.approx(1.0, rel=1e-12)
    else:
        assert loss > 1.0


def test_aux_free_bias_update_lowers_imbalance_on_skewed_router():
    rng = np.random.default_rng(0)
    t, h, e, k, gamma = 256, 16, 16, 2, 0.02
    w_gate = rng.standard_normal((e, h)) / np.sqrt(h)
    skew = np.linspace(2.0, -2.0, e)   # deliberately favours low-index experts
    bias = np.zeros(e)
    ratios = []
    for _ in range(200):
        x = rng.standard_normal((t, h))
        _, idx = sigmoid_router(x @ w_gate.T + skew, bias, top_k=k)
        load = expert_counts(idx, e)
        ratios.append(load.max() / load.mean())
        bias = aux_free_bias_update(bias, load, gamma)
    first, last = np.mean(ratios[:5]), np.mean(ratios[-20:])
    assert first > 3.0            # skewed at the start: the top experts take most tokens
    assert last < 0.5 * first     # balancing at least halves max/mean


def test_bias_update_sign_rule():
    b = aux_free_bias_update(np.zeros(3), np.array([1, 2, 6]), 0.1)  # mean load 3
    assert list(b) == [0.1, 0.1, -0.1]


@pytest.mark.parametrize("method,scoring,norm,k", [
    (None, "sigmoid", True, 4), ("greedy", "softmax", False, 4), ("greedy", "sigmoid", True, 1),
    ("group_limited_greedy", "softmax", False, 4), ("group_limited_greedy", "sigmoid", True, 4),
    ("group_limited_greedy", "softmax", True, 1), ("noaux_tc", "sigmoid", True, 1), ("noaux_tc", "softmax", False, 4)])
def test_graph_and_executed_router_agree_per_method(method, scoring, norm, k):
    """The graph's router FLOPs (archsim/graph/ops.py) equal what the executed tiny model counts, for
    each method, scoring function, normalisation and k = 1."""
    from archsim.config.model import model_from_dict
    from archsim.execute import counts_match, execute_decode
    from archsim.graph.precision import precision_from_names
    cfg = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, q_lora_rank=32, kv_lora_rank=32,
               qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, intermediate_size=96,
               moe_intermediate_size=24, n_routed_experts=16, n_shared_experts=1, num_experts_per_tok=k,
               first_k_dense_replace=1, n_group=1 if method == "greedy" else 4, topk_group=1 if method == "greedy"
               else 2, topk_method=method, scoring_func=scoring, norm_topk_prob=norm, routed_scaling_factor=2.5,
               vocab_size=128, rope_theta=10000.0, rms_norm_eps=1e-6)
    ex = execute_decode(model_from_dict(cfg), batch=3, context=4, precision=precision_from_names("bf16", "bf16", "bf16"))
    assert ex.mismatches() == [] and counts_match(ex)
    rec = next(r for r in ex.counter.records if r.name == "layers.1.mlp.router")
    t, e = 3, 16
    assert rec.flops == router_flops(tokens=t, experts=e, top_k=k, topk_method=method, scoring_func=scoring,
                                     n_group=cfg["n_group"], norm_topk_prob=norm, bias=method == "noaux_tc")
    for counts in ex.expert_counts.values():          # all T*k assignments reached the experts
        assert counts.sum() == t * k


def test_gpt_oss_topk_softmax_router_weights_and_flops():
    """gpt-oss (GptOssTopKRouter): top-k of the logits, softmax over those k. Its weights are softmax over all
    experts, top-k, renormalised (the Mixtral rule); its FLOPs are 5 per chosen logit, not 5 per expert + 2k."""
    from archsim.kernels.counting import Counter
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((7, 32))
    counter = Counter()
    w, idx = moe_router(logits, None, top_k=4, topk_method=None, scoring_func="topk_softmax",
                        norm_topk_prob=False, routed_scaling_factor=None, site=counter.site("r"))
    w_mix, idx_mix = moe_router(logits, None, top_k=4, topk_method=None, scoring_func="softmax",
                                norm_topk_prob=True, routed_scaling_factor=None)
    assert np.array_equal(idx, idx_mix) and np.abs(w - w_mix).max() < 1e-15
    chosen = np.take_along_axis(logits, idx, axis=1)
    by_hand = np.exp(chosen) / np.exp(chosen).sum(axis=1, keepdims=True)
    assert np.abs(w - by_hand).max() < 1e-15 and np.allclose(w.sum(axis=1), 1)
    assert counter.records[0].flops == 5 * 7 * 4
