"""Parallel layouts: the Parallelism record, per-device memory that sums back to the model, collectives
inserted per layer, overlap of two micro-batches, fit checks and the smallest fitting deployment."""
from math import isclose
from pathlib import Path

import pytest

from archsim.config.workload import load_workload
from archsim.cost.collectives import price_collective, price_ep_exchange
from archsim.dtypes import BF16
from archsim.errors import ConfigError
from archsim.graph.params import count_params
from archsim.graph.precision import precision_from_names
from archsim.mapping.device_memory import kv_cache_bytes, memory_per_device, stage_params, weight_bytes
from archsim.mapping.parallel import Parallelism, plan_layout, resolve_parallelism
from archsim.mapping.parallelism import check_expert_slots
from archsim.mapping.phases import price_phase
from archsim.mapping.experts import busiest_rank_work, place_experts
from archsim.graph.expert_load import uniform_load

REPO = Path(__file__).resolve().parents[2]
FP8 = precision_from_names("fp8")
BF16P = precision_from_names("bf16")


@pytest.fixture(scope="module")
def kimi():
    return load_workload(REPO / "workloads/kimi_k2.yaml").model


def test_parallelism_record_and_validation():
    par = Parallelism(tp=4, ep=32, pp=2, dp=8, micro_batches=2)
    assert par.devices == 64 and par.stage_devices == 32 and par.attn_dp == 8 and par.expert_dp == 1
    with pytest.raises(ConfigError, match="parallelism.moe_tp"):
        Parallelism(tp=4, ep=6, dp=8)  # a MoE group of 6 chips would split an attention TP group of 4
    with pytest.raises(ConfigError, match="parallelism.moe_tp"):
        Parallelism(tp=1, ep=16, dp=8)  # more EP ranks than the stage has chips
    # MoE-TP: attention TP8 with every expert split 8 ways (SGLang's default on one node), and mixed 2 x 4
    assert Parallelism(tp=8, moe_tp=8).moe_group == 8 and Parallelism(tp=8, moe_tp=8).expert_dp == 1
    assert Parallelism(tp=4, dp=2, moe_tp=2, ep=4).moe_ep == 4
    with pytest.raises(ConfigError, match="n_routed_experts"):
        check_expert_slots(Parallelism(ep=8, dp=8, redundant_experts=12), 256)  # 268 slots over 8 ranks
    check_expert_slots(Parallelism(ep=144, dp=144, redundant_experts=32), 256)  # DeepSeek decode: 288 = 2 x 144
    assert Parallelism(ep=8, dp=8, redundant_experts=16).label() == "TP1 EP8 PP1 DP8 R16 MB1"
    assert Parallelism(ep=8, dp=8, micro_batches=None).label().endswith("MBauto")
    with pytest.raises(ConfigError, match="parallelism.tp"):
        Parallelism(tp=0)
    with pytest.raises(ConfigError, match="zero_stage"):
        Parallelism(zero_stage=4)


def test_stage_params_sum_back_to_model(dsv3):
    # tp=1, ep=1: every parameter sits on exactly one stage
    total = count_params(dsv3).total
    par = Parallelism(pp=4)
    assert sum(sum(stage_params(dsv3, par, s).values()) for s in range(4)) == pytest.approx(total, rel=1e-12)
    # ep=8 over dp=8: each routed expert on one of the 8 ranks, everything else replicated on each
    par = Parallelism(ep=8, dp=8)
    one = stage_params(dsv3, par, 0)
    counts = count_params(dsv3)
    assert one["routed_experts"] * 8 == pytest.approx(58 * 256 * counts.routed_expert)  # 58 MoE layers
    assert sum(one.values()) - one["routed_experts"] == pytest.approx(total - 58 * 256 * counts.routed_expert)


def test_tp_split_of_mla_keeps_down_projections_replicated(dsv3):
    h = 7168
    rep = h * (512 + 64) + 512 + h * 1536 + 1536  # kv_a + kv_a_norm + q_a + q_a_norm
    attn = count_params(dsv3).attention_per_layer
    p = stage_params(dsv3, Parallelism(tp=8, dp=1), 0)
    assert p["attention"] == pytest.approx(61 * (rep + (attn - rep) / 8))


def test_kv_cache_bytes_per_device(dsv3):
    # DeepSeek-V3 BF16 KV: 61 * (512 + 64) * 2 B = 70,272 B per token (ISCA25 Table 1); MLA latent is
    # replicated over TP ranks, so a device of replica r holds batch/dp sequences at the full context
    par = Parallelism(tp=2, ep=16, dp=8)
    assert kv_cache_bytes(dsv3, par, BF16P, batch=64, context=4096, stage=0) == 8 * 4096 * 70_272


def test_kv_cache_gqa_splits_over_tp(llama):
    # Llama-3.1-405B: 126 layers * 2 * 8 kv heads * 128 * 2 B = 516,096 B/token; TP8 splits the kv heads
    par = Parallelism(tp=8)
    assert kv_cache_bytes(llama, par, BF16P, batch=2, context=1000, stage=0) == 2 * 1000 * 516_096 / 8


def test_fp8_weights_half_of_bf16(dsv3):
    par = Parallelism(ep=8, dp=8)
    p = stage_params(dsv3, par, 0)
    fp8, bf16 = weight_bytes(p, FP8), weight_bytes(p, BF16P)
    # linear layers: 1 B + 4 B per 128x128 block vs 2 B; the rest (embedding, head, router, norms) BF16 in both
    assert fp8 < 0.55 * bf16


def test_layout_that_does_not_fit_is_not_priced(kimi, h100):
    plan = plan_layout(kimi, h100, devices=1, batch=1, prompt_len=1024, output_len=128, precision=FP8)
    assert not plan.fits and plan.decode is None and plan.prefill is None
    d = plan.to_dict()
    assert d["fits"] is False and "needs" in d["reason"] and "phases" not in d


def test_kimi_k2_fp8_128k_smallest_h200_deployment(kimi, h200):
    """Kimi-K2/docs/deploy_guidance.md: the smallest H200 deployment of K2 FP8 at 128K is 16 GPUs.
    archsim: one node of 8 does not fit (weights ~129 GB of 141 GB per GPU, plus KV and the 128K
    prefill's activation peak); 16 GPUs (EP16 attention-DP) fit."""
    plan = plan_layout(kimi, h200, devices="auto", batch=1, prompt_len=128 * 1024 - 1024, output_len=1024,
                       precision=FP8)
    assert plan.fits and plan.parallelism.devices == 16
    eight = plan_layout(kimi, h200, devices=8, batch=1, prompt_len=128 * 1024 - 1024, output_len=1024,
                        precision=FP8)
    assert not eight.fits


def test_tp_all_reduce_inserted_per_layer(llama, h100):
    par = Parallelism(tp=8)
    r = price_phase(llama, h100, par, BF16P, phase="decode", batch=8, length=2048)
    one = price_collective("all_reduce", 8 * 16384 * 2, 8, h100).time_s  # 8 tokens x hidden x bf16
    assert r.comm_by_kind["tp_all_reduce"] == pytest.approx(126 * 2 * one)  # o_proj + down_proj per layer
    assert r.exposed_s == pytest.approx(r.communication_s)  # one micro-batch: nothing hides it
    assert isclose(r.time_s, r.compute_s + r.communication_s)


def test_ep_exchange_inserted_and_overlapped(dsv3, h800):
    par = Parallelism(ep=32, dp=32, micro_batches=2)
    r = price_phase(dsv3, h800, par, FP8, phase="prefill", batch=64, length=4096)
    # each rank sends its micro-batch's 4096 tokens and receives the copies its experts take: the busiest of the
    # 32 ranks expects E[max] copies over the group's 32 x 4096 tokens (mapping/experts.py), / 8 per token
    load = uniform_load(256, 8)
    busiest = busiest_rank_work(load, place_experts(load, 32), 32 * 4096).tokens
    assert 4096 * 8 < busiest < 1.05 * 4096 * 8
    x = price_ep_exchange(tokens=busiest / 8, hidden=7168, topk=8, n_experts=256, ep=32, hw=h800,
                          dispatch_dtype=FP8.weights, combine_dtype=BF16, n_group=8, topk_group=4)
    # 58 MoE layers x 2 micro-batches, each one dispatch and one combine
    assert r.comm_by_kind["ep_dispatch"] == pytest.approx(2 * 58 * x.dispatch.time_s)
    assert r.comm_by_kind["ep_combine"] == pytest.approx(2 * 58 * x.combine.time_s)
    # every layer's compute outlasts its exchange, but DeepEP's throughput kernels hold 20 of the H800's 132 SMs
    # while they run (hardware/h800.yaml node.ep_throughput_sms), so the compute beside them runs on 112: each layer
    # exposes 20/132 of its exchange (max(comm - compute, f x comm) with comm < compute)
    assert r.exposed_s == pytest.approx(20 / 132 * r.communication_s)
    serial = price_phase(dsv3, h800, Parallelism(ep=32, dp=32, micro_batches=2), FP8, phase="prefill", batch=64,
                         length=4096, overlap=False)
    assert serial.time_s >= r.time_s


def test_decode_uses_low_latency_kernels(dsv3, h800):
    par = Parallelism(ep=64, dp=64, micro_batches=2)
    r = price_phase(dsv3, h800, par, FP8, phase="decode", batch=64 * 128, length=4096)
    # 64 tokens per rank per micro-batch sent; the busiest of 64 ranks receives E[max] of the group's 64 x 64
    # tokens' copies, / 8 per token (mapping/experts.py)
    load = uniform_load(256, 8)
    busiest = busiest_rank_work(load, place_experts(load, 64), 64 * 64).tokens
    assert 64 * 8 < busiest < 1.2 * 64 * 8
    x = price_ep_exchange(tokens=busiest / 8, hidden=7168, topk=8, n_experts=256, ep=64, hw=h800,
                          dispatch_dtype=FP8.weights, combine_dtype=BF16, n_group=8, topk_group=4, mode="low_latency")
    assert r.comm_by_kind["ep_dispatch"] == pytest.approx(2 * 58 * x.dispatch.time_s)


def test_pipeline_adds_bubble_and_send(llama, h100):
    par = Parallelism(tp=8, pp=2, micro_batches=1)
    r = price_phase(llama, h100, par, BF16P, phase="prefill", batch=1, length=1024)
    assert r.pp_send_s > 0 and r.bubble_s > 0 and len(r.stage_compute_s) == 2


def test_resolve_auto_and_errors(dsv3, h800):
    par = resolve_parallelism(dsv3, h800, 32, batch=64, precision=FP8, context=4096)
    # micro-batches None: chosen per phase by price
    assert (par.tp, par.ep, par.dp, par.pp, par.micro_batches, par.moe_tp) == (1, 32, 32, 1, None, 1)
    # MoE-TP asked: EP fills the rest of the stage's MoE group (8 chips = moe_tp 2 x ep 4 with attention TP8)
    par = resolve_parallelism(dsv3, h800, 8, batch=8, precision=FP8, context=4096, tp=8, moe_tp=2)
    assert (par.tp, par.moe_tp, par.ep, par.dp) == (8, 2, 4, 1)
    # EP72 over 256 + 32 = 288 slots (SGLang's large-scale EP): 4 slots per rank
    par = resolve_parallelism(dsv3, h800, 72, batch=72, precision=FP8, context=4096, ep=72, redundant_experts=32)
    assert (par.ep, par.dp, par.redundant_experts) == (72, 72, 32)
    with pytest.raises(ConfigError, match="n_routed_experts"):
        resolve_parallelism(dsv3, h800, 72, batch=72, precision=FP8, context=4096, ep=72)  # 256 over 72 ranks
    par = resolve_parallelism(dsv3, h800, 64, batch=64, precision=FP8, context=4096, attn_dp=16, tp=4)
    assert (par.dp, par.pp, par.ep) == (16, 1, 64)
    with pytest.raises(ConfigError, match="parallelism.dp"):
        resolve_parallelism(dsv3, h800, 32, batch=8, precision=FP8, context=4096, dp=5)
    with pytest.raises(ConfigError, match="parallelism.tp"):
        resolve_parallelism(dsv3, h800, 12, batch=8, precision=FP8, context=4096, tp=8)


def test_plan_to_dict_has_phase_breakdown(dsv3, h800):
    plan = plan_layout(dsv3, h800, devices=32, batch=64, prompt_len=4096, output_len=256, precision=FP8)
    d = plan.to_dict()
    assert d["fits"] and d["layout"]["devices"] == 32
    for phase in ("prefill", "decode"):
        p = d["phases"][phase]
        assert {"compute_s", "communication_s", "exposed_communication_s", "time_s"} <= set(p)
        assert p["exposed_communication_s"] <= p["communication_s"] + 1e-15
    mem = memory_per_device(dsv3, plan.parallelism, FP8, capacity_bytes=80e9, batch=64, context=4352)
    assert d["memory"]["weights_bytes"] == pytest.approx(mem.weights_bytes)


@pytest.mark.parametrize("phase, batch, length", [("prefill", 2, 1024), ("decode", 32, 4096)])
def test_representative_layers_equal_full_graph(dsv3, h800, phase, batch, length):
    """Per-layer times come from a graph with one layer of each kind; they equal the full graph's."""
    from archsim.cost.phase import price_graph
    from archsim.graph.build import build_decode, build_prefill
    from archsim.graph.precision import Shard
    from archsim.mapping.phase_graph import Forward, layer_of_op, priced_graph
    decode = phase == "decode"
    fwd = Forward(decode=decode, seqs=batch, new_tokens=1 if decode else length, past=length - 1 if decode else 0)
    priced = priced_graph(dsv3, h800, fwd, FP8, Shard(tp=1, ep=8), mtp=False, rank_work=None,
                          row_layout="contiguous", attention="flash", cuda_graph=False, cache=None)
    layer_s, flops = priced.layer_s, priced.flops
    build = build_prefill if phase == "prefill" else build_decode
    kw = {"prompt_len": length} if phase == "prefill" else {"context": length}
    full = price_graph(build(dsv3, batch=batch, precision=FP8, shard=Shard(tp=1, ep=8), **kw), h800)
    expected = {}
    for name, c in full.ops.items():
        expected[layer_of_op(name)] = expected.get(layer_of_op(name), 0.0) + c.time_s
    assert set(expected) == set(layer_s)
    for key, value in expected.items():
        assert layer_s[key] == pytest.approx(value, rel=1e-12)
    assert flops == pytest.approx(full.flops, rel=1e-12)


def test_context_parallel_splits_prefill_and_exchanges_kv(dsv3, h800):
    base = price_phase(dsv3, h800, Parallelism(ep=8, dp=8), FP8, phase="prefill", batch=8, length=32768)
    cp = price_phase(dsv3, h800, Parallelism(ep=8, dp=2, cp=4), FP8, phase="prefill", batch=8, length=32768)
    # the same 8 chips and 8 prompts: dp=8 gives each chip a prompt, cp=4 gives each chip a quarter of
    # four prompts; the work per chip is the same
    assert cp.compute_s == pytest.approx(base.compute_s, rel=0.05)
    # ring attention moves every layer's latent K/V (576 BF16 values per token) around the cp group
    from archsim.cost.collectives import price_collective
    one = price_collective("all_gather", 4 * 32768 * 576 * 2, 4, h800).time_s  # 4 prompts per cp group
    assert cp.comm_by_kind["cp_kv_exchange"] == pytest.approx(61 * one)
    assert base.comm_by_kind["cp_kv_exchange"] == 0.0


def test_phase_graph_helpers(dsv3):
    from archsim.mapping import phases
    assert phases.layer_of_op("layers.12.mlp.experts.down") == 12
    assert phases.layer_of_op("embed_tokens") == "embed"
    assert phases.layer_of_op("mtp.0.eh_proj") == phases.layer_of_op("lm_head") == "head"
    g = phases.device_phase_graph(dsv3, "decode", 2, 64, FP8, 1, 8, 16.0, False, compact=True)
    assert "layers.3.mlp.router" in g and "lm_head" in g
