"""Charts (matplotlib, an optional extra imported inside each function): roofline, sweep Pareto front,
memory-wall history, what-if comparison bars. Each function writes one PNG and returns its path."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from archsim.errors import ConfigError


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(None, "--plot/--out", "matplotlib installed (pip install 'archsim[plot]')",
                          "matplotlib missing") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str) -> str:
    try:
        fig.savefig(path, dpi=130, bbox_inches="tight")
    except OSError as err:
        raise ConfigError(None, "--out", "a writable image path", f"{path} ({err.strerror})") from None
    finally:
        fig.clf()
    return path


def roofline_chart(points: Sequence[Mapping], *, peak_flop_per_s: float, bandwidth_bytes_per_s: float,
                   title: str, path: str) -> str:
    """Ops as (arithmetic intensity, achieved FLOP/s) under the compute roof and the main-memory slope.

    ``points`` items: ``intensity`` (FLOP/byte of main memory), ``flop_per_s``, ``bound``, ``label``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    xs = [p["intensity"] for p in points if p["intensity"] > 0 and p["flop_per_s"] > 0]
    lo = min(xs + [0.1]) / 2
    hi = max(xs + [peak_flop_per_s / bandwidth_bytes_per_s * 10]) * 2
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(grid, [min(peak_flop_per_s, x * bandwidth_bytes_per_s) for x in grid], color="black", lw=1.5,
            label="roofline (achievable)")
    bounds = sorted({p["bound"] for p in points})
    for b in bounds:
        sel = [p for p in points if p["bound"] == b and p["intensity"] > 0 and p["flop_per_s"] > 0]
        ax.scatter([p["intensity"] for p in sel], [p["flop_per_s"] for p in sel], s=14, label=b, alpha=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / main-memory byte)")
    ax.set_ylabel("achieved FLOP/s")
    ax.set_title(title)
    ax.axvline(peak_flop_per_s / bandwidth_bytes_per_s, color="grey", ls=":", lw=1)
    ax.legend(fontsize=8)
    return _save(fig, path)


def pareto_chart(rows: Sequence[Mapping], path: str) -> str:
    """Decode tokens/s against J/token for sweep rows; the Pareto front highlighted."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ok = [r for r in rows if r["decode.tokens_per_s"] is not None and r["decode.tokens_per_s"] == r["decode.tokens_per_s"]]
    ax.scatter([r["energy.joules_per_token"] for r in ok], [r["decode.tokens_per_s"] for r in ok], s=6,
               color="tab:blue", alpha=0.4, label="points")
    front = [r for r in ok if r["pareto"]]
    ax.scatter([r["energy.joules_per_token"] for r in front], [r["decode.tokens_per_s"] for r in front], s=20,
               color="tab:red", label="Pareto front")
    ax.set_xlabel("decode energy (J / token)")
    ax.set_ylabel("decode throughput (tokens / s)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def history_chart(points: Sequence, growth: Mapping[str, float], path: str) -> str:
    """Peak compute, memory bandwidth and interconnect bandwidth against release year (log scale)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = [("peak_flop_per_s", "peak BF16 FLOP/s", 1e12, "TFLOP/s"),
              ("memory_bandwidth_bytes_per_s", "memory bandwidth", 1e9, "GB/s"),
              ("interconnect_bytes_per_s", "scale-up bandwidth (per direction)", 1e9, "GB/s")]
    years = np.array([p.year for p in points], float)
    span = np.linspace(years.min(), years.max(), 50)
    for attr, label, scale, unit in series:
        values = np.array([getattr(p, attr) / scale for p in points])
        dots = ax.plot(years, values, "o", label=f"{label} [{unit}]: x{growth[attr]:.2f} / 2 yr")
        if len(set(years.tolist())) > 1:
            slope, intercept = np.polyfit(years, np.log(values), 1)
            ax.plot(span, np.exp(intercept + slope * span), "--", color=dots[0].get_color(), lw=1)
    for p in points:
        ax.annotate(p.name.split(" (")[0], (p.year, p.peak_flop_per_s / 1e12), fontsize=6, rotation=20)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("release year")
    ax.set_title("The memory wall across the shipped hardware files")
    ax.legend(fontsize=7)
    return _save(fig, path)


def grouped_bars(groups: Sequence[str], series: Mapping[str, Sequence[float]], *, ylabel: str, title: str,
                 path: str, log: bool = False) -> str:
    """Bars of several series (e.g. hardware) per group (e.g. batch size)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        ax.bar([g + i * width for g in range(len(groups))], values, width=width, label=name)
    ax.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))])
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    return _save(fig, path)
