"""Energy in every output (docs/energy.md): per-phase average board power next to J/token and TOPS/W in run (table
and JSON), the per-node and at-the-wall J/token when the hardware gives host power and PUE, serve's energy per
request and average power, and the sweep's power columns."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from archsim.api import estimate, plan
from archsim.config.hardware import load_hardware
from archsim.report.metrics import busy_time_s, static_energy_j
from archsim.report.table import format_report

ROOT = Path(__file__).resolve().parents[2]
LLAMA = ROOT / "workloads" / "llama3_405b.yaml"
RUN = dict(devices=8, tp=8, batch=64, prompt_len=1000, output_len=400, weights="fp8")


@pytest.fixture(scope="module")
def h100():
    return load_hardware(ROOT / "hardware" / "h100.yaml")


@pytest.fixture(scope="module")
def report(h100):
    return estimate(LLAMA, h100, **RUN)


def test_phase_power_is_energy_over_time(report):
    for phase in (report.prefill, report.decode):
        assert phase.avg_power_w == pytest.approx(phase.energy_j / phase.time_s, rel=1e-12)
    e = report.energy
    # the instance's decode energy per step is J/token x batch; over 8 devices and the step time
    assert e.decode_power_w_per_device == pytest.approx(e.joules_per_token * 64 / (8 * report.decode.time_s),
                                                        rel=1e-12)
    assert e.prefill_power_w_per_device == pytest.approx(
        e.prefill_joules_per_token * 64 * 1000 / (8 * report.prefill.latency_s), rel=1e-12)
    # board power between idle and TDP; prefill (compute-bound) draws more than decode (memory-bound)
    assert 80.3 < e.decode_power_w_per_device < e.prefill_power_w_per_device <= 700 * (1 + 1e-9)


def test_node_and_wall_energy_by_hand(h100, report):
    # hardware/h100.yaml host_per_node 4.6 kW (DGX H100 10.2 kW max - 8 x 700 W); TP8 on 8 GPUs is one node:
    # node J/token = (board J/token x 64 + 4600 W x 1 node x step) / 64; wall = node x PUE
    e = report.energy
    step = report.decode.time_s
    node = (e.joules_per_token * 64 + 4600.0 * step) / 64
    assert e.joules_per_token_node == pytest.approx(node, rel=1e-12)
    assert e.joules_per_token_wall is None  # no PUE shipped: a site's figure
    with_pue = dataclasses.replace(h100, power=dataclasses.replace(h100.power, pue=1.2))
    assert estimate(LLAMA, with_pue, **RUN).energy.joules_per_token_wall == pytest.approx(1.2 * node, rel=1e-12)
    bare = dataclasses.replace(h100, power=dataclasses.replace(h100.power, host_per_node_w=None))
    assert estimate(LLAMA, bare, **RUN).energy.joules_per_token_node is None


def test_two_nodes_pay_two_hosts(h100):
    # 16 GPUs at 8 per node: two nodes' host power over the step
    r = estimate(LLAMA, h100, **{**RUN, "devices": 16})
    e = r.energy
    assert e.joules_per_token_node == pytest.approx(
        (e.joules_per_token * 64 + 2 * 4600.0 * r.decode.time_s) / 64, rel=1e-12)


def test_run_table_and_json_carry_the_power_labelled(report):
    text = format_report(report)
    for label in ("average power per device (board)", "per output token (GPU boards)",
                  "per output token (node: + host power)", "decode power per device (board, average)"):
        assert label in text
    d = report.to_dict()
    assert d["energy"]["decode_power_w_per_device"] == pytest.approx(report.energy.decode_power_w_per_device)
    assert d["decode"]["avg_power_w"] == pytest.approx(report.decode.avg_power_w)


def test_sweep_power_columns_agree_with_estimate(h100, report):
    from archsim.whatif.sweep import SweepModel

    got = SweepModel(LLAMA, h100, **RUN).evaluate({"power.idle": np.array([h100.power.idle_w])})
    assert got["energy.decode_power_w_per_device"][0] == pytest.approx(report.energy.decode_power_w_per_device,
                                                                       rel=1e-9)
    assert got["energy.prefill_power_w_per_device"][0] == pytest.approx(report.energy.prefill_power_w_per_device,
                                                                        rel=1e-9)


def test_serve_reports_energy_per_request_and_average_power():
    from archsim.sim.serve_deploy import ServeOptions, run_deployment

    opts = ServeOptions(workload=str(LLAMA), hw=str(ROOT / "hardware" / "h100.yaml"), devices=8, tp=8, weights="fp8",
                        num_prompts=8, max_concurrency=8, rate=math.inf, prompt_len="200", output_len="20")
    result, _ = run_deployment(opts)
    energy, s = result.summary["energy"], result.summary
    assert energy["j_per_request"] == pytest.approx(energy["total_j"] / s["requests"]["completed"], rel=1e-12)
    assert energy["avg_power_w_per_device"] == pytest.approx(energy["total_j"] / s["duration_s"] / 8, rel=1e-9)
    assert 80.3 <= energy["avg_power_w_per_device"] <= 700
    # power over time: each iteration's replica power; weighted by iteration time it is the iterations' energy
    rec = result.recorder
    assert len(rec.series_power_w) == rec.iterations
    weighted = sum(p * s for p, s in zip(rec.series_power_w, rec.series_iteration_s))
    assert weighted == pytest.approx(energy["iterations_j"], rel=1e-9)
    assert all(8 * 80.3 < p <= 8 * 700 * (1 + 1e-9) for p in rec.series_power_w)

    from archsim.report.html import serve_page
    assert "board power of the iterating replica" in serve_page(result.summary, rec, "t")


def test_active_baseline_is_charged_over_busy_time_only(h100, report):
    """Static power is drawn over the whole step, the active baseline (hardware/h100.yaml power.active_baseline,
    25.1 W) only while the device runs kernels: not over the host time the GPU waits for (report/metrics.py)."""

    step = plan(LLAMA, h100, **RUN).plan.decode
    assert h100.power.active_baseline_w == pytest.approx(25.1)
    waited = dataclasses.replace(step, host_s=step.host_s + 0.010)  # 10 ms more of host wait
    assert waited.time_s == pytest.approx(step.time_s + 0.010, rel=1e-12)
    assert busy_time_s(waited) == pytest.approx(busy_time_s(step), rel=1e-12)
    # 80.3 W over the extra 10 ms, no baseline: 0.803 J more
    assert static_energy_j(waited, h100) - static_energy_j(step, h100) == pytest.approx(80.3 * 0.010, rel=1e-9)
    # the run's decode energy per device: dynamic + 80.3 W x step + 25.1 W x busy
    assert report.decode.energy_j == pytest.approx(step.dynamic_energy_j_per_device + 80.3 * step.time_s
                                                   + 25.1 * (step.time_s - step.host_s), rel=1e-12)
