"""Energy per byte streamed from HBM and per FP32 FLOP, fitted on a measured power-vs-intensity sweep.

The gpu-roofline microbenchmark (github.com/te42kyfo/gpu-benches, ``gpu-roofline/``; its output for an H200 and an
A100-SXM4-40GB is copied into ``validation/gpu_roofline_*_power.csv``) runs one kernel from memory-bound (two array
loads per FMA) to compute-bound (hundreds of FP32 FMAs per load) at a fixed clock and reads the board power.
Board power is idle power plus energy per byte times the HBM byte rate plus energy per FLOP times the FLOP rate:

    P - P_idle = e_byte * (bytes/s) + e_flop * (FLOP/s)

a two-unknown least-squares fit with the chip's idle power held fixed (``fit``). The hardware files take the
three-term fit instead (``fit_with_baseline``): the constant free,

    P = P_idle + P_active + e_byte * (bytes/s) + e_flop * (FLOP/s)

where ``P_active`` (``power.active_baseline``, ``active_baseline_w``) is what the chip draws beyond idle whenever it
runs kernels, whatever they move or compute; the cost model charges it over a step's busy time. ``e_byte`` is the
whole path of a byte read from HBM into registers (DRAM, PHY, memory controller, L2, crossbar, L1 and the load
pipeline); the traffic model charges such a streamed byte at the HBM level and the L2 level, so the HBM level's
``energy_per_bit`` is ``e_byte / 8`` less the L2 level's own figure (``hbm_energy_per_bit``).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archsim.errors import ConfigError
from archsim.paths import data_dir

BITS_PER_BYTE = 8
GIGA = 1e9
# the sweeps shipped with archsim: chip -> file in validation/
SWEEPS = {"h200": "gpu_roofline_h200_power.csv", "a100_40gb": "gpu_roofline_a100_40gb_power.csv"}
# the YAML figures are the fit rounded to 0.01 pJ, the active baseline to 0.1 W
ROUNDING_J = 0.01e-12
ROUNDING_W = 0.1


@dataclass(frozen=True, kw_only=True)
class StreamFit:
    """e_byte (J per HBM byte streamed into the SMs) and e_flop (J per FP32 FLOP) at idle ``idle_w``."""

    j_per_byte: float
    j_per_flop: float
    idle_w: float
    rms_w: float
    points: int


def load_sweep(name: str) -> np.ndarray:
    """The sweep's rows as an (n, 3) array: HBM bytes/s, FP32 FLOP/s, board power W."""
    path = Path(data_dir("validation")) / SWEEPS[name]
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(line for line in f if not line.startswith("#"))]
    if not rows:
        raise ConfigError(str(path), None, "rows of gb_per_s, gflop_per_s, power_w", "none")
    return np.array([(float(r["gb_per_s"]) * GIGA, float(r["gflop_per_s"]) * GIGA, float(r["power_w"]))
                     for r in rows])


def fit(name: str, idle_w: float) -> StreamFit:
    """Least squares of ``P - idle_w`` on the byte and FLOP rates of sweep ``name`` (module docstring)."""
    rows = load_sweep(name)
    rates, above_idle = rows[:, :2], rows[:, 2] - idle_w
    (e_byte, e_flop), *_ = np.linalg.lstsq(rates, above_idle, rcond=None)
    residual = rates @ np.array([e_byte, e_flop]) - above_idle
    return StreamFit(j_per_byte=float(e_byte), j_per_flop=float(e_flop), idle_w=idle_w,
                     rms_w=float(np.sqrt(np.mean(residual ** 2))), points=len(rows))


@dataclass(frozen=True, kw_only=True)
class BaselineFit:
    """The three-term fit: a constant ``base_w`` (idle plus the clocked, occupied chip's power that scales with
    neither bytes nor FLOPs) and ``base_se_w`` its standard error, beside e_byte and e_flop (``fit_with_baseline``)."""

    base_w: float
    base_se_w: float
    j_per_byte: float
    j_per_flop: float
    rms_w: float


def fit_with_baseline(name: str) -> BaselineFit:
    """Least squares of ``P = base + e_byte (bytes/s) + e_flop (FLOP/s)`` on sweep ``name``, the constant free.

    ``base`` above the chip's idle power is the **active baseline**: what a chip with every SM occupied and its
    clocks up draws beyond idle whatever it moves or computes (``active_baseline_w``). The sweep runs at full
    occupancy from 0.4 to 3.8 TB/s (H200), so it bounds that term only as well as its spread lets the constant
    separate from e_byte (the standard error ``base_se_w``); it cannot see launch gaps or partial occupancy."""
    rows = load_sweep(name)
    tera = 1e12  # rates in TB/s and TFLOP/s keep the design matrix well conditioned
    design = np.column_stack([np.ones(len(rows)), rows[:, 0] / tera, rows[:, 1] / tera])
    coef, *_ = np.linalg.lstsq(design, rows[:, 2], rcond=None)
    residual = design @ coef - rows[:, 2]
    dof = len(rows) - design.shape[1]
    covariance = (residual @ residual / dof) * np.linalg.inv(design.T @ design)
    return BaselineFit(base_w=float(coef[0]), base_se_w=float(np.sqrt(covariance[0, 0])),
                       j_per_byte=float(coef[1] / tera), j_per_flop=float(coef[2] / tera),
                       rms_w=float(np.sqrt(np.mean(residual ** 2))))


def active_baseline_w(f: BaselineFit, idle_w: float) -> float:
    """``power.active_baseline``: the three-term fit's constant less the chip's idle power."""
    return f.base_w - idle_w


def hbm_energy_per_bit(f: StreamFit | BaselineFit, l2_j_per_bit: float) -> float:
    """The HBM level's energy per bit: the streamed byte's whole path per bit less what the L2 level charges."""
    return f.j_per_byte / BITS_PER_BYTE - l2_j_per_bit


def rounded(x: float) -> float:
    """Rounded to ``ROUNDING_J`` (0.01 pJ), as the YAML writes it."""
    return round(x / ROUNDING_J) * ROUNDING_J
