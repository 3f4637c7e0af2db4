"""Energy and work per device are that device's own; the deployment's totals count what every device really does.

A device of pipeline stage s runs that stage's layers (embedding on the first stage, head and MTP on the last) for
1/cp of each micro-batch's tokens. The bottleneck device is the busiest replica's, holding the busiest EP rank's
routed work. The deployment's totals count each busy replica's own sequences (an idle replica does no attention)
and every EP rank's mean routed work, so sharding preserves the step's total FLOPs: with tp = 1 (nothing
replicated) they equal the FLOPs of the same step on one device holding every sequence and every expert.
"""
from __future__ import annotations

from math import fsum
from pathlib import Path

import pytest

from archsim.api import estimate
from archsim.config.hardware import load_hardware
from archsim.config.workload import load_workload
from archsim.cost.phase import price_graph
from archsim.graph.build import build_decode, build_prefill
from archsim.graph.precision import precision_from_names
from archsim.mapping.parallel import Parallelism, plan_layout
from archsim.mapping.phases import price_phase

ROOT = Path(__file__).resolve().parents[1]
DSV3 = ROOT / "workloads" / "deepseek_v3.yaml"
H100 = ROOT / "hardware" / "h100.yaml"
FP8 = precision_from_names("fp8")
REL = 1e-9  # sums of ~60 per-layer figures in two orders


@pytest.fixture(scope="module")
def model():
    return load_workload(DSV3).model


@pytest.fixture(scope="module")
def hw():
    return load_hardware(H100)


def _one_device_flops(model, phase: str, batch: int, length: int) -> float:
    """The step's FLOPs on one device holding every sequence and expert (the count sharding must preserve)."""
    if phase == "decode":
        g = build_decode(model, batch=batch, context=length, precision=FP8, compact=True)
    else:
        g = build_prefill(model, batch=batch, prompt_len=length, precision=FP8, compact=True)
    return price_graph(g, load_hardware(H100)).flops


@pytest.mark.parametrize("phase,par,batch", [
    ("decode", Parallelism(ep=8, pp=2, dp=8, micro_batches=2), 32),    # 61 layers: stages of 31 and 30
    ("decode", Parallelism(ep=8, dp=8, micro_batches=1), 3),           # five replicas hold no sequence
    ("decode", Parallelism(ep=8, dp=8, micro_batches=1), 13),          # five replicas hold one more than three
    ("prefill", Parallelism(ep=8, dp=8, micro_batches=1), 8),
    ("decode", Parallelism(ep=4, dp=8, micro_batches=1), 16)])          # two MoE groups (expert replicas)
def test_sharding_preserves_the_steps_flops(model, hw, phase, par, batch):
    length = 2048 if phase == "decode" else 1024
    b = price_phase(model, hw, par, FP8, phase=phase, batch=batch, length=length, prefill_chunk=None)
    assert b.deployment_flops == pytest.approx(_one_device_flops(model, phase, batch, length), rel=REL)
    # the reported device is the bottleneck stage's, charged its own work
    assert b.dynamic_energy_j_per_device == pytest.approx(b.stage_dynamic_energy_j[b.worst_stage], rel=REL)
    assert b.busy_replicas == min(batch, par.dp)


def test_busiest_device_does_more_than_the_mean(model, hw):
    """The bottleneck device holds the busiest replica and the busiest EP rank: at least the mean device's work."""
    par = Parallelism(ep=16, dp=16, micro_batches=1)
    b = price_phase(model, hw, par, FP8, phase="decode", batch=16, length=4096)
    mean_flops = b.deployment_flops / par.devices
    assert b.flops_per_device > mean_flops
    assert b.main_memory_bytes_per_device > b.deployment_main_bytes / par.devices


def test_pipeline_stages_hold_unequal_shares(model, hw):
    par = Parallelism(tp=2, ep=8, pp=4, dp=4, micro_batches=4)
    b = price_phase(model, hw, par, FP8, phase="decode", batch=32, length=2048)
    assert len(b.stage_dynamic_energy_j) == par.pp
    # the first stage holds the embedding and the dense layers, the last the head: not equal shares
    assert b.stage_dynamic_energy_j[0] != pytest.approx(b.stage_dynamic_energy_j[-1], rel=1e-3)


def test_report_energy_is_the_sum_over_devices(model, hw):
    """J/token x tokens = every device's own dynamic energy + static power on every device for the step."""
    r = estimate(DSV3, hw, devices=16, pp=2, batch=32)
    layout = r.deployment.layout
    assert layout["pp"] == 2
    plan = plan_layout(model, hw, devices=16, batch=32, prompt_len=r.scenario.prompt_len,
                       output_len=r.scenario.output_len, precision=FP8, mtp=False, pp=2,
                       tp=layout["tp"], ep=layout["ep"], dp=layout["dp"])
    for b, tokens, got in ((plan.decode, 32, r.energy.joules_per_token),
                           (plan.prefill, 32 * r.scenario.prompt_len, r.energy.prefill_joules_per_token)):
        # static power over the whole step, the active baseline over its busy time (all but the host wait)
        total = b.deployment_dynamic_energy_j + 16 * (hw.static_power_w * b.time_s
                                                      + hw.power.active_baseline_w * (b.time_s - b.host_s))
        assert got * tokens == pytest.approx(total, rel=1e-12)
    # the phase summary is the bottleneck device's own energy and FLOPs
    assert r.decode.energy_j == pytest.approx(plan.decode.dynamic_energy_j_per_device
                                              + hw.static_power_w * r.decode.time_s
                                              + hw.power.active_baseline_w * (plan.decode.time_s - plan.decode.host_s),
                                              rel=1e-12)
    assert r.decode.flops == plan.decode.flops_per_device


def test_sweep_agrees_with_estimate_in_a_pipeline(hw):
    """The array path (whatif.sweep) charges energy the same way as estimate(), with pp > 1."""
    import numpy as np

    from archsim.whatif.sweep import SweepModel
    report = estimate(DSV3, hw, devices=16, batch=32, pp=2)
    assert report.deployment.layout["pp"] == 2
    got = SweepModel(DSV3, hw, devices=16, batch=32, pp=2).evaluate({"power.idle": np.array([hw.power.idle_w])})
    for key in ("decode.tpot_s", "energy.joules_per_token", "energy.tops_per_watt", "prefill.latency_s"):
        assert got[key][0] == pytest.approx(report.get(key), rel=1e-9), key
    assert got["decode.energy_j"][0] == pytest.approx(report.decode.energy_j, rel=1e-9)


def test_a_cached_prefix_is_attended_not_recomputed(model, hw):
    """price_phase(past=N): each prompt's new tokens attend N cached ones; the step's FLOPs are the one-device
    graph's with that prefix (its expanded K/V re-materialised, no prefix tokens through the layers)."""
    par = Parallelism(ep=8, dp=8, micro_batches=1)
    b = price_phase(model, hw, par, FP8, phase="prefill", batch=8, length=1024, past=4096, prefill_chunk=None)
    g = build_prefill(model, batch=8, prompt_len=1024, past_len=4096, precision=FP8, compact=True)
    assert b.deployment_flops == pytest.approx(price_graph(g, hw).flops, rel=REL)
    fresh = price_phase(model, hw, par, FP8, phase="prefill", batch=8, length=1024, prefill_chunk=None)
    assert b.time_s > fresh.time_s
