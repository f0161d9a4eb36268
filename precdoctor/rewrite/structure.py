"""Structure the rewrite families match on: constants, reductions, sole consumers, provably nonnegative
tensors, and decomposed normalizations (LayerNorm and RMSNorm, one shape for both)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from ..graph import GraphView, ViewCache, attrs, const_array, const_scalar, is_square

NONNEGATIVE_OPS = frozenset({"Relu", "Abs", "Exp", "Sigmoid", "Softplus", "Softmax", "Sqrt", "ReduceSumSquare", "ReduceL1",
                             "ReduceL2", "HardSigmoid"})
# nonnegative whenever every float input is (sums, products, means, data movement)
NONNEGATIVE_IF_INPUTS = frozenset({"Add", "Mul", "Div", "MatMul", "Gemm", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin",
                                   "Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Concat", "Slice",
                                   "Gather", "Expand", "Min", "Conv", "MaxPool", "AveragePool", "Pad"})
NONNEGATIVE_DEPTH = 8  # producers followed back before giving up (a proof, not a search)


def reduce_axes(graph: GraphView, node: onnx.NodeProto) -> tuple[list[int] | None, bool]:
    """(axes, keepdims) of a Reduce* node; axes None means every axis (or axes not constant)."""
    a = attrs(node)
    keep = bool(a.get("keepdims", 1))
    if "axes" in a:
        return [int(x) for x in a["axes"]], keep
    if len(node.input) > 1 and node.input[1]:
        arr = const_array(graph, node.input[1])
        return (None if arr is None else [int(x) for x in np.asarray(arr).reshape(-1)]), keep
    return None, keep


def sole_reader(graph: GraphView, tensor: str, *ops: str) -> onnx.NodeProto | None:
    readers = graph.readers(tensor)
    if len(readers) == 1 and readers[0].op_type in ops and tensor not in graph.outputs:
        return readers[0]
    return None


def scalar_input(graph: GraphView, node: onnx.NodeProto) -> tuple[int, float] | None:
    """(position, value) of the one-element constant input of a binary node, else None."""
    for k, i in enumerate(node.input[:2]):
        v = const_scalar(graph, i) if i else None
        if v is not None:
            return k, v
    return None


def nonnegative(graph: GraphView, tensor: str, depth: int = NONNEGATIVE_DEPTH) -> bool:
    """Provably >= 0 for any input, from the ops that make it (x*x, exp, relu, sums of those, ...)."""
    arr = const_array(graph, tensor)
    if arr is not None:
        return bool(np.all(np.asarray(arr) >= 0))
    node = graph.producer.get(tensor)
    if node is None or depth <= 0:
        return False
    op = node.op_type
    if op in NONNEGATIVE_OPS or (op == "Mul" and node.input[0] == node.input[1]):
        return True
    if op == "Pow":
        e = const_scalar(graph, node.input[1])
        return e is not None and float(e).is_integer() and int(e) % 2 == 0
    if op == "Clip":
        lo = const_scalar(graph, node.input[1]) if len(node.input) > 1 and node.input[1] else attrs(node).get("min")
        return lo is not None and lo >= 0 or nonnegative(graph, node.input[0], depth - 1)
    if op == "Max":
        return any(nonnegative(graph, i, depth - 1) for i in node.input if i)
    if op in NONNEGATIVE_IF_INPUTS:
        ins = [i for i in node.input if i and graph.is_float(i)]
        return bool(ins) and all(nonnegative(graph, i, depth - 1) for i in ins)
    return False


@dataclass
class NormSite:
    """A decomposed normalization ``a / sqrt(mean(a^2) + eps)``: LayerNorm (a = x - mean(x)) or RMSNorm (a = x)."""

    kind: str  # "layernorm" | "rms"
    x: str  # the tensor normalized
    a: str  # the tensor squared
    center: list[onnx.NodeProto]  # LayerNorm: [ReduceMean(x), Sub]; RMSNorm: []
    square: onnx.NodeProto
    mean: onnx.NodeProto  # the mean of squares
    add: onnx.NodeProto  # + eps
    eps_input: int
    eps: float
    root: onnx.NodeProto  # Sqrt, or Pow(., -0.5)
    combine: list[onnx.NodeProto]  # Div(a, root) | Reciprocal(root), Mul(a, .) | Mul(a, root^-1/2)
    output: str  # the normalized tensor

    @property
    def nodes(self) -> list[onnx.NodeProto]:
        return self.center + [self.square, self.mean, self.add, self.root] + self.combine


def _combine(graph: GraphView, root: onnx.NodeProto, a: str, inverse: bool) -> list[onnx.NodeProto] | None:
    r = root.output[0]
    readers = graph.readers(r)
    if len(readers) != 1 or r in graph.outputs:
        return None
    c = readers[0]
    if not inverse and c.op_type == "Div" and list(c.input) == [a, r]:
        return [c]
    if inverse and c.op_type == "Mul" and set(c.input) == {a, r}:
        return [c]
    if not inverse and c.op_type == "Reciprocal":
        m = sole_reader(graph, c.output[0], "Mul")
        return [c, m] if m is not None and set(m.input) == {a, c.output[0]} else None
    return None


def norm_site(graph: GraphView, square: onnx.NodeProto) -> NormSite | None:
    """The decomposed normalization whose square is ``square``, or None."""
    if not is_square(graph, square):
        return None
    a = square.input[0]
    mean = sole_reader(graph, square.output[0], "ReduceMean")
    add = sole_reader(graph, mean.output[0], "Add") if mean is not None else None
    eps = scalar_input(graph, add) if add is not None else None
    root = sole_reader(graph, add.output[0], "Sqrt", "Pow") if eps is not None else None
    if root is None:
        return None
    inverse = root.op_type == "Pow"
    if inverse and const_scalar(graph, root.input[1]) != -0.5:
        return None
    combine = _combine(graph, root, a, inverse)
    if combine is None:
        return None
    sub = graph.producer.get(a)
    center = []
    if sub is not None and sub.op_type == "Sub":
        m = graph.producer.get(sub.input[1])
        if m is not None and m.op_type == "ReduceMean" and m.input[0] == sub.input[0]:
            center = [m, sub]
    x = center[1].input[0] if center else a
    return NormSite("layernorm" if center else "rms", x, a, center, square, mean, add, eps[0], eps[1], root, combine,
                    combine[-1].output[0])


_NORM_SITES: ViewCache[tuple, list[NormSite]] = ViewCache("normalization sites")


def norm_sites(graph: GraphView) -> list[NormSite]:
    """Every decomposed normalization of the graph (computed once per view)."""
    return _NORM_SITES.get(graph, (), lambda: [s for n in graph.nodes if (s := norm_site(graph, n)) is not None])
