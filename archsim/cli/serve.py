"""``archsim serve WORKLOAD --hw HW --rate R --duration S``: simulate serving a request stream on a deployment."""
from __future__ import annotations

import argparse
import math
import sys

from archsim.cli._common import (WORKLOAD_HELP, add_deployment_args, add_format_arg, add_set_arg, deployment_overrides,
                                finite, print_json, progress_bar, time_arg, write_csv)
from archsim.dtypes import PLAIN_FORMATS, WEIGHT_FORMATS, format_choices
from archsim.errors import ConfigError
from archsim.serving.config import DEFAULT_BATCH_TIMEOUT_S, DEFAULT_BLOCK_TOKENS, DEFAULT_MAX_SEQS, DEFAULT_TOKEN_BUDGET
from archsim.serving.kvcache import DEFAULT_KV_MEMORY_FRACTION, KvLayout


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value
    return parse


def _positive_or_inf(text: str) -> float:
    """argparse type: a number > 0, or inf (vLLM's --request-rate and --burstiness take inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number or inf, got {text!r}") from None
    if not value > 0:  # nan fails too
        raise argparse.ArgumentTypeError(f"expected a positive number or inf, got {text!r}")
    return value


def _fraction_below_one(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _add_load_args(p: argparse.ArgumentParser) -> None:
    """The load: an open loop by --rate and --duration, a closed loop of --users, a trace, or a benchmark client
    (--num-prompts) shaped as vllm bench serve / sglang.bench_serving shape theirs."""
    p.add_argument("--rate", type=_positive_or_inf, help="mean arrival rate, requests/s (open loop; with "
                                                         "--num-prompts inf, the default, sends all at once)")
    p.add_argument("--duration", type=time_arg("--duration", positive=True),
                   help="arrival window of --rate and --arrival closed runs, e.g. 60, 60s or 90000ms (default 60 s)")
    p.add_argument("--arrival", choices=("poisson", "gamma", "fixed", "closed"), help="default poisson")
    p.add_argument("--cv", type=_positive(float), help="gamma arrivals: coefficient of variation (default 2)")
    p.add_argument("--users", type=_positive(int), default=0, help="closed loop: concurrent users")
    p.add_argument("--think-time", type=time_arg("--think-time"), default=0.0,
                   help="closed loop: pause between requests (e.g. 0.5, 500ms)")
    p.add_argument("--num-prompts", type=_positive(int),
                   help="benchmark client: send this many prompts, then stop (vllm bench serve --num-prompts)")
    p.add_argument("--max-concurrency", type=_positive(int),
                   help="at most this many requests in flight; the next goes when one completes")
    p.add_argument("--burstiness", type=_positive_or_inf,
                   help="with --num-prompts: gamma shape of the gaps, mean 1/rate (1: Poisson, the default; < 1 "
                        "burstier; inf: constant gaps)")
    p.add_argument("--ramp-up-strategy", choices=("linear", "exponential"),
                   help="with --num-prompts: raise the rate from --ramp-up-start-rps to --ramp-up-end-rps")
    p.add_argument("--ramp-up-start-rps", type=_positive(float), help="ramp-up: first rate, requests/s")
    p.add_argument("--ramp-up-end-rps", type=_positive(float), help="ramp-up: last rate, requests/s")
    p.add_argument("--random-range-ratio", type=_fraction_below_one, default=0.0,
                   help="spread fixed lengths N uniformly over [N(1-r), N(1+r)] (vLLM's random dataset)")
    p.add_argument("--warmup-requests", type=_non_negative_int, default=0,
                   help="leave the first N requests out of the latency statistics")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="simulate serving a request stream (TTFT, TPOT, throughput, goodput, cost)")
    p.add_argument("workload", help=WORKLOAD_HELP)
    p.add_argument("--hw", required=True, help="hardware: a shipped name (e.g. h100) or a YAML path")
    # the deployment, as archsim run takes it: --devices (per replica; auto: the smallest that leaves room for the
    # longest request's KV), layout degrees, EPLB slots, prefill chunk, CUDA graphs, a --deployment file of pools
    add_deployment_args(p, phase=False)  # serve simulates both phases; one-phase pools come from --deployment
    p.add_argument("--expert-load", help="routing distribution over experts: uniform | zipf:S (default: the "
                                         "workload's expert_load)")
    p.add_argument("--weights", help=f"weight format: {format_choices(WEIGHT_FORMATS)} (default: the workload's)")
    p.add_argument("--expert-weights", help=f"routed experts' format: {format_choices(WEIGHT_FORMATS)} (default: as "
                                            "--weights)")
    p.add_argument("--kv-cache", help=f"KV-cache format: {format_choices(PLAIN_FORMATS)} (default: the workload's)")
    p.add_argument("--replicas", type=_positive(int), help="replicas behind the router (default: the pool's "
                                                           "instances, 1)")
    p.add_argument("--router", choices=("round_robin", "least_loaded"), default="least_loaded")
    _add_load_args(p)
    p.add_argument("--prompt-len", help="prompt tokens: N | uniform:LO:HI | lognormal:MEDIAN:SIGMA:MAX | file:PATH "
                                        "(default: the workload's prompt_len)")
    p.add_argument("--output-len", help="output tokens, same forms (default: the workload's output_len)")
    p.add_argument("--prefix-hit-rate", type=float, default=0.0, help="fraction of prompt tokens in the prefix cache")
    p.add_argument("--trace-file", help="CSV or JSONL trace (arrival_s, prompt_tokens, output_tokens[, cached_tokens])")
    p.add_argument("--scheduler", choices=("static", "dynamic", "continuous", "chunked", "disagg"),
                   help="batching policy (default: chunked with a --stack, else continuous; disagg for a deployment "
                        "with prefill and decode pools, which implies it)")
    p.add_argument("--max-seqs", type=_positive(int),
                   help=f"sequences per iteration (vLLM max_num_seqs; default: the --stack's, else {DEFAULT_MAX_SEQS})")
    p.add_argument("--token-budget", type=_positive(int),
                   help="tokens per iteration (vLLM max_num_batched_tokens; chunked: the Sarathi budget; default: the "
                        f"--stack's chunked-prefill size, else {DEFAULT_TOKEN_BUDGET})")
    p.add_argument("--timeout", type=time_arg("--timeout"), default=DEFAULT_BATCH_TIMEOUT_S,
                   help=f"static batching: longest wait to fill a batch (default {DEFAULT_BATCH_TIMEOUT_S} s)")
    p.add_argument("--block-size", type=_positive(int),
                   help=f"KV-cache block, tokens (default: the --stack's page size, else {DEFAULT_BLOCK_TOKENS})")
    p.add_argument("--preemption", choices=("recompute", "swap"), default="recompute")
    p.add_argument("--kv-memory-fraction", type=_positive(float),
                   help="share of HBM for weights + KV cache, in (0, 1] (vLLM gpu_memory_utilization; default: the "
                        f"--stack's, else {DEFAULT_KV_MEMORY_FRACTION})")
    p.add_argument("--kv-tokens", type=_positive(int), help="override the KV capacity per replica, tokens")
    p.add_argument("--speculative", help="K:P: K draft (MTP) tokens per step, each accepted with probability P")
    p.add_argument("--prefill-replicas", type=_positive(int),
                   help="disagg: prefill replicas (default: the prefill pool's instances, 1)")
    p.add_argument("--decode-replicas", type=_positive(int),
                   help="disagg: decode replicas (default: the decode pool's instances, 1)")
    p.add_argument("--slo-ttft", type=time_arg("--slo-ttft", positive=True), default=float("inf"),
                   help="goodput SLO on TTFT, e.g. 2s, 200ms or 2 (s); none by default")
    p.add_argument("--slo-tpot", type=time_arg("--slo-tpot", positive=True), default=float("inf"),
                   help="goodput SLO on TPOT, e.g. 50ms; none by default")
    p.add_argument("--seed", type=int, default=0)
    add_format_arg(p, "run: the summary the table prints, flattened (--requests-csv writes one row per request)")
    p.add_argument("--requests-csv", help="write one row per completed request to this CSV")
    p.add_argument("--plot", help="write a time-series plot (batch, queue, KV occupancy) to this PNG")
    p.add_argument("--html", help="write the results as one self-contained HTML page (metrics, time series)")
    add_set_arg(p)
    p.add_argument("--trace", help="write every iteration of every replica (batch size, tokens) as Chrome trace JSON "
                                   "to this file")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from archsim.serving.metrics import request_table
    from archsim.sim.serve_deploy import DEFAULT_DURATION_S, options_from, run_deployment

    overrides = deployment_overrides(args)
    bar = progress_bar("simulating", "s") if args.num_prompts is None else None  # no known end time otherwise
    window = DEFAULT_DURATION_S if args.duration is None else args.duration
    progress = (lambda now: bar(round(min(now, window), 1), window)) if bar else None
    result, meta = run_deployment(options_from(args, overrides), progress=progress)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    data = {**result.summary, "deployment": meta}
    if args.requests_csv:
        _write_csv(args.requests_csv, request_table(result.recorder))
    if args.plot:
        _plot(args.plot, result.recorder)
    if args.html:
        from archsim.cli.report import write_html
        from archsim.report.html import serve_page
        write_html(args.html, serve_page(data, result.recorder, f"{meta['model']} served on {meta['hardware']}"))
    if args.trace:
        from archsim.report.trace import serve_trace, write_trace
        write_trace(serve_trace(result.recorder), args.trace)
    if args.format == "json":
        print_json(finite(data), indent=2)
    elif args.format == "csv":
        write_csv([summary_row(data)], SUMMARY_COLUMNS)
    else:
        sys.stdout.write(_table(data))
    return 0


# serve --format csv: one row for the run. Latency statistics are <metric>_<statistic>_s (mean, p50, p90, p99);
# an undefined statistic (nothing completed) or SLO (none given) is an empty cell.
_LATENCY = ("ttft", "tpot", "e2e")
SUMMARY_COLUMNS = ("workload", "hardware", "scheduler", "devices", "replicas", "requests_completed",
                   "requests_rejected", "preemptions", *[f"{m}_{q}_s" for m in _LATENCY
                                                         for q in ("mean", "p50", "p90", "p99")],
                   "itl_p50_s", "itl_p90_s", "itl_p99_s", "output_tokens_per_s", "output_tokens_per_s_per_device",
                   "input_tokens_per_s", "requests_per_s", "ttft_slo_s", "tpot_slo_s", "goodput_requests_per_s",
                   "usd_per_million_output_tokens", "energy_j_per_output_token", "energy_j_per_request",
                   "avg_power_w_per_device", "mfu", "kv_occupancy_peak",
                   "duration_s", "iterations")


def summary_row(d: dict) -> dict:
    """The run's summary (``run``'s data) as one flat CSV row (``SUMMARY_COLUMNS``)."""
    dep, req, t, g = d["deployment"], d["requests"], d["throughput"], d["goodput"]
    row = {"workload": dep["model"], "hardware": dep["hardware"], "scheduler": dep["scheduler"],
           "devices": d["devices"], "replicas": d["replicas"], "requests_completed": req["completed"],
           "requests_rejected": req["rejected"],
           "preemptions": req["preemptions_recompute"] + req["preemptions_swap"],
           **{f"{m}_{q}_s": d[f"{m}_s"][q] for m in _LATENCY for q in ("mean", "p50", "p90", "p99")},
           **{f"itl_{q}_s": d["itl_s"][q] for q in ("p50", "p90", "p99")},
           **{k: t[k] for k in ("output_tokens_per_s", "output_tokens_per_s_per_device", "input_tokens_per_s",
                                "requests_per_s")},
           "ttft_slo_s": g["ttft_slo_s"], "tpot_slo_s": g["tpot_slo_s"], "goodput_requests_per_s": g["requests_per_s"],
           "usd_per_million_output_tokens": d["cost"]["usd_per_million_output_tokens"],
           "energy_j_per_output_token": d["energy"]["j_per_output_token"],
           "energy_j_per_request": d["energy"]["j_per_request"],
           "avg_power_w_per_device": d["energy"]["avg_power_w_per_device"], "mfu": d["utilisation"]["mfu"],
           "kv_occupancy_peak": d["kv_occupancy"]["peak"], "duration_s": d["duration_s"],
           "iterations": d["iterations"]}
    return finite(row)


def _write_csv(path: str, table: dict) -> None:
    """--requests-csv: one row per completed request (times in seconds to 9 digits, counts as integers)."""
    import numpy as np

    cols = list(table)
    times = ("arrival_s", "first_token_s", "finish_s")
    rows = np.column_stack([table[c].astype(float) for c in cols]) if table["id"].size else []
    try:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            write_csv(({c: f"{v:.9g}" if c in times else int(v) for c, v in zip(cols, row)} for row in rows), cols,
                      handle)
    except OSError as err:
        raise ConfigError(path, "--requests-csv", "a writable file", err.strerror) from None


def _plot(path: str, rec) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(None, "--plot", "matplotlib installed (pip install 'archsim[plot]')", "not installed") from None
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(8, 7))
    for ax, values, label in zip(axes, (rec.series_batch, rec.series_queue, rec.series_kv),
                                 ("batch (sequences)", "queue (requests)", "KV occupancy")):
        ax.plot(rec.series_t, values, lw=0.6)
        ax.set_ylabel(label)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as err:
        raise ConfigError(path, "--plot", "a writable file", err.strerror) from None
    finally:
        plt.close(fig)


def _num(value: float, spec: str) -> str:
    """A number, or "n/a" (right-aligned like it) where nothing completed and the statistic is undefined."""
    if isinstance(value, float) and not math.isfinite(value):
        width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
        return "n/a".rjust(int(width)) if width else "n/a"
    return format(value, spec)


def _table(d: dict) -> str:
    dep = d["deployment"]
    pools = [f"{p['replicas']} {'' if p['role'] == 'both' else p['role'] + ' '}replica(s) x {p['devices_per_replica']} "
             f"devices ({p['layout']}), KV {_kv_capacity(p)}" for p in dep["pools"]]
    lines = [f"{dep['model']} on {dep['hardware']}: " + "; ".join(pools) + f", scheduler {dep['scheduler']}",
             f"requests   completed {d['requests']['completed']}  rejected {d['requests']['rejected']}  "
             f"preempted {d['requests']['preemptions_recompute'] + d['requests']['preemptions_swap']}",
             f"{'':10} {'mean':>10} {'p50':>10} {'p90':>10} {'p99':>10}"]
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        s = d[key]
        lines.append(f"{key:10} " + " ".join(f"{_num(s[q], '10.4g')}" for q in ("mean", "p50", "p90", "p99")))
    b = d["benchmark"]
    lines.append(f"{'itl_s':10} " + " ".join(_num(b[f"{q}_itl_ms"] / 1e3, "10.4g")
                                             for q in ("mean", "median", "p90", "p99")))
    t = d["throughput"]
    lines += [f"throughput {t['output_tokens_per_s']:.1f} out tok/s ({t['output_tokens_per_s_per_device']:.1f} per device),"
              f" {t['input_tokens_per_s']:.1f} in tok/s over the whole run",
              _benchmark_line(b)]
    if b["request_goodput"] is not None:  # goodput only means something against a target
        g = d["goodput"]
        slos = ", ".join(f"{name} <= {g[key]:g} s" for name, key in (("TTFT", "ttft_slo_s"), ("TPOT", "tpot_slo_s"))
                         if math.isfinite(g[key]))
        lines.append(f"goodput    {b['request_goodput']:.3f} req/s meeting {slos}")
    lines += [f"cost       ${_num(d['cost']['usd_per_million_output_tokens'], '.3f')} per 1M output tokens; "
              f"{_num(d['energy']['j_per_output_token'], '.3g')} J per output token",
              f"energy     {_num(d['energy']['j_per_request'], '.4g')} J per request, "
              f"{_num(d['energy']['avg_power_w_per_device'], '.4g')} W per device on average (GPU board power)",
              *_little_lines(d["little"], d["measurement"])]
    return "\n".join(lines) + "\n"


def _kv_capacity(pool: dict) -> str:
    """A pool's KV capacity per replica, in tokens of every layer. With sliding-window layers (its ``kv_layout``,
    serving/kvcache.KvLayout: groups of ``layer_units`` by window) that undersells it: the pool holds
    capacity x units / full units tokens of its full-attention layers, less what each sequence keeps in the windows
    (sum of units x window / full units, once it is longer than them): how many tokens of context it really holds."""
    tokens = pool["kv_capacity_tokens"]
    layout = KvLayout(groups=tuple((g["window"], g["layer_units"]) for g in pool.get("kv_layout") or ()))
    if not layout.windowed:
        return f"{tokens} tokens/replica"
    full = sum(u for w, u in layout.groups if w is None)
    windows = ", ".join(f"{w:,}" for w, _ in layout.groups if w is not None)
    if not full:  # every layer slides: a sequence holds at most its window in each
        return f"{tokens:,} tokens/replica in every layer (all layers keep a {windows}-token window per sequence)"
    held = sum(u * w for w, u in layout.groups if w is not None)
    return (f"{tokens:,} tokens/replica in every layer = {tokens * layout.units // full:,} tokens in the "
            f"full-attention layers less {held / full:,.4g} per sequence for the sliding layers' {windows}-token "
            "window")


def _benchmark_line(b: dict) -> str:
    """The measured requests as the benchmark tools summarise them."""
    cap = f", at most {b['max_concurrency']} in flight" if b["max_concurrency"] else ""
    return (f"benchmark  {b['completed']} completed, {b['failed']} failed in {_num(b['duration'], '.4g')} s: "
            f"{_num(b['request_throughput'], '.3f')} req/s, {_num(b['output_throughput'], '.1f')} out tok/s, "
            f"peak {b['max_concurrent_requests']} concurrent{cap}")


def _little_lines(law: dict, m: dict) -> list[str]:
    """Little's law with its window and the steady-state verdict, in words."""
    warm = (f"; the first {m['warmup_requests']} (warm-up) requests are left out of the statistics"
            if m["warmup_requests"] else "")
    if not law["window_s"] > law["window_start_s"]:
        first = "little     no send window (every measured request sent at one instant): Little's law not checked"
    else:
        first = (f"little     L = {_num(law['mean_in_system'], '.3f')} requests in system on average over the send "
                 f"window [{law['window_start_s']:.4g} s, {law['window_s']:.4g} s), lambda x W = "
                 f"{_num(law['rate_times_latency'], '.3f')} (arrival rate x mean time in system); equal in steady "
                 "state")
    return [first,
            f"measured   {m['measured_requests']} requests{warm}; steady state: "
            f"{'yes' if m['steady_state'] else 'no'} ({m['steady_state_reason']})"]
