"""The what-if H100 variants (3D DRAM on logic, HBM-PIM) keep the H100's die, so their ``kernel:`` blocks are
copies of hardware/h100.yaml's (see the comment above each copy): the copies must not drift from the original.
The kernel libraries of software stacks are left out: a what-if chip has no family, so no shipped stack runs on it
(config/stack.py refuses it with an error naming the chip's ``family``)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from archsim.config.hardware import load_hardware

HW = Path(__file__).resolve().parents[2] / "hardware"
COPIES = ("h100_3d_dram.yaml", "h100_hbm_pim.yaml")


@pytest.mark.parametrize("copy", COPIES)
def test_kernel_block_equals_h100s(copy):
    original = load_hardware(HW / "h100.yaml").kernel
    assert original is not None and original.has_tiles
    # the parsed records (SI values), so "6.0 TB/s" and "6000 GB/s" are the same copy
    assert load_hardware(HW / copy).kernel == dataclasses.replace(original, libraries={})
