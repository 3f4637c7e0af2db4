"""Energy per device is that device's own work; the devices' energies add up to the deployment's.

A device of pipeline stage s runs that stage's layers (embedding on the first stage, head and MTP on the
last) for 1/cp of each micro-batch's tokens. Summed over every device (tp*cp*dp per stage, pp stages),
the dynamic energy is the priced device graph's times micro_batches * tp * dp, whatever the layer split.
"""
from __future__ import annotations

from math import fsum
from pathlib import Path

import pytest

from archsim.api import estimate
from archsim.config.hardware import load_hardware
from archsim.config.workload import load_workload
from archsim.graph.precision import precision_from_names
from archsim.mapping.parallel import Parallelism, plan_layout
from archsim.mapping.phases import price_phase

ROOT = Path(__file__).resolve().parents[1]
DSV3 = ROOT / "workloads" / "deepseek_v3.yaml"
H100 = ROOT / "hardware" / "h100.yaml"
FP8 = precision_from_names("fp8")
REL = 1e-12  # rounding of sums of ~60 per-layer figures


@pytest.fixture(scope="module")
def model():
    return load_workload(DSV3).model


@pytest.fixture(scope="module")
def hw():
    return load_hardware(H100)


@pytest.mark.parametrize("phase,par", [
    ("decode", Parallelism(tp=1, ep=8, pp=2, dp=8, micro_batches=2)),     # 61 layers: stages of 31 and 30
    ("decode", Parallelism(tp=2, ep=8, pp=4, dp=4, micro_batches=4)),
    ("prefill", Parallelism(tp=1, ep=8, pp=2, dp=4, cp=2, micro_batches=1)),
    ("decode", Parallelism(tp=1, ep=8, pp=1, dp=8, micro_batches=2))])
def test_stage_energies_add_up_to_the_deployment(model, hw, phase, par):
    b = price_phase(model, hw, par, FP8, phase=phase, batch=32, length=2048)
    g = b.graph_cost
    copies = b.micro_batches * par.tp * par.dp  # the device graph's work done per step, all devices together
    assert len(b.stage_dynamic_energy_j) == par.pp
    assert fsum(b.stage_dynamic_energy_j) * par.stage_devices == pytest.approx(g.dynamic_energy_j * copies, rel=REL)
    assert b.deployment_dynamic_energy_j == pytest.approx(g.dynamic_energy_j * copies, rel=REL)
    assert b.deployment_flops == pytest.approx(g.flops * copies, rel=REL)
    # the reported device is the bottleneck stage's, charged its own work
    assert b.dynamic_energy_j_per_device == b.stage_dynamic_energy_j[b.worst_stage]
    if par.pp > 1:  # the first stage holds the embedding and dense layers, the last the head: not equal shares
        assert b.stage_dynamic_energy_j[0] != pytest.approx(b.stage_dynamic_energy_j[-1], rel=1e-3)
    else:
        assert b.dynamic_energy_j_per_device == pytest.approx(g.dynamic_energy_j * b.micro_batches / par.cp, rel=REL)


def test_report_energy_is_the_sum_over_devices(model, hw):
    """J/token x tokens = every device's own dynamic energy + static power on every device for the step."""
    r = estimate(DSV3, hw, devices=16, pp=2, batch=32)
    par = Parallelism(**{k: r.deployment.layout[k] for k in ("tp", "ep", "pp", "dp", "cp", "micro_batches")})
    assert par.pp == 2
    plan = plan_layout(model, hw, devices=16, batch=32, prompt_len=r.scenario.prompt_len,
                       output_len=r.scenario.output_len, precision=FP8, mtp=False, pp=2,
                       tp=par.tp, ep=par.ep, dp=par.dp, micro_batches=par.micro_batches)
    for b, tokens, got in ((plan.decode, 32, r.energy.joules_per_token),
                           (plan.prefill, 32 * r.scenario.prompt_len, r.energy.prefill_joules_per_token)):
        total = fsum(e + hw.static_power_w * b.time_s for e in b.stage_dynamic_energy_j) * par.stage_devices
        assert got * tokens == pytest.approx(total, rel=REL)
    # the phase summary is the bottleneck device's own energy and FLOPs
    assert r.decode.energy_j == pytest.approx(plan.decode.dynamic_energy_j_per_device
                                              + hw.static_power_w * r.decode.time_s, rel=REL)
    assert r.decode.flops == plan.decode.flops_per_device


def test_sweep_agrees_with_estimate_in_a_pipeline(hw):
    """The array path (whatif.sweep) charges energy the same way as estimate(), with pp > 1."""
    import dataclasses

    import numpy as np

    from archsim.config.workload import Parallelism as ScenarioParallelism
    from archsim.whatif.sweep import SweepModel
    wl = load_workload(DSV3)
    sc = dataclasses.replace(wl.scenario, devices=16, batch=32,
                             parallelism=dataclasses.replace(ScenarioParallelism(), pp=2))
    wl = dataclasses.replace(wl, scenario=sc)
    report = estimate(wl, hw)
    assert report.deployment.layout["pp"] == 2
    got = SweepModel(wl, hw).evaluate({"power.idle": np.array([hw.power.idle_w])})
    for key in ("decode.tpot_s", "energy.joules_per_token", "energy.tops_per_watt"):
        assert got[key][0] == pytest.approx(report.get(key), rel=1e-9), key
    assert got["decode.energy_j"][0] == pytest.approx(report.decode.energy_j, rel=1e-9)
