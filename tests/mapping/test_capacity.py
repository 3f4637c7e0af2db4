"""Exact weight bytes with block scales, sharding sums, KV bytes, and the fit boundary searches."""
from pathlib import Path

import pytest

from archsim.config.workload import load_workload
from archsim.dtypes import FP8_BLOCK128
from archsim.graph.params import count_params
from archsim.graph.precision import precision_from_names
from archsim.mapping.capacity import max_batch, max_context
from archsim.mapping.device_memory import memory_per_device, stage_layers
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.weights import layer_weight_bytes, model_elements, stage_weight_bytes

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
    # 32 redundant experts over EP 16: ceil(416 / 16) = 26 per device
    assert layer_weight_bytes(m, 1, FP8, ep=16, redundant_experts=32)["routed_experts"] == 26 * one
    assert "routed_experts" not in layer_weight_bytes(m, 0, FP8)  # layer 0 is dense


def test_kv_a_proj_pays_for_its_padded_scale_block():
    m = model("deepseek_v3")
    # kv_a_proj_with_mqa is [576, 7168]: 576 = 4.5 blocks of 128 -> 5 x 56 float32 scales
    assert FP8_BLOCK128.storage_bytes((576, 7168)) == 576 * 7168 + 5 * 56 * 4


def test_sharding_sums_back_to_totals():
    m = model("deepseek_v3")
    layers = range(m.num_hidden_layers)
    one = stage_weight_bytes(m, FP8, tp=1, ep=1, layers=layers, first=True, last=True)
    ep = stage_weight_bytes(m, FP8, tp=1, ep=8, layers=layers, first=True, last=True)
    assert ep["routed_experts"] * 8 == one["routed_experts"]
    assert ep["attention"] == one["attention"]
    tp = stage_weight_bytes(m, FP8, tp=8, ep=1, layers=layers, first=True, last=True)
    assert tp["dense_mlp"] * 8 == pytest.approx(one["dense_mlp"])
    assert tp["embedding"] * 8 == one["embedding"]
    # pipeline stages partition the layers: stage weights sum to the single-device weights
    stages = [sum(stage_weight_bytes(m, FP8, tp=1, ep=1, layers=r, first=s == 0, last=s == 3).values())
              for s, r in enumerate(stage_layers(m, 4))]
    assert sum(stages) == pytest.approx(sum(one.values()), rel=1e-12)
    mem = memory_per_device(m, Parallelism(pp=4), FP8, capacity_bytes=1e15)
    assert mem.weights_bytes == pytest.approx(max(stages), rel=1e-12)


def test_max_batch_and_context_are_the_fit_boundary(h100):
    m = model("deepseek_v3")
    par = Parallelism(tp=8, dp=2, ep=16)
    cap = h100.main_memory.capacity_bytes

    def fits(b, c):
        return memory_per_device(m, par, FP8, capacity_bytes=cap, batch=b, context=c).fits

    b = max_batch(m, h100, par, FP8, context=8192)
    assert b > 0 and fits(b, 8192) and not fits(b + 1, 8192)
    c = max_context(m, h100, par, FP8, batch=b)
    assert c >= 8192 and fits(b, c) and (c == m.max_position_embeddings or not fits(b, c + 1))
    assert max_batch(m, h100, Parallelism(), FP8, context=8192) == 0  # 671B does not fit one H100
