"""Request-level batching: a batch is formed once and runs until all its requests finish.

``static``: a fixed batch size; the batch waits to fill or until the oldest request has waited
``timeout_s``; prompts are padded to the longest and every slot is computed until the longest output
ends (classic padded batching). ``dynamic``: the batch is sized to the requests, FCFS while their prompt
tokens stay within a token budget and their full contexts within the KV cache (as TGI's
max_batch_prefill_tokens / max_batch_total_tokens); no padding, finished requests leave the computation,
but nothing joins a running batch. KV blocks for each request's full context are reserved up front.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from archsim.errors import ConfigError
from archsim.serving.iteration import IterationBatch, chunk_pairs
from archsim.serving.kvcache import PagedKVCache
from archsim.serving.sequence import Plan, Seq, Speculative, emit


# How long a static batch waits to fill before it starts with the requests it has, s. A policy default (not
# hardware data) and the one definition of it: SchedulerSpec, sim.serve_deploy.ServeOptions and `archsim serve
# --timeout` all take this value (archsim.serving.config re-exports it with the other scheduler defaults).
# 0.1 s is archsim's choice, UNVERIFIED against any engine's default; at 0 a static batch never waits to
# fill, which is not the wait-to-fill policy docs/serving.md describes.
DEFAULT_BATCH_TIMEOUT_S = 0.1


class RequestLevelScheduler:
    """Static (``padded=True``) or dynamic (``padded=False``) request-level batching."""

    def __init__(self, *, kv: PagedKVCache, max_seqs: int, token_budget: int | None = None,
                 timeout_s: float = DEFAULT_BATCH_TIMEOUT_S, padded: bool = True, speculative: Speculative | None = None,
                 rng: np.random.Generator | None = None):
        if max_seqs < 1 or timeout_s < 0 or (token_budget is not None and token_budget < 1):
            raise ConfigError(None, "scheduler", "max_seqs >= 1, timeout_s >= 0, token_budget >= 1",
                              (max_seqs, timeout_s, token_budget))
        self.kv = kv
        self.max_seqs = max_seqs
        self.token_budget = token_budget
        self.timeout_s = timeout_s
        self.padded = padded
        self.spec = speculative
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.waiting: deque[Seq] = deque()
        self.batch: list[Seq] = []
        self.prefilled = False
        self.reserved = 0  # KV blocks held by the running batch
        self.handoff: list[Seq] = []
        self.gaps: list[float] = []
        self.preempted_recompute = 0
        self.preempted_swap = 0
        self.swap_bytes_total = 0.0
        self.recomputed_tokens = 0

    def _context(self, seq: Seq) -> int:
        return seq.req.prompt_tokens + seq.req.output_tokens

    def fits(self, seq: Seq) -> bool:
        """Whether the request could ever run here: its full context fits in the KV cache."""
        return self.kv.blocks_for(self._context(seq)) <= self.kv.num_blocks

    def add(self, seq: Seq, now: float) -> bool:
        """Queue a request; False (rejected) if its full context can never fit in the KV cache."""
        if not self.fits(seq):
            return False
        if seq.enqueued_s is None:
            seq.enqueued_s = now
        self.waiting.append(seq)
        return True

    @property
    def load(self) -> int:
        return len(self.waiting) + len(self.batch)

    @property
    def queued(self) -> int:
        return len(self.waiting)

    def wake_at(self) -> float | None:
        """When a static batch that is waiting to fill times out."""
        if self.batch or not self.waiting or not self.padded:
            return None
        return self.waiting[0].req.arrival_s + self.timeout_s

    def next_plan(self, now: float) -> Plan | None:
        if not self.batch and not self._form(now):
            return None
        if not self.prefilled:
            return self._prefill_plan()
        return self._decode_plan()

    def _form(self, now: float) -> bool:
        if not self.waiting:
            return False
        if self.padded and len(self.waiting) < self.max_seqs and now < self.waiting[0].req.arrival_s + self.timeout_s:
            return False
        chosen: list[Seq] = []
        longest = 0
        blocks = 0
        prompt_tokens = 0
        for seq in self.waiting:
            if len(chosen) == self.max_seqs:
                break
            ctx = self._context(seq)
            if self.padded:  # every slot reserves the longest context of the batch
                new_blocks = (len(chosen) + 1) * self.kv.blocks_for(max(longest, ctx))
                tokens = (len(chosen) + 1) * max(longest, ctx)
            else:
                new_blocks = blocks + self.kv.blocks_for(ctx)
                tokens = prompt_tokens + seq.req.prompt_tokens
            if new_blocks > self.kv.free or (self.token_budget is not None and tokens > self.token_budget and chosen):
                break
            prompt_tokens += seq.req.prompt_tokens
            chosen.append(seq)
            longest = max(longest, ctx)
            blocks = new_blocks
        if not chosen:  # cannot happen while add() rejects what never fits; kept as a guard
            return False
        for seq in chosen:
            self.waiting.popleft()
            seq.admitted_s = now
        self.kv.allocate(blocks)
        self.batch = chosen
        self.reserved = blocks
        self.prefilled = False
        return True

    def _prefill_plan(self) -> Plan:
        if self.padded:
            pad_prompt = max(s.req.prompt_tokens - s.req.cached_tokens for s in self.batch)
            n = len(self.batch)
            work = IterationBatch(prefill_tokens=n * pad_prompt, prefill_pairs=n * chunk_pairs(0, pad_prompt),
                                  prefill_seqs=n)
        else:
            todo = [s.req.prompt_tokens - s.req.cached_tokens for s in self.batch]
            work = IterationBatch(prefill_tokens=sum(todo),
                                  prefill_pairs=sum(chunk_pairs(s.req.cached_tokens, t) for s, t in zip(self.batch, todo)),
                                  prefill_seqs=len(todo))
        return Plan([(s, s.req.prompt_tokens - s.req.cached_tokens) for s in self.batch], [], work)

    def _decode_plan(self) -> Plan:
        step = 1 + (self.spec.draft_tokens if self.spec else 0)
        live = [s for s in self.batch if s.finish_s is None]
        if self.padded:
            n = len(self.batch)
            longest = max(s.kv_tokens for s in self.batch)
            work = IterationBatch(decode_seqs=n, decode_tokens=n * step, decode_context_tokens=n * longest)
        else:
            work = IterationBatch(decode_seqs=len(live), decode_tokens=len(live) * step,
                                  decode_context_tokens=sum(s.kv_tokens for s in live))
        return Plan([], live, work, step)

    def complete(self, plan: Plan, now: float) -> list[Seq]:
        finished = []
        for seq, chunk in plan.prefill:
            seq.kv_tokens = seq.req.prompt_tokens
            seq.computed_tokens += chunk
            emit(seq, 1, now, self.gaps)
            if seq.finish_s is not None:
                finished.append(seq)
        if plan.decode:
            extra = self.spec.accepted(self.rng, len(plan.decode)) if self.spec else None
            for j, seq in enumerate(plan.decode):
                tokens = 1 if extra is None else 1 + int(extra[j])
                seq.kv_tokens += tokens
                emit(seq, tokens, now, self.gaps)
                if seq.finish_s is not None:
                    finished.append(seq)
        self.prefilled = True
        if all(s.finish_s is not None for s in self.batch):
            self.kv.release(self.reserved)
            self.batch = []
        return finished
