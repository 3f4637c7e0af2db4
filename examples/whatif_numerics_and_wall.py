"""Numerics of each what-if chip's number format on the tiny Kimi K2 (vs float64), and the memory-wall
history chart of the shipped hardware files. Prints Markdown tables; writes the chart.

Run: ``python examples/whatif_numerics_and_wall.py [--out examples/memory_wall_history.png]``
"""
from __future__ import annotations

import argparse
from pathlib import Path

from archsim.config.hardware import load_hardware
from archsim.config.workload import load_workload
from archsim.graph.small import small_variant
from archsim.whatif.memory_wall import history, in_trend
from archsim.whatif.numerics import Format, evaluate_formats, photonic_format

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "examples" / "memory_wall_history.png"))
    args = ap.parse_args()
    tiny = small_variant(load_workload(ROOT / "workloads" / "kimi_k2.yaml").model)
    photonic = photonic_format(load_hardware(ROOT / "hardware" / "photonic_dota_l.yaml"))
    formats = [("H100 FP8 (DeepSeek 128x128 blocks)", Format(kind="fp8_block")),
               ("FP4 (OCP MXFP4)", Format(kind="mxfp4")),
               ("HBM-PIM FP16", Format(kind="fp16")), ("HBM-PIM BF16", Format(kind="bf16")),
               (f"photonic DOTA-L {photonic.bits:g} b + noise {photonic.noise_std:g}", photonic)]
    formats += [(f"photonic {b} b + same noise", Format(kind="photonic", bits=b, noise_std=photonic.noise_std,
                                                        dot_length=photonic.dot_length)) for b in (6, 4)]
    results = evaluate_formats(tiny, [f for _, f in formats], batch=4, seq=32)
    print("| format (tiny Kimi K2, 4 x 32 tokens) | max logit error | KL vs float64 | top-1 agreement |")
    print("|---|---|---|---|")
    for (label, _), r in zip(formats, results):
        print(f"| {label} | {r.max_logit_error:.3g} | {r.kl_divergence:.3g} | {r.top1_agreement:.1%} |")
    chips = [load_hardware(p) for p in sorted((ROOT / "hardware").glob("*.yaml"))]
    points, growth = history(chips)
    print("\n| chip | year | BF16 peak (TFLOP/s) | memory BW (TB/s) | memory (GB) | scale-up BW per direction (GB/s) |")
    print("|---|---|---|---|---|---|")
    for p in points:
        print(f"| {p.name} | {p.year} | {p.peak_flop_per_s / 1e12:.0f} | {p.memory_bandwidth_bytes_per_s / 1e12:.2f} | "
              f"{p.memory_capacity_bytes / 1e9:.0f} | {p.interconnect_bytes_per_s / 1e9:.0f} |")
    print("\ngrowth per two years (log-linear fit over the HBM chips): " +
          ", ".join(f"{k} x{v:.2f}" for k, v in growth.items()))
    try:
        from archsim.report.plots import history_chart
        trend = {hw.name for hw in chips if in_trend(hw)}  # the wafer-scale SRAM chip would flatten the axis
        history_chart([p for p in points if p.name in trend], growth, args.out)
        print(f"chart: {args.out}")
    except Exception as err:  # matplotlib missing: the tables are the result
        print(f"chart skipped: {err}")


if __name__ == "__main__":
    main()
