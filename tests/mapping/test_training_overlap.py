"""DualPipe's F&B block as two-stream fixed-order schedules (archsim/mapping/overlap.py): hand-computed
schedules, validity of every candidate order's schedule (stream exclusivity, dependencies), bounds,
monotonicity (more time on any task never shortens the span), context-parallel K/V exchange before the
attention, and the check against DeepSeek's measured chunk pair (deepseek-ai/profile-data train.json)."""
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.errors import ConfigError
from archsim.mapping.overlap import (SEGMENTS, BlockTimes, Seg, Task, fb_orders, fb_span, fb_tasks,
                                     fixed_order_span, list_schedule)
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.training import TrainingSetup, estimate_training, moe_chunk_pair

DSV3_LAYOUT = Parallelism(tp=1, ep=64, pp=16, dp=128, micro_batches=120, zero_stage=1)
DSV3_SETUP = TrainingSetup(seq_len=4096, global_batch=15360, precision="fp8", optimizer="adamw",
                           recompute="selective", schedule="dualpipe", comm_sms=20, mtp=True,
                           fp8_activation_cache=True, recompute_projections=("q_b_proj", "kv_b_proj"),
                           attention_output_format="e5m6")
# deepseek-ai/profile-data train.json, one F&B pair of 4 MoE layers (trace parsed [D])
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
    for order in fb_orders(1, 1):
        sched = list_schedule(fb_tasks([f], [b], **order))
        assert sched["B0.comb"] == (0.0, 4.0) and sched["F0.disp"] == (4.0, 8.0)
        assert sched["B0.mlp"] == (4.0, 9.0) and sched["F0.mlp"] == (9.0, 12.0)
        assert sched["B0.disp"] == (9.0, 13.0) and sched["F0.comb"] == (13.0, 17.0)
        assert sched["B0.pre"] == (13.0, 17.0)
    assert fb_span([f], [b]) == pytest.approx(17.0)


def test_pipeline_sends_fill_idle_communication_time():
    """``carry_s`` (the previous block's PP sends, DSV3-TR Figure 4's PP slot) has no dependency: in the
    first hand example the communication stream is busy 4 of 14 s, so 5 s of sends hide (span 14); 12 s
    make the stream 16 s long, and the span that (the sends fill idle time, delaying nothing)."""
    f, b = _moe(2, 3, 0, 0, 1, 1), _moe(0, 0, 4, 5, 1, 1)
    assert fb_span([f], [b], carry_s=5.0) == pytest.approx(14.0)
    assert fb_span([f], [b], carry_s=12.0) == pytest.approx(16.0)
    assert fb_span([], [], carry_s=3.0) == 3.0


def test_no_communication_or_no_compute_is_serial_on_one_stream():
    blocks = [_moe(1.0, 2.0, 3.0, 4.0, 0.0, 0.0) for _ in range(3)]
    assert fb_span(blocks, blocks) == pytest.approx(sum(b.compute_s for b in blocks))
    comm_only = [_moe(0, 0, 0, 0, 1.5, 2.5) for _ in range(3)]
    assert fb_span(comm_only, comm_only) == pytest.approx(sum(b.comm_s for b in comm_only))
    assert fb_span([], []) == 0.0


def _random_block(rng, moe_share=0.7):
    seg = lambda: Seg(f=rng.uniform(0, 3), b=rng.uniform(0, 3), w=rng.uniform(0, 2))  # noqa: E731
    moe = rng.random() < moe_share
    return BlockTimes(pre=seg(), shared=seg(), mlp=seg(), post=seg(), gather_s=rng.choice([0.0, rng.uniform(0, 2)]),
                      dispatch_s=rng.uniform(0, 4) if moe else 0.0, combine_s=rng.uniform(0, 6) if moe else 0.0)


def test_random_pairs_are_valid_and_bounded():
    """Random blocks (dense and MoE, with and without a K/V exchange, different counts forward and
    backward): every candidate order's schedule is valid and the one-pass span equals the general list
    schedule's; the F&B span is the shortest candidate and lies between max(compute, comm) and their sum."""
    rng = random.Random(7)
    for _ in range(60):
        fwd = [_random_block(rng) for _ in range(rng.randint(1, 5))]
        bwd = [_random_block(rng) for _ in range(rng.randint(1, 5))]
        carry = rng.choice([0.0, rng.uniform(0, 5)])
        spans = []
        for order in fb_orders(len(fwd), len(bwd)):
            tasks = fb_tasks(fwd, bwd, **order)
            sched = list_schedule(tasks)
            _check_valid(tasks, sched)
            spans.append(max(e for _, e in sched.values()))
            assert fixed_order_span(tasks) == pytest.approx(spans[-1], rel=1e-12)
        compute = sum(t.duration_s for t in tasks if t.stream == "compute")
        comm = sum(t.duration_s for t in tasks if t.stream == "comm")
        assert compute == pytest.approx(sum(b.compute_s for b in fwd + bwd) - sum(
            s.b + s.w for b in fwd for s in (b.pre, b.shared, b.mlp, b.post)) - sum(
            s.f for b in bwd for s in (b.pre, b.shared, b.mlp, b.post)))
        assert comm == pytest.approx(sum(b.comm_s for b in fwd + bwd) / 2)
        span = fb_span(fwd, bwd, carry)
        assert span == pytest.approx(max(min(spans), comm + carry))
        assert max(compute, comm + carry) - 1e-9 <= span <= compute + comm + carry + 1e-9


def test_candidate_orders_depend_on_counts_only():
    """Figure 4's pairing first; every other alignment within the window, each in both step orders; one
    side empty: nothing to align."""
    orders = fb_orders(4, 4)
    assert orders[0] == {"lag": 0, "shared_first": False}
    assert {o["lag"] for o in orders} == {-2, -1, 0, 1, 2}
    assert {o["lag"] for o in fb_orders(5, 2)} == {-1, 0, 1, 2, 3, 4}  # every alignment of DSV3's first rank
    assert {o["lag"] for o in fb_orders(3, 0)} == {0}


def test_a_longer_transfer_never_shortens_the_pair():
    """The review's counterexample shape: greedy critical-path list scheduling gave this pair 12 s, and 10 s
    once the forward dispatch grew from 1 to 2 s (Graham's anomaly). Fixed-order schedules cannot do that."""
    f = BlockTimes(pre=Seg(b=1), mlp=Seg(f=3), dispatch_s=1, combine_s=4)
    b = BlockTimes(pre=Seg(f=2, b=3), mlp=Seg(f=2, b=2), combine_s=3)
    assert fb_span([replace(f, dispatch_s=2)], [b]) >= fb_span([f], [b])


_DURATION = st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 5.0])
_SEG = st.builds(Seg, f=_DURATION, b=_DURATION, w=_DURATION)
_BLOCK = st.builds(BlockTimes, pre=_SEG, shared=_SEG, mlp=_SEG, post=_SEG, gather_s=_DURATION,
                   dispatch_s=_DURATION, combine_s=_DURATION)
_FIELDS = [(seg, part) for seg in SEGMENTS for part in "fbw"] + [
    (x, None) for x in ("gather_s", "dispatch_s", "combine_s", "carry_s")]


@settings(max_examples=300, deadline=None)
@given(fwd=st.lists(_BLOCK, min_size=1, max_size=3), bwd=st.lists(_BLOCK, min_size=1, max_size=3),
       carry=_DURATION, backward_side=st.booleans(), index=st.integers(0, 2),
       field=st.sampled_from(_FIELDS), more=st.sampled_from([0.25, 1.0, 3.0]))
def test_more_time_on_any_task_never_shortens_the_span(fwd, bwd, carry, backward_side, index, field, more):
    """Property: lengthen any one task (any part of any block, forward or backward, or a transfer) and the
    F&B span does not drop (the pipeline sends ``carry_s`` included)."""
    blocks = bwd if backward_side else fwd
    i = index % len(blocks)
    name, part = field
    if name == "carry_s":
        assert fb_span(fwd, bwd, carry + more) >= fb_span(fwd, bwd, carry)
        return
    if part is None:
        grown = replace(blocks[i], **{name: getattr(blocks[i], name) + more})
    else:
        seg = getattr(blocks[i], name)
        grown = replace(blocks[i], **{name: replace(seg, **{part: getattr(seg, part) + more})})
    longer = blocks[:i] + [grown] + blocks[i + 1:]
    before = fb_span(fwd, bwd, carry)
    after = fb_span(fwd, longer, carry) if backward_side else fb_span(longer, bwd, carry)
    assert after >= before * (1 - 1e-12), (before, after)


def test_kv_exchange_runs_before_the_attention():
    """Context parallelism: the K/V all-gather (``gather_s``) follows the previous block's output and
    precedes the attention; in backward the K/V gradients leave after the attention's backward and the
    block below waits for them. With the gather on the dispatch (after the attention) this ordering fails."""
    f = BlockTimes(pre=Seg(f=2.0), mlp=Seg(f=3.0), post=Seg(f=0.5), gather_s=1.5, dispatch_s=1.0, combine_s=1.0)
    b = BlockTimes(pre=Seg(b=4.0, w=1.0), mlp=Seg(b=5.0), post=Seg(b=0.5), gather_s=1.5, dispatch_s=1.0,
                   combine_s=1.0)
    for order in fb_orders(2, 2):
        tasks = fb_tasks([f, f], [b, b], **order)
        sched = list_schedule(tasks)
        _check_valid(tasks, sched)
        for k in (0, 1):
            assert sched[f"F{k}.gather"][1] <= sched[f"F{k}.pre"][0] + 1e-12
            assert sched[f"F{k}.pre"][1] <= sched[f"F{k}.disp"][0] + 1e-12
        assert sched["F0.post"][1] <= sched["F1.gather"][0] + 1e-12
        assert sched["B1.pre"][1] <= sched["B1.gather"][0] + 1e-12
        assert sched["B1.gather"][1] <= sched["B0.post"][0] + 1e-12
        assert sched["B1.gather"][1] <= sched["B1.pre_w"][0] + 1e-12
    # the exchange adds to the span when nothing hides it: one block, forward only, is a chain
    assert fb_span([f], []) == pytest.approx(1.5 + 2.0 + 1.0 + 3.0 + 1.0 + 0.5)


def test_bad_task_graphs_are_config_errors():
    with pytest.raises(ConfigError, match="schedule"):
        list_schedule([Task("a", "compute", 1.0, ("missing",))])
    with pytest.raises(ConfigError, match="schedule"):
        list_schedule([Task("a", "compute", 1.0, ("b",)), Task("b", "comm", 1.0, ("a",))])
    with pytest.raises(ConfigError, match="schedule"):
        list_schedule([Task("a", "gpu", 1.0)])
    with pytest.raises(ConfigError, match="schedule.a"):
        fixed_order_span([Task("a", "compute", 1.0, ("b",)), Task("b", "comm", 1.0)])


def test_schedule_reproduces_the_measured_pair_span(dsv3, h800):
    """The overlap model against DeepSeek's profile: give the model's chunk pair (4 MoE layers, its own
    split into attention, experts and transfers) the measured busy times of the two streams (compute
    118.2 ms, communication 114.5 ms: each stream scaled uniformly), and the schedule's span must land
    within 3% of the measured 128.5 ms (it gives 127.0 ms). max(compute, comm) = 118.2 ms would be 8% short;
    Figure 4's order alone gives 133.3 ms (+3.8%): the shared-experts-first order is the one that fits."""
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


def test_context_parallel_exchange_is_its_own_pre_attention_transfer(dsv3, h800):
    """CP 2: each layer's K/V all-gather becomes the block's ``gather_s`` (before the attention), not part
    of the EP dispatch (after it); in DSV3's layout (CP 1) there is none."""
    par = replace(DSV3_LAYOUT, cp=2, dp=64)
    setup = replace(DSV3_SETUP, global_batch=7680)
    pair = moe_chunk_pair(dsv3, h800, par, setup, moe_layers=2)
    layer = pair["blocks"][0]
    assert layer.gather_s > 0
    # TP 1: the dispatch is the EP call and its notify kernel (mean of notify_dispatch and the backward's
    # cached_notify), the combine the EP call and a cached_notify (training.ep_notify_s)
    from archsim.mapping.training import ep_notify_s
    nd, nc = ep_notify_s(h800, dsv3, par)
    assert nd > nc > 0
    assert layer.dispatch_s == pytest.approx(pair["dispatch_s"] + (nd + nc) / 2)
    assert layer.combine_s == pytest.approx(pair["combine_s"] + nc)
    assert pair["communication_s"] == pytest.approx(
        2 * 2 * (layer.gather_s + pair["dispatch_s"] + pair["combine_s"] + (nd + nc) / 2 + nc))
    sched = list_schedule(fb_tasks(pair["blocks"], pair["blocks"]))
    assert sched["F0.post"][1] <= sched["F1.gather"][0] <= sched["F1.gather"][1] <= sched["F1.pre"][0]
    assert sched["B1.pre"][1] <= sched["B1.gather"][0] <= sched["B1.gather"][1] <= sched["B0.post"][0]
    assert moe_chunk_pair(dsv3, h800, DSV3_LAYOUT, DSV3_SETUP, moe_layers=1)["blocks"][0].gather_s == 0.0


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


def test_fixed_order_span_rejects_an_unknown_stream_or_negative_time():
    with pytest.raises(ConfigError):
        fixed_order_span([Task("a", "gpu", 1.0)])
    with pytest.raises(ConfigError):
        fixed_order_span([Task("a", "compute", -1.0)])
