"""``archsim compare A.yaml B.yaml --hw HW``: two models side by side (architecture, size, KV, serving, fine-tuning)."""
from __future__ import annotations

import argparse
import math
import sys

from archsim.cli._common import (add_format_arg, add_set_arg, inputs, positive_int_or_auto, print_json, time_arg,
                                write_csv)
from archsim.errors import ConfigError

GIGA = 1e9


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("compare", help="compare two models on one kind of hardware, side by side")
    p.add_argument("workloads", nargs=2, metavar="WORKLOAD", help="two workloads: shipped names (archsim list workloads) or YAML paths")
    p.add_argument("--hw", required=True, help="a shipped hardware name (archsim list hardware) or a YAML path")
    p.add_argument("--devices", type=positive_int_or_auto, default="auto", help="devices per serving replica, or 'auto' (default)")
    p.add_argument("--prompt-len", type=int, default=None, help="prompt tokens (default: each workload's)")
    p.add_argument("--output-len", type=int, default=None, help="output tokens (default: each workload's)")
    p.add_argument("--slo-tpot", type=time_arg("--slo-tpot", positive=True), default=0.05,
                   help="TPOT target for 'throughput at SLO', e.g. 50ms or 0.05 (s) (default 50 ms, i.e. 20 tokens/s "
                        "per user: a choice)")
    p.add_argument("--max-seqs", type=int, default=256, help="largest batch considered")
    p.add_argument("--lora-rank", type=int, default=16, help="LoRA rank for the fine-tuning memory row")
    p.add_argument("--train-devices", type=int, default=64, help="devices for the fine-tuning memory row")
    add_format_arg(p, "model")
    add_set_arg(p)
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    for name in ("slo_tpot", "max_seqs", "lora_rank", "train_devices", "prompt_len", "output_len"):
        value = getattr(args, name)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise ConfigError(None, f"--{name.replace('_', '-')}", "a positive number", value)
    from archsim.config.hardware import load_hardware

    hw = load_hardware(args.hw)
    rows = [_describe(path, hw, args) for path in args.workloads]
    if args.format == "json":
        print_json({"hardware": hw.name, "models": rows}, indent=2)
    elif args.format == "csv":
        write_csv([csv_row(r, hw.name) for r in rows], CSV_COLUMNS)
    else:
        sys.stdout.write(_table(rows, hw.name))
    return 0


# compare --format csv: one row per model, the JSON record flattened (serving and fine-tuning columns prefixed)
CSV_COLUMNS = ("name", "hardware", "attention", "ffn", "total_params", "active_params", "max_context_tokens",
               "kv_bytes_per_token", "kv_dtype", "weights", "serving_layout", "serving_devices", "prompt_len",
               "output_len", "tpot_slo_s", "batch", "tpot_s", "meets_slo", "output_tokens_per_s",
               "output_tokens_per_s_per_device", "usd_per_million_output_tokens", "finetune_full_total_bytes",
               "finetune_lora_total_bytes", "lora_params", "lora_rank", "finetune_per_device_bytes", "finetune_fits",
               "finetune_layout", "lora_per_device_bytes", "lora_fits", "lora_layout")


def csv_row(r: dict, hardware: str) -> dict:
    """One model's record (``_describe``) as a flat CSV row (``CSV_COLUMNS``)."""
    s, ft = r["serving"], r["finetune"]
    return {**r, "hardware": hardware, **s, "serving_layout": s["layout"], "serving_devices": s["devices"],
            "finetune_full_total_bytes": ft["full_total_bytes"], "finetune_lora_total_bytes": ft["lora_total_bytes"],
            "lora_params": ft["lora_params"], "lora_rank": ft["lora_rank"], **ft["per_device"]}


def _describe(path: str, hw, args) -> dict:
    from archsim.config.workload import load_workload
    from archsim.graph.params import count_params, kv_bytes_per_token, kv_sequence_parts
    from archsim.graph.precision import scenario_precision
    from archsim.serving.config import DEFAULT_BLOCK_TOKENS
    from archsim.serving.replicas import Longest, served_deployment
    from archsim.serving.finetune import finetune_memory
    from archsim.serving.kvcache import DEFAULT_KV_MEMORY_FRACTION
    from archsim.serving.metrics import SECONDS_PER_HOUR, TOKENS_PER_MILLION
    from archsim.serving.slo import throughput_at_slo

    w, hw = inputs(load_workload(path), hw, args.settings)  # --set applies to every model compared
    m, sc = w.model, w.scenario
    precision = scenario_precision(sc)
    prompt = args.prompt_len or sc.prompt_len
    output = args.output_len or sc.output_len
    counts = count_params(m)
    # the replica serve would run: the workload's deployment (layout, expert load, options) resolved once
    served = served_deployment(w, hw, longest=Longest(prompt=prompt, context=prompt + output), output_len=output,
                               max_seqs=args.max_seqs, block_tokens=DEFAULT_BLOCK_TOKENS,
                               kv_memory_fraction=DEFAULT_KV_MEMORY_FRACTION, overrides={"devices": args.devices})
    it, replica = served.pool("decode").model, served.pool("decode").replica
    slo = throughput_at_slo(it, replica, prompt=prompt, output=output, tpot_slo_s=args.slo_tpot,
                            max_seqs=args.max_seqs)
    usd_per_s = replica.price_usd_per_hour / SECONDS_PER_HOUR
    attention = (f"{m.attention_kind.upper()} {m.num_hidden_layers}L h{m.hidden_size} "
                 f"{m.num_attention_heads}q/{m.kv_heads}kv heads")
    ffn = (f"MoE {m.n_routed_experts}+{m.n_shared_experts or 0} experts, top-{m.num_experts_per_tok}" if m.is_moe
           else f"dense, width {m.intermediate_size}")
    ft = finetune_memory(m, lora_rank=args.lora_rank)
    return {
        "name": w.name, "attention": attention, "ffn": ffn, "total_params": counts.total, "active_params": counts.active,
        "max_context_tokens": m.max_position_embeddings,
        "kv_bytes_per_token": kv_bytes_per_token(m, precision.kv_cache), "kv_dtype": precision.kv_cache.name,
        # what one sequence holds at prompt + output (sliding-window layers keep their window): run's model keys
        **kv_sequence_parts(m, prompt + output, precision.kv_cache), "layers": m.num_hidden_layers,
        "weights": sc.weights, "serving": {
            "layout": it.par.label(), "devices": replica.devices, "prompt_len": prompt, "output_len": output,
            "tpot_slo_s": args.slo_tpot, "batch": slo.batch, "tpot_s": slo.tpot_s, "meets_slo": slo.meets_slo,
            "output_tokens_per_s": slo.output_tokens_per_s,
            "output_tokens_per_s_per_device": slo.output_tokens_per_s / replica.devices,
            "usd_per_million_output_tokens": usd_per_s / slo.output_tokens_per_s * TOKENS_PER_MILLION},
        "finetune": {"full_total_bytes": ft.full_bytes, "lora_total_bytes": ft.lora_bytes,
                     "lora_params": ft.lora_params, "lora_rank": ft.lora_rank,
                     "method": "ZeRO 2+2+12 bytes/param (Rajbhandari et al. 2020) vs LoRA on attention projections, "
                               "activations excluded",
                     **_training_rows(m, hw, args, prompt)},
    }


def _training_rows(model, hw, args, seq_len: int) -> dict:
    """Per-device memory of fine-tuning and LoRA from the training model (archsim.mapping.training)."""
    from archsim.mapping.training import TrainingSetup, estimate_training, smallest_training_layout

    out = {}
    for mode in ("finetune", "lora"):
        setup = TrainingSetup(seq_len=seq_len, global_batch=args.train_devices, mode=mode, lora_rank=args.lora_rank)
        par = smallest_training_layout(model, hw, setup, args.train_devices)
        est = estimate_training(model, hw, par, setup)
        out[f"{mode}_per_device_bytes"] = est.memory.total_bytes
        out[f"{mode}_fits"] = est.fits
        out[f"{mode}_layout"] = par.label()
    return {"per_device": out}


def _table(rows: list[dict], hw_name: str) -> str:
    a, b = rows

    def line(label, fa, fb=None):
        fb = fb or fa
        return f"{label:36} {fa(a):>38} {fb(b):>38}"

    gb = lambda x: f"{x / GIGA:,.1f} GB"  # noqa: E731
    out = [f"compare on {hw_name}", line("", lambda r: r["name"]),
           line("attention", lambda r: r["attention"]), line("FFN", lambda r: r["ffn"]),
           line("total / active params", lambda r: f"{r['total_params'] / GIGA:.1f}B / {r['active_params'] / GIGA:.1f}B"),
           line("max context", lambda r: f"{r['max_context_tokens']:,}"),
           line("KV bytes per token", lambda r: f"{r['kv_bytes_per_token']:,.0f} ({r['kv_dtype']})"),
           *_kv_sequence_lines(rows, line),
           line("serving layout", lambda r: f"{r['serving']['layout']} ({r['serving']['devices']} dev)"),
           line("throughput at TPOT SLO", lambda r: f"{r['serving']['output_tokens_per_s']:,.0f} tok/s b={r['serving']['batch']}"
                + ("" if r["serving"]["meets_slo"] else " (misses)")),
           line("$ per 1M output tokens", lambda r: f"${r['serving']['usd_per_million_output_tokens']:.3f}"),
           line("full fine-tune memory (total)", lambda r: gb(r["finetune"]["full_total_bytes"])),
           line("LoRA memory (total)", lambda r: gb(r["finetune"]["lora_total_bytes"]))]
    for mode in ("finetune", "lora"):
        out.append(line(f"{mode} per device (training model)",
                        lambda r, k=mode: gb(r["finetune"]["per_device"][f"{k}_per_device_bytes"])
                        + ("" if r["finetune"]["per_device"][f"{k}_fits"] else " (no fit)")))
    return "\n".join(out) + "\n"


def _kv_sequence_lines(rows: list[dict], line) -> list[str]:
    """With a sliding-window model among those compared (gpt-oss), what each model's sequence holds at the serving
    context (report.table.kv_sequence_rows: full-attention bytes per token + the fixed window part), since the per
    token figure counts every layer as full; nothing when no model slides a window (the table as before)."""
    if not any(r["sliding_layers"] for r in rows):
        return []
    from archsim.report.table import kv_sequence_rows

    cells = [kv_sequence_rows(r, r["layers"], r["kv_dtype"]) for r in rows]
    out = []
    for i, (label, _) in enumerate(max(cells, key=len)):
        cell = lambda k: lambda r: cells[k][i][1] if i < len(cells[k]) else "none"  # noqa: E731
        out.append(line(label, cell(0), cell(1)))
    return out
