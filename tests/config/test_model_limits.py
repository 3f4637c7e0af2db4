"""Model size limits (MAX_HIDDEN_LAYERS, MAX_VOCAB_SIZE) and the O(1) MoE-layer count."""
import itertools

import pytest

from archsim.config.model import MAX_HIDDEN_LAYERS, MAX_VOCAB_SIZE, ModelConfig, validate_model
from archsim.errors import ConfigError

TINY = dict(hidden_size=8, num_attention_heads=2, vocab_size=4, intermediate_size=4)


def test_limits_are_the_documented_values():
    assert MAX_HIDDEN_LAYERS == 4096 and MAX_VOCAB_SIZE == 16_777_216


@pytest.mark.parametrize("field,limit", [("num_hidden_layers", MAX_HIDDEN_LAYERS), ("vocab_size", MAX_VOCAB_SIZE)])
def test_size_limit_is_inclusive(field, limit):
    base = {**TINY, "num_hidden_layers": 2, field: limit}
    validate_model(ModelConfig(**base), "m.yaml", "model")  # at the limit: accepted
    with pytest.raises(ConfigError) as info:
        validate_model(ModelConfig(**{**base, field: limit + 1}), "m.yaml", "model")
    assert f"m.yaml: model.{field}: expected at most {limit}" in str(info.value)


def test_moe_layers_in_equals_the_per_layer_rule():
    for fk, freq, n in itertools.product(range(5), range(1, 4), range(1, 12)):
        m = ModelConfig(**TINY, num_hidden_layers=n, n_routed_experts=4, moe_intermediate_size=2,
                        num_experts_per_tok=2, first_k_dense_replace=fk, moe_layer_freq=freq)
        for a in range(n + 1):
            for b in range(a, n + 1):
                assert m.moe_layers_in(a, b) == sum(m.is_moe_layer(i) for i in range(a, b)), (fk, freq, a, b)
    dense = ModelConfig(**TINY, num_hidden_layers=10)
    assert dense.moe_layers_in(0, 10) == 0 and dense.moe_layers == 0
