"""From raw per-tensor statistics to a comparison: metrics, Inf/NaN origin, first divergence, verdict.

Findings are computed in topological order and on error *growth*: a node
diverges when its output error jumps well past the error of its inputs, not
when some element crosses an absolute tolerance (Polygraphy's per-element
tolerances flag rounding noise in ``x - mean``; a norm-based error does not).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .flatten import Coverage
from ..graph import GraphView
from ..core.limits import DEFAULT_REL_L2, FLOOR_ULPS, GROWTH, MIN_DIVERGENCE, ZEROED_SHARE
from ..numerics.metrics import Metrics, metrics
from ..core.ops import is_control_flow
from .outputs import OutputComparison, compare_outputs
from ..core.records import SKIP, Record
from ..core.status import CompareVerdict


@dataclass
class Tolerance(Record):
    """When a graph output counts as diverged (compare's verdict)."""

    rel_l2: float = DEFAULT_REL_L2  # relative L2 error of the whole output
    atol: float | None = None  # a position (all axes but the last) is off past this max abs error; None: follows the format
    #                            and the output's magnitude (limits.POSITION_ULPS)


@dataclass
class TensorComparison(Metrics):
    index: int  # position among the compared tensors, topological order
    tensor: str
    node: str
    op: str
    growth: float  # error over the largest error of the node's inputs (at least one unit roundoff)
    benign: bool = field(default=False, kw_only=True)  # its new Inf/NaN are benign saturation (benign_saturation)

    @property
    def fault_nonfinite(self) -> int:
        """New Inf/NaN that count as a failure: all of them unless they are benign saturation."""
        return 0 if self.benign else self.nonfinite_new


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
    verdict: CompareVerdict  # the outputs alone: OK or DIVERGES
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
    saturation: Saturation | None = None  # benign saturation: new infinities that change nothing (benign_saturation)

    def tensor(self, name: str) -> TensorComparison | None:
        return next((t for t in self.tensors if t.tensor == name), None)

    def of_node(self, node: str) -> TensorComparison | None:
        return next((t for t in self.tensors if t.node == node), None)


def analyse(graph: GraphView, labels: list[str], raw: np.ndarray, pairs, plan, tol: Tolerance, notes=()) -> Comparison:
    fmt = plan.format
    per = {t: metrics(raw[i], fmt) for i, t in enumerate(labels)}
    floor = max(FLOOR_ULPS * fmt.unit_roundoff, MIN_DIVERGENCE)
    benign = benign_saturation(graph, per)
    err = {t: (m.finite_error if t in benign else m.error) for t, m in per.items()}
    fault = {t for t, m in per.items() if m.nonfinite_new and t not in benign}
    tensors: list[TensorComparison] = []
    origin = origin_t = first_div = None
    for node in graph.nodes:
        outs = [o for o in graph.float_outputs(node) if o in per]
        ins = [i for i in node.input if i in per]
        base = max(max([err[i] for i in ins], default=0.0), fmt.unit_roundoff)
        for o in outs:
            m = per[o]
            growth = err[o] / base if math.isfinite(err[o]) else math.inf
            if origin is None and o in fault and not any(i in fault for i in ins):
                origin, origin_t = node.name, o
            if first_div is None and err[o] > floor and growth >= GROWTH and _propagates(graph, o, err, floor):
                first_div = node.name
            tensors.append(TensorComparison(**vars(m), index=len(tensors), tensor=o, node=node.name, op=node.op_type, growth=growth,
                                            benign=o in benign))
    outputs = compare_outputs(pairs, graph.outputs, fmt, tol.rel_l2, tol.atol) if pairs else {}
    reasons = [f"{o}: {', '.join(c.reasons)}" for o, c in outputs.items() if c.diverges]
    start = origin_t or _tensor_of(graph, first_div)
    return Comparison(plan.precision, sorted(plan.pins), CompareVerdict.DIVERGES if reasons else CompareVerdict.OK, reasons, origin, origin_t, first_div,
                      outputs, trace(graph, per, start, floor, benign), tensors, tol, list(notes), pairs or [],
                      saturation=saturation_of(tensors))


def benign_saturation(graph: GraphView, per: dict[str, Metrics]) -> set[str]:
    """Tensors whose new Inf/NaN are benign saturation: decided by what the values do, never by op names.

    Saturation: FP32 holds a finite value beyond the format's range and the candidate the infinity of the same
    sign (a float32-min mask becomes -inf). It is benign unless it causes a failure: a tensor fed by it
    that holds NaN or an infinity where FP32 is within the range (the Sqrt of an overflowed variance), or a
    finite tensor fed by it that turns the infinities into 0s FP32 does not have (``_zeroes_them``: 1 / inf = 0
    against FP32's 1.4e-5). An error jump at a node that reads a mask is the node's own (exp amplifying BF16's
    rounding of large logits), judged as any divergence. A failure implicates the
    saturated chain feeding it, up to where it starts (the Pow of that variance: the origin; a chain of +inf does not
    run back into a -inf mask the Exp reads: it starts at the Exp); a tensor that
    reads an earlier failure carries that failure and implicates nothing (NaN flowing into a later -inf mask
    Add does not make the mask the culprit). A graph output that saturates is never benign: the user reads
    the inf.
    """
    order = [o for n in graph.nodes for o in graph.float_outputs(n) if o in per]
    saturated = {t for t in order if per[t].nonfinite_new and per[t].nonfinite_new == per[t].saturated and t not in graph.outputs}
    if not saturated:
        return set()
    ins = {t: [i for i in graph.producer[t].input if i in per] for t in order}
    fault = {t for t in order if per[t].nonfinite_new and t not in saturated}  # failures on their own
    implicating = set()
    changed = True
    while changed:  # a fixpoint: an implicated chain makes its readers carriers, which may implicate nothing more
        changed = False
        for t in order:
            if t in implicating or (t in saturated and t in fault):
                continue
            carries = any(i in fault for i in ins[t])
            if t in saturated:
                if carries:
                    fault.add(t)
                    changed = True
                continue
            fed = [i for i in ins[t] if i in saturated and i not in fault]
            if carries or not fed:
                continue
            m = per[t]
            if m.nonfinite_new or _zeroes_them(m, [per[i] for i in fed]):
                chain, frontier = set(), list(fed)
                while frontier:  # the saturated chain feeding this failure, back to where it starts
                    u = frontier.pop()
                    if u in chain:
                        continue
                    chain.add(u)
                    frontier += [w for w in ins[u] if w in saturated and w not in fault and _same_sign(per[w], per[u])]
                fault |= chain
                implicating.add(t)
                changed = True
    return saturated - fault


def _zeroes_them(m: Metrics, fed: list[Metrics]) -> bool:
    """A finite tensor reading infinities turns them into 0s that FP32 does not have (1 / inf = 0 against FP32's
    1.4e-5; c / inf = 0 in a LayerNorm): at least one per ZEROED_SHARE of the infinities it reads. A few zeros from
    rounding near a tie (x - max in a written-out softmax: FP32 1e-3, the format 0) are not the infinities' doing;
    a change that is not a 0 (tanh(inf) = 1 = tanh(7e4), exp(-inf) = 0 = FP32's exp(-3.4e38)) is no change.
    Measured by full probes only (None: not measured, and then not a change)."""
    return bool(m.zeroed) and m.zeroed >= ZEROED_SHARE * min(f.saturated for f in fed)


def _same_sign(src: Metrics, dst: Metrics) -> bool:
    """Whether ``dst``'s infinities can be ``src``'s carried on: some of the same sign. Where they cannot (-inf read, +inf
    made: exp of a masked score is 0, so an Exp's +inf is its own overflow), the chain starts at ``dst``."""
    pos = lambda m: m.saturated_pos > 0  # noqa: E731
    neg = lambda m: m.saturated - m.saturated_pos > 0  # noqa: E731
    return (pos(src) and pos(dst)) or (neg(src) and neg(dst))


@dataclass
class Saturation(Record):
    """Benign saturation in a compared plan: FP32 values beyond the format's range that become infinities of the same
    sign while everything downstream agrees with FP32. Noted, never the Inf/NaN origin, never a reason to pin."""

    nodes: list[str]  # the nodes making the saturated tensors, topological order
    tensors: int
    elements: int  # saturated elements summed over those tensors and the samples

    def sentence(self, precision: str) -> str:
        shown = ", ".join(repr(n) for n in self.nodes[:4]) + (f" and {len(self.nodes) - 4} more" if len(self.nodes) > 4 else "")
        return (f"benign saturation in {precision.upper()}: {self.elements} FP32 value(s) beyond the format's range become "
                f"infinities (or the format's largest value) of the same sign in {self.tensors} tensor(s) (made by {shown}) and "
                "everything they feed agrees with FP32 (as a float32-min attention mask does); not a failure, nothing to pin")


def saturation_of(tensors: list[TensorComparison]) -> Saturation | None:
    """Benign saturation in ``tensors``: infinities (``benign``) and values held at the format's extreme (``clamped``)."""
    sat = [t for t in tensors if t.benign or (t.clamped and not t.fault_nonfinite)]
    if not sat:
        return None
    return Saturation(list(dict.fromkeys(t.node for t in sat)), len(sat), sum(t.nonfinite_new + t.clamped for t in sat))


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


def trace(graph: GraphView, per: dict[str, Metrics], start: str | None, floor: float, benign=frozenset()) -> list[TraceStep]:
    """Tensors downstream of ``start`` that carry its Inf/NaN or corruption, in topological order (benign saturation
    is not corruption)."""
    if start is None:
        return []
    bad, frontier = {start}, [start]
    while frontier:
        t = frontier.pop()
        for node in graph.consumers.get(t, []):
            for o in graph.float_outputs(node):
                m = per.get(o)
                if o not in bad and m is not None and ((m.nonfinite_new and o not in benign) or m.finite_error > floor):
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
    """New Inf/NaN born inside the graph that no graph output shows: a plan passing with them passes by luck.
    Benign saturation (``Comparison.saturation``) is not counted."""
    if c.origin is None or any(o.metrics is not None and o.metrics.nonfinite_new for o in c.outputs.values()):
        return None
    inside = [t for t in c.tensors if t.fault_nonfinite]
    t = c.tensor(c.origin_tensor) if c.origin_tensor else None
    return (f"{c.precision.upper()} computes new Inf/NaN inside the graph that the outputs do not show: born at node "
            f"{c.origin!r} ({t.op if t else '?'}, {t.nonfinite_new if t else '?'} element(s)), in {len(inside)} tensor(s)")


def fault_nonfinite(c: Comparison) -> int:
    """New Inf/NaN inside the graph that count against a plan (``finite-inside``): benign saturation excluded."""
    return sum(t.fault_nonfinite for t in c.tensors)
