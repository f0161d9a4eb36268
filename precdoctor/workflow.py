"""The commands' pipelines, callable from Python: load, compare, summarize."""
from __future__ import annotations

import time

from . import __version__
from .compare import Tolerance, compare_plan, to_json
from .errors import BadInput
from .graph import GraphView, load_model, view
from .inputs import gather_samples
from .plan import build_plan


def load(model_path: str, inputs=(), shapes=(), seed: int = 0, make_samples=None) -> tuple[GraphView, list[dict]]:
    """The model's graph and validated input samples (``make_samples(graph)`` overrides files and shapes)."""
    graph = view(load_model(model_path))
    if not graph.float_tensors():
        raise BadInput(f"{model_path} has no float32 tensors: nothing to run in reduced precision")
    if make_samples is not None:
        from .inputs import validate

        return graph, validate(graph, make_samples(graph))
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
        if "mismatch" in m:
            lines.append(f"output {name}: {m['mismatch']} of {m['elements']} elements differ from FP32")
            continue
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


def task_setup(model_path, inputs, shapes, seed, task_opts: dict, precision: str):
    """(task judge or None, arguments for load()): with --task, samples come from the dataset's audio."""
    if not task_opts.get("task_name"):
        if task_opts.get("data"):
            raise BadInput("--data needs --task (ctc, whisper or package.module:factory)")
        return None, (inputs, shapes, seed)
    from .tasks.evaluate import make_judge

    judge = make_judge(model_path, task_opts)
    return judge, (inputs, shapes, seed, judge.samples)


def bisect_summary(r: dict) -> str:
    lines = [f"precdoctor bisect: {r['verdict'].upper()} - {r['message']}"]
    if r["pins"]:
        lines.append(f"pins ({len(r['pins'])}, {r['casts']} precision boundaries):")
        lines += [f"  {p}  [{r['node_ops'].get(p, '?')}]  {r['why'].get(p, '')}" for p in r["pins"]]
    lines.append(f"evaluations: {r['evaluations']} (bound k*ceil(log2 N)+3 = {r['evaluation_bound']}, {r['candidates']} candidates)"
                 + (f", {r['evaluations_resumed']} from the journal" if r["evaluations_resumed"] else "")
                 + ("; 1-minimal: verified" if r["one_minimal"] and r["pins"] else ""))
    b = r.get("baselines") or {}
    if b:
        lines.append("baselines (same model, inputs and acceptance):")
        lines.append(f"  {'method':28s} {'FP32 nodes':>10} {'passes':>7} {'evaluations':>12}")
        rr, pb, pd = b["range_rule"], b["prefix_bisection"], b["precdoctor"]
        yes = lambda x: "-" if x is None else ("yes" if x else "no")
        lines.append(f"  {'range rule (AutoCast-style)':28s} {rr['pins']:>10} {yes(rr['passed']):>7} {rr['evaluations']:>12}")
        lines.append(f"  {'prefix bisection (Polygraphy)':28s} {str(pb['pins'] if pb['pins'] is not None else '-'):>10} {yes(pb['passed']):>7} {pb['evaluations']:>12}")
        lines.append(f"  {'precdoctor':28s} {pd['pins']:>10} {yes(pd['passed']):>7} {pd['evaluations']:>12}")
    task = r.get("task")
    if task and task.get("rows"):
        lines.append("task metric:")
        for row in task["rows"]:
            lines.append(f"  {row['config']:12s} WER {row['wer']:.4f}  CER {row['cer']:.4f}")
    a = r["artifacts"]
    lines.append("artifacts: " + ", ".join(v for k, v in a.items() if isinstance(v, str)) + (f", {r['report']}" if r.get("report") else ""))
    if a.get("trtexec_unsupported"):
        lines.append(f"  note: trtexec cannot name {len(a['trtexec_unsupported'])} pinned layer(s); see trtexec.txt")
    return "\n".join(lines)


def reemit(pins_file: str, fmt: str, model: str | None, outdir: str) -> str:
    from pathlib import Path

    from .emit import write_artifacts
    from .files import ensure_dir
    from .plan import Plan, load_pins

    data = load_pins(pins_file)
    model = model or data.get("model")
    if not model:
        raise BadInput(f"{pins_file} names no model; pass --model")
    graph = view(load_model(model))
    precision = data.get("precision", "fp16")
    plan = build_plan(graph, precision, data.get("pins", []))
    plan = Plan(plan.precision, plan.pins, data.get("why", {}))
    written = write_artifacts(ensure_dir(outdir), str(Path(model).resolve()), graph, plan, (fmt,))
    names = [v for v in written.values() if isinstance(v, str)]
    return "\n".join(f"wrote {Path(outdir) / n}" for n in names)


def wer_table(model_path, precision, pin_files, task_opts, backend, other: bool) -> dict:
    from .tasks.evaluate import make_judge

    t0 = time.perf_counter()
    judge = make_judge(model_path, task_opts)
    graph = view(load_model(model_path))
    pins = frozenset()
    if pin_files:
        pins = build_plan(graph, "fp16" if precision == "fp32" else precision, (), pin_files).pins
    if precision == "fp32":
        base = judge.fp32(graph)
        table = {"rows": [judge.row(base, judge.references(base))], "worst": []}
    else:
        table = judge.table(backend, graph, precision, pins, other)
    return {"command": "wer", "model": str(model_path), "precision": precision, "pins": sorted(pins), **backend.describe(),
            "task": judge.task.describe(), "clips": len(judge.clips), "wer": table["rows"], "worst": table["worst"],
            "normalization": table.get("normalization"), "seconds": time.perf_counter() - t0, "versions": versions()}


def wer_summary(r: dict) -> str:
    lines = [f"precdoctor wer: {r['model']} ({r['task']['task']}, {r['clips']} clips, {r['backend']})",
             f"  {'config':12s} {'WER':>8} {'CER':>8} {'S':>5} {'I':>5} {'D':>5} {'words':>6} {'utts':>5} {'time s':>7}"]
    for row in r["wer"]:
        lines.append(f"  {row['config']:12s} {row['wer']:8.4f} {row['cer']:8.4f} {row['substitutions']:5d} {row['insertions']:5d} "
                     f"{row['deletions']:5d} {row['words']:6d} {row['utterances']:5d} {row['seconds']:7.1f}")
    if r["worst"]:
        lines.append("worst utterances (by naive WER):")
        for u in r["worst"][:3]:
            lines.append(f"  [{u['id']}] WER {u['wer_naive']:.2f}")
            for k, v in u.items():
                if k not in ("id", "wer_naive"):
                    lines.append(f"    {k:10s} {v}")
    return "\n".join(lines)
