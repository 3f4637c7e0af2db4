"""The profiler-trace reader: kernels grouped by op, pass and stream, on a hand-built trace and on DeepSeek's
published training trace (validation/deepseek_profile_train.json.gz, deepseek-ai/profile-data train.json)."""
import gzip
import json
from pathlib import Path

import pytest

from archsim.errors import ConfigError
from archsim.fidelity.profile_trace import OPS, classify, read_kernels, read_trace

REPO = Path(__file__).resolve().parents[2]
DEEPSEEK_TRACE = REPO / "validation" / "deepseek_profile_train.json.gz"


def _kernel(name, stream, ts, dur, corr):
    return {"ph": "X", "cat": "kernel", "name": name, "pid": 0, "tid": stream, "ts": ts, "dur": dur,
            "args": {"stream": stream, "correlation": corr}}


def _launch(ts, corr, tid):
    return {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": tid, "ts": ts,
            "dur": 2, "args": {"correlation": corr}}


def _note(name, ts, dur, tid=1):
    return {"ph": "X", "cat": "user_annotation", "name": name, "pid": 1, "tid": tid, "ts": ts, "dur": dur}


@pytest.fixture
def small_trace(tmp_path):
    """Compute stream 7: a GEMM 0-100 us launched under mlp(F), an attention backward 150-250 us launched
    from another thread under attn(B), a kernel nobody knows 300-310 us. Stream 9: a DeepEP combine 50-200 us
    and a notify 180-220 us (overlapping it by 20 us)."""
    events = [
        _note("ProfilerStep#1", 0, 1000), _note("mlp(F)", 0, 40), _note("attn(B)", 100, 100),
        _launch(1, 1, tid=1), _kernel("void cutlass::device_kernel<m_grouped_fp8::GemmKernel>", 7, 0, 100, 1),
        _launch(120, 2, tid=2), _kernel("void flash::FlashAttnBwd<...>", 7, 150, 100, 2),
        _launch(500, 3, tid=1), _kernel("my_custom_kernel_v2", 7, 300, 10, 3),
        _kernel("void dpsk::ep::internode::combine<...>", 9, 50, 150, 4),
        _kernel("void dpsk::ep::internode::cached_notify<...>", 9, 180, 40, 5),
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": 1, "tid": 1, "ts": 0, "dur": 5},
    ]
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"traceEvents": events}))
    return path


def test_small_trace_by_op_stream_and_pass(small_trace):
    s = read_trace(small_trace)
    assert len(s.kernels) == 5  # the cpu_op is not a kernel
    assert s.op_count == {"expert_gemm": 1, "attention_backward": 1, "other": 1, "combine": 1, "notify": 1}
    assert s.op_s["expert_gemm"] == pytest.approx(100e-6)
    # stream 7: 100 + 100 + 10 us busy, 0..310 us span; stream 9: union of 50-200 and 180-220 = 170 us
    assert s.streams["7"].busy_s == pytest.approx(210e-6)
    assert s.streams["7"].span_s == pytest.approx(310e-6)
    assert s.streams["9"].busy_s == pytest.approx(170e-6)
    assert s.streams["9"].count == 2
    assert s.span_s == pytest.approx(310e-6)
    # both streams together: 0-250 and 300-310 us
    assert s.busy_s(["7", "9"]) == pytest.approx(260e-6)
    # passes: the GEMM launched inside mlp(F); the attention launched by another thread inside attn(B);
    # the custom kernel launched at 500 us, outside every pass annotation (ProfilerStep has no pass)
    assert s.op_pass_s[("expert_gemm", "forward")] == pytest.approx(100e-6)
    assert s.op_pass_s[("attention_backward", "backward")] == pytest.approx(100e-6)
    assert s.op_pass_s[("other", "")] == pytest.approx(10e-6)
    assert s.unknown == ("my_custom_kernel_v2",)
    assert s.communication_streams() == ("9",)


def test_gzipped_and_bare_list_traces_read_alike(small_trace, tmp_path):
    events = json.loads(small_trace.read_text())["traceEvents"]
    gz = tmp_path / "t.json.gz"
    gz.write_bytes(gzip.compress(json.dumps(events).encode()))
    assert read_trace(gz).op_s == read_trace(small_trace).op_s


@pytest.mark.parametrize("name, op", [
    ("void dpsk::ep::internode::notify_dispatch<...>", "notify"),
    ("void dpsk::ep::internode::dispatch<...>", "dispatch"),
    ("ncclDevKernel_AllReduce_Sum_bf16_RING_LL", "collective"),
    ("void cutlass::device_kernel<dpsk::grouped_gemm::cuda::fp8_dptp128c_acc::GemmKernel>(...)", "wgrad_gemm"),
    ("void cutlass::device_kernel<dpsk::grouped_gemm::cuda::fp8_ptp128c::GemmKernel>(...)", "dense_gemm"),
    ("void dpsk::grouped_gemm::cuda::utils::transpose<...>", "fp8_cast"),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_nn_n_tilesize128x128x64", "dense_gemm"),
    ("void flash::compute_attn_ws<Flash_fwd_kernel_traits<192, 128>>", "attention_forward"),
    ("void cuda::per_channel_cast_and_transpose<...>", "fp8_cast"),
    ("cuda::expand_to_fused_with_scales_impl(int4 const*, ...)", "permute"),
    ("void layer_norm::ln_bwd_kernel<...>", "norm"),
    ("rotary_kernel", "rope"),
    ("void cuda::swiglu_backward<...>", "activation"),
    ("void at::native::sbtopk::gatherTopK<float>", "routing"),
    ("void at::native::vectorized_elementwise_kernel<4, ...>", "elementwise"),
    ("my_custom_kernel_v2", "other"),
])
def test_kernel_rules(name, op):
    assert classify(name) == op
    assert op in OPS


def test_bad_traces_are_one_line_errors(tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(ConfigError, match="readable trace file"):
        read_kernels(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="Chrome / Perfetto trace JSON"):
        read_kernels(bad)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"traceEvents": [{"ph": "X", "cat": "cpu_op", "name": "x", "ts": 0, "dur": 1}]}))
    with pytest.raises(ConfigError, match="GPU kernel events"):
        read_kernels(empty)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps([{"ph": "X", "cat": "kernel", "name": "k", "ts": 0}]))
    with pytest.raises(ConfigError, match="name, ts and dur"):
        read_kernels(broken)
    negative = tmp_path / "negative.json"
    negative.write_text(json.dumps([{"ph": "X", "cat": "kernel", "name": "k", "ts": 0, "dur": -1}]))
    with pytest.raises(ConfigError, match="non-negative"):
        read_kernels(negative)


@pytest.fixture(scope="module")
def deepseek():
    return read_trace(DEEPSEEK_TRACE)


def test_deepseek_trace_counts(deepseek):
    """profile-data train.json: 963 kernels. Per MoE layer (4 per chunk) and pass: DeepEP dispatch and
    combine once forward and once backward (8 each); the expert GEMMs gate_up and down fprop and dgrad (16);
    attention forward 4; weight gradients: 5 attention projections + the shared expert's gate_up and down + 4
    local experts x (gate_up, down) = 15 per layer (60). Nothing goes to ``other``."""
    s = deepseek
    assert len(s.kernels) == 963
    assert s.op_count["dispatch"] == 8 and s.op_count["combine"] == 8
    assert s.op_count["expert_gemm"] == 16
    assert s.op_count["attention_forward"] == 4
    assert s.op_count["wgrad_gemm"] == 60
    assert s.unknown == ()
    # the stream figures: compute stream 7 busy 118.2 ms, DeepEP stream 27 busy 114.5 ms
    assert s.streams["7"].busy_s == pytest.approx(118.2e-3, abs=0.05e-3)
    assert s.streams["27"].busy_s == pytest.approx(114.5e-3, abs=0.05e-3)
    assert s.communication_streams() == ("27",)
    # the expert GEMMs split evenly between forward (mlp(F)) and backward (mlp(B)) annotations
    assert s.op_pass_s[("expert_gemm", "forward")] + s.op_pass_s[("expert_gemm", "backward")] == pytest.approx(
        s.op_s["expert_gemm"])
    assert s.op_count["expert_gemm"] == sum(1 for k in s.kernels if k.op == "expert_gemm" and k.pass_)


def test_compare_rows_on_the_small_trace(small_trace):
    """Rows put measured and modelled seconds side by side; ratio = modelled / measured; an op only the model
    has is kept with no ratio; the stream rows compare the union of compute / communication streams."""
    from archsim.fidelity.trace_compare import op_rows, pass_rows, stream_rows
    s = read_trace(small_trace)
    modelled = {("expert_gemm", "forward"): 90e-6, ("attention_backward", "backward"): 130e-6,
                ("norm", "forward"): 5e-6, ("combine", "forward"): 150e-6}
    rows = {r.name: r for r in op_rows(s, modelled)}
    assert rows["expert_gemm"].ratio == pytest.approx(0.9) and rows["expert_gemm"].within(0.15)
    assert rows["attention_backward"].ratio == pytest.approx(1.3) and not rows["attention_backward"].within(0.15)
    assert rows["norm"].measured_s == 0 and rows["norm"].ratio is None
    assert rows["notify"].modelled_s == 0 and rows["notify"].ratio == 0
    passes = {r.name: r for r in pass_rows(s, modelled)}
    assert passes["expert_gemm (forward)"].measured_s == pytest.approx(100e-6)
    streams = stream_rows(s, {"compute_s": 210e-6, "communication_s": 150e-6, "span_s": 300e-6})
    compute, main, comm, span = streams
    assert compute.measured_s == pytest.approx(210e-6) and compute.ratio == pytest.approx(1.0)
    assert comm.measured_s == pytest.approx(170e-6)
    assert span.measured_s == pytest.approx(310e-6)


def test_published_recipe_needs_a_training_section(tmp_path):
    from archsim.config.workload import load_workload
    from archsim.fidelity.trace_compare import published_recipe
    par, setup = published_recipe(load_workload("deepseek_v3"))
    assert (par.ep, par.pp, par.dp, par.micro_batches, setup.comm_sms) == (64, 16, 128, 120, 20)
    with pytest.raises(ConfigError, match="training: section"):
        published_recipe(load_workload("kimi_k2"))


def test_op_busy_time_is_the_union_over_streams(tmp_path):
    """Two Wgrad GEMMs on two streams overlapping by 60 us (they share the SMs, each slowed by the other):
    their durations sum to 200 us, the op holds the GPU 140 us."""
    path = tmp_path / "w.json"
    path.write_text(json.dumps([_kernel("fp8_dptp128c_acc::GemmKernel", 7, 0, 100, 1),
                                _kernel("fp8_dptp128c_acc::GemmKernel", 23, 40, 100, 2)]))
    s = read_trace(path)
    assert s.op_s["wgrad_gemm"] == pytest.approx(200e-6)
    assert s.op_busy_s("wgrad_gemm") == pytest.approx(140e-6)


def test_deepseek_wgrad_streams_overlap(deepseek):
    """DeepSeek runs part of the expert Wgrad GEMMs on a second stream (23, 16 kernels, 11.4 ms) beside stream
    7: the op's busy time is below the sum of its kernels' durations (32.8 ms); every other op runs on one
    stream, so its busy time equals its summed durations (within a microsecond: the trace rounds to it)."""
    s = deepseek
    assert s.op_s["wgrad_gemm"] == pytest.approx(32.76e-3, abs=0.01e-3)
    assert s.op_busy_s("wgrad_gemm") < s.op_s["wgrad_gemm"] - 4e-3
    assert sum(1 for k in s.kernels if k.stream == "23") == 16
    assert all(k.op == "wgrad_gemm" for k in s.kernels if k.stream == "23")
    for op in ("expert_gemm", "dense_gemm", "attention_backward", "combine"):
        assert s.op_busy_s(op) == pytest.approx(s.op_s[op], abs=1e-6)  # back-to-back kernels may touch


def test_published_recipe_names_a_missing_field():
    from types import SimpleNamespace

    from archsim.fidelity.trace_compare import published_recipe
    workload = SimpleNamespace(source_file="w.yaml", training=SimpleNamespace(flags={
        "seq_len": 4096, "global_batch": 64, "moe_ep": 8, "pp": 2, "attn_dp": 4}))
    with pytest.raises(ConfigError, match="no micro_batches"):
        published_recipe(workload)
