"""End-to-end deployment cases (validation kind ``deployment``): a published serving measurement's layout, lengths
and load projected through ``archsim.estimate`` (the Deployment of mapping/), and the figures its benchmark reports
derived from the priced steps by a steady-state model of the benchmark (docs/fidelity.md, "Deployments"):

- decode pool (``phase: decode``): B running sequences (batch per GPU x devices, or the concurrency); TPOT is the
  decode step at the mean context of a generation (prompt + output / 2, or the stated mean KV length); output
  tokens/s per GPU = B / TPOT / devices.
- prefill pool (``phase: prefill``): every attention replica runs full chunk forwards (``prefill_chunk // prompt``
  whole prompts each); input tokens/s per GPU = prompts x prompt tokens / prefill time / devices.
- a whole benchmark (``phase: both``) of at most SIMULATED_MAX_PROMPTS prompts: run through ``archsim serve``
  (sim/serve_deploy.py) as the benchmark client runs it: its prompts, at most ``concurrency`` in flight, sent at
  ``request_rate`` (0: all at once), fixed lengths, the case's layout, formats and stack (scheduler defaults,
  request and host time); the figures are the client's means (TTFT, TPOT, ITL, end-to-end latency, throughput per
  GPU). Queueing behind earlier requests (bursts, waves of a closed loop) is then simulated, not approximated.
- a longer benchmark (``phase: both``, trtllm-bench max-throughput runs): B = the concurrency per instance (capped by the running-sequence limit and
  the KV capacity; a max-throughput run without a stated concurrency runs as many sequences as fit). Each
  iteration decodes B sequences and prefills the prompts that replace finished ones (B x prompt / output tokens),
  so TPOT = decode step + the prefill an iteration carries: the arriving prompts' share of each replica at the
  batched rate, but at least one prompt alone on one replica while any arrives (with attention DP the EP barrier
  holds every replica for the one that prefills). TTFT: a request joining a running batch waits half an
  iteration and prefills alone; the first wave of a closed loop (min(B, requests) at once) prefills together,
  the j-th after j/B of the wave's prefill. Throughput = requests in flight / request time; tokens/s per user =
  output / request time (what trtllm-bench reports "with context").
Every case is priced with the serving stack it measured (``stack:``, stacks/<stack>.yaml). Cases the model cannot
represent say why (speculative decoding, decode context parallelism, an unstated load).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Mapping

from archsim.errors import ConfigError
from archsim.fidelity.cases import Case, NotModelled
from archsim.paths import data_dir

MODELS = ("deepseek_v3", "kimi_k2", "llama3_405b")


def predict(case: Case) -> tuple[dict[str, float], dict]:
    """Every figure a deployment benchmark reports, predicted (SI units as ``fidelity.cases.METRICS``: tokens/s,
    seconds), and a detail dict; NotModelled when the setup is outside the model."""
    return _predict(case.file, case.id.rsplit(".", 1)[0], case.hardware, case.dtype, tuple(sorted(case.shape.items())),
                    tuple(sorted(case.measured.items())))


@lru_cache(maxsize=256)
def _predict(file, base_id, hardware, dtype, shape_items, measured_items):
    shape, measured = dict(shape_items), dict(measured_items)
    if int(shape.get("mtp", 0)):
        raise NotModelled(f"{shape['mtp']} MTP drafts per step from one MTP module run {shape['mtp']} times: the graph "
                          "has one draft per MTP module (num_nextn_predict_layers)")
    if int(shape.get("dcp", 1)) > 1:
        raise NotModelled("decode context parallelism (DCP) is not modelled")
    model = str(shape["model"])
    if model not in MODELS:
        raise NotModelled(f"no workload for model {model}")
    phase = str(shape.get("phase", "both"))
    evaluate = {"decode": _decode_pool, "prefill": _prefill_pool, "both": _benchmark}[phase]
    return evaluate(shape, measured, hardware, dtype)


def _overrides(shape: Mapping, dtype: str) -> dict:
    """``estimate()`` keywords of the case's layout and formats."""
    out = {"devices": int(shape["devices"]), "tp": int(shape.get("tp", 1)), "pp": int(shape.get("pp", 1))}
    for key in ("attn_dp", "moe_tp", "moe_ep", "redundant_experts"):
        if key in shape:
            out[key] = int(shape[key])
    attention = shape.get("attention_weights")
    out["weights"] = str(attention) if attention else dtype
    experts = shape.get("expert_weights") or (dtype if attention else None)
    if experts:
        out["expert_weights"] = str(experts)
    out["kv_cache"] = str(shape.get("kv_cache", "bf16"))
    if shape.get("stack"):
        out["stack"] = _stack(str(shape["stack"]))
    chunk = _chunk(shape)
    if chunk:
        out["prefill_chunk"] = chunk
    if "cuda_graph" in shape:
        out["cuda_graphs"] = bool(shape["cuda_graph"])
    return out


def _stack(name: str):
    """The shipped stack the case's benchmark ran (stacks/<name>.yaml); NotModelled when archsim has none."""
    from archsim.config.stack import resolve_stack, stack_names

    if name not in stack_names():
        raise NotModelled(f"no stack description for {name!r} (stacks/)")
    return resolve_stack(name)


def _request_overhead_s(shape: Mapping) -> float:
    """The stack's fixed time per request before it is scheduled (HTTP, tokenisation), part of TTFT."""
    return _stack(str(shape["stack"])).host.request_s if shape.get("stack") else 0.0


def _chunk(shape: Mapping) -> int:
    """Tokens of one prefill forward per attention replica: the stated chunked-prefill size, which SGLang divides
    over its attention-DP ranks (python/sglang/srt/server_args.py: with --enable-dp-attention,
    chunked_prefill_size //= dp_size); 0 when not stated."""
    chunk = int(shape.get("chunked_prefill", 0))
    if chunk and shape.get("stack") == "sglang" and int(shape.get("attn_dp", 1)) > 1:
        chunk //= int(shape["attn_dp"])
    return chunk


def _estimate(shape: Mapping, dtype: str, hardware: str, **kw):
    """The Report ``archsim.estimate`` gives for the case's layout (the same resolve and report path)."""
    from archsim.config.hardware import resolve_hardware
    from archsim.config.workload import load_workload
    from archsim.mapping.resolve import resolve_deployment
    from archsim.report.metrics import report_of

    workload = load_workload(data_dir("workloads") / f"{shape['model']}.yaml")
    overrides = {**_overrides(shape, dtype), **kw}
    try:
        return report_of(resolve_deployment(workload, resolve_hardware(hardware), **overrides), overrides)
    except ConfigError as err:
        raise NotModelled(f"the layout does not resolve: {err}") from None


def _running(shape: Mapping, measured: Mapping) -> tuple[int, str]:
    """Sequences running in one instance, and where the number comes from."""
    devices, instances = int(shape["devices"]), int(shape.get("instances", 1))
    if "batch_per_gpu" in shape:
        return int(shape["batch_per_gpu"]) * devices, "batch_per_gpu x devices"
    if "concurrency" in shape:
        return max(1, round(int(shape["concurrency"]) / instances)), "concurrency / instances"
    per_user = measured.get("tokens_per_s_per_user")
    per_gpu = measured.get("output_tokens_per_s_per_gpu")
    if per_user and per_gpu:  # the running batch the two measured rates imply
        return max(1, round(per_gpu * devices / per_user)), "implied by the measured rates"
    raise NotModelled("neither the running batch nor the concurrency is stated")


def _cap(shape: Mapping, batch: int) -> int:
    """The engine's cap on running sequences: ``max_batch_per_rank`` x attention replicas when stated, else the
    stack's default running-request cap, if it has one."""
    per_rank = int(shape.get("max_batch_per_rank", 0))
    replicas = int(shape.get("attn_dp", 1))
    batch = min(batch, per_rank * replicas) if per_rank else batch
    stack = _stack(str(shape["stack"])) if shape.get("stack") else None
    if not per_rank and stack is not None and stack.max_running_requests:  # the stack's default cap
        batch = min(batch, stack.max_running_requests)
    return batch


def _decode_pool(shape, measured, hardware, dtype):
    batch, origin = _running(shape, measured)
    batch = _cap(shape, batch)
    context = int(shape.get("avg_kv_len", 0)) or int(shape.get("prompt_len", 0)) + int(shape.get("output_len", 0)) // 2
    if context < 2:
        raise NotModelled("no context length stated")
    r = _estimate(shape, dtype, hardware, batch=batch, prompt_len=context - 1, output_len=1, phase="decode")
    if r.decode is None:
        raise NotModelled(f"does not fit: {r.memory.needs}")
    tpot = r.decode.tpot_s
    devices = int(shape["devices"])
    return ({"tpot_ms": tpot, "itl_ms": tpot, "tokens_per_s_per_user": 1.0 / tpot,
             "output_tokens_per_s_per_gpu": batch / tpot / devices},
            {"batch": batch, "batch_from": origin, "context": context, "micro_batches": r.decode.micro_batches,
             "layout": r.deployment.layout["label"]})


def _prefill_pool(shape, measured, hardware, dtype):
    prompt = int(shape.get("prompt_len", 0)) - int(shape.get("cached_prompt_len", 0))
    if prompt < 1:
        raise NotModelled("no prompt length stated")
    from archsim.mapping.deployment import DEFAULT_PREFILL_CHUNK

    chunk = _chunk(shape) or DEFAULT_PREFILL_CHUNK
    replicas = int(shape.get("attn_dp", 1))
    batch = max(1, chunk // prompt) * replicas  # every replica's forward a full chunk of whole prompts
    r = _estimate(shape, dtype, hardware, batch=batch, prompt_len=prompt, output_len=1, phase="prefill")
    if r.prefill is None:
        raise NotModelled(f"does not fit: {r.memory.needs}")
    devices = int(shape["devices"])
    rate = batch * prompt / r.prefill.latency_s
    return ({"input_tokens_per_s_per_gpu": rate / devices},
            {"batch": batch, "prompt": prompt, "prefill_s": r.prefill.latency_s,
             "micro_batches": r.prefill.micro_batches, "layout": r.deployment.layout["label"]})


# a benchmark of at most this many prompts is run through archsim serve (the request-level simulation); a longer one
# (trtllm-bench max-throughput runs of 10^3-10^5 prompts) through the steady-state model below
SIMULATED_MAX_PROMPTS = 2000


def _benchmark(shape, measured, hardware, dtype):
    prompt = int(shape.get("prompt_len", 0)) - int(shape.get("cached_prompt_len", 0))
    output = int(shape.get("output_len", 0))
    if prompt < 1 or output < 1:
        raise NotModelled("prompt or output length not stated")
    if 0 < int(shape.get("num_prompts", 0)) <= SIMULATED_MAX_PROMPTS:
        return _simulated(shape, hardware, dtype)
    devices, instances = int(shape["devices"]), int(shape.get("instances", 1))
    try:
        batch, origin = _running(shape, measured)
    except NotModelled:
        batch, origin = 0, "as many as fit (max-throughput run)"
    probe = _estimate(shape, dtype, hardware, batch=max(1, batch), prompt_len=prompt, output_len=output)
    fitting = probe.memory.max_batch_at_context or 0
    if fitting < 1:
        raise NotModelled(f"does not fit: {probe.memory.needs}")
    batch = _cap(shape, min(batch or fitting, fitting))
    half = max(1, output // 2)
    steady = _estimate(shape, dtype, hardware, batch=batch, prompt_len=prompt, output_len=half)
    alone = _estimate(shape, dtype, hardware, batch=1, prompt_len=prompt, output_len=1, phase="prefill")
    if steady.decode is None or steady.prefill is None or alone.prefill is None:
        raise NotModelled("does not fit at the running batch")
    wave_s = steady.prefill.latency_s                       # the batch's prompts prefilled together
    arriving = batch / output                               # prompts that replace finished ones, per iteration
    # the prefill an iteration carries: the arriving prompts spread over the replicas (each replica's share, at
    # the batched rate), but never less than one prompt alone on one replica while any arrives: with attention DP
    # the EP group's barrier makes every replica wait for the one that prefills
    stall = max(wave_s / output, min(1.0, arriving) * alone.prefill.latency_s)
    iteration = steady.decode.tpot_s + stall
    overhead = _request_overhead_s(shape)                   # HTTP and tokenisation before the scheduler sees it
    joining = iteration / 2 + alone.prefill.latency_s + overhead  # a request joining a running batch
    total = int(shape.get("num_prompts", 0))
    first = min(batch, total) if total else 0               # a closed loop starts with a wave of requests at once
    first_wave = wave_s * (first + 1) / (2 * batch) + overhead if first else 0.0  # mean over the j-th: j / B of it
    ttft = joining if not total else (first * first_wave + max(0, total - batch) * joining) / total
    request_s = joining + (output - 1) * iteration
    per_gpu = batch * instances / request_s / (devices * instances)
    return ({"tpot_ms": iteration, "itl_ms": iteration, "tokens_per_s_per_user": output / request_s, "ttft_ms": ttft,
             "e2e_latency_ms": ttft + (output - 1) * iteration, "output_tokens_per_s_per_gpu": per_gpu * output,
             "input_tokens_per_s_per_gpu": per_gpu * prompt,
             "total_tokens_per_s_per_gpu": per_gpu * (prompt + output)},
            {"batch": batch, "batch_from": origin, "decode_step_s": steady.decode.tpot_s, "wave_prefill_s": wave_s,
             "prefill_per_iteration_s": stall,
             "prefill_alone_s": alone.prefill.latency_s, "layout": steady.deployment.layout["label"]})


def _simulated(shape: Mapping, hardware: str, dtype: str):
    """The benchmark run through ``archsim serve``: its prompts, its client (at most ``concurrency`` requests in
    flight, sent at ``request_rate``, all at once when 0), fixed lengths (a cached prefix as the prefix-hit rate),
    the case's layout, formats and stack (whose scheduler defaults, request time and host time apply); the figures
    are the benchmark client's means."""
    from archsim.sim.serve_deploy import ServeOptions, run_deployment

    over = _overrides(shape, dtype)
    prompt, cached = int(shape["prompt_len"]), int(shape.get("cached_prompt_len", 0))
    devices, instances = int(shape["devices"]), int(shape.get("instances", 1))
    prompts = int(shape["num_prompts"])
    rate = float(shape.get("request_rate", 0)) or float("inf")
    per_rank = int(shape.get("max_batch_per_rank", 0))
    layout = {k: over[k] for k in ("devices", "tp", "attn_dp", "moe_tp", "moe_ep", "redundant_experts", "pp",
                                   "prefill_chunk", "cuda_graphs", "stack") if k in over}
    opts = ServeOptions(workload=str(data_dir("workloads") / f"{shape['model']}.yaml"),
                        hw=str(data_dir("hardware") / f"{hardware}.yaml"), **layout,
                        weights=over["weights"], expert_weights=over.get("expert_weights"), kv_cache=over["kv_cache"],
                        replicas=instances if instances > 1 else None, num_prompts=prompts,
                        max_concurrency=int(shape.get("concurrency", 0)) or prompts, rate=rate,
                        prompt_len=str(prompt), output_len=str(shape["output_len"]),
                        prefix_hit_rate=cached / prompt, max_seqs=per_rank or None)
    try:
        result, meta = run_deployment(opts)
    except ConfigError as err:
        raise NotModelled(f"the deployment does not serve: {err}") from None
    b = result.summary["benchmark"]
    if not b["completed"]:
        raise NotModelled("no request completed")
    gpus = devices * instances
    ms = 1e-3  # the client's figures are in ms; the cases' metrics in SI
    return ({"ttft_ms": b["mean_ttft_ms"] * ms, "tpot_ms": b["mean_tpot_ms"] * ms, "itl_ms": b["mean_itl_ms"] * ms,
             "e2e_latency_ms": b["mean_e2el_ms"] * ms,
             "tokens_per_s_per_user": float(shape["output_len"]) / (b["mean_e2el_ms"] * ms),
             "output_tokens_per_s_per_gpu": b["output_throughput"] / gpus,
             "input_tokens_per_s_per_gpu": (b["total_token_throughput"] - b["output_throughput"]) / gpus,
             "total_tokens_per_s_per_gpu": b["total_token_throughput"] / gpus},
            {"simulated": True, "prompts": prompts, "completed": b["completed"], "failed": b["failed"],
             "batch": int(shape.get("concurrency", 0)) or prompts, "scheduler": meta["scheduler"],
             "layout": meta["layout"], "kv_capacity_tokens": meta["kv_capacity_tokens"]})
