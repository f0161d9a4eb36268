"""The commands' pipelines, callable from Python: load, compare, summarize."""
from __future__ import annotations

import time

from . import __version__
from .compare import Tolerance, compare_plan, to_json
from .errors import BadInput
from .graph import GraphView, load_model, view
from .inputs import gather_samples
from .plan import build_plan


def load(model_path: str, inputs=(), shapes=(), seed: int = 0) -> tuple[GraphView, list[dict]]:
    graph = view(load_model(model_path))
    if not graph.float_tensors():
        raise BadInput(f"{model_path} has no float32 tensors: nothing to run in reduced precision")
    samples = gather_samples(graph, list(inputs), list(shapes), seed)
    return graph, samples


def versions() -> dict:
    import numpy
    import onnx
    import onnxruntime

    out = {"precdoctor": __version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "numpy": numpy.__version__}
    try:
        from importlib.metadata import version

        out["polygraphy"] = version("polygraphy")
    except Exception:
        pass
    return out


def compare(model_path, inputs, shapes, seed, opts: dict, rtol: float, atol: float, backend) -> dict:
    t0 = time.perf_counter()
    graph, samples = load(model_path, inputs, shapes, seed)
    plan = build_plan(graph, opts["precision"], opts.get("pin_selectors", ()), opts.get("pin_files", ()))
    tol = Tolerance(rel_l2=rtol, atol=atol)
    t1 = time.perf_counter()
    findings = compare_plan(graph, plan, samples, backend, tol)
    result = {
        "command": "compare",
        "model": str(model_path),
        "precision": plan.precision,
        "pins": sorted(plan.pins),
        "nodes": len(graph.nodes),
        "samples": len(samples),
        **backend.describe(),
        **to_json(findings, tol),
        "timing": {"load_s": t1 - t0, "compare_s": time.perf_counter() - t1},
        "versions": versions(),
    }
    return result


def _g(x, spec=".3g") -> str:
    return "inf" if x is None else format(x, spec)


def compare_summary(r: dict, top: int = 8) -> str:
    lines = [f"precdoctor compare: {r['model']} in {r['precision']}"
             + (f" with {len(r['pins'])} FP32 pins" if r["pins"] else "")
             + f" ({r['nodes']} nodes, {len(r['tensors'])} float tensors, {r['samples']} sample(s), {r['backend']})"]
    lines.append(f"verdict: {r['verdict'].upper()}")
    for reason in r["reasons"]:
        lines.append(f"  {reason}")
    lines.append(f"Inf/NaN origin:   {r['origin'] or '-'}" + (f"  (tensor {r['origin_tensor']})" if r["origin_tensor"] else ""))
    lines.append(f"first divergence: {r['first_divergence'] or '-'}")
    for name, m in r["outputs"].items():
        lines.append(f"output {name}: rel-L2 {_g(m['rel_l2'])}, max-abs {_g(m['max_abs'])}, cosine {_g(m['cosine'], '.6f')}, "
                     f"non-finite {m['nonfinite_new']}, positions off {m['positions_off']}/{m['positions']}")
    worst = sorted(r["tensors"], key=lambda t: (-(t["nonfinite_new"] > 0), -(t["rel_l2"] if t["rel_l2"] is not None else 1e30)))[:top]
    if worst:
        lines.append(f"top {len(worst)} tensors by error:")
        lines.append(f"  {'#':>4}  {'node':40s} {'op':18s} {'rel-L2':>9} {'SQNR dB':>8} {'non-fin':>8} {'|max| FP32':>11}")
        for t in worst:
            lines.append(f"  {t['index']:>4}  {t['node'][:40]:40s} {t['op'][:18]:18s} {_g(t['rel_l2']):>9} {_g(t['sqnr_db'], '.1f'):>8} "
                         f"{t['nonfinite_new']:>8} {_g(t['ref_absmax']):>11}")
    return "\n".join(lines)
