"""``precdoctor bisect``: from a broken FP16/BF16 model to the fewest FP32 pins, proven, with artifacts.

load (job.py: what the stages share) -> compare the naive plan (localize)
-> rank candidates -> search pins (cached, journaled, budgeted) -> verify
1-minimal -> confirm the task metric -> baselines -> compare the pinned plan
-> TF32 and the other targets (crosscheck.py) -> write pins.json, flags,
mixed ONNX, the references and verify scripts, the report and run.json as one
set (artifact_set.py; run.json is the record ``--json`` gets and the API returns).

The package: params (BisectParams), job (what the stages share), pinsearch (the search and its confirming
checks, confirm.py), fix (the rewrite stage), crosscheck (TF32 and the other targets), artifact_set (the
written set); this module runs them in order and builds the run record once, last.
"""
from __future__ import annotations

import logging

from ...analysis import acceptance as acc
from ...core import progress
from ...analysis.comparison import Comparison, hidden_nonfinite
from ...core.destinations import FolderLock
from ...core.limits import MOSTLY_FP32_SHARE
from ...planning.plan import Plan, other_precision
from ...runs import BisectComparisons, BisectRun, Flops, InputInfo
from ...search import Baselines, Evaluator, OurResult, SearchResult, candidates, prefix_bisection, range_rule
from ...core.status import BisectVerdict, SearchStatus
from ...numerics.targets import describe
from ...tasks.judge import configs
from ...analysis.verdicts import ALLOW_INTERNAL, reference_note, refuse_nan_reference, saturation_note
from ..common import Clock, refuse_empty_outputs, versions
from .artifact_set import ArtifactSet, refuse_destinations
from .crosscheck import check_tf32, other_targets
from .fix import fix_by_rewrite
from .fix import verdict as fix_verdict
from .job import Job, setup
from .params import BisectParams
from .pinsearch import search_pins

log = logging.getLogger("precdoctor")


def run(p: BisectParams) -> BisectRun:
    p.check()
    refuse_destinations(p)
    with FolderLock(p.out, f"bisect {p.subject}"):  # one run per --out: journals and staging are the folder's
        clock = Clock()
        job, info, warnings = setup(p)
        try:
            return _run(p, job, info, warnings, clock)
        finally:
            job.close()  # the workers (distributed.py) and their sessions


def _run(p: BisectParams, job: Job, info: InputInfo, warnings: list[str], clock: Clock) -> BisectRun:
    log.info(f"precdoctor bisect: {p.subject} ({len(job.graph.nodes)} nodes) in {job.fmt.name}, {len(job.samples)} sample(s), "
             f"{job.backend.name}, target {p.engine.target_name} ({describe(p.engine.options())})")
    log.info(f"acceptance: {', '.join(job.accept())}" + ("  (default)" if not p.accept else ""))
    clock.lap("load")
    with progress.stage(f"naive {job.fmt.name} comparison", unit="pass"):
        naive = job.compare(Plan(job.fmt.name))
    refuse_nan_reference(naive)
    refuse_empty_outputs(naive)
    with progress.stage("FP32 ranges", unit="sample"):
        ranges, loc = job.localize(naive)  # FP32 range findings too: evidence where no node jumps
    clock.lap("localize")
    log.info(f"naive {job.fmt.name}: {naive.verdict}; Inf/NaN origin {naive.origin or '-'}; first divergence "
             f"{naive.first_divergence or '-'}; {loc.suspects} suspect(s) among {len(loc.order)} candidate nodes")
    searched = search_pins(job, naive, loc)
    result, ev, log_, task_report, bound = searched.result, searched.evaluator, searched.log, searched.report, searched.bound
    clock.lap("search")
    log.info(f"search: {result.status}, {len(result.pins)} pin(s), {result.evaluations} evaluation(s); {result.message}")
    with progress.stage("baselines", unit="evaluation") as s:
        baselines = _baselines(job, naive, ev, result, s) if p.baselines else None
    clock.lap("baselines")
    fixed = None
    if p.fix != "pins" and result.status is not SearchStatus.HEALTHY:
        fixed = fix_by_rewrite(job, naive, loc, result, ranges)
        clock.lap("rewrite")
    why = {pin: _why(pin, loc.evidence, result) for pin in result.pins}
    plan = Plan(job.fmt.name, frozenset(result.pins), why)
    with progress.stage("comparing the final plans", unit="pass"):
        comparisons = _final_comparisons(job, naive, plan)
    clock.lap("compare")
    with progress.stage("TF32 and the other targets", unit="plan"):
        tf32 = check_tf32(job, plan, result.status is not SearchStatus.UNFIXED)
        naive_ok = acc.judge_outputs(job.output_criteria, naive.pairs, job.graph.outputs).passed
        lead = fixed is not None and fixed.result.applied  # the rewrite is the verdict: these are its alternative's checks
        targets = other_targets(job, plan, result.status is not SearchStatus.UNFIXED, tf32, naive_ok,
                                "the pin alternative" if lead else "this plan")
    clock.lap("targets")
    if job.judge is not None:
        task_report = task_report or job.judge.report(job.task_criteria)
        other = p.other_precision
        task_report.rows, task_report.worst, task_report.normalization = job.judge.table(job.backend, job.fmt.name, plan.pins, other)
        with progress.stage("decodes against FP32's", unit="step"):
            task_report.decodes = job.judge.decode_reports(job.backend, configs(job.fmt.name, plan.pins, other),
                                                           {key: c.pairs for key, c in job.comparisons.items()})
        task_report.rows += [fixed.task_row] if fixed is not None and fixed.task_row is not None else []
        clock.lap("task")
    hidden = hidden_nonfinite(comparisons.pinned or naive)
    verdict, message = (BisectVerdict(result.status), result.message) if fixed is None else fix_verdict(p.fix, fixed.result, result)
    flops = _flops(job, result.pins)
    if verdict is BisectVerdict.FIXED and (fixed is None or not fixed.result.applied):
        verdict, message = _mostly_fp32(result.pins, len(loc.order), flops, message)
    unfixed = result.status is SearchStatus.UNFIXED
    notes = [reference_note(naive), saturation_note(naive)] + ([hidden + _accepted(p)] if hidden and not unfixed else [])
    with ArtifactSet(job) as out, progress.stage("writing the artifacts, references and report", unit="step"):
        written = out.write(plan, tf32.allowed, fixed)
        record = BisectRun(
            model=p.subject, precision=job.fmt.name, verdict=verdict, message=message, pins=result.pins, why=why,
            one_minimal=result.one_minimal, evaluations=result.evaluations, evaluations_resumed=sum(e.resumed for e in log_),
            evaluation_bound=bound, bound_note=_bound_note(result, bound, len(loc.order)), budget=p.budget, budget_exhausted=result.budget_exhausted,
            accept=job.accept(), accept_default=not p.accept, candidates=len(loc.order),
            suspects=loc.order[: loc.suspects], evidence=loc.evidence, baselines=baselines, task=task_report, nodes=len(job.graph.nodes),
            node_ops={n.name: n.op_type for n in job.graph.all_nodes()}, inputs=info, engine=job.backend.info(), comparison=comparisons,
            flops=flops, evaluation_log=log_, artifacts=written.artifacts, timing=clock.timing(),
            versions=versions(), verification=written.verification,
            allow_internal_nonfinite=p.allow_internal_nonfinite, internal_nonfinite=hidden if not unfixed else None,
            target=p.engine.target_name, tf32=tf32, targets=targets,
            warnings=warnings + [w for w in notes if w] + written.warnings,
            fix=p.fix, rewrite=written.rewrite)
        out.seal(record, plan)
    return record


def _accepted(p: BisectParams) -> str:
    return f" (accepted: {ALLOW_INTERNAL})" if p.allow_internal_nonfinite else ""


def _baselines(job: Job, naive: Comparison, ev: Evaluator, result: SearchResult, stage: progress.Stage | None = None) -> Baselines:
    """Each baseline on its own evaluator (same journal and cache, its own count), quiet but for ``stage``'s count."""
    def fresh() -> Evaluator:
        e = Evaluator(ev.judge, ev.journal, job.p.budget, verbose=False)
        e.stage = stage
        return e

    rr = range_rule(job.graph, naive, fresh())
    prefix = prefix_bisection(candidates(job.graph), fresh())
    return Baselines(rr, prefix, OurResult(len(result.pins), result.status is not SearchStatus.UNFIXED, result.evaluations))


def _final_comparisons(job: Job, naive: Comparison, plan: Plan) -> BisectComparisons:
    pinned = job.compare(Plan(plan.precision, plan.pins)) if plan.pins else None
    other = None
    if job.p.other_precision:
        other = job.compare(Plan(other_precision(plan.precision)))
    return BisectComparisons(naive, pinned, other)


def _mostly_fp32(pins: list[str], candidates: int, flops: Flops, message: str) -> tuple[BisectVerdict, str]:
    """``fixed`` unless the plan keeps (nearly) the whole model in FP32 (limits.MOSTLY_FP32_SHARE): then a verdict
    of its own, a failure, with its share of nodes and FLOPs."""
    nodes = len(pins) / max(candidates, 1)
    share = flops.pinned_total / flops.total if flops.total else 0.0
    if nodes < MOSTLY_FP32_SHARE:  # by nodes: one heavy op kept FP32 (an LSTM, 95 % of a small model's FLOPs) is a fix
        return BisectVerdict.FIXED, message
    return BisectVerdict.MOSTLY_FP32, (f"only a plan keeping {len(pins)} of {candidates} nodes ({nodes:.0%}) and {share:.0%} of the "
                                       "FLOPs in FP32 meets the acceptance: that is the FP32 model, not a reduced-precision fix; "
                                       "relax the acceptance or look at the suspects")


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
