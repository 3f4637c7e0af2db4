"""The grouped GEMM's busiest-expert bound (archsim/cost/traffic.py): a valid lower bound, monotone in tokens."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.config.hardware import load_hardware
from archsim.cost.gemm_traffic import gemm_tile
from archsim.cost.traffic import Geometry, busiest_expert_flops

HW_DIR = Path(__file__).resolve().parents[2] / "hardware"


@lru_cache(maxsize=None)
def geometry(name: str) -> Geometry:
    return Geometry.of(load_hardware(HW_DIR / f"{name}.yaml"))


def bound(name: str, tokens: float, n: int, k: int) -> float:
    geom = geometry(name)
    tile = gemm_tile(geom.sram_per_sm_bytes, 1.0, geom.register_per_sm_bytes)
    return busiest_expert_flops(geom, tokens_max=tokens, n=n, k=k, tile=tile)


def test_without_a_tile_menu_the_largest_tile_binds():
    # MI300X has no kernel tile menu. One token, n = 2048, k = 7168: no SM finishes before its largest tile,
    # 1 x min(2048, T) x 7168 MACs, so the bound is that tile's FLOPs times the SM count.
    geom = geometry("mi300x")
    assert geom.kernel is None
    tile = gemm_tile(geom.sram_per_sm_bytes, 1.0, geom.register_per_sm_bytes)
    assert bound("mi300x", 1, 2048, 7168) == 2.0 * 1 * min(2048, tile) * 7168 * geom.sm_count
    # a huge expert: the chip's own rate binds, 2 m n k
    assert bound("mi300x", 1e6, 2048, 7168) == 2.0 * 1e6 * 2048 * 7168


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(["h100", "mi300x", "a100", "b200"]), tokens=st.integers(1, 4096),
       extra=st.integers(1, 512), n=st.integers(1, 20000), k=st.integers(1, 20000))
def test_more_tokens_never_lower_bound(name, tokens, extra, n, k):
    small, big = bound(name, tokens, n, k), bound(name, tokens + extra, n, k)
    assert big >= small * (1 - 1e-12)
    assert small >= 2.0 * tokens * n * k * (1 - 1e-12)  # never below the expert's useful FLOPs
