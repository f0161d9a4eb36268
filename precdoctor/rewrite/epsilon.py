"""Floors and epsilons that vanish in the format: ``log(clip(p, 1e-10))``, ``log(p + 1e-10)``, ``sqrt(v + 1e-10)``.

1e-10 is 0 in FP16, so a silent frame gives log(0) = -inf. Equivalents that
never form the vanishing constant, in order of preference:
- a floor before a monotone op commutes through it: f(max(p, lo)) =
  max(f(p), f(lo)), and log(1e-10) = -23.03 is an ordinary FP16 number
  (p negative: Relu first, unless p is provably >= 0);
- ``log(p + eps)`` rescaled inside the log, log(2^k p + 2^k eps) - k ln 2,
  and ``sqrt(p + eps)`` as 2^-k sqrt(4^k p + 4^k eps), where one power of two
  lifts eps to a normal number and keeps 2^k p finite with headroom;
- ``log(p + eps)`` for p >= 0 as logaddexp(log p, log eps) = max(a, b) +
  softplus(-|a - b|): every intermediate is a log, so any range fits.
Only where none applies is the constant changed, to the smallest normal
number of the format, and said so: FP32 then differs, and the acceptance
and the task metric judge whether it matters.
"""
from __future__ import annotations

import math

from ..graph import attrs, const_scalar
from ..core.ops import EPSILON_CONSUMERS
from .core import HEADROOM, Candidate, Context, Editor, Rewrite, describe
from .structure import nonnegative, scalar_input

MONOTONE = {"Log": math.log, "Sqrt": math.sqrt}
GUARDED = {"Div": 1, "Pow": 0}  # the input an epsilon guards (the denominator, the base); the only input for the rest


def _floor(ctx: Context, node) -> tuple[str, str, float, float | None, int | None] | None:
    """(kind, p, the constant, a ceiling, the constant's input position) of a Clip/Max floor or an Add eps."""
    g = ctx.graph
    if node.op_type == "Clip":
        a = attrs(node)
        lo = const_scalar(g, node.input[1]) if len(node.input) > 1 and node.input[1] else a.get("min")
        hi = const_scalar(g, node.input[2]) if len(node.input) > 2 and node.input[2] else a.get("max")
        return ("floor", node.input[0], lo, hi, 1 if len(node.input) > 1 and node.input[1] else None) if lo else None
    if node.op_type in ("Max", "Add") and len(node.input) == 2:
        c = scalar_input(g, node)
        if c is not None:
            return ("floor" if node.op_type == "Max" else "eps", node.input[1 - c[0]], c[1], None, c[0])
    return None


def _normal(ctx: Context, v: float) -> bool:
    """Finite and either 0 or a normal number of the format (full precision, kept by flush-to-zero engines)."""
    return math.isfinite(v) and abs(v) <= ctx.fmt.max_finite and (v == 0 or abs(v) >= ctx.fmt.min_normal)


def _commute(ctx: Context, A, L, p: str, lo: float, hi: float | None, rec_of):
    f = MONOTONE[L.op_type]
    flo, fhi = f(lo), (f(hi) if hi is not None else None)
    if not _normal(ctx, flo) or fhi is not None and not _normal(ctx, fhi):
        return None
    relu = not nonnegative(ctx.graph, p)

    def edit(ed: Editor) -> None:
        scope = L.name
        q = ed.op("Relu", [p], f"{scope}/Relu") if relu else p
        raw = ed.op(L.op_type, [q], f"{scope}/{L.op_type}")
        rec_of().absorbed = [raw]  # log(0) = -inf where p flushed to 0 in the format: the floor takes it
        v = ed.op("Max", [raw, ed.const(flo, f"{scope}/floor")], f"{scope}/Floor", output=None if fhi is not None else L.output[0])
        if fhi is not None:
            ed.op("Min", [v, ed.const(fhi, f"{scope}/ceiling")], f"{scope}/Ceiling", output=L.output[0])
        ed.drop(L.name, *([A.name] if _only_for(ctx, A, L) else []))

    how = (f"the floor moved past the {L.op_type}: max({L.op_type.lower()}({'relu(p)' if relu else 'p'}), {flo:.6g})"
           + (f", capped at {fhi:.6g}" if fhi is not None else "")
           + ("" if L.op_type != "Log" else "; where p is 0 in the format, log gives -inf inside and the floor takes it by design "
              "(that tensor is not judged by finite-inside)"))
    return how, edit


def _rescale(ctx: Context, L, A, p: str, eps: float):
    pmax = ctx.max_of(p)
    if pmax is None or not math.isfinite(pmax) or L.op_type not in MONOTONE:
        return None
    step = 1 if L.op_type == "Log" else 2  # sqrt needs an even power to come back out exactly
    k = step * math.ceil(math.log2(ctx.fmt.min_normal / eps) / step)
    if (pmax + eps) * 2.0 ** k * HEADROOM > ctx.fmt.max_finite:
        return None

    def edit(ed: Editor) -> None:
        scope = L.name
        t = ed.op("Add", [ed.pow2(p, k, f"{scope}/Lift"), ed.const(eps * 2.0 ** k, f"{scope}/eps_lifted", source=eps)], f"{scope}/AddEps")
        v = ed.op(L.op_type, [t], f"{scope}/{L.op_type}")
        if L.op_type == "Log":
            ed.op("Sub", [v, ed.const(k * math.log(2.0), f"{scope}/k_ln2")], f"{scope}/Lower", output=L.output[0])
        else:
            ed.pow2(v, -k // 2, f"{scope}/Lower", output=L.output[0])
        ed.drop(L.name, *([A.name] if _only_for(ctx, A, L) else []))

    how = (f"rescaled by 2^{k} inside the {L.op_type.lower()} (epsilon {eps:.3g} -> {eps * 2.0 ** k:.3g}, a normal "
           f"{ctx.fmt.name} number; p up to {pmax:.4g} -> {pmax * 2.0 ** k:.4g}) and " + ("k ln 2 subtracted after" if step == 1
                                                                                          else f"2^{-k // 2} multiplied after"))
    return how, edit


def _logaddexp(ctx: Context, L, A, p: str, eps: float, rec_of):
    if L.op_type != "Log" or not nonnegative(ctx.graph, p) or not _normal(ctx, math.log(eps)):
        return None

    def edit(ed: Editor) -> None:
        s = L.name
        a, b = ed.op("Log", [p], f"{s}/Log"), ed.const(math.log(eps), f"{s}/log_eps")
        d = ed.op("Sub", [a, b], f"{s}/Gap")
        m = ed.op("Abs", [d], f"{s}/AbsGap")
        gap = ed.op("Neg", [m], f"{s}/NegGap")
        rec_of().absorbed = [a, d, m, gap]  # log 0 = -inf where p flushed: max() and softplus(-inf) = 0 take it
        ed.op("Add", [ed.op("Max", [a, b], f"{s}/Larger"), ed.op("Softplus", [gap], f"{s}/Softplus")], f"{s}/LogAddExp",
              output=L.output[0])
        ed.drop(L.name, *([A.name] if _only_for(ctx, A, L) else []))

    return (f"log(p + {eps:.3g}) as logaddexp(log p, {math.log(eps):.6g}): max of the two plus softplus(-|difference|); where p "
            "is 0, log p = -inf inside and max() and softplus(-inf) = 0 take it by design (not judged by finite-inside)"), edit


def _changed(ctx: Context, A, position: int | None, c: float):
    new = ctx.fmt.min_normal

    def edit(ed: Editor) -> None:
        if position is None:  # Clip below opset 11: the floor is an attribute
            for a in ed.node(A.name).attribute:
                if a.name == "min":
                    a.f = new
        else:
            ed.node(A.name).input[position] = ed.const(new, f"{A.name}/constant")

    return f"constant {c:.3g} changed to {new:.3g}, the smallest normal {ctx.fmt.name} number (NOT exact: judged by the metric)", edit


def _only_for(ctx: Context, A, L) -> bool:
    return A.output[0] not in ctx.graph.outputs and all(r.name == L.name for r in ctx.graph.readers(A.output[0]))


def _candidate(ctx: Context, A, L) -> Candidate | None:
    found = _floor(ctx, A)
    if found is None:
        return None
    kind, p, c, hi, position = found
    if not c > 0 or ctx.held(c):
        return None  # the format holds the constant: nothing vanishes
    nodes = [A.name, L.name]
    box: list[Rewrite] = []  # the record, for edits that name the tensors they make
    forms = ([lambda: _commute(ctx, A, L, p, c, hi, lambda: box[0])] if kind == "floor" and L.op_type in MONOTONE else []) + \
        ([lambda: _rescale(ctx, L, A, p, c), lambda: _logaddexp(ctx, L, A, p, c, lambda: box[0])] if kind == "eps" else [])
    for form in forms:
        made = form()
        if made is not None:
            how, edit = made
            box.append(Rewrite(f"floor:{L.name}:{kind}", "floor", L.name, nodes, f"{c:.3g} is {ctx.holds(c):.3g} in {ctx.fmt.name} ({ctx.constants}): {how}", True,
                               [L.output[0]], before=describe(ctx.graph, nodes), note="exact in real arithmetic; " + how))
            return Candidate(box[0], edit, frozenset(nodes))
    how, edit = _changed(ctx, A, position, c)
    rec = Rewrite(f"floor:{L.name}:constant", "floor", L.name, nodes, f"{c:.3g} is {ctx.holds(c):.3g} in {ctx.fmt.name} ({ctx.constants}): {how}", False,
                  [L.output[0]], before=describe(ctx.graph, nodes),
                  note=f"no exact form fits the format here (no monotone op to commute through, or the range of the input "
                       f"is too wide to rescale); {how}")
    return Candidate(rec, edit, frozenset([A.name]))


def find(ctx: Context) -> list[Candidate]:
    out = []
    for L in ctx.graph.nodes:
        if L.op_type not in EPSILON_CONSUMERS or not L.input:
            continue
        k = GUARDED.get(L.op_type, 0)
        A = ctx.graph.producer.get(L.input[k]) if k < len(L.input) else None
        if A is None or not {A.name, L.name} & ctx.culprits:
            continue
        c = _candidate(ctx, A, L)
        if c is not None:
            out.append(c)
    return out
