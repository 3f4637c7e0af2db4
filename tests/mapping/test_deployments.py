"""The production layouts the deployment vocabulary must express, priced end to end, and the step physics they
rely on, each against a hand derivation."""
from __future__ import annotations

from math import ceil
from pathlib import Path

import pytest

from archsim.api import estimate
from archsim.config.hardware import load_hardware
from archsim.errors import ConfigError
from archsim.graph.expert_load import uniform_load
from archsim.mapping.experts import busiest_rank_work, place_experts

REPO = Path(__file__).resolve().parents[2]
DSV3, KIMI = REPO / "workloads/deepseek_v3.yaml", REPO / "workloads/kimi_k2.yaml"
DEPLOY = REPO / "deployments"


@pytest.fixture(scope="module")
def hw():
    return {name: load_hardware(REPO / f"hardware/{name}.yaml") for name in ("h100", "h200", "h800")}


def test_deepseek_on_one_h200_node_three_ways(hw):
    """SGLang's default (attention TP8 + MoE TP8), EP inside the TP group, and DP attention + EP8."""
    kw = dict(devices=8, batch=32, prompt_len=1000, output_len=1000)
    tp_moe_tp = estimate(DSV3, hw["h200"], tp=8, moe_tp=8, **kw)
    tp_moe_ep = estimate(DSV3, hw["h200"], tp=8, moe_ep=8, **kw)
    dp_ep = estimate(DSV3, hw["h200"], attn_dp=8, moe_ep=8, **kw)
    for r in (tp_moe_tp, tp_moe_ep, dp_ep):
        assert r.memory.fits and r.decode is not None and r.prefill is not None
    lay = tp_moe_tp.deployment.layout
    assert (lay["tp"], lay["moe_tp"], lay["moe_ep"], lay["attn_dp"]) == (8, 8, 1, 1)
    # with attention TP every chip already holds every token: no EP dispatch/combine, only the TP all-reduces
    for r in (tp_moe_tp, tp_moe_ep):
        assert r.decode.exposed_communication_s == pytest.approx(r.decode.communication_s)
    # the same weights per device either way (every expert 1/8 by width, or 32 of 256 whole)
    assert tp_moe_tp.memory.weights_bytes == pytest.approx(tp_moe_ep.memory.weights_bytes, rel=0.01)
    # DP attention replicates attention on every chip: more weights per device than TP attention
    assert dp_ep.memory.weights_bytes > tp_moe_ep.memory.weights_bytes


def test_attention_tp_with_ep_pays_all_reduces_not_an_exchange(hw):
    from archsim.graph.precision import precision_from_names
    from archsim.mapping.parallelism import Parallelism
    from archsim.mapping.phases import price_phase
    from archsim.config.workload import load_workload
    from archsim.cost.collectives import price_collective
    model = load_workload(DSV3).model
    b = price_phase(model, hw["h200"], Parallelism(tp=8, ep=8, micro_batches=1), precision_from_names("fp8"),
                    phase="decode", batch=32, length=2048)
    # 61 layers x 2 all-reduces of 32 tokens x 7168 x 2 B over 8 chips; nothing else
    one = price_collective("all_reduce", 32 * 7168 * 2, 8, hw["h200"]).time_s
    assert b.comm_by_kind["tp_all_reduce"] == pytest.approx(61 * 2 * one)
    assert b.comm_by_kind["ep_dispatch"] == b.comm_by_kind["ep_combine"] == 0.0


def test_deepseek_prefill_and_decode_units(hw):
    pre = estimate(DSV3, hw["h800"], deployment=DEPLOY / "deepseek_v3_h800_prefill_unit.yaml", batch=32,
                   prompt_len=4096, output_len=1, phase="prefill")
    assert pre.prefill is not None and pre.decode is None and pre.memory.fits
    assert pre.deployment.layout["redundant_experts"] == 32 and pre.deployment.layout["moe_ep"] == 32
    # 128 sequences per GPU at 4K context fit a decode-only pool (prefill activations would not: 262,144 tokens
    # in one forward)
    dec = estimate(DSV3, hw["h800"], deployment=DEPLOY / "deepseek_v3_h800_decode_unit.yaml", prompt_len=3072,
                   output_len=1024, phase="decode")
    assert dec.memory.fits and dec.decode is not None and dec.prefill is None
    assert dec.scenario.batch == 128 * 144
    # 2 routed slots per GPU (288 = 256 + 32 over 144 ranks); KV 128 x 4096 x 70,272 B per GPU
    assert dec.memory.kv_cache_bytes == pytest.approx(128 * 4096 * 70272)
    # aggregated (the same layout prefilling too), the activations of one chunk forward (8,192 tokens a replica)
    # fit; prefilling a replica's 128 prompts in one forward (393,216 tokens) would not
    layout = dict(devices=144, attn_dp=144, moe_ep=144, redundant_experts=32, batch=128 * 144, prompt_len=3072,
                  output_len=1024)
    assert estimate(DSV3, hw["h800"], **layout).memory.fits
    assert not estimate(DSV3, hw["h800"], prefill_chunk=0, **layout).memory.fits


def test_ep72_over_288_slots_on_h100(hw):
    r = estimate(DSV3, hw["h100"], devices=72, attn_dp=72, moe_ep=72, redundant_experts=32, batch=72 * 64,
                 prompt_len=2000, output_len=100)
    assert r.memory.fits and r.decode is not None
    with pytest.raises(ConfigError, match="n_routed_experts"):
        estimate(DSV3, hw["h100"], devices=72, attn_dp=72, moe_ep=72, batch=72)  # 256 over 72 ranks


def test_kimi_int4_experts_on_16_h200(hw):
    int4 = estimate(KIMI, hw["h200"], devices=16, batch=64, weights="bf16", expert_weights="int4")
    fp8 = estimate(KIMI, hw["h200"], devices=16, batch=64)
    assert int4.memory.fits and int4.decode is not None
    assert int4.memory.weights_bytes < fp8.memory.weights_bytes


def test_disaggregated_1p3d_pools_with_their_own_layouts(hw):
    r = estimate(DSV3, hw["h800"], deployment=DEPLOY / "deepseek_v3_h800_1p3d.yaml", batch=256, prompt_len=2000,
                 output_len=500)
    d = r.to_dict()
    pools = {p["role"]: p for p in d["deployment"]["pools"]}
    assert pools["prefill"]["layout"]["moe_ep"] == 32 and pools["prefill"]["instances"] == 1
    assert pools["decode"]["layout"]["moe_ep"] == 16 and pools["decode"]["instances"] == 3
    assert d["deployment"]["devices"] == 32 + 3 * 16 and d["deployment"]["disaggregated"]
    # prefill from the prefill pool (its batch: 32 prompts), decode from a decode instance (256 sequences)
    assert d["prefill"]["tokens_per_s"] == pytest.approx(32 * 2000 / d["prefill"]["latency_s"])
    assert d["decode"]["tokens_per_s"] == pytest.approx(256 / d["decode"]["tpot_s"])
    # the system runs at the slower pool: requests/s = min(prefill, decode) capacity
    prefill_rate = 32 / d["prefill"]["latency_s"]
    decode_rate = 3 * 256 / (500 * d["decode"]["tpot_s"])
    assert d["system"]["requests_per_s"] == pytest.approx(min(prefill_rate, decode_rate))


def test_flags_through_estimate_match_a_deployment_file(hw, tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("deployment:\n  pool: {devices: 16, attn_dp: 16, moe_ep: 16, redundant_experts: 16}\n")
    a = estimate(DSV3, hw["h800"], deployment=path, batch=64).to_dict()
    b = estimate(DSV3, hw["h800"], devices=16, attn_dp=16, moe_ep=16, redundant_experts=16, batch=64).to_dict()
    assert a["decode"] == b["decode"] and a["prefill"] == b["prefill"]


def test_kimi_decode_grows_with_batch_below_dp(hw):
    """Kimi K2 on 16 H100 (DP16, EP16): a batch smaller than the replicas leaves replicas idle and routes fewer
    tokens, so batch 1 < 2 < 8 in decode time (all were priced as a full batch of 16 before)."""
    tpot = {b: estimate(KIMI, hw["h100"], devices=16, batch=b).decode.tpot_s for b in (1, 2, 8, 16)}
    assert tpot[1] < tpot[2] < tpot[8] < tpot[16]


def test_kimi_batch1_tpot_from_the_critical_devices_bytes(hw):
    """Batch 1 on 16 H100: the critical device holds the sequence (its attention, dense, shared-expert and head
    weights, its KV) and the busiest EP rank's expected distinct experts; it reads about 18 GB."""
    r = estimate(KIMI, hw["h100"], devices=16, batch=1, prompt_len=4096, output_len=1024)
    load = uniform_load(384, 8)
    distinct = busiest_rank_work(load, place_experts(load, 16), 1.0).distinct
    # one token's 8 experts over 16 ranks of 24: E[max experts on a rank] = 1.99 (exact convolution)
    assert distinct == pytest.approx(1.989, abs=0.001)
    assert 16e9 < r.decode.hbm_bytes < 20e9
    # the step is at least the time to stream those bytes at the achievable HBM rate
    rate = hw["h100"].main_memory.bandwidth_bytes_per_s * hw["h100"].main_memory.achievable_fraction
    assert r.decode.tpot_s >= r.decode.hbm_bytes / rate


def test_absorbed_mla_decode_reads_kv_once_plus_weights(hw):
    """DeepSeek-V3 decode, batch 16 on 16 H100 (one sequence per device): the HBM bytes grow with context by
    exactly the KV cache (70,272 B per token, read once), not by the re-read flash tiles of K and V."""
    def hbm(context):
        r = estimate(DSV3, hw["h100"], devices=16, batch=16, prompt_len=context - 1, output_len=1,
                     micro_batches=1)
        return r.decode.hbm_bytes
    grow = hbm(24000) - hbm(20000)
    assert grow == pytest.approx(4000 * 70272, rel=0.02)
    grow = hbm(32000) - hbm(8000)
    assert grow == pytest.approx(24000 * 70272, rel=0.02)


def test_expected_max_busiest_rank_by_hand():
    """16 tokens at EP16 over 384 experts (24 per rank), k = 8: the mean rank holds 16 x 8 / 16 = 8 copies and
    16 x 24 x (1 - (1 - 8/384)^16) / 24 ... distinct experts; the busiest rank expects more of both."""
    load = uniform_load(384, 8)
    work = busiest_rank_work(load, place_experts(load, 16), 16.0)
    p = 8 / 384
    mean_distinct = 24 * (1 - (1 - p) ** 16)
    assert mean_distinct == pytest.approx(6.86, abs=0.01)
    assert work.distinct == pytest.approx(10.9, abs=0.05)   # the expected maximum
    assert work.tokens > 8.0 and max(work.tokens_per_slot) >= 1.0


def test_redundant_slots_relieve_a_hot_expert():
    from archsim.graph.expert_load import zipf_load
    load = zipf_load(256, 8, 1.0)
    plain = busiest_rank_work(load, place_experts(load, 32), 4096.0)
    eplb = busiest_rank_work(load, place_experts(load, 32, 32), 4096.0)
    assert eplb.tokens < plain.tokens
    # EPLB replicates the hottest expert first: expert 0 gets the most replicas
    replicas = place_experts(load, 32, 32).replicas
    assert replicas[0] == max(replicas) > 1 and sum(replicas) == 256 + 32
    assert ceil(sum(replicas) / 32) == 9
