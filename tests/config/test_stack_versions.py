"""Stack versions (stacks/vllm.yaml: 0.9.1, synchronous; stacks/vllm_0_11_async.yaml: 0.11.1 with
--async-scheduling, the ML.ENERGY v3.0 launch): the same kernels, host time overlapped or not."""
from __future__ import annotations

import warnings

import pytest

import archsim
from archsim.config.stack import load_stack
from archsim.paths import data_dir

LLAMA_8B = data_dir("validation") / "whatif_models" / "Llama-3.1-8B"


def test_async_stack_differs_from_the_synchronous_one_only_in_its_host_overlap():
    sync, asyn = load_stack("vllm"), load_stack("vllm_0_11_async")
    assert (sync.version, asyn.version) == ("0.9.1", "0.11.1")
    assert (sync.host.overlapped, asyn.host.overlapped) == (False, True)
    assert sync.host.iteration_s == asyn.host.iteration_s == pytest.approx(3e-3)
    assert sync.kernels == asyn.kernels
    assert sync.kernels["hopper"].libraries["dense_gemm_unquantized"] == "cublas_bf16"


@pytest.fixture(scope="module")
def decode():
    def run(stack):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # config.json fields archsim does not model
            return archsim.estimate(LLAMA_8B, "h100", batch=8, prompt_len=500, output_len=389, phase="decode",
                                    kv_cache="bf16", stack=stack).decode
    return run


def test_host_time_adds_when_synchronous_and_hides_when_overlapped(decode):
    """Same kernels, so the same GPU time g: synchronous step = g + 3 ms; async step = max(g, 3 ms) = g for a
    Llama-3.1-8B BF16 step, which streams ~16 GB of weights (> 3 ms at H100's 3.35 TB/s)."""
    sync, asyn = decode("vllm"), decode("vllm_0_11_async")
    assert sync.host_s == pytest.approx(3e-3)
    gpu = sync.time_s - sync.host_s
    assert gpu > 16e9 / 3.35e12
    assert asyn.host_s == 0.0 and asyn.time_s == pytest.approx(gpu, rel=1e-12)
