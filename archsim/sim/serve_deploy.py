"""From files and options to a serving simulation: workload + hardware -> cost-model replica -> requests -> simulate."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from archsim.config.hardware import load_hardware
from archsim.config.workload import load_workload
from archsim.errors import ConfigError
from archsim.graph.precision import scenario_precision
from archsim.serving.arrivals import ClosedLoop, make_arrival
from archsim.serving.config import (DEFAULT_BATCH_TIMEOUT_S, DEFAULT_BLOCK_TOKENS, DEFAULT_MAX_SEQS,
                                    DEFAULT_TOKEN_BUDGET, DisaggSpec, ReplicaSpec, SchedulerSpec, Slo)
from archsim.serving.cost_model import for_deployment
from archsim.serving.kvcache import DEFAULT_KV_MEMORY_FRACTION, check_kv_memory_fraction
from archsim.serving.lengths import Fixed, parse_length
from archsim.serving.iteration import IterationBatch
from archsim.serving.requests import MAX_REQUESTS, LengthSampler, check_request_count, check_seed, generate
from archsim.serving.sequence import Speculative
from archsim.serving.trace import load_trace
from archsim.sim.serve import ServeResult, simulate


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """Everything ``archsim serve`` takes (names as the CLI flags)."""

    workload: str
    hw: str
    devices: int | str = "auto"
    tp: int | None = None
    ep: int | None = None
    pp: int | None = None
    dp: int | None = None
    replicas: int = 1
    router: str = "least_loaded"
    rate: float | None = None
    duration: float = 60.0
    arrival: str = "poisson"
    cv: float = 2.0
    users: int = 0
    think_time: float = 0.0
    prompt_len: str | None = None
    output_len: str | None = None
    prefix_hit_rate: float = 0.0
    trace_file: str | None = None
    scheduler: str = "continuous"
    max_seqs: int = DEFAULT_MAX_SEQS
    token_budget: int = DEFAULT_TOKEN_BUDGET
    timeout: float = DEFAULT_BATCH_TIMEOUT_S
    block_size: int = DEFAULT_BLOCK_TOKENS
    preemption: str = "recompute"
    kv_memory_fraction: float = DEFAULT_KV_MEMORY_FRACTION
    kv_tokens: int | None = None
    speculative: str | None = None
    prefill_replicas: int = 1
    decode_replicas: int = 1
    slo_ttft: float = float("inf")
    slo_tpot: float = float("inf")
    seed: int = 0


def options_from(namespace) -> ServeOptions:
    """ServeOptions from an argparse namespace (extra attributes ignored)."""
    names = ServeOptions.__dataclass_fields__
    return ServeOptions(**{k: v for k, v in vars(namespace).items() if k in names})


def _devices(text) -> int | str:
    if text == "auto" or isinstance(text, int):
        return text
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(None, "--devices", "a positive integer or 'auto'", text) from None
    if value < 1:
        raise ConfigError(None, "--devices", "a positive integer or 'auto'", text)
    return value


def _speculative(text: str | None) -> Speculative | None:
    if not text:
        return None
    try:
        k, p = text.split(":")
        spec = Speculative(draft_tokens=int(k), acceptance_rate=float(p))
    except ValueError:
        raise ConfigError(None, "--speculative", "K:P, e.g. 1:0.85", text) from None
    if spec.draft_tokens < 1 or not 0 <= spec.acceptance_rate <= 1:
        raise ConfigError(None, "--speculative", "K >= 1 and 0 <= P <= 1", text)
    return spec


def _max_tokens(dist) -> int:
    for attr in ("tokens", "high", "max_tokens"):
        if hasattr(dist, attr):
            return int(getattr(dist, attr))
    return int(max(dist.values))


def _min_tokens(dist) -> int:
    for attr in ("tokens", "low"):
        if hasattr(dist, attr):
            return int(getattr(dist, attr))
    if hasattr(dist, "values"):
        return int(min(dist.values))
    return 1  # a clipped distribution (lognormal) can draw a single token


def _check_closed_loop(opts: ServeOptions, loop, model, output, speculative) -> None:
    """ConfigError when a closed loop could submit more than MAX_REQUESTS: each user's requests run one after
    another, and each needs at least ceil(output / tokens per step) iterations of at least the batch-1 decode
    step, plus the think time."""
    step_s = model.iteration(IterationBatch(decode_seqs=1, decode_tokens=1, decode_context_tokens=1)).time_s
    per_step = 1 + (speculative.draft_tokens if speculative else 0)
    shortest_s = math.ceil(_min_tokens(output) / per_step) * step_s + opts.think_time
    bound = loop.users * (opts.duration / shortest_s + 1)
    if not bound <= MAX_REQUESTS:
        raise ConfigError(None, "--users x --duration", f"a closed loop of at most {MAX_REQUESTS:,} requests "
                          f"(users x duration / shortest request of {shortest_s:.3g} s; archsim's serving limit, "
                          "see docs/limits.md)", f"up to {bound:.3g} requests")


def run_deployment(opts: ServeOptions, progress: Callable[[float], None] | None = None) -> tuple[ServeResult, dict]:
    """Run the simulation the options describe; returns the result and a description of the deployment."""
    if not 0 <= opts.prefix_hit_rate < 1:
        raise ConfigError(None, "--prefix-hit-rate", "a fraction in [0, 1)", opts.prefix_hit_rate)
    for flag, value in (("--timeout", opts.timeout), ("--think-time", opts.think_time)):
        if not 0 <= value < math.inf:  # nan fails both comparisons
            raise ConfigError(None, flag, "a finite time >= 0 s", value)
    check_seed(opts.seed, "--seed")
    check_kv_memory_fraction(opts.kv_memory_fraction, "--kv-memory-fraction")
    if opts.rate is not None and not opts.trace_file and opts.arrival != "closed":
        check_request_count(opts.rate, opts.duration, "--rate x --duration")
    workload = load_workload(opts.workload)
    hw = load_hardware(opts.hw)
    sc = workload.scenario
    precision = scenario_precision(sc)
    prompt = parse_length(opts.prompt_len, field="--prompt-len") if opts.prompt_len else Fixed(tokens=sc.prompt_len)
    output = parse_length(opts.output_len, field="--output-len") if opts.output_len else Fixed(tokens=sc.output_len)
    lengths = LengthSampler(prompt=prompt, output=output, prefix_hit_rate=opts.prefix_hit_rate)
    requests, loop = _workload_requests(opts, lengths)
    max_context = (max(r.prompt_tokens + r.output_tokens for r in requests) if requests
                   else _max_tokens(prompt) + _max_tokens(output))
    degrees = {k: getattr(opts, k) for k in ("tp", "ep", "pp", "dp") if getattr(opts, k) is not None}
    model, replica = for_deployment(workload.model, hw, precision, devices=_devices(opts.devices),
                                    max_seqs=opts.max_seqs, max_context=max_context,
                                    kv_memory_fraction=opts.kv_memory_fraction, min_kv_tokens=max_context,
                                    block_tokens=opts.block_size, degrees=degrees)
    if opts.kv_tokens:
        replica = ReplicaSpec(**{**replica.__dict__, "kv_capacity_tokens": opts.kv_tokens})
    # --max-seqs and --token-budget are per attention-DP rank, as in engines that run one scheduler per DP rank
    # (vLLM / SGLang data-parallel attention); the replica's one scheduler holds dp times as much.
    dp = model.par.dp
    scheduler = SchedulerSpec(kind=opts.scheduler, max_seqs=opts.max_seqs * dp, token_budget=opts.token_budget * dp,
                              chunk_limit=opts.token_budget,
                              timeout_s=opts.timeout, block_tokens=opts.block_size, preemption=opts.preemption,
                              speculative=_speculative(opts.speculative))
    if loop is not None:
        _check_closed_loop(opts, loop, model, output, scheduler.speculative)
    disagg = None
    if opts.scheduler == "disagg":
        link = hw.node.scale_out  # KV moves between pools over the scale-out network, one NIC per device
        disagg = DisaggSpec(prefill_replicas=opts.prefill_replicas, decode_replicas=opts.decode_replicas,
                            link_bandwidth_bytes_per_s=link.bandwidth_bytes_per_s * link.achievable_fraction
                            * replica.devices, link_latency_s=link.latency_s)
    result = simulate(scheduler=scheduler, replica=replica, model=model, duration_s=opts.duration, seed=opts.seed,
                      requests=requests, closed_loop=loop, lengths=lengths, replicas=opts.replicas,
                      router=opts.router, disagg=disagg, slo=Slo(ttft_s=opts.slo_ttft, tpot_s=opts.slo_tpot),
                      progress=progress)
    meta = {"model": workload.name, "hardware": hw.name, "layout": model.par.label(),
            "devices_per_replica": replica.devices, "kv_capacity_tokens": replica.kv_capacity_tokens,
            "kv_bytes_per_token": replica.kv_bytes_per_token, "scheduler": opts.scheduler, "seed": opts.seed,
            "price_usd_per_hour_per_replica": replica.price_usd_per_hour,
            "decode_grid_points": model.grid_points[0], "prefill_grid_points": model.grid_points[1]}
    return result, meta


def _workload_requests(opts: ServeOptions, lengths: LengthSampler):
    if opts.trace_file:
        return load_trace(opts.trace_file), None
    if opts.arrival == "closed":
        arrival = make_arrival("closed", rate_per_s=0.0, users=opts.users, think_time_s=opts.think_time)
        assert isinstance(arrival, ClosedLoop)
        return None, arrival
    if opts.rate is None:
        raise ConfigError(None, "--rate", "an arrival rate (or --trace-file, or --arrival closed --users N)", None)
    arrival = make_arrival(opts.arrival, rate_per_s=opts.rate, cv=opts.cv)
    return generate(arrival=arrival, lengths=lengths, duration_s=opts.duration, seed=opts.seed), None
