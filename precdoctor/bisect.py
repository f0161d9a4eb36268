"""The main job: from a broken FP16/BF16 model to the fewest FP32 pins, proven, with artifacts.

load -> compare the naive plan (localize) -> rank candidates -> search pins
(cached, journaled, budgeted) -> verify 1-minimal -> confirm the task metric
-> baselines -> compare the pinned plan -> write pins.json, flags, mixed ONNX,
run.json and the report.
"""
from __future__ import annotations

import hashlib
import sys
import time
import math
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from . import accept as acc
from . import search
from .compare import Tolerance, compare_plan, to_json
from .errors import BadInput
from .emit import write_artifacts
from .files import dump_json, ensure_dir
from .plan import Plan
from .workflow import load, versions


@dataclass
class BisectOptions:
    precision: str = "fp16"
    accept: tuple[str, ...] = ()
    budget: int = 64
    quiet: bool = False
    baselines: bool = True
    other_precision: bool = True  # also compare the other format's naive plan, for the report
    task: object | None = None  # tasks.evaluate.TaskJudge: confirms plans with a task metric


def _samples_digest(samples) -> str:
    h = hashlib.sha256()
    for s in samples:
        for k in sorted(s):
            h.update(k.encode())
            h.update(str(s[k].shape).encode())
            h.update(s[k].tobytes())
    return h.hexdigest()[:16]


def _say(opts: BisectOptions, msg: str) -> None:
    if not opts.quiet:
        print(msg, file=sys.stderr, flush=True)


def run(model_path: str, samples_spec: tuple, backend, outdir: str | Path, opts: BisectOptions) -> dict:
    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    outdir = ensure_dir(outdir)
    graph, samples = load(model_path, *samples_spec)
    criteria = acc.parse(opts.accept)
    output_criteria = [c for c in criteria if not c.is_task]
    task_criteria = [c for c in criteria if c.is_task]
    if task_criteria and opts.task is None:
        raise BadInput(f"--accept {task_criteria[0].text()} needs --task and --data")
    if not output_criteria:  # a task criterion alone: search on the cheap proxy, confirm with the task
        output_criteria = acc.parse(acc.DEFAULT)
    naive_plan = Plan(opts.precision)
    fmt = naive_plan.format
    _say(opts, f"precdoctor bisect: {model_path} ({len(graph.nodes)} nodes) in {fmt.name}, {len(samples)} sample(s), {backend.name}")
    _say(opts, f"acceptance: {acc.describe(output_criteria)}" + (f"; confirmed by {acc.describe(task_criteria)}" if task_criteria else "")
         + ("  (default)" if not opts.accept else ""))
    timing["load_s"] = time.perf_counter() - t0

    # 1. localize
    t = time.perf_counter()
    tol = Tolerance()
    naive = compare_plan(graph, naive_plan, samples, backend, tol)
    order, seed_len, evidence = search.rank(graph, naive, fmt)
    timing["localize_s"] = time.perf_counter() - t
    _say(opts, f"naive {fmt.name}: {naive.verdict}; Inf/NaN origin {naive.origin or '-'}; first divergence {naive.first_divergence or '-'}; "
               f"{seed_len} suspect(s) among {len(order)} candidate nodes")

    # 2. search
    t = time.perf_counter()
    fp = search.fingerprint(__version__, search.code_digest(), model_path, _samples_digest(samples), fmt.name, acc.describe(output_criteria), backend.describe())
    journal = search.Journal(outdir / "journal.jsonl", fp)
    pairs_naive = naive.pairs
    refs = [ref for ref, _ in pairs_naive]

    def judge(pins: frozenset) -> acc.Verdict:
        if not pins and pairs_naive:
            return acc.judge_outputs(output_criteria, pairs_naive, graph.outputs)
        runner = backend.runner(graph, Plan(fmt.name, pins))
        return acc.judge_outputs(output_criteria, [(r, runner(s)) for r, s in zip(refs, samples)], graph.outputs)

    ev = search.Evaluator(judge, journal, opts.budget, opts.quiet)
    result = search.search(order, seed_len, ev)
    task_report = None
    if opts.task is not None and result.status in ("fixed", "healthy"):
        result, task_report = _confirm_with_task(graph, backend, fmt, result, order, seed_len, ev, opts, task_criteria, outdir, fp)
    timing["search_s"] = time.perf_counter() - t
    _say(opts, f"search: {result.status}, {len(result.pins)} pin(s), {result.evaluations} evaluation(s); {result.message}")

    # 3. baselines, on their own evaluators (same cache, own counts)
    t = time.perf_counter()
    baselines = _baselines(graph, naive, order, judge, journal, opts, result) if opts.baselines else {}
    timing["baselines_s"] = time.perf_counter() - t

    # 4. the pinned plan, compared tensor by tensor, and the artifacts
    t = time.perf_counter()
    why = {p: _why(p, evidence, result) for p in result.pins}
    plan = Plan(fmt.name, frozenset(result.pins), why)
    pinned = compare_plan(graph, plan, samples, backend, tol) if result.pins else None
    other = None
    if opts.other_precision:
        other_fmt = "bf16" if fmt.name == "fp16" else "fp16"
        other = compare_plan(graph, Plan(other_fmt), samples, backend, tol)
    timing["compare_s"] = time.perf_counter() - t
    if opts.task is not None:
        t = time.perf_counter()
        task_report = task_report or opts.task.report_header(task_criteria)
        task_report.update(opts.task.table(backend, graph, fmt.name, frozenset(result.pins)))
        timing["task_s"] = time.perf_counter() - t
    artifacts = write_artifacts(outdir, str(model_path), graph, plan)
    verdict = {"healthy": "healthy", "fixed": "fixed", "unfixed": "unfixed"}[result.status]
    evaluations = [e.to_json() for e in ev.log]
    run_json = {
        "command": "bisect",
        "model": str(model_path),
        "precision": fmt.name,
        "verdict": verdict,
        "message": result.message,
        "pins": result.pins,
        "why": why,
        "one_minimal": result.one_minimal,
        "evaluations": result.evaluations,
        "evaluations_resumed": sum(e.resumed for e in ev.log),
        "evaluation_bound": _bound(result, order),
        "budget": opts.budget,
        "budget_exhausted": result.budget_exhausted,
        "casts": artifacts.get("casts"),
        "origin": naive.origin,
        "first_divergence": naive.first_divergence,
        "accept": [c.text() for c in output_criteria + task_criteria],
        "accept_default": not opts.accept,
        "candidates": len(order),
        "suspects": order[:seed_len],
        "evidence": evidence,
        "baselines": baselines,
        "task": task_report,
        "nodes": len(graph.nodes),
        "samples": len(samples),
        **backend.describe(),
        "comparison": {
            "naive": to_json(naive, tol),
            "pinned": to_json(pinned, tol) if pinned else None,
            ("naive_" + other_fmt if opts.other_precision else "other"): to_json(other, tol) if other else None,
        },
        "node_ops": {n.name: n.op_type for n in graph.nodes},
        "flops": _flops(graph, samples[0], result.pins),
        "evaluation_log": evaluations,
        "artifacts": artifacts,
        "timing": timing,
        "versions": versions(),
    }
    plan.save(outdir / "pins.json", {"model": str(model_path), "accept": run_json["accept"],
                                      "verdict": verdict, "one_minimal": result.one_minimal,
                                      "evaluations": result.evaluations, "casts": artifacts.get("casts"),
                                      "profile": backend.describe().get("profile"), "backend": backend.name})
    timing["total_s"] = time.perf_counter() - t0
    dump_json(outdir / "run.json", run_json)
    return run_json


def _flops(graph, sample, pins) -> dict:
    """FLOPs of the first sample: the whole model and the pinned nodes (what stays in FP32)."""
    from .graph import concrete_shapes, node_flops

    per = node_flops(graph, concrete_shapes(graph, sample))
    known = [p for p in pins if p in per]
    return {"total": sum(per.values()), "pinned": {p: per[p] for p in known}, "pinned_total": sum(per[p] for p in known),
            "complete": len(per) == len(graph.nodes)}


def _bound(result, order) -> int:
    k = max(len(result.pins), 1)
    return k * math.ceil(math.log2(max(len(order), 2))) + 3


def _why(pin: str, evidence: dict, result) -> str:
    parts = []
    if pin in evidence:
        parts.append(evidence[pin])
    failed = result.necessity.get(pin)
    if failed:
        parts.append("without it: " + ", ".join(failed) + " fails")
    return "; ".join(parts) or "found necessary by the search"


def _baselines(graph, naive, order, judge, journal, opts, result) -> dict:
    quiet = True
    rr_pins = search.range_rule(graph, naive)
    ev = search.Evaluator(judge, journal, opts.budget, quiet)
    try:
        rr_pass = ev(frozenset(rr_pins))
    except search.BudgetExhausted:
        rr_pass = None
    topo = search.candidates(graph)
    prefix = search.prefix_bisection(topo, search.Evaluator(judge, journal, opts.budget, quiet))
    return {
        "range_rule": {"pins": len(rr_pins), "passed": rr_pass, "evaluations": 1, "rule": "FP32 |max| of an input or output > 512, or an initializer > 65504",
                       "nodes": rr_pins},
        "prefix_bisection": {"pins": prefix.get("k"), **prefix},
        "precdoctor": {"pins": len(result.pins), "passed": result.status != "unfixed", "evaluations": result.evaluations},
    }


def _confirm_with_task(graph, backend, fmt, result, order, seed_len, ev, opts, task_criteria, outdir, fp):
    """Confirm the proxy's plan with the task metric. If the task rejects it, that plan becomes a floor
    and a second search, judged by proxy and task together (journaled apart), adds the pins still needed."""
    task = opts.task
    report = task.report_header(task_criteria)
    plan = Plan(fmt.name, frozenset(result.pins))
    verdict = task.judge(backend, graph, plan, task_criteria)
    report["confirmations"].append({"pins": result.pins, **verdict.to_json()})
    _say(opts, f"task check of {len(result.pins)} pin(s): {'PASS' if verdict.passed else 'fail'} "
               + ", ".join(f"{k}={v:.4g}" for k, v in verdict.measures.items()))
    if verdict.passed:
        return result, report

    def both(pins: frozenset) -> acc.Verdict:
        v = ev.judge(pins)
        if not v.passed:
            return v
        t = task.judge(backend, graph, Plan(fmt.name, pins), task_criteria)
        return acc.Verdict(t.passed, {**v.measures, **t.measures}, t.failed)

    journal = search.Journal(outdir / "journal.task.jsonl", search.fingerprint(fp, acc.describe(task_criteria), len(task.clips)))
    ev2 = search.Evaluator(both, journal, max(opts.budget - ev.count, 1), opts.quiet)
    floor = tuple(result.pins)
    rest = [n for n in order if n not in floor]
    suspects = sum(1 for n in order[:seed_len] if n not in floor)  # the localization seed still leads
    second = search.search(rest, suspects, ev2, base=floor)
    second.evaluations += result.evaluations
    report["confirmations"].append({"pins": second.pins, "passed": second.status == "fixed", "search_evaluations": ev2.count})
    if second.status == "fixed":
        second.message = (f"{len(second.pins)} node(s) pinned to FP32; the output-level proxy's {len(floor)} were not enough "
                          f"for {acc.describe(task_criteria)}" + ("; dropping any one breaks acceptance" if second.one_minimal else ""))
    else:
        second.message = "no plan met " + acc.describe(task_criteria) + ": " + second.message
    return second, report
