"""Time a 10,000-point hardware sweep of a full Kimi K2 projection (prefill + decode, energy, cost) on H100.

Target (issue 6): under 10 s on 2 cores. The sweep plans the deployment and extracts the device graphs
once, then prices all points as arrays (archsim/whatif/sweep.py).
Run: python benchmarks/bench_sweep.py [--points 10000] [--workers 2]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from archsim.whatif.sweep import SweepModel, SweepSpec, run_sweep
from archsim.whatif.sweep_spec import parse_set, sample

SETS = ("memory.hbm.bandwidth=1TB/s..20TB/s", "compute.tensor.peak.fp8=500TFLOPS..5PFLOPS",
        "memory.hbm.energy_per_bit=1pJ/bit..5pJ/bit", "power.idle=40W..150W", "kernel_launch=1us..6us")
ROOT = Path(__file__).resolve().parents[1]  # so the benchmark runs from any working directory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    spec = SweepSpec(workload=str(ROOT / "workloads/kimi_k2.yaml"), hardware=str(ROOT / "hardware/h100.yaml"),
                     overrides=(("devices", 16),))
    columns = sample([parse_set(s) for s in SETS], sampler="lhs", points=args.points, seed=0)

    start = time.perf_counter()
    SweepModel(spec.workload, spec.hardware, devices=16)
    setup = time.perf_counter() - start

    start = time.perf_counter()
    result = run_sweep(spec, columns, chunk=args.points, workers=1)
    single = time.perf_counter() - start

    start = time.perf_counter()
    run_sweep(spec, columns, chunk=max(1, args.points // args.workers), workers=args.workers)
    pooled = time.perf_counter() - start

    print(f"setup (plan + graphs + extraction, once): {setup:.2f} s")
    print(f"{args.points} points, one process (incl. setup): {single:.2f} s ({single / args.points * 1e6:.0f} us/point)")
    print(f"{args.points} points, {args.workers} processes (incl. per-process setup): {pooled:.2f} s")
    print(f"Pareto front: {int(result['pareto'].sum())} points; decode tokens/s "
          f"{result['decode.tokens_per_s'].min():.1f} .. {result['decode.tokens_per_s'].max():.1f}")


if __name__ == "__main__":
    main()
