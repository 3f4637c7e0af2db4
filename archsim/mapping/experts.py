"""Where the routed experts live on an EP group (expert slots, EPLB replicas) and the routed work of its busiest rank.

Slots: ``n_routed_experts + redundant`` slots, ``slots / ep`` per EP rank. Placement follows DeepSeek's EPLB
(github.com/deepseek-ai/EPLB, ``eplb.py``: replicate the experts with the heaviest load per replica, then pack the
replicas onto GPUs so their loads balance): each redundant slot goes to the expert whose expected load per replica
is highest, and replicas are packed heaviest first, each onto the least-loaded rank with a free slot. A replicated
expert's tokens split evenly over its replicas. Without redundant slots the experts sit in order, ``E / ep`` per
rank (expert 0 is the hottest of a Zipf load, so rank 0 is the hottest rank, as a plain contiguous layout has it).

Tokens route independently: a token picks expert e with probability p_e (``ExpertLoad``), so slot s of expert e
takes it with q_s = p_e / replicas_e. A rank's routed copies X_r over T tokens and its touched slots D_r (slots with
at least one token, hit with probability 1 - (1 - q_s)^T) are sums of independent Bernoulli counts (within one token
the k picks are distinct, a negative correlation the model leaves out: variances are slight upper bounds). The MoE
layer ends in a barrier (combine, or the all-reduce), so the step waits for the busiest rank: E[max_r X_r] copies
and E[max_r D_r] distinct experts' weights, taking ranks as independent. Counts are exact (Poisson-binomial
convolutions) while a rank expects few copies, normal (mean, variance) beyond.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from archsim.errors import ConfigError
from archsim.graph.expert_load import ExpertLoad, RankWork

# Beyond this many expected copies of one rank the count's distribution is taken as normal (the central limit; the
# exact convolution is O(support^2)). Below it the Poisson-binomial is convolved exactly.
EXACT_SUPPORT = 2048
_NORMAL_GRID = 4001  # points of the numeric integral of E[max] under the normal law


@dataclass(frozen=True, kw_only=True)
class ExpertPlacement:
    """Slots of an EP group: ``expert_of_slot[s]`` and ``rank_of_slot[s]``, ``replicas[e]`` per expert."""

    ep: int
    expert_of_slot: tuple[int, ...]
    rank_of_slot: tuple[int, ...]
    replicas: tuple[int, ...]

    @property
    def slots_per_rank(self) -> int:
        return len(self.expert_of_slot) // self.ep

    def slot_probs(self, load: ExpertLoad) -> np.ndarray:
        """q_s: the probability that one token's routing lands on slot s."""
        p = np.asarray(load.probs, dtype=float)
        e = np.asarray(self.expert_of_slot)
        return p[e] / np.asarray(self.replicas, dtype=float)[e]

    def by_rank(self, values: np.ndarray) -> list[np.ndarray]:
        """``values`` per slot grouped by rank (each rank's slots in slot order)."""
        ranks = np.asarray(self.rank_of_slot)
        return [values[ranks == r] for r in range(self.ep)]


def place_experts(load: ExpertLoad, ep: int, redundant: int = 0) -> ExpertPlacement:
    """EPLB placement of ``load.experts + redundant`` slots on ``ep`` ranks (module docstring)."""
    return _place(load.probs, ep, redundant)


@lru_cache(maxsize=256)
def _place(probs: tuple[float, ...], ep: int, redundant: int) -> ExpertPlacement:
    experts = len(probs)
    slots = experts + redundant
    if ep < 1 or slots % ep:
        raise ConfigError(None, "parallelism.ep", f"a divisor of n_routed_experts + redundant_experts ({slots})", ep)
    per_rank = slots // ep
    if not redundant:
        return ExpertPlacement(ep=ep, expert_of_slot=tuple(range(experts)),
                               rank_of_slot=tuple(s // per_rank for s in range(experts)), replicas=(1,) * experts)
    replicas = [1] * experts
    heap = [(-p, e) for e, p in enumerate(probs)]  # max-heap of load per replica
    heapq.heapify(heap)
    for _ in range(redundant):
        _, e = heapq.heappop(heap)
        replicas[e] += 1
        heapq.heappush(heap, (-probs[e] / replicas[e], e))
    units = sorted(((probs[e] / replicas[e], e) for e in range(experts) for _ in range(replicas[e])),
                   key=lambda u: (-u[0], u[1]))
    rank_load = [(0.0, r) for r in range(ep)]  # (load, rank) of ranks with a free slot
    free = [per_rank] * ep
    expert_of, rank_of = [], []
    for share, e in units:
        load_r, r = heapq.heappop(rank_load)
        expert_of.append(e)
        rank_of.append(r)
        free[r] -= 1
        if free[r]:
            heapq.heappush(rank_load, (load_r + share, r))
    return ExpertPlacement(ep=ep, expert_of_slot=tuple(expert_of), rank_of_slot=tuple(rank_of),
                           replicas=tuple(replicas))


def busiest_rank_work(load: ExpertLoad, placement: ExpertPlacement, tokens: float) -> RankWork:
    """The busiest EP rank's routed work when the group routes ``tokens`` tokens (module docstring): its slot
    tokens sum to E[max_r X_r], its largest entry is the group's busiest slot E[max_s], and ``distinct`` is
    E[max_r D_r]."""
    return _busiest(load, placement, float(tokens))


def mean_rank_work(load: ExpertLoad, placement: ExpertPlacement, tokens: float) -> RankWork:
    """The routed work of an average EP rank (the group's totals / ep): energy and deployment totals."""
    q = placement.slot_probs(load)
    per = placement.slots_per_rank
    mean_slot = tokens * q.sum() / (placement.ep * per)
    hit = 1.0 - (1.0 - q) ** tokens
    return RankWork(tokens_per_slot=(mean_slot,) * per, distinct=float(hit.sum() / placement.ep))


@lru_cache(maxsize=1024)
def _busiest(load: ExpertLoad, placement: ExpertPlacement, tokens: float) -> RankWork:
    q = placement.slot_probs(load)
    per = placement.slots_per_rank
    if tokens <= 0:
        return RankWork(tokens_per_slot=(0.0,) * per, distinct=0.0)
    ranks = placement.by_rank(q)
    kinds, counts = _distinct_ranks(ranks)  # a balanced layout has one kind of rank: one law, not ep
    copies = expected_max([_copies_law(qr, tokens) for qr in kinds], counts)
    distinct = expected_max([("exact", _poisson_binomial(1.0 - (1.0 - qr) ** tokens)) for qr in kinds], counts)
    values, per_value = np.unique(q, return_counts=True)
    hottest_slot = expected_max([_copies_law(np.array([qs]), tokens) for qs in values], per_value.tolist())
    # the busiest rank by expected load, its slots scaled to E[max_r X_r], its hottest slot raised to E[max_s]
    top = max(range(placement.ep), key=lambda r: ranks[r].sum())
    mean = tokens * ranks[top]
    scale = copies / mean.sum() if mean.sum() > 0 else 0.0
    slots = mean * scale
    i = int(np.argmax(slots))
    hottest = min(max(hottest_slot, slots[i]), copies)
    rest = copies - hottest
    others = np.delete(slots, i)
    others = others * (rest / others.sum()) if others.size and others.sum() > 0 else others
    return RankWork(tokens_per_slot=tuple(np.insert(others, i, hottest).tolist()), distinct=min(distinct, float(per)))


def _distinct_ranks(ranks: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
    """Ranks with the same multiset of slot probabilities, once each, with their multiplicity."""
    seen: dict[tuple, int] = {}
    kinds: list[np.ndarray] = []
    counts: list[int] = []
    for qr in ranks:
        key = tuple(np.sort(qr).tolist())
        if key not in seen:
            seen[key] = len(kinds)
            kinds.append(qr)
            counts.append(0)
        counts[seen[key]] += 1
    return kinds, counts


def _copies_law(q: np.ndarray, tokens: float):
    """The law of one rank's routed copies over ``tokens`` tokens whose slots have probabilities ``q``:
    ("exact", pmf) while small, else ("normal", mean, variance)."""
    mean = tokens * q.sum()
    var = tokens * (q * (1.0 - q)).sum()
    whole = int(round(tokens))
    one = _trim(_poisson_binomial(q))
    if whole == tokens and whole * (len(one) - 1) <= EXACT_SUPPORT:
        return "exact", _power(one, whole)
    return "normal", mean, var


def _trim(pmf: np.ndarray, tail: float = 1e-13) -> np.ndarray:
    """``pmf`` without the trailing values whose total is below ``tail`` (they cannot move an expectation)."""
    rest = np.cumsum(pmf[::-1])[::-1]  # rest[i] = P(count >= i)
    keep = int(np.searchsorted(-rest, -tail))  # first i with P(count >= i) < tail
    return pmf[:max(1, keep)]


def _poisson_binomial(p: np.ndarray) -> np.ndarray:
    """PMF of a sum of independent Bernoulli(p_i)."""
    pmf = np.ones(1)
    for pi in np.asarray(p, dtype=float):
        pmf = np.convolve(pmf, (1.0 - pi, pi))
    return pmf


def _power(pmf: np.ndarray, n: int) -> np.ndarray:
    """PMF of the sum of ``n`` independent draws of ``pmf`` (binary exponentiation)."""
    out, base = np.ones(1), pmf
    while n:
        if n & 1:
            out = _trim(np.convolve(out, base))
        n >>= 1
        if n:
            base = _trim(np.convolve(base, base))
    return out


def expected_max(laws, counts=None) -> float:
    """E[max] of independent non-negative counts, each ("exact", pmf) or ("normal", mean, variance);
    ``counts[i]`` repeats law i (identical ranks)."""
    counts = counts or [1] * len(laws)
    exact = [(law[1], c) for law, c in zip(laws, counts) if law[0] == "exact"]
    normal = [(law[1], law[2], c) for law, c in zip(laws, counts) if law[0] == "normal"]
    top = max([len(pmf) - 1 for pmf, _ in exact] + [m + 10.0 * math.sqrt(v) + 1.0 for m, v, _ in normal] + [0.0])
    if not normal:  # integer support: E[max] = sum_{x >= 0} P(max > x)
        xs = np.arange(int(top) + 1, dtype=float)
        cdf = _exact_cdf(exact, xs)
        return float((1.0 - cdf).sum())
    xs = np.linspace(0.0, top, _NORMAL_GRID)
    cdf = _exact_cdf(exact, np.floor(xs))
    for mean, var, c in normal:
        sd = math.sqrt(var)
        z = (xs - mean) / sd if sd > 0 else np.where(xs >= mean, np.inf, -np.inf)
        cdf = cdf * _phi(z) ** c
    return float(np.trapezoid(1.0 - cdf, xs))


def _exact_cdf(exact, xs: np.ndarray) -> np.ndarray:
    out = np.ones_like(xs)
    for pmf, c in exact:
        cum = np.cumsum(pmf)
        idx = np.clip(xs.astype(int), 0, len(cum) - 1)
        out = out * np.where(xs >= len(cum) - 1, 1.0, cum[idx]) ** c
    return out


def _phi(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF, through erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7; numpy has no
    erf and scipy is not a dependency)."""
    x = np.abs(z) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-x * x)
    return 0.5 * (1.0 + np.sign(z) * erf)
