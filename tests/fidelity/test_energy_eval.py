"""Energy cases (validation/energy_public.yaml, validation/energy_mlperf.yaml, fidelity/energy_eval.py): public
board-power, node-power and J-per-token measurements of serving runs against the priced deployment."""
from __future__ import annotations

import statistics
from types import SimpleNamespace

import pytest

from archsim.config.hardware import resolve_hardware
from archsim.fidelity.cases import VALIDATION_DIR, load_case_file
from archsim.fidelity.deployment_eval import NotModelled
from archsim.fidelity.energy_eval import _steady_state, node_figures, predict
from archsim.fidelity.validate import MEDIAN_BOUNDS, evaluate, summarise

FILE = VALIDATION_DIR / "energy_public.yaml"


@pytest.fixture(scope="module")
def cases():
    return load_case_file(FILE).cases


@pytest.fixture(scope="module")
def results(cases):
    chips = {name: resolve_hardware(name) for name in {c.hardware for c in cases}}
    return [evaluate(c, chips[c.hardware]) for c in cases]


def test_at_least_15_cases_from_2_sources_each_with_its_configuration(cases):
    by_category = {}
    for c in cases:
        by_category.setdefault(c.category, []).append(c)
    assert set(by_category) == {"energy_power", "energy_j_per_token"}
    assert all(len(v) >= 15 for v in by_category.values())
    sources = {c.source.split(" (")[0] for c in cases}
    assert sources == {"The ML.ENERGY Leaderboard v3.0", "The ML.ENERGY Leaderboard v2.0"}
    for c in cases:
        assert {"model", "devices", "tp", "batch", "prompt_len", "output_len"} <= set(c.shape)
        assert set(c.measured) == {"avg_power_w_per_gpu", "j_per_token"}
        assert "board power" in c.notes or "board energy" in c.notes  # what was measured
        assert c.calibrates is None  # held out: no hardware field is set from them


def test_steady_state_iteration_by_hand():
    # 8 GPUs, batch 64, 100-token outputs: 0.64 prompts arrive per iteration. Decode step 50 ms and 4 J per output
    # token (256 J for the step); a prompt of 500 tokens at 0.5 J per prompt token (250 J), a forward of 16 prompts
    # in 0.8 s (50 ms per prompt). Iteration: 256 + 0.64 x 250 = 416 J in 50 + 0.64 x 50 = 82 ms;
    # J per token 416 / 64 = 6.5; power per GPU 416 / 0.082 / 8 = 634.1 W
    decode = SimpleNamespace(energy=SimpleNamespace(joules_per_token=4.0), decode=SimpleNamespace(time_s=0.05),
                             deployment=SimpleNamespace(layout={"label": "TP8"}))
    prefill = SimpleNamespace(energy=SimpleNamespace(prefill_joules_per_token=0.5),
                              prefill=SimpleNamespace(latency_s=0.8))
    values, detail = _steady_state(decode, prefill, batch=64, prompt=500, output=100, per_forward=16, devices=8)
    assert values["j_per_token"] == pytest.approx(6.5)
    assert values["avg_power_w_per_gpu"] == pytest.approx(416 / 0.082 / 8)
    assert detail["prefill_share_of_energy"] == pytest.approx(160 / 416)


# issue 16's target: median |error| at most 20% for power and for J per token
TARGET = 0.20


def test_medians_within_the_target(results):
    """ML.ENERGY alone: power meets issue 16's 20% target. J per token does NOT (about 21% since the vLLM step time
    on H100 became right, c6e54f5, 20.6% with the active baseline: H100 decode board power is low, docs/energy.md), so its median is held to the
    guard MEDIAN_BOUNDS['energy_j_per_token'] (23%) and the test states that the guard is above the target."""
    summary = summarise(results)
    assert summary["energy_power"]["median_abs_error"] <= MEDIAN_BOUNDS["energy_power"] == TARGET
    assert MEDIAN_BOUNDS["energy_j_per_token"] == 0.23 > TARGET  # the target is not met: a guard, not the target
    for category in ("energy_power", "energy_j_per_token"):
        s = summary[category]
        assert s["n"] >= 15 and s["n_held_out"] == s["n"]
        assert s["median_abs_error"] <= MEDIAN_BOUNDS[category], (category, s)


def _h100_fp8(cases, batch, metric):
    return next(c for c in cases if c.id == f"mlenergy_v3_llama405b_fp8_h100_tp8_b{batch}.{metric}")


def test_llama405b_fp8_tp8_h100_power_rises_with_batch_and_j_per_token_within_20_percent(cases):
    """The issue's check: decode power per GPU rises with batch from the low hundreds of watts at batch 1; J per
    output token at batch 128 within 20% of the collected measurement (read from the validation file)."""
    measured = _h100_fp8(cases, 128, "j_per_token")
    base = dict(measured.shape)
    powers = []
    for batch in (1, 8, 32, 128):
        values, detail = predict(SimpleNamespace(hardware="h100", dtype="fp8",
                                                 shape={**base, "batch": batch}))
        powers.append(detail["decode_power_w_per_gpu"])
        if batch == 128:
            assert values["j_per_token"] == pytest.approx(measured.measured["j_per_token"], rel=0.20)
    assert powers == sorted(powers) and powers[-1] > 1.3 * powers[0]
    assert 150 < powers[0] < 350  # the low hundreds at batch 1: HBM streaming plus idle, no compute to speak of


def test_every_h100_case_is_below_tdp_and_above_idle(results):
    for r in results:
        if r.predicted is not None and r.case.category == "energy_power" and r.case.hardware == "h100":
            assert 80.3 < r.predicted < 700


def test_prediction_is_skipped_with_a_reason_when_the_batch_does_not_fit(results):
    skipped = [r for r in results if r.skipped]
    assert skipped and all("does not fit" in r.skipped for r in skipped)
    assert statistics.median(abs(r.error) for r in results if r.error is not None) < 0.25


# --- MLPerf Inference power results: node wall power (validation/energy_mlperf.yaml) ---

MLPERF = VALIDATION_DIR / "energy_mlperf.yaml"


@pytest.fixture(scope="module")
def mlperf_cases():
    return load_case_file(MLPERF).cases


@pytest.fixture(scope="module")
def mlperf_results(mlperf_cases):
    chips = {name: resolve_hardware(name) for name in {c.hardware for c in mlperf_cases}}
    return [evaluate(c, chips[c.hardware]) for c in mlperf_cases]


def test_mlperf_cases_are_node_measurements_with_their_configuration(mlperf_cases):
    assert len(mlperf_cases) == 12  # 6 runs x (power, J per token)
    assert {c.category for c in mlperf_cases} == {"energy_power", "energy_j_per_token"}
    for c in mlperf_cases:
        assert c.source.startswith("MLPerf Inference v4.1 (MLCommons") or c.source.startswith("MLPerf Inference v5.1")
        assert "github.com/mlcommons/inference_results_v" in c.source and "mlperf_log_summary.txt" in c.source
        assert set(c.measured) == {"node_power_w", "node_j_per_token"}
        assert "node AC wall power" in c.notes and c.calibrates is None  # what was measured; held out
        stated = {"model", "stack", "devices", "tp", "instances_per_node", "batch", "prompt_len", "output_len"}
        assert stated <= set(c.shape)
        # the J per token in the file is the measured power over the measured throughput quoted in the notes
        tokens_per_s = float(c.notes.split(" W; ")[1].split(" output tokens/s")[0])
        assert c.measured["node_j_per_token"] == pytest.approx(c.measured["node_power_w"] / tokens_per_s, rel=1e-4)


def test_node_figures_by_hand():
    # 8 TP1 instances, 500 W per board, host 2 kW: 6000 W; iteration 0.3 s of batch 600 per instance:
    # 6000 x 0.3 / (8 x 600) = 0.375 J per output token
    node = node_figures({"avg_power_w_per_gpu": 500.0}, {"iteration_s": 0.3}, devices=1, instances=8, batch=600,
                        host_w=2000.0)
    assert node == pytest.approx({"node_power_w": 6000.0, "node_j_per_token": 0.375})


def _h200_llama2(**shape):
    base = dict(model="Llama-2-70b-chat-hf", stack="trtllm", devices=1, tp=1, pp=1, instances_per_node=8,
                batch=64, prompt_len=500, output_len=291, prefill_chunk=4096, kv_cache="fp8")
    return SimpleNamespace(hardware="h200", dtype="fp8", shape={**base, **shape})


def test_power_limit_caps_board_power_and_node_adds_the_host():
    free, _ = predict(_h200_llama2(batch=512))
    capped, detail = predict(_h200_llama2(batch=512, power_limit_w=400))
    assert free["avg_power_w_per_gpu"] > 400 >= capped["avg_power_w_per_gpu"] - 1e-6
    host = resolve_hardware("h200").power.host_per_node_w
    assert capped["node_power_w"] == pytest.approx(8 * capped["avg_power_w_per_gpu"] + host)
    assert detail["node_power_w_boards_only"] == pytest.approx(8 * capped["avg_power_w_per_gpu"])


@pytest.mark.parametrize("limit", [50, 800, "high", True])
def test_power_limit_outside_idle_to_tdp_is_not_modelled(limit):
    with pytest.raises(NotModelled, match="power_limit_w"):
        predict(_h200_llama2(power_limit_w=limit))


def test_largest_fit_runs_the_largest_batch_whose_kv_cache_fits():
    with pytest.raises(NotModelled, match="does not fit"):
        predict(_h200_llama2(batch=4096))
    _, detail = predict(_h200_llama2(batch=4096, batch_rule="largest_fit"))
    fits = detail["batch"]
    assert 1 < fits < 4096
    assert predict(_h200_llama2(batch=fits))[1]["batch"] == fits  # fits as stated
    with pytest.raises(NotModelled, match="does not fit"):
        predict(_h200_llama2(batch=fits + 1))
    with pytest.raises(NotModelled, match="batch_rule"):
        predict(_h200_llama2(batch_rule="smallest"))


def test_node_figure_without_host_power_is_skipped_with_a_reason():
    case = SimpleNamespace(hardware="mi300x", dtype="fp8", measured={"node_power_w": 1.0},
                           shape=dict(model="Llama-3.1-8B", devices=1, tp=1, batch=8, prompt_len=500, output_len=300))
    assert resolve_hardware("mi300x").power.host_per_node_w is None
    with pytest.raises(NotModelled, match="host_per_node"):
        predict(case)


def test_measured_node_power_lies_between_boards_alone_and_boards_plus_the_host_upper_bound(mlperf_results):
    """host_per_node is the node's maximum input less the GPUs' TDPs (an upper bound), so with archsim's board power
    the measured wall power must fall between the boards alone (host 0) and boards + host_per_node."""
    power = [r for r in mlperf_results if r.case.category == "energy_power"]
    assert len(power) == 6 and all(r.predicted is not None for r in power)
    for r in power:
        assert r.detail["node_power_w_boards_only"] < r.case.measured["node_power_w"] < r.predicted, r.case.id


def test_energy_category_two_independent_sources_within_the_target(results, mlperf_results):
    """The issue's done-when over both files: >= 15 cases from >= 2 independent sources (ML.ENERGY, MLPerf), median
    |error| of power and of J per token at most 20%. Power meets it; J per token does NOT (22.0%: H100 decode board
    power low, docs/energy.md) and is held to the guard MEDIAN_BOUNDS['energy_j_per_token'] (23%). MLPerf alone is
    far outside (docs/energy.md): its host power is an upper bound and its prompt length an assumption."""
    everything = results + mlperf_results
    families = {r.case.source.split(" ")[0] for r in everything}
    assert families == {"The", "MLPerf"}  # "The ML.ENERGY Leaderboard ..." and "MLPerf Inference ..."
    summary = summarise(everything)
    for category in ("energy_power", "energy_j_per_token"):
        s = summary[category]
        assert s["n"] >= 15 and s["n_held_out"] == s["n"]
        assert s["median_abs_error"] <= MEDIAN_BOUNDS[category], (category, s)
    assert MEDIAN_BOUNDS["energy_power"] == TARGET < MEDIAN_BOUNDS["energy_j_per_token"] == 0.23
