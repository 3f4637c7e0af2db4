"""A served iteration is the step ``archsim run`` prices for the same Deployment: serve resolves its deployment
through mapping.resolve (serving/replicas.py), estimate() through the same function from the same flags, and a grid
point's time, energy, FLOPs and HBM bytes are that deployment's priced phase. DeepSeek-V3 on 16 H800, TP1 EP16
DP16 (the EP group routes every busy rank's tokens; decode's experts in the low-latency exchange's layout), with
the workload's uniform expert load and again with ``expert_load: {zipf: 1.2}`` (both non-uniform then)."""
from __future__ import annotations

from pathlib import Path

import pytest

import archsim.serving.cost_model as cost_model
from archsim.api import estimate, plan
from archsim.config.workload import load_workload
from archsim.serving.iteration import IterationBatch, chunk_pairs
from archsim.serving.replicas import Longest, served_deployment

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = ROOT / "workloads/deepseek_v3.yaml"
FLAGS = dict(devices=16, tp=1, moe_ep=16, attn_dp=16)
OUTPUT = 16  # output tokens of the estimate() scenario whose last decode step is the grid point


def _served(wl, hw):
    return served_deployment(wl, hw, longest=Longest(prompt=4096, context=8192), output_len=4096, max_seqs=256,
                             block_tokens=16, kv_memory_fraction=0.9, overrides=dict(FLAGS)).pool("decode").model


@pytest.fixture(scope="module")
def zipf_workload(tmp_path_factory) -> Path:
    text = WORKLOAD.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("  expert_load:"))
    path = tmp_path_factory.mktemp("zipf") / "deepseek_v3_zipf.yaml"
    path.write_text(text.replace(line, "  expert_load: {zipf: 1.2}"))
    return path


@pytest.fixture(scope="module")
def uniform(h800):
    return _served(load_workload(WORKLOAD), h800)


@pytest.fixture(scope="module")
def zipf(h800, zipf_workload):
    return _served(load_workload(zipf_workload), h800)


def _decode_matches_estimate(it, workload, hw, batch: int, context: int):
    """The grid point at (batch, context) against estimate()'s last decode step at that context."""
    cost = it.iteration(IterationBatch(decode_seqs=batch, decode_tokens=batch,
                                       decode_context_tokens=batch * (context - 1)))
    lengths = dict(batch=batch, prompt_len=context - OUTPUT, output_len=OUTPUT)
    report = estimate(workload, hw, **FLAGS, **lengths)
    step = plan(workload, hw, **FLAGS, **lengths).plan.decode
    assert report.deployment.layout["label"] == it.par.label() == "TP1 EP16 PP1 DP16 MBauto"
    assert cost.time_s == pytest.approx(report.decode.tpot_s, rel=1e-9)
    # estimate(): the step's deployment dynamic energy plus static power on all 16 devices for the step
    assert cost.energy_j == pytest.approx(report.energy.joules_per_token * batch, rel=1e-9)
    # ... static power on every device for the whole step, the active baseline for its busy (GPU) time
    assert cost.energy_j == pytest.approx(step.deployment_dynamic_energy_j
                                          + 16 * (hw.static_power_w * step.time_s
                                                  + hw.power.active_baseline_w * (step.time_s - step.host_s)),
                                          rel=1e-9)
    assert cost.flops == pytest.approx(step.deployment_flops, rel=1e-9)
    assert cost.hbm_bytes == pytest.approx(step.deployment_main_bytes, rel=1e-9)
    return cost


def test_decode_grid_point_equals_estimate(uniform, h800):
    # batch 64 and context 2048 are grid points (batch doubles from 1, context from the 16-token block)
    assert uniform.deployment.expert_load.kind == "uniform"
    _decode_matches_estimate(uniform, WORKLOAD, h800, 64, 2048)


def test_workload_expert_load_reaches_serve_and_agrees_with_estimate(uniform, zipf, h800, zipf_workload):
    # the workload's zipf:1.2 routing is the served deployment's, and its grid point is estimate()'s step again
    assert zipf.deployment.expert_load.kind == "zipf"
    skewed = _decode_matches_estimate(zipf, zipf_workload, h800, 64, 2048)
    even = uniform.iteration(IterationBatch(decode_seqs=64, decode_tokens=64, decode_context_tokens=64 * 2047))
    # a hot expert's EP rank does more routed work than the uniform load's busiest rank: the step waits longer
    assert skewed.time_s > even.time_s * 1.01


def test_prefill_grid_point_equals_estimate(uniform, h800):
    # one 1024-token prompt on one busy rank, and a 512-token prompt on each of 2 ranks (grid points in tokens and
    # ranks); estimate() with the same batch and no chunking (a grid point is one forward)
    for ranks, tokens in ((1, 1024), (2, 512)):
        cost = uniform.iteration(IterationBatch(prefill_tokens=ranks * tokens,
                                                prefill_pairs=ranks * chunk_pairs(0, tokens), prefill_seqs=ranks))
        lengths = dict(batch=ranks, prompt_len=tokens, output_len=1, prefill_chunk=0)
        report = estimate(WORKLOAD, h800, **FLAGS, **lengths)
        step = plan(WORKLOAD, h800, **FLAGS, **lengths).plan.prefill
        assert step.busy_replicas == ranks
        assert cost.time_s == pytest.approx(report.prefill.latency_s, rel=1e-9)
        # all 16 devices draw static power for the iteration (the metrics count idle power only outside it)
        assert cost.energy_j == pytest.approx(report.energy.prefill_joules_per_token * ranks * tokens, rel=1e-9)
        assert cost.flops == pytest.approx(step.deployment_flops, rel=1e-9)
        assert cost.hbm_bytes == pytest.approx(step.deployment_main_bytes, rel=1e-9)


def test_extra_attended_pairs_cost_the_phase_graphs_attention(uniform):
    fresh = uniform.iteration(IterationBatch(prefill_tokens=512, prefill_pairs=chunk_pairs(0, 512), prefill_seqs=1))
    late = uniform.iteration(IterationBatch(prefill_tokens=512, prefill_pairs=chunk_pairs(4096, 512),
                                            prefill_seqs=1))
    phase = uniform._phase("prefill", 1, 512)
    attn = [c for c in phase.graph_cost.ops.values() if c.kind == "attention"]
    per_pair_flops = sum(c.flops for c in attn) / (512 * 513 // 2)  # one device = one rank's attention (tp 1)
    # attention FLOPs are linear in attended pairs, so the prompt attending as many pairs prices them exactly
    assert late.flops - fresh.flops == pytest.approx(per_pair_flops * 4096 * 512, rel=1e-9)
    assert late.time_s > fresh.time_s and late.energy_j > fresh.energy_j and late.hbm_bytes > fresh.hbm_bytes


def test_a_grid_point_is_one_priced_phase(uniform, monkeypatch):
    calls = []
    original = cost_model.price_phase
    monkeypatch.setattr(cost_model, "price_phase", lambda *a, **k: calls.append(k["phase"]) or original(*a, **k))
    it = cost_model.CostModelIteration(deployment=uniform.deployment, max_seqs=4, max_context=64)
    it.decode_point(2, 32)
    it.prefill_point(32)
    assert calls == ["decode", "prefill"]


def test_idle_power_is_the_static_power(uniform, h800):
    assert uniform.replica().idle_w == pytest.approx(16 * h800.static_power_w, rel=1e-12)
