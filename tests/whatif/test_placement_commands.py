"""Every command prices each op on the engine placement chooses (cost/engines.py, the cost model's rule): estimate(),
``archsim place --objective time`` and a sweep agree on a near-memory chip (hardware/h100_hbm_pim.yaml), op by op.

Hand derivation used below (hardware/h100_hbm_pim.yaml, derived by config/derive_pim.py): the PIM units keep
Aquabolt-XL's balance, 1.2 TFLOPS / (4 x 307.2 GB/s) = 0.9766 FLOP per byte, at 4 x 3.35 TB/s = 13.4 TB/s of
in-place reads, so BF16 runs at 0.9766 x 13.4e12 = 13.086 TFLOPS x achievable fraction 1.0 (no thermal derate); they
move activations over the HBM interface at 3.35 TB/s x 0.896 = 3.0016 TB/s, each memory term plus the HBM latency of
328 ns, and every PIM op pays 8 mode-register row writes x 48.5 ns = 388 ns to enter and leave PIM mode; a
CUDA-graph decode kernel's launch floor is 2.1 us. The PIM stacks keep 6/8 of the 80 GB (60 GB). Llama-3.1-405B
decode at batch 1 runs TP8 on the chip (16 devices, TP8 PP2), so ``layers.0.mlp.gate_proj`` is a GEMV of
k = 16384 (hidden) by n = 53248 / 8 = 6656 (its TP shard of the FFN):
  FLOPs     = 2 x 6656 x 16384                  = 218,103,808
  compute   = 218,103,808 / 13.086e12           = 16.67 us   <- binds (pim:compute)
  internal  = 6656 x 16384 x 2 B / 13.4e12 + 328 ns = 16.28 + 0.33 = 16.60 us
  external  = (16384 + 6656) x 2 B / 3.0016e12 + 328 ns = 0.34 us
  launch    = 2.1 us
  time      = 16.67 + 0.388 (mode switch)     = 17.05 us
On the tensor cores the same GEMV must stream its 218 MB of weights over the interface: >= 218.1e6 / 3.0016e12
= 72.66 us, so the PIM runs it 4x faster.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest

from archsim.api import estimate, plan
from archsim.cli import main as cli
from archsim.config.hardware import load_hardware
from archsim.cost.opcost import price_on_engine, price_on_pim
from archsim.cost.rates import ChipRates
from archsim.cost.traffic import Geometry, op_work
from archsim.whatif.placement import place_graph
from archsim.whatif.sweep import SweepModel

REPO = Path(__file__).resolve().parents[2]
LLAMA, KIMI = REPO / "workloads" / "llama3_405b.yaml", REPO / "workloads" / "kimi_k2.yaml"


@pytest.fixture(scope="module")
def pim_chip():
    return load_hardware(REPO / "hardware" / "h100_hbm_pim.yaml")


@pytest.fixture(scope="module")
def h100():
    """The H100 at the PIM stacks' capacity (60 GB): the PIM chip without its units, so layouts are the same."""
    hw = load_hardware(REPO / "hardware" / "h100.yaml")
    hbm = dataclasses.replace(hw.memory["hbm"], capacity_bytes=60e9)
    return dataclasses.replace(hw, memory={**hw.memory, "hbm": hbm})


BF16_PEAK = 1.2e12 / (4 * 307.2e9) * 4 * 3.35e12  # the derivation above: 13.086 TFLOPS
MODE_SWITCH = 8 * 48.5e-9
PIM_FRACTION = 0.634  # hardware/h100_hbm_pim.yaml: PIMSimulator's GEMV, 8192^2 over 4096^2 (derive_pim)


def _decode_cost(workload, hw, **kw):
    """The decode PhaseCost estimate() reports (one device of the decode pool) and its layout."""
    pool = plan(workload, hw, **kw).plan.pool("decode")
    return pool.decode.graph_cost, pool.parallelism


def test_the_yaml_fields_the_derivation_uses(pim_chip):
    pim, hbm = pim_chip.pim, pim_chip.memory["hbm"]
    assert pim.peak_flop_per_s["bf16"] == pytest.approx(BF16_PEAK, rel=1e-12)
    assert (pim.achievable_fraction, pim.internal_bandwidth_bytes_per_s) == (PIM_FRACTION, 4 * 3.35e12)
    assert pim.mode_switch_s == pytest.approx(MODE_SWITCH) and set(pim.kinds) == {"gemm", "grouped_gemm"}
    assert (hbm.bandwidth_bytes_per_s, hbm.achievable_fraction, hbm.latency_s) == (3.35e12, 0.896, 328e-9)
    assert hbm.capacity_bytes == pytest.approx(80e9 * 6 / 8)
    assert pim_chip.compute_clock_fraction == 1.0 and pim_chip.graph_launch_s == 2.1e-6


def test_llama_405b_bf16_decode_gemv_runs_on_pim_at_the_hand_derived_time(pim_chip, h100):
    cost, par = _decode_cost(LLAMA, pim_chip, batch=1)
    assert (par.tp, par.pp) == (8, 2)
    op = cost.ops["layers.0.mlp.gate_proj"]
    assert op.flops == 2 * 6656 * 16384
    compute = 2 * 6656 * 16384 / (BF16_PEAK * PIM_FRACTION)
    internal = 6656 * 16384 * 2 / (13.4e12 * PIM_FRACTION) + 328e-9
    external = (16384 + 6656) * 2 / (3.35e12 * 0.896) + 328e-9
    assert compute == pytest.approx(26.29e-6, rel=1e-3) and internal == pytest.approx(25.99e-6, rel=1e-3)
    assert (op.engine, op.bound) == ("pim", "pim:compute")
    assert op.time_s == pytest.approx(compute + MODE_SWITCH, rel=1e-12)
    assert op.memory_s_by_level["hbm"] == pytest.approx(external, rel=1e-12)
    assert op.bytes_by_level["hbm"] == (16384 + 6656) * 2  # activations over the interface; weights stay inside
    gpu, _ = _decode_cost(LLAMA, h100, batch=1)
    assert gpu.ops["layers.0.mlp.gate_proj"].engine == "tensor"
    assert gpu.ops["layers.0.mlp.gate_proj"].time_s >= 6656 * 16384 * 2 / (3.35e12 * 0.896)
    assert op.time_s < gpu.ops["layers.0.mlp.gate_proj"].time_s / 2.5


def test_llama_405b_decode_is_faster_on_the_pim_chip_at_batch_1_only(pim_chip, h100):
    one = estimate(LLAMA, pim_chip, batch=1), estimate(LLAMA, h100, batch=1)
    assert one[0].get("decode.tpot_s") < 0.6 * one[1].get("decode.tpot_s")
    assert one[0].get("energy.joules_per_token") < one[1].get("energy.joules_per_token")
    # batch 64: a GEMM of 64 rows costs the PIM 64 x 16.7 us of MACs against ~75 us on the tensor cores, so nothing
    # of the decode step moves and it is the H100's (the same YAML outside pim:, at 60 GB), number for number
    cost, _ = _decode_cost(LLAMA, pim_chip, batch=64)
    assert all(cost.ops[name].engine != "pim" for name in cost.ops)
    got, want = estimate(LLAMA, pim_chip, batch=64).to_dict(), estimate(LLAMA, h100, batch=64).to_dict()
    assert got["decode"] == want["decode"]
    assert got["energy"]["joules_per_token"] == want["energy"]["joules_per_token"]


def test_kimi_k2_fp8_ops_never_run_on_pim(pim_chip, h100):
    """The PIM units have no FP8 peak, so none of Kimi K2's FP8 GEMMs moves. Its BF16 GEMVs do at batch 1: the router
    gates (7168 x 384) and the LM head, whose weights are BF16 in the checkpoint (graph/precision.py); every other op
    keeps the H100's price exactly."""
    cost, _ = _decode_cost(KIMI, pim_chip, batch=1)
    ref, _ = _decode_cost(KIMI, h100, batch=1)
    on_pim = {name for name in cost.ops if cost.ops[name].engine == "pim"}
    assert on_pim and all(name == "lm_head" or name.endswith(".mlp.gate") for name in on_pim)
    for op in cost.op_list:
        if op.compute_dtype.name == "fp8":
            assert cost.ops[op.name].engine == "tensor"
    for name in cost.ops:
        if name not in on_pim:
            assert cost.ops[name] == ref.ops[name]


def test_a_pim_without_the_models_formats_changes_nothing(pim_chip, h100):
    """FP16-only PIM units (no BF16, no FP8 peak) run none of Kimi K2's ops: the report is the H100's exactly."""
    fp16_only = dataclasses.replace(pim_chip.pim, peak_flop_per_s={"fp16": pim_chip.pim.peak_flop_per_s["fp16"]})
    chip = dataclasses.replace(pim_chip, pim=fp16_only)
    for batch in (1, 64):
        got, want = estimate(KIMI, chip, batch=batch).to_dict(), estimate(KIMI, h100, batch=batch).to_dict()
        for key in ("decode", "prefill", "energy", "memory"):
            assert got[key] == want[key], (batch, key)


@pytest.mark.parametrize("workload,batch", [(LLAMA, 1), (KIMI, 1), (KIMI, 64)])
def test_place_by_time_and_estimate_agree_op_by_op(pim_chip, workload, batch):
    cost, _ = _decode_cost(workload, pim_chip, batch=batch)
    placed = place_graph(cost.op_list, pim_chip, objective="time", cuda_graph=True)  # decode: as run prices it
    assert set(placed.placements) == {op.name for op in cost.op_list}
    for name, p in placed.placements.items():
        c = cost.ops[name]
        assert (p.engine, p.bound) == (c.engine, c.bound), name
        assert p.time_s == pytest.approx(c.time_s, rel=1e-12), name
        assert p.energy_j == pytest.approx(c.energy_j, rel=1e-12), name


def test_place_by_energy_prices_candidates_with_the_cost_layer(pim_chip):
    cost, _ = _decode_cost(LLAMA, pim_chip, batch=1)
    geom, rates = Geometry.of(pim_chip), ChipRates.of(pim_chip, cuda_graph=True)
    by_energy = place_graph(cost.op_list, pim_chip, objective="energy", cuda_graph=True)
    for op in cost.op_list[:40]:
        work = op_work(op, geom)
        alts = by_energy.placements[op.name].alternatives
        first = next(iter(alts))
        assert alts[first].time_s == price_on_engine(op, work, pim_chip, rates=rates).time_s
        pim = price_on_pim(op, work, pim_chip, rates=rates)
        assert (pim is None) == ("pim" not in alts)
        if pim is not None:
            assert (alts["pim"].time_s, alts["pim"].energy_j) == (pim.time_s, pim.energy_j)


def test_heaviest_ops_name_the_engine_they_ran_on(pim_chip, h100):
    """What ``run --format json`` lists as the heaviest ops is PhaseCost.heaviest; each OpCost names its engine."""
    cost, _ = _decode_cost(LLAMA, pim_chip, batch=1)
    assert [cost.ops[name].engine for name in cost.heaviest[:5]] == ["pim"] * 5
    ref, _ = _decode_cost(LLAMA, h100, batch=1)
    assert {ref.ops[name].engine for name in ref.heaviest} == {"tensor"}


def test_run_json_reports_the_pim_bound(pim_chip):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli(["run", str(LLAMA), "--hw", str(REPO / "hardware" / "h100_hbm_pim.yaml"), "--batch", "1",
                    "--format", "json"]) == 0
    decode = json.loads(out.getvalue())["decode"]
    assert decode["bound"] == "pim:compute"
    assert decode["heaviest_ops"][1]["bound"] == "pim:compute"


def test_sweep_base_point_equals_estimate_on_the_pim_chip(pim_chip):
    for workload in (LLAMA, KIMI):
        report = estimate(workload, pim_chip, batch=1)
        base = SweepModel(workload, pim_chip, batch=1).evaluate({})
        for key in ("decode.tpot_s", "prefill.latency_s", "energy.joules_per_token", "energy.tops_per_watt"):
            assert base[key][0] == pytest.approx(report.get(key), rel=1e-12), (workload.name, key)


def test_a_swept_pim_peak_moves_ops_per_point(pim_chip, h100):
    """At 0.5 TFLOPS a GEMV of the derivation above takes 436 us on the PIM, slower than the tensor cores' ~75 us:
    the step is the H100's. At the derived 13.1 TFLOPS it is the PIM chip's; more peak never slows it."""
    peaks = np.array([0.5e12, 3e12, BF16_PEAK, 2 * BF16_PEAK, 4 * BF16_PEAK])
    swept = SweepModel(LLAMA, pim_chip, batch=1).evaluate({"pim.peak.bf16": peaks})["decode.tpot_s"]
    assert swept[0] == pytest.approx(estimate(LLAMA, h100, batch=1).get("decode.tpot_s"), rel=1e-12)
    assert swept[2] == pytest.approx(estimate(LLAMA, pim_chip, batch=1).get("decode.tpot_s"), rel=1e-12)
    assert np.all(np.diff(swept) <= 0) and swept[-1] < swept[2]
    for i in (1, 3):  # a point equals estimate() on the chip with that field (the sweep's contract)
        pim = dataclasses.replace(pim_chip.pim, peak_flop_per_s={"fp16": BF16_PEAK, "bf16": float(peaks[i])})
        chip = dataclasses.replace(pim_chip, pim=pim)
        assert swept[i] == pytest.approx(estimate(LLAMA, chip, batch=1).get("decode.tpot_s"), rel=1e-9)


def test_other_pim_fields_sweep_like_estimate(pim_chip):
    cols = {"pim.achievable_fraction": np.array([0.25, 1.0]), "pim.internal_bandwidth": np.array([2e12, 20e12]),
            "pim.internal_energy_per_bit": np.array([1e-12, 0.2e-12]),
            "pim.energy_per_flop.bf16": np.array([0.5e-12, 0.1e-12]),
            "thermal.compute_clock_fraction": np.array([0.8, 1.0])}
    swept = SweepModel(LLAMA, pim_chip, batch=1).evaluate(cols)
    for i in range(2):
        pim = dataclasses.replace(
            pim_chip.pim, achievable_fraction=float(cols["pim.achievable_fraction"][i]),
            internal_bandwidth_bytes_per_s=float(cols["pim.internal_bandwidth"][i]),
            internal_energy_j_per_bit=float(cols["pim.internal_energy_per_bit"][i]),
            energy_j_per_flop={"fp16": 0.16e-12, "bf16": float(cols["pim.energy_per_flop.bf16"][i])})
        chip = dataclasses.replace(pim_chip, pim=pim,
                                   compute_clock_fraction=float(cols["thermal.compute_clock_fraction"][i]))
        report = estimate(LLAMA, chip, batch=1)
        for key in ("decode.tpot_s", "energy.joules_per_token"):
            assert swept[key][i] == pytest.approx(report.get(key), rel=1e-9), (i, key)
