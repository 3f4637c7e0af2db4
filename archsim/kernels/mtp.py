"""DeepSeek-V3 multi-token-prediction (MTP) head: one extra depth predicting token i+2.

h'_i = eh_proj([enorm(Emb(t_{i+1})); hnorm(h_i)]) -> one transformer block -> shared_head.norm ->
the main model's lm_head (shared). The concatenation order (embedding first) is the order of the
released checkpoint's ``eh_proj`` as vLLM's deepseek_mtp.py loads it; the paper's eq. (21) writes the
hidden state first, which is the same map with eh_proj's input columns swapped.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from archsim.kernels.counting import Site, sub_site
from archsim.kernels.gemm import linear
from archsim.kernels.norm import rmsnorm


def mtp_head(hidden: np.ndarray, next_embed: np.ndarray, w: Mapping[str, np.ndarray], *, eps: float,
             block: Callable[[np.ndarray], np.ndarray], lm_head: np.ndarray,
             site: Site | None = None) -> np.ndarray:
    """Logits [b, s, V] for token i+2 from the main model's last hidden state h_i [b, s, hidden]
    and the embedding of token i+1 [b, s, hidden]. ``block`` is the MTP depth's transformer block."""
    e = rmsnorm(next_embed, w["enorm"], eps, site=sub_site(site, "enorm"))       # [b, s, hidden]
    hh = rmsnorm(hidden, w["hnorm"], eps, site=sub_site(site, "hnorm"))           # [b, s, hidden]
    x = np.concatenate([e, hh], axis=-1)                                      # [b, s, 2*hidden]
    x = linear(x, w["eh_proj"], site=sub_site(site, "eh_proj"))                   # [b, s, hidden]
    x = block(x)                                                              # [b, s, hidden]
    x = rmsnorm(x, w["shared_head.norm"], eps, site=sub_site(site, "shared_head.norm"))  # [b, s, hidden]
    return linear(x, lm_head, site=sub_site(site, "shared_head.head"))            # [b, s, V]
