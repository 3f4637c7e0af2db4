"""Engine placement on heterogeneous chips: PIM, photonic, default engines."""
import dataclasses
from pathlib import Path

import pytest

from archsim.config.hardware import load_hardware
from archsim.config.whatif_hardware import PimSpec
from tests.cost.fixtures import price_op
from archsim.cost.phase import price_graph
from archsim.dtypes import BF16, FP8
from archsim.whatif.placement import pim_cost, place_graph, place_op
from tests.cost.fixtures import attention_op, gemm_op, norm_op

HW = Path(__file__).resolve().parents[2] / "hardware"


@pytest.fixture(scope="module")
def pim_chip():
    return load_hardware(HW / "h100_hbm_pim.yaml")


def _ops():
    return [norm_op("norm", 1, 8192), gemm_op("q", 1, 8192, 8192, weight=BF16),
            gemm_op("fp8", 1, 8192, 8192, weight=FP8), gemm_op("big", 4096, 8192, 8192, weight=BF16),
            attention_op("attn", batch=1, q_len=1, kv_len=8192, heads_q=64, heads_kv=8, d_qk=128, d_v=128,
                         causal=True)]


def test_bf16_gemv_goes_to_pim_with_hand_derived_time(pim_chip):
    op = gemm_op("q", 1, 8192, 8192, weight=BF16)
    pim, hbm = pim_chip.pim, pim_chip.memory["hbm"]
    weights = 8192 * 8192 * 2
    acts = 8192 * 2 + 8192 * 2
    compute = op.flops / (pim.peak_flop_per_s["bf16"] * pim.achievable_fraction)
    internal = weights / (pim.internal_bandwidth_bytes_per_s * pim.achievable_fraction) + hbm.latency_s
    external = acts / (hbm.bandwidth_bytes_per_s * hbm.achievable_fraction) + hbm.latency_s
    choice = pim_cost(op, pim_chip)
    # plus the SB -> AB -> AB-PIM entry and exit: 8 mode-register row writes x 48.5 ns (config/derive_pim.py)
    assert pim.mode_switch_s == pytest.approx(8 * 48.5e-9)
    assert choice.time_s == pytest.approx(max(compute, internal, external, pim_chip.kernel_launch_s) + 8 * 48.5e-9)
    assert choice.energy_j == pytest.approx(op.flops * pim.energy_j_per_flop["bf16"]
                                            + weights * 8 * pim.internal_energy_j_per_bit
                                            + acts * 8 * hbm.energy_j_per_bit)
    placed = place_op(op, pim_chip)
    gpu = placed.alternatives["tensor"]
    assert placed.engine == "pim" and placed.time_s < gpu.time_s
    assert price_op(op, pim_chip).engine == "pim"  # the cost model runs it there too
    assert "faster than tensor" in placed.reason
    assert set(placed.alternatives) == {"tensor", "pim"}


def test_unsupported_dtype_and_large_gemm_stay_on_the_gpu(pim_chip):
    assert pim_cost(gemm_op("fp8", 1, 8192, 8192, weight=FP8), pim_chip) is None  # PIM has no FP8 units
    assert place_op(gemm_op("big", 4096, 8192, 8192, weight=BF16), pim_chip).engine == "tensor"
    assert place_op(norm_op("n", 1, 8192), pim_chip).engine == "vector"  # norms are not a PIM kind here


def test_pim_supporting_nothing_changes_nothing(pim_chip):
    idle_pim = PimSpec(level="hbm", kinds=(), peak_flop_per_s={"bf16": 1e15}, achievable_fraction=1.0,
                       energy_j_per_flop={"bf16": 1e-15}, internal_bandwidth_bytes_per_s=1e15,
                       internal_energy_j_per_bit=1e-15)
    chip = dataclasses.replace(pim_chip, pim=idle_pim)
    plain = dataclasses.replace(pim_chip, pim=None)
    for objective in ("time", "energy"):
        placed = place_graph(_ops(), chip, objective=objective)
        phase = price_graph(_ops(), plain)
        assert placed.time_s == pytest.approx(phase.time_s, rel=1e-12)
        assert placed.energy_j == pytest.approx(phase.energy_j, rel=1e-12)
        assert all(p.engine != "pim" for p in placed.placements.values())


def test_placement_never_worse_than_default(pim_chip):
    phase = price_graph(_ops(), pim_chip)  # the cost model places by time itself
    by_time = place_graph(_ops(), pim_chip, objective="time")
    by_energy = place_graph(_ops(), pim_chip, objective="energy")
    assert by_time.time_s == pytest.approx(phase.time_s, rel=1e-12)
    assert by_time.energy_j == pytest.approx(phase.energy_j, rel=1e-12)
    assert by_time.time_s < by_time.default_time_s  # the BF16 GEMV runs faster on the PIM
    assert by_energy.energy_j <= by_energy.default_energy_j * (1 + 1e-12)
    assert by_time.time_s <= by_energy.time_s * (1 + 1e-12)
    assert by_energy.energy_j <= by_time.energy_j * (1 + 1e-12)


def test_photonic_chip_runs_matrix_ops_optically():
    chip = load_hardware(HW / "photonic_dota_l.yaml")
    spec = chip.compute["photonic"].photonic
    # peak = 2 x 12 x 12 x 12 x 16 x 5 GHz (DOTA-L, 276 TOP/s) for 8-bit operands; BF16 takes 2 x 2 bit-sliced passes
    peak = 2 * 12 * 12 * 12 * 16 * 5e9
    assert chip.compute["photonic"].peak_flop_per_s["fp8"] == peak
    assert chip.compute["photonic"].peak_flop_per_s["bf16"] == peak / 4
    # dynamic energy per FLOP: per cycle 2592 modulators (12 x 12 x 16 row operands + 12 x 12 x 2 column operands
    # shared by the 8 tiles), each one DAC conversion and one 0.45 pJ symbol, and 12 x 12 x 8 ADC conversions
    # (the two cores of a tile share them), over 2 x 12 x 12 x 12 x 16 FLOPs
    per_cycle = 2592 * (3.57e-12 + 0.45e-12) + 1152 * 1.48e-12
    assert chip.compute["photonic"].energy_j_per_flop["fp8"] == pytest.approx(per_cycle / (2 * 12 * 12 * 12 * 16))
    assert chip.compute["photonic"].energy_j_per_flop["bf16"] == pytest.approx(4 * per_cycle / (2 * 12 * 12 * 12 * 16))
    # lasers, router tuning and detector/TIA bias burn continuously
    assert chip.static_power_w == pytest.approx(chip.power.idle_w + spec.power.always_on_w)
    placed = place_graph(_ops(), chip)
    assert placed.placements["big"].engine == "photonic"
    assert placed.placements["norm"].engine == "vector"


def test_simulator_executes_the_placement(pim_chip):
    import networkx as nx
    from archsim.whatif.placement import simulate_placement
    g = nx.DiGraph()
    ops = _ops()
    for op in ops:
        g.add_node(op.name, op=op)
    g.add_edge("norm", "q")      # q waits for norm; the other ops are independent
    placed, serial = simulate_placement(g, pim_chip, overlap=False)
    assert serial.makespan_s == pytest.approx(placed.time_s)   # one resource: the serial sum
    _, timeline = simulate_placement(g, pim_chip)
    assert timeline.makespan_s < serial.makespan_s              # PIM and tensor cores work side by side
    assert "pim" in timeline.resources
    events = {e.name: e for e in timeline.events}
    assert events["q"].start_s >= events["norm"].end_s
