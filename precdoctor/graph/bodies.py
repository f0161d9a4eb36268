"""The bodies of control-flow nodes (If branches, Loop and Scan bodies) seen from the whole model.

A pin may name a body node: body nodes are named uniquely across the model
(``naming.name_nodes``), and this index finds them, the control-flow node
that holds each (``parent``), and who produces and reads each body tensor.
ONNX requires every graph, a body included, to list its nodes in topological
order (the checker enforces it), so body nodes are kept in file order.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import onnx

from ..core.ops import body_graphs, is_control_flow, subgraphs


def subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    """Outer-scope names a control-flow node's subgraphs read (implicit inputs)."""
    names: set[str] = set()
    for g in subgraphs(node):
        defined = {i.name for i in g.input} | {i.name for i in g.initializer}
        for n in g.node:
            defined.update(n.output)
        for n in g.node:
            names.update(i for i in n.input if i and i not in defined)
            names.update(subgraph_inputs(n) - defined)
        names.update(o.name for o in g.output if o.name not in defined)
    return names


def walk_nodes(graph: onnx.GraphProto):
    """Every node of a graph and of its bodies, depth first, each before its bodies' nodes."""
    for node in graph.node:
        yield node
        for _, body in body_graphs(node):
            yield from walk_nodes(body)


def walk_graphs(graph: onnx.GraphProto):
    """A graph and every body nested in it."""
    yield graph
    for node in graph.node:
        for _, body in body_graphs(node):
            yield from walk_graphs(body)


@dataclass
class Bodies:
    """Index of every body node of a model (see the module docstring)."""

    nodes: dict[str, onnx.NodeProto] = field(default_factory=dict)
    parent: dict[str, str] = field(default_factory=dict)  # body node -> control-flow node holding it
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)  # tensor made by a body node
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=lambda: defaultdict(list))  # tensor -> body readers
    formal: set[str] = field(default_factory=set)  # body formal inputs (loop state, scan slices, iteration counters)

    def __bool__(self) -> bool:
        return bool(self.nodes)

    def inside(self, cf: str) -> list[str]:
        """Every body node under control-flow node ``cf``, nested bodies included, in order."""
        out = []
        for name in self.nodes:
            p = self.parent.get(name)
            while p is not None and p != cf:
                p = self.parent.get(p)
            if p == cf:
                out.append(name)
        return out



def index_bodies(top_nodes: list[onnx.NodeProto]) -> Bodies:
    b = Bodies()

    def visit(owner: onnx.NodeProto) -> None:
        for _, g in body_graphs(owner):
            b.formal.update(i.name for i in g.input)
            for node in g.node:
                b.nodes[node.name] = node
                b.parent[node.name] = owner.name
                for o in node.output:
                    if o:
                        b.producer[o] = node
                for i in set(node.input) | subgraph_inputs(node):
                    if i:
                        b.consumers[i].append(node)
                if is_control_flow(node):
                    visit(node)

    for node in top_nodes:
        if is_control_flow(node):
            visit(node)
    return b
