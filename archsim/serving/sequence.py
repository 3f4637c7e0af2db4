"""Per-request runtime state shared by all batching policies, and the plan of one iteration."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from archsim.serving.iteration import IterationBatch
from archsim.serving.requests import Request


@dataclass(frozen=True, kw_only=True)
class Speculative:
    """MTP / speculative decoding: each decode step verifies ``draft_tokens`` drafts; each is accepted
    with probability ``acceptance_rate`` until the first rejection, so a step emits 1 to 1 + draft_tokens
    tokens (mean 1 + p + p^2 + ... + p^k)."""

    draft_tokens: int
    acceptance_rate: float

    def accepted(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Accepted drafts for ``n`` sequences: the number of leading successes among k Bernoulli(p) draws."""
        ok = rng.random((n, self.draft_tokens)) < self.acceptance_rate
        return np.cumprod(ok, axis=1).sum(axis=1)

    @property
    def mean_tokens_per_step(self) -> float:
        return sum(self.acceptance_rate ** i for i in range(self.draft_tokens + 1))


class Seq:
    """Mutable state of one request inside a replica.

    ``kv_tokens`` tokens have KV in the device cache; prefill must bring it up to ``target`` (prompt plus
    tokens generated before a recompute preemption). In decode ``kv_tokens == prompt + generated - 1``:
    the last generated token's KV is written by the next step.
    """

    __slots__ = ("req", "target", "kv_tokens", "generated", "blocks", "first_token_s", "last_token_s",
                 "finish_s", "preemptions", "replica", "computed_tokens", "order")

    def __init__(self, req: Request):
        self.req = req
        self.target = req.prompt_tokens
        self.kv_tokens = 0
        self.generated = 0
        self.blocks = 0
        self.first_token_s: float | None = None
        self.last_token_s = 0.0
        self.finish_s: float | None = None
        self.preemptions = 0
        self.replica = -1
        self.computed_tokens = 0  # prefill tokens computed, recomputation included
        self.order = 0  # admission order inside a replica (the latest admitted is preempted first)

    @property
    def prefilling(self) -> bool:
        return self.kv_tokens < self.target

    @property
    def done(self) -> bool:
        return self.generated >= self.req.output_tokens


class Plan:
    """One iteration: prefill chunks ``(seq, tokens)``, the decode sequences (a list, or for continuous
    batching the number of decoding rows), and the priced work."""

    __slots__ = ("prefill", "decode", "work", "tokens_per_step")

    @property
    def size(self) -> int:
        """Sequences in the iteration."""
        return len(self.prefill) + (self.decode if isinstance(self.decode, int) else len(self.decode))

    def __init__(self, prefill: list, decode: list, work: IterationBatch, tokens_per_step: int = 1):
        self.prefill = prefill
        self.decode = decode
        self.work = work
        self.tokens_per_step = tokens_per_step


def emit(seq: Seq, tokens: int, now: float, gaps: list) -> None:
    """Record ``tokens`` new output tokens at ``now`` (capped at the request's output length)."""
    tokens = min(tokens, seq.req.output_tokens - seq.generated)
    if seq.first_token_s is None:
        seq.first_token_s = now
    else:
        gap = (now - seq.last_token_s) / tokens
        gaps.extend([gap] * tokens) if tokens > 1 else gaps.append(gap)
    seq.generated += tokens
    seq.last_token_s = now
    if seq.generated >= seq.req.output_tokens:
        seq.finish_s = now
