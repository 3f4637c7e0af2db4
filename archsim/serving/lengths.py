"""Token-length distributions for prompts and outputs: fixed, uniform, lognormal, empirical."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archsim.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Fixed:
    """Every request has exactly ``tokens`` tokens."""

    tokens: int

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.tokens, dtype=np.int64)


@dataclass(frozen=True, kw_only=True)
class Uniform:
    """Integers drawn uniformly from ``low..high`` inclusive."""

    low: int
    high: int

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(self.low, self.high + 1, size=n, dtype=np.int64)


@dataclass(frozen=True, kw_only=True)
class LogNormal:
    """exp(N(log(median), sigma)), rounded and clipped to ``1..max_tokens``."""

    median_tokens: float
    sigma: float
    max_tokens: int

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x = rng.lognormal(mean=math.log(self.median_tokens), sigma=self.sigma, size=n)
        return np.clip(np.rint(x), 1, self.max_tokens).astype(np.int64)


@dataclass(frozen=True, kw_only=True)
class Empirical:
    """Draws with replacement from observed lengths (e.g. a dataset's histogram)."""

    values: tuple[int, ...]

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.choice(np.asarray(self.values, dtype=np.int64), size=n, replace=True)

    @staticmethod
    def from_file(path: str | Path) -> "Empirical":
        """One positive integer per line; blank lines and ``#`` comments are skipped."""
        values = []
        for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                value = int(text)
            except ValueError:
                raise ConfigError(str(path), f"line {number}", "a positive integer token count", text) from None
            if value < 1:
                raise ConfigError(str(path), f"line {number}", "a positive integer token count", value)
            values.append(value)
        if not values:
            raise ConfigError(str(path), None, "at least one token count", "an empty file")
        return Empirical(values=tuple(values))


LengthDist = Fixed | Uniform | LogNormal | Empirical


def parse_length(spec: str, *, field: str, file: str = "<cli>") -> LengthDist:
    """Parse ``"512"``, ``"uniform:64:1024"``, ``"lognormal:512:1.0:8192"`` or ``"file:PATH"``."""
    parts = str(spec).split(":")
    try:
        if len(parts) == 1:
            dist: LengthDist = Fixed(tokens=int(parts[0]))
        elif parts[0] == "uniform" and len(parts) == 3:
            dist = Uniform(low=int(parts[1]), high=int(parts[2]))
        elif parts[0] == "lognormal" and len(parts) == 4:
            dist = LogNormal(median_tokens=float(parts[1]), sigma=float(parts[2]), max_tokens=int(parts[3]))
        elif parts[0] == "file" and len(parts) >= 2:
            return Empirical.from_file(":".join(parts[1:]))
        else:
            raise ValueError(spec)
    except ValueError:
        raise ConfigError(file, field, "N, uniform:LO:HI, lognormal:MEDIAN:SIGMA:MAX or file:PATH", spec) from None
    _check(dist, field=field, file=file)
    return dist


def _check(dist: LengthDist, *, field: str, file: str) -> None:
    ok = {
        Fixed: lambda d: d.tokens >= 1,
        Uniform: lambda d: 1 <= d.low <= d.high,
        LogNormal: lambda d: d.median_tokens >= 1 and d.sigma >= 0 and d.max_tokens >= 1,
    }[type(dist)](dist)
    if not ok:
        raise ConfigError(file, field, "positive token counts (low <= high, sigma >= 0)", dist)


def with_range_ratio(dist: LengthDist, ratio: float, *, field: str, file: str = "<cli>") -> LengthDist:
    """vLLM's random dataset around a fixed length n: integers uniform on [floor(n(1 - r)), ceil(n(1 + r))],
    at least 1 (vllm-project/vllm, vllm/benchmarks/datasets/random.py, ``get_sampling_params``; r in [0, 1)).
    ``ratio`` 0 leaves ``dist`` as it is; another distribution than a fixed length is a ConfigError."""
    if not 0 <= ratio < 1:
        raise ConfigError(file, "--random-range-ratio", "a ratio in [0, 1)", ratio)
    if ratio == 0:
        return dist
    if not isinstance(dist, Fixed):
        raise ConfigError(file, field, "a fixed length N with --random-range-ratio (it spreads N into a range)",
                          dist)
    low = max(1, math.floor(dist.tokens * (1 - ratio)))
    high = max(1, math.ceil(dist.tokens * (1 + ratio)))
    return Uniform(low=low, high=high)
