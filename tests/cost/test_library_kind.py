"""A stack's kernel library per weight format (cost/work.library_kind): BF16 linear layers and lm_heads run through
the stack's unquantized GEMM library (vLLM: F.linear -> cuBLAS), quantized ones through its own kernels."""
from __future__ import annotations

import math

import pytest

from archsim.config.hardware import resolve_hardware
from archsim.config.stack import load_stack
from archsim.cost.work import UNQUANTIZED_GEMM, extract_work, library_kind
from archsim.dtypes import BF16, FP8_BLOCK128
from archsim.fidelity.cases import load_cases
from archsim.fidelity.validate import evaluate
from archsim.graph.ops import GraphBuilder
from archsim.graph.precision import Precision
from archsim.mapping.phases import stack_libraries
from archsim.paths import data_dir


def ops(weights):
    """A quantized-path projection and an lm_head-like unquantized GEMM, in graph order."""
    b = GraphBuilder(Precision(weights=weights))
    b.gemm("proj", m=8, n=1024, k=4096, layer=0, deps=[], split="tp")
    b.gemm("head", m=8, n=1024, k=4096, layer=None, deps=["proj"], split="tp", quantized=False)
    g = b.graph()
    return [g.nodes[n]["op"] for n in ("proj", "head")]


def test_kind_follows_the_weight_format():
    fp8_proj, fp8_head = ops(FP8_BLOCK128)
    bf16_proj, _ = ops(BF16)
    kinds = {"gemm", UNQUANTIZED_GEMM}
    assert library_kind(fp8_proj, kinds) == "gemm"            # block-scaled FP8: the stack's dense_gemm library
    assert library_kind(fp8_head, kinds) == UNQUANTIZED_GEMM  # the BF16 lm_head of an FP8 model
    assert library_kind(bf16_proj, kinds) == UNQUANTIZED_GEMM
    assert library_kind(bf16_proj, {"gemm"}) == "gemm"        # a stack without the key: dense_gemm as before


def test_rows_take_their_library_factors():
    hw = resolve_hardware("h100")
    libs = stack_libraries(load_stack("vllm"), hw, "decode")
    lib = hw.kernel.libraries
    work = extract_work(ops(FP8_BLOCK128), hw, libraries=libs)
    fp8, bf16 = lib["cutlass_fp8_blockwise"], lib["cublas_bf16"]
    assert list(work.bandwidth_scale) == [fp8.bandwidth_fraction, bf16.bandwidth_fraction]
    assert list(work.mma_scale) == [fp8.mma_fraction, bf16.mma_fraction]


def test_cublas_bf16_fractions_rederive_from_the_h200_measurements():
    """hardware/*.yaml cublas_bf16: geometric mean of measured / reference rate over the cuBLAS BF16 rows of
    validation/h200_torch.yaml, M = 8 and 16 (memory-bound) and M >= 4096 (compute-bound), rounded to 2 places."""
    hw = resolve_hardware("h200")
    rows = [c for c in load_cases(data_dir("validation")) if c.category == "gemm_h200_measured" and c.dtype == "bf16"]

    def geomean(select):
        ratios = [c.measured["tflops"] / evaluate(c, hw).predicted for c in rows if select(c.shape["m"])]
        return len(ratios), math.exp(sum(map(math.log, ratios)) / len(ratios))

    n_mem, bw = geomean(lambda m: m in (8, 16))
    n_mma, mma = geomean(lambda m: m >= 4096)
    assert (n_mem, n_mma) == (10, 7)
    for chip in ("h100", "h200", "h800"):
        fields = resolve_hardware(chip).kernel.libraries["cublas_bf16"]
        assert fields.bandwidth_fraction == pytest.approx(bw, abs=0.005)
        assert fields.mma_fraction == pytest.approx(mma, abs=0.006)
