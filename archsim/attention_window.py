"""Sliding-window attention and attention sinks: the counting rules graph, cost and kernels share.

A query at absolute position p (0-based) of a layer with window W attends keys max(0, p - W + 1) .. p, i.e.
min(p + 1, W) keys, itself included (transformers masking_utils ``sliding_window_overlay``: key j is visible
iff j > p - W, the mask gpt-oss's "sliding_attention" layers use; W = ``sliding_window`` = 128 for gpt-oss).
``window`` None is plain causal attention (every earlier key).

An attention sink (gpt-oss GptOssAttention ``sinks`` [heads]) is one more logit per (query, head) in the
softmax, with no value row: ``softmax([scores, sink])`` with the sink's column dropped. It costs
SINK_FLOPS_PER_ROW per (query, head): subtract the running max, exp, add to the denominator (taking the max is a
comparison, 0 FLOPs by docs/counting.md; the sink logit is not scaled).
"""
from __future__ import annotations

SINK_FLOPS_PER_ROW = 3


def attended_pairs(q_len: int, kv_len: int, window: int | None = None) -> int:
    """Unmasked (query, key) pairs per head for queries at positions kv_len - q_len .. kv_len - 1:
    sum over those p of min(p + 1, window) (p + 1 without a window)."""
    full = q_len * kv_len - q_len * (q_len - 1) // 2
    if window is None or window >= kv_len:
        return full
    first = kv_len - q_len
    last_short = min(kv_len - 1, window - 1)          # positions p <= window - 1 see p + 1 <= window keys
    if last_short < first:
        return q_len * window
    short = (last_short + 1) * (last_short + 2) // 2 - first * (first + 1) // 2
    return short + (q_len - (last_short - first + 1)) * window


def first_key(q_len: int, kv_len: int, window: int | None = None) -> int:
    """Index of the first key any of the step's queries attends (0 without a window)."""
    if window is None:
        return 0
    return max(0, kv_len - q_len - window + 1)


def keys_read(q_len: int, kv_len: int, window: int | None = None) -> int:
    """Keys per sequence the step's queries attend at all: kv_len - first_key, min(kv_len, window + q_len - 1)."""
    return kv_len - first_key(q_len, kv_len, window)


def cached_keys(context: int, window: int | None = None) -> int:
    """Keys a layer's KV cache holds per sequence at ``context`` tokens: all of them, or the last ``window``
    (what the next query can still attend, as a sliding-window cache keeps)."""
    return context if window is None else min(context, window)
