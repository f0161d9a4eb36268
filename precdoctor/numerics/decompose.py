"""Normalizations written as the primitive ops an engine builds them from (the ``strict`` emulation profile).

TensorRT builds an opset < 17 LayerNorm (and InstanceNormalization without its
fused layer) op by op; in FP16 each of those ops rounds, and the variance can
overflow where the fused op, computing in FP32, would not.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..graph import Namer, attr, attrs
from ..core.ops import FUSED_NORMS


def _reduce_mean(x: str, out: str, axes: list[int], opset: int, name: str, inits: list, namer: Namer) -> onnx.NodeProto:
    if opset >= 18:
        ax = namer(f"{name}/axes")
        inits.append(numpy_helper.from_array(np.array(axes, np.int64), ax))
        return helper.make_node("ReduceMean", [x, ax], [out], keepdims=1, name=name)
    return helper.make_node("ReduceMean", [x], [out], axes=axes, keepdims=1, name=name)


def _norm_axes(node: onnx.NodeProto, rank: int) -> list[int] | None:
    a = attrs(node)
    if node.op_type == "LayerNormalization":
        if len(node.output) > 1 and any(node.output[1:]):
            return None  # Mean / InvStdDev outputs are consumed: keep the fused op
        return list(range(int(a.get("axis", -1)) % rank, rank))
    return list(range(2, rank))  # InstanceNormalization


def decompose(node: onnx.NodeProto, ranks: dict[str, int], opset: int, namer: Namer):
    """Primitive-op form of a normalization node (names under the node's), or None when it cannot be."""
    rank = ranks.get(node.input[0])
    axes = _norm_axes(node, rank) if node.op_type in FUSED_NORMS and rank is not None else None
    if axes is None:
        return None
    eps = float(attr(node, "epsilon", 1e-5))
    x, p = node.input[0], node.name + "/"
    t = {k: namer(p + k) for k in ("epsilon", "mean", "centered", "squared", "variance", "var_eps", "std", "normalized", "scaled")}
    inits: list[onnx.TensorProto] = [numpy_helper.from_array(np.array(eps, np.float32), t["epsilon"])]
    scale, bias = node.input[1], node.input[2] if len(node.input) > 2 else ""
    nodes = []
    if node.op_type == "InstanceNormalization":  # per-channel [C] -> [C, 1, ...] for broadcasting
        shape, sb, bb = namer(p + "chan_shape"), namer(p + "scale_b"), namer(p + "bias_b")
        inits.append(numpy_helper.from_array(np.array([-1] + [1] * (rank - 2), np.int64), shape))
        nodes += [helper.make_node("Reshape", [scale, shape], [sb], name=namer(p + "ReshapeScale")),
                  helper.make_node("Reshape", [bias, shape], [bb], name=namer(p + "ReshapeBias"))]
        scale, bias = sb, bb
    mk = lambda op, ins, out, tag: helper.make_node(op, ins, [out], name=namer(p + tag))  # noqa: E731
    nodes += [
        _reduce_mean(x, t["mean"], axes, opset, namer(p + "ReduceMean"), inits, namer),
        mk("Sub", [x, t["mean"]], t["centered"], "Sub"),
        mk("Mul", [t["centered"], t["centered"]], t["squared"], "Pow"),
        _reduce_mean(t["squared"], t["variance"], axes, opset, namer(p + "ReduceMeanVar"), inits, namer),
        mk("Add", [t["variance"], t["epsilon"]], t["var_eps"], "AddEps"),
        mk("Sqrt", [t["var_eps"]], t["std"], "Sqrt"),
        mk("Div", [t["centered"], t["std"]], t["normalized"], "Div"),
        mk("Mul", [t["normalized"], scale], t["scaled"] if bias else node.output[0], "MulScale"),
    ]
    if bias:
        nodes.append(mk("Add", [t["scaled"], bias], node.output[0], "AddBias"))
    return nodes, inits
