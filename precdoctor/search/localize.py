"""Localization: which nodes to suspect first, read off the naive plan's comparison.

Suspects (the *seed*), each with its evidence: nodes whose FP32 output leaves
the format's range and the nodes reading such tensors (their input is rounded
to inf at the border), nodes whose small values flush to zero, nodes reading
constants the format turns to 0 or inf, the Inf/NaN origin and the first
divergence with the producers of their inputs. The other candidates follow,
by error growth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..comparison import Comparison
from ..formats import Format
from ..graph import GraphView
from ..limits import UNDERFLOW_SHARE
from ..ops import SHAPE_ONLY, is_control_flow
from ..records import Record


@dataclass
class Localization(Record):
    order: list[str]  # every candidate node, most suspicious first
    suspects: int  # how many of ``order`` the evidence names (the seed)
    evidence: dict[str, str]  # suspect -> why


def candidates(graph: GraphView) -> list[str]:
    """Nodes that compute on floats, If/Loop/Scan body nodes included (each right after its control-flow
    node, which itself computes nothing): the ones a plan can pin."""
    return [n.name for n in graph.all_nodes() if n.op_type not in SHAPE_ONLY and not is_control_flow(n)
            and (graph.float_outputs(n) or any(graph.is_float(i) for i in n.input if i))]


def flushed_constants(graph: GraphView, fmt: Format) -> dict[str, str]:
    """Nodes reading a constant that the format turns to 0 (nonzero in FP32) or to inf."""
    hits: dict[str, str] = {}
    for name in graph.float_initializers():
        a = graph.array(name)
        r = fmt.round(a)
        lost = int(((a != 0) & (r == 0)).sum())
        inf = int((~(abs(r) < math.inf) & (abs(a) < math.inf)).sum())
        if lost or inf:
            what = f"constant {name} " + (f"has {lost} value(s) that become 0" if lost else f"has {inf} value(s) that become inf") + f" in {fmt.name}"
            for c in graph.readers(name):
                hits.setdefault(c.name, what)
    return hits


def _range_evidence(graph: GraphView, comp: Comparison, fmt: Format, flag) -> None:
    for t in comp.tensors:
        if t.overflow:
            flag(t.node, f"FP32 output |max| {t.ref_absmax:.4g} exceeds {fmt.name} max {fmt.max_finite:.6g} "
                         f"on {t.overflow} of {t.elements} elements")
            for c in graph.readers(t.tensor):
                flag(c.name, f"reads {t.tensor}, whose FP32 values exceed the {fmt.name} range")
        uf = t.underflow_frac
        if uf is not None and uf > UNDERFLOW_SHARE:
            flag(t.node, f"{uf:.1%} of its nonzero FP32 output values flush to 0 in {fmt.name}")
            for c in graph.readers(t.tensor):
                flag(c.name, f"reads {t.tensor}, whose small values flush to 0 in {fmt.name}")


def rank(graph: GraphView, comp: Comparison, fmt: Format) -> Localization:
    """Order candidates most suspicious first (see the module docstring)."""
    cands = candidates(graph)
    pos = {n: k for k, n in enumerate(cands)}
    compared = {t.tensor for t in comp.tensors}
    evidence: dict[str, str] = {}

    def flag(node: str, why: str):
        if node in pos:
            evidence.setdefault(node, why)

    _range_evidence(graph, comp, fmt, flag)
    for node, why in flushed_constants(graph, fmt).items():
        flag(node, "reads " + why)
    for label, node in (("Inf/NaN origin", comp.origin), ("first divergence", comp.first_divergence)):
        if node:
            t = comp.of_node(node)
            flag(node, label + (f" (error grows {t.growth:.3g}x over its inputs)" if t and math.isfinite(t.growth)
                                else " (error jumps over its inputs)"))
            for i in graph.node(node).input:
                p = graph.producer_of(i)
                if p is not None and i in compared:
                    flag(p.name, f"feeds the {label} {node}")
    growth_of: dict[str, float] = {}
    for t in comp.tensors:
        g = t.growth if t.rel_l2 > fmt.unit_roundoff else 0.0
        growth_of[t.node] = max(growth_of.get(t.node, 0.0), g)
    seed = sorted(evidence, key=pos.get)
    rest = sorted((n for n in cands if n not in evidence), key=lambda n: (-growth_of.get(n, 0.0), pos[n]))
    return Localization(seed + rest, len(seed), evidence)
