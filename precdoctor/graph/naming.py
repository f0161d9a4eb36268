"""Names: the model's nodes named as TensorRT names them, and collision-free names for what precdoctor adds.

TensorRT's ONNX parser names a layer after its node and an unnamed node
``node_of_<first output>``; naming the model the same way makes a pin here
name the same layer in an engine.

Every graph precdoctor derives (emulation, paired probes, mixed precision)
adds nodes and tensors. Their names come from one ``Namer`` per derived
graph, which knows every name already taken (the model's own included, in
subgraphs too) and never hands out one twice, whatever the model calls its
tensors and however many outputs a node has.
"""
from __future__ import annotations

import onnx

from .bodies import body_graphs, walk_nodes

MARK = "@pd"  # appended to generated names, so they read as precdoctor's in a graph dump


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every node a unique, deterministic name (TensorRT's convention for unnamed ones): the
    top-level nodes first, then the nodes of If/Loop/Scan bodies, unique across the whole model so
    that a pin names one node wherever it lives."""
    seen: dict[str, int] = {}
    top = list(model.graph.node)
    inner = [n for node in top for _, g in body_graphs(node) for n in walk_nodes(g)]
    for node in top + inner:
        base = node.name or f"node_of_{node.output[0] if node.output else node.op_type}"
        name = base
        while name in seen:
            seen[base] += 1
            name = f"{base}_{seen[base]}"
        seen.setdefault(name, 0)
        node.name = name


def graph_names(graph: onnx.GraphProto) -> set[str]:
    """Every node and tensor name in a graph and its subgraphs."""
    names = {i.name for i in graph.input} | {o.name for o in graph.output} | {i.name for i in graph.initializer}
    names |= {v.name for v in graph.value_info}
    for node in graph.node:
        names.add(node.name)
        names.update(node.input)
        names.update(node.output)
        for attr in node.attribute:
            for g in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                names |= graph_names(g)
    names.discard("")
    return names


class Namer:
    """Hands out names that collide with nothing taken before, deterministically."""

    def __init__(self, taken: set[str], mark: str = MARK):
        self.taken = set(taken)
        self.mark = mark

    @classmethod
    def for_model(cls, model: onnx.ModelProto, mark: str = MARK) -> "Namer":
        return cls(graph_names(model.graph), mark)

    def __call__(self, hint: str) -> str:
        name = f"{hint}{self.mark}"
        k = 1
        while name in self.taken:
            k += 1
            name = f"{hint}{self.mark}_{k}"
        self.taken.add(name)
        return name
