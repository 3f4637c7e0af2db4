"""The Triton copy kernel of microbench_torch's bandwidth-vs-CTA-count benchmark. Imported only when that
benchmark runs (Triton ships with CUDA builds of PyTorch and is heavy to import), never at package import."""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def stream_copy_kernel(src, dst, chunk, BLOCK: tl.constexpr):
    """Each program copies its own ``chunk`` contiguous fp32 elements, BLOCK at a time."""
    base = tl.program_id(0).to(tl.int64) * chunk
    for off in range(0, chunk, BLOCK):
        idx = base + off + tl.arange(0, BLOCK)
        tl.store(dst + idx, tl.load(src + idx))
