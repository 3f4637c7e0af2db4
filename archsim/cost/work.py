"""Ops x Hardware -> arrays: a graph's work (``extract_work``) priced against rates whose fields may carry a
leading sweep axis (``hardware_arrays``, ``price_work``), 10,000 hardware points in one call.

The maths is ``cost/opcost.py``'s, element-wise; a tiled GEMM's time is ``gemm.gemm_time`` at each point (each
point picks its own tile). Collectives are priced once at extraction (``cost/collectives.py``), and so is an op's
all-reduce traffic on a wafer-scale chip's core mesh (``cost/mesh.py``), which is its network time.

Placement (``cost/engines.py``): on a chip with alternatives to an op's default engine (PIM units, a second matrix or
photonic engine) ``extract_work`` records, per op row, which of them can run it (``Alternatives``), and
``price_work`` prices each row on each of them and keeps, per row and per sweep point, the one with the least time
(ties keep the default engine, then the earlier candidate), with that engine's energy and bytes per level: the rule
of ``opcost.price_work_item``. A swept rate can therefore move an op between engines from one point to the next. A
chip without alternatives carries none and pays nothing for the rule.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from archsim.config.hardware import Hardware
from archsim.cost import bound as bounds
from archsim.cost import engines, gemm, mesh
from archsim.cost.geometry import Geometry
from archsim.cost.opcost import collective_cost, energy_per_flop, rate_key
from archsim.cost.power import boost_flop_energy_ratio, capped, capped_time_s
from archsim.cost.rates import ChipRates, sustained_bytes_per_s
from archsim.cost.traffic import op_work
from archsim.dtypes import BITS_PER_BYTE
from archsim.graph.op import Op

# (op kind, MMA factor, bandwidth factor) per op kind a kernel library runs (config/stack.py picks them)
Libraries = tuple[tuple[str, float, float], ...]
UNQUANTIZED_GEMM = "gemm_unquantized"  # a dense GEMM with 16/32-bit weights (library_kind)

_GEMM_ARRAYS = ("mma_flops", "l2_operand_bytes", "smem_bytes", "panel_stream_bytes", "hbm_read_bytes",
                "hbm_write_bytes", "floor_flops")


def _no_gemms() -> gemm.TileCandidates:
    return gemm.stack_candidates([])[1]


@dataclass(frozen=True, kw_only=True)
class Alternatives:
    """Per op row, the engines besides its default one that can run it (``cost/engines.py``): E other compute
    engines (slots in the chip's engine order) and the PIM units."""

    engines: tuple[str, ...]  # (E,) names of the other engines some row can run on
    engine_key: np.ndarray    # (n, E) index into GraphWork.rate_keys of row i on engine e; -1: it cannot run there
    pim_dtypes: tuple[str, ...]  # dtypes of the PIM peaks the rows use
    pim_index: np.ndarray     # (n,) index into pim_dtypes; -1: the PIM units cannot run the row
    pim_inside: np.ndarray    # (n,) bytes read in place (weights, KV cache)
    pim_outside: np.ndarray   # (n,) bytes over the memory's external interface (activations in, results out)
    pim_level: int = -1       # index of the PIM's memory level in GraphWork.level_names; -1: no PIM
    # (n, E) seconds engine e spends loading row i's weights first (a weight-stationary photonic engine,
    # engines.reprogram_s); None: no engine here reprograms
    reprogram_s: np.ndarray | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        """Engine names by ``WorkCost.engine_choice`` code: 1..E the other engines, E + 1 the PIM units (0, the
        default engine, is the row's own and is named by its rate key)."""
        return ("", *self.engines, engines.PIM_ENGINE)

    def columns(self) -> np.ndarray:
        """The per-row arrays side by side (n, E + 3), for ``GraphWork.compress``."""
        extra = [] if self.reprogram_s is None else [self.reprogram_s]
        return np.column_stack([self.engine_key, self.pim_index, self.pim_inside, self.pim_outside, *extra])

    def take(self, rows) -> "Alternatives":
        """The alternatives of the rows at ``rows``."""
        return dataclasses.replace(self, engine_key=self.engine_key[rows], pim_index=self.pim_index[rows],
                                   pim_inside=self.pim_inside[rows], pim_outside=self.pim_outside[rows],
                                   reprogram_s=None if self.reprogram_s is None else self.reprogram_s[rows])


@dataclass(frozen=True, kw_only=True)
class GraphWork:
    """Per-op work of a phase as arrays (n ops, L levels, K rate keys). ``count`` weights duplicate
    rows after ``compress()`` (identical layers collapse into one row)."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    flops: np.ndarray          # (n,) FLOPs counted (energy, MFU)
    time_flops: np.ndarray     # (n,) FLOPs-equivalent for time (a GEMM's floor: the busiest expert)
    rate_index: np.ndarray     # (n,) int index into rate_keys; ops without FLOPs point at 0
    rate_keys: tuple[tuple[str, str], ...]
    level_names: tuple[str, ...]
    bytes: np.ndarray          # (n, L) bytes crossing each level (a tiled GEMM's L2/shared: the SRAM-tile rule's)
    network_bytes: np.ndarray  # (n,)
    network_s: np.ndarray      # (n,) collective time, priced at extraction by cost/collectives.py
    network_j: np.ndarray      # (n,) collective energy, likewise
    launches: np.ndarray       # (n,)
    count: np.ndarray          # (n,) multiplicity of each row
    attention: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=bool))  # (n,) at its MMA rate
    tiled: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=bool))  # (n,) has GEMM candidates
    gemm: gemm.TileCandidates = dataclasses.field(default_factory=_no_gemms)  # (n, C), inf-padded; see gemm.py
    alternatives: Alternatives | None = None  # engines besides the default per row; None: every row has none
    # the kernel library of each row against the chip's reference kernel (config.kernel_fields.KernelLibrary):
    # (n,) factors on its MMA rate and its main-memory rate; None: every row runs the reference kernel
    mma_scale: np.ndarray | None = None
    bandwidth_scale: np.ndarray | None = None
    # (n,) seconds the default engine spends loading each row's weights before its MACs (a weight-stationary
    # photonic engine, engines.reprogram_s); None: the default engines hold no weights
    reprogram_s: np.ndarray | None = None

    def compress(self) -> "GraphWork":
        """Merge rows with identical work into one row with a count (totals are unchanged)."""
        cands = [getattr(self.gemm, name) for name in _GEMM_ARRAYS]
        alt = [] if self.alternatives is None else [self.alternatives.columns()]
        libs = [a for a in (self.mma_scale, self.bandwidth_scale, self.reprogram_s) if a is not None]
        table = np.column_stack([self.flops, self.time_flops, self.rate_index, self.bytes,
                                 self.network_bytes, self.network_s, self.network_j, self.launches,
                                 self.attention, self.tiled, *cands, *alt, *libs])
        _, first, inverse = np.unique(table, axis=0, return_index=True, return_inverse=True)
        count = np.bincount(inverse.ravel(), weights=self.count)
        pick = lambda a: a[first]
        return dataclasses.replace(
            self, names=tuple(self.names[i] for i in first), kinds=tuple(self.kinds[i] for i in first),
            flops=pick(self.flops), time_flops=pick(self.time_flops), rate_index=pick(self.rate_index),
            bytes=pick(self.bytes), network_bytes=pick(self.network_bytes), network_s=pick(self.network_s),
            network_j=pick(self.network_j), launches=pick(self.launches),
            count=count, attention=pick(self.attention), tiled=pick(self.tiled),
            gemm=gemm.take_rows(self.gemm, first),
            alternatives=None if self.alternatives is None else self.alternatives.take(first),
            mma_scale=None if self.mma_scale is None else pick(self.mma_scale),
            bandwidth_scale=None if self.bandwidth_scale is None else pick(self.bandwidth_scale),
            reprogram_s=None if self.reprogram_s is None else pick(self.reprogram_s))


def extract_work(ops: Iterable[Op], hw: Hardware, *, attention: str = "flash",
                 libraries: Libraries = ()) -> GraphWork:
    """Work arrays of ``ops`` on ``hw``'s geometry (order preserved). ``libraries``: (op kind, MMA factor,
    bandwidth factor) of the kernel library a stack runs ops of that kind with (``library_factors``)."""
    geom = Geometry.of(hw)
    ops = list(ops)
    keys: dict[tuple[str, str], int] = {}
    key_of: dict[tuple[str, str, bool], tuple[str, str] | None] = {}  # rate_key memo by (engine, dtype, has FLOPs)
    levels = geom.level_names
    time_flops, rate_index, rows, network, launches, net_s, net_j, cands = [], [], [], [], [], [], [], []
    # a wafer-scale chip's on-mesh broadcasts and reductions are the op's network time (cost/mesh.py)
    mesh_rates = None if hw.mesh is None else mesh.MeshRates.of(hw.mesh)
    mesh_cost = (lambda op: (0.0, 0.0)) if mesh_rates is None else (lambda op: mesh.op_mesh_cost_at(op, mesh_rates))
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
        t, e = collective_cost(op, hw) if op.kind == "collective" else mesh_cost(op)
        net_s.append(t)
        net_j.append(e)
        launches.append(work.launches)
        cands.append(work.gemm)
    n = len(ops)
    tiled, stacked = gemm.stack_candidates(cands)
    alternatives = _alternatives(ops, hw, keys, levels) if engines.has_alternatives(hw) else None
    reprogram = _default_reprogram(ops, hw, tuple(keys), np.array(rate_index, dtype=np.int64))
    return GraphWork(names=tuple(op.name for op in ops), kinds=tuple(op.kind for op in ops),
                     flops=np.array([op.flops for op in ops], dtype=float), time_flops=np.array(time_flops, float),
                     rate_index=np.array(rate_index, dtype=np.int64), rate_keys=tuple(keys), level_names=levels,
                     bytes=np.array(rows, dtype=float).reshape(n, len(levels)),
                     network_bytes=np.array(network, float), network_s=np.array(net_s, float),
                     network_j=np.array(net_j, float), launches=np.array(launches, float), count=np.ones(n),
                     attention=np.array([op.kind == "attention" for op in ops], dtype=bool), tiled=tiled,
                     gemm=stacked, alternatives=alternatives, reprogram_s=reprogram, **_library_scales(ops, libraries))


def _default_reprogram(ops: list[Op], hw: Hardware, keys: tuple, rate_index: np.ndarray) -> np.ndarray | None:
    """(n,) weight-load time of each row on its default engine (``engines.reprogram_s``); None when no default
    engine of ``hw`` is a weight-stationary photonic one (every shipped chip), at no cost."""
    if not any(e.photonic is not None and e.photonic.weight_stationary for e in hw.compute.values()):
        return None
    return np.array([engines.reprogram_s(op, hw.compute[keys[i][0]]) if op.flops > 0 and keys else 0.0
                     for op, i in zip(ops, rate_index)], dtype=float)


def _library_scales(ops: list[Op], libraries: Libraries) -> dict:
    """The per-row library factors (GraphWork.mma_scale / bandwidth_scale); none when every row runs at the
    reference."""
    if not libraries:
        return {}
    by_kind = {kind: (mma, bw) for kind, mma, bw in libraries}
    factors = np.array([by_kind.get(library_kind(op, by_kind), (1.0, 1.0)) for op in ops],
                       dtype=float).reshape(len(ops), 2)
    if not (factors != 1.0).any():
        return {}
    return {"mma_scale": factors[:, 0], "bandwidth_scale": factors[:, 1]}


def library_kind(op: Op, kinds) -> str:
    """The library kind a stack prices ``op`` with: ``gemm_unquantized`` for a dense GEMM whose weights are 16 or
    32-bit when the stack names a library for those (a framework runs unquantized linear layers through the vendor
    BLAS, quantized ones through its own kernels), else the op's kind."""
    if op.kind != "gemm" or UNQUANTIZED_GEMM not in kinds:
        return op.kind
    weights = [o.dtype for o in op.reads if o.role == "weight"]
    return UNQUANTIZED_GEMM if weights and all(d.bits >= 16 for d in weights) else op.kind


def _alternatives(ops: list[Op], hw: Hardware, keys: dict[tuple[str, str], int],
                  levels: tuple[str, ...]) -> Alternatives | None:
    """Each op's engines besides its default (``cost/engines.py``); their rate keys are appended to ``keys`` after
    the default engines' (so the defaults keep their indices). None when no op has one."""
    other = [engines.other_engine_keys(op, hw, rate_key(hw, op)) for op in ops]
    pim = [engines.pim_dtype(op, hw) for op in ops]
    names = tuple(e.name for e in hw.compute.values() if any(k[0] == e.name for row in other for k in row))
    pim_dtypes = tuple(dict.fromkeys(d for d in pim if d is not None))
    if not names and not pim_dtypes:
        return None
    engine_key = np.full((len(ops), len(names)), -1, dtype=np.int64)
    for i, row in enumerate(other):
        for key in row:
            engine_key[i, names.index(key[0])] = keys.setdefault(key, len(keys))
    in_out = np.array([engines.pim_operand_bytes(op) if d is not None else (0.0, 0.0) for op, d in zip(ops, pim)],
                      dtype=float).reshape(len(ops), 2)
    reprogram = np.array([[engines.reprogram_s(op, hw.compute[name]) if engine_key[i, e] >= 0 else 0.0
                           for e, name in enumerate(names)] for i, op in enumerate(ops)], dtype=float)
    return Alternatives(engines=names, engine_key=engine_key, pim_dtypes=pim_dtypes,
                        pim_index=np.array([-1 if d is None else pim_dtypes.index(d) for d in pim], dtype=np.int64),
                        pim_inside=in_out[:, 0], pim_outside=in_out[:, 1],
                        pim_level=levels.index(hw.pim.level) if pim_dtypes else -1,
                        reprogram_s=reprogram.reshape(len(ops), len(names)) if reprogram.any() else None)


@dataclass(frozen=True, kw_only=True)
class HardwareArrays:
    """A chip's rates as arrays (from ``ChipRates``); replace any field by an array with a leading sweep axis to
    sweep it."""

    peak_flop_per_s: np.ndarray       # (..., K)
    compute_fraction: np.ndarray      # (..., K) achievable fraction x thermal compute_clock_fraction
    energy_j_per_flop: np.ndarray     # (..., K)
    bandwidth_bytes_per_s: np.ndarray  # (..., L)
    memory_fraction: np.ndarray       # (..., L) achievable fraction (x clock fraction on chip)
    power_limit_w: np.ndarray         # (..., L) inf where the level has no power cap
    latency_s: np.ndarray             # (..., L)
    energy_j_per_bit: np.ndarray      # (..., L)
    kernel_launch_s: np.ndarray       # (...)
    idle_w: np.ndarray                # (...) power under every op: static plus active baseline (busy_power_w)
    tdp_w: np.ndarray = dataclasses.field(default_factory=lambda: np.asarray(np.inf))  # (...) the power cap
    # (...) energy per FLOP at the boost clock over the YAML's capped-clock figure (cost/power.py)
    boost_flop_energy_ratio: np.ndarray = dataclasses.field(default_factory=lambda: np.asarray(1.0))
    ramp_s: np.ndarray = dataclasses.field(default_factory=lambda: np.asarray(0.0))  # (...) kernel.ramp
    # (...) L2 operand feed of tiled GEMMs (kernel.gemm_operand_bandwidth x clock fraction); NaN = the L2
    # level's sustained rate (ChipRates.gemm_operand_bytes_per_s)
    operand_bytes_per_s: np.ndarray = dataclasses.field(default_factory=lambda: np.asarray(np.nan))
    # (...) one SM's main-memory loads, the tiled GEMMs' panel streaming (kernel.sm_stream_bandwidth); inf: no cap
    sm_stream_bytes_per_s: np.ndarray = dataclasses.field(default_factory=lambda: np.asarray(np.inf))
    # (...) attention's MMA rate over the GEMM rate of its dtype (ChipRates.attention_rate_ratio)
    attention_rate_ratio: np.ndarray = dataclasses.field(default_factory=lambda: np.asarray(1.0))
    # the PIM units (hardware ``pim:``), for work whose rows can run on them (Alternatives.pim_dtypes: P dtypes)
    pim_peak_flop_per_s: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))     # (..., P)
    pim_energy_j_per_flop: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))   # (..., P)
    pim_compute_fraction: np.ndarray = dataclasses.field(default_factory=lambda: np.asarray(0.0))  # (...) x clock
    pim_internal_fraction: np.ndarray = dataclasses.field(default_factory=lambda: np.asarray(0.0))  # (...)
    pim_internal_bytes_per_s: np.ndarray = dataclasses.field(default_factory=lambda: np.asarray(0.0))  # (...)
    pim_internal_energy_j_per_bit: np.ndarray = dataclasses.field(default_factory=lambda: np.asarray(0.0))  # (...)
    pim_mode_switch_s: np.ndarray = dataclasses.field(default_factory=lambda: np.asarray(0.0))  # (...) per PIM op


# (id(hw), work layout) -> (hw, arrays): one projection prices several graphs of the same layout on one chip; the
# entry holds ``hw`` so its id cannot be reused while cached, and the arrays are read-only
_ARRAYS_CACHE: dict = {}
_ARRAYS_CACHE_SIZE = 256


def hardware_arrays(hw: Hardware, work: GraphWork) -> HardwareArrays:
    """The rates of one chip (``ChipRates.of``), laid out for ``work``'s rate keys and levels (no sweep axis).
    The arrays are read-only (shared between the graphs of one layout)."""
    alt = work.alternatives
    key = (id(hw), work.rate_keys, work.level_names, None if alt is None else tuple(alt.pim_dtypes))
    hit = _ARRAYS_CACHE.get(key)
    if hit is not None and hit[0] is hw:
        return hit[1]
    arrays = _chip_arrays(hw, work)
    for f in dataclasses.fields(HardwareArrays):
        getattr(arrays, f.name).flags.writeable = False
    if len(_ARRAYS_CACHE) >= _ARRAYS_CACHE_SIZE:
        _ARRAYS_CACHE.clear()
    _ARRAYS_CACHE[key] = (hw, arrays)
    return arrays


def _chip_arrays(hw: Hardware, work: GraphWork) -> HardwareArrays:
    rates = ChipRates.of(hw)
    levels = [hw.memory[name] for name in work.level_names]
    arr = np.asarray
    return HardwareArrays(
        peak_flop_per_s=arr([rates.peak_flop_per_s[e][d] for e, d in work.rate_keys], float),
        compute_fraction=arr([rates.compute_derate(e) for e, _ in work.rate_keys], float),
        energy_j_per_flop=arr([energy_per_flop(hw, key) for key in work.rate_keys], float),
        bandwidth_bytes_per_s=arr([lv.bandwidth_bytes_per_s for lv in levels], float),
        memory_fraction=arr([rates.level_derate[name] for name in work.level_names], float),
        power_limit_w=arr([np.inf if lv.power_limit_w is None else lv.power_limit_w for lv in levels], float),
        latency_s=arr([lv.latency_s for lv in levels], float),
        energy_j_per_bit=arr([lv.energy_j_per_bit for lv in levels], float),
        kernel_launch_s=arr(rates.launch_s, float), idle_w=arr(hw.busy_power_w, float),
        tdp_w=arr(hw.power.tdp_w, float), boost_flop_energy_ratio=arr(boost_flop_energy_ratio(hw), float),
        ramp_s=arr(rates.ramp_s, float),
        operand_bytes_per_s=arr(np.nan if rates.gemm_operand_field is None else rates.gemm_operand_field, float),
        sm_stream_bytes_per_s=arr(rates.sm_stream_bytes_per_s, float),
        attention_rate_ratio=arr(rates.attention_rate_ratio, float), **_pim_arrays(hw, rates, work))


def _pim_arrays(hw: Hardware, rates: ChipRates, work: GraphWork) -> dict:
    """``HardwareArrays``' PIM fields for the PIM dtypes ``work`` uses (none when its rows cannot run on PIM)."""
    alt = work.alternatives
    if alt is None or not alt.pim_dtypes:
        return {}
    arr = np.asarray
    return dict(pim_peak_flop_per_s=arr([rates.pim_peak_flop_per_s[d] for d in alt.pim_dtypes], float),
                pim_energy_j_per_flop=arr([hw.pim.energy_j_per_flop[d] for d in alt.pim_dtypes], float),
                pim_compute_fraction=arr(rates.pim_compute_derate, float),
                pim_internal_fraction=arr(rates.pim_fraction, float),
                pim_internal_bytes_per_s=arr(rates.pim_internal_bandwidth_bytes_per_s, float),
                pim_internal_energy_j_per_bit=arr(hw.pim.internal_energy_j_per_bit, float),
                pim_mode_switch_s=arr(hw.pim.mode_switch_s, float))


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
    total_energy_j: np.ndarray  # dynamic energy + busy power (idle_w) * total time
    # sweep + (n,) engine each op runs on, a code into engine_labels (0: its default engine; Alternatives.labels);
    # None when the work has no alternatives (every op on its default engine)
    engine_choice: np.ndarray | None = None
    engine_labels: tuple[str, ...] = ()


def bound_labels(level_names: Sequence[str]) -> tuple[str, ...]:
    """Resource labels in tie-break order: compute, memory levels outermost first, network, launch."""
    return bounds.labels(level_names)


def _tiled(work: GraphWork, hwa: HardwareArrays, rate, compute_s, launch_s, level_rate, time_s, bound_index,
           memory_s):
    """(compute, time, bound index, per-level memory time, per-level bytes) with the tiled GEMM rows priced by
    ``gemm.gemm_time`` (or the launch time if longer): the main level's time is reads plus epilogue, the operand
    level's the L2 operand feed; the L2 and shared-memory bytes are the picked tile's (``gemm.level_bytes``)."""
    levels = work.level_names
    main = len(levels) - 1  # Geometry: the outermost level is the last
    operand_index = levels.index(gemm.operand_level(levels))
    rows = np.flatnonzero(work.tiled)
    operand_rate = np.where(np.isnan(hwa.operand_bytes_per_s), level_rate[..., operand_index] if operand_index != main
                            else np.inf, hwa.operand_bytes_per_s)
    cands = gemm.take_rows(work.gemm, rows)
    bw = 1.0 if work.bandwidth_scale is None else work.bandwidth_scale[rows]  # the library's share of the stream
    t = gemm.gemm_time(cands, gemm.GemmRates(
        mma_flop_per_s=rate[..., rows], main_bytes_per_s=level_rate[..., main, None] * bw,
        operand_bytes_per_s=operand_rate[..., None],
        panel_stream_bytes_per_s=hwa.sm_stream_bytes_per_s[..., None] * bw, ramp_s=hwa.ramp_s[..., None]))
    labels = bound_labels(levels)
    to_label = np.array([labels.index(label) for label in gemm.bound_labels(levels[main], levels[operand_index])])
    launch_t = np.broadcast_to(launch_s, np.broadcast_shapes(np.shape(launch_s), np.shape(time_s)))[..., rows]
    kernel_t = t.time_s
    out_shape = np.broadcast_shapes(np.shape(time_s), kernel_t.shape[:-1] + (len(work.tiled),))
    compute_s = np.array(np.broadcast_to(compute_s, out_shape))
    time_s = np.array(np.broadcast_to(time_s, out_shape))
    bound_index = np.array(np.broadcast_to(bound_index, out_shape))
    memory_s = np.array(np.broadcast_to(memory_s, out_shape + (len(levels),)))
    compute_s[..., rows] = t.mma_s
    time_s[..., rows] = np.maximum(kernel_t, launch_t)
    bound_index[..., rows] = np.where(launch_t > kernel_t, labels.index(bounds.LAUNCH), to_label[t.bound])
    tiled_memory = np.zeros(kernel_t.shape + (len(levels),))
    tiled_memory[..., main] = t.hbm_s + t.epilogue_s
    tiled_memory[..., operand_index] += t.l2_operand_s
    memory_s[..., rows, :] = tiled_memory
    level_bytes = np.array(np.broadcast_to(work.bytes, out_shape + (len(levels),)))
    l2_level, shared_level = gemm.tile_levels(levels)
    l2_bytes, shared_bytes = gemm.level_bytes(cands, t.pick)
    if l2_level is not None:
        level_bytes[..., rows, levels.index(l2_level)] = l2_bytes
    if shared_level is not None:
        level_bytes[..., rows, levels.index(shared_level)] = shared_bytes
    return compute_s, time_s, bound_index, memory_s, level_bytes


def price_work(work: GraphWork, hwa: HardwareArrays) -> WorkCost:
    """Price every op of ``work`` on (possibly swept) hardware ``hwa``; see opcost.py for the maths."""
    idx = work.rate_index
    if work.rate_keys:
        rate = hwa.peak_flop_per_s[..., idx] * hwa.compute_fraction[..., idx]
        if work.mma_scale is not None:
            rate = rate * work.mma_scale
        attention = np.where(work.attention, hwa.attention_rate_ratio[..., None], 1.0)
        compute_s = work.time_flops / attention / rate
        if work.reprogram_s is not None:  # a weight-stationary default engine loads the weights first
            compute_s = compute_s + work.reprogram_s
        compute_j = work.flops * hwa.energy_j_per_flop[..., idx]
    else:
        compute_s = compute_j = np.zeros(np.shape(hwa.kernel_launch_s) + work.flops.shape)
    level_rate = sustained_bytes_per_s(hwa.bandwidth_bytes_per_s, hwa.memory_fraction, hwa.power_limit_w,
                                       hwa.energy_j_per_bit)[..., None, :]
    touched = work.bytes > 0
    row_rate = level_rate if work.bandwidth_scale is None else level_rate * _main_scale(work)
    memory_s = work.bytes / row_rate + np.where(touched, hwa.latency_s[..., None, :], 0.0)
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
    roofline_memory_s = memory_s  # what an op moved to another engine pays (opcost.price_on_engine)
    if work.tiled.any():
        compute_s, time_s, bound_index, memory_s, level_bytes = _tiled(work, hwa, rate, compute_s, launch_s,
                                                                       level_rate[..., 0, :], time_s, bound_index,
                                                                       memory_s)
    memory_j = level_bytes * BITS_PER_BYTE * hwa.energy_j_per_bit[..., None, :]
    labels, choice = bound_labels(work.level_names), None
    if work.alternatives is not None:
        labels = placed_bound_labels(work)
        default = _Prices(compute_s=compute_s, bound_index=bound_index, memory_s=memory_s,
                          bytes=level_bytes, compute_j=compute_j, memory_j=memory_j,
                          time_s=capped_time_s(time_s, compute_j + memory_j.sum(axis=-1) + network_j,
                                               hwa.tdp_w[..., None], hwa.idle_w[..., None]))  # cost/power.py
        best, choice = _place(work, hwa, default, roofline_memory_s, level_rate[..., 0, :], launch_s, labels)
        compute_s, time_s, bound_index, memory_s = best.compute_s, best.time_s, best.bound_index, best.memory_s
        level_bytes, compute_j, memory_j = best.bytes, best.compute_j, best.memory_j
    # the clock and power cap (cost/power.py): ops below the cap run at boost, where a FLOP costs more; ops above
    # it draw TDP, stretched if need be. Only the default engine's FLOPs follow the GPU's clock.
    other_j = memory_j.sum(axis=-1) + network_j
    ratio = hwa.boost_flop_energy_ratio[..., None]
    if choice is not None:
        ratio = np.where(choice == 0, ratio, 1.0)
    time_s, energy_j = capped(time_s, compute_j, other_j, ratio, hwa.tdp_w[..., None], hwa.idle_w[..., None])
    compute_j = energy_j - other_j
    total_time_s = (time_s * work.count).sum(axis=-1)
    total_energy_j = (energy_j * work.count).sum(axis=-1) + hwa.idle_w * total_time_s
    return WorkCost(bound_labels=labels, compute_s=compute_s, memory_s=memory_s,
                    network_s=network_s, launch_s=launch_s, time_s=time_s, bound_index=bound_index,
                    bytes=level_bytes, energy_j=energy_j, compute_j=compute_j, memory_j=memory_j, network_j=network_j,
                    total_time_s=total_time_s, total_energy_j=total_energy_j, engine_choice=choice,
                    engine_labels=() if choice is None else work.alternatives.labels)


def _main_scale(work: GraphWork) -> np.ndarray:
    """(n, L) factors on each row's level rates: its library's bandwidth factor on the main memory (the outermost
    level), 1 elsewhere."""
    scale = np.ones(work.bytes.shape)
    scale[:, -1] = work.bandwidth_scale
    return scale


def placed_bound_labels(work: GraphWork) -> tuple[str, ...]:
    """``bound_labels`` of ``work``'s levels, with the PIM units' two bounds after them when rows can run there."""
    labels = bound_labels(work.level_names)
    alt = work.alternatives
    if alt is not None and alt.pim_dtypes:
        labels += (bounds.PIM_COMPUTE, bounds.PIM_INTERNAL)
    return labels


_PRICE_FIELDS = ("compute_s", "time_s", "bound_index", "memory_s", "bytes", "compute_j", "memory_j")
_PER_LEVEL = ("memory_s", "bytes", "memory_j")  # fields with a trailing level axis


@dataclass(kw_only=True)
class _Prices:
    """Per-op prices of rows on one engine: sweep + (rows,), and sweep + (rows, L) for the per-level fields."""

    compute_s: np.ndarray
    time_s: np.ndarray
    bound_index: np.ndarray
    memory_s: np.ndarray
    bytes: np.ndarray
    compute_j: np.ndarray
    memory_j: np.ndarray


def _place(work: GraphWork, hwa: HardwareArrays, default: _Prices, roofline_memory_s, level_rate, launch_s,
           labels: tuple[str, ...]) -> tuple[_Prices, np.ndarray]:
    """Each row's prices on its fastest engine at each sweep point, and the engine's code (``Alternatives.labels``):
    the default engine's prices replaced wherever a candidate is strictly faster, candidates in order (the other
    engines in the chip's order, then the PIM units), so ties keep the default engine, then the earlier one."""
    alt = work.alternatives
    candidates = []
    for e in range(len(alt.engines)):
        rows = np.flatnonzero(alt.engine_key[:, e] >= 0)
        if rows.size:
            reprogram = 0.0 if alt.reprogram_s is None else alt.reprogram_s[rows, e]
            candidates.append((rows, 1 + e, _on_engine(work, hwa, rows, alt.engine_key[rows, e], roofline_memory_s,
                                                       launch_s, reprogram)))
    rows = np.flatnonzero(alt.pim_index >= 0)
    if rows.size:
        candidates.append((rows, 1 + len(alt.engines), _on_pim(work, hwa, rows, level_rate, launch_s, labels)))
    n, levels = len(work.flops), len(work.level_names)
    sweep = np.broadcast_shapes(*(_sweep_shape(p) for p in (default, *(c for _, _, c in candidates))))
    best = _Prices(**{f: np.array(np.broadcast_to(getattr(default, f), sweep + ((n, levels) if f in _PER_LEVEL
                                                                                else (n,))))
                      for f in _PRICE_FIELDS})
    choice = np.zeros(sweep + (n,), dtype=np.int64)
    for rows, code, cand in candidates:
        # compared as the board runs them: each engine's time under the power cap (cost/power.py)
        cand = dataclasses.replace(cand, time_s=capped_time_s(
            cand.time_s, cand.compute_j + cand.memory_j.sum(axis=-1) + work.network_j[rows],
            hwa.tdp_w[..., None], hwa.idle_w[..., None]))
        faster = cand.time_s < best.time_s[..., rows]
        for f in _PRICE_FIELDS:
            target = getattr(best, f)
            if f in _PER_LEVEL:
                target[..., rows, :] = np.where(faster[..., None], getattr(cand, f), target[..., rows, :])
            else:
                target[..., rows] = np.where(faster, getattr(cand, f), target[..., rows])
        choice[..., rows] = np.where(faster, code, choice[..., rows])
    return best, choice


def _sweep_shape(prices: _Prices) -> tuple[int, ...]:
    """The sweep shape that all of ``prices``' fields broadcast to (their leading axes)."""
    return np.broadcast_shapes(*(np.shape(getattr(prices, f))[:-2 if f in _PER_LEVEL else -1]
                                 for f in _PRICE_FIELDS))


def _on_engine(work: GraphWork, hwa: HardwareArrays, rows: np.ndarray, keys: np.ndarray, roofline_memory_s,
               launch_s, reprogram_s=0.0) -> _Prices:
    """``rows`` priced on another compute engine (rate keys ``keys``): its roofline, as ``opcost.price_on_engine``
    prices an op moved off its default engine (the op's own FLOPs-equivalent at the engine's rate, attention at its
    MMA ratio; the extracted bytes per level, no tile pick)."""
    rate = hwa.peak_flop_per_s[..., keys] * hwa.compute_fraction[..., keys]
    attention = np.where(work.attention[rows], hwa.attention_rate_ratio[..., None], 1.0)
    compute_s = work.time_flops[rows] / attention / rate + reprogram_s  # weight loads first (engines.reprogram_s)
    memory_s = roofline_memory_s[..., rows, :]
    launch = launch_s[..., rows]
    shape = np.broadcast_shapes(np.shape(compute_s), memory_s.shape[:-1], np.shape(launch))
    stacked = np.stack([np.broadcast_to(compute_s, shape),
                        *(np.broadcast_to(memory_s[..., j], shape) for j in reversed(range(memory_s.shape[-1]))),
                        np.broadcast_to(work.network_s[rows], shape), np.broadcast_to(launch, shape)], axis=-1)
    nbytes = work.bytes[rows]
    return _Prices(compute_s=compute_s, time_s=np.max(stacked, axis=-1), bound_index=np.argmax(stacked, axis=-1),
                   memory_s=memory_s, bytes=nbytes, compute_j=work.flops[rows] * hwa.energy_j_per_flop[..., keys],
                   memory_j=nbytes * BITS_PER_BYTE * hwa.energy_j_per_bit[..., None, :])


def _on_pim(work: GraphWork, hwa: HardwareArrays, rows: np.ndarray, level_rate, launch_s,
            labels: tuple[str, ...]) -> _Prices:
    """``rows`` priced on the PIM units, as ``opcost.price_on_pim``: time = max(compute, in-place reads, external
    interface, launch), the first on ties, plus the mode switch; bytes and energy at the PIM's level only."""
    alt = work.alternatives
    level = alt.pim_level
    dtype = alt.pim_index[rows]
    inside, outside = alt.pim_inside[rows], alt.pim_outside[rows]
    latency = hwa.latency_s[..., level, None]
    compute_s = work.flops[rows] / (hwa.pim_peak_flop_per_s[..., dtype] * hwa.pim_compute_fraction[..., None])
    internal_rate = (hwa.pim_internal_bytes_per_s * hwa.pim_internal_fraction)[..., None]
    internal_s = np.where(inside > 0, inside / internal_rate + latency, 0.0)
    external_s = np.where(outside > 0, outside / level_rate[..., level, None] + latency, 0.0)
    launch = launch_s[..., rows]
    terms = np.stack(np.broadcast_arrays(compute_s, internal_s, external_s, launch), axis=-1)
    to_label = np.array([labels.index(label) for label in
                         (bounds.PIM_COMPUTE, bounds.PIM_INTERNAL, bounds.memory(work.level_names[level]),
                          bounds.LAUNCH)])
    level_j = (inside * BITS_PER_BYTE * hwa.pim_internal_energy_j_per_bit[..., None]
               + outside * BITS_PER_BYTE * hwa.energy_j_per_bit[..., level, None])
    memory_s, nbytes, memory_j = (_at_level(values, level, len(work.level_names))
                                  for values in (terms[..., 2], outside, level_j))
    time_s = np.max(terms, axis=-1) + hwa.pim_mode_switch_s[..., None]  # the mode switch is serial with the op
    return _Prices(compute_s=compute_s, time_s=time_s, bound_index=to_label[np.argmax(terms, axis=-1)],
                   memory_s=memory_s, bytes=nbytes, compute_j=work.flops[rows] * hwa.pim_energy_j_per_flop[..., dtype],
                   memory_j=memory_j)


def _at_level(values: np.ndarray, level: int, levels: int) -> np.ndarray:
    """Per-level array (values.shape + (levels,)) holding ``values`` at ``level`` and zeros elsewhere."""
    values = np.asarray(values, dtype=float)
    out = np.zeros(values.shape + (levels,))
    out[..., level] = values
    return out
