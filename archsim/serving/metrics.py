"""Serving metrics: per-request latencies, per-iteration time series, and their summary (the `serve` JSON)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from archsim.serving.config import ReplicaSpec, Slo
from archsim.serving.iteration import IterationCost
from archsim.serving.sequence import TTFT_PARTS, Plan, Seq
from archsim.units import SECONDS_PER_HOUR

TOKENS_PER_MILLION = 1e6
MS_PER_S = 1e3  # the benchmark tools report latencies in ms
# Steady-state check (a choice of this tool, not a cited figure): the measured requests are in steady state when
# Little's law holds over their send window and the two halves' mean TPOT agree, each within this fraction, and
# there are at least MIN_STEADY_REQUESTS of them (fewer give halves too noisy to compare).
STEADY_TOLERANCE = 0.10
MIN_STEADY_REQUESTS = 20
# inter-token gaps are kept as a log-spaced histogram (fixed memory for any run length):
# 1 ns .. 1e4 s, 200 bins per decade, so a percentile is exact to within a factor 10**(1/200) (1.2 %)
_GAP_EDGES = np.logspace(-9, 4, 13 * 200 + 1)


@dataclass(kw_only=True)
class Recorder:
    """Collects what the simulator observes; ``summary`` turns it into the report dict."""

    requests: list[Seq] = field(default_factory=list)
    rejected: list[Seq] = field(default_factory=list)
    series_t: list[float] = field(default_factory=list)
    series_batch: list[int] = field(default_factory=list)
    series_queue: list[int] = field(default_factory=list)
    series_kv: list[float] = field(default_factory=list)
    series_replica: list[int] = field(default_factory=list)
    # each iteration's duration and tokens (series_t holds its end), for the serve trace (report/trace.py)
    series_iteration_s: list[float] = field(default_factory=list)
    series_prefill_tokens: list[int] = field(default_factory=list)
    series_decode_tokens: list[int] = field(default_factory=list)
    # each iteration's board power over its replica's devices (its energy over its time; docs/energy.md)
    series_power_w: list[float] = field(default_factory=list)
    busy_s: float = 0.0
    energy_j: float = 0.0
    flops: float = 0.0
    hbm_bytes: float = 0.0
    iterations: int = 0
    transfers: int = 0
    transfer_bytes: float = 0.0
    gap_hist: np.ndarray = field(default_factory=lambda: np.zeros(len(_GAP_EDGES) - 1, dtype=np.int64))
    # exact running sums of the gaps (the histogram only bins them): count, sum and sum of squares, for the mean
    # and standard deviation of the inter-token latency
    gap_count: int = 0
    gap_sum_s: float = 0.0
    gap_sq_sum_s2: float = 0.0
    measure_from_s: float = 0.0  # when the first measured (post-warm-up) request was sent

    def iteration(self, replica: int, now: float, plan: Plan, cost: IterationCost, scheduler) -> None:
        self.iterations += 1
        self.busy_s += cost.time_s
        self.energy_j += cost.energy_j
        self.flops += cost.flops
        self.hbm_bytes += cost.hbm_bytes
        self.series_t.append(now)
        self.series_batch.append(plan.size)
        self.series_queue.append(scheduler.queued)
        self.series_kv.append(scheduler.kv.occupancy)
        self.series_replica.append(replica)
        self.series_iteration_s.append(cost.time_s)
        self.series_prefill_tokens.append(plan.work.prefill_tokens)
        self.series_decode_tokens.append(plan.work.decode_tokens)
        self.series_power_w.append(cost.energy_j / cost.time_s if cost.time_s > 0 else 0.0)
        chunks = getattr(scheduler, "gap_chunks", ())
        if len(scheduler.gaps) > 65536 or len(chunks) > 256:
            self.flush_gaps(scheduler)

    def flush_gaps(self, scheduler) -> None:
        """Move a scheduler's inter-token gaps (single values and weighted vectors) into the histogram."""
        if scheduler.gaps:
            values = np.asarray(scheduler.gaps)
            self.gap_hist += np.histogram(values, bins=_GAP_EDGES)[0]
            self._sum_gaps(values, None)
            scheduler.gaps.clear()
        chunks = getattr(scheduler, "gap_chunks", None)
        if chunks:
            values = np.concatenate([v for v, _ in chunks])
            weights = np.concatenate([w for _, w in chunks])
            self.gap_hist += np.histogram(values, bins=_GAP_EDGES, weights=weights)[0].astype(np.int64)
            self._sum_gaps(values, weights)
            chunks.clear()

    def _sum_gaps(self, values: np.ndarray, weights: np.ndarray | None) -> None:
        """Add gaps (each ``weights`` times, or once) to the exact count, sum and sum of squares."""
        if weights is None:
            self.gap_count += int(values.size)
            self.gap_sum_s += float(values.sum())
            self.gap_sq_sum_s2 += float(np.dot(values, values))
        else:
            self.gap_count += int(np.rint(weights.sum()))
            self.gap_sum_s += float(np.dot(values, weights))
            self.gap_sq_sum_s2 += float(np.dot(values * values, weights))

    def start_measuring(self, schedulers, now: float) -> None:
        """The first measured request is being sent at ``now``: the gaps so far belong to the warm-up and are
        dropped (gaps emitted later by warm-up requests still decoding are kept: gaps carry no request id)."""
        for sched in schedulers:
            self.flush_gaps(sched)
        self.gap_hist[:] = 0
        self.gap_count, self.gap_sum_s, self.gap_sq_sum_s2 = 0, 0.0, 0.0
        self.measure_from_s = now


def _stats(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {k: float("nan") for k in ("mean", "p50", "p90", "p99", "std")}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "std": float(values.std())}


def _hist_percentiles(hist: np.ndarray) -> dict[str, float]:
    total = int(hist.sum())
    if total == 0:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "count": 0}
    cdf = np.cumsum(hist)
    centres = np.sqrt(_GAP_EDGES[:-1] * _GAP_EDGES[1:])
    out = {f"p{q}": float(centres[np.searchsorted(cdf, q / 100 * total)]) for q in (50, 90, 99)}
    out["count"] = total
    return out


def request_table(rec: Recorder) -> dict[str, np.ndarray]:
    """Per-request columns (completed requests), in request-id order."""
    done = sorted(rec.requests, key=lambda s: s.req.id)
    col = lambda f, dt=float: np.fromiter((f(s) for s in done), dtype=dt, count=len(done))  # noqa: E731
    return {
        "id": col(lambda s: s.req.id, np.int64),
        "arrival_s": col(lambda s: s.req.arrival_s),
        "first_token_s": col(lambda s: s.first_token_s),
        "finish_s": col(lambda s: s.finish_s),
        "prompt_tokens": col(lambda s: s.req.prompt_tokens, np.int64),
        "output_tokens": col(lambda s: s.req.output_tokens, np.int64),
        "cached_tokens": col(lambda s: s.req.cached_tokens, np.int64),
        "preemptions": col(lambda s: s.preemptions, np.int64),
        "replica": col(lambda s: s.replica, np.int64),
    }


def summary(rec: Recorder, *, replicas: list[ReplicaSpec], schedulers: list, window_s: float | None, slo: Slo,
            end_s: float, warmup_requests: int = 0, max_concurrency: int | None = None, unsent: int = 0) -> dict:
    """The report dict. Latency statistics (ttft_s, tpot_s, e2e_s, goodput, ``benchmark``) cover the measured
    requests: ids from ``warmup_requests`` on (ids are the send order). ``window_s`` ends the arrival window used
    for Little's law, which starts when the first measured request was sent (0 without warm-up); None: it ends at
    the last measured send. Throughput, utilisation, energy and cost use the whole run [0, end_s] (arrivals plus
    drain). ``unsent``: requests a benchmark client never sent (its slots stayed held)."""
    full = request_table(rec)
    t = _rows(full, full["id"] >= warmup_requests)
    ttft = t["first_token_s"] - t["arrival_s"]
    e2e = t["finish_s"] - t["arrival_s"]
    multi = t["output_tokens"] > 1  # TPOT is defined for requests with a token after the first
    per_request_tpot = (t["finish_s"] - t["first_token_s"]) / np.maximum(t["output_tokens"] - 1, 1)
    tpot = per_request_tpot[multi]
    for sched in schedulers:
        rec.flush_gaps(sched)
    devices = sum(r.devices for r in replicas)
    end_s = max(end_s, 1e-300)
    out_tokens = float(full["output_tokens"].sum())
    in_tokens = float(full["prompt_tokens"].sum())
    good = (ttft <= slo.ttft_s) & (~multi | (per_request_tpot <= slo.tpot_s))
    usd = sum(r.price_usd_per_hour for r in replicas) * end_s / SECONDS_PER_HOUR
    idle_j = sum(r.idle_w for r in replicas) * end_s - _idle_overlap(rec, replicas, end_s)
    energy = rec.energy_j + max(0.0, idle_j)
    tpot_stats = _stats(tpot)
    law = little(full, _window_end(t, window_s, rec), start_s=rec.measure_from_s)
    total = len(rec.requests) + len(rec.rejected)
    return {
        "requests": {"completed": len(rec.requests), "rejected": len(rec.rejected), "total": total,
                     "preemptions_recompute": sum(s.preempted_recompute for s in schedulers),
                     "preemptions_swap": sum(s.preempted_swap for s in schedulers),
                     "recomputed_tokens": sum(s.recomputed_tokens for s in schedulers),
                     "swap_bytes": sum(s.swap_bytes_total for s in schedulers),
                     "kv_transfers": rec.transfers, "kv_transfer_bytes": rec.transfer_bytes},
        "ttft_s": _stats(ttft), "tpot_s": tpot_stats, "e2e_s": _stats(e2e),
        "ttft_breakdown_s": ttft_breakdown([s for s in rec.requests if s.req.id >= warmup_requests]),
        "itl_s": _hist_percentiles(rec.gap_hist),
        "latency_consistency": tpot_stats["p99"] / tpot_stats["p50"] if tpot_stats["p50"] > 0 else float("nan"),
        "throughput": {
            "output_tokens_per_s": out_tokens / end_s, "input_tokens_per_s": in_tokens / end_s,
            "output_tokens_per_s_per_device": out_tokens / end_s / devices,
            "input_tokens_per_s_per_device": in_tokens / end_s / devices,
            "output_tokens_per_s_per_replica": out_tokens / end_s / len(replicas),
            "input_tokens_per_s_per_replica": in_tokens / end_s / len(replicas),
            "requests_per_s": len(rec.requests) / end_s},
        "goodput": {"ttft_slo_s": slo.ttft_s, "tpot_slo_s": slo.tpot_s, "requests": int(good.sum()),
                    "requests_per_s": float(good.sum()) / end_s,
                    "output_tokens_per_s": float(t["output_tokens"][good].sum()) / end_s},
        "batch": _series_stats(rec.series_batch), "queue": _series_stats(rec.series_queue),
        "kv_occupancy": {**_series_stats(rec.series_kv),
                         "peak": max((s.kv.peak_used / s.kv.num_blocks for s in schedulers), default=0.0)},
        "utilisation": {"mfu": rec.flops / (sum(r.peak_flop_per_s for r in replicas) * end_s),
                        "bandwidth": rec.hbm_bytes / (sum(r.peak_bytes_per_s for r in replicas) * end_s),
                        "busy_fraction": rec.busy_s / (len(replicas) * end_s)},
        # GPU board energy of the whole run (iterations plus idle power between them), per request and as the
        # average board power per device over the run (docs/energy.md)
        "energy": {"total_j": energy, "iterations_j": rec.energy_j,
                   "j_per_output_token": energy / out_tokens if out_tokens else float("nan"),
                   "j_per_request": energy / len(rec.requests) if rec.requests else float("nan"),
                   "avg_power_w_per_device": energy / end_s / devices},
        "cost": {"usd": usd, "usd_per_million_output_tokens": usd / out_tokens * TOKENS_PER_MILLION
                 if out_tokens else float("nan"),
                 "usd_per_million_total_tokens": usd / (out_tokens + in_tokens) * TOKENS_PER_MILLION
                 if out_tokens else float("nan")},
        "little": law,
        "measurement": measurement(t, law, warmup_requests=warmup_requests, start_s=rec.measure_from_s,
                                   window_given=window_s is not None),
        "benchmark": benchmark(t, rec, start_s=rec.measure_from_s if warmup_requests else 0.0, slo=slo,
                               failed=sum(s.req.id >= warmup_requests for s in rec.rejected) + unsent,
                               max_concurrency=max_concurrency),
        "devices": devices, "replicas": len(replicas), "iterations": rec.iterations, "duration_s": end_s,
    }


def ttft_breakdown(done: list[Seq]) -> dict[str, float]:
    """Mean over completed requests of each part of the TTFT (Seq.ttft_parts: overhead, queue, prefill, link_wait,
    transfer, slot_wait); the means add up to the mean TTFT."""
    if not done:
        return {name: float("nan") for name in TTFT_PARTS}
    means = np.array([s.ttft_parts() for s in done]).mean(axis=0)
    return {name: float(v) for name, v in zip(TTFT_PARTS, means)}


def _idle_overlap(rec: Recorder, replicas: list[ReplicaSpec], end_s: float) -> float:
    """Idle power is drawn only while a replica is not iterating (its busy time is in the iteration energy)."""
    if not replicas:
        return 0.0
    per_replica_idle_w = sum(r.idle_w for r in replicas) / len(replicas)
    return per_replica_idle_w * rec.busy_s


def _series_stats(values: list) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "max": 0.0}
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "max": float(arr.max())}


def little(t: dict[str, np.ndarray], window_s: float, start_s: float = 0.0) -> dict[str, float]:
    """Little's law over the arrival window [S, W): L = time-averaged number in system on [S, W) (from each
    request's overlap with the window), lambda = arrivals in the window / (W - S), T = mean time in system of those
    arrivals. L equals lambda x T only in steady state, so their agreement is a real check."""
    span = window_s - start_s
    if not span > 0 or t["arrival_s"].size == 0:
        return {"mean_in_system": float("nan"), "rate_times_latency": float("nan"), "window_s": window_s,
                "window_start_s": start_s}
    inside = (t["arrival_s"] >= start_s) & (t["arrival_s"] < window_s)
    overlap = np.clip(np.minimum(t["finish_s"], window_s) - np.maximum(t["arrival_s"], start_s), 0.0, None)
    mean_in_system = float(overlap.sum()) / span
    rate = float(inside.sum()) / span
    latency = float((t["finish_s"][inside] - t["arrival_s"][inside]).mean()) if inside.any() else math.nan
    return {"mean_in_system": mean_in_system, "rate_times_latency": rate * latency,
            "arrival_rate_per_s": rate, "mean_latency_s": latency, "window_s": window_s, "window_start_s": start_s}


def _rows(table: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """The rows of a request table where ``keep`` is true."""
    return {k: v[keep] for k, v in table.items()}


def _window_end(t: dict[str, np.ndarray], window_s: float | None, rec: Recorder) -> float:
    """The end of Little's window: ``window_s`` when given, else the last measured send (arrival)."""
    if window_s is not None:
        return window_s
    sent = [t["arrival_s"]] + [np.array([s.req.arrival_s for s in rec.rejected])]
    times = np.concatenate(sent)
    return float(times.max()) if times.size else 0.0


def _ms_stats(name: str, values_s: np.ndarray) -> dict[str, float]:
    """mean, median, std, p90 and p99 of ``values_s`` in ms under vLLM's result keys (``mean_ttft_ms``,
    ``median_ttft_ms``, ``std_ttft_ms``, ``p99_ttft_ms``: vllm-project/vllm, vllm/benchmarks/serve.py,
    ``process_one_metric``; np.percentile's linear interpolation, np.std's population deviation, as there)."""
    if values_s.size == 0:
        return {f"{k}_{name}_ms": float("nan") for k in ("mean", "median", "std", "p90", "p99")}
    ms = values_s * MS_PER_S
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {f"mean_{name}_ms": float(ms.mean()), f"median_{name}_ms": float(p50), f"std_{name}_ms": float(ms.std()),
            f"p90_{name}_ms": float(p90), f"p99_{name}_ms": float(p99)}


def _itl_ms(rec: Recorder) -> dict[str, float]:
    """Inter-token latency in ms: mean and std exact (running sums), median/p90/p99 from the log histogram
    (within 1.2 %). Gaps are per streamed chunk, as the benchmark clients record them (serving/sequence.emit): a
    speculative step's k tokens arrive together and count as one gap, the whole step."""
    n = rec.gap_count
    if n == 0:
        return {f"{k}_itl_ms": float("nan") for k in ("mean", "median", "std", "p90", "p99")}
    mean = rec.gap_sum_s / n
    var = max(0.0, rec.gap_sq_sum_s2 / n - mean * mean)
    q = _hist_percentiles(rec.gap_hist)
    return {"mean_itl_ms": mean * MS_PER_S, "median_itl_ms": q["p50"] * MS_PER_S,
            "std_itl_ms": math.sqrt(var) * MS_PER_S, "p90_itl_ms": q["p90"] * MS_PER_S,
            "p99_itl_ms": q["p99"] * MS_PER_S}


def peak_concurrency(arrival_s: np.ndarray, finish_s: np.ndarray) -> int:
    """Most requests in flight at once over half-open intervals [arrival, finish): a departure at the same
    instant as an arrival goes first, as vLLM's ``max_concurrent_requests`` sweep does."""
    if arrival_s.size == 0:
        return 0
    times = np.concatenate([arrival_s, finish_s])
    deltas = np.concatenate([np.ones(arrival_s.size, dtype=np.int64), -np.ones(finish_s.size, dtype=np.int64)])
    order = np.lexsort((deltas, times))  # by time, then -1 before +1
    return int(np.cumsum(deltas[order]).max())


def benchmark(t: dict[str, np.ndarray], rec: Recorder, *, start_s: float, slo: Slo, failed: int,
              max_concurrency: int | None) -> dict:
    """The measured requests ``t`` as ``vllm bench serve --save-result`` writes them (vllm-project/vllm,
    vllm/benchmarks/serve.py, ``benchmark``'s result dict): the same key names, latencies in ms, rates over the
    benchmark's duration, here from ``start_s`` (0, or the first measured send after a warm-up) to the last
    measured completion. ``failed`` counts rejected (and never-sent) requests. ``request_goodput`` is None unless
    an SLO is set, as there; ``concurrency`` (sum of latencies / duration) is sglang.bench_serving's
    (sgl-project/sglang, python/sglang/bench_serving.py, ``calculate_metrics``)."""
    ttft = t["first_token_s"] - t["arrival_s"]
    e2el = t["finish_s"] - t["arrival_s"]
    multi = t["output_tokens"] > 1
    tpot_all = np.where(multi, (t["finish_s"] - t["first_token_s"]) / np.maximum(t["output_tokens"] - 1, 1), 0.0)
    end_s = float(t["finish_s"].max()) if t["finish_s"].size else start_s
    duration = end_s - start_s
    rate = (lambda x: x / duration) if duration > 0 else (lambda x: float("nan"))  # noqa: E731
    total_in, total_out = int(t["prompt_tokens"].sum()), int(t["output_tokens"].sum())
    # vLLM's goodput: a request is good when each SLO set holds; TPOT of a one-token output counts as 0
    good = int(((ttft <= slo.ttft_s) & (tpot_all <= slo.tpot_s)).sum())
    return {"duration": duration, "completed": int(t["id"].size), "failed": int(failed),
            "max_concurrency": max_concurrency,
            "total_input_tokens": total_in, "total_output_tokens": total_out,
            "request_throughput": rate(t["id"].size),
            "request_goodput": rate(good) if slo_set(slo) else None,
            "output_throughput": rate(total_out), "total_token_throughput": rate(total_in + total_out),
            **_ms_stats("ttft", ttft), **_ms_stats("tpot", tpot_all[multi]), **_itl_ms(rec),
            **_ms_stats("e2el", e2el),
            "max_concurrent_requests": peak_concurrency(t["arrival_s"], t["finish_s"]),
            "concurrency": rate(float(e2el.sum()))}


def slo_set(slo: Slo) -> bool:
    """Whether a TTFT or TPOT target is set (the defaults are infinite: no SLO)."""
    return math.isfinite(slo.ttft_s) or math.isfinite(slo.tpot_s)


def measurement(t: dict[str, np.ndarray], law: dict, *, warmup_requests: int, start_s: float,
                window_given: bool) -> dict:
    """What the statistics cover and whether the measured requests ran in steady state: Little's law over their
    send window within STEADY_TOLERANCE, and the mean TPOT of the first and second half (by send order) within
    it too; ``steady_state_reason`` says which check decided."""
    out = {"warmup_requests": warmup_requests, "measured_requests": int(t["id"].size), "start_s": start_s,
           "window": "the arrival window [start, duration)" if window_given else "from the first to the last "
           "measured send"}
    steady, reason, checks = steady_state(t, law)
    return {**out, "steady_state": steady, "steady_state_reason": reason, **checks}


def _relative_gap(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b)) if max(abs(a), abs(b)) > 0 else 0.0


def steady_state(t: dict[str, np.ndarray], law: dict) -> tuple[bool, str, dict]:
    """(steady, reason, the numbers compared). A queue that keeps growing (overload) or draining, or a latency that
    drifts between the halves (a ramp, a lock-step start) fails; too few requests or no window cannot tell."""
    n = int(t["id"].size)
    if n < MIN_STEADY_REQUESTS:
        return False, f"too few measured requests to tell ({n} < {MIN_STEADY_REQUESTS})", {}
    L, lw = law["mean_in_system"], law["rate_times_latency"]
    if not (math.isfinite(L) and math.isfinite(lw)):
        return False, "no arrival window (all requests sent at one instant): Little's law cannot be checked", {}
    order = np.argsort(t["arrival_s"], kind="stable")
    halves = np.array_split(order, 2)
    multi = t["output_tokens"] > 1
    tpot = (t["finish_s"] - t["first_token_s"]) / np.maximum(t["output_tokens"] - 1, 1)
    means = [float(tpot[h][multi[h]].mean()) if multi[h].any() else float("nan") for h in halves]
    checks = {"little_gap": _relative_gap(L, lw), "tpot_first_half_s": means[0], "tpot_second_half_s": means[1]}
    if checks["little_gap"] > STEADY_TOLERANCE:
        return False, (f"Little's law off by {checks['little_gap']:.0%} (L = {L:.3g}, lambda x W = {lw:.3g}): the "
                       "number in system is still growing or draining"), checks
    if all(math.isfinite(m) for m in means):
        drift = _relative_gap(*means)
        checks["tpot_gap"] = drift
        if drift > STEADY_TOLERANCE:
            return False, (f"mean TPOT drifts {drift:.0%} between the halves ({means[0] * MS_PER_S:.3g} -> "
                           f"{means[1] * MS_PER_S:.3g} ms)"), checks
    return True, (f"Little's law within {checks['little_gap']:.1%} and the halves' mean TPOT within "
                  f"{checks.get('tpot_gap', 0.0):.1%} (tolerance {STEADY_TOLERANCE:.0%})"), checks
