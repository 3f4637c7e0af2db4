"""Paged KV-cache allocator: fixed-size blocks counted per sequence, plus counters for swap traffic."""
from __future__ import annotations

from archsim.errors import ConfigError

# vLLM's default gpu_memory_utilization (vllm.EngineArgs, 0.9): the share of HBM the engine may use for
# weights plus KV cache; the rest is left to activations and the runtime. A software default, not hardware.
DEFAULT_KV_MEMORY_FRACTION = 0.9


def check_kv_memory_fraction(value: float, field: str = "kv_memory_fraction") -> float:
    """``value`` if it is a share of HBM in (0, 1], else a ConfigError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(None, field, "a fraction of HBM in (0, 1]", value)
    return float(value)


class PagedKVCache:
    """A pool of ``num_blocks`` blocks of ``block_tokens`` tokens each (vLLM PagedAttention layout).

    Paging removes external fragmentation, so blocks are counted rather than named; the only waste is
    the partly filled last block of each sequence, which ``blocks_for`` charges in full.
    """

    def __init__(self, *, num_blocks: int, block_tokens: int):
        if num_blocks < 1 or block_tokens < 1:
            raise ConfigError(None, "kv_cache", "num_blocks >= 1 and block_tokens >= 1", (num_blocks, block_tokens))
        self.num_blocks = num_blocks
        self.block_tokens = block_tokens
        self.used = 0
        self.peak_used = 0

    def blocks_for(self, tokens: int) -> int:
        """Blocks that hold ``tokens`` tokens (the last one possibly partly filled)."""
        return -(-tokens // self.block_tokens)

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
        return self.num_blocks * self.block_tokens
