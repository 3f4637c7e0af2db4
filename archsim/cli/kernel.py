"""``archsim kernel gemm|grouped-gemm|moe|attention|collective ...``: one kernel's predicted time, bound,
achieved FLOP/s and bytes/s (``--format json`` prints one object with ``time_s``)."""
from __future__ import annotations

import argparse
import json

from archsim.cli._common import add_format_arg, write_csv

DEFAULT_HW = "h800"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hw", default=DEFAULT_HW, help=f"hardware name under hardware/ or a YAML path (default {DEFAULT_HW})")
    add_format_arg(p, "kernel (time_s, bound, FLOPs, bytes, achieved rates, the time parts and the kernel's details)")


def _size(text: str) -> float:
    """A byte count: a plain number >= 0 or a quantity such as '64 MiB' (ConfigError otherwise)."""
    import math

    from archsim.errors import ConfigError
    from archsim.units import parse_quantity

    try:
        value = float(text)
    except ValueError:
        return parse_quantity(text, "bytes", path="--bytes")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(None, "--bytes", "a size like 67108864 or '64 MiB' (finite, >= 0)", text)
    return value


def _check_optional_sizes(args: argparse.Namespace) -> None:
    """Integer flags that must be >= 1 whenever they are given (also those the chosen kind ignores)."""
    from archsim.errors import ConfigError

    for name in ("n_group", "topk_group", "q_len", "heads_kv", "head_dim", "kv_lora_rank", "rope_dim"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ConfigError(None, f"--{name.replace('_', '-')}", "an integer >= 1", value)


def add_parser(sub) -> None:  # noqa: ANN001 - argparse subparsers
    p = sub.add_parser("kernel", help="predict one kernel (GEMM, grouped GEMM, MoE, attention, collective)")
    kinds = p.add_subparsers(dest="kernel_kind", required=True)

    g = kinds.add_parser("gemm", help="C[m,n] = A[m,k] B[k,n]")
    for flag, text in (("--m", "rows of A and C (tokens)"), ("--n", "columns of B and C (output features)"),
                       ("--k", "the reduction dimension (input features)")):
        g.add_argument(flag, type=int, required=True, help=text)
    g.add_argument("--dtype", default="fp8", help="input dtype (fp8, bf16, ...; default fp8)")
    _common(g)

    gg = kinds.add_parser("grouped-gemm", help="G independent GEMMs of m rows each (MoE experts)")
    for flag, text in (("--groups", "independent GEMMs (experts)"), ("--m", "rows of each group (tokens per expert)"),
                       ("--n", "columns of each B and C"), ("--k", "the reduction dimension")):
        gg.add_argument(flag, type=int, required=True, help=text)
    gg.add_argument("--dtype", default="fp8", help="input dtype (default fp8)")
    gg.add_argument("--layout", choices=("contiguous", "masked"), default="contiguous",
                    help="contiguous (prefill/training rows concatenated) or masked (decode [groups, m, k] buffer)")
    _common(gg)

    m = kinds.add_parser("moe", help="one MoE layer's routed experts on one chip of an EP group")
    for flag, text in (("--tokens", "tokens on this chip"), ("--hidden", "model width (hidden_size)"),
                       ("--inter", "expert FFN width (moe_intermediate_size)"), ("--topk", "experts per token"),
                       ("--experts", "routed experts in all"), ("--ep", "chips of the EP group")):
        m.add_argument(flag, type=int, required=True, help=text)
    m.add_argument("--dtype", default="fp8", help="expert and dispatch dtype")
    m.add_argument("--n-group", type=int, default=1, help="expert groups for node-limited routing (DeepSeek-V3: 8)")
    m.add_argument("--topk-group", type=int, default=1, help="groups a token may use (DeepSeek-V3: 4)")
    m.add_argument("--mode", choices=("throughput", "low_latency"), default="throughput",
                   help="DeepEP kernels: throughput (normal, default) or low_latency")
    _common(m)

    a = kinds.add_parser("attention", help="one attention call (MLA absorbed, GQA or MHA; flash traffic)")
    a.add_argument("--kind", choices=("mla", "gqa", "mha"), required=True)
    a.add_argument("--phase", choices=("prefill", "decode"), required=True)
    for flag, text in (("--heads", "query heads"), ("--batch", "sequences"), ("--context", "tokens attended")):
        a.add_argument(flag, type=int, required=True, help=text)
    a.add_argument("--q-len", type=int, default=None, help="new tokens per sequence in decode (default 1; MTP: 2)")
    a.add_argument("--kv-dtype", default="bf16", help="KV-cache dtype (default bf16)")
    a.add_argument("--heads-kv", type=int, default=None, help="KV heads (GQA)")
    a.add_argument("--head-dim", type=int, default=None, help="head dimension (GQA/MHA)")
    # DeepSeek-V3 / Kimi K2 MLA widths (HF config.json kv_lora_rank, qk_rope_head_dim)
    a.add_argument("--kv-lora-rank", type=int, default=512, help="MLA latent width (default 512)")
    a.add_argument("--rope-dim", type=int, default=64, help="MLA rope key width (default 64)")
    _common(a)

    c = kinds.add_parser("collective", help="a collective over D chips (cost/collectives.py)")
    c.add_argument("--op", choices=("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "p2p"), required=True)
    c.add_argument("--bytes", required=True, help="bytes per chip, e.g. 67108864 or '64 MiB'")
    c.add_argument("--devices", type=int, required=True, help="chips in the group")
    _common(c)
    p.set_defaults(handler=run)


def _shape(args: argparse.Namespace) -> tuple[str, dict]:
    kind = args.kernel_kind
    if kind == "gemm":
        return "gemm", dict(m=args.m, n=args.n, k=args.k, dtype=args.dtype)
    if kind == "grouped-gemm":
        return "grouped_gemm", dict(groups=args.groups, m=args.m, n=args.n, k=args.k, dtype=args.dtype,
                                    row_layout=args.layout)
    if kind == "moe":
        return "moe", dict(tokens=args.tokens, hidden=args.hidden, inter=args.inter, topk=args.topk,
                           experts=args.experts, ep=args.ep, dtype=args.dtype, n_group=args.n_group,
                           topk_group=args.topk_group, mode=args.mode)
    if kind == "attention":
        shape = dict(kind=args.kind, phase=args.phase, heads=args.heads, batch=args.batch, context=args.context,
                     q_len=args.q_len, kv_dtype=args.kv_dtype)
        if args.kind == "mla":
            shape.update(kv_lora_rank=args.kv_lora_rank, rope_dim=args.rope_dim)
        else:
            shape.update(heads_kv=args.heads_kv, head_dim=args.head_dim)
        return "attention", shape
    return "collective", dict(op=args.op, nbytes=_size(args.bytes), devices=args.devices)


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"


def _time(seconds: float) -> str:
    for factor, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if seconds >= factor:
            return f"{seconds / factor:.4g} {unit}"
    return f"{seconds / 1e-9:.4g} ns"


def run(args: argparse.Namespace) -> int:
    from archsim.kernel_api import kernel_time

    _check_optional_sizes(args)
    kind, shape = _shape(args)
    est = kernel_time(kind, args.hw, **shape)
    if args.format == "json":
        print(json.dumps(est.to_dict()))
        return 0
    if args.format == "csv":
        row = kernel_row(est.to_dict())
        write_csv([row], list(row))
        return 0
    print(f"{kind} on {est.hardware}: {_time(est.time_s)} ({est.bound}-bound)")
    rates = [f"{_si(est.achieved_flop_per_s, 'FLOP/s')}"] if est.flops else []  # a collective does no FLOPs
    amounts = [f"{_si(est.flops, 'FLOP')}"] if est.flops else []
    print(f"  achieved {', '.join(rates + [_si(est.achieved_bytes_per_s, 'B/s')])} "
          f"({', '.join(amounts + [_si(est.bytes, 'B')])})")
    for name, value in est.parts.items():
        print(f"  {name.removesuffix('_s'):>12}: {_time(value) if value > 0 else '0'}")
    for name, value in est.detail.items():
        print(f"  {name:>12}: {_detail(name, value)}")
    return 0


def kernel_row(d: dict) -> dict:
    """The estimate (``KernelEstimate.to_dict``) as one flat CSV row: its scalars, then its time parts (``*_s``),
    then its details (the kind's own: tile shape and waves for a GEMM, algorithm and steps for a collective)."""
    head = ("kind", "hardware", "time_s", "bound", "flops", "bytes", "achieved_flop_per_s", "achieved_bytes_per_s")
    return {**{k: d[k] for k in head}, **d["parts"], **{k: v for k, v in d["detail"].items() if k not in head}}


def _detail(name: str, value) -> str:
    """A detail value with its unit when its name carries one (``_bytes``, ``_s``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if name.endswith("_bytes"):
        return _si(value, "B")
    if name.endswith("_s"):
        return _time(value) if value > 0 else "0"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
