"""What a model states outright: a node's attributes, and the value an initializer or Constant node holds."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .view import GraphView


def attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def attr(node: onnx.NodeProto, name: str, default=None):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def const_array(graph: GraphView, name: str) -> np.ndarray | None:
    """The value of an initializer or Constant node, else None."""
    if name in graph.initializers:
        return graph.array(name)
    node = graph.producer.get(name)
    if node is not None and node.op_type == "Constant":
        value = attr(node, "value")
        return numpy_helper.to_array(value) if value is not None else None
    return None


def const_scalar(graph: GraphView, name: str) -> float | None:
    """The value of a one-element initializer or Constant, else None."""
    if name in graph.initializers and int(np.prod(graph.initializers[name].dims)) != 1:
        return None  # not read: a large initializer would be copied out only to be refused
    arr = const_array(graph, name)
    return float(arr.reshape(-1)[0]) if arr is not None and arr.size == 1 else None
