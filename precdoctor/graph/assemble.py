"""Putting a derived model together: what every graph precdoctor builds from the user's shares."""
from __future__ import annotations

from typing import Callable

import onnx
from onnx import helper

from .view import toposort


def derived_model(base: onnx.ModelProto, nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto],
                  outputs: list[onnx.ValueInfoProto] | None = None, producer: str = "precdoctor",
                  inputs: list[onnx.ValueInfoProto] | None = None, opsets=None, name: str | None = None,
                  sort: bool = False) -> onnx.ModelProto:
    """A model with ``base``'s inputs, outputs (unless given), opsets, IR version, functions and metadata,
    and these nodes and initializers; ``sort``: the nodes put in topological order (an editor's nodes
    are in the order they were edited)."""
    g = helper.make_graph(nodes, name or base.graph.name,
                          list(base.graph.input) if inputs is None else inputs,
                          list(base.graph.output) if outputs is None else outputs,
                          initializer=initializers)
    m = helper.make_model(g, opset_imports=list(base.opset_import) if opsets is None else opsets, producer_name=producer)
    m.ir_version = base.ir_version
    m.functions.extend(base.functions)
    for p in base.metadata_props:
        m.metadata_props.append(p)
    if sort:
        ordered = toposort(m.graph)
        del m.graph.node[:]
        m.graph.node.extend(ordered)
    return m


def emit_each(nodes: list[onnx.NodeProto], emit: Callable[[onnx.NodeProto], None], out: list[onnx.NodeProto]) -> dict[str, int]:
    """Each node written in turn by ``emit`` into ``out``: which original (its index in ``nodes``) each
    written node stands for, so that probes and reports can speak of the model's own nodes."""
    origin: dict[str, int] = {}
    for index, node in enumerate(nodes):
        first = len(out)
        emit(node)
        origin.update({n.name: index for n in out[first:]})
    return origin
