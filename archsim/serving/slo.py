"""Steady-state throughput of one replica under a TPOT target, from its iteration model (no simulation)."""
from __future__ import annotations

from dataclasses import dataclass

from archsim.serving.config import ReplicaSpec
from archsim.serving.iteration import IterationBatch, IterationModel, chunk_pairs


@dataclass(frozen=True, kw_only=True)
class SloPoint:
    """The largest batch whose effective time per output token meets the target, and what it yields."""

    batch: int
    tpot_s: float
    output_tokens_per_s: float
    meets_slo: bool


def cycle(model: IterationModel, *, batch: int, prompt: int, output: int) -> tuple[float, float]:
    """(seconds, output tokens) of one steady-state cycle at ``batch`` sequences: the batch's prompts prefilled
    once (whole-prompt iterations, as unchunked continuous batching), then output - 1 decode steps at contexts
    prompt + 1 .. prompt + output - 1 (priced at their mean)."""
    pre = model.iteration(IterationBatch(prefill_tokens=batch * prompt, prefill_pairs=batch * chunk_pairs(0, prompt),
                                         prefill_seqs=batch)).time_s
    steps = output - 1
    if steps <= 0:
        return pre, float(batch * output)
    mean_ctx = prompt + output / 2
    dec = model.iteration(IterationBatch(decode_seqs=batch, decode_tokens=batch,
                                         decode_context_tokens=int(batch * mean_ctx))).time_s
    return pre + steps * dec, float(batch * output)


def throughput_at_slo(model: IterationModel, replica: ReplicaSpec, *, prompt: int, output: int, tpot_slo_s: float,
                      max_seqs: int) -> SloPoint:
    """Scan batch = 1, 2, 4, ... (up to ``max_seqs`` and the KV capacity) for the largest batch whose cycle
    time per output token per sequence (the TPOT a user sees, prefill stalls included) meets ``tpot_slo_s``. The KV
    capacity holds sequences of prompt + output tokens under the replica's KV layout (sliding windows capped)."""
    fit = replica.kv_layout.sequences_that_fit(replica.kv_capacity_tokens, prompt + output)
    best: SloPoint | None = None
    batch = 1
    while batch <= min(max_seqs, max(1, fit)):
        seconds, tokens = cycle(model, batch=batch, prompt=prompt, output=output)
        tpot = seconds / output
        point = SloPoint(batch=batch, tpot_s=tpot, output_tokens_per_s=tokens / seconds, meets_slo=tpot <= tpot_slo_s)
        if not point.meets_slo:
            break
        best = point
        batch *= 2
    return best or point
