"""Time one full projection (prefill + decode, memory, energy) of Kimi K2 on H100.

Target (issue 2): under 20 ms per projection once the workload and hardware are loaded.
Wall time swings with other load on the machine, so the process CPU time is printed too, with a
breakdown (layout pricing vs the rest of the report) and call counts from one profiled projection
(graphs built, ops priced, memory evaluations): counts do not depend on the machine.
Run: python benchmarks/bench_projection.py
"""
from __future__ import annotations

import cProfile
import pstats
import statistics
import time

from archsim.api import estimate
from archsim.config.hardware import load_hardware
from archsim.config.workload import load_workload
from archsim.graph.precision import precision_from_names
from archsim.mapping.parallel import plan_layout
from archsim.mapping.phases import price_phase

TARGET_S = 20e-3  # issue 2: "under 20 ms per projection"
COUNTED = {("graph/build.py", "_build"): "graph builds", ("cost/phase.py", "price_graph"): "graphs priced",
           ("cost/traffic.py", "op_work"): "ops priced (op_work)",
           ("mapping/device_memory.py", "memory_per_device"): "memory evaluations",
           ("mapping/weights.py", "layer_weight_bytes"): "layer weight-byte sums"}


def _time(fn, repeats: int) -> tuple[list[float], list[float]]:
    """(wall seconds, process CPU seconds) of each call."""
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return wall, cpu


def _line(label: str, fn, repeats: int = 10) -> float:
    wall, cpu = _time(fn, repeats)
    print(f"{label:44s} wall median {statistics.median(wall) * 1e3:7.1f} ms   "
          f"cpu median {statistics.median(cpu) * 1e3:7.1f} ms   cpu min {min(cpu) * 1e3:7.1f} ms")
    return statistics.median(cpu)


def _counts(fn) -> dict[str, int]:
    """Calls of the functions in COUNTED during one ``fn()``."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof).stats
    out = {label: 0 for label in COUNTED.values()}
    for (path, _, name), (_, calls, *_rest) in stats.items():
        for (suffix, counted), label in COUNTED.items():
            if name == counted and path.endswith(suffix):
                out[label] += calls
    out["function calls (all)"] = sum(v[1] for v in stats.values())
    return out


def main() -> None:
    wl = load_workload("workloads/kimi_k2.yaml")
    hw = load_hardware("hardware/h100.yaml")
    sc = wl.scenario
    precision = precision_from_names(sc.weights, sc.activations, sc.kv_cache)
    estimate(wl, hw, devices=16)  # warm imports and caches
    fixed = _line("estimate, fixed deployment (16 x H100)", lambda: estimate(wl, hw, devices=16))
    _line("estimate, devices=auto (searches)", lambda: estimate(wl, hw))
    _line("estimate from YAML files (16 x H100)",
          lambda: estimate("workloads/kimi_k2.yaml", "hardware/h100.yaml", devices=16), 5)
    plan = plan_layout(wl.model, hw, devices=16, batch=sc.batch, prompt_len=sc.prompt_len,
                       output_len=sc.output_len, precision=precision)
    print("breakdown of the fixed deployment:")
    _line("  plan_layout (memory + prefill + decode)",
          lambda: plan_layout(wl.model, hw, devices=16, batch=sc.batch, prompt_len=sc.prompt_len,
                              output_len=sc.output_len, precision=precision))
    _line("  price_phase prefill + decode",
          lambda: (price_phase(wl.model, hw, plan.parallelism, precision, phase="prefill", batch=sc.batch,
                               length=sc.prompt_len),
                   price_phase(wl.model, hw, plan.parallelism, precision, phase="decode", batch=sc.batch,
                               length=sc.prompt_len + sc.output_len)))
    print("calls in one estimate (16 x H100):")
    for label, n in _counts(lambda: estimate(wl, hw, devices=16)).items():
        print(f"  {label:42s} {n:9d}")
    verdict = "met" if fixed < TARGET_S else "NOT met"
    print(f"target {TARGET_S * 1e3:.0f} ms per projection (cpu median, fixed deployment): {verdict}")


if __name__ == "__main__":
    main()
