"""Which engines of a chip can run an op, besides the default one: the candidates of the placement rule.

Every op has a default engine (``opcost.rate_key``: matrix ops on the first matrix engine, other ops with FLOPs on
the first vector engine). A heterogeneous chip offers two kinds of alternative, and the cost model prices an op on
each and runs it on the fastest (``opcost.price_work_item`` for one op, ``work.price_work`` for a graph or a sweep;
ties keep the default engine, then the earlier candidate):

- **another matrix or photonic engine**: a matrix-kind op (gemm, grouped_gemm, attention) on a second matrix
  engine that lists the op's compute dtype, or on a photonic engine whose ``kinds`` and ``accepts`` include the op's
  kind and compute dtype. It is priced by that engine's roofline: its rate and energy per FLOP, the same memory
  traffic (a photonic core is fed from the same SRAM/HBM as the tensor cores);
- **the PIM units** (hardware ``pim:``) when their ``kinds`` include the op's kind and their ``peak`` its compute
  dtype: weights and KV-cache operands are read in place at the internal bandwidth, the other operands
  (activations in, results out) cross the memory's external interface (``pim_operand_bytes``).

Candidates are listed in the chip's engine order, the PIM units last. No literals: every rate is a YAML field.

A weight-stationary photonic engine also loads the op's stationary operands (its weights, its KV cache) into the
array, ``reprogram_s``: a time serial with its MACs, added to the op's compute time on that engine
(``opcost.price_on_engine``, ``work.price_work``).
"""
from __future__ import annotations

import math

from archsim.config.hardware import ComputeEngine, Hardware
from archsim.graph.op import Op

MATRIX_KINDS = ("gemm", "grouped_gemm", "attention")
PIM_ENGINE = "pim"                 # the engine name of an op placed on the PIM units
IN_PLACE_ROLES = ("weight", "cache")  # operands a PIM unit reads inside the memory


def has_alternatives(hw: Hardware) -> bool:
    """Whether any op could run off its default engine on ``hw``: the chip has PIM units or more than one engine
    that runs matrix ops (matrix or photonic). False means every op is priced on its default engine, at no cost."""
    return hw.pim is not None or sum(e.kind in ("matrix", "photonic") for e in hw.compute.values()) > 1


def other_engine_keys(op: Op, hw: Hardware, default: tuple[str, str] | None) -> list[tuple[str, str]]:
    """(engine, dtype) of each engine of ``hw`` besides ``default``'s that can run ``op`` (module docstring), in the
    chip's engine order; a second matrix engine must list the op's compute dtype itself (no wider format)."""
    if op.flops <= 0 or op.kind not in MATRIX_KINDS:
        return []
    dtype = op.compute_dtype.name
    keys = []
    for engine in hw.compute.values():
        if default is not None and engine.name == default[0]:
            continue
        if engine.kind == "matrix" and dtype in engine.peak_flop_per_s:
            keys.append((engine.name, dtype))
        elif engine.kind == "photonic" and engine.photonic is not None:
            if op.kind in engine.photonic.kinds and dtype in engine.photonic.accepts:
                keys.append((engine.name, dtype))
    return keys


def pim_dtype(op: Op, hw: Hardware) -> str | None:
    """The dtype in which the chip's PIM units run ``op`` (its compute dtype), or None when they cannot: no PIM,
    an op kind they do not run, or no peak for the dtype (e.g. FP8 on FP16/BF16 units)."""
    pim = hw.pim
    dtype = op.compute_dtype.name
    if pim is None or op.flops <= 0 or op.kind not in pim.kinds or dtype not in pim.peak_flop_per_s:
        return None
    return dtype


def pim_operand_bytes(op: Op) -> tuple[float, float]:
    """(bytes read in place, bytes over the external interface) of ``op`` on PIM units: its weight and KV-cache
    reads stay inside the memory; its other reads and its writes cross the memory's interface."""
    inside = float(sum(o.nbytes for o in op.reads if o.role in IN_PLACE_ROLES))
    return inside, float(op.bytes) - inside


def reprogram_s(op: Op, engine: ComputeEngine) -> float:
    """Time ``engine`` spends loading ``op``'s stationary operands (weights, KV cache) before its MACs: 0 unless it is
    a weight-stationary photonic engine (``PhotonicSpec.reprogram_s``)."""
    spec = engine.photonic
    if spec is None or not spec.weight_stationary or op.flops <= 0:
        return 0.0
    return spec.reprogram_s(float(sum(math.prod(o.shape) for o in op.reads if o.role in IN_PLACE_ROLES)))
