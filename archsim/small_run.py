"""``archsim run ... --small``: the workload's tiny variant executed on the numpy kernels inside the
discrete-event simulator, with numerical checks, graph-vs-measured counts and measured routing.

One run: the ``--small`` rule (archsim.graph.small) derives the tiny model from the workload; the
same graph builder as the full-scale projection builds its prefill and decode graphs; the simpy
executor schedules them on the chip with priced times and, as each op completes, runs that node's
real kernel (``NodeRunner``), so the timeline and the outputs come from the same run.
"""
from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from archsim.config.hardware import Hardware, load_hardware
from archsim.config.workload import Workload, load_workload
from archsim.cost.attention_traffic import flash_hbm_bytes
from archsim.cost.traffic import Geometry
from archsim.errors import ConfigError
from archsim.execute import Execution, Step, counts_match, finish, prepare
from archsim.graph.expert_load import ExpertLoad, max_over_mean, zipf_load
from archsim.graph.precision import scenario_precision
from archsim.graph.small import small_variant
from archsim.kernels.flash import flash_attention
from archsim.kernels.tiny import TinyDeepSeek
from archsim.sim.executor import OpEvent, Timeline, execute_graph

# Run sizes (choices, not hardware figures): enough tokens that causal tiles are partial and
# routing has something to balance, small enough to run in well under a second in float64.
BATCH = 2
PROMPT_LEN = 33          # odd on purpose: not a multiple of any tile size
DECODE_STEPS = 8         # decode steps sampled for distinct experts per step
ROUTING_BATCH = 8        # prompts routed to measure the load (8 x 33 = 264 tokens)
BASELINE_TRIALS = 64     # Monte Carlo trials for the uniform-routing max/mean baseline
SEED = 0
# Tolerances: float64 kernels that compute the same function in a different order agree to
# ~1e-15 relative on O(1) logits; 1e-10 leaves room without hiding a wrong mask or scale.
# float32: ~6e-8 unit roundoff accumulated over a few layers of short dot products (measured
# ~2e-6 on these sizes); 1e-4 is the documented bound.
TOL_F64 = 1e-10
TOL_F32 = 1e-4
ZIPF_S_MAX = 8.0         # search bracket for the fitted Zipf exponent (s = 8 is already all-on-one)
BISECT_STEPS = 60


def run_small(workload: str | os.PathLike | Workload, hw: str | os.PathLike | Hardware, *,
              trace_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The ``small`` JSON section: checks, counts_match, expert_load, timeline (see module doc)."""
    wl = workload if isinstance(workload, Workload) else load_workload(workload)
    chip = hw if isinstance(hw, Hardware) else load_hardware(hw)
    model = small_variant(wl.model)
    sc = wl.scenario
    precision = scenario_precision(sc)
    sram = Geometry.of(chip).sram_per_sm_bytes
    elem = precision.activations.bytes
    # a chip without a shared-memory level gets 1x1 tiles, exactly as the cost model's formula does
    flash = functools.partial(flash_attention, sram_bytes=sram, elem_bytes=elem)
    try:
        tiny = TinyDeepSeek(model, seed=SEED)
    except ValueError as err:
        raise ConfigError(wl.source_file, "model", "an architecture the tiny model executes (MLA or GQA "
                          "attention, sigmoid routing)", str(err)) from None

    mtp = bool(sc.mtp and model.num_nextn_predict_layers)
    prefill = prepare(model, phase="prefill", batch=BATCH, length=PROMPT_LEN, precision=precision, seed=SEED,
                      attend=flash, tiny=tiny, mtp=mtp)
    ex_prefill, tl_prefill = _simulate(prefill, chip)
    decode = prepare(model, phase="decode", batch=BATCH, length=PROMPT_LEN + 1, precision=precision, seed=SEED,
                     attend=flash, tiny=tiny, mtp=mtp)
    ex_decode, tl_decode = _simulate(decode, chip)
    timeline = _concat(tl_prefill, tl_decode)
    if trace_path is not None:
        from archsim.report.trace import write_chrome_trace
        try:
            write_chrome_trace(timeline, trace_path, name=f"{wl.name} --small")
        except OSError as err:
            raise ConfigError(None, "--trace", "a writable file path", f"{trace_path} ({err.strerror})") from None

    checks = _checks(tiny, model, ex_prefill, ex_decode, sram, elem)
    return {
        "model": _model_summary(model),
        "mtp": mtp,
        "checks": checks,
        "counts_match": counts_match(ex_prefill) and counts_match(ex_decode),
        "counts": {ex.phase: {"nodes": len(ex.checks), "mismatches": ex.mismatches()[:10],
                              "flops": float(ex.counter.total_flops)} for ex in (ex_prefill, ex_decode)},
        "expert_load": _expert_load(tiny, model, wl, ex_prefill) if model.is_moe else None,
        "timeline": {"prefill": _timeline_summary(tl_prefill), "decode": _timeline_summary(tl_decode),
                     "trace": None if trace_path is None else os.fspath(trace_path)},
    }


def _simulate(step: Step, chip: Hardware) -> tuple[Execution, Timeline]:
    """Schedule the step's graph in simpy; each completing op runs its kernel."""
    timeline = execute_graph(step.graph, chip, on_op=lambda op, start_s, end_s: step.runner.run(op.name))
    return finish(step), timeline


def _check(error: float, tolerance: float) -> dict[str, Any]:
    return {"max_abs_error": float(error), "tolerance": float(tolerance), "passed": bool(error <= tolerance)}


def _checks(tiny: TinyDeepSeek, model, ex_prefill: Execution, ex_decode: Execution, sram: float,
            elem: float) -> dict[str, dict[str, Any]]:
    tokens = np.random.default_rng(SEED).integers(0, model.vocab_size, (BATCH, PROMPT_LEN))
    absorbed = tiny.forward(tokens, form="absorbed")[0]
    f32 = TinyDeepSeek(model, seed=SEED, dtype=np.float32).forward(tokens, form="absorbed")[0]
    checks = {
        # prefill logits (flash attention, node by node in simulator order) vs the model's forward (naive)
        "flash_vs_naive_prefill": _check(ex_prefill.reference_error, TOL_F64),
        # one decode step from the cache (node by node) vs the full forward's last position
        "decode_vs_full_forward": _check(ex_decode.reference_error, TOL_F64),
        "float32_vs_float64": _check(float(np.max(np.abs(f32 - absorbed))), TOL_F32),
        # every flash call (prefill; decode, where MLA's absorbed form reads its latent once) vs the formula
        "flash_traffic_vs_cost_model": _check(max(_traffic_error(ex_prefill, sram, elem),
                                                  _traffic_error(ex_decode, sram, elem)), 0.0),
    }
    if tiny.kind == "mla":
        expanded = tiny.forward(tokens, form="expanded")[0]
        checks["mla_absorbed_vs_expanded"] = _check(float(np.max(np.abs(absorbed - expanded))), TOL_F64)
    return checks


def _traffic_error(ex: Execution, sram: float, elem: float) -> float:
    """max |counted flash HBM bytes - cost model formula| over the attention nodes (exact: 0)."""
    worst, compared = 0.0, 0
    for r in ex.counter.records:
        if r.kind == "attention" and r.attrs.get("kernel") == "flash":
            compared += 1
            a = r.attrs
            expect = flash_hbm_bytes(batch=a["batch"], q_len=a["q_len"], kv_len=a["kv_len"], heads_q=a["heads_q"],
                                     heads_kv=a["heads_kv"], d_qk=a["d_qk"], d_v=a["d_v"], elem_bytes=elem,
                                     sram_bytes=sram, causal=a["causal"], shared_kv=a.get("shared_kv", False),
                                     window=a.get("window"))
            worst = max(worst, abs(r.hbm_read_bytes + r.hbm_write_bytes - expect))
    if not compared:
        raise RuntimeError("no flash attention ran: the traffic check would be vacuous")
    return worst


def _expert_load(tiny: TinyDeepSeek, model, wl: Workload, ex_prefill: Execution) -> dict[str, Any]:
    """Measured routing of the tiny model and the load distribution it suggests at full scale."""
    k, experts = model.num_experts_per_tok, model.n_routed_experts
    rng = np.random.default_rng(SEED + 2)
    _, state = tiny.forward(rng.integers(0, model.vocab_size, (ROUTING_BATCH, PROMPT_LEN)), last_only=True)
    per_layer = {layer: [int(c) for c in counts] for layer, counts in state.expert_counts[-1].items()}
    tokens = ROUTING_BATCH * PROMPT_LEN
    ratios = [max_over_mean(c) for c in per_layer.values()]
    baseline = uniform_max_over_mean(tokens, experts, k, rng)
    measured = float(np.mean(ratios))
    # Transfer rule: when the measured max/mean exceeds what uniform routing of as many tokens shows,
    # the router is skewed, and the skew is carried to full scale as the Zipf exponent that reproduces
    # the measured max/mean at the tiny expert count (sampling noise included: an upper estimate).
    s = fit_zipf_s(measured, experts, k) if measured > baseline else 0.0
    full = wl.model
    full_load = zipf_load(full.n_routed_experts, full.num_experts_per_tok, s)
    distinct = _distinct_per_decode_step(tiny, model)
    return {
        "experts": experts, "k": k, "tokens": tokens,
        "max_over_mean": measured, "max_over_mean_worst_layer": float(max(ratios)),
        "uniform_baseline_max_over_mean": baseline,
        "distinct_experts_per_step": float(np.mean(distinct)), "decode_batch": BATCH,
        "distinct_uniform_expected": float(experts * (1 - (1 - k / experts) ** BATCH)),
        "counts_per_layer": {str(layer): c for layer, c in per_layer.items()},
        "prefill_counts_per_layer": {str(layer): [int(x) for x in c] for layer, c in ex_prefill.expert_counts.items()},
        "zipf_s_fit": s,
        "full_scale": {"experts": full.n_routed_experts, "k": full.num_experts_per_tok, "kind": "zipf",
                       "zipf_s": s, "max_over_mean": float(full_load.imbalance())},
    }


def uniform_max_over_mean(tokens: int, experts: int, k: int, rng: np.random.Generator) -> float:
    """Expected max/mean expert load when each token picks k distinct experts uniformly (Monte Carlo)."""
    ratios = []
    for _ in range(BASELINE_TRIALS):
        picks = np.argsort(rng.random((tokens, experts)), axis=1)[:, :k]     # [T, k] uniform k-subsets
        counts = np.bincount(picks.ravel(), minlength=experts)               # [E]
        ratios.append(max_over_mean(counts))
    return float(np.mean(ratios))


def _distinct_per_decode_step(tiny: TinyDeepSeek, model) -> list[int]:
    """Distinct experts touched per MoE layer per decode step of BATCH sequences."""
    rng = np.random.default_rng(SEED + 1)
    _, state = tiny.forward(rng.integers(0, model.vocab_size, (BATCH, PROMPT_LEN)), last_only=True)
    out = []
    for _ in range(DECODE_STEPS):
        _, state = tiny.forward(rng.integers(0, model.vocab_size, (BATCH, 1)), state=state)
        out.extend(int(np.count_nonzero(c)) for c in state.expert_counts[-1].values())
    return out


def projected_expert_load(small: dict[str, Any]) -> ExpertLoad | None:
    """The full-scale ExpertLoad that ``run_small``'s measured routing suggests (None for dense
    models): Zipf with the fitted exponent over the full expert count, for the projection's
    expert bytes, grouped-GEMM time and EP traffic."""
    el = small.get("expert_load")
    if not el:
        return None
    fs = el["full_scale"]
    return zipf_load(fs["experts"], fs["k"], fs["zipf_s"])


def fit_zipf_s(max_over_mean: float, experts: int, k: int) -> float:
    """The Zipf exponent whose load has the given max/mean over ``experts`` (bisection; 0 = uniform).

    A transfer rule, not a measurement: the tiny model's skew is carried to full scale as the same
    Zipf exponent over the full expert count.
    """
    if max_over_mean <= 1.0:
        return 0.0
    lo, hi = 0.0, ZIPF_S_MAX
    if zipf_load(experts, k, hi).imbalance() <= max_over_mean:
        return hi
    for _ in range(BISECT_STEPS):
        mid = (lo + hi) / 2
        if zipf_load(experts, k, mid).imbalance() < max_over_mean:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _concat(first: Timeline, second: Timeline) -> Timeline:
    """Prefill then decode on one timeline (decode shifted to start when prefill ends)."""
    shift = first.makespan_s
    events = tuple(_renamed(e, "prefill", 0.0) for e in first.events) + \
        tuple(_renamed(e, "decode", shift) for e in second.events)
    busy = {r: first.busy_s.get(r, 0.0) + second.busy_s.get(r, 0.0) for r in set(first.busy_s) | set(second.busy_s)}
    return Timeline(events=events, makespan_s=shift + second.makespan_s, serial_s=first.serial_s + second.serial_s,
                    busy_s=busy)


def _renamed(e: OpEvent, phase: str, shift: float) -> OpEvent:
    return OpEvent(name=f"{phase}:{e.name}", kind=e.kind, layer=e.layer, resource=e.resource,
                   start_s=e.start_s + shift, end_s=e.end_s + shift)


def _timeline_summary(t: Timeline) -> dict[str, Any]:
    return {"ops": len(t.events), "makespan_s": float(t.makespan_s), "serial_s": float(t.serial_s),
            "overlap_saving": float(1 - t.makespan_s / t.serial_s) if t.serial_s > 0 else 0.0,
            "busy_s": {r: float(v) for r, v in sorted(t.busy_s.items())}}


def _model_summary(m) -> dict[str, Any]:
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "kv_lora_rank", "q_lora_rank",
            "n_routed_experts", "num_experts_per_tok", "n_group", "topk_group", "first_k_dense_replace",
            "vocab_size", "model_type")
    return {k: getattr(m, k) for k in keys}


def format_small(d: dict[str, Any]) -> str:
    """Text table of the small run for ``archsim run --small``."""
    m = d["model"]
    moe = f", {m['n_routed_experts']} experts, top-{m['num_experts_per_tok']}" if m["n_routed_experts"] else ""
    lines = [f"Small-scale execution ({m['model_type']}: hidden {m['hidden_size']}, {m['num_hidden_layers']} layers"
             f"{moe})", "  checks:"]
    for name, c in d["checks"].items():
        lines.append(f"    {name:<30} {'ok ' if c['passed'] else 'FAIL'} max|err| {c['max_abs_error']:.2e}"
                     f" (tol {c['tolerance']:.0e})")
    lines.append(f"  graph counts == measured counts (node by node): {'yes' if d['counts_match'] else 'NO'}")
    for phase, c in d["counts"].items():
        lines.append(f"    {phase:<8} {c['nodes']} nodes, {c['flops']:.4g} FLOPs"
                     + (f"; first mismatches: {c['mismatches']}" if c["mismatches"] else ""))
    el = d.get("expert_load")
    if el:
        fs = el["full_scale"]
        lines += [f"  expert load over {el['tokens']} tokens: max/mean {el['max_over_mean']:.2f}"
                  f" (worst layer {el['max_over_mean_worst_layer']:.2f}; uniform routing would show"
                  f" {el['uniform_baseline_max_over_mean']:.2f})",
                  f"    distinct experts per decode step {el['distinct_experts_per_step']:.2f} of {el['experts']}"
                  f" (batch {el['decode_batch']}, k={el['k']}; uniform expects {el['distinct_uniform_expected']:.2f})",
                  f"    as Zipf s={el['zipf_s_fit']:.3f}: full scale {fs['experts']} experts, k={fs['k']},"
                  f" max/mean {fs['max_over_mean']:.2f}"]
    for phase in ("prefill", "decode"):
        t = d["timeline"][phase]
        lines.append(f"  timeline {phase:<8} {t['ops']} ops, makespan {t['makespan_s'] * 1e6:.2f} us,"
                     f" serial {t['serial_s'] * 1e6:.2f} us (overlap saves {t['overlap_saving']:.0%})")
    if d["timeline"]["trace"]:
        lines.append(f"  trace: {d['timeline']['trace']}")
    return "\n".join(lines) + "\n"
