"""validation/*.yaml loads strictly; every case names its source; bad files fail with file and field."""
from __future__ import annotations

import pytest

from archsim.errors import ConfigError
from archsim.fidelity.cases import METRICS, load_case_file, load_cases

GOOD = """
source: a paper
confidence: verified
hardware: h800
conditions: lab
cases:
  - {id: a, category: gemm_dense, kernel: gemm, dtype: fp8, shape: {m: 1, n: 2, k: 3}, measured: {tflops: 10}}
"""


def test_shipped_cases_load_with_sources_and_unique_ids() -> None:
    everything = load_cases()
    assert len({c.id for c in everything}) == len(everything)
    assert all(c.source and c.conditions for c in everything)
    # kernel and system cases, counted by file (the what-if category's files are counted by their own tests)
    cases = [c for c in everything if c.kernel not in ("deployment", "energy") and c.category != "whatif"]
    # DeepGEMM 18 dense + 4 contiguous + 6 masked; FlashMLA 2; DeepEP 8 normal + 12 low-latency + 2 V2; DSV3/ISCA 4;
    # H200 torch: GEMMs 52 shapes x (bf16, fp8) + 17 flash attention calls + 12 DSV3 training shapes x 2
    assert len(cases) == 18 + 4 + 6 + 2 + 8 + 12 + 2 + 4 + 104 + 17 + 24
    assert len({c.id for c in cases}) == len(cases)
    assert all(c.source and c.conditions for c in cases)
    assert all(c.metric in METRICS and c.measured_value > 0 for c in cases)
    by_id = {c.id: c for c in cases}
    # units are converted exactly: 1520 TFLOPS, 77 us, 3000 GB/s
    assert by_id["dense_m4096_n7168_k16384"].measured_value == 1520e12
    assert by_id["low_latency_ep8_dispatch"].measured_value == pytest.approx(77e-6)
    assert by_id["flashmla_memory_bound_bandwidth"].measured_value == 3000e9
    assert by_id["flashmla_memory_bound_bandwidth"].calibrates == "memory.hbm.achievable_fraction"


@pytest.mark.parametrize("bad, field", [
    (GOOD.replace("conditions: lab", "conditons: lab"), "conditions"),
    (GOOD.replace("tflops: 10", "teraflops: 10"), "cases[0].measured.teraflops"),
    (GOOD.replace("tflops: 10", "tflops: -1"), "cases[0].measured.tflops"),
    (GOOD.replace("kernel: gemm", "kernel: gemmm"), "cases[0].kernel"),
    (GOOD.replace("m: 1,", "m: 1.5,"), "cases[0].shape.m"),
    (GOOD + "  - {id: a, category: x, kernel: gemm, dtype: fp8, shape: {m: 1}, measured: {tflops: 1}}\n",
     "cases[1].id"),
])
def test_bad_case_files_name_file_and_field(tmp_path, bad: str, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    with pytest.raises(ConfigError) as err:
        load_case_file(path)
    assert "bad.yaml" in str(err.value) and field in str(err.value)


def test_good_file_loads(tmp_path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    (case,) = load_case_file(path).cases
    assert (case.metric, case.measured_value, dict(case.shape)) == ("tflops", 10e12, {"m": 1, "n": 2, "k": 3})


def test_empty_directory_is_an_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="validation"):
        load_cases(tmp_path)


def test_a_case_may_name_its_own_source(tmp_path) -> None:
    text = GOOD + """  - {id: b, category: deployment, kernel: deployment, dtype: fp8, source: a blog post, confidence: secondary,
     shape: {model: deepseek_v3, devices: 8}, measured: {output_tokens_per_s_per_gpu: 1850.5, tpot_ms: 50}}
"""
    path = tmp_path / "two.yaml"
    path.write_text(text)
    a, b_throughput, b_tpot = load_case_file(path).cases
    assert (a.source, a.confidence) == ("a paper", "verified")
    assert (b_tpot.source, b_tpot.confidence) == ("a blog post", "secondary")
    # a deployment measurement is judged on each kind of figure it reports, one case each
    assert (b_throughput.id, b_throughput.category, b_throughput.metric) == (
        "b.throughput", "deployment_throughput", "output_tokens_per_s_per_gpu")
    assert (b_tpot.id, b_tpot.category, b_tpot.metric, b_tpot.measured_value) == (
        "b.tpot", "deployment_tpot", "tpot_ms", pytest.approx(0.05))
    assert b_tpot.measured == {"tpot_ms": pytest.approx(0.05), "output_tokens_per_s_per_gpu": 1850.5}
