"""Iteration-level (continuous) batching over a paged KV cache, with optional Sarathi-style chunked prefill.

A state machine: ``add`` queues a request, ``next_plan`` forms one iteration, ``complete`` applies it.
Unchunked mode follows vLLM's default: an iteration either prefills whole prompts of newly admitted
requests or decodes every running sequence. Chunked mode (Sarathi-Serve) fills a per-iteration token
budget with all decodes first, then prefill chunks. When a decode step needs a block and none is free,
the most recently admitted sequence is preempted, by recompute (blocks dropped, prompt and generated
tokens prefilled again) or by swap (blocks copied to host memory and back); both are counted.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from archsim.errors import ConfigError
from archsim.serving.iteration import IterationBatch, chunk_pairs
from archsim.serving.kvcache import PagedKVCache
from archsim.serving.sequence import Plan, Seq, Speculative, emit


class ContinuousScheduler:
    """Continuous batching. ``role`` is ``"both"``, ``"prefill"`` (disaggregated prefill pool: sequences
    leave after their first token) or ``"decode"`` (receives prefilled sequences with their KV)."""

    def __init__(self, *, kv: PagedKVCache, max_seqs: int, token_budget: int, chunked: bool = False,
                 preemption: str = "recompute", kv_bytes_per_token: float = 0.0,
                 speculative: Speculative | None = None, rng: np.random.Generator | None = None,
                 role: str = "both"):
        if preemption not in ("recompute", "swap"):
            raise ConfigError(None, "scheduler.preemption", "recompute or swap", preemption)
        if max_seqs < 1 or token_budget < 1:
            raise ConfigError(None, "scheduler", "max_seqs >= 1 and token_budget >= 1", (max_seqs, token_budget))
        self.kv = kv
        self.max_seqs = max_seqs
        self.token_budget = token_budget
        self.chunked = chunked
        self.preemption = preemption
        self.kv_bytes_per_token = kv_bytes_per_token
        self.spec = speculative
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.role = role
        self.waiting: deque[Seq] = deque()
        self.swapped: deque[Seq] = deque()
        self.running: list[Seq] = []
        self.handoff: list[Seq] = []
        self.gaps: list[float] = []
        self.preempted_recompute = 0
        self.preempted_swap = 0
        self.swap_bytes_total = 0.0
        self.recomputed_tokens = 0
        self._pending_swap_out = 0.0

    # -- queue ------------------------------------------------------------------------------------
    def fits(self, seq: Seq) -> bool:
        """Whether the request could ever run here: its whole context fits in the cache."""
        return self.kv.blocks_for(seq.req.prompt_tokens + seq.req.output_tokens) <= self.kv.num_blocks

    def add(self, seq: Seq, now: float) -> bool:
        """Queue a sequence; False (rejected) if it can never fit in this replica's KV cache."""
        if not self.fits(seq):
            return False
        self.waiting.append(seq)
        return True

    @property
    def load(self) -> int:
        return len(self.waiting) + len(self.swapped) + len(self.running)

    @property
    def queued(self) -> int:
        return len(self.waiting) + len(self.swapped)

    def wake_at(self) -> float | None:
        return None

    # -- forming an iteration ---------------------------------------------------------------------
    def next_plan(self, now: float) -> Plan | None:
        swap_bytes = self._swap_in()
        if self.chunked:
            return self._plan_chunked(swap_bytes)
        prefill = self._admit(self.token_budget)
        if prefill:
            return self._plan(prefill, [], swap_bytes)
        return self._plan([], self._decodes(), swap_bytes)

    def _swap_in(self) -> float:
        moved = 0.0
        while self.swapped and len(self.running) < self.max_seqs:
            seq = self.swapped[0]
            need = self.kv.blocks_for(seq.kv_tokens + self._step_tokens())
            if need > self.kv.free:
                break
            self.swapped.popleft()
            self.kv.allocate(need)
            seq.blocks = need
            self.running.append(seq)
            moved += seq.kv_tokens * self.kv_bytes_per_token
        self.swap_bytes_total += moved
        return moved

    def _admit(self, budget: int) -> list:
        """Admit waiting sequences FCFS while sequences, tokens and blocks allow; returns prefill chunks."""
        chunks = []
        if self.swapped:  # swapped-out sequences go first (vLLM), so admit nothing new meanwhile
            return chunks
        while self.waiting and len(self.running) < self.max_seqs and budget > 0:
            seq = self.waiting[0]
            resident = seq.kv_tokens >= seq.target  # arrived with its KV (disaggregated decode pool)
            if not resident:
                seq.kv_tokens = seq.req.cached_tokens
            need = self.kv.blocks_for(seq.target)
            todo = seq.target - seq.kv_tokens
            if need > self.kv.free or (not self.chunked and todo > budget and chunks):
                break
            self.waiting.popleft()
            self.kv.allocate(need)
            seq.blocks = need
            self.running.append(seq)
            if not resident:
                take = min(todo, budget) if self.chunked else todo
                chunks.append((seq, take))
                budget -= take
        return chunks

    def _step_tokens(self) -> int:
        return 1 + (self.spec.draft_tokens if self.spec else 0)

    def _decodes(self) -> list:
        """Every running sequence past prefill gets a decode slot; preempt from the tail when blocks run out."""
        step = self._step_tokens()
        decode = []
        running = self.running
        kv = self.kv
        i = 0
        while i < len(running):
            seq = running[i]
            if seq.kv_tokens < seq.target:
                i += 1
                continue
            need = kv.blocks_for(seq.kv_tokens + step) - seq.blocks
            while need > kv.free:
                victim = running.pop()
                self._preempt(victim)
                if victim is seq:
                    break
            else:
                if need > 0:
                    kv.allocate(need)
                    seq.blocks += need
                decode.append(seq)
                i += 1
        return decode

    def _preempt(self, seq: Seq) -> None:
        self.kv.release(seq.blocks)
        seq.blocks = 0
        seq.preemptions += 1
        if self.preemption == "swap":
            self.preempted_swap += 1
            self.swap_bytes_total += seq.kv_tokens * self.kv_bytes_per_token
            self._pending_swap_out += seq.kv_tokens * self.kv_bytes_per_token
            self.swapped.appendleft(seq)
        else:
            self.preempted_recompute += 1
            seq.target = seq.req.prompt_tokens + seq.generated  # generated tokens become prompt (vLLM)
            self.recomputed_tokens += max(0, seq.kv_tokens - seq.req.cached_tokens)
            seq.kv_tokens = 0
            self.waiting.appendleft(seq)

    def _plan_chunked(self, swap_bytes: float) -> Plan | None:
        decode = self._decodes()
        budget = self.token_budget - len(decode) * self._step_tokens()
        chunks = []
        for seq in self.running:
            if budget <= 0:
                break
            if seq.kv_tokens < seq.target:
                take = min(seq.target - seq.kv_tokens, budget)
                chunks.append((seq, take))
                budget -= take
        if budget > 0:
            chunks += self._admit(budget)
        return self._plan(chunks, decode, swap_bytes)

    def _plan(self, prefill: list, decode: list, swap_bytes: float) -> Plan | None:
        swap_bytes += self._pending_swap_out
        self._pending_swap_out = 0.0
        if not prefill and not decode:
            return None
        step = self._step_tokens()
        work = IterationBatch(
            prefill_tokens=sum(c for _, c in prefill),
            prefill_pairs=sum(chunk_pairs(s.kv_tokens, c) for s, c in prefill),
            prefill_seqs=len(prefill),
            decode_seqs=len(decode),
            decode_tokens=len(decode) * step,
            decode_context_tokens=sum(s.kv_tokens for s in decode),
            swap_bytes=swap_bytes,
        )
        return Plan(prefill, decode, work, step)

    # -- applying an iteration --------------------------------------------------------------------
    def complete(self, plan: Plan, now: float) -> list[Seq]:
        """Advance the sequences of ``plan`` to time ``now``; returns the sequences that finished."""
        finished = []
        gaps = self.gaps
        for seq, chunk in plan.prefill:
            seq.kv_tokens += chunk
            seq.computed_tokens += chunk
            if seq.kv_tokens >= seq.target:
                emit(seq, 1, now, gaps)
                if seq.finish_s is not None:
                    finished.append(seq)
                elif self.role == "prefill":
                    self.handoff.append(seq)
        if plan.decode:
            extra = self.spec.accepted(self.rng, len(plan.decode)) if self.spec else None
            for j, seq in enumerate(plan.decode):
                tokens = 1 if extra is None else 1 + int(extra[j])
                seq.kv_tokens += tokens
                emit(seq, tokens, now, gaps)
                if seq.finish_s is not None:
                    finished.append(seq)
        if finished or self.handoff:
            self._drop(finished)
        return finished

    def _drop(self, finished: list[Seq]) -> None:
        gone = set(map(id, finished)) | set(map(id, self.handoff))
        for seq in finished:
            self.kv.release(seq.blocks)
            seq.blocks = 0
        self.running = [s for s in self.running if id(s) not in gone]

    def release(self, seq: Seq) -> None:
        """Free the blocks of a handed-off sequence once its KV has left (disaggregated prefill pool)."""
        self.kv.release(seq.blocks)
        seq.blocks = 0
