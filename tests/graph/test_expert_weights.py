"""Routed experts in their own format (Kimi K2's INT4 checkpoints): graph operands and weight bytes."""
from pathlib import Path

import pytest

from archsim.config.workload import load_workload
from archsim.errors import ConfigError
from archsim.graph import build_decode, precision_from_names
from archsim.mapping.weights import layer_weight_bytes

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kimi():
    return load_workload(REPO / "workloads/kimi_k2.yaml").model


def test_int4_applies_to_routed_experts_only(kimi):
    p = precision_from_names("bf16", expert_weights="int4")
    g = build_decode(kimi, batch=4, context=64, precision=p)
    ops = {n: g.nodes[n]["op"] for n in g.nodes}
    layer = kimi.first_k_dense_replace  # the first MoE layer
    expert = ops[f"layers.{layer}.mlp.experts.gate_up"]
    (w,) = [o for o in expert.reads if o.role == "weight"]
    assert w.dtype.name == "int4" and expert.compute_dtype.name == "bf16"  # weight-only: BF16 MMA
    for name in (f"layers.{layer}.self_attn.q_b_proj", f"layers.{layer}.mlp.shared_experts.gate_proj",
                 f"layers.{layer}.self_attn.q_absorb"):
        (w,) = [o for o in ops[name].reads if o.role == "weight"]
        assert w.dtype.name == "bf16", name


def test_int4_expert_bytes_by_hand(kimi):
    # one expert: gate and up [2048, 7168] and down [7168, 2048]; int4 = 0.5 B per element plus one bf16
    # scale (2 B) per group of 32 along the input dim:
    # gate/up: 2048*7168*0.5 + 2048*(7168/32)*2 = 7,340,032 + 917,504 = 8,257,536 B each
    # down:    7168*2048*0.5 + 7168*(2048/32)*2 = 7,340,032 + 917,504 = 8,257,536 B
    one = 3 * 8_257_536
    p = precision_from_names("bf16", expert_weights="int4")
    got = layer_weight_bytes(kimi, kimi.first_k_dense_replace, p, ep=16)
    assert got["routed_experts"] == (384 // 16) * one
    # attention stays bf16: the same bytes as an all-bf16 precision
    assert got["attention"] == layer_weight_bytes(kimi, kimi.first_k_dense_replace,
                                                  precision_from_names("bf16"), ep=16)["attention"]


def test_unknown_expert_format_is_a_config_error():
    with pytest.raises(ConfigError, match="expert_weights"):
        precision_from_names("bf16", expert_weights="int3")
