"""Rewrite an FP32 graph so that ONNX Runtime on CPU computes what a plan computes.

ONNX Runtime's CPU kernels compute FP16 graphs in FP32 (FIELD.md), so running
a converted model on CPU hides every overflow. Instead we keep the graph FP32
and *round*: every float tensor a low-precision node produces goes through a
Cast(to low) -> Cast(to float) pair (overflow to inf, subnormals, flush to zero
exactly as the format does), and every FP32 value a low-precision node reads
(graph input, initializer, output of a pinned node) is rounded at that border,
as the Casts of a strongly typed mixed graph would. Pinned nodes are left alone.

Fused ops whose internal precision belongs to the target engine follow a
profile: ``fused`` (default) computes them in FP32 and rounds their output,
as TensorRT's INormalizationLayer and ONNX Runtime CUDA's LayerNorm do;
``strict`` decomposes them into primitive ops, each rounded, as TensorRT does
with an opset < 17 LayerNorm; ``ort-fused`` is ``fused`` plus what ONNX
Runtime's graph optimizations do to a *decomposed* LayerNorm: fuse the chain
into one op that computes in FP32 (only its output is rounded).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .formats import Format
from .graph import FLOAT, VALUE_PRESERVING_OPS, GraphView
from .plan import Plan

PROFILES = ("fused", "strict", "ort-fused")
DECOMPOSED_OPS = ("LayerNormalization", "InstanceNormalization")
SUFFIX = "@pd"  # marks names we add, so they never clash with the model's


def raw_name(t: str) -> str:
    return f"{t}/raw{SUFFIX}"


def border_name(t: str, fmt: Format) -> str:
    return f"{t}/{fmt.name}{SUFFIX}"


def round_nodes(src: str, dst: str, fmt: Format, opset: int, tag: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes that set dst = round_to_fmt(src), both float32."""
    if fmt.name == "fp16" or opset >= 13:
        mid = f"{dst}/cast{SUFFIX}"
        return [
            helper.make_node("Cast", [src], [mid], to=fmt.onnx_type, name=f"{tag}/to_{fmt.name}{SUFFIX}"),
            helper.make_node("Cast", [mid], [dst], to=TensorProto.FLOAT, name=f"{tag}/to_fp32{SUFFIX}"),
        ], []
    # BF16 Cast needs opset 13. Veltkamp splitting rounds a float32 to its top
    # 8 significand bits (bfloat16's) with plain arithmetic; huge values, where
    # x * 65537 would overflow, pass through (they are within bf16's range).
    c, big, lim = f"{dst}/vk_c{SUFFIX}", f"{dst}/vk_k{SUFFIX}", f"{dst}/vk_lim{SUFFIX}"
    inits = [numpy_helper.from_array(np.array(65537.0, np.float32), big), numpy_helper.from_array(np.array(1e33, np.float32), lim)]
    n = lambda op, i, o: helper.make_node(op, i, [o], name=f"{tag}/{o.rsplit('/', 1)[-1]}")
    nodes = [
        n("Mul", [src, big], c),
        n("Sub", [c, src], f"{dst}/vk_t{SUFFIX}"),
        n("Sub", [c, f"{dst}/vk_t{SUFFIX}"], f"{dst}/vk_hi{SUFFIX}"),
        n("Abs", [src], f"{dst}/vk_abs{SUFFIX}"),
        n("Less", [f"{dst}/vk_abs{SUFFIX}", lim], f"{dst}/vk_ok{SUFFIX}"),
        helper.make_node("Where", [f"{dst}/vk_ok{SUFFIX}", f"{dst}/vk_hi{SUFFIX}", src], [dst], name=f"{tag}/vk_where{SUFFIX}"),
    ]
    return nodes, inits


# ----------------------------------------------------------------- decomposition


def _reduce_mean(x: str, out: str, axes: list[int], opset: int, name: str, inits: list) -> onnx.NodeProto:
    if opset >= 18:
        ax = f"{name}/axes{SUFFIX}"
        inits.append(numpy_helper.from_array(np.array(axes, np.int64), ax))
        return helper.make_node("ReduceMean", [x, ax], [out], keepdims=1, name=name)
    return helper.make_node("ReduceMean", [x], [out], axes=axes, keepdims=1, name=name)


def decompose(node: onnx.NodeProto, ranks: dict[str, int], opset: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]] | None:
    """Primitive-op form of a normalization node (names prefixed with the node's), or None."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    eps = float(attrs.get("epsilon", 1e-5))
    x = node.input[0]
    rank = ranks.get(x)
    if rank is None:
        return None
    if node.op_type == "LayerNormalization":
        axis = int(attrs.get("axis", -1))
        axes = list(range(axis % rank, rank))
        if len(node.output) > 1 and any(node.output[1:]):
            return None  # Mean / InvStdDev outputs are consumed: keep the fused op
    elif node.op_type == "InstanceNormalization":
        axes = list(range(2, rank))
    else:
        return None
    p = node.name + "/"
    inits: list[onnx.TensorProto] = [numpy_helper.from_array(np.array(eps, np.float32), p + "epsilon")]
    scale, bias = node.input[1], node.input[2] if len(node.input) > 2 else ""
    if node.op_type == "InstanceNormalization":  # per-channel [C] -> [C, 1, ...] for broadcasting
        shape = p + "chan_shape" + SUFFIX
        inits.append(numpy_helper.from_array(np.array([-1] + [1] * (rank - 2), np.int64), shape))
        nodes = [helper.make_node("Reshape", [scale, shape], [p + "scale_b"], name=p + "ReshapeScale"),
                 helper.make_node("Reshape", [bias, shape], [p + "bias_b"], name=p + "ReshapeBias")]
        scale, bias = p + "scale_b", p + "bias_b"
    else:
        nodes = []
    nodes += [
        _reduce_mean(x, p + "mean", axes, opset, p + "ReduceMean", inits),
        helper.make_node("Sub", [x, p + "mean"], [p + "centered"], name=p + "Sub"),
        helper.make_node("Mul", [p + "centered", p + "centered"], [p + "squared"], name=p + "Pow"),
        _reduce_mean(p + "squared", p + "variance", axes, opset, p + "ReduceMeanVar", inits),
        helper.make_node("Add", [p + "variance", p + "epsilon"], [p + "var_eps"], name=p + "AddEps"),
        helper.make_node("Sqrt", [p + "var_eps"], [p + "std"], name=p + "Sqrt"),
        helper.make_node("Div", [p + "centered", p + "std"], [p + "normalized"], name=p + "Div"),
        helper.make_node("Mul", [p + "normalized", scale], [p + "scaled" if bias else node.output[0]], name=p + "MulScale"),
    ]
    if bias:
        nodes.append(helper.make_node("Add", [p + "scaled", bias], [node.output[0]], name=p + "AddBias"))
    return nodes, inits


# ----------------------------------------------------------------- the rewrite


def emulation_model(graph: GraphView, plan: Plan, profile: str = "fused", order: dict[str, int] | None = None) -> onnx.ModelProto:
    """A float32 model whose tensors (same names as the original) carry the plan's rounding.

    ``order``, when given, is filled with {emitted node name: topological
    index of the original node it stands for}, so callers can interleave.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown emulation profile {profile!r}; expected one of {PROFILES}")
    from .schema import limits

    fmt, opset = plan.format, graph.opset
    lim = limits(graph, fmt)
    pins = plan.pins | lim.fp32_nodes  # ops the format cannot express stay FP32, as in the mixed ONNX
    src = graph.model
    types = dict(graph.elem_type)
    nodes_out: list[onnx.NodeProto] = []
    inits_out: list[onnx.TensorProto] = []
    rounded_borders: dict[str, str] = {}
    low_outputs: set[str] = set()  # tensors already holding low-precision values

    at = 0  # original index of the node being rewritten

    def emit(*nodes: onnx.NodeProto) -> None:
        nodes_out.extend(nodes)
        if order is not None:
            for nd in nodes:
                order[nd.name] = at

    def border(t: str) -> str:
        if t in low_outputs:
            return t
        if t not in rounded_borders:
            dst = border_name(t, fmt)
            init = graph.initializers.get(t)
            if init is not None:
                ref = graph.store.rounded(t, fmt, dst) if graph.store else None
                inits_out.append(ref if ref is not None else numpy_helper.from_array(fmt.round(graph.array(t)), dst))
            else:
                nodes, inits = round_nodes(t, dst, fmt, opset, dst)
                emit(*nodes)
                inits_out.extend(inits)
            rounded_borders[t] = dst
        return rounded_borders[t]

    inside: set[str] = set()  # ort-fused: tensors internal to a fused LayerNorm chain stay FP32
    if profile == "ort-fused":
        from .graph import layernorm_patterns

        for pat in layernorm_patterns(graph):
            if not pins.intersection(pat["nodes"]):
                chain = [graph.node(n) for n in pat["nodes"]]
                inside.update(o for nd in chain for o in nd.output if o != pat["output"])
    expanded: list[tuple[onnx.NodeProto, str, int]] = []  # (node, owner in the plan, original index)
    for index, node in enumerate(graph.nodes):
        parts = None
        if profile == "strict" and node.op_type in DECOMPOSED_OPS and node.name not in pins:
            parts = decompose(node, graph.ranks, opset)
        if parts:
            sub_nodes, sub_inits = parts
            inits_out.extend(sub_inits)
            for sn in sub_nodes:
                for o in sn.output:
                    types.setdefault(o, FLOAT)
                expanded.append((sn, node.name, index))
            for i in sub_inits:
                types.setdefault(i.name, i.data_type)
        else:
            expanded.append((node, node.name, index))

    for node, owner, at in expanded:
        if owner in pins:
            emit(node)
            continue
        new = onnx.NodeProto()
        new.CopyFrom(node)
        keep_fp32 = lim.fp32_inputs.get(owner, set()) if owner == node.name else set()
        for k, i in enumerate(node.input):
            if i and types.get(i) == FLOAT and i not in inside and k not in keep_fp32:
                new.input[k] = border(i)
        preserving = node.op_type in VALUE_PRESERVING_OPS
        tail: list[onnx.NodeProto] = []
        for k, o in enumerate(node.output):
            if not o or types.get(o) != FLOAT:
                continue
            if o in inside:
                continue
            low_outputs.add(o)
            if preserving:
                continue
            new.output[k] = raw_name(o)
            rn, ri = round_nodes(raw_name(o), o, fmt, opset, node.name)
            tail.extend(rn)
            inits_out.extend(ri)
        emit(new, *tail)

    g = helper.make_graph(
        nodes_out, src.graph.name, list(src.graph.input), list(src.graph.output),
        initializer=list(src.graph.initializer) + inits_out,
    )
    m = helper.make_model(g, opset_imports=list(src.opset_import), producer_name="precdoctor-emulation")
    m.ir_version = src.ir_version
    m.functions.extend(src.functions)
    return m
