"""benchmarks/training_ablation.py (the contribution table of docs/parallelism.md, "Training fidelity"):
its removals are removals (each leaves the model no slower, except the Wgrad row, whose sign the kernel
model decides) and its monkeypatches leave the package as they found it."""
import importlib.util
from pathlib import Path

import pytest

from archsim.mapping import training, training_work
from archsim.mapping.training import estimate_training

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("training_ablation", REPO / "benchmarks/training_ablation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_removal_lowers_the_gpu_hours_and_patches_are_restored(ablation, h800):
    from archsim.config.workload import load_workload
    model = load_workload(REPO / "workloads/deepseek_v3.yaml").model
    originals = (training._bottleneck_rank, training.fb_span, training.price_phase, training.micro_batch_work,
                 training_work._gemm_terms, training_work._backward_bytes_ratio,
                 training_work.ATTENTION_BACKWARD_RATIO, training_work.sustained_gemm_s,
                 training_work.attention_backward_pass_bytes, training_work._GRADIENT_DTYPES, training_work.kernel_gap_s,
                 training_work._weight_transpose_bytes, training_work.key_assembly_bytes,
                 training_work.key_value_gradient_bytes)
    base, rows = ablation.contributions(model, h800)
    assert len(rows) == 23
    for label, without, adds in rows:
        assert 0 < without < 2 * base.gpu_hours_per_trillion_tokens, label
        if not label.startswith("Wgrad"):
            assert adds >= 0, label
    # the stage-split row is a lower bound below the model; the recomputation row holds its MLA part
    by = {label.split(";")[0].split(" (")[0]: adds for label, _, adds in rows}
    assert by["integer stage split"] > 0
    assert by["recomputation"] > by["of which the MLA up-projections"] > 0
    # the training-trace effects (docs/training_trace.md) each slow the model
    assert by["GEMMs at the clock sustained under training load, 1600 of 1830 MHz"] > 0
    assert by["of which the FP32 accumulation"] > 0
    assert by["of which DeepGEMM's FP8 Wgrad kernels at 0.93 of the kernel model"] > 0
    assert by["of which FlashAttention's backward pre-/post-processing passes"] > 0
    assert by["2.1 µs between back-to-back kernels"] > 0
    assert by["of which the FP8 weights transposed for Dgrad each micro-batch"] > 0
    assert by["of which the attention output cached in E5M6, cast and cast back"] > 0
    assert by["expanded MLA's K assembled by a copy in the forward and the kv_b_proj recomputation, and the K/V "
              "gradient's copies and head-sum"] > 0
    assert (training._bottleneck_rank, training.fb_span, training.price_phase, training.micro_batch_work,
            training_work._gemm_terms, training_work._backward_bytes_ratio,
            training_work.ATTENTION_BACKWARD_RATIO, training_work.sustained_gemm_s,
            training_work.attention_backward_pass_bytes, training_work._GRADIENT_DTYPES, training_work.kernel_gap_s,
            training_work._weight_transpose_bytes, training_work.key_assembly_bytes,
            training_work.key_value_gradient_bytes) == originals
    again = estimate_training(model, h800, ablation.LAYOUT, ablation.SETUP)
    assert again.step_time_s == base.step_time_s
