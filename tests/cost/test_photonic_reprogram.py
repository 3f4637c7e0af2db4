"""A weight-stationary photonic engine loads each op's weights before its MACs (cost/engines.reprogram_s): the
scalar and array paths add the same time, as the default engine and as an alternative; DOTA (not weight-stationary)
pays nothing."""
from __future__ import annotations

import dataclasses
import math

import pytest

from archsim.config.hardware import load_hardware
from archsim.cost.engines import reprogram_s
from archsim.cost.opcost import price_candidates
from archsim.cost.phase import price_graph
from archsim.cost.traffic import Geometry, op_work
from archsim.dtypes import FP8
from tests.cost.fixtures import gemm_op, price_op

SETTLE = 2e-6  # a MEMS-class settling time (SimPhony phase_shifter.yml: MEMS 2 us), for the test only


def _stationary(engine):
    spec = dataclasses.replace(engine.photonic, weight_stationary=True, reprogram_time_s=SETTLE)
    return dataclasses.replace(engine, photonic=spec)


@pytest.fixture(scope="module")
def chips():
    dota = load_hardware("photonic_dota_l")
    ws = dataclasses.replace(dota, compute={**dota.compute, "photonic": _stationary(dota.compute["photonic"])})
    h100 = load_hardware("h100")
    two = dataclasses.replace(h100, compute={**h100.compute, "photonic": _stationary(dota.compute["photonic"])})
    return dota, ws, two


def test_reprogram_time_by_hand(chips):
    dota, ws, _ = chips
    op = gemm_op("g", 64, 4096, 4096, weight=FP8)
    # 4096 x 4096 weights in loads of 12 x 12 x 16 = 2304: 7282 loads x 2 us
    assert reprogram_s(op, ws.compute["photonic"]) == pytest.approx(math.ceil(4096 * 4096 / 2304) * SETTLE)
    assert reprogram_s(op, dota.compute["photonic"]) == 0.0
    slow, fast = price_op(op, ws), price_op(op, dota)
    assert slow.compute_s == pytest.approx(fast.compute_s + 7282 * SETTLE)
    assert slow.time_s > fast.time_s


@pytest.mark.parametrize("which", [1, 2])
def test_array_path_adds_the_same_time(chips, which):
    hw = chips[which]
    ops = [gemm_op("small", 1, 4096, 4096, weight=FP8), gemm_op("big", 4096, 4096, 4096, weight=FP8)]
    phase = price_graph(ops, hw)
    for op in ops:
        ref = price_op(op, hw)
        assert phase.ops[op.name].time_s == pytest.approx(ref.time_s, rel=1e-12)
        assert phase.ops[op.name].engine == ref.engine


def test_reprogramming_keeps_ops_off_a_stationary_alternative(chips):
    """On an H100 with a weight-stationary photonic engine beside its tensor cores, the engine's 14.6 ms of weight
    loads for a 4096 x 4096 GEMV make it the slower candidate: the op stays on the tensor cores."""
    _, _, two = chips
    op = gemm_op("gemv", 1, 4096, 4096, weight=FP8)
    costs = price_candidates(op, op_work(op, Geometry.of(two)), two)
    assert costs["photonic"].time_s > costs["tensor"].time_s
    assert price_op(op, two).engine == "tensor"
