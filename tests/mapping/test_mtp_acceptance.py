"""Speculative decoding in the step: with MTP drafts accepted at stated rates per position, a decode step emits
1 + p1 + p1 p2 + ... tokens per sequence, so TPOT is the step over that and tokens/s grow by it."""
from __future__ import annotations

import pytest

from archsim.api import estimate
from archsim.config.workload import tokens_per_step
from archsim.errors import ConfigError

KW = dict(devices=8, tp=8, batch=4)


def test_tokens_per_step_by_hand():
    assert tokens_per_step(()) == 1.0
    assert tokens_per_step((0.85,)) == pytest.approx(1.85)
    assert tokens_per_step((0.9, 0.8, 0.5)) == pytest.approx(1 + 0.9 + 0.72 + 0.36)  # 2.98


def test_tpot_is_the_mtp_step_over_the_tokens_it_emits():
    step = estimate("workloads/deepseek_v3.yaml", "hardware/h200.yaml", mtp=True, **KW)   # drafts priced, none counted
    spec = estimate("workloads/deepseek_v3.yaml", "hardware/h200.yaml", mtp_acceptance=0.85, **KW)
    assert step.decode.tokens_per_step == 1.0 and spec.decode.tokens_per_step == pytest.approx(1.85)
    assert spec.decode.tpot_s == pytest.approx(step.decode.tpot_s / 1.85, rel=1e-12)
    assert spec.decode.tokens_per_s == pytest.approx(step.decode.tokens_per_s * 1.85, rel=1e-12)


@pytest.mark.parametrize("bad", [1.5, -0.1, (0.9, 0.8), "high", True])
def test_bad_acceptance_is_a_config_error(bad):
    # DeepSeek-V3 has one MTP module: at most one draft position
    with pytest.raises(ConfigError, match="mtp_acceptance"):
        estimate("workloads/deepseek_v3.yaml", "hardware/h200.yaml", mtp_acceptance=bad, **KW)


def test_a_model_without_mtp_refuses_acceptance():
    with pytest.raises(ConfigError):
        estimate("workloads/kimi_k2.yaml", "hardware/h200.yaml", mtp_acceptance=0.8, devices=16)
