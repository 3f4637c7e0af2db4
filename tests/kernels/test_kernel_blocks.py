"""Numerics of the building blocks against direct formulas, and the counter's dtype rules."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from archsim.dtypes import BF16, FP8_BLOCK128, FP32, INT8
from archsim.kernels.activations import swiglu
from archsim.kernels.counting import Counter
from archsim.kernels.gemm import linear, per_head
from archsim.kernels.moe import moe
from archsim.kernels.norm import rmsnorm


def test_rmsnorm_and_swiglu_match_formulas():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((3, 5, 8)), rng.standard_normal(8)
    y = rmsnorm(x, w, 1e-6)
    ref = x / np.sqrt((x ** 2).sum(-1, keepdims=True) / 8 + 1e-6) * w
    assert np.max(np.abs(y - ref)) <= 1e-14
    g, u = rng.standard_normal(10) * 30, rng.standard_normal(10)   # large |g|: no overflow in sigmoid
    assert np.max(np.abs(swiglu(g, u) - g / (1 + np.exp(-g)) * u)) <= 1e-12


def test_moe_equals_explicit_per_token_loop():
    rng = np.random.default_rng(1)
    t, h, e, inter, k = 7, 6, 8, 4, 3
    cfg = SimpleNamespace(num_experts_per_tok=k, n_group=2, topk_group=1, norm_topk_prob=True,
                          routed_scaling_factor=2.5, topk_method="noaux_tc")
    w = {"gate": rng.standard_normal((e, h)),
         "experts": {"gate_up_proj": rng.standard_normal((e, 2 * inter, h)),
                     "down_proj": rng.standard_normal((e, h, inter))},
         "shared_experts": {"gate_proj": rng.standard_normal((inter, h)), "up_proj": rng.standard_normal((inter, h)),
                            "down_proj": rng.standard_normal((h, inter))}}
    bias = rng.standard_normal(e) * 0.1
    x = rng.standard_normal((t, h))
    y, counts = moe(x, w, cfg, bias=bias)
    silu = lambda z: z / (1 + np.exp(-z))  # noqa: E731
    sh = w["shared_experts"]
    for i in range(t):
        s = 1 / (1 + np.exp(-(w["gate"] @ x[i])))                 # unbiased scores
        b = s + bias
        groups = b.reshape(2, 4)
        best_group = np.argmax(np.sort(groups, axis=1)[:, -2:].sum(1))   # topk_group = 1
        chosen = best_group * 4 + np.argsort(-groups[best_group])[:k]   # top-3 inside the kept group
        wts = s[chosen] / s[chosen].sum() * 2.5
        ref = sh["down_proj"] @ (silu(sh["gate_proj"] @ x[i]) * (sh["up_proj"] @ x[i]))
        for j, ex in enumerate(chosen):
            gu = w["experts"]["gate_up_proj"][ex] @ x[i]
            ref = ref + wts[j] * (w["experts"]["down_proj"][ex] @ (silu(gu[:inter]) * gu[inter:]))
        assert np.max(np.abs(y[i] - ref)) <= 1e-12
    assert counts.sum() == t * k and counts.reshape(2, 4).sum(1).min() >= 0


def test_counter_dtype_precedence_and_independence():
    declared = {"op": {"x": INT8}}
    c = Counter(declared=declared)
    site = c.site("op", roles={"activation": FP32, "weight": FP8_BLOCK128}, dtypes={"x": BF16, "y": BF16})
    linear(np.ones((2, 4)), np.ones((3, 4)), site=site)
    (r,) = c.records
    ops = {o.name: o for o in r.reads + r.writes}
    assert ops["x"].dtype == INT8                     # declared by the executor wins
    assert ops["y"].dtype == BF16                     # then the site's per-operand dtypes
    assert ops["weight"].dtype == FP8_BLOCK128        # then the role
    assert ops["weight"].nbytes == 3 * 4 + 4          # one 128x128 block -> one fp32 scale
    assert r.flops == 2 * 2 * 3 * 4
    assert Counter().records == [] and Counter().declared == {}


def test_per_head_matches_einsum_both_layouts():
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((4, 5, 6))   # [b, s, H, k], [H, k, n]
    c = Counter()
    y = per_head(x, w, site=c.site("a"))
    y_t = per_head(x, w.transpose(0, 2, 1).copy(), transpose=True, site=c.site("b"))
    ref = np.stack([x[:, :, h] @ w[h] for h in range(4)], axis=2)
    assert np.max(np.abs(y - ref)) <= 1e-13 and np.max(np.abs(y_t - ref)) <= 1e-13
    # both: 4 groups of [6, 5] x [5, 6] -> 2 * 4 * 6 * 6 * 5 FLOPs
    assert [r.flops for r in c.records] == [2 * 4 * 6 * 6 * 5] * 2
