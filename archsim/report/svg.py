"""Small inline-SVG charts for the HTML report (report/html.py): line, scatter and stacked-bar charts with linear or
logarithmic axes, as text. No plotting library and no script: the page opens offline and renders anywhere."""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Callable, Sequence

# a colour-blind-safe qualitative palette (Okabe & Ito, "Color Universal Design", 2008)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
WIDTH, HEIGHT = 640, 320
MARGIN = {"left": 70, "right": 20, "top": 30, "bottom": 45}


@dataclass(frozen=True, kw_only=True)
class Axis:
    """One axis: its label, range and scale."""

    label: str
    low: float
    high: float
    log: bool = False

    def position(self, value: float, start: float, end: float) -> float:
        """Pixel coordinate of ``value`` between ``start`` (low) and ``end`` (high)."""
        lo, hi, v = (math.log10(self.low), math.log10(self.high), math.log10(value)) if self.log else \
            (self.low, self.high, value)
        span = hi - lo or 1.0
        return start + (v - lo) / span * (end - start)

    def ticks(self) -> list[float]:
        """Decades on a log axis; about five round steps on a linear one."""
        if self.log:
            return [10.0 ** e for e in range(math.floor(math.log10(self.low)), math.ceil(math.log10(self.high)) + 1)
                    if self.low <= 10.0 ** e <= self.high]
        step = _round_step((self.high - self.low) / 5 or 1.0)
        first = math.ceil(self.low / step) * step
        return [first + i * step for i in range(int((self.high - first) / step + 1e-9) + 1)]


def _round_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``raw``."""
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def axis_for(values: Sequence[float], label: str, *, log: bool = False, zero: bool = False) -> Axis:
    """An axis spanning ``values`` (positive ones on a log axis; from 0 when ``zero``)."""
    vals = [v for v in values if math.isfinite(v) and (v > 0 or not log)]
    if not vals:
        return Axis(label=label, low=1.0 if log else 0.0, high=10.0 if log else 1.0, log=log)
    low, high = min(vals), max(vals)
    if log:
        return Axis(label=label, low=10.0 ** math.floor(math.log10(low)), high=10.0 ** math.ceil(math.log10(high)),
                    log=True)
    low = min(0.0, low) if zero else low
    if high == low:
        high = low + (abs(low) or 1.0)
    pad = 0.05 * (high - low)  # points at the ends stay off the frame
    return Axis(label=label, low=low if zero else low - pad, high=high + pad)


def _tick_text(value: float) -> str:
    return f"{value:.3g}"


def _frame(x: Axis, y: Axis, title: str, x_format: Callable[[float], str] = _tick_text) -> list[str]:
    """The chart's title, axes, ticks and grid."""
    left, right = MARGIN["left"], WIDTH - MARGIN["right"]
    top, bottom = MARGIN["top"], HEIGHT - MARGIN["bottom"]
    out = [f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" class="title">{escape(title)}</text>',
           f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" class="axis"/>']
    for t in x.ticks():
        px = x.position(t, left, right)
        out.append(f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{bottom}" class="grid"/>')
        out.append(f'<text x="{px:.1f}" y="{bottom + 15}" text-anchor="middle">{escape(x_format(t))}</text>')
    for t in y.ticks():
        py = y.position(t, bottom, top)
        out.append(f'<line x1="{left}" y1="{py:.1f}" x2="{right}" y2="{py:.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{py + 4:.1f}" text-anchor="end">{_tick_text(t)}</text>')
    out.append(f'<text x="{(left + right) / 2}" y="{HEIGHT - 8}" text-anchor="middle">{escape(x.label)}</text>')
    out.append(f'<text x="14" y="{(top + bottom) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {(top + bottom) / 2})">{escape(y.label)}</text>')
    return out


def _svg(parts: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
            f'height="{HEIGHT}" role="img">' + "".join(parts) + "</svg>")


def _legend(labels: Sequence[str]) -> list[str]:
    out = []
    for i, label in enumerate(labels):
        x, y = MARGIN["left"] + 10 + 150 * (i % 3), MARGIN["top"] + 12 + 14 * (i // 3)
        out.append(f'<rect x="{x}" y="{y - 8}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>')
        out.append(f'<text x="{x + 14}" y="{y + 1}">{escape(label)}</text>')
    return out


def line_chart(series: Sequence[tuple[str, Sequence[float], Sequence[float]]], *, title: str, x_label: str,
               y_label: str, log_x: bool = False, log_y: bool = False,
               x_format: Callable[[float], str] = _tick_text) -> str:
    """One polyline (with point markers) per (label, xs, ys) series; ``x_format`` writes the x ticks (e.g. with
    their unit)."""
    xs = [v for _, s, _ in series for v in s]
    ys = [v for _, _, s in series for v in s]
    x, y = axis_for(xs, x_label, log=log_x), axis_for(ys, y_label, log=log_y, zero=not log_y)
    left, right, top, bottom = MARGIN["left"], WIDTH - MARGIN["right"], MARGIN["top"], HEIGHT - MARGIN["bottom"]
    parts = _frame(x, y, title, x_format)
    for i, (_, sx, sy) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        pts = [(x.position(a, left, right), y.position(b, bottom, top)) for a, b in zip(sx, sy)
               if math.isfinite(a) and math.isfinite(b) and (a > 0 or not log_x) and (b > 0 or not log_y)]
        if len(pts) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        if len(pts) <= 60:
            parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{colour}"/>' for px, py in pts]
    if len(series) > 1:
        parts += _legend([label for label, _, _ in series])
    return _svg(parts)


def scatter_chart(groups: Sequence[tuple[str, Sequence[float], Sequence[float]]], *, title: str, x_label: str,
                  y_label: str, log_x: bool = True, log_y: bool = True,
                  lines: Sequence[tuple[Sequence[float], Sequence[float]]] = ()) -> str:
    """Points per (label, xs, ys) group, plus reference ``lines`` (e.g. a roofline) drawn under them."""
    xs = [v for _, s, _ in groups for v in s] + [v for s, _ in lines for v in s]
    ys = [v for _, _, s in groups for v in s] + [v for _, s in lines for v in s]
    x, y = axis_for(xs, x_label, log=log_x), axis_for(ys, y_label, log=log_y)
    left, right, top, bottom = MARGIN["left"], WIDTH - MARGIN["right"], MARGIN["top"], HEIGHT - MARGIN["bottom"]
    parts = _frame(x, y, title)
    for lx, ly in lines:
        path = " ".join(f"{x.position(a, left, right):.1f},{y.position(b, bottom, top):.1f}" for a, b in zip(lx, ly))
        parts.append(f'<polyline points="{path}" fill="none" stroke="#444" stroke-dasharray="4 3"/>')
    for i, (_, gx, gy) in enumerate(groups):
        colour = PALETTE[i % len(PALETTE)]
        for a, b in zip(gx, gy):
            if a > 0 and b > 0:
                parts.append(f'<circle cx="{x.position(a, left, right):.1f}" cy="{y.position(b, bottom, top):.1f}" '
                             f'r="3" fill="{colour}" fill-opacity="0.7"/>')
    parts += _legend([label for label, _, _ in groups])
    return _svg(parts)


def stacked_bar(rows: Sequence[tuple[str, Sequence[tuple[str, float]]]], *, title: str, unit: str,
                total: float | None = None) -> str:
    """Horizontal bars, one per (row label, [(part, value), ...]), parts stacked left to right in the palette's
    order; ``total`` draws a limit line (e.g. the memory capacity)."""
    longest = max([sum(v for _, v in parts) for _, parts in rows] + [total or 0.0]) or 1.0
    left, right = 150, WIDTH - MARGIN["right"]
    height = MARGIN["top"] + 34 * len(rows) + 40
    out = [f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" class="title">{escape(title)}</text>']
    names: list[str] = []
    for r, (label, parts) in enumerate(rows):
        y, x = MARGIN["top"] + 34 * r, float(left)
        out.append(f'<text x="{left - 6}" y="{y + 16}" text-anchor="end">{escape(label)}</text>')
        for name, value in parts:
            if name not in names:
                names.append(name)
            w = value / longest * (right - left)
            colour = PALETTE[names.index(name) % len(PALETTE)]
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{max(w, 0.0):.1f}" height="22" fill="{colour}">'
                       f'<title>{escape(name)}: {value:.4g} {escape(unit)}</title></rect>')
            x += w
    if total:
        px = left + total / longest * (right - left)
        out.append(f'<line x1="{px:.1f}" y1="{MARGIN["top"] - 4}" x2="{px:.1f}" y2="{MARGIN["top"] + 34 * len(rows)}"'
                   ' stroke="#000" stroke-width="2"/>')
    legend_y = MARGIN["top"] + 34 * len(rows) + 14
    for i, name in enumerate(names):
        x = left + 160 * (i % 3)
        y = legend_y + 14 * (i // 3)
        out.append(f'<rect x="{x}" y="{y - 8}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>')
        out.append(f'<text x="{x + 14}" y="{y + 1}">{escape(name)}</text>')
    height += 14 * (len(names) // 3)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
            f'height="{height}" role="img">' + "".join(out) + "</svg>")


def timeline(lanes: Sequence[tuple[str, Sequence[tuple[float, float, str]]]], *, title: str, unit: str = "ms") -> str:
    """A Gantt chart: one lane per (label, [(start, duration, name), ...]) in ``unit``; each bar's name is its
    tooltip."""
    end = max([s + d for _, bars in lanes for s, d, _ in bars] + [1e-12])
    left, right = 110, WIDTH - MARGIN["right"]
    height = MARGIN["top"] + 26 * len(lanes) + 40
    x = Axis(label=f"time ({unit})", low=0.0, high=end)
    out = [f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" class="title">{escape(title)}</text>']
    for r, (label, bars) in enumerate(lanes):
        y = MARGIN["top"] + 26 * r
        out.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{escape(label)}</text>')
        colour = PALETTE[r % len(PALETTE)]
        for start, dur, name in bars:
            x0 = x.position(start, left, right)
            w = max(x.position(start + dur, left, right) - x0, 0.3)  # a zero-width op still shows
            out.append(f'<rect x="{x0:.2f}" y="{y}" width="{w:.2f}" height="18" fill="{colour}" fill-opacity="0.85">'
                       f'<title>{escape(name)}: {dur:.4g} {escape(unit)}</title></rect>')
    base = MARGIN["top"] + 26 * len(lanes)
    out.append(f'<line x1="{left}" y1="{base}" x2="{right}" y2="{base}" class="axis"/>')
    for t in x.ticks():
        px = x.position(t, left, right)
        out.append(f'<text x="{px:.1f}" y="{base + 14}" text-anchor="middle">{_tick_text(t)}</text>')
    out.append(f'<text x="{(left + right) / 2}" y="{base + 32}" text-anchor="middle">{escape(x.label)}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
            f'height="{height}" role="img">' + "".join(out) + "</svg>")
