"""What one scheduler iteration costs: the batch description, the cost record, the model protocol, a roofline model."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, kw_only=True)
class IterationBatch:
    """The work of one forward pass of a replica.

    ``prefill_tokens`` new prompt tokens of ``prefill_seqs`` sequences are computed; they attend
    ``prefill_pairs`` (query, key) pairs in total (a chunk of c tokens after o cached ones:
    c*o + c*(c+1)/2, docs/counting.md).
    ``decode_seqs`` sequences each process ``decode_tokens // decode_seqs`` tokens (1, or 1 + draft
    tokens under speculative decoding) against ``decode_context_tokens`` cached tokens in total.
    ``swap_bytes`` of KV cache move between device and host memory (preemption by swap).
    """

    prefill_tokens: int = 0
    prefill_pairs: int = 0
    prefill_seqs: int = 0
    decode_seqs: int = 0
    decode_tokens: int = 0
    decode_context_tokens: int = 0
    swap_bytes: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prefill_tokens + self.decode_tokens


@dataclass(frozen=True, kw_only=True)
class IterationCost:
    """Time, energy and work of one iteration, summed over the replica's devices."""

    time_s: float
    energy_j: float
    flops: float
    hbm_bytes: float


class IterationModel(Protocol):
    """Prices one iteration of a replica. Implementations: RooflineIteration, CostModelIteration."""

    def iteration(self, batch: IterationBatch) -> IterationCost: ...


@dataclass(frozen=True, kw_only=True)
class RooflineIteration:
    """A closed-form roofline for one replica: time = max(compute, memory) + fixed + swap.

    Every figure is a parameter, derived from a model and a hardware description by the caller or
    stated in a test:
    ``flops_per_token`` (2 x active parameters), ``attention_flops_per_pair`` (all layers and heads),
    ``weight_bytes`` (read once per iteration), ``kv_bytes_per_token`` (read per cached token per
    decode step, written per new token), achievable ``flop_per_s`` and ``bytes_per_s`` of the whole
    replica, ``fixed_s`` (kernel launches per iteration), ``swap_bytes_per_s`` (device-host link),
    energies per FLOP and per byte.
    """

    flops_per_token: float
    attention_flops_per_pair: float
    weight_bytes: float
    kv_bytes_per_token: float
    flop_per_s: float
    bytes_per_s: float
    fixed_s: float = 0.0
    swap_bytes_per_s: float = float("inf")
    energy_j_per_flop: float = 0.0
    energy_j_per_byte: float = 0.0

    def iteration(self, batch: IterationBatch) -> IterationCost:
        tokens = batch.tokens
        per_seq = batch.decode_tokens // batch.decode_seqs if batch.decode_seqs else 0
        # a decode token at context L attends L keys, itself included (docs/counting.md)
        pairs = batch.prefill_pairs + batch.decode_context_tokens * per_seq + batch.decode_tokens
        flops = self.flops_per_token * tokens + self.attention_flops_per_pair * pairs
        kv_bytes = self.kv_bytes_per_token * (batch.decode_context_tokens + tokens)
        hbm_bytes = (self.weight_bytes if tokens else 0.0) + kv_bytes
        time_s = max(flops / self.flop_per_s, hbm_bytes / self.bytes_per_s) + (self.fixed_s if tokens else 0.0)
        time_s += batch.swap_bytes / self.swap_bytes_per_s
        energy = flops * self.energy_j_per_flop + (hbm_bytes + batch.swap_bytes) * self.energy_j_per_byte
        return IterationCost(time_s=time_s, energy_j=energy, flops=flops, hbm_bytes=hbm_bytes)


def chunk_pairs(offset: int, chunk: int) -> int:
    """Attended pairs of ``chunk`` causal query tokens after ``offset`` earlier tokens (docs/counting.md)."""
    return chunk * offset + chunk * (chunk + 1) // 2
