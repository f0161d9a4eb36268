"""``precdoctor bisect``: from a broken FP16/BF16 model to the fewest FP32 pins, proven, with artifacts.

load (job.py: what the stages share) -> compare the naive plan (localize)
-> rank candidates -> search pins (cached, journaled, budgeted) -> verify
1-minimal -> confirm the task metric -> baselines -> compare the pinned plan
-> TF32 and the other targets (crosscheck.py) -> write pins.json, flags,
mixed ONNX, the references and verify scripts, the report and run.json as one
set (artifact_set.py; run.json is the record ``--json`` gets and the API returns).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .. import acceptance as acc
from ..artifacts import Artifacts
from ..backends import EngineParams
from ..comparison import hidden_nonfinite
from ..crosscheck import check_tf32, other_targets
from ..destinations import check_output_dir, check_output_file, check_owned_dirs, check_set
from ..distributed import ScaleParams
from ..errors import BadInput
from ..inputs import InputSpec
from ..limits import DEFAULT_BUDGET, evaluation_bound
from ..plan import FIX_MODES, PRECISIONS, Plan, other_precision
from ..runs import BisectComparisons, BisectRun, Flops
from ..search import Baselines, Evaluator, Journal, OurResult, SearchResult, candidates, prefix_bisection, range_rule, search
from ..targets import describe
from ..tasks.judge import configs
from ..tasks.registry import TaskParams
from ..verification import OWNED_DIRS
from ..verdicts import ALLOW_INTERNAL, reference_note, refuse_nan_reference
from .artifact_set import RUN_FILES, write_set
from .common import Clock, refuse_empty_outputs, versions
from .confirm import Check, confirm, finite_inside, merge
from .fix import verdict as fix_verdict
from .job import Job, setup

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
    scale: ScaleParams = field(default_factory=ScaleParams)  # workers evaluating plans (distributed.py): not in any record

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
        self.scale.check()
        if self.scale.distributed and self.engine.backend != "emulate":
            raise BadInput(f"--workers/--ray-address spread the emulation (--backend emulate), not --backend {self.engine.backend}")
        if self.task is not None:
            self.task.check()
        check_output_dir(self.out)
        reads = (self.model, self.subject, *(self.task.reads(self.model) if self.task is not None else ()), *self.inputs.files)
        check_set(self.out, RUN_FILES, keep=reads)
        check_owned_dirs(self.out, OWNED_DIRS)
        check_output_file(self.json_out, keep=reads)


def run(p: BisectParams) -> BisectRun:
    p.check()
    clock = Clock()
    job, info, warnings = setup(p)
    try:
        return _run(p, job, info, warnings, clock)
    finally:
        job.close()


def _run(p: BisectParams, job: Job, info, warnings: list[str], clock: Clock) -> BisectRun:
    log.info(f"precdoctor bisect: {p.subject} ({len(job.graph.nodes)} nodes) in {job.fmt.name}, {len(job.samples)} sample(s), "
             f"{job.backend.name}, target {p.engine.target_name} ({describe(p.engine.options())})")
    log.info(f"acceptance: {', '.join(job.accept())}" + ("  (default)" if not p.accept else ""))
    clock.lap("load")
    naive = job.compare(Plan(job.fmt.name))
    refuse_nan_reference(naive)
    refuse_empty_outputs(naive)
    ranges, loc = job.localize(naive)  # FP32 range findings too: evidence where no node jumps
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

        fixed = fix_by_rewrite(job, naive, loc, result, ranges, Hooks(_judge_fn, _checks, _search))
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
        other = p.other_precision
        task_report.rows, task_report.worst, task_report.normalization = job.judge.table(job.backend, job.fmt.name, plan.pins, other)
        task_report.decodes = job.judge.decode_reports(job.backend, configs(job.fmt.name, plan.pins, other),
                                                       {key: c.pairs for key, c in job.comparisons.items()})
        task_report.rows += [fixed.task_row] if fixed is not None and fixed.task_row is not None else []
        clock.lap("task")
    hidden = hidden_nonfinite(comparisons.pinned or naive)
    verdict, message = (result.status, result.message) if fixed is None else fix_verdict(p.fix, fixed.result, result)
    notes = [reference_note(naive)] + ([hidden + _accepted(p)] if hidden and result.status != "unfixed" else [])
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
        warnings=warnings + [w for w in notes if w],
        fix=p.fix, rewrite=fixed.result if fixed is not None else None)
    write_set(job, record, plan, clock, fixed)
    return record


def _accepted(p: BisectParams) -> str:
    return f" (accepted: {ALLOW_INTERNAL})" if p.allow_internal_nonfinite else ""


def _judge_fn(job: Job, naive):
    return _Judge(job, naive)


class _Judge:
    """The output criteria on a plan; plans may be started ahead on idle workers (search.Evaluator.prefetch)."""

    def __init__(self, job: Job, naive):
        self.job, self.naive, self.refs = job, naive, [ref for ref, _ in naive.pairs]

    def __call__(self, pins: frozenset) -> acc.Verdict:
        job, naive = self.job, self.naive
        if not pins and naive.pairs:  # the naive plan is compared tensor by tensor already: finite-inside is free
            v = acc.judge_outputs(job.output_criteria, naive.pairs, job.graph.outputs)
            return merge(v, finite_inside(naive)) if job.inside else v
        return job.judge_plan(pins, self.refs)

    def capacity(self) -> int:
        return self.job.capacity()

    def submit(self, pins: frozenset):
        return self.job.submit_plan(pins) if pins or not self.naive.pairs else None  # the naive plan is judged already

    def finish(self, handle) -> acc.Verdict:
        return self.job.finish_plan(handle, self.refs)


def _checks(job: Job, report) -> list[Check]:
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


def _search(job: Job, naive, loc) -> tuple[SearchResult, Evaluator, list, object, int]:
    """The search, confirmed by every check that applies (confirm.py); returns the result, the proxy's evaluator,
    every evaluation made (the proxy's and a repair search's), the task report and the evaluation bound."""
    fp = job.fingerprint()
    journal = Journal(job.journal_path(), fp)
    ev = Evaluator(_judge_fn(job, naive), journal, job.p.budget)
    result = search(loc.order, loc.suspects, ev, candidates=len(loc.order))
    report = job.judge.report(job.task_criteria) if job.judge is not None else None
    first_pins = list(result.pins)
    c = confirm(result, _checks(job, report), ev, job.journal_path("confirm"), fp, loc.order, loc.suspects, job.p.budget)
    if report is not None and c.first and c.result.pins != first_pins:
        from ..tasks.judge import Confirmation

        report.confirmations.append(Confirmation(c.result.pins, c.result.status == "fixed", search_evaluations=c.result.evaluations))
    searched = first_pins if c.bound else c.result.pins  # a repair search adds its own bound to the first one's
    bound = evaluation_bound(len(searched), len(loc.order)) + c.bound
    return c.result, ev, list(ev.log) + c.log, report, bound


def _baselines(job: Job, naive, ev: Evaluator, result: SearchResult) -> Baselines:
    """Each baseline on its own evaluator (same journal and cache, its own count), quiet."""
    fresh = lambda: Evaluator(ev.judge, ev.journal, job.p.budget, verbose=False)
    rr = range_rule(job.graph, naive, fresh())
    prefix = prefix_bisection(candidates(job.graph), fresh())
    return Baselines(rr, prefix, OurResult(len(result.pins), result.status != "unfixed", result.evaluations))


def _final_comparisons(job: Job, naive, plan: Plan) -> BisectComparisons:
    pinned = job.compare(Plan(plan.precision, plan.pins)) if plan.pins else None
    other = None
    if job.p.other_precision:
        other = job.compare(Plan(other_precision(plan.precision)))
    return BisectComparisons(naive, pinned, other)


def _flops(job: Job, pins) -> Flops:
    per = job.node_flops
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
