"""A small hand-written SVG line chart: panels side by side over one log-scale x axis, one shared legend.

No plotting library is in the lock; this draws just what bench/scale.py needs (cost against size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
DASHES = ("", "6 3", "2 2", "8 3 2 3")
PANEL_W, PANEL_H, MARGIN, LEGEND_W, ROW_H = 420, 360, 56, 330, 15


@dataclass(frozen=True)
class Series:
    label: str
    ys: Sequence[float | None]  # one per x; None or NaN: no point


@dataclass
class Panel:
    title: str
    y_label: str
    series: list[Series]
    guides: list[tuple[float, str]] = field(default_factory=list)  # horizontal dashed lines (a bound)
    log_y: bool = False


def _log_ticks(bottom: float, top: float) -> list[float]:
    """1, 2, 5 times the powers of ten between `bottom` and `top`."""
    ticks = []
    for exponent in range(math.floor(math.log10(bottom)), math.ceil(math.log10(top)) + 1):
        ticks += [m * 10**exponent for m in (1, 2, 5) if bottom <= m * 10**exponent <= top]
    return ticks


def _ticks(top: float) -> list[float]:
    """About five round steps from 0 to `top`."""
    if top <= 0:
        return [0.0]
    raw = top / 5
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if raw <= m * step)
    return [i * step for i in range(int(top / step) + 2) if i * step <= top * 1.0001]


def _fmt(value: float) -> str:
    return f"{value:g}" if value < 1000 else f"{value:,.0f}"


@dataclass(frozen=True)
class _Plot:
    """Where a panel draws: its plot area and the mapping of x indexes and y values into it."""

    lx: list[float]  # log10 of each x
    x0: float
    x1: float
    y0: float
    y1: float
    low: float
    high: float
    log_y: bool

    @classmethod
    def of(cls, panel: Panel, xs: Sequence[float], left: int) -> tuple[_Plot, list[float]]:
        """The panel's plot area and its y ticks."""
        points = [y for s in panel.series for y in s.ys if y is not None and math.isfinite(y) and y > 0]
        top = max([*points, *(g for g, _ in panel.guides), 1e-9]) * 1.1
        if panel.log_y:
            bottom = 10 ** math.floor(math.log10(min(points, default=1.0)))
            ticks = _log_ticks(bottom, top)
            low, high = math.log10(bottom), math.log10(top)
        else:
            ticks = _ticks(top)
            low, high = 0.0, max(top, ticks[-1])
        lx = [math.log10(x) for x in xs]
        return cls(lx, left + MARGIN, left + PANEL_W - 12, PANEL_H - 40, 40, low, high, panel.log_y), ticks

    def px(self, i: int) -> float:
        span = (self.lx[-1] - self.lx[0]) or 1.0
        return self.x0 + (self.lx[i] - self.lx[0]) / span * (self.x1 - self.x0)

    def py(self, y: float) -> float:
        value = math.log10(max(y, 10**self.low)) if self.log_y else y
        return self.y0 - (value - self.low) / ((self.high - self.low) or 1.0) * (self.y0 - self.y1)


def _panel(
    panel: Panel, xs: Sequence[float], x_labels: Sequence[str], style: dict[str, tuple[str, str]], left: int
) -> str:
    plot, ticks = _Plot.of(panel, xs, left)
    out = _axes(plot, panel, ticks, x_labels, left) + _guides(plot, panel)
    for s in panel.series:
        out += _line(plot, s, *style[s.label])
    return "\n".join(out)


def _axes(plot: _Plot, panel: Panel, ticks: list[float], x_labels: Sequence[str], left: int) -> list[str]:
    """The title, the axis labels, the grid at every tick and x, and the frame."""
    x0, x1, y0, y1, px, py = plot.x0, plot.x1, plot.y0, plot.y1, plot.px, plot.py
    out = [f'<text x="{(x0 + x1) / 2}" y="22" text-anchor="middle" font-weight="bold">{escape(panel.title)}</text>']
    out.append(
        f'<text x="{left + 14}" y="{(y0 + y1) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 {left + 14} {(y0 + y1) / 2})">{escape(panel.y_label)}</text>'
    )
    for t in ticks:
        out.append(f'<line x1="{x0}" x2="{x1}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0 - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for i, label in enumerate(x_labels):
        out.append(f'<line x1="{px(i):.1f}" x2="{px(i):.1f}" y1="{y0}" y2="{y1}" stroke="#eee"/>')
        out.append(f'<text x="{px(i):.1f}" y="{y0 + 16}" text-anchor="middle">{escape(label)}</text>')
    out.append(
        f'<text x="{(x0 + x1) / 2}" y="{y0 + 32}" text-anchor="middle">orders in the read model (log scale)</text>'
    )
    out.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#999"/>')
    return out


def _guides(plot: _Plot, panel: Panel) -> list[str]:
    """The panel's bounds, as dashed red lines with their labels."""
    out = []
    for value, label in panel.guides:
        out.append(
            f'<line x1="{plot.x0}" x2="{plot.x1}" y1="{plot.py(value):.1f}" y2="{plot.py(value):.1f}" '
            'stroke="#d62728" stroke-dasharray="5 4"/>'
        )
        out.append(
            f'<text x="{plot.x1 - 4}" y="{plot.py(value) - 4:.1f}" text-anchor="end" fill="#d62728">'
            f"{escape(label)}</text>"
        )
    return out


def _line(plot: _Plot, series: Series, colour: str, dash: str) -> list[str]:
    """One series: its line through the points it has, and a point (with its value as a tooltip) at each."""
    shown = [(i, y) for i, y in enumerate(series.ys) if y is not None and math.isfinite(y)]
    pts = [(plot.px(i), plot.py(y)) for i, y in shown]
    out = []
    if len(pts) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6" stroke-dasharray="{dash}">'
            f"<title>{escape(series.label)}</title></polyline>"
        )
    for (x, y), (_, value) in zip(pts, shown, strict=True):
        out.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"><title>{escape(series.label)}: '
            f"{value:.3g}</title></circle>"
        )
    return out


def line_chart(title: str, xs: Sequence[float], x_labels: Sequence[str], panels: Sequence[Panel]) -> str:
    """The SVG document: `panels` side by side, a legend of every series label (same colour in every panel)."""
    labels = list(dict.fromkeys(s.label for p in panels for s in p.series))
    style = {
        label: (PALETTE[i % len(PALETTE)], DASHES[(i // len(PALETTE)) % len(DASHES)]) for i, label in enumerate(labels)
    }
    width = PANEL_W * len(panels) + LEGEND_W
    height = max(PANEL_H, 40 + ROW_H * len(labels)) + 30
    body = [_panel(p, xs, x_labels, style, i * PANEL_W) for i, p in enumerate(panels)]
    legend_x = PANEL_W * len(panels) + 10
    for i, label in enumerate(labels):
        y = 40 + i * ROW_H
        colour, dash = style[label]
        body.append(
            f'<line x1="{legend_x}" x2="{legend_x + 24}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" '
            f'stroke-width="2" stroke-dasharray="{dash}"/><text x="{legend_x + 30}" y="{y}">{escape(label)}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="sans-serif" font-size="11">\n<rect width="100%" height="100%" fill="white"/>\n'
        f'<text x="10" y="{height - 10}" fill="#555">{escape(title)}</text>\n' + "\n".join(body) + "\n</svg>\n"
    )


def bar_chart(title: str, groups: Sequence[str], stacks: dict[str, Sequence[float]]) -> str:
    """One stacked horizontal bar per group (a layout), a segment per stack label (a process), and a legend."""
    labels = list(stacks)
    totals = [sum(stacks[label][i] for label in labels) for i in range(len(groups))]
    top = max(totals, default=0.0) or 1.0
    bar_w, left, row = 520, 110, 36
    height = 60 + row * len(groups) + ROW_H * len(labels)
    body = []
    for i, group in enumerate(groups):
        y, x = 30 + i * row, float(left)
        body.append(f'<text x="10" y="{y + 16}">{escape(group)}</text>')
        for j, label in enumerate(labels):
            w = bar_w * stacks[label][i] / top
            body.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="22" fill="{PALETTE[j % len(PALETTE)]}">'
                f"<title>{escape(label)}: {stacks[label][i]:.2f}</title></rect>"
            )
            x += w
        body.append(f'<text x="{x + 6:.1f}" y="{y + 16}">{totals[i]:.1f}</text>')
    for j, label in enumerate(labels):
        y = 40 + row * len(groups) + j * ROW_H
        body.append(
            f'<rect x="{left}" y="{y - 9}" width="12" height="10" fill="{PALETTE[j % len(PALETTE)]}"/>'
            f'<text x="{left + 18}" y="{y}">{escape(label)}</text>'
        )
    width = left + bar_w + 60
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="sans-serif" font-size="11">\n<rect width="100%" height="100%" fill="white"/>\n'
        f'<text x="10" y="16" fill="#555">{escape(title)}</text>\n' + "\n".join(body) + "\n</svg>\n"
    )
