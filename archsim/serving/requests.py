"""Request records and a seeded generator combining an arrival process, length distributions and prefix hits."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from archsim.errors import ConfigError
from archsim.serving.arrivals import Arrival, RampUp, send_times
from archsim.serving.lengths import LengthDist

# Most requests one open-loop run may generate (a policy, see docs/limits.md): 10x the largest measured run
# (100,482 requests simulated in 90 s), so a typo such as --rate 1e9 is an error up front, not hours of
# drawing and simulating requests one by one.
MAX_REQUESTS = 10**6


@dataclass(frozen=True, kw_only=True)
class Request:
    """One inference request. ``cached_tokens`` of the prompt hit the prefix cache: they occupy KV
    blocks and are attended to, but are not recomputed. ``output_tokens`` counts every generated
    token, the first one (produced by prefill) included."""

    id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    cached_tokens: int = 0


@dataclass(frozen=True, kw_only=True)
class LengthSampler:
    """Prompt and output length distributions plus the prefix-cache hit rate (fraction of prompt tokens)."""

    prompt: LengthDist
    output: LengthDist
    prefix_hit_rate: float = 0.0

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prompt, output, cached) token counts for ``n`` requests; at least one prompt token is computed."""
        prompt = self.prompt.sample(rng, n)
        output = self.output.sample(rng, n)
        cached = np.minimum(np.floor(prompt * self.prefix_hit_rate).astype(np.int64), prompt - 1)
        return prompt, output, cached


def check_seed(seed, field: str = "seed") -> int:
    """``seed`` if it is an integer >= 0 (what numpy's SeedSequence takes), else a ConfigError naming ``field``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(None, field, "an integer >= 0", seed)
    return int(seed)


def check_request_count(rate_per_s: float, duration_s: float, field: str = "rate x duration") -> None:
    """ConfigError when an open loop at ``rate_per_s`` over ``duration_s`` expects more than MAX_REQUESTS."""
    expected = rate_per_s * duration_s
    if not expected <= MAX_REQUESTS:  # also catches inf/nan
        raise ConfigError(None, field, f"rate x duration <= {MAX_REQUESTS:,} requests (archsim's serving "
                          "limit, see docs/limits.md)", f"{expected:.3g} requests")


def streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators per purpose, so changing one distribution leaves the others' draws alone."""
    seed = check_seed(seed)
    children = np.random.SeedSequence(seed).spawn(3)
    return {name: np.random.default_rng(s) for name, s in zip(("arrival", "lengths", "spec"), children)}


def generate(*, arrival: Arrival, lengths: LengthSampler, duration_s: float, seed: int) -> list[Request]:
    """Open-loop requests arriving in ``[0, duration_s)``; same seed, same requests."""
    rngs = streams(seed)
    rate = getattr(arrival, "rate_per_s", None)
    if rate is not None:
        check_request_count(rate, duration_s)
    times = arrival.times(rngs["arrival"], duration_s)
    prompt, output, cached = lengths.draw(rngs["lengths"], len(times))
    return [Request(id=i, arrival_s=float(t), prompt_tokens=int(p), output_tokens=int(o), cached_tokens=int(c))
            for i, (t, p, o, c) in enumerate(zip(times, prompt, output, cached))]


def check_prompt_count(num_prompts, field: str = "--num-prompts") -> int:
    """``num_prompts`` if it is an integer in 1..MAX_REQUESTS, else a ConfigError naming ``field``."""
    if isinstance(num_prompts, bool) or not isinstance(num_prompts, (int, np.integer)) \
            or not 1 <= num_prompts <= MAX_REQUESTS:
        raise ConfigError(None, field, f"an integer number of prompts in 1..{MAX_REQUESTS:,} (archsim's serving "
                          "limit, see docs/limits.md)", num_prompts)
    return int(num_prompts)


def generate_prompts(*, num_prompts: int, lengths: LengthSampler | None = None, rate_per_s: float = float("inf"),
                     burstiness: float = 1.0, ramp: RampUp | None = None, seed: int = 0,
                     dataset: list[Request] | None = None) -> list[Request]:
    """A benchmark client's ``num_prompts`` requests (vllm bench serve --num-prompts), each ``arrival_s`` the
    time the client means to send it (arrivals.send_times); a concurrency limit may send it later. Lengths are
    drawn from ``lengths`` or taken from the first rows of ``dataset`` (a trace: its lengths, not its times)."""
    n = check_prompt_count(num_prompts)
    rngs = streams(seed)
    times = send_times(rngs["arrival"], n, rate_per_s=rate_per_s, burstiness=burstiness, ramp=ramp)
    if dataset is not None:
        if len(dataset) < n:
            raise ConfigError(None, "--num-prompts", f"at most the trace's {len(dataset)} rows", n)
        rows = dataset[:n]
        prompt = np.array([r.prompt_tokens for r in rows])
        output = np.array([r.output_tokens for r in rows])
        cached = np.array([r.cached_tokens for r in rows])
    elif lengths is not None:
        prompt, output, cached = lengths.draw(rngs["lengths"], n)
    else:
        raise ConfigError(None, "dataset", "length distributions or a trace", None)
    return [Request(id=i, arrival_s=float(t), prompt_tokens=int(p), output_tokens=int(o), cached_tokens=int(c))
            for i, (t, p, o, c) in enumerate(zip(times, prompt, output, cached))]
