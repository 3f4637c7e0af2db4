"""Training estimates: DeepSeek-V3's published pre-training run, memory with ZeRO / recomputation /
optimizers, LoRA, schedules, and the ``archsim train`` command."""
import json
from pathlib import Path

import pytest

from archsim.cli import main
from archsim.errors import ConfigError
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.training import TrainingSetup, estimate_training, training_bytes

REPO = Path(__file__).resolve().parents[2]

# DeepSeek-V3 pre-training (DSV3-TR = DeepSeek-V3 Technical Report, arXiv 2412.19437, §3.1-3.3 and §4.2 [V]):
# 2048 H800, PP16 DualPipe, EP64 over 8 nodes, ZeRO-1, no TP, FP8, 4K sequences, 15360-sequence batch; 20 of
# 132 SMs for communication; MTP D=1; FP8 caching of activations and recomputation of RMSNorm and the MLA
# up-projections (DSV3-TR §3.3.3).
DSV3_LAYOUT = Parallelism(tp=1, ep=64, pp=16, dp=128, micro_batches=120, zero_stage=1)
DSV3_SETUP = TrainingSetup(seq_len=4096, global_batch=15360, precision="fp8", optimizer="adamw",
                           recompute="selective", schedule="dualpipe", comm_sms=20, mtp=True,
                           fp8_activation_cache=True, recompute_projections=("q_b_proj", "kv_b_proj"),
                           attention_output_format="e5m6")
PUBLISHED_GPU_HOURS_PER_T = 180e3  # DSV3-TR: 180K H800 GPU-hours per trillion tokens [V]
PUBLISHED_MFU = 0.3894  # ISCA25 Table 4, MPFT [S]


@pytest.fixture(scope="module")
def dsv3_estimate(dsv3, h800):
    return estimate_training(dsv3, h800, DSV3_LAYOUT, DSV3_SETUP)


def test_dsv3_pretraining_against_published(dsv3_estimate):
    """archsim projects 154.2K GPU-hours per trillion tokens against the published 180K (-14.3%) and 45.7%
    MFU against 38.94% (1.17x; MFU in the source's definition, the main model's 250.8 GFLOPs/token without the
    MTP module, test_mfu_uses_the_papers_definition). Every effect priced is physics (docs/parallelism.md,
    "Training fidelity", has the contribution table; docs/training_trace.md sets the chunk pair beside
    DeepSeek's kernel trace op by op: the GEMMs, Wgrad, attention and element-wise kernels within 15% of
    it, the FP8 casts, norms, RoPE, routing and the DeepEP calls with their notify kernels still below it). The
    issue-15 target (within 10% of 180K and of 38.9% MFU) is NOT met. Documented bound: GPU-hours between
    0.81x and 0.88x the published figure, MFU between 1.14x and 1.24x; the test fails if a change moves it
    outside (either way: a fix that closes the gap must update the docs and the bound)."""
    e = dsv3_estimate
    assert e.fits
    ratio = e.gpu_hours_per_trillion_tokens / PUBLISHED_GPU_HOURS_PER_T
    assert 0.81 <= ratio <= 0.88, ratio
    assert 1.14 <= e.mfu / PUBLISHED_MFU <= 1.24, e.mfu
    # the definitions are consistent with each other
    assert e.gpu_hours_per_trillion_tokens == pytest.approx(1e12 / e.tokens_per_s * 2048 / 3600)
    assert e.tokens_per_step == 15360 * 4096
    # model FLOPs per token: 3 x forward; ISCA25 Table 2 quotes 250 GFLOPs/token for DeepSeek-V3 at 4K
    # (our count adds the MTP module and logits at every position: within 10%)
    assert e.model_flops_per_token == pytest.approx(250e9, rel=0.10)


def test_mfu_uses_the_papers_definition(dsv3_estimate):
    """ISCA25 Table 4's 38.94% is tokens/s x 250 GFLOPs/token (Table 2) over the dense BF16 peak 989.4
    TFLOPS: 272.80e9 tokens/day / 86400 / 2048 = 1541.7 tokens/s per GPU; x 250e9 / 989.4e12 = 0.3896.
    The 250 is the main model's 3 x forward without the MTP module: archsim counts 250.8 GFLOPs without it
    and 261.0 with it, so MFU counts the main model's (``mfu_flops_per_token``) and divides by the same peak;
    the MFU ratio then equals the tokens/s ratio to within 250.8 / 250 (0.3%)."""
    per_gpu = 272.80e9 / 86400 / 2048
    assert per_gpu * 250e9 / 989.4e12 == pytest.approx(PUBLISHED_MFU, abs=0.0005)
    e = dsv3_estimate
    assert e.peak_flop_per_s == pytest.approx(989.4e12)
    assert e.mfu == pytest.approx(e.tokens_per_s / 2048 * e.mfu_flops_per_token / 989.4e12)
    assert e.mfu_flops_per_token == pytest.approx(250e9, rel=0.005)  # the source's 250 GFLOPs
    assert e.model_flops_per_token > e.mfu_flops_per_token * 1.03  # + the MTP module and its head (4.1%)
    published_tokens_per_gpu = 1e12 / (PUBLISHED_GPU_HOURS_PER_T * 3600)
    assert e.mfu / PUBLISHED_MFU == pytest.approx(
        (e.tokens_per_s / 2048) / published_tokens_per_gpu * e.mfu_flops_per_token / 250e9, rel=0.002)


def test_dsv3_memory_fits_only_with_fp8_activation_cache(dsv3, h800, dsv3_estimate):
    from dataclasses import replace
    bf16_cache = estimate_training(dsv3, h800, DSV3_LAYOUT, replace(DSV3_SETUP, fp8_activation_cache=False))
    assert dsv3_estimate.memory.fits and not bf16_cache.memory.fits
    assert bf16_cache.memory.activations_bytes == pytest.approx(2 * dsv3_estimate.memory.activations_bytes)
    # DualPipe keeps two copies of the parameters (DSV3-TR Table 2)
    one = estimate_training(dsv3, h800, DSV3_LAYOUT, replace(DSV3_SETUP, schedule="1f1b"))
    assert dsv3_estimate.memory.weights_bytes == pytest.approx(2 * one.memory.weights_bytes)


def test_training_bytes_per_parameter():
    # DSV3 FP8 recipe: BF16 weights 2 + FP32 grads 4 + FP32 master 4 + two BF16 moments 2 x 2
    fp8 = training_bytes(TrainingSetup(seq_len=8, global_batch=1, precision="fp8"))
    assert (fp8.weights, fp8.gradients, fp8.optimizer) == (2.0, 4.0, 8.0)
    # mixed-precision AdamW: 2 + 2 + 12 (Rajbhandari et al. 2020); Muon keeps one FP32 momentum: 2 + 2 + 8
    adam = training_bytes(TrainingSetup(seq_len=8, global_batch=1))
    muon = training_bytes(TrainingSetup(seq_len=8, global_batch=1, optimizer="muon"))
    assert adam.weights + adam.gradients + adam.optimizer == 16.0
    assert muon.optimizer == 8.0


def test_zero_stages_shrink_memory(dsv3, h800):
    setup = TrainingSetup(seq_len=4096, global_batch=64, precision="fp8", recompute="full")
    totals = []
    for z in (0, 1, 2, 3):
        e = estimate_training(dsv3, h800, Parallelism(ep=32, dp=64, micro_batches=1, zero_stage=z), setup)
        totals.append(e.memory.total_bytes)
    assert totals == sorted(totals, reverse=True) and totals[0] > totals[3]


def test_recompute_trades_memory_for_time(dsv3, h800):
    par = Parallelism(ep=32, dp=32, micro_batches=2)
    runs = {r: estimate_training(dsv3, h800, par, TrainingSetup(seq_len=4096, global_batch=64, precision="fp8",
                                                                 recompute=r))
            for r in ("none", "selective", "full")}
    acts = [runs[r].memory.activations_bytes for r in ("none", "selective", "full")]
    times = [runs[r].step_time_s for r in ("none", "selective", "full")]
    assert acts[0] > acts[1] > acts[2]
    assert times[0] < times[1] < times[2]


def test_lora_trains_few_parameters_and_is_faster(dsv3, h800):
    par = Parallelism(ep=32, dp=32, micro_batches=2)
    kw = dict(seq_len=4096, global_batch=64, precision="fp8", recompute="full")
    lora = estimate_training(dsv3, h800, par, TrainingSetup(mode="lora", lora_rank=16, **kw))
    full = estimate_training(dsv3, h800, par, TrainingSetup(mode="finetune", **kw))
    # rank 16 on q_b_proj [1536 -> 128*192], kv_b_proj [512 -> 128*256], o_proj [128*128 -> 7168], 61 layers;
    # LoRA gradients are FP32: 4 bytes per trainable parameter
    per_layer = 16 * ((1536 + 128 * 192) + (512 + 128 * 256) + (128 * 128 + 7168))
    assert lora.memory.gradients_bytes == pytest.approx(61 * per_layer * 4)
    assert lora.step_time_s < full.step_time_s
    assert lora.memory.total_bytes < full.memory.total_bytes


def test_dualpipe_bubble_below_1f1b(dsv3, h800):
    par = Parallelism(tp=1, ep=64, pp=16, dp=128, micro_batches=120)
    dual = estimate_training(dsv3, h800, par, DSV3_SETUP)
    from dataclasses import replace
    one = estimate_training(dsv3, h800, par, replace(DSV3_SETUP, schedule="1f1b"))
    assert dual.breakdown["bubble"] < one.breakdown["bubble"]
    assert dual.step_time_s < one.step_time_s


def test_bad_training_inputs(dsv3, h800):
    with pytest.raises(ConfigError, match="training.optimizer"):
        TrainingSetup(seq_len=8, global_batch=1, optimizer="sgd")
    with pytest.raises(ConfigError, match="global_batch"):
        estimate_training(dsv3, h800, Parallelism(ep=8, dp=8), TrainingSetup(seq_len=8, global_batch=12))


def test_cli_train_json(capsys):
    rc = main(["train", str(REPO / "workloads/deepseek_v3.yaml"), "--hw", str(REPO / "hardware/h800.yaml"),
               "--devices", "2048", "--pp", "16", "--ep", "64", "--global-batch", "15360", "--precision", "fp8",
               "--schedule", "dualpipe", "--comm-sms", "20", "--mtp", "--fp8-activation-cache", "--tokens", "14.8T",
               "--format", "json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("step_time_s", "tokens_per_s", "mfu", "gpu_hours_per_trillion_tokens", "fits"):
        assert key in out
    assert out["memory"]["per_device_bytes"] > 0 and out["tokens"] == 14.8e12
    assert out["layout"]["micro_batches"] == 120


def test_cli_train_attention_output_format(capsys):
    """The published recipe caches the attention output in E5M6 (workloads/deepseek_v3.yaml, DSV3-TR 3.3.3); the
    flag overrides it, and keeping it in BF16 drops the cast and cast back: a shorter step."""
    args = ["train", str(REPO / "workloads/deepseek_v3.yaml"), "--hw", str(REPO / "hardware/h800.yaml"),
            "--recipe", "published", "--format", "json"]
    assert main(args) == 0
    e5m6 = json.loads(capsys.readouterr().out)
    assert main(args + ["--attention-output-format", "bf16"]) == 0
    bf16 = json.loads(capsys.readouterr().out)
    assert e5m6["setup"]["attention_output_format"] == "e5m6" and bf16["setup"]["attention_output_format"] == "bf16"
    assert bf16["step_time_s"] < e5m6["step_time_s"]
    with pytest.raises(SystemExit):
        main(args + ["--attention-output-format", "e4m3"])


def test_cli_train_text_and_errors(capsys):
    rc = main(["train", str(REPO / "workloads/kimi_k2.yaml"), "--hw", str(REPO / "hardware/h800.yaml"),
               "--devices", "256", "--pp", "16", "--precision", "bf16", "--optimizer", "muon",
               "--global-batch", "512", "--recompute", "full", "--schedule", "interleaved", "--micro-batches", "32"])
    assert rc == 0 and "MFU" in capsys.readouterr().out  # Kimi K2's layout (K2-TR §2.4: PP16 virtual stages, EP16)
    rc = main(["train", str(REPO / "workloads/kimi_k2.yaml"), "--hw", str(REPO / "hardware/h800.yaml"),
               "--devices", "256", "--pp", "7"])
    assert rc == 2
    assert "parallelism" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "w.yaml", "--hw", "h.yaml", "--devices", "4", "--tokens", "lots"])


def test_cli_train_trace(tmp_path, capsys):
    trace = tmp_path / "step.json"
    rc = main(["train", str(REPO / "workloads/deepseek_v3.yaml"), "--hw", str(REPO / "hardware/h800.yaml"),
               "--devices", "256", "--pp", "4", "--ep", "64", "--global-batch", "512", "--precision", "fp8",
               "--schedule", "dualpipe", "--trace", str(trace)])
    assert rc == 0
    events = json.loads(trace.read_text())["traceEvents"]
    assert {e["pid"] for e in events if e["ph"] == "X"} == {0, 1, 2, 3}  # one track per pipeline rank
    rc = main(["train", str(REPO / "workloads/deepseek_v3.yaml"), "--hw", str(REPO / "hardware/h800.yaml"),
               "--devices", "256", "--pp", "4", "--trace", str(tmp_path / "missing" / "x.json")])
    assert rc == 2


def test_layout_that_does_not_fit_is_not_priced(capsys):
    rc = main(["train", str(REPO / "workloads/kimi_k2.yaml"), "--hw", str(REPO / "hardware/h800.yaml"),
               "--devices", "8", "--format", "json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fits"] is False and "needs" in out["reason"]
    assert out["step_time_s"] is None and out["mfu"] is None and out["gpu_hours_per_trillion_tokens"] is None
    assert out["memory"]["per_device_bytes"] > out["memory"]["capacity_bytes"]
    rc = main(["train", str(REPO / "workloads/kimi_k2.yaml"), "--hw", str(REPO / "hardware/h800.yaml"),
               "--devices", "8"])
    text = capsys.readouterr().out
    assert rc == 0 and "DOES NOT FIT" in text and "MFU" not in text


def test_hardware_without_a_bf16_peak_is_a_config_error(dsv3, h800):
    """Training MFU is quoted against the BF16 peak; a chip file without one is named in the error."""
    from dataclasses import replace as dc_replace
    tensor = h800.engine_for("matrix")
    peaks = {k: v for k, v in tensor.peak_flop_per_s.items() if k != "bf16"}
    hw = dc_replace(h800, compute={**h800.compute, tensor.name: dc_replace(tensor, peak_flop_per_s=peaks)})
    with pytest.raises(ConfigError, match="bf16 peak"):
        estimate_training(dsv3, hw, DSV3_LAYOUT, DSV3_SETUP)
