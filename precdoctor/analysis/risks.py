"""FP32-only risk analysis: what will break in FP16/BF16, read off one FP32 run and the graph.

No low-precision run: the FP32 ranges of every float tensor (ranges.py; the
tensors of If/Loop/Scan bodies through controlflow.py's flat graphs) against
FP16: values past its range, flushing to zero, or in its subnormal range.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..core.formats import BF16, FP16
from ..graph import GraphView, LayerNormPattern, attr, layernorm_patterns
from ..core.ops import is_control_flow
from .ranges import TensorRange, findings
from ..core.records import Record

SEVERITY = {"high": 0, "medium": 1, "low": 2}


@dataclass
class Risk(Record):
    kind: Literal["range", "underflow", "subnormal", "initializer", "epsilon", "decomposed-norm", "nonfinite"]
    severity: Literal["high", "medium", "low"]
    node: str
    op: str
    tensor: str
    detail: str


def _tensor_risks(graph: GraphView, ranges: dict[str, TensorRange]) -> list[Risk]:
    out = []
    for t, node, r, kind in findings(graph, ranges):
        if kind == "overflow":
            out.append(Risk("range", "high", node.name, node.op_type, t,
                            f"FP32 |max| {r.absmax:.4g} > FP16 max 65504 on {r.share(r.overflow):.2%} of elements"))
        elif kind == "underflow":
            out.append(Risk("underflow", "medium", node.name, node.op_type, t,
                            f"{r.share(r.underflow):.2%} of nonzero values are below FP16's smallest subnormal (flush to 0)"))
        else:
            out.append(Risk("subnormal", "low", node.name, node.op_type, t,
                            f"{r.share(r.subnormal):.2%} of values are in FP16's subnormal range (< 6.1e-5: fewer significant bits)"))
    return out


def _constant_risks(graph: GraphView, how: str = "cast") -> list[Risk]:
    """Initializers FP16 cannot hold: under ``cast`` they become 0 or inf; under ``clamp`` (constants.py) they are
    held at FP16's bounds, which keeps them finite and nonzero but changes their value."""
    out = []
    clamp = how == "clamp"
    for name in graph.float_initializers():
        a = np.abs(graph.array(name))
        readers = [n for n in graph.readers(name) if not is_control_flow(n)] or graph.readers(name)  # the body node, not its If
        users = ", ".join(n.name for n in readers[:3])
        if a.size and a.max() > FP16.max_finite:
            out.append(Risk("initializer", "medium" if clamp else "high", users, "", name, f"initializer |max| {a.max():.4g} "
                            + (f"is clamped to {FP16.max_finite:g} in FP16" if clamp else "is infinite in FP16")))
        tiny = (a > 0) & (a < FP16.min_subnormal / 2)
        if tiny.any():
            kind, sev = ("epsilon", "high") if a.size == 1 else ("initializer", "medium")
            what = f"are clamped to {FP16.min_subnormal:.3g} in FP16" if clamp else "become 0 in FP16"
            out.append(Risk(kind, "low" if clamp else sev, users, "", name,
                            f"{int(tiny.sum())} nonzero value(s) (smallest {a[tiny].min():.3g}) {what}"))
    for node in graph.nodes:
        eps = attr(node, "epsilon")
        if eps is not None and 0 < eps < FP16.min_subnormal / 2:
            out.append(Risk("epsilon", "high", node.name, node.op_type, "", f"epsilon {eps:g} is 0 in FP16 (fine only if the op keeps FP32 inside)"))
        if eps is not None and 0 < eps < BF16.min_subnormal:
            out.append(Risk("epsilon", "high", node.name, node.op_type, "", f"epsilon {eps:g} is 0 in BF16"))
    return out


def _norm_risks(norms: list[LayerNormPattern], ranges: dict[str, TensorRange]) -> list[Risk]:
    out = []
    for d in norms:
        r = ranges.get(d.square_tensor)
        over = bool(r and r.overflow)
        reach = f"{r.absmax:.4g}" if r else "nan"
        out.append(Risk("decomposed-norm", "high" if over else "low", d.square, "Pow", d.square_tensor,
                        f"decomposed normalization ({d.mean} .. {d.variance}); (x-mean)^2 reaches {reach}"
                        + (" > 65504: pin the square and the variance to FP32" if over else "")))
    return out


def _nonfinite_risks(graph: GraphView, ranges: dict[str, TensorRange]) -> list[Risk]:
    """FP32 itself computes Inf/NaN: the first node that does (its inputs finite), whatever the format."""
    for node in graph.all_nodes():  # body nodes too, right after their control-flow node (which itself computes nothing)
        if is_control_flow(node):
            continue
        outs = [o for o in node.output if o in ranges and ranges[o].nonfinite]
        if outs and all(ranges[i].nonfinite == 0 for i in node.input if i in ranges):
            bad = sum(1 for r in ranges.values() if r.nonfinite)
            return [Risk("nonfinite", "high", node.name, node.op_type, outs[0],
                         f"FP32 itself computes Inf/NaN here ({ranges[outs[0]].nonfinite} of {ranges[outs[0]].elements} elements; "
                         f"{bad} tensor(s) hold them): not a precision problem; check the inputs or the model")]
    return []


def find_risks(graph: GraphView, samples, how: str = "cast", ranges: dict[str, TensorRange] | None = None
               ) -> tuple[list[Risk], list[LayerNormPattern], dict[str, TensorRange], list]:
    """Risks, decomposed norms, FP32 ranges of every float tensor (body tensors included), and how each
    If/Loop/Scan was covered (controlflow.coverage); constants judged as the target converts them (``how``).
    ``ranges``: the FP16 ranges of ``graph`` on ``samples`` where the caller has them already (no coverage then)."""
    from .controlflow import scan_ranges

    ranges, coverage = (ranges, []) if ranges is not None else scan_ranges(graph, samples, FP16)
    norms = layernorm_patterns(graph)
    risks = _nonfinite_risks(graph, ranges) + _tensor_risks(graph, ranges) + _constant_risks(graph, how) + _norm_risks(norms, ranges)
    risks.sort(key=lambda r: SEVERITY[r.severity])
    return risks, norms, ranges, coverage
