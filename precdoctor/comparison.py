"""From raw per-tensor statistics to a comparison: metrics, Inf/NaN origin, first divergence, verdict.

Findings are computed in topological order and on error *growth*: a node
diverges when its output error jumps well past the error of its inputs, not
when some element crosses an absolute tolerance (Polygraphy's per-element
tolerances flag rounding noise in ``x - mean``; a norm-based error does not).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .flatten import Coverage
from .graph import GraphView
from .limits import DEFAULT_ATOL, DEFAULT_REL_L2, FLOOR_ULPS, GROWTH, MIN_DIVERGENCE
from .metrics import Metrics, metrics
from .ops import is_control_flow
from .outputs import OutputComparison, compare_outputs
from .records import SKIP, Record


@dataclass
class Tolerance(Record):
    """When a graph output counts as diverged (compare's verdict)."""

    rel_l2: float = DEFAULT_REL_L2  # relative L2 error of the whole output
    atol: float = DEFAULT_ATOL  # a position (all axes but the last) is off when its max abs error exceeds this


@dataclass
class TensorComparison(Metrics):
    index: int  # position among the compared tensors, topological order
    tensor: str
    node: str
    op: str
    growth: float  # error over the largest error of the node's inputs (at least one unit roundoff)


@dataclass
class TraceStep(Record):
    tensor: str
    node: str
    op: str
    nonfinite_new: int
    rel_l2: float
    is_output: bool


@dataclass
class Comparison(Record):
    """A plan compared with FP32, tensor by tensor and output by output."""

    precision: str
    pins: list[str]
    verdict: Literal["ok", "diverges"]
    reasons: list[str]
    origin: str | None  # first node with new Inf/NaN whose inputs had none
    origin_tensor: str | None
    first_divergence: str | None  # first node whose error jumps (see analyse)
    outputs: dict[str, OutputComparison]
    trace: list[TraceStep]
    tensors: list[TensorComparison]
    tolerance: Tolerance
    notes: list[str] = field(default_factory=list)
    pairs: list = field(default_factory=list, repr=False, metadata=SKIP)  # per sample (reference, candidate) outputs
    reference: ReferenceNonfinite | None = None  # non-finite values FP32 itself computes (reference_nonfinite)
    control_flow: list[Coverage] = field(default_factory=list)  # how each If/Loop/Scan was analysed

    def tensor(self, name: str) -> TensorComparison | None:
        return next((t for t in self.tensors if t.tensor == name), None)

    def of_node(self, node: str) -> TensorComparison | None:
        return next((t for t in self.tensors if t.node == node), None)


def analyse(graph: GraphView, labels: list[str], raw: np.ndarray, pairs, plan, tol: Tolerance, notes=()) -> Comparison:
    fmt = plan.format
    per = {t: metrics(raw[i], fmt) for i, t in enumerate(labels)}
    err = {t: m.error for t, m in per.items()}
    floor = max(FLOOR_ULPS * fmt.unit_roundoff, MIN_DIVERGENCE)
    tensors: list[TensorComparison] = []
    origin = origin_t = first_div = None
    for node in graph.nodes:
        outs = [o for o in graph.float_outputs(node) if o in per]
        ins = [i for i in node.input if i in per]
        base = max(max([err[i] for i in ins], default=0.0), fmt.unit_roundoff)
        for o in outs:
            m = per[o]
            growth = err[o] / base if math.isfinite(err[o]) else math.inf
            if origin is None and m.nonfinite_new and all(per[i].nonfinite_new == 0 for i in ins):
                origin, origin_t = node.name, o
            if first_div is None and err[o] > floor and growth >= GROWTH and _propagates(graph, o, err, floor):
                first_div = node.name
            tensors.append(TensorComparison(**vars(m), index=len(tensors), tensor=o, node=node.name, op=node.op_type, growth=growth))
    outputs = compare_outputs(pairs, graph.outputs, fmt, tol.rel_l2, tol.atol) if pairs else {}
    reasons = [f"{o}: {', '.join(c.reasons)}" for o, c in outputs.items() if c.diverges]
    start = origin_t or _tensor_of(graph, first_div)
    return Comparison(plan.precision, sorted(plan.pins), "diverges" if reasons else "ok", reasons, origin, origin_t, first_div,
                      outputs, trace(graph, per, start, floor), tensors, tol, list(notes), pairs or [])


def _propagates(graph: GraphView, tensor: str, err: dict, floor: float) -> bool:
    """The error reaches a graph output or some consumer's output: noise that the next op
    absorbs (the near-zero mean of a LayerNorm, subtracted from x) is not a divergence."""
    if tensor in graph.outputs:
        return True
    return any(err.get(o, 0.0) > floor for c in graph.consumers.get(tensor, []) for o in graph.float_outputs(c))


def _tensor_of(graph: GraphView, node: str | None) -> str | None:
    if node is None:
        return None
    outs = graph.float_outputs(graph.node(node))
    return outs[0] if outs else None


def trace(graph: GraphView, per: dict[str, Metrics], start: str | None, floor: float) -> list[TraceStep]:
    """Tensors downstream of ``start`` that carry its Inf/NaN or corruption, in topological order."""
    if start is None:
        return []
    bad, frontier = {start}, [start]
    while frontier:
        t = frontier.pop()
        for node in graph.consumers.get(t, []):
            for o in graph.float_outputs(node):
                m = per.get(o)
                if o not in bad and m is not None and (m.nonfinite_new or m.error > floor):
                    bad.add(o)
                    frontier.append(o)
    order = {t: k for k, t in enumerate(t for n in graph.nodes for t in n.output)}
    return [TraceStep(t, graph.producer[t].name, graph.producer[t].op_type, per[t].nonfinite_new, per[t].rel_l2, t in graph.outputs)
            for t in sorted(bad, key=lambda x: order.get(x, 0))]


@dataclass
class ReferenceNonfinite(Record):
    """Inf/NaN that the FP32 reference itself computes: found, located, never blamed on the low precision."""

    origin: str | None  # first node whose FP32 output is non-finite while its compared inputs are finite
    origin_tensor: str | None
    origin_op: str | None
    elements: int  # non-finite FP32 elements of the origin's tensor
    tensors: int  # float tensors holding non-finite FP32 values
    outputs: dict[str, int]  # graph output -> non-finite FP32 elements (NaN and Inf)
    nan_outputs: dict[str, int]  # graph output -> NaN FP32 elements

    def sentence(self) -> str:
        where = f"born at node {self.origin!r} ({self.origin_op}, tensor {self.origin_tensor!r}, {self.elements} element(s))" \
            if self.origin else "already in the inputs"
        reach = ", ".join(f"{o} ({n})" for o, n in self.outputs.items()) or "no graph output"
        return f"the FP32 reference itself computes Inf/NaN in {self.tensors} tensor(s), {where}; reaching {reach}"


def reference_nonfinite(graph: GraphView, c: Comparison) -> ReferenceNonfinite | None:
    """The FP32 origin of non-finite reference values, from the per-tensor counts the probes took."""
    per = {t.tensor: t for t in c.tensors}
    outputs = {o: oc.nan_ref + oc.inf_ref for o, oc in c.outputs.items() if oc.nan_ref + oc.inf_ref}
    bad = [t for t in c.tensors if t.nonfinite_ref > 0]
    if not bad and not outputs:
        return None
    origin = None
    for node in graph.all_nodes():  # body nodes too: on the control-flow path their tensors are compared under their names
        if is_control_flow(node):  # computes nothing itself: the body node that makes the value is the origin
            continue
        outs = [per[o] for o in graph.float_outputs(node) if o in per and per[o].nonfinite_ref > 0]
        if outs and all(per[i].nonfinite_ref == 0 for i in node.input if i in per):
            origin = outs[0]
            break
    return ReferenceNonfinite(origin.node if origin else None, origin.tensor if origin else None, origin.op if origin else None,
                              origin.nonfinite_ref if origin else 0, len(bad), outputs,
                              {o: oc.nan_ref for o, oc in c.outputs.items() if oc.nan_ref})


def hidden_nonfinite(c: Comparison) -> str | None:
    """New Inf/NaN born inside the graph that no graph output shows: a plan passing with them passes by luck."""
    if c.origin is None or any(o.metrics is not None and o.metrics.nonfinite_new for o in c.outputs.values()):
        return None
    inside = [t for t in c.tensors if t.nonfinite_new]
    t = c.tensor(c.origin_tensor) if c.origin_tensor else None
    return (f"{c.precision.upper()} computes new Inf/NaN inside the graph that the outputs do not show: born at node "
            f"{c.origin!r} ({t.op if t else '?'}, {t.nonfinite_new if t else '?'} element(s)), in {len(inside)} tensor(s)")
