"""The placement rule in the cost layer (cost/engines.py, opcost.price_candidates / fastest, work.price_work): each op
runs on the fastest engine that can run it, in the scalar path and in the array path alike, per sweep point.

Chips: hardware/h100_hbm_pim.yaml (H100 + bank-level PIM: 13.4 TB/s internal at Aquabolt-XL's 0.977 FLOP/byte =
13.1 TFLOPS BF16/FP16 at 0.634 achievable, MAC but no exp: GEMMs and grouped GEMMs, not attention; 388 ns mode
switch per op), and a two-engine chip, the H100 with hardware/photonic_dota_l.yaml's photonic engine beside its
tensor cores (DOTA-L: 2 x 12 x 12 x 12 x 16 x 5 GHz = 276.5 TFLOPS, achievable 1.0, the authors' timing model).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from archsim.cost.power import capped_time_s
from archsim.config.hardware import load_hardware
from archsim.cost.engines import other_engine_keys, pim_dtype, pim_operand_bytes
from archsim.cost.opcost import fastest, price_candidates, price_on_engine, price_on_pim, price_work_item
from archsim.cost.phase import price_graph
from archsim.cost.traffic import Geometry, op_work
from archsim.cost.work import extract_work, hardware_arrays, price_work, stack_hardware
from archsim.dtypes import BF16, FP8
from tests.cost.fixtures import attention_op, gemm_op, grouped_op, h100_like, norm_op, price_op

HW = Path(__file__).resolve().parents[2] / "hardware"


@pytest.fixture(scope="module")
def pim_chip():
    return load_hardware(HW / "h100_hbm_pim.yaml")


@pytest.fixture(scope="module")
def two_engine_chip():
    h100 = load_hardware(HW / "h100.yaml")
    photonic = load_hardware(HW / "photonic_dota_l.yaml").compute["photonic"]
    return dataclasses.replace(h100, compute={**h100.compute, "photonic": photonic})


def _ops():
    """Decode-like ops: BF16 and FP8 GEMVs, a compute-bound BF16 GEMM, GQA decode attention, a norm, grouped experts."""
    return [norm_op("norm", 1, 8192), gemm_op("gemv", 1, 8192, 8192, weight=BF16),
            gemm_op("gemv_fp8", 1, 8192, 8192, weight=FP8), gemm_op("big", 4096, 8192, 8192, weight=BF16),
            gemm_op("rows16", 16, 8192, 8192, weight=BF16),
            attention_op("attn", batch=1, q_len=1, kv_len=8192, heads_q=64, heads_kv=8, d_qk=128, d_v=128,
                         causal=True),
            grouped_op("experts", tokens_per_expert=(1.0,) * 8 + (0.0,) * 56, n=2048, k=7168, weight=BF16)]


def _assert_array_equals_scalar(ops, hw, cost=None, index=()):
    """Each op row of the array path (at sweep index ``index``) equals the scalar path's fastest candidate."""
    cost = cost if cost is not None else price_work(extract_work(ops, hw), hardware_arrays(hw, extract_work(ops, hw)))
    for i, op in enumerate(ops):
        ref = price_op(op, hw)
        assert cost.time_s[index + (i,)] == pytest.approx(ref.time_s, rel=1e-12), op.name
        assert cost.energy_j[index + (i,)] == pytest.approx(ref.energy_j, rel=1e-12), op.name
        assert cost.bound_labels[cost.bound_index[index + (i,)]] == ref.bound, op.name
        code = 0 if cost.engine_choice is None else int(cost.engine_choice[index + (i,)])
        engine = cost.engine_labels[code] if code else price_on_engine(op, op_work(op, Geometry.of(hw)), hw).engine
        assert engine == ref.engine, op.name
        bytes_by_level = [ref.bytes_by_level[name] for name in hw.memory]
        np.testing.assert_allclose(cost.bytes[index + (i,)], bytes_by_level, rtol=1e-12)


def test_a_chip_without_alternatives_carries_none():
    for hw in (h100_like(), load_hardware(HW / "h100.yaml"), load_hardware(HW / "photonic_dota_l.yaml")):
        work = extract_work(_ops(), hw)
        assert work.alternatives is None
        assert price_work(work, hardware_arrays(hw, work)).engine_choice is None


def test_candidates_of_each_op(pim_chip, two_engine_chip):
    ops = {op.name: op for op in _ops()}
    assert pim_dtype(ops["gemv"], pim_chip) == "bf16"
    assert pim_dtype(ops["gemv_fp8"], pim_chip) is None          # the PIM units have no FP8 peak
    assert pim_dtype(ops["experts"], pim_chip) == "bf16"         # grouped GEMMs are MACs too
    assert pim_dtype(ops["attn"], pim_chip) is None              # its softmax needs exp, which the units lack
    assert pim_dtype(ops["norm"], pim_chip) is None
    assert pim_operand_bytes(ops["gemv"]) == (8192 * 8192 * 2, 8192 * 2 + 8192 * 2)
    assert other_engine_keys(ops["gemv"], two_engine_chip, ("tensor", "bf16")) == [("photonic", "bf16")]
    assert other_engine_keys(ops["norm"], two_engine_chip, ("vector", "bf16")) == []
    assert list(price_candidates(ops["gemv"], op_work(ops["gemv"], Geometry.of(pim_chip)), pim_chip)) == [
        "tensor", "pim"]


def test_gqa_decode_attention_stays_on_the_gpu_by_hand(pim_chip):
    """Aquabolt-XL's units have no exp, so attention (its softmax) never runs on them. Units with exp would take
    64 query heads over 8 KV heads: 271 MFLOP over 33.6 MB of KV. PIM: 64 x 8192 x (2 x 128 + 5 + 2 x 128)
    = 271,056,896 FLOPs / (13.086e12 x 0.634 achievable) = 32.7 us + 0.388 us mode switch (its KV reads in place:
    2 x 8192 x 8 x 128 x 2 B / (13.4e12 x 0.634) = 4.0 us). Tensor cores: the 33.6 MB of KV over the interface, 33.6e6 / (3.35e12 x 0.896) = 11.2 us,
    compute far less."""
    op = _ops()[5]
    assert op.flops == 64 * 8192 * (2 * 128 + 5 + 2 * 128)
    assert price_on_pim(op, op_work(op, Geometry.of(pim_chip)), pim_chip) is None
    with_exp = dataclasses.replace(pim_chip, pim=dataclasses.replace(pim_chip.pim, kinds=("gemm", "attention")))
    pim = price_on_pim(op, op_work(op, Geometry.of(with_exp)), with_exp)
    peak = 1.2e12 / (4 * 307.2e9) * 4 * 3.35e12 * 0.634  # hardware/h100_hbm_pim.yaml pim.achievable_fraction
    assert (pim.bound, pim.time_s) == ("pim:compute", pytest.approx(op.flops / peak + 8 * 48.5e-9, rel=1e-12))
    assert pim.bytes_by_level["hbm"] == 2 * 64 * 128 * 2  # q in, o out
    gpu = price_op(op, with_exp)
    assert gpu.engine == "tensor" and gpu.time_s < pim.time_s / 1.5
    assert gpu.time_s >= 2 * 8192 * 8 * 128 * 2 / (3.35e12 * 0.896)


@pytest.mark.parametrize("chip", ["pim_chip", "two_engine_chip"])
def test_array_path_places_like_the_scalar_path(chip, request):
    hw = request.getfixturevalue(chip)
    ops = _ops()
    _assert_array_equals_scalar(ops, hw)
    phase = price_graph(ops, hw)
    for op in ops:
        assert phase.ops[op.name].engine == price_op(op, hw).engine
    engines = {op.name: phase.ops[op.name].engine for op in ops}
    if chip == "pim_chip":
        assert engines == {"norm": "vector", "gemv": "pim", "gemv_fp8": "tensor", "big": "tensor",
                           "rows16": "tensor", "attn": "tensor", "experts": "pim"}
        assert "pim:compute" in phase.time_s_by_bound
    else:  # memory-bound GEMVs: the photonic roofline has no kernel ramp or epilogue; the big GEMM needs the MMAs
        assert engines["gemv"] == engines["gemv_fp8"] == "photonic"
        assert engines["big"] == "tensor"


def test_placement_takes_the_least_time_and_ties_keep_the_default(pim_chip):
    """A second matrix engine identical to the first prices a (non-tiled) attention op identically: the tie keeps
    the default engine in both paths; the PIM GEMV still goes to the PIM."""
    twin = dataclasses.replace(pim_chip.compute["tensor"], name="tensor2")
    hw = dataclasses.replace(pim_chip, compute={**pim_chip.compute, "tensor2": twin})
    ops = _ops()
    geom = Geometry.of(hw)
    attn = ops[5]
    costs = price_candidates(attn, op_work(attn, geom), hw)
    assert list(costs) == ["tensor", "tensor2"]  # attention is no PIM kind (no exp)
    assert costs["tensor"].time_s == costs["tensor2"].time_s
    assert fastest(costs).engine == "tensor"
    for op in ops:
        costs = price_candidates(op, op_work(op, geom), hw)
        assert price_work_item(op, op_work(op, geom), hw) == fastest(costs)
        assert fastest(costs).time_s == min(c.time_s for c in costs.values())
    phase = price_graph(ops, hw)
    assert phase.ops["attn"].engine == "tensor" and phase.ops["gemv"].engine == "pim"
    _assert_array_equals_scalar(ops, hw)


def test_each_sweep_point_chooses_its_own_engine(pim_chip):
    """PIM peaks of 0.1 to 100 TFLOPS. The 1 x 8192 x 8192 BF16 GEMV (134.2 MFLOP) streams 134.2 MB of weights
    through the tensor cores' interface, 134.2e6 / (3.35e12 x 0.896) = 44.7 us plus the kernel's ramp: it moves to the
    PIM once 134.2e6 / peak is shorter, i.e. above ~2.9 TFLOPS (1 TFLOPS: 134 us, stays; 6: 22 us, moves). The
    16-row GEMM has 16 x the FLOPs on the same weights: it needs ~46 TFLOPS (30: 72 us, stays; 100: 21 us, moves).
    Every point equals the chip with that peak priced alone."""
    peaks = [0.1e12, 1e12, 6e12, 30e12, 100e12]
    chips = [dataclasses.replace(pim_chip, pim=dataclasses.replace(
        pim_chip.pim, peak_flop_per_s={"fp16": p, "bf16": p})) for p in peaks]
    ops = _ops()
    work = extract_work(ops, pim_chip)
    swept = price_work(work, stack_hardware([hardware_arrays(hw, work) for hw in chips]))
    assert swept.time_s.shape == (len(peaks), len(ops))
    for s, hw in enumerate(chips):
        _assert_array_equals_scalar(ops, hw, swept, (s,))
    gemv, rows16 = 1, 4
    codes = swept.engine_choice
    assert [swept.engine_labels[c] or "tensor" for c in codes[:, gemv]] == ["tensor", "tensor", "pim", "pim", "pim"]
    assert [swept.engine_labels[c] or "tensor" for c in codes[:, rows16]] == ["tensor"] * 4 + ["pim"]
    assert np.all(np.diff(swept.total_time_s) <= 0)


def test_a_swept_engine_peak_moves_the_big_gemm_to_the_photonic_engine(two_engine_chip):
    """The 4096 x 8192 x 8192 BF16 GEMM (550 GFLOP) is compute-bound on the tensor cores: 989.4 x 0.78 TFLOPS,
    ~0.71 ms plus tile padding, against 276.5 x 1.0 photonic, 1.99 ms. At 4 PFLOPS the photonic MACs take 0.18 ms
    and its roofline is bound by the SRAM-tile rule's L2 bytes (64 x 2 x 33.6 MB / 10 TB/s = 0.43 ms): without a
    power cap (swept TDP = inf) still faster, so the op moves, with the photonic engine's energy per FLOP. Under the
    chip's 700 W cap (cost/power.py) each engine's time is its capped time, and the op takes the least of them."""
    ops = _ops()
    work = extract_work(ops, two_engine_chip)
    k = work.rate_keys.index(("photonic", "bf16"))
    base = hardware_arrays(two_engine_chip, work)
    peaks = np.array([276.5e12, 4000e12, 4000e12])
    peak = np.repeat(base.peak_flop_per_s[None, :], len(peaks), axis=0)
    peak[:, k] = peaks
    tdp = np.array([700.0, np.inf, 700.0])
    swept = price_work(work, dataclasses.replace(base, peak_flop_per_s=peak, tdp_w=tdp,
                                                 idle_w=np.repeat(base.idle_w, 3)))
    big = 3
    assert swept.engine_choice[0, big] == 0 and swept.engine_labels[swept.engine_choice[1, big]] == "photonic"
    engine = two_engine_chip.compute["photonic"]
    assert swept.compute_s[1, big] == pytest.approx(ops[big].flops / (4000e12 * engine.achievable_fraction),
                                                    rel=1e-12)
    assert swept.bound_labels[swept.bound_index[1, big]] == "memory:l2"
    roofline_s = work.bytes[big, work.level_names.index("l2")] / 10e12 + 109e-9
    assert swept.time_s[1, big] == pytest.approx(roofline_s, rel=1e-12)
    assert swept.time_s[1, big] < swept.time_s[0, big]
    assert swept.compute_j[1, big] == pytest.approx(ops[big].flops * engine.energy_j_per_flop["bf16"], rel=1e-12)
    # capped at 700 W: the engines are compared at their capped times, and the op takes the least of them
    photonic_capped_s = capped_time_s(roofline_s, swept.energy_j[1, big], 700.0, two_engine_chip.busy_power_w)
    tensor_s = swept.time_s[0, big]
    assert swept.time_s[2, big] == pytest.approx(min(photonic_capped_s, tensor_s), rel=1e-12)
    assert swept.engine_choice[2, big] == (0 if tensor_s <= photonic_capped_s else swept.engine_choice[1, big])


def test_compress_keeps_alternatives_and_totals(pim_chip):
    layers = [dataclasses.replace(o, name=f"l{i}.{o.name}") for i in range(4) for o in _ops()]
    work = extract_work(layers, pim_chip)
    small = work.compress()
    assert len(small.names) == len(_ops()) and small.alternatives is not None
    full, comp = (price_work(w, hardware_arrays(pim_chip, w)) for w in (work, small))
    assert comp.total_time_s == pytest.approx(full.total_time_s, rel=1e-12)
    assert comp.total_energy_j == pytest.approx(full.total_energy_j, rel=1e-12)
    # each engine runs as many op instances either way
    np.testing.assert_array_equal(np.bincount(full.engine_choice, minlength=3),
                                  np.bincount(comp.engine_choice, weights=small.count, minlength=3))
