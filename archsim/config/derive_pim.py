"""Bank-level processing-in-memory derived from a published design and the host memory it is put into.

- Balance: a published PIM die's compute peak over its internal (processing) bandwidth is its FLOP per byte of
  in-place reads (Samsung Aquabolt-XL: 1.2 TFLOPS per cube over 4x the HBM2 interface, about 1 FLOP/byte: one
  FP16 multiply-accumulate, 2 FLOP, per 2-byte weight read); the same balance is kept when the units are put into
  another memory: internal bandwidth = ratio x that memory's interface bandwidth, peak = balance x internal.
- Capacity: the units take bank area, so a PIM cube holds less DRAM than the plain one (Aquabolt-XL: 6 GB where
  the same stack holds 8 GB): the memory level keeps pim / plain of its capacity.
- Op coverage: an op kind runs on the units only if every function it needs is one of theirs (a GEMV needs MAC;
  attention's softmax needs exp, so on units without it attention stays on the host).
- Mode switch: entering and leaving all-bank PIM mode is a fixed sequence of mode-register row writes (SB -> AB ->
  AB-PIM and back), each one DRAM row cycle, paid once per op.
- Achievable fraction: the units' peak assumes one all-bank MAC command per ``cycles_per_command`` on every PIM
  block; a cycle-accurate simulation of a GEMV also spends cycles on row activations, the input vector's writes to
  the register files and the result read. Two GEMV sizes give the marginal rate (the extra MACs at the peak over
  the extra cycles), so a call's fixed cost, which includes the mode switch priced above, cancels.
"""
from __future__ import annotations

from typing import Iterable

# Functions a PIM unit may offer (Aquabolt-XL: add, mul, mac, mad; SK hynix AiM adds activation functions)
FUNCTIONS = ("add", "mul", "mac", "mad", "exp", "relu", "gelu")
# The functions each op kind needs from a PIM unit (archsim's graph op kinds; a kind absent here never runs on PIM)
KIND_NEEDS: dict[str, frozenset[str]] = {
    "gemm": frozenset({"mac"}),
    "grouped_gemm": frozenset({"mac"}),
    "attention": frozenset({"mac", "exp"}),  # QK^T and SV are MACs; the softmax between them needs exp
}


def flop_per_byte(design_peak_flop_per_s: float, design_external_bytes_per_s: float, bandwidth_ratio: float) -> float:
    """FLOP per byte of in-place reads of a published design: its peak over its internal bandwidth."""
    return design_peak_flop_per_s / (bandwidth_ratio * design_external_bytes_per_s)


def internal_bandwidth(external_bytes_per_s: float, bandwidth_ratio: float) -> float:
    """In-place read bandwidth of PIM units in a memory of ``external_bytes_per_s`` interface bandwidth."""
    return bandwidth_ratio * external_bytes_per_s


def peak_flop_per_s(balance_flop_per_byte: float, internal_bytes_per_s: float) -> float:
    """The units' peak: the design's balance times their internal bandwidth."""
    return balance_flop_per_byte * internal_bytes_per_s


def capacity_fraction(pim_capacity_bytes: float, plain_capacity_bytes: float) -> float:
    """Share of the plain stack's capacity a PIM stack keeps."""
    return pim_capacity_bytes / plain_capacity_bytes


def covered_kinds(functions: Iterable[str]) -> tuple[str, ...]:
    """The op kinds whose every needed function the units have (``KIND_NEEDS`` order)."""
    have = frozenset(functions)
    return tuple(kind for kind, needs in KIND_NEEDS.items() if needs <= have)


def mode_switch_s(row_writes: int, row_cycle_s: float) -> float:
    """Time to enter and leave PIM mode once: ``row_writes`` mode-register row writes of one row cycle each."""
    return row_writes * row_cycle_s


def macs_per_cycle(pim_blocks: int, lanes: int, cycles_per_command: float) -> float:
    """Peak MACs per DRAM clock of the units: every PIM block takes ``lanes`` MACs per all-bank column command,
    one command per ``cycles_per_command`` (Aquabolt-XL: 16 FP16 lanes per 256-bit column, one per tCCD_L)."""
    return pim_blocks * lanes / cycles_per_command


def gemv_achievable_fraction(macs_small: float, cycles_small: float, macs_large: float, cycles_large: float,
                             peak_macs_per_cycle: float) -> float:
    """Share of the peak two simulated GEMVs sustain at the margin: the larger's extra MACs at the peak over its
    extra cycles (the fixed cost of a call cancels)."""
    if cycles_large <= cycles_small or macs_large <= macs_small:
        raise ValueError("the larger GEMV must have more MACs and more cycles")
    return (macs_large - macs_small) / peak_macs_per_cycle / (cycles_large - cycles_small)
