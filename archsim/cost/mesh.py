"""Op x Hardware -> the time and energy an op spends on a wafer-scale chip's 2D core mesh (hardware ``mesh:``).

A wafer-scale chip keeps its weights in the SRAM of ~10^5-10^6 small cores joined by a 2D mesh of routers (Cerebras
WSE). An op spread over a square sub-mesh of ``op_side`` x ``op_side`` cores (``MeshSpec.op_side``) reads its weight
slice from local SRAM at the chip's aggregate bandwidth (the roofline of ``cost/opcost.py``), but each core ends up
with a partial result that the roofline does not see: WaferLLM's MeshGEMV (He et al., OSDI 2025, arXiv 2502.04563;
github.com/MeshInfra/WaferLLM) sums the partial products of a column of cores with an **all-reduce along the line**,
a reduction into the line's centre and a broadcast back from it (Decode/WSE-3/run_wse3.sh roots both phases of its
two-phase reduction at the middle of the line), after which every core of the line holds the result the next op
takes as its input. One all-reduce over a line of ``side`` cores costs 2 x (``side // 2`` hops x the per-hop latency
+ the line's payload over one link at the link rate): the payload is ``1 / side`` of the op's output, each line
reducing its own slice. Energy: each pass carries the whole output across the ``side - 1`` links of every line,
times the energy per bit and hop. All-reduces per op kind (``ALLREDUCES``): a GEMM one (its output); attention two
(the softmax statistics and the output); a norm one (one partial sum of squares per row). Elementwise ops, RoPE and
embedding gathers stay on their cores, and collectives between chips are priced by ``cost/collectives.py``. Ops sit
on squares at different offsets of the wafer, so the whole wafer's SRAM holds weights (the capacity check is the
memory level's); weights that do not fit the wafers' SRAM stream in from off-wafer memory each step
(``weight_stream_s``). Every rate comes from the YAML ``mesh:`` section; the only literals are FLOPs per MAC, bits
per byte, the two passes of an all-reduce and a 2D router's four mesh ports."""
from __future__ import annotations

from dataclasses import dataclass

from archsim.config.hardware import Hardware
from archsim.config.whatif_hardware import MeshSpec
from archsim.dtypes import BITS_PER_BYTE
from archsim.graph.op import Op

FLOP_PER_MAC = 2
# all-reduces along a line of its sub-mesh of one op of each kind (module docstring); other kinds: none
ALLREDUCES: dict[str, int] = {"gemm": 1, "grouped_gemm": 1, "attention": 2, "norm": 1}
PASSES_PER_ALLREDUCE = 2  # a reduction into the line's centre, then a broadcast back out
MESH_PORTS = 4  # a 2D-mesh router's links to its north, south, east and west neighbours


@dataclass(frozen=True, kw_only=True)
class MeshRates:
    """The mesh's derived rates: per-hop latency, one link's bandwidth per direction, and the op's line length."""

    hop_s: float
    link_bytes_per_s: float
    side: int
    hop_energy_j_per_bit: float

    @staticmethod
    def of(spec: MeshSpec) -> "MeshRates":
        return MeshRates(hop_s=hop_s(spec), link_bytes_per_s=link_bytes_per_s(spec), side=spec.op_side,
                         hop_energy_j_per_bit=spec.hop_energy_j_per_bit)


def hop_s(spec: MeshSpec) -> float:
    """Seconds for a word to cross one router-to-router hop: hop cycles / clock."""
    return spec.hop_cycles / spec.clock_hz


def link_bytes_per_s(spec: MeshSpec) -> float:
    """One link's bandwidth per direction: bytes per cycle x clock."""
    return spec.link_bytes_per_cycle * spec.clock_hz


def dense_fp16_peak_flop_per_s(spec: MeshSpec, cores: int) -> float:
    """Dense FP16 peak of ``cores`` cores: cores x FP16 MACs per cycle x 2 FLOP/MAC x clock."""
    return cores * spec.simd_fp16_macs_per_cycle * FLOP_PER_MAC * spec.clock_hz


def fabric_bytes_per_s(spec: MeshSpec) -> float:
    """Sum over every core of its router's mesh links, both directions: cores x 4 ports x 2 x link rate (the way a
    vendor's "fabric bandwidth" adds links up; a consistency check of the link width against the quoted total)."""
    return spec.cores * MESH_PORTS * 2 * link_bytes_per_s(spec)


def mesh_memory_bytes(spec: MeshSpec) -> float:
    """SRAM of the whole mesh: cores x SRAM per core."""
    return spec.cores * spec.core_memory_bytes


def allreduce_s(rates: MeshRates, line_payload_bytes: float) -> float:
    """One all-reduce along a line of ``side`` cores rooted at its centre: two passes of ``side // 2`` hops, each
    streaming the line's payload over one link behind its head (wormhole routing: the two add once per pass)."""
    one_pass = (rates.side // 2) * rates.hop_s + line_payload_bytes / rates.link_bytes_per_s
    return PASSES_PER_ALLREDUCE * one_pass


def reduced_bytes(op: Op) -> float:
    """Bytes one all-reduce of ``op`` sums over the whole sub-mesh: its output, or for a norm one partial sum per
    row (in its output dtype)."""
    if op.kind == "norm":
        return float(op.writes[0].dtype.storage_bytes((int(op.attrs["rows"]), 1)))
    return float(op.bytes_written)


def op_mesh_cost(op: Op, hw: Hardware) -> tuple[float, float]:
    """(time_s, energy_j) of ``op``'s all-reduces on ``hw``'s mesh; (0, 0) on a chip without a ``mesh:`` section or
    for an op kind that crosses no mesh line (``ALLREDUCES``)."""
    if hw.mesh is None or op.kind not in ALLREDUCES:
        return 0.0, 0.0
    return op_mesh_cost_at(op, MeshRates.of(hw.mesh))


def op_mesh_cost_at(op: Op, rates: MeshRates) -> tuple[float, float]:
    """``op_mesh_cost`` with the mesh's rates given (for callers that price many ops)."""
    count = ALLREDUCES.get(op.kind, 0)
    if not count:
        return 0.0, 0.0
    return allreduces_cost(rates, reduced_bytes(op), count)


def allreduces_cost(rates: MeshRates, payload_bytes: float, count: int) -> tuple[float, float]:
    """(time_s, energy_j) of ``count`` all-reduces of ``payload_bytes`` over the sub-mesh, each line summing its
    ``1 / side`` slice."""
    time_s = count * allreduce_s(rates, payload_bytes / rates.side)
    # each pass carries every line's slice across the line's side - 1 links: the whole payload crosses side - 1 hops
    moved_bytes = count * PASSES_PER_ALLREDUCE * payload_bytes * (rates.side - 1)
    return time_s, moved_bytes * BITS_PER_BYTE * rates.hop_energy_j_per_bit


def weight_stream_s(weight_bytes: float, resident_bytes: float, spec: MeshSpec) -> float:
    """Seconds per step to stream the weights that do not fit on the wafer (``weight_bytes`` beyond
    ``resident_bytes``) from off-wafer memory at ``weight_stream_bandwidth``; 0 when they all fit."""
    return max(0.0, weight_bytes - resident_bytes) / spec.weight_stream_bytes_per_s
