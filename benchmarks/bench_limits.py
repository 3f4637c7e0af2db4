"""Measure the limits documented in docs/limits.md: wall time of `archsim run` (through the API) for the
largest shipped models, device counts and contexts, and of the serving simulation by request count.

Run: python benchmarks/bench_limits.py  (prints a markdown table; numbers depend on the machine).
"""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(fn):
    start = time.perf_counter()
    try:
        result = fn()
        outcome = "result"
    except Exception as err:  # noqa: BLE001 - a benchmark reports every outcome
        result, outcome = None, f"{type(err).__name__}: {str(err)[:90]}"
    return time.perf_counter() - start, outcome, result


def run_cases():
    from archsim.api import estimate

    rows = []
    cases = [
        ("kimi_k2", "h100", {}),
        ("deepseek_v3", "h100", {}),
        ("llama3_405b", "h100", {}),
        ("kimi_k2", "b200", {}),
        ("deepseek_v3", "h800", {"devices": 8}),
        ("deepseek_v3", "h800", {"devices": 320}),
        ("deepseek_v3", "h800", {"devices": 4096}),
        ("deepseek_v3", "h800", {"devices": 100_000}),
        ("deepseek_v3", "h800", {"prompt_len": 131_072, "output_len": 1024}),
        ("kimi_k2", "h200", {"prompt_len": 128_000, "output_len": 3_000}),
        ("deepseek_v3", "h800", {"batch": 4096}),
        ("deepseek_v3", "h100", {"prompt_len": 1_000_000, "devices": 100_000}),
    ]
    for model, chip, overrides in cases:
        wl, hw = REPO / "workloads" / f"{model}.yaml", REPO / "hardware" / f"{chip}.yaml"
        seconds, outcome, report = timed(lambda: estimate(wl, hw, **overrides))
        if report is not None:
            data = report.to_dict()
            fits = data.get("memory", {}).get("fits")
            outcome = f"result (fits: {fits})"
        rows.append((f"run {model} on {chip} {overrides or ''}", seconds, outcome))
    return rows


def serve_cases():
    from archsim.serving.arrivals import Poisson
    from archsim.serving.config import ReplicaSpec, SchedulerSpec
    from archsim.serving.iteration import RooflineIteration
    from archsim.serving.lengths import Uniform
    from archsim.serving.requests import LengthSampler, generate
    from archsim.sim.serve import simulate

    # benchmark parameters (an 8B dense model on a 1e15 FLOP/s, 3e12 B/s chip), not claims about hardware
    model = RooflineIteration(flops_per_token=16e9, attention_flops_per_pair=5e5, weight_bytes=16e9,
                              kv_bytes_per_token=131072, flop_per_s=1e15, bytes_per_s=3e12, fixed_s=1e-3)
    replica = ReplicaSpec(devices=1, kv_capacity_tokens=400_000, kv_bytes_per_token=131072,
                          peak_flop_per_s=1e15, peak_bytes_per_s=3e12)
    lengths = LengthSampler(prompt=Uniform(low=100, high=2000), output=Uniform(low=50, high=500))
    rows = []
    for count in (1_000, 10_000, 100_000):
        rate = 20.0
        reqs = generate(arrival=Poisson(rate_per_s=rate), lengths=lengths, duration_s=count / rate, seed=1)
        seconds, outcome, _ = timed(lambda: simulate(scheduler=SchedulerSpec(), replica=replica, model=model,
                                                     duration_s=count / rate, requests=reqs, replicas=4))
        rows.append((f"serve {len(reqs)} requests, 4 replicas, continuous batching", seconds, outcome))
    return rows


def main() -> int:
    print(f"machine: {platform.processor() or platform.machine()}, Python {sys.version.split()[0]}")
    print("| case | wall time (s) | outcome |\n|---|---|---|")
    for name, seconds, outcome in run_cases() + serve_cases():
        print(f"| {name} | {seconds:.2f} | {outcome} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
