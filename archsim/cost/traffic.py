"""Op x Geometry -> OpWork: FLOPs for time, bytes per memory level, network bytes, launches; no rates.

Streaming kinds (norm, rope, elementwise, router, ...) touch their operands once: main memory and L2 carry them,
shared memory none. Attention follows ``attention_traffic``; a (grouped) GEMM ``cost/gemm.py``, carrying its tile
candidates where the chip has a tile menu. A chip without shared memory (SRAM dataflow) moves compulsory bytes.
"""
from __future__ import annotations

from dataclasses import dataclass

from archsim.cost import gemm
from archsim.attention_window import keys_read
from archsim.cost.attention_traffic import flash_hbm_bytes, naive_hbm_bytes
from archsim.cost.geometry import Geometry
from archsim.errors import ConfigError
from archsim.graph.op import Op

ATTENTION_MODELS = ("flash", "naive")


@dataclass(frozen=True, kw_only=True)
class TiledTraffic:
    """Bytes crossing each level: ``hbm`` (off chip), ``l2`` (L2 to SMs), ``shared`` (staged in SMEM)."""

    hbm: float
    l2: float
    shared: float


@dataclass(frozen=True, kw_only=True)
class OpWork:
    """What an op costs before rates: FLOPs for time (a GEMM's floor, ``gemm.floor_flops``), bytes per level,
    network bytes, launches, and a tiled GEMM's candidates (``gemm``, priced by ``gemm.gemm_time``; its
    ``bytes_by_level`` keep the SRAM-tile rule's L2 and shared bytes, used when it runs on another engine)."""

    time_flops: float
    bytes_by_level: dict[str, float]
    network_bytes: float
    launches: int
    gemm: gemm.TileCandidates | None = None

    @property
    def tiled(self) -> bool:
        return self.gemm is not None


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
                  d_v=d_v, elem_bytes=elem, sram_bytes=geom.sram_per_sm_bytes, causal=bool(a.get("causal", False)),
                  window=a.get("window"))
    if attention == "naive":
        tiled = naive_hbm_bytes(**kwargs)
        return TiledTraffic(hbm=max(tiled, op.bytes), l2=tiled, shared=tiled)
    if a.get("form") == "mla_absorbed":
        tiled = flash_hbm_bytes(**kwargs, shared_kv=True)
        return TiledTraffic(hbm=op.bytes, l2=max(tiled, op.bytes), shared=tiled)
    tiled = flash_hbm_bytes(**kwargs)
    kv_per_head = keys_read(q_len, kv_len, a.get("window")) * (d_qk + d_v) * elem
    # K and V of one head in L2: HBM sees Q, K, V and O once, the op's operand bytes
    hbm = op.bytes if kv_per_head <= geom.l2_bytes else max(tiled, op.bytes)
    return TiledTraffic(hbm=hbm, l2=tiled, shared=tiled)


def op_work(op: Op, geom: Geometry, *, attention: str = "flash") -> OpWork:
    """Time-equivalent FLOPs and bytes per level of ``op`` on a chip of geometry ``geom`` (module docstring)."""
    if attention not in ATTENTION_MODELS:
        raise ConfigError(None, "attention", f"one of {ATTENTION_MODELS}", attention)
    kind = op.kind
    if geom.sram_per_sm_bytes <= 0 and kind in (*gemm.GEMM_KINDS, "attention"):
        total = op.bytes
        return OpWork(time_flops=float(op.flops), launches=1, network_bytes=0.0,
                      bytes_by_level=_levels(geom, TiledTraffic(hbm=total, l2=total, shared=0.0)))
    if kind == "collective":
        levels = {name: 0.0 for name in geom.level_names}
        return OpWork(time_flops=0.0, bytes_by_level=levels,
                      network_bytes=float(op.attrs.get("bytes", op.bytes)), launches=1)
    if kind in gemm.GEMM_KINDS:
        shape = gemm.GemmShape.of(op)
        moved = gemm.sram_tile_traffic(shape, geom)
        cands = gemm.tile_candidates(shape, geom, moved)
        time_flops = float(cands.floor_flops) if cands is not None else gemm.untiled_time_flops(shape, geom)
        traffic = TiledTraffic(hbm=moved.hbm_read + moved.hbm_write, l2=moved.l2, shared=moved.shared)
        return OpWork(time_flops=time_flops, bytes_by_level=_levels(geom, traffic), network_bytes=0.0, launches=1,
                      gemm=cands)
    if kind == "attention":
        traffic = attention_traffic(op, geom, attention)
    else:
        total = op.bytes
        traffic = TiledTraffic(hbm=total, l2=total, shared=0.0)
    return OpWork(time_flops=float(op.flops), bytes_by_level=_levels(geom, traffic), network_bytes=0.0, launches=1)
