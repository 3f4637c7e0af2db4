"""ModelConfig's MoE layer rule (DeepSeek first_k_dense_replace / moe_layer_freq, Qwen3-MoE decoder_sparse_step /
mlp_only_layers): the loop-free count moe_layers_in equals counting is_moe_layer layer by layer."""
from __future__ import annotations

import itertools

from archsim.config.model import model_from_dict

BASE = {"hidden_size": 64, "num_hidden_layers": 12, "num_attention_heads": 8, "vocab_size": 100,
        "intermediate_size": 128, "moe_intermediate_size": 16, "n_routed_experts": 8, "num_experts_per_tok": 2}


def test_moe_layers_in_equals_the_layer_by_layer_count():
    for fkdr, freq, step, only in itertools.product((0, 1, 3), (1, 2, 3), (1, 2, 4), ((), (0, 5), (3, 7, 11))):
        m = model_from_dict(dict(BASE, first_k_dense_replace=fkdr, moe_layer_freq=freq, decoder_sparse_step=step,
                                 mlp_only_layers=list(only)))
        for start, stop in ((0, 12), (2, 9), (5, 6), (7, 7)):
            expected = sum(m.is_moe_layer(i) for i in range(start, stop))
            assert m.moe_layers_in(start, stop) == expected, (fkdr, freq, step, only, start, stop)
        for i in range(12):
            assert m.is_moe_layer(i) == (i >= fkdr and i % freq == 0 and (i + 1) % step == 0 and i not in only)
