"""A served iteration's energy, FLOPs and HBM bytes come from the same priced phase as ``archsim run``
(estimate()): DeepSeek-V3 on 16 H800, TP1 EP16 DP16 (the EP group routes every rank's tokens; decode's
experts in the masked layout of the low-latency exchange)."""
from __future__ import annotations

from pathlib import Path

import pytest

import archsim.mapping.phases as phases
from archsim.api import estimate
from archsim.config.workload import load_workload
from archsim.graph.precision import precision_from_names
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.phases import price_phase
from archsim.serving.cost_model import CostModelIteration
from archsim.serving.iteration import IterationBatch, chunk_pairs

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = ROOT / "workloads/deepseek_v3.yaml"
PAR = Parallelism(tp=1, ep=16, dp=16)


@pytest.fixture(scope="module")
def setup(h800):
    w = load_workload(WORKLOAD)
    precision = precision_from_names(w.scenario.weights, w.scenario.activations, w.scenario.kv_cache)
    it = CostModelIteration(model=w.model, hw=h800, precision=precision, parallelism=PAR, max_seqs=256,
                            max_context=4096)
    return w.model, precision, it


def test_decode_grid_point_equals_estimate(setup, h800):
    model, precision, it = setup
    batch, context = 64, 2048  # both on the grid (batch doubles from 1, context from the 16-token block)
    cost = it.iteration(IterationBatch(decode_seqs=batch, decode_tokens=batch,
                                       decode_context_tokens=batch * (context - 1)))
    report = estimate(WORKLOAD, h800, devices=16, tp=1, ep=16, dp=16, pp=1, micro_batches=1, batch=batch,
                      prompt_len=context - 1, output_len=1, mtp=False)
    assert report.deployment.layout["label"] == PAR.label()
    phase = price_phase(model, h800, PAR, precision, phase="decode", batch=batch, length=context)
    assert cost.time_s == pytest.approx(report.decode.tpot_s, rel=1e-9)
    # estimate(): the step's deployment dynamic energy plus static power on all 16 devices for the step
    assert cost.energy_j == pytest.approx(report.energy.joules_per_token * batch, rel=1e-9)
    assert cost.energy_j == pytest.approx(phase.deployment_dynamic_energy_j
                                          + 16 * h800.static_power_w * phase.time_s, rel=1e-9)
    # pp = 1: every device does the bottleneck device's work
    assert cost.flops == pytest.approx(report.decode.flops * 16, rel=1e-9)
    assert cost.flops == pytest.approx(phase.deployment_flops, rel=1e-9)
    assert cost.hbm_bytes == pytest.approx(report.decode.hbm_bytes * 16, rel=1e-9)
    assert cost.hbm_bytes == pytest.approx(phase.main_memory_bytes_per_device * 16, rel=1e-9)


def test_prefill_rank_is_the_phase_share_plus_all_devices_static(setup, h800):
    model, precision, it = setup
    tokens = 1024  # on the token grid
    cost = it.iteration(IterationBatch(prefill_tokens=tokens, prefill_pairs=chunk_pairs(0, tokens), prefill_seqs=1))
    phase = price_phase(model, h800, PAR, precision, phase="prefill", batch=1, length=tokens)
    # the phase prices every DP rank with one prompt; one busy rank does 1/dp of its work, while all 16
    # devices of the replica draw static power for the iteration (the metrics count idle power only outside it)
    assert cost.time_s == pytest.approx(phase.time_s, rel=1e-9)
    assert cost.flops == pytest.approx(phase.deployment_flops / 16, rel=1e-9)
    assert cost.energy_j == pytest.approx(phase.deployment_dynamic_energy_j / 16
                                          + 16 * h800.static_power_w * phase.time_s, rel=1e-9)
    assert cost.hbm_bytes == pytest.approx(phase.main_memory_bytes_per_device, rel=1e-9)


def test_extra_attended_pairs_cost_the_phase_graphs_attention(setup, h800):
    model, precision, it = setup
    fresh = it.iteration(IterationBatch(prefill_tokens=512, prefill_pairs=chunk_pairs(0, 512), prefill_seqs=1))
    late = it.iteration(IterationBatch(prefill_tokens=512, prefill_pairs=chunk_pairs(4096, 512), prefill_seqs=1))
    phase = price_phase(model, h800, PAR, precision, phase="prefill", batch=1, length=512)
    attn = [c for c in phase.graph_cost.ops.values() if c.kind == "attention"]
    per_pair_flops = sum(c.flops for c in attn) / (512 * 513 // 2)  # one device = one rank's attention (tp 1)
    assert late.flops - fresh.flops == pytest.approx(per_pair_flops * 4096 * 512, rel=1e-9)
    assert late.energy_j > fresh.energy_j and late.hbm_bytes > fresh.hbm_bytes


def test_a_grid_point_builds_one_graph(setup, h800, monkeypatch):
    model, precision, _ = setup
    built = []
    original = phases.device_phase_graph
    monkeypatch.setattr(phases, "device_phase_graph", lambda *a, **k: built.append(a[1]) or original(*a, **k))
    it = CostModelIteration(model=model, hw=h800, precision=precision, parallelism=PAR, max_seqs=4, max_context=64)
    it.decode_point(2, 32)
    it.prefill_point(32)
    assert built == ["decode", "prefill"]


def test_idle_power_is_the_static_power(setup, h800):
    *_, it = setup
    assert it.replica().idle_w == pytest.approx(16 * h800.static_power_w, rel=1e-12)
