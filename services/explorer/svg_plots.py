"""Plots as inline SVG, drawn on the server: no plotting library in the page, nothing to load,
and a Content-Security-Policy without inline script holds. Every mark carries a <title> with
its exact value (the browser shows it on hover); every string is escaped."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 560, 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 56, 12, 22, 30
MAX_BAR_LABELS, LABEL_CHARS = 10, 12
"""Bar plots label at most this many bars, evenly spaced (each label cut to LABEL_CHARS)."""
PALETTE = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7ea4", "#57606a")


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


class _Axes:
    """Maps data to pixels for one plot area; log_y plots log10 of positive values."""

    def __init__(self, xs: Sequence[float], ys: Sequence[float], log_y: bool) -> None:
        self.log_y = log_y
        ys = [math.log10(y) for y in ys if y > 0] if log_y else _finite(ys)
        self.x0, self.x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
        self.y0, self.y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
        if not log_y:
            self.y0 = min(self.y0, 0.0)
        if self.x1 == self.x0:
            self.x1 = self.x0 + 1
        if self.y1 == self.y0:
            self.y1 = self.y0 + 1

    def x(self, v: float) -> float:
        span = WIDTH - PAD_LEFT - PAD_RIGHT
        return PAD_LEFT + (v - self.x0) / (self.x1 - self.x0) * span

    def y(self, v: float) -> float | None:
        if self.log_y:
            if v <= 0:
                return None
            v = math.log10(v)
        if not math.isfinite(v):
            return None
        span = HEIGHT - PAD_TOP - PAD_BOTTOM
        return HEIGHT - PAD_BOTTOM - (v - self.y0) / (self.y1 - self.y0) * span

    def frame(self, title: str, x_label: str, x_ticks: bool = True) -> list[str]:
        def y_tick(v: float) -> str:
            return _fmt(10**v) if self.log_y else _fmt(v)

        bottom, right = HEIGHT - PAD_BOTTOM, WIDTH - PAD_RIGHT
        ticks = [
            f'<text x="{PAD_LEFT}" y="{HEIGHT - 8}" class="tick">{_fmt(self.x0)}</text>',
            f'<text x="{right}" y="{HEIGHT - 8}" class="tick" text-anchor="end">'
            f"{_fmt(self.x1)}</text>",
        ]
        return [
            f'<text x="{PAD_LEFT}" y="14" class="plot-title">{escape(title)}</text>',
            f'<line x1="{PAD_LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>',
            f'<line x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{PAD_LEFT}" y2="{bottom}" class="axis"/>',
            f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + 4}" class="tick" text-anchor="end">'
            f"{y_tick(self.y1)}</text>",
            f'<text x="{PAD_LEFT - 4}" y="{bottom}" class="tick" text-anchor="end">'
            f"{y_tick(self.y0)}</text>",
            *(ticks if x_ticks else []),
            f'<text x="{(PAD_LEFT + right) / 2}" y="{HEIGHT - 2}" class="tick" '
            f'text-anchor="middle">{escape(x_label)}</text>',
        ]


def _svg(parts: list[str], label: str) -> Markup:
    body = "".join(parts)
    return Markup(
        f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )


def line_chart(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    x_label: str = "",
    log_y: bool = False,
) -> Markup:
    """One polyline per series {name: (xs, ys)}, a legend, and a hover title on each point."""
    xs = [x for s in series.values() for x in s[0]]
    ys = [y for s in series.values() for y in s[1]]
    axes = _Axes(xs, ys, log_y)
    parts = axes.frame(title, x_label)
    for i, (name, (sx, sy)) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        points = [(axes.x(x), axes.y(y), x, y) for x, y in zip(sx, sy, strict=True)]
        drawn = [(px, py, x, y) for px, py, x, y in points if py is not None]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in drawn)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" class="line"/>')
        parts.extend(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{colour}" class="point">'
            f"<title>{escape(name)}: {_fmt(x)}, {_fmt(y)}</title></circle>"
            for px, py, x, y in drawn
        )
        parts.append(
            f'<text x="{WIDTH - PAD_RIGHT}" y="{PAD_TOP + 12 * (i + 1)}" text-anchor="end" '
            f'fill="{colour}" class="legend">{escape(name)}</text>'
        )
    return _svg(parts, title)


def bar_chart(
    values: Sequence[float],
    title: str,
    labels: Sequence[str] | None = None,
    x_label: str = "",
    log_y: bool = False,
) -> Markup:
    """One bar per value (negative values hang below zero), labelled on hover."""
    labels = list(labels) if labels is not None else [str(i) for i in range(len(values))]
    axes = _Axes([0, max(len(values), 1)], [*values, 0.0] if not log_y else values, log_y)
    parts = axes.frame(title, x_label, x_ticks=False)
    stride = max(1, math.ceil(len(values) / MAX_BAR_LABELS))
    base = axes.y(max(axes.y0, 0.0) if not log_y else 10**axes.y0) or HEIGHT - PAD_BOTTOM
    width = max((axes.x(1) - axes.x(0)) * 0.85, 0.5)
    for i, (v, name) in enumerate(zip(values, labels, strict=True)):
        top = axes.y(v)
        if top is None:
            continue
        y, h = min(top, base), abs(base - top)
        cls = "bar neg" if v < 0 else "bar"
        if i % stride == 0:
            parts.append(
                f'<text x="{axes.x(i) + width / 2:.1f}" y="{HEIGHT - PAD_BOTTOM + 11}" '
                f'class="tick" text-anchor="middle">{escape(name[:LABEL_CHARS])}</text>'
            )
        parts.append(
            f'<rect x="{axes.x(i):.1f}" y="{y:.1f}" width="{width:.1f}" height="{max(h, 0.5):.1f}" '
            f'class="{cls}"><title>{escape(name)}: {_fmt(v)}</title></rect>'
        )
    return _svg(parts, title)
