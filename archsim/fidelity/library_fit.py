"""Fit a kernel library's efficiency fields (``kernel.libraries.<name>`` of a hardware YAML) from measured kernel
times: each measured GEMM or grouped GEMM is priced with the chip's reference kernel (cost/kernel_model.py); a
shape the reference prices as MMA-bound gives one sample of ``mma_fraction`` = reference time / measured time, a
shape it prices as main-memory-bound one sample of ``bandwidth_fraction``; each field is the median of its samples.

The measurements are a CSV with the header ``kind,groups,m,n,k,dtype,time_s`` (kind ``gemm`` or ``grouped_gemm``;
one row per timed kernel, e.g. from a library's own benchmark script run where a GPU is at hand).
"""
from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass

from archsim.config.hardware import Hardware
from archsim.config.kernel_fields import LIBRARY_FRACTION_MAX
from archsim.errors import ConfigError

COLUMNS = ("kind", "groups", "m", "n", "k", "dtype", "time_s")
KINDS = ("gemm", "grouped_gemm")


@dataclass(frozen=True, kw_only=True)
class LibraryFit:
    """The fitted fields (None where no measured shape was bound by that resource) and the samples behind them."""

    mma_fraction: float | None
    bandwidth_fraction: float | None
    mma_samples: tuple[float, ...]
    bandwidth_samples: tuple[float, ...]

    def yaml(self, name: str) -> str:
        """The ``kernel.libraries`` entry, with the derivation as its comment."""
        parts = {k: v for k, v in (("mma_fraction", self.mma_fraction), ("bandwidth_fraction",
                                                                            self.bandwidth_fraction)) if v is not None}
        body = ", ".join(f"{k}: {v:.3g}" for k, v in parts.items())
        return (f"{name}: {{{body}}}  # [D] archsim calibrate --library: median reference / measured time over "
                f"{len(self.mma_samples)} MMA-bound and {len(self.bandwidth_samples)} memory-bound shapes")


def read_measurements(path: str) -> list[dict]:
    """The CSV's rows, checked: the exact header, a known kind, positive integers and a positive time."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise ConfigError(path, "header", ",".join(COLUMNS), ",".join(reader.fieldnames or ()))
            return [_row(path, i, raw) for i, raw in enumerate(reader)]
    except OSError as err:
        raise ConfigError(path, None, "a readable measurements CSV", err.strerror) from None


def _row(path: str, i: int, raw: dict) -> dict:
    where = f"row {i + 1}"
    if raw["kind"] not in KINDS:
        raise ConfigError(path, f"{where}.kind", " or ".join(KINDS), raw["kind"])
    row = {"kind": raw["kind"], "dtype": raw["dtype"]}
    for key in ("groups", "m", "n", "k"):
        try:
            row[key] = int(raw[key])
        except (TypeError, ValueError):
            raise ConfigError(path, f"{where}.{key}", "a positive integer", raw[key]) from None
        if row[key] < 1:
            raise ConfigError(path, f"{where}.{key}", "a positive integer", raw[key])
    try:
        row["time_s"] = float(raw["time_s"])
    except (TypeError, ValueError):
        raise ConfigError(path, f"{where}.time_s", "a time in seconds", raw["time_s"]) from None
    if not 0 < row["time_s"] < float("inf"):
        raise ConfigError(path, f"{where}.time_s", "a positive, finite time in seconds", raw["time_s"])
    return row


def fit_library(hw: Hardware, rows: list[dict]) -> LibraryFit:
    """The library's fields on ``hw`` from measured rows (module docstring)."""
    from archsim.cost.kernel_model import grouped_gemm_time

    mma, bandwidth = [], []
    for row in rows:
        ref = grouped_gemm_time(hw, groups=row["groups"], m=row["m"], n=row["n"], k=row["k"], dtype=row["dtype"])
        ratio = ref.time_s / row["time_s"]
        if ref.bound == "compute":
            mma.append(ratio)
        elif ref.bound == f"memory:{hw.main_memory.name}":
            bandwidth.append(ratio)
    fit = LibraryFit(mma_fraction=_median(mma), bandwidth_fraction=_median(bandwidth), mma_samples=tuple(mma),
                     bandwidth_samples=tuple(bandwidth))
    for key, value in (("mma_fraction", fit.mma_fraction), ("bandwidth_fraction", fit.bandwidth_fraction)):
        if value is not None and value > LIBRARY_FRACTION_MAX:
            raise ConfigError(None, key, f"at most {LIBRARY_FRACTION_MAX} of the reference kernel (faster means the "
                              "chip's reference fields or the measurements are wrong)", round(value, 3))
    return fit


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
