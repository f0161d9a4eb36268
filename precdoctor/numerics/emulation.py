"""Rewrite an FP32 graph so that ONNX Runtime on CPU computes what a precision plan computes.

ONNX Runtime's CPU kernels compute FP16 graphs in FP32 (FIELD.md), so running
a converted model on CPU hides every overflow. Instead we keep the graph FP32
and *round* (rounding.py): every float tensor a low-precision node produces is
rounded to the format, and every FP32 value a low-precision node reads (graph
input, initializer, output of a pinned node) is rounded at that border, as the
Casts of a strongly typed mixed graph would. Pinned nodes are left alone.

Control flow: the bodies of If, Loop and Scan are rewritten the same way,
recursively, each body a scope of its own: a low body node rounds what it
reads from the outer scope, the body's formal inputs (loop state, scan slices)
and what it produces, so Loop/Scan state carried in low precision is rounded
at every iteration, as an engine running the body in FP16 rounds it. The
control-flow node's own outputs are its bodies' values (rounded where a low
node made them); readers outside round them again at their border, which is
exact for values already in the format. Pinning a control-flow node pins
every node of its bodies.

``EmulationOptions`` says how the engine computes what the graph leaves to it:
fused normalizations by ``profile`` (``fused`` computes them in FP32 and rounds
the output, as TensorRT's INormalizationLayer and ONNX Runtime CUDA's
LayerNorm do; ``strict`` decomposes them into primitive ops, each rounded, as
TensorRT does with an opset < 17 LayerNorm; ``ort-fused`` is ``fused`` plus
ONNX Runtime's fusion of a *decomposed* LayerNorm into one FP32 op),
LSTM/GRU/RNN by ``recurrent`` (recurrent.py: step by step by default), the
model's FP32 constants by ``constants`` (constants.py: clamp or cast; initializers
and Constant nodes read by low nodes), and the FP32 islands' inner products by
``tf32``: the float inputs of a MatMul/Gemm/Conv computed in FP32 are rounded to
TF32, as TensorRT and ONNX Runtime CUDA compute them unless told otherwise
(a low-precision input is exact in TF32 already). targets.py sets all four.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from onnx import numpy_helper

from .constants import CONVERSIONS, convert
from ..core.errors import BadInput
from ..core.formats import round_tf32
from ..graph import FLOAT, GraphView, Namer, derived_model, layernorm_patterns
from ..graph.assemble import emit_each
from ..graph.bodies import body_graphs
from .decompose import decompose
from ..core.ops import FUSED_NORMS, TF32_INPUTS, VALUE_PRESERVING, is_control_flow
from ..planning.plan import Plan
from .recurrent import MODES as RECURRENT_MODES
from .recurrent import RECURRENT, NotExpanded, expand
from .rounding import round_nodes, tf32_nodes
from .schema import fp32_nodes, limits

PROFILES = ("fused", "strict", "ort-fused")
# IR 4 lets initializers be other than graph inputs: an IR-3 model's rounding constants (Veltkamp's, BF16 below
# opset 13) and converted weights are initializers ONNX Runtime refuses to resolve otherwise; its own weights
# stay listed as inputs, which IR 4 allows
IR_INITIALIZERS_APART = 4


@dataclass(frozen=True)
class EmulationOptions:
    """How the emulated engine computes what the ONNX graph leaves to it (targets set these)."""

    profile: str = "fused"  # fused normalizations: see the module docstring
    recurrent: str = "steps"  # LSTM/GRU/RNN: recurrent.MODES
    constants: str = "cast"  # FP32 constants read by low nodes: constants.CONVERSIONS
    tf32: bool = False  # MatMul/Gemm/Conv computed in FP32 round their float inputs to TF32

    def check(self) -> None:
        for value, allowed, what in ((self.profile, PROFILES, "profile"), (self.recurrent, RECURRENT_MODES, "recurrent mode"),
                                     (self.constants, CONVERSIONS, "constant conversion")):
            if value not in allowed:
                raise BadInput(f"unknown emulation {what} {value!r}; expected one of {', '.join(allowed)}")


@dataclass
class Emulation:
    """The rounded model, for each emitted top-level node the topological index of the original node it
    stands for (the paired probe graph interleaves by it), and what was emulated less faithfully."""

    model: onnx.ModelProto
    order: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class _Scope:
    """Rounding state of one graph scope (the model's graph or a body): names resolve outward."""

    def __init__(self, parent: "_Scope | None" = None):
        self.parent = parent
        self.nodes: list[onnx.NodeProto] = []
        self.borders: dict = {}  # FP32 value (or ("tf32", value)) -> its rounded copy, made in this scope
        self.low: set[str] = set()  # values made in this scope that hold low-precision numbers

    def border_of(self, t) -> str | None:
        s = self
        while s is not None:
            if t in s.borders:
                return s.borders[t]
            s = s.parent
        return None

    def is_low(self, t: str) -> bool:
        s = self
        while s is not None:
            if t in s.low:
                return True
            s = s.parent
        return False


class _Rewriter:
    """State of one emulation rewrite (see emulation_model)."""

    def __init__(self, graph: GraphView, plan: Plan, pins: set[str], options: EmulationOptions, types: dict[str, int]):
        self.graph, self.fmt, self.pins, self.options, self.types = graph, plan.format, pins, options, types
        self.namer = Namer.for_model(graph.model)
        self.lim = limits(graph, plan.format)
        self.inits: list[onnx.TensorProto] = []
        self.init_borders: dict[tuple[str, str], str] = {}  # (initializer, conversion) -> its converted copy, at the top
        self.notes: list[str] = []
        self.inside: set[str] = set()  # ort-fused: tensors internal to a fused chain, never rounded

    def border(self, t: str, scope: _Scope) -> str:
        """The low-precision version of FP32 value ``t`` a low node of ``scope`` reads (rounded once per scope chain)."""
        if scope.is_low(t):
            return t
        g = self.graph
        if t in g.initializers:
            return self._init_copy(t, f"{self.fmt.name}.{self.options.constants}",
                                   lambda a: convert(a, self.fmt, self.options.constants))
        known = scope.border_of(t)
        if known is None:
            known = self.namer(f"{t}/{self.fmt.name}")
            self._round(t, known, scope)
            scope.borders[t] = known
        return known

    def _init_copy(self, t: str, key: str, fn) -> str:
        """A converted copy of initializer ``t`` (once per conversion ``key``), at the top: visible in every body."""
        if (t, key) not in self.init_borders:
            g = self.graph
            dst = self.namer(f"{t}/{key.split('.')[0]}")
            ref = g.store.rounded(t, key, fn, dst) if g.store else None
            self.inits.append(ref if ref is not None else numpy_helper.from_array(fn(g.array(t)), dst))
            self.init_borders[(t, key)] = dst
        return self.init_borders[(t, key)]

    def tf32_border(self, t: str, scope: _Scope) -> str:
        """``t`` as a TF32 inner product reads it: low values are exact in TF32 already; FP32 ones are rounded."""
        if scope.is_low(t):
            return t
        if t in self.graph.initializers:
            return self._init_copy(t, "tf32", round_tf32)
        known = scope.border_of(("tf32", t))
        if known is None:
            known = self.namer(f"{t}/tf32")
            nodes, inits = tf32_nodes(t, known, self.graph.opset, self.namer)
            scope.nodes.extend(nodes)
            self.inits.extend(inits)
            scope.borders[("tf32", t)] = known
        return known

    def pinned(self, node: onnx.NodeProto, scope: _Scope) -> onnx.NodeProto:
        """A node the plan computes in FP32: as it is, or with TF32 inputs to its inner product."""
        if not self.options.tf32 or node.op_type not in TF32_INPUTS:
            return node
        new = onnx.NodeProto()
        new.CopyFrom(node)
        for k in TF32_INPUTS[node.op_type]:
            if k < len(node.input) and node.input[k] and self.types.get(node.input[k]) == FLOAT:
                new.input[k] = self.tf32_border(node.input[k], scope)
        return new

    def _round(self, src: str, dst: str, scope: _Scope) -> None:
        nodes, inits = round_nodes(src, dst, self.fmt, self.graph.opset, self.namer)
        scope.nodes.extend(nodes)
        self.inits.extend(inits)

    def rewrite(self, nodes, scope: _Scope) -> None:
        for node in nodes:
            if is_control_flow(node):  # pinned or not: a pinned one's body nodes are pins too (TF32 inner products inside)
                scope.nodes.append(self.control_flow(node, scope))
            elif node.name in self.pins:
                scope.nodes.append(self.pinned(node, scope))
            else:
                self.low_node(node, scope)

    def control_flow(self, node: onnx.NodeProto, scope: _Scope) -> onnx.NodeProto:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        for (_, body), (_, out) in zip(body_graphs(node), body_graphs(new)):
            inner = _Scope(scope)
            self.rewrite(body.node, inner)
            del out.node[:]
            out.node.extend(inner.nodes)
        return new

    def low_node(self, node: onnx.NodeProto, scope: _Scope) -> None:
        parts = decompose(node, self.graph.ranks, self.graph.opset, self.namer) \
            if self.options.profile == "strict" and node.op_type in FUSED_NORMS else None
        if parts is not None:
            sub_nodes, sub_inits = parts
            self.inits.extend(sub_inits)
            self.types.update({o: FLOAT for sn in sub_nodes for o in sn.output})
            self.types.update({i.name: i.data_type for i in sub_inits})
            for sn in sub_nodes:
                self.primitive(sn, scope, set())
            return
        self.primitive(node, scope, self.lim.fp32_inputs.get(node.name, set()))

    def primitive(self, node: onnx.NodeProto, scope: _Scope, keep_fp32: set[int]) -> None:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        if node.op_type in ("Constant", "ConstantOfShape"):
            self._convert_constant(new)
        for k, i in enumerate(node.input):
            if i and self.types.get(i) == FLOAT and i not in self.inside and k not in keep_fp32:
                new.input[k] = self.border(i, scope)
        if node.op_type in RECURRENT and self.options.recurrent != "op" and self._expanded(new, scope):
            return
        tail = _Scope(scope)
        for k, o in enumerate(node.output):
            if not o or self.types.get(o) != FLOAT or o in self.inside:
                continue
            scope.low.add(o)
            if node.op_type in VALUE_PRESERVING:
                continue
            raw = self.namer(f"{o}/raw")
            new.output[k] = raw
            self._round(raw, o, tail)
        scope.nodes.append(new)
        scope.nodes.extend(tail.nodes)

    def _convert_constant(self, node: onnx.NodeProto) -> None:
        """A low Constant holds its value converted as the target converts constants (its output Casts are then exact)."""
        for a in node.attribute:
            if a.name == "value" and a.t.data_type == FLOAT:
                arr = convert(numpy_helper.to_array(a.t), self.fmt, self.options.constants)
                a.t.CopyFrom(numpy_helper.from_array(arr, a.t.name))

    def _expanded(self, node: onnx.NodeProto, scope: _Scope) -> bool:
        """Emit an RNN node step by step (its inputs already at the border); False where it is not expanded."""
        try:
            nodes, inits = expand(node, self.fmt, self.options.recurrent, self.graph.opset, self.namer)
        except NotExpanded as why:
            self.notes.append(f"{node.op_type} {node.name}: {why}; emulated at its outputs only (the op in FP32)")
            return False
        scope.nodes.extend(nodes)
        self.inits.extend(inits)
        scope.low.update(o for o in node.output if o)
        return True


def _fused_chains(graph: GraphView, pins: set[str]) -> set[str]:
    """ort-fused: tensors internal to a decomposed LayerNorm chain ORT would fuse (none of it pinned) stay FP32."""
    inside: set[str] = set()
    for pat in layernorm_patterns(graph):
        if not pins.intersection(pat.nodes):
            inside.update(o for n in pat.nodes for o in graph.node(n).output if o != pat.output)
    return inside


def emulation_model(graph: GraphView, plan: Plan, options: EmulationOptions = EmulationOptions()) -> Emulation:
    """A float32 model whose tensors (same names as the original) carry the plan's rounding."""
    options.check()
    pins = fp32_nodes(graph, plan)
    rw = _Rewriter(graph, plan, pins, options, dict(graph.elem_type))
    if options.profile == "ort-fused":
        rw.inside = _fused_chains(graph, pins)
    top = _Scope()
    order = emit_each(graph.nodes, lambda node: rw.rewrite([node], top), top.nodes)
    model = derived_model(graph.model, top.nodes, list(graph.model.graph.initializer) + rw.inits, producer="precdoctor-emulation")
    model.ir_version = max(model.ir_version, IR_INITIALIZERS_APART)
    return Emulation(model, order, rw.notes)
