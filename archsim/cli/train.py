"""``archsim train WORKLOAD --hw HW --devices N``: training / fine-tuning step time, memory, MFU, GPU-hours."""
from __future__ import annotations

import argparse
import json

from archsim.cli._common import WORKLOAD_HELP, add_format_arg, add_set_arg, inputs, positive_int, write_csv
from archsim.errors import ConfigError

SI = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12, "P": 1e15}


def token_count(text: str) -> float:
    """``14.8T`` -> 1.48e13; ``500B`` -> 5e11; plain numbers as given."""
    t = text.strip()
    suffix = t[-1:].upper() if t[-1:].isalpha() else ""
    try:
        value = float(t[:-1] if suffix else t) * SI[suffix]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"expected a token count like '14.8T' or '500B', got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive token count, got {text!r}")
    return value


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="training / fine-tuning: step time, memory, MFU, GPU-hours, cost")
    p.add_argument("workload", help=WORKLOAD_HELP)
    p.add_argument("--hw", required=True, help="hardware: a shipped name (e.g. h800) or a YAML path")
    p.add_argument("--devices", type=positive_int, help="number of devices (required unless --recipe gives it)")
    p.add_argument("--recipe", choices=("published",),
                   help="start from the workload's published training run (its training: section, e.g. DeepSeek-V3 "
                        "on 2048 H800); flags given here replace the recipe's")
    p.add_argument("--tokens", type=token_count, help=f"token budget, e.g. 14.8T (default {DEFAULTS['tokens']:.0e})")
    p.add_argument("--seq-len", type=positive_int, help=f"sequence length (default {DEFAULTS['seq_len']})")
    p.add_argument("--global-batch", type=positive_int, default=None,
                   help="sequences per step across the deployment (default: 4 per device)")
    # the deployment vocabulary of run/serve/plan/sweep (docs/deployments.md); training runs MoE-TP 1
    for flag, text in (("tp", "attention tensor parallel"), ("moe-ep", "expert parallel (alias --ep)"),
                       ("pp", "pipeline stages"), ("attn-dp", "data-parallel replicas (alias --dp)"),
                       ("micro-batches", "micro-batches per step")):
        p.add_argument(f"--{flag}", type=positive_int, help=f"{text} (default: chosen)")
    p.add_argument("--ep", dest="ep_alias", type=positive_int, help="alias of --moe-ep")
    p.add_argument("--dp", dest="dp_alias", type=positive_int, help="alias of --attn-dp")
    p.add_argument("--zero", type=int, choices=(0, 1, 2, 3),
                   help="ZeRO stage (default 1; a higher stage is chosen when 1 does not fit)")
    p.add_argument("--precision", choices=("bf16", "fp8"), help="default bf16")
    p.add_argument("--optimizer", choices=("adamw", "muon"), help="default adamw")
    p.add_argument("--recompute", choices=("none", "selective", "full"),
                   help="default selective (full is chosen when nothing else fits)")
    p.add_argument("--mode", choices=("pretrain", "finetune", "lora"), default="pretrain")
    p.add_argument("--lora-rank", type=positive_int, default=16)
    p.add_argument("--schedule", choices=("1f1b", "interleaved", "dualpipe"), help="default 1f1b")
    p.add_argument("--virtual-chunks", type=positive_int, default=2, help="model chunks per rank (interleaved)")
    p.add_argument("--comm-sms", type=int, help="SMs reserved for communication kernels (default 0; DSV3: 20)")
    p.add_argument("--mtp", action="store_true", default=None, help="train the MTP module too (DeepSeek-V3)")
    p.add_argument("--fp8-activation-cache", action="store_true", default=None,
                   help="store saved activations in FP8")
    p.add_argument("--attention-output-format", choices=("bf16", "e5m6"),
                   help="format the attention output is cached in for backward (default bf16; DSV3: e5m6)")
    p.add_argument("--recompute-projections",
                   help="comma-separated projections recomputed in backward, e.g. q_b_proj,kv_b_proj (DSV3)")
    p.add_argument("--trace", help="write the simulated pipeline step as Chrome trace JSON to this file")
    add_format_arg(p, "training run (one row: layout, setup, memory, step time, MFU, GPU-hours, cost)")
    add_set_arg(p)
    p.set_defaults(handler=run)
    return p


# built-in values of the flags a recipe may set (argparse leaves them None so a recipe can fill them first)
DEFAULTS = {"tokens": 1e12, "seq_len": 4096, "zero": 1, "precision": "bf16", "optimizer": "adamw",
            "recompute": "selective", "schedule": "1f1b", "comm_sms": 0, "mtp": False, "fp8_activation_cache": False,
            "recompute_projections": "", "attention_output_format": "bf16"}
DEGREES = ("tp", "moe_ep", "pp", "attn_dp", "micro_batches")


def with_recipe(args: argparse.Namespace, workload) -> argparse.Namespace:
    """The flags: given > the workload's published recipe (``--recipe published``) > built-in defaults."""
    out = argparse.Namespace(**vars(args))
    recipe = {}
    if args.recipe:
        if workload.training is None:
            raise ConfigError(workload.source_file, "training", "a training: section (the published run) for "
                              "--recipe published", None)
        recipe = dict(workload.training.flags)
    for key, value in {**DEFAULTS, "devices": None, "global_batch": None, **{d: None for d in DEGREES}}.items():
        if getattr(out, key, None) is None:
            setattr(out, key, recipe.get(key, value))
    if out.devices is None:
        raise ConfigError(None, "--devices", "a device count (or --recipe published)", None)
    return out


def run(args: argparse.Namespace) -> int:
    from archsim.config.hardware import load_hardware
    from archsim.config.workload import load_workload

    workload, hw = inputs(load_workload(args.workload), load_hardware(args.hw), args.settings)
    given = {k for k in ("zero", "recompute") if getattr(args, k) is not None}
    args = with_recipe(args, workload)
    if args.comm_sms < 0 or args.comm_sms >= hw.sm_count:
        raise ConfigError(None, "--comm-sms", f"an integer in [0, {hw.sm_count})", args.comm_sms)
    ep, dp = _alias(args.moe_ep, args.ep_alias, "--moe-ep", "--ep"), _alias(args.attn_dp, args.dp_alias,
                                                                             "--attn-dp", "--dp")
    est, setup, note = _fitting(workload, hw, args, ep, dp, free={"zero", "recompute"} - given)
    out = {"workload": workload.name, "hardware": hw.name, **est.to_dict(tokens=args.tokens)}
    if note:
        out["chosen_to_fit" if out["fits"] else "suggestion"] = note
    if args.trace:
        from archsim.report.trace import write_trace
        write_trace(_pipeline_trace(est, setup), args.trace)
    if args.format == "json":
        print(json.dumps(out))
        return 0
    if args.format == "csv":
        write_csv([training_row(out)], TRAINING_COLUMNS)
        return 0
    mem = out["memory"]
    print(f"{workload.name} training on {args.devices} x {hw.name}: {out['layout']['label']}, {args.schedule}"
          + (" (the workload's published recipe)" if args.recipe else ""))
    if note:
        print(f"  {'chosen to fit' if out['fits'] else 'DOES NOT FIT':<16} {note}")
    print(f"  memory / device  {mem['per_device_bytes'] / 1e9:.1f} GB of {mem['capacity_bytes'] / 1e9:.0f} GB -> "
          f"{'fits' if out['fits'] else 'does not fit (not priced)'}")
    if not out["fits"]:
        return 0
    print(f"  step time        {out['step_time_s']:.3f} s   ({out['tokens_per_s']:.4g} tokens/s)")
    print(f"  MFU              {out['mfu'] * 100:.1f} %  (dense BF16 peak)")
    print(f"  GPU-hours / 1T   {out['gpu_hours_per_trillion_tokens']:.4g}")
    print(f"  budget {args.tokens:.3g} tokens: {out['gpu_hours']:.4g} GPU-hours, ${out['cost_usd']:.4g}")
    return 0


# train --format csv: one row; a layout that does not fit leaves the time, MFU and cost columns empty
TRAINING_COLUMNS = ("workload", "hardware", "devices", "layout", "tp", "moe_ep", "pp", "attn_dp", "micro_batches",
                    "zero_stage", "seq_len", "global_batch", "precision", "optimizer", "recompute", "mode", "schedule",
                    "fits", "per_device_bytes", "capacity_bytes", "tokens_per_step", "step_time_s", "tokens_per_s",
                    "mfu", "gpu_hours_per_trillion_tokens", "tokens", "gpu_hours", "cost_usd", "pipeline_s", "bubble_s",
                    "dp_gradient_sync_s", "optimizer_s", "note")


def training_row(out: dict) -> dict:
    """The training estimate (``run``'s ``out``) as one flat CSV row (``TRAINING_COLUMNS``)."""
    layout, mem, parts = out["layout"], out["memory"], out.get("breakdown_s") or {}
    return {**out, **layout, **out["setup"], "layout": layout["label"], "per_device_bytes": mem["per_device_bytes"],
            "capacity_bytes": mem["capacity_bytes"], "note": out.get("chosen_to_fit") or out.get("suggestion"),
            **{f"{k}_s": parts.get(k) for k in ("pipeline", "bubble", "dp_gradient_sync", "optimizer")}}


def _setup(args: argparse.Namespace, recompute: str):
    from archsim.mapping.training import TrainingSetup

    return TrainingSetup(seq_len=args.seq_len, global_batch=args.global_batch or 4 * args.devices,
                         precision=args.precision, optimizer=args.optimizer, recompute=recompute, mode=args.mode,
                         schedule=args.schedule, virtual_chunks=args.virtual_chunks, lora_rank=args.lora_rank,
                         comm_sms=args.comm_sms, mtp=args.mtp, fp8_activation_cache=args.fp8_activation_cache,
                         recompute_projections=tuple(p for p in args.recompute_projections.split(",") if p),
                         attention_output_format=args.attention_output_format)


def _fitting(workload, hw, args: argparse.Namespace, ep, dp, *, free: set[str]):
    """The estimate of the first layout that fits, as run picks the smallest deployment that fits: the flags'
    layout, then (for the choices left free) ZeRO stages 2 and 3, then full recomputation. A note says what was
    chosen, or, when nothing fits, what was tried and what would help (the flags' layout is then reported, not
    priced)."""
    from archsim.mapping.training import estimate_training, smallest_training_layout

    zeros = [args.zero] + ([z for z in (2, 3) if z > args.zero] if "zero" in free else [])
    recomputes = [args.recompute] + (["full"] if "recompute" in free and args.recompute != "full" else [])
    first = None
    for recompute in recomputes:
        for zero in zeros:
            setup = _setup(args, recompute)
            par = smallest_training_layout(workload.model, hw, setup, args.devices, tp=args.tp, ep=ep, pp=args.pp,
                                           dp=dp, micro_batches=args.micro_batches, zero_stage=zero)
            est = estimate_training(workload.model, hw, par, setup)
            first = first or est
            if est.fits:
                changed = [f"ZeRO-{zero}"] * (zero != args.zero) + [f"{recompute} recompute"] * (
                    recompute != args.recompute)
                note = (f"{' and '.join(changed)} (the flags' layout needs "
                        f"{first.memory.total_bytes / 1e9:.1f} GB per device)") if changed else ""
                return est, setup, note
    tried = ", ".join([f"ZeRO-{z}" for z in zeros] + [f"{r} recompute" for r in recomputes])
    return first, _setup(args, args.recompute), (f"nothing fits (tried {tried}): more devices, a deeper --pp or "
                                                 "--precision fp8 would lower the memory per device")


def _alias(value, alias, name: str, alias_name: str):
    """A flag given under its name or its alias (equal if both)."""
    if value is not None and alias is not None and value != alias:
        raise ConfigError(None, alias_name, f"equal to {name} ({value}) when both are given", alias)
    return value if value is not None else alias


def _pipeline_trace(est, setup) -> dict:
    """Run the estimate's pipeline schedule as events: one track per rank (empty without a pipeline)."""
    from archsim.mapping.pipeline import dualpipe, interleaved_1f1b, one_f_one_b
    from archsim.report.trace import pipeline_trace
    from archsim.sim.step import simulate_pipeline

    if est.pipeline is None:
        return pipeline_trace([])
    kind, chunk, chunks = est.pipeline
    pp, m = est.parallelism.pp, est.parallelism.micro_batches
    schedule = {"dualpipe": lambda: dualpipe(pp, m), "interleaved": lambda: interleaved_1f1b(pp, m, chunks),
                "1f1b": lambda: one_f_one_b(pp, m)}[kind]()
    result = simulate_pipeline(schedule, chunk, kind=kind, chunks=chunks)
    return pipeline_trace(result.events, time_s=result.time_s)
