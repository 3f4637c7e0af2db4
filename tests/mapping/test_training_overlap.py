"""DualPipe's F&B block as a two-stream list schedule (archsim/mapping/overlap.py): hand-computed schedules,
validity of every schedule (stream exclusivity, dependencies), bounds, and the check against DeepSeek's
measured chunk pair (profile-data train.json, published.md §2.3)."""
import random
from dataclasses import replace
from pathlib import Path

import pytest

from archsim.config.workload import load_workload
from archsim.errors import ConfigError
from archsim.mapping.overlap import (BlockTimes, Seg, Task, critical_path_schedule, fb_span, fb_tasks,
                                     list_schedule)
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.training import TrainingSetup, estimate_training, moe_chunk_pair

REPO = Path(__file__).resolve().parents[2]
DSV3_LAYOUT = Parallelism(tp=1, ep=64, pp=16, dp=128, micro_batches=120, zero_stage=1)
DSV3_SETUP = TrainingSetup(seq_len=4096, global_batch=15360, precision="fp8", optimizer="adamw",
                           recompute="selective", schedule="dualpipe", comm_sms=20, mtp=True,
                           fp8_activation_cache=True, recompute_projections=("q_b_proj", "kv_b_proj"))
# profile-data train.json, one F&B pair of 4 MoE layers (published.md §2.3, parsed there [D])
MEASURED_SPAN_S, MEASURED_COMPUTE_S, MEASURED_COMM_S = 128.5e-3, 118.2e-3, 114.5e-3


def _moe(f_pre, f_mlp, b_pre, b_mlp, disp, comb):
    return BlockTimes(pre=Seg(f=f_pre, b=b_pre), mlp=Seg(f=f_mlp, b=b_mlp), dispatch_s=disp, combine_s=comb)


def _check_valid(tasks, sched):
    """Every task after its inputs, one task at a time per stream, each as long as its duration."""
    for t in tasks:
        start, end = sched[t.name]
        assert end - start == pytest.approx(t.duration_s)
        for d in t.deps:
            assert start >= sched[d][1] - 1e-12, (t.name, d)
    for stream in ("compute", "comm"):
        spans = sorted(sched[t.name] for t in tasks if t.stream == stream and t.duration_s > 0)
        for (_, e0), (s1, _) in zip(spans, spans[1:]):
            assert s1 >= e0 - 1e-12


def test_hand_computed_single_layer_pair():
    """One MoE layer forward (attention 2, experts 3) with one backward (attention 4, experts 5).
    Transfers of 1: every one hides, span = compute = 14. Transfers of 4 (comm 16 > compute 14): by hand,
    B.comb [0,4], F.pre [0,2], F.disp [4,8], B.mlp [4,9], B.disp [9,13], F.mlp [9,12], F.comb [13,17],
    B.pre [13,17]: span 17, one more than max(compute, comm) = 16 and far below the sum 30."""
    f, b = _moe(2, 3, 0, 0, 1, 1), _moe(0, 0, 4, 5, 1, 1)
    assert fb_span([f], [b]) == pytest.approx(14.0)
    f, b = _moe(2, 3, 0, 0, 4, 4), _moe(0, 0, 4, 5, 4, 4)
    tasks = fb_tasks([f], [b])
    for sched in (list_schedule(tasks), critical_path_schedule(tasks)):
        assert sched["B0.comb"] == (0.0, 4.0) and sched["F0.disp"] == (4.0, 8.0)
        assert sched["B0.mlp"] == (4.0, 9.0) and sched["F0.mlp"] == (9.0, 12.0)
        assert sched["B0.disp"] == (9.0, 13.0) and sched["F0.comb"] == (13.0, 17.0)
        assert sched["B0.pre"] == (13.0, 17.0)
    assert fb_span([f], [b]) == pytest.approx(17.0)


def test_pipeline_sends_fill_idle_communication_time():
    """``carry_s`` (the previous block's PP sends, DSV3-TR Figure 4's PP slot) has no dependency: in the
    first hand example the communication stream is busy 4 of 14 s, so 5 s of sends hide (span 14); 12 s
    make the stream 16 s long and the span at least that."""
    f, b = _moe(2, 3, 0, 0, 1, 1), _moe(0, 0, 4, 5, 1, 1)
    assert fb_span([f], [b], carry_s=5.0) == pytest.approx(14.0)
    assert fb_span([f], [b], carry_s=12.0) >= 16.0 - 1e-12
    assert fb_span([], [], carry_s=3.0) == 3.0


def test_no_communication_or_no_compute_is_serial_on_one_stream():
    blocks = [_moe(1.0, 2.0, 3.0, 4.0, 0.0, 0.0) for _ in range(3)]
    assert fb_span(blocks, blocks) == pytest.approx(sum(b.compute_s for b in blocks))
    comm_only = [_moe(0, 0, 0, 0, 1.5, 2.5) for _ in range(3)]
    assert fb_span(comm_only, comm_only) == pytest.approx(sum(b.comm_s for b in comm_only))
    assert fb_span([], []) == 0.0


def test_random_pairs_are_valid_and_bounded():
    """Random blocks (dense and MoE, different lengths forward and backward): both schedules are valid;
    the span lies between max(compute, comm) and their sum, and is the shorter of the two schedules."""
    rng = random.Random(7)
    for _ in range(60):
        def block():
            seg = lambda: Seg(f=rng.uniform(0, 3), b=rng.uniform(0, 3), w=rng.uniform(0, 2))  # noqa: E731
            moe = rng.random() < 0.7
            return BlockTimes(pre=seg(), shared=seg(), mlp=seg(), post=seg(),
                              dispatch_s=rng.uniform(0, 4) if moe else 0.0, combine_s=rng.uniform(0, 6) if moe else 0.0)
        fwd = [block() for _ in range(rng.randint(1, 5))]
        bwd = [block() for _ in range(rng.randint(1, 5))]
        tasks = fb_tasks(fwd, bwd)
        spans = []
        for sched in (list_schedule(tasks), critical_path_schedule(tasks)):
            _check_valid(tasks, sched)
            spans.append(max(e for _, e in sched.values()))
        compute = sum(t.duration_s for t in tasks if t.stream == "compute")
        comm = sum(t.duration_s for t in tasks if t.stream == "comm")
        assert compute == pytest.approx(sum(b.compute_s for b in fwd + bwd) - sum(
            s.b + s.w for b in fwd for s in (b.pre, b.shared, b.mlp, b.post)) - sum(
            s.f for b in bwd for s in (b.pre, b.shared, b.mlp, b.post)))
        span = fb_span(fwd, bwd)
        assert span == pytest.approx(min(spans))
        assert max(compute, comm) - 1e-9 <= span <= compute + comm + 1e-9


def test_bad_task_graphs_are_config_errors():
    with pytest.raises(ConfigError, match="schedule"):
        list_schedule([Task("a", "compute", 1.0, ("missing",))])
    with pytest.raises(ConfigError, match="schedule"):
        critical_path_schedule([Task("a", "compute", 1.0, ("b",)), Task("b", "comm", 1.0, ("a",))])
    with pytest.raises(ConfigError, match="schedule"):
        list_schedule([Task("a", "gpu", 1.0)])


def test_schedule_reproduces_the_measured_pair_span(dsv3, h800):
    """The overlap model against DeepSeek's profile: give the model's chunk pair (4 MoE layers, its own
    split into attention, experts and transfers) the measured busy times of the two streams (compute
    118.2 ms, communication 114.5 ms: each stream scaled uniformly), and the schedule's span must land
    within 3% of the measured 128.5 ms. max(compute, comm) = 118.2 ms would be 8% short."""
    pair = moe_chunk_pair(dsv3, h800, DSV3_LAYOUT, DSV3_SETUP, moe_layers=4)
    kc, km = MEASURED_COMPUTE_S / pair["compute_s"], MEASURED_COMM_S / pair["communication_s"]

    def scaled(b):
        segs = {k: Seg(f=getattr(b, k).f * kc, b=getattr(b, k).b * kc, w=getattr(b, k).w * kc)
                for k in ("pre", "shared", "mlp", "post")}
        return replace(b, **segs, dispatch_s=b.dispatch_s * km, combine_s=b.combine_s * km)

    blocks = [scaled(b) for b in pair["blocks"]]
    span = fb_span(blocks, blocks)
    assert abs(span / MEASURED_SPAN_S - 1) < 0.03, span
    assert max(MEASURED_COMPUTE_S, MEASURED_COMM_S) / MEASURED_SPAN_S < 0.93


def test_chunk_pair_needs_a_positive_layer_count(dsv3, h800):
    with pytest.raises(ConfigError, match="moe_layers"):
        moe_chunk_pair(dsv3, h800, DSV3_LAYOUT, DSV3_SETUP, moe_layers=0)


def test_dsv3_fb_block_is_the_schedule(dsv3, h800):
    """The step uses the bottleneck rank's F&B span: never below max(compute, comm) of the rank."""
    e = estimate_training(dsv3, h800, DSV3_LAYOUT, DSV3_SETUP)
    b = e.breakdown
    comp = b["forward_compute_per_micro_batch"] + b["backward_compute_per_micro_batch"]
    assert b["fb_block_per_micro_batch"] >= comp - 1e-12
    assert b["fb_exposed_per_micro_batch"] >= 0.0
    assert e.pipeline[1].fb == pytest.approx(b["fb_block_per_micro_batch"])


def test_lora_optimizer_bytes_follow_the_optimizer(dsv3, h800):
    """LoRA adapters keep FP32 master weights and the setup's moments: AdamW two, Muon one (BF16 recipe:
    4 + 2 x 4 = 12 against 4 + 4 = 8 bytes per adapter parameter)."""
    par = Parallelism(ep=8, dp=8, micro_batches=1)
    kw = dict(seq_len=1024, global_batch=8, mode="lora", lora_rank=16)
    adam = estimate_training(dsv3, h800, par, TrainingSetup(optimizer="adamw", **kw)).memory
    muon = estimate_training(dsv3, h800, par, TrainingSetup(optimizer="muon", **kw)).memory
    assert adam.optimizer_bytes > 0
    assert muon.optimizer_bytes / adam.optimizer_bytes == pytest.approx(8 / 12)
    assert muon.gradients_bytes == pytest.approx(adam.gradients_bytes)


@pytest.fixture(scope="module")
def dsv3():
    return load_workload(REPO / "workloads/deepseek_v3.yaml").model
