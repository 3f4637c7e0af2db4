"""Array form of pricing: a graph's work as numpy arrays, priced against hardware whose fields may be
arrays with a leading sweep axis (10,000 hardware points through one call).

``extract_work(ops, hw)`` fixes what depends on the chip's geometry (tile sizes, L2 capture);
``hardware_arrays(hw, work)`` turns the rates, fractions, latencies and energies into arrays that
``price_work`` broadcasts: every field has shape ``sweep_shape + (K,)`` for the K rate keys
(engine, dtype), ``sweep_shape + (L,)`` for the L memory levels, or ``sweep_shape`` for scalars.
The maths is exactly that of ``cost/opcost.py`` (a test checks they agree op by op). Collectives
are priced once at extraction by ``cost/collectives.py`` (their time depends on the node and link
fields, which a sweep of chip rates leaves fixed; re-extract to sweep links).
Tiled GEMMs (``cost/traffic.py``) are priced by ``efficiency.pick_tiling`` over their tile menu and
``efficiency.tiled_time_terms``, broadcast over the sweep (each point picks its own tile, as the kernel
model would at those rates; a sweep of ``kernel.*`` fields needs a re-extraction); their L2 and shared-memory
bytes, and so those levels' energy, are the picked tile's (``traffic.picked_level_bytes``), so ``WorkCost.bytes``
carries the sweep axis.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from archsim.config.hardware import Hardware
from archsim.cost import efficiency as eff
from archsim.cost.opcost import collective_cost, energy_per_flop, rate_key
from archsim.cost.traffic import Geometry, gemm_operand_field, op_work, tile_levels
from archsim.dtypes import BITS_PER_BYTE
from archsim.graph.op import Op


@dataclass(frozen=True, kw_only=True)
class GraphWork:
    """Per-op work of a phase as arrays (n ops, L levels, K rate keys). ``count`` weights duplicate
    rows after ``compress()`` (identical layers collapse into one row)."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    flops: np.ndarray          # (n,) FLOPs counted (energy, MFU)
    time_flops: np.ndarray     # (n,) FLOPs-equivalent for time (busiest expert bound)
    rate_index: np.ndarray     # (n,) int index into rate_keys; ops without FLOPs point at 0
    rate_keys: tuple[tuple[str, str], ...]
    level_names: tuple[str, ...]
    bytes: np.ndarray          # (n, L) bytes crossing each level
    network_bytes: np.ndarray  # (n,)
    network_s: np.ndarray      # (n,) collective time, priced at extraction by cost/collectives.py
    network_j: np.ndarray      # (n,) collective energy, likewise
    launches: np.ndarray       # (n,)
    count: np.ndarray          # (n,) multiplicity of each row
    # tiled GEMMs (cost/traffic.py OpWork): flag, main-loop main-memory reads, epilogue writes, and per tile
    # menu entry (n, C; padded with inf) the wave-quantised FLOPs, L2 operand bytes, per-SM panel stream time
    # and shared-memory operand bytes; ``bytes`` holds the untiled (gemm_traffic) L2/shared bytes of those rows
    tiled: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=bool))
    stream_bytes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    epilogue_bytes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    tile_flops: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))
    tile_operand_bytes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))
    tile_stream_s: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))
    tile_shared_bytes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))

    def compress(self) -> "GraphWork":
        """Merge rows with identical work into one row with a count (totals are unchanged)."""
        table = np.column_stack([self.flops, self.time_flops, self.rate_index, self.bytes,
                                 self.network_bytes, self.network_s, self.network_j, self.launches,
                                 self.tiled, self.stream_bytes, self.epilogue_bytes, self.tile_flops,
                                 self.tile_operand_bytes, self.tile_stream_s, self.tile_shared_bytes])
        _, first, inverse = np.unique(table, axis=0, return_index=True, return_inverse=True)
        count = np.bincount(inverse.ravel(), weights=self.count)
        pick = lambda a: a[first]
        return dataclasses.replace(
            self, names=tuple(self.names[i] for i in first), kinds=tuple(self.kinds[i] for i in first),
            flops=pick(self.flops), time_flops=pick(self.time_flops), rate_index=pick(self.rate_index),
            bytes=pick(self.bytes), network_bytes=pick(self.network_bytes), network_s=pick(self.network_s),
            network_j=pick(self.network_j), launches=pick(self.launches),
            count=count, tiled=pick(self.tiled), stream_bytes=pick(self.stream_bytes),
            epilogue_bytes=pick(self.epilogue_bytes), tile_flops=pick(self.tile_flops),
            tile_operand_bytes=pick(self.tile_operand_bytes), tile_stream_s=pick(self.tile_stream_s),
            tile_shared_bytes=pick(self.tile_shared_bytes))


def extract_work(ops: Iterable[Op], hw: Hardware, *, attention: str = "flash") -> GraphWork:
    """Work arrays of ``ops`` on ``hw``'s geometry (order preserved)."""
    geom = Geometry.of(hw)
    ops = list(ops)
    keys: dict[tuple[str, str], int] = {}
    key_of: dict[tuple[str, str, bool], tuple[str, str] | None] = {}  # rate_key memo by (engine, dtype, has FLOPs)
    levels = geom.level_names
    time_flops, rate_index, rows, network, launches, net_s, net_j = [], [], [], [], [], [], []
    tiled, stream, epilogue, menus = [], [], [], []
    for op in ops:
        work = op_work(op, geom, attention=attention)
        memo = (op.engine, op.compute_dtype.name, op.flops > 0)
        if memo not in key_of:
            key_of[memo] = rate_key(hw, op)
        key = key_of[memo]
        rate_index.append(0 if key is None else keys.setdefault(key, len(keys)))
        time_flops.append(work.time_flops)
        rows.append([work.bytes_by_level[name] for name in levels])
        network.append(work.network_bytes)
        t, e = collective_cost(op, hw) if op.kind == "collective" else (0.0, 0.0)
        net_s.append(t)
        net_j.append(e)
        launches.append(work.launches)
        tiled.append(work.tiled)
        stream.append(work.stream_bytes)
        epilogue.append(work.epilogue_bytes)
        menus.append((work.tile_flops, work.tile_operand_bytes, work.tile_stream_s, work.tile_shared_bytes))
    n = len(ops)
    width = max((len(m[0]) for m in menus), default=0)
    tile_arrays = [np.full((n, width), np.inf) for _ in range(4)]
    for i, menu in enumerate(menus):
        for array, values in zip(tile_arrays, menu):
            array[i, :len(values)] = values
    return GraphWork(names=tuple(op.name for op in ops), kinds=tuple(op.kind for op in ops),
                     flops=np.array([op.flops for op in ops], dtype=float), time_flops=np.array(time_flops, float),
                     rate_index=np.array(rate_index, dtype=np.int64), rate_keys=tuple(keys), level_names=levels,
                     bytes=np.array(rows, dtype=float).reshape(n, len(levels)),
                     network_bytes=np.array(network, float), network_s=np.array(net_s, float),
                     network_j=np.array(net_j, float), launches=np.array(launches, float), count=np.ones(n),
                     tiled=np.array(tiled, dtype=bool), stream_bytes=np.array(stream, float),
                     epilogue_bytes=np.array(epilogue, float), tile_flops=tile_arrays[0],
                     tile_operand_bytes=tile_arrays[1], tile_stream_s=tile_arrays[2],
                     tile_shared_bytes=tile_arrays[3])


@dataclass(frozen=True, kw_only=True)
class HardwareArrays:
    """Hardware rates as arrays; replace any field by an array with a leading sweep axis to sweep it."""

    peak_flop_per_s: np.ndarray       # (..., K)
    compute_fraction: np.ndarray      # (..., K) achievable fraction x thermal compute_clock_fraction
    energy_j_per_flop: np.ndarray     # (..., K)
    bandwidth_bytes_per_s: np.ndarray  # (..., L)
    memory_fraction: np.ndarray       # (..., L) achievable fraction (x clock fraction on chip)
    power_limit_w: np.ndarray         # (..., L) inf where the level has no power cap
    latency_s: np.ndarray             # (..., L)
    energy_j_per_bit: np.ndarray      # (..., L)
    kernel_launch_s: np.ndarray       # (...)
    idle_w: np.ndarray                # (...)
    ramp_s: np.ndarray = dataclasses.field(default_factory=lambda: np.asarray(0.0))  # (...) kernel.ramp
    # (...) L2 operand feed of tiled GEMMs (kernel.gemm_operand_bandwidth x clock fraction); NaN = the L2
    # level's sustained rate (cost/traffic.py gemm_operand_rate)
    operand_bytes_per_s: np.ndarray = dataclasses.field(default_factory=lambda: np.asarray(np.nan))


def hardware_arrays(hw: Hardware, work: GraphWork) -> HardwareArrays:
    """The rates of one chip, laid out for ``work``'s rate keys and levels (no sweep axis)."""
    engines = [hw.compute[e] for e, _ in work.rate_keys]
    levels = [hw.memory[name] for name in work.level_names]
    arr = np.asarray
    return HardwareArrays(
        peak_flop_per_s=arr([eng.peak_flop_per_s[d] for eng, (_, d) in zip(engines, work.rate_keys)], float),
        compute_fraction=arr([eng.achievable_fraction * hw.compute_clock_fraction for eng in engines], float),
        energy_j_per_flop=arr([energy_per_flop(hw, key) for key in work.rate_keys], float),
        bandwidth_bytes_per_s=arr([lv.bandwidth_bytes_per_s for lv in levels], float),
        memory_fraction=arr([lv.achievable_fraction * (1.0 if lv is hw.main_memory else hw.compute_clock_fraction)
                             for lv in levels], float),
        power_limit_w=arr([np.inf if lv.power_limit_w is None else lv.power_limit_w for lv in levels], float),
        latency_s=arr([lv.latency_s for lv in levels], float),
        energy_j_per_bit=arr([lv.energy_j_per_bit for lv in levels], float),
        kernel_launch_s=arr(hw.kernel_launch_s, float), idle_w=arr(hw.static_power_w, float),
        ramp_s=arr(hw.kernel.ramp_s if hw.kernel is not None else 0.0, float),
        operand_bytes_per_s=arr(np.nan if gemm_operand_field(hw) is None else gemm_operand_field(hw), float))


def stack_hardware(arrays: Sequence[HardwareArrays]) -> HardwareArrays:
    """Stack several chips' arrays (same work layout) along a new leading sweep axis."""
    fields = [f.name for f in dataclasses.fields(HardwareArrays)]
    return HardwareArrays(**{f: np.stack([getattr(a, f) for a in arrays]) for f in fields})


@dataclass(frozen=True, kw_only=True)
class WorkCost:
    """Prices per op (shape sweep + (n,)) and phase totals (shape sweep)."""

    bound_labels: tuple[str, ...]
    compute_s: np.ndarray
    memory_s: np.ndarray       # sweep + (n, L)
    network_s: np.ndarray
    launch_s: np.ndarray
    time_s: np.ndarray
    bound_index: np.ndarray    # sweep + (n,) index into bound_labels
    bytes: np.ndarray          # sweep + (n, L) bytes per level (tiled GEMMs: at their picked tile)
    energy_j: np.ndarray       # dynamic energy per op
    compute_j: np.ndarray
    memory_j: np.ndarray       # sweep + (n, L)
    network_j: np.ndarray
    total_time_s: np.ndarray   # serial sum of op times
    total_energy_j: np.ndarray  # dynamic energy + idle power * total time


def bound_labels(level_names: Sequence[str]) -> tuple[str, ...]:
    """Resource labels in tie-break order: compute, memory levels outermost first, network, launch."""
    return ("compute", *(f"memory:{n}" for n in reversed(tuple(level_names))), "network", "launch")


def _tiled(work: GraphWork, hwa: HardwareArrays, rate, compute_s, launch_s, level_rate, time_s, bound_index,
           memory_s):
    """(compute, time, bound index, per-level memory time, per-level bytes) with the tiled GEMM rows priced as
    opcost.py prices them: each picks its tile (``efficiency.pick_tiling``) and takes
    ``efficiency.tiled_time_terms`` (or the launch time if longer); the main level's time is reads plus epilogue,
    the L2's the operand feed; the L2 and shared-memory bytes are the picked tile's
    (``traffic.picked_level_bytes``)."""
    levels = work.level_names
    main = len(levels) - 1  # Geometry: the outermost level is the last
    l2 = levels.index("l2") if "l2" in levels and main != levels.index("l2") else None
    operand_level = main if l2 is None else l2
    rows = np.flatnonzero(work.tiled)
    operand_rate = hwa.operand_bytes_per_s
    operand_rate = np.where(np.isnan(operand_rate), np.inf if l2 is None else level_rate[..., l2], operand_rate)
    rate_t = rate[..., rows]
    flops_t, operand_t, stream_t = work.tile_flops[rows], work.tile_operand_bytes[rows], work.tile_stream_s[rows]
    pick = eff.pick_tiling(flops_t, operand_t, stream_t, rate_t[..., None], operand_rate[..., None, None])
    shape = pick.shape + (flops_t.shape[-1],)

    def chosen(values):
        return np.take_along_axis(np.broadcast_to(values, shape), pick[..., None], axis=-1)[..., 0]

    compute_t = np.maximum(work.time_flops[rows], chosen(flops_t)) / rate_t
    terms = eff.tiled_time_terms(compute_s=compute_t, input_bytes=work.stream_bytes[rows],
                                 output_bytes=work.epilogue_bytes[rows],
                                 bandwidth_bytes_per_s=level_rate[..., main, None], ramp_s=hwa.ramp_s[..., None],
                                 operand_bytes=chosen(operand_t), operand_bandwidth_bytes_per_s=operand_rate[..., None],
                                 stream_s=chosen(stream_t))
    labels = bound_labels(levels)
    to_label = np.array([labels.index("compute"), labels.index(f"memory:{levels[main]}"),
                         labels.index(f"memory:{levels[operand_level]}")])
    launch_t = np.broadcast_to(launch_s, np.broadcast_shapes(np.shape(launch_s), np.shape(time_s)))[..., rows]
    kernel_t = terms.time_s
    out_shape = np.broadcast_shapes(np.shape(time_s), kernel_t.shape[:-1] + (len(work.tiled),))
    compute_s = np.array(np.broadcast_to(compute_s, out_shape))
    time_s = np.array(np.broadcast_to(time_s, out_shape))
    bound_index = np.array(np.broadcast_to(bound_index, out_shape))
    memory_s = np.array(np.broadcast_to(memory_s, out_shape + (len(levels),)))
    compute_s[..., rows] = compute_t
    time_s[..., rows] = np.maximum(kernel_t, launch_t)
    bound_index[..., rows] = np.where(launch_t > kernel_t, labels.index("launch"), to_label[terms.bound_index])
    tiled_memory = np.zeros(kernel_t.shape + (len(levels),))
    tiled_memory[..., main] = terms.memory_s + terms.epilogue_s
    tiled_memory[..., operand_level] += terms.operand_s
    memory_s[..., rows, :] = tiled_memory
    level_bytes = np.array(np.broadcast_to(work.bytes, out_shape + (len(levels),)))
    l2_level, shared_level = tile_levels(levels)
    epilogue = work.epilogue_bytes[rows]
    if l2_level is not None:
        level_bytes[..., rows, levels.index(l2_level)] = chosen(operand_t) + epilogue
    if shared_level is not None:
        level_bytes[..., rows, levels.index(shared_level)] = chosen(work.tile_shared_bytes[rows]) + epilogue
    return compute_s, time_s, bound_index, memory_s, level_bytes


def price_work(work: GraphWork, hwa: HardwareArrays) -> WorkCost:
    """Price every op of ``work`` on (possibly swept) hardware ``hwa``; see opcost.py for the maths."""
    idx = work.rate_index
    if work.rate_keys:
        rate = hwa.peak_flop_per_s[..., idx] * hwa.compute_fraction[..., idx]
        compute_s = work.time_flops / rate
        compute_j = work.flops * hwa.energy_j_per_flop[..., idx]
    else:
        compute_s = compute_j = np.zeros(np.shape(hwa.kernel_launch_s) + work.flops.shape)
    capped = np.where(hwa.energy_j_per_bit > 0,
                      hwa.power_limit_w / (BITS_PER_BYTE * np.maximum(hwa.energy_j_per_bit, np.finfo(float).tiny)),
                      np.inf)
    level_rate = np.minimum(hwa.bandwidth_bytes_per_s * hwa.memory_fraction, capped)[..., None, :]
    touched = work.bytes > 0
    memory_s = work.bytes / level_rate + np.where(touched, hwa.latency_s[..., None, :], 0.0)
    network_s, network_j = work.network_s, work.network_j  # fixed at extraction (cost/collectives.py)
    launch_s = work.launches * hwa.kernel_launch_s[..., None]
    shape = np.broadcast_shapes(np.shape(compute_s), memory_s.shape[:-1], np.shape(network_s),
                                np.shape(launch_s))
    stacked = np.stack([np.broadcast_to(compute_s, shape),
                        *(np.broadcast_to(memory_s[..., j], shape) for j in reversed(range(memory_s.shape[-1]))),
                        np.broadcast_to(network_s, shape), np.broadcast_to(launch_s, shape)], axis=-1)
    bound_index = np.argmax(stacked, axis=-1)  # first maximum wins ties, as in opcost.py
    time_s = np.max(stacked, axis=-1)
    # (sweep..., n, L) always: a read-only view of the extracted bytes, replaced where a tile is picked
    level_bytes = np.broadcast_to(work.bytes, shape + work.bytes.shape[-1:])
    if work.tiled.any():
        compute_s, time_s, bound_index, memory_s, level_bytes = _tiled(work, hwa, rate, compute_s, launch_s,
                                                                       level_rate[..., 0, :], time_s, bound_index,
                                                                       memory_s)
    memory_j = level_bytes * BITS_PER_BYTE * hwa.energy_j_per_bit[..., None, :]
    energy_j = compute_j + memory_j.sum(axis=-1) + network_j
    total_time_s = (time_s * work.count).sum(axis=-1)
    total_energy_j = (energy_j * work.count).sum(axis=-1) + hwa.idle_w * total_time_s
    return WorkCost(bound_labels=bound_labels(work.level_names), compute_s=compute_s, memory_s=memory_s,
                    network_s=network_s, launch_s=launch_s, time_s=time_s, bound_index=bound_index,
                    bytes=level_bytes, energy_j=energy_j, compute_j=compute_j, memory_j=memory_j, network_j=network_j,
                    total_time_s=total_time_s, total_energy_j=total_energy_j)
