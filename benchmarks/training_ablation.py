"""DeepSeek-V3 pre-training: what each priced effect contributes (docs/parallelism.md, "Training fidelity").

Each row removes one effect from the current training model (``archsim.mapping.training``) and reprices the
published run (2048 H800, PP16 DualPipe, EP64, ZeRO-1, FP8; validation/deepseek_v3_system.yaml). Where
``TrainingSetup`` has an option the row uses it; otherwise the effect is removed by a monkeypatch of one
function, restored afterwards, and the row says what replaces it ("without: ..."). The last rows (bubble,
ZeRO sync, optimizer) take their seconds out of the step. Then the what-ifs of "What is still missing"
(communication or compute scaled to the DeepSeek profile's chunk pair) and the numbers of "Why the schedule
adds little".

Run: python benchmarks/training_ablation.py  (prints markdown; about 2 s). Nothing here changes package code.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

from archsim.config.hardware import load_hardware
from archsim.config.workload import load_workload
from archsim.cost.kernel_model import grouped_gemm_time
from archsim.dtypes import BF16
from archsim.mapping import overlap, training, training_work
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.training import TrainingSetup, estimate_training, moe_chunk_pair

REPO = Path(__file__).resolve().parent.parent
# the published run, as validation/deepseek_v3_system.yaml (dsv3_pretraining_tokens_per_gpu_s) states it
# (DeepSeek-V3 Technical Report, arXiv 2412.19437, §3.2-3.3 [V]): PP16 x DP128, EP64, no TP, ZeRO-1,
# 120 micro-batches of one 4K sequence, 20 communication SMs, MTP D=1, FP8 activation cache, MLA
# up-projections recomputed
LAYOUT = Parallelism(tp=1, ep=64, pp=16, dp=128, micro_batches=120, zero_stage=1)
SETUP = TrainingSetup(seq_len=4096, global_batch=15360, precision="fp8", optimizer="adamw", recompute="selective",
                      schedule="dualpipe", comm_sms=20, mtp=True, fp8_activation_cache=True,
                      recompute_projections=("q_b_proj", "kv_b_proj"), attention_output_format="e5m6")
PUBLISHED_GPU_HOURS_PER_T = 180e3  # DSV3-TR: 180K H800 GPU-hours per trillion tokens [V]
PUBLISHED_TOKENS_PER_GPU_S = 1543  # 1e12 / (180e3 GPU-h x 3600 s), DSV3-TR [D] (validation yaml)
# deepseek-ai/profile-data train.json, one DualPipe F&B chunk pair of 4 MoE layers (trace parsed [D]): stream
# busy times, and the midpoints of the DeepEP internode call ranges (dispatch 3.1-4.6 ms, combine 5.8-6.5 ms)
PROFILE_COMPUTE_BUSY_S = 118.2e-3
PROFILE_COMM_BUSY_S = 114.5e-3
PROFILE_DISPATCH_S = (3.1e-3 + 4.6e-3) / 2
PROFILE_COMBINE_S = (5.8e-3 + 6.5e-3) / 2
PROFILE_MOE_LAYERS = 4
# causal BF16 attention backward / forward FLOP rate measured on an H200 (cuDNN SDPA, 451 / 595 TFLOPS;
# docs/parallelism.md "Attention backward rate") [M]
MEASURED_ATTENTION_BACKWARD_FRACTION = 451 / 595


@contextlib.contextmanager
def patched(obj, name, value):
    """``obj.name = value`` inside the block, the original restored after it."""
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _forward_gemm_s(op, hw, tokens: int) -> float:
    """The forward GEMM alone (no logits passes) with the shapes ``training_work._gemm_terms`` uses."""
    a = op.attrs
    dtype = op.compute_dtype if op.compute_dtype.bits == 8 else BF16
    if op.kind == "grouped_gemm":
        groups, m = int(a["groups"]), int(round(a["tokens_max"]))
    else:
        groups, m = 1, (tokens if op.name.endswith(training_work.HEAD_SUFFIXES) else int(a["m"]))
    est = grouped_gemm_time(hw, groups=groups, m=max(1, m), n=int(a["n"]), k=int(a["k"]), dtype=dtype.name)
    return training_work.sustained_gemm_s(est, hw.kernel.clock_ratio)


def gemm_terms_patch(edit):
    """A replacement for ``training_work._gemm_terms`` that passes its terms through ``edit(op, hw, terms, kw)``."""
    original = training_work._gemm_terms

    def terms(op, hw, **kw):
        return edit(op, hw, dict(original(op, hw, **kw)), kw)
    return patched(training_work, "_gemm_terms", terms)


def _heads_last_position(op, hw, t, kw):
    if not op.name.endswith(training_work.HEAD_SUFFIXES):
        return t
    a = op.attrs
    fwd = grouped_gemm_time(hw, groups=1, m=max(1, int(a["m"])), n=int(a["n"]), k=int(a["k"]),
                            dtype=BF16.name).time_s
    return {**t, "forward_s": fwd, "dgrad_s": fwd, "wgrad_s": fwd, "elementwise_backward_s": 0.0, "logits_s": 0.0}


def _no_casts(op, hw, t, kw):
    return {**t, "fp8_cast_forward_s": 0.0, "fp8_cast_backward_s": 0.0}


def _no_loss_backward(op, hw, t, kw):
    return {**t, "elementwise_backward_s": 0.0}


def _wgrad_as_forward(op, hw, t, kw):
    return t if kw["frozen"] else {**t, "wgrad_s": _forward_gemm_s(op, hw, kw["tokens"])}


def _even_stages_patch():
    """Every stage's compute scaled to the mean stage compute (total / PP: the integer split's lower bound),
    its blocks' proportions and communication kept; then the bottleneck rank as the model picks it."""
    original = training._bottleneck_rank

    def rank(stages, schedule, pp, p2p_s=0.0):
        mean = sum(s["work"].f_s + s["work"].b_s for s in stages) / len(stages)
        even = []
        for s in stages:
            k = mean / (s["work"].f_s + s["work"].b_s)
            blocks = [replace(b, **{seg: overlap.Seg(f=getattr(b, seg).f * k, b=getattr(b, seg).b * k,
                                                     w=getattr(b, seg).w * k) for seg in overlap.SEGMENTS})
                      for b in s["blocks"]]
            even.append({**s, "work": s["work"].scaled(k), "blocks": blocks})
        return original(even, schedule, pp, p2p_s)
    return patched(training, "_bottleneck_rank", rank)


def _no_fb_schedule_patch():
    """The F&B block as max(compute, communication + PP sends): perfect overlap, no dependency waits."""
    def span(forward, backward, carry_s=0.0):
        comp = sum(s.f for b in forward for s in (b.pre, b.shared, b.mlp, b.post)) \
            + sum(s.b + s.w for b in backward for s in (b.pre, b.shared, b.mlp, b.post))
        comm = sum(b.gather_s + b.dispatch_s + b.combine_s for b in forward + backward)
        return max(comp, comm + carry_s)
    return patched(training, "fb_span", span)


def _no_attention_passes():
    return patched(training_work, "attention_backward_pass_bytes", lambda op: 0.0)


def _boost_clock_patch():
    return patched(training_work, "sustained_gemm_s", lambda estimate, clock_ratio: estimate.time_s)


def _hw_attention(hw, fraction):
    return replace(hw, kernel=replace(hw.kernel, attention_backward_fraction=fraction))


def contributions(model, hw):
    """(label, GPU-h/T without the effect or None, GPU-h/T it adds) per row, and the current estimate."""
    base = estimate_training(model, hw, LAYOUT, SETUP)
    g0 = base.gpu_hours_per_trillion_tokens

    def est(setup=SETUP, hw_=hw):
        return estimate_training(model, hw_, LAYOUT, setup).gpu_hours_per_trillion_tokens

    def under(ctx, **kw):
        with ctx:
            return est(**kw)

    def under2(ctx1, ctx2, **kw):
        with ctx1, ctx2:
            return est(**kw)

    rows = [
        ("20 of 132 SMs for communication (DSV3-TR §3.2.2); without: compute on all 132", est(replace(SETUP, comm_sms=0))),
        ("LM and MTP heads at all 4096 positions, with the cross-entropy's three passes over the logits "
         "(BF16, DSV3-TR §3.3.1); without: last position, backward = 2 × forward",
         under(gemm_terms_patch(_heads_last_position))),
        ("MTP module D=1 on the last stage", est(replace(SETUP, mtp=False))),
        ("integer stage split; without: every stage's compute = work / PP (a lower bound)", under(_even_stages_patch())),
        ("FP8 casts per 1×128 / 128×1 tile (DSV3-TR §3.3.2, §3.5.2) and weight transposes", under(gemm_terms_patch(_no_casts))),
        ("of which the FP8 weights transposed for Dgrad each micro-batch (DeepGEMM README: NT format only; the "
         "trace's batched_transpose kernels)", under(patched(training_work, "_weight_transpose_bytes", lambda e: 0.0))),
        ("of which the attention output cached in E5M6, cast and cast back (DSV3-TR §3.3.3; the trace's "
         "special_fmt kernels); without: kept in BF16", est(replace(SETUP, attention_output_format="bf16"))),
        ("expanded MLA's K assembled by a copy in the forward and the kv_b_proj recomputation, and the K/V "
         "gradient's copies and head-sum (DeepSeek-V3 inference/model.py naive MLA; the trace's "
         "_copy_tensor_kernel and reduce_kernel); without: none",
         under2(patched(training_work, "key_assembly_bytes", lambda graph, name: 0.0),
                patched(training_work, "key_value_gradient_bytes", lambda graph, name: 0.0))),
        ("element-wise backward from bytes, with the loss's backward; without: none",
         under2(patched(training_work, "_backward_bytes_ratio", lambda op: 0.0), gemm_terms_patch(_no_loss_backward))),
        ("recomputation (norms, SwiGLU, RoPE; MLA up-projections)", est(replace(SETUP, recompute="none"))),
        ("of which the MLA up-projections (DSV3-TR §3.3.3)", est(replace(SETUP, recompute_projections=()))),
        ("attention backward 2.5× FLOPs at 0.85 of the forward rate (FA2 §3.1.2; FA3 H100 figures), with its "
         "pre- and post-processing passes; without: 2× at the forward rate, no passes",
         under2(patched(training_work, "ATTENTION_BACKWARD_RATIO", 2.0), _no_attention_passes(),
                hw_=_hw_attention(hw, 1.0))),
        ("of which the 0.85 rate", est(hw_=_hw_attention(hw, 1.0))),
        ("of which FlashAttention's backward pre-/post-processing passes (O·dO, FP32 dQ accumulator; "
         "flash-attention hopper/flash_bwd_{pre,post}process_kernel.h)", under(_no_attention_passes())),
        ("GEMMs at the clock sustained under training load, 1600 of 1830 MHz (kernel.clock_under_load, FlashMLA "
         "deep dive); without: the boost clock of the GEMM benchmarks", under(_boost_clock_patch())),
        ("Wgrad GEMMs with K = tokens (kernel model) accumulating into the FP32 gradient; without: Wgrad = "
         "forward GEMM time", under(gemm_terms_patch(_wgrad_as_forward))),
        ("of which the FP32 accumulation (write FP32, read the running sum; DSV3-TR §3.3, the trace's _acc "
         "kernels); without: BF16 output, nothing read", under(patched(training_work, "_GRADIENT_DTYPES", {}))),
        ("of which DeepGEMM's FP8 Wgrad kernels at 0.93 of the kernel model (kernel.wgrad_fraction, DeepGEMM "
         "PR #95's table); without: the kernel model's rate",
         est(hw_=replace(hw, kernel=replace(hw.kernel, wgrad_fraction=None)))),
        ("2.1 µs between back-to-back kernels (kernel_launch_graph; DeepSeek's trace: 2.0 µs) for each GEMM, "
         "FP8-cast and attention-backward kernel of the training terms; without: none",
         under(patched(training_work, "kernel_gap_s", lambda hw: 0.0))),
        ("F&B two-stream schedule; without: max(compute, communication)", under(_no_fb_schedule_patch())),
    ]
    out = [(label, g, g0 - g) for label, g in rows]
    b, step = base.breakdown, base.step_time_s
    for label, seconds in ((f"DualPipe bubble, (PP/2−1)(F&B+B−3W) + p2p: {b['bubble']:.2f} s of the step", b["bubble"]),
                           (f"ZeRO-1 reduce-scatter + all-gather over DP: {b['dp_gradient_sync']:.2f} s",
                            b["dp_gradient_sync"]),
                           (f"optimizer step (HBM-bound): {b['optimizer'] * 1e3:.1f} ms", b["optimizer"])):
        g = g0 * (step - seconds) / step
        out.append((label, g, g0 - g))
    return base, out


def _scaled_comm_patch(dispatch=1.0, combine=1.0, other=1.0):
    """Every layer's EP dispatch / combine (and TP, CP calls by ``other``) scaled in the training model."""
    original = training.price_phase

    def phase(*args, **kw):
        whole = original(*args, **kw)
        comm = tuple(replace(c, ep_dispatch_s=c.ep_dispatch_s * dispatch, ep_combine_s=c.ep_combine_s * combine,
                             tp_all_reduce_s=c.tp_all_reduce_s * other, cp_kv_exchange_s=c.cp_kv_exchange_s * other)
                     for c in whole.layer_comm)
        return replace(whole, layer_comm=comm)
    return patched(training, "price_phase", phase)


def _scaled_compute_patch(factor):
    original = training.micro_batch_work
    return patched(training, "micro_batch_work", lambda *a, **kw: original(*a, **kw).scaled(factor))


def whatifs(model, hw):
    pair = moe_chunk_pair(model, hw, LAYOUT, SETUP, moe_layers=PROFILE_MOE_LAYERS)
    fd, fc = PROFILE_DISPATCH_S / pair["dispatch_s"], PROFILE_COMBINE_S / pair["combine_s"]
    fcomm = PROFILE_COMM_BUSY_S / pair["communication_s"]
    fcomp = PROFILE_COMPUTE_BUSY_S / pair["compute_s"]

    def run(*ctxs):
        with contextlib.ExitStack() as stack:
            for c in ctxs:
                stack.enter_context(c)
            e = estimate_training(model, hw, LAYOUT, SETUP)
        return e.step_time_s, e.tokens_per_s / LAYOUT.devices / PUBLISHED_TOKENS_PER_GPU_S - 1

    rows = [("current model", run()),
            (f"DeepEP calls at the midpoints of the profile's ranges (dispatch {PROFILE_DISPATCH_S * 1e3:.2f} ms = {fd:.2f}×, "
             f"combine {PROFILE_COMBINE_S * 1e3:.2f} ms = {fc:.2f}×)", run(_scaled_comm_patch(fd, fc))),
            (f"communication stream at the profile's busy time ({PROFILE_COMM_BUSY_S * 1e3:.1f} / "
             f"{pair['communication_s'] * 1e3:.1f} = {fcomm:.2f}×)", run(_scaled_comm_patch(fcomm, fcomm, fcomm))),
            (f"compute at the profile's busy time ({PROFILE_COMPUTE_BUSY_S * 1e3:.1f} / {pair['compute_s'] * 1e3:.1f}"
             f" = {fcomp:.2f}×)", run(_scaled_compute_patch(fcomp))),
            ("both of the last two", run(_scaled_comm_patch(fcomm, fcomm, fcomm), _scaled_compute_patch(fcomp)))]
    return pair, rows


def schedule_details(model, hw, pair):
    """The numbers of "Why the schedule adds little": the first DualPipe rank's stages and F&B blocks, the
    middle rank's chunk pair and what Figure 4's order alone would expose."""
    seen = {}
    original = training._bottleneck_rank

    def capture(stages, schedule, pp, p2p_s=0.0):
        seen.update(stages=stages, p2p=p2p_s)
        return original(stages, schedule, pp, p2p_s)
    with patched(training, "_bottleneck_rank", capture):
        base = estimate_training(model, hw, LAYOUT, SETUP)
    stages, carry = seen["stages"], 2 * seen["p2p"]
    comp = [s["work"].f_s + s["work"].b_s for s in stages]
    a, z = stages[0], stages[-1]

    def fwd(blocks):
        return sum(s.f for b in blocks for s in (b.pre, b.shared, b.mlp, b.post))

    def bwd(blocks):
        return sum(s.b + s.w for b in blocks for s in (b.pre, b.shared, b.mlp, b.post))
    ranks = [(comp[r] + comp[-1 - r]) / 2 for r in range(len(stages) // 2)]
    fig4 = overlap.fixed_order_span(overlap.fb_tasks(pair["blocks"], pair["blocks"], lag=0, shared_first=False))
    ms = 1e3
    return [
        f"stage 0 ({a['layers']}): {comp[0] * ms:.1f} ms per micro-batch; stage {len(stages) - 1} "
        f"({z['layers']}): {comp[-1] * ms:.1f} ms",
        f"first rank: mean compute {(comp[0] + comp[-1]) / 2 * ms:.1f} ms, EP traffic "
        f"{sum(b.comm_s for b in a['blocks'] + z['blocks']) / 2 * ms:.1f} ms, F&B block "
        f"{base.breakdown['fb_block_per_micro_batch'] * ms:.1f} ms",
        f"stage {len(stages) - 1} forward + stage 0 backward: span "
        f"{overlap.fb_span(z['blocks'], a['blocks'], carry) * ms:.1f} ms, compute "
        f"{(fwd(z['blocks']) + bwd(a['blocks'])) * ms:.1f} ms",
        f"stage 0 forward + stage {len(stages) - 1} backward: span "
        f"{overlap.fb_span(a['blocks'], z['blocks'], carry) * ms:.1f} ms, compute "
        f"{(fwd(a['blocks']) + bwd(z['blocks'])) * ms:.1f} ms",
        f"middle rank pair ({PROFILE_MOE_LAYERS} MoE layers): compute {pair['compute_s'] * ms:.1f} ms, traffic "
        f"{pair['communication_s'] * ms:.1f} ms, span {pair['span_s'] * ms:.1f} ms; Figure 4's order alone "
        f"{fig4 * ms:.1f} ms (exposes {(fig4 - pair['compute_s']) * ms:.1f} ms)",
        f"ranks' mean compute {sum(ranks) / len(ranks) * ms:.1f} ms (max {max(ranks) * ms:.1f} ms)",
    ]


def main() -> None:
    model = load_workload(REPO / "workloads/deepseek_v3.yaml").model
    hw = load_hardware(REPO / "hardware/h800.yaml")
    base, rows = contributions(model, hw)
    g0 = base.gpu_hours_per_trillion_tokens
    print(f"current model: {g0 / 1e3:.1f}K GPU-h/T, step {base.step_time_s:.2f} s, "
          f"{base.tokens_per_s / LAYOUT.devices:.0f} tokens/s per GPU, MFU {base.mfu:.1%}; GPU-h against the "
          f"published {PUBLISHED_GPU_HOURS_PER_T / 1e3:.0f}K: {g0 / PUBLISHED_GPU_HOURS_PER_T - 1:+.1%}\n")
    print("| effect removed (named quantity, source) | without it | adds |\n|---|---|---|")
    for label, g, add in rows:
        sign = "+" if add >= 0 else "−"
        print(f"| {label} | {g / 1e3:.1f}K | {sign}{abs(add) / 1e3:.1f}K |")
    pair, wrows = whatifs(model, hw)
    print("\n| what-if (each stream scaled uniformly over the whole model) | step | tokens/s/GPU error |\n|---|---|---|")
    for label, (step, err) in wrows:
        print(f"| {label} | {step:.2f} s | {err:+.1%} |")
    print()
    for line in schedule_details(model, hw, pair):
        print("- " + line)
    slow = estimate_training(model, _hw_attention(hw, MEASURED_ATTENTION_BACKWARD_FRACTION), LAYOUT, SETUP)
    print(f"- attention backward at {MEASURED_ATTENTION_BACKWARD_FRACTION:.2f} of the forward rate: step "
          f"{base.step_time_s:.2f} -> {slow.step_time_s:.2f} s ({slow.step_time_s / base.step_time_s - 1:+.1%})")


if __name__ == "__main__":
    main()
