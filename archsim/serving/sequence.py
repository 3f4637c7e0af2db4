"""Per-request runtime state shared by all batching policies, and the plan of one iteration."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from archsim.errors import ConfigError
from archsim.serving.iteration import IterationBatch
from archsim.serving.requests import Request


@dataclass(frozen=True, kw_only=True)
class Speculative:
    """MTP / speculative decoding: each decode step verifies ``draft_tokens`` drafts and emits 1 to
    1 + draft_tokens tokens.

    ``acceptance_rate`` is one probability for every draft, or a tuple of ``draft_tokens`` conditional ones
    (p1, p2, ...): draft i is accepted with probability p_i given that drafts 1..i-1 were, and never after a
    rejection, as the target model's verification of a draft chain works (Leviathan et al., "Fast Inference
    from Transformers via Speculative Decoding", arXiv:2211.17192, sec. 2.3; EAGLE, arXiv:2401.15077; DeepSeek-V3
    MTP, arXiv:2412.19437 sec. 5.4.3, which reports per-position acceptance). Mean tokens per step:
    1 + p1 + p1 p2 + ... + p1 ... pK.
    """

    draft_tokens: int
    acceptance_rate: float | tuple[float, ...]
    _rates: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        k, p = self.draft_tokens, self.acceptance_rate
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(None, "speculative.draft_tokens", "an integer >= 1", k)
        rates = (p,) * int(k) if _is_rate(p) else tuple(p) if isinstance(p, (tuple, list)) else None
        if rates is None or len(rates) != k or not all(_is_rate(r) for r in rates):
            raise ConfigError(None, "speculative.acceptance_rate", f"a probability in [0, 1], or {k} of them (one "
                              "per draft position)", p)
        if isinstance(p, list):  # a tuple keeps the record hashable
            object.__setattr__(self, "acceptance_rate", tuple(p))
        object.__setattr__(self, "_rates", np.asarray(rates, dtype=np.float64))

    @property
    def rates(self) -> tuple[float, ...]:
        """The conditional acceptance rate of each draft position, p1 .. pK."""
        return tuple(float(r) for r in self._rates)

    def accepted(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Accepted drafts for ``n`` sequences: the leading successes among K Bernoulli(p_i) draws."""
        ok = rng.random((n, self.draft_tokens)) < self._rates
        return np.cumprod(ok, axis=1).sum(axis=1)

    @property
    def mean_tokens_per_step(self) -> float:
        """1 (the target model's own token) + sum over i of P(drafts 1..i accepted) = 1 + p1 + p1 p2 + ..."""
        return 1.0 + float(np.cumprod(self._rates).sum())


def _is_rate(value) -> bool:
    """Whether ``value`` is a real number in [0, 1] (a bool is not; nan fails the comparison)."""
    return not isinstance(value, bool) and isinstance(value, (int, float, np.floating)) and 0 <= value <= 1


class Seq:
    """Mutable state of one request inside a replica.

    ``kv_tokens`` tokens have KV in the device cache; prefill must bring it up to ``target`` (prompt plus
    tokens generated before a recompute preemption). In decode ``kv_tokens == prompt + generated - 1``:
    the last generated token's KV is written by the next step.

    The time stamps that split its TTFT (see ``ttft_parts``): ``enqueued_s`` (entered a scheduler, after the
    fixed request overhead), ``admitted_s`` (first scheduled for prefill), ``prefilled_s`` (prompt in cache,
    first token sampled), and in disaggregated serving ``link_start_s`` (the KV transfer got the link) and
    ``kv_arrived_s`` (the KV reached the decode replica); ``first_token_s`` is when the user sees it.
    """

    __slots__ = ("req", "target", "kv_tokens", "generated", "blocks", "first_token_s", "last_token_s",
                 "finish_s", "preemptions", "replica", "computed_tokens", "order", "enqueued_s", "admitted_s",
                 "prefilled_s", "link_start_s", "kv_arrived_s")

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
        self.enqueued_s: float | None = None
        self.admitted_s: float | None = None
        self.prefilled_s: float | None = None
        self.link_start_s: float | None = None
        self.kv_arrived_s: float | None = None

    def ttft_parts(self) -> tuple[float, float, float, float, float, float]:
        """The TTFT of a completed request split as TTFT_PARTS; the parts sum to first_token_s - arrival_s.

        Aggregated serving has no transfer, so its last three parts are zero."""
        arrival, enqueued, admitted = self.req.arrival_s, self.enqueued_s, self.admitted_s
        prefilled, first = self.prefilled_s, self.first_token_s
        link = prefilled if self.link_start_s is None else self.link_start_s
        arrived = prefilled if self.kv_arrived_s is None else self.kv_arrived_s
        return (enqueued - arrival, admitted - enqueued, prefilled - admitted, link - prefilled, arrived - link,
                first - arrived)

    @property
    def prefilling(self) -> bool:
        return self.kv_tokens < self.target

    @property
    def done(self) -> bool:
        return self.generated >= self.req.output_tokens


# The names of Seq.ttft_parts, in order: fixed request overhead, prefill-pool queueing, prefill (chunks and any
# iterations interleaved with them), waiting for the KV link, the transfer itself, waiting for a decode slot.
TTFT_PARTS = ("overhead", "queue", "prefill", "link_wait", "transfer", "slot_wait")


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
    """Record ``tokens`` new output tokens at ``now`` (capped at the request's output length).

    Tokens emitted together reach the client as one streamed chunk, and a benchmark client records one
    inter-token latency per chunk, not per token (vllm-project/vllm vllm/benchmarks/lib/endpoint_request_func.py:
    ``output.itl.append(timestamp - most_recent_timestamp)`` once per received chunk), so a speculative step
    that emits 3 tokens adds one gap, the whole step.
    """
    tokens = min(tokens, seq.req.output_tokens - seq.generated)
    if seq.first_token_s is None:
        seq.first_token_s = now
        if seq.prefilled_s is None:
            seq.prefilled_s = now
    else:
        gaps.append(now - seq.last_token_s)
    seq.generated += tokens
    seq.last_token_s = now
    if seq.generated >= seq.req.output_tokens:
        seq.finish_s = now
