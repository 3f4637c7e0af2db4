"""The 3D stack's thermal limit is a power cap (config/derive_dram3d.py, cost/power.py), not a fixed clock: a phase
that draws more than the 420 W the stacked die sustains slows down, one that draws less does not."""
import dataclasses

import pytest

from archsim.api import estimate
from archsim.config.hardware import load_hardware

KW = dict(devices=8, batch=1, prompt_len=7168, output_len=1024)


@pytest.fixture(scope="module")
def chips():
    capped = load_hardware("h100_3d_dram")
    board = dataclasses.replace(capped, thermal=None,
                                power=dataclasses.replace(capped.power, tdp_w=capped.thermal.board_tdp_w))
    return capped, board


def test_cap_is_the_sustainable_power(chips):
    capped, board = chips
    assert board.power.tdp_w == 700.0
    assert capped.power.tdp_w == pytest.approx(700 * (95 - 25) / (141.7 - 25))


def test_compute_bound_prefill_slows_more_than_memory_bound_decode(chips):
    """Kimi K2 on 8 chips at batch 1: prefill (compute-bound) runs at the capped clock, 1.4-1.7x longer than at the
    board's 700 W; decode, which streams its weights, loses far less (its full-rate draw, 6 TB/s of operand feed at
    14.07 pJ/bit + 80 W static, ~755 W, is above the cap only for its heaviest ops)."""
    capped, board = chips
    hot, cool = estimate("kimi_k2", capped, **KW), estimate("kimi_k2", board, **KW)
    prefill = hot.prefill.latency_s / cool.prefill.latency_s
    decode = cool.decode.tokens_per_s / hot.decode.tokens_per_s
    assert 1.4 < prefill < 1.7
    assert 1.0 <= decode < 1.15 and decode < prefill
    # the old fixed half clock cost decode far more than the cap does
    half = estimate("kimi_k2", dataclasses.replace(board, compute_clock_fraction=0.5), **KW)
    assert half.decode.tokens_per_s < 0.8 * hot.decode.tokens_per_s


def test_capped_phase_power_stays_within_the_cap(chips):
    """At 700 W the prefilling device averages more than the stack sustains; under the cap it does not."""
    capped, board = chips
    hot = estimate("kimi_k2", capped, **KW).to_dict()["prefill"]["avg_power_w"]
    cool = estimate("kimi_k2", board, **KW).to_dict()["prefill"]["avg_power_w"]
    assert hot <= capped.power.tdp_w < cool
