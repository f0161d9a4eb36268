"""From raw per-tensor statistics to findings: metrics, Inf/NaN origin, first divergence, verdict.

Findings are computed in topological order and on error *growth*: a node
diverges when its output error jumps well past the error of its inputs, not
when some element crosses an absolute tolerance (Polygraphy's per-element
tolerances flag rounding noise in ``x - mean``; a norm-based error does not).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .formats import Format
from .graph import GraphView
from .probe import IDX, combine, numpy_stats

GROWTH = 8.0  # error must grow this much over the node's inputs ...
FLOOR_ULPS = 16  # ... and exceed this many unit roundoffs (and MIN_DIVERGENCE) to count


@dataclass
class Tolerance:
    """When a graph output counts as diverged (compare's exit code)."""

    rel_l2: float = 0.05  # relative L2 error of the whole output
    atol: float = 1.0  # a position (all axes but the last) is off when its max abs error exceeds this

    def to_json(self) -> dict:
        return {"rel_l2": self.rel_l2, "atol": self.atol}


def _num(x: float) -> float | None:
    """JSON-safe float: inf/nan become None (the counts next to them say why)."""
    x = float(x)
    return x if math.isfinite(x) else None


def metrics(raw: np.ndarray, fmt: Format) -> dict:
    n = max(raw[IDX["n"]], 1.0)
    sse, ssr, ssc, dot = (raw[IDX[k]] for k in ("sse", "ssr", "ssc", "dot"))
    new = int(raw[IDX["nonfinite_new"]])
    rel = math.sqrt(sse / ssr) if ssr > 0 else (0.0 if sse == 0 else math.inf)
    cos = dot / math.sqrt(ssr * ssc) if ssr > 0 and ssc > 0 else (1.0 if ssr == ssc == 0 else 0.0)
    absmax = raw[IDX["ref_absmax"]]
    return {
        "elements": int(raw[IDX["n"]]),
        "max_abs": _num(raw[IDX["max_abs"]]) if not new else None,
        "rel_l2": _num(rel),
        "cosine": _num(cos),
        "sqnr_db": _num(10 * math.log10(ssr / sse)) if sse > 0 and ssr > 0 else (None if sse > 0 else 999.0),
        "nonfinite_ref": int(raw[IDX["nonfinite_ref"]]),
        "nonfinite_cand": int(raw[IDX["nonfinite_cand"]]),
        "nonfinite_new": new,
        "nonfinite_frac": raw[IDX["nonfinite_new"]] / n,
        "ref_absmax": _num(absmax),
        "headroom": _num(fmt.max_finite / absmax) if absmax > 0 else None,
        "overflow_frac": raw[IDX["n_overflow"]] / n,
        "underflow_frac": raw[IDX["n_underflow"]] / n,
    }


def effective_error(m: dict) -> float:
    """One number per tensor for error growth: inf when Inf/NaN appeared, else relative L2."""
    if m["nonfinite_new"]:
        return math.inf
    return m["rel_l2"] if m["rel_l2"] is not None else math.inf


@dataclass
class Findings:
    tensors: list[dict]  # per tensor, topological order: name, node, op, metrics, growth
    origin: str | None
    origin_tensor: str | None
    first_divergence: str | None
    outputs: dict[str, dict]
    verdict: str  # "ok" | "diverges"
    reasons: list[str] = field(default_factory=list)
    trace: list[dict] = field(default_factory=list)
    pairs: list = field(default_factory=list, repr=False)  # per sample (reference, candidate) graph outputs


def position_stats(ref: np.ndarray, cand: np.ndarray, atol: float) -> tuple[int, int, np.ndarray]:
    """Positions (all axes but the last) whose max abs error exceeds atol or that went non-finite."""
    r = np.asarray(ref, np.float32)
    c = np.asarray(cand, np.float32)
    if r.ndim == 0:
        r, c = r.reshape(1, 1), c.reshape(1, 1)
    r2, c2 = r.reshape(-1, r.shape[-1] if r.shape[-1] else 1), c.reshape(-1, r.shape[-1] if r.shape[-1] else 1)
    with np.errstate(invalid="ignore"):
        err = np.abs(c2 - r2)
        new_bad = ~np.isfinite(c2) & np.isfinite(r2)
        off = (np.nan_to_num(err, nan=0.0, posinf=np.inf) > atol).any(axis=1) | new_bad.any(axis=1)
    return int(off.sum()), int(off.size), off


def output_findings(pairs: list[tuple[dict, dict]], graph: GraphView, fmt: Format, tol: Tolerance) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name in graph.outputs:
        ref0 = pairs[0][0].get(name)
        if ref0 is None:
            continue
        if np.asarray(ref0).dtype.kind != "f":  # token ids, masks: they agree exactly or not
            out[name] = _exact_findings([(np.asarray(r[name]), np.asarray(c[name])) for r, c in pairs])
            continue
        raw, off, total, per_sample = None, 0, 0, []
        for ref, cand in pairs:
            s = numpy_stats(ref[name], cand[name], fmt)
            raw = combine(raw, s)
            o, t, _ = position_stats(ref[name], cand[name], tol.atol)
            off, total = off + o, total + t
            per_sample.append(o)
        m = metrics(raw, fmt)
        reasons = []
        if m["nonfinite_new"]:
            reasons.append(f"{m['nonfinite_new']} non-finite values")
        if m["rel_l2"] is None or m["rel_l2"] > tol.rel_l2:
            reasons.append(f"relative L2 error {_fmt(m['rel_l2'])} > {tol.rel_l2}")
        if off:
            reasons.append(f"{off} of {total} positions off by more than {tol.atol}")
        if reasons and not m["nonfinite_new"]:
            reasons.append("silent corruption: the output is finite but wrong")
        m.update(positions_off=off, positions=total, positions_off_per_sample=per_sample, diverges=bool(reasons), reasons=reasons)
        out[name] = m
    return out


def _exact_findings(pairs) -> dict:
    """Non-float outputs (argmax ids inside the graph, masks): the share of elements that differ."""
    total = sum(r.size for r, _ in pairs)
    diff = sum(int(np.sum(r != c)) if r.shape == c.shape else r.size for r, c in pairs)
    reasons = [f"{diff} of {total} elements differ from FP32"] if diff else []
    return {"elements": total, "mismatch": diff, "mismatch_frac": diff / max(total, 1), "diverges": bool(diff), "reasons": reasons,
            "rel_l2": None, "max_abs": None, "cosine": None, "nonfinite_new": 0, "positions_off": diff, "positions": total,
            "positions_off_per_sample": [int(np.sum(r != c)) if r.shape == c.shape else r.size for r, c in pairs]}


def _fmt(x) -> str:
    return "inf" if x is None else f"{x:.3g}"


def analyse(graph: GraphView, labels: list[str], raw: np.ndarray, pairs, fmt: Format, tol: Tolerance) -> Findings:
    per = {t: metrics(raw[i], fmt) for i, t in enumerate(labels)}
    err = {t: effective_error(m) for t, m in per.items()}
    floor = max(FLOOR_ULPS * fmt.unit_roundoff, 0.05)
    tensors, origin, origin_t, first_div = [], None, None, None
    pos = 0
    for node in graph.nodes:
        outs = [o for o in graph.float_outputs(node) if o in per]
        if not outs:
            continue
        ins = [i for i in node.input if i in per]
        e_in = max([err[i] for i in ins], default=0.0)
        base = max(e_in, fmt.unit_roundoff)
        for o in outs:
            m = per[o]
            growth = err[o] / base if math.isfinite(err[o]) else math.inf
            if origin is None and m["nonfinite_new"] and all(per[i]["nonfinite_new"] == 0 for i in ins):
                origin, origin_t = node.name, o
            if first_div is None and err[o] > floor and growth >= GROWTH and _propagates(graph, o, err, floor):
                first_div = node.name
            tensors.append({"index": pos, "tensor": o, "node": node.name, "op": node.op_type,
                            "growth": _num(growth), **m})
            pos += 1
    outputs = output_findings(pairs, graph, fmt, tol) if pairs else {}
    reasons = [f"{o}: {', '.join(m['reasons'])}" for o, m in outputs.items() if m["diverges"]]
    f = Findings(tensors, origin, origin_t, first_div, outputs, "diverges" if reasons else "ok", reasons, pairs=pairs or [])
    f.trace = trace(graph, per, origin_t or _tensor_of(graph, first_div), floor)
    return f


def _propagates(graph: GraphView, tensor: str, err: dict, floor: float) -> bool:
    """The error reaches a graph output or some consumer's output: noise that the next op
    absorbs (the near-zero mean of a LayerNorm, subtracted from x) is not a divergence."""
    if tensor in graph.outputs:
        return True
    for c in graph.consumers.get(tensor, []):
        if any(err.get(o, 0.0) > floor for o in graph.float_outputs(c)):
            return True
    return False


def _tensor_of(graph: GraphView, node: str | None) -> str | None:
    if node is None:
        return None
    outs = graph.float_outputs(graph.node(node))
    return outs[0] if outs else None


def trace(graph: GraphView, per: dict[str, dict], start: str | None, floor: float) -> list[dict]:
    """Tensors downstream of ``start`` that carry its Inf/NaN or corruption, in topological order."""
    if start is None:
        return []
    bad = {start}
    chain = []
    order = {t: k for k, t in enumerate(t for n in graph.nodes for t in n.output)}
    frontier = [start]
    while frontier:
        t = frontier.pop()
        for node in graph.consumers.get(t, []):
            for o in graph.float_outputs(node):
                m = per.get(o)
                if o in bad or m is None:
                    continue
                if m["nonfinite_new"] or effective_error(m) > floor:
                    bad.add(o)
                    frontier.append(o)
    for t in sorted(bad, key=lambda x: order.get(x, 0)):
        m = per[t]
        chain.append({"tensor": t, "node": graph.producer[t].name, "op": graph.producer[t].op_type,
                      "nonfinite_new": m["nonfinite_new"], "rel_l2": m["rel_l2"],
                      "is_output": t in graph.outputs})
    return chain


def to_json(f: Findings, tol: Tolerance) -> dict:
    return {
        "verdict": f.verdict,
        "reasons": f.reasons,
        "origin": f.origin,
        "origin_tensor": f.origin_tensor,
        "first_divergence": f.first_divergence,
        "tolerance": tol.to_json(),
        "outputs": f.outputs,
        "trace": f.trace,
        "tensors": f.tensors,
    }


def compare_plan(graph: GraphView, plan, samples, backend, tol: Tolerance | None = None) -> Findings:
    """Run the plan on ``backend`` against FP32 and analyse every float tensor."""
    tol = tol or Tolerance()
    pr = backend.probe(graph, plan, samples)
    return analyse(graph, pr.tensors, pr.stats, pr.outputs, plan.format, tol)
