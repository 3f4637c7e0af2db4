"""Shared pieces of the subcommands: argparse value types, the stderr progress bar, the scenario's phase graph."""
from __future__ import annotations

import argparse
import re
import sys
from typing import Callable

from archsim.errors import ConfigError

BAR_WIDTH = 30
# a plain decimal number (no unit, no "inf"/"nan"): a time written this way is in seconds
_BARE_NUMBER = re.compile(r"^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*$")
TIME_UNITS = "a time with its unit (2s, 200ms, 200 ms)"


def _int_at_least(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1, "a positive integer")


def positive_int_or_auto(text: str) -> int | str:
    """argparse type: an integer >= 1 or the word ``auto``."""
    if text == "auto":
        return text
    return _int_at_least(text, 1, "a positive integer or 'auto'")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0, "an integer >= 0")


def parse_time(text: object, *, flag: str, positive: bool = False) -> float:
    """Seconds from one time syntax shared by every command: "2s", "200ms", "200 ms", "1.5 us" (units.py's
    quantity parser) or a bare number meaning seconds ("2"). Negative, infinite or unitless-but-not-numeric
    text, another dimension ("2 GB"), and 0 when ``positive``, are a ConfigError naming ``flag``."""
    from archsim.units import parse_quantity

    expected = (f"a positive number of seconds or {TIME_UNITS}" if positive
                else f"a number of seconds >= 0 or {TIME_UNITS}")
    value = str(text)
    quantity = f"{value.strip()} s" if _BARE_NUMBER.match(value) else value
    try:
        seconds = parse_quantity(quantity, "time_s", path=flag)
    except ConfigError:
        raise ConfigError(None, flag, expected, text) from None
    if positive and seconds == 0:
        raise ConfigError(None, flag, expected, text)
    return seconds


def time_arg(flag: str, *, positive: bool = False) -> Callable[[str], float]:
    """argparse type for a time-valued flag (see ``parse_time``); a bad value is argparse's one-line error."""
    def parse(text: str) -> float:
        try:
            return parse_time(text, flag=flag, positive=positive)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(f"expected {err.expected}, got {text!r}") from None
    return parse


# The deployment vocabulary, one set of flags for run, serve, plan and sweep (docs/deployments.md has the SGLang,
# vLLM and TensorRT-LLM names side by side).
LAYOUT_FLAGS = (("tp", "attention tensor-parallel size"),
                ("attn-dp", "attention data-parallel replicas (SGLang --dp with --enable-dp-attention); alias --dp"),
                ("moe-tp", "each routed expert's FFN split this many ways (MoE-TP)"),
                ("moe-ep", "expert-parallel size (alias --ep)"),
                ("pp", "pipeline stages"),
                ("micro-batches", "micro-batches per step (default auto: chosen per phase by price)"))


def add_deployment_args(p: argparse.ArgumentParser, *, devices: bool = True, phase: bool = True) -> None:
    """The deployment flags: devices, layout degrees, EPLB slots, prefill chunk, phase (unless ``phase`` is
    False), CUDA graphs, a pools file."""
    if devices:
        p.add_argument("--devices", type=positive_int_or_auto, help="devices of one instance, or 'auto' (smallest "
                                                                     "that fits)")
    for flag, text in LAYOUT_FLAGS:
        p.add_argument(f"--{flag}", type=positive_int_or_auto, help=f"{text}, or 'auto'")
    p.add_argument("--ep", dest="ep_alias", type=positive_int_or_auto, help="alias of --moe-ep")
    p.add_argument("--dp", dest="dp_alias", type=positive_int_or_auto, help="alias of --attn-dp")
    p.add_argument("--redundant-experts", type=non_negative_int,
                   help="EPLB extra expert slots per MoE group (experts + redundant must spread evenly over EP)")
    p.add_argument("--prefill-chunk", type=non_negative_int,
                   help="tokens per prefill forward of one attention replica (default 8192, the SGLang and vLLM "
                        "default; 0: the whole prefill in one forward)")
    if phase:
        p.add_argument("--phase", choices=("prefill", "decode", "both"),
                       help="what to price (default both; decode: a decode-only pool, no prefill activations)")
    p.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false", default=None,
                   help="launch every decode kernel from the CPU (default: decode steps replayed from CUDA graphs)")
    p.add_argument("--deployment", help="YAML file with a 'deployment:' section: pools and layouts, e.g. a "
                                        "disaggregated prefill + decode deployment")
    p.add_argument("--stack", help="serving stack: a name under stacks/ (sglang, vllm, trtllm, deepseek) or a stack "
                                   "YAML: its kernel libraries, CUDA-graph sizes, host time and defaults (default: "
                                   "archsim's reference kernels, no host time; docs/stacks.md)")


def deployment_overrides(args: argparse.Namespace) -> dict:
    """``estimate()`` keywords from the deployment flags given (aliases merged; absent flags left out)."""
    out = {}
    names = {"tp": "tp", "attn_dp": "attn_dp", "moe_tp": "moe_tp", "moe_ep": "moe_ep", "pp": "pp",
             "micro_batches": "micro_batches", "ep_alias": "ep", "dp_alias": "dp",
             "redundant_experts": "redundant_experts", "prefill_chunk": "prefill_chunk", "phase": "phase",
             "cuda_graphs": "cuda_graphs", "deployment": "deployment", "devices": "devices", "stack": "stack"}
    for attr, key in names.items():
        value = getattr(args, attr, None)
        if value is not None:
            out[key] = value
    return out


# --format: one grammar for every command that prints results
FORMATS = ("table", "json", "csv")
FORMAT_HELP = ("table: aligned text for people; json: one object; csv: one header row (SI or unit-suffixed column "
               "names, e.g. tpot_s) and one row per {record}")
# earlier spellings of the table format (kernel, validate and calibrate printed "text"), still accepted
_FORMAT_ALIASES = {"text": "table"}


def _format_name(text: str) -> str:
    return _FORMAT_ALIASES.get(text, text)


def add_format_arg(p: argparse.ArgumentParser, record: str, extra: tuple[str, ...] = (), note: str = "") -> None:
    """``--format table|json|csv`` (plus a command's ``extra`` formats); ``record`` names what one CSV row is."""
    p.add_argument("--format", type=_format_name, choices=FORMATS + extra, default="table",
                   help=FORMAT_HELP.format(record=record) + note)


def finite(value):
    """``value`` with NaN and infinities replaced by None, in nested dicts and lists (JSON has no NaN or inf)."""
    import math

    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def print_json(data, *, indent: int | None = None) -> None:
    """One JSON document on stdout (NaN or inf, which JSON lacks, are an error: callers pass ``finite(data)``)."""
    import json

    json.dump(data, sys.stdout, indent=indent, allow_nan=False)
    sys.stdout.write("\n")


def _csv_cell(value):
    """A CSV cell: None and NaN empty (nothing to report), other values as Python writes them (full precision)."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return value


def write_csv(rows, columns, file=None) -> None:
    """Rows (mappings) as CSV with one header row of ``columns``, through the csv module (quoting commas, quotes and
    newlines); keys outside ``columns`` are left out, missing ones are empty cells."""
    import csv

    writer = csv.DictWriter(file or sys.stdout, fieldnames=list(columns), restval="", extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})


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


# what WORKLOAD and --hw accept (the loaders resolve names: archsim.config.shipped)
WORKLOAD_HELP = "a shipped workload name (archsim list workloads, e.g. kimi_k2) or a workload YAML path"
HW_HELP = "a shipped hardware name (archsim list hardware, e.g. h100) or a hardware YAML path"


def add_phase_graph_args(p: argparse.ArgumentParser, hw_help: str = HW_HELP) -> None:
    """The arguments ``scenario_phase_graph`` reads: workload, --hw, --phase, --batch, --length."""
    p.add_argument("workload", help=WORKLOAD_HELP)
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


SET_HELP = ("set any input field, repeatable: a model field by its Hugging Face name (model.n_routed_experts=128), a "
            "scenario field (scenario.batch=64) or a hardware YAML field (memory.hbm.bandwidth=4TB/s); units and "
            "checks as in the YAML files")


def add_set_arg(p: argparse.ArgumentParser) -> None:
    """``--set FIELD=VALUE`` (repeatable), applied by ``inputs``."""
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE", help=SET_HELP)


def inputs(workload, hw, settings: list[str]):
    """The workload and hardware to project: as given (names, paths or loaded records) without ``--set``; loaded,
    with every setting applied, with it (config/overrides.py)."""
    if not settings:
        return workload, hw
    from archsim.config.hardware import resolve_hardware
    from archsim.config.overrides import apply_settings, parse_setting
    from archsim.config.workload import Workload, load_workload

    wl = workload if isinstance(workload, Workload) else load_workload(workload)
    return apply_settings(wl, resolve_hardware(hw), [parse_setting(t) for t in settings])
