"""Expert-load distributions: uniform, Zipf (capped at 1 per expert), measured counts."""
import pytest
from hypothesis import given, strategies as st

from archsim.errors import ConfigError
from archsim.graph.expert_load import measured_load, uniform_load, zipf_load


def test_uniform_expected_tokens_and_distinct():
    load = uniform_load(256, 8)
    assert load.tokens_per_expert(64) == (64 * 8 / 256,) * 256
    assert load.distinct_experts(1) == pytest.approx(8)
    assert load.distinct_experts(64) == pytest.approx(256 * (1 - (1 - 8 / 256) ** 64))
    assert load.imbalance() == pytest.approx(1.0)


@given(st.integers(2, 400), st.integers(1, 16), st.floats(0, 4))
def test_zipf_probabilities_sum_to_k_and_stay_at_most_one(E, k, s):
    k = min(k, E)
    load = zipf_load(E, k, s)
    assert sum(load.probs) == pytest.approx(k)
    assert max(load.probs) <= 1 + 1e-12
    assert list(load.probs) == sorted(load.probs, reverse=True)
    assert load.imbalance() >= 1 - 1e-9


def test_zipf_zero_is_uniform_and_large_s_caps_hot_experts():
    assert zipf_load(16, 4, 0.0).probs == pytest.approx(uniform_load(16, 4).probs)
    hot = zipf_load(16, 4, 10.0)
    assert hot.probs[:3] == (1.0, 1.0, 1.0)       # three experts always picked, the 4th pick spreads
    assert hot.distinct_experts(1) == pytest.approx(4)


def test_measured_counts_are_exact_for_their_run():
    counts = [5, 0, 3, 0, 0, 2, 0, 0]              # 5 tokens x k=2 = 10 selections
    load = measured_load(counts, 2)
    assert load.tokens_per_expert(5) == (5.0, 0.0, 3.0, 0.0, 0.0, 2.0, 0.0, 0.0)
    assert load.distinct_experts(5) == 3.0
    assert load.distinct_experts(5, range(0, 4)) == 2.0
    assert load.imbalance() == pytest.approx(5 / (10 / 8))
    with pytest.raises(ConfigError):
        measured_load([3, 0], 2)                     # 3 selections is not tokens*k
    with pytest.raises(ConfigError):
        measured_load([4, 0], 2)                     # 2 tokens cannot pick expert 0 four times


def test_stats_from_measured_counts():
    from archsim.graph.expert_load import distinct_experts_per_step, max_over_mean
    assert max_over_mean([4, 0, 2, 2]) == 4 / 2          # mean 2 tokens per expert, busiest 4
    assert max_over_mean([3, 3, 3]) == 1.0
    assert distinct_experts_per_step([[1, 0, 0, 1], [1, 1, 1, 0]]) == (2 + 3) / 2
    with pytest.raises(ConfigError):
        max_over_mean([0, 0])


def test_measured_load_drives_the_graph():
    """Counts from a run give the grouped GEMM's exact tokens and the distinct experts read."""
    from helpers_graph import tiny
    from archsim.dtypes import FP64
    from archsim.graph.build import build_decode
    from archsim.graph.precision import Precision
    m = tiny()                                          # 8 experts, k = 2
    counts = [3, 0, 1, 0, 0, 2, 0, 0]                   # 3 tokens * k=2 = 6 selections
    g = build_decode(m, batch=3, context=5, precision=Precision(weights=FP64, activations=FP64, kv_cache=FP64),
                     expert_load=measured_load(counts, 2))
    op = g.nodes["layers.1.mlp.experts.gate_up"]["op"]
    assert op.attrs["tokens_per_expert"] == tuple(float(c) for c in counts)
    assert op.attrs["distinct_experts"] == 3 and op.attrs["tokens_max"] == 3
    assert op.flops == 2 * 6 * (2 * 16) * 64
    w = next(o for o in op.reads if o.role == "weight")
    assert w.nbytes == 3 * (2 * 16) * 64 * 8            # three experts' fp64 gate+up weights


def test_group_limited_routing_leaves_the_expected_distinct_count_unchanged():
    """The documented assumption: with tokens routed independently, E[distinct] depends only on the
    per-expert marginals. Sample DeepSeek-style group-limited routing (pick topk_group of n_group
    groups, then k experts among their members, all uniformly) and compare with E*(1-(1-k/E)^B)."""
    import numpy as np
    E, n_group, topk_group, k, B, trials = 16, 4, 2, 4, 5, 20000
    rng = np.random.default_rng(0)
    per_group = E // n_group
    # uniform choice without replacement = the first entries of a random permutation
    groups = np.argsort(rng.random((trials, B, n_group)), axis=-1)[..., :topk_group]        # [t, B, g]
    members = (groups[..., None] * per_group + np.arange(per_group)).reshape(trials, B, -1)  # [t, B, g*per]
    pick = np.argsort(rng.random(members.shape), axis=-1)[..., :k]                           # [t, B, k]
    experts = np.take_along_axis(members, pick, axis=-1).reshape(trials, -1)                 # [t, B*k]
    touched = np.zeros((trials, E), dtype=bool)
    np.put_along_axis(touched, experts, True, axis=-1)
    distinct = touched.sum(axis=1)
    expected = uniform_load(E, k).distinct_experts(B)
    assert expected == pytest.approx(E * (1 - (1 - k / E) ** B))
    stderr = distinct.std() / np.sqrt(trials)
    assert abs(distinct.mean() - expected) < 4 * stderr
