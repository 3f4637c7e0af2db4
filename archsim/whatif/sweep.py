"""Design-space sweeps of hardware fields: a full workload projection at thousands of hardware points at once.

The deployment (layout, micro-batches, communication) is planned once at the base hardware, exactly as
``archsim.api.estimate`` does (``mapping.parallel.plan_layout``); each phase's device graph is built once
(one representative layer per kind, as ``mapping/phases.py`` prices it) and extracted into arrays. A point
then changes only hardware rates, fractions, latencies, energies, launch overhead, static power, price and
capacity, so all points are priced together by the array path (``cost/work.price_work``) and combined with
the phase formulas of ``mapping/phases.py`` and the report fields of ``archsim/api.py``:

- compute = micro_batches x sum over ops of (layers of the op's kind on the bottleneck stage) x op time / cp
- exposed communication = max(0, comm - compute) with >= 2 overlapped micro-batches, else comm;
  bubble = (pp - 1) x per-micro-batch stage time; phase time = compute + exposed + bubble
- energy = dynamic energy of the full device graph x (device FLOPs / graph FLOPs) + static power x time
- decode.tokens_per_s = batch / decode time, prefill.tokens_per_s = batch x prompt / prefill time,
  energy.joules_per_token = decode energy x devices / batch, energy.tops_per_watt = FLOPs / energy,
  cost.usd_per_million_tokens = price x devices / 3600 / decode tokens/s x 1e6.
Fields that change geometry or topology (SRAM sizes, SM count, links) are not array fields; sweeping them
is refused with a ConfigError naming the supported paths. Communication is fixed at the base point.
"""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from math import ceil
from typing import Callable, Mapping

import numpy as np

from archsim.config.hardware import Hardware, load_hardware
from archsim.config.workload import AUTO, Workload, load_workload
from archsim.cost.phase import graph_ops
from archsim.cost.work import GraphWork, HardwareArrays, extract_work, hardware_arrays, price_work
from archsim.errors import ConfigError
from archsim.graph.precision import scenario_precision
from archsim.mapping.device_memory import stage_layers
from archsim.mapping.parallel import plan_layout
from archsim.mapping.phases import device_phase_graph, layer_of_op, representative_model
from archsim.units import SECONDS_PER_HOUR

TERA = 1e12            # SI prefix
MILLION = 1e6
METRICS = ("decode.tokens_per_s", "decode.tpot_s", "decode.energy_j", "prefill.latency_s", "prefill.tokens_per_s",
           "energy.joules_per_token", "energy.tops_per_watt", "cost.usd_per_million_tokens", "memory.fits")
SUPPORTED_PATHS = ("memory.<level>.{bandwidth,achievable_fraction,latency,energy_per_bit,power_limit,capacity}",
                   "compute.<engine>.{peak.<dtype>,achievable_fraction,energy_per_flop.<dtype>}",
                   "kernel_launch", "power.idle", "price", "thermal.compute_clock_fraction")


@dataclass(frozen=True, kw_only=True)
class PhaseModel:
    """One phase of the deployment in array form."""

    work: GraphWork
    stage_count: np.ndarray      # per op: how often it runs on the bottleneck stage per micro-batch
    all_count: np.ndarray        # per op: how often it runs in the whole device graph
    micro_batches: int
    cp: int
    pp: int
    comm_per_micro_s: float      # communication of one micro-batch (incl. pipeline send)
    devices: int
    graph_copies: float          # the priced device graph's work done per step over all devices: mb * tp * dp
    deployment_flops: float      # FLOPs per step over all devices


def _phase_model(model, hw: Hardware, plan, precision, phase: str, length: int, mtp: bool) -> PhaseModel:
    """Mirror ``mapping.phases.price_phase`` for the plan's parallelism, keeping per-op arrays."""
    par = plan.parallelism
    breakdown = plan.prefill if phase == "prefill" else plan.decode
    seqs = ceil(plan.batch / par.dp)
    mb = min(par.micro_batches, seqs)
    b_mb = ceil(seqs / mb)
    q_len = length if phase == "prefill" else 1 + (model.num_nextn_predict_layers if mtp else 0)
    routed = b_mb * q_len * max(par.ep, par.tp) / par.tp / par.cp if model.is_moe else None
    rep = representative_model(model)
    small, index = rep if rep else (model, None)
    ops = graph_ops(device_phase_graph(small, phase, b_mb, length, precision, par.tp, par.ep, routed, mtp))
    work = extract_work(ops, hw)
    stages = stage_layers(model, par.pp)
    stage_times = breakdown.stage_compute_s
    worst = max(range(par.pp), key=lambda s: stage_times[s])
    stage_count, all_count = [], []
    for op in ops:
        key = layer_of_op(op.name)
        if key in ("embed", "head"):
            first_or_last = 0 if key == "embed" else par.pp - 1
            stage_count.append(1.0 if worst == first_or_last else 0.0)
            all_count.append(1.0)
        elif index is None:
            stage_count.append(1.0 if key in stages[worst] else 0.0)
            all_count.append(1.0)
        else:
            kind = next(k for k, r in index.items() if r == key)
            stage_count.append(float(sum(model.is_moe_layer(layer) == kind for layer in stages[worst])))
            all_count.append(float(sum(model.is_moe_layer(layer) == kind for layer in range(model.num_hidden_layers))))
    all_count = np.asarray(all_count)
    graph_flops = float((work.flops * all_count).sum())
    return PhaseModel(work=work, stage_count=np.asarray(stage_count), all_count=all_count, micro_batches=mb,
                      cp=par.cp, pp=par.pp, comm_per_micro_s=breakdown.communication_s / mb,
                      devices=par.devices, graph_copies=mb * par.devices / (par.pp * par.cp),
                      deployment_flops=graph_flops * mb * par.devices / (par.pp * par.cp))


def _phase_time_energy(pm: PhaseModel, hwa: HardwareArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(step time, energy of the bottleneck device, energy of the whole deployment) per point: a device's
    dynamic energy is its own stage's work (mapping/phases.py); every device draws static power all step."""
    cost = price_work(pm.work, hwa)
    compute_mb = (cost.time_s * pm.stage_count).sum(axis=-1) / pm.cp
    compute = compute_mb * pm.micro_batches
    comm = pm.comm_per_micro_s * pm.micro_batches
    overlapped = pm.micro_batches >= 2  # communication hides behind another micro-batch's compute
    exposed = np.maximum(0.0, comm - compute) if overlapped else np.full_like(compute, comm)
    if overlapped:
        bubble = (pm.pp - 1) * np.maximum(compute_mb, pm.comm_per_micro_s)
    else:
        bubble = (pm.pp - 1) * (compute_mb + pm.comm_per_micro_s)
    time = compute + exposed + bubble
    device_dynamic = (cost.energy_j * pm.stage_count).sum(axis=-1) / pm.cp * pm.micro_batches
    deployment_dynamic = (cost.energy_j * pm.all_count).sum(axis=-1) * pm.graph_copies
    return time, device_dynamic + hwa.idle_w * time, deployment_dynamic + pm.devices * hwa.idle_w * time


class SweepModel:
    """A workload on a base chip, ready to price many variants of the chip's fields at once."""

    def __init__(self, workload: str | os.PathLike | Workload, hardware: str | os.PathLike | Hardware, **overrides):
        self.workload = workload if isinstance(workload, Workload) else load_workload(workload)
        self.hw = hardware if isinstance(hardware, Hardware) else load_hardware(hardware)
        sc = dataclasses.replace(self.workload.scenario, **{k: v for k, v in overrides.items()
                                                            if k in ("batch", "prompt_len", "output_len", "devices")})
        self.scenario = sc
        model = self.workload.model
        precision = scenario_precision(sc)
        layout = {k: (None if getattr(sc.parallelism, k, AUTO) == AUTO else getattr(sc.parallelism, k))
                  for k in ("tp", "ep", "pp", "dp")}
        self.plan = plan_layout(model, self.hw, devices=sc.devices, batch=sc.batch, prompt_len=sc.prompt_len,
                                output_len=sc.output_len, precision=precision, mtp=sc.mtp, **layout)
        self.devices = self.plan.parallelism.devices
        self.phases: dict[str, PhaseModel] = {}
        if self.plan.fits:
            context = sc.prompt_len + sc.output_len
            self.phases["prefill"] = _phase_model(model, self.hw, self.plan, precision, "prefill", sc.prompt_len,
                                                  False)
            self.phases["decode"] = _phase_model(model, self.hw, self.plan, precision, "decode", context, sc.mtp)

    def evaluate(self, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Metrics (``METRICS``) for points given as columns of hardware-path values (equal lengths)."""
        n = len(next(iter(values.values()))) if values else 1
        columns = {path: np.asarray(v, float) for path, v in values.items()}
        capacity = self.hw.main_memory.capacity_bytes
        price = self.hw.price_usd_per_hour
        for path, col in columns.items():
            if path == f"memory.{self.hw.main_memory.name}.capacity":
                capacity = col
            elif path == "price":
                price = col
        fits = np.broadcast_to(self.plan.memory.total_bytes <= np.asarray(capacity), (n,)).astype(float)
        out = {m: np.full(n, np.nan) for m in METRICS}
        out["memory.fits"] = fits
        if not self.phases:
            return out
        sc = self.scenario
        pre = self.phases["prefill"]
        dec = self.phases["decode"]
        t_pre, _, e_pre = _phase_time_energy(pre, apply_paths(self.hw, pre.work, columns, n))
        t_dec, e_dec, e_dec_all = _phase_time_energy(dec, apply_paths(self.hw, dec.work, columns, n))
        out["prefill.latency_s"] = t_pre
        out["prefill.tokens_per_s"] = sc.batch * sc.prompt_len / t_pre
        out["decode.tpot_s"] = t_dec
        out["decode.tokens_per_s"] = sc.batch / t_dec
        out["decode.energy_j"] = e_dec
        out["energy.joules_per_token"] = e_dec_all / sc.batch
        out["energy.tops_per_watt"] = (pre.deployment_flops + dec.deployment_flops) / (e_pre + e_dec_all) / TERA
        out["cost.usd_per_million_tokens"] = price * self.devices / SECONDS_PER_HOUR / out["decode.tokens_per_s"] * MILLION
        return out


def apply_paths(hw: Hardware, work: GraphWork, columns: Mapping[str, np.ndarray], n: int) -> HardwareArrays:
    """The chip's arrays for ``work`` with a leading axis of ``n`` points, swept paths replaced."""
    base = hardware_arrays(hw, work)
    arrays = {f.name: np.repeat(np.asarray(getattr(base, f.name), float)[None, ...], n, axis=0)
              for f in dataclasses.fields(HardwareArrays)}
    levels = list(work.level_names)
    main = hw.main_memory.name
    clock = np.full(n, hw.compute_clock_fraction)
    if "thermal.compute_clock_fraction" in columns:
        clock = columns["thermal.compute_clock_fraction"]
    ratio = clock / hw.compute_clock_fraction
    arrays["compute_fraction"] *= ratio[:, None]
    inner = [i for i, name in enumerate(levels) if name != main]
    arrays["memory_fraction"][:, inner] *= ratio[:, None]
    # the tiled GEMMs' L2 operand feed (kernel.gemm_operand_bandwidth x clock) runs at the core clock too;
    # NaN (no such field: the L2 level's rate, already scaled above) stays NaN
    arrays["operand_bytes_per_s"] *= ratio
    for path, col in columns.items():
        _apply(path, col, hw, work, arrays, levels, main, clock)
    return HardwareArrays(**arrays)


def _apply(path: str, col: np.ndarray, hw: Hardware, work: GraphWork, arrays: dict, levels: list[str], main: str,
           clock: np.ndarray) -> None:
    parts = path.split(".")
    if path in ("thermal.compute_clock_fraction", "price", f"memory.{main}.capacity"):
        return
    if path == "kernel_launch":
        arrays["kernel_launch_s"] = col
        return
    if path == "power.idle":
        arrays["idle_w"] = col + (hw.static_power_w - hw.power.idle_w)
        return
    if parts[0] == "memory" and len(parts) == 3 and parts[1] in hw.memory:
        j = levels.index(parts[1])
        clock_factor = 1.0 if parts[1] == main else clock
        field = {"bandwidth": "bandwidth_bytes_per_s", "latency": "latency_s", "energy_per_bit": "energy_j_per_bit",
                 "power_limit": "power_limit_w"}.get(parts[2])
        if parts[2] == "achievable_fraction":
            arrays["memory_fraction"][:, j] = col * clock_factor
            return
        if field:
            arrays[field][:, j] = col
            return
    if parts[0] == "compute" and len(parts) >= 3 and parts[1] in hw.compute:
        engine = parts[1]
        if parts[2] == "achievable_fraction" and len(parts) == 3:
            for k, (e, _) in enumerate(work.rate_keys):
                if e == engine:
                    arrays["compute_fraction"][:, k] = col * clock
            return
        if parts[2] in ("peak", "energy_per_flop") and len(parts) == 4:
            field = "peak_flop_per_s" if parts[2] == "peak" else "energy_j_per_flop"
            for k, key in enumerate(work.rate_keys):
                if key == (engine, parts[3]):
                    arrays[field][:, k] = col
            return
    raise ConfigError(None, f"--set {path}", f"a sweepable hardware path: {'; '.join(SUPPORTED_PATHS)}", path)


def pareto_front(objectives: Mapping[str, np.ndarray], senses: Mapping[str, str]) -> np.ndarray:
    """Boolean mask of non-dominated points. ``senses[name]`` is "max" or "min"; NaN points are excluded."""
    names = list(objectives)
    cols = np.stack([objectives[k] * (-1.0 if senses[k] == "max" else 1.0) for k in names], axis=1)  # minimise all
    valid = ~np.isnan(cols).any(axis=1)
    front = np.zeros(len(cols), bool)
    idx = np.flatnonzero(valid)
    pts = cols[idx]
    # in lexicographic order a point can be dominated only by an earlier one, and an earlier dominated point's
    # dominator is already kept: one pass that compares each point with the front kept so far is exact
    order = np.lexsort(pts.T[::-1])
    kept = np.empty_like(pts)
    keep: list[int] = []
    for i in order:
        p, k = pts[i], kept[:len(keep)]
        if not (np.all(k <= p, axis=1) & np.any(k < p, axis=1)).any():
            kept[len(keep)] = p
            keep.append(i)
    front[idx[keep]] = True
    return front


PARETO = {"decode.tokens_per_s": "max", "energy.joules_per_token": "min", "cost.usd_per_million_tokens": "min"}


@dataclass(frozen=True, kw_only=True)
class SweepSpec:
    """Everything a worker needs to rebuild the model (picklable)."""

    workload: str
    hardware: str
    overrides: tuple[tuple[str, object], ...] = ()


_MODELS: dict = {}


def _model_for(spec: SweepSpec) -> SweepModel:
    if spec not in _MODELS:
        _MODELS[spec] = SweepModel(spec.workload, spec.hardware, **dict(spec.overrides))
    return _MODELS[spec]


def evaluate_chunk(spec: SweepSpec, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Evaluate one chunk of points (module-level so process pools and Dask can ship it)."""
    return _model_for(spec).evaluate(columns)


def run_sweep(spec: SweepSpec, columns: Mapping[str, np.ndarray], *, chunk: int = 5000, workers: int | None = None,
              cluster: str | object | None = None, progress: Callable[[int, int], None] | None = None
              ) -> dict[str, np.ndarray]:
    """All points' metrics, in point order, plus a ``pareto`` column.

    Chunks run in this process when there is one, on a local process pool otherwise (``workers``, default
    the CPU count), or on a Dask cluster when ``cluster`` is an address or a ``distributed.Client``.
    """
    n = len(next(iter(columns.values()))) if columns else 1
    bounds = [(i, min(n, i + chunk)) for i in range(0, n, chunk)] or [(0, 1)]
    parts = [{k: np.asarray(v)[a:b] for k, v in columns.items()} for a, b in bounds]
    results: list[dict] = []
    if cluster is not None:
        results = _run_dask(spec, parts, cluster, progress)
    elif len(parts) == 1 or (workers or os.cpu_count() or 1) <= 1:
        for i, part in enumerate(parts):
            results.append(evaluate_chunk(spec, part))
            if progress:
                progress(i + 1, len(parts))
    else:
        with ProcessPoolExecutor(max_workers=min(len(parts), workers or os.cpu_count() or 1)) as pool:
            for i, res in enumerate(pool.map(evaluate_chunk, [spec] * len(parts), parts)):
                results.append(res)
                if progress:
                    progress(i + 1, len(parts))
    out = {k: np.concatenate([r[k] for r in results]) for k in results[0]}
    out["pareto"] = pareto_front({k: out[k] for k in PARETO}, PARETO)
    return out


def _run_dask(spec: SweepSpec, parts: list[dict], cluster, progress) -> list[dict]:
    from distributed import Client, as_completed  # optional extra, imported only for --cluster

    client = cluster if isinstance(cluster, Client) else Client(cluster)
    try:
        futures = [client.submit(evaluate_chunk, spec, part, pure=False) for part in parts]
        done = 0
        for _ in as_completed(futures):
            done += 1
            if progress:
                progress(done, len(parts))
        return client.gather(futures)
    finally:
        if client is not cluster:
            client.close()
