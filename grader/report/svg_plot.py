"""Charts as inline SVG for the HTML reports: a line chart (loss curves), a histogram and a
horizontal bar chart (pass rates). Each returns one `<svg>` element as a string that needs no
stylesheet, script or font file; every label is escaped, since labels may come from students."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

STUDENT_COLOR = "#1f6feb"
REFERENCE_COLOR = "#e36209"
BAR_COLOR = "#1f6feb"
PASS_COLOR = "#1a7f37"
_AXIS_COLOR = "#57606a"
_GRID_COLOR = "#d8dee4"
_FONT = 'font-family="system-ui, sans-serif" font-size="11"'


@dataclass
class Series:
    """One line of a line chart: points (x, y), where y None (a NaN loss) breaks the line."""

    label: str
    points: list[tuple[float, float | None]]
    color: str = STUDENT_COLOR
    dashed: bool = False


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values (1, 2 or 5 times a power of ten apart) covering low..high."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        low, high = (low - 0.5, high + 0.5) if low == 0 else (low - abs(low) * 0.1, high + abs(high) * 0.1)
    raw = (high - low) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9)
    last = max(first + 1, math.ceil(high / step - 1e-9))
    return [round(i * step, 12) for i in range(first, last + 1)]


def _tick_label(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    return f"{value:.{decimals}f}"


def _open(width: int, height: int, title: str) -> list[str]:
    return [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" {_FONT}>'
        ),
        f"<title>{escape(title)}</title>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="8" y="16" font-size="12" font-weight="600" fill="#24292f">{escape(title)}</text>',
    ]


def _num(value: float) -> str:
    return f"{value:.1f}"


def line_chart(series: list[Series], *, title: str, x_label: str, y_label: str, width: int = 520, height: int = 250) -> str:
    left, right, top, bottom = 52, 12, 44, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = _open(width, height, title)
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points if y is not None]
    # Legend, in the band under the title.
    x = left
    for s in series:
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        parts.append(f'<line x1="{x}" y1="31" x2="{x + 18}" y2="31" stroke="{s.color}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{x + 22}" y="35" fill="#24292f">{escape(s.label)}</text>')
        x += 30 + 6 * len(s.label)
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="{_AXIS_COLOR}"/>')
    if not ys:
        parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" fill="{_AXIS_COLOR}">no losses recorded</text>')
        parts.append("</svg>")
        return "\n".join(parts)
    x_ticks = nice_ticks(0, max(xs), 8)
    y_ticks = nice_ticks(min(ys), max(ys), 5)
    x_lo, x_hi, y_lo, y_hi = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def px(value: float) -> float:
        return left + (value - x_lo) / (x_hi - x_lo) * plot_w

    def py(value: float) -> float:
        return top + plot_h - (value - y_lo) / (y_hi - y_lo) * plot_h

    x_step, y_step = x_ticks[1] - x_ticks[0], y_ticks[1] - y_ticks[0]
    for tick in y_ticks:
        parts.append(f'<line x1="{left}" y1="{_num(py(tick))}" x2="{left + plot_w}" y2="{_num(py(tick))}" stroke="{_GRID_COLOR}"/>')
        parts.append(f'<text x="{left - 5}" y="{_num(py(tick) + 4)}" text-anchor="end" fill="{_AXIS_COLOR}">{_tick_label(tick, y_step)}</text>')
    for tick in x_ticks:
        parts.append(f'<line x1="{_num(px(tick))}" y1="{top + plot_h}" x2="{_num(px(tick))}" y2="{top + plot_h + 4}" stroke="{_AXIS_COLOR}"/>')
        parts.append(f'<text x="{_num(px(tick))}" y="{top + plot_h + 15}" text-anchor="middle" fill="{_AXIS_COLOR}">{_tick_label(tick, x_step)}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" fill="#24292f">{escape(x_label)}</text>')
    parts.append(
        f'<text x="12" y="{top + plot_h / 2}" text-anchor="middle" fill="#24292f" '
        f'transform="rotate(-90 12 {top + plot_h / 2})">{escape(y_label)}</text>'
    )
    for s in series:  # in order: a dashed reference drawn over the student's line stays visible where they coincide
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        path, pen_down, lone = [], False, []
        values = [yv for _, yv in s.points]
        last = len(values) - 1
        for i, (xv, yv) in enumerate(s.points):
            if yv is None:
                pen_down = False
                continue
            path.append(f"{'L' if pen_down else 'M'}{px(xv):.1f} {py(yv):.1f}")
            if (i == 0 or values[i - 1] is None) and (i == last or values[i + 1] is None):
                lone.append((xv, yv))  # a point with no line to draw: show it as a dot
            pen_down = True
        if path:
            stroke = 1.5 if s.dashed else 2.5  # not `width`: that is the chart's
            parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="{s.color}" stroke-width="{stroke}"{dash}/>')
        parts += [f'<circle cx="{_num(px(xv))}" cy="{_num(py(yv))}" r="2.5" fill="{s.color}"/>' for xv, yv in lone]
    parts.append("</svg>")
    return "\n".join(parts)


def histogram(counts: list[int], edges: list[float], *, title: str, x_label: str, width: int = 520, height: int = 250) -> str:
    """Vertical bars, one per bin: `counts[i]` values fell between `edges[i]` and `edges[i + 1]`."""
    assert len(edges) == len(counts) + 1
    left, right, top, bottom = 40, 12, 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = _open(width, height, title)
    y_ticks = [t for t in nice_ticks(0, max(max(counts, default=0), 1), 4) if t == int(t)]
    y_hi = y_ticks[-1]
    x_lo, x_hi = edges[0], edges[-1]

    def px(value: float) -> float:
        return left + (value - x_lo) / (x_hi - x_lo) * plot_w

    def py(value: float) -> float:
        return top + plot_h - value / y_hi * plot_h

    for tick in y_ticks:
        parts.append(f'<line x1="{left}" y1="{_num(py(tick))}" x2="{left + plot_w}" y2="{_num(py(tick))}" stroke="{_GRID_COLOR}"/>')
        parts.append(f'<text x="{left - 5}" y="{_num(py(tick) + 4)}" text-anchor="end" fill="{_AXIS_COLOR}">{int(tick)}</text>')
    for count, low, high in zip(counts, edges, edges[1:], strict=False):
        if count:
            x0, x1 = px(low) + 1, px(high) - 1
            parts.append(
                f'<rect x="{_num(x0)}" y="{_num(py(count))}" width="{_num(x1 - x0)}" height="{_num(py(0) - py(count))}" fill="{BAR_COLOR}">'
                f"<title>{count} between {low:g} and {high:g}</title></rect>"
            )
            parts.append(f'<text x="{_num((x0 + x1) / 2)}" y="{_num(py(count) - 3)}" text-anchor="middle" fill="#24292f">{count}</text>')
    for edge in edges:
        parts.append(f'<text x="{_num(px(edge))}" y="{top + plot_h + 15}" text-anchor="middle" fill="{_AXIS_COLOR}">{edge:g}</text>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="{_AXIS_COLOR}"/>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" fill="#24292f">{escape(x_label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def horizontal_bars(bars: list[tuple[str, float, str]], *, title: str, width: int = 520) -> str:
    """One bar per (label, fraction 0..1, value text), labels on the left."""
    row, top, left, right = 24, 30, 120, 90
    height = top + row * len(bars) + 10
    plot_w = width - left - right
    parts = _open(width, height, title)
    for i, (label, fraction, text) in enumerate(bars):
        y = top + i * row
        filled = max(0.0, min(1.0, fraction)) * plot_w
        parts.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end" fill="#24292f">{escape(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 4}" width="{plot_w}" height="15" fill="{_GRID_COLOR}"/>')
        parts.append(f'<rect x="{left}" y="{y + 4}" width="{_num(filled)}" height="15" fill="{PASS_COLOR}"/>')
        parts.append(f'<text x="{left + plot_w + 6}" y="{y + 15}" fill="#24292f">{escape(text)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
