"""What the ONNX schema lets a node compute in FP16/BF16 at the model's opset.

Some inputs are typed independently of the data (Pow's exponent before opset
15 takes no bfloat16, Resize's scales are always float32), and some ops take
no bfloat16 at all at older opsets (Conv before opset 22). A strongly typed
graph cannot express those in the low format, so they stay FP32 there, and
the emulation must do the same to predict it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from onnx import defs

from ..core.formats import Format
from ..graph import GraphView, ViewCache
from ..core.ops import is_control_flow

_TYPE = {onnx.TensorProto.FLOAT16: "tensor(float16)", onnx.TensorProto.BFLOAT16: "tensor(bfloat16)"}


@dataclass
class Limits:
    fp32_inputs: dict[str, set[int]] = field(default_factory=dict)  # input positions that stay FP32
    why: dict[str, str] = field(default_factory=dict)  # fp32 node -> the schema fact that keeps it FP32

    @property
    def fp32_nodes(self) -> set[str]:
        """Nodes that cannot produce the low type: run in FP32."""
        return set(self.why)


def _allowed(schema, index: int, outputs: bool) -> set[str] | None:
    params = schema.outputs if outputs else schema.inputs
    if not params:
        return None
    p = params[min(index, len(params) - 1)]  # a variadic last parameter covers the rest
    constraints = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    return constraints.get(p.type_str, {p.type_str})


def target_opset(graph: GraphView, fmt: Format) -> int:
    return max(graph.opset, 13) if fmt.name == "bf16" else graph.opset  # BF16 materialization raises to 13


_LIMITS: ViewCache[str, Limits] = ViewCache("schema limits per format")


def limits(graph: GraphView, fmt: Format) -> Limits:
    """Computed once per graph and format: every emulation model and mixed ONNX of a search needs it."""
    return _LIMITS.get(graph, fmt.name, lambda: _limits(graph, fmt))


def _limits(graph: GraphView, fmt: Format) -> Limits:
    low = _TYPE[fmt.onnx_type]
    opset = target_opset(graph, fmt)
    out = Limits()
    for node in graph.all_nodes():
        if is_control_flow(node):  # computes nothing itself: its bodies' nodes are judged one by one
            continue
        try:
            schema = defs.get_schema(node.op_type, opset, node.domain or "")
        except Exception:  # custom domains: nothing to go by, assume the engine copes
            continue
        floats_out = [k for k, o in enumerate(node.output) if o and graph.is_float(o)]
        if any((a := _allowed(schema, k, True)) is not None and low not in a for k in floats_out):
            out.why[node.name] = f"the ONNX schema of {node.op_type} at opset {opset} has no {low[7:-1]} output"
            continue
        keep = {k for k, i in enumerate(node.input)
                if i and graph.is_float(i) and (a := _allowed(schema, k, False)) is not None and low not in a}
        if keep:
            out.fp32_inputs[node.name] = keep
    return out


def forced_fp32(graph: GraphView, plan) -> dict[str, str]:
    """Nodes the plan computes in FP32 without pinning them (the schema keeps them FP32), and why."""
    lim = limits(graph, plan.format)
    return {n: lim.why[n] for n in sorted(lim.fp32_nodes - set(plan.pins))}


def fp32_nodes(graph: GraphView, plan) -> set[str]:
    """Every node a plan computes in FP32: its pins, the nodes the schema keeps FP32 (``limits``),
    and every node inside a pinned control-flow node's bodies."""
    out = set(plan.pins) | limits(graph, plan.format).fp32_nodes
    for cf in [p for p in out if p in graph.bodies.parent.values()]:
        out.update(graph.bodies.inside(cf))
    return out
