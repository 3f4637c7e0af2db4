"""The policy comparisons again, with iterations priced by the real cost model (DeepSeek-V3 on 16 H100)."""
from __future__ import annotations

from pathlib import Path

import pytest

from archsim.config.workload import load_workload
from archsim.serving.arrivals import Poisson
from archsim.serving.config import SchedulerSpec
from archsim.serving.replicas import Longest, served_deployment
from archsim.serving.lengths import Uniform
from archsim.serving.requests import LengthSampler, generate
from archsim.sim.serve import simulate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def deployment(h100):
    # the deployment `archsim serve --devices 16` resolves (TP1 EP16 DP16, micro-batches by price, CUDA graphs)
    pool = served_deployment(load_workload(ROOT / "workloads/deepseek_v3.yaml"), h100,
                             longest=Longest(prompt=16000, context=16384), output_len=384, max_seqs=256,
                             block_tokens=16, kv_memory_fraction=0.9, overrides={"devices": 16}).pool("decode")
    return pool.model, pool.replica


def _run(deployment, reqs, kind, duration, per_rank_budget=2048, per_rank_seqs=16, timeout_s=0.1):
    it, replica = deployment
    dp = it.par.dp
    spec = SchedulerSpec(kind=kind, max_seqs=per_rank_seqs * dp, token_budget=per_rank_budget * dp,
                         chunk_limit=per_rank_budget, timeout_s=timeout_s)
    return simulate(scheduler=spec, replica=replica, model=it, duration_s=duration, requests=reqs).summary


def test_chunked_prefill_lowers_p99_tpot_with_the_cost_model(deployment):
    reqs = generate(arrival=Poisson(rate_per_s=1.0), duration_s=60.0, seed=1,
                    lengths=LengthSampler(prompt=Uniform(low=8000, high=16000), output=Uniform(low=100, high=300)))
    cont = _run(deployment, reqs, "continuous", 60.0)
    chunked = _run(deployment, reqs, "chunked", 60.0)
    assert cont["requests"]["completed"] == chunked["requests"]["completed"] == len(reqs)
    assert chunked["tpot_s"]["p99"] < 0.8 * cont["tpot_s"]["p99"]


def test_continuous_beats_static_with_the_cost_model(deployment):
    # static batches of 16 x 16 sequences wait up to 2 s to fill and pad prompts and outputs to the longest
    reqs = generate(arrival=Poisson(rate_per_s=8.0), duration_s=30.0, seed=2,
                    lengths=LengthSampler(prompt=Uniform(low=200, high=2000), output=Uniform(low=20, high=400)))
    static = _run(deployment, reqs, "static", 30.0, timeout_s=2.0)
    cont = _run(deployment, reqs, "continuous", 30.0)
    assert cont["throughput"]["output_tokens_per_s"] > static["throughput"]["output_tokens_per_s"]
    assert cont["ttft_s"]["p99"] < static["ttft_s"]["p99"]
