"""Sharding: per-device FLOPs of tp/ep-split ops sum over the shards to the unsharded FLOPs."""
import pytest
from helpers_graph import model

from archsim.errors import ConfigError
from archsim.graph.build import build_decode, build_prefill
from archsim.graph.precision import Shard, precision_from_names

FP8 = precision_from_names("fp8")


def by_split(g, split):
    return {n: d["op"] for n, d in g.nodes(data=True) if d["op"].attrs["split"] == split}


@pytest.mark.parametrize("name,tp", [("deepseek_v3", 8), ("kimi_k2", 4), ("llama3_405b", 8)])
@pytest.mark.parametrize("build", ["prefill", "decode"])
def test_tp_shards_sum_to_unsharded(name, tp, build):
    m = model(name)
    prec = FP8 if m.is_moe else precision_from_names("bf16")
    kw = dict(batch=2, prompt_len=256) if build == "prefill" else dict(batch=16, context=512)
    fn = build_prefill if build == "prefill" else build_decode
    full, shard = fn(m, precision=prec, **kw), fn(m, precision=prec, shard=Shard(tp=tp), **kw)
    split_full, split_one = by_split(full, "tp"), by_split(shard, "tp")
    assert split_full.keys() == split_one.keys() and split_full
    for n, op in split_full.items():   # identical slices: tp copies of the shard's work
        assert tp * split_one[n].flops == op.flops, n
        assert tp * split_one[n].params == op.params, n
    for n, op in by_split(full, "replicated").items():
        assert shard.nodes[n]["op"].flops == op.flops, n


def test_ep_shards_sum_to_unsharded_expert_work():
    m, ep = model("deepseek_v3"), 8
    full = build_prefill(m, batch=1, prompt_len=512, precision=FP8)
    one = build_prefill(m, batch=1, prompt_len=512, precision=FP8, shard=Shard(ep=ep))
    for n, op in by_split(full, "ep").items():
        assert ep * one.nodes[n]["op"].flops == pytest.approx(op.flops, rel=1e-12), n
        assert one.nodes[n]["op"].attrs.get("groups", 256 // ep) == 256 // ep


def test_indivisible_shard_is_a_config_error():
    with pytest.raises(ConfigError, match="shard.tp"):
        build_prefill(model("deepseek_v3"), batch=1, prompt_len=8, precision=FP8, shard=Shard(tp=3))
    with pytest.raises(ConfigError, match="shard.tp"):   # 8 kv heads cannot split 16 ways
        build_decode(model("llama3_405b"), batch=1, context=8, precision=FP8, shard=Shard(tp=16))
