"""Charts as hand-written SVG: log-scale lines, Inf/NaN markers and labelled vertical rules.

No plotting library: the report needs few kinds of marks and full control over
two things a library leaves to chance. Labels never overlap: each takes the
first row of a label lane above the plot where it fits, with a leader line to
its rule. The legend lists every colour and line style drawn. The output is a
pure function of the data, so the same run always gives the same bytes.
Every string from a model is XML-escaped, control characters replaced.
"""
from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field

FONT = 11  # px
CHAR_W = 6.8  # generous average width of a FONT px character, for placing labels
ROW_H = 15  # label-lane row height
PAD_L, PAD_R, PAD_B = 62, 16, 52
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def esc(s: str) -> str:
    """Text safe inside SVG/XML: escaped, and characters XML cannot hold replaced."""
    return html.escape(_CTRL.sub("\ufffd", str(s)), quote=True)


@dataclass
class Series:
    label: str
    xs: list[float]
    ys: list[float]  # nan: no value (the line breaks)
    color: str
    width: float = 1.5
    dash: str = ""  # SVG stroke-dasharray
    markers: list[float] = field(default_factory=list)  # x of tensors holding new Inf/NaN
    marker_label: str = ""


@dataclass
class Rule:
    """A vertical line at ``x`` with a label (a marked node), or a horizontal one at ``y`` (a limit)."""

    label: str
    color: str
    x: float | None = None
    y: float | None = None
    dash: str = "4 3"
    legend: tuple[tuple[str, str], ...] = ()  # (kind, colour) the legend lists for it; default: the label up to ':'



@dataclass
class Chart:
    series: list[Series]
    rules: list[Rule]
    x_label: str
    y_label: str
    x_range: tuple[float, float] | None = None
    width: int = 640
    height: int = 230  # of the plot area
    band: tuple[float, float] | None = None  # a shaded x-range (the zoomed region, on the overview)
    title: str = ""


def _y_bounds(chart: Chart, x0: float, x1: float) -> tuple[float, float]:
    vals = [y for s in chart.series for x, y in zip(s.xs, s.ys) if x0 <= x <= x1 and y > 0 and math.isfinite(y)]
    vals += [r.y for r in chart.rules if r.y is not None and r.y > 0]
    vals = [min(max(v, 1e-300), 1e300) for v in vals]  # a run file may hold any float: decades stay representable
    if not vals:
        return 1e-6, 1.0
    lo, hi = math.floor(math.log10(min(vals))), math.ceil(math.log10(max(vals)))
    return 10.0 ** lo, 10.0 ** max(hi, lo + 1)


def _fmt_tick(v: float) -> str:
    e = int(round(math.log10(v)))
    return f"1e{e}" if abs(e) > 3 else f"{v:g}"


LINE_GAP = 3  # px a label keeps clear of another rule's line
CROSSING_CHECK_MAX = 40  # marked nodes past which labels only avoid each other (the check is cubic; such charts are dense anyway)


def _place_labels(rules: list[Rule], sx, left: float, right: float) -> list[tuple[Rule, float, float, int, str]]:
    """(rule, text x, rule x, row, anchor): no two labels of a row overlap, and no rule's line (drawn from its
    label's row down to the plot) crosses another label where that can be had. A label goes right of its rule,
    or left of it (where the chart ends on the right, or where that row is free); each takes the first row where
    it fits, else the first row where it overlaps no label. A label right of its rule runs over the rules after
    it, so those are placed after it (a row lower); one left of its rule, over the rules before it: labels right
    of their rules are placed left to right, then those left of them right to left. That order and the two plain
    ones are tried; the layout with fewer crossings, then fewer rows, is kept."""
    marked = sorted((r for r in rules if r.x is not None), key=lambda r: r.x)
    if len(marked) > CROSSING_CHECK_MAX:
        return _placed(marked, sx, left, right, lines=False)
    right_of = [r for r in marked if sx(r.x) + 3 + len(r.label) * CHAR_W + 6 < right]
    left_of = [r for r in marked if r not in right_of][::-1]
    layouts = [_placed(order, sx, left, right) for order in (right_of + left_of, marked, marked[::-1])]
    return min(layouts, key=lambda lay: (_crossings(lay), max((row for *_, row, _ in lay), default=0)))


def _crossings(layout) -> int:
    """Labels some other rule's line runs through."""
    n = 0
    for r, tx, _px, row, anchor in layout:
        w = len(r.label) * CHAR_W + 6
        a = tx if anchor == "start" else tx - w
        n += any(k < row and a - LINE_GAP <= x <= a + w + LINE_GAP for _, _, x, k, _ in layout)
    return n


def _placed(order: list[Rule], sx, left: float, right: float, lines: bool = True) -> list[tuple[Rule, float, float, int, str]]:
    """Each label in ``order`` in the first row where it fits (``lines``: crossing no rule's line, if any row allows)."""
    placed: list[tuple[float, float, float, int]] = []  # (start, end, rule x, row)
    out = []
    for r in order:
        px = sx(r.x)
        w = len(r.label) * CHAR_W + 6
        sides = [(max(px + 3, left), "start")] if px + 3 + w < right else []
        sides.append((max(px - 3 - w, left), "end"))

        def fits(row: int, a: float, lines: bool, w: float = w, px: float = px) -> bool:
            b = a + w
            for s, e, x, k in placed:
                if k == row and not (b < s or a > e):
                    return False  # two labels of one row
                if lines and k < row and a - LINE_GAP <= x <= b + LINE_GAP:
                    return False  # an earlier rule's line runs down through this label
                if lines and k > row and s - LINE_GAP <= px <= e + LINE_GAP:
                    return False  # this rule's line would run down through a label below
            return True

        rows = range(len(placed) + 1)
        row, start, anchor = next(((k, a, side) for check in ((True, False) if lines else (False,)) for k in rows for a, side in sides
                                   if fits(k, a, check)))
        placed.append((start, start + w, px, row))
        out.append((r, start if anchor == "start" else start + w, px, row, anchor))
    return sorted(out, key=lambda o: o[2])


def _polyline(s: Series, sx, sy, x0, x1, lo) -> list[str]:
    parts, cur = [], []
    for x, y in zip(s.xs, s.ys):
        if not (x0 <= x <= x1) or not math.isfinite(y):
            if len(cur) > 1:
                parts.append(cur)
            cur = []
            continue
        cur.append(f"{sx(x):.1f},{sy(max(y, lo)):.1f}")
    if len(cur) > 1:
        parts.append(cur)
    dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
    return [f'<polyline fill="none" stroke="{s.color}" stroke-width="{s.width}"{dash} stroke-linejoin="round" points="{" ".join(p)}"/>'
            for p in parts]


def render(chart: Chart) -> str:
    xs = [x for s in chart.series for x in s.xs] or [0.0, 1.0]
    x0, x1 = chart.x_range or (min(xs), max(xs))
    x1 = x1 if x1 > x0 else x0 + 1
    lo, hi = _y_bounds(chart, x0, x1)
    left, right = PAD_L, chart.width - PAD_R
    sx = lambda x: left + (x - x0) / (x1 - x0) * (right - left)  # noqa: E731
    labels = _place_labels(chart.rules, sx, left, right)
    title_h = 18 if chart.title else 0
    top = title_h + (max((row for *_, row, _ in labels), default=-1) + 1) * ROW_H + 6
    bottom = top + chart.height
    sy = lambda y: bottom - (math.log10(y) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * chart.height  # noqa: E731
    legend = _legend_layout(_legend(chart), left, right)
    total_h = bottom + PAD_B + 18 * (1 + max((row for *_, row in legend), default=0))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {chart.width} {total_h}" width="{chart.width}" height="{total_h}" '
           f'font-family="system-ui, sans-serif" font-size="{FONT}" role="img">']
    if chart.title:
        out.append(f'<text x="{left}" y="12" font-weight="600">{esc(chart.title)}</text>')
    if chart.band:
        b0, b1 = max(chart.band[0], x0), min(chart.band[1], x1)
        out.append(f'<rect x="{sx(b0):.1f}" y="{top}" width="{max(sx(b1) - sx(b0), 1):.1f}" height="{chart.height}" fill="#f3e9ff"/>')
    out += _axes(chart, sx, sy, lo, hi, x0, x1, left, right, top, bottom)
    for s in chart.series:
        out += _polyline(s, sx, sy, x0, x1, lo)
        out += [f'<path d="M{sx(x):.1f},{top + 2} l-4,7 h8 z" fill="{s.color}"/>' for x in s.markers if x0 <= x <= x1]
    for r in chart.rules:
        if r.y is not None:
            out.append(f'<line x1="{left}" x2="{right}" y1="{sy(r.y):.1f}" y2="{sy(r.y):.1f}" stroke="{r.color}" stroke-dasharray="{r.dash}"/>')
    for r, tx, px, row, anchor in labels:
        ty = title_h + (row + 1) * ROW_H - 3
        out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{ty + 3}" y2="{bottom}" stroke="{r.color}" stroke-dasharray="{r.dash}" stroke-width="1"/>')
        out.append(f'<text x="{tx:.1f}" y="{ty}" fill="{r.color}" text-anchor="{anchor}">{esc(r.label)}</text>')
    out += _legend_svg(legend, left, bottom + PAD_B)
    out.append("</svg>")
    return "\n".join(out)


def _axes(chart, sx, sy, lo, hi, x0, x1, left, right, top, bottom) -> list[str]:
    out = [f'<rect x="{left}" y="{top}" width="{right - left}" height="{chart.height}" fill="none" stroke="#999"/>']
    e0, e1 = int(round(math.log10(lo))), int(round(math.log10(hi)))
    every = max(1, math.ceil((e1 - e0) / max(chart.height // 28, 2)))  # decades per tick, so ticks stay readable
    for e in range(e0, e1 + 1, every):
        y = sy(10.0 ** e)
        out.append(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e6e6"/>')
        out.append(f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{_fmt_tick(10.0 ** e)}</text>')
    step = _nice_step((x1 - x0) / 6)
    t = math.ceil(x0 / step) * step
    while t <= x1:
        out.append(f'<text x="{sx(t):.1f}" y="{bottom + 14}" text-anchor="middle" fill="#555">{t:g}</text>')
        t += step
    out.append(f'<text x="{(left + right) / 2:.1f}" y="{bottom + 28}" text-anchor="middle">{esc(chart.x_label)}</text>')
    out.append(f'<text transform="translate(14,{(top + bottom) / 2:.1f}) rotate(-90)" text-anchor="middle">{esc(chart.y_label)}</text>')
    return out


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


def _legend(chart: Chart) -> list[tuple[str, str, float, str, bool]]:
    """(label, colour, width, dash, is_marker) for everything drawn."""
    items = [(s.label, s.color, s.width, s.dash, False) for s in chart.series]
    items += [(s.marker_label or f"{s.label}: new Inf/NaN", s.color, 0, "", True) for s in chart.series if s.markers]
    kinds = {}
    for r in chart.rules:
        for key, color in r.legend or ((r.label.split(":")[0] if r.x is not None else r.label, r.color),):
            kinds.setdefault(key, (key, color, 1.0, r.dash, False))
    return items + list(kinds.values())


def _legend_layout(items, left: float, right: float) -> list[tuple]:
    """Legend items flowed left to right, wrapping at the chart's width: (item..., x, row)."""
    out, x, row = [], left, 0
    for item in items:
        w = 30 + len(item[0]) * CHAR_W + 18
        if x + w > right and x > left:
            x, row = left, row + 1
        out.append((*item, x, row))
        x += w
    return out


def _legend_svg(items, left: float, y: float) -> list[str]:
    out = []
    for label, color, width, dash, marker, cx, row in items:
        cy = y + 18 * row
        if marker:
            out.append(f'<path d="M{cx + 12:.1f},{cy - 8} l-4,7 h8 z" fill="{color}"/>')
        else:
            d = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<line x1="{cx:.1f}" x2="{cx + 24:.1f}" y1="{cy - 4}" y2="{cy - 4}" stroke="{color}" stroke-width="{max(width, 1)}"{d}/>')
        out.append(f'<text x="{cx + 30:.1f}" y="{cy}">{esc(label)}</text>')
    return out
