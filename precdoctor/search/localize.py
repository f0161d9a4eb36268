"""Localization: which nodes to suspect first, read off the naive plan's comparison.

Suspects (the *seed*), each with its evidence: nodes whose FP32 output leaves
the format's range and the nodes reading such tensors (their input is rounded
to inf at the border), nodes whose small values flush to zero (both read off
scan's FP32 ranges), nodes reading constants the format turns to 0 or inf, the
Inf/NaN origin and the first divergence with the producers of their inputs.
Then weak evidence: values that flush to zero but only feed sums (softmax
probabilities before a MatMul), values in the format's subnormal range (a
drift with no single jump). The other candidates follow, most
error added first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..numerics import constants
from ..analysis.comparison import Comparison
from ..core.formats import Format
from ..graph import GraphView
from ..core.limits import SENSITIVE_HOPS
from ..analysis.ranges import findings
from ..core.ops import EPSILON_CONSUMERS, KEEPS_SMALL, SHAPE_ONLY, is_control_flow
from ..core.records import Record


@dataclass
class Localization(Record):
    order: list[str]  # every candidate node, most suspicious first
    suspects: int  # how many of ``order`` the strong evidence names (the seed)
    evidence: dict[str, str]  # suspect -> why
    weak: int = 0  # candidates after the seed with weak evidence (subnormal values), tried next


def candidates(graph: GraphView) -> list[str]:
    """Nodes that compute on floats, If/Loop/Scan body nodes included (each right after its control-flow
    node, which itself computes nothing): the ones a plan can pin."""
    return [n.name for n in graph.all_nodes() if n.op_type not in SHAPE_ONLY and not is_control_flow(n)
            and (graph.float_outputs(n) or any(graph.is_float(i) for i in n.input if i))]


def flushed_constants(graph: GraphView, fmt: Format, how: str = "cast", only_lost: bool = False) -> dict[str, str]:
    """Nodes reading a constant that the format turns to 0 (nonzero in FP32) or to inf (unless ``only_lost``), converted
    ``how`` (constants.py)."""
    hits: dict[str, str] = {}
    for name in graph.float_initializers():
        lost, inf = constants.lost(graph.array(name), fmt, how)
        if lost or (inf and not only_lost):
            what = f"constant {name} " + (f"has {lost} value(s) that become 0" if lost else f"has {inf} value(s) that become inf") + f" in {fmt.name}"
            for c in graph.readers(name):
                hits.setdefault(c.name, what)
    return hits


def _ranges_evidence(graph: GraphView, ranges: dict, fmt: Format, flag, weak, benign=frozenset()) -> None:
    """FP32 range findings (scan's): values past the format's range or flushing to zero are strong evidence
    for the node making them and the nodes reading them; values in the subnormal range (fewer significant
    bits: a drift with no jump) are weak evidence, tried right after the strong. Values past the range that
    the comparison found to saturate benignly (``benign``: a float32-min mask) are no evidence."""
    for t, node, r, kind in findings(graph, ranges):
        if kind == "overflow" and t in benign:
            continue
        if kind == "overflow":
            flag(node.name, f"FP32 output |max| {r.absmax:.4g} exceeds {fmt.name} max {fmt.max_finite:.6g} on {r.overflow} of {r.elements} elements")
            for c in graph.readers(t):
                flag(c.name, f"reads {t}, whose FP32 values exceed the {fmt.name} range")
        elif kind == "underflow":
            mark = flag if _reaches_sensitive(graph, t) else weak
            mark(node.name, f"{r.share(r.underflow):.1%} of its nonzero FP32 output values flush to 0 in {fmt.name}")
            for c in graph.readers(t):
                mark(c.name, f"reads {t}, whose small values flush to 0 in {fmt.name}")
        else:
            weak(node.name, f"{r.share(r.subnormal):.1%} of its FP32 output values are subnormal in {fmt.name} (fewer significant bits)")
            for c in graph.readers(t):
                weak(c.name, f"reads {t}, {r.share(r.subnormal):.1%} of whose values are subnormal in {fmt.name}")


def _reaches_sensitive(graph: GraphView, tensor: str, hops: int = SENSITIVE_HOPS) -> bool:
    """Whether small values of ``tensor`` reach an op that amplifies them (Log, Div, Sqrt, ...) through ops that
    keep them small (sums, clamps, reshapes): a probability flushed to 0 before a MatMul is noise; a power
    flushed to 0 before a Log is the failure."""
    frontier = {tensor}
    for _ in range(hops):
        nxt = set()
        for t in frontier:
            for c in graph.readers(t):
                if c.op_type in EPSILON_CONSUMERS:
                    return True
                if c.op_type in KEEPS_SMALL:
                    nxt.update(o for o in c.output if o)
        frontier = nxt
    return False


def contribution(graph: GraphView, comp: Comparison) -> dict[str, float]:
    """Error each node adds: its output's relative L2 error over the largest of its inputs' (inf where Inf/NaN
    is born). Where no node jumps, the nodes adding most of the drift come first."""
    err = {t.tensor: (math.inf if t.fault_nonfinite else (t.rel_l2 if math.isfinite(t.rel_l2) else 0.0)) for t in comp.tensors}
    out: dict[str, float] = {}
    for t in comp.tensors:
        node = graph.node(t.node) if graph.has_node(t.node) else None
        base = max((err.get(i, 0.0) for i in node.input), default=0.0) if node is not None else 0.0
        added = err[t.tensor] - base if math.isfinite(err[t.tensor]) else (0.0 if math.isinf(base) else math.inf)
        out[t.node] = max(out.get(t.node, 0.0), added)
    return out


def rank(graph: GraphView, comp: Comparison, fmt: Format, ranges: dict, how: str) -> Localization:
    """Order candidates most suspicious first (see the module docstring)."""
    cands = candidates(graph)
    pos = {n: k for k, n in enumerate(cands)}
    compared = {t.tensor for t in comp.tensors}
    evidence: dict[str, str] = {}
    weak_evidence: dict[str, str] = {}

    def flag(node: str, why: str):
        if node in pos:
            evidence.setdefault(node, why)

    def weak(node: str, why: str):
        if node in pos:
            weak_evidence.setdefault(node, why)

    benign = {t.tensor for t in comp.tensors if t.benign}
    _ranges_evidence(graph, ranges, fmt, flag, weak, benign)
    lost = flushed_constants(graph, fmt, how, only_lost=True)
    for node, why in flushed_constants(graph, fmt, how).items():
        outs = [o for o in graph.float_outputs(graph.node(node)) if comp.tensor(o) is not None]
        if node not in lost and outs and all(comp.tensor(o).benign for o in outs):
            continue  # a constant past the range that saturates benignly where it is read (a float32-min mask)
        flag(node, "reads " + why)
    for label, node in (("Inf/NaN origin", comp.origin), ("first divergence", comp.first_divergence)):
        if node:
            t = comp.of_node(node)
            flag(node, label + (f" (error grows {t.growth:.3g}x over its inputs)" if t and math.isfinite(t.growth)
                                else " (error jumps over its inputs)"))
            for i in graph.node(node).input:
                p = graph.producer_of(i)
                if p is not None and i in compared and i not in benign:
                    flag(p.name, f"feeds the {label} {node}")
    added = contribution(graph, comp)
    seed = sorted(evidence, key=pos.get)
    hint = sorted((n for n in weak_evidence if n not in evidence), key=lambda n: (-added.get(n, 0.0), pos[n]))
    rest = sorted((n for n in cands if n not in evidence and n not in weak_evidence), key=lambda n: (-added.get(n, 0.0), pos[n]))
    evidence.update({n: weak_evidence[n] for n in hint})
    return Localization(seed + hint + rest, len(seed), evidence, len(hint))
