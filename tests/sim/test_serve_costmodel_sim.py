"""The policy comparisons again, with iterations priced by the real cost model (DeepSeek-V3 on 16 H100)."""
from __future__ import annotations

from pathlib import Path

import pytest

from archsim.config.workload import load_workload
from archsim.graph.precision import precision_from_names
from archsim.serving.arrivals import Poisson
from archsim.serving.config import SchedulerSpec
from archsim.serving.cost_model import for_deployment
from archsim.serving.lengths import Uniform
from archsim.serving.requests import LengthSampler, generate
from archsim.sim.serve import simulate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def deployment(h100):
    w = load_workload(ROOT / "workloads/deepseek_v3.yaml")
    precision = precision_from_names(w.scenario.weights, w.scenario.activations, w.scenario.kv_cache)
    return for_deployment(w.model, h100, precision, devices=16, max_seqs=256, max_context=16384,
                          kv_memory_fraction=0.9, min_kv_tokens=16384)


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
