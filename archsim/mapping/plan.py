"""Plan search: enumerate layouts (TP x PP x DP x EP x CP, micro-batches, batch) on N devices, drop those that
do not fit or miss the SLOs, rank the rest by an objective and return the best and the Pareto front."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from math import gcd
from typing import Callable, Iterable

from archsim.config.hardware import Hardware
from archsim.config.model import ModelConfig
from archsim.errors import ConfigError
from archsim.graph.precision import Precision
from archsim.mapping.deployment import Deployment, LayoutPlan, price_pool
from archsim.mapping.parallel import divisors, one_pool
from archsim.mapping.parallelism import Parallelism
from archsim.units import SECONDS_PER_HOUR

OBJECTIVES = ("throughput", "latency", "cost")
MILLION = 1e6
DEFAULT_SEQS_PER_REPLICA = (1, 4, 16, 64, 256)
LONG_PROMPT_TOKENS = 32768  # from this prompt length on, context parallelism is also tried


@dataclass(frozen=True, kw_only=True)
class PlanResult:
    """One evaluated layout. ``metrics`` holds the ranking quantities (None when it does not fit)."""

    parallelism: Parallelism
    batch: int
    fits: bool
    meets_slo: bool
    metrics: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"layout": {**self.parallelism.to_dict(), "label": self.parallelism.label()}, "batch": self.batch,
                "fits": self.fits, "meets_slo": self.meets_slo, **self.metrics, **self.extra}


@dataclass(frozen=True, kw_only=True)
class PlanSearch:
    """Feasible plans ranked best first, the best one and the Pareto front (throughput per device up,
    latency down) among them; ``searched`` layouts were evaluated, ``rejected`` did not fit or missed an SLO."""

    plans: tuple[PlanResult, ...]
    best: PlanResult | None
    pareto: tuple[PlanResult, ...]
    searched: int
    rejected: int
    objective: str

    def to_dict(self, limit: int = 50) -> dict:
        return {"objective": self.objective, "searched": self.searched, "rejected": self.rejected,
                "feasible": len(self.plans), "best": self.best.to_dict() if self.best else None,
                "plans": [p.to_dict() for p in self.plans[:limit]],
                "pareto": [p.to_dict() for p in self.pareto]}


def _tp_ok(model: ModelConfig, tp: int) -> bool:
    ok = model.num_attention_heads % tp == 0 and model.vocab_size % tp == 0 and model.intermediate_size % tp == 0
    if model.attention_kind == "gqa":
        ok = ok and model.kv_heads % tp == 0
    if model.is_moe and model.n_shared_experts:
        ok = ok and (model.moe_intermediate_size * model.n_shared_experts) % tp == 0
    return ok


def enumerate_layouts(model: ModelConfig, hw: Hardware, devices: int, *, long_prompt: bool = False,
                      max_pp: int = 16, micro_batches: Iterable[int | None] = (None,)) -> Iterable[Parallelism]:
    """Every valid layout on ``devices`` chips: attention TP inside a node and dividing the heads; PP up to
    ``max_pp`` and the layer count; attention DP the rest; MoE groups of ``moe_tp * ep`` chips holding whole
    attention TP groups and dividing the stage, with EP dividing the routed experts and MoE-TP 1 or the attention
    TP (each expert split over the TP group, SGLang's and vLLM's default on one node); CP in 1, 2, 4, 8 for long
    prompts; ``micro_batches`` each (None: chosen per phase by price)."""
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ConfigError(None, "devices", "a positive integer", devices)
    for tp in divisors(devices, hw.node.chips_per_node):
        if not _tp_ok(model, tp):
            continue
        for cp in ((1, 2, 4, 8) if long_prompt else (1,)):
            if (devices // tp) % cp:
                continue
            rest = devices // (tp * cp)
            for pp in divisors(rest, min(max_pp, model.num_hidden_layers)):
                dp = rest // pp
                for moe_tp, ep in _moe_splits(model, tp, tp * cp * dp):
                    for mb in micro_batches:
                        yield Parallelism(tp=tp, cp=cp, pp=pp, dp=dp, ep=ep, moe_tp=moe_tp, micro_batches=mb)


def _moe_splits(model: ModelConfig, tp: int, stage: int) -> list[tuple[int, int]]:
    """(moe_tp, ep) pairs for a stage of ``stage`` chips (``enumerate_layouts``); (1, 1) for dense models."""
    if not model.is_moe:
        return [(1, 1)]
    out = []
    for moe_tp in sorted({1, tp}):
        if model.moe_intermediate_size % moe_tp:
            continue
        for ep in divisors(gcd(stage // moe_tp, model.n_routed_experts)):
            group = moe_tp * ep
            if group % tp == 0 and stage % group == 0:
                out.append((moe_tp, ep))
    return out


def _inference_metrics(plan: LayoutPlan, hw: Hardware) -> dict:
    tps = plan.decode_tokens_per_s
    devices = plan.parallelism.devices
    return {"ttft_s": plan.ttft_s, "tpot_s": plan.tpot_s, "tokens_per_s": tps, "tokens_per_s_per_device": tps / devices,
            "usd_per_million_tokens": devices * hw.price_usd_per_hour / SECONDS_PER_HOUR / tps * MILLION,
            "memory_per_device_bytes": plan.memory.total_bytes,
            "exposed_communication_s": plan.decode.exposed_s}


def _score(metrics: dict, objective: str) -> tuple:
    """Sort key, smaller is better."""
    if objective == "latency":
        return (metrics["tpot_s"], metrics.get("ttft_s") or 0.0)
    if objective == "cost":
        return (metrics["usd_per_million_tokens"], metrics["tpot_s"])
    return (-metrics["tokens_per_s_per_device"], metrics["tpot_s"])


def pareto_front(results: list[PlanResult], *, up: str, down: str) -> list[PlanResult]:
    """Plans no other plan beats on both ``up`` (higher is better) and ``down`` (lower is better)."""
    ordered = sorted(results, key=lambda r: (-r.metrics[up], r.metrics[down]))
    front, best_down = [], float("inf")
    for r in ordered:
        if r.metrics[down] < best_down:
            front.append(r)
            best_down = r.metrics[down]
    return front


def search_inference(model: ModelConfig, hw: Hardware, *, devices: int, prompt_len: int, output_len: int,
                     precision: Precision, objective: str = "throughput", slo_tpot_s: float | None = None,
                     slo_ttft_s: float | None = None, batches: Iterable[int] | None = None, mtp: bool = False,
                     progress: Callable[[int, int], None] | None = None,
                     deployment: Deployment | None = None) -> PlanSearch:
    """Search inference layouts on ``devices`` chips. ``batches`` are batch sizes of one instance to try (default:
    1, 4, 16, 64, 256 sequences per attention replica). ``deployment`` (e.g. from ``mapping.resolve``) carries the
    options every candidate keeps (expert load, prefill chunk, CUDA graphs, EP mode, attention model); each
    candidate is ``deployment.with_layout(layout)`` at a batch, priced as ``estimate()`` prices it. Pricing is cached
    by graph shape, so a search of thousands of layouts prices each distinct device graph once."""
    if objective not in OBJECTIVES:
        raise ConfigError(None, "objective", f"one of {', '.join(OBJECTIVES)}", objective)
    base = deployment or one_pool(model, hw, Parallelism(), precision, batch=1, prompt_len=prompt_len,
                                  output_len=output_len, mtp=mtp)
    layouts = list(enumerate_layouts(model, hw, devices, long_prompt=prompt_len >= LONG_PROMPT_TOKENS))
    jobs = []
    for par in layouts:
        sizes = sorted(set(batches)) if batches else [par.dp * s for s in DEFAULT_SEQS_PER_REPLICA]
        jobs += [(par, b) for b in sizes]
    cache: dict = {}
    results, rejected = [], 0
    for i, (par, batch) in enumerate(jobs):
        candidate = replace(base.with_layout(par), batch=batch)
        try:
            plan = price_pool(candidate, candidate.pools[0], cache)
        except ConfigError:  # e.g. expert slots that do not spread over this EP
            rejected += 1
            continue
        if not plan.fits:
            rejected += 1
        else:
            metrics = _inference_metrics(plan, hw)
            ok = (slo_tpot_s is None or metrics["tpot_s"] <= slo_tpot_s) and \
                 (slo_ttft_s is None or metrics["ttft_s"] <= slo_ttft_s)
            if ok:
                results.append(PlanResult(parallelism=par, batch=batch, fits=True, meets_slo=True, metrics=metrics))
            else:
                rejected += 1
        if progress:
            progress(i + 1, len(jobs))
    results.sort(key=lambda r: _score(r.metrics, objective))
    front = pareto_front(results, up="tokens_per_s_per_device", down="tpot_s")
    return PlanSearch(plans=tuple(results), best=results[0] if results else None, pareto=tuple(front),
                      searched=len(jobs), rejected=rejected, objective=objective)


def search_training(model: ModelConfig, hw: Hardware, *, devices: int, seq_len: int, global_batch: int,
                    precision: str = "bf16", objective: str = "throughput", schedules=("1f1b", "dualpipe"),
                    progress: Callable[[int, int], None] | None = None) -> PlanSearch:
    """Search training layouts (TP x PP x DP x EP, schedule; one sequence per micro-batch) ranked by
    tokens/s (throughput and cost: GPU-hours follow from it on a fixed device count) or step time."""
    from archsim.mapping.training import TrainingSetup, estimate_training

    if objective not in OBJECTIVES:
        raise ConfigError(None, "objective", f"one of {', '.join(OBJECTIVES)}", objective)
    jobs = []
    for par in enumerate_layouts(model, hw, devices, micro_batches=(1,)):
        if par.moe_tp != 1 or par.cp != 1 or global_batch % par.dp:
            continue
        mb = global_batch // par.dp
        for schedule in schedules:
            if schedule == "dualpipe" and (par.pp == 1 or par.pp % 2 or mb % 2 or mb < 2 * par.pp):
                continue
            if schedule != "1f1b" and par.pp == 1:
                continue
            jobs.append((Parallelism(tp=par.tp, ep=par.ep, pp=par.pp, dp=par.dp, micro_batches=mb), schedule))
    results, rejected = [], 0
    for i, (par, schedule) in enumerate(jobs):
        setup = TrainingSetup(seq_len=seq_len, global_batch=global_batch, precision=precision, schedule=schedule,
                              recompute="selective")
        est = estimate_training(model, hw, par, setup)
        if est.fits:
            metrics = {"step_time_s": est.step_time_s, "tokens_per_s": est.tokens_per_s,
                       "tokens_per_s_per_device": est.tokens_per_s / par.devices, "mfu": est.mfu,
                       "gpu_hours_per_trillion_tokens": est.gpu_hours_per_trillion_tokens,
                       "memory_per_device_bytes": est.memory.total_bytes}
            results.append(PlanResult(parallelism=par, batch=global_batch, fits=True, meets_slo=True, metrics=metrics,
                                      extra={"schedule": schedule}))
        else:
            rejected += 1
        if progress:
            progress(i + 1, len(jobs))
    key = (lambda r: r.metrics["step_time_s"]) if objective == "latency" else \
        (lambda r: -r.metrics["tokens_per_s"])
    results.sort(key=key)
    front = pareto_front(results, up="tokens_per_s_per_device", down="memory_per_device_bytes")
    return PlanSearch(plans=tuple(results), best=results[0] if results else None, pareto=tuple(front),
                      searched=len(jobs), rejected=rejected, objective=objective)
