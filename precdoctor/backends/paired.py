"""One ONNX Runtime session computing the FP32 reference, a candidate and a probe per float tensor.

Shared by the backends whose candidate is an ONNX graph ONNX Runtime can run
next to the reference: the CPU emulation and ONNX Runtime CUDA. Stage 1 runs
cheap probes; stage 2 re-runs full probes on the tensors stage 1 saw go
non-finite or out of range (usually few). Reshapes and transposes are not
probed: they hold their input's values, so they get their input's statistics.
Past the memory budget the probes run in several passes, each computing only
the prefix of the graph it needs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..numerics import probes
from ..core import progress
from ..graph import GraphView, Namer, aliases, concrete_sizes, derived_model
from ..core.limits import FETCH_BUDGET_BYTES, FETCH_ELEMENTS, MEMORY_BUDGET_GB
from . import Measurement, ort


@dataclass
class Candidate:
    """A candidate graph to measure against FP32: the model, each emitted node's position in the
    original topological order (for interleaving), and which original tensors it holds in a type
    other than float32 (a mixed-precision graph's FP16/BF16 tensors)."""

    model: onnx.ModelProto
    order: dict[str, int]
    types: dict[str, int] | None = None


def _rename_subgraph_refs(node: onnx.NodeProto, mapping: dict[str, str]) -> None:
    """Rename outer-scope names read inside a control-flow node's subgraphs."""
    from ..core.ops import subgraphs

    for g in subgraphs(node):
        local = {i.name for i in g.input} | {i.name for i in g.initializer} | {o for n in g.node for o in n.output}
        for sub in g.node:
            for k, i in enumerate(sub.input):
                if i in mapping and i not in local:
                    sub.input[k] = mapping[i]
            _rename_subgraph_refs(sub, {a: b for a, b in mapping.items() if a not in local})
        for o in g.output:
            if o.name in mapping and o.name not in local:  # an outer value passed straight through: route it via Identity
                g.node.append(helper.make_node("Identity", [mapping[o.name]], [o.name]))


def _reference_copy(graph: GraphView, namer: Namer) -> tuple[list[tuple[tuple, onnx.NodeProto]], dict[str, str]]:
    """The FP32 graph again, every produced tensor and node renamed (shares inputs and initializers)."""
    keep = set(graph.inputs) | set(graph.initializers)
    mapping = {o: namer(f"ref/{o}") for n in graph.nodes for o in n.output if o and o not in keep}
    keyed = []
    for k, node in enumerate(graph.nodes):
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.name = namer(f"ref/{node.name}")
        for j, i in enumerate(new.input):
            new.input[j] = mapping.get(i, i)
        for j, o in enumerate(new.output):
            new.output[j] = mapping.get(o, o)
        _rename_subgraph_refs(new, mapping)
        keyed.append(((k, 0), new))
    return keyed, mapping


@dataclass
class Paired:
    """A paired model and how to read it: the probe builder (``probes.unpack`` its group outputs), the
    fetched tensors as (candidate, reference) output names, the reference's names for the graph outputs
    and for the decision tensors."""

    model: onnx.ModelProto
    pb: probes.ProbeBuilder
    fetched: dict[str, tuple[str, str]]
    ref_outputs: list[str]
    decisions: list[tuple[str, str]]  # (candidate, reference) names of the tensors deciding control flow


def paired_model(graph: GraphView, cand: Candidate, tensors: list[str], fmt, full: bool = True,
                 sized: set[str] = frozenset(), fetch: set[str] = frozenset()) -> Paired:
    """One model computing the FP32 reference, the candidate and a probe per tensor of ``tensors``
    (those in ``fetch`` are outputs instead, measured in numpy).

    Nodes are emitted interleaved (reference node k, the candidate nodes derived
    from node k, then the probes of its outputs) so that ONNX Runtime, which
    follows node order among ready nodes, frees each activation soon after its
    probe instead of holding both models' activations to the end. ``sized``:
    tensors whose element count is known already (fast probes then do not
    count them in the graph).
    """
    namer = Namer.for_model(cand.model)
    namer.taken |= Namer.for_model(graph.model).taken
    keyed, mapping = _reference_copy(graph, namer)
    position = {n.name: k for k, n in enumerate(graph.nodes)}
    last = len(graph.nodes)
    keyed += [((cand.order.get(node.name, last), 1, j), node) for j, node in enumerate(cand.model.graph.node)]
    pb = probes.ProbeBuilder(fmt, namer, full=full)
    low = cand.types or {}
    extra: list[onnx.ValueInfoProto] = []
    fetched: dict[str, tuple[str, str]] = {}
    for t in tensors:
        if t in fetch:
            fetched[t] = (t, mapping.get(t, t))
            extra += [helper.make_tensor_value_info(t, low.get(t, TensorProto.FLOAT), None),
                      helper.make_tensor_value_info(mapping.get(t, t), TensorProto.FLOAT, None)]
            continue
        at = position.get(graph.producer[t].name, last) if t in graph.producer else last
        start = len(pb.nodes)
        c = t
        if low.get(t, TensorProto.FLOAT) != TensorProto.FLOAT:
            c = namer(f"{t}/as_fp32")
            pb.nodes.append(helper.make_node("Cast", [t], [c], to=TensorProto.FLOAT, name=c))
        pb.add(t, mapping.get(t, t), c, graph.ranks.get(t), size_in_graph=t not in sized)
        keyed.extend(((at, 2, start + j), nd) for j, nd in enumerate(pb.nodes[start:]))
    start = len(pb.nodes)
    probe_nodes, probe_inits, stats_outs = pb.finish()
    keyed.extend(((last + 1, 3, j), nd) for j, nd in enumerate(probe_nodes[start:]))
    keyed.sort(key=lambda kv: kv[0])
    ref_names = [mapping.get(o, o) for o in graph.outputs]
    ref_outputs = [helper.make_tensor_value_info(r, o.type.tensor_type.elem_type, None)
                   for r, o in zip(ref_names, graph.model.graph.output)]
    decisions = [d for d in graph.decisions if d in mapping]
    extra += [helper.make_tensor_value_info(n, TensorProto.BOOL, None) for d in decisions for n in (d, mapping[d])]
    inits, seen = [], set()
    for init in list(cand.model.graph.initializer) + list(graph.model.graph.initializer) + probe_inits:
        if init.name not in seen:  # the reference reads the FP32 originals
            seen.add(init.name)
            inits.append(init)
    outputs, names = [], set()
    for vi in list(cand.model.graph.output) + ref_outputs + extra + [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in stats_outs]:
        if vi.name not in names:
            names.add(vi.name)
            outputs.append(vi)
    m = derived_model(cand.model, [nd for _, nd in keyed], inits, outputs=outputs, producer="precdoctor-probes",
                      name="precdoctor-paired")
    return Paired(m, pb, fetched, ref_names, [(d, mapping[d]) for d in decisions])


def _chunks(tensors: list[str], sizes: list[dict], budget_gb: float) -> list[list[str]]:
    """Split probes, in topological order, into passes whose activations (reference + candidate,
    float32, largest sample) fit the budget."""
    limit = budget_gb * 2**30
    out, cur, used = [], [], 0.0
    for t in tensors:
        b = 8.0 * max((s.get(t, 0) for s in sizes), default=0)
        if cur and used + b > limit:
            out.append(cur)
            cur, used = [], 0.0
        cur.append(t)
        used += b
    return out + [cur] if cur else out


def _with_outputs(model: onnx.ModelProto, tensors: list[str], graph: GraphView, types: dict[str, int]) -> onnx.ModelProto:
    """``model`` outputting its graph outputs, ``tensors`` and the control-flow decisions."""
    outs = list(model.graph.output)
    have = {o.name for o in outs}
    extra = [(t, types.get(t, TensorProto.FLOAT)) for t in tensors] + [(d, TensorProto.BOOL) for d in graph.decisions]
    outs += [helper.make_tensor_value_info(t, ty, None) for t, ty in dict(extra).items() if t not in have]
    return derived_model(model, list(model.graph.node), list(model.graph.initializer), outputs=outs, producer="precdoctor-probes")


def fetchable(tensors: list[str], sizes: list[dict]) -> set[str]:
    """Tensors small enough to fetch and measure in numpy (see limits.FETCH_ELEMENTS), within the fetch budget."""
    out, used = set(), 0
    for t in tensors:
        n = max((s.get(t, -1) if t in s else -1 for s in sizes), default=-1)
        if 0 <= n <= FETCH_ELEMENTS and used + 8 * n <= FETCH_BUDGET_BYTES:
            out.add(t)
            used += 8 * n
    return out


def measure_paired(graph: GraphView, fmt, samples, cand: Candidate, providers=None, graph_opt="none",
                   memory_budget_gb: float = MEMORY_BUDGET_GB) -> Measurement:
    """Statistics of every float tensor of ``cand`` against FP32 (see the module docstring)."""
    tensors = graph.float_tensors()
    alias = aliases(graph, tensors)
    probed = [t for t in tensors if t not in alias]
    sizes = [concrete_sizes(graph, feed) for feed in samples]
    known = set.intersection(*(set(s) for s in sizes)) if sizes else set()
    fetch = fetchable(probed, sizes)
    acc: dict[str, np.ndarray] = {}
    m = Measurement(tensors, np.zeros((0, probes.K)), decisions=[{} for _ in samples])

    def run(subset, full, last):
        """One pass; returns the tensors whose fast probe asks for a full one."""
        if not full and set(subset) <= fetch:
            return split(subset, last)
        pm = paired_model(graph, cand, subset, fmt, full, known, set() if full else fetch)
        sessions = ort.ShapedSessions(pm.model, providers=providers, graph_opt=graph_opt, lean=True, weights=graph.store,
                                      samples=samples)
        wanted = [n for pair in pm.fetched.values() for n in pair] + pm.pb.outputs
        if last:
            wanted = graph.outputs + pm.ref_outputs + [n for pair in pm.decisions for n in pair] + wanted
        redo = set()
        for k, (feed, size) in enumerate(zip(samples, sizes)):
            res = ort.run(sessions(feed), feed, list(dict.fromkeys(wanted)))
            rows = probes.unpack([res[o] for o in pm.pb.outputs], pm.pb.names, pm.pb.sized, full, size)
            for t, row in zip(pm.pb.names, rows):
                if not full and probes.needs_full(row, fmt):
                    redo.add(t)
                acc[t] = probes.combine(acc.get(t) if k else None, row if full else probes.complete_fast(row))
            names = list(pm.fetched)
            rows = probes.numpy_stats_many([res[pm.fetched[t][1]] for t in names], [res[pm.fetched[t][0]] for t in names], fmt)
            for t, row in zip(names, rows):
                acc[t] = probes.combine(acc.get(t) if k else None, row)
            if last:
                m.outputs.append(({o: res[r] for o, r in zip(graph.outputs, pm.ref_outputs)}, {o: res[o] for o in graph.outputs}))
                m.decisions[k] = {c: (res[r], res[c]) for c, r in pm.decisions}
            progress.step()
        return redo

    def split(subset, last):
        """Every tensor small enough to fetch: reference and candidate in two sessions of their own, each
        far smaller than one paired graph (ONNX Runtime's start-up grows faster than the node count)."""
        ref_s, cand_s = (ort.ShapedSessions(_with_outputs(mm, subset, graph, types), providers=providers, graph_opt=graph_opt, lean=True,
                                            weights=graph.store, samples=samples) for mm, types in ((graph.model, {}), (cand.model, cand.types or {})))
        names = list(dict.fromkeys(subset + (graph.outputs + graph.decisions if last else [])))
        for k, feed in enumerate(samples):
            r, c = ort.run(ref_s(feed), feed, names), ort.run(cand_s(feed), feed, names)
            for t, row in zip(subset, probes.numpy_stats_many([r[t] for t in subset], [c[t] for t in subset], fmt)):
                acc[t] = probes.combine(acc.get(t) if k else None, row)
            if last:
                m.outputs.append(({o: r[o] for o in graph.outputs}, {o: c[o] for o in graph.outputs}))
                m.decisions[k] = {d: (r[d], c[d]) for d in graph.decisions}
            progress.step()
        return set()

    passes = _chunks(probed, sizes, memory_budget_gb)
    redo = set()
    progress.expect(len(passes) * len(samples))  # one step per sample and pass (a session build delays the first)
    for k, chunk in enumerate(passes):
        redo |= run(chunk, False, k == len(passes) - 1)
    if len(passes) > 1:
        m.notes.append(f"probes ran in {len(passes)} passes to stay within {memory_budget_gb} GB of activations")
    if redo:  # and what such tensors feed: whether a saturation there changed anything is counted by full probes
        progress.expect(len(samples))
        fed = {o for t in redo for c in graph.consumers.get(t, []) for o in graph.float_outputs(c)} - redo
        run([t for t in probed if t in redo or t in fed], True, False)
        m.notes.append(f"{len(redo)} tensor(s) re-probed in full (FP32 reference not finite or out of range)")
        fed &= set(probed)
        if fed:
            m.notes.append(f"{len(fed)} tensor(s) they feed probed in full too (to see whether an infinity there changed anything)")
    m.stats = np.stack([acc[alias.get(t, t)] for t in tensors]) if tensors else np.zeros((0, probes.K))
    return m
