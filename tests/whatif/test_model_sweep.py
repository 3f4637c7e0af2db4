"""Sweeps over model and scenario fields: axis parsing, model points, every point rebuilt by the loaders (--set's
checks and hints), and a model point priced exactly as estimate() prices the same --set workload."""
from pathlib import Path

import numpy as np
import pytest

from archsim.api import estimate
from archsim.config.overrides import apply_settings, parse_setting
from archsim.config.workload import load_workload
from archsim.config.hardware import load_hardware
from archsim.errors import ConfigError
from archsim.whatif.sweep import SweepModel, SweepSpec, apply_paths, array_path, run_sweep
from archsim.whatif.sweep_spec import MAX_MODEL_POINTS, is_model_path, model_points, parse_model_set

ROOT = Path(__file__).resolve().parents[2]
DSV3 = str(ROOT / "workloads" / "deepseek_v3.yaml")
H100 = str(ROOT / "hardware" / "h100.yaml")


def test_model_and_scenario_paths_are_told_from_hardware_paths():
    assert is_model_path("model.n_routed_experts=64,128") and is_model_path("scenario.batch=8")
    assert not is_model_path("memory.hbm.bandwidth=2TB/s") and not is_model_path("modelx.y=1")


def test_grid_list_and_log_forms():
    # 64..256:4 -> step (256 - 64) / 3 = 64: 64, 128, 192, 256
    assert parse_model_set("model.n_routed_experts=64..256:4").texts == ("64", "128", "192", "256")
    assert parse_model_set("model.num_experts_per_tok=2,4,8").values == (2, 4, 8)
    # 64..256:3:log -> ratio (256 / 64) ** (1 / 2) = 2: 64, 128, 256
    assert parse_model_set("model.n_routed_experts=64..256:3:log").values == (64, 128, 256)
    # float ends give floats (1e-6 is a number, not YAML 1.1's text)
    assert parse_model_set("model.rms_norm_eps=1e-6..3e-6:3").values == pytest.approx((1e-6, 2e-6, 3e-6))
    assert parse_model_set("scenario.mtp_acceptance=[0.9, 0.7]").texts == ("[0.9, 0.7]",)  # one list value


@pytest.mark.parametrize("text, fragment", [
    ("model.n_routed_experts=64..256", "a grid a..b:n"),         # a range is not sampled for model fields
    ("model.n_routed_experts=64..256:4:lin", "a grid a..b:n"),
    ("model.n_routed_experts=1..2:3", "whole numbers"),           # 1, 1.5, 2
    ("model.n_routed_experts=64..256:0", "at least one grid point"),
    ("model.n_routed_experts=a..b:2", "numbers at both ends"),
    ("model.n_routed_experts=", "FIELD=VALUE"),
])
def test_bad_model_specs_are_config_errors(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_model_set(text)


def test_model_points_are_every_combination_last_axis_fastest():
    axes = [parse_model_set("model.n_routed_experts=128,256"), parse_model_set("model.num_experts_per_tok=2,4,8")]
    points = model_points(axes)
    assert len(points) == 2 * 3
    assert points[0] == ("model.n_routed_experts=128", "model.num_experts_per_tok=2")
    assert points[1] == ("model.n_routed_experts=128", "model.num_experts_per_tok=4")
    assert points[3] == ("model.n_routed_experts=256", "model.num_experts_per_tok=2")
    assert model_points([]) == [()]
    with pytest.raises(ConfigError, match="at most"):
        model_points([parse_model_set(f"model.hidden_size=1..{MAX_MODEL_POINTS + 1}:{MAX_MODEL_POINTS + 1}")])


def _estimate(settings: tuple[str, ...]):
    w, hw = apply_settings(load_workload(DSV3), load_hardware(H100), [parse_setting(t) for t in settings])
    return estimate(w, hw, devices=16)


def test_each_model_point_is_priced_as_estimate_prices_the_set_workload():
    # the seed example: DeepSeek-V3 with 128 (and 256) routed experts, top-2
    points = model_points([parse_model_set("model.n_routed_experts=128,256"),
                           parse_model_set("model.num_experts_per_tok=2")])
    specs = [SweepSpec(workload=DSV3, hardware=H100, overrides=(("devices", 16),), settings=p) for p in points]
    got = run_sweep(specs, {}, workers=1)
    assert len(got["pareto"]) == 2  # one row per model point without hardware axes
    for i, settings in enumerate(points):
        report = _estimate(settings)
        assert report.model.architecture.startswith(f"MLA + MoE ({settings[0].split('=')[1]} routed")
        for key in ("decode.tokens_per_s", "decode.tpot_s", "prefill.latency_s", "energy.joules_per_token"):
            assert got[key][i] == pytest.approx(report.get(key), rel=1e-12), (settings, key)


def test_model_points_times_hardware_points_in_model_major_order():
    specs = [SweepSpec(workload=DSV3, hardware=H100, overrides=(("devices", 16),),
                       settings=(f"model.num_experts_per_tok={k}",)) for k in (2, 8)]
    bandwidth = {"memory.hbm.bandwidth": np.array([2e12, 3.35e12, 8e12])}
    got = run_sweep(specs, bandwidth, workers=1)
    alone = run_sweep(specs, {}, workers=1)  # the base chip: 3.35 TB/s (hardware/h100.yaml)
    assert len(got["pareto"]) == 2 * 3
    for i in range(2):  # model point i's rows are 3i .. 3i + 2; its base-bandwidth row equals the sweep without axes
        assert got["decode.tpot_s"][3 * i + 1] == pytest.approx(alone["decode.tpot_s"][i], rel=1e-12)
        tpot = got["decode.tpot_s"][3 * i:3 * i + 3]
        assert tpot[0] > tpot[1] > tpot[2]  # more bandwidth, shorter memory-bound decode step
    assert got["decode.tpot_s"][4] > got["decode.tpot_s"][1]  # top-8 reads more experts than top-2


def test_model_points_on_a_process_pool_equal_in_process():
    specs = [SweepSpec(workload=DSV3, hardware=H100, overrides=(("devices", 16),),
                       settings=(f"model.n_routed_experts={e}",)) for e in (128, 256)]
    single = run_sweep(specs, {}, workers=1)
    pooled = run_sweep(specs, {}, workers=2)
    for key in single:
        np.testing.assert_array_equal(single[key], pooled[key])


@pytest.mark.parametrize("path", [
    "memory.hbm.bandwidth", "memory.hbm.capacity", "memory.l2.bandwidth", "memory.l2.capacity", "memory.hbm.bogus",
    "compute.tensor.peak.fp8", "compute.tensor.achievable_fraction", "compute.tensor.peak", "compute.nope.peak.fp8",
    "kernel_launch", "kernel_launch_graph", "power.idle", "price", "thermal.compute_clock_fraction",
    "node.scale_up.bandwidth", "node.chips_per_node", "pim.peak.bf16",
])
def test_array_paths_are_exactly_those_apply_paths_prices(path):
    model = SweepModel(DSV3, H100, devices=16)
    work = model.phases["decode"].graph_cost.work
    try:
        apply_paths(model.hw, work, {path: np.array([1.0])}, 1)
        priced = True
    except ConfigError:
        priced = False
    assert array_path(path, model.hw) == priced


def test_a_rebuilt_hardware_axis_takes_units_and_shows_si_values():
    axis = parse_model_set("node.scale_up.bandwidth=100GB/s..900GB/s:3")
    assert axis.texts == ("100000000000.0 B/s", "500000000000.0 B/s", "900000000000.0 B/s")
    assert axis.values == (100e9, 500e9, 900e9)
    assert parse_model_set("node.scale_up.bandwidth=450GB/s,900 GB/s").values == (450e9, 900e9)
