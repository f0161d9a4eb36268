"""Rewrite an FP32 graph so that ONNX Runtime on CPU computes what a precision plan computes.

ONNX Runtime's CPU kernels compute FP16 graphs in FP32 (FIELD.md), so running
a converted model on CPU hides every overflow. Instead we keep the graph FP32
and *round* (rounding.py): every float tensor a low-precision node produces is
rounded to the format, and every FP32 value a low-precision node reads (graph
input, initializer, output of a pinned node) is rounded at that border, as the
Casts of a strongly typed mixed graph would. Pinned nodes are left alone.

Fused ops whose internal precision belongs to the target engine follow a
profile: ``fused`` (default) computes them in FP32 and rounds their output,
as TensorRT's INormalizationLayer and ONNX Runtime CUDA's LayerNorm do;
``strict`` decomposes them into primitive ops, each rounded, as TensorRT does
with an opset < 17 LayerNorm; ``ort-fused`` is ``fused`` plus what ONNX
Runtime's graph optimizations do to a *decomposed* LayerNorm: fuse the chain
into one op that computes in FP32 (only its output is rounded).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .graph import FLOAT, GraphView, Namer, derived_model, layernorm_patterns
from .ops import FUSED_NORMS, VALUE_PRESERVING
from .plan import Plan
from .rounding import round_nodes
from .schema import limits

PROFILES = ("fused", "strict", "ort-fused")


@dataclass
class Emulation:
    """The rounded model, and for each emitted node the topological index of the original node it
    stands for (the paired probe graph interleaves by it)."""

    model: onnx.ModelProto
    order: dict[str, int] = field(default_factory=dict)


def _reduce_mean(x: str, out: str, axes: list[int], opset: int, name: str, inits: list, namer: Namer) -> onnx.NodeProto:
    if opset >= 18:
        ax = namer(f"{name}/axes")
        inits.append(numpy_helper.from_array(np.array(axes, np.int64), ax))
        return helper.make_node("ReduceMean", [x, ax], [out], keepdims=1, name=name)
    return helper.make_node("ReduceMean", [x], [out], axes=axes, keepdims=1, name=name)


def _norm_axes(node: onnx.NodeProto, rank: int) -> list[int] | None:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "LayerNormalization":
        if len(node.output) > 1 and any(node.output[1:]):
            return None  # Mean / InvStdDev outputs are consumed: keep the fused op
        return list(range(int(attrs.get("axis", -1)) % rank, rank))
    return list(range(2, rank))  # InstanceNormalization


def decompose(node: onnx.NodeProto, ranks: dict[str, int], opset: int, namer: Namer):
    """Primitive-op form of a normalization node (names under the node's), or None when it cannot be."""
    rank = ranks.get(node.input[0])
    axes = _norm_axes(node, rank) if node.op_type in FUSED_NORMS and rank is not None else None
    if axes is None:
        return None
    eps = float(next((helper.get_attribute_value(a) for a in node.attribute if a.name == "epsilon"), 1e-5))
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


class _Rewriter:
    """State of one emulation rewrite (see emulation_model)."""

    def __init__(self, graph: GraphView, plan: Plan, pins: set[str], namer: Namer, types: dict[str, int]):
        self.graph, self.fmt, self.pins, self.namer, self.types = graph, plan.format, pins, namer, types
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.order: dict[str, int] = {}
        self.borders: dict[str, str] = {}
        self.low_outputs: set[str] = set()  # tensors already holding low-precision values
        self.at = 0  # topological index of the original node being rewritten

    def emit(self, *nodes: onnx.NodeProto) -> None:
        self.nodes.extend(nodes)
        for nd in nodes:
            self.order[nd.name] = self.at

    def border(self, t: str) -> str:
        """The low-precision version of FP32 value ``t`` a low node reads (rounded once, shared)."""
        if t in self.low_outputs:
            return t
        if t not in self.borders:
            g, dst = self.graph, self.namer(f"{t}/{self.fmt.name}")
            if t in g.initializers:
                ref = g.store.rounded(t, self.fmt, dst) if g.store else None
                self.inits.append(ref if ref is not None else numpy_helper.from_array(self.fmt.round(g.array(t)), dst))
            else:
                nodes, inits = round_nodes(t, dst, self.fmt, g.opset, self.namer)
                self.emit(*nodes)
                self.inits.extend(inits)
            self.borders[t] = dst
        return self.borders[t]

    def low_node(self, node: onnx.NodeProto, inside: set[str], keep_fp32: set[int]) -> None:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        for k, i in enumerate(node.input):
            if i and self.types.get(i) == FLOAT and i not in inside and k not in keep_fp32:
                new.input[k] = self.border(i)
        tail: list[onnx.NodeProto] = []
        for k, o in enumerate(node.output):
            if not o or self.types.get(o) != FLOAT or o in inside:
                continue
            self.low_outputs.add(o)
            if node.op_type in VALUE_PRESERVING:
                continue
            raw = self.namer(f"{o}/raw")
            new.output[k] = raw
            nodes, inits = round_nodes(raw, o, self.fmt, self.graph.opset, self.namer)
            tail.extend(nodes)
            self.inits.extend(inits)
        self.emit(new, *tail)


def _fused_chains(graph: GraphView, pins: set[str]) -> set[str]:
    """ort-fused: tensors internal to a decomposed LayerNorm chain ORT would fuse (none of it pinned) stay FP32."""
    inside: set[str] = set()
    for pat in layernorm_patterns(graph):
        if not pins.intersection(pat.nodes):
            inside.update(o for n in pat.nodes for o in graph.node(n).output if o != pat.output)
    return inside


def emulation_model(graph: GraphView, plan: Plan, profile: str = "fused") -> Emulation:
    """A float32 model whose tensors (same names as the original) carry the plan's rounding."""
    if profile not in PROFILES:
        raise ValueError(f"unknown emulation profile {profile!r}; expected one of {PROFILES}")
    lim = limits(graph, plan.format)
    pins = set(plan.pins) | lim.fp32_nodes  # ops the format cannot express stay FP32, as in the mixed ONNX
    namer = Namer.for_model(graph.model)
    types = dict(graph.elem_type)
    rw = _Rewriter(graph, plan, pins, namer, types)
    inside = _fused_chains(graph, pins) if profile == "ort-fused" else set()
    for index, node in enumerate(graph.nodes):
        rw.at = index
        if node.name in pins:
            rw.emit(node)
            continue
        parts = decompose(node, graph.ranks, graph.opset, namer) if profile == "strict" and node.op_type in FUSED_NORMS else None
        if parts is None:
            rw.low_node(node, inside, lim.fp32_inputs.get(node.name, set()))
            continue
        sub_nodes, sub_inits = parts
        rw.inits.extend(sub_inits)
        types.update({o: FLOAT for sn in sub_nodes for o in sn.output})
        types.update({i.name: i.data_type for i in sub_inits})
        for sn in sub_nodes:
            rw.low_node(sn, inside, set())
    model = derived_model(graph.model, rw.nodes, list(graph.model.graph.initializer) + rw.inits, producer="precdoctor-emulation")
    return Emulation(model, rw.order)
