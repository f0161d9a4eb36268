"""Materialize a plan as a mixed-precision ONNX: FP16/BF16 graph, FP32 islands, Casts at the borders.

This is what TensorRT 11 builds (it is always strongly typed: the precision
lives in the graph) and what ONNX Runtime CUDA runs with real FP16 kernels.
It must compute what the emulation of the same plan computes: low nodes read
low-precision inputs (initializers converted per consumer, FP32 sources cast
at the border) and produce low-precision outputs; pinned nodes read and write
FP32. Graph inputs and outputs stay FP32 (``--keep_io_types``).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import BadInput
from .graph import FLOAT, GraphView, inline_bytes, subgraph_inputs
from .plan import Plan

# attributes that carry an output element type or a typed value
_DTYPE_ATTRS = {"Cast": "to", "RandomNormal": "dtype", "RandomUniform": "dtype", "EyeLike": "dtype",
                "RandomNormalLike": "dtype", "RandomUniformLike": "dtype"}
CAST_PREFIX = "precdoctor"


def _is_control_flow(node: onnx.NodeProto) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)


def _retype_node(node: onnx.NodeProto, low: int) -> None:
    """Make a low node's float-typed attributes produce the low type."""
    attr = _DTYPE_ATTRS.get(node.op_type)
    for a in node.attribute:
        if attr and a.name == attr and a.i == FLOAT:
            a.i = low
        if node.op_type in ("Constant", "ConstantOfShape") and a.name == "value" and a.t.data_type == FLOAT:
            arr = numpy_helper.to_array(a.t)
            a.t.CopyFrom(_convert(arr, low, a.t.name))


def _convert(arr: np.ndarray, low: int, name: str) -> onnx.TensorProto:
    if low == TensorProto.FLOAT16:
        with np.errstate(over="ignore"):
            return numpy_helper.from_array(arr.astype(np.float16), name)
    import ml_dtypes

    with np.errstate(over="ignore"):
        bits = arr.astype(ml_dtypes.bfloat16).view(np.uint16)
    return helper.make_tensor(name, TensorProto.BFLOAT16, arr.shape, bits.tobytes(), raw=True)


def mixed_model(graph: GraphView, plan: Plan, info: dict | None = None) -> tuple[onnx.ModelProto, int]:
    """Returns (model, number of Cast nodes at precision borders).

    ``info``, when given, receives ``low_tensors`` (original tensor names that
    hold the low type in the mixed model) and ``order`` ({node name:
    topological index of the original node it stands for}) for probing.
    """
    from .schema import limits

    fmt = plan.format
    low_t = fmt.onnx_type
    lim = limits(graph, fmt)
    pins = set(plan.pins) | lim.fp32_nodes | {n.name for n in graph.nodes if _is_control_flow(n)}
    types = graph.elem_type
    is_low = {n.name: n.name not in pins for n in graph.nodes}
    low_tensors = {o for n in graph.nodes if is_low[n.name] for o in n.output if o and types.get(o) == FLOAT}
    src_outputs = set(graph.outputs)
    # a graph output made by a low node is renamed inside and cast back to FP32 at the end
    internal = {o: f"{o}/{fmt.name}" for o in low_tensors & src_outputs}
    ren = lambda t: internal.get(t, t)

    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    casts: dict[tuple[str, int], str] = {}
    low_inits: dict[str, str] = {}

    def cast(t: str, to: int) -> str:
        key = (t, to)
        if key not in casts:
            tag = fmt.name if to == low_t else "fp32"
            out = f"{CAST_PREFIX}/{t}/to_{tag}"
            nodes.append(helper.make_node("Cast", [ren(t)], [out], to=to, name=out))
            casts[key] = out
        return casts[key]

    def low_init(name: str) -> str:
        if name not in low_inits:
            new = f"{name}/{fmt.name}"
            inits.append(_convert(graph.array(name), low_t, new))
            low_inits[name] = new
        return low_inits[name]

    order: dict[str, int] = {}
    for index, node in enumerate(graph.nodes):
        first = len(nodes)
        new = onnx.NodeProto()
        new.CopyFrom(node)
        low = is_low[node.name]
        for k, i in enumerate(node.input):
            if not i or types.get(i) != FLOAT:
                continue
            want_low = low and k not in lim.fp32_inputs.get(node.name, ())
            if i in graph.initializers:
                new.input[k] = low_init(i) if want_low else i
            elif i in low_tensors:
                new.input[k] = ren(i) if want_low else cast(i, FLOAT)
            else:  # graph input or output of a pinned node: FP32
                new.input[k] = cast(i, low_t) if want_low else i
        for k, o in enumerate(node.output):
            new.output[k] = ren(o)
        if low:
            _retype_node(new, low_t)
        elif subgraph_inputs(node) & low_tensors:
            raise BadInput(f"cannot materialize: control-flow node {node.name!r} reads low-precision tensors from its outer scope")
        nodes.append(new)
        order.update({n.name: index for n in nodes[first:]})
    for o in internal:
        nodes.append(helper.make_node("Cast", [internal[o]], [o], to=FLOAT, name=f"{CAST_PREFIX}/{o}/to_fp32"))

    used = {i for n in nodes for i in n.input} | {i for n in nodes for i in subgraph_inputs(n)}
    kept = [graph.initializer_with_data(i.name) for i in graph.model.graph.initializer if i.name in used] + inits
    src = graph.model
    g = helper.make_graph(nodes, src.graph.name, list(src.graph.input), list(src.graph.output), initializer=kept)
    opsets = list(src.opset_import)
    m = helper.make_model(g, opset_imports=opsets, producer_name="precdoctor-mixed")
    m.ir_version = src.ir_version
    m.functions.extend(src.functions)
    for p in src.metadata_props:
        m.metadata_props.append(p)
    m.metadata_props.append(onnx.StringStringEntryProto(key="precdoctor.plan", value=f"{fmt.name}; fp32 pins: {len(plan.pins)}"))
    if fmt.name == "bf16" and graph.opset < 13:
        m = _raise_opset(m, 13)
    if info is not None:
        info["low_tensors"] = low_tensors - set(internal)
        info["order"] = order
    return m, len(casts) + len(internal)


def _raise_opset(model: onnx.ModelProto, version: int) -> onnx.ModelProto:
    """BF16 needs opset 13 (Cast to bfloat16 and BF16-typed ops); convert the whole graph, nothing else."""
    from onnx import version_converter

    try:
        return version_converter.convert_version(model, version)
    except Exception as exc:
        raise BadInput(f"cannot raise the model to opset {version} for BF16: {exc}") from None


def check(model: onnx.ModelProto) -> None:
    """Full onnx.checker pass (with shape inference); raises BadInput on failure."""
    try:
        if inline_bytes(model) < 1_900_000_000:
            onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise BadInput(f"the mixed-precision model fails onnx.checker: {str(exc).splitlines()[0]}") from None
