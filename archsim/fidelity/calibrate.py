"""Calibration: fit a chip's named efficiency fields from microbenchmarks and write a hardware YAML with the
raw measurements beside it. ``calibrate_numpy`` calibrates this CPU; the torch backend is a prepared script
(microbench_torch.py) whose output ``fit_torch`` turns into fields the same way."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np

from archsim.errors import ConfigError

# SIMD facts for the nominal peak: FP64 lanes of the widest vector unit the CPU flags name
# (AVX-512: 512 bit / 64 bit = 8; AVX2: 256 / 64 = 4; SSE: 128 / 64 = 2) and 2 FLOPs per FMA lane.
FP64_LANES = {"avx512f": 8, "avx2": 4, "sse4_2": 2}
FLOPS_PER_FMA = 2
# FMA units per core: not readable from /proc/cpuinfo; 2 on recent x86 server cores (an ASSUMPTION, stated in
# the written YAML next to the nominal peak it enters)
FMA_UNITS_PER_CORE = 2


@dataclass(frozen=True, kw_only=True)
class CalibratedField:
    """One fitted field: its YAML path, SI value, unit and how it was obtained."""

    path: str
    value: float
    unit: str
    how: str


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """The fitted fields, the raw measurements, the written hardware YAML and the held-out check (if any);
    ``derived``: fields recomputed from the fitted ones by a stated rule (not measured), e.g. energy per FLOP."""

    fields: tuple[CalibratedField, ...]
    raw: dict
    hardware_yaml: str
    loop: dict
    derived: tuple[CalibratedField, ...] = ()

    def field(self, path: str) -> CalibratedField:
        """The fitted field at YAML ``path``."""
        return next(f for f in self.fields if f.path == path)


def measure_numpy_in_subprocess(timeout_s: float = 300.0) -> dict:
    """Run the numpy microbenchmarks in a fresh process with BLAS pinned to one thread."""
    from archsim.fidelity import microbench_numpy

    env = dict(os.environ, **{k: "1" for k in microbench_numpy.THREAD_VARIABLES})
    done = subprocess.run([sys.executable, "-m", "archsim.fidelity.microbench_numpy"], env=env, check=False,
                          capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise ConfigError(None, "calibrate.numpy", "the microbenchmark process to succeed",
                          done.stderr.strip().splitlines()[-1:] or done.returncode)
    return json.loads(done.stdout)


def fit_linear_terms(rows: list[dict]) -> tuple[float, float, float]:
    """Least squares over copies and GEMMs with the kernel model's own law and one shared ramp:
    copy ``time = ramp + bytes / bw``; GEMM ``time = ramp + flops / rate + output bytes / bw`` (the main
    loop compute-bound, the epilogue storing C). Returns (ramp_s, bandwidth_bytes_per_s, flop_per_s)."""
    def design(r: dict) -> list[float]:
        if r["kernel"] == "copy":
            return [1.0, r["bytes"], 0.0]
        return [1.0, output_bytes(r), r["flops"]]

    a = np.array([design(r) for r in rows])                    # [samples, 3]
    t = np.array([r["time_s"] for r in rows])                  # [samples]
    # weight by 1/time so that small and large kernels count alike (relative error)
    coef, *_ = np.linalg.lstsq(a / t[:, None], np.ones_like(t), rcond=None)
    ramp, inv_bw, inv_rate = (float(c) for c in coef)
    if inv_bw <= 0 or inv_rate <= 0:
        raise ConfigError(None, "calibration", "times that grow with bytes and FLOPs", (inv_bw, inv_rate))
    return max(ramp, 0.0), 1.0 / inv_bw, 1.0 / inv_rate


def fit_ramp_and_bandwidth(bytes_moved: Iterable[float], times_s: Iterable[float]) -> tuple[float, float]:
    """Least-squares line ``time = ramp + bytes / bandwidth`` through memory-bound measurements;
    returns (bandwidth_bytes_per_s, ramp_s). Needs two distinct sizes."""
    xs, ys = list(map(float, bytes_moved)), list(map(float, times_s))
    if len(xs) != len(ys) or len(set(xs)) < 2:
        raise ConfigError(None, "calibration.samples", "at least two distinct sizes", len(set(xs)))
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
    if slope <= 0:
        raise ConfigError(None, "calibration.samples", "times that grow with bytes", slope)
    return 1.0 / slope, mean_y - slope * mean_x


def output_bytes(row: dict) -> float:
    """C's bytes of a measured GEMM row (float64 unless the row says float32)."""
    elem = 4 if row.get("dtype") == "float32" else 8
    return float(row["m"] * row["n"] * elem)


def nominal_fp64_peak(host: dict) -> tuple[float, str]:
    """One core's nominal FP64 FLOP/s from its flags and clock, with the derivation as text.
    Assumes 2 FMA units per core (not readable from /proc/cpuinfo; an ASSUMPTION stated in the YAML)."""
    lanes = next((n for flag, n in FP64_LANES.items() if flag in host.get("flags", [])), 1)
    mhz = host.get("cpu_mhz")
    if not mhz:
        raise ConfigError("/proc/cpuinfo", "cpu MHz", "a clock to derive the nominal peak", None)
    peak = lanes * FLOPS_PER_FMA * FMA_UNITS_PER_CORE * mhz * 1e6
    return peak, (f"{lanes} FP64 lanes x {FLOPS_PER_FMA} (FMA) x {FMA_UNITS_PER_CORE} FMA units (ASSUMPTION) "
                  f"x {mhz:g} MHz")


def _yaml_text(raw: dict, *, ramp: float, bandwidth: float, rate: float, peak: float, peak_how: str,
               raw_name: str) -> str:
    host = raw["host"]
    fraction = rate / peak
    now = datetime.now(timezone.utc)
    cache = host.get("memory_bytes") or 0
    return f"""# Host CPU calibrated by `archsim calibrate --backend numpy` on {now:%Y-%m-%d %H:%M} UTC.
# [M] = measured on this machine (raw samples in {raw_name}); [D] = derived; PLACEHOLDER = not measured,
# present only because the hardware schema requires it (do not use this file for energy, power or links).
# numpy ran with BLAS pinned to one thread ({', '.join(raw['threads'])} = 1).
name: host CPU ({host['cpu_model']}, 1 thread)
year: {now.year}  # [M] calibration date
sm_count: 1  # [M] one BLAS thread ran every kernel
kernel_launch: 0 us  # numpy has no separate launch; the per-call overhead is kernel.ramp
kernel:
  ramp: {ramp * 1e6:.4g} us  # [M] fitted intercept (copies: ramp + bytes/bw; GEMMs: ramp + flops/rate + C/bw) over {len(raw['copy']) + len(raw['gemm'])} kernels
compute:
  blas:
    kind: matrix
    peak:
      fp64: {peak / 1e9:.4g} GFLOPS  # [D] {peak_how}
    achievable_fraction: {fraction:.4g}  # [M] fitted rate {rate / 1e9:.4g} GFLOPS over {len(raw['gemm'])} GEMMs / nominal peak
  simd:
    kind: vector
    peak:
      fp64: {peak / 1e9:.4g} GFLOPS  # [D] same SIMD units as the BLAS kernels
    achievable_fraction: {fraction:.4g}  # [D] taken equal to the BLAS fraction (elementwise kernels are memory-bound here)
memory:
  cache:
    capacity: {cache} B  # [M] /proc/meminfo MemTotal (warm working sets of 4 KiB-4 MiB stay in the caches)
    bandwidth: {bandwidth / 1e9:.4g} GB/s  # [M] fitted slope of copies of 4 KiB-4 MiB (read + write bytes)
    latency: 0 s  # not measured (the ramp absorbs it)
    energy_per_bit: 0 pJ/bit  # PLACEHOLDER
    achievable_fraction: 1.0  # the bandwidth above is itself measured
power:
  tdp: 1 W  # PLACEHOLDER
  idle: 0 W  # PLACEHOLDER
price: $0/h  # PLACEHOLDER
node:
  chips: 1
  scale_up: {{name: none, bandwidth: 1 GB/s, latency: 0 s, energy_per_bit: 0 pJ/bit, achievable_fraction: 1.0}}  # PLACEHOLDER
  scale_out: {{name: none, bandwidth: 1 GB/s, latency: 0 s, energy_per_bit: 0 pJ/bit, achievable_fraction: 1.0}}  # PLACEHOLDER
"""


def write_outputs(out_dir: str | Path, texts: dict[str, str]) -> Path:
    """Write each ``file name -> text`` into ``out_dir`` (created if needed); returns the directory.
    A directory that cannot be created or written is a ConfigError, not a traceback."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            (out / name).write_text(text, encoding="utf-8")
    except OSError as err:
        raise ConfigError(str(out), None, "a writable output directory (--out)", err.strerror or str(err)) from None
    return out


def _check_raw(raw: object, keys: tuple[str, ...]) -> None:
    if not isinstance(raw, dict) or any(k not in raw for k in keys):
        got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise ConfigError("raw measurements", None, f"a JSON object with keys {', '.join(keys)}", got)


def predict_loop(hw, rows: list[dict]) -> dict:
    """Predict each held-out tiny-model kernel on the calibrated ``hw``; per-row error and the median."""
    from archsim.cost.kernel_model import elementwise_time, gemm_time

    out = []
    for r in rows:
        if r["kernel"] == "gemm":
            est = gemm_time(hw, m=r["m"], n=r["n"], k=r["k"], dtype="fp64", out_dtype="fp64")
        else:
            est = elementwise_time(hw, nbytes=r["bytes"], flops=r["flops"], dtype="fp64")
        out.append({**r, "predicted_s": est.time_s, "error": est.time_s / r["time_s"] - 1.0})
    errors = [abs(r["error"]) for r in out]
    return {"rows": out, "median_abs_error": statistics.median(errors), "max_abs_error": max(errors)}


def calibrate_numpy(out_dir: str | Path, *, raw: dict | None = None) -> Calibration:
    """Measure this CPU (unless ``raw`` is given), fit ramp, bandwidth and BLAS rate, write
    ``host_cpu.calibrated.yaml`` and ``host_cpu.raw.json`` into ``out_dir``, and predict the tiny model's
    kernels (held out from the fit) on the new file."""
    from archsim.config.hardware import load_hardware

    raw = raw if raw is not None else measure_numpy_in_subprocess()
    _check_raw(raw, ("host", "threads", "copy", "gemm", "tiny_model"))
    ramp, bandwidth, rate = fit_linear_terms(raw["copy"] + raw["gemm"])
    peak, peak_how = nominal_fp64_peak(raw["host"])
    yaml_name, raw_name = "host_cpu.calibrated.yaml", "host_cpu.raw.json"
    text = _yaml_text(raw, ramp=ramp, bandwidth=bandwidth, rate=rate, peak=peak, peak_how=peak_how,
                      raw_name=raw_name)
    yaml_path = write_outputs(out_dir, {yaml_name: text, raw_name: json.dumps(raw, indent=1)}) / yaml_name
    hw = load_hardware(yaml_path)
    fields = (
        CalibratedField(path="kernel.ramp", value=hw.kernel.ramp_s, unit="s",
                        how="intercept of the joint fit over copies and GEMMs"),
        CalibratedField(path="memory.cache.bandwidth", value=hw.main_memory.bandwidth_bytes_per_s, unit="B/s",
                        how="slope of copy time against bytes moved"),
        CalibratedField(path="compute.blas.achievable_fraction", value=hw.compute["blas"].achievable_fraction,
                        unit="fraction", how=f"fitted GEMM rate / nominal peak ({peak_how})"),
    )
    return Calibration(fields=fields, raw=raw, hardware_yaml=str(yaml_path),
                       loop=predict_loop(hw, raw["tiny_model"]))
