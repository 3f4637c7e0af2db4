"""CostModelIteration: prices an iteration of one replica of a Deployment (mapping/deployment.py) through
mapping.phases.price_phase, memoised on a coarse grid and interpolated, plus the replica's KV capacity.

A replica is one instance of a pool of the deployment (the only pool, or the prefill or the decode pool of a
disaggregated one): its layout, and the deployment's formats, expert load, EP kernels, CUDA graphs, attention
kernel and overlap. Each grid point is one ``price_phase`` step of that layout with those options, exactly as
``archsim run`` / estimate() price a step: its time and its deployment totals (dynamic energy, FLOPs and
main-memory bytes over every device of the replica), never a second graph. A grid point is one forward pass: the
scheduler already forms the iterations (its token budget and chunk limit are the engine's chunking), so the
deployment's ``prefill_chunk`` bounds the scheduler's chunks (sim/serve_deploy.py), not the point. An iteration's
energy is the dynamic energy plus the replica's static power (idle plus always-on, as estimate() counts it) on
every device for the iteration's time and the active baseline (``power.active_baseline``) for its GPU time (not the
host time the GPU waits for); the replica's ``idle_w`` is the static power alone, drawn while it does not iterate
(serving.metrics). Interpolation:
- decode: piecewise-linear in batch (grid 1, 2, 4, ...; the sequences spread round robin over the attention-DP
  ranks, as price_phase spreads them) and mean context (grid doubling from the block size) over the four
  surrounding points;
- prefill: the prompts of an iteration spread over min(prompts, dp) busy attention-DP ranks; a point prices
  ``ranks`` busy ranks each prefilling one causal prompt of ``tokens`` tokens (price_phase at batch = ranks: idle
  ranks do no work, the MoE layers see the busy ranks' tokens), piecewise-linear in ranks (grid doubling up to
  dp) and in tokens per rank (grid doubling); the attended pairs beyond a prompt's own T(T+1)/2 (chunks after
  earlier tokens, several prompts on one rank) cost the per-pair attention of the nearest grid graph.
An iteration with both prefill and decode work costs the sum of the two parts (two passes over the weights: exact
for unfused engines, an upper bound for Sarathi-style fused batches). Several prompts in one rank are priced as
one prompt of their summed tokens.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from math import fsum

from archsim.config.hardware import Hardware
from archsim.config.model import ModelConfig
from archsim.errors import ConfigError
from archsim.graph.build import check_shard
from archsim.graph.params import kv_bytes_per_token
from archsim.graph.precision import Precision, Shard
from archsim.mapping.deployment import Deployment, Pool, pool_memory
from archsim.mapping.device_memory import kv_cache_bytes, stage_range
from archsim.mapping.parallel import resolve_parallelism, smallest_fitting
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.phases import PhaseBreakdown, price_phase
from archsim.serving.config import ReplicaSpec
from archsim.serving.iteration import IterationBatch, IterationCost
from archsim.serving.kvcache import DEFAULT_KV_MEMORY_FRACTION, KvLayout, check_kv_memory_fraction


# steps per octave of the prefill token grid: four (not doubling) keep one-prompt prefill times within ~1 % on
# average where the routed experts' tile steps make time a staircase in tokens (docs/serving.md)
TOKEN_STEPS = 4


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


def _next(value: int, per_octave: int) -> int:
    """The grid value after ``value``: ``per_octave`` evenly spaced steps in each octave [2^k, 2^(k+1))."""
    return value + max(1, (1 << (value.bit_length() - 1)) // per_octave)


def _doubling(start: int, stop: int, per_octave: int = 1) -> list[int]:
    """Grid from ``start`` past ``stop``: doubling (``per_octave`` = 1), or that many steps per octave."""
    grid = [start]
    while grid[-1] < stop:
        grid.append(_next(grid[-1], per_octave))
    return grid


def _bracket(grid: list[int], x: float, per_octave: int = 1) -> tuple[int, int, float]:
    """Grid neighbours of x and the weight of the upper one (clamped below; the grid extends to cover x above)."""
    if x <= grid[0]:
        return grid[0], grid[0], 0.0
    while grid[-1] < x:
        grid.append(_next(grid[-1], per_octave))
    i = bisect.bisect_left(grid, x)
    lo, hi = grid[i - 1], grid[i]
    return lo, hi, (x - lo) / (hi - lo)


def layout_deployment(model: ModelConfig, hw: Hardware, precision: Precision, parallelism: Parallelism, *,
                      expert_load=None, attention: str = "flash", ep_mode: str | None = None,
                      cuda_graphs: bool = True, overlap: bool = True, mtp: bool = False) -> Deployment:
    """A one-pool Deployment of ``parallelism`` for serving: batch and lengths are placeholders (serving draws
    them per request), the options as ``Deployment`` has them. For callers that hold a layout rather than a
    workload (tests, ``for_deployment``); ``archsim serve`` resolves its Deployment (serving/replicas.py)."""
    return Deployment(model=model, hardware=hw, precision=precision, pools=(Pool(role="both", layout=parallelism),),
                      batch=1, prompt_len=1, output_len=1, mtp=mtp, expert_load=expert_load, attention=attention,
                      ep_mode=ep_mode, cuda_graphs=cuda_graphs, overlap=overlap)


def gemm_peak_flop_per_s(hw: Hardware, precision: Precision) -> float:
    """The matrix engine's peak for the GEMM compute format (the MFU denominator); a ConfigError when the hardware
    has none, checked before any device search (it holds for every layout)."""
    engine = hw.engine_for("matrix")
    dtype = precision.gemm_compute.name
    if dtype not in engine.peak_flop_per_s:
        raise ConfigError(hw.source_file, f"compute.{engine.name}.peak.{dtype}", "a peak for the GEMM dtype",
                          "missing")
    return engine.peak_flop_per_s[dtype]


def _causal_tokens(pairs: float) -> float:
    """The length t of a fresh causal prompt attending ``pairs`` pairs: t(t+1)/2 = pairs."""
    return (math.sqrt(8.0 * pairs + 1.0) - 1.0) / 2.0


class CostModelIteration:
    """IterationModel of one replica of ``deployment``'s ``pool`` (default: its only pool; see module docstring).
    ``direct`` prices without the grid. ``cache``: price_phase's cache, shareable between the pools of one
    deployment (one model, hardware and precision)."""

    def __init__(self, *, deployment: Deployment, pool: Pool | None = None, max_seqs: int, max_context: int,
                 block_tokens: int = 16, cache: dict | None = None):
        if pool is None:
            if len(deployment.pools) != 1:
                raise ConfigError(None, "deployment.pools", "a pool named for a disaggregated deployment",
                                  [p.role for p in deployment.pools])
            pool = deployment.pools[0]
        par = pool.layout
        if par.cp != 1:
            raise ConfigError(None, "parallelism.cp", "1 for a serving replica", par.cp)
        model = deployment.model
        self.deployment, self.pool, self.par = deployment, pool, par
        self.model, self.hw, self.precision = model, deployment.hardware, deployment.precision
        # now, not when the first iteration is priced (maybe never)
        check_shard(model, Shard(tp=par.tp, ep=par.ep if model.is_moe else 1, moe_tp=par.moe_tp if model.is_moe else 1))
        self._phase_cache: dict = {} if cache is None else cache
        self.devices = par.devices
        self.batch_grid = _doubling(1, max(1, max_seqs))
        self.context_grid = _doubling(block_tokens, max(block_tokens, max_context))
        # from one token (a short prefill is not linear in tokens), TOKEN_STEPS steps per octave
        self.token_grid = _doubling(1, max_context, TOKEN_STEPS)
        self.rank_grid = [r for r in _doubling(1, par.dp) if r < par.dp] + [par.dp]
        self._decode: dict[tuple[int, int, int], _Point] = {}
        self._prefill: dict[tuple[int, int], tuple[_Point, _Point]] = {}
        self.kv_bytes_per_token = kv_bytes_per_token(model, self.precision.kv_cache)
        # the layers of the first stage (the most layers, whose device kv_capacity_tokens sizes) by attention window
        self.kv_layout = KvLayout.of(model.attention_window(i) for i in stage_range(model, par.pp, 0))
        link = self.hw.node.scale_out
        self.swap_bytes_per_s = link.bandwidth_bytes_per_s * link.achievable_fraction

    # -- grid points ------------------------------------------------------------------------------
    def _phase(self, phase: str, batch: int, length: int, mtp: bool = False) -> PhaseBreakdown:
        """One step of ``phase`` priced as estimate() prices it, with the deployment's options; one forward (the
        scheduler already chunked the work into iterations)."""
        d = self.deployment
        # the stack's host time is added once per iteration (``iteration``), not per part of a mixed iteration
        options = {**d.step_options(phase, host=False), "mtp": mtp}
        return price_phase(d.model, d.hardware, self.par, d.precision, phase=phase, batch=batch, length=length,
                           cache=self._phase_cache, prefill_chunk=None, **options)

    @staticmethod
    def _totals(phase: PhaseBreakdown) -> _Point:
        """The step's time and its totals over every device of the replica (busy ranks, every EP rank)."""
        return _Point(time_s=phase.time_s, energy_j=phase.deployment_dynamic_energy_j,
                      flops=phase.deployment_flops, hbm_bytes=phase.deployment_main_bytes)

    def _attention_per_rank(self, phase: PhaseBreakdown) -> _Point:
        """The attention ops of one busy attention-DP rank in the step: the busiest replica's device graph (one
        micro-batch, every layer), its time on one device and its work on the rank's tp chips, per micro-batch."""
        ops = [c for c in phase.graph_cost.ops.values() if c.kind == "attention"]
        if not ops:
            return _ZERO
        mb, level = phase.micro_batches, self.hw.main_memory.name
        work = mb * self.par.tp
        return _Point(time_s=fsum(c.time_s for c in ops) * mb, energy_j=fsum(c.energy_j for c in ops) * work,
                      flops=fsum(c.flops for c in ops) * work,
                      hbm_bytes=fsum(c.bytes_by_level.get(level, 0.0) for c in ops) * work)

    def static_energy_j(self, time_s: float, busy_s: float | None = None) -> float:
        """Static power (idle plus always-on) of every device of the replica over ``time_s`` and the active
        baseline over ``busy_s`` (the GPU time; default ``time_s``), as estimate()."""
        busy_s = time_s if busy_s is None else busy_s
        return self.devices * (self.hw.static_power_w * time_s + self.hw.power.active_baseline_w * busy_s)

    def decode_point(self, batch: int, context: int, q_len: int = 1) -> _Point:
        """One decode step's time, dynamic energy, FLOPs and main-memory bytes over the replica."""
        key = (batch, context, q_len)
        if key not in self._decode:
            mtp = q_len > 1 and q_len == 1 + self.model.num_nextn_predict_layers
            # other draft lengths: each drafted token priced as one more sequence (GEMMs exact, attention approximate)
            b = batch if (q_len == 1 or mtp) else batch * q_len
            self._decode[key] = self._totals(self._phase("decode", b, max(context, q_len), mtp))
        return self._decode[key]

    def prefill_point(self, tokens: int, ranks: int = 1) -> tuple[_Point, _Point]:
        """(the step without its attention, one rank's attention ops) of ``ranks`` busy attention-DP ranks each
        prefilling one ``tokens``-token prompt: the step is their sum, with the attention's time once (the ranks
        run in parallel) and its work on every busy rank."""
        key = (ranks, tokens)
        if key not in self._prefill:
            phase = self._phase("prefill", ranks, tokens)
            whole, attn = self._totals(phase), self._attention_per_rank(phase)
            rest = _Point(time_s=whole.time_s - attn.time_s, energy_j=whole.energy_j - attn.energy_j * ranks,
                          flops=whole.flops - attn.flops * ranks, hbm_bytes=whole.hbm_bytes - attn.hbm_bytes * ranks)
            self._prefill[key] = (rest, attn)
        return self._prefill[key]

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
        """Prefill of ``tokens`` tokens attending ``pairs`` pairs, from ``seqs`` prompts spread evenly over
        min(seqs, dp) busy ranks. A rank's work outside attention is bilinear in (ranks, tokens per rank). A rank's
        attention costs what the attention of one fresh prompt attending as many pairs costs (t tokens attend
        t(t+1)/2 pairs; a chunk after earlier tokens, or several prompts, attend more than their own tokens
        would), linear in pairs between the two token points around that prompt. The ranks run in parallel:
        attention takes one rank's time, and each does its work."""
        ranks = max(1, min(seqs, self.par.dp))
        share, share_pairs = -(-tokens // ranks), -(-pairs // ranks)  # equal shares on the busy ranks
        r0, r1, wr = _bracket(self.rank_grid, ranks)
        t0, t1, wt = _bracket(self.token_grid, share, TOKEN_STEPS)
        a0, a1, _ = _bracket(self.token_grid, _causal_tokens(share_pairs), TOKEN_STEPS)
        p0, p1 = a0 * (a0 + 1) // 2, a1 * (a1 + 1) // 2
        rest, attn = _ZERO, _ZERO
        for r, w1 in ((r0, 1 - wr), (r1, wr)):
            if not w1:
                continue
            rest = rest.plus(self.prefill_point(t0, r)[0].scaled(w1 * (1 - wt)))
            if wt:
                rest = rest.plus(self.prefill_point(t1, r)[0].scaled(w1 * wt))
            if p1 > p0:
                wa = (share_pairs - p0) / (p1 - p0)
                attn = attn.plus(self.prefill_point(a0, r)[1].scaled(w1 * (1 - wa)))
                attn = attn.plus(self.prefill_point(a1, r)[1].scaled(w1 * wa))
            else:  # at (or below) a grid point: its attention per pair
                attn = attn.plus(self.prefill_point(a0, r)[1].scaled(w1 * share_pairs / p0))
        return rest.plus(_Point(time_s=attn.time_s, energy_j=attn.energy_j * ranks, flops=attn.flops * ranks,
                                hbm_bytes=attn.hbm_bytes * ranks))

    def iteration(self, batch: IterationBatch) -> IterationCost:
        total = _ZERO
        if batch.prefill_tokens:
            total = total.plus(self._prefill_cost(batch.prefill_tokens, batch.prefill_pairs, batch.prefill_seqs))
        if batch.decode_seqs:
            q_len = batch.decode_tokens // batch.decode_seqs
            mean_context = batch.decode_context_tokens / batch.decode_seqs + q_len
            total = total.plus(self._decode_cost(batch.decode_seqs, mean_context, q_len))
        time_s = self._with_host(total.time_s) + batch.swap_bytes / self.swap_bytes_per_s
        return IterationCost(time_s=time_s, energy_j=total.energy_j + self.static_energy_j(time_s, total.time_s),
                             flops=total.flops,
                             hbm_bytes=total.hbm_bytes)

    def _with_host(self, gpu_s: float) -> float:
        """An iteration's wall time: its GPU time with the stack's host time per iteration (GPU + host, or the
        longer of the two when the stack overlaps them; config/stack.py)."""
        stack = self.deployment.stack
        return gpu_s if stack is None else float(stack.host.step_s(gpu_s))

    def direct(self, batch: IterationBatch) -> IterationCost:
        """Price the batch exactly as the grid would at its own coordinates (for measuring interpolation error):
        decode at the exact batch and mean context (rounded); prefill of fresh prompts, one per busy rank, with
        equal token counts (the tokens of an iteration split evenly over min(prompts, dp) ranks)."""
        total = _ZERO
        if batch.prefill_tokens:
            ranks = max(1, min(batch.prefill_seqs, self.par.dp))
            share = batch.prefill_tokens // ranks
            if share * ranks != batch.prefill_tokens or batch.prefill_pairs != ranks * share * (share + 1) // 2:
                raise ValueError("direct pricing covers fresh prompts split evenly over the busy ranks")
            total = total.plus(self._totals(self._phase("prefill", ranks, share)))
        if batch.decode_seqs:
            q_len = batch.decode_tokens // batch.decode_seqs
            ctx = round(batch.decode_context_tokens / batch.decode_seqs) + q_len
            total = total.plus(self.decode_point(batch.decode_seqs, ctx, q_len))
        time_s = self._with_host(total.time_s)
        return IterationCost(time_s=time_s, energy_j=total.energy_j + self.static_energy_j(time_s, total.time_s),
                             flops=total.flops, hbm_bytes=total.hbm_bytes)

    # -- the replica ------------------------------------------------------------------------------
    def _free_bytes(self, kv_memory_fraction: float) -> tuple[float, float]:
        """(bytes left for KV on the most loaded device, its weights) under the memory share."""
        weights = pool_memory(self.deployment, self.par, batch=0, context=0, cache=self._phase_cache).weights_bytes
        return self.hw.main_memory.capacity_bytes * kv_memory_fraction - weights, weights

    def kv_capacity_tokens(self, kv_memory_fraction: float = DEFAULT_KV_MEMORY_FRACTION) -> int:
        """KV capacity in tokens = dp x (HBM x fraction - weights on the most loaded device) / (KV bytes one
        token of a sequence puts on a device of its attention-DP rank, in the layers of the first stage,
        which holds the most layers); 0 when the weights leave no room. The dp ranks' caches are one pool. A token
        here is a token in every layer: a sliding-window layer keeps at most its window of a sequence, so more
        tokens of long sequences fit (``kv_layout``, serving/kvcache.py)."""
        free, _ = self._free_bytes(check_kv_memory_fraction(kv_memory_fraction))
        per_token = kv_cache_bytes(self.model, self.par, self.precision, batch=self.par.dp, context=1, stage=0)
        return max(0, int(math.floor(free / per_token))) * self.par.dp

    def replica(self, *, kv_memory_fraction: float = DEFAULT_KV_MEMORY_FRACTION) -> ReplicaSpec:
        """Devices, KV capacity (``kv_capacity_tokens``), peaks, idle power and price of this replica; a
        ConfigError when the weights leave no room for KV."""
        kv_memory_fraction = check_kv_memory_fraction(kv_memory_fraction)
        hbm = self.hw.main_memory
        free, weights = self._free_bytes(kv_memory_fraction)
        if free <= 0:
            raise ConfigError(self.hw.source_file, "memory.hbm.capacity",
                              f"room for the weights ({weights / 1e9:.1f} GB per device over "
                              f"{self.devices} devices) plus KV cache", f"{hbm.capacity_bytes / 1e9:.1f} GB")
        peak = gemm_peak_flop_per_s(self.hw, self.precision)
        return ReplicaSpec(devices=self.devices, kv_capacity_tokens=self.kv_capacity_tokens(kv_memory_fraction),
                           kv_bytes_per_token=self.kv_bytes_per_token, kv_layout=self.kv_layout,
                           peak_flop_per_s=peak * self.devices,
                           peak_bytes_per_s=hbm.bandwidth_bytes_per_s * self.devices,
                           idle_w=self.hw.static_power_w * self.devices,
                           price_usd_per_hour=self.hw.price_usd_per_hour * self.devices)


@dataclass(frozen=True, kw_only=True)
class KvFit:
    """A replica candidate of a device search: it ``fits`` when its KV cache holds a sequence of ``need`` tokens
    (under its KV layout: a sliding-window layer holds at most its window of it)."""

    model: CostModelIteration | None
    replica: ReplicaSpec | None
    need: int

    @property
    def fits(self) -> bool:
        if self.replica is None:
            return False
        return self.replica.kv_layout.sequences_that_fit(self.replica.kv_capacity_tokens, self.need) >= 1


def kv_fit(deployment: Deployment, pool: Pool, *, need: int, max_seqs: int, max_context: int, block_tokens: int,
           kv_memory_fraction: float, cache: dict | None = None) -> KvFit:
    """The replica of ``pool`` and whether it leaves room for ``need`` KV tokens (weights that do not fit the
    memory share leave none)."""
    it = CostModelIteration(deployment=deployment, pool=pool, max_seqs=max_seqs, max_context=max_context,
                            block_tokens=block_tokens, cache=cache)
    room = it.kv_capacity_tokens(kv_memory_fraction) > 0
    return KvFit(model=it, replica=it.replica(kv_memory_fraction=kv_memory_fraction) if room else None, need=need)


def for_deployment(model: ModelConfig, hw: Hardware, precision: Precision, *, devices: int | str, max_seqs: int,
                   max_context: int, kv_memory_fraction: float, min_kv_tokens: int, block_tokens: int = 16,
                   degrees: dict | None = None) -> tuple[CostModelIteration, ReplicaSpec]:
    """The iteration model and replica of a one-pool layout given by model, chip and formats (no workload):
    kept for ``archsim compare`` and benchmarks/bench_serve.py; ``archsim serve`` resolves its Deployment through
    mapping.resolve (serving/replicas.py). ``devices="auto"`` takes the smallest of
    mapping.parallel.candidate_device_counts (``smallest_fitting``) whose layout (``resolve_parallelism``, auto
    degrees as ``archsim run`` chooses them) leaves room for ``min_kv_tokens`` of KV; uniform expert load and the
    Deployment's default options."""
    kv_memory_fraction = check_kv_memory_fraction(kv_memory_fraction)
    gemm_peak_flop_per_s(hw, precision)
    degrees = degrees or {}
    if degrees.get("tp") or degrees.get("moe_tp"):
        # a fixed degree that cannot split the model fails every count: say so, not the last count's layout error
        check_shard(model, Shard(tp=degrees.get("tp") or 1, moe_tp=degrees.get("moe_tp") or 1))
    cache: dict = {}

    def candidate(n: int) -> KvFit:
        par = resolve_parallelism(model, hw, n, batch=1, precision=precision, context=max_context, cache=cache,
                                  **degrees)
        dep = layout_deployment(model, hw, precision, par)
        return kv_fit(dep, dep.pools[0], need=min_kv_tokens, max_seqs=max_seqs, max_context=max_context,
                      block_tokens=block_tokens, kv_memory_fraction=kv_memory_fraction, cache=cache)

    if devices == "auto":
        fit = smallest_fitting(hw, candidate)
    else:
        fit = candidate(devices)
        if fit.replica is None:
            fit.model.replica(kv_memory_fraction=kv_memory_fraction)  # raises: the weights leave no room
    if not fit.fits:
        raise ConfigError(hw.source_file, "devices", f"room for {min_kv_tokens} KV tokens",
                          f"{fit.replica.kv_capacity_tokens if fit.replica else 0} on {fit.model.devices} devices")
    return fit.model, fit.replica
