"""``precdoctor bisect``: from a broken FP16/BF16 model to the fewest FP32 pins, proven, with artifacts.

load -> compare the naive plan (localize) -> rank candidates -> search pins
(cached, journaled, budgeted) -> verify 1-minimal -> confirm the task metric
-> baselines -> compare the pinned plan -> TF32 and the other targets
(crosscheck.py) -> write pins.json, flags, mixed ONNX, the references and
verify scripts, the report and run.json (the same record ``--json`` gets and
the API returns).
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import __version__
from .. import acceptance as acc
from ..artifacts import FILES, Artifacts, write_artifacts
from ..mixed import constants_note
from ..backends import EngineParams
from ..comparison import compare_plan, hidden_nonfinite
from ..crosscheck import check_tf32, other_targets
from ..controlflow import scan_ranges
from ..destinations import Staging, check_output_dir, check_output_file, check_owned_dirs, check_set
from ..errors import BadInput
from ..files import dump_json, ensure_dir
from ..graph import concrete_shapes, node_flops
from ..inputs import InputSpec
from ..limits import DEFAULT_BUDGET, evaluation_bound
from ..pinsfile import PinsFile
from ..plan import PRECISIONS, Plan
from ..rewrite.artifacts import FILES as REWRITE_FILES
from ..rewrite.artifacts import write as write_rewrite
from ..runs import BisectComparisons, BisectRun, Flops, InputInfo
from ..search import (Baselines, Evaluator, Journal, OurResult, SearchResult, candidates, code_digest, fingerprint,
                      prefix_bisection, range_rule, rank, search)
from ..targets import describe
from ..tasks.judge import TOKEN_AGREEMENT, configs
from ..tasks.registry import TaskParams
from ..verification import FILES as VERIFY_FILES
from ..verification import OWNED_DIRS, write_verification
from ..verdicts import ALLOW_INTERNAL, reference_note, refuse_nan_reference
from .common import Clock, gather, load_graph, refuse_empty_outputs, versions
from .confirm import Check, confirm, finite_inside, merge
from .fix import FIX_MODES
from .fix import verdict as fix_verdict

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
    allow_internal_nonfinite: bool = False  # accept plans whose outputs pass while new Inf/NaN is born inside
    fix: str = "pins"  # pins | rewrite | auto (pipelines/fix.py)

    def criteria(self) -> tuple[list[acc.Criterion], list[acc.Criterion], bool]:
        """(output criteria the search judges by, task criteria that confirm, whether ``finite-inside`` confirms);
        a task criterion alone searches on the default output-level proxy."""
        criteria = acc.parse(self.accept)
        output = [c for c in criteria if c.is_output] or acc.parse(())
        task = [c for c in criteria if c.is_task]
        if task and self.task is None:
            raise BadInput(f"--accept {task[0].text()} needs --task and --data")
        if self.allow_internal_nonfinite and any(c.is_inside for c in criteria):
            raise BadInput(f"--accept {acc.INSIDE} and --allow-internal-nonfinite contradict each other")
        return output, task, not self.allow_internal_nonfinite

    @property
    def subject(self) -> str:
        """The model under test: ``model``, or the decoder a Whisper task puts under test."""
        return self.task.under_test(self.model) if self.task is not None else str(self.model)

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise BadInput(f"unknown precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        if self.fix not in FIX_MODES:
            raise BadInput(f"unknown --fix {self.fix!r}; expected one of {', '.join(FIX_MODES)}")
        if not isinstance(self.budget, int) or self.budget < 1:
            raise BadInput(f"--budget must be 1 or more evaluations, not {self.budget}")
        self.criteria()
        self.inputs.check()
        self.engine.check()
        if self.task is not None:
            self.task.check()
        check_output_dir(self.out)
        check_set(self.out, RUN_FILES, keep=(self.model, self.subject, *self.inputs.files))
        check_owned_dirs(self.out, OWNED_DIRS)
        check_output_file(self.json_out, keep=(self.model, self.subject, *self.inputs.files))


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
    inside: bool  # finite-inside confirms the plan
    outdir: Path
    judge: object = None  # tasks.judge.TaskJudge
    comparisons: dict = field(default_factory=dict)  # plan key -> Comparison (each plan compared tensor by tensor once)
    variant: str = ""  # a rewritten graph's (fix.py): its own journals and fingerprint
    absorbed: frozenset = frozenset()  # a rewritten graph's tensors whose Inf a floor takes by design (log 0 -> max): not judged

    def compare(self, plan: Plan):
        if plan.key() not in self.comparisons:
            c = compare_plan(self.graph, plan, self.samples, self.backend)
            c.tensors = [t for t in c.tensors if t.tensor not in self.absorbed]
            self.comparisons[plan.key()] = c
        return self.comparisons[plan.key()]

    def accept(self) -> list[str]:
        return [c.text() for c in self.output_criteria + self.task_criteria] + ([acc.INSIDE] if self.inside else [])

    @property
    def fmt(self):
        return Plan(self.p.precision).format


def _setup(p: BisectParams) -> tuple[_Job, InputInfo, list[str]]:
    output_criteria, task_criteria, inside = p.criteria()
    graph = load_graph(p.subject)
    acc.check_outputs(output_criteria, graph.outputs, [o for o in graph.outputs if graph.is_float(o)])
    judge, warnings = None, []
    if p.task is not None:
        from ..tasks.judge import make_judge

        judge = make_judge(graph, p.model, p.task)
        if not judge.decodes and any(c.metric == TOKEN_AGREEMENT for c in task_criteria):
            raise BadInput(f"--accept {TOKEN_AGREEMENT}>=X needs a task that decodes tokens in a loop (--task whisper)")
        samples = judge.samples()
        info = InputInfo(len(samples), "task")
    else:
        samples, info, warnings = gather(graph, p.inputs)
    # the search computes FP32 islands in true FP32; crosscheck.check_tf32 then decides what the commands say about TF32
    backend = (replace(p.engine, tf32=False) if p.engine.backend == "emulate" else p.engine).make()
    outdir = ensure_dir(p.out)  # only now: a run refused for its input leaves no folder behind
    if judge is not None:
        judge.store = _transcript_store(judge, p, outdir)
    job = _Job(p, graph, samples, backend, output_criteria, task_criteria, inside, outdir, judge)
    return job, info, warnings


def _transcript_store(judge, p: BisectParams, outdir: Path):
    from ..tasks.cache import TranscriptStore, audio_digest

    fp = fingerprint(code_digest(), p.model, *judge.files(), judge.task.describe(), audio_digest(judge.audio),
                     [c.text for c in judge.clips], p.engine, p.task.numbers, p.task.label_free)
    return TranscriptStore(outdir / "transcripts.jsonl", fp)


def run(p: BisectParams) -> BisectRun:
    p.check()
    clock = Clock()
    job, info, warnings = _setup(p)
    log.info(f"precdoctor bisect: {p.subject} ({len(job.graph.nodes)} nodes) in {job.fmt.name}, {len(job.samples)} sample(s), "
             f"{job.backend.name}, target {p.engine.target_name} ({describe(p.engine.options())})")
    log.info(f"acceptance: {', '.join(job.accept())}" + ("  (default)" if not p.accept else ""))
    clock.lap("load")
    naive = job.compare(Plan(job.fmt.name))
    refuse_nan_reference(naive)
    refuse_empty_outputs(naive)
    ranges, _ = scan_ranges(job.graph, job.samples, job.fmt)  # FP32 range findings: evidence where no node jumps
    loc = rank(job.graph, naive, job.fmt, ranges, p.engine.options().constants)
    clock.lap("localize")
    log.info(f"naive {job.fmt.name}: {naive.verdict}; Inf/NaN origin {naive.origin or '-'}; first divergence "
             f"{naive.first_divergence or '-'}; {loc.suspects} suspect(s) among {len(loc.order)} candidate nodes")
    result, ev, log_, task_report, bound = _search(job, naive, loc)
    clock.lap("search")
    log.info(f"search: {result.status}, {len(result.pins)} pin(s), {result.evaluations} evaluation(s); {result.message}")
    baselines = _baselines(job, naive, ev, result) if p.baselines else None
    clock.lap("baselines")
    fixed = None
    if p.fix != "pins" and result.status != "healthy":
        from .fix import Hooks, fix_by_rewrite

        fixed = fix_by_rewrite(job, naive, loc, result, ranges, Hooks(_judge_fn, _checks, _search, _fingerprint(job)))
        clock.lap("rewrite")
    why = {pin: _why(pin, loc.evidence, result) for pin in result.pins}
    plan = Plan(job.fmt.name, frozenset(result.pins), why)
    comparisons = _final_comparisons(job, naive, plan)
    clock.lap("compare")
    tf32 = check_tf32(job, plan, result.status != "unfixed")
    naive_ok = acc.judge_outputs(job.output_criteria, naive.pairs, job.graph.outputs).passed
    targets = other_targets(job, plan, result.status != "unfixed", tf32, naive_ok)
    clock.lap("targets")
    if job.judge is not None:
        task_report = task_report or job.judge.report(job.task_criteria)
        task_report.rows, task_report.worst, task_report.normalization = job.judge.table(job.backend, job.fmt.name, plan.pins)
        task_report.decodes = job.judge.decode_reports(job.backend, configs(job.fmt.name, plan.pins),
                                                       {key: c.pairs for key, c in job.comparisons.items()})
        task_report.rows += [fixed.task_row] if fixed is not None and fixed.task_row is not None else []
        clock.lap("task")
    hidden = hidden_nonfinite(comparisons.pinned or naive)
    verdict, message = (result.status, result.message) if fixed is None else fix_verdict(p.fix, fixed.result, result)
    record = BisectRun(
        model=p.subject, precision=job.fmt.name, verdict=verdict, message=message, pins=result.pins, why=why,
        one_minimal=result.one_minimal, evaluations=result.evaluations, evaluations_resumed=sum(e.resumed for e in log_),
        evaluation_bound=bound, bound_note=_bound_note(result, bound, len(loc.order)), budget=p.budget, budget_exhausted=result.budget_exhausted,
        accept=job.accept(), accept_default=not p.accept, candidates=len(loc.order),
        suspects=loc.order[: loc.suspects], evidence=loc.evidence, baselines=baselines, task=task_report, nodes=len(job.graph.nodes),
        node_ops={n.name: n.op_type for n in job.graph.all_nodes()}, inputs=info, engine=job.backend.info(), comparison=comparisons,
        flops=_flops(job, result.pins), evaluation_log=log_, artifacts=Artifacts(), timing={}, versions=versions(),
        allow_internal_nonfinite=p.allow_internal_nonfinite, internal_nonfinite=hidden if result.status != "unfixed" else None,
        target=p.engine.target_name, tf32=tf32, targets=targets,
        warnings=warnings + ([reference_note(naive)] if reference_note(naive) else []) + ([hidden + _accepted(p)] if hidden and result.status != "unfixed" else []),
        fix=p.fix, rewrite=fixed.result if fixed is not None else None)
    _write(job, record, plan, clock, fixed)
    return record


def _accepted(p: BisectParams) -> str:
    return f" (accepted: {ALLOW_INTERNAL})" if p.allow_internal_nonfinite else ""


def _judge_fn(job: _Job, naive):
    refs = [ref for ref, _ in naive.pairs]

    def judge(pins: frozenset) -> acc.Verdict:
        if not pins and naive.pairs:  # the naive plan is compared tensor by tensor already: finite-inside is free
            v = acc.judge_outputs(job.output_criteria, naive.pairs, job.graph.outputs)
            return merge(v, finite_inside(naive)) if job.inside else v
        runner = job.backend.runner(job.graph, Plan(job.fmt.name, pins), job.samples)
        return acc.judge_outputs(job.output_criteria, [(r, runner(s)) for r, s in zip(refs, job.samples)], job.graph.outputs)

    return judge


def _fingerprint(job: _Job) -> str:
    return fingerprint(__version__, code_digest(), job.p.subject, _samples_digest(job.samples), job.fmt.name,
                       acc.describe(job.output_criteria) + (f", {acc.INSIDE}" if job.inside else ""), job.backend.info().to_json(),
                       job.variant)


def _checks(job: _Job, report) -> list[Check]:
    """What confirms a searched plan: every tensor finite (unless allowed otherwise), then the task metric."""
    checks = []
    if job.inside:
        checks.append(Check(acc.INSIDE, lambda pins: finite_inside(job.compare(Plan(job.fmt.name, pins)))))
    if job.judge is not None:
        from ..tasks.judge import Confirmation

        def task(pins: frozenset) -> acc.Verdict:
            v = job.judge.judge(job.backend, Plan(job.fmt.name, pins), job.task_criteria)
            if not report.confirmations:  # the first plan the task judged, as the report shows it
                report.confirmations.append(Confirmation(sorted(pins), v.passed, v.measures, v.failed))
            return v

        checks.append(Check(acc.describe(job.task_criteria) + f" ({len(job.judge.clips)} clips)", task))
    return checks


def _search(job: _Job, naive, loc) -> tuple[SearchResult, Evaluator, list, object, int]:
    """The search, confirmed by every check that applies (confirm.py); returns the result, the proxy's evaluator,
    every evaluation made (the proxy's and a repair search's), the task report and the evaluation bound."""
    fp = _fingerprint(job)
    name = "journal" + (f".{job.variant}" if job.variant else "")
    journal = Journal(job.outdir / f"{name}.jsonl", fp)
    ev = Evaluator(_judge_fn(job, naive), journal, job.p.budget)
    result = search(loc.order, loc.suspects, ev, candidates=len(loc.order))
    report = job.judge.report(job.task_criteria) if job.judge is not None else None
    first_pins = list(result.pins)
    c = confirm(result, _checks(job, report), ev, job.outdir / f"{name}.confirm.jsonl", fp, loc.order, loc.suspects, job.p.budget)
    if report is not None and c.first and c.result.pins != first_pins:
        from ..tasks.judge import Confirmation

        report.confirmations.append(Confirmation(c.result.pins, c.result.status == "fixed", search_evaluations=c.result.evaluations))
    searched = first_pins if c.bound else c.result.pins  # a repair search adds its own bound to the first one's
    bound = evaluation_bound(len(searched), len(loc.order)) + c.bound
    return c.result, ev, list(ev.log) + c.log, report, bound


def _baselines(job: _Job, naive, ev: Evaluator, result: SearchResult) -> Baselines:
    """Each baseline on its own evaluator (same journal and cache, its own count), quiet."""
    fresh = lambda: Evaluator(ev.judge, ev.journal, job.p.budget, verbose=False)  # noqa: E731
    rr = range_rule(job.graph, naive, fresh())
    prefix = prefix_bisection(candidates(job.graph), fresh())
    return Baselines(rr, prefix, OurResult(len(result.pins), result.status != "unfixed", result.evaluations))


def _final_comparisons(job: _Job, naive, plan: Plan) -> BisectComparisons:
    pinned = job.compare(Plan(plan.precision, plan.pins)) if plan.pins else None
    other = None
    if job.p.other_precision:
        other = job.compare(Plan("bf16" if plan.precision == "fp16" else "fp16"))
    return BisectComparisons(naive, pinned, other)


def _flops(job: _Job, pins) -> Flops:
    per = node_flops(job.graph, concrete_shapes(job.graph, job.samples[0]))
    known = [p for p in pins if p in per]
    return Flops(sum(per.values()), {p: per[p] for p in known}, sum(per[p] for p in known), len(per) == len(job.graph.nodes))


def _bound_note(result: SearchResult, bound: int, candidates: int) -> str | None:
    """Why the search took more evaluations than the printed bound, or None when it honoured it."""
    if result.evaluations <= bound:
        return None
    if result.budget_exhausted:
        why = "the budget ran out before the search could finish"
    elif result.prefix is None:
        why = "the search did not finish in the bound's terms (task confirmation or no passing plan)"
    else:
        why = (f"the first passing plan needed the first {result.prefix} of {candidates} ranked candidates (the evidence named "
               f"{result.seed}); {result.strategy} within them and the 1-minimality check took the rest")
    return f"{result.evaluations} evaluations exceed the bound {bound}: {why}"


def _why(pin: str, evidence: dict, result: SearchResult) -> str:
    parts = [evidence[pin]] if pin in evidence else []
    failed = result.necessity.get(pin)
    if failed:
        parts.append("without it: " + ", ".join(failed) + " fails")
    return "; ".join(parts) or "found necessary by the search"


RUN_FILES = ("pins.json", "run.json", "index.html") + tuple(f for files in FILES.values() for f in files) + VERIFY_FILES + REWRITE_FILES


def _write_verification(job: _Job, record: BisectRun, plan: Plan, stage: Path) -> None:
    """reference/ and the verify scripts, for the plan the run found (the naive one when none passed)."""
    refs = [ref for ref, _ in job.compare(Plan(job.fmt.name)).pairs]
    beyond = [c.text() for c in job.task_criteria] + ([acc.INSIDE] if job.inside else [])
    record.verification = write_verification(stage, job.p.subject, job.graph, plan, job.samples, refs, job.output_criteria, beyond,
                                             record.target, job.p.engine.options(), record.tf32.allowed, relative_to=job.outdir)
    record.artifacts.verify_trt11, record.artifacts.verify_trt10 = record.verification.scripts


def _write(job: _Job, record: BisectRun, plan: Plan, clock: Clock, fixed=None) -> None:
    """The artifacts, pins.json, the report and run.json, written as a set: into a staging folder, moved into
    place together at the end (run.json last), so a failure leaves the previous set whole. The report is
    rendered from the record run.json holds; --json gets the same record, written just before the move."""
    outdir = job.outdir
    with Staging(outdir, owned=RUN_FILES, marker="run.json", owned_dirs=OWNED_DIRS) as stage:
        record.artifacts = write_artifacts(stage.dir, job.p.subject, job.graph, plan, relative_to=outdir, tf32=record.tf32.allowed)
        _write_verification(job, record, plan, stage.dir)
        record.warnings += [f"{fmt} cannot name {len(names)} pinned node(s) exactly; see {getattr(record.artifacts, fmt)}"
                            for fmt, names in record.artifacts.unexpressible.items()]
        pins = PinsFile(plan.precision, sorted(plan.pins), {k: plan.why[k] for k in sorted(plan.why)}, dict(record.artifacts.forced),
                        model=os.path.relpath(Path(job.p.subject).resolve(), outdir.resolve()), accept=record.accept,
                        verdict=record.verdict, one_minimal=record.one_minimal, evaluations=record.evaluations,
                        casts=record.artifacts.casts, profile=record.engine.profile, backend=record.engine.backend,
                        warnings=list(record.warnings), target=record.target, assumptions=describe(job.p.engine.options()),
                        constants=constants_note(plan.format), tf32=record.tf32.allowed,
                        targets={t.target: t.plan_word() for t in record.targets})
        dump_json(stage.dir / "pins.json", pins)
        if fixed is not None and fixed.graph is not None:
            record.rewrite.files = write_rewrite(stage.dir, fixed.graph, fixed.plan, len(record.rewrite.rewrites))
        if job.p.report:
            record.artifacts.report = "index.html"
        record.timing = clock.timing()
        if job.p.report:
            from ..report import render_to

            render_to(record, stage.dir / "index.html", stage.dir)
        dump_json(stage.dir / "run.json", record)
        if job.p.json_out:  # before the set moves in: a --json that cannot be written leaves the previous set whole
            dump_json(job.p.json_out, record)
        stage.commit()
