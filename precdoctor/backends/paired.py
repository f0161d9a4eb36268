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

from .. import probes
from ..graph import GraphView, Namer, aliases, concrete_sizes, derived_model
from ..limits import MEMORY_BUDGET_GB
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
    from ..ops import subgraphs

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


def paired_model(graph: GraphView, cand: Candidate, tensors: list[str], fmt, full: bool = True,
                 sized: set[str] = frozenset()) -> tuple[onnx.ModelProto, probes.ProbeBuilder, str, list[str]]:
    """One model computing the FP32 reference, the candidate and a probe per tensor.

    Nodes are emitted interleaved (reference node k, the candidate nodes derived
    from node k, then the probes of its outputs) so that ONNX Runtime, which
    follows node order among ready nodes, frees each activation soon after its
    probe instead of holding both models' activations to the end. Returns the
    model, its probe builder (read its output with ``probes.unpack``), the
    probe output and the reference's names for the graph outputs. ``sized``:
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
    for t in tensors:
        at = position.get(graph.producer[t].name, last) if t in graph.producer else last
        start = len(pb.nodes)
        c = t
        if cand.types and cand.types.get(t, TensorProto.FLOAT) != TensorProto.FLOAT:
            c = namer(f"{t}/as_fp32")
            pb.nodes.append(helper.make_node("Cast", [t], [c], to=TensorProto.FLOAT, name=c))
        pb.add(t, mapping.get(t, t), c, graph.ranks.get(t), size_in_graph=t not in sized)
        keyed.extend(((at, 2, start + j), nd) for j, nd in enumerate(pb.nodes[start:]))
    probe_nodes, probe_inits, stats_out = pb.finish()
    keyed.append(((last + 1, 3), probe_nodes[-1]))
    keyed.sort(key=lambda kv: kv[0])
    ref_names = [mapping.get(o, o) for o in graph.outputs]
    ref_outputs = [helper.make_tensor_value_info(r, o.type.tensor_type.elem_type, None)
                   for r, o in zip(ref_names, graph.model.graph.output)]
    inits, seen = [], set()
    for init in list(cand.model.graph.initializer) + list(graph.model.graph.initializer) + probe_inits:
        if init.name not in seen:  # the reference reads the FP32 originals
            seen.add(init.name)
            inits.append(init)
    outputs = list(cand.model.graph.output) + ref_outputs + [helper.make_tensor_value_info(stats_out, TensorProto.FLOAT, None)]
    m = derived_model(cand.model, [nd for _, nd in keyed], inits, outputs=outputs, producer="precdoctor-probes",
                      name="precdoctor-paired")
    return m, pb, stats_out, ref_names


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


def measure_paired(graph: GraphView, fmt, samples, cand: Candidate, providers=None, graph_opt="none",
                   memory_budget_gb: float = MEMORY_BUDGET_GB) -> Measurement:
    """Statistics of every float tensor of ``cand`` against FP32 (see the module docstring)."""
    tensors = graph.float_tensors()
    alias = aliases(graph, tensors)
    probed = [t for t in tensors if t not in alias]
    sizes = [concrete_sizes(graph, feed) for feed in samples]
    known = set.intersection(*(set(s) for s in sizes)) if sizes else set()

    def run(subset, full, want_outputs):
        model, pb, stats_name, ref_names = paired_model(graph, cand, subset, fmt, full, known)
        sessions = ort.ShapedSessions(model, providers=providers, graph_opt=graph_opt, lean=True, weights_dir=graph.weights_dir)
        names = (graph.outputs + ref_names if want_outputs else []) + [stats_name]
        per_sample, outs = [], []
        for feed, size in zip(samples, sizes):
            res = ort.run(sessions(feed), feed, names)
            per_sample.append(probes.unpack(res[stats_name].astype(np.float64), pb.names, pb.sized, full, size))
            if want_outputs:
                outs.append(({o: res[r] for o, r in zip(graph.outputs, ref_names)}, {o: res[o] for o in graph.outputs}))
        return per_sample, outs

    passes = _chunks(probed, sizes, memory_budget_gb)
    fast, outs = None, []
    for k, chunk in enumerate(passes):
        part, o = run(chunk, False, k == len(passes) - 1)
        fast = part if fast is None else [np.concatenate([a, b]) for a, b in zip(fast, part)]
        outs = o or outs
    redo = sorted({i for raw in fast for i in range(len(probed)) if probes.needs_full(raw[i], fmt)})
    total = None
    for raw in fast:
        total = probes.combine(total, np.stack([probes.complete_fast(r) for r in raw]))
    notes = [f"probes ran in {len(passes)} passes to stay within {memory_budget_gb} GB of activations"] if len(passes) > 1 else []
    if redo:
        full, _ = run([probed[i] for i in redo], True, False)
        acc = None
        for raw in full:
            acc = probes.combine(acc, raw)
        total[redo] = acc
        notes.append(f"{len(redo)} tensor(s) re-probed in full (non-finite or out of range)")
    row = {t: i for i, t in enumerate(probed)}
    stats = np.stack([total[row[alias.get(t, t)]] for t in tensors])
    return Measurement(tensors, stats, outs, notes)
