"""Counter: what each executed kernel call did (FLOPs, bytes per operand, HBM<->SRAM traffic).

A ``Counter`` is an instance that one run owns (never class-level state). Kernels receive a ``Site``
(counter + op name + declared storage dtypes) and record one ``Measured`` per logical op call. Bytes
use the *declared* storage dtype, so a float64 numpy run still reports the bytes of, e.g., BF16
activations and FP8 block-scaled weights (docs/counting.md, "Bytes per operand").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from archsim.dtypes import BF16, DType
from archsim.graph.op import Operand, OperandRecord, Role


@dataclass(frozen=True, kw_only=True)
class Measured(OperandRecord):
    """One executed logical op: FLOPs counted from the executed shapes, operands as touched.

    ``hbm_read_bytes`` / ``hbm_write_bytes`` are the tiled kernels' measured traffic between
    "HBM" and "SRAM" (zero where a kernel does not model it).
    """

    name: str
    kind: str
    flops: float
    reads: tuple[Operand, ...]
    writes: tuple[Operand, ...]
    attrs: Mapping[str, object] = field(default_factory=dict)
    hbm_read_bytes: float = 0.0
    hbm_write_bytes: float = 0.0


class Counter:
    """Collects ``Measured`` records in call order for one run.

    ``declared`` optionally maps op name -> {operand name: storage dtype}; it takes precedence over a
    site's own dtypes, so an executor can declare each op's formats (e.g. from an operator graph)
    while the kernels measure the shapes.
    """

    def __init__(self, declared: Mapping[str, Mapping[str, DType]] | None = None) -> None:
        self.records: list[Measured] = []
        self.declared: Mapping[str, Mapping[str, DType]] = declared or {}

    def add(self, record: Measured) -> None:
        self.records.append(record)

    def site(self, name: str, *, roles: Mapping[str, DType] | None = None,
             dtypes: Mapping[str, DType] | None = None) -> "Site":
        """A recording handle for op ``name``; see ``Site`` for the dtype lookup."""
        return Site(counter=self, name=name, roles=dict(roles or {}), dtypes=dict(dtypes or {}))

    @property
    def total_flops(self) -> float:
        return sum(r.flops for r in self.records)

    def by_name(self) -> dict[str, list[Measured]]:
        """Records grouped by op name (an op name may be called more than once, e.g. per step)."""
        out: dict[str, list[Measured]] = {}
        for r in self.records:
            out.setdefault(r.name, []).append(r)
        return out

    def clear(self) -> None:
        self.records.clear()


@dataclass(frozen=True, kw_only=True)
class Site:
    """Where a kernel records: the counter, the op name, and the declared storage dtypes.

    An operand's dtype is the counter's declared dtype for (op, operand) if any, else
    ``dtypes[operand name]``, else ``roles[operand role]``, else BF16 (the activation default of both
    DeepSeek-V3 and Kimi K2 inference).
    """

    counter: Counter
    name: str
    roles: Mapping[str, DType] = field(default_factory=dict)
    dtypes: Mapping[str, DType] = field(default_factory=dict)

    def dtype(self, operand: str, role: Role) -> DType:
        declared = self.counter.declared.get(self.name)
        if declared and operand in declared:
            return declared[operand]
        if operand in self.dtypes:
            return self.dtypes[operand]
        return self.roles.get(role, BF16)

    def operand(self, operand: str, shape: Iterable[int], role: Role) -> Operand:
        return Operand.of(operand, tuple(int(s) for s in shape), self.dtype(operand, role), role)

    def record(self, *, kind: str, flops: float, reads: Iterable[tuple[str, tuple[int, ...], Role]],
               writes: Iterable[tuple[str, tuple[int, ...], Role]], hbm_read_bytes: float = 0.0,
               hbm_write_bytes: float = 0.0, **attrs: object) -> None:
        """Record one call; ``reads``/``writes`` are (operand name, executed shape, role) triples."""
        self.counter.add(Measured(
            name=self.name, kind=kind, flops=float(flops),
            reads=tuple(self.operand(n, s, r) for n, s, r in reads),
            writes=tuple(self.operand(n, s, r) for n, s, r in writes),
            attrs=attrs, hbm_read_bytes=float(hbm_read_bytes), hbm_write_bytes=float(hbm_write_bytes)))

    def child(self, suffix: str) -> "Site":
        """A site for a sub-op, named ``<name>.<suffix>``, with the same dtypes."""
        return Site(counter=self.counter, name=f"{self.name}.{suffix}", roles=self.roles, dtypes=self.dtypes)


def sub_site(site: Site | None, name: str) -> Site | None:
    """``site.child(name)``, or None when not counting (kernels take ``site=None`` to skip recording)."""
    return None if site is None else site.child(name)
