"""Paged KV-cache allocator: fixed-size blocks counted per sequence (KvLayout: how many a sequence of a given
length holds when some layers attend a sliding window)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from math import gcd
from typing import Iterable

import numpy as np

from archsim.attention_window import cached_keys
from archsim.errors import ConfigError

# vLLM's default gpu_memory_utilization (vllm.EngineArgs, 0.9): the share of HBM the engine may use for
# weights plus KV cache; the rest is left to activations and the runtime. A software default, not hardware.
DEFAULT_KV_MEMORY_FRACTION = 0.9


def check_kv_memory_fraction(value: float, field: str = "kv_memory_fraction") -> float:
    """``value`` if it is a share of HBM in (0, 1], else a ConfigError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(None, field, "a fraction of HBM in (0, 1]", value)
    return float(value)


@dataclass(frozen=True, kw_only=True)
class KvLayout:
    """How a sequence's KV cache grows on a replica's device, per group of layers.

    ``groups`` is ((window, units), ...): a group's layers attend ``window`` keys (None: every key) and are
    ``units`` layer units, a unit being the greatest common divisor of the groups' layer counts. One block of the
    pool holds ``block_tokens`` tokens of one unit, so a full-attention-only model is one group of one unit (a
    block holds a token of every layer, as before). A sequence at ``tokens`` tokens holds, in every unit of a
    group, ``attention_window.cached_keys(tokens, window)`` tokens: all of them in a full-attention layer, the last
    ``window`` in a sliding-window one. This is vLLM's hybrid KV cache manager (vllm-project/vllm
    docs/design/hybrid_kv_cache_manager.md: KV cache groups of equal layer counts share one block pool; "full
    attention layers: reserve slots for all tokens; sliding window layers: reserve slots only for the most recent
    sliding_window_size tokens"); vLLM takes the smallest layer count as the group size, the gcd is the same for
    gpt-oss (18 + 18, 12 + 12 layers).
    """

    groups: tuple[tuple[int | None, int], ...] = ((None, 1),)

    @staticmethod
    def of(windows: Iterable[int | None]) -> "KvLayout":
        """The layout of layers attending ``windows`` (one entry per layer, None for full attention)."""
        counts = Counter(windows)
        if not counts:
            raise ConfigError(None, "kv_layout", "at least one layer", 0)
        unit = gcd(*counts.values())
        order = sorted(counts, key=lambda w: (w is not None, w or 0))  # full attention first, then by window
        return KvLayout(groups=tuple((w, counts[w] // unit) for w in order))

    @property
    def units(self) -> int:
        """Layer units in all groups: the units one token takes in every layer (1 without sliding windows)."""
        return sum(u for _, u in self.groups)

    @property
    def windowed(self) -> bool:
        return any(w is not None for w, _ in self.groups)

    def unit_tokens(self, tokens: int) -> int:
        """Tokens times units a sequence at ``tokens`` tokens holds (``tokens`` x ``units`` without windows)."""
        return sum(u * cached_keys(tokens, w) for w, u in self.groups)

    def blocks(self, tokens: int, block_tokens: int) -> int:
        """Blocks a sequence at ``tokens`` tokens holds: per unit, the blocks of the tokens its layers keep."""
        return sum(u * -(-cached_keys(tokens, w) // block_tokens) for w, u in self.groups)

    def blocks_many(self, tokens: np.ndarray, block_tokens: int) -> np.ndarray:
        """``blocks`` of each entry of an integer array (the decode set's contexts)."""
        total = np.zeros_like(tokens)
        for w, u in self.groups:
            kept = tokens if w is None else np.minimum(tokens, w)
            total += u * -(-kept // block_tokens)
        return total

    def sequence_bytes(self, tokens: int, kv_bytes_per_token: float) -> float:
        """KV bytes of a sequence at ``tokens`` tokens, ``kv_bytes_per_token`` being one token in every layer (the
        per-layer rule of graph.params.kv_bytes_per_sequence: a layer keeps cached_keys(tokens, window))."""
        if not self.windowed:
            return tokens * kv_bytes_per_token
        return kv_bytes_per_token * self.unit_tokens(tokens) / self.units

    def sequences_that_fit(self, capacity_tokens: int, tokens: int) -> int:
        """Sequences of ``tokens`` tokens that fit in ``capacity_tokens`` tokens of every layer (no blocks)."""
        return capacity_tokens * self.units // max(1, self.unit_tokens(tokens))


FULL_ATTENTION = KvLayout()


class PagedKVCache:
    """A pool of ``num_blocks`` blocks of ``block_tokens`` tokens each (vLLM PagedAttention layout); a block holds
    those tokens in one layer unit of ``layout`` (every layer, without sliding windows).

    Paging removes external fragmentation, so blocks are counted rather than named; the only waste is
    the partly filled last block of each sequence (and of each group's window), which ``blocks_for`` charges in
    full.
    """

    def __init__(self, *, num_blocks: int, block_tokens: int, layout: KvLayout = FULL_ATTENTION):
        if num_blocks < 1 or block_tokens < 1:
            raise ConfigError(None, "kv_cache", "num_blocks >= 1 and block_tokens >= 1", (num_blocks, block_tokens))
        self.num_blocks = num_blocks
        self.block_tokens = block_tokens
        self.layout = layout
        self.used = 0
        self.peak_used = 0

    def blocks_for(self, tokens: int) -> int:
        """Blocks a sequence of ``tokens`` tokens holds (the last one of each group possibly partly filled)."""
        if not self.layout.windowed:
            return -(-tokens // self.block_tokens)
        return self.layout.blocks(tokens, self.block_tokens)

    def blocks_for_many(self, tokens: np.ndarray) -> np.ndarray:
        """``blocks_for`` of each entry of an integer array."""
        if not self.layout.windowed:
            return -(-tokens // self.block_tokens)
        return self.layout.blocks_many(tokens, self.block_tokens)

    @property
    def free(self) -> int:
        return self.num_blocks - self.used

    def allocate(self, blocks: int) -> None:
        """Take ``blocks`` blocks; the caller checks ``free`` first (running out is a scheduler bug)."""
        if blocks > self.free:
            raise RuntimeError(f"KV cache over-allocated: {blocks} blocks requested, {self.free} free")
        self.used += blocks
        if self.used > self.peak_used:
            self.peak_used = self.used

    def release(self, blocks: int) -> None:
        if blocks > self.used:
            raise RuntimeError(f"KV cache double free: {blocks} blocks released, {self.used} in use")
        self.used -= blocks

    @property
    def occupancy(self) -> float:
        """Fraction of blocks in use."""
        return self.used / self.num_blocks

    @property
    def capacity_tokens(self) -> int:
        """Tokens of every layer the pool holds."""
        return self.num_blocks * self.block_tokens // self.layout.units
