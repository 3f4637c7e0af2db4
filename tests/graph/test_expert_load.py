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
