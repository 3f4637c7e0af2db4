"""Iteration-level (continuous) batching over a paged KV cache, with optional Sarathi-style chunked prefill.

A state machine: ``add`` queues a request, ``next_plan`` forms one iteration, ``complete`` applies it.
Unchunked mode follows vLLM's default: an iteration either prefills whole prompts of newly admitted
requests or decodes every running sequence. Chunked mode (Sarathi-Serve) fills a per-iteration token
budget with all decodes first, then prefill chunks. When decode steps need blocks and too few are free,
the most recently admitted sequences are preempted, by recompute (blocks dropped, prompt and generated
tokens prefilled again) or by swap (blocks copied to host memory and back); both are counted.

Decoding sequences live in numpy arrays (context, generated, target, blocks, last token time), so a
decode iteration costs a few vector operations rather than a Python loop over the batch; a sequence's
``Seq`` record is brought up to date whenever it leaves the decode set.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from archsim.errors import ConfigError
from archsim.serving.iteration import IterationBatch, chunk_pairs
from archsim.serving.kvcache import PagedKVCache
from archsim.serving.sequence import Plan, Seq, Speculative, emit

_COLUMNS = ("kv", "gen", "out", "blocks", "order", "ident")


class _DecodeSet:
    """Parallel arrays of the sequences in the decode phase, in no particular order."""

    def __init__(self, capacity: int):
        # rows grow by doubling as sequences arrive (up to ``capacity``), so a huge max_seqs x dp
        # (10^15 devices) costs memory only for sequences that exist
        self.n = 0
        self.capacity = capacity
        size = min(capacity, 1024)
        self.cols = {name: np.zeros(size, dtype=np.int64) for name in _COLUMNS}
        self.last = np.zeros(size, dtype=np.float64)
        self.seqs: dict[int, Seq] = {}

    def _grow(self) -> None:
        size = min(self.capacity, 2 * len(self.last))
        self.cols = {name: np.concatenate([arr, np.zeros(size - len(arr), dtype=np.int64)])
                     for name, arr in self.cols.items()}
        self.last = np.concatenate([self.last, np.zeros(size - len(self.last), dtype=np.float64)])

    def add(self, seq: Seq) -> None:
        i = self.n
        if i == len(self.last):
            self._grow()
        c = self.cols
        c["kv"][i], c["gen"][i], c["out"][i] = seq.kv_tokens, seq.generated, seq.req.output_tokens
        c["blocks"][i], c["order"][i], c["ident"][i] = seq.blocks, seq.order, id(seq)
        self.last[i] = seq.last_token_s
        self.seqs[id(seq)] = seq
        self.n += 1

    def sync(self, i: int) -> Seq:
        """The Seq at row ``i`` with its fields brought up to date."""
        c = self.cols
        seq = self.seqs[int(c["ident"][i])]
        seq.kv_tokens, seq.generated, seq.blocks = int(c["kv"][i]), int(c["gen"][i]), int(c["blocks"][i])
        seq.last_token_s = float(self.last[i])
        return seq

    def remove(self, rows: np.ndarray) -> None:
        keep = np.ones(self.n, dtype=bool)
        keep[rows] = False
        m = int(keep.sum())
        for name, arr in self.cols.items():
            if name == "ident":
                for ident in arr[:self.n][~keep]:
                    del self.seqs[int(ident)]
            arr[:m] = arr[:self.n][keep]
        self.last[:m] = self.last[:self.n][keep]
        self.n = m


class ContinuousScheduler:
    """Continuous batching. ``role`` is ``"both"``, ``"prefill"`` (disaggregated prefill pool: sequences
    leave after their first token) or ``"decode"`` (receives prefilled sequences with their KV)."""

    def __init__(self, *, kv: PagedKVCache, max_seqs: int, token_budget: int, chunked: bool = False,
                 preemption: str = "recompute", kv_bytes_per_token: float = 0.0,
                 speculative: Speculative | None = None, rng: np.random.Generator | None = None,
                 role: str = "both", chunk_limit: int | None = None):
        if preemption not in ("recompute", "swap"):
            raise ConfigError(None, "scheduler.preemption", "recompute or swap", preemption)
        if max_seqs < 1 or token_budget < 1:
            raise ConfigError(None, "scheduler", "max_seqs >= 1 and token_budget >= 1", (max_seqs, token_budget))
        self.kv = kv
        self.max_seqs = max_seqs
        self.token_budget = token_budget
        self.chunked = chunked
        # a sequence's chunk never exceeds this (one attention-DP rank's share of the budget)
        self.chunk_limit = chunk_limit or token_budget
        self.preemption = preemption
        self.kv_bytes_per_token = kv_bytes_per_token
        self.spec = speculative
        self.step_tokens = 1 + (speculative.draft_tokens if speculative else 0)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.role = role
        self.waiting: deque[Seq] = deque()
        self.swapped: deque[Seq] = deque()
        self.prefilling: dict[int, Seq] = {}  # admitted, prompt not yet fully in cache; admission order
        self.decoding = _DecodeSet(max_seqs)
        self._ones = np.ones(min(max_seqs, 1024), dtype=np.int64)  # grown with the decode set
        self.handoff: list[Seq] = []
        self.gaps: list[float] = []
        self.gap_chunks: list[tuple[np.ndarray, np.ndarray]] = []
        self.preempted_recompute = 0
        self.preempted_swap = 0
        self.swap_bytes_total = 0.0
        self.recomputed_tokens = 0
        self._pending_swap_out = 0.0
        self._order = 0
        self._now = 0.0  # the time of the iteration being formed (stamps admissions)

    # -- queue ------------------------------------------------------------------------------------
    def fits(self, seq: Seq) -> bool:
        """Whether the request could ever run here: its whole context fits in the cache (its prompt, in a
        disaggregated prefill pool, which hands the sequence on after its first token)."""
        tokens = seq.req.prompt_tokens + (0 if self.role == "prefill" else seq.req.output_tokens)
        return self.kv.blocks_for(tokens) <= self.kv.num_blocks

    def add(self, seq: Seq, now: float) -> bool:
        """Queue a sequence; False (rejected) if it can never fit in this replica's KV cache."""
        if not self.fits(seq):
            return False
        if seq.enqueued_s is None:
            seq.enqueued_s = now
        self.waiting.append(seq)
        return True

    @property
    def running_count(self) -> int:
        return len(self.prefilling) + self.decoding.n

    @property
    def load(self) -> int:
        return len(self.waiting) + len(self.swapped) + self.running_count

    @property
    def queued(self) -> int:
        return len(self.waiting) + len(self.swapped)

    def wake_at(self) -> float | None:
        return None

    # -- forming an iteration ---------------------------------------------------------------------
    def next_plan(self, now: float) -> Plan | None:
        self._now = now
        swap_bytes = self._swap_in()
        if self.chunked:
            decode = self._decodes()
            budget = self.token_budget - decode * self.step_tokens
            chunks = []
            for seq in self.prefilling.values():
                if budget <= 0:
                    break
                take = min(seq.target - seq.kv_tokens, budget, self.chunk_limit)
                chunks.append((seq, take))
                budget -= take
            if budget > 0:
                chunks += self._admit(budget)
            return self._plan(chunks, decode, swap_bytes)
        prefill = self._admit(self.token_budget)
        if prefill:
            return self._plan(prefill, 0, swap_bytes)
        return self._plan([], self._decodes(), swap_bytes)

    def _admitted(self, seq: Seq) -> None:
        self._order += 1
        seq.order = self._order
        if seq.kv_tokens >= seq.target:
            self.decoding.add(seq)
        else:
            self.prefilling[id(seq)] = seq

    def _swap_in(self) -> float:
        moved = 0.0
        while self.swapped and self.running_count < self.max_seqs:
            seq = self.swapped[0]
            need = self.kv.blocks_for(seq.kv_tokens + min(self.step_tokens, seq.req.output_tokens - seq.generated))
            if need > self.kv.free:
                break
            self.swapped.popleft()
            self.kv.allocate(need)
            seq.blocks = need
            self._admitted(seq)
            moved += self._kv_bytes(seq)
        self.swap_bytes_total += moved
        return moved

    def _admit(self, budget: int) -> list:
        """Admit waiting sequences FCFS while sequences, tokens and blocks allow; returns prefill chunks."""
        chunks = []
        if self.swapped:  # swapped-out sequences go first (vLLM), so admit nothing new meanwhile
            return chunks
        while self.waiting and self.running_count < self.max_seqs and budget > 0:
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
            if resident and seq.first_token_s is None:
                self._first_token_on_decode(seq)
            self._admitted(seq)
            if not resident:
                if seq.admitted_s is None:
                    seq.admitted_s = self._now
                take = min(todo, budget, self.chunk_limit) if self.chunked else todo
                chunks.append((seq, take))
                budget -= take
        return chunks

    def _first_token_on_decode(self, seq: Seq) -> None:
        """A disaggregated request's first token reaches the user when the decode replica admits it into its
        running batch. In SGLang's PD disaggregation the client streams from the decode server; the token sampled
        by prefill travels with the KV (metadata buffer), and the decode scheduler streams it when it moves the
        transferred request from its waiting queue into the running batch, just before that batch's next decode
        forward (sgl-project/sglang python/sglang/srt/disaggregation/decode.py,
        get_next_disagg_decode_batch_to_run -> process_batch_result_prebuilt -> stream_output, in
        python/sglang/srt/managers/scheduler_output_processor_mixin.py). So the wait for a decode slot and KV
        blocks counts in TTFT, and the first decode iteration's tokens are the first inter-token gap."""
        seq.first_token_s = self._now
        seq.last_token_s = self._now

    def _decodes(self) -> int:
        """Give every decoding sequence room for its next step, preempting the most recently admitted
        sequences while blocks are short; returns the number of decoding sequences."""
        d = self.decoding
        while d.n:
            c = d.cols
            # slots for the step's tokens (drafts included), never past the request's last token
            ahead = np.minimum(self.step_tokens, c["out"][:d.n] - c["gen"][:d.n])
            need = self.kv.blocks_for_many(c["kv"][:d.n] + ahead) - c["blocks"][:d.n]
            total = int(need.sum())
            if total <= self.kv.free:
                c["blocks"][:d.n] += need
                self.kv.allocate(total)
                break
            self._preempt_latest()
        return d.n

    def _preempt_latest(self) -> None:
        """Preempt the running sequence admitted last (vLLM's victim choice)."""
        d = self.decoding
        last_prefill = next(reversed(self.prefilling.values()), None)
        row = int(np.argmax(d.cols["order"][:d.n])) if d.n else -1
        if last_prefill is not None and (row < 0 or last_prefill.order > d.cols["order"][row]):
            del self.prefilling[id(last_prefill)]
            self._preempt(last_prefill)
        else:
            seq = d.sync(row)
            d.remove(np.array([row]))
            self._preempt(seq)

    def _preempt(self, seq: Seq) -> None:
        self.kv.release(seq.blocks)
        seq.blocks = 0
        seq.preemptions += 1
        if self.preemption == "swap":
            self.preempted_swap += 1
            self.swap_bytes_total += self._kv_bytes(seq)
            self._pending_swap_out += self._kv_bytes(seq)
            self.swapped.appendleft(seq)
        else:
            self.preempted_recompute += 1
            seq.target = seq.req.prompt_tokens + seq.generated  # generated tokens become prompt (vLLM)
            self.recomputed_tokens += max(0, seq.kv_tokens - seq.req.cached_tokens)
            seq.kv_tokens = 0
            self.waiting.appendleft(seq)

    def _kv_bytes(self, seq: Seq) -> float:
        """The KV bytes ``seq`` holds (what a swap moves): sliding-window layers keep their window only."""
        return self.kv.layout.sequence_bytes(seq.kv_tokens, self.kv_bytes_per_token)

    def _plan(self, prefill: list, decode: int, swap_bytes: float) -> Plan | None:
        swap_bytes += self._pending_swap_out
        self._pending_swap_out = 0.0
        if not prefill and not decode:
            return None
        d = self.decoding
        work = IterationBatch(
            prefill_tokens=sum(c for _, c in prefill),
            prefill_pairs=sum(chunk_pairs(s.kv_tokens, c) for s, c in prefill),
            prefill_seqs=len(prefill),
            decode_seqs=decode,
            decode_tokens=decode * self.step_tokens,
            decode_context_tokens=int(d.cols["kv"][:decode].sum()) if decode else 0,
            swap_bytes=swap_bytes,
        )
        return Plan(prefill, decode, work, self.step_tokens)

    # -- applying an iteration --------------------------------------------------------------------
    def complete(self, plan: Plan, now: float) -> list[Seq]:
        """Advance the sequences of ``plan`` to time ``now``; returns the sequences that finished."""
        finished = self._advance_decodes(plan.decode, now) if plan.decode else []
        for seq, chunk in plan.prefill:
            seq.kv_tokens += chunk
            seq.computed_tokens += chunk
            if seq.kv_tokens >= seq.target:
                del self.prefilling[id(seq)]
                if seq.prefilled_s is None:
                    seq.prefilled_s = now
                if self.role == "prefill" and seq.req.output_tokens - seq.generated > 1:
                    # the first token is sampled here but shown to the user by the decode pool (_first_token_on_decode)
                    seq.generated += 1
                    seq.last_token_s = now
                    self.handoff.append(seq)
                    continue
                emit(seq, 1, now, self.gaps)
                if seq.finish_s is not None:
                    finished.append(seq)
                    self.kv.release(seq.blocks)
                    seq.blocks = 0
                else:
                    self.decoding.add(seq)
        return finished

    def _advance_decodes(self, n: int, now: float) -> list[Seq]:
        """The first ``n`` rows (those planned: rows only join at the end) each emit 1 (+ accepted drafts) tokens."""
        d = self.decoding
        c = d.cols
        if len(self._ones) < n:
            self._ones = np.ones(min(self.max_seqs, max(n, 2 * len(self._ones))), dtype=np.int64)
        ones = self._ones[:n]
        if self.spec is None:
            tokens = ones  # every row has >= 1 token left (finished rows leave at once)
        else:
            tokens = np.minimum(1 + self.spec.accepted(self.rng, n), c["out"][:n] - c["gen"][:n])
        # one streamed chunk per sequence per step, however many tokens it carries (see sequence.emit)
        self.gap_chunks.append((now - d.last[:n], ones))
        c["kv"][:n] += tokens
        c["gen"][:n] += tokens
        d.last[:n] = now
        done = np.flatnonzero(c["gen"][:n] >= c["out"][:n])
        finished = []
        for row in done:
            seq = d.sync(int(row))
            seq.finish_s = now
            self.kv.release(seq.blocks)
            seq.blocks = 0
            finished.append(seq)
        if done.size:
            d.remove(done)
        return finished

    def release(self, seq: Seq) -> None:
        """Free the blocks of a handed-off sequence once its KV has left (disaggregated prefill pool)."""
        self.kv.release(seq.blocks)
        seq.blocks = 0
