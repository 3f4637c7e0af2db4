"""CostModelIteration: prices a replica's iteration through the graph builders and the cost model, memoised
on a coarse grid and interpolated, plus the replica's KV capacity from HBM minus sharded weights.

Each grid point is archsim.mapping.phases.price_phase for the replica's Parallelism (the sharded
per-device graph, with the EP group's routed tokens and the expert layout of the phase's EP exchange, plus
the TP all-reduce / EP dispatch-combine / PP transfers it adds, with DeepSeek-style micro-batch overlap):
its time, and its deployment dynamic energy, FLOPs and main-memory bytes (every stage's devices), read from
the same priced phase, never a second graph (``archsim run`` / estimate() report the same step). An
iteration's energy is that dynamic energy plus the replica's static power (idle plus always-on, as
estimate() counts it) on every device for the iteration's time; the replica's ``idle_w`` is the same static
power, drawn while it does not iterate (serving.metrics). Interpolation:
- decode: piecewise-linear in batch (grid 1, 2, 4, ...) and mean context (grid doubling from the block
  size) over the four surrounding points;
- prefill: the prompts of an iteration spread over min(prompts, dp) attention-DP ranks; each rank's share
  is priced piecewise-linearly in new tokens (grid doubling) as one causal prompt of that length, plus the
  attended pairs beyond that prompt's own T(T+1)/2 (chunks after earlier tokens, several prompts on one
  rank) at the per-pair attention cost of the nearest grid graph.
An iteration with both prefill and decode work costs the sum of the two parts (two passes over the
weights: exact for unfused engines, an upper bound for Sarathi-style fused batches). Several prompts in
one rank are priced as one prompt of their summed tokens. Prefill dynamic energy, FLOPs and bytes count the
busy ranks' devices (the phase's deployment totals / dp per rank); the static power counts every device.
"""
from __future__ import annotations

import bisect
import math
from math import fsum

from archsim.config.hardware import Hardware
from archsim.config.model import ModelConfig
from archsim.errors import ConfigError
from archsim.graph.build import check_shard
from archsim.graph.params import kv_bytes_per_token
from archsim.graph.precision import Precision, Shard
from archsim.mapping.device_memory import kv_cache_bytes, memory_per_device
from archsim.mapping.phases import PhaseBreakdown, price_phase
from archsim.mapping.parallelism import Parallelism
from archsim.serving.config import ReplicaSpec
from archsim.serving.iteration import IterationBatch, IterationCost
from archsim.serving.kvcache import DEFAULT_KV_MEMORY_FRACTION, check_kv_memory_fraction


class _Point(tuple):
    """(time_s, energy_j, flops, hbm_bytes): a plain tuple, because interpolation runs once per iteration.
    ``energy_j`` is dynamic energy only; CostModelIteration adds the static power over the iteration's time."""

    __slots__ = ()

    def __new__(cls, *, time_s: float, energy_j: float, flops: float, hbm_bytes: float):
        return tuple.__new__(cls, (time_s, energy_j, flops, hbm_bytes))

    time_s = property(lambda self: self[0])
    energy_j = property(lambda self: self[1])
    flops = property(lambda self: self[2])
    hbm_bytes = property(lambda self: self[3])

    def scaled(self, a: float) -> "_Point":
        return tuple.__new__(_Point, (self[0] * a, self[1] * a, self[2] * a, self[3] * a))

    def plus(self, o: "_Point") -> "_Point":
        return tuple.__new__(_Point, (self[0] + o[0], self[1] + o[1], self[2] + o[2], self[3] + o[3]))


_ZERO = _Point(time_s=0.0, energy_j=0.0, flops=0.0, hbm_bytes=0.0)


def _doubling(start: int, stop: int) -> list[int]:
    grid = [start]
    while grid[-1] < stop:
        grid.append(grid[-1] * 2)
    return grid


def _bracket(grid: list[int], x: float) -> tuple[int, int, float]:
    """Grid neighbours of x and the weight of the upper one (clamped below; the grid doubles to cover x above)."""
    if x <= grid[0]:
        return grid[0], grid[0], 0.0
    while grid[-1] < x:
        grid.append(grid[-1] * 2)
    i = bisect.bisect_left(grid, x)
    lo, hi = grid[i - 1], grid[i]
    return lo, hi, (x - lo) / (hi - lo)


class CostModelIteration:
    """IterationModel backed by the cost model (see module docstring). ``direct`` prices without the grid."""

    def __init__(self, *, model: ModelConfig, hw: Hardware, precision: Precision, parallelism: Parallelism,
                 max_seqs: int, max_context: int, block_tokens: int = 16, attention: str = "flash"):
        if parallelism.cp != 1:
            raise ConfigError(None, "parallelism.cp", "1 for a serving replica", parallelism.cp)
        self.model, self.hw, self.precision, self.par = model, hw, precision, parallelism
        self.shard = Shard(tp=parallelism.tp, ep=parallelism.ep if model.is_moe else 1)
        check_shard(model, self.shard)  # now, not when the first iteration is priced (maybe never)
        self._phase_cache: dict = {}
        self.devices = parallelism.devices
        self.attention = attention
        self.batch_grid = _doubling(1, max(1, max_seqs))
        self.context_grid = _doubling(block_tokens, max(block_tokens, max_context))
        self.token_grid = _doubling(block_tokens, max(block_tokens, max_context))
        self._decode: dict[tuple[int, int, int], _Point] = {}
        self._prefill: dict[int, tuple[_Point, _Point]] = {}
        self.kv_bytes_per_token = kv_bytes_per_token(model, precision.kv_cache)
        self.swap_bytes_per_s = hw.node.scale_out.bandwidth_bytes_per_s * hw.node.scale_out.achievable_fraction

    # -- grid points ------------------------------------------------------------------------------
    def _phase(self, phase: str, batch: int, length: int, mtp: bool = False) -> PhaseBreakdown:
        return price_phase(self.model, self.hw, self.par, self.precision, phase=phase, batch=batch, length=length,
                           mtp=mtp, cache=self._phase_cache, attention=self.attention)

    def _per_graph(self, phase: PhaseBreakdown) -> float:
        """Devices-times-repeats that turn one device's priced graph (graph_cost, one micro-batch, every layer)
        into the deployment's totals, as price_phase sums them (micro_batches / cp per device, each stage's
        layers on its tp * cp * dp devices)."""
        return phase.micro_batches / self.par.cp * self.par.stage_devices

    def _deployment(self, phase: PhaseBreakdown) -> _Point:
        """The phase's step over every device: its time, deployment dynamic energy, FLOPs and main-memory bytes."""
        # main-memory bytes: the same per-layer bytes price_phase sums into main_memory_bytes_per_device
        hbm = fsum(phase.graph_cost.main_bytes_by_layer.values()) * self._per_graph(phase)
        return _Point(time_s=phase.time_s, energy_j=phase.deployment_dynamic_energy_j,
                      flops=phase.deployment_flops, hbm_bytes=hbm)

    def _attention(self, phase: PhaseBreakdown) -> _Point:
        """The attention ops of the phase's graph, over the deployment (time: one device's, every layer)."""
        ops = [c for c in phase.graph_cost.ops.values() if c.kind == "attention"]
        if not ops:
            return _ZERO
        k, level = self._per_graph(phase), self.hw.main_memory.name
        return _Point(time_s=fsum(c.time_s for c in ops) * phase.micro_batches / self.par.cp,
                      energy_j=fsum(c.energy_j for c in ops) * k, flops=fsum(c.flops for c in ops) * k,
                      hbm_bytes=fsum(c.bytes_by_level.get(level, 0.0) for c in ops) * k)

    def static_energy_j(self, time_s: float) -> float:
        """Static power (idle plus always-on) of every device of the replica over ``time_s``, as estimate()."""
        return self.hw.static_power_w * self.devices * time_s

    def decode_point(self, batch: int, context: int, q_len: int = 1) -> _Point:
        """One decode step's time, dynamic energy, FLOPs and main-memory bytes over the replica."""
        key = (batch, context, q_len)
        if key not in self._decode:
            mtp = q_len > 1 and q_len == 1 + self.model.num_nextn_predict_layers
            # other draft lengths: each drafted token priced as one more sequence (GEMMs exact, attention approximate)
            b = batch if (q_len == 1 or mtp) else batch * q_len
            self._decode[key] = self._deployment(self._phase("decode", b, max(context, q_len), mtp))
        return self._decode[key]

    def prefill_point(self, tokens: int) -> tuple[_Point, _Point]:
        if tokens not in self._prefill:
            self._prefill[tokens] = self._prefill_priced(tokens)
        return self._prefill[tokens]

    def _prefill_priced(self, tokens: int) -> tuple[_Point, _Point]:
        """(whole step, its attention ops) of one attention-DP rank prefilling one ``tokens`` prompt: the
        phase prices every rank alike (each with one prompt), so one rank's share is its totals / dp."""
        phase = self._phase("prefill", 1, tokens)
        dp = self.par.dp
        whole, attn = self._deployment(phase), self._attention(phase)
        return (_Point(time_s=whole.time_s, energy_j=whole.energy_j / dp, flops=whole.flops / dp,
                       hbm_bytes=whole.hbm_bytes / dp),
                _Point(time_s=attn.time_s, energy_j=attn.energy_j / dp, flops=attn.flops / dp,
                       hbm_bytes=attn.hbm_bytes / dp))

    @property
    def grid_points(self) -> tuple[int, int]:
        """(decode, prefill) grid points priced so far: the cost of the memo, reported by ``serve``."""
        return len(self._decode), len(self._prefill)

    # -- interpolation ----------------------------------------------------------------------------
    def _decode_cost(self, seqs: int, mean_context: float, q_len: int) -> _Point:
        b0, b1, wb = _bracket(self.batch_grid, seqs)
        c0, c1, wc = _bracket(self.context_grid, mean_context)
        out = _ZERO
        for b, w1 in ((b0, 1 - wb), (b1, wb)):
            for c, w2 in ((c0, 1 - wc), (c1, wc)):
                if w1 * w2:
                    out = out.plus(self.decode_point(b, c, q_len).scaled(w1 * w2))
        return out

    def _prefill_cost(self, tokens: int, pairs: int, seqs: int) -> _Point:
        ranks = max(1, min(seqs, self.par.dp))
        if ranks > 1:  # equal shares on busy ranks, which run in parallel: time once, work per rank
            share = self._prefill_cost(-(-tokens // ranks), -(-pairs // ranks), 1)
            return _Point(time_s=share.time_s, energy_j=share.energy_j * ranks, flops=share.flops * ranks,
                          hbm_bytes=share.hbm_bytes * ranks)
        t0, t1, wt = _bracket(self.token_grid, tokens)
        whole0 = self.prefill_point(t0)[0]
        if tokens < t0:  # below the grid: scale the smallest point by tokens (linear work)
            out = whole0.scaled(tokens / t0)
        else:
            out = whole0.scaled(1 - wt)
            if wt:
                out = out.plus(self.prefill_point(t1)[0].scaled(wt))
        extra_pairs = pairs - tokens * (tokens + 1) // 2
        nearest = t1 if wt > 0.5 else t0
        _, attn = self.prefill_point(nearest)
        per_pair = attn.scaled(1.0 / (nearest * (nearest + 1) // 2))
        return out.plus(per_pair.scaled(extra_pairs)) if extra_pairs > 0 else out

    def iteration(self, batch: IterationBatch) -> IterationCost:
        total = _ZERO
        if batch.prefill_tokens:
            total = total.plus(self._prefill_cost(batch.prefill_tokens, batch.prefill_pairs, batch.prefill_seqs))
        if batch.decode_seqs:
            q_len = batch.decode_tokens // batch.decode_seqs
            mean_context = batch.decode_context_tokens / batch.decode_seqs + q_len
            total = total.plus(self._decode_cost(batch.decode_seqs, mean_context, q_len))
        time_s = total.time_s + batch.swap_bytes / self.swap_bytes_per_s
        return IterationCost(time_s=time_s, energy_j=total.energy_j + self.static_energy_j(time_s), flops=total.flops,
                             hbm_bytes=total.hbm_bytes)

    def direct(self, batch: IterationBatch) -> IterationCost:
        """Price the batch exactly as the grid would at its own coordinates (for measuring interpolation error):
        decode at the exact batch and mean context (rounded), prefill as one prompt of the exact token count
        (single-sequence prefills only)."""
        total = _ZERO
        if batch.prefill_tokens:
            if batch.prefill_seqs > 1:
                raise ValueError("direct pricing covers single-sequence prefills")
            total = total.plus(self._prefill_priced(batch.prefill_tokens)[0])
        if batch.decode_seqs:
            q_len = batch.decode_tokens // batch.decode_seqs
            ctx = round(batch.decode_context_tokens / batch.decode_seqs) + q_len
            total = total.plus(self.decode_point(batch.decode_seqs, ctx, q_len))
        return IterationCost(time_s=total.time_s, energy_j=total.energy_j + self.static_energy_j(total.time_s),
                             flops=total.flops, hbm_bytes=total.hbm_bytes)

    # -- the replica ------------------------------------------------------------------------------
    def replica(self, *, kv_memory_fraction: float = DEFAULT_KV_MEMORY_FRACTION) -> ReplicaSpec:
        """Devices, KV capacity, peaks, idle power and price of this replica.

        KV capacity in tokens = dp x (HBM x fraction - weights on the most loaded device) / (KV bytes one
        token of a sequence puts on a device of its attention-DP rank, in the layers of the first stage,
        which holds the most layers). The scheduler treats the dp ranks' caches as one pool.
        """
        kv_memory_fraction = check_kv_memory_fraction(kv_memory_fraction)
        hbm = self.hw.main_memory
        mem = memory_per_device(self.model, self.par, self.precision, capacity_bytes=hbm.capacity_bytes)
        per_token = kv_cache_bytes(self.model, self.par, self.precision, batch=self.par.dp, context=1, stage=0)
        free = hbm.capacity_bytes * kv_memory_fraction - mem.weights_bytes
        if free <= 0:
            raise ConfigError(self.hw.source_file, "memory.hbm.capacity",
                              f"room for the weights ({mem.weights_bytes / 1e9:.1f} GB per device over "
                              f"{self.devices} devices) plus KV cache", f"{hbm.capacity_bytes / 1e9:.1f} GB")
        engine = self.hw.engine_for("matrix")
        dtype = self.precision.gemm_compute.name
        if dtype not in engine.peak_flop_per_s:
            raise ConfigError(self.hw.source_file, f"compute.{engine.name}.peak.{dtype}", "a peak for the GEMM dtype",
                              "missing")
        return ReplicaSpec(devices=self.devices, kv_capacity_tokens=int(math.floor(free / per_token)) * self.par.dp,
                           kv_bytes_per_token=self.kv_bytes_per_token,
                           peak_flop_per_s=engine.peak_flop_per_s[dtype] * self.devices,
                           peak_bytes_per_s=hbm.bandwidth_bytes_per_s * self.devices,
                           idle_w=self.hw.static_power_w * self.devices,
                           price_usd_per_hour=self.hw.price_usd_per_hour * self.devices)


def for_deployment(model: ModelConfig, hw: Hardware, precision: Precision, *, devices: int | str, max_seqs: int,
                   max_context: int, kv_memory_fraction: float, min_kv_tokens: int, block_tokens: int = 16,
                   degrees: dict | None = None) -> tuple[CostModelIteration, ReplicaSpec]:
    """The iteration model and replica of one deployment. ``devices="auto"`` takes the smallest device count
    (archsim.mapping.parallel.candidate_device_counts) whose layout leaves room for ``min_kv_tokens`` of KV."""
    from archsim.mapping.parallel import candidate_device_counts

    kv_memory_fraction = check_kv_memory_fraction(kv_memory_fraction)
    degrees = degrees or {}
    if devices == "auto" and (degrees.get("tp") or degrees.get("ep")):
        # a fixed degree that cannot split the model fails every count: say so, not the last count's layout error
        check_shard(model, Shard(tp=degrees.get("tp") or 1, ep=(degrees.get("ep") or 1) if model.is_moe else 1))
    counts = candidate_device_counts(hw) if devices == "auto" else [devices]
    last_error: ConfigError | None = None
    for n in counts:
        for par in _layouts(model, hw, precision, n, max_context, degrees):
            if isinstance(par, ConfigError):
                last_error = par
                continue
            try:
                it = CostModelIteration(model=model, hw=hw, precision=precision, parallelism=par, max_seqs=max_seqs,
                                        max_context=max_context, block_tokens=block_tokens)
                replica = it.replica(kv_memory_fraction=kv_memory_fraction)
            except ConfigError as err:
                last_error = err
                continue
            if replica.kv_capacity_tokens >= min_kv_tokens:
                return it, replica
            last_error = ConfigError(hw.source_file, "devices", f"room for {min_kv_tokens} KV tokens",
                                     f"{replica.kv_capacity_tokens} on {n} devices")
    raise last_error or ConfigError(hw.source_file, "devices", "a device count that fits the model", devices)


def _layouts(model, hw, precision, devices: int, context: int, degrees: dict):
    """The auto layout on ``devices`` chips, then (if pp was left open) the same with each pipeline depth,
    so a model whose weights need a pipeline still finds one. An invalid layout is yielded as its error."""
    from archsim.mapping.parallel import resolve_parallelism

    try:
        first = resolve_parallelism(model, hw, devices, batch=1, precision=precision, context=context, **degrees)
    except ConfigError as err:
        yield err
        return
    yield first
    if degrees.get("pp") is not None:
        return
    rest = devices // first.tp
    for pp in range(2, min(rest, model.num_hidden_layers) + 1):
        if rest % pp == 0:
            try:
                yield resolve_parallelism(model, hw, devices, batch=1, precision=precision, context=context,
                                          **{**degrees, "pp": pp})
            except ConfigError:
                continue
