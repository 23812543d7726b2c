"""A session as an inline SVG chart: one line per probe against time, targets dashed.

Drawn on the server from the stored readings, so the page needs no chart library and
no build step. Long cooks are thinned to at most ``MAX_POINTS`` points per probe (a
point per pixel column is all a screen shows).
"""

from __future__ import annotations

from datetime import datetime
from html import escape

WIDTH, HEIGHT = 900, 360
LEFT, RIGHT, TOP, BOTTOM = 50, 120, 15, 30
MAX_POINTS = 900
COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")


def _thin(points: list[tuple[datetime, float]]) -> list[tuple[datetime, float]]:
    if len(points) <= MAX_POINTS:
        return points
    step = len(points) / MAX_POINTS
    return [points[int(i * step)] for i in range(MAX_POINTS)] + [points[-1]]


def session_svg(
    series: dict[int, list[tuple[datetime, float]]],
    labels: dict[int, str],
    targets: dict[int, float],
    unit: str,
    stall: tuple[datetime, datetime | None] | None = None,
) -> str:
    """The chart's markup (an ``<svg>`` element); a note when there is nothing to draw.

    ``stall``: the session's stall (its end None while it lasts), drawn as a band.
    """
    points = {probe: _thin(values) for probe, values in sorted(series.items()) if values}
    if not points:
        return '<p class="empty">No readings stored for this session.</p>'
    times = [t for values in points.values() for t, _ in values]
    temps = [v for values in points.values() for _, v in values] + list(targets.values())
    t0, t1 = min(times), max(times)
    low, high = min(temps), max(temps)
    span_t = max((t1 - t0).total_seconds(), 1.0)
    pad = max((high - low) * 0.05, 1.0)
    low, high = low - pad, high + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: datetime) -> float:
        return LEFT + (t - t0).total_seconds() / span_t * plot_w

    def y(v: float) -> float:
        return TOP + (high - v) / (high - low) * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="temperatures against time" xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="plot"/>',
    ]
    if stall is not None:
        start, end = max(stall[0], t0), min(stall[1] or t1, t1)
        if end > start:
            parts.append(
                f'<rect x="{x(start):.1f}" y="{TOP}" width="{x(end) - x(start):.1f}" '
                f'height="{plot_h}" class="stall"><title>stall</title></rect>'
            )
    for i in range(5):
        value = low + (high - low) * i / 4
        parts.append(
            f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" class="axis" text-anchor="end">'
            f"{value:.0f}</text>"
        )
    for i in range(5):
        seconds = span_t * i / 4
        label = f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}"
        parts.append(
            f'<text x="{LEFT + plot_w * i / 4:.1f}" y="{HEIGHT - 8}" class="axis" '
            f'text-anchor="middle">{label}</text>'
        )
    for n, (probe, values) in enumerate(points.items()):
        colour = COLOURS[n % len(COLOURS)]
        line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in values)
        name = escape(labels.get(probe) or f"probe {probe}")
        parts.append(
            f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="1.5" '
            f'data-probe="{probe}"><title>{name}</title></polyline>'
        )
        parts.append(
            f'<text x="{WIDTH - RIGHT + 8}" y="{TOP + 14 + 16 * n}" fill="{colour}" '
            f'class="legend">{name}</text>'
        )
        if probe in targets:
            ty = y(targets[probe])
            parts.append(
                f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{ty:.1f}" y2="{ty:.1f}" '
                f'stroke="{colour}" stroke-dasharray="6 4" class="target"/>'
            )
    parts.append(
        f'<text x="{LEFT}" y="{TOP - 3}" class="axis">'
        f"°{escape(unit)} (time since start, h:mm)</text>"
    )
    parts.append("</svg>")
    return "".join(parts)
