"""``bisect --fix rewrite|auto``: the rewrite stage, run after the pin search on what it localized.

culprits (the pins found, the suspects the evidence named) -> the rewrite
families' matches (rewrite.match) -> FP32 equivalence of the rewritten model
on the samples (outputs and every matched tensor; an exact rewrite past
FP32_TOLERANCE is not applied) -> the rewritten model judged in the low
format with no pins, by the same acceptance as the pins (outputs, every
tensor finite, the task metric), journaled and counted -> each rewrite
necessary (dropped alone, acceptance must fail; one that is not is left
out) -> ``auto``: what the rewrites do not cover, pinned by the same search
on the rewritten graph, kept only where it beats the pins alone -> the
alternatives (LayerNorm fusion) judged on each engine profile they depend
on -> costs of both fixes, side by side.

A rewrite is proven as a model, not only on the samples: a candidate whose
constants the engine's conversion loses is refused by the matcher; one that
gives the rewritten model a high scan risk (risks.py) the original lacks is
left out; and the fix that settles is run on edge inputs derived from the samples
(rewrite.edges): a non-finite output where the original FP32 and the pins
are finite refuses it (``refused``; ``auto`` then falls back to the pins).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace

from ...analysis import acceptance as acc
from ...backends.emulate import EmulationBackend
from ...analysis.comparison import Comparison
from ...graph import GraphView
from ...numerics.mixed import mixed_model
from ...core.ops import FUSED_NORMS
from ...planning.plan import Plan, config_name
from ...rewrite import FP32_TOLERANCE, Candidate, Context, apply_all, match
from ...rewrite import edges as edge_check
from ...rewrite.costs import pins_cost, pins_inside, plan_cost, rewrite_cost
from ...rewrite.equivalence import Reference, measure
from ...analysis.risks import SEVERITY, find_risks
from ...runs import Cost, RewriteAlternative, RewriteCheck, RewriteResult
from ...search import BudgetExhausted, Evaluator, Journal, Localization, SearchResult, fingerprint
from ...core.status import BisectVerdict, RewriteStatus, SearchStatus
from ...tasks.judge import WerRow
from .crosscheck import check_tf32, other_targets
from .confirm import chained
from .job import Job
from .pinsearch import OutputJudge, confirming_checks, search_pins

log = logging.getLogger("precdoctor")
PIN = "pin:"  # evaluation keys: rewrite ids, and the pins of ``auto`` prefixed by this


@dataclass
class Fixed:
    result: RewriteResult
    graph: GraphView | None = None  # the rewritten graph to ship
    plan: Plan | None = None  # its plan (the pins ``auto`` left)
    task_row: WerRow | None = None  # the shipped fix's row of the task table
    pins_fixed: bool = False  # the pin search fixed the model on its own: the pins are the rewrite's verified alternative


class _Stage:
    """Rewritten graphs and their judging, cached per set of rewrites."""

    def __init__(self, job: Job, naive: Comparison, candidates: list[Candidate]):
        self.job, self.naive = job, naive
        self.cands = {c.id: c for c in candidates}
        self.order = [c.id for c in candidates]
        self.jobs: dict[frozenset, Job] = {}
        self.extra = 0  # evaluations made outside the evaluator (alternatives, the auto pin search)
        self.reference = Reference(job.graph, job.samples)  # the original's FP32 values, for every equivalence measure

    def rjob(self, ids) -> Job:
        key = frozenset(ids)
        if not key:
            return self.job
        if key not in self.jobs:
            g = apply_all(self.job.graph, [self.cands[i] for i in self.order if i in key])
            j = self.job.judge
            judge = replace(j, graph=g, cache={"fp32": j.fp32()}, store=None) if j is not None else None
            variant = "rewrite-" + hashlib.sha256("\n".join(sorted(key)).encode()).hexdigest()[:12]
            absorbed = frozenset(t for i in key for t in self.cands[i].record.absorbed)
            self.jobs[key] = replace(self.job, graph=g, judge=judge, comparisons={}, variant=variant, absorbed=absorbed,
                                     target_journal=None, comparison_log=None, fp32_outputs=self.job.references())
        return self.jobs[key]

    def naive_of(self, rjob: Job) -> Comparison:
        """The rewritten graph's naive plan compared tensor by tensor, its outputs judged against the original FP32."""
        if rjob is self.job:
            return self.naive
        c = rjob.compare(Plan(self.job.fmt.name))
        c.pairs = [(ref, cand) for (ref, _), (_, cand) in zip(self.naive.pairs, c.pairs)]
        return c

    def verdict(self, key: frozenset) -> acc.Verdict:
        ids = {k for k in key if not k.startswith(PIN)}
        rjob = self.rjob(ids)
        pins = frozenset(k[len(PIN):] for k in key if k.startswith(PIN) and rjob.graph.has_node(k[len(PIN):]))
        v = OutputJudge(rjob, self.naive_of(rjob) if not pins else self.naive)(pins)
        report = rjob.judge.report(rjob.task_criteria) if rjob.judge is not None else None
        return chained(v, confirming_checks(rjob, report), pins)

    def output_verdict(self, ids, backend) -> acc.Verdict:
        """Outputs and every tensor finite on another engine profile (alternatives)."""
        rjob = replace(self.rjob(ids), backend=backend, comparisons={}, target_journal=None,
                       comparison_log=None)
        naive = self.naive_of(rjob)
        self.extra += 1
        return OutputJudge(rjob, naive)(frozenset())  # bisect's judge adds finite-inside for the naive plan


def _keys(ids, pins=()) -> list[str]:
    return list(ids) + [PIN + p for p in pins]


def _necessity(ev: Evaluator, ids: list[str], pins=()) -> tuple[list[str], dict[str, list[str]], dict[str, str]]:
    """Each rewrite dropped alone: kept where acceptance then fails (with what fails), left out where it holds."""
    keep, without, dropped = list(ids), {}, {}
    for i in list(ids):
        v = ev.evaluate(_keys([k for k in keep if k != i], pins))
        if v.passed:
            keep.remove(i)
            dropped[i] = "acceptance holds without it: not needed"
        else:
            without[i] = v.failed
    return keep, without, dropped


def _equivalent(stage: _Stage, cands: list[Candidate]) -> tuple[list[str], dict[str, str]]:
    """The exact candidates that match FP32 within FP32_TOLERANCE on their own tensors (all applied together)."""
    job = stage.job
    eq = measure(job.graph, stage.rjob(stage.order).graph, cands, job.samples, stage.reference)
    ok, dropped = [], {}
    for c in cands:
        err = eq.rewrites.get(c.id, 0.0)
        if c.record.exact and not err <= FP32_TOLERANCE:
            dropped[c.id] = f"not equivalent in FP32 on the samples: max relative error {err:.3g} > {FP32_TOLERANCE:g}"
        else:
            ok.append(c.id)
    return ok, dropped


def _new_risks(stage: _Stage, ids: list[str], ranges: dict) -> dict[str, str]:
    """Rewrites that give the rewritten model a high scan risk the original lacks (a constant lost, a range passed, a
    non-finite FP32 value; medium ones, a share of an intermediate flushing to 0, are what an exact logaddexp or a
    softmax makes by design and are left to the acceptance and the edge inputs), with the risk: a risk on
    a node a rewrite matched or added is its own; one on no rewrite's node counts against every rewrite. Risks are
    keyed by kind and tensor: a tensor a rewrite keeps keeps its name and values (a Softmax replacing Exp/ReduceSum/Div
    makes the same probabilities), a tensor it scales or creates has a new one."""
    job = stage.job
    how = job.p.engine.options().constants
    if job.fmt.name != "fp16":  # scan judges ranges and constants against FP16 (risks.py); BF16 has the other checks
        return {}
    inside = not (isinstance(job.backend, EmulationBackend) and job.backend.profile == "strict")

    def serious(graph, known=None):  # a fused norm's epsilon is FP32 inside, unless the engine builds it from primitives
        return [r for r in find_risks(graph, job.samples, how, known)[0] if SEVERITY[r.severity] == SEVERITY["high"]
                and not (inside and r.kind == "epsilon" and r.op in FUSED_NORMS)]

    def key(r):
        return r.kind, r.tensor or r.node

    have = {key(r) for r in serious(job.graph, ranges)}  # the original's FP16 ranges: the job's own (Job.ranges)
    rjob = stage.rjob(ids)  # a floor commuted past a Log makes log 0 = -inf by design (absorbed): not a risk it adds
    new = [r for r in serious(rjob.graph) if key(r) not in have and r.tensor not in rjob.absorbed]
    out: dict[str, str] = {}
    for r in new:
        nodes = set(r.node.split(", "))
        owners = [i for i in ids if nodes & (set(stage.cands[i].record.nodes) | set(stage.cands[i].record.added))] or ids
        for i in owners:
            out[i] = (out[i] + "; " if i in out else "the rewritten model has a scan risk the original lacks: ") + \
                f"{r.severity} {r.kind} at {r.node}: {r.detail}"
    return out


def _auto_pins(stage: _Stage, ids: list[str]) -> SearchResult:
    """The pin search of bisect, on the rewritten graph."""
    rjob = stage.rjob(ids)
    naive = stage.naive_of(rjob)
    result = search_pins(rjob, naive, rjob.localize(naive)[1]).result
    stage.extra += result.evaluations
    return result


@dataclass
class _Settled:
    """Where the rewrites settle: which are kept, and with which pins."""

    status: RewriteStatus  # FIXED, PARTIAL (with pins) or INSUFFICIENT
    ids: list[str]  # the rewrites kept
    without: dict[str, list[str]]  # rewrite -> criteria that fail without it
    dropped: dict[str, str]  # rewrite -> why it is left out
    pins: list[str]  # pins left on the rewritten graph (auto)
    measures: dict[str, float]  # the final evaluation's


def _settle(stage: _Stage, ev: Evaluator, ids: list[str], mode: str, pin_result: SearchResult) -> _Settled:
    """See ``_Settled``."""
    first = ev.evaluate(_keys(ids))
    log.info(f"rewrite: {len(ids)} rewrite(s), no pins -> {'PASS' if first.passed else 'fail'} "
             + ", ".join(f"{acc.measure_label(k)}: {v:.4g}" for k, v in first.measures.items()))
    if first.passed:
        keep, without, dropped = _necessity(ev, ids)
        return _Settled(RewriteStatus.FIXED, keep, without, dropped, [], ev.evaluate(_keys(keep)).measures)
    if mode != "auto":
        return _Settled(RewriteStatus.INSUFFICIENT, ids, {}, {}, [], first.measures)
    second = _auto_pins(stage, ids)
    if second.status is not SearchStatus.FIXED or (pin_result.status is SearchStatus.FIXED and len(second.pins) >= len(pin_result.pins)):
        return _Settled(RewriteStatus.INSUFFICIENT, ids, {}, {}, [], first.measures)
    keep, without, dropped = _necessity(ev, ids, second.pins)
    if not keep:
        return _Settled(RewriteStatus.INSUFFICIENT, ids, {}, dropped, [], first.measures)
    return _Settled(RewriteStatus.PARTIAL, keep, without, dropped, second.pins, ev.evaluate(_keys(keep, second.pins)).measures)


def _alternatives(stage: _Stage, ids: list[str]) -> list[RewriteAlternative]:
    """Each applied rewrite's alternative in its place, on the engine profile in use and, where its precision belongs
    to the engine (a fused LayerNormalization), on the emulation profile that builds it from primitives too."""
    job, out = stage.job, []
    for i in ids:
        alt = stage.cands[i].alternative
        if alt is None:
            continue
        stage.cands[alt.id] = alt
        stage.order.append(alt.id)
        others = [k for k in ids if k != i] + [alt.id]
        eq = measure(job.graph, stage.rjob(others).graph, [alt], job.samples, stage.reference)
        backends = {job.backend.info().profile or job.backend.name: job.backend}
        if isinstance(job.backend, EmulationBackend) and job.backend.profile != "strict":
            backends["strict"] = EmulationBackend(replace(job.backend.options, profile="strict"), job.backend.memory_budget_gb)
        verdicts = {name: stage.output_verdict(others, b) for name, b in backends.items()}
        out.append(RewriteAlternative(alt.record, i, eq.rewrites.get(alt.id, 0.0), {k: v.passed for k, v in verdicts.items()},
                                      {k: v.failed for k, v in verdicts.items() if v.failed}))
    return out


def _checks(stage: _Stage, ids, without, pin_result: SearchResult, per_node, rflops, eq) -> list[RewriteCheck]:
    job = stage.job
    base = mixed_model(job.graph, Plan(job.fmt.name)).casts
    out = []
    for i in ids:
        rec = stage.cands[i].record
        pins = pins_inside(rec, pin_result.pins)
        out.append(RewriteCheck(rec, eq.rewrites.get(i, 0.0), without.get(i, []), pins,
                                pins_cost(job.graph, job.fmt.name, pins, per_node, base), rewrite_cost(rec, per_node, rflops)))
    return out


def _message(status: str, checks: list[RewriteCheck], pins: list[str], eq, pin_result: SearchResult, fmt: str) -> str:
    n, changed = len(checks), sum(not c.rewrite.exact for c in checks)
    fp32 = ("the rewritten model in FP32 gives bitwise the same outputs" if eq.worst_output == 0 else
            f"the rewritten model in FP32 differs from the original by at most {eq.worst_output:.2g} on the outputs (max relative "
            f"error)") + (f", with {changed} constant(s) changed (not exact: judged by the acceptance)" if changed else "")
    need = ("each one necessary" if n > 1 else "necessary: the naive plan fails") if status is RewriteStatus.FIXED else \
        ("each one necessary with the pins in place" if n > 1 else "necessary: the pins alone fail")
    if status is RewriteStatus.FIXED:
        return f"{n} rewrite(s), every node in {fmt.upper()} (no FP32 pin); {fp32}; {need}"
    return f"{n} rewrite(s) and {len(pins)} pin(s) on the rewritten graph, against {len(pin_result.pins)} pin(s) alone; {fp32}; {need}"


def verdict(mode: str, r: RewriteResult, pin_result: SearchResult) -> tuple[BisectVerdict, str]:
    """The run's verdict and message: ``rewrite`` stands or falls with the rewrites; ``auto`` falls back to the pins."""
    if r.applied:
        return BisectVerdict.FIXED, r.message
    if mode == "rewrite":
        alt = f"; the pin alternative: {pin_result.message}" if pin_result.status is SearchStatus.FIXED else ""
        return BisectVerdict.UNFIXED, f"--fix rewrite: {r.message}{alt}"
    return BisectVerdict(pin_result.status), f"--fix auto falls back to the pins ({r.message}): {pin_result.message}"


def _none(mode: str, why: str, pins_cost: Cost, dropped=None, log_=(), status: RewriteStatus | None = None, edges=()) -> Fixed:
    log.info(f"rewrite: {why}")
    return Fixed(RewriteResult(
        mode=mode, status=status or (RewriteStatus.NONE if dropped is None else RewriteStatus.INSUFFICIENT), message=why,
        rewrites=[], dropped=dropped or {}, alternatives=[], pins=[], evaluations=len(log_), evaluation_log=list(log_),
        fp32_outputs={}, fp32_tensors={}, measures={}, cost=pins_cost, pins_cost=pins_cost, edges=list(edges)))


def _refusals(refused: dict[str, str]) -> str:
    return "; ".join(f"{i}: {why}" for i, why in refused.items())


def fix_by_rewrite(job: Job, naive: Comparison, loc: Localization, pin_result: SearchResult, ranges: dict) -> Fixed:
    """The rewrite stage (see the module docstring)."""
    mode, fmt = job.p.fix, job.fmt.name
    per_node = job.node_flops
    pins_total = plan_cost(job.graph, Plan(fmt, frozenset(pin_result.pins)), per_node)
    culprits = set(pin_result.pins) | set(loc.order[: loc.suspects])
    strict = isinstance(job.backend, EmulationBackend) and job.backend.profile == "strict"
    ctx = Context(job.graph, job.fmt, ranges, culprits, primitive_norms=strict, constants=job.p.engine.options().constants)
    cands = match(ctx)
    log.info(f"rewrite: {len(cands)} candidate(s) on {len(culprits)} localized culprit(s): " + ", ".join(c.id for c in cands))
    for i, why in ctx.refused.items():
        log.info(f"rewrite: {i} refused: {why}")
    if not cands:
        if ctx.refused:
            return _none(mode, "refused: " + _refusals(ctx.refused), pins_total, dict(ctx.refused), status=RewriteStatus.REFUSED)
        return _none(mode, f"no rewrite family matches the {len(culprits)} localized culprit(s)", pins_total)
    stage = _Stage(job, naive, cands)
    ids, dropped = _equivalent(stage, cands)
    dropped.update(ctx.refused)
    if not ids:
        return _none(mode, "no matched rewrite is equivalent in FP32 on the samples", pins_total, dropped)
    risky = _new_risks(stage, ids, ranges)
    if risky:
        log.info("rewrite: refused: " + _refusals(risky))
        dropped.update(risky)
        ids = [i for i in ids if i not in risky]
        if not ids:
            return _none(mode, "refused: " + _refusals(risky), pins_total, dropped, status=RewriteStatus.REFUSED)
    # each verdict includes the confirming checks (the task metric on its clips): they key the journal too, as in confirm.py
    checks = [c.name for c in confirming_checks(job, None)]
    journal = Journal(job.journal_path("rewrite"), fingerprint(job.fingerprint(), "rewrite", sorted(ids), checks))
    ev = Evaluator(stage.verdict, journal, job.p.budget, verbose=False)
    try:
        settled = _settle(stage, ev, ids, mode, pin_result)
    except BudgetExhausted:
        return _none(mode, f"the budget of {job.p.budget} evaluations ran out", pins_total, dropped, ev.log)
    dropped.update(settled.dropped)
    if settled.status is RewriteStatus.INSUFFICIENT:
        return _none(mode, "the rewrites alone do not meet the acceptance" + (": " + ", ".join(
            ev.evaluate(_keys(settled.ids)).failed) if settled.ids else ""), pins_total, dropped, ev.log)
    edges = edge_check.check(job.graph, stage.rjob(settled.ids).graph, job.backend, Plan(fmt, frozenset(settled.pins)),
                             Plan(fmt, frozenset(pin_result.pins)), edge_check.edge_inputs(job.samples))
    bad = [e for e in edges if e.added]
    if bad:
        why = "refused: the rewritten model adds non-finite outputs where the original FP32 and the pins are finite, on " + "; ".join(
            f"{e.input}: {e.added} of {e.finite} element(s)" for e in bad)
        return _none(mode, why, pins_total, dropped, ev.log, status=RewriteStatus.REFUSED, edges=edges)
    return _applied(stage, ev, settled, dropped, pin_result, per_node, pins_total, edges)


def _applied(stage: _Stage, ev: Evaluator, settled: _Settled, dropped: dict[str, str], pin_result: SearchResult,
             per_node: dict[str, int], pins_total: Cost, edges: list) -> Fixed:
    job = stage.job
    ids, without, pins, measures, status = settled.ids, settled.without, settled.pins, settled.measures, settled.status
    rjob = stage.rjob(ids)
    eq = measure(job.graph, rjob.graph, [stage.cands[i] for i in ids], job.samples, stage.reference)
    rflops = rjob.node_flops
    checks = _checks(stage, ids, without, pin_result, per_node, rflops, eq)
    alternatives = _alternatives(stage, ids)
    plan = Plan(job.fmt.name, frozenset(pins))
    cost = plan_cost(rjob.graph, plan, rflops)
    cost.nodes_added, cost.flops_added = sum(c.cost.nodes_added for c in checks), sum(c.cost.flops_added for c in checks)
    result = RewriteResult(
        mode=job.p.fix, status=status, message=_message(status, checks, pins, eq, pin_result, job.fmt.name), rewrites=checks,
        dropped=dropped, alternatives=alternatives, pins=sorted(pins), evaluations=ev.count + stage.extra, evaluation_log=list(ev.log),
        fp32_outputs=eq.outputs, fp32_tensors=eq.tensors, measures=measures, cost=cost, pins_cost=pins_total, edges=edges)
    # naive_of first: it leaves the rewritten graph's naive comparison in rjob, which the target checks read
    naive_ok = acc.judge_outputs(rjob.output_criteria, stage.naive_of(rjob).pairs, rjob.graph.outputs).passed
    result.tf32 = check_tf32(rjob, plan, True)
    result.targets = other_targets(rjob, plan, True, result.tf32, naive_ok, what="the rewritten model"
                                   + (f" with {len(plan.pins)} pin(s)" if plan.pins else ""))
    log.info(f"rewrite: {status}: {result.message} ({result.evaluations} evaluations)")
    row = None
    if rjob.judge is not None:
        row = rjob.judge.row(rjob.judge.run_plan(job.backend, plan, ""), rjob.judge.references(rjob.judge.fp32()))
        row.config = config_name(job.fmt.name, pins, rewritten=True)  # the transcripts are the verdict's, cached
    return Fixed(result, rjob.graph, plan, row, pin_result.status is SearchStatus.FIXED)
