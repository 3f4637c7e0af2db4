"""archsim.estimate: the whole flow from YAML to Report, and the stable JSON keys."""
from __future__ import annotations

import dataclasses
import math

import pytest

from archsim.api import estimate
from archsim.config.hardware import load_hardware
from archsim.errors import ConfigError

REQUIRED_KEYS = ("model.total_params", "model.active_params", "model.kv_bytes_per_token", "deployment.devices",
                 "memory.per_device_bytes", "prefill.latency_s", "prefill.tokens_per_s", "decode.tpot_s",
                 "decode.tokens_per_s", "energy.joules_per_token", "energy.tops_per_watt")


@pytest.fixture(scope="module")
def kimi_auto():
    return estimate("workloads/kimi_k2.yaml", "hardware/h100.yaml")


def test_json_has_the_documented_keys(kimi_auto):
    for key in REQUIRED_KEYS:
        value = kimi_auto.get(key)
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, key


def test_kimi_k2_fp8_does_not_fit_one_h100_and_says_what_it_needs(kimi_auto):
    # 1.03T parameters at ~1 byte each (FP8 + block scales) is ~1 TB, far above 80 GB.
    one = estimate("workloads/kimi_k2.yaml", "hardware/h100.yaml", devices=1)
    assert one.memory.fits is False
    assert one.prefill is None and one.decode is None
    assert one.memory.per_device_bytes > 1.0e12
    assert f"smallest that fits is {kimi_auto.deployment.devices} devices" in one.memory.needs
    # auto: the smallest deployment that fits, and it fits
    assert kimi_auto.memory.fits and kimi_auto.deployment.auto
    assert kimi_auto.memory.per_device_bytes <= kimi_auto.memory.capacity_bytes
    smaller = estimate("workloads/kimi_k2.yaml", "hardware/h100.yaml", devices=kimi_auto.deployment.devices // 2)
    assert not smaller.memory.fits


def test_decode_batch1_memory_bound_and_prefill_4k_compute_bound_on_h100():
    r = estimate("workloads/deepseek_v3.yaml", "hardware/h100.yaml", batch=1, prompt_len=4096)
    assert r.decode.bound.startswith("memory")
    assert r.prefill.bound == "compute"


def test_doubling_hbm_bandwidth_never_slows_anything():
    hw = load_hardware("hardware/h100.yaml")
    hbm = hw.memory["hbm"]
    faster = dataclasses.replace(hw, memory={**hw.memory, "hbm": dataclasses.replace(
        hbm, bandwidth_bytes_per_s=2 * hbm.bandwidth_bytes_per_s)})
    base = estimate("workloads/deepseek_v3.yaml", hw, devices=16, batch=32)
    fast = estimate("workloads/deepseek_v3.yaml", faster, devices=16, batch=32)
    assert fast.decode.tpot_s <= base.decode.tpot_s
    assert fast.prefill.latency_s <= base.prefill.latency_s
    assert fast.decode.tpot_s < base.decode.tpot_s  # decode reads weights: it must actually speed up


def test_decode_throughput_is_batch_over_tpot(kimi_auto):
    assert kimi_auto.decode.tokens_per_s == pytest.approx(kimi_auto.scenario.batch / kimi_auto.decode.tpot_s)
    assert kimi_auto.decode.tokens_per_s_per_device == pytest.approx(
        kimi_auto.decode.tokens_per_s / kimi_auto.deployment.devices)


@pytest.mark.parametrize("overrides, field", [
    ({"bacth": 4}, "bacth"), ({"batch": 0}, "batch"), ({"devices": -2}, "devices"), ({"weights": "fp7"}, "weights"),
    ({"attention": "sparse"}, "attention"),
])
def test_bad_overrides_are_config_errors(overrides, field):
    with pytest.raises(ConfigError) as err:
        estimate("workloads/kimi_k2.yaml", "hardware/h100.yaml", **overrides)
    assert field in str(err.value)


def test_expert_load_skew_slows_moe_decode_and_measured_load_is_accepted():
    from archsim.graph.expert_load import zipf_load

    kw = dict(devices=32, batch=256, prompt_len=1024)
    base = estimate("workloads/deepseek_v3.yaml", "hardware/h800.yaml", **kw)
    skewed = estimate("workloads/deepseek_v3.yaml", "hardware/h800.yaml", expert_load="zipf:1.0", **kw)
    # the busiest expert bounds the grouped GEMM and the hot experts sit on the device priced
    assert skewed.decode.tpot_s > base.decode.tpot_s
    same = estimate("workloads/deepseek_v3.yaml", "hardware/h800.yaml", expert_load=zipf_load(256, 8, 1.0), **kw)
    assert same.decode.tpot_s == skewed.decode.tpot_s
    with pytest.raises(ConfigError):
        estimate("workloads/deepseek_v3.yaml", "hardware/h800.yaml", expert_load="zipf")
