"""Capacity limits of a layout: the largest batch that fits at a context, the longest context at a batch.

Both search the fit boundary of ``device_memory.memory_per_device`` (weights, KV cache, activations of the
most loaded device). Activations scale with the sequences a device holds (``activation_bytes_per_seq``: the
peak live activations of one sequence's phase) or not at all (``activation_bytes``: a chunked prefill's forward
holds one chunk whatever the batch).
"""
from __future__ import annotations

from math import ceil
from typing import Callable

from archsim.config.hardware import Hardware
from archsim.config.model import ModelConfig
from archsim.graph.precision import Precision
from archsim.mapping.device_memory import memory_per_device
from archsim.mapping.parallelism import Parallelism


def _largest(fits: Callable[[int], bool], low: int, high: int) -> int:
    """Largest n in [low, high] with fits(n), assuming fits is monotone decreasing; low - 1 if none."""
    if not fits(low):
        return low - 1
    if fits(high):
        return high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def _fits(model: ModelConfig, hw: Hardware, par: Parallelism, precision: Precision, batch: int, context: int,
          activation_bytes_per_seq: float, cache: dict, activation_bytes: float = 0.0) -> bool:
    act = activation_bytes_per_seq * ceil(batch / par.dp) + activation_bytes
    return memory_per_device(model, par, precision, capacity_bytes=hw.main_memory.capacity_bytes, batch=batch,
                             context=context, activation_bytes_per_stage=act, cache=cache).fits


def max_batch(model: ModelConfig, hw: Hardware, par: Parallelism, precision: Precision, *, context: int,
              activation_bytes_per_seq: float = 0.0, activation_bytes: float = 0.0, limit: int = 2 ** 24) -> int:
    """Largest batch (sequences across the deployment) of ``context``-token sequences that fits; 0 if none.
    ``activation_bytes`` is held whatever the batch (a chunked prefill's forward)."""
    cache: dict = {}  # weight bytes do not depend on batch: compute them once per search
    return max(0, _largest(lambda b: _fits(model, hw, par, precision, b, context, activation_bytes_per_seq, cache,
                                           activation_bytes), 1, limit))


def max_context(model: ModelConfig, hw: Hardware, par: Parallelism, precision: Precision, *, batch: int,
                activation_bytes_per_seq: float = 0.0, activation_bytes: float = 0.0) -> int:
    """Longest context (tokens, capped at the model's max_position_embeddings) that fits at ``batch``; 0 if none."""
    cap = model.max_position_embeddings
    cache: dict = {}
    return max(0, _largest(lambda c: _fits(model, hw, par, precision, batch, c, activation_bytes_per_seq, cache,
                                           activation_bytes), 1, cap))
