"""Work of one op on one chip's memory geometry: time-equivalent FLOPs and bytes per memory level.

This is the hardware-geometry half of pricing (tile sizes from SRAM, L2 capture); rates, fractions
and energies are applied later, so a sweep over bandwidths or peaks reuses the same work.

Levels: the outermost level (``hw.main_memory``, HBM or its what-if replacement) gets the off-chip
bytes, ``l2`` the bytes between L2 and the SMs, ``shared`` the bytes staged through shared memory.
Register-file traffic is not modelled (its energy is part of the energy per FLOP). Streaming kinds
(norm, rope, elementwise, router, embedding, softmax, topk, combine, ...) touch their operands once:
main memory and L2 both carry the operand bytes, shared memory none.
A chip without a ``shared`` level (a wafer-scale or SRAM dataflow chip whose main memory is on-chip
SRAM next to the cores) has no tiling information: its tiled kinds move their compulsory bytes.

GEMMs on a chip with a GEMM tile menu (``kernel:`` fields) are *tiled*: their time is the kernel model's
(``cost/efficiency.py``: the tile of ``gemm_tile_menu`` that ``pick_tiling`` picks, and ``tiled_time_terms``,
the terms ``cost/kernel_model.py`` uses): ramp + max(wave-quantised MMA, main-memory reads / bandwidth (no
faster than the weight panels at one SM's streaming rate), the tiles' L2 operand panels / the operand feed)
+ the output epilogue / bandwidth. ``OpWork`` then carries the split the time needs (``stream_bytes`` read
in the main loop, ``epilogue_bytes`` written after it, and the tile menu's terms, picked at pricing time so
that a sweep of rates re-tiles as the library would). The bytes that set the time are the bytes that cost
energy: once the tile is picked, the L2 level carries that tile's operand panels (``tile_operand_bytes``, one
read per TMA multicast group) plus the output, and shared memory the panels every CTA stages (multicast
shares the L2 read, not the shared-memory fill; ``tile_shared_bytes``) plus the output (``picked_level_bytes``).
Main memory keeps ``gemm_traffic``'s bytes, which the time uses too. ``bytes_by_level`` holds
``gemm_traffic``'s SRAM-tile bytes, the rule for GEMMs without a tile menu (and for a tiled GEMM placed on
another engine, which is priced by the plain roofline). The graph keeps what the kernel model lacks:
the busiest expert's bound, distinct-expert weight reads and the L2 banding of re-read operands (reads
beyond the compulsory ones when the operands do not fit L2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from archsim.config.hardware import Hardware
from archsim.config.kernel_fields import KernelFields
from archsim.cost.efficiency import GemmTiling, gemm_tile_menu, tile_operand_bytes
from archsim.cost.attention_traffic import flash_hbm_bytes, naive_hbm_bytes
from archsim.cost.gemm_traffic import TiledTraffic, gemm_tile, gemm_traffic, grouped_gemm_traffic
from archsim.dtypes import BITS_PER_BYTE, BY_NAME
from archsim.errors import ConfigError
from archsim.graph.op import ExpertRowLayout, Op

ATTENTION_MODELS = ("flash", "naive")


@dataclass(frozen=True, kw_only=True)
class Geometry:
    """The sizes of a chip that shape traffic (not its rates)."""

    level_names: tuple[str, ...]
    main: str
    sram_per_sm_bytes: float
    l2_bytes: float
    register_per_sm_bytes: float | None
    sm_count: int
    kernel: KernelFields | None = None  # tile menu for wave quantisation (docs/fidelity.md); optional
    # attention's sustained MMA rate over the GEMM rate the engine's achievable_fraction gives
    # (kernel.clock_under_load / clock_boost x attention_mma_fraction / achievable_fraction); 1 without fields
    attention_rate_ratio: float = 1.0
    # the dtypes the matrix engine lists, when the chip has a GEMM tile menu (its GEMMs are tiled); else empty
    matrix_dtypes: tuple[str, ...] = ()

    @staticmethod
    def of(hw: Hardware) -> "Geometry":
        """The geometry of ``hw``: SRAM and registers per SM (per unit, else capacity over units or SMs), L2 size."""
        names = tuple(hw.memory)
        shared = hw.memory.get("shared")
        if shared is None:
            sram = 0.0
        elif shared.per_unit_bytes is not None:
            sram = shared.per_unit_bytes
        else:
            sram = shared.capacity_bytes / max(1, shared.units or hw.sm_count)
        l2 = hw.memory.get("l2")
        regs = hw.memory.get("registers")
        reg_bytes = None
        if regs is not None:
            reg_bytes = regs.per_unit_bytes or regs.capacity_bytes / max(1, regs.units or hw.sm_count)
        matrix_dtypes: tuple[str, ...] = ()
        if hw.kernel is not None and hw.kernel.has_tiles and sram > 0:
            try:
                matrix_dtypes = tuple(hw.engine_for("matrix").peak_flop_per_s)
            except KeyError:
                pass
        return Geometry(level_names=names, main=names[-1], sram_per_sm_bytes=sram, register_per_sm_bytes=reg_bytes,
                        l2_bytes=0.0 if l2 is None else l2.capacity_bytes, sm_count=hw.sm_count,
                        kernel=hw.kernel, attention_rate_ratio=_attention_rate_ratio(hw),
                        matrix_dtypes=matrix_dtypes)


def level_rate(level, clock_fraction: float = 1.0) -> float:
    """Sustained bytes/s of a memory level: achievable bandwidth (scaled by the core clock fraction for
    on-chip levels), capped by its power limit."""
    rate = level.bandwidth_bytes_per_s * level.achievable_fraction * clock_fraction
    if level.power_limit_w is not None and level.energy_j_per_bit > 0:
        rate = min(rate, level.power_limit_w / (BITS_PER_BYTE * level.energy_j_per_bit))
    return rate


def gemm_operand_field(hw: Hardware) -> float | None:
    """``kernel.gemm_operand_bandwidth`` times the thermal ``compute_clock_fraction`` (the L2 -> shared-memory
    feed runs at the core clock, like every on-chip level); None when the chip has no such field."""
    fields = hw.kernel
    if fields is None or fields.gemm_operand_bandwidth_bytes_per_s is None:
        return None
    return fields.gemm_operand_bandwidth_bytes_per_s * hw.compute_clock_fraction


def gemm_operand_rate(hw: Hardware) -> float:
    """Rate at which a tiled GEMM's tiles stream their operand panels from L2: ``gemm_operand_field``, else
    the L2 level's sustained rate, else unbounded (no L2 described), as ``cost/kernel_model.py`` has it."""
    field = gemm_operand_field(hw)
    if field is not None:
        return field
    l2 = hw.memory.get("l2")
    if l2 is None or l2 is hw.main_memory:
        return float("inf")
    return level_rate(l2, hw.compute_clock_fraction)


@dataclass(frozen=True, kw_only=True)
class OpWork:
    """What an op costs before rates: FLOPs for time, bytes per level, network bytes, launches."""

    time_flops: float
    bytes_by_level: dict[str, float]
    network_bytes: float
    launches: int
    # a tiled GEMM (module docstring): main-memory bytes read in its main loop, output bytes stored after
    # it, and per entry of its tile menu (efficiency.gemm_tile_menu) the wave-quantised FLOPs, the operand
    # bytes its tiles stream from L2 (time and L2 energy), the operand bytes they stage through shared memory
    # (shared-memory energy) and its weight panels' per-SM streaming time. Its time_flops is then the floor
    # under the tile's FLOPs (its own FLOPs, the busiest expert's bound); the tile is picked when the rates
    # are known (efficiency.pick_tiling), and ``picked_level_bytes`` gives the bytes per level at that pick.
    tiled: bool = False
    stream_bytes: float = 0.0
    epilogue_bytes: float = 0.0
    tile_flops: tuple[float, ...] = ()
    tile_operand_bytes: tuple[float, ...] = ()
    tile_stream_s: tuple[float, ...] = ()
    tile_shared_bytes: tuple[float, ...] = ()


def tile_levels(level_names: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(L2 level, shared-memory level) whose bytes a tiled GEMM's picked tile sets: each name when the chip has
    that level and it is not its main memory (as ``_levels`` fills them), else None."""
    main = level_names[-1]
    return (("l2" if "l2" in level_names and main != "l2" else None),
            ("shared" if "shared" in level_names and main != "shared" else None))


def picked_level_bytes(work: OpWork, pick: int) -> dict[str, float]:
    """Bytes per level of a tiled GEMM run with menu entry ``pick``: L2 carries the tile's operand panels plus
    the output (``epilogue_bytes``), shared memory the panels each CTA stages plus the output; main memory (and
    every level of an untiled op) as ``bytes_by_level``."""
    out = dict(work.bytes_by_level)
    if not work.tiled:
        return out
    l2, shared = tile_levels(tuple(out))
    if l2 is not None:
        out[l2] = work.tile_operand_bytes[pick] + work.epilogue_bytes
    if shared is not None:
        out[shared] = work.tile_shared_bytes[pick] + work.epilogue_bytes
    return out


def _split_gemm_operands(op: Op) -> tuple[float, float, float]:
    """(A, B, C) bytes: weights and cache reads are the B operand, other reads A, writes C."""
    b = sum(o.nbytes for o in op.reads if o.role in ("weight", "cache"))
    a = sum(o.nbytes for o in op.reads if o.role not in ("weight", "cache"))
    return a, b, op.bytes_written


def _levels(geom: Geometry, traffic: TiledTraffic) -> dict[str, float]:
    out = {name: 0.0 for name in geom.level_names}
    if "shared" in out and geom.main != "shared":
        out["shared"] = traffic.shared
    if "l2" in out and geom.main != "l2":
        out["l2"] = traffic.l2
    out[geom.main] = traffic.hbm
    return out


def _attention_elem_bytes(op: Op) -> float:
    """Element bytes e of the attention model: the KV-cache dtype if the op reads a cache, else the
    dtype of its first read (the activation dtype)."""
    for operand in op.reads:
        if operand.role == "cache":
            return operand.dtype.bytes
    return op.reads[0].dtype.bytes if op.reads else op.compute_dtype.bytes


def attention_traffic(op: Op, geom: Geometry, attention: str) -> TiledTraffic:
    """Attention bytes per docs/counting.md, with L2 capture of flash's K/V re-reads.

    L2 and shared memory carry the model's bytes (``flash_hbm_bytes`` / ``naive_hbm_bytes``: what the
    tiles load). Flash: the query tiles of one (sequence, kv head) run together, so when that head's
    K and V fit in L2 their re-reads hit L2 and HBM sees Q, K, V and O once each (K and V as separate
    streams, as docs/counting.md counts them); otherwise HBM sees every re-read. MLA in absorbed form
    (``form`` mla_absorbed) reads its latent once per key tile for both products (``shared_kv``), and
    its query tiles (the heads of one sequence) walk the same key blocks side by side (FlashMLA's grid:
    m-blocks x kv heads x SM parts), so a re-read is an L2 hit and HBM sees the compulsory bytes: the
    cached latent once, Q and O. Naive: the score matrices go to HBM as written. HBM bytes are never
    below the op's compulsory operand bytes.
    """
    a = op.attrs
    batch, q_len, kv_len = int(a["batch"]), int(a["q_len"]), int(a["kv_len"])
    heads_q, heads_kv, d_qk, d_v = int(a["heads_q"]), int(a["heads_kv"]), int(a["d_qk"]), int(a["d_v"])
    elem = _attention_elem_bytes(op)
    kwargs = dict(batch=batch, q_len=q_len, kv_len=kv_len, heads_q=heads_q, heads_kv=heads_kv, d_qk=d_qk,
                  d_v=d_v, elem_bytes=elem, sram_bytes=geom.sram_per_sm_bytes, causal=bool(a.get("causal", False)))
    if attention == "naive":
        tiled = naive_hbm_bytes(**kwargs)
        return TiledTraffic(hbm=max(tiled, op.bytes), l2=tiled, shared=tiled)
    if a.get("form") == "mla_absorbed":
        tiled = flash_hbm_bytes(**kwargs, shared_kv=True)
        return TiledTraffic(hbm=op.bytes, l2=max(tiled, op.bytes), shared=tiled)
    tiled = flash_hbm_bytes(**kwargs)
    kv_per_head = kv_len * (d_qk + d_v) * elem
    hbm = tiled
    if kv_per_head <= geom.l2_bytes:
        group = heads_q // heads_kv
        hbm = batch * heads_kv * (q_len * group + kv_len) * (d_qk + d_v) * elem
    return TiledTraffic(hbm=max(hbm, op.bytes), l2=tiled, shared=tiled)


def _attention_rate_ratio(hw: Hardware) -> float:
    """How fast attention's MMA runs relative to a GEMM on ``hw`` (FlashMLA: 80% of the throttled peak
    against DeepGEMM's 78% of the nominal one); 1.0 when the chip has no attention field."""
    fields = hw.kernel
    if fields is None or fields.attention_mma_fraction is None:
        return 1.0
    try:
        gemm_fraction = hw.engine_for("matrix").achievable_fraction
    except KeyError:
        return 1.0
    return fields.clock_ratio * fields.attention_mma_fraction / gemm_fraction if gemm_fraction > 0 else 1.0


def quantised_flops(geom: Geometry, *, groups: int, m: float, n: int, k: int) -> float:
    """Least MMA work, as FLOPs-equivalent, at which a (grouped) GEMM can run in waves of full tiles: the
    least wave-quantised FLOPs over the entries of the one tile menu (``efficiency.gemm_tile_menu``, the menu
    ``pick_tiling`` picks from); 0 when the chip has no tile menu (``kernel:`` fields) or the GEMM is empty.
    ``m`` may be an expectation: it is rounded up to whole rows.

    It is a floor, not the picked tile's FLOPs: the tile is picked at pricing time from the rates (a sweep
    re-tiles at each point), while this floor is rate-free work, so it takes the least over the menu, which no
    pick can beat. The busiest expert's bound (``busiest_expert_flops``) uses it so; and a GEMM whose dtype the
    matrix engine lacks (no menu in ``op_work``) gets its compute from it. Monotone in m: every entry's
    wave-quantised FLOPs is (more rows never mean fewer tiles). The L2 operand bytes and panel streaming of the
    grouped GEMM are charged from its own picked tile, not from this floor."""
    fields = geom.kernel
    if fields is None or not fields.has_tiles or m <= 0 or n <= 0 or k <= 0:
        return 0.0
    menu = gemm_tile_menu(groups=groups, m=math.ceil(m), n=n, k=k, elem_bytes=1.0, sm_count=geom.sm_count,
                          block_m_options=fields.gemm_block_m, block_n_options=fields.gemm_block_n,
                          max_tile_elements=fields.gemm_max_tile_elements, multicast_width=1, config_groups=groups)
    return min(entry.time_flops for entry in menu)


def engine_dtype_name(peaks, dtype) -> str | None:
    """The dtype an engine with peaks keyed by dtype name runs ``dtype`` in: its own, else the narrowest
    wider format the engine lists (e.g. FP8 weights upcast to BF16 on an A100); None if none is wider."""
    if dtype.name in peaks:
        return dtype.name
    wider = [d for d in peaks if d in BY_NAME and BY_NAME[d].bits >= dtype.bits]
    return min(wider, key=lambda d: BY_NAME[d].bits) if wider else None


def gemm_menu(geom: Geometry, op: Op, *, groups: int, m: float, n: int, k: int) -> tuple[GemmTiling, ...] | None:
    """The kernel model's tile menu for a (grouped) GEMM op (``efficiency.gemm_tile_menu``); None when the chip
    has no tile menu or matrix engine for the op, or the GEMM is empty. ``m`` (rows per group) may be an expectation:
    it is rounded up to whole rows. The op's ``layout`` attr (contiguous, the default, or masked) decides
    whether the config sees one GEMM or ``groups`` (TMA multicast), as in ``kernel_model.grouped_gemm_time``."""
    fields = geom.kernel
    if fields is None or not fields.has_tiles or m <= 0 or n <= 0 or k <= 0:
        return None
    if engine_dtype_name(geom.matrix_dtypes, op.compute_dtype) is None:
        return None
    masked = op.kind == "grouped_gemm" and op.attrs.row_layout is ExpertRowLayout.MASKED
    config_groups = groups if masked else 1
    return _menu(fields, geom.sm_count, groups, math.ceil(m), n, k, op.compute_dtype.bytes, config_groups)


def _menu(fields: KernelFields, sm_count: int, groups: int, m: int, n: int, k: int, elem_bytes: float,
          config_groups: int) -> tuple[GemmTiling, ...]:
    """``gemm_tile_menu`` for a chip's kernel fields (memoised there: every layer repeats the same shapes)."""
    return gemm_tile_menu(groups=groups, m=m, n=n, k=k, elem_bytes=elem_bytes, sm_count=sm_count,
                          block_m_options=fields.gemm_block_m, block_n_options=fields.gemm_block_n,
                          max_tile_elements=fields.gemm_max_tile_elements, multicast_width=fields.gemm_multicast,
                          config_groups=config_groups, sm_stream_bytes_per_s=fields.sm_stream_bandwidth_bytes_per_s)


def busiest_expert_flops(geom: Geometry, *, tokens_max: float, n: int, k: int, tile: int) -> float:
    """FLOPs-equivalent lower bound from the busiest expert: the grouped GEMM cannot finish before it.

    With a tile menu: that expert's GEMM alone, wave-quantised over the chip (each of its tiles costs a full
    tile's time on one SM) at the menu's least-work tile (``quantised_flops``: a floor under whatever tile
    ``pick_tiling`` picks for the grouped GEMM at the sweep's rates). Without one: no SM finishes before its
    largest tile, min(m, T) x min(n, T) x k
    (T: the SRAM tile of ``gemm_traffic``), and the chip no sooner than the expert's own FLOPs. Both are
    monotone in tokens_max (an average-tile bound would not be).
    """
    if tokens_max <= 0:
        return 0.0
    if geom.kernel is not None and geom.kernel.has_tiles:
        return quantised_flops(geom, groups=1, m=tokens_max, n=n, k=k)
    largest_tile = 2.0 * min(tokens_max, tile) * min(n, tile) * k * geom.sm_count
    return max(2.0 * tokens_max * n * k, largest_tile)


def op_work(op: Op, geom: Geometry, *, attention: str = "flash") -> OpWork:
    """Time-equivalent FLOPs and bytes per level of ``op`` on a chip of geometry ``geom``."""
    if attention not in ATTENTION_MODELS:
        raise ConfigError(None, "attention", f"one of {ATTENTION_MODELS}", attention)
    kind = op.kind
    time_flops = float(op.flops)
    if geom.sram_per_sm_bytes <= 0 and kind in ("gemm", "grouped_gemm", "attention"):
        total = op.bytes
        return OpWork(time_flops=time_flops, launches=1, network_bytes=0.0,
                      bytes_by_level=_levels(geom, TiledTraffic(hbm=total, l2=total, shared=0.0)))
    if kind == "collective":
        levels = {name: 0.0 for name in geom.level_names}
        return OpWork(time_flops=0.0, bytes_by_level=levels,
                      network_bytes=float(op.attrs.get("bytes", op.bytes)), launches=1)
    menu = None
    if kind == "gemm":
        a, b, c = _split_gemm_operands(op)
        tile = gemm_tile(geom.sram_per_sm_bytes, op.compute_dtype.bytes, geom.register_per_sm_bytes)
        traffic = gemm_traffic(m=float(op.attrs["m"]), n=int(op.attrs["n"]), a_bytes=a, b_bytes=b,
                               c_bytes=c, tile=tile, l2_bytes=geom.l2_bytes)
        menu = gemm_menu(geom, op, groups=1, m=float(op.attrs["m"]), n=int(op.attrs["n"]), k=int(op.attrs["k"]))
        if menu is None:
            time_flops = max(time_flops, quantised_flops(geom, groups=1, m=float(op.attrs["m"]),
                                                         n=int(op.attrs["n"]), k=int(op.attrs["k"])))
    elif kind == "grouped_gemm":
        a, w, c = _split_gemm_operands(op)
        attrs = op.attrs
        tile = gemm_tile(geom.sram_per_sm_bytes, op.compute_dtype.bytes, geom.register_per_sm_bytes)
        tokens_total = float(attrs.tokens_total)
        distinct = float(attrs.distinct_experts)
        tokens_max = float(attrs.tokens_max)
        traffic = grouped_gemm_traffic(distinct_experts=distinct, tokens_total=tokens_total,
                                       n=int(attrs["n"]), a_bytes=a, w_bytes=w, c_bytes=c, tile=tile,
                                       l2_bytes=geom.l2_bytes)
        busiest = busiest_expert_flops(geom, tokens_max=tokens_max, n=int(attrs["n"]), k=int(attrs["k"]), tile=tile)
        mean_tokens = tokens_total / distinct if distinct > 0 else 0.0
        groups = max(1, round(distinct))
        menu = gemm_menu(geom, op, groups=groups, m=mean_tokens, n=int(attrs["n"]), k=int(attrs["k"]))
        time_flops = max(time_flops, busiest)
        if menu is None:
            time_flops = max(time_flops, quantised_flops(geom, groups=groups, m=mean_tokens, n=int(attrs["n"]),
                                                         k=int(attrs["k"])))
    elif kind == "attention":
        traffic = attention_traffic(op, geom, attention)
        time_flops = time_flops / geom.attention_rate_ratio
    else:
        total = op.bytes
        traffic = TiledTraffic(hbm=total, l2=total, shared=0.0)
    if menu is not None:
        return OpWork(time_flops=time_flops, bytes_by_level=_levels(geom, traffic), network_bytes=0.0, launches=1,
                      tiled=True, stream_bytes=traffic.hbm_read, epilogue_bytes=traffic.hbm_written,
                      tile_flops=tuple(e.time_flops for e in menu),
                      tile_operand_bytes=tuple(e.operand_bytes for e in menu),
                      tile_stream_s=tuple(e.stream_s for e in menu),
                      tile_shared_bytes=tuple(tile_operand_bytes(tile=e.tile, k=int(op.attrs["k"]),
                                                                 elem_bytes=op.compute_dtype.bytes)
                                              for e in menu))
    return OpWork(time_flops=time_flops, bytes_by_level=_levels(geom, traffic), network_bytes=0.0,
                  launches=1)
