"""Run every validation case through the model: predicted vs measured, the error, and per-category median
and max absolute percentage error (as fractions). The documented bounds are checked by a test."""
from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from archsim.config.hardware import Hardware
from archsim.errors import ConfigError
from archsim.fidelity.cases import METRICS, VALIDATION_DIR, Case, NotModelled, load_cases
from archsim.paths import data_dir

# Regression guards on the median absolute error per category (docs/fidelity.md). The targets are
# 10% (GEMM, attention, training) and 15% (communication); where a guard is looser, the target is not met
# yet and docs/fidelity.md says so.
MEDIAN_BOUNDS: dict[str, float] = {"gemm_dense": 0.10, "gemm_grouped": 0.10, "attention": 0.10,
                                   "communication": 0.15, "model": 0.01,
                                   # DeepSeek-V3 pre-training, target 10% NOT met: +16.8% tokens/s (154.2K GPU-h/T
                                   # against 180K; docs/training_trace.md)
                                   "training": 0.20,
                                   # measured on a real H200 (validation/h200_torch.yaml, CUDA-graph timing):
                                   # 104 cuBLAS GEMMs M = 1..8192 (held-out median 8.7% when set) and 17
                                   # FlashAttention-2 prefill/decode calls (6.8%)
                                   "gemm_h200_measured": 0.10, "attention_h200_measured": 0.10,
                                   # DeepSeek-V3 pre-training GEMM shapes (fprop/dgrad/wgrad of a 4K-token
                                   # micro-batch) on the same H200 (validation/h200_torch_training.yaml)
                                   "gemm_h200_training": 0.10,
                                   # end-to-end serving measurements (validation/deployment_public.yaml), each case
                                   # priced with the stack it measured (stacks/*.yaml) and, for benchmarks of up to
                                   # 2,000 prompts, run through archsim serve: the targets are 15% (throughput,
                                   # TPOT) and 25% (TTFT); NOT met. These guard today's medians (31%, held out 37%;
                                   # 48%; 76%):
                                   # 2025 stacks on one 8-GPU node run TP8 DeepSeek decode 1.5-4x and prefill ~8x
                                   # slower than the kernels and host times archsim can source (docs/stacks.md)
                                   "deployment_throughput": 0.40, "deployment_tpot": 0.50, "deployment_ttft": 0.80,
                                   # what-if chips' published system results (validation/whatif_*.yaml): the
                                   # issue's target, 30% median over >= 10 cases of >= 3 kinds, met (24.9% over 10
                                   # compared cases of 4 kinds): Cerebras' 8B and 70B launch figures (+19%, +86%)
                                   # and WaferLLM's WSE-2 Llama3-8B and Qwen2-72B decode (-20%, +2%), 5 speculative
                                   # ones skipped; Samsung's Aquabolt-XL GEMV on the MI100 + HBM2-PIM system (-29%
                                   # vs 8.9x, -44% vs 11.2x), its Alveo U280 case skipped (host not modelled);
                                   # imec's halved-clock training cost +70% (archsim's stand-in training step is
                                   # compute-bound); Groq LPU decode per user, Llama-2-70B / Llama-2-7B / Mixtral
                                   # (-5%, +17%, +52%; priced C2C-latency-bound at TSP-MP's 3 us upper bound),
                                   # Llama-3.1-70B skipped (does not fit whole-layer stages)
                                   "whatif": 0.30,
                                   # board power and J per output token of public serving runs
                                   # (validation/energy_public.yaml, energy_mlperf.yaml, fidelity/energy_eval.py):
                                   # the target, 20%, met for power (11.8% over 81 runs); J per token: target 20%
                                   # not met: 22.0% (H100 board power 10-29% low in memory-bound decode once
                                   # the vLLM step time is right, with the gpu-roofline three-term fit's active
                                   # baseline, power.active_baseline, in the model; docs/energy.md); the guard
                                   # is that median rounded up to the next percent
                                   "energy_power": 0.20, "energy_j_per_token": 0.23}


@dataclass(frozen=True, kw_only=True)
class CaseResult:
    """One case's outcome. ``error`` = predicted / measured - 1; ``skipped`` says why no prediction."""

    case: Case
    predicted: float | None
    detail: Mapping[str, object]
    skipped: str | None = None

    @property
    def error(self) -> float | None:
        if self.predicted is None:
            return None
        return self.predicted / self.case.measured_value - 1.0

    def to_dict(self) -> dict:
        c = self.case
        return {"id": c.id, "file": Path(c.file).name, "category": c.category, "kernel": c.kernel,
                "metric": c.metric, "unit": METRICS[c.metric][1], "measured": c.measured_value,
                "predicted": self.predicted, "error": self.error,
                "abs_error": None if self.error is None else abs(self.error),
                "calibrates": c.calibrates, "skipped": self.skipped, "source": c.source,
                "detail": dict(self.detail)}


def _grid(shape: Mapping[str, object]) -> list[dict[str, object]]:
    """Expand list-valued shape entries into every combination (an "up to" figure's benchmark grid)."""
    keys = list(shape)
    values = [v if isinstance(v, tuple) else (v,) for v in shape.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def _require(case: Case, shape: Mapping[str, object], *keys: str) -> None:
    for key in keys:
        if key not in shape:
            raise ConfigError(case.file, f"{case.id}.shape.{key}", f"a value for {key}", None)


def _gemm(case: Case, hw: Hardware) -> tuple[float, dict]:
    from archsim.cost.kernel_model import grouped_gemm_time

    s = case.shape
    _require(case, s, "m", "n", "k")
    est = grouped_gemm_time(hw, groups=int(s.get("groups", 1)), m=int(s["m"]), n=int(s["n"]), k=int(s["k"]),
                            dtype=case.dtype, row_layout=str(s.get("layout", "contiguous")))
    value = {"tflops": est.achieved_flop_per_s, "gb_per_s": est.achieved_bytes_per_s, "time_us": est.time_s}
    return value[case.metric], {"bound": est.bound, **est.detail, **est.parts}


def _attention(case: Case, hw: Hardware) -> tuple[float, dict]:
    """Best prediction over the case's grid, each point measured by FlashMLA's own counting:
    FLOPs 2*b*s_q*h_q*L*(d_qk + d_v), bytes (b*L*d_qk + b*s_q*h_q*(d_qk + d_v)) * element bytes."""
    from archsim.dtypes import BY_NAME
    from archsim.cost.kernel_model import attention_time

    if case.shape.get("kind") in ("gqa", "mha"):
        return _flash_attention(case, hw)
    best: tuple[float, dict] | None = None
    elem = BY_NAME[case.dtype].bytes
    for point in _grid(case.shape):
        _require(case, point, "kind", "phase", "batch", "heads", "q_len", "context", "kv_lora_rank", "rope_dim")
        b, h, sq, ctx = (int(point[k]) for k in ("batch", "heads", "q_len", "context"))
        d_qk = int(point["kv_lora_rank"]) + int(point["rope_dim"])
        d_v = int(point["kv_lora_rank"])
        est = attention_time(hw, kind=str(point["kind"]), phase=str(point["phase"]), heads=h, batch=b,
                             context=ctx, q_len=sq, kv_dtype=case.dtype, kv_lora_rank=int(point["kv_lora_rank"]),
                             rope_dim=int(point["rope_dim"]))
        flops = 2.0 * b * sq * h * ctx * (d_qk + d_v)
        nbytes = (b * ctx * d_qk + b * sq * h * (d_qk + d_v)) * elem
        value = {"tflops": flops / est.time_s, "gb_per_s": nbytes / est.time_s, "time_us": est.time_s}[case.metric]
        if best is None or value > best[0]:
            best = (value, {"bound": est.bound, "batch": b, "heads": h, "q_len": sq, "context": ctx})
    assert best is not None
    return best


def _flash_attention(case: Case, hw: Hardware) -> tuple[float, dict]:
    """One GQA/MHA attention call (metric time_us); optional kernel properties q_tile, kv_tile and
    mma_peak_percent describe the kernel that was measured (cost.kernel_model.attention_time)."""
    from archsim.cost.kernel_model import attention_time

    s = case.shape
    _require(case, s, "kind", "phase", "batch", "heads", "context", "head_dim")
    optional = {key: s[key] for key in ("heads_kv", "q_len", "q_tile", "kv_tile") if key in s}
    if "mma_peak_percent" in s:  # shape values are integers: the fraction is given in percent
        optional["mma_peak_fraction"] = int(s["mma_peak_percent"]) / 100.0
    est = attention_time(hw, kind=str(s["kind"]), phase=str(s["phase"]), heads=int(s["heads"]),
                         batch=int(s["batch"]), context=int(s["context"]), kv_dtype=case.dtype,
                         head_dim=int(s["head_dim"]), **optional)
    value = {"time_us": est.time_s, "tflops": est.detail["mma_flops"] / est.time_s}
    if case.metric not in value:
        raise ConfigError(case.file, f"{case.id}.measured", "time_us or tflops for a GQA/MHA case", case.metric)
    return value[case.metric], {"bound": est.bound, **est.parts,
                                "executed_mma_flops": est.detail["executed_mma_flops"]}


def _ep_exchange(case: Case, hw: Hardware) -> tuple[float, dict]:
    from archsim.cost.collectives import price_ep_exchange
    from archsim.dtypes import BY_NAME

    s = case.shape
    _require(case, s, "mode", "phase", "tokens", "hidden", "topk", "experts", "ep")
    dt = BY_NAME[case.dtype]
    cost = price_ep_exchange(tokens=int(s["tokens"]), hidden=int(s["hidden"]), topk=int(s["topk"]),
                             n_experts=int(s["experts"]), ep=int(s["ep"]), hw=hw, dispatch_dtype=dt,
                             combine_dtype=dt, n_group=int(s.get("n_group", 1)),
                             topk_group=int(s.get("topk_group", 1)), mode=str(s["mode"]))
    phase = cost.dispatch if s["phase"] == "dispatch" else cost.combine
    # DeepEP reports the bandwidth of the bottleneck fabric: NVLink inside a node, RDMA across nodes
    crosses = int(s["ep"]) > hw.node.chips_per_node
    fabric_bytes = phase.scale_out_bytes if crosses else phase.scale_up_bytes
    value = {"gb_per_s": fabric_bytes / phase.time_s, "time_us": phase.time_s}[case.metric]
    return value, {"fabric": "scale_out" if crosses else "scale_up", "time_s": phase.time_s,
                   "scale_up_bytes": phase.scale_up_bytes, "scale_out_bytes": phase.scale_out_bytes}


def _model_config(name: str):
    from archsim.config.model import model_from_dict
    from archsim.config.yaml_io import load_yaml

    path = data_dir("workloads") / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(str(path), None, "a workload file for the model", name)
    return model_from_dict(load_yaml(path)["model"], str(path), "model")


def _kv_bytes(case: Case, hw: Hardware) -> tuple[float, dict]:
    """The graph's own count (``graph.params.kv_bytes_per_token``; for MLA the latent plus the shared RoPE
    key per layer), so the case checks the code the projections use, not a restatement of it."""
    from archsim.dtypes import BY_NAME
    from archsim.graph.params import kv_bytes_per_token

    m = _model_config(str(case.shape["model"]))
    total = kv_bytes_per_token(m, BY_NAME[case.dtype])
    return total, {"layers": m.num_hidden_layers, "per_layer_bytes": total / m.num_hidden_layers}


def _ep_decode_bound(case: Case, hw: Hardware) -> tuple[float, dict]:
    """ISCA25's bound: (dispatch + combine bytes) * tokens * experts * hidden / link rate, per exchange,
    times micro-batches and layers; the raw link rate, no efficiency or latency (as the paper does)."""
    s = case.shape
    _require(case, s, "tokens_per_device", "experts_per_token", "hidden", "dispatch_bytes", "combine_bytes",
             "microbatches", "layers", "link")
    link = getattr(hw.node, str(s["link"]))
    per_exchange = (int(s["dispatch_bytes"]) + int(s["combine_bytes"])) * int(s["tokens_per_device"]) \
        * int(s["experts_per_token"]) * int(s["hidden"]) / link.bandwidth_bytes_per_s
    total = per_exchange * int(s["microbatches"]) * int(s["layers"])
    return total, {"per_exchange_s": per_exchange}


def _training(case: Case, hw: Hardware) -> tuple[float, dict]:
    """Pre-training tokens/s per GPU from the training model (``archsim/mapping/training.py``) with the
    case's layout and recipe."""
    try:
        from archsim.mapping.parallelism import Parallelism
        from archsim.mapping.training import TrainingSetup, estimate_training
    except ImportError:
        raise _Skip("the training model (archsim/mapping/training.py) is not available") from None
    s = case.shape
    _require(case, s, "model", "tp", "ep", "pp", "dp", "micro_batches", "seq_len", "global_batch", "schedule",
             "comm_sms", "recompute")
    par = Parallelism(tp=int(s["tp"]), ep=int(s["ep"]), pp=int(s["pp"]), dp=int(s["dp"]),
                      micro_batches=int(s["micro_batches"]), zero_stage=int(s.get("zero_stage", 1)))
    setup = TrainingSetup(seq_len=int(s["seq_len"]), global_batch=int(s["global_batch"]), precision=case.dtype,
                          optimizer=str(s.get("optimizer", "adamw")), recompute=str(s["recompute"]),
                          schedule=str(s["schedule"]), comm_sms=int(s["comm_sms"]), mtp=bool(s.get("mtp", False)),
                          fp8_activation_cache=bool(s.get("fp8_activation_cache", False)),
                          recompute_projections=tuple(p for p in str(s.get("recompute_projections", "")).split(",") if p),
                          attention_output_format=str(s.get("attention_output_format", "bf16")))
    est = estimate_training(_model_config(str(s["model"])), hw, par, setup)
    return est.tokens_per_s / est.devices, {"mfu": est.mfu, "step_time_s": est.step_time_s,
                                            "devices": est.devices}


class _Skip(Exception):
    """A case whose model is not available in this tree (reported, not counted)."""


def _modelled(predict, *args) -> tuple[dict, dict]:
    """``predict(*args)`` of an end-to-end evaluator; a setup outside the model (``NotModelled``) skips the case."""
    try:
        return predict(*args)
    except NotModelled as why:
        raise _Skip(str(why)) from None


def _deployment(case: Case, hw: Hardware) -> tuple[float, dict]:
    """A serving measurement's figure from its deployment projected end to end (fidelity/deployment_eval.py)."""
    from archsim.fidelity.deployment_eval import predict

    values, detail = _modelled(predict, case)
    return values[case.metric], detail


def _whatif(case: Case, hw: Hardware) -> tuple[float, dict]:
    """A what-if chip's published system result reproduced end to end (fidelity/whatif_eval.py)."""
    from archsim.fidelity.whatif_eval import predict

    values, detail = _modelled(predict, case, hw)
    return values[case.metric], detail


def _energy(case: Case, hw: Hardware) -> tuple[float, dict]:
    """A serving run's board power per GPU and J per output token (fidelity/energy_eval.py)."""
    from archsim.fidelity.energy_eval import predict

    values, detail = _modelled(predict, case)
    return values[case.metric], detail


def _whatif_device(case: Case, hw: Hardware) -> tuple[float, dict]:
    """A PIM or 3D-stacked-memory system's published result (fidelity/whatif_device_eval.py)."""
    from archsim.fidelity.whatif_device_eval import predict

    return _modelled(predict, case, hw)


EVALUATORS: dict[str, Callable[[Case, Hardware], tuple[float, dict]]] = {
    "deployment": _deployment, "whatif_decode": _whatif, "energy": _energy,
    "whatif_pim_gemv": _whatif_device, "whatif_clock_training": _whatif_device,
    "gemm": _gemm, "grouped_gemm": _gemm, "attention": _attention, "ep_exchange": _ep_exchange,
    "kv_bytes_per_token": _kv_bytes, "ep_decode_bound": _ep_decode_bound, "training_throughput": _training,
}


def evaluate(case: Case, hw: Hardware) -> CaseResult:
    """Predict one case on ``hw``."""
    try:
        predicted, detail = EVALUATORS[case.kernel](case, hw)
    except _Skip as why:
        return CaseResult(case=case, predicted=None, detail={}, skipped=str(why))
    return CaseResult(case=case, predicted=float(predicted), detail=detail)


def summarise(results: list[CaseResult]) -> dict[str, dict]:
    """Per category: n, median and max absolute error (fractions), n skipped, the same median over the
    held-out cases only (those that set no hardware field), and the documented bound."""
    out: dict[str, dict] = {}
    for category in sorted({r.case.category for r in results}):
        rows = [r for r in results if r.case.category == category]
        errors = [abs(r.error) for r in rows if r.error is not None]
        held = [abs(r.error) for r in rows if r.error is not None and r.case.calibrates is None]
        out[category] = {"n": len(errors), "skipped": len(rows) - len(errors),
                         "median_abs_error": statistics.median(errors) if errors else None,
                         "max_abs_error": max(errors) if errors else None,
                         "n_held_out": len(held),
                         "median_abs_error_held_out": statistics.median(held) if held else None,
                         "bound_median_abs_error": MEDIAN_BOUNDS.get(category)}
    return out


def run_validation(*, directory: str | Path = VALIDATION_DIR,
                   hardware: Mapping[str, Hardware] | None = None) -> dict:
    """Every case through the model; the JSON-ready report ``{"categories": ..., "cases": [...]}``.

    ``hardware`` maps a case's hardware name to a record (default: load ``hardware/<name>.yaml``).
    """
    from archsim.config.hardware import resolve_hardware

    cases = load_cases(directory)
    cache: dict[str, Hardware] = dict(hardware or {})
    results = []
    for case in cases:
        if case.hardware not in cache:
            cache[case.hardware] = resolve_hardware(case.hardware)
        results.append(evaluate(case, cache[case.hardware]))
    return {"categories": summarise(results), "by_stack": by_stack(results), "cases": [r.to_dict() for r in results]}


def by_stack(results: list[CaseResult]) -> dict[str, dict[str, dict]]:
    """The deployment categories split by the serving stack each case measured (its ``stack:``): per category and
    stack, n and the median absolute error."""
    out: dict[str, dict[str, dict]] = {}
    for r in results:
        stack = r.case.shape.get("stack")
        if stack is None or r.error is None:
            continue
        out.setdefault(r.case.category, {}).setdefault(str(stack), []).append(abs(r.error))
    return {cat: {stack: {"n": len(errs), "median_abs_error": statistics.median(errs)}
                  for stack, errs in sorted(stacks.items())} for cat, stacks in sorted(out.items())}
