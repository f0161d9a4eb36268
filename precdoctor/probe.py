"""Per-tensor statistics of a candidate against the FP32 reference.

The statistics are *raw sums* (counts, maxima, sums of squares) so that they
add up over samples and over chunks, and so that two implementations can
produce them: ``numpy_stats`` on fetched arrays (any backend), and
``add_probes``, which computes the same vector inside the ONNX graph. The
in-graph form is what keeps a whole-model comparison cheap: one ONNX Runtime
run of reference + candidate + probes, and no activation ever copied out
(Polygraphy marks every tensor as an output instead: about 6 GB and 98 s on a
wav2vec2-base).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .emulate import SUFFIX
from .formats import Format

FIELDS = (
    "n", "nonfinite_ref", "nonfinite_cand", "nonfinite_new", "max_abs", "sse", "ssr", "ssc",
    "dot", "ref_absmax", "n_overflow", "n_underflow",
)
K = len(FIELDS)
_MAX_FIELDS = {FIELDS.index("max_abs"), FIELDS.index("ref_absmax")}
IDX = {f: i for i, f in enumerate(FIELDS)}


def numpy_stats(ref: np.ndarray, cand: np.ndarray, fmt: Format) -> np.ndarray:
    r = np.asarray(ref, np.float32).ravel()
    c = np.asarray(cand, np.float32).ravel()
    nr, nc = ~np.isfinite(r), ~np.isfinite(c)
    bad = nr | nc
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.where(bad, 0, c - r)
        rm, cm = np.where(bad, 0, r), np.where(bad, 0, c)
        absr = np.abs(np.where(nr, 0, r))
    return np.array(
        [
            r.size, nr.sum(), nc.sum(), (nc & ~nr).sum(),
            np.abs(d).max(initial=0), np.dot(d, d), np.dot(rm, rm), np.dot(cm, cm), np.dot(rm, cm),
            absr.max(initial=0), (absr > fmt.max_finite).sum(),
            ((absr > 0) & (absr < fmt.min_subnormal / 2)).sum(),
        ],
        np.float64,
    )


def combine(a: np.ndarray | None, b: np.ndarray) -> np.ndarray:
    """Merge two raw vectors (one more sample): sums add, maxima take the max."""
    if a is None:
        return b.copy()
    out = a + b
    for i in _MAX_FIELDS:
        out[..., i] = np.maximum(a[..., i], b[..., i])
    return out


class ProbeBuilder:
    """Appends probe nodes comparing pairs of float32 tensors; one [N*K] output."""

    def __init__(self, fmt: Format, opset: int):
        self.fmt, self.opset = fmt, opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.parts: list[str] = []
        self.names: list[str] = []
        c = lambda n, v, dt=np.float32: numpy_helper.from_array(np.array(v, dt), f"probe/{n}{SUFFIX}")
        self.inits += [c("zero", 0.0), c("fmax", fmt.max_finite), c("tiny", fmt.min_subnormal / 2),
                       c("flat", [-1], np.int64), c("one_d", [1], np.int64)]
        self.k = lambda n: f"probe/{n}{SUFFIX}"

    def _n(self, op, ins, out, **kw):
        self.nodes.append(helper.make_node(op, ins, [out], name=out, **kw))
        return out

    def _sum(self, x, out):
        # no axes: reduces everything in every opset (axes moved to an input at 13)
        return self._n("ReduceSum", [x], out, keepdims=1)

    def add(self, label: str, ref: str, cand: str) -> None:
        p = f"probe/{len(self.names)}/"
        n, k = self._n, self.k
        rf = n("Reshape", [ref, k("flat")], p + "r")
        cf = n("Reshape", [cand, k("flat")], p + "c")
        nr = n("IsNaN", [n("Sub", [rf, rf], p + "rr")], p + "nr")
        nc = n("IsNaN", [n("Sub", [cf, cf], p + "cc")], p + "nc")
        bad = n("Or", [nr, nc], p + "bad")
        new = n("And", [nc, n("Not", [nr], p + "notnr")], p + "new")
        d = n("Where", [bad, k("zero"), n("Sub", [cf, rf], p + "d0")], p + "d")
        rm = n("Where", [bad, k("zero"), rf], p + "rm")
        cm = n("Where", [bad, k("zero"), cf], p + "cm")
        absr = n("Abs", [n("Where", [nr, k("zero"), rf], p + "rfin")], p + "absr")
        cnt = lambda b, tag: self._sum(n("Cast", [b], p + tag + "f", to=TensorProto.FLOAT), p + tag)
        size = n("Cast", [n("Shape", [rf], p + "shape")], p + "size", to=TensorProto.FLOAT)
        under = n("And", [n("Less", [absr, k("tiny")], p + "lt"), n("Greater", [absr, k("zero")], p + "gt0")], p + "under")
        parts = [
            size, cnt(nr, "n_nr"), cnt(nc, "n_nc"), cnt(new, "n_new"),
            n("ReduceMax", [n("Abs", [d], p + "absd")], p + "maxd", keepdims=1),
            n("ReduceSumSquare", [d], p + "sse", keepdims=1),
            n("ReduceSumSquare", [rm], p + "ssr", keepdims=1),
            n("ReduceSumSquare", [cm], p + "ssc", keepdims=1),
            self._sum(n("Mul", [rm, cm], p + "rc"), p + "dot"),
            n("ReduceMax", [absr], p + "maxr", keepdims=1),
            cnt(n("Greater", [absr, k("fmax")], p + "over"), "n_over"),
            cnt(under, "n_under"),
        ]
        self.parts.append(n("Concat", parts, p + "stats", axis=0))
        self.names.append(label)

    def finish(self) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str]:
        out = "probe/all_stats" + SUFFIX
        self.nodes.append(helper.make_node("Concat", self.parts, [out], axis=0, name=out))
        return self.nodes, self.inits, out


def _rename_subgraph_refs(node: onnx.NodeProto, mapping: dict[str, str]) -> None:
    """Rename outer-scope names read inside a control-flow node's subgraphs."""
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for g in graphs:
            local = {i.name for i in g.input} | {i.name for i in g.initializer} | {o for n in g.node for o in n.output}
            for sub in g.node:
                for k, i in enumerate(sub.input):
                    if i in mapping and i not in local:
                        sub.input[k] = mapping[i]
                _rename_subgraph_refs(sub, {a: b for a, b in mapping.items() if a not in local})
            for o in g.output:
                if o.name in mapping and o.name not in local:
                    # an outer value passed straight through: route it via Identity
                    g.node.append(helper.make_node("Identity", [mapping[o.name]], [o.name]))


REF_PREFIX = "ref/"


def paired_model(graph, candidate: onnx.ModelProto, tensors: list[str], fmt: Format, cand_types: dict[str, int] | None = None) -> tuple[onnx.ModelProto, list[str], str]:
    """One model computing the FP32 reference, the candidate and a probe per tensor.

    The reference copy gets ``ref/`` names; it shares graph inputs and
    initializers with the candidate. Outputs: the candidate's graph outputs,
    the reference's (``ref/<name>``), and the probe vector.
    """
    src = graph.model
    keep = set(graph.inputs) | set(graph.initializers)
    mapping = {o: REF_PREFIX + o for n in graph.nodes for o in n.output if o and o not in keep}
    ref_nodes = []
    for node in graph.nodes:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.name = REF_PREFIX + node.name
        for k, i in enumerate(new.input):
            new.input[k] = mapping.get(i, i)
        for k, o in enumerate(new.output):
            new.output[k] = mapping.get(o, o)
        _rename_subgraph_refs(new, mapping)
        ref_nodes.append(new)
    pb = ProbeBuilder(fmt, graph.opset)
    cast_nodes = []
    for t in tensors:
        c = t
        if cand_types and cand_types.get(t, TensorProto.FLOAT) != TensorProto.FLOAT:
            c = f"{t}/as_fp32{SUFFIX}"
            cast_nodes.append(helper.make_node("Cast", [t], [c], to=TensorProto.FLOAT, name=c))
        pb.add(t, mapping.get(t, t), c)
    probe_nodes, probe_inits, stats_out = pb.finish()
    cg = candidate.graph
    ref_outputs = [helper.make_tensor_value_info(mapping.get(o.name, o.name), o.type.tensor_type.elem_type, None) for o in src.graph.output]
    g = helper.make_graph(
        ref_nodes + list(cg.node) + cast_nodes + probe_nodes, "precdoctor-paired", list(cg.input),
        list(cg.output) + ref_outputs + [helper.make_tensor_value_info(stats_out, TensorProto.FLOAT, None)],
        initializer=list(cg.initializer) + probe_inits,
    )
    # the candidate may share initializer names with the reference: they are the same tensors
    seen, uniq = set(), []
    for init in g.initializer:
        if init.name not in seen:
            seen.add(init.name)
            uniq.append(init)
    del g.initializer[:]
    g.initializer.extend(uniq)
    m = helper.make_model(g, opset_imports=list(candidate.opset_import), producer_name="precdoctor-probe")
    m.ir_version = candidate.ir_version
    m.functions.extend(candidate.functions)
    return m, pb.names, stats_out
