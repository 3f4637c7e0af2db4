"""Open-loop arrival processes (Poisson, bursty gamma, fixed rate) and the closed-loop user model."""
from __future__ import annotations

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
