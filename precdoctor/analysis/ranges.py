"""FP32 value ranges of every float tensor, against what a low-precision format holds, in about one inference.

What scan reports and what bisect's localization starts from when no node
jumps: values past the format's largest finite number, nonzero values that
flush to zero, and values in the format's subnormal range, where each one
keeps fewer significant bits (FP16 below 2^-14: a slow drift, no Inf, no
jump). One FP32 run computes them: small tensors are fetched and counted in
numpy, large ones reduced in the graph by range probes whose outputs come in
groups (probes.ProbeGroups says why), so neither the node count nor the
memory of the probe graph grows much past the model's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..core import progress
from ..backends import ort
from ..core.formats import Format
from ..graph import GraphView, Namer, concrete_sizes, derived_model
from ..core.limits import SUBNORMAL_SHARE, UNDERFLOW_SHARE
from ..numerics.probes import ProbeGroups, combine
from ..core.records import Record

FIELDS = ("elements", "nonfinite", "absmax", "overflow", "underflow", "subnormal")
_MAXIMA = (FIELDS.index("absmax"),)  # the rest are counts: they add


@dataclass
class TensorRange(Record):
    """One tensor's FP32 values against a format, summed over samples."""

    absmax: float  # over finite values
    overflow: int  # finite values past the format's largest finite number
    underflow: int  # nonzero values below half the smallest subnormal (they become 0)
    nonfinite: int
    elements: int
    subnormal: int = 0  # nonzero values below the smallest normal number (fewer significant bits), underflow included

    def share(self, count: int) -> float:
        return count / max(self.elements, 1)

    def finding(self) -> str | None:
        """What the format does to these values, the worst first: ``overflow`` (any), ``underflow`` (a share
        flushing to zero), ``subnormal`` (a share keeping fewer significant bits), or None."""
        if self.overflow:
            return "overflow"
        if self.share(self.underflow) > UNDERFLOW_SHARE:
            return "underflow"
        if self.share(self.subnormal) > SUBNORMAL_SHARE:
            return "subnormal"
        return None


def findings(graph: GraphView, ranges: dict[str, TensorRange]):
    """(tensor, the node making it, its range, its finding) for every tensor with a finding, in order."""
    for t, r in ranges.items():
        node, kind = graph.producer_of(t), r.finding()
        if node is not None and kind is not None:
            yield t, node, r, kind


def numpy_range(x: np.ndarray, fmt: Format) -> np.ndarray:
    v = np.asarray(x, np.float32).ravel()
    fin = np.isfinite(v)
    a = np.abs(np.where(fin, v, 0))
    nz = a > 0
    return np.array([v.size, v.size - fin.sum(), a.max(initial=0), (a > fmt.max_finite).sum(),
                     (nz & (a < fmt.min_subnormal / 2)).sum(), (nz & (a < fmt.min_normal)).sum()], np.float64)


class _RangeProbes(ProbeGroups):
    """In-graph range probes of large tensors, ``FIELDS`` per tensor, grouped outputs."""

    def __init__(self, fmt: Format, namer: Namer):
        f32 = np.float32
        super().__init__(namer, "range", (("zero", 0.0, f32), ("inf", np.inf, f32), ("fmax", fmt.max_finite, f32),
                                          ("tiny", fmt.min_subnormal / 2, f32), ("normal", fmt.min_normal, f32),
                                          ("flat", [-1], np.int64)))

    def add(self, t: str) -> None:
        p, n, k = f"range/{len(self.names)}/", self._n, self.const
        x = n("Reshape", [t, k["flat"]], p + "x")
        bad = n("IsNaN", [n("Sub", [x, x], p + "xx")], p + "bad")
        a = n("Abs", [n("Where", [bad, k["zero"], x], p + "fin")], p + "abs")
        nz = n("Greater", [a, k["zero"]], p + "nz")
        parts = [n("Cast", [n("Shape", [x], p + "shape")], p + "n", to=TensorProto.FLOAT), self._count(bad, p + "n_bad"),
                 n("ReduceMax", [a], p + "absmax", keepdims=1), self._count(n("Greater", [a, k["fmax"]], p + "over"), p + "n_over"),
                 self._count(n("And", [nz, n("Less", [a, k["tiny"]], p + "lt")], p + "under"), p + "n_under"),
                 self._count(n("And", [nz, n("Less", [a, k["normal"]], p + "ln")], p + "sub"), p + "n_sub")]
        self._push(n("Concat", parts, p + "cat", axis=0), t)


def fp32_ranges(graph: GraphView, samples, fmt: Format, fetch_small: bool = True) -> dict[str, TensorRange]:
    """FP32 ranges of every float tensor of ``graph`` over ``samples``; small tensors (limits.FETCH_ELEMENTS)
    are fetched, the rest probed in the graph."""
    from ..backends.paired import fetchable

    tensors = graph.float_tensors()
    sizes = [concrete_sizes(graph, feed) for feed in samples]
    fetch = fetchable(tensors, sizes) if fetch_small else set()
    rp = _RangeProbes(fmt, Namer.for_model(graph.model))
    nodes: list[onnx.NodeProto] = []
    for node in graph.nodes:  # each tensor's probe right after its producer: activations die early
        nodes.append(node)
        for t in graph.float_outputs(node):
            if t not in fetch:
                start = len(rp.nodes)
                rp.add(t)
                nodes += rp.nodes[start:]
    start = len(rp.nodes)
    rp.close()
    nodes += rp.nodes[start:]
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in rp.outputs]
    outs += [helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in fetch if t not in graph.outputs]
    outs += [o for o in graph.model.graph.output if o.name in fetch]
    m = derived_model(graph.model, nodes, list(graph.model.graph.initializer) + rp.inits, outputs=outs, producer="precdoctor-scan")
    sessions = ort.ShapedSessions(m, graph_opt="none", lean=True, weights=graph.store, samples=samples)
    names = [o.name for o in outs]
    total: dict[str, np.ndarray] = {}
    progress.expect(len(samples))
    for feed in samples:
        res = ort.run(sessions(feed), feed, names)
        flat = np.concatenate([res[o].astype(np.float64).reshape(-1) for o in rp.outputs]) if rp.outputs else np.zeros(0)
        for k, t in enumerate(rp.names):
            total[t] = combine(total.get(t), flat[k * len(FIELDS):(k + 1) * len(FIELDS)], _MAXIMA)
        for t in fetch:
            total[t] = combine(total.get(t), numpy_range(res[t], fmt), _MAXIMA)
        progress.step()
    return {t: _record(total[t]) for t in tensors if t in total}


def _record(v: np.ndarray) -> TensorRange:
    n, bad, absmax, over, under, sub = v
    return TensorRange(float(absmax), int(over), int(under), int(bad), int(n), int(sub))


def merge_ranges(a: TensorRange | None, b: TensorRange) -> TensorRange:
    """Two range records of one tensor (more samples, more instances of a body node) as one."""
    if a is None:
        return b
    return TensorRange(max(a.absmax, b.absmax), a.overflow + b.overflow, a.underflow + b.underflow, a.nonfinite + b.nonfinite,
                       a.elements + b.elements, a.subnormal + b.subnormal)
