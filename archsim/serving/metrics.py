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
    busy_s: float = 0.0
    energy_j: float = 0.0
    flops: float = 0.0
    hbm_bytes: float = 0.0
    iterations: int = 0
    transfers: int = 0
    transfer_bytes: float = 0.0
    gap_hist: np.ndarray = field(default_factory=lambda: np.zeros(len(_GAP_EDGES) - 1, dtype=np.int64))

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
        chunks = getattr(scheduler, "gap_chunks", ())
        if len(scheduler.gaps) > 65536 or len(chunks) > 256:
            self.flush_gaps(scheduler)

    def flush_gaps(self, scheduler) -> None:
        """Move a scheduler's inter-token gaps (single values and weighted vectors) into the histogram."""
        if scheduler.gaps:
            self.gap_hist += np.histogram(np.asarray(scheduler.gaps), bins=_GAP_EDGES)[0]
            scheduler.gaps.clear()
        chunks = getattr(scheduler, "gap_chunks", None)
        if chunks:
            values = np.concatenate([v for v, _ in chunks])
            weights = np.concatenate([w for _, w in chunks])
            self.gap_hist += np.histogram(values, bins=_GAP_EDGES, weights=weights)[0].astype(np.int64)
            chunks.clear()


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


def summary(rec: Recorder, *, replicas: list[ReplicaSpec], schedulers: list, window_s: float, slo: Slo,
            end_s: float) -> dict:
    """The report dict. ``window_s`` is the arrival window [0, window_s) used for rates and Little's law;
    throughput and cost use the whole run [0, end_s] (arrivals plus drain)."""
    t = request_table(rec)
    ttft = t["first_token_s"] - t["arrival_s"]
    e2e = t["finish_s"] - t["arrival_s"]
    multi = t["output_tokens"] > 1  # TPOT is defined for requests with a token after the first
    per_request_tpot = (t["finish_s"] - t["first_token_s"]) / np.maximum(t["output_tokens"] - 1, 1)
    tpot = per_request_tpot[multi]
    for sched in schedulers:
        rec.flush_gaps(sched)
    devices = sum(r.devices for r in replicas)
    end_s = max(end_s, 1e-300)
    out_tokens = float(t["output_tokens"].sum())
    in_tokens = float(t["prompt_tokens"].sum())
    good = (ttft <= slo.ttft_s) & (~multi | (per_request_tpot <= slo.tpot_s))
    usd = sum(r.price_usd_per_hour for r in replicas) * end_s / SECONDS_PER_HOUR
    idle_j = sum(r.idle_w for r in replicas) * end_s - _idle_overlap(rec, replicas, end_s)
    energy = rec.energy_j + max(0.0, idle_j)
    tpot_stats = _stats(tpot)
    total = len(rec.requests) + len(rec.rejected)
    return {
        "requests": {"completed": len(rec.requests), "rejected": len(rec.rejected), "total": total,
                     "preemptions_recompute": sum(s.preempted_recompute for s in schedulers),
                     "preemptions_swap": sum(s.preempted_swap for s in schedulers),
                     "recomputed_tokens": sum(s.recomputed_tokens for s in schedulers),
                     "swap_bytes": sum(s.swap_bytes_total for s in schedulers),
                     "kv_transfers": rec.transfers, "kv_transfer_bytes": rec.transfer_bytes},
        "ttft_s": _stats(ttft), "tpot_s": tpot_stats, "e2e_s": _stats(e2e),
        "ttft_breakdown_s": ttft_breakdown(rec.requests),
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
        "energy": {"total_j": energy, "iterations_j": rec.energy_j,
                   "j_per_output_token": energy / out_tokens if out_tokens else float("nan")},
        "cost": {"usd": usd, "usd_per_million_output_tokens": usd / out_tokens * TOKENS_PER_MILLION
                 if out_tokens else float("nan"),
                 "usd_per_million_total_tokens": usd / (out_tokens + in_tokens) * TOKENS_PER_MILLION
                 if out_tokens else float("nan")},
        "little": little(t, window_s),
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


def little(t: dict[str, np.ndarray], window_s: float) -> dict[str, float]:
    """Little's law over the arrival window [0, W): L = time-averaged number in system on [0, W) (from each
    request's overlap with the window), lambda = arrivals in the window / W, T = mean time in system of those
    arrivals. L equals lambda x T only in steady state, so their agreement is a real check."""
    if window_s <= 0 or t["arrival_s"].size == 0:
        return {"mean_in_system": float("nan"), "rate_times_latency": float("nan"), "window_s": window_s}
    inside = t["arrival_s"] < window_s
    overlap = np.clip(np.minimum(t["finish_s"], window_s) - t["arrival_s"], 0.0, None)
    mean_in_system = float(overlap.sum()) / window_s
    rate = float(inside.sum()) / window_s
    latency = float((t["finish_s"][inside] - t["arrival_s"][inside]).mean()) if inside.any() else math.nan
    return {"mean_in_system": mean_in_system, "rate_times_latency": rate * latency,
            "arrival_rate_per_s": rate, "mean_latency_s": latency, "window_s": window_s}
