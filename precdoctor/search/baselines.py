"""What the tools users already know would pin, on the same model, inputs and acceptance.

- the range rule of ModelOpt AutoCast: keep a node FP32 if any of its FP32
  inputs or outputs exceeds ``data_max`` or it reads an initializer past
  ``init_max``; rule-based, it never runs the converted model;
- Polygraphy's ``debug precision``: the shortest prefix of the graph, in
  topological order, that passes when computed in FP32 (it reports "the first
  K layers", no names).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..analysis.comparison import Comparison
from ..graph import GraphView
from ..core.limits import RANGE_RULE_DATA_MAX, RANGE_RULE_INIT_MAX
from ..core.records import Record
from .evaluator import BudgetExhausted, Evaluator
from .localize import candidates
from .strategy import shortest_passing_prefix


@dataclass
class RangeRule(Record):
    pins: int
    passed: bool | None  # None: the budget ran out before it could be judged
    evaluations: int
    rule: str
    nodes: list[str]


@dataclass
class PrefixBisection(Record):
    pins: int | None  # K, or None when no prefix passed
    passed: bool
    evaluations: int
    last_node: str | None = None
    budget_exhausted: bool = False


@dataclass
class OurResult(Record):
    pins: int
    passed: bool
    evaluations: int


@dataclass
class Baselines(Record):
    range_rule: RangeRule
    prefix_bisection: PrefixBisection
    precdoctor: OurResult


def range_rule_nodes(graph: GraphView, comp: Comparison, data_max: float = RANGE_RULE_DATA_MAX,
                     init_max: float = RANGE_RULE_INIT_MAX) -> list[str]:
    absmax = {t.tensor: t.ref_absmax for t in comp.tensors}
    big_init = {n for n in graph.float_initializers() if graph.array(n).size and float(abs(graph.array(n)).max()) > init_max}
    pins = []
    for name in candidates(graph):
        node = graph.node(name)
        ranges = [absmax.get(t, 0.0) for t in list(node.input) + list(node.output) if t]
        if any(r > data_max for r in ranges) or any(i in big_init for i in node.input):
            pins.append(name)
    return pins


def range_rule(graph: GraphView, comp: Comparison, ev: Evaluator) -> RangeRule:
    nodes = range_rule_nodes(graph, comp)
    try:
        passed = ev(frozenset(nodes))
    except BudgetExhausted:
        passed = None
    rule = f"FP32 |max| of an input or output > {RANGE_RULE_DATA_MAX:g}, or an initializer > {RANGE_RULE_INIT_MAX:g}"
    return RangeRule(len(nodes), passed, 1, rule, nodes)


def prefix_bisection(topo: list[str], ev: Evaluator) -> PrefixBisection:
    """The smallest K such that the first K nodes in FP32 pass."""
    start = ev.count
    try:
        if ev(frozenset()):
            return PrefixBisection(0, True, ev.count - start)
        if not ev(frozenset(topo)):
            return PrefixBisection(None, False, ev.count - start)
        hi = shortest_passing_prefix(lambda k: ev(frozenset(topo[:k])), 0, len(topo))
        return PrefixBisection(hi, True, ev.count - start, topo[hi - 1])
    except BudgetExhausted:
        return PrefixBisection(None, False, ev.count - start, budget_exhausted=True)
