"""What a fix costs at inference, pins and rewrites counted alike: nodes in FP32 (pins and what the schema
keeps FP32), Cast nodes of the mixed ONNX, FLOPs computed in FP32, and what a rewrite adds in the low format."""
from __future__ import annotations

from ..graph import GraphView
from ..numerics.mixed import mixed_model
from ..planning.plan import Plan
from ..runs import Cost
from ..numerics.schema import fp32_nodes
from .core import Rewrite


def plan_cost(graph: GraphView, plan: Plan, per_node: dict[str, int]) -> Cost:
    fp32 = fp32_nodes(graph, plan)
    return Cost(len(fp32), mixed_model(graph, plan).casts, sum(per_node.get(n, 0) for n in fp32))


def pins_inside(rec: Rewrite, pins) -> list[str]:
    """The pin search's pins that fall inside a rewrite's subgraph: what the rewrite stands in for."""
    inside = set(rec.nodes)
    return sorted(p for p in pins if p in inside)


def pins_cost(graph: GraphView, precision: str, pins: list[str], per_node: dict[str, int], base_casts: int) -> Cost:
    """The cost of these pins alone: Casts counted past the ones every plan has (graph inputs and outputs)."""
    c = plan_cost(graph, Plan(precision, frozenset(pins)), per_node)
    c.casts -= base_casts
    c.fp32_nodes, c.fp32_flops = len(pins), sum(per_node.get(p, 0) for p in pins)
    return c


def rewrite_cost(rec: Rewrite, per_node: dict[str, int], rewritten: dict[str, int]) -> Cost:
    """A rewrite keeps everything in the low format: it costs the nodes and FLOPs it adds (net)."""
    return Cost(0, 0, 0, len(rec.added) - len(rec.removed),
                sum(rewritten.get(n, 0) for n in rec.added) - sum(per_node.get(n, 0) for n in rec.removed))
