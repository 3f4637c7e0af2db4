"""Memory wall: intensity and ridge by hand, the compute-bound bandwidth boundary, growth fits."""
import dataclasses
import math
from pathlib import Path

import pytest

from archsim.config.hardware import load_hardware
from archsim.cost.phase import price_graph
from archsim.whatif.memory_wall import growth_per_two_years, history, is_projection, phase_wall
from tests.cost.fixtures import gemm_op, h100_like

HW = Path(__file__).resolve().parents[2] / "hardware"


def test_gemv_phase_intensity_and_ridge_by_hand():
    hw = h100_like()
    ops = [gemm_op(f"l{i}", 8, 7168, 7168) for i in range(4)]
    wall = phase_wall(ops, hw)
    nbytes = 4 * (8 * 7168 * 2 + 7168 * 7168 + 8 * 7168 * 2)  # x, FP8 W, y per op (one row panel)
    assert wall.main_memory_bytes == nbytes
    assert wall.arithmetic_intensity == pytest.approx(4 * 2 * 8 * 7168 * 7168 / nbytes)
    tensor, hbm = hw.compute["tensor"], hw.memory["hbm"]
    assert wall.ridge_point == pytest.approx(tensor.peak_flop_per_s["fp8"] * tensor.achievable_fraction
                                             / (hbm.bandwidth_bytes_per_s * hbm.achievable_fraction))
    assert wall.bound == "memory:hbm" and wall.arithmetic_intensity < wall.ridge_point


def test_compute_bound_bandwidth_is_the_boundary():
    hw = h100_like()
    ops = [gemm_op(f"l{i}", 256, 7168, 7168) for i in range(4)]
    wall = phase_wall(ops, hw)
    needed = wall.compute_bound_bandwidth_bytes_per_s
    assert needed is not None and needed > hw.memory["hbm"].bandwidth_bytes_per_s
    above = dataclasses.replace(hw, memory={**hw.memory, "hbm": dataclasses.replace(
        hw.memory["hbm"], bandwidth_bytes_per_s=needed * 1.001)})
    below = dataclasses.replace(hw, memory={**hw.memory, "hbm": dataclasses.replace(
        hw.memory["hbm"], bandwidth_bytes_per_s=needed * 0.99)})
    assert price_graph(ops, above).bound == "compute"
    assert price_graph(ops, below).bound != "compute"


def test_growth_fit_recovers_a_known_rate():
    years = [2016, 2018, 2020, 2022]
    assert growth_per_two_years(years, [1, 3, 9, 27]) == pytest.approx(3.0)
    assert math.isnan(growth_per_two_years([2020, 2020], [1, 2]))


def test_history_of_shipped_files_shows_compute_outgrowing_memory():
    chips = [load_hardware(p) for p in sorted(HW.glob("*.yaml"))]
    points, growth = history(chips)
    names = {p.name for p in points}
    assert not any(is_projection(hw) and hw.name in names for hw in chips)
    assert any("H100 SXM5" in n for n in names) and len(points) >= 6
    assert [p.year for p in points] == sorted(p.year for p in points)
    # the memory wall: peak compute grows faster than memory bandwidth and capacity across the shipped GPUs
    assert growth["peak_flop_per_s"] > growth["memory_bandwidth_bytes_per_s"]
    assert growth["peak_flop_per_s"] > growth["memory_capacity_bytes"]


def test_documented_growth_is_what_the_shipped_chips_give():
    """docs/whatif.md and examples/whatif_numerics_and_wall.md print the growth line of the example script; it is
    recomputed here from hardware/*.yaml, so a new or changed chip that moves the fit fails until the docs are
    regenerated (python examples/whatif_numerics_and_wall.py). A calibrated copy of a chip is the same product."""
    from pathlib import Path

    from archsim.config.hardware import load_hardware
    from archsim.whatif.memory_wall import history

    root = Path(__file__).resolve().parents[2]
    _, growth = history([load_hardware(p) for p in sorted((root / "hardware").glob("*.yaml"))])
    line = ("growth per two years (log-linear fit over the HBM chips): "
            + ", ".join(f"{k} x{v:.2f}" for k, v in growth.items()))
    for doc in ("docs/whatif.md", "examples/whatif_numerics_and_wall.md"):
        assert line in (root / doc).read_text(encoding="utf-8"), doc
