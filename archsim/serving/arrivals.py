"""Open-loop arrival processes (Poisson, bursty gamma, fixed rate), the closed-loop user model, and the send
schedule of a benchmark client (a fixed number of prompts at a rate with burstiness and ramp-up)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from archsim.errors import ConfigError


def _times_from_gaps(draw, rate_per_s: float, duration_s: float) -> np.ndarray:
    """Cumulate inter-arrival gaps, drawn in chunks, until ``duration_s`` is passed."""
    chunks, t = [], 0.0
    expected = max(16, int(rate_per_s * duration_s * 1.1) + 16)
    while t < duration_s:
        gaps = draw(expected)
        times = t + np.cumsum(gaps)
        chunks.append(times)
        t = float(times[-1])
    out = np.concatenate(chunks) if chunks else np.empty(0)
    return out[out < duration_s]


@dataclass(frozen=True, kw_only=True)
class Poisson:
    """Exponential inter-arrival gaps at mean rate ``rate_per_s`` (coefficient of variation 1)."""

    rate_per_s: float

    def times(self, rng: np.random.Generator, duration_s: float) -> np.ndarray:
        return _times_from_gaps(lambda n: rng.exponential(1.0 / self.rate_per_s, n), self.rate_per_s, duration_s)


@dataclass(frozen=True, kw_only=True)
class Gamma:
    """Gamma inter-arrival gaps: mean 1/rate, coefficient of variation ``cv`` (> 1 is bursty)."""

    rate_per_s: float
    cv: float

    def times(self, rng: np.random.Generator, duration_s: float) -> np.ndarray:
        shape = 1.0 / (self.cv * self.cv)
        scale = 1.0 / (self.rate_per_s * shape)
        return _times_from_gaps(lambda n: rng.gamma(shape, scale, n), self.rate_per_s, duration_s)


@dataclass(frozen=True, kw_only=True)
class FixedRate:
    """One request every 1/rate seconds, the first at t = 0."""

    rate_per_s: float

    def times(self, rng: np.random.Generator, duration_s: float) -> np.ndarray:
        return np.arange(0.0, duration_s, 1.0 / self.rate_per_s)


@dataclass(frozen=True, kw_only=True)
class ClosedLoop:
    """``users`` clients, each sending its next request ``think_time_s`` after the previous one ends."""

    users: int
    think_time_s: float = 0.0


Arrival = Poisson | Gamma | FixedRate | ClosedLoop

RAMP_UP_STRATEGIES = ("linear", "exponential")


@dataclass(frozen=True, kw_only=True)
class RampUp:
    """The request rate rising from ``start_rps`` to ``end_rps`` over the prompts, as ``vllm bench serve
    --ramp-up-strategy linear|exponential --ramp-up-start-rps --ramp-up-end-rps`` does (vllm-project/vllm,
    vllm/benchmarks/serve.py, ``_get_current_request_rate``): prompt i of n is sent at the rate
    start + (end - start) x i/(n-1) (linear) or start x (end/start)^(i/(n-1)) (exponential)."""

    strategy: str
    start_rps: float
    end_rps: float

    def __post_init__(self) -> None:
        if self.strategy not in RAMP_UP_STRATEGIES:
            raise ConfigError(None, "--ramp-up-strategy", "linear or exponential", self.strategy)
        # vLLM asserts every prompt's rate is > 0, so a start of 0 fails there at the first prompt; said here
        if not (0 < self.start_rps <= self.end_rps < math.inf):
            raise ConfigError(None, "--ramp-up-start-rps/--ramp-up-end-rps", "0 < start <= end < inf requests/s",
                              (self.start_rps, self.end_rps))

    def rates(self, n: int) -> np.ndarray:
        """The rate (requests/s) at which each of ``n`` prompts is sent."""
        progress = np.arange(n) / max(n - 1, 1)
        if self.strategy == "linear":
            return self.start_rps + (self.end_rps - self.start_rps) * progress
        return self.start_rps * (self.end_rps / self.start_rps) ** progress


def send_times(rng: np.random.Generator, n: int, *, rate_per_s: float = math.inf, burstiness: float = 1.0,
               ramp: RampUp | None = None) -> np.ndarray:
    """When a benchmark client means to send each of ``n`` prompts (s from the start), following vLLM's
    ``get_request`` (vllm-project/vllm, vllm/benchmarks/serve.py): each gap is gamma-distributed with shape
    ``burstiness`` and mean 1/rate (burstiness 1 is Poisson, coefficient of variation 1/sqrt(burstiness); inf
    gives constant gaps); rate inf sends everything at t = 0. Without ramp-up the gaps are rescaled so the last
    prompt goes at exactly n/rate, as vLLM does to steady the throughput across seeds. ``ramp`` replaces the
    fixed rate with a rising one (no rescaling)."""
    if not burstiness > 0:
        raise ConfigError(None, "--burstiness", "a burstiness factor > 0 (1: Poisson)", burstiness)
    if ramp is None and not rate_per_s > 0:
        raise ConfigError(None, "--rate", "a rate > 0 requests/s (inf: all at once)", rate_per_s)
    rates = ramp.rates(n) if ramp is not None else np.full(n, float(rate_per_s))
    if np.isinf(rates).all():
        return np.zeros(n)
    if math.isinf(burstiness):
        gaps = 1.0 / rates
    else:
        gaps = rng.gamma(shape=burstiness, scale=1.0 / (rates * burstiness), size=n)
    times = np.cumsum(gaps)
    if ramp is None and n and times[-1] > 0:
        times *= (n / rate_per_s) / times[-1]
    return times


def make_arrival(kind: str, *, rate_per_s: float, cv: float = 2.0, users: int = 0,
                 think_time_s: float = 0.0, file: str = "<cli>") -> Arrival:
    """Build an arrival process by name; bad parameters raise ConfigError."""
    if kind == "closed":
        if users < 1 or think_time_s < 0:
            raise ConfigError(file, "arrival.users", "users >= 1 and think_time_s >= 0", (users, think_time_s))
        return ClosedLoop(users=users, think_time_s=think_time_s)
    if not rate_per_s > 0:
        raise ConfigError(file, "arrival.rate", "a rate > 0 requests/s", rate_per_s)
    if kind == "poisson":
        return Poisson(rate_per_s=rate_per_s)
    if kind == "gamma":
        if not cv > 0:
            raise ConfigError(file, "arrival.cv", "a coefficient of variation > 0", cv)
        return Gamma(rate_per_s=rate_per_s, cv=cv)
    if kind == "fixed":
        return FixedRate(rate_per_s=rate_per_s)
    raise ConfigError(file, "arrival", "one of poisson, gamma, fixed, closed", kind)
