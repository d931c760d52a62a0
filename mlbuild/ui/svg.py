"""Server-rendered inline SVG: a layered graph (stages, data, model versions: nodes with a
status colour, edges) and charts (lines or points over numbers, times or categories; grouped
bars). Plain strings, no JavaScript and no library, so a page needs nothing from the network."""

from __future__ import annotations

import html
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

FONT = 12  # px; text widths are estimated from it (no font metrics on the server)
CHAR = 7.2  # the width of an average character at FONT, in px
PALETTE = ("#1565c0", "#e65100", "#2e7d32", "#6a1b9a", "#c62828", "#00838f", "#5d4037",
           "#ad1457")
STATUS_COLOURS = {"ok": "#2e7d32", "stale": "#e65100", "frozen": "#546e7a",
                  "failed": "#c62828", "data": "#1565c0", "unknown": "#757575"}
BOLD = ' font-weight="bold"'
_IDS = itertools.count(1)  # unique marker ids when a page holds several graphs


def esc(text: object) -> str:
    """Text escaped for an attribute or an element."""
    return html.escape(str(text), quote=True)


def _text_width(text: str) -> float:
    return len(text) * CHAR


@dataclass(frozen=True)
class Node:
    """A box in a graph: *colour* fills it (see STATUS_COLOURS); *detail* is a second line;
    *tooltip* shows on hover; *href* makes it a link."""

    id: str
    label: str
    colour: str = STATUS_COLOURS["unknown"]
    detail: str = ""
    tooltip: str = ""
    href: str | None = None


@dataclass(frozen=True)
class Edge:
    """An arrow from *source* to *target* (node ids)."""

    source: str
    target: str


def layers(nodes: Sequence[Node], edges: Sequence[Edge]) -> list[list[str]]:
    """Each node's column: the longest path from a source, each column ordered by the mean
    position of its parents (one barycentre pass keeps most edges from crossing)."""
    ids = [n.id for n in nodes]
    parents: dict[str, list[str]] = {i: [] for i in ids}
    for e in edges:
        if e.source in parents and e.target in parents:
            parents[e.target].append(e.source)
    depth: dict[str, int] = {}

    def level(node: str, seen: frozenset[str]) -> int:
        if node not in depth:  # a cycle (never in a valid pipeline) is cut where it closes
            ups = [p for p in parents[node] if p not in seen]
            depth[node] = 1 + max((level(p, seen | {p}) for p in ups), default=-1)
        return depth[node]

    columns: list[list[str]] = [[] for _ in range(1 + max((level(i, frozenset({i}))
                                                            for i in ids), default=-1))]
    for i in ids:
        columns[depth[i]].append(i)
    place: dict[str, float] = {}
    for column in columns:
        keys = {node: _barycentre(parents[node], place, n) for n, node in enumerate(column)}
        column.sort(key=keys.__getitem__)
        place.update({node: float(row) for row, node in enumerate(column)})
    return columns


def _barycentre(parents: list[str], place: dict[str, float], own: int) -> float:
    placed = [place[p] for p in parents if p in place]
    return sum(placed) / len(placed) if placed else float(own)


@dataclass
class _Box:
    x: float
    y: float
    w: float
    h: float


BOX_H, GAP_X, GAP_Y, PAD = 44.0, 70.0, 22.0, 16.0
LIFT = 30.0  # room above the boxes for edges that skip a column


def _boxes(columns: list[list[str]], by_id: dict[str, Node], lift: float
           ) -> tuple[dict[str, _Box], float, float]:
    """Each node's box, columns centred on each other; (boxes, width, height)."""
    height = max(len(c) for c in columns) * (BOX_H + GAP_Y) - GAP_Y + 2 * PAD + lift
    boxes: dict[str, _Box] = {}
    x = PAD
    for col in columns:
        width = max(max(_text_width(by_id[i].label), _text_width(by_id[i].detail)) + 24
                    for i in col)
        top = lift + PAD + (height - lift - 2 * PAD - (len(col) * (BOX_H + GAP_Y) - GAP_Y)) / 2
        for row, node in enumerate(col):
            boxes[node] = _Box(x, top + row * (BOX_H + GAP_Y), width, BOX_H)
        x += width + GAP_X
    return boxes, x - GAP_X + PAD, height


def graph(nodes: Sequence[Node], edges: Sequence[Edge], title: str = "") -> str:
    """The graph laid out left to right in layers, as an <svg> element; an edge that skips
    a column arcs over the boxes between."""
    if not nodes:
        return '<p class="muted">nothing to draw</p>'
    by_id = {n.id: n for n in nodes}
    columns = layers(nodes, edges)
    depth = {node: n for n, col in enumerate(columns) for node in col}
    drawn = [e for e in edges if e.source in depth and e.target in depth]
    skips = {e: abs(depth[e.target] - depth[e.source]) > 1 for e in drawn}
    boxes, width, height = _boxes(columns, by_id, LIFT if any(skips.values()) else 0.0)
    marker = f"arrow{next(_IDS)}"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" role="img" '
             f'width="{width:.0f}" height="{height:.0f}" '
             f'aria-label="{esc(title or "graph")}"><defs><marker id="{marker}" '
             'viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#555"/></marker>'
             "</defs>"]
    parts += [_edge(boxes[e.source], boxes[e.target], marker, skips[e]) for e in drawn]
    parts += [_node(by_id[i], boxes[i]) for col in columns for i in col]
    parts.append("</svg>")
    return "".join(parts)


def _edge(a: _Box, b: _Box, marker: str, skip: bool) -> str:
    x1, y1, x2, y2 = a.x + a.w, a.y + a.h / 2, b.x, b.y + b.h / 2
    if skip:  # both control points above the higher box: the curve clears the columns between
        over = min(a.y, b.y) - LIFT
        controls = f"{x1 + GAP_X:.1f},{over:.1f} {x2 - GAP_X:.1f},{over:.1f}"
    else:
        bend = (x2 - x1) / 2
        controls = f"{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f}"
    return (f'<path class="edge" d="M{x1:.1f},{y1:.1f} C{controls} {x2:.1f},{y2:.1f}" '
            f'fill="none" stroke="#555" stroke-width="1.5" marker-end="url(#{marker})"/>')


def _node(node: Node, box: _Box) -> str:
    lines = [node.label, *([node.detail] if node.detail else [])]
    first = box.y + box.h / 2 + (FONT / 2 - 2 if len(lines) == 1 else -3)
    text = "".join(
        f'<text x="{box.x + box.w / 2:.1f}" y="{first + n * (FONT + 3):.1f}" '
        f'text-anchor="middle" font-size="{FONT if n == 0 else FONT - 2}" fill="#fff"'
        f'{BOLD if n == 0 else ""}>{esc(line)}</text>'
        for n, line in enumerate(lines))
    body = (f'<g class="node" data-id="{esc(node.id)}"><title>{esc(node.tooltip or node.label)}'
            f'</title><rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" '
            f'height="{box.h:.1f}" rx="8" fill="{esc(node.colour)}"/>{text}</g>')
    return f'<a href="{esc(node.href)}">{body}</a>' if node.href else body


@dataclass(frozen=True)
class Series:
    """One line (or set of points) of a chart: (x, y) pairs, x a number, a Unix time or a
    category's index, as the chart's x Axis says."""

    name: str
    points: tuple[tuple[float, float], ...]
    labels: tuple[str, ...] = ()  # a tooltip per point (else "name: x, y")


@dataclass(frozen=True)
class Axis:
    """An axis: its label and how its values read ("number", "time": Unix seconds shown as
    dates, "category": indices into *categories*)."""

    label: str
    kind: str = "number"
    categories: tuple[str, ...] = field(default=())


Scale = Callable[[float], float]  # a value -> its pixel position
W, H = 560, 300  # a chart's size
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 30, 48
LEGEND_ROW = 18  # px per row of the legend, under the chart


def _span(values: Sequence[float], flat: float | None = None) -> tuple[float, float]:
    """The values' range with a margin, so that no point sits on the frame; *flat* is the
    margin when all values are equal (default: a tenth of the value)."""
    lo, hi = min(values), max(values)
    if math.isclose(lo, hi):
        pad = flat if flat is not None else (abs(lo) * 0.1 or 1.0)
    else:
        pad = (hi - lo) * 0.06
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if step * m >= raw)
    first = math.ceil(lo / step) * step
    return [first + n * step for n in range(int((hi - first) / step + 1e-9) + 1)]


DAY = 86400.0


def _tick_text(value: float, axis: Axis, span: float = DAY * 7) -> str:
    if axis.kind == "time":  # dates; times of day over a short span
        shape = ("%Y-%m-%d" if span > 3 * DAY else "%m-%d %H:%M" if span > 3600 else
                 "%H:%M:%S")
        return time.strftime(shape, time.gmtime(value))
    if axis.kind == "category":
        index = round(value)
        return axis.categories[index] if 0 <= index < len(axis.categories) else ""
    return f"{value:.4g}"


def _x_ticks(lo: float, hi: float, axis: Axis) -> list[float]:
    if axis.kind == "category":
        return [float(i) for i in range(len(axis.categories))]
    return _ticks(lo, hi, 4 if axis.kind == "time" else 5)


def chart(series: Sequence[Series], x: Axis, y: Axis, title: str = "",
          lines: bool = True) -> str:
    """Several series over one pair of axes, as an <svg> element; *lines* joins each series'
    points in x order (a time series), else only the points are drawn (a scatter)."""
    points = [p for s in series for p in s.points]
    if not points:
        return f'<p class="muted">{esc(title)}: no data to draw</p>'
    x_lo, x_hi = (-0.5, len(x.categories) - 0.5) if x.kind == "category" else _span(
        [p[0] for p in points], DAY / 2 if x.kind == "time" else None)
    py, grid = _y_axis(*_span([p[1] for p in points]), y)

    def px(v: float) -> float:
        return LEFT + (v - x_lo) / (x_hi - x_lo) * (W - LEFT - RIGHT)

    legend, rows = _legend([s.name for s in series])
    parts = [_frame(title, x, y, rows), grid, legend]
    parts += [f'<text x="{px(t):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle" '
              f'font-size="{FONT - 1}">{esc(_tick_text(t, x, x_hi - x_lo))}</text>'
              for t in _x_ticks(x_lo, x_hi, x)]
    for n, s in enumerate(series):
        parts.append(_series(s, PALETTE[n % len(PALETTE)], lines, px, py, x, y))
    parts.append("</svg>")
    return "".join(parts)


def _y_axis(lo: float, hi: float, y: Axis) -> tuple[Scale, str]:
    """The y scale over [lo, hi] widened to round ticks, and its grid lines, labelled."""
    ticks = _ticks(lo, hi)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])

    def py(v: float) -> float:
        return H - BOTTOM - (v - lo) / (hi - lo) * (H - TOP - BOTTOM)

    grid = "".join(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
                   f'stroke="#e0e0e0"/><text x="{LEFT - 6}" y="{py(t) + 4:.1f}" '
                   f'text-anchor="end" font-size="{FONT - 1}">{esc(_tick_text(t, y))}</text>'
                   for t in ticks)
    return py, grid


def _frame(title: str, x: Axis, y: Axis, legend_rows: int) -> str:
    """The <svg> opening: title, axis labels and lines, room below for the legend."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{W}" '
            f'height="{H + legend_rows * LEGEND_ROW + (10 if legend_rows else 0)}" '
            f'aria-label="{esc(title)}">'
            f'<text x="{W / 2}" y="16" '
            f'text-anchor="middle" font-size="{FONT + 1}" font-weight="bold">{esc(title)}'
            f'</text><text class="x-label" x="{(LEFT + W - RIGHT) / 2}" y="{H - 10}" '
            f'text-anchor="middle" font-size="{FONT}">{esc(x.label)}</text>'
            f'<text class="y-label" transform="translate(14,{(TOP + H - BOTTOM) / 2}) '
            f'rotate(-90)" text-anchor="middle" font-size="{FONT}">{esc(y.label)}</text>'
            f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{H - BOTTOM}" stroke="#888"/>'
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{H - BOTTOM}" y2="{H - BOTTOM}" '
            'stroke="#888"/>')


def _series(s: Series, colour: str, lines: bool, px: Scale, py: Scale, x: Axis,
            y: Axis) -> str:
    ordered = sorted(s.points) if lines else list(s.points)
    parts = [f'<g class="series" data-name="{esc(s.name)}">']
    if lines and len(ordered) > 1:
        path = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in ordered)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                     'stroke-width="2"/>')
    for n, (a, b) in enumerate(s.points):
        tip = s.labels[n] if n < len(s.labels) else (
            f"{s.name}: {_tick_text(a, x)}, {_tick_text(b, y)}")
        parts.append(f'<circle class="point" cx="{px(a):.1f}" cy="{py(b):.1f}" r="4" '
                     f'fill="{colour}"><title>{esc(tip)}</title></circle>')
    parts.append("</g>")
    return "".join(parts)


def _legend(names: Sequence[str]) -> tuple[str, int]:
    """A key of the series' colours under the chart, wrapped into rows; (svg, rows)."""
    if len(names) < 2:
        return "", 0
    parts, x, row = [], float(LEFT), 0
    for n, name in enumerate(names):
        width = 24 + _text_width(name)
        if x + width > W - RIGHT and x > LEFT:
            x, row = float(LEFT), row + 1
        y = H + 10 + row * LEGEND_ROW
        parts.append(f'<rect x="{x:.1f}" y="{y - 9}" width="10" height="10" '
                     f'fill="{PALETTE[n % len(PALETTE)]}"/><text x="{x + 14:.1f}" y="{y}" '
                     f'font-size="{FONT - 1}">{esc(name)}</text>')
        x += width
    return "".join(parts), row + 1


def bars(categories: Sequence[str], series: Sequence[Series], y: Axis, title: str = "",
         x_label: str = "") -> str:
    """Grouped bars: for each category, one bar per series (a series' point (i, v) is the
    value v of category i), as an <svg> element."""
    values = [v for s in series for _, v in s.points]
    if not categories or not values:
        return f'<p class="muted">{esc(title)}: no data to draw</p>'
    lo, hi = min(0.0, *values), max(0.0, *values)
    py, grid = _y_axis(lo, hi if hi > lo else lo + 1.0, y)
    slot = (W - LEFT - RIGHT) / len(categories)
    width = slot * 0.8 / max(1, len(series))
    legend, rows = _legend([s.name for s in series])
    parts = [_frame(title, Axis(x_label), y, rows), grid, legend]
    for n, s in enumerate(series):
        for index, value in s.points:
            top, bottom = sorted((py(value), py(0.0)))
            parts.append(f'<rect class="bar" x="{LEFT + (index + 0.1) * slot + n * width:.1f}"'
                         f' y="{top:.1f}" width="{width:.1f}" height="'
                         f'{max(bottom - top, 0.5):.1f}" fill="{PALETTE[n % len(PALETTE)]}">'
                         f'<title>{esc(s.name)} {esc(categories[int(index)])}: {value:.4g}'
                         "</title></rect>")
    step = max(1, math.ceil(len(categories) * 60 / (W - LEFT - RIGHT)))  # labels that fit
    parts += [f'<text x="{LEFT + (i + 0.5) * slot:.1f}" y="{H - BOTTOM + 16}" '
              f'text-anchor="middle" font-size="{FONT - 1}">{esc(c)}</text>'
              for i, c in enumerate(categories) if i % step == 0]
    parts.append("</svg>")
    return "".join(parts)
