"""Routers: DeepSeek sigmoid group-limited top-k, Switch aux loss, auxiliary-loss-free balancing."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.kernels.counting import Counter
from archsim.kernels.router import (aux_free_bias_update, expert_counts, sigmoid_router, softmax_router,
                                    switch_aux_loss)


def _logit(p):
    p = np.asarray(p, dtype=np.float64)
    return np.log(p / (1 - p))


def test_bias_selects_but_does_not_weight():
    scores = np.array([[0.9, 0.8, 0.1, 0.2]])
    bias = np.array([0.0, 0.0, 0.0, 1.0])  # pushes expert 3 into the top-2 for selection only
    w, idx = sigmoid_router(_logit(scores), bias, top_k=2, routed_scaling_factor=2.5)
    assert list(idx[0]) == [3, 0]
    # weights: unbiased scores 0.2 and 0.9 normalised to sum 1, times 2.5
    assert w[0] == pytest.approx([0.2 / 1.1 * 2.5, 0.9 / 1.1 * 2.5], rel=1e-12)
    w, idx = sigmoid_router(_logit(scores), bias, top_k=2, norm_topk_prob=False, routed_scaling_factor=2.5)
    assert w[0] == pytest.approx([0.2 * 2.5, 0.9 * 2.5], rel=1e-12)


def test_group_limited_topk_uses_sum_of_top2_per_group():
    # 4 groups of 2 experts. Group scores (sum of top 2): 0.9, 1.2, 1.1, 0.2 -> keep groups 1, 2.
    # Expert 0 has the best single score (0.9) but its group is dropped.
    scores = np.array([[0.9, 0.0001, 0.6, 0.6, 0.55, 0.56, 0.1, 0.1]])
    w, idx = sigmoid_router(_logit(scores), None, top_k=3, n_group=4, topk_group=2, routed_scaling_factor=1.0)
    assert sorted(idx[0]) == [2, 3, 5]
    assert w.sum() == pytest.approx(1.0, rel=1e-14)
    # without group limiting expert 0 wins
    _, idx = sigmoid_router(_logit(scores), None, top_k=3)
    assert 0 in idx[0]


def test_router_flops_follow_counting_doc():
    rng = np.random.default_rng(0)
    t, e, k, g = 5, 16, 4, 4
    c = Counter()
    sigmoid_router(rng.standard_normal((t, e)), np.zeros(e), top_k=k, n_group=g, topk_group=2, site=c.site("r"))
    sigmoid_router(rng.standard_normal((t, e)), np.zeros(e), top_k=k, norm_topk_prob=False, site=c.site("r1"))
    softmax_router(rng.standard_normal((t, e)), top_k=k, site=c.site("s"))
    # 4TE + T*n_group + 3kT; 4TE + kT (no groups, no normalisation); softmax 5TE
    assert [r.flops for r in c.records] == [4 * t * e + t * g + 3 * k * t, 4 * t * e + k * t, 5 * t * e]


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
