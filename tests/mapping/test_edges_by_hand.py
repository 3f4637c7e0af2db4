"""Edges of the mapping layer that the mutation run (benchmarks/mutation) showed unpinned, each with a hand value:
the memory total, the MTP module's bytes, the CUDA-graph and MTP rules of a decode step, the report's per-device
rate, device counts on larger nodes, default plan batches, training costs and layouts, the exact min-max partition
(brute force), a fixed-order two-stream schedule worked by hand, and the one-pool rule for layout flags."""
from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest

from archsim.config.workload import load_workload
from archsim.errors import ConfigError
from archsim.graph.params import count_params
from archsim.graph.precision import precision_from_names
from archsim.mapping.deployment import LayoutPlan
from archsim.mapping.device_memory import MemoryBreakdown, memory_per_device, stage_params
from archsim.mapping.overlap import Task, fixed_order_span, list_schedule
from archsim.mapping.parallel import candidate_device_counts, plan_layout
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.phases import price_phase
from archsim.mapping.plan import enumerate_layouts, search_inference
from archsim.mapping.resolve import resolve_deployment
from archsim.mapping.training import (TrainingSetup, estimate_training, smallest_training_layout)
from archsim.mapping.training_work import min_max_partition

REPO = Path(__file__).resolve().parents[2]
BF16 = precision_from_names("bf16")
FP8 = precision_from_names("fp8")


def test_memory_total_is_every_part():
    m = MemoryBreakdown(weights_bytes=1.0, kv_cache_bytes=2.0, activations_bytes=4.0, gradients_bytes=8.0,
                        optimizer_bytes=16.0, capacity_bytes=31.0, stage=0)
    assert m.total_bytes == 31.0 and m.fits
    assert not replace(m, capacity_bytes=30.0).fits


def test_mtp_module_weights_on_the_last_stage(dsv3):
    """DeepSeek-V3 with its MTP module: the last stage holds the module's unique parameters split like the head (tp
    ways), in the weights format (FP8 with a float32 scale per 128 x 128 block: 1 + 4 / 16384 B a parameter)."""
    n = count_params(dsv3).mtp
    assert n > 0
    par = Parallelism(tp=2, dp=4, moe_tp=2, ep=4, pp=2)
    assert stage_params(dsv3, par, 1, mtp=True)["mtp"] == n / 2
    assert stage_params(dsv3, par, 0, mtp=True)["mtp"] == 0.0
    one = memory_per_device(dsv3, Parallelism(tp=2, moe_tp=2), FP8, capacity_bytes=1e15, mtp=True)
    base = memory_per_device(dsv3, Parallelism(tp=2, moe_tp=2), FP8, capacity_bytes=1e15)
    assert one.weights_bytes - base.weights_bytes == pytest.approx(n / 2 * (1 + 4 / 16384), rel=1e-9)


def test_cuda_graphs_and_mtp_apply_to_decode_only(dsv3, h200):
    """CUDA graphs replay decode kernels only: a prefill priced with them is the same as without. MTP decodes
    1 + num_nextn_predict_layers = 2 tokens per sequence a step (the draft is verified in the same forward)."""
    par = Parallelism(dp=8, ep=8, micro_batches=1)
    a = price_phase(dsv3, h200, par, FP8, phase="prefill", batch=8, length=512, cuda_graph=True)
    b = price_phase(dsv3, h200, par, FP8, phase="prefill", batch=8, length=512, cuda_graph=False)
    assert a.time_s == b.time_s
    d_graph = price_phase(dsv3, h200, par, FP8, phase="decode", batch=8, length=512, cuda_graph=True)
    d_plain = price_phase(dsv3, h200, par, FP8, phase="decode", batch=8, length=512, cuda_graph=False)
    assert d_graph.compute_s < d_plain.compute_s  # each kernel's launch floor 2.1 us instead of 4 us
    m = price_phase(dsv3, h200, par, FP8, phase="decode", batch=64, length=512, mtp=True)
    assert m.tokens_per_micro_batch == 8 * 2
    assert price_phase(dsv3, h200, par, FP8, phase="decode", batch=64, length=512).tokens_per_micro_batch == 8


def test_report_rate_per_device(llama, h200):
    model = replace(llama, num_hidden_layers=4)
    plan = plan_layout(model, h200, devices=8, batch=4, prompt_len=128, output_len=16, precision=BF16, tp=8)
    out = plan.to_dict()
    assert isinstance(plan, LayoutPlan) and plan.fits
    assert out["decode_tokens_per_s"] == pytest.approx(4 / plan.decode.time_s, rel=1e-12)
    assert out["decode_tokens_per_s_per_device"] == pytest.approx(4 / plan.decode.time_s / 8, rel=1e-12)


def test_device_counts_on_a_32_chip_node(h200):
    """Powers of two below the node size, then whole nodes."""
    hw = replace(h200, node=replace(h200.node, chips_per_node=32))
    assert candidate_device_counts(hw, limit=96) == [1, 2, 4, 8, 16, 32, 64, 96]


def test_default_plan_batches_per_replica(llama, h200):
    """Without --batch a layout is tried at 1, 4, 16, 64 and 256 sequences per attention replica."""
    model = replace(llama, num_hidden_layers=4)
    layouts = list(enumerate_layouts(model, h200, 2))
    res = search_inference(model, h200, devices=2, prompt_len=64, output_len=8, precision=BF16)
    assert res.searched == 5 * len(layouts)
    assert {(p.parallelism.dp, p.batch) for p in res.plans} <= {(p.dp, p.dp * s) for p in layouts
                                                                  for s in (1, 4, 16, 64, 256)}
    assert {p.batch // p.parallelism.dp for p in res.plans} == {1, 4, 16, 64, 256}


def test_training_costs_and_hours(llama, h200):
    """GPU-hours for a token budget: tokens / (tokens/s) x devices / 3600; cost the same hours x $/h."""
    model = replace(llama, num_hidden_layers=4)
    est = estimate_training(model, h200, Parallelism(tp=8, micro_batches=1), TrainingSetup(seq_len=1024,
                                                                                         global_batch=1))
    tokens = 3e9
    hours = tokens / est.tokens_per_s * 8 / 3600
    assert est.tokens_per_step == 1024 and est.tokens_per_s == pytest.approx(1024 / est.step_time_s, rel=1e-12)
    assert est.gpu_hours_per_trillion_tokens == pytest.approx(1e12 / est.tokens_per_s * 8 / 3600, rel=1e-12)
    assert est.cost_usd(tokens) == pytest.approx(hours * h200.price_usd_per_hour, rel=1e-12)
    out = est.to_dict(tokens=tokens)
    assert out["gpu_hours"] == pytest.approx(hours, rel=1e-12) and out["cost_usd"] == pytest.approx(
        hours * h200.price_usd_per_hour, rel=1e-12)
    assert out["tokens"] == tokens


def test_fp8_activation_cache_halves_saved_bf16_activations(llama, h200):
    model = replace(llama, num_hidden_layers=4)
    par = Parallelism(tp=8, micro_batches=1)
    base = estimate_training(model, h200, par, TrainingSetup(seq_len=1024, global_batch=1))
    fp8 = estimate_training(model, h200, par, TrainingSetup(seq_len=1024, global_batch=1, fp8_activation_cache=True))
    assert base.memory.activations_bytes > 0
    assert fp8.memory.activations_bytes == pytest.approx(base.memory.activations_bytes / 2, rel=1e-12)


def test_lora_memory_by_hand(llama, h200):
    """LoRA rank 16 on q, k, v and o of a 4-layer Llama on TP8: r x (in + out) per projection per layer, / 8:
    q 16 x (16384 + 16384), k and v 16 x (16384 + 1024), o 16 x (16384 + 16384). Adapters: BF16 weights (2 B), FP32
    gradients (4 B), AdamW BF16-recipe optimizer states (12 B); the frozen base keeps its BF16 weights only."""
    model = replace(llama, num_hidden_layers=4)
    par = Parallelism(tp=8, micro_batches=1)
    est = estimate_training(model, h200, par, TrainingSetup(seq_len=1024, global_batch=1, mode="lora"))
    per_layer = 16 * ((16384 + 16384) + 2 * (16384 + 1024) + (16384 + 16384))
    adapters = 4 * per_layer / 8
    base = memory_per_device(model, par, BF16, capacity_bytes=1e15)
    assert est.memory.gradients_bytes == pytest.approx(4 * adapters, rel=1e-12)
    assert est.memory.optimizer_bytes == pytest.approx(12 * adapters, rel=1e-12)
    assert est.memory.weights_bytes == pytest.approx(base.weights_bytes + 2 * adapters, rel=1e-12)


def test_smallest_training_layout(llama, h200):
    """16 H200 for the 4-layer Llama: TP8 (auto, dense), the smallest PP whose training memory fits, DP the rest,
    one sequence per micro-batch (global batch / dp)."""
    model = replace(llama, num_hidden_layers=4)
    setup = TrainingSetup(seq_len=1024, global_batch=8)
    par = smallest_training_layout(model, h200, setup, 16)
    assert (par.tp, par.cp, par.devices) == (8, 1, 16)
    assert par.micro_batches == 8 // par.dp
    fixed = smallest_training_layout(model, h200, setup, 16, dp=2)
    assert (fixed.dp, fixed.pp, fixed.micro_batches) == (2, 1, 4)
    with pytest.raises(ConfigError):
        smallest_training_layout(model, h200, setup, 16, dp=3)


def test_min_max_partition_against_brute_force():
    """Every way to cut 7 loads into 3 contiguous non-empty parts (itertools over the cut points): the DP's split
    has the least largest part."""
    loads = [5.0, 1.0, 7.0, 3.0, 2.0, 8.0, 4.0]
    for parts in (1, 2, 3, 4, 7):
        best = min(max(sum(loads[a:b]) for a, b in zip((0, *cuts), (*cuts, len(loads))))
                   for cuts in itertools.combinations(range(1, len(loads)), parts - 1))
        split = min_max_partition(loads, parts)
        assert len(split) == parts and split[0].start == 0 and split[-1].stop == len(loads)
        assert all(r.stop == s.start and len(r) > 0 for r, s in zip(split, split[1:]))
        assert max(sum(loads[i] for i in r) for r in split) == best


def test_fixed_order_schedule_by_hand():
    """Compute stream A (1 s), C (1 s, needs B), D (3 s); communication stream B (2 s, needs A). In the given
    per-stream order: A 0-1, B 1-3, C 3-4, D 4-7: span 7 (D waits behind C in the fixed order). A zero-length task
    ends when its inputs do."""
    tasks = [Task("A", "compute", 1.0), Task("B", "comm", 2.0, ("A",)), Task("C", "compute", 1.0, ("B",)),
             Task("Z", "comm", 0.0, ("C",)), Task("D", "compute", 3.0)]
    times = list_schedule(tasks)
    assert times == {"A": (0.0, 1.0), "B": (1.0, 3.0), "C": (3.0, 4.0), "Z": (4.0, 4.0), "D": (4.0, 7.0)}
    assert fixed_order_span(tasks) == 7.0


def test_layout_flags_need_a_one_pool_deployment(h800):
    wl = load_workload(REPO / "workloads/deepseek_v3.yaml")
    with pytest.raises(ConfigError, match="one-pool"):
        resolve_deployment(wl, h800, deployment=REPO / "deployments/deepseek_v3_h800_1p3d.yaml", tp=2)
