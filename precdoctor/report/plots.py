"""The report's plots as inline SVG: per-layer error of each plan, and FP32 range against the format's limit.

matplotlib writes the SVG; its random element ids are seeded (``svg.hashsalt``)
and its metadata dropped, so the same run always gives the same bytes.
"""
from __future__ import annotations

import io
import math
import re

from ..errors import require
from ..formats import get_format

COLORS = ["#d62728", "#2ca02c", "#1f77b4", "#ff7f0e"]
MARK_COLORS = {"Inf/NaN origin": "#000000", "first divergence": "#9467bd", "pin": "#2ca02c"}


def _safe_label(s: str, n: int = 48) -> str:
    s = s if len(s) <= n else "…" + s[-(n - 1):]
    return s.replace("$", r"\$")  # matplotlib would read $...$ as math


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)  # a date and external URLs


def _pyplot():
    matplotlib = require("matplotlib", "report", "the report's plots")
    matplotlib.use("Agg")
    matplotlib.rcParams.update({"svg.fonttype": "none", "font.size": 9, "text.usetex": False, "svg.hashsalt": "precdoctor"})
    import matplotlib.pyplot as plt

    return plt


def _finish(plt, fig, ax, ylabel: str) -> str:
    ax.set_yscale("log")
    ax.set_xlabel("tensor (topological order)")
    ax.set_ylabel(ylabel)
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)
    svg = _svg(fig)
    plt.close(fig)
    return svg


def error_plot(series, marks) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 3.8))
    top = 1.0
    for k, (label, comp) in enumerate(series):
        xs = [t.index for t in comp.tensors]
        ys = [t.rel_l2 if math.isfinite(t.rel_l2) and not t.nonfinite_new else math.nan for t in comp.tensors]
        top = max(top, max((y for y in ys if y == y and y > 0), default=1.0))
        ax.plot(xs, [max(y, 1e-9) if y == y else math.nan for y in ys], lw=2.2 if k == 0 else 1, alpha=0.8,
                color=COLORS[k % len(COLORS)], label=label, zorder=1 if k == 0 else 2)
        bad = [t.index for t in comp.tensors if t.nonfinite_new]
        if bad:
            ax.scatter(bad, [top * 3] * len(bad), marker="^", s=12, color=COLORS[k % len(COLORS)], label=f"{label}: Inf/NaN")
    index = {t.node: t.index for t in series[0][1].tensors}
    for k, (node, what) in enumerate(marks):
        if node in index:
            color = MARK_COLORS.get(what, "#444444")
            ax.axvline(index[node], color=color, ls="--", lw=0.8)
            ax.annotate(_safe_label(f"{what}: {node}"), (index[node], top * (0.5 ** (k % 4))), fontsize=7, color=color,
                        ha="right" if index[node] > len(index) / 2 else "left")
    return _finish(plt, fig, ax, "relative L2 error vs FP32")


def range_plot(comp, precision: str) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 2.8))
    ax.plot([t.index for t in comp.tensors], [max(t.ref_absmax, 1e-12) for t in comp.tensors], lw=1, color="#1f77b4", label="FP32 |max|")
    lim = get_format(precision).max_finite
    ax.axhline(lim, color="#d62728", ls="--", lw=1, label=f"{precision} max {lim:.6g}")
    return _finish(plt, fig, ax, "|max| in FP32")


def plots(page) -> dict[str, str]:
    if not page.series or not page.series[0][1].tensors:
        return {}
    return {"error": error_plot(page.series, page.marks), "range": range_plot(page.naive, page.precision)}
