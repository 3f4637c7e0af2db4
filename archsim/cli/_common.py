"""Shared pieces of the subcommands: argparse value types, the stderr progress bar, the scenario's phase graph."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

BAR_WIDTH = 30


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_int_or_auto(text: str) -> int | str:
    """argparse type: an integer >= 1 or the word ``auto``."""
    if text == "auto":
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}") from None


def progress_bar(label: str, unit: str, enabled: bool | None = None) -> Callable[[float, float], None] | None:
    """A ``show(done, total)`` that redraws one stderr line, or None when stderr is not a terminal
    (pipes and CI logs stay clean)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None

    def show(done: float, total: float) -> None:
        filled = int(BAR_WIDTH * min(1.0, done / total)) if total else BAR_WIDTH
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done:g}/{total:g} {unit}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return show


def add_phase_graph_args(p: argparse.ArgumentParser, hw_help: str = "hardware YAML") -> None:
    """The arguments ``scenario_phase_graph`` reads: workload, --hw, --phase, --batch, --length."""
    p.add_argument("workload", help="workload YAML")
    p.add_argument("--hw", required=True, help=hw_help)
    p.add_argument("--phase", choices=("prefill", "decode"), default="decode")
    p.add_argument("--batch", type=int, help="sequences (default from the workload)")
    p.add_argument("--length", type=int, help="prompt length (prefill) or context (decode)")


def scenario_phase_graph(args: argparse.Namespace):
    """(workload, hardware, batch, graph) for ``args.workload`` on ``args.hw``: the ``args.phase`` graph at
    ``args.batch`` sequences and ``args.length`` tokens (prompt, or decode context), each defaulting to the
    workload's scenario. A --batch or --length below 1 is a ConfigError."""
    from archsim.config.hardware import load_hardware
    from archsim.config.workload import load_workload
    from archsim.errors import ConfigError
    from archsim.graph.build import build_decode, build_prefill
    from archsim.graph.precision import scenario_precision

    for flag in ("batch", "length"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(None, f"--{flag}", "a positive integer", value)
    w = load_workload(args.workload)
    hw = load_hardware(args.hw)
    sc = w.scenario
    precision = scenario_precision(sc)
    batch = args.batch or sc.batch
    if args.phase == "prefill":
        graph = build_prefill(w.model, batch=batch, prompt_len=args.length or sc.prompt_len, precision=precision)
    else:
        graph = build_decode(w.model, batch=batch, context=args.length or sc.prompt_len + sc.output_len,
                             precision=precision)
    return w, hw, batch, graph
