"""What-if study: Kimi K2 decode at batch 1, 64 and 256 (8K context) on an H100, the same chip with 3D-stacked
DRAM on logic, with HBM-PIM, and a photonic accelerator. Prints a Markdown table and writes a chart.

Method. Each point is ``archsim.api.estimate`` (devices "auto": the fewest devices whose layout fits, micro-batches
chosen by price). The cost model runs every op on the engine of the chip that runs it fastest (cost/engines.py:
the tensor cores, the PIM units for the BF16/FP16 ops they take, the photonic engine), so every command prices
these chips the same way; the PIM share is the decode step's op time on the PIM units (``OpCost.engine``).
Projection figures and assumptions of each chip are in its YAML file.

Run: ``python examples/whatif_kimi_k2_decode.py [--out examples/whatif_kimi_k2_decode.png]``
"""
from __future__ import annotations

import argparse
from pathlib import Path

from archsim.api import estimate, plan
from archsim.config.hardware import load_hardware
from archsim.config.workload import load_workload

ROOT = Path(__file__).resolve().parents[1]
CHIPS = {"H100": "h100.yaml", "H100 + 3D DRAM": "h100_3d_dram.yaml", "H100 + HBM-PIM": "h100_hbm_pim.yaml",
         "Photonic (DOTA-L)": "photonic_dota_l.yaml"}
BATCHES = (1, 64, 256)
PROMPT, OUTPUT = 7168, 1024  # context 8192 at the last decode step


def decode_point(wl, hw, batch: int) -> dict:
    """One chip and batch: estimate()'s decode figures and the share of the step's op time on the PIM units."""
    kw = dict(devices="auto", batch=batch, prompt_len=PROMPT, output_len=OUTPUT)
    report = estimate(wl, hw, **kw)
    cost = plan(wl, hw, **kw).plan.pool("decode").decode.graph_cost
    pim = sum(op.time_s for op in cost.ops.values() if op.engine == "pim")
    dec = report.decode
    layout = report.deployment.layout["label"].replace("MBauto", f"MB{dec.micro_batches}")
    return {"devices": report.deployment.devices, "layout": layout, "tokens_per_s": dec.tokens_per_s,
            "tokens_per_s_per_device": dec.tokens_per_s_per_device, "tpot_s": dec.tpot_s,
            "joules_per_token": report.get("energy.joules_per_token"), "tops_per_w": dec.tops_per_watt,
            "bound": dec.bound, "pim_share": pim / cost.time_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "examples" / "whatif_kimi_k2_decode.png"))
    args = ap.parse_args()
    wl = load_workload(ROOT / "workloads" / "kimi_k2.yaml")
    rows = {}
    for name, file in CHIPS.items():
        hw = load_hardware(ROOT / "hardware" / file)
        rows[name] = {b: decode_point(wl, hw, b) for b in BATCHES}
    print("| chip | batch | devices (layout) | tokens/s | tokens/s/device | J/token | TOPS/W | binding resource |")
    print("|---|---|---|---|---|---|---|---|")
    for name, by_batch in rows.items():
        for b, r in by_batch.items():
            pim = f" (PIM {r['pim_share']:.0%} of op time)" if r["pim_share"] > 0 else ""
            print(f"| {name} | {b} | {r['devices']} ({r['layout']}) | {r['tokens_per_s']:.1f} | "
                  f"{r['tokens_per_s_per_device']:.2f} | {r['joules_per_token']:.3g} | {r['tops_per_w']:.3g} | "
                  f"{r['bound']}{pim} |")
    try:
        from archsim.report.plots import grouped_bars
    except ImportError:  # pragma: no cover
        return
    try:
        grouped_bars([f"batch {b}" for b in BATCHES],
                     {name: [rows[name][b]["tokens_per_s_per_device"] for b in BATCHES] for name in rows},
                     ylabel="decode tokens/s per device", title="Kimi K2 decode, 8K context (what-if chips)",
                     path=args.out, log=True)
        print(f"\nchart: {args.out}")
    except Exception as err:  # matplotlib missing: the table is the result
        print(f"\nchart skipped: {err}")


if __name__ == "__main__":
    main()
