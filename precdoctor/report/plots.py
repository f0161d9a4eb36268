"""The report's figures: per-layer error (overview and the failing region zoomed), FP32 range against the format."""
from __future__ import annotations

import math

from ..core.formats import get_format
from .svg import Chart, Rule, Series, render

SERIES_STYLE = [("#d62728", 2.4, ""), ("#1a7f1a", 1.4, "6 3"), ("#1f77b4", 1.0, "2 2"), ("#ff7f0e", 1.0, "")]
MARK_COLORS = {"Inf/NaN origin": "#000000", "first divergence": "#8e44ad", "pin": "#1a7f1a"}
X_LABEL = "float tensor, in topological order"


def _short(s: str, n: int = 44) -> str:
    return s if len(s) <= n else "…" + s[-(n - 1):]


def _where_it_differs(ys: list[float], first: dict, xs: list) -> list[float]:
    """``ys`` kept only where they differ from the first series' (and one point either side, so the line
    reaches the difference): two lines drawn over each other mix their colours into one no legend names."""
    same = [x in first and (y == first[x] or (not math.isnan(y) and not math.isnan(first[x])
                                              and abs(y - first[x]) <= 1e-9 * max(abs(y), 1e-300)))
            for x, y in zip(xs, ys)]
    keep = [not s or (k > 0 and not same[k - 1]) or (k + 1 < len(same) and not same[k + 1]) for k, s in enumerate(same)]
    return [y if k else math.nan for y, k in zip(ys, keep)]


def _series(page) -> list[Series]:
    out = []
    errors = [[t.rel_l2 if math.isfinite(t.rel_l2) and not t.fault_nonfinite else math.nan for t in comp.tensors]
              for _, comp in page.series]
    # exact tensors (error 0) sit on the axis floor, a little under the smallest error drawn, not at 1e-9
    floor = max(min((y for ys in errors for y in ys if y > 0), default=1e-6) / 3, 1e-300)  # never 0: a log axis
    first: dict = {}
    for k, ((label, comp), ys) in enumerate(zip(page.series, errors)):
        color, width, dash = SERIES_STYLE[k % len(SERIES_STYLE)]
        xs = [t.index for t in comp.tensors]
        ys = [max(y, floor) if y == y else y for y in ys]
        if k == 0:
            first = dict(zip(xs, ys))
        else:
            drawn = _where_it_differs(ys, first, xs)
            if sum(not math.isnan(d) for d in drawn) < sum(not math.isnan(y) for y in ys):
                label += f" (drawn where it differs from {page.series[0][0]})"
            ys = drawn
        out.append(Series(label, xs, ys, color, width, dash,
                          [t.index for t in comp.tensors if t.fault_nonfinite], f"{page.series[k][0]}: tensor holds new Inf/NaN"))
    return out


def _rules(page) -> list[Rule]:
    """One rule per marked node: a node that is the origin, the first divergence and a pin gets one line and one
    label naming all three (three dashed lines on one x would mix their colours, three labels crowd the lane)."""
    index = {t.node: t.index for t in page.naive.tensors}
    kinds: dict[str, list[str]] = {}
    for node, what in page.marks:
        if node in index and what not in kinds.setdefault(node, []):
            kinds[node].append(what)
    return [Rule(f"{', '.join(ws)}: {_short(node)}", MARK_COLORS.get(ws[0], "#444"), x=index[node],
                 legend=tuple((w, MARK_COLORS.get(w, "#444")) for w in ws)) for node, ws in kinds.items()]


def zoom_range(page) -> tuple[float, float] | None:
    """From a little before the first marked node to the last tensor: where the failure lives."""
    index = {t.node: t.index for t in page.naive.tensors}
    xs = [index[n] for n, _ in page.marks if n in index]
    if not xs or not page.naive.tensors:
        return None
    last = page.naive.tensors[-1].index
    start = min(xs)
    margin = max(3, (last - start) // 10)
    # worth a second chart only when the failing region is a small part of the graph
    return (max(0, start - margin), last) if last - start + margin < 0.5 * last else None


def error_figures(page) -> dict[str, str]:
    if not page.series or not page.series[0][1].tensors:
        return {}
    zoom = zoom_range(page)
    series, rules = _series(page), _rules(page)
    out = {"overview": render(Chart(series, rules, X_LABEL, "relative L2 error vs FP32", band=zoom,
                                    title="All float tensors", width=640 if zoom else 1300))}
    if zoom:
        out["zoom"] = render(Chart(series, rules, X_LABEL, "relative L2 error vs FP32", x_range=zoom,
                                   title=f"Tensors {zoom[0]:g} to {zoom[1]:g}, zoomed: the shaded band of \"All float tensors\""))
    return out


def range_figure(page) -> str:
    comp = page.naive
    limit = get_format(page.precision).max_finite
    s = Series("FP32 |max| of the tensor (over all samples)", [t.index for t in comp.tensors],
               [max(t.ref_absmax, 1e-12) for t in comp.tensors], "#1f77b4", 1.2)
    return render(Chart([s], [Rule(f"largest finite {page.precision.upper()} value ({limit:.6g})", "#d62728", y=limit)],
                        X_LABEL, "|max| in FP32", width=1300, height=150))


def decode_figure(page) -> str:
    """The per-step logit error of each configuration (teacher-forced), the recorded steps of each clip
    side by side; a vertical line where each clip begins."""
    reports = page.decode_steps
    series, rules, x = [], [], 0
    for k, d in enumerate(reports):
        color, width, dash = SERIES_STYLE[k % len(SERIES_STYLE)]
        xs, ys, x = [], [], 0
        for c in d.clips:
            if k == 0 and c.logit_rel_l2:
                rules.append(Rule(_short(c.id, 24), "#999999", x=x))
            xs += [x + j for j in range(len(c.logit_rel_l2))] + [x + len(c.logit_rel_l2)]
            ys += [v if math.isfinite(v) and v > 0 else math.nan for v in c.logit_rel_l2] + [math.nan]  # a gap between clips
            x += len(c.logit_rel_l2) + 1
        series.append(Series(d.config, xs, ys, color, width, dash))
    return render(Chart(series, rules, "recorded decode step (clips side by side)", "logits' relative L2 error vs FP32",
                        width=1300, height=160, title="Per-step logit error, teacher-forced"))


def figures(page) -> dict[str, str]:
    out = error_figures(page)
    if out:
        out["range"] = range_figure(page)
    if getattr(page, "decode_steps", None):
        out["decode"] = decode_figure(page)
    return out
