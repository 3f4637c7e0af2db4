"""An expert-load distribution reaches the projection: expert bytes (distinct experts) and the
grouped-GEMM time (bounded by the busiest expert) both respond to it."""
import pytest
from helpers_graph import model

from tests.cost.fixtures import price_op
from archsim.graph.build import build_decode, build_prefill
from archsim.graph.expert_load import zipf_load
from archsim.graph.precision import Shard, precision_from_names

FP8 = precision_from_names("fp8")
NAME = "layers.3.mlp.experts.gate_up"


def test_skewed_prefill_load_moves_work_onto_the_hot_experts(h100):
    m = model("deepseek_v3")
    uni = build_prefill(m, batch=1, prompt_len=4096, precision=FP8).nodes[NAME]["op"]
    skew = build_prefill(m, batch=1, prompt_len=4096, precision=FP8,
                         expert_load=zipf_load(256, 8, 1.5)).nodes[NAME]["op"]
    # same total work on one device: every token still goes to k = 8 experts
    assert skew.flops == pytest.approx(uni.flops, rel=1e-12)
    # the hottest expert is picked by every token (p capped at 1): 4096 tokens vs 4096*8/256 = 128
    assert skew.attrs["tokens_max"] == 4096 and uni.attrs["tokens_max"] == 128
    # under EP=8 the device holding experts 0..31 (the hot ones under Zipf ranking) gets more
    # tokens than any device under uniform routing, and its grouped GEMM is slower
    shard = Shard(ep=8)
    uni8 = build_prefill(m, batch=1, prompt_len=4096, precision=FP8, shard=shard).nodes[NAME]["op"]
    skew8 = build_prefill(m, batch=1, prompt_len=4096, precision=FP8, shard=shard,
                          expert_load=zipf_load(256, 8, 1.5)).nodes[NAME]["op"]
    assert uni8.attrs["tokens_total"] == pytest.approx(4096 * 8 / 8)
    assert skew8.attrs["tokens_total"] > 2 * uni8.attrs["tokens_total"]
    assert price_op(skew8, h100).time_s > price_op(uni8, h100).time_s


def test_skewed_decode_load_reads_fewer_expert_weights(h100):
    m = model("deepseek_v3")
    uni = build_decode(m, batch=16, context=2048, precision=FP8).nodes[NAME]["op"]
    skew = build_decode(m, batch=16, context=2048, precision=FP8,
                        expert_load=zipf_load(256, 8, 1.5)).nodes[NAME]["op"]
    w = lambda op: next(o for o in op.reads if o.role == "weight").nbytes
    assert skew.attrs["distinct_experts"] < uni.attrs["distinct_experts"]
    assert w(skew) < w(uni)
    # decode is weight-streaming: fewer distinct experts is a cheaper step for this op
    assert price_op(skew, h100).time_s < price_op(uni, h100).time_s
