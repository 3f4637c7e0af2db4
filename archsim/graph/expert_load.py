"""Expert-load distributions: how routed tokens spread over experts (uniform, Zipf, measured).

A load is the per-expert selection probability ``p_e`` of one token (sum over experts = k, each
``p_e <= 1`` since a token picks an expert at most once). Tokens route independently, so for T
tokens:
- expected tokens of expert e: ``T * p_e``;
- expected distinct experts touched among a set S: ``sum_{e in S} 1 - (1 - p_e)^T``. This is exact
  under token independence whatever the correlation *within* a token, so group-limited routing
  (n_group/topk_group) changes it only through the marginals p_e, which we take as given (uniform
  by default: by symmetry every expert then has p_e = k/E, groups or not).
A measured load carries the token counts of one real run; for that run's T it returns the exact
counts and the exact number of experts with at least one token.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from archsim.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class ExpertLoad:
    """Per-expert selection probabilities (sum = k), optionally with the measured counts they came from."""

    kind: str  # "uniform", "zipf", "measured"
    probs: tuple[float, ...]
    k: int
    counts: tuple[int, ...] | None = None

    @property
    def experts(self) -> int:
        return len(self.probs)

    def tokens_per_expert(self, tokens: float, experts: range | None = None) -> tuple[float, ...]:
        """Expected tokens of each expert in ``experts`` (default all) when ``tokens`` tokens route."""
        experts = experts if experts is not None else range(self.experts)
        if self._measured_for(tokens):
            return tuple(float(self.counts[e]) for e in experts)
        return tuple(tokens * self.probs[e] for e in experts)

    def distinct_experts(self, tokens: float, experts: range | None = None) -> float:
        """Expected number of experts in ``experts`` that receive at least one of ``tokens`` tokens."""
        experts = experts if experts is not None else range(self.experts)
        if self._measured_for(tokens):
            return float(sum(1 for e in experts if self.counts[e] > 0))
        return sum(1.0 - (1.0 - self.probs[e]) ** tokens for e in experts)

    def imbalance(self) -> float:
        """max / mean expected tokens per expert (1.0 for uniform)."""
        return max_over_mean(self.probs)

    def _measured_for(self, tokens: float) -> bool:
        return self.counts is not None and sum(self.counts) == tokens * self.k


@dataclass(frozen=True, kw_only=True)
class RankWork:
    """The routed work of one device's local expert slots in one MoE layer: the expected tokens of each slot and
    the expected number of slots with work (whose weights the grouped GEMMs read). The mapping layer computes it
    for the busiest EP rank (mapping/experts.py); a graph built without it takes its own share of the load."""

    tokens_per_slot: tuple[float, ...]
    distinct: float

    @property
    def tokens(self) -> float:
        return math.fsum(self.tokens_per_slot)


def uniform_load(experts: int, k: int) -> ExpertLoad:
    """Every expert equally likely: p_e = k / E."""
    _check(experts, k)
    return ExpertLoad(kind="uniform", probs=(k / experts,) * experts, k=k)


def zipf_load(experts: int, k: int, s: float) -> ExpertLoad:
    """Zipf(s) popularity by rank (expert 0 hottest): p_e proportional to 1/(e+1)^s, scaled to sum k
    and capped at 1 (a token picks an expert at most once; the excess is redistributed)."""
    _check(experts, k)
    if not s >= 0:
        raise ConfigError(None, "scenario.expert_load.zipf", "a non-negative exponent s", s)
    weights = [1.0 / (e + 1) ** s for e in range(experts)]
    return ExpertLoad(kind="zipf", probs=_capped(weights, k), k=k)


def measured_load(counts: list[int] | tuple[int, ...], k: int) -> ExpertLoad:
    """From per-expert token counts of a run (sum = tokens * k)."""
    counts = tuple(int(c) for c in counts)
    _check(len(counts), k)
    total = sum(counts)
    if total <= 0 or total % k or min(counts) < 0:
        raise ConfigError(None, "expert_load.counts", f"non-negative counts summing to tokens*k (k={k})", total)
    tokens = total // k
    if max(counts) > tokens:
        raise ConfigError(None, "expert_load.counts", f"no count above the token count {tokens}", max(counts))
    return ExpertLoad(kind="measured", probs=tuple(c / tokens for c in counts), k=k, counts=counts)


def _capped(weights: list[float], k: int) -> tuple[float, ...]:
    """Scale weights to sum k with every value <= 1 (water-filling)."""
    probs = [0.0] * len(weights)
    free = list(range(len(weights)))
    budget = float(k)
    while free:
        total = sum(weights[i] for i in free)
        scale = budget / total
        over = [i for i in free if weights[i] * scale >= 1.0]
        if not over:
            for i in free:
                probs[i] = weights[i] * scale
            break
        for i in over:
            probs[i] = 1.0
        budget -= len(over)
        capped = set(over)
        free = [i for i in free if i not in capped]
    return tuple(probs)


def _check(experts: int, k: int) -> None:
    if experts < 1 or not 1 <= k <= experts:
        raise ConfigError(None, "expert_load", f"1 <= k <= experts (experts={experts})", k)


def load_from_spec(spec, n_routed_experts: int, k: int) -> ExpertLoad:
    """ExpertLoad from a workload's ExpertLoadSpec (``kind`` uniform or zipf with ``zipf_s``)."""
    if spec is None or spec.kind == "uniform":
        return uniform_load(n_routed_experts, k)
    if spec.kind == "zipf":
        return zipf_load(n_routed_experts, k, spec.zipf_s)
    raise ConfigError(None, "scenario.expert_load", "uniform or {zipf: s}", spec.kind)


def max_over_mean(counts) -> float:
    """Busiest expert's tokens over the mean tokens per expert (1.0 = perfectly balanced)."""
    counts = [float(c) for c in counts]
    if not counts or sum(counts) <= 0:
        raise ConfigError(None, "expert_load.counts", "at least one routed token", counts)
    return max(counts) / (sum(counts) / len(counts))


def distinct_experts_per_step(steps) -> float:
    """Mean number of experts with at least one token, over steps (each a list of per-expert counts)."""
    steps = [list(s) for s in steps]
    if not steps:
        raise ConfigError(None, "expert_load.steps", "at least one step", steps)
    return sum(sum(1 for c in s if c > 0) for s in steps) / len(steps)
