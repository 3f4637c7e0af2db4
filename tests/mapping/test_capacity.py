"""Per-device memory: exact weight bytes with block scales, sharding sums, KV, fit searches."""
import math
from pathlib import Path

import pytest

from archsim.config.workload import load_workload
from archsim.dtypes import FP8_BLOCK128
from archsim.graph.params import count_params, kv_bytes_per_token
from archsim.graph.precision import precision_from_names
from archsim.mapping.capacity import (decode_activations, kv_cache_bytes, layer_weight_bytes, max_batch,
                                      max_context, memory_per_device, model_elements, smallest_fitting_layout)
from archsim.mapping.layout import Layout

ROOT = Path(__file__).resolve().parents[2]
FP8 = precision_from_names("fp8")


def model(name):
    return load_workload(ROOT / "workloads" / f"{name}.yaml").model


@pytest.mark.parametrize("name", ["deepseek_v3", "kimi_k2", "llama3_405b"])
def test_enumerated_matrices_match_parameter_count(name):
    m = model(name)
    assert model_elements(m) == count_params(m).total


def test_routed_expert_bytes_with_block_scales_by_hand():
    m = model("kimi_k2")
    # one expert: gate and up [2048, 7168], down [7168, 2048] in FP8 with a float32 scale per 128x128 block:
    # 2048*7168 bytes + (2048/128)*(7168/128) = 16*56 = 896 scales * 4 bytes = 14,680,064 + 3,584 each
    one = 3 * (2048 * 7168 + 16 * 56 * 4)
    assert FP8_BLOCK128.storage_bytes((2048, 7168)) == 2048 * 7168 + 896 * 4
    assert layer_weight_bytes(m, 1, FP8)["routed_experts"] == 384 * one
    assert layer_weight_bytes(m, 1, FP8, ep=16)["routed_experts"] == 24 * one
    assert "routed_experts" not in layer_weight_bytes(m, 0, FP8)  # layer 0 is dense


def test_sharding_sums_back_to_totals(h100):
    m = model("deepseek_v3")
    one = memory_per_device(m, h100, precision=FP8, batch=1, context=1, layout=Layout.single())
    # EP only: routed experts split exactly (256 / 8), everything else replicated
    ep = memory_per_device(m, h100, precision=FP8, batch=1, context=1, layout=Layout(devices=8, dp=8, ep=8))
    assert ep.weights_by_component["routed_experts"] * 8 == one.weights_by_component["routed_experts"]
    assert ep.weights_by_component["attention"] == one.weights_by_component["attention"]
    # TP: column/row-parallel matrices split exactly (every split dim divisible by 8), the MLA
    # down-projections q_a / kv_a and their norms replicated
    tp = memory_per_device(m, h100, precision=FP8, batch=1, context=1, layout=Layout(devices=8, tp=8))
    assert tp.weights_by_component["dense_mlp"] * 8 == pytest.approx(one.weights_by_component["dense_mlp"])
    assert tp.weights_by_component["embedding"] * 8 == one.weights_by_component["embedding"]
    # pipeline stages partition the layers: stage weights sum to the single-device weights
    from archsim.mapping.capacity import _stage_weights, stage_layers
    lay = Layout(devices=4, pp=4)
    stages = [sum(_stage_weights(m, FP8, lay, s, r).values()) for s, r in enumerate(stage_layers(61, 4))]
    assert sum(stages) == pytest.approx(one.weights_bytes, rel=1e-12)
    assert memory_per_device(m, h100, precision=FP8, batch=1, context=1, layout=lay).weights_bytes == max(stages)


def test_kv_cache_bytes_by_hand():
    m = model("deepseek_v3")
    # BF16 KV: 61 layers * (512 + 64) * 2 B = 70,272 B per token (ISCA25 Table 1)
    assert kv_bytes_per_token(m, FP8.kv_cache) == 70272
    assert kv_cache_bytes(m, FP8, batch=3, context=1000, layout=Layout.single()) == 3 * 1000 * 70272
    # DP splits sequences (ceil(3/2) = 2 per device); the MLA latent is not split by TP
    assert kv_cache_bytes(m, FP8, batch=3, context=1000, layout=Layout(devices=2, dp=2)) == 2 * 1000 * 70272
    assert kv_cache_bytes(m, FP8, batch=3, context=1000, layout=Layout(devices=8, tp=8)) == 3 * 1000 * 70272
    # GQA: Llama-3.1-405B has 8 kv heads of 128: 126 * 2 * 8 * 128 * 2 B = 516,096 B; TP 8 -> one head each
    llama = model("llama3_405b")
    assert kv_cache_bytes(llama, FP8, batch=1, context=10, layout=Layout(devices=8, tp=8)) == 10 * 516096 / 8


def test_kimi_k2_fp8_does_not_fit_one_h100(h100):
    m = model("kimi_k2")
    mem = memory_per_device(m, h100, precision=FP8, batch=1, context=8192, layout=Layout.single(),
                            activation_bytes=decode_activations(m, FP8, Layout.single()))
    assert h100.main_memory.capacity_bytes == 80e9
    assert not mem.fits
    # about 1.03e12 weights at ~1 byte each
    assert mem.weights_bytes > 1.0e12
    assert "does NOT fit" in mem.describe()
    need = smallest_fitting_layout(m, h100, precision=FP8, batch=1, context=8192,
                                   activation_bytes=lambda lay: decode_activations(m, FP8, lay))
    assert need.fits and need.layout.devices > 8
    assert need.layout.ep > 1 and need.layout.tp == 8
    # fewer devices do not fit: weights alone need more than 13 H100s
    assert need.layout.devices * 80e9 > mem.weights_bytes


def test_max_batch_and_context_are_the_fit_boundary(h100):
    m = model("deepseek_v3")
    lay = Layout(devices=16, tp=8, dp=2, ep=16)
    b = max_batch(m, h100, precision=FP8, context=8192, layout=lay)
    assert b > 0
    assert memory_per_device(m, h100, precision=FP8, batch=b, context=8192, layout=lay).fits
    assert not memory_per_device(m, h100, precision=FP8, batch=b + 1, context=8192, layout=lay).fits
    c = max_context(m, h100, precision=FP8, batch=b, layout=lay)
    assert c >= 8192
    assert max_batch(m, h100, precision=FP8, context=8192, layout=Layout.single()) == 0
