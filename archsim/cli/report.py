"""``archsim report WORKLOAD --hw HW --out report.html``: the projection ``archsim run`` prints, as one
self-contained HTML page (model, deployment, memory, step time by part, roofline, heaviest ops; report/html.py).
``serve --html`` and ``sweep --html`` write the same kind of page for their results."""
from __future__ import annotations

import argparse

from archsim.cli._common import (WORKLOAD_HELP, add_deployment_args, add_set_arg, deployment_overrides, inputs,
                                positive_int)
from archsim.dtypes import PLAIN_FORMATS, WEIGHT_FORMATS, format_choices


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="write an HTML page of a projection (opens offline)")
    p.add_argument("workload", help=WORKLOAD_HELP)
    p.add_argument("--hw", required=True, help="hardware: a shipped name (e.g. h100) or a YAML path")
    p.add_argument("--out", required=True, help="the HTML file to write")
    add_deployment_args(p)
    p.add_argument("--batch", type=positive_int, help="sequences in one step of one instance")
    p.add_argument("--prompt-len", type=positive_int, help="prompt tokens per sequence")
    p.add_argument("--output-len", type=positive_int, help="output tokens per sequence")
    p.add_argument("--weights", help=f"weight format: {format_choices(WEIGHT_FORMATS)} (default: the workload's)")
    p.add_argument("--expert-weights", help=f"routed experts' format: {format_choices(WEIGHT_FORMATS)} (default: as "
                                            "--weights)")
    p.add_argument("--kv-cache", help=f"KV-cache format: {format_choices(PLAIN_FORMATS)} (default: the workload's)")
    add_set_arg(p)
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from archsim.api import plan
    from archsim.report.html import run_page
    from archsim.report.metrics import report_of

    overrides = {**deployment_overrides(args), **{k: getattr(args, k) for k in
                                                   ("batch", "prompt_len", "output_len", "weights", "expert_weights",
                                                    "kv_cache") if getattr(args, k) is not None}}
    resolved = plan(*inputs(args.workload, args.hw, args.settings), **overrides)
    write_html(args.out, run_page(report_of(resolved, overrides), resolved))
    print(f"wrote {args.out}")
    return 0


def write_html(path: str, text: str) -> None:
    """Write the page; an unwritable path is a one-line error."""
    from archsim.errors import ConfigError

    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as err:
        raise ConfigError(None, "--out", "a writable HTML file path", f"{path} ({err.strerror})") from None
