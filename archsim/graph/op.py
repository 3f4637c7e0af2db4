"""Op: a frozen description of one operator's work. It knows shapes and counts, never hardware.

A (grouped) GEMM's attrs are typed (``GemmAttrs``, ``GroupedGemmAttrs``), checked when the op is made: a missing
or bad attr is a ConfigError naming the op. Other kinds keep a plain frozen mapping.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Iterator, Literal, Mapping

from archsim.dtypes import DType
from archsim.errors import ConfigError

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


class ExpertRowLayout(StrEnum):
    """How a grouped GEMM's rows are laid out for its kernel (DeepGEMM's two grouped kernels)."""

    CONTIGUOUS = "contiguous"  # the groups' rows concatenated, each group whole tiles; one config for all groups
    MASKED = "masked"          # a [groups, max rows, k] buffer with a row count per group; a config per group


EXPERT_LAYOUTS = tuple(layout.value for layout in ExpertRowLayout)  # the accepted names, for error messages


def expert_layout(ep_mode: str | None) -> ExpertRowLayout:
    """Row layout of the routed experts' grouped GEMMs behind an EP exchange of ``ep_mode``: DeepEP's
    low-latency dispatch writes a [local experts, max tokens, hidden] buffer that DeepGEMM's masked kernel
    reads (DeepGEMM README, DeepEP README); the normal dispatch (and no exchange at all) gives the experts'
    rows concatenated, DeepGEMM's contiguous layout."""
    return ExpertRowLayout.MASKED if ep_mode == "low_latency" else ExpertRowLayout.CONTIGUOUS


def row_layout(value: object, path: str = "row_layout") -> ExpertRowLayout:
    """``value`` as an ExpertRowLayout; anything else is a ConfigError at ``path``."""
    try:
        return ExpertRowLayout(value)
    except ValueError:
        raise ConfigError(None, path, f"one of {', '.join(EXPERT_LAYOUTS)}", value) from None


class _AttrsView(MappingABC):
    """Read-only ``attrs["name"]`` access to a typed attrs record (fields and derived properties)."""

    _keys: tuple[str, ...] = ()

    def __getitem__(self, key: str) -> object:
        if key not in self._keys:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _count(value: object, path: str, *, integer: bool) -> float:
    """A non-negative count (an int where ``integer``; an expectation may be fractional)."""
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not value >= 0:
        raise ConfigError(None, path, "a non-negative integer" if integer else "a non-negative number", value)
    return value


@dataclass(frozen=True, kw_only=True, eq=True)
class GemmAttrs(_AttrsView):
    """``y[m, n] = x[m, k] @ W[k, n]``."""

    m: int
    n: int
    k: int
    split: str | None = None  # how the weight is split over devices (graph/build.py); None for a bare op

    _keys = ("m", "n", "k", "split")

    def check(self, op: str) -> None:
        """ConfigError naming ``op`` unless m, n, k are non-negative integers."""
        for name in ("m", "n", "k"):
            _count(getattr(self, name), f"{op}.attrs.{name}", integer=True)


@dataclass(frozen=True, kw_only=True, eq=True)
class GroupedGemmAttrs(_AttrsView):
    """Per-group weights ``W_g[k, n]``; group g multiplies its ``tokens_per_expert[g]`` rows (expected counts)."""

    n: int
    k: int
    tokens_per_expert: tuple[float, ...]
    distinct_experts: float     # expected groups with at least one row (whose weights are read)
    row_layout: ExpertRowLayout = ExpertRowLayout.CONTIGUOUS
    split: str | None = None

    _keys = ("groups", "n", "k", "tokens_per_expert", "distinct_experts", "tokens_total", "tokens_max",
             "row_layout", "split")

    @property
    def groups(self) -> int:
        return len(self.tokens_per_expert)

    @property
    def tokens_total(self) -> float:
        return sum(self.tokens_per_expert)

    @property
    def tokens_max(self) -> float:
        return max(self.tokens_per_expert) if self.tokens_per_expert else 0.0

    def check(self, op: str) -> None:
        """ConfigError naming ``op`` unless the counts are non-negative, at most ``groups`` groups are touched and
        ``row_layout`` is an ExpertRowLayout."""
        for name in ("n", "k"):
            _count(getattr(self, name), f"{op}.attrs.{name}", integer=True)
        if not isinstance(self.tokens_per_expert, tuple):
            raise ConfigError(None, f"{op}.attrs.tokens_per_expert", "a tuple of token counts", self.tokens_per_expert)
        for index, tokens in enumerate(self.tokens_per_expert):
            _count(tokens, f"{op}.attrs.tokens_per_expert[{index}]", integer=False)
        distinct = _count(self.distinct_experts, f"{op}.attrs.distinct_experts", integer=False)
        if distinct > self.groups:
            raise ConfigError(None, f"{op}.attrs.distinct_experts", f"at most groups ({self.groups})", distinct)
        if not isinstance(self.row_layout, ExpertRowLayout):
            raise ConfigError(None, f"{op}.attrs.row_layout", f"an ExpertRowLayout ({', '.join(EXPERT_LAYOUTS)})",
                              self.row_layout)


GEMM_ATTRS = {"gemm": GemmAttrs, "grouped_gemm": GroupedGemmAttrs}  # the kinds with typed attrs


def gemm_attrs(kind: str, attrs: Mapping[str, object], op: str) -> GemmAttrs | GroupedGemmAttrs:
    """The typed attrs of a ``kind`` op named ``op`` from a record or a plain mapping (the mapping's derived keys,
    ``groups``, ``tokens_total`` and ``tokens_max``, must agree with its ``tokens_per_expert``); ConfigError names
    the op and the missing, unknown or bad attr."""
    cls = GEMM_ATTRS[kind]
    if isinstance(attrs, cls):
        attrs.check(op)
        return attrs
    names = {f.name for f in dataclasses.fields(cls)}
    derived = set(cls._keys) - names
    unknown = sorted(set(attrs) - names - derived)
    if unknown:
        raise ConfigError(None, f"{op}.attrs.{unknown[0]}", f"one of the {kind} attrs {sorted(cls._keys)}",
                          unknown[0])
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    for name in required:
        if name not in attrs:
            raise ConfigError(None, f"{op}.attrs.{name}", f"the {kind} attr {name}", None)
    values = {name: attrs[name] for name in names if name in attrs}
    if "tokens_per_expert" in values:
        values["tokens_per_expert"] = tuple(values["tokens_per_expert"])
    if "row_layout" in values:
        values["row_layout"] = row_layout(values["row_layout"], f"{op}.attrs.row_layout")
    typed = cls(**values)
    typed.check(op)
    for name in derived & set(attrs):
        if attrs[name] != typed[name]:
            raise ConfigError(None, f"{op}.attrs.{name}", f"{typed[name]} (from tokens_per_expert)", attrs[name])
    return typed


@dataclass(frozen=True, kw_only=True)
class Op(OperandRecord):
    """One operator of a phase graph.

    ``kind`` selects the traffic model in the cost layer: ``gemm`` (``GemmAttrs``), ``grouped_gemm``
    (``GroupedGemmAttrs``), ``attention`` (attrs batch, q_len, kv_len, heads_q, heads_kv, d_qk, d_v, causal),
    ``collective`` (attrs op, bytes, group), and streaming kinds (``norm``, ``rope``, ``elementwise``,
    ``router``, ``embedding``, ``softmax``, ``topk``) whose traffic is their operands.
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

    def __post_init__(self) -> None:
        if self.kind in GEMM_ATTRS:
            object.__setattr__(self, "attrs", gemm_attrs(self.kind, self.attrs, self.name))
        else:
            super().__post_init__()
