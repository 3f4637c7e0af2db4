"""What-if study: Kimi K2 decode at batch 1, 64 and 256 (8K context) on an H100, the same chip with 3D-stacked
DRAM on logic, with HBM-PIM, and a photonic accelerator. Prints a Markdown table and writes a chart.

Method. For each chip and batch the deployment is planned as ``archsim.api.estimate`` plans it (devices
"auto": the fewest devices whose layout fits). One device's decode graph is priced with every op placed on
the chip engine that runs it fastest (``archsim.whatif.placement``; on chips without PIM or a second matrix
engine this is exactly the cost model's default), then combined with the layout's communication the way
``mapping/phases.py`` does (with two micro-batches communication hides behind compute: exposed = max(0,
comm - compute); otherwise exposed = comm). On the H100 the result equals
``estimate()`` (checked below). Projection figures and assumptions of each chip are in its YAML file.

Run: ``python examples/whatif_kimi_k2_decode.py [--out examples/whatif_kimi_k2_decode.png]``
"""
from __future__ import annotations

import argparse
from math import ceil
from pathlib import Path

from archsim.api import estimate
from archsim.config.hardware import load_hardware
from archsim.config.workload import load_workload
from archsim.cost.phase import price_graph
from archsim.graph.precision import precision_from_names
from archsim.mapping.parallel import plan_layout
from archsim.mapping.phases import device_phase_graph
from archsim.whatif.placement import place_graph

ROOT = Path(__file__).resolve().parents[1]
CHIPS = {"H100": "h100.yaml", "H100 + 3D DRAM": "h100_3d_dram.yaml", "H100 + HBM-PIM": "h100_hbm_pim.yaml",
         "Photonic (DOTA-L)": "photonic_dota_l.yaml"}
BATCHES = (1, 64, 256)
PROMPT, OUTPUT = 7168, 1024  # context 8192 at the last decode step
TERA = 1e12


def decode_point(model, hw, precision, batch: int) -> dict:
    plan = plan_layout(model, hw, devices="auto", batch=batch, prompt_len=PROMPT, output_len=OUTPUT,
                       precision=precision)
    par, dec = plan.parallelism, plan.decode
    if par.pp != 1 or par.cp != 1:
        raise SystemExit(f"study assumes one pipeline stage, got {par}")
    seqs = ceil(batch / par.dp)
    mb = min(par.micro_batches, seqs)
    per_micro = ceil(seqs / mb)
    routed = per_micro * max(par.ep, par.tp) / par.tp if model.is_moe else None
    # price_phase's device graph (routed experts in the layout of decode's EP exchange)
    graph = device_phase_graph(model, "decode", per_micro, PROMPT + OUTPUT, precision, par.tp, par.ep, routed,
                               mtp=False)
    default = price_graph(graph, hw)
    placed = place_graph(graph, hw, objective="time")
    compute = dec.compute_s * placed.time_s / default.time_s
    comm = dec.communication_s
    exposed = max(0.0, comm - compute) if mb >= 2 else comm
    time_s = compute + exposed
    share = dec.flops_per_device / default.flops
    energy = placed.dynamic_energy_j * share + hw.static_power_w * time_s
    by_bound: dict[str, float] = {}
    for p in placed.placements.values():
        label = p.bound if p.engine != "pim" else f"pim/{p.bound}"
        by_bound[label] = by_bound.get(label, 0.0) + p.time_s
    # communication binds when it sets the step time: overlapped and longer than compute, or not overlapped
    # and longer than compute
    comm_binds = exposed > 0 if mb >= 2 else exposed > compute
    bound = "communication" if comm_binds else max(by_bound, key=by_bound.get)
    return {"devices": par.devices, "layout": par.label(), "tokens_per_s": batch / time_s,
            "tokens_per_s_per_device": batch / time_s / par.devices, "tpot_s": time_s,
            "joules_per_token": energy * par.devices / batch, "tops_per_w": dec.flops_per_device / energy / TERA,
            "bound": bound, "pim_share": placed.time_s_by_engine.get("pim", 0.0) / placed.time_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "examples" / "whatif_kimi_k2_decode.png"))
    args = ap.parse_args()
    wl = load_workload(ROOT / "workloads" / "kimi_k2.yaml")
    sc = wl.scenario
    precision = precision_from_names(sc.weights, sc.activations, sc.kv_cache)
    rows = {}
    for name, file in CHIPS.items():
        hw = load_hardware(ROOT / "hardware" / file)
        rows[name] = {b: decode_point(wl.model, hw, precision, b) for b in BATCHES}
    # consistency: on the plain H100 the study's numbers are estimate()'s
    for b in BATCHES:
        ref = estimate(wl, load_hardware(ROOT / "hardware" / "h100.yaml"), devices="auto", batch=b,
                       prompt_len=PROMPT, output_len=OUTPUT)
        got = rows["H100"][b]["tokens_per_s"]
        assert abs(got / ref.get("decode.tokens_per_s") - 1) < 1e-9, (b, got, ref.get("decode.tokens_per_s"))
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
