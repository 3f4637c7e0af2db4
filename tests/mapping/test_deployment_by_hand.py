"""Pools of a deployment and the totals of a step over every device, by hand: which context a pool's KV cache holds,
which phases it prices, the activations it adds, and how the busy replicas' own work sums into the deployment's
FLOPs (the busiest device's work from a step on one replica, counted once per replica holding that many sequences)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from archsim.graph.precision import precision_from_names
from archsim.mapping.deployment import Deployment, Pool, price_deployment
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.phases import price_phase

BF16 = precision_from_names("bf16")
KV_PER_TOKEN_LAYER_TP8 = 2 * 8 * 128 * 2 / 8   # Llama GQA: K and V of 8 heads x 128, BF16, over TP8: 512 B


@pytest.fixture(scope="module")
def small(llama):
    return replace(llama, num_hidden_layers=4)


def _dep(model, hw, pools, **kw):
    base = dict(model=model, hardware=hw, precision=BF16, pools=pools, batch=4, prompt_len=1000, output_len=200,
                prefill_chunk=None, cuda_graphs=False)
    return Deployment(**{**base, **kw})


def test_disaggregated_pools_hold_their_own_context(small, h200):
    """A prefill pool holds its prompts' KV (1000 tokens); a decode pool every sequence at the end of generation
    (1200); each prices only its phase, with the activations of that phase."""
    tp8 = Parallelism(tp=8, micro_batches=1)
    dep = _dep(small, h200, (Pool(role="prefill", layout=tp8), Pool(role="decode", layout=tp8, batch=2)))
    plan = price_deployment(dep)
    pre, dec = plan.pools
    assert pre.memory.kv_cache_bytes == 4 * 1000 * 4 * KV_PER_TOKEN_LAYER_TP8
    assert dec.memory.kv_cache_bytes == 2 * 1200 * 4 * KV_PER_TOKEN_LAYER_TP8  # the pool's own batch
    assert pre.prefill is not None and pre.decode is None and dec.decode is not None and dec.prefill is None
    assert plan.prefill is pre.prefill and plan.decode is dec.decode
    assert pre.memory.activations_bytes == pre.prefill.activation_peak_bytes > 0
    assert dec.memory.activations_bytes == dec.decode.activation_peak_bytes
    assert dec.batch == 2 and dec.decode_tokens_per_s == pytest.approx(2 / dec.decode.time_s, rel=1e-12)
    assert dep.devices == 16 and dep.disaggregated


def test_aggregated_pool_holds_the_full_context_and_the_larger_activations(small, h200):
    tp8 = Parallelism(tp=8, micro_batches=1)
    plan = price_deployment(_dep(small, h200, (Pool(role="both", layout=tp8),))).pools[0]
    assert plan.memory.kv_cache_bytes == 4 * 1200 * 4 * KV_PER_TOKEN_LAYER_TP8
    assert plan.prefill is not None and plan.decode is not None
    assert plan.memory.activations_bytes == max(plan.prefill.activation_peak_bytes,
                                                plan.decode.activation_peak_bytes)
    assert plan.ttft_s == plan.prefill.time_s and plan.tpot_s == plan.decode.time_s
    # a decode-only deployment prices decode alone, at the full context
    only = price_deployment(_dep(small, h200, (Pool(role="both", layout=tp8),), phase="decode")).pools[0]
    assert only.prefill is None and only.decode is not None
    assert only.memory.kv_cache_bytes == plan.memory.kv_cache_bytes
    assert only.memory.activations_bytes == only.decode.activation_peak_bytes


def test_a_pool_that_does_not_fit_is_not_priced(llama, h200):
    """BF16 Llama (810 GB) on 4 H200 (141 GB each): no phase is priced, and the report says why."""
    plan = price_deployment(_dep(llama, h200, (Pool(role="both", layout=Parallelism(tp=4)),))).pools[0]
    assert not plan.fits and plan.prefill is None and plan.decode is None
    assert "reason" in plan.to_dict() and "phases" not in plan.to_dict()


def test_deployment_flops_count_every_busy_replica(small, h200):
    """6 sequences over DP4 (TP1): two replicas hold 2, two hold 1. The step's FLOPs over the instance are 2 x (a
    2-sequence replica's) + 2 x (a 1-sequence replica's); the busiest device does a 2-sequence replica's work. 3
    sequences over DP4: 3 busy replicas, one idle."""
    kw = dict(phase="decode", length=1024)
    one = price_phase(small, h200, Parallelism(micro_batches=1), BF16, batch=1, **kw)
    two = price_phase(small, h200, Parallelism(micro_batches=1), BF16, batch=2, **kw)
    b = price_phase(small, h200, Parallelism(dp=4, micro_batches=1), BF16, batch=6, **kw)
    assert b.flops_per_device == pytest.approx(two.flops_per_device, rel=1e-12)
    assert b.deployment_flops == pytest.approx(2 * two.deployment_flops + 2 * one.deployment_flops, rel=1e-12)
    assert b.busy_replicas == 4
    assert b.deployment_main_bytes == pytest.approx(2 * two.deployment_main_bytes + 2 * one.deployment_main_bytes,
                                                    rel=1e-12)
    assert b.deployment_dynamic_energy_j == pytest.approx(
        2 * two.deployment_dynamic_energy_j + 2 * one.deployment_dynamic_energy_j, rel=1e-12)
    b3 = price_phase(small, h200, Parallelism(dp=4, micro_batches=1), BF16, batch=3, **kw)
    assert b3.deployment_flops == pytest.approx(3 * one.deployment_flops, rel=1e-12) and b3.busy_replicas == 3
    # with TP1 the deployment's FLOPs on one replica are the device's
    assert one.deployment_flops == pytest.approx(one.flops_per_device, rel=1e-12)
    # TP8: every rank of the replica runs its shard, so the instance does 8 x a rank's FLOPs
    t8 = price_phase(small, h200, Parallelism(tp=8, micro_batches=1), BF16, batch=2, **kw)
    assert t8.deployment_flops == pytest.approx(8 * t8.flops_per_device, rel=1e-12)
    # two micro-batches of one sequence each: the same FLOPs as the 2-sequence step, but the weights are read twice
    m2 = price_phase(small, h200, Parallelism(micro_batches=2), BF16, batch=2, **kw)
    assert m2.deployment_flops == pytest.approx(two.deployment_flops, rel=1e-9)
    assert m2.main_memory_bytes_per_device > two.main_memory_bytes_per_device


def test_pipeline_stage_devices_do_their_stage(small, h200):
    """PP2 over the 4-layer Llama: the busiest device runs its stage's 2 layers (and the embedding or the head), the
    instance every layer once: the deployment's FLOPs equal the one-stage step's."""
    kw = dict(phase="decode", batch=2, length=1024)
    whole = price_phase(small, h200, Parallelism(micro_batches=1), BF16, **kw)
    pp2 = price_phase(small, h200, Parallelism(pp=2, micro_batches=1), BF16, **kw)
    assert pp2.deployment_flops == pytest.approx(whole.deployment_flops, rel=1e-12)
    assert pp2.flops_per_device < whole.flops_per_device
    assert sum(pp2.stage_dynamic_energy_j) == pytest.approx(whole.dynamic_energy_j_per_device, rel=1e-9)
