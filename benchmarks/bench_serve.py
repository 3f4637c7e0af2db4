"""Benchmark: simulated requests per wall-second of the serving simulator (target: 100k requests in < 60 s, one core).

Run: python benchmarks/bench_serve.py [--requests 100000] [--scheduler continuous] [--model cost|roofline]
The default prices iterations with the real cost model (DeepSeek-V3 on H100, auto layout) through the
memoised grid, so grid pricing is part of the measured time and reported separately.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=6.0, help="arrivals per second (default: below saturation)")
    p.add_argument("--scheduler", default="continuous")
    p.add_argument("--model", choices=("cost", "roofline"), default="cost")
    p.add_argument("--workload", default=str(ROOT / "workloads/deepseek_v3.yaml"))
    p.add_argument("--hw", default=str(ROOT / "hardware/h100.yaml"))
    args = p.parse_args()

    from archsim.config.hardware import load_hardware
    from archsim.config.workload import load_workload
    from archsim.serving.arrivals import Poisson
    from archsim.serving.config import SchedulerSpec
    from archsim.serving.replicas import Longest, served_deployment
    from archsim.serving.iteration import RooflineIteration
    from archsim.serving.lengths import LogNormal
    from archsim.serving.requests import LengthSampler, generate
    from archsim.sim.serve import simulate

    t0 = time.perf_counter()
    w, hw = load_workload(args.workload), load_hardware(args.hw)
    # lengths: a scenario choice (median 1,000-token prompts, 250-token outputs, heavy right tail)
    lengths = LengthSampler(prompt=LogNormal(median_tokens=1000, sigma=0.8, max_tokens=8192),
                            output=LogNormal(median_tokens=250, sigma=0.8, max_tokens=2048))
    duration = args.requests / args.rate
    requests = generate(arrival=Poisson(rate_per_s=args.rate), lengths=lengths, duration_s=duration, seed=0)
    served = served_deployment(w, hw, longest=Longest(prompt=8192, context=8192 + 2048), output_len=2048,
                               max_seqs=256, block_tokens=16, kv_memory_fraction=0.9, overrides={})
    it, replica = served.pool("decode").model, served.pool("decode").replica
    model = it
    if args.model == "roofline":
        engine = hw.engine_for("matrix")
        model = RooflineIteration(flops_per_token=2 * 37e9, attention_flops_per_pair=0.0, weight_bytes=0.0,
                                  kv_bytes_per_token=replica.kv_bytes_per_token,
                                  flop_per_s=replica.peak_flop_per_s * engine.achievable_fraction,
                                  bytes_per_s=replica.peak_bytes_per_s * hw.main_memory.achievable_fraction,
                                  fixed_s=hw.kernel_launch_s)
    t1 = time.perf_counter()
    result = simulate(scheduler=SchedulerSpec(kind=args.scheduler, max_seqs=256), replica=replica, model=model,
                      duration_s=duration, requests=requests)
    t2 = time.perf_counter()
    s = result.summary
    print(f"{len(requests)} requests, {s['iterations']} iterations, scheduler {args.scheduler}, model {args.model}, "
          f"layout {it.par.label()}")
    print(f"setup (load, generate, layout) {t1 - t0:.2f} s; simulation {t2 - t1:.2f} s "
          f"(grid: {it.grid_points[0]} decode + {it.grid_points[1]} prefill points priced)")
    print(f"simulated requests per wall-second: {len(requests) / (t2 - t1):,.0f}")
    print(f"completed {s['requests']['completed']}, TTFT p50 {s['ttft_s']['p50']:.3f} s, TPOT p50 "
          f"{s['tpot_s']['p50'] * 1e3:.1f} ms, {s['throughput']['output_tokens_per_s']:,.0f} out tok/s, "
          f"Little L {s['little']['mean_in_system']:.1f} vs lambda W {s['little']['rate_times_latency']:.1f}")


if __name__ == "__main__":
    main()
