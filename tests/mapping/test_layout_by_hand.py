"""Layout resolution, capacity and plan metrics against hand derivations: which degrees the auto rules pick, how
many sequences or tokens fit beside the weights (bytes written out from the model's fields and the chip's
capacity), and the plan search's per-device rates and prices."""
from __future__ import annotations

from dataclasses import replace

import pytest

from archsim.graph.precision import precision_from_names
from archsim.mapping.capacity import max_batch, max_context
from archsim.mapping.device_memory import memory_per_device
from archsim.mapping.parallel import (auto_ep, auto_tp, candidate_device_counts, divisors, plan_layout,
                                      resolve_parallelism)
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.plan import enumerate_layouts, search_inference
from archsim.units import SECONDS_PER_HOUR

BF16 = precision_from_names("bf16")
FP8 = precision_from_names("fp8")

H, FFN, VOCAB = 16384, 53248, 128256
LLAMA_ATTENTION = H * 128 * 128 + 2 * H * 8 * 128 + 128 * 128 * H
LLAMA_MLP = 3 * H * FFN


def llama_weight_bytes(tp: int, layers: int = 126, first: bool = True, last: bool = True) -> float:
    """BF16 bytes on one TP rank: attention and MLP split tp ways, 2 norms a layer, embedding and head split tp ways
    (every dimension divides 8, so no padding), the final norm on the last stage."""
    out = layers * (LLAMA_ATTENTION + LLAMA_MLP) / tp + layers * 2 * H
    out += (VOCAB * H / tp if first else 0) + (VOCAB * H / tp + H if last else 0)
    return 2.0 * out


def test_llama_weights_per_device(llama):
    for tp, pp in ((8, 1), (4, 2), (8, 4)):
        par = Parallelism(tp=tp, pp=pp)
        mem = memory_per_device(llama, par, BF16, capacity_bytes=1e15)
        # the worst stage: the first (it holds ceil(126 / pp) layers and the embedding) unless the head outweighs
        per_stage = [llama_weight_bytes(tp, layers=126 // pp + (1 if s < 126 % pp else 0), first=s == 0,
                                        last=s == pp - 1) for s in range(pp)]
        assert mem.weights_bytes == pytest.approx(max(per_stage), rel=1e-12)
        assert mem.stage == per_stage.index(max(per_stage))


def test_max_batch_and_context_fill_the_capacity(llama, h200):
    """Llama on TP8 (one H200 node, 141 GB each): KV is 126 layers x 512 B per token on a rank, so at a 4096-token
    context a sequence takes 4096 x 126 x 512 B and the largest batch is floor((141e9 - weights) / that); at batch 8
    the longest context is floor((141e9 - weights) / (8 x 126 x 512)), capped at 131,072 positions."""
    par = Parallelism(tp=8)
    free = 141e9 - llama_weight_bytes(8)
    per_seq = 4096 * 126 * 512
    assert max_batch(llama, h200, par, BF16, context=4096) == int(free // per_seq)
    assert max_context(llama, h200, par, BF16, batch=8) == int(free // (8 * 126 * 512))
    assert max_context(llama, h200, par, BF16, batch=1) == 131072  # the model's position limit binds
    # activations per sequence count against the same capacity, per sequence of the busiest replica
    act = 1e8
    assert max_batch(llama, h200, par, BF16, context=4096, activation_bytes_per_seq=act) == int(
        free // (per_seq + act))
    # DP2 x TP8 (16 chips): each replica holds half the sequences (the busier ceil(batch / 2))
    assert max_batch(llama, h200, Parallelism(tp=8, dp=2), BF16, context=4096) == 2 * int(free // per_seq)
    # nothing fits: BF16 Llama on one chip
    assert max_batch(llama, h200, Parallelism(), BF16, context=4096) == 0


def test_device_counts_and_auto_degrees(llama, dsv3, h200):
    assert candidate_device_counts(h200, limit=32) == [1, 2, 4, 8, 16, 24, 32]
    assert list(divisors(12)) == [1, 2, 3, 4, 6, 12] and list(divisors(12, 5)) == [1, 2, 3, 4]
    # dense: the largest in-node divisor of the devices that divides heads (128), kv heads (8), vocab, FFN
    assert auto_tp(llama, h200, 16) == 8 and auto_tp(llama, h200, 6) == 2 and auto_tp(llama, h200, 1) == 1
    assert auto_tp(dsv3, h200, 16) == 1  # MoE: attention DP
    # EP: the largest divisor of gcd(stage / moe_tp, slots) whose group holds whole TP groups
    assert auto_ep(dsv3, 1, 48) == 16                 # gcd(48, 256) = 16
    assert auto_ep(dsv3, 1, 48, redundant=32) == 48   # gcd(48, 288) = 48
    assert auto_ep(dsv3, 2, 48, moe_tp=2) == 8        # gcd(24, 256) = 8: groups of 16 chips
    assert auto_ep(dsv3, 4, 8) == 8                   # groups of 8 hold two TP4 groups
    assert auto_ep(llama, 8, 8) == 1


def test_resolve_parallelism_picks_the_smallest_pipeline_that_fits(llama, h200, h100):
    """Llama BF16 on 16 chips: TP8 (auto). On H200 (141 GB) one stage fits (810 GB / 8 = 101 GB a rank): PP1 x DP2.
    On H100 (80 GB) it does not: PP2 x DP1 (50.6 GB a rank)."""
    kw = dict(batch=1, precision=BF16, context=2048)
    p200 = resolve_parallelism(llama, h200, 16, **kw)
    assert (p200.tp, p200.pp, p200.dp, p200.ep, p200.micro_batches) == (8, 1, 2, 1, None)
    p100 = resolve_parallelism(llama, h100, 16, **kw)
    assert (p100.tp, p100.pp, p100.dp) == (8, 2, 1)
    # dp given: pp is the rest
    assert resolve_parallelism(llama, h100, 16, dp=1, **kw).pp == 2
    # nothing fits even at the deepest pipeline tried: PP1 (reported as not fitting)
    assert resolve_parallelism(llama, h100, 2, **kw).pp == 1


def test_plan_layout_auto_devices_is_the_smallest_that_fits(llama, h200):
    """BF16 Llama (810 GB of weights) at batch 1: 4 H200 (564 GB) cannot hold it; 8 (1128 GB) can."""
    plan = plan_layout(llama, h200, devices="auto", batch=1, prompt_len=128, output_len=16, precision=BF16)
    assert plan.fits and plan.parallelism.devices == 8
    small = plan_layout(llama, h200, devices=4, batch=1, prompt_len=128, output_len=16, precision=BF16)
    assert not small.fits and small.prefill is None and small.decode is None


def test_plan_metrics_by_hand(llama, h200):
    """Every plan's rates follow from its decode step: tokens/s = batch / TPOT, per device / devices, and the price
    of a million tokens = devices x $/h / 3600 / (tokens/s) x 1e6."""
    model = replace(llama, num_hidden_layers=4)
    res = search_inference(model, h200, devices=2, prompt_len=128, output_len=16, precision=BF16, batches=[2, 4])
    assert res.plans and res.searched == len(list(enumerate_layouts(model, h200, 2))) * 2
    for p in res.plans:
        m = p.metrics
        devices = p.parallelism.devices
        assert m["tokens_per_s"] == pytest.approx(p.batch / m["tpot_s"], rel=1e-12)
        assert m["tokens_per_s_per_device"] == pytest.approx(p.batch / m["tpot_s"] / devices, rel=1e-12)
        assert m["usd_per_million_tokens"] == pytest.approx(
            devices * h200.price_usd_per_hour / SECONDS_PER_HOUR / m["tokens_per_s"] * 1e6, rel=1e-12)
    assert SECONDS_PER_HOUR == 3600
    rates = [p.metrics["tokens_per_s_per_device"] for p in res.plans]
    assert rates == sorted(rates, reverse=True)
    cost = search_inference(model, h200, devices=2, prompt_len=128, output_len=16, precision=BF16, batches=[2, 4],
                            objective="cost")
    prices = [p.metrics["usd_per_million_tokens"] for p in cost.plans]
    assert prices == sorted(prices)
    latency = search_inference(model, h200, devices=2, prompt_len=128, output_len=16, precision=BF16,
                               batches=[2, 4], objective="latency")
    tpots = [p.metrics["tpot_s"] for p in latency.plans]
    assert tpots == sorted(tpots)
    # an SLO keeps only the plans that meet it and counts the rest as rejected
    slo = sorted(tpots)[len(tpots) // 2]
    cut = search_inference(model, h200, devices=2, prompt_len=128, output_len=16, precision=BF16, batches=[2, 4],
                           slo_tpot_s=slo)
    assert all(p.metrics["tpot_s"] <= slo for p in cut.plans)
    assert len(cut.plans) == sum(1 for t in tpots if t <= slo)
    assert cut.rejected == cut.searched - len(cut.plans)
