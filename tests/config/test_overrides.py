"""--set FIELD=VALUE on model, scenario and hardware fields (config/overrides.py): the same loader checks the
value, and a wrong name gets a did-you-mean hint."""
from __future__ import annotations

import pytest

from archsim.config.hardware import load_hardware
from archsim.config.overrides import apply_settings, parse_setting
from archsim.config.workload import load_workload
from archsim.errors import ConfigError
from archsim.graph.params import count_params


@pytest.fixture(scope="module")
def base():
    return load_workload("workloads/deepseek_v3.yaml"), load_hardware("hardware/h100.yaml")


def _apply(base, *texts):
    return apply_settings(*base, [parse_setting(t) for t in texts])


def test_the_seed_articles_model_change(base):
    # "DeepSeek-V3 with 128 experts, top-2": the routed experts halve, so their parameters do
    wl, hw = _apply(base, "model.n_routed_experts=128", "model.num_experts_per_tok=2")
    m0, m1 = base[0].model, wl.model
    assert (m1.n_routed_experts, m1.num_experts_per_tok) == (128, 2) and hw is base[1]
    # one routed expert: gate, up and down projections of hidden x moe_intermediate (3 matrices), per MoE layer
    per_expert = 3 * m0.hidden_size * m0.moe_intermediate_size
    removed = (m0.n_routed_experts - 128) * per_expert * m0.moe_layers
    # the router's gate loses one row per removed expert (and its correction bias one entry) in each MoE layer
    router = (m0.n_routed_experts - 128) * (m0.hidden_size + (1 if m0.has_correction_bias else 0)) * m0.moe_layers
    assert count_params(m0).total - count_params(m1).total == removed + router


def test_scenario_and_hardware_fields(base):
    wl, hw = _apply(base, "scenario.batch=64", "memory.hbm.bandwidth=4TB/s", "power.tdp=1000 W")
    assert wl.scenario.batch == 64 and hw.main_memory.bandwidth_bytes_per_s == 4e12 and hw.power.tdp_w == 1000.0
    assert base[1].main_memory.bandwidth_bytes_per_s != 4e12  # the loaded record is untouched


@pytest.mark.parametrize("text, hint", [
    ("model.n_routed_expert=1", "model.n_routed_experts"),
    ("scenario.bach=2", "scenario.batch"),
    ("memory.hbm.bandwith=1TB/s", "memory.hbm.bandwidth"),
    ("memory.hbm.bandwidth=5 GB", "bandwidth"),
    ("model.n_routed_experts=-3", "non-negative"),
    ("scenario.batch=many", "int"),
    ("batch", "FIELD=VALUE"),
])
def test_bad_settings_are_config_errors_with_hints(base, text, hint):
    with pytest.raises(ConfigError, match=hint):
        _apply(base, text)


@pytest.mark.parametrize("text, value", [("1e-6", 1e-6), ("1e-06", 1e-6), ("1.0e-6", 1e-6), ("1e4", 1e4),
                                         ("128", 128), ("0.5", 0.5), ("4TB/s", "4TB/s"), ("fp8", "fp8")])
def test_values_read_as_yaml_with_exponents_as_numbers(text, value):
    # YAML 1.1 (PyYAML) reads 1e-6 without a dot as text; --set means the number
    got = parse_setting(f"model.rms_norm_eps={text}").value
    assert got == value and type(got) is type(value)


def test_a_non_positive_eps_through_set_is_the_loaders_error(base):
    assert _apply(base, "model.rms_norm_eps=1e-5")[0].model.rms_norm_eps == 1e-5
    for bad in ("-1", "0"):
        with pytest.raises(ConfigError, match="rms_norm_eps: expected a number > 0"):
            _apply(base, f"model.rms_norm_eps={bad}")
