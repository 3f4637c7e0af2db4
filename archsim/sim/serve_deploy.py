"""From files and options to a serving simulation: workload + hardware + deployment flags -> the Deployment (resolved
once, as ``archsim run`` resolves it) -> one cost-model replica per pool -> requests -> simulate."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

from archsim.config.hardware import load_hardware
from archsim.config.overrides import apply_settings, parse_setting
from archsim.config.stack import Stack, resolve_stack
from archsim.config.workload import load_workload
from archsim.errors import ConfigError
from archsim.serving.arrivals import ClosedLoop, RampUp, make_arrival
from archsim.serving.config import (DEFAULT_BATCH_TIMEOUT_S, DEFAULT_BLOCK_TOKENS, DEFAULT_MAX_SEQS,
                                    DEFAULT_TOKEN_BUDGET, DisaggSpec, ReplicaSpec, SchedulerSpec, Slo)
from archsim.serving.kvcache import DEFAULT_KV_MEMORY_FRACTION, check_kv_memory_fraction
from archsim.serving.replicas import Longest, ServedDeployment, ServingPool, served_deployment
from archsim.serving.lengths import Fixed, parse_length, with_range_ratio
from archsim.serving.iteration import IterationBatch
from archsim.serving.requests import (MAX_REQUESTS, LengthSampler, check_prompt_count, check_request_count, check_seed,
                                     generate, generate_prompts)
from archsim.serving.sequence import Speculative
from archsim.serving.trace import load_trace
from archsim.sim.serve import ServeResult, simulate

# the deployment flags (cli/_common.add_deployment_args, --phase aside) under estimate()'s override names, and
# --expert-load
LAYOUT_FIELDS = ("devices", "tp", "attn_dp", "dp", "moe_tp", "moe_ep", "ep", "pp", "micro_batches",
                 "redundant_experts", "prefill_chunk", "cuda_graphs", "deployment", "stack")
# the formats (estimate()'s names): the workload's unless given
FORMAT_FIELDS = ("weights", "expert_weights", "kv_cache")
DEPLOYMENT_FIELDS = LAYOUT_FIELDS + ("expert_load",) + FORMAT_FIELDS


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """Everything ``archsim serve`` takes (names as the CLI flags; the deployment's as estimate()'s overrides,
    None: the workload's own, see mapping/resolve.py).

    ``scheduler`` None: "disagg" for a disaggregated deployment (a prefill and a decode pool), else "continuous".
    ``replicas`` / ``prefill_replicas`` / ``decode_replicas`` None: the pools' instance counts (1 unless the
    deployment says)."""

    workload: str
    hw: str
    devices: int | str | None = None
    tp: int | str | None = None
    attn_dp: int | str | None = None
    dp: int | str | None = None          # alias of attn_dp
    moe_tp: int | str | None = None
    moe_ep: int | str | None = None
    ep: int | str | None = None          # alias of moe_ep
    pp: int | str | None = None
    micro_batches: int | str | None = None
    redundant_experts: int | None = None
    prefill_chunk: int | None = None
    cuda_graphs: bool | None = None
    deployment: str | None = None
    stack: "str | Stack | None" = None
    expert_load: str | None = None
    weights: str | None = None
    expert_weights: str | None = None
    kv_cache: str | None = None
    replicas: int | None = None
    router: str = "least_loaded"
    rate: float | None = None
    duration: float | None = None        # None: DEFAULT_DURATION_S (runs by duration only)
    arrival: str | None = None           # None: poisson
    cv: float | None = None              # None: DEFAULT_CV
    num_prompts: int | None = None       # a benchmark client's prompts (vllm bench serve --num-prompts)
    max_concurrency: int | None = None
    burstiness: float | None = None      # None: 1 (Poisson)
    ramp_up_strategy: str | None = None
    ramp_up_start_rps: float | None = None
    ramp_up_end_rps: float | None = None
    random_range_ratio: float = 0.0
    warmup_requests: int = 0
    users: int = 0
    think_time: float = 0.0
    prompt_len: str | None = None
    output_len: str | None = None
    prefix_hit_rate: float = 0.0
    trace_file: str | None = None
    scheduler: str | None = None
    # None: the stack's default (stacks/*.yaml ``serving:``), else archsim's (serving/config.py)
    max_seqs: int | None = None
    token_budget: int | None = None
    timeout: float = DEFAULT_BATCH_TIMEOUT_S
    block_size: int | None = None
    preemption: str = "recompute"
    kv_memory_fraction: float | None = None
    kv_tokens: int | None = None
    speculative: str | None = None
    prefill_replicas: int | None = None
    decode_replicas: int | None = None
    slo_ttft: float = float("inf")
    slo_tpot: float = float("inf")
    seed: int = 0
    settings: tuple[str, ...] = ()       # --set FIELD=VALUE (config/overrides.py)


DEFAULT_DURATION_S = 60.0  # the arrival window of --rate / --arrival closed runs when --duration is not given
DEFAULT_CV = 2.0           # gamma arrivals' coefficient of variation when --cv is not given


def options_from(namespace, deployment: dict | None = None) -> ServeOptions:
    """ServeOptions from an argparse namespace (extra attributes ignored); ``deployment``: the deployment flags as
    estimate()'s overrides (cli/_common.deployment_overrides), which replace the namespace's own."""
    names = ServeOptions.__dataclass_fields__
    fields = {k: v for k, v in vars(namespace).items() if k in names and k not in LAYOUT_FIELDS}
    fields.update({k: v for k, v in (deployment or {}).items() if k in LAYOUT_FIELDS})
    if "settings" in fields:
        fields["settings"] = tuple(fields["settings"] or ())
    return ServeOptions(**fields)


def deployment_overrides(opts: ServeOptions, model) -> dict:
    """estimate()'s overrides for the options' deployment fields (those given), plus ``mtp`` when the speculative
    drafts are the model's MTP modules (their weights then count in memory)."""
    out = {k: getattr(opts, k) for k in DEPLOYMENT_FIELDS if getattr(opts, k) is not None}
    spec = _speculative(opts.speculative)
    if spec is not None and model.num_nextn_predict_layers and spec.draft_tokens == model.num_nextn_predict_layers:
        out["mtp"] = True
    return out


def _speculative(text: str | None) -> Speculative | None:
    """``--speculative K:P`` (K drafts, each accepted with probability P after the ones before it) or
    ``K:P1,...,PK`` (one conditional acceptance rate per draft position); None when not given."""
    if not text:
        return None
    try:
        k_text, p_text = text.split(":")
        k = int(k_text)
        rates = tuple(float(p) for p in p_text.split(","))
    except ValueError:
        raise ConfigError(None, "--speculative", "K:P or K:P1,...,PK, e.g. 1:0.85 or 3:0.9,0.8,0.7", text) from None
    if k < 1 or not all(0 <= p <= 1 for p in rates):  # nan fails the comparison
        raise ConfigError(None, "--speculative", "K >= 1 and 0 <= P <= 1", text)
    if len(rates) not in (1, k):
        raise ConfigError(None, "--speculative", f"one rate P or K={k} rates P1,...,P{k} (one per draft position)",
                          text)
    return Speculative(draft_tokens=k, acceptance_rate=rates[0] if len(rates) == 1 else rates)


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
    bound = loop.users * (_duration(opts) / shortest_s + 1)
    if not bound <= MAX_REQUESTS:
        raise ConfigError(None, "--users x --duration", f"a closed loop of at most {MAX_REQUESTS:,} requests "
                          f"(users x duration / shortest request of {shortest_s:.3g} s; archsim's serving limit, "
                          "see docs/limits.md)", f"up to {bound:.3g} requests")


def with_stack_defaults(opts: ServeOptions, stack: Stack | None) -> ServeOptions:
    """The options with every scheduler setting left unset taken from the stack's defaults (its iteration token
    budget, KV page, memory share and running-request cap), else archsim's (serving/config.py)."""
    serving = {"max_seqs": (stack.max_running_requests if stack else None) or DEFAULT_MAX_SEQS,
               "token_budget": stack.chunked_prefill if stack else DEFAULT_TOKEN_BUDGET,
               "block_size": stack.block_tokens if stack else DEFAULT_BLOCK_TOKENS,
               "kv_memory_fraction": stack.kv_memory_fraction if stack else DEFAULT_KV_MEMORY_FRACTION}
    fields = {k: v for k, v in serving.items() if getattr(opts, k) is None}
    return replace(opts, **fields)


def run_deployment(opts: ServeOptions, progress: Callable[[float], None] | None = None) -> tuple[ServeResult, dict]:
    """Run the simulation the options describe; returns the result and a description of the deployment."""
    stack = resolve_stack(opts.stack)
    opts = with_stack_defaults(opts, stack)
    _check_options(opts)
    workload = load_workload(opts.workload)
    hw = load_hardware(opts.hw)
    if opts.settings:
        workload, hw = apply_settings(workload, hw, [parse_setting(t) for t in opts.settings])
    sc = workload.scenario
    prompt = parse_length(opts.prompt_len, field="--prompt-len") if opts.prompt_len else Fixed(tokens=sc.prompt_len)
    output = parse_length(opts.output_len, field="--output-len") if opts.output_len else Fixed(tokens=sc.output_len)
    prompt = with_range_ratio(prompt, opts.random_range_ratio, field="--prompt-len")
    output = with_range_ratio(output, opts.random_range_ratio, field="--output-len")
    lengths = LengthSampler(prompt=prompt, output=output, prefix_hit_rate=opts.prefix_hit_rate)
    requests, loop = _workload_requests(opts, lengths)
    longest = _longest(requests, prompt, output)
    limit = workload.model.max_position_embeddings
    if limit and longest.context > limit:
        raise ConfigError(None, "--prompt-len + --output-len", f"requests of at most max_position_embeddings={limit} "
                          "tokens (prompt plus output)", f"{longest.context} tokens")
    served = served_deployment(workload, hw, longest=longest, output_len=longest.context - longest.prompt,
                               max_seqs=opts.max_seqs, block_tokens=opts.block_size,
                               kv_memory_fraction=opts.kv_memory_fraction,
                               overrides=deployment_overrides(opts, workload.model))
    kind = _scheduler_kind(opts, served, stack)
    front, back = served.pool("prefill"), served.pool("decode")  # one pool twice when aggregated
    speculative = _speculative(opts.speculative)
    chunk = served.deployment.prefill_chunk
    front_sched, back_sched = (_scheduler(opts, kind, p, chunk, speculative) for p in (front, back))
    front_replica, back_replica = (_replica(opts, p) for p in (front, back))
    if loop is not None:
        _check_closed_loop(opts, loop, back.model, output, speculative)
    disagg = _disagg(opts, served, front_replica, hw) if kind == "disagg" else None
    _check_warmup(opts, requests)
    result = simulate(scheduler=front_sched, replica=front_replica, model=front.model,
                      duration_s=None if opts.num_prompts else _duration(opts),
                      max_concurrency=opts.max_concurrency, warmup_requests=opts.warmup_requests,
                      seed=opts.seed, requests=requests, closed_loop=loop, lengths=lengths,
                      replicas=opts.replicas or front.instances, router=opts.router, disagg=disagg,
                      decode_scheduler=back_sched, decode_replica=back_replica, decode_model=back.model,
                      slo=Slo(ttft_s=opts.slo_ttft, tpot_s=opts.slo_tpot), progress=progress,
                      request_overhead_s=stack.host.request_s if stack else 0.0)
    meta = _meta(opts, workload.name, hw, served, kind, disagg, (front_replica, back_replica))
    meta["stack"] = None if stack is None else {"name": stack.name, "version": stack.version,
                                                "request_overhead_s": stack.host.request_s,
                                                "host_iteration_s": stack.host.iteration_s,
                                                "host_overlapped": stack.host.overlapped}
    return result, meta


def _check_options(opts: ServeOptions) -> None:
    """The options checked before any file is read."""
    if not 0 <= opts.prefix_hit_rate < 1:
        raise ConfigError(None, "--prefix-hit-rate", "a fraction in [0, 1)", opts.prefix_hit_rate)
    for flag, value in (("--timeout", opts.timeout), ("--think-time", opts.think_time)):
        if not 0 <= value < math.inf:  # nan fails both comparisons
            raise ConfigError(None, flag, "a finite time >= 0 s", value)
    check_seed(opts.seed, "--seed")
    check_kv_memory_fraction(opts.kv_memory_fraction, "--kv-memory-fraction")
    _check_benchmark_options(opts)
    if opts.rate is not None and not opts.trace_file and opts.arrival != "closed" and not opts.num_prompts:
        if math.isinf(opts.rate):
            raise ConfigError(None, "--rate", "a finite rate with --duration (inf: all at once, with --num-prompts)",
                              opts.rate)
        check_request_count(opts.rate, _duration(opts), "--rate x --duration")
    if opts.scheduler == "disagg" and opts.replicas is not None:
        raise ConfigError(None, "--replicas", "--prefill-replicas and --decode-replicas with --scheduler disagg",
                          opts.replicas)


def _longest(requests, prompt, output) -> Longest:
    """The longest prompt and the longest whole context the run can see: of the requests drawn (or read), else
    of the length distributions (closed loop)."""
    if requests:
        return Longest(prompt=max(r.prompt_tokens for r in requests),
                       context=max(r.prompt_tokens + r.output_tokens for r in requests))
    return Longest(prompt=_max_tokens(prompt), context=_max_tokens(prompt) + _max_tokens(output))


def _scheduler_kind(opts: ServeOptions, served: ServedDeployment, stack: Stack | None = None) -> str:
    """The scheduler: a disaggregated deployment (a prefill and a decode pool) implies disagg, and another
    --scheduler with it is a ConfigError; else --scheduler; by default, with a stack: chunked when it mixes decode
    steps and prefill chunks in one iteration, continuous (prefill first) when it does not; without one,
    continuous."""
    if served.deployment.disaggregated:
        if opts.scheduler not in (None, "disagg"):
            raise ConfigError(None, "--scheduler", "disagg (or no --scheduler) for a disaggregated deployment (its "
                              "prefill and decode pools)", opts.scheduler)
        return "disagg"
    if opts.scheduler or stack is None:
        return opts.scheduler or "continuous"
    return "chunked" if stack.mixed_batches else "continuous"


def _scheduler(opts: ServeOptions, kind: str, pool: ServingPool, prefill_chunk: int | None,
               speculative: Speculative | None) -> SchedulerSpec:
    """A pool's scheduler. --max-seqs and --token-budget are per attention-DP rank, as in engines that run one
    scheduler per DP rank (vLLM / SGLang data-parallel attention); the replica's one scheduler holds dp times as
    much. A sequence's prefill chunk never exceeds one rank's budget nor the deployment's prefill_chunk."""
    dp = pool.model.par.dp
    chunk = min(opts.token_budget, prefill_chunk) if prefill_chunk else opts.token_budget
    return SchedulerSpec(kind=kind, max_seqs=opts.max_seqs * dp, token_budget=opts.token_budget * dp,
                         chunk_limit=chunk, timeout_s=opts.timeout, block_tokens=opts.block_size,
                         preemption=opts.preemption, speculative=speculative)


def _replica(opts: ServeOptions, pool: ServingPool) -> ReplicaSpec:
    """A pool's replica, with --kv-tokens replacing its KV capacity when given."""
    if opts.kv_tokens:
        return ReplicaSpec(**{**pool.replica.__dict__, "kv_capacity_tokens": opts.kv_tokens})
    return pool.replica


def _disagg(opts: ServeOptions, served: ServedDeployment, prefill: ReplicaSpec, hw) -> DisaggSpec:
    """Pool sizes (the flags, else a disaggregated deployment's instance counts, else 1 each) and the KV link:
    the scale-out network, one NIC per device of the sending (prefill) replica."""
    two = served.deployment.disaggregated
    link = hw.node.scale_out
    return DisaggSpec(prefill_replicas=opts.prefill_replicas or (served.pool("prefill").instances if two else 1),
                      decode_replicas=opts.decode_replicas or (served.pool("decode").instances if two else 1),
                      link_bandwidth_bytes_per_s=link.bandwidth_bytes_per_s * link.achievable_fraction
                      * prefill.devices, link_latency_s=link.latency_s)


def _meta(opts: ServeOptions, name: str, hw, served: ServedDeployment, kind: str, disagg: DisaggSpec | None,
          replicas: tuple[ReplicaSpec, ReplicaSpec]) -> dict:
    """The deployment section of the serve JSON: the decode pool's replica at the top (the keys of one-pool runs),
    each pool's replicas, layout, KV and grid, and the deployment's options."""
    dep = served.deployment
    front, back = served.pool("prefill"), served.pool("decode")
    if disagg is None:
        pools = [_pool_meta("both", front, replicas[0], opts.replicas or front.instances)]
    else:
        pools = [_pool_meta("prefill", front, replicas[0], disagg.prefill_replicas),
                 _pool_meta("decode", back, replicas[1], disagg.decode_replicas)]
    load = dep.expert_load
    return {"model": name, "hardware": hw.name, "layout": back.model.par.label(),
            "devices_per_replica": replicas[1].devices, "kv_capacity_tokens": replicas[1].kv_capacity_tokens,
            "kv_bytes_per_token": replicas[1].kv_bytes_per_token, "scheduler": kind, "seed": opts.seed,
            "price_usd_per_hour_per_replica": replicas[1].price_usd_per_hour,
            "decode_grid_points": back.model.grid_points[0], "prefill_grid_points": front.model.grid_points[1],
            "disaggregated": dep.disaggregated, "pools": pools,
            "kv_link_bytes_per_s": disagg.link_bandwidth_bytes_per_s if disagg else None,
            "expert_load": {"kind": load.kind, "max_over_mean": load.imbalance()} if load is not None else None,
            "prefill_chunk": dep.prefill_chunk, "cuda_graphs": dep.cuda_graphs, "ep_mode": dep.ep_mode}


def _pool_meta(role: str, pool: ServingPool, replica: ReplicaSpec, count: int) -> dict:
    return {"role": role, "replicas": count, "layout": pool.model.par.label(),
            "devices_per_replica": replica.devices, "kv_capacity_tokens": replica.kv_capacity_tokens,
            # the cache's layer groups (serving/kvcache.KvLayout): window None holds every token, a window its last
            # ``window``; ``layer_units`` is the group's share of the layers
            "kv_layout": [{"window": w, "layer_units": u} for w, u in replica.kv_layout.groups],
            "price_usd_per_hour_per_replica": replica.price_usd_per_hour,
            "decode_grid_points": pool.model.grid_points[0], "prefill_grid_points": pool.model.grid_points[1]}


def _duration(opts: ServeOptions) -> float:
    """The arrival window of a run by duration: --duration, else DEFAULT_DURATION_S."""
    return DEFAULT_DURATION_S if opts.duration is None else opts.duration


def _check_benchmark_options(opts: ServeOptions) -> None:
    """The benchmark client's options (vllm bench serve's names) and the run modes they belong to: burstiness and
    ramp-up need --num-prompts, which replaces --duration and --arrival; ramp-up replaces --rate (vLLM refuses
    both, vllm-project/vllm, vllm/benchmarks/serve.py, ``main_async``); --max-concurrency caps any open loop."""
    if opts.num_prompts is not None:
        check_prompt_count(opts.num_prompts)
        for flag, value in (("--duration", opts.duration), ("--arrival", opts.arrival), ("--cv", opts.cv),
                            ("--users", opts.users or None)):
            if value is not None:
                raise ConfigError(None, flag, "no " + flag + " with --num-prompts (the client sends that many prompts "
                                  "at --rate with --burstiness; the run ends when they complete)", value)
    else:
        for flag, value in (("--burstiness", opts.burstiness), ("--ramp-up-strategy", opts.ramp_up_strategy)):
            if value is not None:
                raise ConfigError(None, flag, f"{flag} only with --num-prompts (a benchmark client's prompts)", value)
    if opts.ramp_up_strategy is not None:
        if opts.rate is not None:
            raise ConfigError(None, "--rate", "no --rate with --ramp-up-strategy (the ramp sets the rate)", opts.rate)
        RampUp(strategy=opts.ramp_up_strategy, start_rps=_given(opts.ramp_up_start_rps, "--ramp-up-start-rps"),
               end_rps=_given(opts.ramp_up_end_rps, "--ramp-up-end-rps"))
    elif (opts.ramp_up_start_rps, opts.ramp_up_end_rps) != (None, None):
        raise ConfigError(None, "--ramp-up-start-rps/--ramp-up-end-rps", "them only with --ramp-up-strategy",
                          (opts.ramp_up_start_rps, opts.ramp_up_end_rps))
    if opts.max_concurrency is not None and (opts.arrival == "closed" or opts.users):
        raise ConfigError(None, "--max-concurrency", "an open loop or --num-prompts (a closed loop's --users already "
                          "caps the requests in flight)", opts.max_concurrency)
    if isinstance(opts.warmup_requests, bool) or not isinstance(opts.warmup_requests, int) \
            or opts.warmup_requests < 0:
        raise ConfigError(None, "--warmup-requests", "an integer >= 0", opts.warmup_requests)


def _given(value, flag: str):
    """``value``, or a ConfigError saying ``flag`` is needed."""
    if value is None:
        raise ConfigError(None, flag, "a value with --ramp-up-strategy", None)
    return value


def _check_warmup(opts: ServeOptions, requests: list | None) -> None:
    """Warm-up requests must leave some to measure (a closed loop's count is known only at the end)."""
    count = opts.num_prompts or (len(requests) if requests is not None else None)
    if count is not None and 0 < count <= opts.warmup_requests:
        raise ConfigError(None, "--warmup-requests", f"fewer than the run's {count} requests", opts.warmup_requests)


def _benchmark_requests(opts: ServeOptions, lengths: LengthSampler):
    """--num-prompts: the client's prompts, lengths from the distributions or the trace's rows."""
    ramp = None
    if opts.ramp_up_strategy is not None:
        ramp = RampUp(strategy=opts.ramp_up_strategy, start_rps=opts.ramp_up_start_rps, end_rps=opts.ramp_up_end_rps)
    dataset = load_trace(opts.trace_file) if opts.trace_file else None
    return generate_prompts(num_prompts=opts.num_prompts, lengths=lengths, seed=opts.seed, dataset=dataset,
                            rate_per_s=math.inf if opts.rate is None else opts.rate, ramp=ramp,
                            burstiness=1.0 if opts.burstiness is None else opts.burstiness)


def _workload_requests(opts: ServeOptions, lengths: LengthSampler):
    if opts.num_prompts:
        return _benchmark_requests(opts, lengths), None
    if opts.trace_file:
        return load_trace(opts.trace_file), None
    if opts.arrival == "closed":
        arrival = make_arrival("closed", rate_per_s=0.0, users=opts.users, think_time_s=opts.think_time)
        assert isinstance(arrival, ClosedLoop)
        return None, arrival
    if opts.rate is None:
        raise ConfigError(None, "--rate", "an arrival rate (or --trace-file, or --arrival closed --users N)", None)
    cv = DEFAULT_CV if opts.cv is None else opts.cv
    arrival = make_arrival(opts.arrival or "poisson", rate_per_s=opts.rate, cv=cv)
    return generate(arrival=arrival, lengths=lengths, duration_s=_duration(opts), seed=opts.seed), None
