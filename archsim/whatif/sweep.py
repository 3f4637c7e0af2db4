"""Design-space sweeps of hardware fields: a full workload projection at thousands of hardware points at once.

The deployment (pools, layouts, micro-batches, forwards, expert routing, communication) is resolved and priced once
at the base hardware, exactly as ``archsim.api.estimate`` does (``mapping.resolve.resolve_deployment``); each
priced phase carries its step as data (``mapping.phases.PhaseModel``: its device graphs with their per-op weights).
A point then changes only hardware rates, fractions, latencies, energies, launch overhead, static power, price and
capacity, so every point re-prices those graphs through the array path (``cost/work.price_work``) and the same
``PhaseModel.evaluate`` assembles the step that ``price_phase`` assembled at the base point: the base point equals
``estimate()`` by construction. Report fields follow ``report/metrics.py``:
decode.tokens_per_s = batch / TPOT of one decode instance, prefill.tokens_per_s = batch x prompt / prefill time,
energy.joules_per_token = (every device's dynamic energy + static power x devices x TPOT) / batch,
energy.tops_per_watt = FLOPs / energy over both phases, cost.usd_per_million_tokens = price x decode-instance
devices / 3600 / decode tokens/s x 1e6.
Fields that change geometry or topology (SRAM sizes, SM count, links) are not array fields (``array_path``): as
columns they are refused with a ConfigError naming the supported paths; a sweep gives them, like model and scenario
fields, as model points (``SweepSpec.settings``), each rebuilding the inputs and re-planning the deployment. Each
point places each op on its fastest engine (``cost/work.price_work``), so a swept PIM or engine rate can move ops
between engines from point to point. Communication, micro-batches and the bottleneck stage are fixed at the base
point of each model point.
"""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from archsim.config.hardware import Hardware, load_hardware
from archsim.config.workload import Workload, load_workload
from archsim.cost.work import GraphWork, HardwareArrays, hardware_arrays
from archsim.errors import ConfigError
from archsim.mapping.phases import GraphTerm, PhaseBreakdown
from archsim.mapping.resolve import resolve_deployment
from archsim.units import SECONDS_PER_HOUR

TERA = 1e12            # SI prefix
MILLION = 1e6
METRICS = ("decode.tokens_per_s", "decode.tpot_s", "decode.energy_j", "prefill.latency_s", "prefill.tokens_per_s",
           "energy.joules_per_token", "energy.tops_per_watt", "cost.usd_per_million_tokens", "memory.fits",
           # each phase's board power per device, averaged over the instance (report/metrics.py average_power_w)
           "energy.prefill_power_w_per_device", "energy.decode_power_w_per_device")
SUPPORTED_PATHS = ("memory.<level>.{bandwidth,achievable_fraction,latency,energy_per_bit,power_limit,capacity}",
                   "compute.<engine>.{peak.<dtype>,achievable_fraction,energy_per_flop.<dtype>}",
                   "pim.{peak.<dtype>,achievable_fraction,energy_per_flop.<dtype>,internal_bandwidth,"
                   "internal_energy_per_bit}",
                   "kernel_launch", "kernel_launch_graph", "power.idle", "price", "thermal.compute_clock_fraction")


class SweepModel:
    """A workload on a base chip, ready to price many variants of the chip's fields at once. ``overrides`` are
    ``estimate()``'s (batch, lengths, devices, layout, expert_load, deployment, ...)."""

    def __init__(self, workload: str | os.PathLike | Workload, hardware: str | os.PathLike | Hardware, **overrides):
        self.workload = workload if isinstance(workload, Workload) else load_workload(workload)
        self.hw = hardware if isinstance(hardware, Hardware) else load_hardware(hardware)
        self.resolved = resolve_deployment(self.workload, self.hw, **overrides)
        dep, plan = self.resolved.deployment, self.resolved.plan
        self.deployment, self.plan = dep, plan
        self.pools = {phase: plan.pool(phase) for phase in ("prefill", "decode")}
        self.devices = (self.pools["decode"] or plan.pools[0]).parallelism.devices
        self.phases: dict[str, PhaseBreakdown] = {}
        if plan.fits:
            for phase, pool in self.pools.items():
                b = getattr(pool, phase) if pool else None
                if b is not None:
                    self.phases[phase] = b

    def _arrays_for(self, columns: Mapping[str, np.ndarray], n: int) -> Callable[[GraphTerm], HardwareArrays]:
        def arrays(term: GraphTerm) -> HardwareArrays:
            out = apply_paths(self.hw, term.cost.work, columns, n)
            if term.cuda_graph:
                launch = columns.get("kernel_launch_graph", np.full(n, self.hw.graph_launch_s))
                out = dataclasses.replace(out, kernel_launch_s=np.asarray(launch, float))
            return out
        return arrays

    def evaluate(self, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Metrics (``METRICS``) for points given as columns of hardware-path values (equal lengths)."""
        n = len(next(iter(values.values()))) if values else 1
        columns = {path: np.asarray(v, float) for path, v in values.items()}
        capacity = np.asarray(columns.get(f"memory.{self.hw.main_memory.name}.capacity",
                                          self.hw.main_memory.capacity_bytes))
        price = np.asarray(columns.get("price", self.hw.price_usd_per_hour))
        worst = max(p.memory.total_bytes for p in self.plan.pools)
        out = {m: np.full(n, np.nan) for m in METRICS}
        out["memory.fits"] = np.broadcast_to(worst <= capacity, (n,)).astype(float)
        if not self.phases:
            return out
        idle = apply_paths(self.hw, next(iter(self.phases.values())).graph_cost.work, columns, n).idle_w
        arrays = self._arrays_for(columns, n)
        energy_all = flops = 0.0
        dep = self.deployment
        for phase, b in self.phases.items():
            pool = self.pools[phase]
            t = b.model.evaluate(arrays)
            time = t.time_s
            all_j = t.deployment_dynamic_energy_j + pool.parallelism.devices * idle * time
            energy_all, flops = energy_all + all_j, flops + t.deployment_flops
            out[f"energy.{phase}_power_w_per_device"] = all_j / (pool.parallelism.devices * time)
            if phase == "prefill":
                out["prefill.latency_s"] = time
                out["prefill.tokens_per_s"] = pool.batch * dep.prompt_len / time
            else:
                out["decode.tpot_s"] = time
                out["decode.tokens_per_s"] = pool.batch / time
                out["decode.energy_j"] = t.device_dynamic_energy_j + idle * time
                out["energy.joules_per_token"] = all_j / pool.batch
                out["cost.usd_per_million_tokens"] = (price * self.devices / SECONDS_PER_HOUR
                                                      / out["decode.tokens_per_s"] * MILLION)
        out["energy.tops_per_watt"] = flops / energy_all / TERA
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
    arrays["pim_compute_fraction"] *= ratio  # the PIM units' MACs run at the thermal clock too (cost/rates.py)
    inner = [i for i, name in enumerate(levels) if name != main]
    arrays["memory_fraction"][:, inner] *= ratio[:, None]
    # the tiled GEMMs' L2 operand feed (kernel.gemm_operand_bandwidth x clock) runs at the core clock too;
    # NaN (no such field: the L2 level's rate, already scaled above) stays NaN
    arrays["operand_bytes_per_s"] *= ratio
    for path, col in columns.items():
        _apply(path, col, hw, work, arrays, levels, main, clock)
    return HardwareArrays(**arrays)


_MEMORY_ARRAY_FIELDS = ("bandwidth", "achievable_fraction", "latency", "energy_per_bit", "power_limit")
_PIM_ARRAY_FIELDS = (["achievable_fraction"], ["internal_bandwidth"], ["internal_energy_per_bit"])


def array_path(path: str, hw: Hardware) -> bool:
    """Whether ``apply_paths`` prices ``path`` as an array column on ``hw`` (``SUPPORTED_PATHS`` for the chip's own
    levels, engines and PIM units). Any other hardware field changes geometry or topology: a sweep rebuilds the chip
    and re-plans the deployment at each of its values (``SweepSpec.settings``), as for a model field."""
    parts = path.split(".")
    if path in ("thermal.compute_clock_fraction", "price", f"memory.{hw.main_memory.name}.capacity",
                "kernel_launch_graph", "kernel_launch", "power.idle"):
        return True
    if parts[0] == "memory" and len(parts) == 3 and parts[1] in hw.memory:
        return parts[2] in _MEMORY_ARRAY_FIELDS
    if parts[0] == "compute" and len(parts) >= 3 and parts[1] in hw.compute:
        return parts[2:] == ["achievable_fraction"] or (len(parts) == 4 and parts[2] in ("peak", "energy_per_flop"))
    if parts[0] == "pim" and hw.pim is not None:
        return parts[1:] in _PIM_ARRAY_FIELDS or (len(parts) == 3 and parts[1] in ("peak", "energy_per_flop"))
    return False


def _apply(path: str, col: np.ndarray, hw: Hardware, work: GraphWork, arrays: dict, levels: list[str], main: str,
           clock: np.ndarray) -> None:
    parts = path.split(".")
    if not array_path(path, hw):
        raise ConfigError(None, f"--set {path}", f"a sweepable hardware path: {'; '.join(SUPPORTED_PATHS)}", path)
    if path in ("thermal.compute_clock_fraction", "price", f"memory.{main}.capacity", "kernel_launch_graph"):
        return  # applied by the caller (capacity, price), by apply_paths (clock) or to graph-replayed terms
    if path == "kernel_launch":
        arrays["kernel_launch_s"] = col
        return
    if path == "power.idle":
        arrays["idle_w"] = col + (hw.busy_power_w - hw.power.idle_w)
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
    if parts[0] == "pim" and hw.pim is not None and _apply_pim(parts[1:], col, work, arrays, clock):
        return
    raise ConfigError(None, f"--set {path}", f"a sweepable hardware path: {'; '.join(SUPPORTED_PATHS)}", path)


def _apply_pim(parts: list[str], col: np.ndarray, work: GraphWork, arrays: dict, clock: np.ndarray) -> bool:
    """Set a ``pim.*`` field (its path after ``pim.``) in ``arrays``; False for a path that names no PIM field. A
    dtype the work's rows never run on the PIM units (``Alternatives.pim_dtypes``) has no column: nothing to set."""
    dtypes = () if work.alternatives is None else work.alternatives.pim_dtypes
    if parts == ["achievable_fraction"]:
        arrays["pim_compute_fraction"] = col * clock  # compute at the thermal clock, in-place reads not
        arrays["pim_internal_fraction"] = col
        return True
    if len(parts) == 1 and parts[0] in ("internal_bandwidth", "internal_energy_per_bit"):
        field = "pim_internal_bytes_per_s" if parts[0] == "internal_bandwidth" else "pim_internal_energy_j_per_bit"
        arrays[field] = col
        return True
    if len(parts) == 2 and parts[0] in ("peak", "energy_per_flop"):
        field = "pim_peak_flop_per_s" if parts[0] == "peak" else "pim_energy_j_per_flop"
        if parts[1] in dtypes:
            arrays[field][:, dtypes.index(parts[1])] = col
        return True
    return False


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
    """Everything a worker needs to rebuild the model (picklable): the workload and base hardware (names or paths),
    ``estimate()``'s overrides, and the model point's ``settings`` (``model.FIELD=VALUE`` / ``scenario.FIELD=VALUE``,
    applied by config/overrides.py as ``--set`` applies them on ``archsim run``)."""

    workload: str
    hardware: str
    overrides: tuple[tuple[str, object], ...] = ()
    settings: tuple[str, ...] = ()


_MODELS: dict = {}
# models kept per process: the chunks of one model point run together, so a few suffice; a sweep over thousands of
# model points must not keep every resolved deployment (graphs and prices) alive
_CACHED_MODELS = 4


def spec_inputs(spec: SweepSpec) -> tuple[Workload, Hardware]:
    """The model point's workload and hardware: loaded, with ``spec.settings`` applied (the loaders' checks)."""
    from archsim.config.hardware import resolve_hardware
    from archsim.config.overrides import apply_settings, parse_setting

    workload, hw = load_workload(spec.workload), resolve_hardware(spec.hardware)
    if not spec.settings:
        return workload, hw
    return apply_settings(workload, hw, [parse_setting(t) for t in spec.settings])


def _model_for(spec: SweepSpec) -> SweepModel:
    if spec not in _MODELS:
        while len(_MODELS) >= _CACHED_MODELS:
            _MODELS.pop(next(iter(_MODELS)))  # the oldest
        _MODELS[spec] = SweepModel(*spec_inputs(spec), **dict(spec.overrides))
    return _MODELS[spec]


def evaluate_chunk(spec: SweepSpec, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Evaluate one chunk of points (module-level so process pools and Dask can ship it)."""
    return _model_for(spec).evaluate(columns)


def run_sweep(spec: SweepSpec | Sequence[SweepSpec], columns: Mapping[str, np.ndarray], *, chunk: int = 5000,
              workers: int | None = None, cluster: str | object | None = None,
              progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """All points' metrics, in point order, plus a ``pareto`` column.

    ``spec`` may be several model points (SweepSpecs differing in ``settings``): every hardware point of
    ``columns`` is then priced at each of them, model point after model point (the rows of model point i are
    ``i * n .. (i + 1) * n - 1`` for ``n`` hardware points), and the Pareto front is taken over them all.
    Tasks (a model point's chunk of hardware points) run in this process when there is one, on a local process
    pool otherwise (``workers``, default the CPU count; each worker rebuilds the graphs of the model points it is
    given), or on a Dask cluster when ``cluster`` is an address or a ``distributed.Client``.
    """
    specs = [spec] if isinstance(spec, SweepSpec) else list(spec)
    n = len(next(iter(columns.values()))) if columns else 1
    bounds = [(i, min(n, i + chunk)) for i in range(0, n, chunk)] or [(0, 1)]
    chunks = [{k: np.asarray(v)[a:b] for k, v in columns.items()} for a, b in bounds]
    tasks = [(s, part) for s in specs for part in chunks]
    results: list[dict] = []
    if cluster is not None:
        results = _run_dask(tasks, cluster, progress)
    elif len(tasks) == 1 or (workers or os.cpu_count() or 1) <= 1:
        for i, (s, part) in enumerate(tasks):
            results.append(evaluate_chunk(s, part))
            if progress:
                progress(i + 1, len(tasks))
    else:
        with ProcessPoolExecutor(max_workers=min(len(tasks), workers or os.cpu_count() or 1)) as pool:
            for i, res in enumerate(pool.map(evaluate_chunk, *zip(*tasks))):
                results.append(res)
                if progress:
                    progress(i + 1, len(tasks))
    out = {k: np.concatenate([r[k] for r in results]) for k in results[0]}
    out["pareto"] = pareto_front({k: out[k] for k in PARETO}, PARETO)
    return out


def _run_dask(tasks: list[tuple[SweepSpec, dict]], cluster, progress) -> list[dict]:
    from distributed import Client, as_completed  # optional extra, imported only for --cluster

    client = cluster if isinstance(cluster, Client) else Client(cluster)
    try:
        futures = [client.submit(evaluate_chunk, spec, part, pure=False) for spec, part in tasks]
        done = 0
        for _ in as_completed(futures):
            done += 1
            if progress:
                progress(done, len(tasks))
        return client.gather(futures)
    finally:
        if client is not cluster:
            client.close()
