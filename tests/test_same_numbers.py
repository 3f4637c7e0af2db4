"""estimate(), sweep and plan price the same deployment alike, expert load included (each starts from
mapping/resolve.py's Deployment, so none can drop a field)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from archsim.api import estimate, plan
from archsim.config.hardware import load_hardware
from archsim.mapping.plan import search_inference
from archsim.whatif.sweep import SweepModel

REPO = Path(__file__).resolve().parents[1]
DSV3 = REPO / "workloads" / "deepseek_v3.yaml"


@pytest.fixture(scope="module")
def h800():
    return load_hardware(REPO / "hardware" / "h800.yaml")


@pytest.mark.parametrize("load", ["uniform", "zipf:1.2"])
def test_estimate_sweep_and_plan_agree(h800, load):
    kw = dict(devices=16, batch=64, expert_load=load)
    report = estimate(DSV3, h800, **kw)
    sweep = SweepModel(DSV3, h800, **kw).evaluate({})
    for key in ("decode.tpot_s", "prefill.latency_s", "energy.joules_per_token"):
        assert sweep[key][0] == pytest.approx(report.get(key), rel=1e-9), key
    resolved = plan(DSV3, h800, **kw)
    layout = resolved.deployment.pools[0].layout
    search = search_inference(resolved.deployment.model, h800, devices=16, prompt_len=report.scenario.prompt_len,
                              output_len=report.scenario.output_len, precision=resolved.deployment.precision,
                              batches=[64], deployment=resolved.deployment)
    same = [p for p in search.plans if p.parallelism == layout]
    assert len(same) == 1
    assert same[0].metrics["tpot_s"] == pytest.approx(report.get("decode.tpot_s"), rel=1e-12)
    assert same[0].metrics["ttft_s"] == pytest.approx(report.get("prefill.latency_s"), rel=1e-12)


def test_a_skewed_load_is_slower_everywhere(h800):
    """The skew reaches every path: a Zipf(1.2) load loads the busiest EP rank far above the mean."""
    uniform = estimate(DSV3, h800, devices=16, batch=64)
    skewed = estimate(DSV3, h800, devices=16, batch=64, expert_load="zipf:1.2")
    assert skewed.get("decode.tpot_s") > 1.1 * uniform.get("decode.tpot_s")
    assert SweepModel(DSV3, h800, devices=16, batch=64, expert_load="zipf:1.2").evaluate({})["decode.tpot_s"][0] \
        == pytest.approx(skewed.get("decode.tpot_s"), rel=1e-9)
