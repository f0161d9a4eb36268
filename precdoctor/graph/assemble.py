"""Putting a derived model together: what every graph precdoctor builds from the user's shares."""
from __future__ import annotations

import onnx
from onnx import helper


def derived_model(base: onnx.ModelProto, nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto],
                  outputs: list[onnx.ValueInfoProto] | None = None, producer: str = "precdoctor",
                  inputs: list[onnx.ValueInfoProto] | None = None, opsets=None, name: str | None = None) -> onnx.ModelProto:
    """A model with ``base``'s inputs, outputs (unless given), opsets, IR version, functions and metadata,
    and these nodes and initializers."""
    g = helper.make_graph(nodes, name or base.graph.name,
                          list(base.graph.input) if inputs is None else inputs,
                          list(base.graph.output) if outputs is None else outputs,
                          initializer=initializers)
    m = helper.make_model(g, opset_imports=list(base.opset_import) if opsets is None else opsets, producer_name=producer)
    m.ir_version = base.ir_version
    m.functions.extend(base.functions)
    for p in base.metadata_props:
        m.metadata_props.append(p)
    return m
