"""A priced step as data: its forwards, each with its device graphs (per-op prices), how often each op counts
on the bottleneck device and over the instance, and the communication of each layer kind. ``PhaseModel.evaluate``
assembles the step (compute, layer-by-layer overlap, pipeline bubble, device and deployment totals) from per-op
prices, so ``mapping.phases.price_phase`` (the chip's own rates) and a hardware sweep (rates with a sweep axis)
share one assembly."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from math import fsum
from typing import Callable

import numpy as np

from archsim.config.stack import HostOverhead
from archsim.cost.work import price_work


@dataclass(frozen=True, kw_only=True)
class GraphTerm:
    """A priced device graph of a forward and how often each of its op rows (``cost.work``) counts: on the
    bottleneck device per micro-batch ``time_count`` instances (those on its pipeline stage) x ``time_scale``
    (1/cp: its time), over the instance per forward ``total_count`` x ``total_scale`` (the busy replicas' chips for
    ops outside the routed experts, every EP rank's mean routed work for the routed ones). Counts are whole
    instances, so a compact graph's sums equal the full graph's bit for bit. ``cuda_graph``: graph-replayed."""

    cost: PhaseCost
    time_count: np.ndarray
    time_scale: float
    total_count: np.ndarray
    total_scale: float
    cuda_graph: bool = False


def _weighted(values, counts: np.ndarray, scale: float):
    """sum(values x counts) x scale: a correctly rounded sum of whole instances for one point (order-free, as
    cost/phase.py sums), a plain sum over the last axis for a sweep."""
    if np.ndim(values) == 1:
        return fsum(np.repeat(values, counts.astype(np.int64)).tolist()) * scale
    return (values * counts).sum(axis=-1) * scale


@dataclass(frozen=True, kw_only=True)
class LayerKind:
    """The bottleneck stage's layers of one kind (dense or MoE): ``rows`` of the first term's ops that make one
    layer of the kind, ``layers`` of them on the stage, each with ``comm_s`` of communication per micro-batch."""

    rows: np.ndarray
    layers: int
    comm_s: float
    sm_fraction: float = 0.0  # SMs the layer's exchange holds: overlapped compute runs on the rest


@dataclass(frozen=True, kw_only=True)
class ForwardModel:
    """One forward shape of a step: how often it runs, its micro-batches, its graphs and its communication (per
    layer kind, so overlap is priced layer by layer)."""

    count: float
    mb: int
    terms: tuple[GraphTerm, ...]
    comm_mb_s: float
    pp_send_s: float
    pp: int
    overlapped: bool
    kinds: tuple[LayerKind, ...] = ()


@dataclass(frozen=True, kw_only=True)
class PhaseTotals:
    """A step's times and work (floats, or arrays with a sweep axis)."""

    compute_s: object
    communication_s: object
    exposed_s: object
    bubble_s: object
    device_flops: object
    device_main_bytes: object
    device_dynamic_energy_j: object
    deployment_flops: object
    deployment_main_bytes: object
    deployment_dynamic_energy_j: object
    host_s: object = 0.0  # host time per step the GPU waits for (PhaseModel.host)

    @property
    def time_s(self):
        return self.compute_s + self.exposed_s + self.bubble_s + self.host_s


@dataclass(frozen=True, kw_only=True)
class PhaseModel:
    """A priced step as data: its forwards, each with its graphs and weights. ``evaluate`` assembles the step from
    per-op prices, so ``price_phase`` (the chip's own rates) and a hardware sweep (rates with a sweep axis,
    whatif/sweep.py) share one assembly."""

    forwards: tuple[ForwardModel, ...]
    main_level: int
    # the stack's host time per iteration: every forward is one scheduler iteration, which takes GPU + host, or
    # max(GPU, host) when the stack overlaps the two (config/stack.py); None: no host time
    host: HostOverhead | None = None

    def evaluate(self, arrays_for: Callable[[GraphTerm], object] | None = None) -> PhaseTotals:
        """The step's totals; ``arrays_for(term)`` gives the HardwareArrays to price a term's work with (None: the
        prices the term was built with)."""
        parts = {f.name: 0.0 for f in dataclasses.fields(PhaseTotals)}
        for fwd in self.forwards:
            compute = flops = nbytes = energy = 0.0
            t_flops = t_bytes = t_energy = 0.0
            first_times = None
            for term in fwd.terms:
                work = term.cost.work
                wc = term.cost.work_cost if arrays_for is None else price_work(work, arrays_for(term))
                if first_times is None:
                    first_times = (wc.time_s, term.time_scale)
                main = wc.bytes[..., self.main_level]
                if term.time_count.any():
                    c, k = term.time_count, term.time_scale
                    compute = compute + _weighted(wc.time_s, c, k)
                    flops = flops + _weighted(work.flops, c, k)
                    nbytes = nbytes + _weighted(main, c, k)
                    energy = energy + _weighted(wc.energy_j, c, k)
                c, k = term.total_count, term.total_scale
                t_flops = t_flops + _weighted(work.flops, c, k)
                t_bytes = t_bytes + _weighted(main, c, k)
                t_energy = t_energy + _weighted(wc.energy_j, c, k)
            comm = (fwd.comm_mb_s + fwd.pp_send_s) * fwd.mb
            exposed = _exposed(fwd, first_times, compute) if fwd.overlapped else comm + 0.0 * compute
            if fwd.overlapped:
                bubble = (fwd.pp - 1) * np.maximum(compute, fwd.comm_mb_s + fwd.pp_send_s)
            else:
                bubble = (fwd.pp - 1) * (compute + fwd.comm_mb_s + fwd.pp_send_s)
            n, mb = fwd.count, fwd.mb
            gpu = compute * mb + exposed + bubble
            host = 0.0 * gpu if self.host is None else self.host.step_s(gpu) - gpu
            for key, value in (("compute_s", compute * mb), ("communication_s", comm), ("exposed_s", exposed),
                               ("bubble_s", bubble), ("host_s", host), ("device_flops", flops * mb), ("device_main_bytes", nbytes * mb),
                               ("device_dynamic_energy_j", energy * mb), ("deployment_flops", t_flops),
                               ("deployment_main_bytes", t_bytes), ("deployment_dynamic_energy_j", t_energy)):
                parts[key] = parts[key] + n * value
        return PhaseTotals(**parts)


def _exposed(fwd: ForwardModel, first_times, compute):
    """Communication left exposed by two-micro-batch overlap, layer by layer: a layer's collectives hide behind
    the other micro-batch's compute of the same layer (a dense layer's spare compute cannot hide a MoE layer's
    exchange); while an exchange holds a share f of the SMs the compute beside it runs on the rest, so a layer
    takes max(comm, compute + f x comm) and exposes max(comm - compute, f x comm) per micro-batch. The pipeline
    send hides behind what compute is left."""
    times, scale = first_times
    exposed = 0.0
    layer_compute = 0.0
    for kind in fwd.kinds:
        per_layer = times[..., kind.rows].sum(axis=-1) * scale
        layer_compute = layer_compute + kind.layers * per_layer
        exposed = exposed + kind.layers * fwd.mb * np.maximum(kind.comm_s - per_layer, kind.sm_fraction * kind.comm_s)
    rest = compute - layer_compute  # embedding, head: nothing of a layer's to hide
    return exposed + fwd.mb * np.maximum(0.0, fwd.pp_send_s - rest)
