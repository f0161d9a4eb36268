"""FP32-only risk report: what will break in FP16/BF16, read off one FP32 run and the graph.

No low-precision run: ranges come from probes that compare each tensor with
itself (so only the FP32 statistics are meaningful), reusing probe.py.
"""
from __future__ import annotations

import numpy as np
from onnx import helper

from . import probe as probes
from .backends import ort
from .formats import BF16, FP16
from .graph import GraphView, layernorm_patterns

_EPS_CONSUMERS = {"Sqrt", "Log", "Div", "Reciprocal", "Pow"}


def _fp32_stats(graph: GraphView, samples) -> dict[str, dict]:
    pb = probes.ProbeBuilder(FP16)
    tensors = graph.float_tensors()
    for t in tensors:
        pb.add(t, t, t)
    nodes, inits, out = pb.finish()
    src = graph.model.graph
    g = helper.make_graph(list(src.node) + nodes, src.name, list(src.input),
                          [helper.make_tensor_value_info(out, 1, None)], initializer=list(src.initializer) + inits)
    m = helper.make_model(g, opset_imports=list(graph.model.opset_import))
    m.ir_version = graph.model.ir_version
    m.functions.extend(graph.model.functions)
    sess = ort.session(m, weights_dir=graph.weights_dir)
    total = None
    for feed in samples:
        raw = probes.unpack(ort.run(sess, feed, [out])[out].astype(np.float64), pb.names, pb.sized, True, {})
        total = probes.combine(total, raw)
    idx = probes.IDX
    return {
        t: {"absmax": float(total[k, idx["ref_absmax"]]), "overflow_frac": float(total[k, idx["n_overflow"]] / max(total[k, idx["n"]], 1)),
            "underflow_frac": float(total[k, idx["n_underflow"]] / max(total[k, idx["n"]], 1)),
            "nonfinite": int(total[k, idx["nonfinite_ref"]])}
        for k, t in enumerate(tensors)
    }


def scan(graph: GraphView, samples) -> dict:
    stats = _fp32_stats(graph, samples)
    risks: list[dict] = []
    for t, s in stats.items():
        node = graph.producer[t]
        if s["overflow_frac"] > 0:
            risks.append({"kind": "range", "severity": "high", "node": node.name, "op": node.op_type, "tensor": t,
                          "detail": f"FP32 |max| {s['absmax']:.4g} > FP16 max 65504 on {s['overflow_frac']:.2%} of elements"})
        elif s["underflow_frac"] > 0.01:
            risks.append({"kind": "underflow", "severity": "medium", "node": node.name, "op": node.op_type, "tensor": t,
                          "detail": f"{s['underflow_frac']:.2%} of nonzero values are below FP16's smallest subnormal (flush to 0)"})
    for name, init in graph.initializers.items():
        if init.data_type != 1:
            continue
        a = np.abs(graph.array(name))
        users = ", ".join(n.name for n in graph.consumers.get(name, [])[:3])
        if a.size and a.max() > FP16.max_finite:
            risks.append({"kind": "initializer", "severity": "high", "tensor": name, "node": users, "op": "",
                          "detail": f"initializer |max| {a.max():.4g} is infinite in FP16"})
        tiny = (a > 0) & (a < FP16.min_subnormal / 2)
        if tiny.any():
            sev = "high" if a.size == 1 else "medium"
            risks.append({"kind": "epsilon" if a.size == 1 else "initializer", "severity": sev, "tensor": name, "node": users, "op": "",
                          "detail": f"{int(tiny.sum())} nonzero value(s) (smallest {a[tiny].min():.3g}) become 0 in FP16"})
    for node in graph.nodes:
        eps = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "epsilon"), None)
        if eps is not None and 0 < eps < FP16.min_subnormal / 2:
            risks.append({"kind": "epsilon", "severity": "high", "node": node.name, "op": node.op_type, "tensor": "",
                          "detail": f"epsilon {eps:g} is 0 in FP16 (fine only if the op keeps FP32 inside)"})
        if eps is not None and 0 < eps < BF16.min_subnormal:
            risks.append({"kind": "epsilon", "severity": "high", "node": node.name, "op": node.op_type, "tensor": "",
                          "detail": f"epsilon {eps:g} is 0 in BF16"})
    norms = layernorm_patterns(graph)
    for d in norms:
        s = stats.get(d["square_tensor"], {})
        over = s.get("overflow_frac", 0) > 0
        risks.append({"kind": "decomposed-norm", "severity": "high" if over else "low", "node": d["square"], "op": "Pow",
                      "tensor": d["square_tensor"],
                      "detail": f"decomposed normalization ({d['mean']} .. {d['variance']}); (x-mean)^2 reaches {s.get('absmax', float('nan')):.4g}"
                                + (" > 65504: pin the square and the variance to FP32" if over else "")})
    order = {"high": 0, "medium": 1, "low": 2}
    risks.sort(key=lambda r: order[r["severity"]])
    return {"command": "scan", "nodes": len(graph.nodes), "tensors": len(stats), "risks": risks, "decomposed_norms": norms,
            "ranges": stats}


def summary(r: dict) -> str:
    lines = [f"precdoctor scan: {r['nodes']} nodes, {r['tensors']} float tensors, {len(r['risks'])} risk(s)"]
    for risk in r["risks"]:
        where = risk["node"] or risk["tensor"]
        lines.append(f"  [{risk['severity']:6s}] {risk['kind']:15s} {where[:60]}: {risk['detail']}")
    if not r["risks"]:
        lines.append("  nothing out of FP16/BF16 range on these inputs")
    return "\n".join(lines)
