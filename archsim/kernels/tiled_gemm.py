"""Output-stationary tiled GEMM that counts the bytes it moves: L2 -> shared memory per tile, and
HBM reads under a banded raster (a band of one operand's panels held in L2 while the other streams).

It executes the schedule that archsim/cost/gemm.py (banded_traffic) prices: T x T output tiles, k-slabs of
depth bk staged through shared memory, row panels of A (or column panels of B) banded in L2,
``G = max(1, floor((L2 - one streamed panel) / one banded panel))`` panels per band (mean panel
sizes), the streamed operand read once per band unless it fits L2 whole; ``raster="auto"`` plans
both orders and runs the one with fewer HBM bytes.
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np

from archsim.kernels.counting import Site


def _edges(size: int, tile: int) -> list[tuple[int, int]]:
    return [(i, min(i + tile, size)) for i in range(0, size, tile)]


def _reads_of_streamed(panels_banded: int, streamed_total: float, banded_panel: float, streamed_panel: float,
                       l2_bytes: float) -> int:
    """How many times the streamed operand comes from HBM: once if it fits L2, else once per band."""
    if streamed_total <= l2_bytes:
        return 1
    band = max(1, int((l2_bytes - streamed_panel) // banded_panel)) if banded_panel > 0 else panels_banded
    return math.ceil(panels_banded / band)


def tiled_linear(x: np.ndarray, w: np.ndarray, *, tile: int, depth: int, l2_bytes: float,
                 raster: Literal["a", "b", "auto"] = "auto", site: Site | None = None) -> np.ndarray:
    """y = x @ w.T (x [m, k], w [n, k] checkpoint layout) computed tile by tile.

    Byte sizes use the site's declared dtypes (x and y as activations, w with its block scales);
    a panel's share of an operand is proportional to its rows. Records hbm_read/write bytes and, in
    attrs, ``smem_bytes`` (L2 -> shared memory, C written once) and the raster used.
    """
    m, k = x.shape
    n = w.shape[0]
    rows, cols, slabs = _edges(m, tile), _edges(n, tile), _edges(k, depth)
    y = np.zeros((m, n), dtype=np.result_type(x, w))                              # [m, n] accumulators
    a_bytes = site.dtype("x", "activation").storage_bytes((m, k)) if site else 0.0
    b_bytes = site.dtype("weight", "weight").storage_bytes((n, k)) if site else 0.0
    c_bytes = site.dtype("y", "activation").storage_bytes((m, n)) if site else 0.0
    pm, pn = len(rows), len(cols)
    plans = {
        "a": (a_bytes + b_bytes * _reads_of_streamed(pm, b_bytes, a_bytes / pm, b_bytes / pn, l2_bytes)),
        "b": (b_bytes + a_bytes * _reads_of_streamed(pn, a_bytes, b_bytes / pn, a_bytes / pm, l2_bytes)),
    }
    if raster == "auto":
        raster = "a" if plans["a"] <= plans["b"] else "b"
    smem = 0.0
    hbm = _run_banded(raster, rows, cols, a_bytes, b_bytes, m, n, l2_bytes)
    for r0, r1 in rows:
        for c0, c1 in cols:
            acc = np.zeros((r1 - r0, c1 - c0), dtype=y.dtype)                   # [T, T] in registers
            for k0, k1 in slabs:
                a_slab = x[r0:r1, k0:k1]                                          # [rows, bk] -> SMEM
                b_slab = w[c0:c1, k0:k1]                                          # [cols, bk] -> SMEM
                acc += a_slab @ b_slab.T                                          # [rows, cols]
                smem += a_bytes * (r1 - r0) * (k1 - k0) / (m * k) + b_bytes * (c1 - c0) * (k1 - k0) / (n * k)
            y[r0:r1, c0:c1] = acc                                                 # write C tile once
    if site is not None:
        site.record(kind="gemm", flops=2 * m * n * k,
                    reads=[("x", (m, k), "activation"), ("weight", w.shape, "weight")],
                    writes=[("y", (m, n), "activation")], hbm_read_bytes=hbm, hbm_write_bytes=c_bytes,
                    m=m, n=n, k=k, tile=tile, depth=depth, raster=raster, smem_bytes=smem + c_bytes,
                    planned_hbm_bytes={key: v + c_bytes for key, v in plans.items()})
    return y


def _run_banded(raster: str, rows, cols, a_bytes: float, b_bytes: float, m: int, n: int, l2_bytes: float) -> float:
    """HBM bytes read by walking the banded raster: banded panels load once, streamed panels once
    per band (or once in all when the streamed operand fits L2)."""
    if raster == "a":
        banded, streamed = [(r1 - r0) * a_bytes / m for r0, r1 in rows], [(c1 - c0) * b_bytes / n for c0, c1 in cols]
        banded_total, streamed_total = a_bytes, b_bytes
    else:
        banded, streamed = [(c1 - c0) * b_bytes / n for c0, c1 in cols], [(r1 - r0) * a_bytes / m for r0, r1 in rows]
        banded_total, streamed_total = b_bytes, a_bytes
    mean_banded, mean_streamed = banded_total / len(banded), streamed_total / len(streamed)
    fits = streamed_total <= l2_bytes
    band = max(1, int((l2_bytes - mean_streamed) // mean_banded)) if mean_banded > 0 else len(banded)
    resident: set[int] = set()          # streamed panels held in L2 (only when they all fit)
    hbm = 0.0
    for b0 in range(0, len(banded), band):
        hbm += sum(banded[b0:b0 + band])                                         # the band's panels, once
        for j, size in enumerate(streamed):
            if j not in resident:
                hbm += size                                                      # stream panel j in
                if fits:
                    resident.add(j)
    return hbm
