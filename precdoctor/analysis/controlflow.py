"""Comparing and scanning a model with If/Loop/Scan: on its flat graphs (flatten.py), folded back to its nodes.

Each flat graph is compared as any graph is (the backend measures it, ``analyse``
finds origin and first divergence among the instances, in the order they ran);
then statistics of every instance of a body tensor are summed into that tensor,
as samples are, and instances are named by the body node they copy. The
emulation of the flat graph forces the branches and trip counts of FP32; where
the low-precision run decides otherwise (a condition computed from floats flips)
the graph outputs come from the model's own emulation and a note says so.
"""
from __future__ import annotations

import math

from ..numerics import probes
from .comparison import Comparison, TensorComparison, Tolerance, TraceStep, analyse, reference_nonfinite, saturation_of
from .flatten import Coverage, Flat, flatten
from ..graph import GraphView
from ..numerics.metrics import metrics
from ..core.ops import is_control_flow
from .outputs import compare_outputs
from ..planning.plan import Plan
from .ranges import TensorRange, fp32_ranges, merge_ranges
from ..numerics.schema import fp32_nodes
from ..core.status import CompareVerdict


def coverage(graph: GraphView, flats: list[Flat]) -> list[Coverage]:
    """For every control-flow node of the model: analysed one tensor at a time, or why not."""
    out = []
    for node in graph.all_nodes():
        if not is_control_flow(node):
            continue
        done = [f"{f.done[node.name]} ({len(f.samples)} sample(s))" for f in flats if node.name in f.done]
        kept = sorted({f.kept[node.name] for f in flats if node.name in f.kept})
        if kept:
            out.append(Coverage(node.name, node.op_type, False, "body emulated, not compared tensor by tensor: " + "; ".join(kept)))
        elif done:
            out.append(Coverage(node.name, node.op_type, True, ("inlined: " if node.op_type == "If" else "unrolled: ") + "; ".join(done)))
        else:
            out.append(Coverage(node.name, node.op_type, False, "not run on these samples (inside a branch they do not take)"))
    return out


def flat_plan(flat: Flat, graph: GraphView, plan: Plan) -> Plan:
    """The plan on a flat graph: every instance of a node the plan keeps FP32, and the helpers."""
    keep = fp32_nodes(graph, plan)
    pins = {n.name for n in flat.view.all_nodes() if flat.base_node(n.name) in keep} | flat.helpers
    return Plan(plan.precision, frozenset(pins))


def compare(graph: GraphView, plan: Plan, samples, backend, tol: Tolerance) -> Comparison:
    flats = flatten(graph, samples)
    raw: dict[str, object] = {}
    growth: dict[str, float] = {}
    faults: set[str] = set()  # body tensors with an instance whose new Inf/NaN are not benign saturation
    parts, notes, pairs = [], [], [None] * len(samples)
    flipped = []
    for f in flats:
        fs = [samples[i] for i in f.samples]
        fp = flat_plan(f, graph, plan)
        m = backend.measure(f.view, fp, fs)
        c = analyse(f.view, m.tensors, m.stats, [], fp, tol)
        parts.append((f, c))
        notes += [n for n in m.notes if n not in notes]
        for t, row in zip(m.tensors, m.stats):
            b = f.base_tensor(t)
            if b is not None:
                raw[b] = probes.combine(raw.get(b), row)
        for t in c.tensors:
            b = f.base_tensor(t.tensor)
            if b is not None and not math.isnan(t.growth):
                growth[b] = max(growth.get(b, 0.0), t.growth)
            if b is not None and t.fault_nonfinite:
                faults.add(b)
        for i, pair, dec in zip(f.samples, m.outputs, m.decisions or [{}] * len(fs)):
            pairs[i] = pair
            if any(bool((r != c_).any()) for r, c_ in dec.values()):
                flipped.append(i)
    if flipped:
        run = backend.runner(graph, plan, [samples[i] for i in flipped])
        for i in flipped:
            pairs[i] = (pairs[i][0], run(samples[i]))
        notes.append(f"in {len(flipped)} sample(s) the {plan.precision} run takes another branch or trip count than FP32: "
                     "tensor statistics follow FP32's path, graph outputs come from the model's own emulation")
    return _fold(graph, plan, parts, raw, growth, faults, pairs, tol, notes, coverage(graph, flats))


def _fold(graph, plan, parts, raw, growth, faults, pairs, tol, notes, cov) -> Comparison:
    fmt = plan.format
    tensors = []
    for b, r in raw.items():
        node = graph.producer_of(b)
        if node is None:
            continue
        m = metrics(r, fmt)
        tensors.append(TensorComparison(**vars(m), index=len(tensors), tensor=b, node=node.name, op=node.op_type,
                                        growth=growth.get(b, math.nan), benign=bool(m.nonfinite_new) and b not in faults))
    hit_o = next(((f, c) for f, c in parts if c.origin), None)
    hit_d = next(((f, c) for f, c in parts if c.first_divergence), None)
    trace, seen = [], set()
    for f, c in parts:
        for s in c.trace:
            b = f.base_tensor(s.tensor)
            if b is None or b in seen:
                continue
            seen.add(b)
            node = graph.producer_of(b)
            trace.append(TraceStep(b, node.name if node else s.node, node.op_type if node else s.op, s.nonfinite_new, s.rel_l2,
                                   b in graph.outputs))
    outputs = compare_outputs(pairs, graph.outputs, fmt, tol.rel_l2, tol.atol) if pairs and pairs[0] else {}
    reasons = [f"{o}: {', '.join(c.reasons)}" for o, c in outputs.items() if c.diverges]
    cov_notes = [f"{c.op} {c.node}: {c.detail}" for c in cov if not c.analysed]
    return Comparison(plan.precision, sorted(plan.pins), CompareVerdict.DIVERGES if reasons else CompareVerdict.OK, reasons,
                      hit_o[0].base_node(hit_o[1].origin) if hit_o else None,
                      hit_o[0].base_tensor(hit_o[1].origin_tensor) if hit_o else None,
                      hit_d[0].base_node(hit_d[1].first_divergence) if hit_d else None,
                      outputs, trace, tensors, tol, notes + cov_notes, pairs, control_flow=cov, saturation=saturation_of(tensors))


def scan_ranges(graph: GraphView, samples, fmt) -> tuple[dict[str, TensorRange], list[Coverage]]:
    """FP32 ranges of every float tensor, body tensors included (summed over their instances)."""
    if not graph.bodies:
        return fp32_ranges(graph, samples, fmt), []
    flats = flatten(graph, samples)
    out: dict[str, TensorRange] = {}
    for f in flats:
        for t, r in fp32_ranges(f.view, [samples[i] for i in f.samples], fmt).items():
            b = f.base_tensor(t)
            if b is not None:
                out[b] = merge_ranges(out.get(b), r)
    return out, coverage(graph, flats)


def compare_plan(graph: GraphView, plan, samples, backend, tol: Tolerance | None = None) -> Comparison:
    """Run the plan on ``backend`` against FP32 and analyse every float tensor (body tensors of
    If/Loop/Scan included: controlflow.py)."""
    if graph.bodies:
        c = compare(graph, plan, samples, backend, tol or Tolerance())
    else:
        m = backend.measure(graph, plan, samples)
        c = analyse(graph, m.tensors, m.stats, m.outputs, plan, tol or Tolerance(), m.notes)
    c.reference = reference_nonfinite(graph, c)  # both paths: an If whose branch makes FP32 NaN is refused too
    return c
