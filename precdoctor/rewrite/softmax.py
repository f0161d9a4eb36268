"""Softmax written without max subtraction: ``exp(s) / sum(exp(s))``, whose Exp overflows FP16 past s = 11.09.

exp(s) / sum(exp(s)) = exp(s - m) / sum(exp(s - m)) for any m constant
along the reduced axis; with m the row max every exponent is <= 0, so no
term exceeds 1 and the largest is exactly 1 (the sum never underflows).
Where one axis is reduced and the opset says what ``Softmax`` computes on
it (any axis from opset 13, the last one before), the three nodes become
that op, which every engine computes with the max subtracted; otherwise the
max is subtracted explicitly (ReduceMax, Sub) before the Exp.
"""
from __future__ import annotations

from .core import Candidate, Context, Editor, Rewrite, describe
from .structure import reduce_axes, sole_reader

SOFTMAX_ANY_AXIS_OPSET = 13  # before 13, Softmax flattens the axes from ``axis`` on into one
REDUCE_AXES_INPUT_OPSET = 18  # ReduceMax takes its axes as an input from opset 18


def _site(ctx: Context, exp) -> tuple | None:
    """(ReduceSum, the nodes dividing by it, the probability tensor) of a hand-written softmax around ``exp``."""
    g, e = ctx.graph, exp.output[0]
    readers = g.readers(e)
    total = [r for r in readers if r.op_type == "ReduceSum" and r.input[0] == e]
    if len(readers) != 2 or len(total) != 1 or e in g.outputs or not reduce_axes(g, total[0])[1]:
        return None
    z = total[0].output[0]
    div = next((r for r in readers if r.op_type == "Div" and list(r.input) == [e, z]), None)
    if div is not None and sole_reader(g, z, "Div") is div:
        return total[0], [div], div.output[0]
    recip = sole_reader(g, z, "Reciprocal")
    mul = sole_reader(g, recip.output[0], "Mul") if recip is not None else None
    if mul is not None and mul in readers and set(mul.input) == {e, recip.output[0]}:
        return total[0], [recip, mul], mul.output[0]
    return None


def _already_shifted(ctx: Context, exp) -> bool:
    sub = ctx.graph.producer.get(exp.input[0])
    m = ctx.graph.producer.get(sub.input[1]) if sub is not None and sub.op_type == "Sub" else None
    return m is not None and m.op_type == "ReduceMax" and m.input[0] == sub.input[0]


def _softmax_axis(ctx: Context, s: str, axes: list[int] | None) -> int | None:
    rank = ctx.graph.ranks.get(s)
    if axes is None or len(axes) != 1 or rank is None:
        return None
    axis = axes[0] % rank
    return axis if ctx.graph.opset >= SOFTMAX_ANY_AXIS_OPSET or axis == rank - 1 else None


def _edit(ctx: Context, exp, total, divide, p: str, axis: int | None, axes: list[int] | None):
    s, scope = exp.input[0], exp.name.rsplit("/", 1)[0] if "/" in exp.name else exp.name
    drop = [exp.name, total.name] + [n.name for n in divide]

    def fused(ed: Editor) -> None:
        ed.drop(*drop)
        ed.op("Softmax", [s], f"{scope}/Softmax", output=p, axis=axis)

    def shifted(ed: Editor) -> None:
        if axes is None:
            m = ed.op("ReduceMax", [s], f"{scope}/ReduceMax", keepdims=1)
        elif ctx.graph.opset >= REDUCE_AXES_INPUT_OPSET:
            m = ed.op("ReduceMax", [s, ed.const(axes, f"{scope}/ReduceMax_axes", dtype="int64")], f"{scope}/ReduceMax", keepdims=1)
        else:
            m = ed.op("ReduceMax", [s], f"{scope}/ReduceMax", keepdims=1, axes=axes)
        ed.rewire(exp.name, s, ed.op("Sub", [s, m], f"{scope}/SubMax"))
        for t in (exp.output[0], total.output[0]):
            ed.rename(t, ed.tensor(f"{t}_shifted"))

    return fused if axis is not None else shifted


def find(ctx: Context) -> list[Candidate]:
    out = []
    for exp in ctx.graph.nodes:
        if exp.op_type != "Exp" or _already_shifted(ctx, exp):
            continue
        site = _site(ctx, exp)
        if site is None:
            continue
        total, divide, p = site
        nodes = [exp.name, total.name] + [n.name for n in divide]
        if not set(nodes) & ctx.culprits:
            continue
        axes = reduce_axes(ctx.graph, total)[0]
        axis = _softmax_axis(ctx, exp.input[0], axes)
        how = (f"the three nodes become Softmax(axis={axis}), which subtracts the row max" if axis is not None
               else "the row max (ReduceMax over the summed axes) subtracted before the Exp")
        rec = Rewrite(f"softmax:{exp.name}", "softmax", exp.name, nodes, f"softmax without max subtraction: {how}", True, [p],
                      before=describe(ctx.graph, nodes),
                      note="exp(s)/sum(exp(s)) = exp(s - max)/sum(exp(s - max)): every exponent <= 0, the largest term exactly 1")
        out.append(Candidate(rec, _edit(ctx, exp, total, divide, p, axis, axes), frozenset(nodes)))
    return out
