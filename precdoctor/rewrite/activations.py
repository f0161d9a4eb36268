"""Exp-based sigmoid / tanh / softplus: ``exp(x) / (1 + exp(x))``, ``(exp(2x) - 1) / (exp(2x) + 1)``,
``log(1 + exp(x))`` and their many spellings, whose Exp overflows FP16 past 11.09 (inf/inf = NaN, log(inf) = inf).

Matched by what they compute, not by how they are written: from an Exp,
the elementwise subgraph that depends on one tensor x only (scalar
constants aside) is evaluated in float64 on a grid of x, and the largest
part of it whose output equals sigmoid(x), tanh(x) or softplus(x) there is
replaced by that op. The dedicated ops are bounded by construction
(sigmoid, tanh) or computed in a stable form by the engines (softplus:
ONNX Runtime CUDA computes x + log1p(exp(-x)) for x > 0).
"""
from __future__ import annotations

import numpy as np

from ..graph import const_scalar
from .core import Candidate, Context, Editor, Rewrite, describe

GRID = np.linspace(-8.0, 8.0, 161)  # where the float64 evaluation is well conditioned for every spelling
MATCH_TOLERANCE = 1e-9
ROOT_HOPS = 2  # elementwise ops between x and the Exp (Neg, Mul by 2, ...)
CONE_LIMIT = 16  # nodes of one matched expression

UNARY = {"Exp": np.exp, "Neg": np.negative, "Reciprocal": np.reciprocal, "Log": np.log, "Sqrt": np.sqrt, "Abs": np.abs,
         "Relu": lambda x: np.maximum(x, 0.0), "Identity": lambda x: x, "Tanh": np.tanh,
         "Sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)), "Softplus": lambda x: np.logaddexp(0.0, x)}
BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Pow": np.power, "Max": np.maximum,
          "Min": np.minimum}
TARGETS = {"Sigmoid": UNARY["Sigmoid"], "Tanh": np.tanh, "Softplus": UNARY["Softplus"]}


def _operands(ctx: Context, node, known: set[str]) -> list | None:
    """The node's inputs as tensor names (in ``known``) or scalar values; None if any is neither."""
    out = []
    for i in node.input:
        if i in known:
            out.append(i)
        elif (v := const_scalar(ctx.graph, i)) is not None:
            out.append(float(v))
        else:
            return None
    return out


def _elementwise(node) -> bool:
    return node.op_type in UNARY and len(node.input) == 1 or node.op_type in BINARY and len(node.input) == 2


def _roots(ctx: Context, exp) -> list[str]:
    roots, t = [exp.input[0]], exp.input[0]
    for _ in range(ROOT_HOPS):
        p = ctx.graph.producer.get(t)
        ins = [i for i in p.input if const_scalar(ctx.graph, i) is None] if p is not None and _elementwise(p) else []
        if len(ins) != 1:
            break
        t = ins[0]
        roots.append(t)
    return roots


def _closure(ctx: Context, x: str) -> list:
    """Elementwise nodes computing on x and scalar constants only, in topological order."""
    known, nodes = {x}, []
    for n in ctx.graph.nodes:
        if len(nodes) >= CONE_LIMIT * 2:
            break
        if _elementwise(n) and any(i in known for i in n.input) and _operands(ctx, n, known) is not None:
            nodes.append(n)
            known.add(n.output[0])
    return nodes


def _cone(ctx: Context, closure: list, y: str) -> list:
    made = {n.output[0]: n for n in closure}
    cone, todo = {}, [y]
    while todo:
        n = made.get(todo.pop())
        if n is not None and n.name not in cone:
            cone[n.name] = n
            todo.extend(n.input)
    return [n for n in closure if n.name in cone]


def _evaluate(ctx: Context, x: str, cone: list) -> np.ndarray:
    vals = {x: GRID}
    with np.errstate(all="ignore"):
        for n in cone:
            args = [vals[a] if isinstance(a, str) else a for a in _operands(ctx, n, set(vals))]
            vals[n.output[0]] = (UNARY[n.op_type] if len(args) == 1 else BINARY[n.op_type])(*args)
    return vals[cone[-1].output[0]]


def _which(values: np.ndarray) -> str | None:
    for name, f in TARGETS.items():
        want = f(GRID)
        if np.all(np.isfinite(values)) and np.max(np.abs(values - want) / np.maximum(1.0, np.abs(want))) <= MATCH_TOLERANCE:
            return name
    return None


def _removable(ctx: Context, cone: list, y: str) -> bool:
    inside = {n.name for n in cone}
    return all(t == y or (t not in ctx.graph.outputs and all(r.name in inside for r in ctx.graph.readers(t)))
               for n in cone for t in n.output)


def _best(ctx: Context, exp) -> tuple[str, list, str] | None:
    """(x, the matched nodes, the op) with the most nodes, over every root."""
    best = None
    for x in _roots(ctx, exp):
        closure = _closure(ctx, x)
        for n in closure:
            cone = _cone(ctx, closure, n.output[0])
            if exp not in cone or len(cone) > CONE_LIMIT or not _removable(ctx, cone, n.output[0]):
                continue
            op = _which(_evaluate(ctx, x, cone))
            if op is not None and (best is None or len(cone) > len(best[1])):
                best = (x, cone, op)
    return best


def find(ctx: Context) -> list[Candidate]:
    out, taken = [], set()
    for exp in ctx.graph.nodes:
        if exp.op_type != "Exp" or exp.name in taken:
            continue
        found = _best(ctx, exp)
        if found is None:
            continue
        x, cone, op = found
        nodes = [n.name for n in cone]
        if not set(nodes) & ctx.culprits:
            continue
        taken.update(nodes)
        y = cone[-1].output[0]

        def edit(ed: Editor, x=x, nodes=nodes, op=op, y=y, anchor=exp.name) -> None:
            ed.drop(*nodes)
            ed.op(op, [x], f"{anchor.rsplit('/', 1)[0] if '/' in anchor else anchor}/{op}", output=y)

        rec = Rewrite(f"activation:{exp.name}:{op}", "activation", exp.name, nodes,
                      f"{len(nodes)} elementwise nodes computing {op.lower()}({x}) become one {op} op", True, [y],
                      before=describe(ctx.graph, nodes),
                      note=f"matched by value: the subgraph equals {op.lower()}(x) within {MATCH_TOLERANCE:g} on x in [-8, 8]; "
                           f"the {op} op keeps no intermediate past its output's range")
        out.append(Candidate(rec, edit, frozenset(nodes)))
    return out
