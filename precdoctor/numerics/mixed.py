"""Materialize a plan as a mixed-precision ONNX: FP16/BF16 graph, FP32 islands, Casts at the borders.

This is what TensorRT 11 builds (it is always strongly typed: the precision
lives in the graph) and what ONNX Runtime CUDA runs with real FP16 kernels.
It must compute what the emulation of the same plan computes: low nodes read
low-precision inputs (initializers converted per consumer, FP32 sources cast
at the border) and produce low-precision outputs; pinned nodes read and write
FP32. Graph inputs and outputs stay FP32 (``--keep_io_types``). Constants are
clamped into the format's range before rounding (constants.py, ``SHIPPED``): a
strongly typed engine takes the graph's values as they are, and a floor of 1e-10
that a Cast would turn into 0 stays a floor; the model's metadata says so.

If/Loop/Scan bodies are converted the same way, recursively; the boundary of a
control-flow node (its inputs and outputs, a body's formal inputs and outputs)
stays FP32, as in the emulation, so Loop/Scan state keeps one type from
iteration to iteration and both If branches agree on their output types.
A body node reading an outer-scope value gets it in its own precision through
a Cast placed inside the body.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .constants import SHIPPED, clamp
from ..core.errors import BadInput
from ..core.formats import FORMATS
from ..graph import FLOAT, GraphView, Namer, derived_model, inline_bytes, subgraph_inputs
from ..graph.assemble import emit_each
from ..graph.bodies import body_graphs
from ..core.limits import INLINE_LIMIT
from ..core.ops import DTYPE_ATTRS, is_control_flow
from ..planning.plan import Plan
from .schema import fp32_nodes, limits


@dataclass
class MixedModel:
    model: onnx.ModelProto
    casts: int  # Cast nodes at precision borders
    low_tensors: set[str] = field(default_factory=set)  # original tensor names holding the low type
    order: dict[str, int] = field(default_factory=dict)  # emitted node -> topological index of its original


def _retype_node(node: onnx.NodeProto, low: int) -> None:
    """Make a low node's float-typed attributes produce the low type."""
    attr = DTYPE_ATTRS.get(node.op_type)
    for a in node.attribute:
        if attr and a.name == attr and a.i == FLOAT:
            a.i = low
        if node.op_type in ("Constant", "ConstantOfShape") and a.name == "value" and a.t.data_type == FLOAT:
            a.t.CopyFrom(convert(numpy_helper.to_array(a.t), low, a.t.name))


def convert(arr: np.ndarray, low: int, name: str) -> onnx.TensorProto:
    """An FP32 array as an FP16/BF16 initializer: clamped into the format's range, then rounded as a Cast rounds."""
    arr = clamp(arr, next(f for f in FORMATS.values() if f.onnx_type == low))
    if low == TensorProto.FLOAT16:
        with np.errstate(over="ignore"):
            return numpy_helper.from_array(arr.astype(np.float16), name)
    import ml_dtypes

    with np.errstate(over="ignore"):
        bits = arr.astype(ml_dtypes.bfloat16).view(np.uint16)
    return helper.make_tensor(name, TensorProto.BFLOAT16, arr.shape, bits.tobytes(), raw=True)


@dataclass
class _Scope:
    """The nodes of one graph or body being written, and the Casts made in it (visible to bodies written later)."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    casts: dict[tuple[str, int], str] = field(default_factory=dict)


class _Builder:
    """State of one materialization (see mixed_model)."""

    def __init__(self, graph: GraphView, plan: Plan, pins: set[str]):
        self.graph, self.fmt, self.low_t = graph, plan.format, plan.format.onnx_type
        self.namer = Namer.for_model(graph.model, mark="")
        self.pins = pins
        self.low_tensors = {o for n in graph.all_nodes() if n.name not in pins and not is_control_flow(n)
                            for o in n.output if o and graph.is_float(o)}
        # a graph output made by a low node is renamed inside and cast back to FP32 at the end, in the outputs'
        # order: a set's would change with the process's string hashing, and the shipped file with it
        self.internal = {o: self.namer(f"{o}/{self.fmt.name}") for o in graph.outputs if o in self.low_tensors}
        self.inits: list[onnx.TensorProto] = []
        self.casts = 0
        self.low_inits: dict[str, str] = {}

    def ren(self, t: str) -> str:
        return self.internal.get(t, t)

    def cast(self, t: str, to: int, scope: "_Scope") -> str:
        """``t`` cast to ``to`` in this scope (one Cast per tensor, type and scope)."""
        if (t, to) not in scope.casts:
            out = self.namer(f"precdoctor/{t}/to_{self.fmt.name if to == self.low_t else 'fp32'}")
            scope.nodes.append(helper.make_node("Cast", [self.ren(t)], [out], to=to, name=out))
            scope.casts[(t, to)] = out
            self.casts += 1
        return scope.casts[(t, to)]

    def low_init(self, name: str) -> str:
        if name not in self.low_inits:
            new = self.namer(f"{name}/{self.fmt.name}")
            self.inits.append(convert(self.graph.array(name), self.low_t, new))
            self.low_inits[name] = new
        return self.low_inits[name]

    def node(self, node: onnx.NodeProto, scope: "_Scope") -> None:
        g = self.graph
        low = node.name not in self.pins and not is_control_flow(node)
        keep = limits(g, self.fmt).fp32_inputs.get(node.name, set())
        new = onnx.NodeProto()
        new.CopyFrom(node)
        for k, i in enumerate(node.input):
            if not i or not g.is_float(i):
                continue
            want_low = low and k not in keep
            if i in g.initializers:
                new.input[k] = self.low_init(i) if want_low else i
            elif i in self.low_tensors:
                new.input[k] = self.ren(i) if want_low else self.cast(i, FLOAT, scope)
            else:  # graph input, body input, output of a pinned or control-flow node: FP32
                new.input[k] = self.cast(i, self.low_t, scope) if want_low else i
        for k, o in enumerate(node.output):
            new.output[k] = self.ren(o)
        if low:
            _retype_node(new, self.low_t)
        for (_, body), (_, out) in zip(body_graphs(node), body_graphs(new)):
            self.body(body, out, scope)
        scope.nodes.append(new)

    def body(self, body: onnx.GraphProto, out: onnx.GraphProto, outer: "_Scope") -> None:
        """A body converted like the graph: its boundary (formal inputs and outputs) stays FP32."""
        inner = _Scope(casts=dict(outer.casts))
        for node in body.node:
            self.node(node, inner)
        for k, o in enumerate(body.output):
            if o.name in self.low_tensors:
                out.output[k].name = self.cast(o.name, FLOAT, inner)
        del out.node[:]
        out.node.extend(inner.nodes)
        del out.value_info[:]  # intermediate types changed; shape inference recomputes them


def mixed_model(graph: GraphView, plan: Plan) -> MixedModel:
    pins = fp32_nodes(graph, plan)
    b = _Builder(graph, plan, pins)
    top = _Scope()
    order = emit_each(graph.nodes, lambda node: b.node(node, top), top.nodes)
    for o, inner in b.internal.items():
        top.nodes.append(helper.make_node("Cast", [inner], [o], to=FLOAT, name=b.namer(f"precdoctor/{o}/to_fp32")))
    used = {i for n in top.nodes for i in n.input} | {i for n in top.nodes for i in subgraph_inputs(n)}
    kept = [graph.initializer_with_data(i.name) for i in graph.model.graph.initializer if i.name in used] + b.inits
    m = derived_model(graph.model, top.nodes, kept, producer="precdoctor-mixed")
    m.metadata_props.append(onnx.StringStringEntryProto(key="precdoctor.plan", value=f"{plan.precision}; fp32 pins: {len(plan.pins)}"))
    m.metadata_props.append(onnx.StringStringEntryProto(key="precdoctor.constants", value=constants_note(plan.format)))
    if plan.precision == "bf16" and graph.opset < 13:
        m = _raise_opset(m, 13)
    low_top = {o for n in graph.nodes for o in n.output if o in b.low_tensors}
    return MixedModel(m, b.casts + len(b.internal), low_top - set(b.internal), order)


def constants_note(fmt) -> str:
    """How this file's constants were converted, in words (the model's metadata and pins.json carry it)."""
    return (f"{SHIPPED}: FP32 constants of the {fmt.name} parts were clamped into {fmt.name}'s range before rounding: "
            f"nonzero magnitudes below {fmt.min_subnormal:.3g} became {fmt.min_subnormal:.3g}, finite ones past "
            f"{fmt.max_finite:.6g} became {fmt.max_finite:.6g} (sign kept), as TensorRT's weakly typed builder converts "
            "weights; a Cast would have rounded them to 0 and inf")


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
        if inline_bytes(model) < INLINE_LIMIT:
            onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise BadInput(f"the mixed-precision model fails onnx.checker: {str(exc).splitlines()[0]}") from None
