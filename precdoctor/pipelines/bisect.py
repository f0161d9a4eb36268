"""``precdoctor bisect``: from a broken FP16/BF16 model to the fewest FP32 pins, proven, with artifacts.

load -> compare the naive plan (localize) -> rank candidates -> search pins
(cached, journaled, budgeted) -> verify 1-minimal -> confirm the task metric
-> baselines -> compare the pinned plan -> write pins.json, flags, mixed ONNX,
the report and run.json (the same record ``--json`` gets and the API returns).
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from .. import acceptance as acc
from ..artifacts import write_artifacts
from ..backends import EngineParams
from ..comparison import compare_plan
from ..errors import BadInput
from ..files import check_output_dir, check_output_file, dump_json, ensure_dir
from ..graph import concrete_shapes, node_flops
from ..inputs import InputSpec
from ..limits import DEFAULT_BUDGET, evaluation_bound
from ..pinsfile import PinsFile
from ..plan import PRECISIONS, Plan
from ..runs import BisectComparisons, BisectRun, Flops, InputInfo
from ..search import (Baselines, Evaluator, Journal, OurResult, SearchResult, candidates, code_digest, fingerprint,
                      prefix_bisection, range_rule, rank, search)
from ..tasks.registry import TaskParams
from .common import Clock, gather, load_graph, versions

log = logging.getLogger("precdoctor")


@dataclass(frozen=True)
class BisectParams:
    model: str
    out: str
    precision: str = "fp16"
    inputs: InputSpec = field(default_factory=InputSpec)
    accept: tuple[str, ...] = ()
    budget: int = DEFAULT_BUDGET
    engine: EngineParams = field(default_factory=EngineParams)
    task: TaskParams | None = None
    baselines: bool = True
    report: bool = True
    other_precision: bool = True  # also compare the other format's naive plan, for the report
    json_out: str | None = None

    def criteria(self) -> tuple[list[acc.Criterion], list[acc.Criterion]]:
        """(output criteria the search judges by, task criteria that confirm); a task criterion alone
        searches on the default output-level proxy."""
        criteria = acc.parse(self.accept)
        output = [c for c in criteria if not c.is_task] or acc.parse(())
        task = [c for c in criteria if c.is_task]
        if task and self.task is None:
            raise BadInput(f"--accept {task[0].text()} needs --task and --data")
        return output, task

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise BadInput(f"unknown precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        if self.budget < 1:
            raise BadInput(f"--budget must be 1 or more evaluations, not {self.budget}")
        self.criteria()
        self.inputs.check()
        self.engine.check()
        if self.task is not None:
            self.task.check()
        check_output_dir(self.out)
        check_output_file(self.json_out)


def _samples_digest(samples) -> str:
    h = hashlib.sha256()
    for s in samples:
        for k in sorted(s):
            h.update(k.encode())
            h.update(str(s[k].shape).encode())
            h.update(s[k].tobytes())
    return h.hexdigest()[:16]


@dataclass
class _Job:
    """What the stages of one bisect share."""

    p: BisectParams
    graph: object
    samples: list
    backend: object
    output_criteria: list
    task_criteria: list
    outdir: Path
    judge: object = None  # tasks.judge.TaskJudge

    @property
    def fmt(self):
        return Plan(self.p.precision).format


def _setup(p: BisectParams) -> tuple[_Job, InputInfo]:
    output_criteria, task_criteria = p.criteria()
    outdir = ensure_dir(p.out)
    graph = load_graph(p.model)
    acc.check_outputs(output_criteria, graph.outputs)
    judge = None
    if p.task is not None:
        from ..tasks.judge import make_judge

        judge = make_judge(graph, p.model, p.task)
        judge.store = _transcript_store(judge, p, outdir)
        samples = judge.samples()
        info = InputInfo(len(samples), "task")
    else:
        samples, info = gather(graph, p.inputs)
    return _Job(p, graph, samples, p.engine.make(), output_criteria, task_criteria, outdir, judge), info


def _transcript_store(judge, p: BisectParams, outdir: Path):
    from ..tasks.cache import TranscriptStore, audio_digest

    fp = fingerprint(code_digest(), p.model, *judge.files(), judge.task.describe(), audio_digest(judge.audio),
                     [c.text for c in judge.clips], p.engine, p.task.numbers, p.task.label_free)
    return TranscriptStore(outdir / "transcripts.jsonl", fp)


def run(p: BisectParams) -> BisectRun:
    p.check()
    clock = Clock()
    job, info = _setup(p)
    log.info(f"precdoctor bisect: {p.model} ({len(job.graph.nodes)} nodes) in {job.fmt.name}, {len(job.samples)} sample(s), "
             f"{job.backend.name}")
    log.info(f"acceptance: {acc.describe(job.output_criteria)}" + (f"; confirmed by {acc.describe(job.task_criteria)}" if job.task_criteria else "")
             + ("  (default)" if not p.accept else ""))
    clock.lap("load")
    naive = compare_plan(job.graph, Plan(job.fmt.name), job.samples, job.backend)
    loc = rank(job.graph, naive, job.fmt)
    clock.lap("localize")
    log.info(f"naive {job.fmt.name}: {naive.verdict}; Inf/NaN origin {naive.origin or '-'}; first divergence "
             f"{naive.first_divergence or '-'}; {loc.suspects} suspect(s) among {len(loc.order)} candidate nodes")
    result, ev, log_, task_report = _search(job, naive, loc)
    clock.lap("search")
    log.info(f"search: {result.status}, {len(result.pins)} pin(s), {result.evaluations} evaluation(s); {result.message}")
    baselines = _baselines(job, naive, ev, result) if p.baselines else None
    clock.lap("baselines")
    why = {pin: _why(pin, loc.evidence, result) for pin in result.pins}
    plan = Plan(job.fmt.name, frozenset(result.pins), why)
    comparisons = _final_comparisons(job, naive, plan)
    clock.lap("compare")
    if job.judge is not None:
        task_report = task_report or job.judge.report(job.task_criteria)
        task_report.rows, task_report.worst, task_report.normalization = job.judge.table(job.backend, job.fmt.name, plan.pins)
        clock.lap("task")
    artifacts = write_artifacts(job.outdir, p.model, job.graph, plan)
    record = BisectRun(
        model=str(p.model), precision=job.fmt.name, verdict=result.status, message=result.message, pins=result.pins, why=why,
        one_minimal=result.one_minimal, evaluations=result.evaluations, evaluations_resumed=sum(e.resumed for e in log_),
        evaluation_bound=evaluation_bound(len(result.pins), len(loc.order)), budget=p.budget, budget_exhausted=result.budget_exhausted,
        accept=[c.text() for c in job.output_criteria + job.task_criteria], accept_default=not p.accept, candidates=len(loc.order),
        suspects=loc.order[: loc.suspects], evidence=loc.evidence, baselines=baselines, task=task_report, nodes=len(job.graph.nodes),
        node_ops={n.name: n.op_type for n in job.graph.nodes}, inputs=info, engine=job.backend.info(), comparison=comparisons,
        flops=_flops(job, result.pins), evaluation_log=log_, artifacts=artifacts, timing={}, versions=versions())
    _write(job, record, plan, clock)
    return record


def _judge_fn(job: _Job, naive):
    refs = [ref for ref, _ in naive.pairs]

    def judge(pins: frozenset) -> acc.Verdict:
        if not pins and naive.pairs:
            return acc.judge_outputs(job.output_criteria, naive.pairs, job.graph.outputs)
        runner = job.backend.runner(job.graph, Plan(job.fmt.name, pins))
        return acc.judge_outputs(job.output_criteria, [(r, runner(s)) for r, s in zip(refs, job.samples)], job.graph.outputs)

    return judge


def _fingerprint(job: _Job) -> str:
    return fingerprint(__version__, code_digest(), job.p.model, _samples_digest(job.samples), job.fmt.name,
                       acc.describe(job.output_criteria), job.backend.info().to_json())


def _search(job: _Job, naive, loc) -> tuple[SearchResult, Evaluator, list, object]:
    """The search, confirmed by the task when there is one; returns the result, the proxy's evaluator,
    every evaluation made (proxy and task-confirmed searches) and the task report."""
    fp = _fingerprint(job)
    journal = Journal(job.outdir / "journal.jsonl", fp)
    ev = Evaluator(_judge_fn(job, naive), journal, job.p.budget)
    result = search(loc.order, loc.suspects, ev)
    task_report, more = None, []
    if job.judge is not None and result.status in ("fixed", "healthy"):
        result, task_report, more = _confirm_with_task(job, result, loc, ev, fp)
    return result, ev, list(ev.log) + more, task_report


def _confirm_with_task(job: _Job, result: SearchResult, loc, ev: Evaluator, fp: str):
    """Confirm the proxy's plan with the task metric. If the task rejects it, that plan becomes a floor
    and a second search, judged by proxy and task together (journaled apart), adds the pins still needed."""
    judge, criteria = job.judge, job.task_criteria
    report = judge.report(criteria)
    verdict = judge.judge(job.backend, Plan(job.fmt.name, frozenset(result.pins)), criteria)
    from ..tasks.judge import Confirmation

    report.confirmations.append(Confirmation(result.pins, verdict.passed, verdict.measures, verdict.failed))
    log.info(f"task check of {len(result.pins)} pin(s): {'PASS' if verdict.passed else 'fail'}  "
             + ", ".join(f"{acc.measure_label(k)}: {v:.4g}" for k, v in verdict.measures.items()))
    if verdict.passed:
        return result, report, []

    def both(pins: frozenset) -> acc.Verdict:
        v = ev.judge(pins)
        if not v.passed:
            return v
        t = judge.judge(job.backend, Plan(job.fmt.name, pins), criteria)
        return acc.Verdict(t.passed, {**v.measures, **t.measures}, t.failed)

    journal = Journal(job.outdir / "journal.task.jsonl", fingerprint(fp, acc.describe(criteria), len(judge.clips)))
    ev2 = Evaluator(both, journal, max(job.p.budget - ev.count, 1))
    floor = tuple(result.pins)
    rest = [n for n in loc.order if n not in floor]
    suspects = sum(1 for n in loc.order[: loc.suspects] if n not in floor)  # the localization seed still leads
    second = search(rest, suspects, ev2, base=floor)
    second.evaluations += result.evaluations
    report.confirmations.append(Confirmation(second.pins, second.status == "fixed", search_evaluations=ev2.count))
    if second.status == "fixed":
        second.message = (f"{len(second.pins)} node(s) pinned to FP32; the output-level proxy's {len(floor)} were not enough "
                          f"for {acc.describe(criteria)}" + ("; dropping any one breaks acceptance" if second.one_minimal else ""))
    else:
        second.message = "no plan met " + acc.describe(criteria) + ": " + second.message
    return second, report, list(ev2.log)


def _baselines(job: _Job, naive, ev: Evaluator, result: SearchResult) -> Baselines:
    """Each baseline on its own evaluator (same journal and cache, its own count), quiet."""
    fresh = lambda: Evaluator(ev.judge, ev.journal, job.p.budget, verbose=False)  # noqa: E731
    rr = range_rule(job.graph, naive, fresh())
    prefix = prefix_bisection(candidates(job.graph), fresh())
    return Baselines(rr, prefix, OurResult(len(result.pins), result.status != "unfixed", result.evaluations))


def _final_comparisons(job: _Job, naive, plan: Plan) -> BisectComparisons:
    pinned = compare_plan(job.graph, plan, job.samples, job.backend) if plan.pins else None
    other = None
    if job.p.other_precision:
        other = compare_plan(job.graph, Plan("bf16" if plan.precision == "fp16" else "fp16"), job.samples, job.backend)
    return BisectComparisons(naive, pinned, other)


def _flops(job: _Job, pins) -> Flops:
    per = node_flops(job.graph, concrete_shapes(job.graph, job.samples[0]))
    known = [p for p in pins if p in per]
    return Flops(sum(per.values()), {p: per[p] for p in known}, sum(per[p] for p in known), len(per) == len(job.graph.nodes))


def _why(pin: str, evidence: dict, result: SearchResult) -> str:
    parts = [evidence[pin]] if pin in evidence else []
    failed = result.necessity.get(pin)
    if failed:
        parts.append("without it: " + ", ".join(failed) + " fails")
    return "; ".join(parts) or "found necessary by the search"


def _write(job: _Job, record: BisectRun, plan: Plan, clock: Clock) -> None:
    """pins.json, the report, run.json (and --json): the report is rendered from the record run.json holds."""
    outdir = job.outdir
    pins = PinsFile(plan.precision, sorted(plan.pins), {k: plan.why[k] for k in sorted(plan.why)},
                    model=os.path.relpath(Path(job.p.model).resolve(), outdir.resolve()), accept=record.accept,
                    verdict=record.verdict, one_minimal=record.one_minimal, evaluations=record.evaluations,
                    casts=record.artifacts.casts, profile=record.engine.profile, backend=record.engine.backend)
    dump_json(outdir / "pins.json", pins)
    if job.p.report:
        record.artifacts.report = "index.html"
    record.timing = clock.timing()
    if job.p.report:
        from ..report import render_to

        render_to(record, outdir / "index.html", outdir)
    dump_json(outdir / "run.json", record)
    if job.p.json_out:
        dump_json(job.p.json_out, record)
