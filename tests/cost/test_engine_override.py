"""The engine override of ``opcost.price_work_item`` (``key``, used by whatif/placement.py): an op moved to a
second engine is priced by that engine's plain roofline, not by the default engine's tiled-GEMM terms (SM tile
padding, kernel ramp, L2 operand feed describe the GPU's GEMM kernel, not a photonic core's)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from archsim.config.hardware import load_hardware
from archsim.cost.opcost import price_on_engine, price_work_item, rate_key
from tests.cost.fixtures import price_op
from archsim.cost.rates import level_bytes_per_s
from archsim.cost.traffic import Geometry, op_work
from archsim.dtypes import BF16
from archsim.graph.op import Op, Operand
from archsim.whatif.placement import place_op

HW = Path(__file__).resolve().parents[2] / "hardware"


def _gemm(m: int, n: int, k: int) -> Op:
    a = Operand(name="x", shape=(m, k), dtype=BF16, role="activation", nbytes=BF16.storage_bytes((m, k)))
    w = Operand(name="weight", shape=(n, k), dtype=BF16, role="weight", nbytes=BF16.storage_bytes((k, n)))
    y = Operand(name="y", shape=(m, n), dtype=BF16, role="output", nbytes=BF16.storage_bytes((m, n)))
    return Op(name="g", kind="gemm", engine="matrix", compute_dtype=BF16, flops=2 * m * n * k, reads=(a, w),
              writes=(y,), attrs={"m": m, "n": n, "k": k})


@pytest.fixture(scope="module")
def two_engine_chip():
    """The H100 (tensor cores, GEMM tile menu) with DOTA-L's photonic engine added beside its tensor cores."""
    h100 = load_hardware(HW / "h100.yaml")
    photonic = load_hardware(HW / "photonic_dota_l.yaml").compute["photonic"]
    return dataclasses.replace(h100, compute={**h100.compute, "photonic": photonic})


# m = 100 leaves a partial m-block (tile padding on the tensor cores); m = 4096 is compute-bound on both engines
@pytest.mark.parametrize("m", [1, 100, 4096])
def test_op_moved_to_the_photonic_engine_is_priced_by_its_roofline(two_engine_chip, m):
    hw = two_engine_chip
    op = _gemm(m, 7168, 2048)
    work = op_work(op, Geometry.of(hw))
    assert work.tiled  # on its default engine the op is a tiled GEMM
    key = ("photonic", "bf16")
    assert key != rate_key(hw, op)
    cost = price_work_item(op, work, hw, key=key)
    engine = hw.compute["photonic"]
    compute_s = op.flops / (engine.peak_flop_per_s["bf16"] * engine.achievable_fraction * hw.compute_clock_fraction)
    assert cost.compute_s == pytest.approx(compute_s, rel=1e-12)  # the op's own FLOPs: no GPU tile padding
    main = hw.main_memory
    for name, level in hw.memory.items():
        nbytes = work.bytes_by_level[name]
        clock = 1.0 if level is main else hw.compute_clock_fraction
        expected = 0.0 if nbytes <= 0 else nbytes / level_bytes_per_s(level, clock) + level.latency_s
        assert cost.memory_s_by_level[name] == pytest.approx(expected, rel=1e-12), name
    parts = [cost.compute_s, cost.launch_s, *cost.memory_s_by_level.values()]
    assert cost.time_s == max(parts)  # the plain roofline: no kernel ramp, no operand-feed term
    assert cost.engine == "photonic"
    # the default engine keeps the kernel model's tiled price, as on the H100 itself
    default = price_on_engine(op, work, hw)
    assert default.engine == "tensor"
    assert default.time_s == pytest.approx(price_op(op, load_hardware(HW / "h100.yaml")).time_s, rel=1e-12)
    # placement offers the photonic roofline price as the alternative
    placed = place_op(op, hw)
    assert placed.alternatives["photonic"].time_s == pytest.approx(cost.time_s, rel=1e-12)
    # and the cost model runs the op on the faster of the two (ties: the default engine)
    picked = price_work_item(op, work, hw)
    assert picked == (cost if cost.time_s < default.time_s else default)
    assert placed.engine == picked.engine
