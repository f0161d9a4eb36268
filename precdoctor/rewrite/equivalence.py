"""FP32 equivalence of a rewritten graph: the original and the rewritten model in FP32 on the same samples,
compared on the graph outputs and on every tensor a rewrite matched (scaled ones divided by their factor).

The error of a tensor is max |rewritten - original| / max |original| over all
samples: relative to the tensor's own scale, so elements near zero (where an
elementwise relative error means nothing) do not dominate. Inf/NaN where the
original has the same value count as equal; anywhere else as an infinite error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from onnx import TensorProto, helper

from ..backends import ort
from ..graph import GraphView, derived_model
from ..core.records import Record
from .core import Candidate


@dataclass
class Equivalence(Record):
    outputs: dict[str, float]  # graph output -> max relative error
    rewrites: dict[str, float] = field(default_factory=dict)  # rewrite id -> max relative error over its matched tensors
    tensors: dict[str, float] = field(default_factory=dict)  # matched tensor -> max relative error

    @property
    def worst_output(self) -> float:
        return max(self.outputs.values(), default=0.0)


def fp32_values(graph: GraphView, samples, tensors: list[str]) -> list[dict[str, np.ndarray]]:
    """The FP32 values of ``tensors`` (graph outputs or not) on each sample."""
    wanted = list(dict.fromkeys(t for t in tensors if t in graph.elem_type or t in graph.outputs))
    outs = [o for o in graph.model.graph.output if o.name in wanted]
    outs += [helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in wanted if t not in graph.outputs]
    model = derived_model(graph.model, list(graph.model.graph.node), list(graph.model.graph.initializer), outputs=outs,
                          producer="precdoctor-equivalence")
    sessions = ort.ShapedSessions(model, graph_opt="none", weights=graph.store)
    return [ort.run(sessions(s), s, [o.name for o in outs]) for s in samples]


class Reference:
    """The original graph's FP32 values, each tensor computed once: every measure of a rewrite stage (all candidates,
    each alternative, the kept set) compares against the same run instead of running the original again."""

    def __init__(self, graph: GraphView, samples):
        self.graph, self.samples = graph, samples
        self.values: list[dict[str, np.ndarray]] = [{} for _ in samples]

    def __call__(self, tensors: list[str]) -> list[dict[str, np.ndarray]]:
        missing = [t for t in tensors if self.values and t not in self.values[0]]
        if missing:
            for have, new in zip(self.values, fp32_values(self.graph, self.samples, missing)):
                have.update(new)
        return self.values


def relative_error(ref: np.ndarray, got: np.ndarray) -> float:
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    if ref.shape != got.shape:
        return math.inf
    both = np.isfinite(ref) & np.isfinite(got)
    same = (ref == got) | (np.isnan(ref) & np.isnan(got))
    if np.any(~both & ~same):
        return math.inf
    scale = float(np.max(np.abs(ref[both]), initial=0.0))
    diff = float(np.max(np.abs(ref[both] - got[both]), initial=0.0))
    return diff / scale if scale > 0 else diff


def measure(original: GraphView, rewritten: GraphView, candidates: list[Candidate], samples,
            reference: Reference | None = None) -> Equivalence:
    """Outputs, and for each candidate its kept tensors and its scaled ones (unscaled), original against rewritten;
    ``reference``: the original's values already computed (a Reference of ``original`` on ``samples``)."""
    pairs: dict[str, tuple[str, float]] = {o: (o, 1.0) for o in original.outputs}
    owner: dict[str, list[str]] = {}
    for c in candidates:
        for t in c.record.kept:
            pairs.setdefault(t, (t, 1.0))
            owner.setdefault(t, []).append(c.id)
        for s in c.record.scaled:
            pairs.setdefault(s.tensor, (s.holds, s.factor))
            owner.setdefault(s.tensor, []).append(c.id)
    pairs = {t: v for t, v in pairs.items() if (t in original.elem_type or t in original.outputs)
             and (v[0] in rewritten.elem_type or v[0] in rewritten.outputs)}
    ref = (reference or Reference(original, samples))(list(pairs))
    got = fp32_values(rewritten, samples, [h for h, _ in pairs.values()])
    err = {t: max(relative_error(r[t], g[h] / f) for r, g in zip(ref, got)) for t, (h, f) in pairs.items()}
    eq = Equivalence({o: err[o] for o in original.outputs if o in err})
    eq.tensors = {t: e for t, e in err.items() if t in owner}
    for t, ids in owner.items():
        for i in ids:
            if t in err:
                eq.rewrites[i] = max(eq.rewrites.get(i, 0.0), err[t])
    return eq

