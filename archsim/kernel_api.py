"""The kernel-level front door: ``archsim.kernel_api.kernel_time("gemm", "h800", m=..., n=..., k=...)``.

The models live in ``archsim/cost/kernel_model.py`` (one GEMM's: ``archsim/cost/gemm.py``); this module re-exports
them for users and the CLI.
"""
from __future__ import annotations

from archsim.config.hardware import HARDWARE_DIR, resolve_hardware
from archsim.cost.kernel_model import (KINDS, KernelEstimate, attention_time, collective_time, elementwise_time,
                                       gemm_time, grouped_gemm_time, kernel_time, moe_time)

__all__ = ["HARDWARE_DIR", "KINDS", "KernelEstimate", "attention_time", "collective_time", "gemm_time",
           "grouped_gemm_time", "kernel_time", "moe_time", "resolve_hardware", "elementwise_time"]
