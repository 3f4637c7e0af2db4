"""The board power cap on one op's price: an op whose dynamic energy over its time would draw more than the
chip's TDP runs at a lower clock until it does not, so its time stretches to ``dynamic / (TDP - static)``.

First order: the energy is kept (the lower voltage at the capped clock would save some; not modelled), so a capped
op draws exactly TDP. Hopper holds its cap this way under dense tensor work: the FlashMLA deep dive
(github.com/deepseek-ai/FlashMLA docs/20250422-new-kernel-deep-dive.md) sees the H800 throttle to ~1600 MHz, and an
H200 measured for archsim held 1440-1545 MHz at 700 W on back-to-back 8192^3 BF16 GEMMs
(validation/h200_torch_clock_20261128.json). Used by ``cost/opcost.py`` (one op) and ``cost/work.py`` (arrays).
"""
from __future__ import annotations

import numpy as np


def capped_time_s(time_s, dynamic_j, tdp_w, static_w):
    """``max(time_s, dynamic_j / (tdp_w - static_w))``, element-wise (floats or broadcastable arrays). A chip whose
    static power reaches its TDP (no headroom) leaves the time as it is."""
    headroom = np.asarray(tdp_w, dtype=float) - np.asarray(static_w, dtype=float)
    floor = np.divide(dynamic_j, headroom, out=np.zeros(np.broadcast_shapes(np.shape(dynamic_j), headroom.shape)),
                      where=headroom > 0)
    out = np.maximum(time_s, floor)
    return float(out) if np.ndim(out) == 0 else out
