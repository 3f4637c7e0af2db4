"""A benchmark client's send schedule (vllm bench serve's --request-rate, --burstiness, --ramp-up-*) and its
prompts (--num-prompts, --random-range-ratio), as serving/arrivals.py and serving/requests.py draw them."""
from __future__ import annotations

import math

import numpy as np
import pytest

from archsim.errors import ConfigError
from archsim.serving.arrivals import RampUp, send_times
from archsim.serving.lengths import Fixed, Uniform, with_range_ratio
from archsim.serving.requests import LengthSampler, generate_prompts


def _cv(times: np.ndarray) -> float:
    gaps = np.diff(np.concatenate([[0.0], times]))
    return float(gaps.std() / gaps.mean())


@pytest.mark.parametrize("burstiness, cv", [(1.0, 1.0), (0.25, 2.0), (4.0, 0.5)])
def test_burstiness_sets_the_gaps_coefficient_of_variation(burstiness, cv):
    # gamma gaps of shape k have CV 1/sqrt(k): k = 1 is Poisson (CV 1), k = 0.25 gives CV 2, k = 4 gives 0.5.
    # 40,000 gaps: the sample CV's relative standard error is below 1 % even for k = 0.25, so 4 % is > 4 sigma.
    times = send_times(np.random.default_rng(7), 40_000, rate_per_s=5.0, burstiness=burstiness)
    assert _cv(times) == pytest.approx(cv, rel=0.04)


def test_fixed_rate_rescales_the_last_send_to_n_over_rate():
    # vLLM rescales the cumulated gaps so the last of n prompts goes at exactly n / rate: 1,000 / 4 = 250 s
    times = send_times(np.random.default_rng(1), 1000, rate_per_s=4.0, burstiness=0.5)
    assert times[-1] == pytest.approx(250.0, rel=1e-12)
    assert np.all(np.diff(times) >= 0) and times[0] > 0  # the first prompt waits its gap too, as in vLLM


def test_infinite_rate_sends_everything_at_once_and_infinite_burstiness_is_regular():
    assert np.array_equal(send_times(np.random.default_rng(0), 5), np.zeros(5))
    # constant gaps of 1/rate = 0.5 s: 0.5, 1.0, ... 5.0
    assert send_times(np.random.default_rng(0), 10, rate_per_s=2.0, burstiness=math.inf) == pytest.approx(
        0.5 * np.arange(1, 11))


@pytest.mark.parametrize("strategy", ["linear", "exponential"])
def test_ramp_up_rate_profile(strategy):
    # constant gaps (burstiness inf) make each gap exactly 1 / rate_i; prompt i of n = 11 is sent at
    # linear: 1 + (10 - 1) x i/10 = 1, 1.9, ..., 10 requests/s; exponential: 1 x 10^(i/10) = 1, 1.259, ..., 10
    times = send_times(np.random.default_rng(0), 11, burstiness=math.inf,
                       ramp=RampUp(strategy=strategy, start_rps=1.0, end_rps=10.0))
    i = np.arange(11)
    rates = 1 + 0.9 * i if strategy == "linear" else 10.0 ** (i / 10)
    assert np.diff(np.concatenate([[0.0], times])) == pytest.approx(1 / rates)
    assert times[-1] == pytest.approx(np.sum(1 / rates))  # no rescaling under ramp-up, as in vLLM


def test_ramp_up_with_poisson_gaps_follows_the_rate():
    # linear 1 -> 9 requests/s over 20,000 prompts, Poisson gaps of mean 1/rate_i: the mean of 1,000 such gaps has
    # a relative standard error of 1/sqrt(1000) = 3.2 %, so 12 % is about 4 sigma; the expected means (1/rate_i
    # averaged, about 1/1.2 s and 1/8.8 s) differ sevenfold
    ramp = RampUp(strategy="linear", start_rps=1.0, end_rps=9.0)
    times = send_times(np.random.default_rng(3), 20_000, ramp=ramp)
    gaps = np.diff(np.concatenate([[0.0], times]))
    expected = 1 / ramp.rates(20_000)
    assert gaps[:1000].mean() == pytest.approx(expected[:1000].mean(), rel=0.12)
    assert gaps[-1000:].mean() == pytest.approx(expected[-1000:].mean(), rel=0.12)
    assert expected[:1000].mean() > 6 * expected[-1000:].mean()


@pytest.mark.parametrize("kwargs, field", [
    ({"strategy": "sideways", "start_rps": 1.0, "end_rps": 2.0}, "--ramp-up-strategy"),
    ({"strategy": "linear", "start_rps": 0.0, "end_rps": 2.0}, "--ramp-up-start-rps"),
    ({"strategy": "linear", "start_rps": 3.0, "end_rps": 2.0}, "--ramp-up-start-rps"),
])
def test_bad_ramp_up_is_a_config_error(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        RampUp(**kwargs)


def test_random_range_ratio_is_vllms_integer_range():
    # vLLM: uniform integers on [floor(n(1 - r)), ceil(n(1 + r))]: 1024, r = 0.5 -> [512, 1536]; an output of 1
    # with r = 0.9 -> [max(1, floor(0.1)), ceil(1.9)] = [1, 2]
    assert with_range_ratio(Fixed(tokens=1024), 0.5, field="--prompt-len") == Uniform(low=512, high=1536)
    assert with_range_ratio(Fixed(tokens=1), 0.9, field="--output-len") == Uniform(low=1, high=2)
    assert with_range_ratio(Fixed(tokens=7), 0.0, field="--prompt-len") == Fixed(tokens=7)
    with pytest.raises(ConfigError, match="--prompt-len"):
        with_range_ratio(Uniform(low=1, high=5), 0.5, field="--prompt-len")
    with pytest.raises(ConfigError, match="--random-range-ratio"):
        with_range_ratio(Fixed(tokens=10), 1.0, field="--prompt-len")


def test_generate_prompts_sends_exactly_n_and_is_seeded():
    lengths = LengthSampler(prompt=Uniform(low=10, high=20), output=Fixed(tokens=5))
    a = generate_prompts(num_prompts=137, lengths=lengths, rate_per_s=3.0, seed=4)
    b = generate_prompts(num_prompts=137, lengths=lengths, rate_per_s=3.0, seed=4)
    assert len(a) == 137 and [r.id for r in a] == list(range(137))
    assert a == b
    assert a[-1].arrival_s == pytest.approx(137 / 3.0)
    with pytest.raises(ConfigError, match="--num-prompts"):
        generate_prompts(num_prompts=0, lengths=lengths)
