"""Op: a frozen description of one operator's work. It knows shapes and counts, never hardware."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, Mapping

from archsim.dtypes import DType

Role = Literal["activation", "weight", "cache", "output"]
Engine = Literal["matrix", "vector", "memory", "network"]


@dataclass(frozen=True, kw_only=True)
class Operand:
    """One tensor an op reads or writes.

    ``nbytes`` is the compulsory traffic for this operand: every element touched once, in its
    storage dtype, block scales included. It may be fractional when it is an expectation (e.g.
    expert weights read in decode under a routing distribution).
    """

    name: str
    shape: tuple[int, ...]
    dtype: DType
    role: Role
    nbytes: float

    @staticmethod
    def of(name: str, shape: tuple[int, ...], dtype: DType, role: Role) -> "Operand":
        return Operand(name=name, shape=tuple(shape), dtype=dtype, role=role,
                       nbytes=dtype.storage_bytes(tuple(shape)))


class OperandRecord:
    """What an ``Op`` (the graph's declaration) and a ``Measured`` (an executed kernel call,
    kernels/counting.py) share: frozen ``attrs`` and byte totals over their ``reads`` / ``writes``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))

    @property
    def bytes_read(self) -> float:
        return sum(o.nbytes for o in self.reads)

    @property
    def bytes_written(self) -> float:
        return sum(o.nbytes for o in self.writes)

    @property
    def bytes(self) -> float:
        return self.bytes_read + self.bytes_written


@dataclass(frozen=True, kw_only=True)
class Op(OperandRecord):
    """One operator of a phase graph.

    ``kind`` selects the traffic model in the cost layer: ``gemm`` (attrs m, n, k),
    ``grouped_gemm`` (attrs groups, n, k, tokens_total, tokens_max), ``attention`` (attrs batch,
    q_len, kv_len, heads_q, heads_kv, d_qk, d_v, causal), ``collective`` (attrs op, bytes, group),
    and streaming kinds (``norm``, ``rope``, ``elementwise``, ``router``, ``embedding``, ``softmax``,
    ``topk``) whose traffic is their operands.
    ``flops`` is exact under the conventions of docs/counting.md.
    """

    name: str
    kind: str
    engine: Engine
    compute_dtype: DType
    flops: float
    reads: tuple[Operand, ...]
    writes: tuple[Operand, ...]
    params: int = 0
    layer: int | None = None
    attrs: Mapping[str, object] = field(default_factory=dict)


# Row layouts of a grouped GEMM (DeepGEMM): "contiguous" (the groups' rows concatenated, one config for all) and
# "masked" (a [groups, max rows, k] buffer, a config per group). One list for the graph, the cost model and the
# kernel API.
EXPERT_LAYOUTS = ("contiguous", "masked")


def expert_layout(ep_mode: str | None) -> str:
    """Row layout of the routed experts' grouped GEMMs behind an EP exchange of ``ep_mode``: DeepEP's
    low-latency dispatch writes a [local experts, max tokens, hidden] buffer that DeepGEMM's masked kernel
    reads (DeepGEMM README, DeepEP README); the normal dispatch (and no exchange at all) gives the experts'
    rows concatenated, DeepGEMM's contiguous layout."""
    return "masked" if ep_mode == "low_latency" else "contiguous"
