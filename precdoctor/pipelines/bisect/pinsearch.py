"""bisect's pin search: the output judge, the checks that confirm a found plan, the search itself (the rewrite stage
runs it too, on a rewritten graph)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from ...analysis import acceptance as acc
from ...core import progress
from ...analysis.comparison import Comparison
from ...ship.external import CRITERION as CHECK
from ...ship.external import ExternalCheck
from ...core.limits import evaluation_bound
from ...planning.plan import Plan
from ...search import Evaluation, Evaluator, Journal, Localization, SearchResult, fingerprint, search
from ...core.status import SearchStatus
from ...tasks.judge import Confirmation, TaskReport
from .confirm import Check, confirm, finite_inside, merge
from .job import Job

log = logging.getLogger("precdoctor")


@dataclass
class Searched:
    """What the search stage gives the run."""

    result: SearchResult
    evaluator: Evaluator  # the proxy's (the baselines share its judge and journal)
    log: list[Evaluation]  # every evaluation made: the proxy's and a repair search's
    report: TaskReport | None  # the task's report, with the confirmations it saw
    bound: int  # the evaluations the search promised to stay within


class OutputJudge:
    """The search's judge of a plan: the output criteria against the FP32 references (the naive plan: its own
    comparison, finite-inside included where it confirms). Plans may be started ahead on idle workers
    (search.Evaluator.prefetch: ``capacity``, ``submit``, ``finish``)."""

    def __init__(self, job: Job, naive: Comparison):
        self.job, self.naive = job, naive

    def __call__(self, pins: frozenset) -> acc.Verdict:
        job, naive = self.job, self.naive
        if not pins and naive.pairs:  # the naive plan is compared tensor by tensor already: finite-inside is free
            v = acc.judge_outputs(job.output_criteria, naive.pairs, job.graph.outputs)
            return merge(v, finite_inside(naive)) if job.inside else v
        return job.judge_plan(pins, job.references())

    def capacity(self) -> int:
        return self.job.capacity()

    def submit(self, pins: frozenset):
        return self.job.submit_plan(pins) if pins or not self.naive.pairs else None  # the naive plan is judged already

    def finish(self, handle) -> acc.Verdict:
        return self.job.finish_plan(handle, self.job.references())


def confirming_checks(job: Job, report: TaskReport | None) -> list[Check]:
    """What confirms a searched plan: every tensor finite (unless allowed otherwise), then the task metric."""
    checks = []
    if job.inside:
        checks.append(Check(acc.INSIDE, lambda pins: finite_inside(job.compare(Plan(job.fmt.name, pins)))))
    if job.judge is not None:
        def task(pins: frozenset) -> acc.Verdict:
            v = job.judge.judge(job.backend, Plan(job.fmt.name, pins), job.task_criteria)
            if not report.confirmations:  # the first plan the task judged, as the report shows it
                report.confirmations.append(Confirmation(sorted(pins), v.passed, v.measures, v.failed))
            return v

        checks.append(Check(acc.describe(job.task_criteria) + f" ({len(job.judge.clips)} clips)", task))
    if job.p.check_cmd is not None:
        checks.append(Check(f"{CHECK} {job.p.check_cmd}", _external(job)))
    return checks


def _external(job: Job) -> Callable[[frozenset], acc.Verdict]:
    """--check CMD as a judge of pin sets, its verdicts journaled apart (a rerun does not run the command again)."""
    external = ExternalCheck(job.p.check_cmd)
    journal = Journal(job.journal_path(CHECK), fingerprint(job.fingerprint(), job.p.check_cmd))

    def judge(pins: frozenset) -> acc.Verdict:
        key = tuple(sorted(pins))
        ev = journal.entries.get(key)
        if ev is None:
            t = time.perf_counter()
            v = external.judge(job.graph, Plan(job.fmt.name, frozenset(key)))
            journal.append(Evaluation(list(key), v.passed, v.measures, v.failed, time.perf_counter() - t))
            return v
        return acc.Verdict(ev.passed, ev.measures, ev.failed)

    return judge


def search_pins(job: Job, naive: Comparison, loc: Localization) -> Searched:
    """The search, confirmed by every check that applies (confirm.py)."""
    fp = job.fingerprint()
    journal = Journal(job.journal_path(), fp)
    # what the summary will promise if the evidence's suspects are the pins: the count is shown against it
    expected = min(evaluation_bound(loc.suspects, len(loc.order)), job.p.budget)
    log.info(f"search: evaluations counted against {expected}, the bound k*ceil(log2 N)+3 for the {loc.suspects} suspect(s) "
             f"among {len(loc.order)} candidates (the summary's bound counts the pins found; past it, the budget of {job.p.budget})")
    ev = Evaluator(OutputJudge(job, naive), journal, job.p.budget, bound=expected)
    with progress.stage("search", expected, "evaluation") as ev.stage:
        result = search(loc.order, loc.suspects, ev, candidates=len(loc.order))
        report = job.judge.report(job.task_criteria) if job.judge is not None else None
        first_pins = list(result.pins)
        c = confirm(result, confirming_checks(job, report), ev, job.journal_path("confirm"), fp, loc.order, loc.suspects,
                    job.p.budget)
    ev.stage = None
    if report is not None and c.first and c.result.pins != first_pins:
        report.confirmations.append(Confirmation(c.result.pins, c.result.status is SearchStatus.FIXED,
                                                 search_evaluations=c.result.evaluations))
    searched = first_pins if c.bound else c.result.pins  # a repair search adds its own bound to the first one's
    bound = evaluation_bound(len(searched), len(loc.order)) + c.bound
    return Searched(c.result, ev, list(ev.log) + c.log, report, bound)
