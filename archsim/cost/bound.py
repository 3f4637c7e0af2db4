"""The one vocabulary of what bound a time, for ops, phases and kernels: ``compute``, ``memory:<level>`` (a memory
level by its hardware name, e.g. ``memory:hbm``, ``memory:l2``), ``network`` and ``launch``; an op placed on a chip's
processing-in-memory units (cost/engines.py) may also be bound by ``pim:compute`` or ``pim:internal`` (its units'
MACs, or the banks' internal bandwidth)."""
from __future__ import annotations

from enum import StrEnum


class Bound(StrEnum):
    """The resources that are not memory levels (a memory bound is ``memory(level)``)."""

    COMPUTE = "compute"
    NETWORK = "network"
    LAUNCH = "launch"


COMPUTE, NETWORK, LAUNCH = Bound.COMPUTE.value, Bound.NETWORK.value, Bound.LAUNCH.value  # as plain str labels
MEMORY_PREFIX = "memory:"
PIM_COMPUTE, PIM_INTERNAL = "pim:compute", "pim:internal"  # bounds of an op run on PIM units


def memory(level: str) -> str:
    """The bound label of memory level ``level``."""
    return f"{MEMORY_PREFIX}{level}"


def labels(level_names) -> tuple[str, ...]:
    """Every label of a chip with memory levels ``level_names`` (innermost first), in tie-break order: compute,
    the memory levels outermost first, network, launch."""
    return (COMPUTE, *(memory(name) for name in reversed(tuple(level_names))), NETWORK, LAUNCH)
