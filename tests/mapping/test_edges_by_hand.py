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
    with pytest.raises(ConfigError):  # tp x cp = 8 does not divide 12 devices
        smallest_training_layout(model, h200, setup, 12, tp=4, cp=2)


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


def test_busiest_rank_with_zero_load_slots():
    """Expert 0 takes every token (p = 1), the others none: rank 0 (experts 0 and 1) always receives all 4 tokens,
    so E[max] = 4 exactly and the hottest slot holds them; no token, no work (one entry per slot)."""
    from archsim.graph.expert_load import ExpertLoad
    from archsim.mapping.experts import busiest_rank_work, place_experts
    load = ExpertLoad(kind="measured", probs=(1.0, 0.0, 0.0, 0.0), k=1)
    p = place_experts(load, 2)
    w = busiest_rank_work(load, p, 4)
    assert w.tokens == pytest.approx(4.0, rel=1e-12) and w.tokens_per_slot == pytest.approx((4.0, 0.0))
    assert busiest_rank_work(load, p, 0).tokens_per_slot == (0.0, 0.0)


def test_expected_max_of_a_point_mass_on_the_grid():
    """A normal law of variance 0 is its mean, also where the integration grid hits the mean exactly (3.0 on
    linspace(0, 4, 4001))."""
    from archsim.mapping.experts import expected_max
    assert expected_max([("normal", 3.0, 0.0)]) == pytest.approx(3.0, rel=1e-3)


def test_zero_length_cycle_is_a_config_error():
    with pytest.raises(ConfigError):
        list_schedule([Task("A", "comm", 0.0, ("B",)), Task("B", "comm", 0.0, ("A",)), Task("C", "compute", 1.0)])


def test_bad_degrees_and_batches_are_config_errors(llama, h200):
    for bad in (0, True, -1, 1.5):
        with pytest.raises(ConfigError):
            plan_layout(llama, h200, devices=8, batch=1, prompt_len=8, output_len=1, precision=BF16, tp=bad)
        with pytest.raises(ConfigError):
            plan_layout(llama, h200, devices=8, batch=bad, prompt_len=8, output_len=1, precision=BF16)
        with pytest.raises(ConfigError):
            price_phase(llama, h200, Parallelism(tp=8), BF16, phase="prefill", batch=1, length=8, prefill_chunk=bad)


def test_schedule_validation():
    from archsim.mapping.pipeline import dualpipe, interleaved_1f1b
    with pytest.raises(ConfigError):
        interleaved_1f1b(4, 6, 2)       # micro-batches not a multiple of pp
    with pytest.raises(ConfigError):
        interleaved_1f1b(4, 8, 0)
    with pytest.raises(ConfigError):
        dualpipe(4, 6)                  # fewer than 2 pp micro-batches
    with pytest.raises(ConfigError):
        dualpipe(3, 12)                 # odd pp


def test_interleaved_schedule_by_hand():
    """PP2, 4 micro-batches, 2 chunks: forwards visit chunks in groups of pp = 2 (chunk (k // 2) % 2), backwards in
    reverse chunk order; rank r warms up with (pp - r - 1) x 2 + (chunks - 1) x pp forwards (4 and 2)."""
    from archsim.mapping.pipeline import interleaved_1f1b

    def text(ops):
        return " ".join(f"{o.kind}{o.chunk}" for o in ops)

    r0, r1 = interleaved_1f1b(2, 4, 2)
    assert text(r0) == "F0 F0 F1 F1 F0 B1 F0 B1 F1 B0 F1 B0 B1 B1 B0 B0"
    assert text(r1) == "F0 F0 F1 B1 F1 B1 F0 B0 F0 B0 F1 B1 F1 B1 B0 B0"


def test_dualpipe_splits_on_deeper_ranks():
    """PP6, 12 micro-batches: every rank runs 12 forwards and 12 backwards, and each split backward's weight
    gradient runs as a W (ranks 2 and 3 have h = 2: their first cooldown pair stays whole)."""
    from archsim.mapping.pipeline import dualpipe
    for r, ops in enumerate(dualpipe(6, 12)):
        kinds = [o.kind for o in ops]
        assert kinds.count("F") + kinds.count("FB") == 12 and kinds.count("B") + kinds.count("FB") == 12
        assert kinds.count("W") == sum(1 for o in ops if o.kind == "B" and o.split)
    r2 = dualpipe(6, 12)[2]
    cooldown = [o for o in r2 if o.kind == "B"][-6:]
    assert [o.split for o in cooldown] == [False, False, False, True, True, True]


def test_tp_must_divide_the_heads_even_with_shared_experts(dsv3, h200):
    """A MoE model with 12 heads: TP8 does not divide them, whatever the shared expert's width allows."""
    model = replace(dsv3, num_attention_heads=12)
    assert {p.tp for p in enumerate_layouts(model, h200, 8)} == {1, 2, 4}


def test_long_prompt_layouts_keep_the_device_count(llama, dsv3, h200):
    layouts = list(enumerate_layouts(llama, h200, 16, long_prompt=True))
    assert all(p.devices == 16 for p in layouts) and {p.cp for p in layouts} == {1, 2, 4, 8}
    # a MoE group may span the CP ranks of a stage: CP2 x DP8 on 16 chips with EP16
    moe = list(enumerate_layouts(dsv3, h200, 16, long_prompt=True))
    assert any((p.cp, p.dp, p.ep, p.pp) == (2, 8, 16, 1) for p in moe)


def test_plan_progress_is_reported(llama, h200):
    model = replace(llama, num_hidden_layers=4)
    seen = []
    res = search_inference(model, h200, devices=2, prompt_len=64, output_len=8, precision=BF16, batches=[2],
                           progress=lambda i, n: seen.append((i, n)))
    assert seen == [(i + 1, res.searched) for i in range(res.searched)]


def test_training_search_by_latency(llama, h200):
    from archsim.mapping.plan import search_training
    model = replace(llama, num_hidden_layers=4)
    seen = []
    res = search_training(model, h200, devices=8, seq_len=512, global_batch=8, objective="latency",
                          progress=lambda i, n: seen.append((i, n)))
    assert seen == [(i + 1, res.searched) for i in range(res.searched)]
    steps = [p.metrics["step_time_s"] for p in res.plans]
    assert res.plans and steps == sorted(steps)
    # DualPipe needs an even pipeline, pp = 2 included (with at least 2 pp micro-batches)
    assert any(p.extra["schedule"] == "dualpipe" and p.parallelism.pp == 2 for p in res.plans)


def test_pipeline_send_of_a_two_sequence_micro_batch(llama, h200):
    """1F1B on TP4 x PP2 with 2 sequences a micro-batch: each crossing sends 2 x 1024 x 16384 x 2 B over NVLink."""
    model = replace(llama, num_hidden_layers=4)
    est = estimate_training(model, h200, Parallelism(tp=4, pp=2, micro_batches=2),
                            TrainingSetup(seq_len=1024, global_batch=4))
    b = est.breakdown
    comm = b["forward_communication_per_micro_batch"]
    f = b["forward_compute_per_micro_batch"] + comm
    bwd = b["backward_compute_per_micro_batch"] + comm
    up = h200.node.scale_up
    p2p = up.latency_s + 2 * 1024 * 16384 * 2 / (up.bandwidth_bytes_per_s * up.achievable_fraction)
    assert b["bubble"] == pytest.approx((f + bwd) + 2 * p2p, rel=1e-9)


def test_dualpipe_rank_communication_is_the_mean_of_its_two_stages(llama, h200):
    """DualPipe on TP2 x PP4 over 4 layers + head: the bottleneck rank holds stage 0 (layer 0) and stage 3 (layer 3
    and the head), one decoder layer each: (2 + 2) / 2 all-reduces of 512 x 16384 x 2 B over TP2 per micro-batch."""
    from math import ceil, log2
    model = replace(llama, num_hidden_layers=4)
    est = estimate_training(model, h200, Parallelism(tp=2, pp=4, micro_batches=8),
                            TrainingSetup(seq_len=512, global_batch=8, schedule="dualpipe"))
    assert est.breakdown["stage_layers"] == "layer 0..layer 0 + layer 3..head"
    up = h200.node.scale_up
    m, p = 512 * 16384 * 2, 2
    steps = 2 * ceil(log2(p))
    ar = steps * (up.latency_s + 2 * (p - 1) / p * m / steps / (up.bandwidth_bytes_per_s * up.achievable_fraction))
    assert est.breakdown["forward_communication_per_micro_batch"] == pytest.approx((2 * ar + 2 * ar) / 2, rel=1e-9)


def test_tied_embeddings_count_once(llama):
    from archsim.mapping.weights import model_elements
    tied = replace(llama, tie_word_embeddings=True)
    assert model_elements(llama) - model_elements(tied) == 128256 * 16384


def test_dsv3_attention_and_norm_bytes_in_fp8(dsv3):
    """One DeepSeek-V3 layer's attention on TP1 in FP8: each matrix [out, in] stores out x in bytes plus a float32
    scale per 128 x 128 block (ceil on both sides); the q_a and kv_a norms (1536 and 512 values) stay BF16. The norms
    of a stage: 2 x 7168 a layer, plus the final norm on the last stage, BF16."""
    from math import ceil
    from archsim.mapping.weights import layer_weight_bytes, stage_weight_bytes

    def fp8(out, inp):
        return out * inp + ceil(out / 128) * ceil(inp / 128) * 4

    h = 7168
    attention = (fp8(1536, h) + fp8(128 * 192, 1536) + fp8(576, h) + fp8(128 * 256, 512) + fp8(h, 128 * 128)
                 + (1536 + 512) * 2)
    got = layer_weight_bytes(dsv3, 5, FP8)
    assert got["attention"] == attention
    assert got["norms"] == 2 * h * 2
    last = stage_weight_bytes(dsv3, FP8, tp=1, ep=1, layers=range(59, 61), first=False, last=True)
    assert last["norms"] == (2 * 2 * h + h) * 2
